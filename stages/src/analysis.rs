//! The analyze stage (SPEC §3.3): joins every probe table and training log of an experiment with
//! the runs they belong to, and derives the `usable_info`, `summary`, `claims` and `training_log`
//! tables. The claims are judged by [`crate::claims`] on the measurements alone.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::claims::{self, ConfigInfo, Evidence, TaskClaims};
use crate::series::Series;
use crate::table::{Table, Values};

/// A run parameter's value, typed for its table column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integer parameter.
    I64(i64),
    /// A float parameter.
    F64(f64),
    /// A string parameter.
    Str(String),
}

impl std::fmt::Display for ParamValue {
    /// The value as it appears in run ids, e.g. `0.05`, `32`, `coherence`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::I64(x) => write!(f, "{x}"),
            ParamValue::F64(x) => write!(f, "{x}"),
            ParamValue::Str(x) => f.write_str(x),
        }
    }
}

/// One training run of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Run id, e.g. `batch=32,seed=0`.
    pub id: String,
    /// The configuration: the run id without the seed.
    pub config: String,
    /// Seed.
    pub seed: u64,
    /// The swept parameters, one table column each.
    pub params: Vec<(String, ParamValue)>,
    /// lr / batch of the run's last phase: the SGD noise scale that orders regimes for C2 and C3.
    pub noise_scale: f64,
}

/// Everything the analysis reads.
pub struct AnalysisInput {
    /// Experiment name.
    pub experiment: String,
    /// Runs.
    pub runs: Vec<RunInfo>,
    /// (run index, probe table) for every probed checkpoint of every run.
    pub probes: Vec<(usize, Table)>,
    /// (run index, training log) for every segment of every run.
    pub logs: Vec<(usize, Table)>,
    /// Per run: the most bits any decoder can read about the label the network is trained on.
    pub ceiling_bits: Vec<f64>,
    /// Which labels the claims are about, and their thresholds.
    pub task: TaskClaims,
    /// The run parameter that varies an initial phase of training (for C4), if any.
    pub perturb_axis: Option<String>,
}

/// The analysis tables.
pub struct Analysis {
    /// One row per measurement.
    pub usable_info: Table,
    /// Per configuration × layer × label × decoder, seeds aggregated.
    pub summary: Table,
    /// The paper's claims: one row per condition, with measured numbers and verdicts.
    pub claims: Table,
    /// Per run and epoch training metrics.
    pub training_log: Table,
}

/// Mean and 95% Student-t interval of a sample (interval collapses to the mean for one value).
pub fn mean_ci95(xs: &[f64]) -> (f64, f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, mean, mean);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_975(n - 1) * (var / n as f64).sqrt();
    (mean, mean - half, mean + half)
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.saturating_sub(1)).copied().unwrap_or(1.96)
}

fn run_columns(t: &mut Table, experiment: &str, runs: &[RunInfo], rows: &[usize], with_seed: bool) {
    t.push(
        "experiment",
        Values::Str(vec![experiment.to_string(); rows.len()]),
    );
    if with_seed {
        t.push(
            "run_id",
            Values::Str(rows.iter().map(|&r| runs[r].id.clone()).collect()),
        );
    }
    t.push(
        "config",
        Values::Str(rows.iter().map(|&r| runs[r].config.clone()).collect()),
    );
    if let Some(first) = runs.first() {
        for (k, (name, _)) in first.params.iter().enumerate() {
            let all: Vec<&ParamValue> = runs.iter().map(|r| &r.params[k].1).collect();
            let values: Vec<&ParamValue> = rows.iter().map(|&r| &runs[r].params[k].1).collect();
            t.push(name, param_column(&all, &values));
        }
    }
    if with_seed {
        t.push(
            "seed",
            Values::I64(rows.iter().map(|&r| runs[r].seed as i64).collect()),
        );
    }
}

/// A parameter's column of `values`: integers when every run's value (`all`) is one, floats when
/// every value is a number, text otherwise. Its type never depends on which runs the rows hold.
fn param_column(all: &[&ParamValue], values: &[&ParamValue]) -> Values {
    let number = |v: &ParamValue| match v {
        ParamValue::I64(x) => Some(*x as f64),
        ParamValue::F64(x) => Some(*x),
        ParamValue::Str(_) => None,
    };
    if all.iter().all(|v| matches!(v, ParamValue::I64(_))) {
        Values::I64(
            values
                .iter()
                .map(|v| number(v).unwrap_or_default() as i64)
                .collect(),
        )
    } else if all.iter().all(|v| number(v).is_some()) {
        Values::F64(values.iter().map(|v| number(v)).collect())
    } else {
        Values::Str(values.iter().map(|v| v.to_string()).collect())
    }
}

/// Prefixes `table` with the run columns of the given run for each of its rows. Where a run
/// parameter has the name of one of the table's columns (a training log's `lr` or `batch`), the
/// table's own column is kept: it holds the value actually used, and `config` still names the run.
fn with_run(experiment: &str, runs: &[RunInfo], run: usize, table: &Table) -> Table {
    let mut t = Table::default();
    run_columns(&mut t, experiment, runs, &vec![run; table.rows()], true);
    t.columns.retain(|(name, _)| table.column(name).is_err());
    t.columns.extend(table.columns.iter().cloned());
    t
}

