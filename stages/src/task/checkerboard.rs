//! The checkerboard perceptual decision task (SPEC §1.2): a 15×15 board with R red squares and
//! two coloured targets; the network reports the direction of the target whose colour dominates.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::claims::TaskClaims;
use crate::data::{Dataset, Inputs, Split};
use crate::rng::Rng;
use crate::task::{Derived, Label, Source, Task, TaskParams};

/// The 14 red-square counts R, drawn uniformly.
pub const RED_COUNTS: [u32; 14] = [
    11, 45, 67, 78, 90, 101, 108, 117, 124, 135, 147, 158, 180, 214,
];
/// Squares on the board.
pub const SQUARES: u32 = 225;
/// The labels kept with every example, with their number of classes.
pub const LABELS: [(&str, usize); 4] = [
    ("direction", 2),
    ("color", 2),
    ("target", 2),
    ("condition", 14),
];
/// Number of input features.
pub const INPUT_DIM: usize = 4;

/// How the board is presented to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `[t, −t, c, −c]` with red coherence c = 2R/225 − 1.
    Coherence,
    /// `[t, −t, R/225, 1 − R/225]`.
    Proportion,
}

/// Parameters of a generated checkerboard dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetParams {
    /// Total examples (train + validation).
    pub n: usize,
    /// Fraction of examples in the validation split.
    pub val_fraction: f64,
    /// Input encoding.
    pub encoding: Encoding,
    /// Standard deviation of the Gaussian noise on the two checkerboard channels.
    pub noise: f64,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for DatasetParams {
    fn default() -> Self {
        DatasetParams {
            n: 10_000,
            val_fraction: 0.1,
            encoding: Encoding::Coherence,
            noise: 0.1,
            seed: 0,
        }
    }
}

impl DatasetParams {
    /// Examples in the training split.
    pub fn n_train(&self) -> usize {
        self.n - self.n_val()
    }

    /// Examples in the validation split.
    pub fn n_val(&self) -> usize {
        (self.n as f64 * self.val_fraction).round() as usize
    }
}

/// Generates the dataset from its parameters.
pub fn generate(p: &DatasetParams) -> Dataset {
    let mut rng = Rng::derive(p.seed, "checkerboard", 0);
    let mut inputs = Vec::with_capacity(p.n * INPUT_DIM);
    let mut labels: BTreeMap<String, Vec<i64>> = LABELS
        .iter()
        .map(|(n, _)| (n.to_string(), Vec::new()))
        .collect();
    for _ in 0..p.n {
        let cond = rng.below(RED_COUNTS.len() as u64) as usize;
        let r = RED_COUNTS[cond];
        let t: f64 = if rng.below(2) == 0 { -1.0 } else { 1.0 };
        let red_dominant = r * 2 > SQUARES;
        let (a, b) = match p.encoding {
            Encoding::Coherence => {
                let c = 2.0 * r as f64 / SQUARES as f64 - 1.0;
                (c, -c)
            }
            Encoding::Proportion => (r as f64 / SQUARES as f64, 1.0 - r as f64 / SQUARES as f64),
        };
        let n1 = rng.normal() * p.noise;
        let n2 = rng.normal() * p.noise;
        inputs.extend_from_slice(&[t as f32, -t as f32, (a + n1) as f32, (b + n2) as f32]);
        // t = −1: left target red. Red dominant → go to the red target.
        let left_is_red = t < 0.0;
        let go_left = left_is_red == red_dominant;
        labels
            .get_mut("direction")
            .unwrap()
            .push(if go_left { 0 } else { 1 });
        labels
            .get_mut("color")
            .unwrap()
            .push(if red_dominant { 1 } else { 0 });
        labels
            .get_mut("target")
            .unwrap()
            .push(if left_is_red { 0 } else { 1 });
        labels.get_mut("condition").unwrap().push(cond as i64);
    }
    let n_train = p.n_train();
    let split = |range: std::ops::Range<usize>| Split {
        inputs: Inputs::Features {
            dim: INPUT_DIM,
            values: inputs[range.start * INPUT_DIM..range.end * INPUT_DIM].to_vec(),
        },
        labels: labels
            .iter()
            .map(|(k, v)| (k.clone(), v[range.clone()].to_vec()))
            .collect(),
    };
    Dataset::new(
        split(0..n_train),
        split(n_train..p.n),
        TaskParams::Checkerboard(p.clone()),
    )
}

