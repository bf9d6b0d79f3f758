//! A small typed column table, and its Parquet encoding through polars. Everything uinfo writes
//! as Parquet goes through [`Table`], so polars stays behind this one module.

use std::io::Cursor;

use anyhow::{anyhow, bail, Result};
use polars::prelude::*;

/// Values of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// 64-bit floats (nullable).
    F64(Vec<Option<f64>>),
    /// 64-bit integers.
    I64(Vec<i64>),
    /// 64-bit integers with nulls (read back as [`Values::I64`] when no value is null).
    OptI64(Vec<Option<i64>>),
    /// Strings.
    Str(Vec<String>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::OptI64(v) => v.len(),
            Values::Str(v) => v.len(),
            Values::Bool(v) => v.len(),
        }
    }
}

/// A table: named, typed columns of equal length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Columns in order.
    pub columns: Vec<(String, Values)>,
}

impl Table {
    /// Appends a column.
    pub fn push(&mut self, name: &str, values: Values) {
        self.columns.push((name.to_string(), values));
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map(|(_, v)| v.len()).unwrap_or(0)
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Result<&Values> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow!("column `{name}` is missing"))
    }

    /// A float column's values (nulls as NaN).
    pub fn f64(&self, name: &str) -> Result<Vec<f64>> {
        match self.column(name)? {
            Values::F64(v) => Ok(v.iter().map(|x| x.unwrap_or(f64::NAN)).collect()),
            Values::I64(v) => Ok(v.iter().map(|&x| x as f64).collect()),
            Values::OptI64(v) => Ok(v
                .iter()
                .map(|x| x.map(|x| x as f64).unwrap_or(f64::NAN))
                .collect()),
            _ => bail!("column `{name}` is not numeric"),
        }
    }

    /// A nullable float column's values.
    pub fn opt_f64(&self, name: &str) -> Result<Vec<Option<f64>>> {
        match self.column(name)? {
            Values::F64(v) => Ok(v.clone()),
            _ => bail!("column `{name}` is not a float column"),
        }
    }

    /// An integer column's values.
    pub fn i64(&self, name: &str) -> Result<Vec<i64>> {
        match self.column(name)? {
            Values::I64(v) => Ok(v.clone()),
            _ => bail!("column `{name}` is not an integer column"),
        }
    }

    /// A nullable integer column's values.
    pub fn opt_i64(&self, name: &str) -> Result<Vec<Option<i64>>> {
        match self.column(name)? {
            Values::I64(v) => Ok(v.iter().copied().map(Some).collect()),
            Values::OptI64(v) => Ok(v.clone()),
            _ => bail!("column `{name}` is not an integer column"),
        }
    }

    /// A string column's values.
    pub fn str(&self, name: &str) -> Result<Vec<String>> {
        match self.column(name)? {
            Values::Str(v) => Ok(v.clone()),
            _ => bail!("column `{name}` is not a string column"),
        }
    }

    /// Encodes the table as Parquet (zstd), deterministically.
    pub fn to_parquet(&self) -> Result<Vec<u8>> {
        let height = self.rows();
        let mut cols = Vec::with_capacity(self.columns.len());
        for (name, values) in &self.columns {
            if values.len() != height {
                bail!(
                    "column `{name}` has {} rows, expected {height}",
                    values.len()
                );
            }
            let name: PlSmallStr = name.as_str().into();
            cols.push(match values {
                Values::F64(v) => Column::new(name, v),
                Values::I64(v) => Column::new(name, v),
                Values::OptI64(v) => Column::new(name, v),
                Values::Str(v) => Column::new(name, v),
                Values::Bool(v) => Column::new(name, v),
            });
        }
        let mut df = DataFrame::new(height, cols)?;
        let mut out = Vec::new();
        ParquetWriter::new(&mut out)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)?;
        Ok(out)
    }

    /// Decodes a Parquet file written by [`Table::to_parquet`].
    pub fn from_parquet(bytes: &[u8]) -> Result<Table> {
        let df = ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map_err(|e| anyhow!("not a readable Parquet file: {e}"))?;
        let mut t = Table::default();
        for col in df.columns() {
            let s = col.as_materialized_series();
            let values = match s.dtype() {
                DataType::Float64 => Values::F64(s.f64()?.iter().collect()),
                DataType::Int64 if s.null_count() > 0 => Values::OptI64(s.i64()?.iter().collect()),
                DataType::Int64 => Values::I64(s.i64()?.iter().map(|x| x.unwrap_or(0)).collect()),
                DataType::String => Values::Str(
                    s.str()?
                        .iter()
                        .map(|x| x.unwrap_or("").to_string())
                        .collect(),
                ),
                DataType::Boolean => {
                    Values::Bool(s.bool()?.iter().map(|x| x.unwrap_or(false)).collect())
                }
                other => bail!("column `{}` has unsupported type {other}", s.name()),
            };
            t.push(s.name().as_str(), values);
        }
        Ok(t)
    }

    /// Concatenates tables with the same columns, in order.
    pub fn concat(tables: &[Table]) -> Result<Table> {
        let Some(first) = tables.first() else {
            return Ok(Table::default());
        };
        let mut out = first.clone();
        for t in &tables[1..] {
            if t.columns.len() != out.columns.len() {
                bail!("tables to concatenate have different columns");
            }
            for ((name, acc), (other_name, v)) in out.columns.iter_mut().zip(&t.columns) {
                if name != other_name {
                    bail!("tables to concatenate have different columns ({name} vs {other_name})");
                }
                match (acc, v) {
                    (Values::F64(a), Values::F64(b)) => a.extend_from_slice(b),
                    (Values::I64(a), Values::I64(b)) => a.extend_from_slice(b),
                    (Values::OptI64(a), Values::OptI64(b)) => a.extend_from_slice(b),
                    (Values::Str(a), Values::Str(b)) => a.extend_from_slice(b),
                    (Values::Bool(a), Values::Bool(b)) => a.extend_from_slice(b),
                    _ => bail!("column `{name}` changes type between tables"),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_round_trip_is_exact_and_deterministic() {
        let mut t = Table::default();
        t.push("x", Values::F64(vec![Some(1.5), None, Some(-0.0)]));
        t.push("n", Values::I64(vec![1, 2, 3]));
        t.push("s", Values::Str(vec!["a".into(), "b".into(), "".into()]));
        t.push("b", Values::Bool(vec![true, false, true]));
        t.push("m", Values::OptI64(vec![Some(4), None, Some(-1)]));
        let bytes = t.to_parquet().unwrap();
        assert_eq!(bytes, t.to_parquet().unwrap());
        assert_eq!(Table::from_parquet(&bytes).unwrap(), t);
    }

    #[test]
    fn ragged_columns_are_an_error() {
        let mut t = Table::default();
        t.push("x", Values::I64(vec![1, 2]));
        t.push("y", Values::I64(vec![1]));
        assert!(t.to_parquet().is_err());
    }
}
