//! Faster kernels change the bits, not the science: the default experiment's summary (peak and
//! final bits per configuration, layer and label, each a mean over seeds) stays inside the 95%
//! intervals recorded from the code before the fused kernels (commit 2962821,
//! `tests/fixtures/checkerboard-summary-2962821.csv`).

use stages::table::Table;
use uinfo_tests::{stderr, uinfo};

/// (config, layer, label) → (peak lower, peak upper, final lower, final upper).
fn recorded() -> Vec<((String, String, String), [f64; 4])> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/checkerboard-summary-2962821.csv"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |name: &str| f[col(name)].parse::<f64>().unwrap();
            (
                (f[0].to_string(), f[1].to_string(), f[2].to_string()),
                [
                    num("peak_bits_lower"),
                    num("peak_bits_upper"),
                    num("final_bits_lower"),
                    num("final_bits_upper"),
                ],
            )
        })
        .collect()
}

#[test]
fn default_experiment_stays_within_the_recorded_seed_noise() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let o = uinfo(dir.path(), &store, &["run", "-q", "-j", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(store.join("out/checkerboard/summary.parquet")).unwrap();
    let summary = Table::from_parquet(&bytes).unwrap();
    let (config, layer, label) = (
        summary.str("config").unwrap(),
        summary.str("layer").unwrap(),
        summary.str("label").unwrap(),
    );
    let (peak, last) = (
        summary.f64("peak_bits_mean").unwrap(),
        summary.f64("final_bits_mean").unwrap(),
    );
    let recorded = recorded();
    assert_eq!(recorded.len(), 12);
    let mut outside = Vec::new();
    for (key, [pl, pu, fl, fu]) in &recorded {
        let i = (0..summary.rows())
            .find(|&i| (&config[i], &layer[i], &label[i]) == (&key.0, &key.1, &key.2))
            .unwrap_or_else(|| panic!("{key:?} missing from the summary"));
        let (p, f) = (peak[i], last[i]);
        if !(*pl..=*pu).contains(&p) {
            outside.push(format!("{key:?}: peak {p} outside [{pl}, {pu}]"));
        }
        if !(*fl..=*fu).contains(&f) {
            outside.push(format!("{key:?}: final {f} outside [{fl}, {fu}]"));
        }
    }
    assert!(outside.is_empty(), "{}", outside.join("\n"));
}
