//! The `attrs` column's text: an object's attributes as one JSON object,
//! in their order (the column is `json`, which keeps the text as written).
//! Strings, integers, finite floats, booleans and nil are JSON's own; the
//! other values are tagged objects, the format the redb store writes: a
//! NaN or infinity `{"$f":"NaN"|"inf"|"-inf"}`, a symbol `{"$sym":..}`, a
//! password `{"$pw":..}`, an object reference `{"$obj":[class,id]}`, a
//! hash `{"$hash":[[key,value],...]}`; an array is an array. The finders'
//! key columns hold [`key_text`]: a string itself, an integer its digits.

use automate_core::value::{AttrValue, Attributes, VmdbRef};
use automate_vmdb::{write_array, write_str, StoreError};
use serde_json::Value as J;
use std::sync::Arc;

/// The attributes as the `attrs` column's text.
pub(crate) fn encode_attrs(attrs: &Attributes) -> String {
    let mut out = Vec::with_capacity(16 + attrs.len() * 32);
    out.push(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, k);
        out.push(b':');
        write_value(&mut out, v);
    }
    out.push(b'}');
    // Only UTF-8 was written (the strings' own bytes and ASCII).
    String::from_utf8(out).unwrap_or_default()
}

fn write_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Nil => out.extend_from_slice(b"null"),
        AttrValue::Str(s) => write_str(out, s),
        AttrValue::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        AttrValue::Float(f) if f.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        AttrValue::Float(f) => {
            let text = if f.is_nan() {
                "NaN"
            } else if *f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            tagged(out, "$f", |out| write_str(out, text));
        }
        AttrValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        AttrValue::Symbol(s) => tagged(out, "$sym", |out| write_str(out, s)),
        AttrValue::Password(s) => tagged(out, "$pw", |out| write_str(out, s)),
        AttrValue::Object(r) => tagged(out, "$obj", |out| {
            out.push(b'[');
            write_str(out, &r.class);
            out.push(b',');
            out.extend_from_slice(r.id.to_string().as_bytes());
            out.push(b']');
        }),
        AttrValue::Array(items) => write_array(out, items, write_value),
        AttrValue::Hash(pairs) => tagged(out, "$hash", |out| {
            out.push(b'[');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                write_value(out, k);
                out.push(b',');
                write_value(out, v);
                out.push(b']');
            }
            out.push(b']');
        }),
    }
}

fn tagged(out: &mut Vec<u8>, tag: &str, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'{');
    write_str(out, tag);
    out.push(b':');
    body(out);
    out.push(b'}');
}

/// The `attrs` column's text as attributes, in their order (serde_json
/// keeps object order in this workspace: `preserve_order`).
pub(crate) fn decode_attrs(text: &str) -> Result<Attributes, StoreError> {
    let bad = |why: String| StoreError::Backend(format!("undecodable attrs: {why}"));
    match serde_json::from_str::<J>(text).map_err(|e| bad(e.to_string()))? {
        J::Object(m) => Ok(m
            .iter()
            .map(|(k, v)| (k.clone(), decode_value(v)))
            .collect()),
        J::Null => Ok(Attributes::default()),
        _ => Err(bad("not a JSON object".into())),
    }
}

fn decode_value(v: &J) -> AttrValue {
    match v {
        J::Null => AttrValue::Nil,
        J::Bool(b) => AttrValue::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => AttrValue::Str(s.clone()),
        J::Array(items) => AttrValue::Array(items.iter().map(decode_value).collect()),
        J::Object(m) => {
            let text = |v: &J| v.as_str().unwrap_or_default().to_string();
            match m.iter().next() {
                Some((tag, v)) if m.len() == 1 => match tag.as_str() {
                    "$sym" => AttrValue::Symbol(text(v)),
                    "$pw" => AttrValue::Password(text(v)),
                    "$f" => AttrValue::Float(match v.as_str() {
                        Some("inf") => f64::INFINITY,
                        Some("-inf") => f64::NEG_INFINITY,
                        _ => f64::NAN,
                    }),
                    "$obj" => match v.as_array().map(Vec::as_slice) {
                        Some([c, id]) => AttrValue::Object(VmdbRef {
                            class: Arc::from(c.as_str().unwrap_or_default()),
                            id: id.as_i64().unwrap_or_default(),
                        }),
                        _ => AttrValue::Nil,
                    },
                    "$hash" => AttrValue::Hash(
                        v.as_array()
                            .map(|pairs| {
                                pairs
                                    .iter()
                                    .filter_map(|p| match p.as_array().map(Vec::as_slice) {
                                        Some([k, v]) => Some((decode_value(k), decode_value(v))),
                                        _ => None,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => AttrValue::Str(v.to_string()),
                },
                _ => AttrValue::Str(J::Object(m.clone()).to_string()),
            }
        }
    }
}

/// The text `attrs->>'attr'` holds for `value`, when a row holding
/// exactly `value` is found by comparing it (strings, integers, booleans):
/// the finders' key. `None`: compare the decoded values instead (a string
/// with a NUL, which a PostgreSQL text cannot hold, is one of those).
pub(crate) fn key_text(value: &AttrValue) -> Option<String> {
    match value {
        AttrValue::Str(s) if s.contains('\0') => None,
        AttrValue::Str(s) => Some(s.clone()),
        AttrValue::Int(i) => Some(i.to_string()),
        AttrValue::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_in_order_with_every_kind_of_value() {
        let mut a = Attributes::default();
        let values = [
            ("zeta", AttrValue::str("last letter first")),
            ("alpha", AttrValue::Int(-7)),
            ("mid", AttrValue::Float(2.5)),
            ("nan", AttrValue::Float(f64::INFINITY)),
            ("nil", AttrValue::Nil),
            ("yes", AttrValue::Bool(true)),
            ("sym", AttrValue::Symbol("foo".into())),
            ("pw", AttrValue::Password("secret".into())),
            (
                "vm",
                AttrValue::Object(VmdbRef {
                    class: Arc::from("Vm"),
                    id: 1_000_000_000_001,
                }),
            ),
            (
                "list",
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::str("two \"q\" é")]),
            ),
            (
                "hash",
                AttrValue::Hash(vec![(AttrValue::Symbol("k".into()), AttrValue::Int(3))]),
            ),
        ];
        for (k, v) in values.iter().cloned() {
            a.insert(k.to_string(), v);
        }
        let text = encode_attrs(&a);
        assert!(serde_json::from_str::<J>(&text).is_ok(), "{text}");
        let back = decode_attrs(&text).expect("decodes");
        let keys: Vec<&str> = back.keys().map(String::as_str).collect();
        assert_eq!(keys, values.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        assert_eq!(back, a);
        assert_eq!(key_text(&AttrValue::Int(5)).as_deref(), Some("5"));
        assert_eq!(key_text(&AttrValue::Nil), None);
    }
}
