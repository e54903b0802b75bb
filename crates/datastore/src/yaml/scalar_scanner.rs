//! Psych's `ScalarScanner#tokenize`, as far as writing needs it: would Psych
//! read a plain scalar back as a String, or as nil, a boolean, a number, a
//! date, a time or a symbol? Psych quotes a string exactly when the answer is
//! no. The regexes of Psych 4.0.3 are matched by hand (no regex engine), with
//! Ruby's own range checks for dates and times.

/// True when `Psych::ScalarScanner#tokenize(s)` returns a String, i.e. the
/// plain text would not come back as nil, a boolean, a number, a date, a
/// time or a symbol.
pub(super) fn psych_reads_as_string(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.contains('\n') || looks_like_word(s) {
        return word_like_reads_as_string(s);
    }
    if let Some(valid) = time_is_valid(s) {
        return !valid;
    }
    if let Some(valid) = date_is_valid(s) {
        return !valid;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | "+.inf" | "-.inf" | ".nan") {
        return false;
    }
    if is_symbol(s) {
        return false;
    }
    if is_sexagesimal(s) || is_psych_float(s) || is_psych_integer(s) {
        return false;
    }
    true
}

/// Ruby symbols are kept as strings starting with `:`; Psych writes them with
/// `visit_Symbol`, which asks for a plain scalar.
pub(super) fn is_symbol(s: &str) -> bool {
    s.starts_with(':') && s.len() > 1 && !s.contains('\n')
}

/// Byte offsets where Ruby's `^` matches and a character follows.
pub(super) fn line_starts(s: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0)
        .chain(s.match_indices('\n').map(|(k, _)| k + 1))
        .filter(move |&k| k < s.len())
}

/// `/^[^\d.:-]?[[:alpha:]_\s!@#$%\^&*(){}<>|\/\\~;=]+/` at the start of a
/// one-line string.
fn looks_like_word(s: &str) -> bool {
    fn in_set(c: char) -> bool {
        c.is_alphabetic() || is_ruby_space(c) || "_!@#$%^&*(){}<>|/\\~;=".contains(c)
    }
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if in_set(first) {
        return true;
    }
    let skippable = !(first.is_ascii_digit() || matches!(first, '.' | ':' | '-'));
    skippable && chars.next().is_some_and(in_set)
}

/// Ruby's `\s`.
fn is_ruby_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

/// The first branch of `tokenize`: short word-like strings may be null or a
/// YAML 1.1 boolean; everything else there is a String.
fn word_like_reads_as_string(s: &str) -> bool {
    if s.chars().count() > 5 {
        return true;
    }
    let starts_other = line_starts(s).any(|k| {
        s[k..]
            .chars()
            .next()
            .is_some_and(|c| !"ytonfYTONF~".contains(c))
    });
    if starts_other {
        return true;
    }
    let special = ["null", "yes", "true", "on", "no", "false", "off"];
    let any_line_is_special = s
        .split('\n')
        .any(|line| special.iter().any(|w| line.eq_ignore_ascii_case(w)));
    !(s == "~" || any_line_is_special)
}

/// A tiny cursor over ASCII text for the hand-written regex matchers below.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            b: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_if(&mut self, f: impl Fn(u8) -> bool) -> Option<u8> {
        let c = self.peek().filter(|&c| f(c))?;
        self.i += 1;
        Some(c)
    }

    /// Between `min` and `max` ASCII digits (greedy), as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut value: u32 = 0;
        while self.i - start < max {
            match self.eat_if(|c| c.is_ascii_digit()) {
                Some(d) => value = value.saturating_mul(10).saturating_add(u32::from(d - b'0')),
                None => break,
            }
        }
        (self.i - start >= min).then_some(value)
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.eat_if(&f).is_some() {}
        self.i - start
    }

    fn rest(&self) -> &'a [u8] {
        self.b.get(self.i..).unwrap_or_default()
    }
}

