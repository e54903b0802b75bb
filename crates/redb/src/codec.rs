//! The stored encoding of objects and attribute values, and its decoding.
//! Encoding is written by hand: the bytes `serde_json` would write for the
//! same tree (compact, its escapes; strings through [`automate_vmdb`]'s JSON
//! writer), without its per-value machinery. The writer thread encodes every
//! object a commit carries and every indexed value, so this is on the hot
//! path.
//!
//! The format (read back by [`decode_object`]): an object is
//! `{"class":..,"attrs":{..}}`; strings, integers, finite floats, booleans
//! and nil are JSON's own; a NaN or infinity is `{"$f":"NaN"|"inf"|"-inf"}`,
//! a symbol `{"$sym":..}`, a password `{"$pw":..}`, an object reference
//! `{"$obj":[class,id]}`, an array an array, a hash
//! `{"$hash":[[key,value],...]}`.

use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::{write_array, write_str};
use automate_vmdb::{StoreError, StoredObject, VmdbRef};
#[cfg(test)]
use serde_json::Map;
use serde_json::Value as J;
use std::sync::Arc;

/// An object as the bytes of the `objects` table.
pub(crate) fn encode_object(class: &str, attrs: &Attributes) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + attrs.len() * 32);
    out.extend_from_slice(b"{\"class\":");
    write_str(&mut out, class);
    out.extend_from_slice(b",\"attrs\":{");
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, k);
        out.push(b':');
        write_value(&mut out, v);
    }
    out.extend_from_slice(b"}}");
    out
}

/// One attribute value, appended to `out`.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Nil => out.extend_from_slice(b"null"),
        AttrValue::Str(s) => write_str(out, s),
        AttrValue::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        AttrValue::Float(f) if f.is_finite() => {
            // serde_json's own float text (ryu, `1.0` for integral values).
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
        AttrValue::Bool(true) => out.extend_from_slice(b"true"),
        AttrValue::Bool(false) => out.extend_from_slice(b"false"),
        AttrValue::Symbol(s) => tagged(out, "$sym", |out| write_str(out, s)),
        AttrValue::Password(s) => tagged(out, "$pw", |out| write_str(out, s)),
        AttrValue::Object(r) => tagged(out, "$obj", |out| {
            out.push(b'[');
            write_str(out, &r.class);
            out.push(b',');
            out.extend_from_slice(itoa::Buffer::new().format(r.id).as_bytes());
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

/// `{"<tag>":<what body writes>}`.
fn tagged(out: &mut Vec<u8>, tag: &str, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'{');
    write_str(out, tag);
    out.push(b':');
    body(out);
    out.push(b'}');
}

/// The bytes of the `objects` table as an object.
pub(crate) fn decode_object(bytes: &[u8]) -> Result<StoredObject, StoreError> {
    let bad = |why: &str| StoreError::Backend(format!("undecodable object: {why}"));
    let v: J = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
    let J::Object(mut top) = v else {
        return Err(bad("not a JSON object"));
    };
    let Some(J::String(class)) = top.remove("class") else {
        return Err(bad("no class"));
    };
    let attrs = match top.remove("attrs") {
        Some(J::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), decode_value(v)))
            .collect(),
        None | Some(J::Null) => Attributes::default(),
        Some(_) => return Err(bad("attrs is not an object")),
    };
    Ok(StoredObject { class, attrs })
}

#[cfg(test)]
fn tagged_tree(tag: &str, v: J) -> J {
    let mut m = Map::new();
    m.insert(tag.to_string(), v);
    J::Object(m)
}

#[cfg(test)]
fn encode_value(v: &AttrValue) -> J {
    match v {
        AttrValue::Nil => J::Null,
        AttrValue::Str(s) => J::String(s.clone()),
        AttrValue::Int(i) => J::from(*i),
        AttrValue::Float(f) if f.is_finite() => J::from(*f),
        AttrValue::Float(f) => tagged_tree(
            "$f",
            J::String(
                if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "inf"
                } else {
                    "-inf"
                }
                .into(),
            ),
        ),
        AttrValue::Bool(b) => J::Bool(*b),
        AttrValue::Symbol(s) => tagged_tree("$sym", J::String(s.clone())),
        AttrValue::Password(s) => tagged_tree("$pw", J::String(s.clone())),
        AttrValue::Object(r) => tagged_tree(
            "$obj",
            J::Array(vec![J::String(r.class.to_string()), J::from(r.id)]),
        ),
        AttrValue::Array(a) => J::Array(a.iter().map(encode_value).collect()),
        AttrValue::Hash(h) => tagged_tree(
            "$hash",
            J::Array(
                h.iter()
                    .map(|(k, v)| J::Array(vec![encode_value(k), encode_value(v)]))
                    .collect(),
            ),
        ),
    }
}

