//! The `http` catcher: providers (or scripts) post events to
//! `POST /api/events`.
//!
//! ```text
//! POST /api/events
//! X-Auth-Token: <api.token>
//! Content-Type: application/json
//!
//! {"provider": "rhevm01", "event": {"event_type": "USER_RUN_VM", "timestamp": "2026-01-01T00:00:00Z", ...}}
//! ```
//!
//! The body is one such object or a JSON list of them (at most 1 MiB). The
//! answer is `202 {"accepted": n, "skipped": m}` once every accepted event
//! is durably stored (filtered types are `skipped`), or a JSON error
//! `{"error": {"kind": ..., "message": ...}}`: 401 `unauthorized` (missing
//! or wrong token), 400 `malformed_json` / `invalid_event` (naming the
//! field), 404 `unknown_provider` (no provider of that name takes events
//! over HTTP), 413 `payload_too_large`, 503 `not_stored` (the pipeline
//! refused or lost an event; posting again is safe, stored events are
//! de-duplicated), 503 `store_unavailable` (the object store takes no
//! writes now: its disk is full; nothing was sent) or 504 `timeout`. A rejected request sends nothing
//! downstream: the whole body is checked before the first event is sent.
//!
//! The endpoint is served by the API listener (`api.listen`, `api.token`):
//! [`router`] gives a `Router` the REST API merges (`automate_api::router`).

use super::{AckReceiver, CatcherError, CatcherStats, Ctx, Filter, Offer};
use crate::{Provider, ProviderEvent};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `kind: http` settings: none (the listen address and token are the API's,
/// `api.listen` and `api.token`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {}

/// The largest accepted body.
pub const MAX_BODY: usize = 1 << 20;
/// How long a request waits for its events to be stored.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The token header.
pub const TOKEN_HEADER: &str = "x-auth-token";

/// What the endpoint needs to accept events for one provider (from
/// [`super::Catcher::http_endpoint`]).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The provider: a post's `"provider"` names it.
    pub provider: Arc<Provider>,
    /// Its event types to skip.
    pub filter: Filter,
    /// Where its events go (the pipeline's channel).
    pub out: super::CaughtSender,
    /// Its catcher's counters (shared with [`super::Catcher::stats`]).
    pub stats: Arc<CatcherStats>,
}

/// The endpoint's shared state: the token and the providers that take
/// events over HTTP.
#[derive(Debug, Clone)]
pub struct HttpState {
    token: Arc<str>,
    providers: Arc<HashMap<String, Ctx>>,
    stats: Arc<CatcherStats>,
    shutdown: CancellationToken,
    /// The store the events go to: while it takes no writes (a full
    /// disk), requests are answered 503 `store_unavailable` at once.
    store: Option<Arc<automate_vmdb::health::StoreHealth>>,
}

impl HttpState {
    /// An endpoint with no providers yet. An empty token refuses every
    /// request.
    pub fn new(token: impl Into<String>) -> HttpState {
        HttpState {
            token: Arc::from(token.into()),
            providers: Arc::new(HashMap::new()),
            stats: Arc::new(CatcherStats::default()),
            shutdown: CancellationToken::new(),
            store: None,
        }
    }

    /// Accepts events for this provider (by its `name`).
    pub fn add(&mut self, ep: Endpoint) -> &mut HttpState {
        let ctx = Ctx {
            provider: ep.provider,
            filter: ep.filter,
            out: ep.out,
            stats: ep.stats,
            resume: None,
            ops: None,
        };
        Arc::make_mut(&mut self.providers).insert(ctx.provider.name.clone(), ctx);
        self
    }

    /// Shorthand for [`HttpState::add`].
    pub fn with_provider(
        mut self,
        provider: Arc<Provider>,
        filter: Filter,
        out: super::CaughtSender,
    ) -> HttpState {
        self.add(Endpoint {
            provider,
            filter,
            out,
            stats: Arc::new(CatcherStats::default()),
        });
        self
    }

    /// Requests rejected before reaching a provider (401, 400, 404, 413).
    pub fn stats(&self) -> Arc<CatcherStats> {
        self.stats.clone()
    }

