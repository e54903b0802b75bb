//! The Ruby that ManageIQ domains write in assertions, evaluated natively.
//!
//! ManageIQ evaluates an assertion (after substitution) with Ruby's `eval`
//! (`MiqAeObject#process_assertion`). automate runs no Ruby, so imported
//! domains' assertions are parsed here against the subset their authors
//! use, and evaluated with Ruby's rules (truthiness: only `nil` and `false`
//! are false; `==` between an Integer and a Float compares numbers; a
//! String never equals a Symbol):
//!
//! * literals: `'single'` and `"double"` strings (no `#{}` interpolation),
//!   integers, floats, `:symbols`, `true`, `false`, `nil`, `[a, b]`,
//!   `%w(a b)` / `%i(a b)` (any of `( [ { <` or a punctuation delimiter),
//!   `/regex/imx`;
//! * operators: `!`, `not`, `&&`, `and`, `||`, `or`, `==`, `!=`, `=~`, `!~`,
//!   `<`, `<=`, `>`, `>=`, parentheses;
//! * methods: `nil?`, `blank?` and `present?` (ActiveSupport's),
//!   `empty?`, `include?(x)`, `start_with?(x..)`, `end_with?(x..)`,
//!   `length`, `size`, `to_s`, `to_i`, `to_f`, `to_sym`, `downcase`, `upcase`,
//!   `strip`, `first`, `last`, `any?`, `zero?`;
//! * the local variables ManageIQ's `eval` sees: `message` (the current
//!   message), given by the caller.
//!
//! Text outside the subset is [`RubyError::Unsupported`] with its byte
//! offset (`datastore validate` reports it with file:line); a method a
//! value does not have, or comparing an Integer with a String, is
//! [`RubyError::Eval`], Ruby's NoMethodError or ArgumentError.

use std::fmt;

/// A Ruby value of the subset.
#[derive(Clone, Debug, PartialEq)]
pub enum RValue {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An Integer.
    Int(i64),
    /// A Float.
    Float(f64),
    /// A String.
    Str(String),
    /// A Symbol, without its colon.
    Sym(String),
    /// An Array.
    Array(Vec<RValue>),
    /// A Regexp literal: its source and its flags (`i`, `m`, `x`).
    Regex(String, String),
}

impl RValue {
    /// Ruby's truthiness: everything but `nil` and `false`.
    pub fn truthy(&self) -> bool {
        !matches!(self, RValue::Nil | RValue::Bool(false))
    }

    /// ActiveSupport's `blank?`: nil, false, a whitespace-only string, an
    /// empty array.
    pub fn blank(&self) -> bool {
        match self {
            RValue::Nil | RValue::Bool(false) => true,
            RValue::Str(s) => s.trim().is_empty(),
            RValue::Array(a) => a.is_empty(),
            _ => false,
        }
    }

    /// Ruby's class name, for error messages.
    pub fn class_name(&self) -> &'static str {
        match self {
            RValue::Nil => "NilClass",
            RValue::Bool(true) => "TrueClass",
            RValue::Bool(false) => "FalseClass",
            RValue::Int(_) => "Integer",
            RValue::Float(_) => "Float",
            RValue::Str(_) => "String",
            RValue::Sym(_) => "Symbol",
            RValue::Array(_) => "Array",
            RValue::Regex(..) => "Regexp",
        }
    }

    /// Ruby's `to_s`.
    pub fn to_s(&self) -> String {
        match self {
            RValue::Nil => String::new(),
            RValue::Bool(b) => b.to_string(),
            RValue::Int(i) => i.to_string(),
            RValue::Float(f) => crate::value::format_float(*f),
            RValue::Str(s) | RValue::Sym(s) => s.clone(),
            RValue::Array(items) => {
                let inner: Vec<String> = items.iter().map(RValue::inspect).collect();
                format!("[{}]", inner.join(", "))
            }
            RValue::Regex(src, flags) => format!("(?{flags}-mix:{src})"),
        }
    }

    /// Ruby's `inspect`.
    pub fn inspect(&self) -> String {
        match self {
            RValue::Nil => "nil".to_string(),
            RValue::Str(s) => format!("{s:?}"),
            RValue::Sym(s) => format!(":{s}"),
            RValue::Regex(src, flags) => format!("/{src}/{flags}"),
            other => other.to_s(),
        }
    }
}

