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
//!
//! A password among them (a state var holding an `MiqAePassword`) is saved
//! as ManageIQ serializes one in a workspace, `password::v2:{...}`: encrypted
//! with the engine's v2 key ([`saved_json`]), decrypted again when the retry
//! is delivered ([`restore_passwords`]). Without a v2 key nothing could
//! decrypt it, and a saved workspace must never hold the clear text: the
//! value is saved as the mask `********` (the retried method sees the mask)
//! and the retry logs a warning naming the state var.

use super::datatype::{from_json, to_json};
use automate_core::value::AttrValue;
use automate_datastore::yaml::{self, Value};
use automate_password::V2Key;
use std::path::Path;

/// The key of ManageIQ's `StateVarHash#encode_with` form.
pub(crate) const BLOB_KEY: &str = "binary_blob_id";

/// The prefix of a password saved in a workspace (ManageIQ's
/// `"password::#{MiqAePassword.encrypt(value)}"`).
pub(crate) const PASSWORD_PREFIX: &str = "password::";

/// A state value as saved with a retry ([`to_json`]'s form), a password as
/// `password::v2:{...}` encrypted with `key`, or [`automate_password::MASK`]
/// without one (its path pushed on `masked`: `vars.creds[1]`).
pub(crate) fn saved_json(
    v: &AttrValue,
    key: Option<&V2Key>,
    path: &str,
    masked: &mut Vec<String>,
) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AttrValue::Password(clear) => match key {
            Some(key) => J::String(format!("{PASSWORD_PREFIX}{}", key.encrypt(clear))),
            None => {
                masked.push(path.to_string());
                J::String(automate_password::MASK.to_string())
            }
        },
        AttrValue::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| saved_json(v, key, &format!("{path}[{i}]"), masked))
                .collect(),
        ),
        AttrValue::Hash(pairs) => J::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let k = k.to_text();
                    let inner = saved_json(v, key, &format!("{path}.{k}"), masked);
                    (k, inner)
                })
                .collect(),
        ),
        other => to_json(other),
    }
}

/// A state value as read back: every `password::v2:{...}` text in it a
/// password again, decrypted with `key`. One that does not decrypt (no
/// key, another region's key) reads as the mask, its path and the reason
/// pushed on `failed`.
pub(crate) fn restore_passwords(
    v: AttrValue,
    key: Option<&V2Key>,
    path: &str,
    failed: &mut Vec<String>,
) -> AttrValue {
    match v {
        AttrValue::Str(s) if s.starts_with(PASSWORD_PREFIX) => {
            let enc = &s[PASSWORD_PREFIX.len()..];
            match automate_password::decrypt_with(key, enc) {
                Ok(clear) => AttrValue::Password(clear),
                Err(e) => {
                    failed.push(format!("{path}: {e}"));
                    AttrValue::Password(automate_password::MASK.to_string())
                }
            }
        }
        AttrValue::Array(items) => AttrValue::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| restore_passwords(v, key, &format!("{path}[{i}]"), failed))
                .collect(),
        ),
        AttrValue::Hash(pairs) => AttrValue::Hash(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let p = format!("{path}.{}", k.to_text());
                    (k, restore_passwords(v, key, &p, failed))
                })
                .collect(),
        ),
        other => other,
    }
}

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
    fn passwords_are_saved_encrypted_and_read_back_decrypted() {
        let key = V2Key::from_bytes([7; 32], None, "test key");
        let v = AttrValue::Hash(vec![(
            AttrValue::str("creds"),
            AttrValue::Array(vec![AttrValue::Password("s3cret".into())]),
        )]);
        let mut masked = Vec::new();
        let saved = saved_json(&v, Some(&key), "vars", &mut masked).to_string();
        assert!(masked.is_empty());
        assert!(!saved.contains("s3cret"), "{saved}");
        assert!(saved.contains("password::v2:{"), "{saved}");
        let m = parse_state_map(&saved).unwrap();
        let mut failed = Vec::new();
        let back = restore_passwords(
            AttrValue::Hash(m.into_iter().map(|(k, v)| (AttrValue::Str(k), v)).collect()),
            Some(&key),
            "vars",
            &mut failed,
        );
        assert_eq!(back, v);
        assert!(failed.is_empty());
        // No key: masked, never clear; read back as the mask.
        let saved = saved_json(&v, None, "vars", &mut masked).to_string();
        assert!(!saved.contains("s3cret"), "{saved}");
        assert_eq!(masked, ["vars.creds[0]"]);
        // A value another key encrypted: the mask, and why.
        let other = V2Key::from_bytes([9; 32], None, "other key");
        let enc = AttrValue::Str(format!("{PASSWORD_PREFIX}{}", other.encrypt("x")));
        let back = restore_passwords(enc, Some(&key), "pw", &mut failed);
        assert_eq!(back, AttrValue::Password(automate_password::MASK.into()));
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].starts_with("pw: "), "{failed:?}");
    }

    #[test]
    fn not_a_map_is_an_error() {
        assert!(parse_state_map("- a\n- b\n").is_err());
        assert!(parse_state_map("{not json: [").is_err());
    }
}
