//! Attribute values: what a workspace object's attributes hold.
//!
//! Ruby's attributes are dynamic; [`AttrValue`] covers every conversion of
//! reference §5.5, and keeps nil distinct from `""` because many rules test
//! `nil?` and others `blank?`.

use std::fmt::Write;
use std::sync::Arc;

/// A reference to one stored object: its class as stored (e.g. `EmsEvent`)
/// and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VmdbRef {
    /// The object's class as stored, not its base class (`EmsEvent`, not
    /// `EventStream`).
    pub class: Arc<str>,
    /// The object's ManageIQ-style id (`region * 10^12 + seq`).
    pub id: i64,
}

/// Formats a float the way Ruby's `Float#to_s` does (`1.0`, `0.5`, `2.25`,
/// `1.0e+16`, `1.0e-05`), except that NaN and the infinities give Psych's
/// `.nan`, `.inf` and `-.inf`.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // Shortest round-trip digits and decimal exponent, as `1.2345e-7`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    // Position of the decimal point relative to the digits (Ruby's `decpt`).
    let decpt = exponent + 1;
    let body = if decpt > 0 && decpt <= 16 {
        let point = decpt as usize;
        if digits.len() <= point {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    } else if decpt <= 0 && decpt > -4 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else {
        let (first, rest) = digits.split_at(digits.len().min(1));
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{first}.{rest}e{:+03}", decpt - 1)
    };
    format!("{sign}{body}")
}

/// One attribute value: the Ruby types Automate attributes take, with nil
/// kept apart from `""`. Its `Debug` masks a password's clear text.
#[derive(Clone, PartialEq)]
pub enum AttrValue {
    /// Ruby's `nil`: unset, not the empty string.
    Nil,
    /// A string.
    Str(String),
    /// An integer (Ruby's `Integer`, held in 64 bits).
    Int(i64),
    /// A float (Ruby's `Float`); NaN and the infinities are allowed.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A Ruby symbol, held without its colon (`:foo` is `Symbol("foo")`).
    Symbol(String),
    /// An ordered array of values.
    Array(Vec<AttrValue>),
    /// An ordered hash (collect's `{k => v}` form).
    Hash(Vec<(AttrValue, AttrValue)>),
    /// A password: shown as `********`, the clear text only on request.
    Password(String),
    /// A reference to an object of the store (`EventStream::event_stream=1`).
    Object(VmdbRef),
}

impl std::fmt::Debug for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Nil => f.write_str("Nil"),
            AttrValue::Str(s) => f.debug_tuple("Str").field(s).finish(),
            AttrValue::Int(i) => f.debug_tuple("Int").field(i).finish(),
            AttrValue::Float(x) => f.debug_tuple("Float").field(x).finish(),
            AttrValue::Bool(b) => f.debug_tuple("Bool").field(b).finish(),
            AttrValue::Symbol(s) => f.debug_tuple("Symbol").field(s).finish(),
            AttrValue::Array(a) => f.debug_tuple("Array").field(a).finish(),
            AttrValue::Hash(h) => f.debug_tuple("Hash").field(h).finish(),
            // Never the clear text: `{:?}` ends up in logs and panics.
            AttrValue::Password(_) => f.debug_tuple("Password").field(&"********").finish(),
            AttrValue::Object(r) => f.debug_tuple("Object").field(r).finish(),
        }
    }
}

impl AttrValue {
    /// A [`AttrValue::Str`] of `s`.
    pub fn str(s: impl Into<String>) -> AttrValue {
        AttrValue::Str(s.into())
    }

    /// Ruby's `nil?`: true only for [`AttrValue::Nil`] (not for `""`).
    pub fn is_nil(&self) -> bool {
        matches!(self, AttrValue::Nil)
    }

    /// Ruby's `blank?`.
    pub fn is_blank(&self) -> bool {
        match self {
            AttrValue::Nil => true,
            AttrValue::Str(s) => s.trim().is_empty(),
            AttrValue::Bool(b) => !b,
            AttrValue::Array(a) => a.is_empty(),
            AttrValue::Hash(h) => h.is_empty(),
            _ => false,
        }
    }

