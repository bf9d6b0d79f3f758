//! Usable information over epochs, per seed, for each (configuration, layer, label, decoder):
//! what the summary and the claims read from `usable_info`. Runs that diverged are left out.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use crate::table::Table;

/// (config, layer index, layer name, label, decoder).
pub type CurveKey = (String, i64, String, String, String);

/// One curve's measurements: seed → epoch → bits, and the shuffled-label null values.
#[derive(Clone, Debug, Default)]
struct Raw {
    bits: BTreeMap<u64, BTreeMap<i64, f64>>,
    null: Vec<f64>,
}

/// Every curve of an experiment.
#[derive(Clone, Debug, Default)]
pub struct Series {
    raw: BTreeMap<CurveKey, Raw>,
}

/// One curve on the checkpoints every seed measured: `bits[s][i]` is seed `seeds[s]` at
/// `epochs[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Seeds, ascending.
    pub seeds: Vec<u64>,
    /// Epochs, ascending.
    pub epochs: Vec<i64>,
    /// Bits per seed and checkpoint.
    pub bits: Vec<Vec<f64>>,
    /// Shuffled-label null bits measured on this curve (any seed, any checkpoint).
    pub null: Vec<f64>,
}

impl Curve {
    /// The seed-mean bits at each checkpoint.
    pub fn mean(&self) -> Vec<f64> {
        (0..self.epochs.len())
            .map(|i| self.bits.iter().map(|b| b[i]).sum::<f64>() / self.bits.len() as f64)
            .collect()
    }

    /// The checkpoint where the seed-mean curve is highest (the earliest on a tie).
    pub fn peak(&self) -> usize {
        let mean = self.mean();
        (0..mean.len()).fold(0, |best, i| if mean[i] > mean[best] { i } else { best })
    }

    /// The last checkpoint.
    pub fn last(&self) -> usize {
        self.epochs.len() - 1
    }

    /// Each seed's bits at checkpoint `i`.
    pub fn at(&self, i: usize) -> Vec<f64> {
        self.bits.iter().map(|b| b[i]).collect()
    }

    /// Each seed's `f` of its bits at checkpoints `i` and `j`.
    pub fn paired(&self, i: usize, j: usize, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
        self.bits.iter().map(|b| f(b[i], b[j])).collect()
    }

    /// Bits at the last checkpoint by seed.
    pub fn final_by_seed(&self) -> BTreeMap<u64, f64> {
        let last = self.last();
        self.seeds
            .iter()
            .zip(&self.bits)
            .map(|(&s, b)| (s, b[last]))
            .collect()
    }
}

impl Series {
    /// Reads `usable_info` (columns config, seed, run_id, status, epoch, layer_index, layer,
    /// label, decoder, bits, null_bits). Runs with any row whose status is not `ok` are left out.
    pub fn from_usable_info(usable: &Table) -> Result<Series> {
        let mut raw: BTreeMap<CurveKey, Raw> = BTreeMap::new();
        if usable.rows() == 0 {
            return Ok(Series { raw });
        }
        let (config, seed, ids, status) = (
            usable.str("config")?,
            usable.i64("seed")?,
            usable.str("run_id")?,
            usable.str("status")?,
        );
        let (epoch, li, layer, label, decoder, bits, null) = (
            usable.i64("epoch")?,
            usable.i64("layer_index")?,
            usable.str("layer")?,
            usable.str("label")?,
            usable.str("decoder")?,
            usable.f64("bits")?,
            usable.f64("null_bits")?,
        );
        let diverged: BTreeSet<&str> = (0..usable.rows())
            .filter(|&i| status[i] != "ok")
            .map(|i| ids[i].as_str())
            .collect();
        for i in 0..usable.rows() {
            if diverged.contains(ids[i].as_str()) {
                continue;
            }
            let key = (
                config[i].clone(),
                li[i],
                layer[i].clone(),
                label[i].clone(),
                decoder[i].clone(),
            );
            let entry = raw.entry(key).or_default();
            entry
                .bits
                .entry(seed[i] as u64)
                .or_default()
                .insert(epoch[i], bits[i]);
            if null[i].is_finite() {
                entry.null.push(null[i]);
            }
        }
        Ok(Series { raw })
    }

    /// Every curve's key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &CurveKey> {
        self.raw.keys()
    }

    /// The curve of a key, on the checkpoints every seed measured with a finite value; `None`
    /// when there is no such checkpoint.
    pub fn curve(&self, key: &CurveKey) -> Option<Curve> {
        let raw = self.raw.get(key)?;
        let epochs: Vec<i64> = raw
            .bits
            .values()
            .map(|e| {
                e.iter()
                    .filter(|(_, b)| b.is_finite())
                    .map(|(&k, _)| k)
                    .collect::<BTreeSet<i64>>()
            })
            .reduce(|a, b| a.intersection(&b).copied().collect())?
            .into_iter()
            .collect();
        if epochs.is_empty() {
            return None;
        }
        Some(Curve {
            seeds: raw.bits.keys().copied().collect(),
            bits: raw
                .bits
                .values()
                .map(|e| epochs.iter().map(|k| e[k]).collect())
                .collect(),
            epochs,
            null: raw.null.clone(),
        })
    }

    /// The curve of (config, layer index, label, decoder).
    pub fn find(&self, config: &str, layer: i64, label: &str, decoder: &str) -> Option<Curve> {
        let key = self
            .raw
            .keys()
            .find(|(c, l, _, lb, d)| c == config && *l == layer && lb == label && d == decoder)?;
        self.curve(key)
    }

    /// The last probed layer (highest index) of a configuration, and its name.
    pub fn last_layer(&self, config: &str) -> Option<(i64, String)> {
        self.raw
            .keys()
            .filter(|k| k.0 == config)
            .map(|k| (k.1, k.2.clone()))
            .max_by_key(|k| k.0)
    }

    /// The decoder claims and figures use: `linear` when measured, else the first.
    pub fn preferred_decoder(&self) -> Option<String> {
        let decoders: BTreeSet<&String> = self.raw.keys().map(|k| &k.4).collect();
        decoders
            .iter()
            .find(|d| d.as_str() == "linear")
            .or(decoders.first())
            .map(|d| d.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_read_from_the_seed_mean_curve() {
        let c = Curve {
            seeds: vec![0, 1],
            epochs: vec![0, 1, 2],
            bits: vec![vec![0.0, 0.9, 0.1], vec![0.0, 0.5, 1.0]],
            null: vec![],
        };
        // Seed maxima are 0.9 and 1.0 at different epochs; the seed mean peaks at epoch 1.
        assert_eq!(c.peak(), 1);
        assert_eq!(c.at(c.peak()), vec![0.9, 0.5]);
    }
}
