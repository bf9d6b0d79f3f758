//! Reports: turn an experiment's analysis tables into figures (PNG and SVG), `report.md` and a
//! self-contained `report.html`. Reads tables only, never tensors, so every figure can be
//! regenerated from the Parquet files alone.

mod claims;
mod curves;
mod figures;
mod html;

pub use curves::diverged_runs;

use anyhow::Result;
use stages::table::{Table, Values};

/// Everything a report is made of.
pub struct ReportInput<'a> {
    /// Experiment name.
    pub experiment: &'a str,
    /// One-line description.
    pub description: &'a str,
    /// The experiment file's text (its settings).
    pub settings: &'a str,
    /// The `usable_info` table.
    pub usable_info: &'a Table,
    /// The `summary` table.
    pub summary: &'a Table,
    /// The `claims` table.
    pub claims: &'a Table,
    /// The `training_log` table.
    pub training_log: &'a Table,
    /// The label the network is trained on (e.g. `direction`).
    pub relevant: &'a str,
    /// The meaningful label the output does not need (e.g. `color`).
    pub irrelevant: &'a str,
}

/// A produced figure: its file stem (under `figures/`), caption and bytes.
struct Rendered {
    stem: String,
    caption: String,
    figure: figures::Figure,
}

/// The tables linked next to the report, with what each holds.
const TABLES: [(&str, &str); 5] = [
    ("usable_info.parquet", "one row per measurement (run, epoch, layer, label, decoder), with the shuffled-label null where measured"),
    ("summary.parquet", "per configuration, layer, label and decoder: initial, peak and final bits with 95% intervals, epoch of the peak, the null"),
    ("claims.parquet", "the paper's claims: one row per condition, with mean, 95% interval, threshold, outcome and the claim's verdict"),
    ("training_log.parquet", "per run and epoch: lr, batch, losses, accuracies"),
    ("timings.parquet", "per node: where, when and how long it was computed (written by the run; not a cached result)"),
];

/// A file name fragment from a configuration name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=.-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn figures(r: &ReportInput) -> Result<Vec<Rendered>> {
    let mut out = Vec::new();
    let Some(decoder) = curves::preferred_decoder(r.usable_info)? else {
        return Ok(out);
    };
    for config in curves::configs(r.usable_info)? {
        let bits = curves::bits(r.usable_info, &config, &decoder)?;
        let null = curves::null_bands(r.usable_info, Some(&config), &decoder)?;
        out.push(Rendered {
            stem: format!("bits-{}", slug(&config)),
            caption: format!("{config}: usable information (bits) vs epoch per probed layer, mean over seeds with 95% band; grey: the shuffled-label null"),
            figure: figures::bits_vs_epoch(&config, &decoder, &bits, &null)?,
        });
    }
    if let Some(compare) = comparison(r, &decoder)? {
        out.push(compare);
    }
    if let Some(grid) = grid(r.summary, &decoder, r.irrelevant)? {
        out.push(grid);
    }
    for config in curves::configs(r.training_log)? {
        let metrics = curves::training(r.training_log, &config)?;
        out.push(Rendered {
            stem: format!("training-{}", slug(&config)),
            caption: format!("{config}: training and validation loss and accuracy, mean over seeds with 95% band"),
            figure: figures::training_curves(&config, &metrics)?,
        });
    }
    Ok(out)
}