    /// Ruby's `to_s` as substitution uses it: nil is `""`, a password is
    /// masked, an object is its id.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Nil => String::new(),
            AttrValue::Str(s) | AttrValue::Symbol(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Float(f) => format_float(*f),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Password(_) => "********".to_string(),
            AttrValue::Object(r) => r.id.to_string(),
            AttrValue::Array(_) | AttrValue::Hash(_) => self.inspect(),
        }
    }

    /// Ruby's `inspect` (as the `Invoking ... with inputs [...]` line shows).
    pub fn inspect(&self) -> String {
        let mut out = String::new();
        self.inspect_into(&mut out);
        out
    }

    fn inspect_into(&self, out: &mut String) {
        match self {
            AttrValue::Nil => out.push_str("nil"),
            AttrValue::Str(s) => inspect_str(s, out),
            AttrValue::Symbol(s) => {
                out.push(':');
                out.push_str(s);
            }
            AttrValue::Int(_) | AttrValue::Float(_) | AttrValue::Bool(_) => {
                out.push_str(&self.to_text())
            }
            AttrValue::Password(_) => out.push_str("\"********\""),
            AttrValue::Object(r) => {
                let _ = write!(out, "#<MiqAeService{} id: {}>", r.class, r.id);
            }
            AttrValue::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.inspect_into(out);
                }
                out.push(']');
            }
            AttrValue::Hash(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.inspect_into(out);
                    out.push_str("=>");
                    v.inspect_into(out);
                }
                out.push('}');
            }
        }
    }

    /// The text of a [`AttrValue::Str`]; `None` for every other variant,
    /// a symbol included.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number for collect's arithmetic (`sum`, `mean`, ...).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Float(f) => Some(*f),
            AttrValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Ruby's `Hash#inspect` of an attribute table (`{"target"=>"src_vm"}`),
/// as the `Invoking ... with inputs [...]` line shows method inputs.
pub fn inspect_attributes(attrs: &Attributes) -> String {
    let mut out = String::with_capacity(2 + attrs.len() * 24);
    out.push('{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        inspect_str(k, &mut out);
        out.push_str("=>");
        v.inspect_into(&mut out);
    }
    out.push('}');
    out
}

/// Ruby's `Hash#inspect` of delivery attributes and queue options, as the
/// `Delivering ...`, `Requeuing ...` and `Error delivering ...` lines show
/// them: symbol keys (`:event_id=>`) except `Class::attr` keys, which are
/// strings; integer values bare, others quoted.
pub fn inspect_delivery_attrs(pairs: &[(String, String)]) -> String {
    // Written straight out (no `AttrValue::Hash` built for it): this runs
    // twice per event in the pipeline.
    let raw: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    let mut out = String::with_capacity(raw + 2);
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if k.contains("::") {
            inspect_str(k, &mut out);
        } else {
            out.push(':');
            out.push_str(k);
        }
        out.push_str("=>");
        match v.parse::<i64>() {
            Ok(n) => {
                let _ = write!(out, "{n}");
            }
            Err(_) => inspect_str(v, &mut out),
        }
    }
    out.push('}');
    out
}

/// Ruby's `String#inspect` for the characters that matter here.
fn inspect_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '#' => out.push('#'),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(s.to_string())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(s)
    }
}

impl From<i64> for AttrValue {
    fn from(i: i64) -> Self {
        AttrValue::Int(i)
    }
}

impl From<bool> for AttrValue {
    fn from(b: bool) -> Self {
        AttrValue::Bool(b)
    }
}

/// An insertion-ordered attribute table with lower-cased keys.
pub type Attributes = indexmap::IndexMap<String, AttrValue, rustc_hash::FxBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_their_clear_text() {
        let p = AttrValue::Password("s3cret".into());
        assert_eq!(p.to_text(), "********");
        assert_eq!(p.inspect(), "\"********\"");
        let nested = AttrValue::Array(vec![p.clone(), AttrValue::str("x")]);
        assert_eq!(
            format!("{nested:?}"),
            r#"Array([Password("********"), Str("x")])"#
        );
        assert!(!format!("{p:?} {nested:?} {}", nested.inspect()).contains("s3cret"));
    }

    #[test]
    fn delivery_attrs_inspect_as_ruby_hashes_with_symbol_keys() {
        let pairs: Vec<(String, String)> = [
            ("event_id", "1000000000017"),
            ("event_type", "USER_RUN_VM"),
            ("VmOrTemplate::vm", "1000000000005"),
            ("note", "say \"hi\""),
            ("signed", "-3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            inspect_delivery_attrs(&pairs),
            r#"{:event_id=>1000000000017, :event_type=>"USER_RUN_VM", "VmOrTemplate::vm"=>1000000000005, :note=>"say \"hi\"", :signed=>-3}"#
        );
        // The same as the general `Hash#inspect` of the values they stand for.
        let as_hash = AttrValue::Hash(
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = if k.contains("::") {
                        AttrValue::Str(k.clone())
                    } else {
                        AttrValue::Symbol(k.clone())
                    };
                    let value = v
                        .parse::<i64>()
                        .map_or_else(|_| AttrValue::Str(v.clone()), AttrValue::Int);
                    (key, value)
                })
                .collect(),
        );
        assert_eq!(inspect_delivery_attrs(&pairs), as_hash.inspect());
        assert_eq!(inspect_delivery_attrs(&[]), "{}");
    }
}
