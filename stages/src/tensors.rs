//! Deterministic safetensors files: tensors and metadata written in sorted order, so the same
//! content always gives the same bytes (and so the same digest). Reading goes through the
//! `safetensors` crate, which validates the header.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};

/// One tensor's data in a safetensors file.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// 32-bit floats, row-major.
    F32(Vec<f32>),
    /// 64-bit signed integers (labels).
    I64(Vec<i64>),
    /// Bytes (image pixels).
    U8(Vec<u8>),
}

/// A named tensor: shape and data.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: TensorData,
}

impl NamedTensor {
    /// A float tensor; panics only if `shape` and `data` disagree (a programming error).
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> NamedTensor {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        NamedTensor {
            shape,
            data: TensorData::F32(data),
        }
    }

    /// An integer tensor; panics only if `shape` and `data` disagree.
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> NamedTensor {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        NamedTensor {
            shape,
            data: TensorData::I64(data),
        }
    }

    /// A byte tensor; panics only if `shape` and `data` disagree.
    pub fn u8(shape: Vec<usize>, data: Vec<u8>) -> NamedTensor {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        NamedTensor {
            shape,
            data: TensorData::U8(data),
        }
    }

    /// The element type's name, for messages.
    fn dtype(&self) -> &'static str {
        match &self.data {
            TensorData::F32(_) => "F32",
            TensorData::I64(_) => "I64",
            TensorData::U8(_) => "U8",
        }
    }

    /// The float values, or an error naming the tensor.
    pub fn as_f32(&self, name: &str) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            _ => bail!("tensor `{name}` holds {}, expected F32", self.dtype()),
        }
    }

    /// The integer values, or an error naming the tensor.
    pub fn as_i64(&self, name: &str) -> Result<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Ok(v),
            _ => bail!("tensor `{name}` holds {}, expected I64", self.dtype()),
        }
    }

    /// The byte values, or an error naming the tensor.
    pub fn as_u8(&self, name: &str) -> Result<&[u8]> {
        match &self.data {
            TensorData::U8(v) => Ok(v),
            _ => bail!("tensor `{name}` holds {}, expected U8", self.dtype()),
        }
    }
}

/// The content of one safetensors file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    /// The `__metadata__` map (string to string).
    pub metadata: BTreeMap<String, String>,
    /// Tensors by name.
    pub tensors: BTreeMap<String, NamedTensor>,
}

impl TensorFile {
    /// Adds a tensor.
    pub fn insert(&mut self, name: impl Into<String>, t: NamedTensor) {
        self.tensors.insert(name.into(), t);
    }

    /// A tensor by name, or an error naming what is missing.
    pub fn get(&self, name: &str) -> Result<&NamedTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow!("tensor `{name}` is missing"))
    }

    /// A float tensor's values by name.
    pub fn f32(&self, name: &str) -> Result<&[f32]> {
        self.get(name)?.as_f32(name)
    }

    /// An integer tensor's values by name.
    pub fn i64(&self, name: &str) -> Result<&[i64]> {
        self.get(name)?.as_i64(name)
    }

    /// A byte tensor's values by name.
    pub fn u8(&self, name: &str) -> Result<&[u8]> {
        self.get(name)?.as_u8(name)
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("metadata `{key}` is missing"))
    }

    /// Serialises to safetensors bytes, deterministically.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            let meta: serde_json::Map<String, serde_json::Value> = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        }
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            let len = match &t.data {
                TensorData::F32(v) => v.len() * 4,
                TensorData::I64(v) => v.len() * 8,
                TensorData::U8(v) => v.len(),
            };
            let dtype = t.dtype();
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": dtype, "shape": t.shape, "data_offsets": [offset, offset + len]}),
            );
            offset += len;
        }
        let mut head = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json");
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + head.len() + offset);
        out.extend_from_slice(&(head.len() as u64).to_le_bytes());
        out.extend_from_slice(&head);
        for t in self.tensors.values() {
            match &t.data {
                TensorData::F32(v) => extend_le(&mut out, v, |x| x.to_le_bytes()),
                TensorData::I64(v) => extend_le(&mut out, v, |x| x.to_le_bytes()),
                TensorData::U8(v) => out.extend_from_slice(v),
            }
        }
        out
    }

    /// Parses safetensors bytes (F32, I64 and U8 tensors only).
    pub fn from_bytes(bytes: &[u8]) -> Result<TensorFile> {
        let st =
            safetensors::SafeTensors::deserialize(bytes).context("not a valid safetensors file")?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .context("not a valid safetensors header")?;
        let metadata = meta
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let raw = view.data();
            let data = match view.dtype() {
                safetensors::Dtype::F32 => TensorData::F32(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                safetensors::Dtype::I64 => TensorData::I64(
                    raw.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                safetensors::Dtype::U8 => TensorData::U8(raw.to_vec()),
                other => bail!("tensor `{name}` has dtype {other:?}; uinfo reads F32, I64 and U8"),
            };
            tensors.insert(name, NamedTensor { shape, data });
        }
        Ok(TensorFile { metadata, tensors })
    }
}

/// Appends `values` to `out` as little-endian bytes: one copy of their memory on a
/// little-endian machine (not a capacity check and a 4-byte copy per value), `le` value by value
/// elsewhere.
fn extend_le<T: bytemuck::Pod, const N: usize>(
    out: &mut Vec<u8>,
    values: &[T],
    le: impl Fn(T) -> [u8; N],
) {
    if cfg!(target_endian = "little") {
        out.extend_from_slice(bytemuck::cast_slice(values));
    } else {
        values.iter().for_each(|&x| out.extend_from_slice(&le(x)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_deterministic() {
        let mut f = TensorFile::default();
        f.metadata.insert("stage".into(), "test".into());
        f.metadata.insert("a".into(), "1".into());
        f.insert(
            "w",
            NamedTensor::f32(
                vec![2, 3],
                vec![1.0, -2.5, 3.0, 0.0, f32::MIN_POSITIVE, 7.0],
            ),
        );
        f.insert("y", NamedTensor::i64(vec![3], vec![0, 1, -5]));
        f.insert("px", NamedTensor::u8(vec![1, 3], vec![0, 128, 255]));
        let bytes = f.to_bytes();
        assert_eq!(bytes, f.clone().to_bytes());
        assert_eq!(TensorFile::from_bytes(&bytes).unwrap(), f);
    }

    #[test]
    fn truncated_file_is_an_error() {
        let mut f = TensorFile::default();
        f.insert("w", NamedTensor::f32(vec![4], vec![1.0; 4]));
        let bytes = f.to_bytes();
        assert!(TensorFile::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    }
}
