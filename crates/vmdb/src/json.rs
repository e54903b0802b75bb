//! JSON text exactly as `serde_json::to_string` writes it (compact, its
//! escapes), written by hand: without serde_json's per-value machinery and
//! with strings scanned for escapes eight bytes at a time. The EmsEvent's
//! `full_data` text, the event queue's payloads and the redb store's
//! object encoding are written with it, so it is on the hot path.
//!
//! The stored encoding of attribute values, shared by the redb store (its
//! `objects` table) and the PostgreSQL store (its `attrs` column), is here
//! too ([`write_attr_value`], [`write_attrs`], [`decode_attr_value`]):
//! strings, integers, finite floats, booleans and nil are JSON's own; a
//! NaN or infinity is `{"$f":"NaN"|"inf"|"-inf"}`, a symbol `{"$sym":..}`,
//! a password `{"$pw":..}`, an object reference `{"$obj":[class,id]}`, an
//! array an array, a hash `{"$hash":[[key,value],...]}`. Both stores'
//! files and rows hold these bytes: they must not change.

use automate_core::value::{AttrValue, Attributes, VmdbRef};
use serde_json::Value as J;
use std::sync::Arc;

/// A JSON value as `serde_json::to_string` writes it (compact), appended
/// to `out`: the EmsEvent's `full_data` text.
pub fn write_json(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // serde_json's own number text (itoa, ryu).
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_array(out, items, write_json),
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_json(out, item);
            }
            out.push(b'}');
        }
    }
}

/// `[item,item,...]`, each item written by `write`.
pub fn write_array<T>(out: &mut Vec<u8>, items: &[T], write: fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// [`write_json`] as a `String`.
pub fn json_text(v: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, v);
    // Written from `&str`s and ASCII only.
    String::from_utf8(out).unwrap_or_default()
}

/// A JSON string with serde_json's escapes: `\"`, `\\`, `\b \t \n \f \r`,
/// other bytes below 0x20 as `\u00xx`; everything else (DEL, non-ASCII)
/// as it is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut i = 0;
    // Eight bytes at a time, copied whole (a fixed-size copy is one store);
    // when the word holds an escape, the copy is cut back to the first
    // one (the lowest byte the word test flags), which is written escaped,
    // and the next word starts after it. JSON text in a string
    // (`full_data`) has a quote every few bytes, so this jumps from escape
    // to escape without a copy call per run.
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        out.extend_from_slice(&word);
        let flags = escape_flags(u64::from_le_bytes(word));
        if flags == 0 {
            i += 8;
            continue;
        }
        let at = (flags.trailing_zeros() / 8) as usize;
        out.truncate(out.len() - (8 - at));
        write_escape(out, word[at]);
        i += at + 1;
    }
    // The last few bytes one by one.
    for &b in &bytes[i..] {
        if escape_of(b) == 0 {
            out.push(b);
        } else {
            write_escape(out, b);
        }
    }
    out.push(b'"');
}

/// The escape of `b`, a byte [`escape_of`] says needs one.
fn write_escape(out: &mut Vec<u8>, b: u8) {
    match escape_of(b) {
        b'u' => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xF) as usize],
            ]);
        }
        e => out.extend_from_slice(&[b'\\', e]),
    }
}

/// What follows the backslash for byte `b`, or 0 when it is written as is.
fn escape_of(b: u8) -> u8 {
    ESCAPES[b as usize]
}

