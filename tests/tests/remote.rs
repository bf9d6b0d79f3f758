//! Sharing results through remotes (SPEC §2.4): every scenario runs against the real SeaweedFS
//! S3 server on loopback (`scripts/s3-local.sh`) and against a `file://` remote.

mod remote_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use remote_support::{
    add_remote, clone_source_dir as clone_source, ok_json, outputs, source, u, Reach,
};
use serde_json::Value;
use uinfo_tests::{s3_env, snapshot, stderr, stdout, tiny, uinfo_bin, uinfo_env};

#[derive(Clone, Copy, Debug)]
enum Kind {
    S3,
    File,
}

/// A remote for one test: a fresh prefix in the S3 bucket, or a fresh directory.
struct Remote {
    url: String,
    env: Vec<(String, String)>,
    /// The directory of a `file://` remote.
    dir: Option<PathBuf>,
}

fn remote(kind: Kind, tmp: &Path, label: &str) -> Remote {
    match kind {
        Kind::S3 => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            Remote {
                url: format!("s3://cache/test-{label}-{}-{nanos}", std::process::id()),
                env: s3_env().to_vec(),
                dir: None,
            }
        }
        Kind::File => {
            let dir = tmp.join(format!("remote-{label}"));
            std::fs::create_dir_all(&dir).unwrap();
            Remote {
                url: format!("file://{}", dir.display()),
                env: Vec::new(),
                dir: Some(dir),
            }
        }
    }
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

impl Reach for Remote {
    fn url(&self) -> &str {
        &self.url
    }
    fn env(&self) -> &[(String, String)] {
        &self.env
    }
}

fn stage_count(tmp: &Path, stages: &[&str]) -> usize {
    let out = uinfo_env(tmp, &tmp.join("none"), &["dag", "tiny.toml", "--json"], &[]);
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| stages.contains(&n["stage"].as_str().unwrap()))
        .count()
}

/// Acceptance 1 and 2: B fetches everything A pushed and computes nothing; with a changed
/// decoder parameter, C fetches the checkpoints and representations and computes only the
/// probes and what follows, and pushes them (`--push`) for D.
fn share(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let r = remote(kind, t, "share");
    let a = clone_source(t, "a");
    add_remote(t, &a, &r);
    let pushed = ok_json(t, &a, &r, &["push", "tiny.toml", "-q"]);
    assert!(pushed["objects"].as_u64().unwrap() > source().nodes as u64);
    assert_eq!(pushed["unavailable"], 0);

    let b = t.join("b");
    add_remote(t, &b, &r);
    let states = |store: &Path, state: &str| {
        let status = ok_json(t, store, &r, &["status", "tiny.toml", "--remote", "lab"]);
        let nodes = status.as_array().unwrap();
        nodes.iter().filter(|n| n["state"] == state).count()
    };
    assert_eq!(states(&b, "remote"), source().nodes);
    let run = ok_json(t, &b, &r, &["run", "tiny.toml", "--remote", "lab", "-q"]);
    assert_eq!(run["computed"], 0, "{run}");
    assert_eq!(run["fetched"], source().nodes, "{run}");
    assert_eq!(
        outputs(&b, "tiny"),
        outputs(&a, "tiny"),
        "B's tables differ from A's"
    );

    std::fs::write(t.join("tiny.toml"), tiny("", "lr = 0.02")).unwrap();
    let c = t.join("c");
    add_remote(t, &c, &r);
    let downstream = stage_count(t, &["probe", "analyze", "report"]);
    assert_eq!(states(&c, "run"), downstream);
    assert_eq!(states(&c, "remote"), source().nodes - downstream);
    let run = ok_json(
        t,
        &c,
        &r,
        &["run", "tiny.toml", "--remote", "lab", "--push", "-q"],
    );
    assert_eq!(run["computed"], downstream, "{run}");
    assert_eq!(run["fetched"], source().nodes - downstream, "{run}");
    assert!(stage_count(t, &["train", "extract"]) > 0);

    // C pushed what it computed: D, with the same change, computes nothing.
    let d = t.join("d");
    add_remote(t, &d, &r);
    let run = ok_json(t, &d, &r, &["run", "tiny.toml", "--remote", "lab", "-q"]);
    assert_eq!(run["computed"], 0, "{run}");
    assert_eq!(outputs(&d, "tiny"), outputs(&c, "tiny"));
}

#[test]
fn s3_remote_shares_results() {
    share(Kind::S3);
}

#[test]
fn file_remote_shares_results() {
    share(Kind::File);
}

