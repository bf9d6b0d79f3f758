//! `uinfo run --executor slurm` against a real one-host Slurm cluster (scripts/slurm-local.sh:
//! slurmctld, three slurmd emulating nodes n1-n3, slurmdbd for `sacct`): the same tables as a
//! local run, resources as asked, a cancelled job, a killed driver whose jobs are adopted, and a
//! panicking stage, locally and in a job.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uinfo_tests::{slurm_up, stderr, stdout, tiny, uinfo, uinfo_bin, uinfo_env};

const TABLES: [&str; 5] = [
    "usable_info.parquet",
    "summary.parquet",
    "claims.parquet",
    "training_log.parquet",
    "report.md",
];

/// The tiny experiment with resources for training; `slow` makes each run's chain take
/// seconds (for tests that act while a job runs).
fn experiment(dir: &Path, slow: bool) {
    let mut text = tiny("", "");
    if slow {
        text = text
            .replace("n = 2000", "n = 20000")
            .replace("epochs = 4", "epochs = 24");
        text = text.replace("checkpoints = [0, 1, 2, 3, 4]", "checkpoints = [0, 12, 24]");
    }
    text.push_str("[resources.train]\nmem = \"500M\"\ncpus = 1\ntime = \"10\"\n");
    std::fs::write(dir.join("exp.toml"), text).unwrap();
}

