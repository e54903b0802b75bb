//! Signing in and out, and the guard in front of every UI route: a
//! request without a live session is sent to the login form (a 303; an
//! htmx request gets a 401 with `HX-Redirect`), and a state-changing
//! request (any method but GET and HEAD) must carry the session's CSRF
//! token, as the `X-CSRF-Token` header or a `csrf_token` field of an
//! `application/x-www-form-urlencoded` body, else it is refused with 403.
//! A multipart form (an upload) is let through only to the paths of
//! [`MULTIPART_PATHS`], whose handlers read the `csrf_token` field first
//! and refuse the request unless it matches ([`csrf_matches`]).

use crate::page::{html, url_encode, Layout};
use crate::session::{self, SessionInfo};
use crate::UiState;
use askama::Template;
use axum::body::Body;
use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The largest form body the CSRF check reads.
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

/// The CSRF form field and header.
pub const CSRF_FIELD: &str = "csrf_token";
/// The header htmx requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The paths that take a multipart form; their handlers check its
/// `csrf_token` field (the form's first) themselves.
pub const MULTIPART_PATHS: &[&str] = &["/ui/domains/import"];

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
        })
}

/// Paths open without a session.
fn is_open(path: &str) -> bool {
    matches!(path, "/" | "/ui" | "/ui/" | "/ui/login") || path.starts_with("/ui/static/")
}

/// Whether `given` is the session's CSRF token (constant time).
pub fn csrf_matches(session: &SessionInfo, given: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes()))
}

/// Whether `given` is the API token (constant time; an empty token never
/// matches).
fn token_matches(state: &UiState, given: &str) -> bool {
    !state.token().is_empty() && bool::from(given.as_bytes().ct_eq(state.token().as_bytes()))
}

/// Where a request without a session goes: the login form, told where to
/// come back to.
fn to_login(req: &Request) -> Response {
    let back = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/ui");
    let target = format!("/ui/login?next={}", url_encode(back, true));
    if req.headers().contains_key("hx-request") {
        let mut res = (StatusCode::UNAUTHORIZED, "signed out").into_response();
        if let Ok(v) = HeaderValue::from_str("/ui/login") {
            res.headers_mut().insert("hx-redirect", v);
        }
        return res;
    }
    see_other(&target)
}

fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

fn is_urlencoded_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// The `csrf_token` field of an urlencoded body (tokens are hex: no
/// decoding is needed for a valid one).
fn form_field<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn forbidden(session: &SessionInfo) -> Response {
    tracing::warn!(target: "evm", "MIQ(ui) a state-changing request without a valid CSRF token was refused");
    crate::page::error_page(
        StatusCode::FORBIDDEN,
        Some(session),
        "Forbidden",
        "The form did not carry this session's CSRF token, so nothing was changed. Reload the page and try again.",
    )
}

/// The guard in front of every UI route (see the module's doc).
pub(crate) async fn guard(State(state): State<UiState>, mut req: Request, next: Next) -> Response {
    if is_open(req.uri().path()) {
        return next.run(req).await;
    }
    let found = session::cookie_value(req.headers()).and_then(|id| state.sessions().get(&id));
    let Some(session) = found else {
        return to_login(&req);
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let header_token = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match header_token {
            Some(t) => {
                if !csrf_matches(&session, &t) {
                    return forbidden(&session);
                }
            }
            None if is_urlencoded_form(req.headers()) => {
                let (parts, body) = req.into_parts();
                let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
                    Ok(b) => b,
                    Err(_) => {
                        return crate::page::error_page(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            Some(&session),
                            "Form too large",
                            format!("A form may send at most {MAX_FORM_BYTES} bytes."),
                        )
                    }
                };
                let ok = form_field(&bytes, CSRF_FIELD).is_some_and(|t| csrf_matches(&session, t));
                if !ok {
                    return forbidden(&session);
                }
                req = Request::from_parts(parts, Body::from(bytes));
            }
            None if is_multipart(req.headers()) && MULTIPART_PATHS.contains(&req.uri().path()) => {}
            None => return forbidden(&session),
        }
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// `templates/login.html`.
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    error: Option<String>,
    no_token: bool,
}

/// The login form's query.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: `next` when it is a UI page of this
/// service (`/ui...`, not `//host`, not the login form), else the Explorer.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/") || n.starts_with("/ui?"))
                && !n.starts_with("/ui/login")
                && !n.contains('\\')
                && !n.contains("//") =>
        {
            n.to_string()
        }
        _ => "/ui/explorer".to_string(),
    }
}

fn login_page(state: &UiState, next: &str, error: Option<String>, status: StatusCode) -> Response {
    html(
        &LoginPage {
            layout: Layout::new("Log in", None, "/ui/login"),
            next: next.to_string(),
            error,
            no_token: state.token().is_empty(),
        },
        status,
    )
}

/// `GET /ui/login`: the form (or, with a live session, on to `next`).
pub(crate) async fn login_form(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if session::cookie_value(&headers).is_some_and(|id| state.sessions().get(&id).is_some()) {
        return see_other(&next);
    }
    login_page(&state, &next, None, StatusCode::OK)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /ui/login`: the API token opens a session (cookie set, on to
/// `next`); a wrong one answers the form again with 401 after a pause.
pub(crate) async fn login(State(state): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    if state.token().is_empty() {
        return login_page(
            &state,
            &next,
            Some("This service has no API token (api.token), so no one can log in.".into()),
            StatusCode::UNAUTHORIZED,
        );
    }
    if !token_matches(&state, form.token.trim()) {
        tracing::warn!(target: "evm", "MIQ(ui) login refused: invalid token");
        // Slows guessing down.
        tokio::time::sleep(Duration::from_millis(300)).await;
        return login_page(
            &state,
            &next,
            Some("Invalid token: give the API token (api.token, or the token in the service's advertisement file).".into()),
            StatusCode::UNAUTHORIZED,
        );
    }
    let session = match state.sessions().create() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(target: "evm", "MIQ(ui) cannot open a session: {e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot open a session").into_response();
        }
    };
    tracing::info!(target: "evm", "MIQ(ui) login: a session was opened");
    let mut res = see_other(&next);
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&session.id, state.secure_cookie())) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `POST /ui/logout` (CSRF-checked by the guard): ends the session,
/// clears the cookie, back to the login form.
pub(crate) async fn logout(
    State(state): State<UiState>,
    axum::extract::Extension(session): axum::extract::Extension<SessionInfo>,
) -> Response {
    state.sessions().remove(&session.id);
    let mut res = see_other("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(state.secure_cookie())) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_ui() {
        assert_eq!(
            safe_next(Some("/ui/explorer/class/A/B")),
            "/ui/explorer/class/A/B"
        );
        assert_eq!(safe_next(Some("//evil.example/ui")), "/ui/explorer");
        assert_eq!(safe_next(Some("https://evil.example")), "/ui/explorer");
        assert_eq!(safe_next(Some("/ui//evil")), "/ui/explorer");
        assert_eq!(safe_next(Some("/ui/login?next=/ui")), "/ui/explorer");
        assert_eq!(safe_next(None), "/ui/explorer");
    }

    #[test]
    fn the_csrf_field_is_found_in_a_form() {
        assert_eq!(
            form_field(b"a=1&csrf_token=ab12&b=2", CSRF_FIELD),
            Some("ab12")
        );
        assert_eq!(form_field(b"a=1", CSRF_FIELD), None);
    }
}
