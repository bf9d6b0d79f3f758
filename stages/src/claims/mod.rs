//! The paper's claims (SPEC §1.6), each judged on the measurements by its own checker.
//!
//! A claim is a few [`Condition`]s on per-seed quantities. A condition passes when the 95%
//! interval of its seed mean lies wholly on the right side of its threshold, fails when wholly on
//! the wrong side, and is undecided otherwise. A claim holds when every condition passes, does
//! not hold when any fails, and is inconclusive otherwise; it is not evaluated (with the reason)
//! when the experiment cannot test it.

mod c1;
mod c2;
mod c3;
mod c4;
mod c5;
mod condition;
mod evidence;

pub use condition::{Comparison, Condition, Interval, Outcome};
pub use evidence::{ConfigInfo, Evidence, TaskClaims};

use crate::table::{Table, Values};

/// A claim's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every condition passes.
    Holds,
    /// Some condition fails.
    DoesNotHold,
    /// No condition fails, but some are undecided.
    Inconclusive,
    /// The experiment cannot test the claim.
    NotEvaluated,
}

impl Verdict {
    /// The verdict as written in the claims table.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotEvaluated => "not evaluated",
        }
    }
}

/// A judged claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// `C1` … `C5`.
    pub id: &'static str,
    /// What the claim says.
    pub statement: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why it was not evaluated, or for an inconclusive claim how many seeds would decide it.
    pub note: String,
    /// The conditions it was judged on.
    pub conditions: Vec<Condition>,
}

impl Claim {
    /// A claim the experiment cannot test, and why.
    fn not_evaluated(id: &'static str, statement: String, why: impl Into<String>) -> Claim {
        Claim {
            id,
            statement,
            verdict: Verdict::NotEvaluated,
            note: why.into(),
            conditions: Vec::new(),
        }
    }

    /// Judges a claim on its conditions by `rule`; an inconclusive claim notes how many seeds
    /// would decide it.
    fn judged(
        id: &'static str,
        statement: String,
        conditions: Vec<Condition>,
        rule: Rule,
    ) -> Claim {
        let outcomes: Vec<Outcome> = conditions.iter().map(Condition::outcome).collect();
        let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
        let (pass, fail, n) = (count(Outcome::Pass), count(Outcome::Fail), outcomes.len());
        let verdict = match rule {
            Rule::All if fail > 0 => Verdict::DoesNotHold,
            Rule::All if pass == n => Verdict::Holds,
            Rule::Any if pass > 0 => Verdict::Holds,
            Rule::Any if fail == n => Verdict::DoesNotHold,
            _ => Verdict::Inconclusive,
        };
        let note = if verdict == Verdict::Inconclusive {
            seeds_note(
                conditions
                    .iter()
                    .filter(|c| c.outcome() == Outcome::Undecided),
            )
        } else {
            String::new()
        };
        Claim {
            id,
            statement,
            verdict,
            note,
            conditions,
        }
    }
}

/// How a claim's verdict follows from the outcomes of its conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Holds when every condition passes; does not hold when one fails (C1, C2, C3, C5).
    All,
    /// Holds when one condition passes; does not hold when every one fails (C4).
    Any,
}

/// How many seeds would decide the undecided conditions, in words.
fn seeds_note<'a>(undecided: impl Iterator<Item = &'a Condition>) -> String {
    let mut most = 0;
    let mut unknown = Vec::new();
    for c in undecided {
        match c.seeds_needed() {
            Some(n) => most = most.max(n),
            None => unknown.push(c.quantity.clone()),
        }
    }
    let mut parts = Vec::new();
    if most > 0 {
        parts.push(format!(
            "with the observed spread, about {most} seeds would decide it"
        ));
    }
    if !unknown.is_empty() {
        parts.push(format!(
            "no seed count can be estimated for {} (fewer than 2 seeds, or a mean on the threshold)",
            unknown.join(", ")
        ));
    }
    parts.join("; ")
}

/// Judges every claim.
pub fn check_all(ev: &Evidence) -> Vec<Claim> {
    vec![
        c1::check(ev),
        c2::check(ev),
        c3::check(ev),
        c4::check(ev),
        c5::check(ev),
    ]
}

/// The claims table (SPEC §3.3): one row per condition (one row for a claim without any), with
/// the claim's verdict, the readable measurement, and typed columns.
pub fn to_table(claims: &[Claim]) -> Table {
    let mut rows = Rows::default();
    for claim in claims {
        if claim.conditions.is_empty() {
            rows.push(claim, None);
        }
        for c in &claim.conditions {
            rows.push(claim, Some(c));
        }
    }
    rows.into_table()
}

#[derive(Default)]
struct Rows {
    text: [Vec<String>; 10],
    numbers: [Vec<Option<f64>>; 4],
    n_seeds: Vec<i64>,
    seeds_needed: Vec<Option<i64>>,
}

const TEXT_COLUMNS: [&str; 10] = [
    "claim",
    "statement",
    "verdict",
    "note",
    "condition",
    "config",
    "quantity",
    "comparison",
    "outcome",
    "measured",
];

impl Rows {
    fn push(&mut self, claim: &Claim, c: Option<&Condition>) {
        let (mean, interval) = c.map(Condition::interval).unwrap_or((None, None));
        let text = [
            claim.id.to_string(),
            claim.statement.clone(),
            claim.verdict.text().to_string(),
            claim.note.clone(),
            c.map(|c| c.text.clone()).unwrap_or_default(),
            c.map(|c| c.config.clone()).unwrap_or_default(),
            c.map(|c| c.quantity.clone()).unwrap_or_default(),
            c.map(|c| c.comparison.symbol().to_string())
                .unwrap_or_default(),
            c.map(|c| c.outcome().name().to_string())
                .unwrap_or_default(),
            c.map(Condition::measured)
                .unwrap_or_else(|| claim.note.clone()),
        ];
        for (col, v) in self.text.iter_mut().zip(text) {
            col.push(v);
        }
        let numbers = [
            mean,
            interval.map(|i| i.lower),
            interval.map(|i| i.upper),
            c.map(|c| c.threshold),
        ];
        for (col, v) in self.numbers.iter_mut().zip(numbers) {
            col.push(v);
        }
        self.n_seeds
            .push(c.map(|c| c.n_seeds() as i64).unwrap_or(0));
        self.seeds_needed
            .push(c.and_then(Condition::seeds_needed).map(|n| n as i64));
    }

    fn into_table(self) -> Table {
        let mut t = Table::default();
        for (name, values) in TEXT_COLUMNS.iter().zip(self.text) {
            t.push(name, Values::Str(values));
        }
        for (name, values) in ["mean", "lower", "upper", "threshold"]
            .iter()
            .zip(self.numbers)
        {
            t.push(name, Values::F64(values));
        }
        t.push("n_seeds", Values::I64(self.n_seeds));
        t.push("seeds_needed", Values::OptI64(self.seeds_needed));
        t
    }
}

#[cfg(test)]
mod tests;