/// Why an expression could not be evaluated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RubyError {
    /// Text outside the subset (or not Ruby at all), at a byte offset.
    #[error("at byte {at}: {what}")]
    Unsupported {
        /// Byte offset into the expression.
        at: usize,
        /// What was found there.
        what: String,
    },
    /// A Ruby error while evaluating (NoMethodError, ArgumentError, ...).
    #[error("{0}")]
    Eval(String),
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal value.
    Lit(RValue),
    /// `[a, b]`.
    Array(Vec<Expr>),
    /// A local variable (`message`) or an undefined name.
    Var(String),
    /// `!x` / `not x`.
    Not(Box<Expr>),
    /// `a && b` / `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b` / `a or b`.
    Or(Box<Expr>, Box<Expr>),
    /// A binary comparison.
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `receiver.method(args)`.
    Call(Box<Expr>, String, Vec<Expr>),
}

/// The comparison operators.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Match,
    /// `!~`
    NotMatch,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// The methods of the subset (module doc), for `datastore validate` and
/// `automate method functions`.
pub const METHODS: &[&str] = &[
    "nil?",
    "blank?",
    "present?",
    "empty?",
    "include?",
    "start_with?",
    "end_with?",
    "length",
    "size",
    "to_s",
    "to_i",
    "to_f",
    "to_sym",
    "downcase",
    "upcase",
    "strip",
    "first",
    "last",
    "any?",
    "zero?",
];

// ---------------------------------------------------------------------------
// Tokens

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(RValue),
    Ident(String),
    Words(Vec<String>, bool),
    Op(&'static str),
    Method(String),
}

const OPS: &[&str] = &[
    "&&", "||", "==", "!=", "=~", "!~", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ",",
];