/// Starts `uinfo ARGS -j 1` and SIGKILLs it as soon as it reports its first progress line
/// (a tenth of the objects); returns how many objects it had to transfer.
fn kill_midway(t: &Path, store: &Path, r: &Remote, args: &[&str]) -> u64 {
    let mut child = Command::new(uinfo_bin())
        .current_dir(t)
        .arg("--store")
        .arg(store)
        .args(args)
        .args(["-j", "1"])
        .envs(r.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut total = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let counts = line.split(": ").nth(1).and_then(|s| s.split(' ').next());
        match counts.and_then(|c| c.split_once('/')) {
            Some(_) => {
                child.kill().unwrap();
                break;
            }
            None => {
                total = total.or_else(|| counts.and_then(|c| c.parse::<u64>().ok()));
            }
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "finished before it was killed");
    total.expect("a progress header")
}

/// Acceptance 3: a push killed midway, then restarted, completes and sends only what is
/// missing; a pull the same, and the pulled store is complete and sound.
fn resume(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let r = remote(kind, t, "resume");
    let a = clone_source(t, "a");
    add_remote(t, &a, &r);
    let total = kill_midway(t, &a, &r, &["push", "tiny.toml"]);
    let again = ok_json(t, &a, &r, &["push", "tiny.toml", "-q"]);
    let (sent, present) = (
        again["objects"].as_u64().unwrap(),
        again["present"].as_u64().unwrap(),
    );
    assert!(sent > 0 && present > 0, "{again}");
    assert_eq!(sent + present, total, "{again}");
    let third = ok_json(t, &a, &r, &["push", "tiny.toml", "-q"]);
    assert_eq!(third["objects"], 0, "{third}");

    let d = t.join("d");
    add_remote(t, &d, &r);
    let total = kill_midway(t, &d, &r, &["pull", "tiny.toml", "--fetch", "all"]);
    let again = ok_json(t, &d, &r, &["pull", "tiny.toml", "-q", "--fetch", "all"]);
    let (got, present) = (
        again["objects"].as_u64().unwrap(),
        again["present"].as_u64().unwrap(),
    );
    assert!(got > 0 && present > 0, "{again}");
    assert_eq!(got + present, total, "{again}");
    assert!(again["problems"].as_array().unwrap().is_empty());
    let verify = u(t, &d, &r, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let run = ok_json(t, &d, &r, &["run", "tiny.toml", "-q"]);
    assert_eq!(run["computed"], 0, "{run}");
    assert_eq!(outputs(&d, "tiny"), outputs(&a, "tiny"));
}

#[test]
fn s3_push_and_pull_resume_after_kill() {
    resume(Kind::S3);
}

#[test]
fn file_push_and_pull_resume_after_kill() {
    resume(Kind::File);
}

/// Overwrites the object at `rel` (e.g. `blobs/<hex>`) on the remote with other bytes.
fn overwrite_on_remote(r: &Remote, rel: &str) {
    let garbage = "not what was pushed";
    match &r.dir {
        Some(dir) => std::fs::write(dir.join(rel), garbage).unwrap(),
        None => {
            let env: BTreeMap<_, _> = r.env.iter().cloned().collect();
            let path = r.url.strip_prefix("s3://").unwrap();
            let ok = Command::new("curl")
                .args(["-sSf", "-X", "PUT", "--data-binary", garbage])
                .args(["--aws-sigv4", &format!("aws:amz:{}:s3", env["AWS_REGION"])])
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .args([
                    "--user",
                    &format!(
                        "{}:{}",
                        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
                    ),
                ])
                .arg(format!("{}/{path}/{rel}", env["AWS_ENDPOINT"]))
                .status()
                .unwrap();
            assert!(ok.success(), "curl could not overwrite {rel}");
        }
    }
}

/// Acceptance 4: a blob corrupted on the remote is detected at fetch, not stored, reported,
/// and its node recomputed locally; the same for a manifest that no longer parses. A run with
/// `--push` then replaces both on the remote.
fn corrupt(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let r = remote(kind, t, "corrupt");
    let a = clone_source(t, "a");
    add_remote(t, &a, &r);
    ok_json(t, &a, &r, &["push", "-q"]);
    let dag = json(&uinfo_env(t, &a, &["dag", "tiny.toml", "--json"], &[]));
    let node = dag
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["stage"] == "train")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = ok_json(t, &a, &r, &["show", &node]);
    let hex = shown["manifest"]["outputs"]["checkpoint.safetensors"]
        .as_str()
        .unwrap()
        .to_string();
    overwrite_on_remote(&r, &format!("blobs/{hex}"));
    let report = ok_json(t, &a, &r, &["show", "report"]);
    let key = report["manifest"]["key"].as_str().unwrap().to_string();
    overwrite_on_remote(&r, &format!("ac/{key}.json"));

    // pull: both are reported and left out, the rest is fetched; a local run then computes
    // only those two nodes (the others are cut off early).
    let c = t.join("c");
    add_remote(t, &c, &r);
    let out = u(t, &c, &r, &["pull", "-q", "--fetch", "all"]);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "error: blob {}... on remote `lab` is corrupt",
            &hex[..12]
        )) && said.contains(&format!(
            "error: manifest {}... on remote `lab` does not parse",
            &key[..12]
        )),
        "{said}"
    );
    assert!(!c.join("blobs").join(&hex[..2]).join(&hex).exists());
    assert!(u(t, &c, &r, &["verify"]).status.success());
    let run = ok_json(t, &c, &r, &["run", "tiny.toml", "-q"]);
    assert_eq!(run["computed"], 2, "{run}");
    assert_eq!(outputs(&c, "tiny"), outputs(&a, "tiny"));

    // run --remote --push: computes the two nodes with a warning each, fetches the rest, and
    // replaces the bad objects on the remote, so the next store computes nothing.
    let b = t.join("b");
    add_remote(t, &b, &r);
    let out = u(
        t,
        &b,
        &r,
        &[
            "run",
            "tiny.toml",
            "--remote",
            "lab",
            "--fetch",
            "all",
            "--push",
            "-q",
            "--json",
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for expected in [
        format!("blob {}... on remote `lab` is corrupt", &hex[..12]),
        format!("computing {node} locally"),
        format!("manifest {}... on remote `lab` does not parse", &key[..12]),
        "computing report locally".to_string(),
        format!("replaced bad blob {}...", &hex[..12]),
        format!("replaced bad manifest {}...", &key[..12]),
    ] {
        assert!(err.contains(&expected), "{expected}: {err}");
    }
    let run = json(&out);
    assert_eq!(run["computed"], 2, "{run}");
    assert_eq!(run["fetched"], source().nodes - 2, "{run}");
    assert!(u(t, &b, &r, &["verify"]).status.success());
    assert_eq!(outputs(&b, "tiny"), outputs(&a, "tiny"));

    let f = t.join("f");
    add_remote(t, &f, &r);
    let run = ok_json(t, &f, &r, &["run", "tiny.toml", "--remote", "lab", "-q"]);
    assert_eq!(run["computed"], 0, "{run}");
    assert_eq!(outputs(&f, "tiny"), outputs(&a, "tiny"));
}

#[test]
fn s3_corrupt_remote_blob_is_refused_and_recomputed() {
    corrupt(Kind::S3);
}

#[test]
fn file_corrupt_remote_blob_is_refused_and_recomputed() {
    corrupt(Kind::File);
}

/// Acceptance 5: a remote that cannot be used gives one clear message for push and pull (exit
/// 1), and `run --remote` computes locally after a warning.
fn unusable(r: &Remote, expected: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::write(t.join("tiny.toml"), tiny("", "")).unwrap();
    let store = t.join("store");
    add_remote(t, &store, r);
    for verb in ["push", "pull"] {
        let out = u(t, &store, r, &[verb, "tiny.toml"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{verb}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{verb}: {err}");
        assert!(
            err.starts_with(&format!("error: remote `lab` ({}): {expected}", r.url)),
            "{verb}: {err}"
        );
    }
    let out = u(
        t,
        &store,
        r,
        &[
            "run",
            "tiny.toml",
            "--remote",
            "lab",
            "--stage",
            "dataset",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("warning: remote `lab` ({}): {expected}", r.url))
            && stderr(&out).contains("computing locally"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["computed"], 1);
}

#[test]
fn s3_wrong_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = remote(Kind::S3, tmp.path(), "creds");
    r.env.push(("AWS_SECRET_ACCESS_KEY".into(), "wrong".into()));
    unusable(
        &r,
        "access denied (SignatureDoesNotMatch): check AWS_ACCESS_KEY_ID",
    );
}

#[test]
fn s3_unreachable_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = remote(Kind::S3, tmp.path(), "unreachable");
    r.env
        .push(("AWS_ENDPOINT".into(), "http://127.0.0.1:9".into()));
    unusable(&r, "cannot reach http://127.0.0.1:9: Connection refused");
}

#[test]
fn s3_missing_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = remote(Kind::S3, tmp.path(), "bucket");
    let bucket = format!("uinfo-missing-{}", std::process::id());
    r.url = format!("s3://{bucket}/x");
    unusable(&r, &format!("bucket `{bucket}` does not exist"));
}

#[test]
fn file_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = remote(Kind::File, tmp.path(), "missing");
    let dir = tmp.path().join("no-such-dir");
    r.url = format!("file://{}", dir.display());
    unusable(&r, &format!("directory {} does not exist", dir.display()));
}

