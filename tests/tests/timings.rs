//! `timings.parquet`: each node's seconds are its own computation, not its wait for a slot.

use std::time::Instant;

use stages::table::Table;
use uinfo_tests::{stderr, tiny, uinfo};

#[test]
fn node_seconds_with_one_job_add_up_to_less_than_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // Decoders of the default length, so that computing, not writing outputs, fills the run.
    let text = tiny("", "").replace("steps = 60", "steps = 300");
    std::fs::write(dir.path().join("tiny.toml"), text).unwrap();
    let store = dir.path().join("store");
    let start = Instant::now();
    let o = uinfo(dir.path(), &store, &["run", "-q", "-j", "1", "tiny.toml"]);
    let wall = start.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", stderr(&o));
    let timings =
        Table::from_parquet(&std::fs::read(store.join("out/tiny/timings.parquet")).unwrap())
            .unwrap();
    let seconds = timings.f64("seconds").unwrap();
    assert!(seconds.len() > 20 && seconds.iter().all(|&s| s > 0.0));
    // One node computes at a time while another worker waits for the slot (the wait counted, the
    // sum was 1.8 times the run); a node writes its outputs after giving the slot back, beside
    // the next one's computation (1.15 times here).
    let sum: f64 = seconds.iter().sum();
    assert!(sum < 1.5 * wall, "{sum:.2} s of nodes in a {wall:.2} s run");
}
