//! Each checker on synthetic `usable_info` tables, driven into every verdict.

use super::*;
use crate::analysis::ParamValue;
use crate::series::Series;
use crate::table::{Table, Values};

const EPOCHS: [i64; 7] = [0, 2, 5, 10, 20, 50, 100];
const CEILING: f64 = 0.8;

/// A configuration of the synthetic experiment: name, lr / batch, swept params.
struct Cfg {
    name: &'static str,
    noise: f64,
    params: Vec<(String, ParamValue)>,
}

fn cfg(name: &'static str, noise: f64) -> Cfg {
    let params = name
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.parse::<i64>()
                    .map(ParamValue::I64)
                    .unwrap_or(ParamValue::Str(v.into())),
            )
        })
        .collect();
    Cfg {
        name,
        noise,
        params,
    }
}

/// The two regimes of the default experiment.
fn regimes() -> Vec<Cfg> {
    vec![
        cfg("batch=32", 0.05 / 32.0),
        cfg("batch=1024", 0.05 / 1024.0),
    ]
}

/// Evidence from a usable_info table of `seeds` seeds whose bits at the last layer (`hidden3`)
/// are `bits(config, seed, epoch, label)`, for the labels given.
fn evidence(
    configs: &[Cfg],
    seeds: u64,
    labels: &[&str],
    task: TaskClaims,
    perturb_axis: Option<&str>,
    bits: impl Fn(&str, u64, i64, &str) -> f64,
) -> Evidence {
    let mut text: [Vec<String>; 7] = Default::default();
    let (mut seed, mut epoch, mut li, mut value) = (vec![], vec![], vec![], vec![]);
    for c in configs {
        for s in 0..seeds {
            for &e in &EPOCHS {
                for &label in labels {
                    let row = [
                        c.name.to_string(),
                        format!("{},seed={s}", c.name),
                        "ok".into(),
                        "hidden3".into(),
                        label.into(),
                        "linear".into(),
                        String::new(),
                    ];
                    for (col, v) in text.iter_mut().zip(row) {
                        col.push(v);
                    }
                    seed.push(s as i64);
                    epoch.push(e);
                    li.push(3);
                    value.push(Some(bits(c.name, s, e, label)));
                }
            }
        }
    }
    let mut t = Table::default();
    let [config, run_id, status, layer, label, decoder, _] = text;
    let n = seed.len();
    for (name, v) in [
        ("config", config),
        ("run_id", run_id),
        ("status", status),
        ("layer", layer),
        ("label", label),
        ("decoder", decoder),
    ] {
        t.push(name, Values::Str(v));
    }
    t.push("seed", Values::I64(seed));
    t.push("epoch", Values::I64(epoch));
    t.push("layer_index", Values::I64(li));
    t.push("bits", Values::F64(value));
    t.push("null_bits", Values::F64(vec![None; n]));
    Evidence {
        configs: configs
            .iter()
            .map(|c| ConfigInfo {
                name: c.name.into(),
                noise_scale: c.noise,
                params: c.params.clone(),
                ceiling_bits: CEILING,
            })
            .collect(),
        task,
        perturb_axis: perturb_axis.map(str::to_string),
        series: Series::from_usable_info(&t).unwrap(),
    }
}

fn checkerboard() -> TaskClaims {
    TaskClaims {
        relevant: "direction".into(),
        irrelevant: "color".into(),
        image: false,
        c1_fraction: 0.9,
    }
}

fn images() -> TaskClaims {
    TaskClaims {
        relevant: "coarse".into(),
        irrelevant: "fine_beyond_coarse".into(),
        image: true,
        c1_fraction: 0.8,
    }
}

/// A seed's offset: `spread` times a fixed pattern with mean 0 over 4 seeds.
fn jitter(seed: u64, spread: f64) -> f64 {
    [-1.0, 0.5, 1.0, -0.5][seed as usize % 4] * spread
}

/// Colour that rises to 0.8 by epoch 2, then decays to `end` (noisy run) or stays (quiet run).
fn colour(epoch: i64, end: f64) -> f64 {
    match epoch {
        0 => 0.6,
        e if e <= 5 => 0.8,
        e => 0.8 + (end - 0.8) * (e as f64 / 100.0).sqrt(),
    }
}

