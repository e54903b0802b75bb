//! Parsing one export file into a [`Value`] tree, with input budgets.
//!
//! The text is read by `serde-saphyr` (a YAML 1.2 parser with YAML 1.1 boolean
//! spellings) through a hand-written [`Deserialize`] impl for [`Value`] that
//! keeps what a byte-exact round trip needs:
//!
//! * mapping keys in file order, as text (a plain `1:` key is the string `1`);
//! * quoted scalars as strings (`'100'` is [`Value::Str`], `100` is
//!   [`Value::Int`]), `key:`, `~` and `null` as [`Value::Null`], `''` as an
//!   empty string;
//! * Ruby symbols (`:foo`, `:name:` keys) as strings starting with `:`;
//! * local tags such as `!ruby/object:Foo` are ignored (the untagged value is
//!   kept).
//!
//! Hostile input is bounded: the text size ([`MAX_FILE_BYTES`]), the nesting
//! depth ([`MAX_DEPTH`]), the node count, and alias expansion (billion laughs)
//! are all limited, and every failure comes back as a [`YamlError`] with a
//! 1-based line and column where the parser knows them.
//!
//! Known differences from Psych's loader (none occurs in Psych-written files
//! except the first): plain `1e5` or `0o17` are read as numbers (Psych keeps
//! them as strings), plain `y`/`n` are read as booleans, and plain dates stay
//! strings.
use super::value::{format_float, Mapping, Value};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{DuplicateKeyPolicy, Error as SaphyrError, NonFiniteFloatPolicy};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Deepest nesting accepted in a datastore file (real files nest 6 levels).
pub const MAX_DEPTH: usize = 32;
/// Largest datastore file accepted.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Most nodes (scalars, sequences, mappings) accepted in one file. The whole
/// ManageIQ domain exported as one consolidated file has about 100,000.
const MAX_NODES: usize = 4_000_000;
/// Most parser events accepted in one file (about two per node).
const MAX_EVENTS: usize = 2 * MAX_NODES;
/// Most alias references (`*name`) accepted in one file.
const MAX_ALIASES: usize = 10_000;
/// Most events that alias expansion may replay in one file.
const MAX_REPLAYED_EVENTS: usize = 200_000;

/// A YAML file that could not be read, with where and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct YamlError {
    pub file: PathBuf,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    pub message: String,
}

impl YamlError {
    fn new(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        YamlError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Parses `text` (the contents of `file`) as one YAML document.
///
/// An empty text, or a document that is just null, gives [`Value::Null`].
/// When the stream holds several documents the first one is returned, as
/// Psych's `YAML.load` does.
pub fn parse_document(text: &str, file: &Path) -> Result<Value, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError::new(
            file,
            0,
            0,
            format!(
                "file is {} bytes, more than the {MAX_FILE_BYTES} allowed for a datastore file",
                text.len()
            ),
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs: Vec<Value> = serde_saphyr::from_str_multiple_with_options(text, parser_options())
        .map_err(|e| convert_error(&e, file))?;
    Ok(docs.into_iter().next().unwrap_or(Value::Null))
}

/// The parser settings: budgets against hostile input, duplicate keys as
/// errors, non-finite floats (`.inf`, `.nan`) as floats.
fn parser_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: MAX_EVENTS,
            max_aliases: MAX_ALIASES,
            max_total_scalar_bytes: MAX_FILE_BYTES,
            max_reader_input_bytes: Some(MAX_FILE_BYTES),
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        non_finite_float_policy: NonFiniteFloatPolicy::PassThrough,
        leading_zero_numbers_as_strings: true,
        null_as_string: true,
        with_snippet: false,
    }
}

