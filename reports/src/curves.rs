//! Curves read from the analysis tables: usable information and training metrics per epoch,
//! aggregated over seeds (mean and 95% interval).

use std::collections::BTreeMap;

use anyhow::Result;
use stages::analysis::mean_ci95;
use stages::table::Table;

/// One aggregated point: epoch, mean, lower, upper.
pub type Point = (f64, f64, f64, f64);

/// Bits vs epoch for one configuration: layer (index, name) → label → points.
pub type BitsCurves = BTreeMap<(i64, String), BTreeMap<String, Vec<Point>>>;

/// Values per epoch, one per seed.
type Samples = BTreeMap<i64, Vec<f64>>;

fn aggregate(samples: Samples) -> Vec<Point> {
    samples
        .into_iter()
        .map(|(e, xs)| {
            let (m, lo, hi) = mean_ci95(&xs);
            (e as f64, m, lo, hi)
        })
        .collect()
}

/// The decoder the figures show: `linear` when measured, else the first one.
pub fn preferred_decoder(usable: &Table) -> Result<Option<String>> {
    if usable.rows() == 0 {
        return Ok(None);
    }
    let decoders = usable.str("decoder")?;
    Ok(decoders
        .iter()
        .find(|d| *d == "linear")
        .or(decoders.first())
        .cloned())
}

/// Configurations in table order of first appearance, sorted.
pub fn configs(t: &Table) -> Result<Vec<String>> {
    if t.rows() == 0 {
        return Ok(Vec::new());
    }
    let mut c = t.str("config")?;
    c.sort();
    c.dedup();
    Ok(c)
}

/// Runs whose training diverged, with the first status that says so (none when the table has
/// no `status` column).
pub fn diverged_runs(usable: &Table) -> Result<Vec<(String, String)>> {
    let (Ok(status), Ok(ids)) = (usable.str("status"), usable.str("run_id")) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (id, st) in ids.into_iter().zip(status) {
        if st != "ok" && !out.iter().any(|(r, _)| *r == id) {
            out.push((id, st));
        }
    }
    Ok(out)
}

/// Bits vs epoch per layer and label, for one configuration and decoder (diverged runs left out).
pub fn bits(usable: &Table, config: &str, decoder: &str) -> Result<BitsCurves> {
    let (cfg, dec, li, layer, label, epoch, bits) = (
        usable.str("config")?,
        usable.str("decoder")?,
        usable.i64("layer_index")?,
        usable.str("layer")?,
        usable.str("label")?,
        usable.i64("epoch")?,
        usable.f64("bits")?,
    );
    let diverged: Vec<String> = diverged_runs(usable)?.into_iter().map(|(r, _)| r).collect();
    let ids = if diverged.is_empty() {
        Vec::new()
    } else {
        usable.str("run_id")?
    };
    let excluded = |i: usize| !diverged.is_empty() && diverged.contains(&ids[i]);
    let mut raw: BTreeMap<(i64, String), BTreeMap<String, Samples>> = BTreeMap::new();
    for i in 0..usable.rows() {
        if cfg[i] == config && dec[i] == decoder && !excluded(i) {
            raw.entry((li[i], layer[i].clone()))
                .or_default()
                .entry(label[i].clone())
                .or_default()
                .entry(epoch[i])
                .or_default()
                .push(bits[i]);
        }
    }
    Ok(raw
        .into_iter()
        .map(|(k, labels)| {
            (
                k,
                labels.into_iter().map(|(l, s)| (l, aggregate(s))).collect(),
            )
        })
        .collect())
}

/// Training metrics per epoch for one configuration: metric name → points.
pub fn training(log: &Table, config: &str) -> Result<BTreeMap<String, Vec<Point>>> {
    let mut out = BTreeMap::new();
    if log.rows() == 0 {
        return Ok(out);
    }
    let cfg = log.str("config")?;
    let epoch = log.i64("epoch")?;
    for metric in ["train_loss", "val_loss", "train_accuracy", "val_accuracy"] {
        let values = log.f64(metric)?;
        let mut s: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for i in 0..log.rows() {
            if cfg[i] == config {
                s.entry(epoch[i]).or_default().push(values[i]);
            }
        }
        out.insert(metric.to_string(), aggregate(s));
    }
    Ok(out)
}

/// The (lowest, highest) shuffled-label null bits per layer, for one configuration (or all, with
/// `None`) and decoder; empty when no null was measured.
pub fn null_bands(
    usable: &Table,
    config: Option<&str>,
    decoder: &str,
) -> Result<BTreeMap<(i64, String), (f64, f64)>> {
    let mut out: BTreeMap<(i64, String), (f64, f64)> = BTreeMap::new();
    if usable.rows() == 0 {
        return Ok(out);
    }
    let (cfg, dec, li, layer, null) = (
        usable.str("config")?,
        usable.str("decoder")?,
        usable.i64("layer_index")?,
        usable.str("layer")?,
        usable.f64("null_bits")?,
    );
    for i in 0..usable.rows() {
        if dec[i] == decoder && config.is_none_or(|c| c == cfg[i]) && null[i].is_finite() {
            let band = out
                .entry((li[i], layer[i].clone()))
                .or_insert((null[i], null[i]));
            *band = (band.0.min(null[i]), band.1.max(null[i]));
        }
    }
    Ok(out)
}
