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
//! Known differences from Psych's loader, none of which occurs in the
//! ManageIQ domain: plain `1e5`, `1.5e3` or `0o17` are read as numbers
//! (Psych keeps them as strings, and writes such strings plain, so they do
//! not survive a round trip); plain `y`/`n` are read as booleans; plain
//! dates and times stay strings; U+0085, U+2028 and U+2029 are ordinary
//! characters here but line breaks to libyaml.
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
/// ManageIQ domain exported as one consolidated file has about 90,000.
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
    /// The file that was being read.
    pub file: PathBuf,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// What is wrong: the parser's message, or which limit was passed.
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
///
/// A second document (`---` after the first) is an error located at its
/// `---` line. Psych's `YAML.load` would return the first document and drop
/// the rest without a word; ManageIQ never writes more than one document
/// per file, so a second one is a hand edit or a concatenation gone wrong,
/// and silently losing it is worse than refusing the file. An empty
/// trailing document (a lone `---` at the end) holds nothing and is accepted.
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
    if docs.iter().skip(1).any(|d| *d != Value::Null) {
        let (line, column) = match second_document_line(text) {
            0 => (0, 0),
            n => (n, 1),
        };
        return Err(YamlError::new(
            file,
            line,
            column,
            format!(
                "the file holds {} YAML documents; a datastore file holds exactly one (ManageIQ \
                 would read the first and silently drop the rest): merge them or split them \
                 into separate files",
                docs.len()
            ),
        ));
    }
    Ok(docs.into_iter().next().unwrap_or(Value::Null))
}