/// Psych's `TIME` regex; `Some(valid)` when it matches, where `valid` says
/// whether `parse_time` would succeed (Ruby's `Time.utc`/`Time.new` range
/// checks), `None` when it does not match.
fn time_is_valid(s: &str) -> Option<bool> {
    let mut c = Cursor::new(s);
    c.eat(b'-');
    c.digits(4, 4)?;
    c.eat(b'-').then_some(())?;
    let month = c.digits(1, 2)?;
    c.eat(b'-').then_some(())?;
    let day = c.digits(1, 2)?;
    let separated = c.eat_if(|b| b == b'T' || b == b't').is_some()
        || c.skip_while(|b| is_ruby_space(char::from(b))) > 0;
    if !separated {
        return None;
    }
    let hour = c.digits(1, 2)?;
    c.eat(b':').then_some(())?;
    let minute = c.digits(2, 2)?;
    c.eat(b':').then_some(())?;
    let second = c.digits(2, 2)?;
    if c.eat(b'.') {
        c.skip_while(|b| b.is_ascii_digit());
    }
    let offset_ok = if c.at_end() {
        true
    } else {
        c.skip_while(|b| is_ruby_space(char::from(b)));
        if c.eat(b'Z') {
            c.at_end().then_some(true)?
        } else {
            c.eat_if(|b| b == b'+' || b == b'-')?;
            tz_offset_is_valid(c.rest())?
        }
    };
    let hour_ok = hour < 24 || (hour == 24 && minute == 0 && second == 0);
    Some(
        (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour_ok
            && minute <= 59
            && second <= 60
            && offset_ok,
    )
}

/// Matches `\d{1,2}:?(?:\d\d)?$` after a time zone sign; `Some(valid)` with
/// Ruby's `-86400 < offset < 86400` check.
fn tz_offset_is_valid(rest: &[u8]) -> Option<bool> {
    let all_digits = |b: &[u8]| b.iter().all(u8::is_ascii_digit);
    let parse = |b: &[u8]| {
        b.iter().fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        })
    };
    let ok = |tail: &[u8]| {
        let tail = tail.strip_prefix(b":").unwrap_or(tail);
        tail.is_empty() || (tail.len() == 2 && all_digits(tail))
    };
    for width in [2usize, 1] {
        let Some(hours) = rest.get(..width) else {
            continue;
        };
        let tail = rest.get(width..).unwrap_or_default();
        if all_digits(hours) && ok(tail) {
            // Ruby re-reads the offset with /^([+\-]?\d{1,2}):?(\d{1,2})?$/ on
            // the whole text, which splits `530` as 53 and 0.
            let digits: Vec<u8> = rest.iter().copied().filter(u8::is_ascii_digit).collect();
            let (h, m) = digits.split_at(digits.len().min(2));
            let offset = parse(h) * 3600 + parse(m) * 60;
            return Some(offset < 86_400);
        }
    }
    None
}

