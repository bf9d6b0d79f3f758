//! The claims table grouped by claim, with each condition's numbers as text, for the report.

use anyhow::Result;
use stages::table::Table;

/// The columns of a claim's conditions in the report.
pub const HEADER: [&str; 6] = [
    "condition",
    "configuration",
    "mean [95% interval]",
    "threshold",
    "seeds",
    "outcome",
];

/// One claim as the report shows it.
pub struct ClaimView {
    /// `C1` … `C5`.
    pub id: String,
    /// What the claim says.
    pub statement: String,
    /// Its verdict.
    pub verdict: String,
    /// Why it was not evaluated, or how many seeds would decide it.
    pub note: String,
    /// Its conditions, as cells under [`HEADER`].
    pub rows: Vec<[String; 6]>,
}

/// The claims in table order, each with its conditions.
pub fn grouped(t: &Table) -> Result<Vec<ClaimView>> {
    let mut out: Vec<ClaimView> = Vec::new();
    if t.rows() == 0 {
        return Ok(out);
    }
    let text = |c: &str| t.str(c);
    let (id, statement, verdict, note, condition, config, comparison, outcome) = (
        text("claim")?,
        text("statement")?,
        text("verdict")?,
        text("note")?,
        text("condition")?,
        text("config")?,
        text("comparison")?,
        text("outcome")?,
    );
    let (mean, lower, upper, threshold) = (
        t.opt_f64("mean")?,
        t.opt_f64("lower")?,
        t.opt_f64("upper")?,
        t.opt_f64("threshold")?,
    );
    let seeds = t.i64("n_seeds")?;
    for i in 0..t.rows() {
        if out.last().is_none_or(|c| c.id != id[i]) {
            out.push(ClaimView {
                id: id[i].clone(),
                statement: statement[i].clone(),
                verdict: verdict[i].clone(),
                note: note[i].clone(),
                rows: Vec::new(),
            });
        }
        if condition[i].is_empty() {
            continue;
        }
        let value = match (mean[i], lower[i], upper[i]) {
            (Some(m), Some(lo), Some(hi)) if lo == hi => format!("{m:.3}"),
            (Some(m), Some(lo), Some(hi)) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
            (Some(m), _, _) => format!("{m:.3} (no interval)"),
            _ => "not measured".into(),
        };
        let limit = threshold[i]
            .map(|v| format!("{} {v:.3}", comparison[i]))
            .unwrap_or_default();
        if let Some(claim) = out.last_mut() {
            claim.rows.push([
                condition[i].clone(),
                config[i].clone(),
                value,
                limit,
                seeds[i].to_string(),
                outcome[i].clone(),
            ]);
        }
    }
    Ok(out)
}