/// [`escape_of`] as a table (short strings, keys mostly, go byte by byte).
static ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// The high bit of each of the eight bytes of `w` (little-endian) that is
/// `"`, `\` or below 0x20 (the classic "has a zero byte" and "has a byte
/// less than n" tests). A borrow can also flag a byte *above* a flagged
/// one, never below, so the lowest flag is exact, and no flag means no
/// escape in the word.
fn escape_flags(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = has_zero(w ^ (ONES * b'"' as u64));
    let backslash = has_zero(w ^ (ONES * b'\\' as u64));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// Attributes as one JSON object `{"name":value,...}`, in their order,
/// appended to `out`.
pub fn write_attrs(out: &mut Vec<u8>, attrs: &Attributes) {
    out.push(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_attr_value(out, v);
    }
    out.push(b'}');
}

/// One attribute value in the stored encoding, appended to `out`.
pub fn write_attr_value(out: &mut Vec<u8>, v: &AttrValue) {
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
        AttrValue::Array(items) => write_array(out, items, write_attr_value),
        AttrValue::Hash(pairs) => tagged(out, "$hash", |out| {
            out.push(b'[');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                write_attr_value(out, k);
                out.push(b',');
                write_attr_value(out, v);
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

/// A value [`write_attr_value`] wrote (parsed by serde_json) as the
/// attribute value. A JSON object that is not one of the tagged forms
/// (not written by [`write_attr_value`]) reads as a string-keyed hash.
pub fn decode_attr_value(v: &J) -> AttrValue {
    match v {
        J::Null => AttrValue::Nil,
        J::Bool(b) => AttrValue::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => AttrValue::Str(s.clone()),
        J::Array(a) => AttrValue::Array(a.iter().map(decode_attr_value).collect()),
        J::Object(m) => {
            if let (1, Some((tag, inner))) = (m.len(), m.iter().next()) {
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
                                        Some((decode_attr_value(&kv[0]), decode_attr_value(&kv[1])))
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
                    .map(|(k, v)| (AttrValue::Str(k.clone()), decode_attr_value(v)))
                    .collect(),
            )
        }
    }
}

/// Reads a value [`write_attr_value`] wrote straight from JSON text: the
/// same value [`decode_attr_value`] makes of the parsed tree, without
/// building the tree (every load of an object from either store goes
/// through here: a stored event with its payload and its record is a few
/// kilobytes of text).
#[derive(Debug, Clone, Copy)]
pub struct AttrValueSeed;

impl<'de> serde::de::DeserializeSeed<'de> for AttrValueSeed {
    type Value = AttrValue;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<AttrValue, D::Error> {
        d.deserialize_any(AttrValueVisitor)
    }
}

struct AttrValueVisitor;

impl<'de> serde::de::Visitor<'de> for AttrValueVisitor {
    type Value = AttrValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a stored attribute value")
    }

    fn visit_unit<E>(self) -> Result<AttrValue, E> {
        Ok(AttrValue::Nil)
    }

    fn visit_none<E>(self) -> Result<AttrValue, E> {
        Ok(AttrValue::Nil)
    }

    fn visit_bool<E>(self, b: bool) -> Result<AttrValue, E> {
        Ok(AttrValue::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<AttrValue, E> {
        Ok(AttrValue::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<AttrValue, E> {
        // (As serde_json's `Number::as_i64`, then `as_f64`.)
        Ok(i64::try_from(u).map_or(AttrValue::Float(u as f64), AttrValue::Int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<AttrValue, E> {
        Ok(AttrValue::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<AttrValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(AttrValueSeed)? {
            items.push(v);
        }
        Ok(AttrValue::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<AttrValue, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(AttrValue::Hash(Vec::new()));
        };
        let value = map.next_value_seed(AttrValueSeed)?;
        let mut next = map.next_key::<String>()?;
        if next.is_none() {
            if let Some(v) = untag(&first, &value) {
                return Ok(v);
            }
        }
        // Not one of the tagged forms: a string-keyed hash, a repeated key
        // keeping its first place and its last value (as the tree does).
        let mut pairs = vec![(AttrValue::Str(first), value)];
        while let Some(k) = next {
            let v = map.next_value_seed(AttrValueSeed)?;
            match pairs
                .iter_mut()
                .find(|(pk, _)| matches!(pk, AttrValue::Str(s) if *s == k))
            {
                Some(pair) => pair.1 = v,
                None => pairs.push((AttrValue::Str(k), v)),
            }
            next = map.next_key::<String>()?;
        }
        Ok(AttrValue::Hash(pairs))
    }
}

/// The value of a one-entry object `{tag: inner}` when it is one of the
/// tagged forms ([`decode_attr_value`]'s rules, on the decoded inner value).
fn untag(tag: &str, inner: &AttrValue) -> Option<AttrValue> {
    match (tag, inner) {
        ("$sym", AttrValue::Str(s)) => Some(AttrValue::Symbol(s.clone())),
        ("$pw", AttrValue::Str(s)) => Some(AttrValue::Password(s.clone())),
        ("$f", AttrValue::Str(s)) => Some(AttrValue::Float(match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => f64::NAN,
        })),
        ("$obj", AttrValue::Array(a)) => match a.as_slice() {
            [AttrValue::Str(c), AttrValue::Int(id)] => Some(AttrValue::Object(VmdbRef {
                class: Arc::from(c.as_str()),
                id: *id,
            })),
            _ => None,
        },
        ("$hash", AttrValue::Array(pairs)) => Some(AttrValue::Hash(
            pairs
                .iter()
                .filter_map(|p| match p {
                    AttrValue::Array(kv) if kv.len() == 2 => Some((kv[0].clone(), kv[1].clone())),
                    _ => None,
                })
                .collect(),
        )),
        _ => None,
    }
}

/// Reads an object of stored attribute values (`{"name": value, ...}`,
/// in their order; `null` is none), as the stores keep an object's
/// attributes, straight from JSON text with [`AttrValueSeed`].
#[derive(Debug, Clone, Copy)]
pub struct AttributesSeed;

impl<'de> serde::de::DeserializeSeed<'de> for AttributesSeed {
    type Value = Attributes;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Attributes, D::Error> {
        d.deserialize_any(AttributesVisitor)
    }
}

struct AttributesVisitor;

impl<'de> serde::de::Visitor<'de> for AttributesVisitor {
    type Value = Attributes;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of attributes")
    }

    fn visit_unit<E>(self) -> Result<Attributes, E> {
        Ok(Attributes::default())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
        let mut attrs =
            Attributes::with_capacity_and_hasher(map.size_hint().unwrap_or(16), Default::default());
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(AttrValueSeed)?;
            attrs.insert(k, v);
        }
        Ok(attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming reader makes of the text what the tree reader makes
    /// of the parsed tree, for what the writer writes and for what it
    /// never writes (untagged objects, repeated keys, tags around the
    /// wrong value, integers beyond i64).
    #[test]
    fn attr_value_seed_reads_as_decode_attr_value() {
        use serde::de::DeserializeSeed as _;
        let written = [
            AttrValue::Nil,
            AttrValue::Bool(true),
            AttrValue::Int(-7),
            AttrValue::Int(i64::MAX),
            AttrValue::Float(2.5),
            AttrValue::Float(f64::INFINITY),
            AttrValue::Float(f64::NEG_INFINITY),
            AttrValue::str("a \"quoted\"\n\u{1} \u{e9}"),
            AttrValue::Symbol("ok".into()),
            AttrValue::Password("secret".into()),
            AttrValue::Object(VmdbRef {
                class: Arc::from("Vm"),
                id: 42,
            }),
            AttrValue::Array(vec![AttrValue::Int(1), AttrValue::str("x")]),
            AttrValue::Hash(vec![
                (AttrValue::str("k"), AttrValue::Int(1)),
                (AttrValue::Symbol("s".into()), AttrValue::Array(vec![])),
            ]),
        ];
        let mut texts: Vec<String> = written
            .iter()
            .map(|v| {
                let mut out = Vec::new();
                write_attr_value(&mut out, v);
                String::from_utf8(out).unwrap()
            })
            .collect();
        texts.extend(
            [
                r#"{"a":1,"b":{"$sym":"s"},"a":2}"#,
                r#"{"$sym":5}"#,
                r#"{"$sym":"s","x":1}"#,
                r#"{"$obj":["Vm",1.0]}"#,
                r#"{"$obj":["Vm"]}"#,
                r#"{"$hash":[[1,2],[3],"x"]}"#,
                r#"{"$f":"NaN"}"#,
                r#"{}"#,
                r#"[]"#,
                "18446744073709551615",
                "-0.0",
            ]
            .map(String::from),
        );
        for text in &texts {
            let tree: J = serde_json::from_str(text).unwrap();
            let want = decode_attr_value(&tree);
            let got = AttrValueSeed
                .deserialize(&mut serde_json::Deserializer::from_str(text))
                .unwrap();
            // (Debug: NaN is not equal to itself.)
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{text}");
        }
        let mut out = Vec::new();
        let attrs: Attributes = [("z", AttrValue::Int(1)), ("a", AttrValue::str("v"))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        write_attrs(&mut out, &attrs);
        let back = AttributesSeed
            .deserialize(&mut serde_json::Deserializer::from_slice(&out))
            .unwrap();
        assert_eq!(back, attrs);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            ["z", "a"],
            "in their order"
        );
        assert!(AttributesSeed
            .deserialize(&mut serde_json::Deserializer::from_str("5"))
            .is_err());
    }

    fn serde_str(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "exactly8".into(),
            "a \"quoted\" \\ path".into(),
            "{\"id\":\"10001\",\"href\":\"/ovirt-engine/api/events/10001\"}".into(),
            "tab\there\nnew\rline\u{8}\u{c}\u{0}\u{1f}\u{7f} end".into(),
            "héllo wörld ✓ 日本語 \u{10ffff}".into(),
            "\\\\\\\\\\\\\\\\\"".into(),
        ];
        // Every byte value below 0x80 at every position of a 17-byte run.
        for b in 0u8..0x80 {
            for at in 0..17 {
                let mut s = vec![b'x'; 17];
                s[at] = b;
                cases.push(String::from_utf8(s).unwrap());
            }
        }
        for s in &cases {
            assert_eq!(ours(s), serde_str(s), "{s:?}");
        }
    }

    #[test]
    fn json_values_are_written_as_serde_json_writes_them() {
        let values = [
            serde_json::json!(null),
            serde_json::json!({
                "id": "10001",
                "href": "/ovirt-engine/api/events/10001",
                "code": 33,
                "neg": -7,
                "big": u64::MAX,
                "float": 1.5,
                "whole": 2.0,
                "tiny": 1e-300,
                "flags": [true, false, null],
                "text": "a \"quoted\" \\ line\nwith\ttabs \u{1} é ✓",
                "nested": {"user": {"name": "admin@internal"}, "empty": {}, "list": []},
            }),
            serde_json::json!([1, "two", [3.25, {"four": 4}]]),
            serde_json::json!("just a string"),
        ];
        for v in &values {
            assert_eq!(json_text(v), serde_json::to_string(v).unwrap(), "{v}");
        }
    }

    #[test]
    fn the_word_test_finds_the_first_escape() {
        // One byte of every value at every position, among bytes that
        // need no escape and bytes that do.
        for fill in [b'a', 0x01, b'"', 0xC3] {
            for b in 0u8..=255 {
                for at in 0..8 {
                    let mut w = [fill; 8];
                    w[at] = b;
                    let first = w.iter().position(|&x| escape_of(x) != 0);
                    let flags = escape_flags(u64::from_le_bytes(w));
                    let found = (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize);
                    assert_eq!(found, first, "{w:?}");
                }
            }
        }
    }

    /// The stored bytes of every kind of value, pinned: redb files and
    /// PostgreSQL rows already written hold exactly these.
    #[test]
    fn attribute_values_keep_their_stored_bytes() {
        let obj = |class: &str, id| {
            AttrValue::Object(VmdbRef {
                class: Arc::from(class),
                id,
            })
        };
        let cases: Vec<(AttrValue, &str)> = vec![
            (AttrValue::Nil, "null"),
            (AttrValue::str("text \"q\" é\n"), r#""text \"q\" é\n""#),
            (AttrValue::str("$sym"), r#""$sym""#),
            (AttrValue::Int(-7), "-7"),
            (AttrValue::Int(i64::MIN), "-9223372036854775808"),
            (AttrValue::Int(1_000_000_000_123), "1000000000123"),
            (AttrValue::Float(1.0), "1.0"),
            (AttrValue::Float(2.5), "2.5"),
            (AttrValue::Float(1e-300), "1e-300"),
            (AttrValue::Float(f64::NAN), r#"{"$f":"NaN"}"#),
            (AttrValue::Float(f64::INFINITY), r#"{"$f":"inf"}"#),
            (AttrValue::Float(f64::NEG_INFINITY), r#"{"$f":"-inf"}"#),
            (AttrValue::Bool(true), "true"),
            (AttrValue::Bool(false), "false"),
            (AttrValue::Symbol("ok".into()), r#"{"$sym":"ok"}"#),
            (AttrValue::Password("secret".into()), r#"{"$pw":"secret"}"#),
            (
                obj("Host", 1_000_000_000_002),
                r#"{"$obj":["Host",1000000000002]}"#,
            ),
            (AttrValue::Array(vec![]), "[]"),
            (
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::str("x")]),
                r#"[1,"x"]"#,
            ),
            (AttrValue::Hash(vec![]), r#"{"$hash":[]}"#),
            (
                AttrValue::Hash(vec![
                    (AttrValue::Symbol("k".into()), AttrValue::Int(1)),
                    (AttrValue::Int(2), AttrValue::Nil),
                    (
                        AttrValue::str("nested"),
                        AttrValue::Array(vec![obj("Vm", 3)]),
                    ),
                ]),
                r#"{"$hash":[[{"$sym":"k"},1],[2,null],["nested",[{"$obj":["Vm",3]}]]]}"#,
            ),
        ];
        for (value, text) in &cases {
            let mut out = Vec::new();
            write_attr_value(&mut out, value);
            assert_eq!(String::from_utf8_lossy(&out), *text, "{value:?}");
            let back = decode_attr_value(&serde_json::from_slice(&out).unwrap());
            match value {
                AttrValue::Float(f) if f.is_nan() => {
                    assert!(matches!(back, AttrValue::Float(b) if b.is_nan()))
                }
                _ => assert_eq!(&back, value),
            }
        }
        let mut attrs = Attributes::default();
        attrs.insert("zeta".into(), AttrValue::Int(1));
        attrs.insert("alpha".into(), AttrValue::Symbol("s".into()));
        let mut out = Vec::new();
        write_attrs(&mut out, &attrs);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"zeta":1,"alpha":{"$sym":"s"}}"#
        );
    }

    #[test]
    fn untagged_objects_decode_as_string_keyed_hashes() {
        let v = serde_json::json!({"$sym": 5, "b": true});
        assert_eq!(
            decode_attr_value(&v),
            AttrValue::Hash(vec![
                (AttrValue::str("$sym"), AttrValue::Int(5)),
                (AttrValue::str("b"), AttrValue::Bool(true)),
            ])
        );
    }
}
