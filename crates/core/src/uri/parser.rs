//! The URI grammar, with nom: `[scheme:]path[?query][#fragment]`.
//!
//! nom splits the string into its four raw parts; the checks that follow report
//! byte offsets into the caller's string, and only the path is copied with its
//! `/` runs collapsed.

use nom::bytes::complete::{take_till, take_while};
use nom::character::complete::{char, satisfy};
use nom::combinator::{opt, recognize, rest};
use nom::sequence::{preceded, terminated};
use nom::{IResult, Parser};

use super::codec::query2hash;
use super::scheme::{unsupported, Scheme};
use super::{Uri, UriError};

/// The four raw parts of a URI, borrowed from the input.
struct RawUri<'a> {
    scheme: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

/// Parses an Automate URI.
///
/// Surrounding whitespace (Ruby's `strip` set: space, `\t\n\v\f\r` and NUL) is
/// trimmed; runs of `/` in the path are collapsed (so `miqaedb:///A/B` has the path
/// `/A/B`); the query is decoded with [`query2hash`](super::query2hash); the fragment
/// is kept as written. A string without a scheme may have any path, even `""`,
/// `..` or `evm/AUTOMATE/test1`.
///
/// # Errors
///
/// * a scheme that is not supported: `Unsupported Scheme [abc]`;
/// * a scheme followed by an empty path or a path not starting with `/`
///   (`miqaedb:A/EVM`): `Invalid URI <...>`;
/// * a space or control character in the path, or a control character in the
///   fragment, at its byte offset. The query accepts every character but `#`.
pub fn parse(input: &str) -> Result<Uri, UriError> {
    let trimmed = input.trim_matches(is_strip_char);
    let raw = split_raw(trimmed);
    let at = |part: &str| offset(input, part);

    let scheme = raw
        .scheme
        .map(|name| Scheme::from_name(name).ok_or_else(|| unsupported(at(name), name)))
        .transpose()?;
    if scheme.is_some() && !raw.path.starts_with('/') {
        return Err(UriError::new(
            at(raw.path),
            format!("Invalid URI <{trimmed}>"),
        ));
    }
    check_chars(raw.path, at(raw.path), "path", is_bad_path_byte)?;
    // The query takes any character but `#` (which ends it), as Ruby's RFC
    // 3986 parser does (`(?<query>[^#]*+)`): ManageIQ joins `Array::` values
    // with a raw `\x1F`, and a tab or a space inside a value is kept.
    if let Some(fragment) = raw.fragment {
        check_chars(fragment, at(fragment), "fragment", is_control)?;
    }

    Ok(Uri {
        scheme,
        path: collapse_slashes(raw.path),
        query: raw.query.map(query2hash).unwrap_or_default(),
        fragment: raw.fragment.map(str::to_owned),
    })
}

/// Splits a trimmed string into its raw parts. Every string splits: what
/// is not a scheme is path, query or fragment.
fn split_raw(s: &str) -> RawUri<'_> {
    match components(s) {
        Ok((_, (scheme, path, query, fragment))) => RawUri {
            scheme,
            path,
            query,
            fragment,
        },
        // Unreachable with complete-input parsers that all accept "", but
        // `parse` must never panic: treat the whole string as a path.
        Err(_) => RawUri {
            scheme: None,
            path: s,
            query: None,
            fragment: None,
        },
    }
}

type Parts<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Option<&'a str>);

/// `[scheme:]path[?query][#fragment]`.
fn components(s: &str) -> IResult<&str, Parts<'_>> {
    (
        opt(scheme),
        take_till(|c| c == '?' || c == '#'),
        opt(preceded(char('?'), until_char('#'))),
        opt(preceded(char('#'), rest)),
    )
        .parse(s)
}

/// Everything up to `stop` (or to the end): `take_till`, with `str::find`'s fast
/// single-character search for long queries.
fn until_char(stop: char) -> impl Fn(&str) -> IResult<&str, &str> {
    move |s: &str| {
        let end = s.find(stop).unwrap_or(s.len());
        let (taken, rest) = s.split_at(end);
        Ok((rest, taken))
    }
}

/// RFC 3986 `scheme ":"`: a letter, then letters, digits, `+`, `-` or `.`.
fn scheme(s: &str) -> IResult<&str, &str> {
    terminated(
        recognize((
            satisfy(|c| c.is_ascii_alphabetic()),
            take_while(|c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')),
        )),
        char(':'),
    )
    .parse(s)
}

/// The characters Ruby's `String#strip` removes.
fn is_strip_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r' | '\0')
}

fn is_control(b: u8) -> bool {
    (b < 0x20) | (b == 0x7F)
}

fn is_bad_path_byte(b: u8) -> bool {
    (b <= 0x20) | (b == 0x7F)
}

/// Fails on the first byte of `part` that `bad` rejects. Only ASCII bytes are
/// rejected, so the offending byte is a whole character.
fn check_chars(
    part: &str,
    start: usize,
    what: &str,
    bad: impl Fn(u8) -> bool + Copy,
) -> Result<(), UriError> {
    if !any_byte(part.as_bytes(), bad) {
        return Ok(());
    }
    match part.bytes().position(bad) {
        None => Ok(()),
        Some(i) => {
            let b = part.as_bytes().get(i).copied().unwrap_or_default();
            Err(UriError::new(
                start + i,
                format!("invalid character {:?} in {what}", char::from(b)),
            ))
        }
    }
}

/// Whether any byte satisfies `pred`. Whole 16-byte blocks are tested without
/// branches (so the compiler can use SIMD): the common case is a clean string.
fn any_byte(bytes: &[u8], pred: impl Fn(u8) -> bool + Copy) -> bool {
    let mut blocks = bytes.chunks_exact(16);
    let hit = blocks
        .by_ref()
        .any(|block| match <&[u8; 16]>::try_from(block) {
            Ok(block) => block.iter().fold(false, |acc, &b| acc | pred(b)),
            Err(_) => block.iter().any(|&b| pred(b)),
        });
    hit || blocks.remainder().iter().any(|&b| pred(b))
}

/// Collapses every run of `/` into one; copies the path as it is when it has none.
fn collapse_slashes(path: &str) -> String {
    if !path.contains("//") {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len());
    let mut last_slash = false;
    for c in path.chars() {
        let slash = c == '/';
        if !(slash && last_slash) {
            out.push(c);
        }
        last_slash = slash;
    }
    out
}

/// Byte offset of `part`, a sub-slice of `whole`.
fn offset(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}
