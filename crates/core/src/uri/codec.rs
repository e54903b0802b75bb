//! Query codecs: `ERB::Util.url_encode`, `CGI.unescape`, `MiqAeUri.hash2query`
//! and `MiqAeUri.query2hash`.

/// `ERB::Util.url_encode`: every byte of the UTF-8 form except `[A-Za-z0-9_.~-]`
/// becomes `%XX` with upper-case hex (`::` → `%3A%3A`, space → `%20`, `/` → `%2F`).
///
/// (Rubies before 2.5 also encoded `~`; current ones, and this, keep it.)
pub fn url_encode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + s.len() / 4);
    push_encoded(&mut out, s);
    // Every byte written is ASCII.
    String::from_utf8(out).unwrap_or_default()
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
        let next = rest
            .iter()
            .position(|&b| is_escape(b))
            .unwrap_or(rest.len());
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
    encode_query(order.into_iter())
}

/// `k=v&k=v` of pairs in the order given, keys and values [`url_encode`]d.
pub(super) fn encode_query<'a>(
    pairs: impl ExactSizeIterator<Item = &'a (String, String)> + Clone,
) -> String {
    let raw: usize = pairs.clone().map(|(k, v)| k.len() + v.len() + 2).sum();
    // Room for some escapes (`::` → `%3A%3A`) without growing.
    let mut out = Vec::with_capacity(raw + raw / 4);
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        push_encoded(&mut out, k);
        out.push(b'=');
        push_encoded(&mut out, v);
    }
    // Every byte written is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// [`url_encode`] of `s`, appended to `out` byte by byte.
fn push_encoded(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b'-') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
        }
    }
}

/// `path?<hash2query(pairs)>` and the [`Uri`](super::Uri) that
/// [`parse`](super::parse) would make of it, without parsing: the pairs
/// sorted as `hash2query` sorts them (decoding the encoded query gives them
/// back as they were). For a `path` as the engine's delivery paths are:
/// no scheme, no `?`, `#`, `//`, spaces or control characters.
pub fn query_uri(path: &str, mut pairs: Vec<(String, String)>) -> (String, super::Uri) {
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let text = format!("{path}?{}", encode_query(pairs.iter()));
    let uri = super::Uri {
        scheme: None,
        path: path.to_owned(),
        query: pairs,
        fragment: None,
    };
    (text, uri)
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
    // A guess that avoids a counting pass: pairs of ~24 bytes or more, as in
    // delivery URIs (their pairs average ~30).
    let mut pairs = Vec::with_capacity(q.len() / 24 + 1);
    let mut piece = Piece::at(0);
    for (at, byte) in Specials::new(q.as_bytes()) {
        match byte {
            b'&' => {
                piece.push_to(q, at, &mut pairs);
                piece = Piece::at(at + 1);
            }
            b'=' if piece.eq.is_none() => piece.eq = Some(at),
            b'=' => {}
            _ => piece.saw_escape(at),
        }
    }
    piece.push_to(q, q.len(), &mut pairs);
    pairs
}

/// The bytes that matter to [`query2hash`].
const QUERY_SPECIALS: [u8; 4] = [b'&', b'=', b'%', b'+'];

/// The positions and values of the [`QUERY_SPECIALS`] in a byte string, found
/// eight bytes at a time.
struct Specials<'a> {
    bytes: &'a [u8],
    /// Offset of the word `mask` describes.
    base: usize,
    /// Offset of the next word to load.
    next: usize,
    /// The high bit of each special byte of the current word not yet returned.
    mask: u64,
}

impl<'a> Specials<'a> {
    fn new(bytes: &'a [u8]) -> Specials<'a> {
        Specials {
            bytes,
            base: 0,
            next: 0,
            mask: 0,
        }
    }

    /// Loads the next word (zero-padded at the end); `false` past the end.
    fn load(&mut self) -> bool {
        let Some(rest) = self.bytes.get(self.next..).filter(|r| !r.is_empty()) else {
            return false;
        };
        let word = match rest.get(..8).map(<[u8; 8]>::try_from) {
            Some(Ok(word)) => word,
            _ => {
                let mut word = [0u8; 8];
                word.iter_mut().zip(rest).for_each(|(w, &b)| *w = b);
                word
            }
        };
        self.base = self.next;
        self.next += 8;
        self.mask = special_bytes(u64::from_le_bytes(word));
        true
    }
}

impl Iterator for Specials<'_> {
    type Item = (usize, u8);

    fn next(&mut self) -> Option<(usize, u8)> {
        while self.mask == 0 {
            if !self.load() {
                return None;
            }
        }
        let at = self.base + (self.mask.trailing_zeros() / 8) as usize;
        self.mask &= self.mask - 1;
        self.bytes.get(at).map(|&b| (at, b))
    }
}

/// The high bit of every byte of `word` that is one of the [`QUERY_SPECIALS`]:
/// an exact (carry-free) "is this byte zero" test on the word xor each special.
fn special_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let zero_bytes = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
    QUERY_SPECIALS.iter().fold(0, |acc, &c| {
        acc | zero_bytes(word ^ (0x0101_0101_0101_0101 * u64::from(c)))
    })
}

/// What one pass over a `key[=value]` piece of a query has seen so far: byte
/// offsets into the query, so that each side is copied or decoded once.
struct Piece {
    start: usize,
    eq: Option<usize>,
    key_escape: Option<usize>,
    value_escape: Option<usize>,
}

impl Piece {
    fn at(start: usize) -> Piece {
        Piece {
            start,
            eq: None,
            key_escape: None,
            value_escape: None,
        }
    }

    /// Records the first `%` or `+` of the key or the value.
    fn saw_escape(&mut self, i: usize) {
        let slot = match self.eq {
            None => &mut self.key_escape,
            Some(_) => &mut self.value_escape,
        };
        slot.get_or_insert(i);
    }

    /// Decodes the piece ending at `end` into `pairs`, unless it is empty.
    fn push_to(&self, q: &str, end: usize, pairs: &mut Vec<(String, String)>) {
        if end == self.start {
            return;
        }
        let key_end = self.eq.unwrap_or(end);
        let key = decode_part(q, self.start, key_end, self.key_escape);
        let value = match self.eq {
            Some(eq) => decode_part(q, eq + 1, end, self.value_escape),
            None => String::new(),
        };
        pairs.push((key, value));
    }
}

/// `q[start..end]`, decoded from its first escape at `escape` if it has one.
/// The bounds sit next to ASCII `&`, `=` or the ends, so they are character
/// boundaries.
fn decode_part(q: &str, start: usize, end: usize, escape: Option<usize>) -> String {
    let part = q.get(start..end).unwrap_or_default();
    match escape {
        None => part.to_owned(),
        Some(at) => decode_from(part, at.saturating_sub(start)),
    }
}
