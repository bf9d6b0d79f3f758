//! The self-contained `report.html`: figures embedded as PNG data URIs, tables as HTML.

use anyhow::Result;
use base64::Engine;
use stages::table::{Table, Values};

use crate::{cell, claims, null_text, summary_columns, Rendered, ReportInput, CLAIMS_RULE, TABLES};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table_html(
    t: &Table,
    cols: &[&str],
    class_of: impl Fn(&str, &str) -> &'static str,
) -> Result<String> {
    let values: Vec<&Values> = cols.iter().map(|c| t.column(c)).collect::<Result<_>>()?;
    let mut s = String::from("<table><thead><tr>");
    for c in cols {
        s.push_str(&format!("<th>{}</th>", esc(c)));
    }
    s.push_str("</tr></thead><tbody>");
    for i in 0..t.rows() {
        s.push_str("<tr>");
        for (c, v) in cols.iter().zip(&values) {
            let text = cell(v, i);
            s.push_str(&format!(
                "<td class=\"{}\">{}</td>",
                class_of(c, &text),
                esc(&text)
            ));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>\n");
    Ok(s)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.holds{background:#dff5df;font-weight:bold}td.fails{background:#f8dede;font-weight:bold}\
td.na{background:#eee}td.undecided,span.undecided{background:#fff3c4;font-weight:bold}\
span.holds{background:#dff5df}span.fails{background:#f8dede}span.na{background:#eee}h3.claim span{padding:2px 8px;font-size:14px}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}figcaption{font-size:13px;color:#555}\
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}";

/// After load, records in `body[data-figures]` how many images decoded and their sizes, so a
/// headless browser can check the figures without a screenshot diff.
const CHECK: &str = "<script>window.addEventListener('load',function(){var i=Array.prototype.slice.call(document.images);\
document.body.setAttribute('data-figures',i.filter(function(x){return x.complete&&x.naturalWidth>0}).length+'/'+i.length+' '+\
i.map(function(x){return x.naturalWidth+'x'+x.naturalHeight}).join(','));});</script>";

/// The CSS class of a verdict or an outcome.
fn class_of(text: &str) -> &'static str {
    match text {
        "holds" | "pass" => "holds",
        "does not hold" | "fail" => "fails",
        "inconclusive" | "undecided" => "undecided",
        _ => "na",
    }
}

/// Each claim: its verdict, statement and note, then a table of its conditions.
fn claims_html(r: &ReportInput) -> Result<String> {
    let mut s = String::new();
    for claim in claims::grouped(r.claims)? {
        s.push_str(&format!(
            "<h3 class=\"claim\">{} <span class=\"{}\">{}</span></h3>\n<p>{}</p>\n",
            esc(&claim.id),
            class_of(&claim.verdict),
            esc(&claim.verdict),
            esc(&claim.statement)
        ));
        if !claim.note.is_empty() {
            s.push_str(&format!("<p><em>{}</em></p>\n", esc(&claim.note)));
        }
        if claim.rows.is_empty() {
            continue;
        }
        s.push_str("<table><thead><tr>");
        for h in claims::HEADER {
            s.push_str(&format!("<th>{}</th>", esc(h)));
        }
        s.push_str("</tr></thead><tbody>");
        for row in &claim.rows {
            s.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let class = if i + 1 == row.len() {
                    class_of(cell)
                } else {
                    ""
                };
                s.push_str(&format!("<td class=\"{class}\">{}</td>", esc(cell)));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>\n");
    }
    Ok(s)
}

/// Renders the page.
pub fn page(r: &ReportInput, figs: &[Rendered]) -> Result<String> {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>uinfo report: {0}</title><style>{STYLE}</style></head>\n<body>\n<h1>uinfo report: {0}</h1>\n<p>{1}</p>\n",
        esc(r.experiment),
        esc(r.description)
    );
    s.push_str("<p>Usable information I<sub>u</sub>(Z;Y) = H(Y) &minus; CE<sub>test</sub> / ln 2, in bits; intervals are 95% Student-t over seeds.</p>\n");
    s.push_str("<h2>Claims</h2>\n");
    s.push_str(&format!("<p>{}</p>\n", esc(CLAIMS_RULE)));
    s.push_str(&claims_html(r)?);
    s.push_str(&format!(
        "<h2>Noise floor</h2>\n<p>{}</p>\n",
        esc(&null_text(r)?)
    ));
    let diverged = crate::curves::diverged_runs(r.usable_info)?;
    if !diverged.is_empty() {
        s.push_str("<h2>Diverged runs</h2>\n<p>Left out of the summary, the claims and the figures:</p><ul>\n");
        for (run, status) in diverged {
            s.push_str(&format!(
                "<li><code>{}</code>: {}</li>\n",
                esc(&run),
                esc(&status)
            ));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<h2>Figures</h2>\n");
    let b64 = base64::engine::general_purpose::STANDARD;
    for f in figs {
        s.push_str(&format!(
            "<figure><img alt=\"{0}\" width=\"{1}\" height=\"{2}\" src=\"data:image/png;base64,{3}\"><figcaption>{4} (SVG: <code>figures/{0}.svg</code>)</figcaption></figure>\n",
            esc(&f.stem),
            f.figure.size.0,
            f.figure.size.1,
            b64.encode(&f.figure.png),
            esc(&f.caption)
        ));
    }
    s.push_str("<h2>Summary (seeds aggregated)</h2>\n");
    s.push_str(&table_html(
        r.summary,
        &summary_columns(r.summary),
        |_, _| "",
    )?);
    s.push_str("<h2>Files</h2>\n<p>In the folder of this report:</p><ul>\n");
    for (name, what) in TABLES {
        s.push_str(&format!("<li><code>{name}</code>: {}</li>\n", esc(what)));
    }
    s.push_str("<li><code>report.md</code>: this report in Markdown</li><li><code>figures/</code>: every figure as PNG and SVG</li></ul>\n");
    s.push_str(&format!(
        "<h2>Settings</h2>\n<pre>{}</pre>\n{CHECK}\n</body></html>\n",
        esc(r.settings)
    ));
    Ok(s)
}
