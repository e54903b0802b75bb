//! Server-side syntax highlighting of method bodies (Rhai and Ruby): a
//! small tokenizer splits the source into comments, strings, numbers,
//! keywords, constants, symbols and variables, and renders each line as a
//! `<span class="ln">` (numbered by CSS) holding `<span class="t-…">`
//! tokens, every text escaped. Other languages are shown escaped, plain.

use crate::page::escape_into;

/// The kind of a token (its CSS class is `t-<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// Plain text: operators, punctuation, spaces, names.
    Plain,
    /// A comment.
    Comment,
    /// A string or character literal.
    Str,
    /// A number.
    Num,
    /// A keyword.
    Keyword,
    /// A constant (`MIQ_OK`, a Ruby class name), `true`, `false`, `nil`.
    Const,
    /// A Ruby symbol (`:name`).
    Symbol,
    /// A Ruby instance or global variable (`@x`, `$evm`).
    Var,
}

impl Tok {
    fn class(self) -> Option<&'static str> {
        Some(match self {
            Tok::Plain => return None,
            Tok::Comment => "t-com",
            Tok::Str => "t-str",
            Tok::Num => "t-num",
            Tok::Keyword => "t-kw",
            Tok::Const => "t-const",
            Tok::Symbol => "t-sym",
            Tok::Var => "t-var",
        })
    }
}

const RHAI_KEYWORDS: &[&str] = &[
    "let",
    "const",
    "if",
    "else",
    "switch",
    "do",
    "while",
    "until",
    "loop",
    "for",
    "in",
    "continue",
    "break",
    "return",
    "throw",
    "try",
    "catch",
    "fn",
    "private",
    "import",
    "export",
    "as",
    "this",
    "global",
    "is",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "is_def_var",
    "is_def_fn",
];
const RHAI_CONSTS: &[&str] = &["true", "false"];

const RUBY_KEYWORDS: &[&str] = &[
    "alias",
    "and",
    "begin",
    "break",
    "case",
    "class",
    "def",
    "defined?",
    "do",
    "else",
    "elsif",
    "end",
    "ensure",
    "for",
    "if",
    "in",
    "module",
    "next",
    "not",
    "or",
    "redo",
    "rescue",
    "retry",
    "return",
    "self",
    "super",
    "then",
    "undef",
    "unless",
    "until",
    "when",
    "while",
    "yield",
    "raise",
    "require",
    "lambda",
    "proc",
    "loop",
    "attr_accessor",
    "attr_reader",
    "include",
    "extend",
    "private",
    "protected",
    "public",
];
const RUBY_CONSTS: &[&str] = &["true", "false", "nil"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rhai,
    Ruby,
}