/// The irrelevant and relevant labels at each configuration's last probed layer (the
/// penultimate layer of a convolutional network), every configuration on one axis.
fn comparison(r: &ReportInput, decoder: &str) -> Result<Option<Rendered>> {
    let mut layers: Vec<String> = Vec::new();
    let mut per_config = Vec::new();
    for c in curves::configs(r.usable_info)? {
        let bits = curves::bits(r.usable_info, &c, decoder)?;
        if let Some((last, labels)) = bits.into_iter().max_by_key(|(k, _)| k.0) {
            layers.push(last.1.clone());
            per_config.push((c, last, labels));
        }
    }
    layers.sort();
    layers.dedup();
    let panels: Vec<figures::ComparisonPanel> = [r.irrelevant, r.relevant]
        .iter()
        .map(|label| {
            let lines = per_config
                .iter()
                .filter_map(|(c, _, labels)| Some((c.clone(), labels.get(*label)?.clone())))
                .collect::<Vec<_>>();
            (label.to_string(), lines)
        })
        .filter(|(_, lines)| !lines.is_empty())
        .collect();
    if panels.is_empty() {
        return Ok(None);
    }
    let bands = curves::null_bands(r.usable_info, None, decoder)?;
    let null = per_config
        .iter()
        .filter_map(|(_, last, _)| bands.get(last).copied())
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let place = layers.join(" / ");
    Ok(Some(Rendered {
        stem: format!("compare-{}", slug(&layers.join("-"))),
        caption: format!("{place}: {} beside {} bits vs epoch, every configuration on one axis (mean over seeds with 95% band; grey: the shuffled-label null)", r.irrelevant, r.relevant),
        figure: figures::comparison(
            &format!("{place}: every configuration ({decoder} decoder)"),
            &panels,
            null,
        )?,
    }))
}

/// The lr × batch grid of the irrelevant label's final bits at the last probed layer, when both
/// are swept.
fn grid(summary: &Table, decoder: &str, irrelevant: &str) -> Result<Option<Rendered>> {
    let (Ok(lr), Ok(batch)) = (summary.column("lr"), summary.column("batch")) else {
        return Ok(None);
    };
    let (Values::F64(lr), Values::I64(batch)) = (lr, batch) else {
        return Ok(None);
    };
    let (li, label, dec, fin) = (
        summary.i64("layer_index")?,
        summary.str("label")?,
        summary.str("decoder")?,
        summary.f64("final_bits_mean")?,
    );
    let last = li.iter().copied().max().unwrap_or(0);
    let mut lrs: Vec<f64> = lr.iter().flatten().copied().collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    let mut batches = batch.clone();
    batches.sort_unstable();
    batches.dedup();
    let mut values = vec![vec![None; batches.len()]; lrs.len()];
    for i in 0..summary.rows() {
        if li[i] == last && label[i] == irrelevant && dec[i] == decoder {
            if let (Some(r), Some(c)) = (
                lrs.iter().position(|x| Some(*x) == lr[i]),
                batches.iter().position(|x| *x == batch[i]),
            ) {
                values[r][c] = Some(fin[i]);
            }
        }
    }
    let rows: Vec<String> = lrs.iter().map(|x| x.to_string()).collect();
    let cols: Vec<String> = batches.iter().map(|x| x.to_string()).collect();
    let title = format!("final {irrelevant} bits, last probed layer");
    Ok(Some(Rendered {
        stem: format!("grid-final-{}", slug(irrelevant)),
        caption: format!("final {irrelevant} information (bits) at probed layer {last}, mean over seeds, by learning rate and batch size"),
        figure: figures::heat_map(&figures::Grid {
            title: &title,
            row_name: "learning rate",
            rows,
            col_name: "batch size",
            cols,
            values,
        })?,
    }))
}

/// Renders every report file: `report.md`, `report.html` and `figures/*.png|svg`, as
/// (relative path, bytes).
pub fn render(r: &ReportInput) -> Result<Vec<(String, Vec<u8>)>> {
    let figs = figures(r)?;
    let mut files = vec![
        ("report.md".to_string(), markdown(r, &figs)?.into_bytes()),
        (
            "report.html".to_string(),
            html::page(r, &figs)?.into_bytes(),
        ),
    ];
    for f in figs {
        files.push((format!("figures/{}.png", f.stem), f.figure.png));
        files.push((format!("figures/{}.svg", f.stem), f.figure.svg.into_bytes()));
    }
    Ok(files)
}