/// Psych's date regex `^\d{4}-(?:1[012]|0\d|\d)-(?:[12]\d|3[01]|0\d|\d)$`;
/// `Some(valid)` when it matches, where `valid` says whether
/// `Date.strptime` accepts the calendar date.
fn date_is_valid(s: &str) -> Option<bool> {
    let mut c = Cursor::new(s);
    let year = c.digits(4, 4)?;
    c.eat(b'-').then_some(())?;
    let month_start = c.i;
    let month = c.digits(1, 2)?;
    if c.i - month_start == 2 && month > 12 && s.as_bytes().get(month_start) != Some(&b'0') {
        return None;
    }
    c.eat(b'-').then_some(())?;
    let day_start = c.i;
    let day = c.digits(1, 2)?;
    if c.i - day_start == 2 && day > 31 {
        return None;
    }
    if !c.at_end() {
        return None;
    }
    Some((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Psych's base-60 integer and float forms:
/// `^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}(\.[0-9_]*)?$`.
fn is_sexagesimal(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut parts = unsigned.split(':');
    let head = parts.next().unwrap_or_default();
    let head_ok = head.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && head.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let rest: Vec<&str> = parts.collect();
    if !head_ok || rest.is_empty() || rest.len() > 2 {
        return false;
    }
    let base60 = |p: &str| match p.as_bytes() {
        [d] => d.is_ascii_digit(),
        [a, b] => (b'0'..=b'5').contains(a) && b.is_ascii_digit(),
        _ => false,
    };
    let last = rest.len() - 1;
    rest.iter().enumerate().all(|(i, p)| {
        if i < last {
            return base60(p);
        }
        match p.split_once('.') {
            Some((whole, frac)) => {
                base60(whole) && frac.bytes().all(|b| b.is_ascii_digit() || b == b'_')
            }
            None => base60(p),
        }
    })
}

/// Psych's `FLOAT`: `^[-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?$`, minus
/// the lone `.`, `+.` and `-.`.
fn is_psych_float(s: &str) -> bool {
    let mut c = Cursor::new(s);
    c.eat_if(|b| b == b'+' || b == b'-');
    let start = c.i;
    if c.eat_if(|b| b.is_ascii_digit()).is_some() {
        c.skip_while(|b| b.is_ascii_digit() || b == b'_' || b == b',');
    }
    let had_digits = c.i > start;
    if !c.eat(b'.') {
        return false;
    }
    let frac = c.skip_while(|b| b.is_ascii_digit());
    if c.eat_if(|b| b == b'e' || b == b'E').is_some() {
        if c.eat_if(|b| b == b'+' || b == b'-').is_none()
            || c.skip_while(|b| b.is_ascii_digit()) == 0
        {
            return false;
        }
    } else if !had_digits && frac == 0 {
        return false;
    }
    c.at_end()
}

/// Psych 4's `INTEGER` (binary, octal, decimal with `,`/`_` separators,
/// hexadecimal).
fn is_psych_integer(s: &str) -> bool {
    let r = s.strip_prefix(['+', '-']).unwrap_or(s);
    let all = |t: &str, f: fn(u8) -> bool| !t.is_empty() && t.bytes().all(f);
    if let Some(t) = r.strip_prefix("0b") {
        return all(t, |b| matches!(b, b'0' | b'1' | b'_' | b','));
    }
    if let Some(t) = r.strip_prefix("0x") {
        return all(t, |b| b.is_ascii_hexdigit() || b == b'_' || b == b',');
    }
    if r == "0" {
        return true;
    }
    if let Some(t) = r.strip_prefix('0') {
        return all(t, |b| matches!(b, b'0'..=b'7' | b'_' | b','));
    }
    let b = r.as_bytes();
    if !b.first().is_some_and(|d| (b'1'..=b'9').contains(d)) {
        return false;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            d if d.is_ascii_digit() => i += 1,
            b'_' | b',' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => i += 2,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_reads_back_as_a_string() {
        let strings = [
            "plain text",
            "null coalescing",
            "2015-02-30",
            "2015-13-01",
            "1e5",
            "09",
            "a#b",
            "12:61",
            "it's",
            "a\n",
            ".",
            "0x",
            "1__0",
        ];
        let others = [
            "",
            "~",
            "null",
            "Yes",
            "off",
            "100",
            "-3",
            "1_000",
            "1,000",
            "0x1F",
            "0b101",
            "0755",
            "1.0",
            ".5",
            "1.5e+3",
            ".inf",
            "-.Inf",
            ".NaN",
            "12:30",
            "1:30:15.5",
            "2015-03-25",
            "2016-02-29",
            "2015-03-25 21:19:46.418626000 Z",
            "2015-03-25T21:19:46+05:30",
            ":sym",
        ];
        let wrong: Vec<String> = strings
            .iter()
            .filter(|s| !psych_reads_as_string(s))
            .map(|s| format!("{s:?} should read back as a String"))
            .chain(
                others
                    .iter()
                    .filter(|s| psych_reads_as_string(s))
                    .map(|s| format!("{s:?} should not read back as a String")),
            )
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn calendar_checks() {
        assert_eq!(date_is_valid("2016-02-29"), Some(true));
        assert_eq!(date_is_valid("2015-02-29"), Some(false));
        assert_eq!(date_is_valid("2015-3-5"), Some(true));
        assert_eq!(date_is_valid("15-03-05"), None);
        assert_eq!(time_is_valid("2015-03-25 24:00:00"), Some(true));
        assert_eq!(time_is_valid("2015-03-25 24:00:01"), Some(false));
        assert_eq!(time_is_valid("2015-03-25"), None);
    }
}