fn same_tables(a: &Path, b: &Path) {
    for t in TABLES {
        let read = |s: &Path| std::fs::read(s.join("out/tiny").join(t)).unwrap();
        assert!(
            read(a) == read(b),
            "{t} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Job ids the driver reported submitting or adopting.
fn job_ids(err: &str) -> Vec<String> {
    err.lines()
        .filter_map(|l| {
            l.strip_prefix("submitted job ")
                .or_else(|| l.strip_prefix("adopted job "))
        })
        .filter_map(|l| l.split([':', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// sacct's fields for a job: JobName, State, ReqMem, ReqCPUS, Timelimit.
fn sacct(id: &str) -> Vec<String> {
    // Accounting lags the controller by a moment.
    for _ in 0..50 {
        let o = Command::new("sacct")
            .args([
                "-n",
                "-X",
                "-P",
                "-o",
                "JobName,State,ReqMem,ReqCPUS,Timelimit",
                "-j",
                id,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        // Until slurmdbd has the job's whole record it reports a placeholder named
        // `allocation` (no memory, no CPUs), already COMPLETED.
        if let Some(l) = text.lines().next() {
            let f: Vec<String> = l.split('|').map(str::to_string).collect();
            let settled = !l.contains("RUNNING") && !l.contains("PENDING");
            if settled && f[0] != "allocation" {
                return f;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("sacct does not know job {id}");
}

/// Starts `uinfo run --executor slurm exp.toml` in `dir` with extra environment variables.
fn spawn_run(dir: &Path, store: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(uinfo_bin())
        .current_dir(dir)
        .arg("--store")
        .arg(store)
        .args(["run", "--executor", "slurm", "exp.toml"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// This store's jobs in the queue: (id, name, state).
fn queue(store: &Path) -> Vec<(String, String, String)> {
    let id: String = serde_json::from_str(
        &std::fs::read_to_string(store.join("id.json")).unwrap_or_else(|_| "\"\"".into()),
    )
    .unwrap();
    let o = Command::new("squeue")
        .args(["-h", "-o", "%i|%j|%T|%k"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !id.is_empty() && l.contains(&format!("uinfo:{id}:")))
        .filter_map(|l| {
            let p: Vec<&str> = l.split('|').collect();
            Some((
                p.first()?.to_string(),
                p.get(1)?.to_string(),
                p.get(2)?.to_string(),
            ))
        })
        .collect()
}

/// Waits until one of the store's jobs whose name contains `name` runs; returns its id.
fn running_job(store: &Path, name: &str) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Some((id, _, _)) = queue(store)
            .into_iter()
            .find(|(_, n, s)| n.contains(name) && s == "RUNNING")
        {
            return id;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no job {name} ran within 2 minutes");
}

fn finish(child: Child) -> std::process::Output {
    child.wait_with_output().unwrap()
}

#[test]
fn a_slurm_run_gives_the_local_tables_with_the_resources_asked() {
    slurm_up(false);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    experiment(d, false);
    let (local, slurm) = (d.join("local"), d.join("slurm"));
    let o = uinfo(d, &local, &["run", "-q", "-j", "2", "exp.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = uinfo(d, &slurm, &["run", "--executor", "slurm", "exp.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    same_tables(&local, &slurm);
    let ids = job_ids(&stderr(&o));
    // dataset, two inits, four runs' chains, analyze, report
    assert_eq!(ids.len(), 9, "{}", stderr(&o));
    let mut trained = 0;
    let mut seen = Vec::new();
    for id in &ids {
        let f = sacct(id);
        seen.push((id.clone(), f.clone()));
        assert_eq!(f[1], "COMPLETED", "job {id}: {f:?}");
        if f[0].contains("batch=") {
            trained += 1;
            assert_eq!(
                (f[2].as_str(), f[4].as_str()),
                ("500M", "00:10:00"),
                "job {id}: {f:?}"
            );
        }
    }
    assert_eq!(trained, 4, "one job per run; sacct said {seen:?}");
    // Nothing left to do, and a node-per-job run of a changed probe reuses the rest.
    let o = uinfo(d, &slurm, &["run", "--executor", "slurm", "exp.toml"]);
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
}

#[test]
fn a_cancelled_job_fails_its_nodes_and_the_rerun_computes_only_those() {
    slurm_up(false);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    experiment(d, true);
    let store = d.join("store");
    // The victim's first node waits until the cancel lands: a job that finished first would
    // leave nothing to fail.
    let child = spawn_run(d, &store, &[("UINFO_TEST_STALL", "train/batch=32,seed=0/")]);
    let victim = running_job(&store, "batch=32,seed=0");
    assert!(Command::new("scancel")
        .arg(&victim)
        .status()
        .unwrap()
        .success());
    let o = finish(child);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("failed: train/batch=32,seed=0/")
            && out.contains(&format!("Slurm job {victim} was cancelled"))
            && out.contains(&format!("{victim}.out")),
        "{out}"
    );
    // The other runs finished.
    let o = uinfo(d, &store, &["status", "exp.toml"]);
    let text = stdout(&o);
    let to_run: Vec<&str> = text.lines().filter(|l| l.starts_with("run ")).collect();
    assert!(
        to_run.iter().all(|l| l.contains("batch=32,seed=0")
            || l.contains("analyze")
            || l.contains("report")),
        "{text}"
    );
    let missing = to_run.len();
    let o = uinfo(d, &store, &["run", "--executor", "slurm", "exp.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("computed {missing} nodes")),
        "{missing} missing: {}",
        stdout(&o)
    );
}

#[test]
fn a_new_driver_adopts_the_jobs_of_a_killed_one_and_no_node_runs_twice() {
    slurm_up(false);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    experiment(d, true);
    let store = d.join("store");
    let mut child = spawn_run(d, &store, &[]);
    running_job(&store, "batch=");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!queue(&store).is_empty(), "jobs outlive their driver");
    let o = uinfo(d, &store, &["run", "--executor", "slurm", "exp.toml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("adopted job "), "{err}");
    // Count from the jobs' logs: every node computed once.
    let mut computed = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(store.join("slurm")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for l in text.lines().filter_map(|l| l.strip_prefix("computed: ")) {
            let node = l.split(" (").next().unwrap().to_string();
            *computed.entry(node).or_default() += 1;
        }
    }
    assert!(computed.len() > 20, "{computed:?}");
    let twice: Vec<_> = computed.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "ran twice: {twice:?}");
}

#[test]
fn a_panicking_stage_fails_its_node_locally_and_in_a_job_without_hanging() {
    slurm_up(false);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    experiment(d, false);
    let panic = vec![(
        "UINFO_TEST_PANIC".to_string(),
        "train/batch=256,seed=1/e1-2".to_string(),
    )];
    for (store, args) in [
        ("local", vec!["run", "-j", "2", "exp.toml"]),
        ("slurm", vec!["run", "--executor", "slurm", "exp.toml"]),
    ] {
        let start = Instant::now();
        let o = uinfo_env(d, &d.join(store), &args, &panic);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{store}: {out}\n{}", stderr(&o));
        assert!(
            out.contains("failed: train/batch=256,seed=1/e1-2")
                && out.contains("panicked: test panic in node train/batch=256,seed=1/e1-2"),
            "{store}: {out}"
        );
        assert!(out.contains("0 cut off early, 1 failed"), "{store}: {out}");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{store} took too long"
        );
    }
}

#[test]
fn no_slurm_controller_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    experiment(d, false);
    let o = Command::new(uinfo_bin())
        .current_dir(d)
        .args(["--store", "store", "run", "--executor", "slurm", "exp.toml"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("sinfo") && err.contains("Slurm"), "{err}");
}

#[test]
fn jobs_that_see_the_store_only_through_s3_fetch_and_push_and_give_the_local_tables() {
    slurm_up(false);
    let env = uinfo_tests::s3_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    experiment(d, false);
    let (local, driver) = (d.join("local"), d.join("driver"));
    let o = uinfo(d, &local, &["run", "-q", "-j", "2", "exp.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://cache/slurm-{}-{nanos}", std::process::id());
    let o = uinfo_env(d, &driver, &["remote", "add", "lab", &url], env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = uinfo_env(
        d,
        &driver,
        &["run", "--executor", "slurm", "--remote", "lab", "exp.toml"],
        env,
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    same_tables(&local, &driver);
    // The jobs ran in scratch stores of their own and pushed every result to the remote.
    let ids = job_ids(&stderr(&o));
    for id in &ids {
        let log = std::fs::read_to_string(driver.join("slurm").join(format!("{id}.out"))).unwrap();
        assert!(log.contains("computed: "), "job {id}: {log}");
    }
    let fresh = d.join("fresh");
    let o = uinfo_env(d, &fresh, &["remote", "add", "lab", &url], env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = uinfo_env(d, &fresh, &["run", "--remote", "lab", "exp.toml"], env);
    assert!(
        stdout(&o).contains("computed nothing, fetched"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn ctrl_c_cancels_the_jobs_of_the_run() {
    slurm_up(false);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    experiment(d, true);
    let store = d.join("store");
    let child = spawn_run(d, &store, &[]);
    running_job(&store, "batch=");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = finish(child);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted: cancelled"), "{err}");
    let start = Instant::now();
    while !queue(&store)
        .iter()
        .all(|(_, _, s)| s == "CANCELLED" || s == "COMPLETED")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            queue(&store)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