/// Splits `src` into tokens (kinds and byte ranges covering it all).
fn tokenize<'s>(lang: Lang, src: &'s str) -> Vec<(Tok, &'s str)> {
    let b = src.as_bytes();
    let mut out: Vec<(Tok, &'s str)> = Vec::new();
    let mut i = 0;
    let mut plain_start = 0;
    let flush = |out: &mut Vec<(Tok, &'s str)>, from: usize, to: usize| {
        if to > from {
            out.push((Tok::Plain, &src[from..to]));
        }
    };
    let at_line_start = |i: usize| i == 0 || b[i - 1] == b'\n';
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok: Option<Tok> = match (lang, c) {
            // Comments.
            (Lang::Rhai, b'/') if b.get(i + 1) == Some(&b'/') => {
                i = find_byte(b, i, b'\n');
                Some(Tok::Comment)
            }
            (Lang::Rhai, b'/') if b.get(i + 1) == Some(&b'*') => {
                i = block_comment_end(b, i);
                Some(Tok::Comment)
            }
            (Lang::Ruby, b'#') => {
                i = find_byte(b, i, b'\n');
                Some(Tok::Comment)
            }
            (Lang::Ruby, b'=') if at_line_start(i) && src[i..].starts_with("=begin") => {
                i = match src[i..].find("\n=end") {
                    Some(p) => find_byte(b, i + p + 1, b'\n'),
                    None => b.len(),
                };
                Some(Tok::Comment)
            }
            // Strings.
            (_, b'"') | (_, b'\'') | (Lang::Rhai, b'`') => {
                i = string_end(b, i, c);
                Some(Tok::Str)
            }
            // Ruby symbols, instance and global variables.
            (Lang::Ruby, b':')
                if b.get(i + 1)
                    .is_some_and(|n| n.is_ascii_alphabetic() || *n == b'_')
                    && (i == 0 || b[i - 1] != b':') =>
            {
                i = ident_end(b, i + 1);
                Some(Tok::Symbol)
            }
            (Lang::Ruby, b'@') | (Lang::Ruby, b'$')
                if b.get(i + 1)
                    .is_some_and(|n| n.is_ascii_alphabetic() || *n == b'_' || *n == b'@') =>
            {
                i = ident_end(b, i + 1);
                Some(Tok::Var)
            }
            // Numbers (not inside a name).
            (_, c)
                if c.is_ascii_digit()
                    && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    if b[i] == b'.' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        break;
                    }
                    i += 1;
                }
                Some(Tok::Num)
            }
            // Names: keywords and constants.
            (_, c) if c.is_ascii_alphabetic() || c == b'_' => {
                i = ident_end(b, i);
                if lang == Lang::Ruby && b.get(i).is_some_and(|n| *n == b'?' || *n == b'!') {
                    i += 1;
                }
                let word = &src[start..i];
                let after_dot = start > 0 && b[start - 1] == b'.';
                let (keywords, consts) = match lang {
                    Lang::Rhai => (RHAI_KEYWORDS, RHAI_CONSTS),
                    Lang::Ruby => (RUBY_KEYWORDS, RUBY_CONSTS),
                };
                if !after_dot && keywords.contains(&word) {
                    Some(Tok::Keyword)
                } else if consts.contains(&word)
                    || (word.len() > 1
                        && word
                            .bytes()
                            .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit() || x == b'_'))
                    || (lang == Lang::Ruby && word.as_bytes()[0].is_ascii_uppercase())
                {
                    Some(Tok::Const)
                } else {
                    None
                }
            }
            _ => {
                // One character (a whole UTF-8 sequence) of plain text.
                i += utf8_len(c);
                None
            }
        };
        match tok {
            Some(t) => {
                flush(&mut out, plain_start, start);
                out.push((t, &src[start..i]));
                plain_start = i;
            }
            None => {
                if i == start {
                    i += 1;
                }
            }
        }
    }
    flush(&mut out, plain_start, b.len());
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn find_byte(b: &[u8], from: usize, byte: u8) -> usize {
    b[from..]
        .iter()
        .position(|x| *x == byte)
        .map_or(b.len(), |p| from + p)
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// The end of a (nested) `/* */` comment starting at `i`.
fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The end of a string opened by `quote` at `i` (backslash escapes; an
/// unterminated one runs to the end of its line, a backtick one to the
/// end of the source).
fn string_end(b: &[u8], mut i: usize, quote: u8) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            x if x == quote => return i + 1,
            b'\n' if quote != b'`' && quote != b'"' => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// `src` as highlighted HTML lines (see the module's doc). `language` is
/// a method's `language` (`rhai`, `ruby`; others are shown plain).
pub fn highlight(language: &str, src: &str) -> String {
    let lang = match language.to_ascii_lowercase().as_str() {
        "rhai" => Some(Lang::Rhai),
        "ruby" => Some(Lang::Ruby),
        _ => None,
    };
    // A final line feed ends the last line; it opens no empty one.
    let src = src.strip_suffix('\n').unwrap_or(src);
    let tokens = match lang {
        Some(l) => tokenize(l, src),
        None => vec![(Tok::Plain, src)],
    };
    let mut out = String::with_capacity(src.len() * 2 + 64);
    out.push_str("<span class=\"ln\">");
    for (tok, text) in tokens {
        let class = tok.class();
        for (n, piece) in text.split('\n').enumerate() {
            if n > 0 {
                // A line ends inside or after this token: a new numbered line.
                out.push_str("</span>\n<span class=\"ln\">");
            }
            if piece.is_empty() {
                continue;
            }
            match class {
                Some(c) => {
                    out.push_str("<span class=\"");
                    out.push_str(c);
                    out.push_str("\">");
                    escape_into(piece, &mut out);
                    out.push_str("</span>");
                }
                None => escape_into(piece, &mut out),
            }
        }
    }
    out.push_str("</span>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(lang: Lang, src: &str) -> Vec<(Tok, &str)> {
        tokenize(lang, src)
            .into_iter()
            .filter(|(t, _)| *t != Tok::Plain)
            .collect()
    }

    #[test]
    fn rhai_tokens() {
        let t = kinds(
            Lang::Rhai,
            "// hi\nlet x = \"a\\\"b\" + 42; /* c */ if x == MIQ_OK { return true; }",
        );
        assert_eq!(
            t,
            vec![
                (Tok::Comment, "// hi"),
                (Tok::Keyword, "let"),
                (Tok::Str, "\"a\\\"b\""),
                (Tok::Num, "42"),
                (Tok::Comment, "/* c */"),
                (Tok::Keyword, "if"),
                (Tok::Const, "MIQ_OK"),
                (Tok::Keyword, "return"),
                (Tok::Const, "true"),
            ]
        );
    }

    #[test]
    fn ruby_tokens() {
        let t = kinds(
            Lang::Ruby,
            "# c\nvm = $evm.root['vm'] # x\nunless vm.nil?\n  @h = {:a => 1}\nend",
        );
        assert_eq!(
            t,
            vec![
                (Tok::Comment, "# c"),
                (Tok::Var, "$evm"),
                (Tok::Str, "'vm'"),
                (Tok::Comment, "# x"),
                (Tok::Keyword, "unless"),
                (Tok::Var, "@h"),
                (Tok::Symbol, ":a"),
                (Tok::Num, "1"),
                (Tok::Keyword, "end"),
            ]
        );
    }

    #[test]
    fn html_is_escaped_and_lines_are_balanced() {
        let h = highlight("rhai", "let s = \"<b>\n&</b>\";\n/* a\nb */ x < y");
        assert!(h.contains("&lt;b&gt;"), "{h}");
        assert!(!h.contains("<b>"), "{h}");
        assert_eq!(
            h.matches("<span").count(),
            h.matches("</span>").count(),
            "{h}"
        );
        assert_eq!(h.matches("class=\"ln\"").count(), 4, "{h}");
        let plain = highlight("perl", "print \"<x>\";");
        assert!(
            plain.contains("&lt;x&gt;") && !plain.contains("t-str"),
            "{plain}"
        );
    }
}
