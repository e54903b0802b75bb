//! Reading the state a retry carries: `ae_state_data` (the state vars) and
//! `ae_state_previous` (the saved state of nested state machines).
//!
//! automate writes both as JSON objects; ManageIQ's `MiqAeEngine.deliver`
//! writes them with `YAML.dump`, so a retry message moved over from ManageIQ
//! (or written by hand the ManageIQ way) holds YAML such as
//! `--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\n:count: 3\n`.
//! Both forms are read. Symbol keys (`:count`) are the same key as `count`
//! (ManageIQ's state vars are a `HashWithIndifferentAccess`). ManageIQ's
//! newer `StateVarHash` dumps only `binary_blob_id: <n>`, a row of its own
//! database that automate cannot reach: such a map reads as empty, as
//! ManageIQ does when the blob is gone.

use super::datatype::from_json;
use automate_core::value::AttrValue;
use automate_datastore::yaml::{self, Value};
use std::path::Path;

/// The key of ManageIQ's `StateVarHash#encode_with` form.
pub(crate) const BLOB_KEY: &str = "binary_blob_id";

/// A state map read from JSON or ManageIQ's YAML, keys in order.
pub(crate) type StateMap = Vec<(String, AttrValue)>;

/// Parses `text` as a JSON object or a YAML mapping (ManageIQ's form).
///
/// # Errors
/// A text that is neither, or whose top level is not a map: the reason.
pub(crate) fn parse_state_map(text: &str) -> Result<StateMap, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(trimmed) {
            return Ok(map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect());
        }
    }
    let doc = yaml::parse_document(text, Path::new("ae_state_data"))
        .map_err(|e| format!("neither JSON nor YAML: {}", e.message))?;
    match doc {
        Value::Null => Ok(Vec::new()),
        Value::Map(map) => {
            if map.len() == 1 && map.get(BLOB_KEY).is_some() {
                return Ok(Vec::new());
            }
            Ok(map
                .iter()
                .map(|(k, v)| (indifferent_key(k), from_yaml(v)))
                .collect())
        }
        _ => Err("not a map".to_string()),
    }
}

/// Whether `text` is ManageIQ's `StateVarHash` form naming a blob (other
/// than 0, the empty hash's).
pub(crate) fn blob_reference(text: &str) -> Option<i64> {
    match yaml::parse_document(text, Path::new("ae_state_data")) {
        Ok(Value::Map(map)) if map.len() == 1 => map.get(BLOB_KEY)?.as_i64().filter(|&n| n != 0),
        _ => None,
    }
}

/// `:name` and `name` are one key in a `HashWithIndifferentAccess`.
fn indifferent_key(k: &str) -> String {
    k.strip_prefix(':').unwrap_or(k).to_string()
}

/// A YAML node as an attribute value (nested maps become hashes).
pub(crate) fn from_yaml(v: &Value) -> AttrValue {
    match v {
        Value::Null => AttrValue::Nil,
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Int(i) => AttrValue::Int(*i),
        Value::Float(f) => AttrValue::Float(*f),
        Value::Str(s) => AttrValue::Str(s.clone()),
        Value::Seq(items) => AttrValue::Array(items.iter().map(from_yaml).collect()),
        Value::Map(map) => AttrValue::Hash(
            map.iter()
                .map(|(k, v)| (AttrValue::Str(indifferent_key(k)), from_yaml(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(m: &'a StateMap, k: &str) -> Option<&'a AttrValue> {
        m.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }

    #[test]
    fn json_as_automate_writes_it() {
        let m = parse_state_map(r#"{"count":3,"name":"vm1"}"#).unwrap();
        assert_eq!(get(&m, "count"), Some(&AttrValue::Int(3)));
        assert_eq!(get(&m, "name"), Some(&AttrValue::str("vm1")));
    }

    /// ManageIQ: `options[:ae_state_data] = YAML.dump(ws.persist_state_hash)`.
    #[test]
    fn yaml_as_manageiq_dumps_it() {
        let text = "--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\n\
                    count: 3\n:vm_name: vm1\nflags:\n- a\n- b\nnested:\n  k: 1.5\n";
        let m = parse_state_map(text).unwrap();
        assert_eq!(get(&m, "count"), Some(&AttrValue::Int(3)));
        assert_eq!(get(&m, "vm_name"), Some(&AttrValue::str("vm1")));
        assert_eq!(
            get(&m, "flags"),
            Some(&AttrValue::Array(vec![
                AttrValue::str("a"),
                AttrValue::str("b")
            ]))
        );
        assert_eq!(
            get(&m, "nested"),
            Some(&AttrValue::Hash(vec![(
                AttrValue::str("k"),
                AttrValue::Float(1.5)
            )]))
        );
        let plain = parse_state_map("---\ncount: 4\n").unwrap();
        assert_eq!(get(&plain, "count"), Some(&AttrValue::Int(4)));
    }

    #[test]
    fn blob_form_reads_empty() {
        let text = "--- !ruby/object:MiqAeEngine::StateVarHash\nbinary_blob_id: 42\n";
        assert_eq!(parse_state_map(text).unwrap(), Vec::new());
        assert_eq!(blob_reference(text), Some(42));
        assert_eq!(blob_reference("---\nbinary_blob_id: 0\n"), None);
    }

    #[test]
    fn not_a_map_is_an_error() {
        assert!(parse_state_map("- a\n- b\n").is_err());
        assert!(parse_state_map("{not json: [").is_err());
    }
}