fn unsupported(at: usize, what: impl Into<String>) -> RubyError {
    RubyError::Unsupported {
        at,
        what: what.into(),
    }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, RubyError> {
    let b = src.as_bytes();
    let mut out: Vec<(usize, Tok)> = Vec::new();
    let mut i = 0;
    // Whether the next token is an operand (a `/` there starts a regex).
    let operand_next = |out: &Vec<(usize, Tok)>| match out.last() {
        None => true,
        Some((_, Tok::Op(op))) => !matches!(*op, ")" | "]"),
        Some((_, Tok::Ident(w))) => matches!(w.as_str(), "and" | "or" | "not"),
        _ => false,
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'\'' | b'"' => {
                let (s, end) = lex_string(src, i)?;
                out.push((start, Tok::Lit(RValue::Str(s))));
                i = end;
            }
            b'0'..=b'9' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'_') {
                    j += 1;
                }
                let mut float = false;
                if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
                    float = true;
                    j += 1;
                    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'_') {
                        j += 1;
                    }
                }
                let text: String = src[i..j].chars().filter(|&c| c != '_').collect();
                let v = if float {
                    text.parse().map(RValue::Float).ok()
                } else {
                    text.parse().map(RValue::Int).ok()
                };
                out.push((
                    start,
                    Tok::Lit(v.ok_or_else(|| unsupported(start, "a number out of range"))?),
                ));
                i = j;
            }
            b':' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                let end = ident_end(b, i + 1);
                out.push((start, Tok::Lit(RValue::Sym(src[i + 1..end].to_string()))));
                i = end;
            }
            b'%' if matches!(b.get(i + 1), Some(b'w' | b'W' | b'i' | b'I')) => {
                let symbols = matches!(b[i + 1], b'i' | b'I');
                let Some(&open) = b.get(i + 2) else {
                    return Err(unsupported(start, "an unterminated %w()"));
                };
                let close = match open {
                    b'(' => b')',
                    b'[' => b']',
                    b'{' => b'}',
                    b'<' => b'>',
                    c if c.is_ascii_punctuation() => c,
                    _ => return Err(unsupported(start, "a %w() without a delimiter")),
                };
                let body_start = i + 3;
                let Some(len) = b[body_start..].iter().position(|&c| c == close) else {
                    return Err(unsupported(start, "an unterminated %w()"));
                };
                let words = src[body_start..body_start + len]
                    .split_ascii_whitespace()
                    .map(str::to_string)
                    .collect();
                out.push((start, Tok::Words(words, symbols)));
                i = body_start + len + 1;
            }
            b'/' if operand_next(&out) => {
                let mut j = i + 1;
                let mut source = String::new();
                loop {
                    match b.get(j) {
                        None => return Err(unsupported(start, "an unterminated regex")),
                        Some(b'\\') if j + 1 < b.len() => {
                            let next = src[j + 1..].chars().next().unwrap_or('\\');
                            if next != '/' {
                                source.push('\\');
                            }
                            source.push(next);
                            j += 1 + next.len_utf8();
                        }
                        Some(b'/') => break,
                        Some(_) => {
                            let ch = src[j..].chars().next().unwrap_or(' ');
                            if ch == '#' && src[j..].starts_with("#{") {
                                return Err(unsupported(j, "interpolation `#{}` in a regex"));
                            }
                            source.push(ch);
                            j += ch.len_utf8();
                        }
                    }
                }
                j += 1;
                let mut flags = String::new();
                while let Some(&f) = b.get(j) {
                    if matches!(f, b'i' | b'm' | b'x') {
                        flags.push(char::from(f));
                        j += 1;
                    } else {
                        break;
                    }
                }
                out.push((start, Tok::Lit(RValue::Regex(source, flags))));
                i = j;
            }
            b'.' => {
                let name_start = i + 1;
                if !b
                    .get(name_start)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                {
                    return Err(unsupported(start, "`.` not followed by a method name"));
                }
                let mut end = ident_end(b, name_start);
                if matches!(b.get(end), Some(b'?' | b'!')) && b.get(end + 1) != Some(&b'=') {
                    end += 1;
                }
                out.push((start, Tok::Method(src[name_start..end].to_string())));
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = ident_end(b, i);
                let word = &src[i..end];
                let tok = match word {
                    "true" => Tok::Lit(RValue::Bool(true)),
                    "false" => Tok::Lit(RValue::Bool(false)),
                    "nil" => Tok::Lit(RValue::Nil),
                    _ => Tok::Ident(word.to_string()),
                };
                out.push((start, tok));
                i = end;
            }
            _ => {
                let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) else {
                    let ch = src[i..].chars().next().unwrap_or(' ');
                    return Err(unsupported(start, format!("`{ch}`")));
                };
                out.push((start, Tok::Op(op)));
                i += op.len();
            }
        }
    }
    Ok(out)
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// A quoted string starting at `i`: its value and the offset after it.
fn lex_string(src: &str, i: usize) -> Result<(String, usize), RubyError> {
    let quote = src.as_bytes()[i];
    let mut out = String::new();
    let mut chars = src[i + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let at = i + 1 + off;
        match c {
            c if c as u32 == u32::from(quote) => return Ok((out, at + 1)),
            '\\' => {
                let Some((_, n)) = chars.next() else { break };
                if quote == b'\'' {
                    // Single quotes know only \' and \\.
                    if n != '\'' && n != '\\' {
                        out.push('\\');
                    }
                    out.push(n);
                } else {
                    out.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        'e' => '\x1b',
                        's' => ' ',
                        other => other,
                    });
                }
            }
            '#' if quote == b'"' && src[at..].starts_with("#{") => {
                return Err(unsupported(at, "string interpolation `#{}`"));
            }
            c => out.push(c),
        }
    }
    Err(unsupported(i, "an unterminated string"))
}

