//! The generic YAML tree the datastore files are read into and written from.
//!
//! ManageIQ's export files are plain Psych dumps of Ruby hashes, so a faithful
//! round trip needs three things a typed serde model would lose: the key order
//! of every mapping, the difference between null (`key:`) and the empty string
//! (`key: ''`), and the difference between `'100'` (a string) and `100` (an
//! integer). [`Value`] keeps all three.

pub(crate) use automate_core::value::format_float;
use std::fmt;

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `key:` with nothing after it, `~` or `null`.
    Null,
    /// `true` or `false` (also `yes`/`no` and the other YAML 1.1 spellings Psych reads as booleans).
    Bool(bool),
    /// A plain integer scalar (`100`; `'100'` is a [`Value::Str`]).
    Int(i64),
    /// A plain float scalar (`1.5`, `.inf`, `.nan`).
    Float(f64),
    /// Any string scalar, whatever its quoting was. Ruby symbols stay strings
    /// starting with `:`.
    Str(String),
    /// A sequence, in order.
    Seq(Vec<Value>),
    /// A mapping, in the file's key order.
    Map(Mapping),
}

/// An insertion-ordered mapping with string keys (symbol keys as `:name`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping(pub Vec<(String, Value)>);

impl Mapping {
    /// An empty mapping.
    pub fn new() -> Self {
        Mapping(Vec::new())
    }

    /// The value of `key` (exact, case-sensitive match: YAML keys are data).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key` to change in place (exact, case-sensitive match).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key` as a string, if it is one (null and absent give `None`).
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Replaces the value of `key` in place, or appends it at the end.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let pos = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(pos).1)
    }

    /// Whether `key` is present, even with a null value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the mapping has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Value {
    /// The string of a [`Value::Str`]; `None` for any other node (null included).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The mapping of a [`Value::Map`]; `None` for any other node.
    pub fn as_map(&self) -> Option<&Mapping> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items of a [`Value::Seq`]; `None` for any other node.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean of a [`Value::Bool`]; `None` for any other node (`'true'` included).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer of a [`Value::Int`]; `None` for any other node (`'100'` included).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Whether the node is [`Value::Null`] (an empty string is not).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Ruby's `blank?`: nil, false, an empty or all-whitespace string, an
    /// empty collection.
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Str(s) => s.trim().is_empty(),
            Value::Seq(s) => s.is_empty(),
            Value::Map(m) => m.is_empty(),
            Value::Int(_) | Value::Float(_) => false,
        }
    }

    /// The scalar as the text a Ruby `to_s` would give (`nil` gives `""`).
    /// Collections give `None`.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::Str(s) => Some(s.clone()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scalar_text() {
            Some(s) => f.write_str(&s),
            None => write!(f, "{self:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_ruby() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (2.25, "2.25"),
            (-3.0, "-3.0"),
            (-0.0, "-0.0"),
            (0.0001, "0.0001"),
            (0.00001, "1.0e-05"),
            (1.5e-7, "1.5e-07"),
            (123_456_789.125, "123456789.125"),
            (1e15, "1000000000000000.0"),
            (1e16, "1.0e+16"),
            (1.25e20, "1.25e+20"),
            (f64::INFINITY, ".inf"),
            (f64::NEG_INFINITY, "-.inf"),
            (f64::NAN, ".nan"),
        ];
        for (f, want) in cases {
            assert_eq!(format_float(f), want, "{f:e}");
        }
    }
}
