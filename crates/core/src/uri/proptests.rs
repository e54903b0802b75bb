//! Property tests: codec round trips, `parse(Display(uri)) == uri`, and `parse`
//! never panicking.

use proptest::prelude::*;

use super::*;

fn scheme() -> impl Strategy<Value = Option<Scheme>> {
    prop::option::of(prop::sample::select(Scheme::ALL.to_vec()))
}

/// Path segments without `/`, `?`, `#`, `:`, spaces or control characters.
fn segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[A-Za-z0-9_.%*!$()-]{1,8}|[é€日]{1,2}", 0..5)
}

/// A path that `parse` gives back unchanged for this scheme.
fn path(scheme: Option<Scheme>) -> impl Strategy<Value = String> {
    (segments(), any::<bool>(), any::<bool>()).prop_map(move |(segs, leading, trailing)| {
        let mut path = segs.join("/");
        if scheme.is_some() || leading || path.is_empty() && trailing {
            path.insert(0, '/');
        }
        if trailing && !path.ends_with('/') {
            path.push('/');
        }
        path
    })
}

fn fragment() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[^\\x00-\\x20\\x7F]{0,12}( [^\\x00-\\x20\\x7F]{1,4})?")
}

fn uri() -> impl Strategy<Value = Uri> {
    scheme().prop_flat_map(|scheme| {
        (
            path(scheme),
            prop::collection::vec((any::<String>(), any::<String>()), 0..5),
            fragment(),
        )
            .prop_map(move |(path, query, fragment)| Uri {
                scheme,
                path,
                query,
                fragment,
            })
    })
}

/// Strings made of URI punctuation, to reach more of the grammar than random text.
fn uri_like() -> impl Strategy<Value = String> {
    "[ a-zA-Z0-9:/?#&=%+.!\\t\\x00\\x1F]{0,40}"
}

/// The obvious `query2hash`, to check the word-at-a-time one against.
fn naive_query2hash(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

proptest! {
    #[test]
    fn query2hash_matches_naive_split(q in "[a=&%+2Bé\x00\u{80}]{0,40}") {
        prop_assert_eq!(query2hash(&q), naive_query2hash(&q));
    }

    #[test]
    fn query2hash_matches_naive_on_any_string(q in any::<String>()) {
        prop_assert_eq!(query2hash(&q), naive_query2hash(&q));
    }

    #[test]
    fn hash2query_then_query2hash_gives_sorted_pairs(
        pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..8)
    ) {
        let mut sorted = pairs.clone();
        sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        prop_assert_eq!(query2hash(&hash2query(&pairs)), sorted);
    }

    #[test]
    fn query_uri_is_what_parse_makes_of_its_text(
        path in "(/[A-Za-z_.]{1,8}){0,4}",
        pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..8)
    ) {
        let (text, uri) = query_uri(&path, pairs);
        prop_assert_eq!(parse(&text).unwrap(), uri);
    }

    #[test]
    fn url_encode_is_the_percent_encoding_crates(s in any::<String>()) {
        // The reference: every byte but `[A-Za-z0-9_.~-]` as `%XX`.
        use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
        const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'.').remove(b'~').remove(b'-');
        prop_assert_eq!(url_encode(&s), utf8_percent_encode(&s, KEEP).to_string());
    }

    #[test]
    fn url_decode_inverts_url_encode(s in any::<String>()) {
        let encoded = url_encode(&s);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"%_.~-".contains(&b)));
        prop_assert_eq!(url_decode(&encoded), s);
    }

    #[test]
    fn parse_display_round_trip(uri in uri()) {
        let shown = uri.to_string();
        prop_assert_eq!(parse(&shown), Ok(uri), "{}", shown);
    }

    #[test]
    fn parse_never_panics_on_strings(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parsed_uris_survive_display(s in uri_like()) {
        if let Ok(uri) = parse(&s) {
            let shown = uri.to_string();
            prop_assert_eq!(parse(&shown), Ok(uri), "{:?} -> {}", s, shown);
        }
    }

    #[test]
    fn error_positions_are_in_bounds(s in uri_like()) {
        if let Err(e) = parse(&s) {
            prop_assert!(e.position <= s.len());
            prop_assert!(s.is_char_boundary(e.position));
        }
    }

    #[test]
    fn split_path_never_panics(s in "[a-z/.]{0,20}") {
        let parts = split_path(&s);
        let _ = parts.render();
    }

    #[test]
    fn arg_helpers_never_panic(s in "[a-zA-Zé: \\x1F]{0,24}") {
        let _ = classify_arg_key(&s);
        prop_assert_eq!(classify_arg_key_owned(s.clone()), classify_arg_key(&s));
        let _ = split_array_value(&s);
    }
}
