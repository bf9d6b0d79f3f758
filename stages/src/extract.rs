//! Representation extraction: the activations of every probed layer, and the logits, for every
//! example of each split.
//!
//! File layout: `{train,val}.{layer}` (n × width, f32) for each probed layer, `{train,val}.logits`
//! (n × classes); metadata `layers` (JSON list of names, index order), `epoch`, `step`.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use crate::checkerboard::{Dataset, INPUT_DIM};
use crate::checkpoint::Checkpoint;
use crate::network::Network;
use crate::tensors::{NamedTensor, TensorFile};

/// Activations of one layer for one split.
fn host(t: &Tensor) -> Result<NamedTensor> {
    Ok(NamedTensor::f32(
        t.dims().to_vec(),
        t.flatten_all()?.to_vec1::<f32>()?,
    ))
}

/// Runs the network over both splits and collects the probed layers' activations.
/// A diverged checkpoint gives a file with no tensors and a `diverged` metadata entry.
pub fn extract(ckpt: &Checkpoint, data: &Dataset, device: &Device) -> Result<TensorFile> {
    let net = Network::from_weights(&ckpt.shape, &ckpt.weights, device)?;
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
        let x = Tensor::from_slice(&split.inputs, (split.len(), INPUT_DIM), device)?;
        let out = net.forward(&x)?;
        for (layer, h) in layers.iter().zip(&out.hidden) {
            f.insert(format!("{name}.{layer}"), host(h)?);
        }
        f.insert(format!("{name}.logits"), host(&out.logits)?);
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
