//! Query codecs: `ERB::Util.url_encode`, `CGI.unescape`, `MiqAeUri.hash2query`
//! and `MiqAeUri.query2hash`.

use percent_encoding::{utf8_percent_encode, AsciiSet, PercentEncode, NON_ALPHANUMERIC};

/// Bytes `ERB::Util.url_encode` encodes: everything except `[A-Za-z0-9_.~-]`.
const URL_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'-');

/// A lazily encoded `s`, for writing into a formatter without allocating.
pub(crate) fn encoder(s: &str) -> PercentEncode<'_> {
    utf8_percent_encode(s, URL_ENCODE_SET)
}

/// `ERB::Util.url_encode`: every byte of the UTF-8 form except `[A-Za-z0-9_.~-]`
/// becomes `%XX` with upper-case hex (`::` → `%3A%3A`, space → `%20`, `/` → `%2F`).
///
/// (Rubies before 2.5 also encoded `~`; current ones, and this, keep it.)
pub fn url_encode(s: &str) -> String {
    encoder(s).to_string()
}

/// `CGI.unescape`: `+` becomes a space and `%XX` its byte; a `%` not followed by two
/// hex digits is kept literally. Bytes that do not form UTF-8 are replaced with
/// U+FFFD (Ruby would keep a broken string).
///
/// Strings without `%` or `+` are copied as they are.
pub fn url_decode(s: &str) -> String {
    match s.bytes().position(is_escape) {
        None => s.to_owned(),
        Some(first) => decode_from(s, first),
    }
}

fn is_escape(b: u8) -> bool {
    b == b'%' || b == b'+'
}

/// Decodes `s`, whose first `%` or `+` is at byte `first`.
fn decode_from(s: &str, first: usize) -> String {
    let bytes = decode_bytes(s.as_bytes(), first);
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

/// The byte-level work of [`url_decode`], in one pass from `first`, the index of
/// the first `%` or `+`: runs of plain bytes are copied whole.
fn decode_bytes(input: &[u8], first: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let (plain, mut rest) = input.split_at(first.min(input.len()));
    out.extend_from_slice(plain);
    while !rest.is_empty() {
        rest = decode_escape(rest, &mut out);
        let next = rest.iter().position(|&b| is_escape(b)).unwrap_or(rest.len());
        let (plain, tail) = rest.split_at(next);
        out.extend_from_slice(plain);
        rest = tail;
    }
    out
}

/// Decodes the `+` or `%` that starts `tail` into `out`; returns what follows it.
fn decode_escape<'a>(tail: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
    match tail {
        [b'+', more @ ..] => {
            out.push(b' ');
            more
        }
        [b'%', after @ ..] => {
            let (byte, more) = match after {
                [hi, lo, more @ ..] => match (hex_digit(*hi), hex_digit(*lo)) {
                    (Some(hi), Some(lo)) => (hi << 4 | lo, more),
                    _ => (b'%', after),
                },
                _ => (b'%', after),
            };
            out.push(byte);
            more
        }
        [first, more @ ..] => {
            out.push(*first);
            more
        }
        [] => tail,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `MiqAeUri.hash2query`: pairs sorted by key in plain byte order (upper case before
/// lower case; pairs with equal keys keep their order), key and value
/// [`url_encode`]d, joined as `k=v&k=v`. An empty slice gives `""` (Ruby: `nil`).
///
/// Skipping nil values and turning records into ids is the caller's business.
pub fn hash2query(pairs: &[(String, String)]) -> String {
    let mut order: Vec<&(String, String)> = pairs.iter().collect();
    order.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let capacity = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(capacity);
    for (i, (k, v)) in order.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(encoder(k));
        out.push('=');
        out.extend(encoder(v));
    }
    out
}

/// `MiqAeUri.query2hash`: split on `&`, each piece at its first `=`, both sides
/// [`url_decode`]d; a piece without `=` gets the value `""`. Pairs come back in the
/// order given, duplicates included.
///
/// Choices where Ruby differs:
/// * ManageIQ keeps only the first two pieces of `split('=')`, so an unencoded `=`
///   inside a value truncates it (`a=b=c` gives `b`). Here the value is everything
///   after the first `=` (`b=c`): [`hash2query`] always encodes `=`, so round trips
///   are the same, and hand-written queries lose nothing.
/// * Empty pieces (`a=1&&b=2`, a leading `&`) are skipped; Ruby raises `TypeError`
///   on them.
pub fn query2hash(q: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::with_capacity(q.bytes().filter(|&b| b == b'&').count() + 1);
    let mut escapes = Escapes::new(q);
    let mut start = 0;
    for piece in q.split('&') {
        if !piece.is_empty() {
            pairs.push(decode_pair(piece, start, &mut escapes));
        }
        start += piece.len() + 1;
    }
    pairs
}

/// One `key[=value]` piece of a query, starting at byte `start`, decoded.
fn decode_pair(piece: &str, start: usize, escapes: &mut Escapes<'_>) -> (String, String) {
    match piece.split_once('=') {
        Some((k, v)) => (
            escapes.decode(k, start),
            escapes.decode(v, start + k.len() + 1),
        ),
        None => (escapes.decode(piece, start), String::new()),
    }
}

/// Where the next `%` and `+` of a query are, so that the pieces of one query,
/// decoded left to right, cost a single fast scan instead of one scan each.
struct Escapes<'a> {
    query: &'a str,
    percent: NextChar,
    plus: NextChar,
}

impl<'a> Escapes<'a> {
    fn new(query: &'a str) -> Escapes<'a> {
        Escapes {
            query,
            percent: NextChar::new(query, '%'),
            plus: NextChar::new(query, '+'),
        }
    }

    /// [`url_decode`] of `part`, the sub-slice of the query at byte `start`.
    fn decode(&mut self, part: &str, start: usize) -> String {
        let percent = self.percent.at_or_after(self.query, start);
        let plus = self.plus.at_or_after(self.query, start);
        let first = percent.min(plus);
        if first >= start + part.len() {
            part.to_owned()
        } else {
            decode_from(part, first - start)
        }
    }
}

/// The position of the next occurrence of one character; `usize::MAX` for none.
struct NextChar {
    c: char,
    at: usize,
}

impl NextChar {
    fn new(hay: &str, c: char) -> NextChar {
        NextChar {
            c,
            at: hay.find(c).unwrap_or(usize::MAX),
        }
    }

    /// The first occurrence at or after `from`; calls must not go backwards.
    fn at_or_after(&mut self, hay: &str, from: usize) -> usize {
        if self.at < from {
            self.at = match hay.get(from..) {
                Some(tail) => tail.find(self.c).map_or(usize::MAX, |i| i + from),
                // Not a character boundary: cannot happen for piece starts, which
                // follow an ASCII `&` or `=`; fall back to a full search from 0.
                None => hay.find(self.c).map_or(usize::MAX, |i| i.max(from)),
            };
        }
        self.at
    }
}
