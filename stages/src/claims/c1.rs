//! C1: information about the trained label at the last probed layer reaches the task's ceiling,
//! in every configuration.

use super::{Claim, Comparison, Condition, ConfigInfo, Evidence, Rule};
use crate::series::Curve;

/// Judges C1.
pub fn check(ev: &Evidence) -> Claim {
    let statement = format!(
        "{} information at the last probed layer, {}, reaches the task's ceiling",
        ev.task.relevant,
        ev.place()
    );
    if ev.configs.is_empty() {
        return Claim::not_evaluated("C1", statement, "the experiment has no runs");
    }
    let mut conditions = Vec::new();
    for config in &ev.configs {
        match ev.curve(&config.name, &ev.task.relevant) {
            Ok(curve) => conditions.push(condition(ev, config, &curve)),
            Err(why) => return Claim::not_evaluated("C1", statement, why),
        }
    }
    Claim::judged("C1", statement, conditions, Rule::All)
}

/// C1's condition in one configuration: final bits of the relevant label ≥ fraction × ceiling.
pub(super) fn condition(ev: &Evidence, config: &ConfigInfo, curve: &Curve) -> Condition {
    let fraction = ev.task.c1_fraction;
    Condition::per_seed(
        format!(
            "final {} bits >= {fraction} x ceiling ({:.3} bits)",
            ev.task.relevant, config.ceiling_bits
        ),
        &config.name,
        format!("final {} bits", ev.task.relevant),
        curve.at(curve.last()),
        Comparison::AtLeast,
        fraction * config.ceiling_bits,
    )
}