#[test]
fn remote_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    let none = Remote {
        url: String::new(),
        env: Vec::new(),
        dir: None,
    };
    let add = |name: &str, url: &str| u(t, &store, &none, &["remote", "add", name, url]);
    assert!(add("lab", "s3://cache/shared").status.success());
    assert!(add("disk", "file:///srv/uinfo").status.success());
    for bad in ["http://x/y", "s3://A/b", "file://relative/path"] {
        let out = add("bad", bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains(&format!("bad remote URL `{bad}`")));
    }
    let list = stdout(&u(t, &store, &none, &["remote", "list"]));
    assert_eq!(list, "disk\tfile:///srv/uinfo\nlab\ts3://cache/shared\n");
    let out = u(t, &store, &none, &["push"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("several remotes configured (disk, lab)"));
    let out = u(t, &store, &none, &["pull", "--remote", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no remote named `nope` (known: disk, lab)"));
    assert!(u(t, &store, &none, &["remote", "remove", "disk"])
        .status
        .success());
    let list = stdout(&u(t, &store, &none, &["remote", "list"]));
    assert_eq!(list, "lab\ts3://cache/shared\n");

    std::fs::write(store.join("config.json"), "{\"remotes\": [\"lab\"]}").unwrap();
    let out = u(t, &store, &none, &["remote", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "{} does not parse",
            store.join("config.json").display()
        )),
        "{}",
        stderr(&out)
    );
}

/// The `file://` remote is written like the local store: for every object a push leaves in
/// the remote's directory, strace shows its staged file fsynced, then linked or renamed into
/// place, then the directory fsynced, all by one thread.
#[test]
fn file_remote_writes_are_fsynced() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let r = remote(Kind::File, t, "fsync");
    let a = clone_source(t, "a");
    add_remote(t, &a, &r);
    let log = t.join("strace.log");
    let traced = Command::new("strace")
        .args(["-f", "-y", "-qq", "-o"])
        .arg(&log)
        .args(["-e", "trace=fsync,link,linkat,rename,renameat,renameat2"])
        .arg(uinfo_bin())
        .arg("--store")
        .arg(&a)
        .args(["push", "tiny.toml", "-q"])
        .current_dir(t)
        .output()
        .expect("this test needs strace (apt-get install strace)");
    assert!(traced.status.success(), "{}", stderr(&traced));
    let calls = syscalls(&std::fs::read_to_string(&log).unwrap());
    let dir = r.dir.as_ref().unwrap().canonicalize().unwrap();
    let written: Vec<PathBuf> = snapshot(&dir).into_iter().map(|(p, _, _)| p).collect();
    assert!(written.len() > source().nodes, "{} objects", written.len());
    for object in &written {
        let object = object.to_str().unwrap();
        let parent = Path::new(object).parent().unwrap().to_str().unwrap();
        let staged = format!("<{object}#");
        let synced = calls
            .iter()
            .position(|(_, c)| c.starts_with("fsync(") && c.contains(&staged))
            .unwrap_or_else(|| panic!("{object}: its staged file was never fsynced"));
        let thread = &calls[synced].0;
        let target = format!("\"{object}\"");
        let placed = (synced..calls.len())
            .find(|&i| &calls[i].0 == thread && is_link_or_rename(&calls[i].1))
            .filter(|&i| calls[i].1.contains(&target))
            .unwrap_or_else(|| panic!("{object}: not linked into place after its fsync"));
        let parent_fd = format!("<{parent}>");
        (placed..calls.len())
            .find(|&i| {
                &calls[i].0 == thread
                    && calls[i].1.starts_with("fsync(")
                    && calls[i].1.contains(&parent_fd)
            })
            .unwrap_or_else(|| panic!("{object}: its directory was not fsynced after the link"));
    }
}

/// strace lines as (thread id, call).
fn syscalls(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(tid, call)| (tid.to_string(), call.trim_start().to_string()))
        .collect()
}

fn is_link_or_rename(call: &str) -> bool {
    call.starts_with("link") || call.starts_with("rename")
}