/// The default experiment's shape: colour transient at batch 32, kept at batch 1024; direction
/// at its ceiling. `noisy_end` is colour's final value at batch 32; `spread` the seed noise.
fn default_shape(noisy_end: f64, spread: f64) -> impl Fn(&str, u64, i64, &str) -> f64 {
    move |c, s, e, label| match (label, c) {
        ("direction", _) => CEILING - 0.01 + jitter(s, 0.005),
        ("color", "batch=32") => colour(e, noisy_end) + jitter(s, spread),
        _ => colour(e, 0.8) + jitter(s, 0.01),
    }
}

fn judged(claim: &Claim) -> (Verdict, Vec<Outcome>) {
    (
        claim.verdict,
        claim.conditions.iter().map(Condition::outcome).collect(),
    )
}

#[test]
fn c1_every_verdict() {
    let labels = ["color", "direction"];
    let ev = |f: &dyn Fn(&str, u64, i64, &str) -> f64| {
        evidence(&regimes(), 4, &labels, checkerboard(), None, f)
    };
    let holds = c1::check(&ev(&default_shape(0.0, 0.01)));
    assert_eq!(holds.verdict, Verdict::Holds, "{holds:?}");
    assert_eq!(holds.conditions.len(), 2);
    assert_eq!(holds.conditions[0].threshold, 0.9 * CEILING);

    let untrained = c1::check(&ev(&|_, s, _, _| 0.3 + jitter(s, 0.01)));
    assert_eq!(untrained.verdict, Verdict::DoesNotHold);

    let noisy = c1::check(&ev(&|_, s, _, _| 0.70 + jitter(s, 0.2)));
    assert_eq!(noisy.verdict, Verdict::Inconclusive, "{noisy:?}");
    assert!(noisy.note.contains("seeds would decide"), "{}", noisy.note);

    let no_direction = evidence(
        &regimes(),
        4,
        &["color"],
        checkerboard(),
        None,
        |_, _, _, _| 0.5,
    );
    let c = c1::check(&no_direction);
    assert_eq!(c.verdict, Verdict::NotEvaluated);
    assert!(c.note.contains("direction"), "{}", c.note);
}

#[test]
fn c2_every_verdict() {
    let labels = ["color", "direction"];
    let ev = |f: &dyn Fn(&str, u64, i64, &str) -> f64| {
        evidence(&regimes(), 4, &labels, checkerboard(), None, f)
    };
    let holds = c2::check(&ev(&default_shape(0.0, 0.01)));
    assert_eq!(holds.verdict, Verdict::Holds, "{holds:?}");
    assert_eq!(
        holds
            .conditions
            .iter()
            .map(|c| c.config.as_str())
            .collect::<Vec<_>>(),
        ["batch=32"; 3],
        "judged in the noisiest configuration"
    );

    let kept = c2::check(&ev(&default_shape(0.75, 0.01)));
    assert_eq!(
        judged(&kept),
        (
            Verdict::DoesNotHold,
            vec![Outcome::Pass, Outcome::Pass, Outcome::Fail]
        )
    );

    // Final bits scattered around half the peak: discarded is undecided.
    let unclear = c2::check(&ev(&default_shape(0.4, 0.15)));
    assert_eq!(unclear.verdict, Verdict::Inconclusive, "{unclear:?}");

    // A peak late in training fails "early" even though the curve rises and falls.
    let late = c2::check(&ev(&|c, s, e, label| match (label, e) {
        ("color", 50) if c == "batch=32" => 0.9 + jitter(s, 0.01),
        ("color", 100) if c == "batch=32" => 0.1 + jitter(s, 0.01),
        _ => 0.6 + jitter(s, 0.01),
    }));
    assert_eq!(
        judged(&late),
        (
            Verdict::DoesNotHold,
            vec![Outcome::Pass, Outcome::Fail, Outcome::Pass]
        )
    );

    let one_regime = evidence(
        &[cfg("batch=32", 1.0), cfg("seed_data=1", 1.0)],
        4,
        &labels,
        checkerboard(),
        None,
        default_shape(0.0, 0.01),
    );
    assert_eq!(c2::check(&one_regime).verdict, Verdict::NotEvaluated);
}

