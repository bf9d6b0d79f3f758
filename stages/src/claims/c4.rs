//! C4: perturbing the initial phase of training changes the final representation. For each
//! value of the perturbed phase against the unperturbed one, with every other setting fixed and
//! seeds paired, the final irrelevant-label bits at the last probed layer differ by more than
//! 0.1. It holds when this passes for at least one value (a short perturbation may change
//! nothing) and does not hold when it fails for every value.

use std::collections::BTreeMap;

use super::{Claim, Comparison, Condition, ConfigInfo, Evidence, Rule};

/// The smallest change of final bits that counts as a change of the representation.
pub const MIN_DIFFERENCE_BITS: f64 = 0.1;

/// Judges C4.
pub fn check(ev: &Evidence) -> Claim {
    let label = &ev.task.irrelevant;
    let statement = format!(
        "perturbing the initial phase of training changes the final representation ({label} information at {})",
        ev.place()
    );
    let Some(axis) = &ev.perturb_axis else {
        return Claim::not_evaluated(
            "C4",
            statement,
            "the experiment does not vary an initial phase of training",
        );
    };
    let mut conditions = Vec::new();
    for group in groups(&ev.configs, axis) {
        let Some(base) = unperturbed(&group) else {
            continue;
        };
        let base_curve = match ev.curve(&base.1.name, label) {
            Ok(c) => c.final_by_seed(),
            Err(why) => return Claim::not_evaluated("C4", statement, why),
        };
        for (value, config) in group.iter().filter(|(v, _)| *v != base.0) {
            let finals = match ev.curve(&config.name, label) {
                Ok(c) => c.final_by_seed(),
                Err(why) => return Claim::not_evaluated("C4", statement, why),
            };
            let differences: Vec<f64> = finals
                .iter()
                .filter_map(|(seed, f)| base_curve.get(seed).map(|b| f - b))
                .collect();
            conditions.push(Condition::per_seed(
                format!(
                    "{axis}={value} vs {axis}={}: |final {label} bits difference| > {MIN_DIFFERENCE_BITS} (seeds paired)",
                    base.0
                ),
                &config.name,
                format!("final {label} bits, {axis}={value} - {axis}={}", base.0),
                differences,
                Comparison::AbsGreater,
                MIN_DIFFERENCE_BITS,
            ));
        }
    }
    if conditions.is_empty() {
        return Claim::not_evaluated(
            "C4",
            statement,
            format!("no configuration differs from another in `{axis}` alone"),
        );
    }
    Claim::judged("C4", statement, conditions, Rule::Any)
}

/// Configurations that differ only in `axis`, each as (axis value, config), in order.
fn groups<'a>(configs: &'a [ConfigInfo], axis: &str) -> Vec<Vec<(String, &'a ConfigInfo)>> {
    let mut by_rest: BTreeMap<String, Vec<(String, &ConfigInfo)>> = BTreeMap::new();
    let mut order = Vec::new();
    for c in configs {
        let Some((_, value)) = c.params.iter().find(|(k, _)| k == axis) else {
            continue;
        };
        let rest: Vec<String> = c
            .params
            .iter()
            .filter(|(k, _)| k != axis)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let rest = rest.join(",");
        if !by_rest.contains_key(&rest) {
            order.push(rest.clone());
        }
        by_rest
            .entry(rest)
            .or_default()
            .push((value.to_string(), c));
    }
    order
        .into_iter()
        .filter_map(|k| by_rest.remove(&k))
        .collect()
}

/// The unperturbed member of a group: the value 0 (an initial phase of no epochs) where the axis
/// takes it, else the first value listed.
fn unperturbed<'a>(group: &[(String, &'a ConfigInfo)]) -> Option<(String, &'a ConfigInfo)> {
    group
        .iter()
        .find(|(v, _)| v == "0")
        .or(group.first())
        .map(|(v, c)| (v.clone(), *c))
}
