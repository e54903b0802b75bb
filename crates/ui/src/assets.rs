//! The UI's static files, embedded in the binary: the vendored, minified
//! htmx (`assets/htmx-<version>.min.js`, BSD-2-Clause, `assets/htmx-LICENSE`),
//! the stylesheet and the Events page's live updates (`assets/events.js`). Each is served under a name carrying a hash of its
//! bytes (`/ui/static/htmx-2.0.11-<hash>.min.js`), so it can be cached
//! for a year (`immutable`): a new build with other bytes has another URL.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The htmx version vendored.
pub const HTMX_VERSION: &str = "2.0.11";

const HTMX: &[u8] = include_bytes!("../assets/htmx-2.0.11.min.js");
const CSS: &[u8] = include_bytes!("../assets/automate.css");
const EVENTS_JS: &[u8] = include_bytes!("../assets/events.js");

/// FNV-1a (64 bits) of `bytes`, at compile time: the assets' URL hash.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

const HTMX_HASH: u64 = fnv1a(HTMX);
const CSS_HASH: u64 = fnv1a(CSS);
const EVENTS_JS_HASH: u64 = fnv1a(EVENTS_JS);

/// The URL of the embedded htmx.
pub fn htmx_url() -> String {
    format!("/ui/static/htmx-{HTMX_VERSION}-{:016x}.min.js", HTMX_HASH)
}

/// The URL of the embedded stylesheet.
pub fn css_url() -> String {
    format!("/ui/static/automate-{:016x}.css", CSS_HASH)
}

/// The URL of the Events page's script.
pub fn events_js_url() -> String {
    format!("/ui/static/events-{:016x}.js", EVENTS_JS_HASH)
}

/// `GET /ui/static/{file}`: an embedded file by its hashed name (no
/// session needed); any other name is a 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = if format!("/ui/static/{file}") == htmx_url() {
        (HTMX, "text/javascript; charset=utf-8")
    } else if format!("/ui/static/{file}") == css_url() {
        (CSS, "text/css; charset=utf-8")
    } else if format!("/ui/static/{file}") == events_js_url() {
        (EVENTS_JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_urls_carry_the_bytes_hash() {
        assert!(htmx_url().starts_with("/ui/static/htmx-2.0.11-"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(HTMX), fnv1a(CSS));
        assert!(events_js_url().starts_with("/ui/static/events-"));
        assert!(HTMX.starts_with(b"var htmx="));
    }
}
