//! One condition of a claim: a per-seed quantity compared with a threshold through its seed
//! mean and 95% Student-t interval (SPEC §1.6).

use crate::analysis::{mean_ci95, t_975};

/// How a quantity is compared with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// quantity > threshold.
    Greater,
    /// quantity ≥ threshold.
    AtLeast,
    /// quantity ≤ threshold.
    AtMost,
    /// |quantity| > threshold: a change in either direction.
    AbsGreater,
}

impl Comparison {
    /// The comparison as written in the claims table.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Greater => ">",
            Comparison::AtLeast => ">=",
            Comparison::AtMost => "<=",
            Comparison::AbsGreater => "|x| >",
        }
    }
}

/// What the interval says about a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The interval lies wholly on the right side of the threshold.
    Pass,
    /// The interval lies wholly on the wrong side.
    Fail,
    /// The interval straddles the threshold (or there are too few seeds for an interval).
    Undecided,
}

impl Outcome {
    /// The outcome as written in the claims table.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Undecided => "undecided",
        }
    }
}

/// A condition on a quantity measured once per seed (or, when `exact`, known without seed noise,
/// like the checkpoint where the seed-mean curve peaks).
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// What is required, in words, e.g. `rise: peak - initial color bits > 0`.
    pub text: String,
    /// The configuration it is measured in (empty when it compares several).
    pub config: String,
    /// The quantity's name, e.g. `peak - initial color bits`.
    pub quantity: String,
    /// Its value per seed (non-finite values are left out), or the one exact value.
    pub values: Vec<f64>,
    /// Whether the value is known exactly (no interval).
    pub exact: bool,
    /// Seeds behind the value (the length of `values`, or for an exact value the seeds it was
    /// read from).
    pub seeds: usize,
    /// How it is compared.
    pub comparison: Comparison,
    /// The threshold.
    pub threshold: f64,
}

/// Mean, lower and upper bound of a condition's quantity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Seed mean (or the exact value).
    pub mean: f64,
    /// Lower bound of the 95% interval.
    pub lower: f64,
    /// Upper bound of the 95% interval.
    pub upper: f64,
}

impl Condition {
    /// A condition on per-seed values.
    pub fn per_seed(
        text: String,
        config: &str,
        quantity: String,
        values: Vec<f64>,
        comparison: Comparison,
        threshold: f64,
    ) -> Condition {
        let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        Condition {
            text,
            config: config.to_string(),
            quantity,
            seeds: values.len(),
            values,
            exact: false,
            comparison,
            threshold,
        }
    }

    /// A condition on a value known without seed noise, read from `seeds` seeds.
    pub fn exact(
        text: String,
        config: &str,
        quantity: String,
        (value, seeds): (f64, usize),
        comparison: Comparison,
        threshold: f64,
    ) -> Condition {
        Condition {
            exact: true,
            seeds,
            ..Condition::per_seed(text, config, quantity, vec![value], comparison, threshold)
        }
    }

    /// Number of seeds behind the quantity.
    pub fn n_seeds(&self) -> usize {
        self.seeds
    }

    /// The seed mean with its 95% interval; the mean alone (no bounds) when fewer than two seeds
    /// give no estimate of the seed noise.
    pub fn interval(&self) -> (Option<f64>, Option<Interval>) {
        match (self.values.len(), self.exact) {
            (0, _) => (None, None),
            (_, true) => {
                let v = self.values[0];
                (
                    Some(v),
                    Some(Interval {
                        mean: v,
                        lower: v,
                        upper: v,
                    }),
                )
            }
            (1, false) => (Some(self.values[0]), None),
            _ => {
                let (mean, lower, upper) = mean_ci95(&self.values);
                (Some(mean), Some(Interval { mean, lower, upper }))
            }
        }
    }

    /// Pass, fail or undecided, from where the interval lies.
    pub fn outcome(&self) -> Outcome {
        let Some(Interval { lower, upper, .. }) = self.interval().1 else {
            return Outcome::Undecided;
        };
        let t = self.threshold;
        let (pass, fail) = match self.comparison {
            Comparison::Greater => (lower > t, upper <= t),
            Comparison::AtLeast => (lower >= t, upper < t),
            Comparison::AtMost => (upper <= t, lower > t),
            Comparison::AbsGreater => (lower > t || upper < -t, lower >= -t && upper <= t),
        };
        match (pass, fail) {
            (true, _) => Outcome::Pass,
            (_, true) => Outcome::Fail,
            _ => Outcome::Undecided,
        }
    }

