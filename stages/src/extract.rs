//! Representation extraction: the activations of every probed layer, and the logits, for every
//! example of each split.
//!
//! File layout: `{train,val}.{layer}` (n × width, f32) for each probed layer, `{train,val}.logits`
//! (n × classes); metadata `layers` (JSON list of names, index order), `epoch`, `step`.

use anyhow::{Context, Result};

use crate::checkerboard::Dataset;
use crate::checkpoint::Checkpoint;
use crate::network::Fc;
use crate::tensors::{NamedTensor, TensorFile};

/// Runs the network over both splits and collects the probed layers' activations.
/// A diverged checkpoint gives a file with no tensors and a `diverged` metadata entry.
pub fn extract(ckpt: &Checkpoint, data: &Dataset) -> Result<TensorFile> {
    let net = Fc::from_weights(&ckpt.shape, &ckpt.weights)?;
    let layers = ckpt.shape.probed_layers();
    let mut f = TensorFile::default();
    let splits = match &ckpt.diverged {
        Some(d) => {
            f.metadata.insert("diverged".into(), d.clone());
            Vec::new()
        }
        None => vec![("train", &data.train), ("val", &data.val)],
    };
    for (name, split) in splits {
        let out = net.forward(&split.inputs);
        let rows = split.len();
        for ((layer, h), &(_, width)) in layers.iter().zip(out.hidden).zip(&net.dims) {
            f.insert(
                format!("{name}.{layer}"),
                NamedTensor::f32(vec![rows, width], h),
            );
        }
        let classes = net.dims.last().map(|d| d.1).unwrap_or(0);
        f.insert(
            format!("{name}.logits"),
            NamedTensor::f32(vec![rows, classes], out.logits),
        );
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
