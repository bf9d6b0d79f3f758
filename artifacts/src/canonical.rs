//! Canonical JSON encoding, the basis of cache keys.

use std::fmt::Write;

use serde_json::Value;

use crate::Digest;

/// BLAKE3 over [`canonical_json`] of `value`.
pub fn canonical_key(value: &Value) -> Digest {
    Digest::of(canonical_json(value).as_bytes())
}

/// Canonical JSON text of `value`: object keys sorted recursively, no whitespace, and numbers
/// normalised so that equal values encode alike (an integral float such as `2.0` or `-0.0`
/// within ±2^53 is written as the integer `2` or `0`; other floats in shortest round-trip form).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        if f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT {
            let _ = write!(out, "{}", f as i64);
        } else if let Some(num) = serde_json::Number::from_f64(f) {
            let _ = write!(out, "{num}");
        } else {
            let _ = write!(out, "{n}");
        }
    } else {
        let _ = write!(out, "{n}");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":3}],"x":"s"}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":"s","y":[1,{"p":3,"q":2}]},"b":1}"#).unwrap();
        assert_eq!(canonical_key(&a), canonical_key(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":"s","y":[1,{"p":3,"q":2}]},"b":1}"#
        );
        assert_ne!(canonical_key(&a), canonical_key(&json!({"b": 2})));
    }

    #[test]
    fn numbers_are_normalised() {
        assert_eq!(
            canonical_json(&json!([2.0, -0.0, 1, 0.5, -3])),
            "[2,0,1,0.5,-3]"
        );
        assert_eq!(
            canonical_key(&json!({"lr": 1.0})),
            canonical_key(&json!({"lr": 1}))
        );
        assert_ne!(canonical_key(&json!(1)), canonical_key(&json!("1")));
    }

    #[test]
    fn output_is_valid_json_for_awkward_strings() {
        let v = json!({"k\"\n\u{1}é": "tab\there\\"});
        let text = canonical_json(&v);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }
}