// ---------------------------------------------------------------------------
// Parser (precedence, loosest first: `not`, `and`/`or`, `||`, `&&`,
// equality and match, `< <= > >=`, `!`, method calls)

struct Parser<'a> {
    toks: &'a [(usize, Tok)],
    pos: usize,
    len: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(a, _)| *a).unwrap_or(self.len)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), RubyError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(unsupported(self.at(), format!("expected `{op}`")))
        }
    }

    fn not_expr(&mut self) -> Result<Expr, RubyError> {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.word_logic()
    }

    fn word_logic(&mut self) -> Result<Expr, RubyError> {
        let mut left = self.or_expr()?;
        loop {
            if self.eat_word("and") {
                let right = self.not_operand()?;
                left = Expr::And(Box::new(left), Box::new(right));
            } else if self.eat_word("or") {
                let right = self.not_operand()?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn not_operand(&mut self) -> Result<Expr, RubyError> {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.not_operand()?)));
        }
        self.or_expr()
    }

    fn or_expr(&mut self) -> Result<Expr, RubyError> {
        let mut left = self.and_expr()?;
        while self.eat_op("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, RubyError> {
        let mut left = self.eq_expr()?;
        while self.eat_op("&&") {
            left = Expr::And(Box::new(left), Box::new(self.eq_expr()?));
        }
        Ok(left)
    }

    fn eq_expr(&mut self) -> Result<Expr, RubyError> {
        let left = self.cmp_expr()?;
        for (op, bin) in [
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("=~", BinOp::Match),
            ("!~", BinOp::NotMatch),
        ] {
            if self.eat_op(op) {
                let right = self.cmp_expr()?;
                return Ok(Expr::Bin(bin, Box::new(left), Box::new(right)));
            }
        }
        Ok(left)
    }

    fn cmp_expr(&mut self) -> Result<Expr, RubyError> {
        let mut left = self.unary()?;
        loop {
            let bin = if self.eat_op("<=") {
                BinOp::Le
            } else if self.eat_op(">=") {
                BinOp::Ge
            } else if self.eat_op("<") {
                BinOp::Lt
            } else if self.eat_op(">") {
                BinOp::Gt
            } else {
                return Ok(left);
            };
            left = Expr::Bin(bin, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, RubyError> {
        if self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, RubyError> {
        let mut e = self.primary()?;
        while let Some(Tok::Method(name)) = self.peek() {
            let name = name.clone();
            self.pos += 1;
            let mut args = Vec::new();
            if self.eat_op("(") && !self.eat_op(")") {
                loop {
                    args.push(self.not_expr()?);
                    if self.eat_op(")") {
                        break;
                    }
                    self.expect_op(",")?;
                }
            }
            e = Expr::Call(Box::new(e), name, args);
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, RubyError> {
        let at = self.at();
        let Some(tok) = self.peek().cloned() else {
            return Err(unsupported(at, "an expression was expected"));
        };
        self.pos += 1;
        match tok {
            Tok::Lit(v) => Ok(Expr::Lit(v)),
            Tok::Words(words, symbols) => Ok(Expr::Lit(RValue::Array(
                words
                    .into_iter()
                    .map(|w| {
                        if symbols {
                            RValue::Sym(w)
                        } else {
                            RValue::Str(w)
                        }
                    })
                    .collect(),
            ))),
            Tok::Ident(w) if matches!(w.as_str(), "and" | "or" | "not") => {
                Err(unsupported(at, format!("`{w}`")))
            }
            Tok::Ident(w) => {
                if matches!(self.peek(), Some(Tok::Op("("))) {
                    return Err(unsupported(at, format!("a call of `{w}`")));
                }
                Ok(Expr::Var(w))
            }
            Tok::Op("(") => {
                let e = self.not_expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                if !self.eat_op("]") {
                    loop {
                        items.push(self.not_expr()?);
                        if self.eat_op("]") {
                            break;
                        }
                        self.expect_op(",")?;
                    }
                }
                Ok(Expr::Array(items))
            }
            Tok::Op(op) => Err(unsupported(at, format!("`{op}`"))),
            Tok::Method(m) => Err(unsupported(at, format!("`.{m}`"))),
        }
    }
}

/// Parses `src` as an expression of the subset.
///
/// # Errors
/// [`RubyError::Unsupported`] for text outside the subset.
pub fn parse(src: &str) -> Result<Expr, RubyError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        len: src.len(),
    };
    let e = p.not_expr()?;
    if p.pos < toks.len() {
        return Err(unsupported(p.at(), "more text after the expression"));
    }
    check_methods(&e)?;
    Ok(e)
}

/// Every method named must be one of [`METHODS`].
fn check_methods(e: &Expr) -> Result<(), RubyError> {
    match e {
        Expr::Lit(_) | Expr::Var(_) => Ok(()),
        Expr::Array(items) => items.iter().try_for_each(check_methods),
        Expr::Not(x) => check_methods(x),
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Bin(_, a, b) => {
            check_methods(a)?;
            check_methods(b)
        }
        Expr::Call(recv, name, args) => {
            if !METHODS.contains(&name.as_str()) {
                return Err(unsupported(0, format!("the method `{name}`")));
            }
            check_methods(recv)?;
            args.iter().try_for_each(check_methods)
        }
    }
}

/// Checks that a field value (before substitution) is in the subset:
/// each `${...}` stands for a value (inside quotes, for text).
///
/// # Errors
/// [`RubyError::Unsupported`], with the offset into `src`.
pub fn check_unsubstituted(src: &str) -> Result<(), RubyError> {
    let mut text = String::with_capacity(src.len());
    let mut rest = src;
    let mut quote: Option<char> = None;
    while !rest.is_empty() {
        if rest.starts_with("${") {
            if let Some(end) = rest.find('}') {
                // Same length, so offsets stay those of `src`.
                let fill = if quote.is_some() { 'x' } else { '0' };
                text.extend(std::iter::repeat_n(fill, end + 1));
                rest = &rest[end + 1..];
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    parse(&text).map(|_| ())
}

// ---------------------------------------------------------------------------
// Evaluation

/// Evaluates a parsed expression; `var` answers local variables
/// (`message`).
///
/// # Errors
/// [`RubyError::Eval`] where Ruby raises.
pub fn eval(e: &Expr, var: &dyn Fn(&str) -> Option<RValue>) -> Result<RValue, RubyError> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Array(items) => RValue::Array(
            items
                .iter()
                .map(|i| eval(i, var))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Var(name) => var(name).ok_or_else(|| {
            if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                RubyError::Eval(format!("uninitialized constant {name}"))
            } else {
                RubyError::Eval(format!("undefined local variable or method `{name}'"))
            }
        })?,
        Expr::Not(x) => RValue::Bool(!eval(x, var)?.truthy()),
        Expr::And(a, b) => {
            let l = eval(a, var)?;
            if l.truthy() {
                eval(b, var)?
            } else {
                l
            }
        }
        Expr::Or(a, b) => {
            let l = eval(a, var)?;
            if l.truthy() {
                l
            } else {
                eval(b, var)?
            }
        }
        Expr::Bin(op, a, b) => binary(*op, &eval(a, var)?, &eval(b, var)?)?,
        Expr::Call(recv, name, args) => {
            let r = eval(recv, var)?;
            let args: Vec<RValue> = args
                .iter()
                .map(|a| eval(a, var))
                .collect::<Result<_, _>>()?;
            call(&r, name, &args)?
        }
    })
}

/// Parses and evaluates `src`: its Ruby truthiness.
///
/// # Errors
/// [`RubyError::Unsupported`] for text outside the subset,
/// [`RubyError::Eval`] where Ruby raises.
pub fn evaluate(src: &str, var: &dyn Fn(&str) -> Option<RValue>) -> Result<bool, RubyError> {
    Ok(eval(&parse(src)?, var)?.truthy())
}

/// Ruby's `==`.
pub fn ruby_eq(a: &RValue, b: &RValue) -> bool {
    match (a, b) {
        (RValue::Int(x), RValue::Float(y)) | (RValue::Float(y), RValue::Int(x)) => {
            (*x as f64) == *y
        }
        (RValue::Array(x), RValue::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| ruby_eq(a, b))
        }
        _ => a == b,
    }
}

fn binary(op: BinOp, a: &RValue, b: &RValue) -> Result<RValue, RubyError> {
    Ok(match op {
        BinOp::Eq => RValue::Bool(ruby_eq(a, b)),
        BinOp::Ne => RValue::Bool(!ruby_eq(a, b)),
        BinOp::Match => regex_match(a, b)?,
        BinOp::NotMatch => RValue::Bool(!regex_match(a, b)?.truthy()),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = match (a, b) {
                (RValue::Int(x), RValue::Int(y)) => x.partial_cmp(y),
                (RValue::Int(_) | RValue::Float(_), RValue::Int(_) | RValue::Float(_)) => {
                    as_f64(a).partial_cmp(&as_f64(b))
                }
                (RValue::Str(x), RValue::Str(y)) => x.partial_cmp(y),
                _ => None,
            };
            let Some(ord) = ord else {
                return Err(RubyError::Eval(format!(
                    "comparison of {} with {} failed",
                    a.class_name(),
                    b.inspect()
                )));
            };
            RValue::Bool(match op {
                BinOp::Lt => ord.is_lt(),
                BinOp::Le => ord.is_le(),
                BinOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
    })
}

fn as_f64(v: &RValue) -> f64 {
    match v {
        RValue::Int(i) => *i as f64,
        RValue::Float(f) => *f,
        _ => f64::NAN,
    }
}

/// `string =~ /re/` (or `/re/ =~ string`): the match's character index or
/// nil; `nil =~ /re/` is nil.
fn regex_match(a: &RValue, b: &RValue) -> Result<RValue, RubyError> {
    let (text, (src, flags)) = match (a, b) {
        (RValue::Str(s) | RValue::Sym(s), RValue::Regex(src, f))
        | (RValue::Regex(src, f), RValue::Str(s) | RValue::Sym(s)) => (s, (src, f)),
        (RValue::Nil, RValue::Regex(..)) | (RValue::Regex(..), RValue::Nil) => {
            return Ok(RValue::Nil)
        }
        (RValue::Str(_), other) => {
            return Err(RubyError::Eval(format!(
                "wrong argument type {} (expected Regexp)",
                other.class_name()
            )))
        }
        _ => return Ok(RValue::Nil),
    };
    let re = compile_regex(src, flags)?;
    Ok(match re.find(text) {
        Some(m) => RValue::Int(text[..m.start()].chars().count() as i64),
        None => RValue::Nil,
    })
}

/// A Ruby regex as a Rust one: `i` is case folding, Ruby's `m` is `s`
/// (dot matches newline), `x` extended; `^`/`$` match at lines, as Ruby's do.
fn compile_regex(src: &str, flags: &str) -> Result<regex::Regex, RubyError> {
    let mut prefix = String::from("(?m");
    if flags.contains('i') {
        prefix.push('i');
    }
    if flags.contains('m') {
        prefix.push('s');
    }
    if flags.contains('x') {
        prefix.push('x');
    }
    prefix.push(')');
    regex::Regex::new(&format!("{prefix}{}", src.replace("\\Z", "\\z")))
        .map_err(|e| unsupported(0, format!("the regex /{src}/: {e}")))
}

/// Ruby's lenient `String#to_i`: leading digits (after a sign), else 0.
fn to_i(s: &str) -> i64 {
    let t = s.trim_start();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let mut n: i64 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        let Some(d) = c.to_digit(10) else { break };
        n = n.saturating_mul(10).saturating_add(i64::from(d));
    }
    sign * n
}

fn no_method(name: &str, r: &RValue) -> RubyError {
    RubyError::Eval(format!(
        "undefined method `{name}' for {}:{}",
        r.inspect(),
        r.class_name()
    ))
}

fn arity(name: &str, args: &[RValue], want: usize) -> Result<(), RubyError> {
    if args.len() == want {
        Ok(())
    } else {
        Err(RubyError::Eval(format!(
            "wrong number of arguments calling `{name}' (given {}, expected {want})",
            args.len()
        )))
    }
}

/// Calls one method of the subset on `r`.
pub fn call(r: &RValue, name: &str, args: &[RValue]) -> Result<RValue, RubyError> {
    let takes_args = matches!(name, "include?" | "start_with?" | "end_with?");
    if !takes_args {
        arity(name, args, 0)?;
    }
    Ok(match (name, r) {
        ("nil?", _) => RValue::Bool(matches!(r, RValue::Nil)),
        ("blank?", _) => RValue::Bool(r.blank()),
        ("present?", _) => RValue::Bool(!r.blank()),
        ("to_s", _) => RValue::Str(r.to_s()),
        ("empty?", RValue::Str(s)) => RValue::Bool(s.is_empty()),
        ("empty?", RValue::Array(a)) => RValue::Bool(a.is_empty()),
        ("any?", RValue::Array(a)) => RValue::Bool(a.iter().any(RValue::truthy)),
        ("include?", RValue::Str(s)) => {
            arity(name, args, 1)?;
            match &args[0] {
                RValue::Str(x) => RValue::Bool(s.contains(x.as_str())),
                other => {
                    return Err(RubyError::Eval(format!(
                        "no implicit conversion of {} into String",
                        other.class_name()
                    )))
                }
            }
        }
        ("include?", RValue::Array(a)) => {
            arity(name, args, 1)?;
            RValue::Bool(a.iter().any(|x| ruby_eq(x, &args[0])))
        }
        ("start_with?" | "end_with?", RValue::Str(s)) => {
            let mut hit = false;
            for a in args {
                let RValue::Str(p) = a else {
                    return Err(RubyError::Eval(format!(
                        "no implicit conversion of {} into String",
                        a.class_name()
                    )));
                };
                hit |= if name == "start_with?" {
                    s.starts_with(p.as_str())
                } else {
                    s.ends_with(p.as_str())
                };
            }
            RValue::Bool(hit)
        }
        ("length" | "size", RValue::Str(s)) => RValue::Int(s.chars().count() as i64),
        ("length" | "size", RValue::Array(a)) => RValue::Int(a.len() as i64),
        ("to_i", RValue::Str(s)) => RValue::Int(to_i(s)),
        ("to_i", RValue::Int(i)) => RValue::Int(*i),
        ("to_i", RValue::Float(f)) => RValue::Int(f.trunc() as i64),
        ("to_i", RValue::Nil) => RValue::Int(0),
        ("to_f", RValue::Str(s)) => RValue::Float(s.trim().parse().unwrap_or(0.0)),
        ("to_f", RValue::Int(i)) => RValue::Float(*i as f64),
        ("to_f", RValue::Float(f)) => RValue::Float(*f),
        ("to_f", RValue::Nil) => RValue::Float(0.0),
        ("to_sym", RValue::Str(s) | RValue::Sym(s)) => RValue::Sym(s.clone()),
        ("downcase", RValue::Str(s)) => RValue::Str(s.to_lowercase()),
        ("upcase", RValue::Str(s)) => RValue::Str(s.to_uppercase()),
        ("downcase", RValue::Sym(s)) => RValue::Sym(s.to_lowercase()),
        ("upcase", RValue::Sym(s)) => RValue::Sym(s.to_uppercase()),
        ("strip", RValue::Str(s)) => RValue::Str(s.trim().to_string()),
        ("first", RValue::Array(a)) => a.first().cloned().unwrap_or(RValue::Nil),
        ("last", RValue::Array(a)) => a.last().cloned().unwrap_or(RValue::Nil),
        ("zero?", RValue::Int(i)) => RValue::Bool(*i == 0),
        ("zero?", RValue::Float(f)) => RValue::Bool(*f == 0.0),
        _ => return Err(no_method(name, r)),
    })
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Splits a `${...}` method chain, `attr.m1(arg).m2`, on the dots outside
/// parentheses (the engine's substitution and `datastore validate` both
/// read chains this way).
pub fn split_chain(fragment: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in fragment.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push(&fragment[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&fragment[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(src: &str) -> Result<bool, RubyError> {
        evaluate(src, &|name| {
            (name == "message").then(|| RValue::Str("create".into()))
        })
    }

    /// What Ruby's `eval` gives for each (checked with ruby 3.x).
    #[test]
    fn ruby_idioms() {
        for (src, want) in [
            ("true", true),
            ("false", false),
            ("nil", false),
            ("'BammBammRubble' == 'BammBammRubble'", true),
            ("'a' == 'b' || 'x' != 'y'", true),
            ("1 == 1.0", true),
            ("'1' == 1", false),
            ("'a' == :a", false),
            ("%w(vmware redhat).include?('redhat')", true),
            ("%w[vmware redhat].include?('amazon')", false),
            ("%i(a b).include?(:b)", true),
            ("['a', 1].include?(1)", true),
            ("''.nil?", false),
            ("nil.nil?", true),
            ("''.blank?", true),
            ("'  '.blank?", true),
            ("nil.blank?", true),
            ("'x'.present?", true),
            ("[].present?", false),
            ("'web01' =~ /^web/", true),
            ("'web01' =~ /^WEB/i", true),
            ("'db01' =~ /^web/", false),
            ("'db01' !~ /^web/", true),
            ("nil =~ /x/", false),
            ("'abc'.include?('b') && !'abc'.empty?", true),
            ("'15'.to_i >= 14", true),
            ("'BammBammRubble'.length >= 14", true),
            ("not 'a' == 'b'", true),
            ("'a' == 'a' and 'b' == 'c'", false),
            ("('a' == 'b') or ('c' == 'c')", true),
            ("message == 'create'", true),
            ("'Web'.downcase.start_with?('we', 'x')", true),
            ("\"tab\\there\".include?(\"\\t\")", true),
        ] {
            assert_eq!(ev(src), Ok(want), "{src}");
        }
    }

    #[test]
    fn ruby_errors() {
        // NoMethodError, ArgumentError, NameError: evaluation errors.
        for src in [
            "nil.include?('a')",
            "'a' > 1",
            "A == 9",
            "undefined_name",
            "'a'.include?(1)",
        ] {
            assert!(
                matches!(ev(src), Err(RubyError::Eval(_))),
                "{src}: {:?}",
                ev(src)
            );
        }
        // Outside the subset.
        for (src, at) in [
            ("\"#{x}\" == 'a'", 1),
            ("'a' + 'b'", 4),
            ("x = 1", 2),
            ("'a'.gsub('a', 'b')", 0),
            ("[1, 2].map { |x| x }", 11),
            ("'unterminated", 0),
            ("Vm.find(1)", 0),
        ] {
            match ev(src) {
                Err(RubyError::Unsupported { at: got, .. }) => assert_eq!(got, at, "{src}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsubstituted_values_are_checked_with_placeholders() {
        assert_eq!(check_unsubstituted("${/#vm.name.length} >= 14"), Ok(()));
        assert_eq!(check_unsubstituted("'${/#vm.name}' == 'x'"), Ok(()));
        assert_eq!(check_unsubstituted("%w(a b).include?('${/#x}')"), Ok(()));
        assert_eq!(
            check_unsubstituted("${/#miq_provision.placement_auto}"),
            Ok(())
        );
        match check_unsubstituted("${/#a} + 1") {
            Err(RubyError::Unsupported { at, .. }) => assert_eq!(at, 7),
            other => panic!("{other:?}"),
        }
    }
}
