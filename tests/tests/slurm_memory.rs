//! A Slurm job that exceeds its `mem` is reported as out of memory with its log path. Its own
//! test binary: it restarts the cluster with cgroup memory enforcement
//! (`SLURM_LOCAL_CGROUP=1`), and back without it when done.

use uinfo_tests::{slurm_up, stderr, stdout, uinfo};

/// Restores the cluster without cgroups, even when the test fails.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        slurm_up(false);
    }
}

#[test]
fn a_job_over_its_memory_is_reported_as_out_of_memory_with_its_log() {
    slurm_up(true);
    let _restore = Restore;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Three million examples: over 100 MB for the dataset node, given 40 MB.
    std::fs::write(
        d.join("big.toml"),
        "name = \"big\"\n[dataset]\nn = 3000000\n[train]\nepochs = 1\n[resources.dataset]\nmem = \"40M\"\n",
    )
    .unwrap();
    let o = uinfo(
        d,
        &d.join("store"),
        &["run", "--executor", "slurm", "big.toml"],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    let line = out
        .lines()
        .find(|l| l.starts_with("failed: dataset: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("ran out of memory") && line.contains("OUT_OF_MEMORY"),
        "{line}"
    );
    let log = line.rsplit("log ").next().unwrap();
    assert!(
        std::path::Path::new(log).is_file(),
        "{log} is the job's log"
    );
}