#[test]
fn c2_reads_the_peak_at_the_seed_mean_curves_best_checkpoint() {
    // Flat colour with independent checkpoint noise: per-seed maxima would show a rise of about
    // 0.1 bits; read at one checkpoint for every seed, the rise is not established.
    let noise = |s: u64, e: i64| {
        [0.0, 0.1, -0.05, 0.05, -0.1, 0.02, 0.03][(s as usize * 3 + e as usize) % 7]
    };
    let ev = evidence(
        &regimes(),
        4,
        &["color", "direction"],
        checkerboard(),
        None,
        |c, s, e, label| match label {
            "color" if c == "batch=32" => 0.6 + noise(s, e),
            "color" => 0.6,
            _ => CEILING,
        },
    );
    let c = c2::check(&ev);
    assert_ne!(c.conditions[0].outcome(), Outcome::Pass, "{c:?}");
}

#[test]
fn c3_every_verdict() {
    let labels = ["color", "direction"];
    let ev = |f: &dyn Fn(&str, u64, i64, &str) -> f64| {
        evidence(&regimes(), 4, &labels, checkerboard(), None, f)
    };
    let holds = c3::check(&ev(&default_shape(0.0, 0.01)));
    assert_eq!(judged(&holds), (Verdict::Holds, vec![Outcome::Pass; 2]));
    assert_eq!(holds.conditions[1].config, "batch=1024");

    let lost = c3::check(&ev(&|c, s, e, label| match label {
        "direction" => CEILING + jitter(s, 0.005),
        _ => colour(e, if c == "batch=1024" { 0.1 } else { 0.0 }) + jitter(s, 0.01),
    }));
    assert_eq!(lost.verdict, Verdict::DoesNotHold);

    let unclear = c3::check(&ev(&|_, s, e, label| match label {
        "direction" => CEILING + jitter(s, 0.005),
        _ => colour(e, 0.6) + jitter(s, 0.2),
    }));
    assert_eq!(unclear.verdict, Verdict::Inconclusive, "{unclear:?}");

    // A network that barely trained keeps its colour, but C3 is not evaluated there.
    let untrained = c3::check(&ev(&|_, s, e, label| match label {
        "direction" => 0.2 + jitter(s, 0.01),
        _ => colour(e, 0.8),
    }));
    assert_eq!(untrained.verdict, Verdict::NotEvaluated);
    assert!(
        untrained.note.contains("C1 does not hold"),
        "{}",
        untrained.note
    );
}

#[test]
fn c4_every_verdict() {
    let configs = || {
        vec![
            cfg("epochs=0", 0.05 / 1024.0),
            cfg("epochs=5", 0.05 / 1024.0),
            cfg("epochs=40", 0.05 / 1024.0),
        ]
    };
    let ev = |f: &dyn Fn(&str, u64, i64, &str) -> f64| {
        evidence(
            &configs(),
            4,
            &["color", "direction"],
            checkerboard(),
            Some("epochs"),
            f,
        )
    };
    let final_colour = |finals: [f64; 3], spread: f64| {
        move |c: &str, s: u64, e: i64, _: &str| {
            let k = ["epochs=0", "epochs=5", "epochs=40"]
                .iter()
                .position(|x| *x == c)
                .unwrap();
            colour(e, finals[k]) + jitter(s, spread)
        }
    };
    let holds = c4::check(&ev(&final_colour([0.8, 0.78, 0.2], 0.01)));
    assert_eq!(
        judged(&holds),
        (Verdict::Holds, vec![Outcome::Fail, Outcome::Pass]),
        "a short perturbation may change nothing"
    );
    assert!(holds.conditions[1].text.contains("epochs=40 vs epochs=0"));

    let none = c4::check(&ev(&final_colour([0.8, 0.79, 0.81], 0.01)));
    assert_eq!(none.verdict, Verdict::DoesNotHold);

    // Seeds paired: a seed-level offset shared by every configuration cancels out.
    let paired = c4::check(&ev(&|c, s, e, _| {
        colour(e, if c == "epochs=40" { 0.6 } else { 0.8 }) + jitter(s, 0.3)
    }));
    assert_eq!(paired.verdict, Verdict::Holds, "{paired:?}");

    let unclear = c4::check(&ev(&|c, s, e, _| {
        let shift = if c == "epochs=0" {
            0.0
        } else {
            0.12 + jitter(s, 0.2)
        };
        colour(e, 0.6) - shift
    }));
    assert_eq!(unclear.verdict, Verdict::Inconclusive, "{unclear:?}");

    let no_axis = evidence(
        &configs(),
        4,
        &["color"],
        checkerboard(),
        None,
        |_, _, _, _| 0.5,
    );
    assert_eq!(c4::check(&no_axis).verdict, Verdict::NotEvaluated);
}