    /// The names of the providers that take events over HTTP (in no
    /// order).
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// Requests are answered 503 `store_unavailable` while this store
    /// takes no writes (a full disk, a failed write).
    pub fn set_store_health(&mut self, health: Arc<automate_vmdb::health::StoreHealth>) {
        self.store = Some(health);
    }

    /// Requests waiting for room in the pipeline give up (503) when this
    /// token is cancelled.
    pub fn set_shutdown(&mut self, shutdown: CancellationToken) {
        self.shutdown = shutdown;
    }
}

/// `POST /api/events`, ready to be merged into the REST API router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/api/events", post(post_events).fallback(wrong_method))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A JSON error response.
pub fn error_response(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"kind": kind, "message": message.into()}});
    (status, Json(body)).into_response()
}

/// Whether `given` (an `X-Auth-Token` header) is `token`, compared in
/// constant time (`subtle`): the time taken says nothing about how much of
/// the token matched (only whether the lengths differ).
pub fn token_matches(given: &[u8], token: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(given.ct_eq(token))
}

fn unauthorized(state: &HttpState, headers: &HeaderMap) -> Option<Response> {
    let message = if state.token.is_empty() {
        "the API has no token configured (api.token); every request is refused"
    } else {
        match headers.get(TOKEN_HEADER) {
            None => "missing X-Auth-Token header",
            Some(v) if token_matches(v.as_bytes(), state.token.as_bytes()) => return None,
            Some(_) => "invalid X-Auth-Token",
        }
    };
    Some(error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        message,
    ))
}

/// A checked request item.
struct Item {
    ctx: Ctx,
    event: ProviderEvent,
}

/// The JSON type of a value, for error messages (also the REST API's).
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks a `ProviderEvent` object field by field so the error names the
/// field.
fn check_event(path: &str, v: &Value) -> Result<ProviderEvent, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{path}: expected an object, got {}", kind_of(v)));
    };
    for field in ["event_type", "timestamp"] {
        match obj.get(field) {
            None | Some(Value::Null) => return Err(format!("{path}.{field}: missing")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(format!("{path}.{field}: empty"))
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "{path}.{field}: expected a string, got {}",
                    kind_of(other)
                ))
            }
        }
    }
    for field in [
        "chain_id",
        "vm_ems_ref",
        "vm_name",
        "host_ems_ref",
        "host_name",
    ] {
        match obj.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "{path}.{field}: expected a string or null, got {}",
                    kind_of(other)
                ))
            }
        }
    }
    let mut ev: ProviderEvent =
        serde_json::from_value(Value::Object(obj.clone())).map_err(|e| format!("{path}: {e}"))?;
    ev.timestamp =
        super::normalise_timestamp(&ev.timestamp).map_err(|e| format!("{path}.timestamp: {e}"))?;
    Ok(ev)
}

fn check_item(state: &HttpState, path: &str, v: &Value) -> Result<Item, Box<Response>> {
    let bad = |m: String| Box::new(error_response(StatusCode::BAD_REQUEST, "invalid_event", m));
    let Some(obj) = v.as_object() else {
        return Err(bad(format!(
            "{}: expected an object with provider and event, got {}",
            if path.is_empty() { "body" } else { path },
            kind_of(v)
        )));
    };
    let dot = if path.is_empty() { "" } else { "." };
    let name = match obj.get("provider") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(bad(format!("{path}{dot}provider: missing"))),
        Some(other) => {
            return Err(bad(format!(
                "{path}{dot}provider: expected a string, got {}",
                kind_of(other)
            )))
        }
    };
    let event = match obj.get("event") {
        Some(e) => check_event(&format!("{path}{dot}event"), e).map_err(bad)?,
        None => return Err(bad(format!("{path}{dot}event: missing"))),
    };
    let Some(ctx) = state.providers.get(name) else {
        return Err(Box::new(error_response(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("{path}{dot}provider: no provider [{name}] takes events over HTTP"),
        )));
    };
    Ok(Item {
        ctx: ctx.clone(),
        event,
    })
}