/// Turns a parser error into a [`YamlError`] with a plain-words message.
fn convert_error(err: &SaphyrError, file: &Path) -> YamlError {
    let (line, column) = err
        .location()
        .map(|l| (to_usize(l.line()), to_usize(l.column())))
        .unwrap_or((0, 0));
    YamlError::new(file, line, column, describe(err))
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A readable message for a parser error, without location or snippet.
fn describe(err: &SaphyrError) -> String {
    match err {
        SaphyrError::WithSnippet { error, .. } => describe(error),
        SaphyrError::AliasError { error, .. } => match alias_bomb_message(error) {
            Some(msg) => msg,
            None => describe(error),
        },
        SaphyrError::Budget { breach, .. } => describe_breach(breach),
        SaphyrError::AliasReplayLimitExceeded { .. }
        | SaphyrError::AliasExpansionLimitExceeded { .. }
        | SaphyrError::AliasReplayStackDepthExceeded { .. }
        | SaphyrError::AliasReplayCounterOverflow { .. } => alias_bomb(),
        SaphyrError::RecursiveReferencesRequireWeakTypes { .. } => {
            "an alias refers to the node that contains it (recursive YAML is not supported)".into()
        }
        SaphyrError::UnknownAnchor { .. } => {
            "an alias (`*name`) refers to an unknown anchor".into()
        }
        SaphyrError::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("duplicate mapping key `{k}`"),
            None => "duplicate mapping key".into(),
        },
        SaphyrError::Eof { .. } => "truncated document: unexpected end of input".into(),
        SaphyrError::InvalidUtf8Input => "the file is not valid UTF-8 text".into(),
        // Our own messages (from the `Value` visitor) are already worded.
        SaphyrError::Message { msg, .. } => msg.clone(),
        SaphyrError::ExternalMessage { msg, .. } => describe_scanner_message(msg),
        SaphyrError::Unexpected { expected, .. } if expected.contains("string") => {
            "a mapping key must be a scalar, not a sequence or a mapping".into()
        }
        other => describe_scanner_message(&strip_location(&other.without_snippet().to_string())),
    }
}

/// The alias-bomb message when `err` (the cause behind an alias) is a
/// resource limit hit while expanding aliases.
fn alias_bomb_message(err: &SaphyrError) -> Option<String> {
    match err {
        SaphyrError::WithSnippet { error, .. } | SaphyrError::AliasError { error, .. } => {
            alias_bomb_message(error)
        }
        SaphyrError::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => None,
            _ => Some(alias_bomb()),
        },
        SaphyrError::AliasReplayLimitExceeded { .. }
        | SaphyrError::AliasExpansionLimitExceeded { .. }
        | SaphyrError::AliasReplayStackDepthExceeded { .. }
        | SaphyrError::AliasReplayCounterOverflow { .. } => Some(alias_bomb()),
        _ => None,
    }
}

fn alias_bomb() -> String {
    "too many aliases (possible alias bomb)".into()
}

fn describe_breach(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => format!("nesting deeper than {MAX_DEPTH} levels"),
        BudgetBreach::Aliases { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. }
        | BudgetBreach::MergeKeys { .. } => alias_bomb(),
        BudgetBreach::Nodes { .. } => format!("document too large: more than {MAX_NODES} nodes"),
        BudgetBreach::Events { .. } => {
            format!("document too large: more than {MAX_EVENTS} parser events")
        }
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => {
            format!("document too large: more than {MAX_FILE_BYTES} bytes of text")
        }
        BudgetBreach::Documents { .. } => "too many YAML documents in one file".into(),
        other => format!("resource limit exceeded ({other:?})"),
    }
}

/// Removes the ` at line N, column M` suffix serde-saphyr appends.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(pos) => msg[..pos].to_string(),
        None => msg.to_string(),
    }
}

/// Rewords the scanner's terse messages for the common kinds of damage.
fn describe_scanner_message(msg: &str) -> String {
    let lower = msg.to_ascii_lowercase();
    if lower.contains("unclosed quote") {
        "truncated document: unexpected end of input inside a quoted string".into()
    } else if lower.contains("unclosed bracket") {
        format!("truncated document: unexpected end of input inside a flow collection ({msg})")
    } else if lower.contains("tab") {
        format!("tab character where YAML allows only spaces ({msg})")
    } else if lower.contains("end of stream") || lower.contains("unexpected end") {
        format!("truncated document: {msg}")
    } else {
        format!("invalid YAML: {msg}")
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Builds a [`Value`] from whatever node the parser reports.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large (more than 64 bits)")))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large (more than 64 bits)")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large (more than 64 bits)")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Mapping::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed { seen: &mut seen })? {
            let value = map.next_value::<Value>()?;
            entries.0.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// Reads a mapping key as the text written in the file: plain `1:` gives
/// `"1"`, `y:` gives `"y"`, `~:` gives `"~"`, an empty key gives `""`.
/// Sequences and mappings as keys are refused, and so is a key whose text
/// was already seen in the same mapping (`1:` and `'1':`), reported at the
/// second key.
struct KeySeed<'a> {
    seen: &'a mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl KeySeed<'_> {
    fn accept<E: de::Error>(self, key: String) -> Result<String, E> {
        if self.seen.insert(key.clone()) {
            Ok(key)
        } else {
            Err(E::custom(format!("duplicate mapping key `{key}`")))
        }
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.accept(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.accept(format_float(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.accept(String::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        self.accept(String::new())
    }
}