#[test]
fn c5_every_verdict() {
    let labels = ["coarse", "fine", "fine_beyond_coarse"];
    let ev = |f: &dyn Fn(&str, u64, i64, &str) -> f64| {
        evidence(
            &[
                cfg("batch=128", 0.05 / 128.0),
                cfg("batch=1024", 0.05 / 1024.0),
            ],
            3,
            &labels,
            images(),
            None,
            f,
        )
    };
    let shape = |noisy_end: f64, spread: f64, coarse_end: f64| {
        move |c: &str, s: u64, e: i64, label: &str| match (label, c) {
            ("coarse", _) => 0.5 + (coarse_end - 0.5) * (e as f64 / 100.0) + jitter(s, 0.01),
            ("fine_beyond_coarse", "batch=128") => colour(e, noisy_end) + jitter(s, spread),
            _ => colour(e, 0.8) + jitter(s, 0.01),
        }
    };
    let holds = c5::check(&ev(&shape(0.1, 0.01, 0.95)));
    assert_eq!(holds.verdict, Verdict::Holds, "{holds:?}");
    assert_eq!(holds.conditions.len(), 5);

    let kept = c5::check(&ev(&shape(0.75, 0.01, 0.95)));
    assert_eq!(kept.verdict, Verdict::DoesNotHold);

    let unclear = c5::check(&ev(&shape(0.4, 0.2, 0.95)));
    assert_eq!(unclear.verdict, Verdict::Inconclusive, "{unclear:?}");

    let checkerboard = evidence(
        &regimes(),
        3,
        &["color", "direction"],
        checkerboard(),
        None,
        default_shape(0.0, 0.01),
    );
    let c = c5::check(&checkerboard);
    assert_eq!(c.verdict, Verdict::NotEvaluated);
    assert!(c.note.contains("image"), "{}", c.note);
    // On images C2 defers to C5.
    assert_eq!(
        c2::check(&ev(&shape(0.1, 0.01, 0.95))).verdict,
        Verdict::NotEvaluated
    );
}

#[test]
fn the_claims_table_has_a_typed_row_per_condition() {
    let ev = evidence(
        &regimes(),
        4,
        &["color", "direction"],
        checkerboard(),
        None,
        default_shape(0.42, 0.15),
    );
    let claims = check_all(&ev);
    let t = to_table(&claims);
    let rows: usize = claims.iter().map(|c| c.conditions.len().max(1)).sum();
    assert_eq!(t.rows(), rows);
    let ids = t.str("claim").unwrap();
    assert_eq!(
        ids.iter().filter(|i| *i == "C2").count(),
        3,
        "one row per condition"
    );
    let verdicts = t.str("verdict").unwrap();
    let c5 = ids.iter().position(|i| i == "C5").unwrap();
    assert_eq!(verdicts[c5], "not evaluated");
    assert_eq!(t.opt_f64("mean").unwrap()[c5], None);
    let needed = t.opt_i64("seeds_needed").unwrap();
    let outcome = t.str("outcome").unwrap();
    for i in 0..t.rows() {
        assert_eq!(
            needed[i].is_some(),
            outcome[i] == "undecided",
            "row {i}: {} {:?}",
            outcome[i],
            needed[i]
        );
    }
    for name in ["mean", "lower", "upper", "threshold"] {
        assert!(matches!(t.column(name).unwrap(), Values::F64(_)), "{name}");
    }
    assert!(matches!(t.column("n_seeds").unwrap(), Values::I64(_)));
    let back = Table::from_parquet(&t.to_parquet().unwrap()).unwrap();
    assert_eq!(back.opt_i64("seeds_needed").unwrap(), needed);
}
