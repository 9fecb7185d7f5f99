//! Canonical JSON: object keys sorted, no insignificant whitespace. What every hash of a
//! definition or of arguments is taken over, so that key order and formatting never matter.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Write `v` canonically into `out`.
pub fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => write_map(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// Write an object canonically into `out`.
pub fn write_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
        out.push(b':');
        write(v, out);
    }
    out.push(b'}');
}

/// The canonical JSON text of `v`.
#[cfg(test)]
pub fn to_string(v: &Value) -> String {
    let mut out = Vec::new();
    write(v, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// sha256 (hex) of the canonical JSON of `v`.
pub fn sha256(v: &Value) -> String {
    let mut out = Vec::new();
    write(v, &mut out);
    hex::encode(Sha256::digest(&out))
}

/// `v` with every object's keys in sorted order (so that pretty-printing it is stable too).
pub fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_is_order_independent() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "é"}], "a": null}"#).unwrap();
        assert_eq!(to_string(&a), r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#);
        let b: Value = serde_json::from_str(r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#).unwrap();
        assert_eq!(sha256(&a), sha256(&b));
        assert_eq!(to_string(&sorted(&a)), to_string(&a));
    }
}
