//! The stored encoding of objects, and its decoding. Encoding is written
//! by hand: the bytes `serde_json` would write for the same tree (compact,
//! its escapes), without its per-value machinery. The writer thread
//! encodes every object a commit carries and every indexed value, so this
//! is on the hot path.
//!
//! The format (read back by [`decode_object`]): an object is
//! `{"class":..,"attrs":{..}}`, the attributes in [`automate_vmdb`]'s
//! stored encoding of attribute values ([`write_attr_value`], shared with
//! the PostgreSQL store): strings, integers, finite floats, booleans and
//! nil are JSON's own; a NaN or infinity is `{"$f":"NaN"|"inf"|"-inf"}`, a
//! symbol `{"$sym":..}`, a password `{"$pw":..}`, an object reference
//! `{"$obj":[class,id]}`, an array an array, a hash
//! `{"$hash":[[key,value],...]}`.

use automate_core::value::Attributes;
pub(crate) use automate_vmdb::write_attr_value as write_value;
use automate_vmdb::{write_attrs, write_str, AttributesSeed};
use automate_vmdb::{StoreError, StoredObject};

/// An object as the bytes of the `objects` table.
pub(crate) fn encode_object(class: &str, attrs: &Attributes) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + attrs.len() * 32);
    out.extend_from_slice(b"{\"class\":");
    write_str(&mut out, class);
    out.extend_from_slice(b",\"attrs\":");
    write_attrs(&mut out, attrs);
    out.push(b'}');
    out
}

/// The bytes of the `objects` table as an object, read straight from the
/// text (no JSON tree: [`AttributesSeed`]); keys other than `class` and
/// `attrs` are skipped.
pub(crate) fn decode_object(bytes: &[u8]) -> Result<StoredObject, StoreError> {
    use serde::de::Deserializer as _;
    let bad = |why: &str| StoreError::Backend(format!("undecodable object: {why}"));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let (class, attrs) = de
        .deserialize_map(ObjectVisitor)
        .map_err(|e| bad(&e.to_string()))?;
    de.end().map_err(|e| bad(&e.to_string()))?;
    let Some(class) = class else {
        return Err(bad("no class"));
    };
    Ok(StoredObject {
        class,
        attrs: attrs.unwrap_or_default(),
    })
}

/// `{"class":..,"attrs":{..}}`: the class and the attributes, either
/// missing when the object has none.
struct ObjectVisitor;

impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
    type Value = (Option<String>, Option<Attributes>);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut class, mut attrs) = (None, None);
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                "class" => class = Some(map.next_value::<String>()?),
                "attrs" => attrs = Some(map.next_value_seed(AttributesSeed)?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok((class, attrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_attrs as attrs;
    use automate_core::value::{AttrValue, VmdbRef};
    use std::sync::Arc;

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
        // Byte for byte what files already written hold (each value's
        // encoding is pinned in automate_vmdb's json tests).
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            concat!(
                r#"{"class":"EmsEvent","attrs":{"nil":null,"s":"text","i":-7,"#,
                r#""big":1000000000123,"f":1.0,"f2":2.5,"inf":{"$f":"-inf"},"#,
                r#""pinf":{"$f":"inf"},"b":false,"sym":{"$sym":"ok"},"#,
                r#""pw":{"$pw":"secret"},"obj":{"$obj":["Host",1000000000002]},"#,
                r#""arr":[1,"x"],"hash":{"$hash":[[{"$sym":"k"},1],[2,null]]},"#,
                r#""looks_tagged":"$sym"}}"#
            )
        );
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