/// The 1-based line of the `---` that starts the second document of
/// `text` (0 when it cannot be told). Document markers are at column 0;
/// inside a block scalar such a line would end the scalar, so every
/// column-0 `---` is a marker.
fn second_document_line(text: &str) -> usize {
    let is_marker = |l: &str| {
        l.strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    };
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        if is_marker(line) {
            if seen_content {
                return i + 1;
            }
            // The first document's own start marker.
            seen_content = true;
            continue;
        }
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || (!seen_content && t.starts_with('%')) {
            continue;
        }
        if line.starts_with("...") {
            continue;
        }
        seen_content = true;
    }
    0
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Value, YamlError> {
        parse_document(text, Path::new("test.yaml"))
    }

    fn parse_map(text: &str) -> Mapping {
        match parse(text) {
            Ok(Value::Map(m)) => m,
            other => panic!("expected a mapping from {text:?}, got {other:?}"),
        }
    }

    fn s(text: &str) -> Value {
        Value::Str(text.to_string())
    }

    #[test]
    fn scalar_types_follow_quoting() {
        let m = parse_map(
            "a: '100'\nb: \"1.0\"\nc: 100\nd: 1.0\ne:\nf: ~\ng: null\nh: true\ni: false\nj: ''\n\
             k: yes\nl: 'yes'\nm: Off\nn: :foo\no: -3\np: 99000000000001\nq: .inf\nr: text with spaces\n",
        );
        let want = [
            ("a", s("100")),
            ("b", s("1.0")),
            ("c", Value::Int(100)),
            ("d", Value::Float(1.0)),
            ("e", Value::Null),
            ("f", Value::Null),
            ("g", Value::Null),
            ("h", Value::Bool(true)),
            ("i", Value::Bool(false)),
            ("j", s("")),
            ("k", Value::Bool(true)),
            ("l", s("yes")),
            ("m", Value::Bool(false)),
            ("n", s(":foo")),
            ("o", Value::Int(-3)),
            ("p", Value::Int(99_000_000_000_001)),
            ("q", Value::Float(f64::INFINITY)),
            ("r", s("text with spaces")),
        ];
        for (key, value) in want {
            assert_eq!(m.get(key), Some(&value), "key {key}");
        }
    }

    #[test]
    fn keys_keep_order_and_their_text() {
        let m = parse_map("zeta: 1\nalpha: 2\n:repository_name: r\n1: one\ny: n\n~: t\n'': e\n");
        let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["zeta", "alpha", ":repository_name", "1", "y", "~", ""]
        );
        assert_eq!(m.get(":repository_name"), Some(&s("r")));
    }

    #[test]
    fn nested_sequences_and_mappings() {
        let text = "---\nobject:\n  fields:\n  - rel4:\n      value: \"/System/event_handlers/refresh\"\n  - x: {}\n  inputs: []\n";
        let m = parse_map(text);
        let object = m.get("object").and_then(Value::as_map).expect("object");
        let fields = object
            .get("fields")
            .and_then(Value::as_seq)
            .expect("fields");
        let rel4 = fields[0]
            .as_map()
            .and_then(|f| f.get("rel4"))
            .and_then(Value::as_map);
        assert_eq!(
            rel4.and_then(|r| r.get_str("value")),
            Some("/System/event_handlers/refresh")
        );
        assert_eq!(
            fields[1].as_map().and_then(|f| f.get("x")),
            Some(&Value::Map(Mapping::new()))
        );
        assert_eq!(object.get("inputs"), Some(&Value::Seq(vec![])));
    }

    #[test]
    fn literal_blocks_and_folded_lines() {
        let m = parse_map(
            "data: |\n  ---\n  :db: Vm\nlong: first part\n  second part\nkeep: |+\n  a\n\n...\n",
        );
        assert_eq!(m.get_str("data"), Some("---\n:db: Vm\n"));
        assert_eq!(m.get_str("long"), Some("first part second part"));
        assert_eq!(m.get_str("keep"), Some("a\n\n"));
    }

    #[test]
    fn tolerated_variants() {
        // Older libyaml wrote `key: ` with a trailing space.
        let m = parse_map("display_name: \nname: x\n");
        assert_eq!(m.get("display_name"), Some(&Value::Null));
        // A byte-order mark is skipped.
        assert_eq!(parse_map("\u{feff}a: 1\n").get("a"), Some(&Value::Int(1)));
        // Local tags are ignored.
        let m = parse_map(
            "t: !ruby/object:ActiveSupport::TimeWithZone\n  utc: 2015-03-25\nu: !ruby/sym x\n",
        );
        assert_eq!(
            m.get("t")
                .and_then(Value::as_map)
                .and_then(|t| t.get_str("utc")),
            Some("2015-03-25")
        );
        assert_eq!(m.get_str("u"), Some("x"));
        // Anchors and aliases (as in manifests) are expanded.
        let m = parse_map("a: &1\n  zone: UTC\nb: *1\n");
        assert_eq!(m.get("a"), m.get("b"));
        // Merge keys are expanded, as Psych does.
        let m = parse_map("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n");
        let d = m.get("d").and_then(Value::as_map).expect("d");
        assert_eq!(
            d.iter().collect::<Vec<_>>(),
            [("x", &Value::Int(3)), ("y", &Value::Int(2))]
        );
        // `!!str '<<'` is an ordinary key.
        assert_eq!(parse_map("!!str '<<': x\n").get_str("<<"), Some("x"));
    }

    #[test]
    fn empty_and_null_documents_are_null() {
        for text in ["", "---\n", "--- \n", "~\n", "# only a comment\n"] {
            assert_eq!(parse(text).ok(), Some(Value::Null), "{text:?}");
        }
        assert_eq!(parse("--- foo\n").ok(), Some(s("foo")));
        // An empty trailing document holds nothing and is accepted.
        assert_eq!(parse("--- foo\n---\n").ok(), Some(s("foo")));
    }

    #[test]
    fn a_second_document_is_an_error_at_its_marker() {
        for (text, line) in [
            ("a: 1\n---\nb: 2\n", 2),
            ("---\na: 1\n--- \nb: 2\n", 3),
            ("# c\n---\nx: |\n  t\n\n---\n- 1\n", 6),
        ] {
            let err = match parse(text) {
                Err(e) => e,
                Ok(v) => panic!("{text:?} parsed as {v:?}"),
            };
            assert_eq!(err.line, line, "{text:?}: {err:?}");
            assert!(err.message.contains("2 YAML documents"), "{err:?}");
        }
    }

    /// Asserts `text` fails with a located error whose message contains `needle`.
    fn assert_error(text: &str, needle: &str) -> YamlError {
        let err = match parse(text) {
            Err(e) => e,
            Ok(v) => panic!("{text:?} parsed as {v:?}"),
        };
        assert!(err.line > 0 && err.column > 0, "no location in {err:?}");
        assert!(
            err.message.contains(needle),
            "{needle:?} not in {:?}",
            err.message
        );
        assert_eq!(err.file, Path::new("test.yaml"));
        err
    }

    #[test]
    fn truncated_documents() {
        let err = assert_error("name: 'Starting Retirement\n", "truncated document");
        assert!(err.message.contains("quoted string"), "{}", err.message);
        assert_eq!((err.line, err.column), (1, 7));
        assert_error("value: \"/System/event", "quoted string");
        assert_error("fields: [a, b\n", "truncated document");
        assert_error("options: {a: 1\n", "truncated document");
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let refs = vec![format!("*{}", pair[0]); 9].join(", ");
            text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
        }
        assert_error(&text, "too many aliases (possible alias bomb)");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut block = String::new();
        for level in 0..100 {
            block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        block.push_str(&format!("{}leaf\n", "  ".repeat(100)));
        let err = assert_error(&block, "nesting deeper than 32 levels");
        assert_eq!(err.line, 33);
        let flow = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert_error(&flow, "nesting deeper than 32 levels");
        let seqs = format!("{}x\n", "- ".repeat(100));
        assert_error(&seqs, "nesting deeper than 32 levels");
    }

    #[test]
    fn nesting_within_the_limit_is_accepted() {
        let mut text = String::new();
        for level in 0..MAX_DEPTH {
            text.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        text.push_str(&format!("{}leaf\n", "  ".repeat(MAX_DEPTH)));
        assert!(parse(&text).is_ok(), "{:?}", parse(&text));
    }

    #[test]
    fn tabs_and_garbage() {
        let err = assert_error("object:\n\tname: x\n", "tab");
        assert_eq!(err.line, 2);
        assert_error("name: a: b\n", "invalid YAML");
        assert_error("@foo\n", "invalid YAML");
        assert_error("]\n", "invalid YAML");
        assert_error("a:\n- b\n c: d\n", "invalid YAML");
        assert_error("a: \"\\q\"\n", "invalid YAML");
    }

    #[test]
    fn structural_errors() {
        let err = assert_error("name: a\nname: b\n", "duplicate mapping key `name`");
        assert_eq!(err.line, 2);
        assert_error("1: a\n'1': b\n", "duplicate mapping key `1`");
        assert_error("? [a]\n: b\n", "mapping key must be a scalar");
        assert_error("a: *missing\n", "unknown anchor");
        assert_error("a: &x\n  b: *x\n", "recursive");
        assert_error("a: 18446744073709551615\n", "too large");
    }

    #[test]
    fn oversized_text_is_refused_before_parsing() {
        let text = "a".repeat(MAX_FILE_BYTES + 1);
        let err = parse(&text).expect_err("too large");
        assert!(err.message.contains("bytes"), "{}", err.message);
        assert_eq!((err.line, err.column), (0, 0));
    }

    #[test]
    fn damaged_input_never_panics() {
        let sample = "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: \".missing\"\n    \
                      description: 'it''s'\n  fields:\n  - rel4:\n      value: \"/System/a\"\n      max_retries: '100'\n  \
                      - x: [a, {b: c}]\n    data: |-\n      line\n      other\n";
        // Every truncation.
        for (end, _) in sample.char_indices() {
            let _ = parse(&sample[..end]);
        }
        // Every single-byte substitution with a few troublesome characters.
        let mut bytes = sample.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let original = bytes[i];
            for replacement in [
                b'\t', b'"', b'\'', b'[', b'{', b'&', b'*', b'!', b'|', b':', b'-', b' ', b'\n',
                b'%',
            ] {
                bytes[i] = replacement;
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    let _ = parse(text);
                }
            }
            bytes[i] = original;
        }
    }
}
