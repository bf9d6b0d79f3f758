//! C5 (image tasks): at the penultimate layer, fine-label information beyond the coarse label is
//! transient under the noisiest SGD while coarse-label information is kept, and it is retained
//! under the quietest SGD.

use super::{c2, c3, Claim, Comparison, Condition, Evidence, Rule};

/// Judges C5.
pub fn check(ev: &Evidence) -> Claim {
    if !ev.task.image {
        return Claim::not_evaluated(
            "C5",
            "on CIFAR, fine-label information at the penultimate layer is transient while coarse-label information is kept".into(),
            "C5 is about image tasks (CIFAR); this experiment trains on the checkerboard",
        );
    }
    let statement = format!(
        "on images, {} information at the penultimate layer, {}, is transient under high-lr / small-batch SGD while {} information is kept",
        ev.task.irrelevant,
        ev.place(),
        ev.task.relevant
    );
    let (noisiest, quietest) = match ev.regimes() {
        Ok(r) => r,
        Err(why) => return Claim::not_evaluated("C5", statement, why),
    };
    let curves = (
        ev.curve(&noisiest.name, &ev.task.irrelevant),
        ev.curve(&noisiest.name, &ev.task.relevant),
        ev.curve(&quietest.name, &ev.task.irrelevant),
    );
    let (fine, coarse, quiet) = match curves {
        (Ok(f), Ok(c), Ok(q)) => (f, c, q),
        (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => {
            return Claim::not_evaluated("C5", statement, why)
        }
    };
    let mut conditions = c2::transient(&ev.task.irrelevant, &noisiest.name, &fine);
    let (peak, last) = (coarse.peak(), coarse.last());
    let relevant = &ev.task.relevant;
    conditions.push(Condition::per_seed(
        format!("kept: final {relevant} bits >= 0.9 x peak"),
        &noisiest.name,
        format!("final - 0.9 x peak {relevant} bits"),
        coarse.paired(last, peak, |f, p| f - 0.9 * p),
        Comparison::AtLeast,
        0.0,
    ));
    conditions.push(c3::retained(&ev.task.irrelevant, &quietest.name, &quiet));
    Claim::judged("C5", statement, conditions, Rule::All)
}
