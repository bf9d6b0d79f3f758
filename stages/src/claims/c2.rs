//! C2: information about the irrelevant label at the last probed layer rises early in training
//! and is then discarded, under the noisiest SGD (highest lr / batch of the last phase).

use super::{Claim, Comparison, Condition, Evidence, Rule};
use crate::series::Curve;

/// Judges C2.
pub fn check(ev: &Evidence) -> Claim {
    let statement = format!(
        "{} information at the last probed layer, {}, rises early, then is discarded under high-lr / small-batch SGD",
        ev.task.irrelevant,
        ev.place()
    );
    if ev.task.image {
        return Claim::not_evaluated(
            "C2",
            statement,
            "C2 is about the checkerboard's colour; C5 is its image counterpart",
        );
    }
    let noisiest = match ev.regimes() {
        Ok((noisiest, _)) => noisiest,
        Err(why) => return Claim::not_evaluated("C2", statement, why),
    };
    match ev.curve(&noisiest.name, &ev.task.irrelevant) {
        Ok(curve) => Claim::judged(
            "C2",
            statement,
            transient(&ev.task.irrelevant, &noisiest.name, &curve),
            Rule::All,
        ),
        Err(why) => Claim::not_evaluated("C2", statement, why),
    }
}

/// The conditions of information that rises early and is then discarded (C2, and C5 on
/// `fine_beyond_coarse`): a rise from epoch 0 to the seed-mean curve's peak, a peak within the
/// first quarter of training, and a final value at most half the peak.
pub(super) fn transient(label: &str, config: &str, curve: &Curve) -> Vec<Condition> {
    let (peak, last) = (curve.peak(), curve.last());
    let peak_epoch = curve.epochs[peak];
    let quarter = curve.epochs[last] as f64 / 4.0;
    vec![
        Condition::per_seed(
            format!("rise: {label} bits at the peak (epoch {peak_epoch}) - at epoch {} > 0", curve.epochs[0]),
            config,
            format!("peak - initial {label} bits"),
            curve.paired(peak, 0, |p, i| p - i),
            Comparison::Greater,
            0.0,
        ),
        Condition::exact(
            format!("early: the seed-mean {label} curve peaks within the first quarter of training (epoch <= {quarter})"),
            config,
            format!("epoch of the {label} peak"),
            (peak_epoch as f64, curve.seeds.len()),
            Comparison::AtMost,
            quarter,
        ),
        Condition::per_seed(
            format!("discarded: final {label} bits <= 0.5 x peak"),
            config,
            format!("final - 0.5 x peak {label} bits"),
            curve.paired(last, peak, |f, p| f - 0.5 * p),
            Comparison::AtMost,
            0.0,
        ),
    ]
}