/// Builds all analysis tables.
pub fn analyze(input: &AnalysisInput) -> Result<Analysis> {
    let exp = &input.experiment;
    let usable_info = in_run_order(exp, &input.runs, &input.probes)?;
    let training_log = in_run_order(exp, &input.runs, &input.logs)?;
    let series = Series::from_usable_info(&usable_info)?;
    let summary = summary_table(exp, &input.runs, &series);
    let evidence = Evidence {
        configs: configs(&input.runs, &input.ceiling_bits),
        task: input.task.clone(),
        perturb_axis: input.perturb_axis.clone(),
        series,
    };
    let claims = claims::to_table(&claims::check_all(&evidence));
    Ok(Analysis {
        usable_info,
        summary,
        claims,
        training_log,
    })
}

/// The tables of every run, each prefixed with its run's columns, ordered by run and epoch.
fn in_run_order(exp: &str, runs: &[RunInfo], tables: &[(usize, Table)]) -> Result<Table> {
    let mut sorted: Vec<&(usize, Table)> = tables.iter().collect();
    sorted.sort_by_key(|(r, t)| {
        (
            *r,
            t.i64("epoch")
                .ok()
                .and_then(|e| e.first().copied())
                .unwrap_or(0),
        )
    });
    Table::concat(
        &sorted
            .iter()
            .map(|(r, t)| with_run(exp, runs, *r, t))
            .collect::<Vec<_>>(),
    )
}

/// The configurations of the runs, in order of first appearance.
fn configs(runs: &[RunInfo], ceilings: &[f64]) -> Vec<ConfigInfo> {
    let mut out: Vec<ConfigInfo> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if !out.iter().any(|c| c.name == r.config) {
            out.push(ConfigInfo {
                name: r.config.clone(),
                noise_scale: r.noise_scale,
                params: r.params.clone(),
                ceiling_bits: ceilings.get(i).copied().unwrap_or(f64::NAN),
            });
        }
    }
    out
}

/// Per (config, layer, label, decoder): initial, peak and final bits with 95% intervals over
/// seeds, the peak read per seed at the checkpoint where the seed-mean curve is highest, and the
/// shuffled-label null where it was measured.
fn summary_table(exp: &str, runs: &[RunInfo], series: &Series) -> Table {
    let mut rep_run = Vec::new();
    let mut text: [Vec<String>; 3] = Default::default();
    let mut ints: [Vec<i64>; 4] = Default::default();
    let mut stats: [Vec<Option<f64>>; 11] = Default::default();
    for key in series.keys() {
        let (Some(curve), Some(run)) = (
            series.curve(key),
            runs.iter().position(|r| r.config == key.0),
        ) else {
            continue;
        };
        rep_run.push(run);
        for (col, v) in text.iter_mut().zip([&key.2, &key.3, &key.4]) {
            col.push(v.clone());
        }
        let (peak, last) = (curve.peak(), curve.last());
        let n = curve.seeds.len() as i64;
        for (col, v) in ints
            .iter_mut()
            .zip([key.1, curve.epochs[peak], curve.epochs[last], n])
        {
            col.push(v);
        }
        let mut values = Vec::new();
        for at in [0, peak, last] {
            let (m, lo, hi) = mean_ci95(&curve.at(at));
            values.extend([m, lo, hi].map(Some));
        }
        let null = &curve.null;
        values.push((!null.is_empty()).then(|| null.iter().sum::<f64>() / null.len() as f64));
        values.push(null.iter().copied().reduce(f64::max));
        for (col, v) in stats.iter_mut().zip(values) {
            col.push(v);
        }
    }
    let mut t = Table::default();
    run_columns(&mut t, exp, runs, &rep_run, false);
    let [layer_index, peak_epoch, final_epoch, n_seeds] = ints;
    let [layer, label, decoder] = text;
    t.push("layer_index", Values::I64(layer_index));
    t.push("layer", Values::Str(layer));
    t.push("label", Values::Str(label));
    t.push("decoder", Values::Str(decoder));
    let names = ["initial_bits", "peak_bits", "final_bits"]
        .iter()
        .flat_map(|n| ["mean", "lower", "upper"].map(|s| format!("{n}_{s}")))
        .chain(["null_bits_mean".to_string(), "null_bits_max".to_string()]);
    let mut stats = names.zip(stats).collect::<Vec<_>>();
    let nulls = stats.split_off(9);
    for (name, values) in stats {
        t.push(&name, Values::F64(values));
    }
    t.push("peak_epoch", Values::I64(peak_epoch));
    t.push("final_epoch", Values::I64(final_epoch));
    t.push("n_seeds", Values::I64(n_seeds));
    for (name, values) in nulls {
        t.push(&name, Values::F64(values));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_column_holds_every_runs_value_whatever_its_type() {
        let run = |id: &str, v: ParamValue| RunInfo {
            id: id.into(),
            config: id.into(),
            seed: 0,
            params: vec![("lr".into(), v)],
            noise_scale: 1.0,
        };
        let runs = [
            run("lr=0.1", ParamValue::F64(0.1)),
            run("lr=1", ParamValue::I64(1)),
            run("lr=fast", ParamValue::Str("fast".into())),
        ];
        let mut t = Table::default();
        run_columns(&mut t, "e", &runs[..2], &[0, 1], false);
        assert_eq!(
            t.column("lr").unwrap(),
            &Values::F64(vec![Some(0.1), Some(1.0)])
        );
        let mut t = Table::default();
        run_columns(&mut t, "e", &runs, &[2, 1], false);
        assert_eq!(
            t.column("lr").unwrap(),
            &Values::Str(vec!["fast".into(), "1".into()])
        );
    }

    #[test]
    fn interval_of_three_values() {
        let (m, lo, hi) = mean_ci95(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12);
        assert!((hi - m - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert!((m - lo - (hi - m)).abs() < 1e-12);
    }
}