fn decode_value(v: &J) -> AttrValue {
    match v {
        J::Null => AttrValue::Nil,
        J::Bool(b) => AttrValue::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => AttrValue::Str(s.clone()),
        J::Array(a) => AttrValue::Array(a.iter().map(decode_value).collect()),
        J::Object(m) => {
            if m.len() == 1 {
                let (tag, inner) = m.iter().next().expect("one entry");
                match (tag.as_str(), inner) {
                    ("$sym", J::String(s)) => return AttrValue::Symbol(s.clone()),
                    ("$pw", J::String(s)) => return AttrValue::Password(s.clone()),
                    ("$f", J::String(s)) => {
                        return AttrValue::Float(match s.as_str() {
                            "inf" => f64::INFINITY,
                            "-inf" => f64::NEG_INFINITY,
                            _ => f64::NAN,
                        })
                    }
                    ("$obj", J::Array(a)) if a.len() == 2 => {
                        if let (Some(c), Some(id)) = (a[0].as_str(), a[1].as_i64()) {
                            return AttrValue::Object(VmdbRef {
                                class: Arc::from(c),
                                id,
                            });
                        }
                    }
                    ("$hash", J::Array(pairs)) => {
                        return AttrValue::Hash(
                            pairs
                                .iter()
                                .filter_map(|p| match p {
                                    J::Array(kv) if kv.len() == 2 => {
                                        Some((decode_value(&kv[0]), decode_value(&kv[1])))
                                    }
                                    _ => None,
                                })
                                .collect(),
                        )
                    }
                    _ => {}
                }
            }
            // Not written by this module; read it as a string-keyed hash.
            AttrValue::Hash(
                m.iter()
                    .map(|(k, v)| (AttrValue::Str(k.clone()), decode_value(v)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_attrs as attrs;

    #[test]
    fn encoding_round_trips_every_value_type() {
        let a = attrs(&[
            ("nil", AttrValue::Nil),
            ("s", AttrValue::str("text")),
            ("i", AttrValue::Int(-7)),
            ("big", AttrValue::Int(1_000_000_000_123)),
            ("f", AttrValue::Float(1.0)),
            ("f2", AttrValue::Float(2.5)),
            ("inf", AttrValue::Float(f64::NEG_INFINITY)),
            ("pinf", AttrValue::Float(f64::INFINITY)),
            ("b", AttrValue::Bool(false)),
            ("sym", AttrValue::Symbol("ok".into())),
            ("pw", AttrValue::Password("secret".into())),
            (
                "obj",
                AttrValue::Object(VmdbRef {
                    class: Arc::from("Host"),
                    id: 1_000_000_000_002,
                }),
            ),
            (
                "arr",
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::str("x")]),
            ),
            (
                "hash",
                AttrValue::Hash(vec![
                    (AttrValue::Symbol("k".into()), AttrValue::Int(1)),
                    (AttrValue::Int(2), AttrValue::Nil),
                ]),
            ),
            ("looks_tagged", AttrValue::str("$sym")),
        ]);
        let bytes = encode_object("EmsEvent", &a);
        assert_eq!(bytes[0], b'{');
        // Byte for byte what the value-tree encoding wrote (files written
        // before the direct encoder read back the same).
        let mut tree = Map::new();
        for (k, v) in &a {
            tree.insert(k.clone(), encode_value(v));
        }
        let mut top = Map::new();
        top.insert("class".into(), J::String("EmsEvent".into()));
        top.insert("attrs".into(), J::Object(tree));
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            serde_json::to_string(&J::Object(top)).unwrap()
        );
        for (_, v) in &a {
            let mut ours = Vec::new();
            write_value(&mut ours, v);
            assert_eq!(ours, serde_json::to_vec(&encode_value(v)).unwrap());
        }
        let back = decode_object(&bytes).unwrap();
        assert_eq!(back.class, "EmsEvent");
        assert_eq!(back.attrs, a);
        // Order is kept.
        assert_eq!(
            back.attrs.keys().collect::<Vec<_>>(),
            a.keys().collect::<Vec<_>>()
        );
        assert!(decode_object(b"garbage").is_err());
    }
}