/// Posterior probability that red dominates, for each example of a split, under the generating
/// model (uniform prior over the 14 boards, Gaussian noise): the Bayes-optimal colour read-out.
pub fn colour_posterior(split: &Split, p: &DatasetParams) -> Result<Vec<f64>> {
    let Inputs::Features { values, .. } = &split.inputs else {
        bail!("the checkerboard's inputs are feature vectors");
    };
    let means: Vec<(f64, f64, bool)> = RED_COUNTS
        .iter()
        .map(|&r| {
            let (a, b) = match p.encoding {
                Encoding::Coherence => {
                    let c = 2.0 * r as f64 / SQUARES as f64 - 1.0;
                    (c, -c)
                }
                Encoding::Proportion => {
                    (r as f64 / SQUARES as f64, 1.0 - r as f64 / SQUARES as f64)
                }
            };
            (a, b, r * 2 > SQUARES)
        })
        .collect();
    let var = (p.noise * p.noise).max(1e-12);
    Ok(values
        .chunks_exact(INPUT_DIM)
        .map(|x| {
            let logs: Vec<f64> = means
                .iter()
                .map(|(a, b, _)| {
                    -((x[2] as f64 - a).powi(2) + (x[3] as f64 - b).powi(2)) / (2.0 * var)
                })
                .collect();
            let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let (mut red, mut all) = (0.0, 0.0);
            for (l, (_, _, is_red)) in logs.iter().zip(&means) {
                let w = crate::math::exp(l - m);
                all += w;
                if *is_red {
                    red += w;
                }
            }
            red / all
        })
        .collect())
}

/// The most bits any decoder can read about `color` (and so `direction`, which adds the visible
/// target configuration) from the inputs: H(Y) − CE of the Bayes posterior, on a split.
pub fn colour_ceiling_bits(split: &Split, p: &DatasetParams) -> Result<f64> {
    let post = colour_posterior(split, p)?;
    let colour = split.label("color")?;
    let ce: f64 = post
        .iter()
        .zip(colour)
        .map(|(q, &y)| -crate::math::ln((if y == 1 { *q } else { 1.0 - q }).max(1e-12)))
        .sum::<f64>()
        / post.len().max(1) as f64;
    Ok(crate::info::entropy_bits(colour, 2) - ce / std::f64::consts::LN_2)
}

impl Task for DatasetParams {
    fn input_shape(&self) -> Vec<usize> {
        vec![INPUT_DIM]
    }

    fn labels(&self) -> Vec<Label> {
        LABELS
            .iter()
            .map(|&(name, classes)| Label {
                name: name.into(),
                classes,
            })
            .collect()
    }

    fn derived(&self) -> Vec<Derived> {
        Vec::new()
    }

    fn default_target(&self) -> &'static str {
        "direction"
    }

    fn default_probe_labels(&self) -> Vec<String> {
        vec!["color".into(), "direction".into()]
    }

    /// The network learns `direction`; `color` is meaningful but irrelevant to the output; C1
    /// asks for 0.9 of the Bayes ceiling.
    fn claims(&self) -> TaskClaims {
        TaskClaims {
            relevant: "direction".into(),
            irrelevant: "color".into(),
            image: false,
            c1_fraction: 0.9,
        }
    }

    /// The Bayes ceiling of `color` (and so of `direction`) on the validation split.
    fn ceiling_bits(&self, data: &Dataset) -> Result<f64> {
        colour_ceiling_bits(&data.val, self)
    }

    fn make(&self, _: &Source) -> Result<Dataset> {
        Ok(generate(self))
    }

    fn train_size(&self) -> Option<usize> {
        Some(self.n_train())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_task() {
        let d = generate(&DatasetParams {
            noise: 0.0,
            ..Default::default()
        });
        assert_eq!(d.train.len(), 9000);
        assert_eq!(d.val.len(), 1000);
        let Inputs::Features { values, .. } = &d.train.inputs else {
            panic!("features");
        };
        for i in 0..d.train.len() {
            let x = &values[i * 4..i * 4 + 4];
            let colour = d.train.labels["color"][i];
            let target = d.train.labels["target"][i];
            let direction = d.train.labels["direction"][i];
            assert_eq!(colour == 1, x[2] > 0.0);
            assert_eq!(x[0], -x[1]);
            // direction = colour XOR configuration
            assert_eq!(direction, colour ^ target ^ 1);
        }
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let p = DatasetParams::default();
        assert_eq!(generate(&p), generate(&p));
        assert_ne!(
            generate(&p).train.inputs,
            generate(&DatasetParams { seed: 1, ..p }).train.inputs
        );
    }

    #[test]
    fn file_round_trip() {
        let d = generate(&DatasetParams {
            n: 100,
            ..Default::default()
        });
        let bytes = d.to_file().to_bytes();
        let back =
            Dataset::from_file(&crate::tensors::TensorFile::from_bytes(&bytes).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn ceiling_is_below_one_bit_with_noise_and_one_without() {
        let noisy = generate(&DatasetParams::default());
        let c = colour_ceiling_bits(&noisy.val, &DatasetParams::default()).unwrap();
        assert!(c > 0.6 && c < 0.99, "{c}");
        let p0 = DatasetParams {
            noise: 0.001,
            ..Default::default()
        };
        let clean = generate(&p0);
        assert!(colour_ceiling_bits(&clean.val, &p0).unwrap() > 0.99);
    }
}
