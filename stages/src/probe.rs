//! The probe stage: every requested (layer, label) pair of one representations file, measured by
//! one decoder, as rows of a table.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::decoder::{measure_labels, DecoderParams, Features, Labels};
use crate::extract::{layer_names, ExtractParams};
use crate::table::{Table, Values};
use crate::tensors::TensorFile;

/// What to probe in one representations file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeParams {
    /// Layer names to probe (empty: all probed layers).
    pub layers: Vec<String>,
    /// Labels to decode.
    pub labels: Vec<String>,
    /// The decoder.
    pub decoder: DecoderParams,
    /// When set, the probe node extracts the representations itself from a checkpoint with these
    /// settings and stores none (`extract.keep = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<ExtractParams>,
}

/// Measures every (layer, label) pair and returns one row each, then a row for each label the
/// task derives from two measured ones (bits and ceiling only). For the representations of a
/// diverged run the rows carry no measurement and `status` says where training diverged.
pub fn probe(reps: &TensorFile, data: &Dataset, p: &ProbeParams) -> Result<Table> {
    let task = data.params.task();
    let all = layer_names(reps)?;
    let layers: Vec<(usize, String)> = if p.layers.is_empty() {
        all.iter()
            .cloned()
            .enumerate()
            .map(|(i, n)| (i + 1, n))
            .collect()
    } else {
        p.layers
            .iter()
            .map(|l| match all.iter().position(|n| n == l) {
                Some(i) => Ok((i + 1, l.clone())),
                None => bail!("layer `{l}` does not exist (layers: {})", all.join(", ")),
            })
            .collect::<Result<_>>()?
    };
    let epoch: i64 = reps.meta("epoch")?.parse().context("metadata `epoch`")?;
    let step: i64 = reps.meta("step")?.parse().context("metadata `step`")?;
    let mut rows = Rows::default();
    if let Some(diverged) = reps.metadata.get("diverged") {
        for (index, layer) in &layers {
            for label in &p.labels {
                rows.push_missing(
                    epoch,
                    step,
                    *index,
                    layer,
                    label,
                    &format!("diverged: {diverged}"),
                );
            }
        }
        return Ok(rows.into_table(&p.decoder));
    }
    for (index, layer) in &layers {
        let train = reps.get(&format!("train.{layer}"))?;
        let test = reps.get(&format!("val.{layer}"))?;
        let dim = *train.shape.last().unwrap_or(&0);
        let (n_train, n_test) = (train.shape[0], test.shape[0]);
        let first = rows.bits.len();
        let mut labels = Vec::new();
        for label in &p.labels {
            let (y_train, y_test) = (data.train.label(label)?, data.val.label(label)?);
            if y_train.len() < n_train || y_test.len() < n_test {
                bail!("the representations have more examples than the dataset's labels");
            }
            labels.push(Labels {
                y_train: &y_train[..n_train],
                y_test: &y_test[..n_test],
                classes: task.classes(label)?,
            });
        }
        let features = Features {
            train: train.as_f32(layer)?,
            test: test.as_f32(layer)?,
            dim,
        };
        let measured = measure_labels(&features, &labels, &p.decoder)
            .with_context(|| format!("decoding `{}` from `{layer}`", p.labels.join("`, `")))?;
        for (label, m) in p.labels.iter().zip(measured) {
            rows.epoch.push(epoch);
            rows.step.push(step);
            rows.layer_index.push(*index as i64);
            rows.layer.push(layer.clone());
            rows.label.push(label.clone());
            rows.bits.push(Some(m.bits));
            rows.ce.push(Some(m.ce_nats));
            rows.acc.push(Some(m.accuracy));
            rows.h_y.push(Some(m.h_y_bits));
            rows.null.push(m.null_bits);
            rows.n_train.push(m.n_train as i64);
            rows.n_test.push(m.n_test as i64);
            rows.best_step.push(m.best_step as i64);
            rows.status.push("ok".into());
        }
        for derived in task.derived() {
            let at = |label: &str| (first..rows.bits.len()).find(|&i| rows.label[i] == label);
            if let (Some(a), Some(b)) = (at(derived.of), at(derived.minus)) {
                let diff = |v: &[Option<f64>]| v[a].zip(v[b]).map(|(x, y)| x - y);
                let (bits, h_y) = (diff(&rows.bits), diff(&rows.h_y));
                rows.push_missing(epoch, step, *index, layer, derived.name, "ok");
                *rows.bits.last_mut().expect("pushed") = bits;
                *rows.h_y.last_mut().expect("pushed") = h_y;
            }
        }
    }
    Ok(rows.into_table(&p.decoder))
}

#[derive(Default)]
struct Rows {
    epoch: Vec<i64>,
    step: Vec<i64>,
    layer_index: Vec<i64>,
    layer: Vec<String>,
    label: Vec<String>,
    bits: Vec<Option<f64>>,
    ce: Vec<Option<f64>>,
    acc: Vec<Option<f64>>,
    h_y: Vec<Option<f64>>,
    null: Vec<Option<f64>>,
    n_train: Vec<i64>,
    n_test: Vec<i64>,
    best_step: Vec<i64>,
    status: Vec<String>,
}

impl Rows {
    /// A row without a measurement (its numbers null).
    fn push_missing(
        &mut self,
        epoch: i64,
        step: i64,
        index: usize,
        layer: &str,
        label: &str,
        status: &str,
    ) {
        self.epoch.push(epoch);
        self.step.push(step);
        self.layer_index.push(index as i64);
        self.layer.push(layer.to_string());
        self.label.push(label.to_string());
        for col in [
            &mut self.bits,
            &mut self.ce,
            &mut self.acc,
            &mut self.h_y,
            &mut self.null,
        ] {
            col.push(None);
        }
        self.n_train.push(0);
        self.n_test.push(0);
        self.best_step.push(0);
        self.status.push(status.to_string());
    }

    fn into_table(self, d: &DecoderParams) -> Table {
        let n = self.epoch.len();
        let mut t = Table::default();
        t.push("epoch", Values::I64(self.epoch));
        t.push("step", Values::I64(self.step));
        t.push("layer_index", Values::I64(self.layer_index));
        t.push("layer", Values::Str(self.layer));
        t.push("label", Values::Str(self.label));
        t.push("decoder", Values::Str(vec![d.kind.name().to_string(); n]));
        t.push("bits", Values::F64(self.bits));
        t.push("ce_nats", Values::F64(self.ce));
        t.push("accuracy", Values::F64(self.acc));
        t.push("h_y_bits", Values::F64(self.h_y));
        t.push("null_bits", Values::F64(self.null));
        t.push("n_train", Values::I64(self.n_train));
        t.push("n_test", Values::I64(self.n_test));
        t.push("best_step", Values::I64(self.best_step));
        t.push("status", Values::Str(self.status));
        t.push("decoder_hidden", Values::I64(vec![d.hidden as i64; n]));
        t.push("decoder_lr", Values::F64(vec![Some(d.lr); n]));
        t.push("decoder_steps", Values::I64(vec![d.steps as i64; n]));
        t.push(
            "decoder_eval_every",
            Values::I64(vec![d.eval_every as i64; n]),
        );
        t.push("decoder_standardize", Values::Bool(vec![d.standardize; n]));
        t.push("decoder_holdout", Values::F64(vec![Some(d.holdout); n]));
        t.push("decoder_seed", Values::I64(vec![d.seed as i64; n]));
        t
    }
}
