//! Psych's half of writing YAML: the scalar event Ruby's Psych hands libyaml
//! for a string (`Psych::Visitors::YAMLTree#visit_String`, and
//! `visit_Symbol` for `:name`), i.e. the requested style, the tag and the
//! implicit flags. Psych 4.0.3's rules, plus the quoting of `Y` and `N` that
//! Psych 5.2 added. Whether a plain text would read back as a String is
//! `scalar_scanner`'s question; what libyaml makes
//! of the request is `emit`'s.

use super::scalar_scanner::{is_symbol, line_starts, psych_reads_as_string};

/// A scalar style, as requested by Psych or as finally chosen by libyaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// Plain (`foo`); Psych's `ANY` also resolves to this.
    Plain,
    /// Single-quoted (`'foo'`).
    SingleQuoted,
    /// Double-quoted (`"foo"`), with escapes.
    DoubleQuoted,
    /// Literal block (`|`, `|-`, `|+`).
    Literal,
}

/// One scalar as Psych hands it to libyaml (`Psych::Emitter#scalar`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScalarEvent<'a> {
    /// The scalar's text.
    pub(super) text: &'a str,
    /// An explicit tag to write, as (handle, suffix). Only `!!str` for `<<`.
    pub(super) tag: Option<(&'static str, &'static str)>,
    /// The text may be written plain without a tag.
    pub(super) plain_implicit: bool,
    /// The text may be written quoted without a tag.
    pub(super) quoted_implicit: bool,
    /// The style Psych asks for.
    pub(super) style: Style,
}

impl<'a> ScalarEvent<'a> {
    /// Integers, floats, booleans and null: `plain = true, quoted = false`,
    /// style `ANY`.
    pub(super) fn implicit_plain(text: &'a str) -> Self {
        ScalarEvent {
            text,
            tag: None,
            plain_implicit: true,
            quoted_implicit: false,
            style: Style::Plain,
        }
    }

    fn string(text: &'a str, style: Style) -> Self {
        ScalarEvent {
            text,
            tag: None,
            plain_implicit: true,
            quoted_implicit: true,
            style,
        }
    }
}

/// The event Psych's `visit_String` (or `visit_Symbol` for `:name`) emits.
pub(super) fn string_event(s: &str) -> ScalarEvent<'_> {
    if is_symbol(s) {
        // visit_Symbol: plain, not implicitly quotable, style ANY.
        return ScalarEvent::implicit_plain(s);
    }
    if s == "<<" {
        // Psych tags it so it cannot be read back as a merge key.
        return ScalarEvent {
            text: s,
            tag: Some(("!!", "str")),
            plain_implicit: false,
            quoted_implicit: false,
            style: Style::SingleQuoted,
        };
    }
    let style = if has_inner_newline(s) {
        Style::Literal
    } else if matches!(s, "y" | "Y" | "n" | "N") || starts_a_line_with_non_word_char(s) {
        Style::DoubleQuoted
    } else if !psych_reads_as_string(s) || is_leading_zero_non_octal(s) {
        Style::SingleQuoted
    } else {
        Style::Plain
    };
    ScalarEvent::string(s, style)
}

/// Psych's `o =~ /\n(?!\Z)/`: a line break that is not the last character and
/// not the one before a final line break.
fn has_inner_newline(s: &str) -> bool {
    let len = s.len();
    let ends_with_break = s.ends_with('\n');
    s.match_indices('\n').any(|(k, _)| {
        let next = k + 1;
        !(next == len || (next + 1 == len && ends_with_break))
    })
}

/// Psych's `o =~ /^[^[:word:]][^"]*$/` (Ruby's `^`/`$` are line anchors):
/// some line starts with a non-word character and has no `"` up to its end.
fn starts_a_line_with_non_word_char(s: &str) -> bool {
    line_starts(s).any(|start| {
        let mut chars = s[start..].chars();
        match chars.next() {
            Some(first) if !is_word_char(first) => {
                for c in chars {
                    match c {
                        '"' => return false,
                        '\n' => return true,
                        _ => {}
                    }
                }
                true
            }
            _ => false,
        }
    })
}

/// Onigmo's `[[:word:]]` for the characters that matter here (letters,
/// digits, `_`).
fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Psych's extra `/\A0[0-7]*[89]/` check (`09` is not octal, so quote it).
fn is_leading_zero_non_octal(s: &str) -> bool {
    match s.strip_prefix('0') {
        Some(rest) => rest
            .trim_start_matches(|c: char| ('0'..='7').contains(&c))
            .starts_with(['8', '9']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The style Psych requests (before libyaml's own checks) for a string.
    #[test]
    fn requested_styles() {
        let table: &[(&str, Style)] = &[
            ("plain text", Style::Plain),
            ("100", Style::SingleQuoted),
            ("", Style::SingleQuoted),
            ("/System/event_handlers/refresh", Style::DoubleQuoted),
            ("~", Style::DoubleQuoted),
            ("y", Style::DoubleQuoted),
            ("N", Style::DoubleQuoted),
            ("true", Style::SingleQuoted),
            ("2015-03-25", Style::SingleQuoted),
            ("2015-02-30", Style::Plain),
            ("09", Style::SingleQuoted),
            ("0755", Style::SingleQuoted),
            ("line1\nline2", Style::Literal),
            // A final line break is not an inner one; libyaml quotes it later.
            ("a\n", Style::Plain),
            ("say \"hi\"", Style::Plain),
        ];
        let failures: Vec<String> = table
            .iter()
            .filter_map(|(input, want)| {
                let got = string_event(input);
                let ok = got.style == *want && got.tag.is_none() && got.quoted_implicit;
                (!ok).then(|| format!("{input:?}: got {got:?}, want style {want:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn symbols_and_the_merge_key() {
        assert_eq!(string_event(":foo"), ScalarEvent::implicit_plain(":foo"));
        let merge = string_event("<<");
        assert_eq!(merge.tag, Some(("!!", "str")));
        assert_eq!(merge.style, Style::SingleQuoted);
        assert!(!merge.plain_implicit && !merge.quoted_implicit);
        // A lone `:` is no symbol.
        assert_eq!(string_event(":").style, Style::DoubleQuoted);
    }
}
