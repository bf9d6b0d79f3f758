//! Figures and reports are rendered from tables alone; PNGs decode to non-blank pictures of the
//! expected size, and the HTML embeds every figure.

use reports::{render, ReportInput};
use stages::table::{Table, Values};

/// A usable_info table of 2 configs x 2 seeds x 3 epochs x 2 layers x 2 labels.
fn usable() -> Table {
    let mut cols: [Vec<String>; 4] = Default::default();
    let (mut seed, mut epoch, mut li, mut bits) = (vec![], vec![], vec![], vec![]);
    for config in ["batch=32", "batch=1024"] {
        for s in 0..2 {
            for e in [0, 5, 10] {
                for l in 1..=2 {
                    for label in ["color", "direction"] {
                        cols[0].push(config.into());
                        cols[1].push(format!("hidden{l}"));
                        cols[2].push(label.into());
                        cols[3].push("linear".into());
                        seed.push(s);
                        epoch.push(e);
                        li.push(l);
                        bits.push(Some(0.5 + 0.01 * e as f64 - 0.1 * s as f64));
                    }
                }
            }
        }
    }
    let mut t = Table::default();
    t.push("config", Values::Str(cols[0].clone()));
    t.push("seed", Values::I64(seed));
    t.push("epoch", Values::I64(epoch));
    t.push("layer_index", Values::I64(li));
    t.push("layer", Values::Str(cols[1].clone()));
    t.push("label", Values::Str(cols[2].clone()));
    t.push("decoder", Values::Str(cols[3].clone()));
    let null = (0..bits.len())
        .map(|i| (i % 3 == 0).then_some(0.01 * (i % 5) as f64 - 0.02))
        .collect();
    t.push("bits", Values::F64(bits));
    t.push("null_bits", Values::F64(null));
    t
}

fn training_log() -> Table {
    let mut t = Table::default();
    let n = 6;
    t.push(
        "config",
        Values::Str(
            (0..n)
                .map(|i| {
                    if i < 3 {
                        "batch=32".into()
                    } else {
                        "batch=1024".into()
                    }
                })
                .collect(),
        ),
    );
    t.push("epoch", Values::I64((0..n).map(|i| i % 3 + 1).collect()));
    for m in ["train_loss", "val_loss", "train_accuracy", "val_accuracy"] {
        t.push(
            m,
            Values::F64((0..n).map(|i| Some(0.3 + 0.1 * i as f64)).collect()),
        );
    }
    t
}

fn summary() -> Table {
    let mut t = Table::default();
    t.push(
        "config",
        Values::Str(vec!["lr=0.05,batch=32".into(), "lr=0.05,batch=1024".into()]),
    );
    t.push("lr", Values::F64(vec![Some(0.05), Some(0.05)]));
    t.push("batch", Values::I64(vec![32, 1024]));
    t.push("layer_index", Values::I64(vec![2, 2]));
    t.push("label", Values::Str(vec!["color".into(), "color".into()]));
    t.push(
        "decoder",
        Values::Str(vec!["linear".into(), "linear".into()]),
    );
    t.push("final_bits_mean", Values::F64(vec![Some(0.01), Some(0.8)]));
    t
}

fn claims() -> Table {
    let mut t = Table::default();
    let text = |v: [&str; 3]| Values::Str(v.iter().map(|s| s.to_string()).collect());
    t.push("claim", text(["C1", "C1", "C5"]));
    t.push(
        "statement",
        text(["claim <1>", "claim <1>", "about images"]),
    );
    t.push("verdict", text(["holds", "holds", "not evaluated"]));
    t.push("note", text(["", "", "no images here"]));
    t.push(
        "condition",
        text([
            "final bits >= 0.9 x ceiling",
            "final bits >= 0.9 x ceiling",
            "",
        ]),
    );
    t.push("config", text(["batch=32", "batch=1024", ""]));
    t.push("quantity", text(["final bits", "final bits", ""]));
    t.push("comparison", text([">=", ">=", ""]));
    t.push("outcome", text(["pass", "pass", ""]));
    t.push("measured", text(["a", "b", "no images here"]));
    t.push("mean", Values::F64(vec![Some(0.81), Some(0.8), None]));
    t.push("lower", Values::F64(vec![Some(0.8), Some(0.79), None]));
    t.push("upper", Values::F64(vec![Some(0.82), Some(0.81), None]));
    t.push("threshold", Values::F64(vec![Some(0.73), Some(0.73), None]));
    t.push("n_seeds", Values::I64(vec![3, 3, 0]));
    t.push("seeds_needed", Values::OptI64(vec![None, None, None]));
    t
}

#[test]
fn report_files_are_complete_and_figures_decode() {
    let (u, s, c, l) = (usable(), summary(), claims(), training_log());
    let input = ReportInput {
        experiment: "demo",
        description: "a demo",
        settings: "name = \"demo\"",
        usable_info: &u,
        summary: &s,
        claims: &c,
        training_log: &l,
        relevant: "direction",
        irrelevant: "color",
    };
    let files = render(&input).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "report.md",
        "report.html",
        "figures/bits-batch=32.png",
        "figures/bits-batch=32.svg",
        "figures/bits-batch=1024.png",
        "figures/grid-final-color.png",
        "figures/compare-hidden2.png",
        "figures/compare-hidden2.svg",
        "figures/training-batch=32.svg",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for (name, bytes) in &files {
        if name.ends_with(".png") {
            let img = image::load_from_memory(bytes).unwrap().to_rgb8();
            assert!(
                img.width() >= 400 && img.height() >= 300,
                "{name}: {}x{}",
                img.width(),
                img.height()
            );
            let first = img.get_pixel(0, 0);
            let differing = img.pixels().filter(|p| *p != first).count();
            assert!(
                differing > (img.width() * img.height() / 50) as usize,
                "{name} is nearly blank"
            );
        }
        if name.ends_with(".svg") {
            let svg = String::from_utf8(bytes.clone()).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("epoch") || name.contains("grid"),
                "{name}"
            );
        }
    }
    let html = String::from_utf8(
        files
            .iter()
            .find(|f| f.0 == "report.html")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        names.iter().filter(|n| n.ends_with(".png")).count()
    );
    assert!(html.contains("claim &lt;1&gt;"), "text is escaped");
    for expected in [
        "0.810 [0.800, 0.820]",
        "&gt;= 0.730",
        "no images here",
        "Noise floor",
    ] {
        assert!(
            html.contains(expected),
            "{expected} missing from the report"
        );
    }
    let md =
        String::from_utf8(files.iter().find(|f| f.0 == "report.md").unwrap().1.clone()).unwrap();
    assert!(
        md.contains("### C1: holds") && md.contains("### C5: not evaluated"),
        "{md}"
    );
    assert!(
        md.contains("between -0.020 and 0.020 bits"),
        "the null range is stated: {md}"
    );
    assert_eq!(render(&input).unwrap(), files, "rendering is deterministic");
}
