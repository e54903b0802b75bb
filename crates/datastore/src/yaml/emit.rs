//! libyaml's half of writing YAML: the emitter that lays out a document the
//! way libyaml 0.2.5 does under Ruby's `Hash#to_yaml`.
//!
//! ManageIQ writes its export files with Psych: Psych walks the Ruby objects
//! and picks a *requested* style for every string
//! (`psych_style`), then libyaml decides the final style
//! and lays the text out (indentation, quoting fallbacks, folding at 80
//! columns). This module is that second half: `Emitter`, a small
//! re-implementation of libyaml's emitter state (column, `whitespace` and
//! `indention` flags, indent stack) with its scalar analysis, style selection
//! and the plain, single-, double-quoted and literal writers.
//!
//! Both halves are written from the documented behaviour of those libraries.
//! The tests check the output against every file of the ManageIQ domain (byte
//! for byte) and against texts written by libyaml 0.2.5 itself
//! (`tests/data/yaml/libyaml_golden.json`).

use super::psych_style::{string_event, ScalarEvent, Style};
use super::value::{format_float, Mapping, Value};

/// libyaml's default (and Psych's) indentation step.
const BEST_INDENT: usize = 2;
/// libyaml's default preferred line width.
const BEST_WIDTH: usize = 80;
/// Longest key (in bytes) libyaml writes as a simple `key: value`.
const MAX_SIMPLE_KEY_LENGTH: usize = 128;

/// Writes `doc` as Psych's `to_yaml` would: `---` header, 2-space indent,
/// unindented sequences, Psych's quoting rules and libyaml's folding at 80
/// columns, one trailing newline.
pub fn to_psych_yaml(doc: &Value) -> String {
    let mut emitter = Emitter::new();
    emitter.emit_document(doc);
    emitter.out
}

// ---------------------------------------------------------------------------
// libyaml: scalar analysis and style selection.
// ---------------------------------------------------------------------------

/// What `yaml_emitter_analyze_scalar` finds out about a scalar's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Analysis {
    multiline: bool,
    /// Kept for fidelity; unused because only empty collections are written
    /// in flow style.
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// libyaml's `IS_BLANKZ`: blank, line break or NUL (the end of the text
/// counts as NUL).
fn is_blankz(c: Option<char>) -> bool {
    c.is_none_or(|c| is_blank(c) || is_break(c) || c == '\0')
}

/// libyaml's `IS_PRINTABLE` (with the emitter in unicode mode).
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | ' '..='~' | '\u{a0}'..='\u{d7ff}')
        || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
}

fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            multiline: false,
            flow_plain_allowed: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = text.chars().collect();
    let last = chars.len() - 1;
    let mut flow_indicators = false;
    let mut block_indicators = false;
    let mut line_breaks = false;
    let mut special_characters = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut previous_space = false;
    let mut previous_break = false;
    let mut preceded_by_whitespace = true;

    if text.starts_with("---") || text.starts_with("...") {
        flow_indicators = true;
        block_indicators = true;
    }

    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = is_blankz(chars.get(i + 1).copied());
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                flow_indicators = true;
                block_indicators = true;
            }
            if c == '?' || c == ':' {
                flow_indicators = true;
                block_indicators |= followed_by_whitespace;
            }
            if c == '-' && followed_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        } else {
            if ",?[]{}".contains(c) {
                flow_indicators = true;
            }
            if c == ':' {
                flow_indicators = true;
                block_indicators |= followed_by_whitespace;
            }
            if c == '#' && preceded_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        }
        if !is_printable(c) {
            special_characters = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            leading_break |= i == 0;
            trailing_break |= i == last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(Some(c));
    }

    let mut a = Analysis {
        multiline: line_breaks,
        flow_plain_allowed: true,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if flow_indicators {
        a.flow_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// `yaml_emitter_check_simple_key` for a scalar key.
fn is_simple_key(event: &ScalarEvent<'_>, analysis: &Analysis) -> bool {
    let tag_len = event.tag.map_or(0, |(h, s)| h.len() + s.len());
    !analysis.multiline && tag_len + event.text.len() <= MAX_SIMPLE_KEY_LENGTH
}

/// `yaml_emitter_select_scalar_style` in block context: the final style, and
/// the tag to write (the requested one, or `!` when a non-plain style was
/// forced on a scalar that may only be implicit when plain).
fn select_style(
    event: &ScalarEvent<'_>,
    analysis: &Analysis,
    simple_key: bool,
) -> (Style, Option<(&'static str, &'static str)>) {
    let no_tag = event.tag.is_none();
    let mut style = event.style;
    if simple_key && analysis.multiline {
        style = Style::DoubleQuoted;
    }
    let plain_forbidden = !analysis.block_plain_allowed
        || (event.text.is_empty() && simple_key)
        || (no_tag && !event.plain_implicit);
    if style == Style::Plain && plain_forbidden {
        style = Style::SingleQuoted;
    }
    if style == Style::SingleQuoted && !analysis.single_quoted_allowed {
        style = Style::DoubleQuoted;
    }
    if style == Style::Literal && (!analysis.block_allowed || simple_key) {
        style = Style::DoubleQuoted;
    }
    let tag = if no_tag && !event.quoted_implicit && style != Style::Plain {
        Some(("!", ""))
    } else {
        event.tag
    };
    (style, tag)
}

// ---------------------------------------------------------------------------
// libyaml: the emitter proper.
// ---------------------------------------------------------------------------

/// Where a node sits, as libyaml's `mapping_context`/`simple_key_context`.
#[derive(Debug, Clone, Copy, Default)]
struct Context {
    mapping: bool,
    simple_key: bool,
}

/// libyaml's emitter state for a block-style document.
struct Emitter {
    out: String,
    /// Characters written on the current line.
    column: usize,
    /// The last thing written was whitespace (or the start of a line).
    whitespace: bool,
    /// Only indentation has been written on the current line so far.
    indention: bool,
    /// Current indentation; `None` before the root collection (libyaml's -1).
    indent: Option<usize>,
    /// libyaml's `open_ended`: 2 after a `|+` scalar, which makes the
    /// stream end with `...`.
    open_ended: u8,
}

impl Emitter {
    fn new() -> Self {
        Emitter {
            out: String::new(),
            column: 0,
            whitespace: true,
            indention: true,
            indent: None,
            open_ended: 0,
        }
    }

    fn emit_document(&mut self, doc: &Value) {
        self.write_indent();
        self.write_indicator("---", true, false, false);
        self.emit_node(doc, Context::default());
        self.write_indent();
        if self.open_ended == 0 {
            self.open_ended = 1;
        }
        if self.open_ended == 2 {
            self.write_indicator("...", true, false, false);
            self.write_indent();
        }
    }

    fn emit_node(&mut self, value: &Value, ctx: Context) {
        match value {
            Value::Map(m) if m.is_empty() => self.emit_empty_flow("{", "}"),
            Value::Map(m) => self.emit_block_mapping(m),
            Value::Seq(s) if s.is_empty() => self.emit_empty_flow("[", "]"),
            Value::Seq(s) => self.emit_block_sequence(s, ctx),
            Value::Null => self.emit_scalar(&ScalarEvent::implicit_plain(""), ctx),
            Value::Bool(b) => self.emit_scalar(
                &ScalarEvent::implicit_plain(if *b { "true" } else { "false" }),
                ctx,
            ),
            Value::Int(i) => {
                let text = i.to_string();
                self.emit_scalar(&ScalarEvent::implicit_plain(&text), ctx);
            }
            Value::Float(f) => {
                let text = format_float(*f);
                self.emit_scalar(&ScalarEvent::implicit_plain(&text), ctx);
            }
            Value::Str(s) => self.emit_scalar(&string_event(s), ctx),
        }
    }

    /// `[]` or `{}`: libyaml writes empty collections in flow style.
    fn emit_empty_flow(&mut self, open: &str, close: &str) {
        self.write_indicator(open, true, true, false);
        self.write_indicator(close, false, false, false);
    }

    fn emit_block_sequence(&mut self, items: &[Value], ctx: Context) {
        let saved = self.increase_indent(false, ctx.mapping && !self.indention);
        for item in items {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.emit_node(item, Context::default());
        }
        self.indent = saved;
    }

    fn emit_block_mapping(&mut self, map: &Mapping) {
        let saved = self.increase_indent(false, false);
        for (key, value) in map.iter() {
            self.write_indent();
            let event = string_event(key);
            let analysis = analyze(event.text);
            if is_simple_key(&event, &analysis) {
                let ctx = Context {
                    mapping: true,
                    simple_key: true,
                };
                self.emit_analyzed_scalar(&event, &analysis, ctx);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                let ctx = Context {
                    mapping: true,
                    simple_key: false,
                };
                self.emit_analyzed_scalar(&event, &analysis, ctx);
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            let ctx = Context {
                mapping: true,
                simple_key: false,
            };
            self.emit_node(value, ctx);
        }
        self.indent = saved;
    }

    fn emit_scalar(&mut self, event: &ScalarEvent<'_>, ctx: Context) {
        let analysis = analyze(event.text);
        self.emit_analyzed_scalar(event, &analysis, ctx);
    }

    fn emit_analyzed_scalar(&mut self, event: &ScalarEvent<'_>, analysis: &Analysis, ctx: Context) {
        let (style, tag) = select_style(event, analysis, ctx.simple_key);
        if let Some((handle, suffix)) = tag {
            self.write_tag(handle, suffix);
        }
        let saved = self.increase_indent(true, false);
        let allow_breaks = !ctx.simple_key;
        match style {
            Style::Plain => self.write_plain(event.text, allow_breaks),
            Style::SingleQuoted => self.write_single_quoted(event.text, allow_breaks),
            Style::DoubleQuoted => self.write_double_quoted(event.text, allow_breaks),
            Style::Literal => self.write_literal(event.text),
        }
        self.indent = saved;
    }

    /// `yaml_emitter_increase_indent`; returns the indent to restore.
    fn increase_indent(&mut self, flow: bool, indentless: bool) -> Option<usize> {
        let saved = self.indent;
        self.indent = match self.indent {
            None => Some(if flow { BEST_INDENT } else { 0 }),
            Some(i) if !indentless => Some(i + BEST_INDENT),
            Some(i) => Some(i),
        };
        saved
    }

    // -- low-level writers ---------------------------------------------------

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    /// `WRITE_BREAK`: a line feed becomes the output line break, other break
    /// characters are copied as they are.
    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn write_tag(&mut self, handle: &str, suffix: &str) {
        if !self.whitespace {
            self.put(' ');
        }
        for c in handle.chars().chain(suffix.chars()) {
            self.put(c);
        }
        self.whitespace = false;
        self.indention = false;
    }

    /// Is the character after position `i` a space?
    fn next_is_space(chars: &[char], i: usize) -> bool {
        chars.get(i + 1) == Some(&' ')
    }

    fn write_plain(&mut self, text: &str, allow_breaks: bool) {
        if !self.whitespace && !text.is_empty() {
            self.put(' ');
        }
        let chars: Vec<char> = text.chars().collect();
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && !Self::next_is_space(&chars, i)
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, text: &str, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let last = chars.len().saturating_sub(1);
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i != 0
                    && i != last
                    && !Self::next_is_space(&chars, i)
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        if breaks {
            self.write_indent();
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, text: &str, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let last = chars.len().saturating_sub(1);
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
                self.write_escape(c);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i != 0 && i != last {
                    self.write_indent();
                    if Self::next_is_space(&chars, i) {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    /// One escape sequence of a double-quoted scalar.
    fn write_escape(&mut self, c: char) {
        self.put('\\');
        let short = match c {
            '\0' => Some('0'),
            '\u{7}' => Some('a'),
            '\u{8}' => Some('b'),
            '\t' => Some('t'),
            '\n' => Some('n'),
            '\u{b}' => Some('v'),
            '\u{c}' => Some('f'),
            '\r' => Some('r'),
            '\u{1b}' => Some('e'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            '\u{85}' => Some('N'),
            '\u{a0}' => Some('_'),
            '\u{2028}' => Some('L'),
            '\u{2029}' => Some('P'),
            _ => None,
        };
        if let Some(s) = short {
            self.put(s);
            return;
        }
        let value = u32::from(c);
        let (prefix, width) = if value <= 0xff {
            ('x', 2)
        } else if value <= 0xffff {
            ('u', 4)
        } else {
            ('U', 8)
        };
        self.put(prefix);
        for shift in (0..width).rev() {
            let digit = (value >> (shift * 4)) & 0xf;
            self.put(char::from_digit(digit, 16).map_or('0', |d| d.to_ascii_uppercase()));
        }
    }

    fn write_literal(&mut self, text: &str) {
        self.write_indicator("|", true, false, false);
        self.write_block_scalar_hints(text);
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in text.chars() {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }

    /// The indentation indicator (when the text starts with a space or a
    /// break) and the chomping indicator of a block scalar.
    fn write_block_scalar_hints(&mut self, text: &str) {
        if text.starts_with(|c: char| c == ' ' || is_break(c)) {
            let hint = BEST_INDENT.to_string();
            self.write_indicator(&hint, false, false, false);
        }
        self.open_ended = 0;
        let mut rev = text.chars().rev();
        let chomp = match (rev.next(), rev.next()) {
            (None, _) => Some("-"),
            (Some(last), _) if !is_break(last) => Some("-"),
            (Some(_), None) => Some("+"),
            (Some(_), Some(before)) if is_break(before) => Some("+"),
            _ => None,
        };
        if chomp == Some("+") {
            self.open_ended = 2;
        }
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_document;
    use std::path::{Path, PathBuf};

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(Mapping(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ))
    }

    fn s(text: &str) -> Value {
        Value::Str(text.to_string())
    }

    /// `{v: text}` as Psych writes it, without the `---\nv:` prefix.
    fn value_text(text: &str) -> String {
        let out = to_psych_yaml(&map(&[("v", s(text))]));
        out.strip_prefix("---\nv:").unwrap_or(&out).to_string()
    }

    #[test]
    fn string_styles_follow_psych_and_libyaml() {
        let table: &[(&str, &str)] = &[
            ("plain text", " plain text\n"),
            ("100", " '100'\n"),
            ("", " ''\n"),
            (
                "/System/event_handlers/refresh",
                " \"/System/event_handlers/refresh\"\n",
            ),
            (".missing", " \".missing\"\n"),
            ("*", " \"*\"\n"),
            (
                "${/#miq_provision.source.name}",
                " \"${/#miq_provision.source.name}\"\n",
            ),
            ("true", " 'true'\n"),
            ("False", " 'False'\n"),
            ("yes", " 'yes'\n"),
            ("On", " 'On'\n"),
            ("null", " 'null'\n"),
            ("~", " \"~\"\n"),
            ("2015-03-25", " '2015-03-25'\n"),
            ("2015-02-30", " 2015-02-30\n"),
            (
                "2015-03-25 21:19:46.418626000 Z",
                " '2015-03-25 21:19:46.418626000 Z'\n",
            ),
            ("1.0", " '1.0'\n"),
            ("0x1F", " '0x1F'\n"),
            ("1_000", " '1_000'\n"),
            ("09", " '09'\n"),
            ("0755", " '0755'\n"),
            ("12:30", " '12:30'\n"),
            ("1e5", " 1e5\n"),
            ("Policy Event ", " 'Policy Event '\n"),
            (" leading", " \" leading\"\n"),
            ("a: b", " 'a: b'\n"),
            ("a #b", " 'a #b'\n"),
            ("a#b", " a#b\n"),
            (
                "Your Virtual Machine : ${/#vm} has been retired.",
                " 'Your Virtual Machine : ${/#vm} has been retired.'\n",
            ),
            (":foo", " :foo\n"),
            (":", " \":\"\n"),
            ("<<", " !!str '<<'\n"),
            ("y", " \"y\"\n"),
            ("Y", " \"Y\"\n"),
            ("n", " \"n\"\n"),
            ("N", " \"N\"\n"),
            (
                "v1:{N+eSIDwjCJS4xkOjAqKnog==}",
                " v1:{N+eSIDwjCJS4xkOjAqKnog==}\n",
            ),
            (
                "update_status(status => 'Starting')",
                " update_status(status => 'Starting')\n",
            ),
            ("say \"hi\"", " say \"hi\"\n"),
            ("/path \"q\"", " /path \"q\"\n"),
            ("'quoted'", " \"'quoted'\"\n"),
            ("it's", " it's\n"),
            ("- item", " \"- item\"\n"),
            ("a\tb", " \"a\\tb\"\n"),
            ("null coalescing", " null coalescing\n"),
            ("line1\nline2", " |-\n  line1\n  line2\n"),
            ("line1\nline2\n", " |\n  line1\n  line2\n"),
            (" indented\nx", " |2-\n   indented\n  x\n"),
            ("trailing \nx", " \"trailing \\nx\"\n"),
            ("a\n", " 'a\n\n  '\n"),
        ];
        let failures: Vec<String> = table
            .iter()
            .filter_map(|(input, want)| {
                let got = value_text(input);
                (got != *want).then(|| format!("{input:?}: got {got:?}, want {want:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn keep_chomping_ends_the_stream_with_an_end_marker() {
        let doc = map(&[("v", s("a\nb\n\n")), ("w", s("x"))]);
        assert_eq!(to_psych_yaml(&doc), "---\nv: |+\n  a\n  b\n\nw: x\n...\n");
    }

    #[test]
    fn non_string_scalars() {
        let doc = map(&[
            ("version", Value::Float(1.0)),
            ("priority", Value::Int(0)),
            ("tenant_id", Value::Int(99_000_000_000_001)),
            ("enabled", Value::Bool(true)),
            ("substitute", Value::Bool(false)),
            ("display_name", Value::Null),
            ("ratio", Value::Float(0.5)),
            ("big", Value::Float(1e16)),
            ("small", Value::Float(1.5e-5)),
            ("neg", Value::Int(-3)),
            ("inf", Value::Float(f64::INFINITY)),
        ]);
        let want = "---\nversion: 1.0\npriority: 0\ntenant_id: 99000000000001\nenabled: true\n\
                    substitute: false\ndisplay_name:\nratio: 0.5\nbig: 1.0e+16\nsmall: 1.5e-05\n\
                    neg: -3\ninf: .inf\n";
        assert_eq!(to_psych_yaml(&doc), want);
    }

    #[test]
    fn document_layout() {
        let field = map(&[
            ("aetype", s("state")),
            ("name", s("execute")),
            ("priority", Value::Int(1)),
        ]);
        let doc = map(&[
            ("object_type", s("class")),
            (
                "object",
                map(&[
                    (
                        "attributes",
                        map(&[("name", s("Lifecycle")), ("type", Value::Null)]),
                    ),
                    ("schema", Value::Seq(vec![map(&[("field", field)])])),
                    ("inputs", Value::Seq(vec![])),
                    ("options", map(&[])),
                    (
                        "list",
                        Value::Seq(vec![s("a"), Value::Seq(vec![s("b"), Value::Null])]),
                    ),
                ]),
            ),
        ]);
        let want = "---\nobject_type: class\nobject:\n  attributes:\n    name: Lifecycle\n    type:\n  \
                    schema:\n  - field:\n      aetype: state\n      name: execute\n      priority: 1\n  \
                    inputs: []\n  options: {}\n  list:\n  - a\n  - - b\n    -\n";
        assert_eq!(to_psych_yaml(&doc), want);
    }

    #[test]
    fn top_level_scalars_share_the_header_line() {
        assert_eq!(to_psych_yaml(&s("foo")), "--- foo\n");
        assert_eq!(to_psych_yaml(&Value::Null), "---\n");
        assert_eq!(to_psych_yaml(&Value::Int(1)), "--- 1\n");
        assert_eq!(to_psych_yaml(&map(&[])), "--- {}\n");
        assert_eq!(to_psych_yaml(&Value::Seq(vec![])), "--- []\n");
        assert_eq!(to_psych_yaml(&s("a\nb")), "--- |-\n  a\n  b\n");
    }

    #[test]
    fn keys_use_the_same_rules_and_symbols_stay_plain() {
        let doc = map(&[
            (":repository_name", s("repo")),
            ("100", s("x")),
            ("/path", s("x")),
            ("<<", s("x")),
            ("", s("x")),
            ("k\ney", s("v")),
        ]);
        let want = "---\n:repository_name: repo\n'100': x\n\"/path\": x\n!!str '<<': x\n'': x\n? |-\n  k\n  ey\n: v\n";
        assert_eq!(to_psych_yaml(&doc), want);
    }

    /// Long values nested the way instance and class files nest them.
    fn nested_on_entry(text: &str) -> String {
        let exec = map(&[("on_entry", s(text))]);
        let doc = map(&[("fields", Value::Seq(vec![map(&[("execute", exec)])]))]);
        let out = to_psych_yaml(&doc);
        out.strip_prefix("---\nfields:\n- execute:\n    on_entry: ")
            .unwrap_or(&out)
            .to_string()
    }

    #[test]
    fn plain_scalars_fold_after_column_80() {
        let text = "update_service_retirement_status(status => 'Starting Retirement',status_state => 'on_entry')";
        assert_eq!(
            nested_on_entry(text),
            "update_service_retirement_status(status => 'Starting Retirement',status_state\n      => 'on_entry')\n"
        );
        let text = "The quick brown fox jumps over the lazy dog and keeps running through the field until night falls on the town";
        assert_eq!(
            nested_on_entry(text),
            "The quick brown fox jumps over the lazy dog and keeps running through\n      the field until night falls on the town\n"
        );
        // No space, no break: the line simply runs long.
        let text = format!("{} end", "x".repeat(120));
        assert_eq!(
            nested_on_entry(&text),
            format!("{}\n      end\n", "x".repeat(120))
        );
    }

    #[test]
    fn quoted_scalars_fold_too() {
        let tail = "The quick brown fox jumps over the lazy dog and keeps running through the field until night falls on the town";
        assert_eq!(
            nested_on_entry(&format!("/{tail}")),
            "\"/The quick brown fox jumps over the lazy dog and keeps running through\n      the field until night falls on the town\"\n"
        );
        assert_eq!(
            nested_on_entry(&format!("It's: {tail}")),
            "'It''s: The quick brown fox jumps over the lazy dog and keeps running\n      through the field until night falls on the town'\n"
        );
        // A double-quoted break before a second space escapes that space.
        let text = format!("/{}  b c", "a".repeat(80));
        assert_eq!(
            value_text(&text),
            format!(" \"/{}\n  \\ b c\"\n", "a".repeat(80))
        );
    }

    #[test]
    fn simple_keys_are_never_folded() {
        let key = "The quick brown fox jumps over the lazy dog and keeps running through the field until night falls on the town key";
        let doc = map(&[(key, s("v"))]);
        assert_eq!(to_psych_yaml(&doc), format!("---\n{key}: v\n"));
    }

    #[test]
    fn written_values_read_back_unchanged() {
        let texts = [
            "plain",
            "100",
            "",
            "/a/b",
            "yes",
            "~",
            "null",
            ":sym",
            "<<",
            "y",
            "a: b",
            "a\nb",
            "a\n",
            "a\nb\n\n",
            " x",
            "x ",
            "'",
            "\"",
            "\\",
            "tab\there",
            "é中😀",
            "\u{7}\u{1b}",
            "0x1F",
            "2015-03-25",
            "12:30",
            "1.5",
            ".inf",
            "- x",
            "? x",
            "# x",
            "---",
            "...",
        ];
        let mut values: Vec<Value> = texts.iter().map(|t| s(t)).collect();
        values.extend([
            Value::Null,
            Value::Bool(false),
            Value::Int(-7),
            Value::Float(2.25),
        ]);
        for v in values {
            let doc = map(&[("k", v.clone()), ("nested", Value::Seq(vec![v.clone()]))]);
            let text = to_psych_yaml(&doc);
            let back = parse_document(&text, Path::new("t.yaml"));
            assert_eq!(
                back.as_ref().ok(),
                Some(&doc),
                "{v:?} written as {text:?}, read back as {back:?}"
            );
        }
    }

    /// Expected texts written by libyaml 0.2.5 itself from the same scalar
    /// events (see `tests/data/yaml/README.md`).
    #[test]
    fn matches_libyaml_golden_outputs() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("tests/data/yaml/libyaml_golden.json");
        let text = std::fs::read_to_string(&path).expect("golden file");
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("golden JSON");
        let mut failures = Vec::new();
        for case in &cases {
            let doc = json_to_value(&case["doc"]);
            let want = case["yaml"].as_str().unwrap_or_default();
            let got = to_psych_yaml(&doc);
            if got != want {
                failures.push(format!("{doc:?}\n  got:  {got:?}\n  want: {want:?}"));
            }
        }
        assert!(
            cases.len() > 100,
            "golden file has only {} cases",
            cases.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {} differ:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    fn json_to_value(j: &serde_json::Value) -> Value {
        match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or_default()),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::Seq(a.iter().map(json_to_value).collect()),
            serde_json::Value::Object(o) => Value::Map(Mapping(
                o.iter()
                    .map(|(k, v)| (k.clone(), json_to_value(v)))
                    .collect(),
            )),
        }
    }

    /// The scalar events Psych would hand to libyaml for `doc`, as JSON, for
    /// `tests/data/yaml/make_golden.py`.
    fn events_json(v: &Value, out: &mut Vec<serde_json::Value>) {
        use serde_json::json;
        let scalar = |e: &ScalarEvent<'_>| {
            let style = match e.style {
                Style::Plain => "",
                Style::SingleQuoted => "'",
                Style::DoubleQuoted => "\"",
                Style::Literal => "|",
            };
            json!({"t": "scalar", "text": e.text, "style": style, "plain": e.plain_implicit,
                   "quoted": e.quoted_implicit, "tag": e.tag.map(|_| "tag:yaml.org,2002:str")})
        };
        match v {
            Value::Map(m) => {
                out.push(json!({"t": "map_start"}));
                for (k, v) in m.iter() {
                    out.push(scalar(&string_event(k)));
                    events_json(v, out);
                }
                out.push(json!({"t": "map_end"}));
            }
            Value::Seq(items) => {
                out.push(json!({"t": "seq_start"}));
                for v in items {
                    events_json(v, out);
                }
                out.push(json!({"t": "seq_end"}));
            }
            Value::Str(text) => out.push(scalar(&string_event(text))),
            other => {
                let text = match other {
                    Value::Float(f) => format_float(*f),
                    _ => other.scalar_text().unwrap_or_default(),
                };
                out.push(scalar(&ScalarEvent::implicit_plain(&text)));
            }
        }
    }

    /// Regenerates the events for the golden file's documents:
    /// `AUTOMATE_YAML_EVENTS=/tmp/events.json cargo test --lib dump_psych_events -- --ignored`.
    #[test]
    #[ignore]
    fn dump_psych_events() {
        let Ok(target) = std::env::var("AUTOMATE_YAML_EVENTS") else {
            eprintln!("set AUTOMATE_YAML_EVENTS to the output path");
            return;
        };
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("tests/data/yaml/golden_docs.json");
        let text = std::fs::read_to_string(&path).expect("golden docs");
        let docs: Vec<serde_json::Value> = serde_json::from_str(&text).expect("golden docs JSON");
        let all: Vec<serde_json::Value> = docs
            .iter()
            .map(|d| {
                let mut events = Vec::new();
                events_json(&json_to_value(d), &mut events);
                serde_json::json!({"doc": d, "events": events})
            })
            .collect();
        std::fs::write(target, serde_json::to_string(&all).unwrap_or_default())
            .expect("write events");
    }

    fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect_yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }

    /// First differing line (1-based) of two texts, with both versions.
    fn first_difference(got: &str, want: &str) -> String {
        let mut got_lines = got.split_inclusive('\n');
        let mut want_lines = want.split_inclusive('\n');
        let mut n = 1;
        loop {
            match (got_lines.next(), want_lines.next()) {
                (Some(g), Some(w)) if g == w => n += 1,
                (g, w) => return format!("line {n}: wrote {g:?}, file has {w:?}"),
            }
        }
    }

    /// The acceptance test: every file of the ManageIQ domain is parsed and
    /// written back byte for byte.
    #[test]
    fn manageiq_domain_round_trips_byte_for_byte() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("../shared/fixtures/manageiq-content/ManageIQ");
        if !root.is_dir() {
            let required = std::env::var("AUTOMATE_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
            assert!(!required, "fixture directory {} is missing", root.display());
            eprintln!("skipping: fixture directory {} is absent", root.display());
            return;
        }
        let mut files = Vec::new();
        collect_yaml_files(&root, &mut files);
        files.sort();
        assert!(!files.is_empty(), "no .yaml files under {}", root.display());
        let mut failures = Vec::new();
        for file in &files {
            let rel = file
                .strip_prefix(&root)
                .unwrap_or(file)
                .display()
                .to_string();
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(e) => {
                    failures.push(format!("{rel}: cannot read: {e}"));
                    continue;
                }
            };
            match parse_document(&text, file) {
                Err(e) => failures.push(format!("{rel}: {e}")),
                Ok(doc) => {
                    let written = to_psych_yaml(&doc);
                    if written != text {
                        failures.push(format!("{rel}: {}", first_difference(&written, &text)));
                    }
                }
            }
        }
        eprintln!(
            "round trip: {}/{} files identical",
            files.len() - failures.len(),
            files.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {} files do not round-trip:\n{}",
            failures.len(),
            files.len(),
            failures.join("\n")
        );
    }
}
