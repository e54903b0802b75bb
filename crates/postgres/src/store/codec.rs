//! The `attrs` column's text: an object's attributes as one JSON object,
//! in their order (the column is `json`, which keeps the text as written).
//! Strings, integers, finite floats, booleans and nil are JSON's own; the
//! other values are tagged objects, [`automate_vmdb`]'s stored encoding
//! of attribute values (the redb store writes the same): a
//! NaN or infinity `{"$f":"NaN"|"inf"|"-inf"}`, a symbol `{"$sym":..}`, a
//! password `{"$pw":..}`, an object reference `{"$obj":[class,id]}`, a
//! hash `{"$hash":[[key,value],...]}`; an array is an array. The finders'
//! key columns hold [`key_text`]: a string itself, an integer its digits.

use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::{write_attrs, AttributesSeed, StoreError};

/// The attributes as the `attrs` column's text.
pub(crate) fn encode_attrs(attrs: &Attributes) -> String {
    let mut out = Vec::with_capacity(16 + attrs.len() * 32);
    write_attrs(&mut out, attrs);
    // Only UTF-8 was written (the strings' own bytes and ASCII).
    String::from_utf8(out).unwrap_or_default()
}

/// The `attrs` column's text as attributes, in their order (serde_json
/// keeps object order in this workspace: `preserve_order`).
pub(crate) fn decode_attrs(text: &str) -> Result<Attributes, StoreError> {
    use serde::de::DeserializeSeed as _;
    let bad = |why: String| StoreError::Backend(format!("undecodable attrs: {why}"));
    let mut de = serde_json::Deserializer::from_str(text);
    let attrs = AttributesSeed
        .deserialize(&mut de)
        .map_err(|e| bad(e.to_string()))?;
    de.end().map_err(|e| bad(e.to_string()))?;
    Ok(attrs)
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
    use automate_core::value::VmdbRef;
    use std::sync::Arc;

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
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "{text}"
        );
        let back = decode_attrs(&text).expect("decodes");
        let keys: Vec<&str> = back.keys().map(String::as_str).collect();
        assert_eq!(keys, values.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        assert_eq!(back, a);
        assert_eq!(key_text(&AttrValue::Int(5)).as_deref(), Some("5"));
        assert_eq!(key_text(&AttrValue::Nil), None);
    }
}