/// Renders `report.md`: settings, claims, figures (linked), summary and the files.
fn markdown(r: &ReportInput, figs: &[Rendered]) -> Result<String> {
    let mut s = format!("# uinfo report: {}\n\n{}\n\n", r.experiment, r.description);
    s.push_str("Usable information I_u(Z;Y) = H(Y) - CE_test / ln 2, in bits; intervals are 95% Student-t over seeds.\n\n");
    s.push_str("## Claims\n\n");
    s.push_str(CLAIMS_RULE);
    s.push_str("\n\n");
    for claim in claims::grouped(r.claims)? {
        s.push_str(&format!(
            "### {}: {}\n\n{}\n\n",
            claim.id, claim.verdict, claim.statement
        ));
        if !claim.note.is_empty() {
            s.push_str(&format!("*{}*\n\n", claim.note));
        }
        if !claim.rows.is_empty() {
            s.push_str(&format!(
                "| {} |\n|{}\n",
                claims::HEADER.join(" | "),
                " --- |".repeat(claims::HEADER.len())
            ));
            for row in &claim.rows {
                let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                s.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            s.push('\n');
        }
    }
    s.push_str(&format!("## Noise floor\n\n{}\n", null_text(r)?));
    s.push_str(&diverged_md(r)?);
    s.push_str("\n## Figures\n\n");
    for f in figs {
        s.push_str(&format!(
            "![{}](figures/{}.png)\n\n*{}* ([SVG](figures/{}.svg))\n\n",
            f.stem, f.stem, f.caption, f.stem
        ));
    }
    s.push_str("## Summary (seeds aggregated)\n\n");
    s.push_str(&table_md(r.summary, &summary_columns(r.summary))?);
    s.push_str("\n## Files\n\nNext to this report:\n\n");
    for (name, what) in TABLES {
        s.push_str(&format!("- `{name}`: {what}\n"));
    }
    s.push_str("- `report.html`: this report with the figures embedded\n- `figures/`: every figure as PNG and SVG\n");
    s.push_str(&format!(
        "\n## Settings\n\n```toml\n{}\n```\n",
        r.settings.trim_end()
    ));
    Ok(s)
}

/// How claims are judged, for the reader of a report.
const CLAIMS_RULE: &str = "Each claim is judged on conditions on per-seed quantities. A condition passes when the 95% Student-t interval of its seed mean lies wholly on the right side of its threshold, fails when wholly on the wrong side, and is undecided otherwise. A claim holds when every condition passes, does not hold when any fails, and is inconclusive otherwise. The peak of a curve is the checkpoint where its seed mean is highest, read per seed there.";

/// What the shuffled-label null shows, in words.
fn null_text(r: &ReportInput) -> Result<String> {
    if r.usable_info.rows() == 0 {
        return Ok("No measurements.".into());
    }
    let null: Vec<f64> = r
        .usable_info
        .f64("null_bits")?
        .into_iter()
        .filter(|v| v.is_finite())
        .collect();
    if null.is_empty() {
        return Ok("The shuffled-label null was not measured (set `probe.null` to `\"first-seed\"` or `true`).".into());
    }
    let (lo, hi) = null
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let mean = null.iter().sum::<f64>() / null.len() as f64;
    Ok(format!(
        "The same decoders trained on shuffled labels ({} measurements) read between {lo:.3} and {hi:.3} bits (mean {mean:.3}): what a decoder reads when there is nothing to read. The grey band in the figures spans this range; differences inside it are not information.",
        null.len()
    ))
}

/// A note on runs whose training diverged (empty when none did).
fn diverged_md(r: &ReportInput) -> Result<String> {
    let runs = curves::diverged_runs(r.usable_info)?;
    if runs.is_empty() {
        return Ok(String::new());
    }
    let mut s = String::from(
        "\n## Diverged runs\n\nLeft out of the summary, the claims and the figures:\n\n",
    );
    for (run, status) in runs {
        s.push_str(&format!("- `{run}`: {status}\n"));
    }
    Ok(s)
}

/// The summary columns shown in reports (means only).
fn summary_columns(summary: &Table) -> Vec<&str> {
    summary
        .columns
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "experiment" && !n.ends_with("_lower") && !n.ends_with("_upper"))
        .collect()
}

/// A cell as text.
fn cell(v: &Values, i: usize) -> String {
    match v {
        Values::F64(x) => x[i].map(|f| format!("{f:.3}")).unwrap_or_default(),
        Values::I64(x) => x[i].to_string(),
        Values::OptI64(x) => x[i].map(|v| v.to_string()).unwrap_or_default(),
        Values::Str(x) => x[i].clone(),
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
        let row: Vec<String> = values
            .iter()
            .map(|v| cell(v, i).replace('|', "\\|"))
            .collect();
        s.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    Ok(s)
}
