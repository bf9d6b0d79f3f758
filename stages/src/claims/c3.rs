//! C3: information about the irrelevant label at the last probed layer is retained under the
//! quietest SGD (lowest lr / batch of the last phase), provided the network learned the task
//! there (C1 holds in that configuration).

use super::{c1, Claim, Comparison, Condition, Evidence, Outcome, Rule};
use crate::series::Curve;

/// Judges C3.
pub fn check(ev: &Evidence) -> Claim {
    let statement = format!(
        "{} information at the last probed layer, {}, is retained under low-lr / large-batch SGD",
        ev.task.irrelevant,
        ev.place()
    );
    let quietest = match ev.regimes() {
        Ok((_, quietest)) => quietest,
        Err(why) => return Claim::not_evaluated("C3", statement, why),
    };
    let mut learned = match ev.curve(&quietest.name, &ev.task.relevant) {
        Ok(curve) => c1::condition(ev, quietest, &curve),
        Err(why) => return Claim::not_evaluated("C3", statement, why),
    };
    learned.text = format!("premise (C1 here): {}", learned.text);
    if learned.outcome() == Outcome::Fail {
        return Claim::not_evaluated(
            "C3",
            statement,
            format!(
                "C1 does not hold in the quietest configuration {}: {}",
                quietest.name,
                learned.measured()
            ),
        );
    }
    match ev.curve(&quietest.name, &ev.task.irrelevant) {
        Ok(curve) => {
            // An undecided C1 keeps C3 from holding; a passing one is shown as the premise.
            let conditions = vec![
                learned,
                retained(&ev.task.irrelevant, &quietest.name, &curve),
            ];
            Claim::judged("C3", statement, conditions, Rule::All)
        }
        Err(why) => Claim::not_evaluated("C3", statement, why),
    }
}

/// Information kept to the end: final bits ≥ 0.75 × the seed-mean curve's peak.
pub(super) fn retained(label: &str, config: &str, curve: &Curve) -> Condition {
    let (peak, last) = (curve.peak(), curve.last());
    Condition::per_seed(
        format!("retained: final {label} bits >= 0.75 x peak"),
        config,
        format!("final - 0.75 x peak {label} bits"),
        curve.paired(last, peak, |f, p| f - 0.75 * p),
        Comparison::AtLeast,
        0.0,
    )
}
