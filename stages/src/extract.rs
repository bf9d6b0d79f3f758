//! Representation extraction: the activations of every probed layer (globally average-pooled
//! for convolutional networks), and the logits, for fixed subsets of each split, in eval mode and
//! in mini-batches.
//!
//! File layout: `{train,val}.{layer}` (n × width, f32) for each probed layer, `{train,val}.logits`
//! (n × classes); metadata `layers` (JSON list of names, index order), `epoch`, `step`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::data::{Batcher, Dataset};
use crate::model::Backend;
use crate::tensors::{NamedTensor, TensorFile};
use crate::train::eval_batches;

/// Which examples are extracted: the first ones of each split, the same at every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    /// Examples of the training split (the decoders' fitting and early-stopping slices).
    pub train_examples: usize,
    /// Examples of the validation split (the decoders' test slice).
    pub val_examples: usize,
}

impl Default for ExtractParams {
    fn default() -> Self {
        ExtractParams {
            train_examples: 10_000,
            val_examples: 10_000,
        }
    }
}

/// Runs the network over both splits' subsets and collects the probed layers' activations.
/// A diverged checkpoint gives a file with no tensors and a `diverged` metadata entry. The
/// network runs on `backend`.
pub fn extract(
    ckpt: &Checkpoint,
    data: &Dataset,
    p: &ExtractParams,
    backend: &dyn Backend,
) -> Result<TensorFile> {
    let layers = ckpt.shape.probed_layers();
    let mut f = TensorFile::default();
    let splits = match &ckpt.diverged {
        Some(d) => {
            f.metadata.insert("diverged".into(), d.clone());
            Vec::new()
        }
        None => vec![
            ("train", data.train.head(p.train_examples)),
            ("val", data.val.head(p.val_examples)),
        ],
    };
    if !splits.is_empty() {
        let model = backend.load(&ckpt.shape, &ckpt.weights, &ckpt.momentum)?;
        for (name, split) in splits {
            let rows = split.len();
            let mut features: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
            let mut logits = Vec::new();
            eval_batches(
                model.as_ref(),
                &Batcher::new(&split, data.norm.as_ref()),
                |_, out| {
                    // Each split's activations grow once to their full size, not by doubling
                    // (every doubling of a large vector copies it into freshly mapped memory).
                    let batch_rows = out.logits.len() / ckpt.shape.classes.max(1);
                    for (all, batch) in features.iter_mut().zip(out.features) {
                        if all.is_empty() {
                            all.reserve_exact(batch.len() / batch_rows.max(1) * rows);
                        }
                        all.extend(batch);
                    }
                    logits.extend(out.logits);
                },
            )?;
            for (layer, values) in layers.iter().zip(features) {
                let width = values.len() / rows.max(1);
                f.insert(
                    format!("{name}.{layer}"),
                    NamedTensor::f32(vec![rows, width], values),
                );
            }
            f.insert(
                format!("{name}.logits"),
                NamedTensor::f32(vec![rows, ckpt.shape.classes], logits),
            );
        }
    }
    f.metadata
        .insert("layers".into(), serde_json::to_string(&layers)?);
    f.metadata.insert("epoch".into(), ckpt.epoch.to_string());
    f.metadata.insert("step".into(), ckpt.step.to_string());
    Ok(f)
}

/// The probed layer names of a representations file, in index order (index = position + 1).
pub fn layer_names(f: &TensorFile) -> Result<Vec<String>> {
    serde_json::from_str(f.meta("layers")?).context("representations metadata `layers`")
}
