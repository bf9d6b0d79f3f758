//! Reports: turns an experiment's analysis tables (claims, summary) into a Markdown report.
//! Reads tables only, never tensors.

use anyhow::Result;
use stages::table::{Table, Values};

/// Renders `report.md`: the claims with their measured numbers and verdicts, then the summary.
pub fn markdown(experiment: &str, claims: &Table, summary: &Table) -> Result<String> {
    let mut s = format!("# uinfo report: {experiment}\n\n");
    s.push_str("Usable information I_u(Z;Y) = H(Y) - CE_test / ln 2, in bits; intervals are 95% Student-t over seeds.\n\n");
    s.push_str("## Claims\n\n");
    s.push_str(&table_md(
        claims,
        &["claim", "statement", "verdict", "measured", "threshold"],
    )?);
    s.push_str("\n## Summary (seeds aggregated)\n\n");
    let cols: Vec<String> = summary
        .columns
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n != "experiment" && !n.ends_with("_lower") && !n.ends_with("_upper"))
        .collect();
    s.push_str(&table_md(
        summary,
        &cols.iter().map(String::as_str).collect::<Vec<_>>(),
    )?);
    Ok(s)
}

fn cell(v: &Values, i: usize) -> String {
    match v {
        Values::F64(x) => x[i].map(|f| format!("{f:.3}")).unwrap_or_default(),
        Values::I64(x) => x[i].to_string(),
        Values::Str(x) => x[i].replace('|', "\\|"),
        Values::Bool(x) => x[i].to_string(),
    }
}

/// A Markdown table of the named columns.
fn table_md(t: &Table, cols: &[&str]) -> Result<String> {
    let values: Vec<&Values> = cols.iter().map(|c| t.column(c)).collect::<Result<_>>()?;
    let mut s = format!(
        "| {} |\n|{}\n",
        cols.join(" | "),
        " --- |".repeat(cols.len())
    );
    for i in 0..t.rows() {
        let row: Vec<String> = values.iter().map(|v| cell(v, i)).collect();
        s.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_claims_rows() {
        let mut claims = Table::default();
        for c in ["claim", "statement", "verdict", "measured", "threshold"] {
            claims.push(c, Values::Str(vec![format!("{c}-x")]));
        }
        let mut summary = Table::default();
        summary.push("experiment", Values::Str(vec!["e".into()]));
        summary.push("peak_bits_mean", Values::F64(vec![Some(0.5)]));
        summary.push("peak_bits_lower", Values::F64(vec![Some(0.4)]));
        let md = markdown("e", &claims, &summary).unwrap();
        assert!(md.contains("| claim-x | statement-x | verdict-x |"));
        assert!(md.contains("| 0.500 |"));
        assert!(!md.contains("0.400"));
    }
}
