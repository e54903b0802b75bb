//! Datatype conversion of attribute values (reference §5.5).

use super::error::EngineError;
use automate_core::value::AttrValue;
use automate_vmdb::{base_class, ObjectStore};

/// Converts `value` to `datatype`. Blank values are returned unchanged.
/// A `password` value is decrypted with no key: only blank, `v2:{}` and
/// errors come out ([`convert_with`] takes the key).
pub fn convert(
    store: &dyn ObjectStore,
    value: AttrValue,
    datatype: &str,
) -> Result<AttrValue, EngineError> {
    convert_with(store, None, value, datatype)
}

/// [`convert`], decrypting `password` values (ManageIQ's `v2:{...}`)
/// with `key`, as `MiqAePassword.new(MiqAePassword.decrypt(value))`: a
/// value that is not encrypted, or does not decrypt, is
/// [`EngineError::Password`].
pub fn convert_with(
    store: &dyn ObjectStore,
    key: Option<&automate_password::V2Key>,
    value: AttrValue,
    datatype: &str,
) -> Result<AttrValue, EngineError> {
    if value.is_blank() {
        return Ok(value);
    }
    let AttrValue::Str(text) = &value else {
        return Ok(value);
    };
    let is = |name: &str| datatype.eq_ignore_ascii_case(name);
    Ok(if is("string") || is("null coalescing") {
        value
    } else if is("boolean") {
        match text.as_str() {
            t if t.eq_ignore_ascii_case("true") || t == "1" => AttrValue::Bool(true),
            t if t.eq_ignore_ascii_case("false") || t == "0" => AttrValue::Bool(false),
            _ => value,
        }
    } else if is("trueclass") {
        AttrValue::Bool(true)
    } else if is("falseclass") {
        AttrValue::Bool(false)
    } else if is("integer") || is("fixnum") {
        AttrValue::Int(ruby_to_i(text))
    } else if is("float") {
        AttrValue::Float(ruby_to_f(text))
    } else if is("symbol") {
        AttrValue::Symbol(text.clone())
    } else if is("time") {
        value
    } else if is("array") {
        let inner: String = text.chars().filter(|c| *c != '[' && *c != ']').collect();
        AttrValue::Array(
            inner
                .trim()
                .split(',')
                .map(|s| AttrValue::Str(s.trim().to_string()))
                .collect(),
        )
    } else if datatype == "password" {
        AttrValue::Password(
            automate_password::decrypt_with(key, text)
                .map_err(|e| EngineError::Password(e.to_string()))?,
        )
    } else {
        return find_object(store, datatype, text);
    })
}

impl super::Runtime<'_> {
    /// [`convert_with`] under the engine's v2 key, for the attribute
    /// `name` of object `id`: a password that does not decrypt names the
    /// field and the object (`/Domain/ns/Class/instance`).
    pub(super) fn convert_attr(
        &self,
        id: super::ObjectId,
        name: &str,
        value: AttrValue,
        datatype: &str,
    ) -> Result<AttrValue, EngineError> {
        let key = self.engine.password_key.as_deref();
        convert_with(self.engine.store.as_ref(), key, value, datatype).map_err(|e| match e {
            EngineError::Password(msg) => {
                let o = &self.ws.objects[id];
                EngineError::Password(format!(
                    "password field [{name}] of [/{}/{}/{}]: {msg}",
                    o.namespace, o.class, o.instance
                ))
            }
            other => other,
        })
    }
}

/// A service-model datatype or query class: the stored object with that id.
fn find_object(store: &dyn ObjectStore, class: &str, text: &str) -> Result<AttrValue, EngineError> {
    let model = service_model(class);
    if base_class(model).is_none() {
        return Err(EngineError::InvalidClass(format!(
            "invalid class [{class}]: not a datatype or a known object class"
        )));
    }
    let id = text.trim().parse::<i64>().map_err(|_| {
        EngineError::ServiceNotFound(format!("{model} [{text}] is not a valid object id"))
    })?;
    store
        .find(model, id)?
        .map(AttrValue::Object)
        .ok_or_else(|| {
            EngineError::ServiceNotFound(format!("{model} [{id}] not found in the object store"))
        })
}

/// ManageIQ's `SM_LOOKUP` short names.
fn service_model(name: &str) -> &str {
    const SHORT: [(&str, &str); 8] = [
        ("ems", "ExtManagementSystem"),
        ("policy", "MiqPolicy"),
        ("request", "MiqRequest"),
        ("server", "MiqServer"),
        ("vm", "VmOrTemplate"),
        ("host", "Host"),
        ("user", "User"),
        ("storage", "Storage"),
    ];
    SHORT
        .iter()
        .find(|(short, _)| name.eq_ignore_ascii_case(short))
        .map_or(name, |(_, model)| model)
}

/// Ruby's lenient `String#to_i`: leading digits, else 0.
pub fn ruby_to_i(s: &str) -> i64 {
    let t = s.trim_start();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let mut n: i64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let Some(d) = c.to_digit(10) else { break };
        n = n.saturating_mul(10).saturating_add(d as i64);
    }
    sign * n
}