async fn post_events(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let reject = |r: Response| {
        state.stats.problem(format!("HTTP {}", r.status().as_u16()));
        r
    };
    if let Some(r) = unauthorized(&state, &headers) {
        return reject(r);
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return reject(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY} bytes"),
            ))
        }
        Err(e) => {
            return reject(error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the body: {}", e.body_text()),
            ))
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reject(error_response(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            ))
        }
    };
    let mut items = Vec::new();
    match &value {
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                match check_item(&state, &format!("[{i}]"), v) {
                    Ok(item) => items.push(item),
                    Err(r) => return reject(*r),
                }
            }
        }
        v => match check_item(&state, "", v) {
            Ok(item) => items.push(item),
            Err(r) => return reject(*r),
        },
    }
    deliver(&state, items).await
}

async fn wrong_method() -> Response {
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "/api/events takes POST",
    );
    r.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static("POST"),
    );
    r
}

fn timeout_response() -> Response {
    error_response(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        format!(
            "the events were not confirmed stored within {} s; posting again is safe",
            ACK_TIMEOUT.as_secs()
        ),
    )
}

/// Sends every item and waits for all durability answers, within
/// [`ACK_TIMEOUT`] in all.
async fn deliver(state: &HttpState, items: Vec<Item>) -> Response {
    if let Some(fault) = state.store.as_ref().and_then(|h| h.fault()) {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!(
                "the object store takes no events now ({}: {}); nothing was stored, post again later",
                fault.state, fault.message
            ),
        );
    }
    let total = items.len();
    let mut waits: Vec<(Arc<CatcherStats>, AckReceiver)> = Vec::new();
    let mut skipped = 0usize;
    let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
    for item in items {
        let offer = item.ctx.offer(item.event, true, &state.shutdown);
        let Ok(offer) = tokio::time::timeout_at(deadline, offer).await else {
            return timeout_response();
        };
        match offer {
            Offer::Skipped => skipped += 1,
            Offer::Sent(Some(rx)) => waits.push((item.ctx.stats.clone(), rx)),
            Offer::Sent(None) => {}
            Offer::Cancelled | Offer::Closed => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_stored",
                    "the event pipeline is shutting down",
                )
            }
        }
    }
    let sent = waits.len();
    let all = async {
        let mut failed: Vec<String> = Vec::new();
        for (stats, rx) in waits {
            let answer = rx.await;
            let ok = matches!(answer, Ok(Ok(())));
            CatcherStats::bump(if ok { &stats.acked } else { &stats.nacked });
            match answer {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(e),
                Err(_) => failed.push("the pipeline dropped the event".into()),
            }
        }
        failed
    };
    // The store stops taking writes meanwhile (a full disk): answer now
    // rather than keep the client waiting for space.
    let store = state.store.clone();
    let store_down = async move {
        match store {
            Some(h) => {
                while h.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                h.fault()
            }
            None => std::future::pending().await,
        }
    };
    let answered = tokio::select! {
        a = tokio::time::timeout_at(deadline, all) => a,
        fault = store_down => {
            let why = fault.map(|f| format!("{}: {}", f.state, f.message)).unwrap_or_default();
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the object store stopped taking writes ({why}); the events may not be stored, post again later (stored events are de-duplicated)"),
            );
        }
    };
    match answered {
        Err(_) => timeout_response(),
        Ok(failed) if failed.is_empty() => (
            StatusCode::ACCEPTED,
            Json(json!({"accepted": sent, "skipped": skipped})),
        )
            .into_response(),
        Ok(failed) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_stored",
            format!(
                "{} of {total} events were not stored: {}",
                failed.len(),
                failed[0]
            ),
        ),
    }
}

/// A built `http` catcher: its endpoint lives on the API listener, so
/// running it only waits for shutdown.
#[derive(Clone)]
pub(crate) struct HttpCatcher;

impl HttpConfig {
    pub(crate) fn build(&self, _ctx: &Ctx) -> Result<HttpCatcher, CatcherError> {
        Ok(HttpCatcher)
    }
}

impl HttpCatcher {
    pub(crate) async fn run(
        self,
        _ctx: Ctx,
        shutdown: CancellationToken,
    ) -> Result<(), CatcherError> {
        shutdown.cancelled().await;
        Ok(())
    }
}
