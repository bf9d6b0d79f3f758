//! Datasets as every stage sees them, whatever the task: a training and a validation split, each
//! with its inputs (feature vectors, or images kept as bytes) and every label; per-channel
//! normalisation statistics for images; and the batches a network trains on.
//!
//! File layout: `{train,val}.inputs` (n × dim, f32) or `{train,val}.images` (n × c × h × w, u8,
//! CIFAR's channel-major layout), `{train,val}.<label>` (n, i64), `norm.mean` and `norm.std`
//! (c, f32) for images; metadata `params` (the task's parameters, JSON) and `labels`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::rng::Rng;
use crate::task::TaskParams;
use crate::tensors::{NamedTensor, TensorFile};

/// The inputs of one split.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// Feature vectors, rows × `dim`.
    Features {
        /// Features per example.
        dim: usize,
        /// Values, row-major.
        values: Vec<f32>,
    },
    /// Images as bytes, rows × channels × height × width.
    Images {
        /// (channels, height, width).
        shape: [usize; 3],
        /// Pixel bytes, example-major then channel-major.
        pixels: Vec<u8>,
    },
}

impl Inputs {
    /// Values per example.
    pub fn example_size(&self) -> usize {
        match self {
            Inputs::Features { dim, .. } => *dim,
            Inputs::Images { shape, .. } => shape.iter().product(),
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        let size = self.example_size().max(1);
        match self {
            Inputs::Features { values, .. } => values.len() / size,
            Inputs::Images { pixels, .. } => pixels.len() / size,
        }
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` examples.
    fn head(&self, n: usize) -> Inputs {
        let n = n.min(self.len()) * self.example_size();
        match self {
            Inputs::Features { dim, values } => Inputs::Features {
                dim: *dim,
                values: values[..n].to_vec(),
            },
            Inputs::Images { shape, pixels } => Inputs::Images {
                shape: *shape,
                pixels: pixels[..n].to_vec(),
            },
        }
    }
}

/// Per-channel mean and standard deviation of image pixels scaled to [0, 1], from the training
/// split: a network sees `(pixel / 255 - mean) / std`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

impl Normalization {
    /// The statistics of a split's images (sums in a fixed order, in f64).
    pub fn of(inputs: &Inputs) -> Option<Normalization> {
        let Inputs::Images {
            shape: [c, h, w],
            pixels,
        } = inputs
        else {
            return None;
        };
        let plane = h * w;
        let (mut sum, mut sq) = (vec![0f64; *c], vec![0f64; *c]);
        for image in pixels.chunks_exact(c * plane) {
            for (ch, values) in image.chunks_exact(plane).enumerate() {
                for &p in values {
                    let v = p as f64 / 255.0;
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
        }
        let count = (inputs.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| ((s / count - m * m).max(0.0).sqrt().max(1e-6)) as f32)
            .collect();
        Some(Normalization {
            mean: mean.iter().map(|m| *m as f32).collect(),
            std,
        })
    }

    /// The normalised value of each byte, per channel.
    fn tables(&self) -> Vec<[f32; 256]> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(m, s)| std::array::from_fn(|p| (p as f32 / 255.0 - m) / s))
            .collect()
    }
}

/// Training-time augmentation of images (SPEC §1.3): a random crop of the image padded by 4
/// pixels on each side (zeros), then a horizontal flip with probability 1/2.
pub const PAD: usize = 4;

/// One split: inputs and every label.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Inputs.
    pub inputs: Inputs,
    /// Label name → class per example.
    pub labels: BTreeMap<String, Vec<i64>>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// True when the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// A label's classes, or an error naming it and the labels there are.
    pub fn label(&self, name: &str) -> Result<&[i64]> {
        match self.labels.get(name) {
            Some(v) => Ok(v),
            None => bail!(
                "unknown label `{name}` (known: {})",
                self.labels.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The first `n` examples (all of them when there are fewer).
    pub fn head(&self, n: usize) -> Split {
        Split {
            inputs: self.inputs.head(n),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v[..n.min(v.len())].to_vec()))
                .collect(),
        }
    }
}

/// Turns examples of a split into network input rows.
pub struct Batcher<'a> {
    split: &'a Split,
    tables: Vec<[f32; 256]>,
}

impl<'a> Batcher<'a> {
    /// A batcher for `split`; images are normalised with `norm`.
    pub fn new(split: &'a Split, norm: Option<&Normalization>) -> Batcher<'a> {
        Batcher {
            split,
            tables: norm.map(Normalization::tables).unwrap_or_default(),
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.split.len()
    }

    /// True when the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.split.is_empty()
    }

    /// Values per network input row.
    pub fn row_size(&self) -> usize {
        self.split.inputs.example_size()
    }

    /// Writes the examples `rows` into `out` (rows × row size): features as they are, images
    /// normalised in height × width × channel order. With `augment`, each image is padded,
    /// randomly cropped and flipped with draws from that generator, in row order.
    pub fn gather(&self, rows: &[usize], mut augment: Option<&mut Rng>, out: &mut [f32]) {
        let size = self.row_size();
        match &self.split.inputs {
            Inputs::Features { values, .. } => {
                for (r, &i) in rows.iter().enumerate() {
                    out[r * size..(r + 1) * size]
                        .copy_from_slice(&values[i * size..(i + 1) * size]);
                }
            }
            Inputs::Images {
                shape: [c, h, w],
                pixels,
            } => {
                for (r, &i) in rows.iter().enumerate() {
                    let (oy, ox, flip) = match augment.as_deref_mut() {
                        Some(rng) => (
                            rng.below(2 * PAD as u64 + 1) as usize,
                            rng.below(2 * PAD as u64 + 1) as usize,
                            rng.below(2) == 1,
                        ),
                        None => (PAD, PAD, false),
                    };
                    let image = &pixels[i * size..(i + 1) * size];
                    let dest = &mut out[r * size..(r + 1) * size];
                    for y in 0..*h {
                        for x in 0..*w {
                            let sx = if flip { w - 1 - x } else { x };
                            let (py, px) =
                                ((y + oy).wrapping_sub(PAD), (sx + ox).wrapping_sub(PAD));
                            let inside = py < *h && px < *w;
                            for ch in 0..*c {
                                let byte = if inside {
                                    image[ch * h * w + py * w + px]
                                } else {
                                    0
                                };
                                dest[(y * w + x) * c + ch] = self.tables[ch][byte as usize];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A dataset: training and validation splits, and how images are normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Training split.
    pub train: Split,
    /// Validation split (CIFAR's test set).
    pub val: Split,
    /// Normalisation of images, from the training split.
    pub norm: Option<Normalization>,
    /// The task's parameters the dataset was made from.
    pub params: TaskParams,
}

impl Dataset {
    /// A dataset from its splits; image statistics come from the training split.
    pub fn new(train: Split, val: Split, params: TaskParams) -> Dataset {
        Dataset {
            norm: Normalization::of(&train.inputs),
            train,
            val,
            params,
        }
    }

    /// The dataset as a safetensors file (see the module documentation).
    pub fn to_file(&self) -> TensorFile {
        let mut f = TensorFile::default();
        for (name, split) in [("train", &self.train), ("val", &self.val)] {
            let n = split.len();
            match &split.inputs {
                Inputs::Features { dim, values } => f.insert(
                    format!("{name}.inputs"),
                    NamedTensor::f32(vec![n, *dim], values.clone()),
                ),
                Inputs::Images { shape, pixels } => f.insert(
                    format!("{name}.images"),
                    NamedTensor::u8(vec![n, shape[0], shape[1], shape[2]], pixels.clone()),
                ),
            }
            for (label, ys) in &split.labels {
                f.insert(
                    format!("{name}.{label}"),
                    NamedTensor::i64(vec![ys.len()], ys.clone()),
                );
            }
        }
        if let Some(norm) = &self.norm {
            let c = norm.mean.len();
            f.insert("norm.mean", NamedTensor::f32(vec![c], norm.mean.clone()));
            f.insert("norm.std", NamedTensor::f32(vec![c], norm.std.clone()));
        }
        let labels: Vec<&String> = self.train.labels.keys().collect();
        f.metadata.insert(
            "params".into(),
            serde_json::to_string(&self.params).expect("json"),
        );
        f.metadata.insert(
            "labels".into(),
            serde_json::to_string(&labels).expect("json"),
        );
        f
    }

    /// Reads a dataset back from its safetensors file.
    pub fn from_file(f: &TensorFile) -> Result<Dataset> {
        let params: TaskParams =
            serde_json::from_str(f.meta("params")?).context("dataset metadata `params`")?;
        let labels: Vec<String> =
            serde_json::from_str(f.meta("labels")?).context("dataset metadata `labels`")?;
        let split = |name: &str| -> Result<Split> {
            let inputs = match f.tensors.get(&format!("{name}.images")) {
                Some(t) => {
                    let [_, c, h, w] = t.shape[..] else {
                        bail!(
                            "tensor `{name}.images` has shape {:?}, expected n × c × h × w",
                            t.shape
                        );
                    };
                    Inputs::Images {
                        shape: [c, h, w],
                        pixels: t.as_u8(name)?.to_vec(),
                    }
                }
                None => {
                    let key = format!("{name}.inputs");
                    let t = f.get(&key)?;
                    Inputs::Features {
                        dim: t.shape.get(1).copied().unwrap_or(0),
                        values: t.as_f32(&key)?.to_vec(),
                    }
                }
            };
            let mut out = BTreeMap::new();
            for label in &labels {
                out.insert(label.clone(), f.i64(&format!("{name}.{label}"))?.to_vec());
            }
            Ok(Split {
                inputs,
                labels: out,
            })
        };
        let norm = match (f.tensors.get("norm.mean"), f.tensors.get("norm.std")) {
            (Some(m), Some(s)) => Some(Normalization {
                mean: m.as_f32("norm.mean")?.to_vec(),
                std: s.as_f32("norm.std")?.to_vec(),
            }),
            _ => None,
        };
        Ok(Dataset {
            train: split("train")?,
            val: split("val")?,
            norm,
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> Split {
        // Two 2-channel 2 × 3 images with distinct bytes.
        let pixels: Vec<u8> = (0..24).map(|i| i as u8 * 10).collect();
        Split {
            inputs: Inputs::Images {
                shape: [2, 2, 3],
                pixels,
            },
            labels: [("y".to_string(), vec![0, 1])].into(),
        }
    }

    #[test]
    fn images_are_normalised_in_hwc_order_and_augmentation_pads_crops_and_flips() {
        let split = images();
        let norm = Normalization {
            mean: vec![0.0, 0.5],
            std: vec![1.0, 0.5],
        };
        let b = Batcher::new(&split, Some(&norm));
        let mut plain = vec![0f32; 24];
        b.gather(&[0, 1], None, &mut plain);
        // Image 1, pixel (y 1, x 2): channel 0 byte index 12 + 5, channel 1 byte 12 + 6 + 5.
        let at =
            |v: &[f32], img: usize, y: usize, x: usize, c: usize| v[img * 12 + (y * 3 + x) * 2 + c];
        assert_eq!(at(&plain, 1, 1, 2, 0), 170.0 / 255.0);
        assert_eq!(at(&plain, 1, 1, 2, 1), (230.0 / 255.0 - 0.5) / 0.5);
        // Draws until a crop shifted by one row and a flip come up; then check that pixel.
        let mut found = false;
        for seed in 0..2000 {
            let mut out = vec![0f32; 12];
            let mut probe = Rng::new(seed);
            let (oy, ox, flip) = (probe.below(9), probe.below(9), probe.below(2) == 1);
            b.gather(&[0], Some(&mut Rng::new(seed)), &mut out);
            if oy == 5 && ox == 4 && flip {
                // Output (0, 0) reads source row 1, column (2 - 0) after the flip.
                assert_eq!(at(&out, 0, 0, 0, 0), 50.0 / 255.0);
                assert_eq!(at(&out, 0, 1, 0, 0), 0.0, "below the image: padding");
                found = true;
            }
        }
        assert!(found);
    }

    #[test]
    fn normalisation_comes_from_the_pixels() {
        let n = Normalization::of(&images().inputs).unwrap();
        let ch0: Vec<f64> = (0..24)
            .filter(|i| (i / 6) % 2 == 0)
            .map(|i| i as f64 * 10.0 / 255.0)
            .collect();
        let mean = ch0.iter().sum::<f64>() / 12.0;
        assert!((n.mean[0] as f64 - mean).abs() < 1e-6);
    }
}