    /// For an undecided condition: how many seeds the observed spread would need for the interval
    /// to clear the threshold, if the mean stayed where it is. `None` when that cannot be
    /// estimated (fewer than two seeds, or a mean on the threshold) or would exceed 10,000.
    pub fn seeds_needed(&self) -> Option<usize> {
        if self.outcome() != Outcome::Undecided || self.exact || self.values.len() < 2 {
            return None;
        }
        let n = self.values.len();
        let (mean, _, _) = mean_ci95(&self.values);
        let sd =
            (self.values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let distance = match self.comparison {
            Comparison::AbsGreater => (mean.abs() - self.threshold).abs(),
            _ => (mean - self.threshold).abs(),
        };
        if distance <= 0.0 {
            return None;
        }
        (n + 1..=10_000).find(|&m| t_975(m - 1) * sd / (m as f64).sqrt() < distance)
    }

    /// The measurement in words: mean [lower, upper] over n seeds, and the outcome.
    pub fn measured(&self) -> String {
        let (mean, interval) = self.interval();
        let value = match (mean, interval) {
            (None, _) => "no measurement".to_string(),
            (Some(m), _) if self.exact => format!("{m:.3}"),
            (Some(m), Some(i)) => format!(
                "{m:.3} [{:.3}, {:.3}] over {} seeds",
                i.lower,
                i.upper,
                self.n_seeds()
            ),
            (Some(m), None) => format!("{m:.3} from 1 seed (no interval)"),
        };
        let config = if self.config.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.config)
        };
        format!(
            "{config}{} = {value}: {}",
            self.quantity,
            self.outcome().name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(values: &[f64], comparison: Comparison, threshold: f64) -> Condition {
        Condition::per_seed(
            "c".into(),
            "cfg",
            "q".into(),
            values.to_vec(),
            comparison,
            threshold,
        )
    }

    #[test]
    fn intervals_decide_each_comparison() {
        use Comparison::*;
        let tight_high = [1.0, 1.1, 0.9];
        let tight_low = [-1.0, -1.1, -0.9];
        let wide = [-1.0, 1.0, 0.3];
        assert_eq!(cond(&tight_high, Greater, 0.0).outcome(), Outcome::Pass);
        assert_eq!(cond(&tight_low, Greater, 0.0).outcome(), Outcome::Fail);
        assert_eq!(cond(&wide, Greater, 0.0).outcome(), Outcome::Undecided);
        assert_eq!(cond(&tight_high, AtMost, 0.0).outcome(), Outcome::Fail);
        assert_eq!(cond(&tight_low, AtMost, 0.0).outcome(), Outcome::Pass);
        assert_eq!(cond(&tight_high, AtLeast, 0.5).outcome(), Outcome::Pass);
        assert_eq!(cond(&tight_low, AbsGreater, 0.5).outcome(), Outcome::Pass);
        assert_eq!(
            cond(&[0.01, -0.02, 0.0], AbsGreater, 0.5).outcome(),
            Outcome::Fail
        );
        assert_eq!(cond(&wide, AbsGreater, 0.5).outcome(), Outcome::Undecided);
    }

    #[test]
    fn one_seed_gives_no_interval_and_no_decision() {
        let c = cond(&[5.0], Comparison::Greater, 0.0);
        assert_eq!(c.interval(), (Some(5.0), None));
        assert_eq!(c.outcome(), Outcome::Undecided);
        assert_eq!(c.seeds_needed(), None);
        let e = Condition::exact(
            "c".into(),
            "",
            "q".into(),
            (3.0, 4),
            Comparison::AtMost,
            25.0,
        );
        assert_eq!(e.n_seeds(), 4);
        assert_eq!(e.outcome(), Outcome::Pass);
    }

    #[test]
    fn seeds_needed_shrinks_the_interval_past_the_threshold() {
        let c = cond(&[0.02, 0.10, 0.06], Comparison::Greater, 0.0);
        assert_eq!(c.outcome(), Outcome::Undecided);
        let m = c.seeds_needed().unwrap();
        assert!(m > 3, "{m}");
        // The same mean and spread with m values passes.
        let sd = 0.04;
        assert!(t_975(m - 1) * sd / (m as f64).sqrt() < 0.06);
        assert!(t_975(m - 2) * sd / ((m - 1) as f64).sqrt() >= 0.06);
        assert_eq!(
            cond(&[-0.1, 0.1], Comparison::Greater, 0.0).seeds_needed(),
            None,
            "a mean on the threshold is never decided"
        );
    }

    #[test]
    fn non_finite_values_are_left_out() {
        let c = cond(&[1.0, f64::NAN, 1.2], Comparison::Greater, 0.0);
        assert_eq!(c.n_seeds(), 2);
    }
}