/// Ruby's lenient `String#to_f`.
pub fn ruby_to_f(s: &str) -> f64 {
    let t = s.trim_start();
    let end = t
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit()
                || *c == '.'
                || (*i == 0 && (*c == '-' || *c == '+'))
                || *c == 'e'
                || *c == 'E'
        })
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    let mut candidate = &t[..end];
    while !candidate.is_empty() {
        if let Ok(f) = candidate.parse() {
            return f;
        }
        candidate = &candidate[..candidate.len() - 1];
    }
    0.0
}

/// A JSON value (state data carried across retries) as an attribute value.
pub fn from_json(v: &serde_json::Value) -> AttrValue {
    match v {
        serde_json::Value::Null => AttrValue::Nil,
        serde_json::Value::Bool(b) => AttrValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => AttrValue::Str(s.clone()),
        serde_json::Value::Array(a) => AttrValue::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => AttrValue::Hash(
            m.iter()
                .map(|(k, v)| (AttrValue::Str(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// An attribute value as JSON (state data, `--json` output).
pub fn to_json(v: &AttrValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AttrValue::Nil => J::Null,
        AttrValue::Str(s) | AttrValue::Symbol(s) => J::String(s.clone()),
        AttrValue::Int(i) => J::from(*i),
        AttrValue::Float(f) => J::from(*f),
        AttrValue::Bool(b) => J::Bool(*b),
        AttrValue::Password(_) => J::String("********".into()),
        AttrValue::Object(r) => J::String(format!("{}::{}", r.class, r.id)),
        AttrValue::Array(a) => J::Array(a.iter().map(to_json).collect()),
        AttrValue::Hash(h) => J::Object(h.iter().map(|(k, v)| (k.to_text(), to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_core::time::duration_seconds;
    use automate_core::value::Attributes;
    use automate_vmdb::{NoObjects, StoreError, StoredObject, VmdbRef};

    #[test]
    fn conversions_follow_ruby() {
        let s = |x: &str| AttrValue::Str(x.into());
        let c = |v, d| convert(&NoObjects, v, d).unwrap();
        assert_eq!(c(s("true"), "boolean"), AttrValue::Bool(true));
        assert_eq!(c(s("0"), "boolean"), AttrValue::Bool(false));
        assert_eq!(c(s("maybe"), "boolean"), s("maybe"));
        assert_eq!(c(s("12abc"), "integer"), AttrValue::Int(12));
        assert_eq!(c(s("x"), "Integer"), AttrValue::Int(0));
        assert_eq!(c(s("1.5"), "float"), AttrValue::Float(1.5));
        assert_eq!(
            c(s("[1, 2 ,3]"), "array"),
            AttrValue::Array(vec![s("1"), s("2"), s("3")])
        );
        assert_eq!(c(s(""), "integer"), s(""));
        assert!(matches!(
            convert(&NoObjects, s("1"), "nada"),
            Err(EngineError::InvalidClass(_))
        ));
        assert!(matches!(
            convert(&NoObjects, s("1"), "vm"),
            Err(EngineError::ServiceNotFound(_))
        ));
    }

    /// A store whose every read fails (a damaged page, an I/O error).
    struct FailingReads;

    impl ObjectStore for FailingReads {
        fn find(&self, _: &str, _: i64) -> Result<Option<VmdbRef>, StoreError> {
            Err(StoreError::Backend("read failed: damaged page".into()))
        }
        fn attribute(&self, _: &VmdbRef, _: &str) -> Result<Option<AttrValue>, StoreError> {
            Err(StoreError::Backend("read failed: damaged page".into()))
        }
        fn load(&self, _: &str, _: i64) -> Result<Option<StoredObject>, StoreError> {
            Err(StoreError::Backend("read failed: damaged page".into()))
        }
        fn list(&self, _: &str) -> Result<Vec<VmdbRef>, StoreError> {
            Err(StoreError::Backend("read failed: damaged page".into()))
        }
        fn create(&self, class: &str, _: Attributes) -> Result<VmdbRef, StoreError> {
            Err(StoreError::UnknownClass(class.into()))
        }
        fn update(&self, _: &VmdbRef, _: &str, _: AttrValue) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete(&self, _: &VmdbRef) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn find_by(&self, _: &str, _: &str, _: &AttrValue) -> Result<Vec<VmdbRef>, StoreError> {
            Err(StoreError::Backend("read failed: damaged page".into()))
        }
    }

    #[test]
    fn a_failed_read_is_an_error_not_a_missing_object() {
        let e = convert(&FailingReads, AttrValue::Str("7".into()), "vm").unwrap_err();
        assert_eq!(
            e,
            EngineError::Store(StoreError::Backend("read failed: damaged page".into()))
        );
        assert_eq!(e.to_string(), "object store: read failed: damaged page");
        // A store that reads finds nothing: that one is "not found".
        assert!(matches!(
            convert(&NoObjects, AttrValue::Str("7".into()), "vm"),
            Err(EngineError::ServiceNotFound(_))
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("1.hour"), Some(3600.0));
        assert_eq!(duration_seconds("6.seconds"), Some(6.0));
        assert_eq!(duration_seconds("0.5"), Some(0.5));
        assert_eq!(duration_seconds("1,000"), Some(1000.0));
        assert_eq!(duration_seconds("soon"), None);
    }
}
