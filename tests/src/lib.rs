//! Helpers for the end-to-end tests in `tests/`: they drive the `uinfo` binary the way a user
//! does, on tiny experiments, in temporary directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `uinfo` binary built alongside these tests (`cargo build --release` first).
pub fn uinfo_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("uinfo");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --release --bins`",
        bin.display()
    );
    bin
}

/// Runs `uinfo --store STORE ARGS...` in `cwd`.
pub fn uinfo(cwd: &Path, store: &Path, args: &[&str]) -> Output {
    uinfo_env(cwd, store, args, &[])
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny checkerboard experiment: 2000 examples, 4 epochs, batch 32 vs 256, 2 seeds.
pub fn tiny(extra_train: &str, extra_probe: &str) -> String {
    format!(
        "name = \"tiny\"\n[dataset]\nn = 2000\n[train]\nseeds = 2\nepochs = 4\nbatch = [32, 256]\ncheckpoints = [0, 1, 2, 3, 4]\n{extra_train}\n[probe]\nlabels = [\"color\", \"direction\"]\nsteps = 60\n{extra_probe}\n"
    )
}

/// A listing of every file under `dir` with its size and modification time, to show a store is untouched.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

/// Runs `uinfo --store STORE ARGS...` in `cwd` with extra environment variables.
pub fn uinfo_env(cwd: &Path, store: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(uinfo_bin())
        .current_dir(cwd)
        .arg("--store")
        .arg(store)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("uinfo runs")
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The AWS environment of the loopback SeaweedFS S3 server, which `scripts/s3-local.sh` starts
/// if it is not running (the test command starts it beforehand).
pub fn s3_env() -> &'static [(String, String)] {
    static ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let script = repo_root().join("scripts/s3-local.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            "{} failed: the S3 tests need its SeaweedFS server",
            script.display()
        );
        let run = std::env::var("S3_LOCAL_RUN").unwrap_or_else(|_| "/run/s3-local".into());
        let text = std::fs::read_to_string(Path::new(&run).join("env")).expect("s3-local env file");
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// [`s3_env`] with the credentials of the server's read-only identity (it may read and list,
/// not write or delete).
pub fn s3_read_only_env() -> Vec<(String, String)> {
    let run = std::env::var("S3_LOCAL_RUN").unwrap_or_else(|_| "/run/s3-local".into());
    let mut env = s3_env().to_vec();
    let path = Path::new(&run).join("env-read-only");
    let text = std::fs::read_to_string(&path).expect("s3-local env-read-only file");
    env.extend(
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env
}

/// Starts the one-host Slurm cluster of `scripts/slurm-local.sh` (three emulated nodes, with
/// accounting) unless it runs; `cgroup` asks for memory enforcement (the script restarts the
/// daemons when the setting changes).
pub fn slurm_up(cgroup: bool) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let script = repo_root().join("scripts/slurm-local.sh");
    let status = Command::new("bash")
        .arg(&script)
        .env("SLURM_LOCAL_DBD", "1")
        .env("SLURM_LOCAL_NODES", "3")
        .env("SLURM_LOCAL_CGROUP", if cgroup { "1" } else { "0" })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "{} failed: the Slurm tests need its cluster",
        script.display()
    );
}

/// The user id of this process (0 when the tests run as root, as in CI).
pub fn process_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `uinfo --store STORE ARGS...` in `cwd` as the unprivileged user `nobody` (through
/// `setpriv`), so that permissions apply as they do for a lab member on a shared filesystem.
/// Needs root; the caller makes the paths reachable for that user.
pub fn uinfo_as_nobody(cwd: &Path, store: &Path, args: &[&str]) -> Output {
    assert_eq!(process_uid(), 0, "running as another user needs root");
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(uinfo_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("setpriv runs")
}

/// A temporary directory that other users can enter (tempfile makes them private).
pub fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Writes a CIFAR-10 (`hundred` false) or CIFAR-100 distribution in the official binary format
/// under `dir`, with `train` training and `test` test images: the coarse class shows as the
/// direction and period of stripes, the fine class as the hue, plus noise, so both are learnable.
pub fn write_cifar(dir: &Path, hundred: bool, train: usize, test: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut record = |i: usize| -> Vec<u8> {
        let (fine, coarse) = if hundred {
            let f = (next() % 100) as usize;
            (f, f / 5)
        } else {
            let f = i % 10;
            (f, usize::from(![0, 1, 8, 9].contains(&f)))
        };
        let hue = [
            (fine * 37) % 200 + 30,
            (fine * 91) % 200 + 30,
            (fine * 53) % 200 + 30,
        ];
        let period = 2 + coarse % 4;
        let vertical = (coarse / 4) % 2 == 1;
        let mut r: Vec<u8> = if hundred {
            vec![coarse as u8, fine as u8]
        } else {
            vec![fine as u8]
        };
        for &h in &hue {
            for y in 0..32 {
                for x in 0..32 {
                    let along = if vertical { x } else { y };
                    let stripe = if (along / period) % 2 == 0 { 0.6 } else { 1.3 };
                    let noise = (next() % 41) as f64 - 20.0;
                    r.push((h as f64 * stripe + noise).clamp(0.0, 255.0) as u8);
                }
            }
        }
        r
    };
    let (folder, files): (&str, Vec<(String, usize)>) = if hundred {
        (
            "cifar-100-binary",
            vec![("train.bin".into(), train), ("test.bin".into(), test)],
        )
    } else {
        let per = train / 5;
        let mut f: Vec<(String, usize)> = (1..=5)
            .map(|i| (format!("data_batch_{i}.bin"), per))
            .collect();
        f.push(("test_batch.bin".into(), test));
        ("cifar-10-batches-bin", f)
    };
    let folder = dir.join(folder);
    std::fs::create_dir_all(&folder).expect("data folder");
    let mut i = 0;
    for (name, n) in files {
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                i += 1;
                record(i)
            })
            .collect();
        std::fs::write(folder.join(name), bytes).expect("data file");
    }
}
