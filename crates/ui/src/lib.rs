//! The web UI under `/ui`, served by `automate run` and `automate api` on
//! the API's listener (`/` redirects to `/ui`): server-rendered HTML from
//! compile-time checked `askama` templates, enhanced by a vendored `htmx`
//! embedded in the binary ([`assets`]); every page reads without
//! JavaScript.
//!
//! Signing in takes the API token (the one `X-Auth-Token` carries,
//! compared in constant time) and opens a server-side session
//! ([`session`]) named by an HttpOnly, SameSite=Strict cookie on `/ui`;
//! every page without a session redirects to the login form, and every
//! state-changing request carries the session's CSRF token (a form field
//! `csrf_token` or the `X-CSRF-Token` header htmx sends), else it is
//! refused with 403 ([`auth`]). With no API token configured the UI, like
//! the API, refuses every login.
//!
//! Pages: the Automate Explorer ([`explorer`]: domains by priority, the
//! tree, classes, instances with the domain each value comes from,
//! methods with highlighted source ([`highlight`]), search, and the
//! domains a path resolves through); Simulation ([`simulation`]: an
//! entry point run in a sandbox, its object tree and its trace as a tree
//! of relationships, [`trace_tree`]); the Events ([`events`]: the event
//! stream filtered and live, each event's payload, outcome and Automate
//! trace); Requests and retries ([`requests`]: the requests with their
//! tasks and request events, approve/deny, a new automation request, the
//! scheduled retries); and Domains ([`domains`]: ManageIQ's Import/Export
//! screen). The Explorer also edits instance values and Rhai method
//! bodies in unlocked domains ([`edit`]: validated, written in ManageIQ's
//! layout, reloaded at once). `docs/ui.md` is the user's guide.

#![deny(missing_docs)]

pub mod assets;
mod auth;
pub mod domains;
mod edit;
pub mod events;
pub mod explorer;
pub mod highlight;
mod page;
pub mod requests;
pub mod session;
pub mod simulation;
pub mod trace_tree;

use automate_engine::Engine;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub use page::{NavItem, NAV};

/// What the UI's handlers share: the API token, the engine (its
/// datastore), the API's state when served beside it (the store, the
/// request service, the live events, the reloader: the pages act through
/// the same code as the REST API), the sessions and whether cookies are
/// `Secure`.
#[derive(Clone)]
pub struct UiState {
    token: Arc<str>,
    engine: Engine,
    api: Option<automate_api::ApiState>,
    sessions: Arc<session::Sessions>,
    secure_cookie: bool,
    /// Uploads previewed on the Domains page, awaiting their import.
    stash: Arc<domains::Stash>,
}

impl std::fmt::Debug for UiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiState")
            .field("secure_cookie", &self.secure_cookie)
            .finish_non_exhaustive()
    }
}

impl UiState {
    /// The UI over `engine`, signing in with `token` (the API's token; an
    /// empty one refuses every login, as the API refuses every request).
    pub fn new(token: impl Into<String>, engine: Engine) -> UiState {
        UiState {
            token: Arc::from(token.into()),
            engine,
            api: None,
            sessions: Arc::new(session::Sessions::new(session::SessionLimits::default())),
            secure_cookie: false,
            stash: Arc::new(domains::Stash::default()),
        }
    }

    /// The UI beside the REST API whose state is `api`: the same token and
    /// engine, and the pages that need the store (events, requests,
    /// domains, simulation) act through it.
    pub fn with_api(api: automate_api::ApiState) -> UiState {
        let mut ui = UiState::new(api.token(), api.engine().clone());
        ui.api = Some(api);
        ui
    }

    /// The session cookie is marked `Secure` when the service is reached
    /// over TLS: `api.public_url` starts with `https://` (a TLS proxy in
    /// front; the service itself speaks plain HTTP).
    pub fn with_public_url(self, public_url: Option<&str>) -> UiState {
        let secure = public_url.is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
        self.with_secure_cookie(secure)
    }

    /// Marks the session cookie `Secure` (or not).
    pub fn with_secure_cookie(mut self, secure: bool) -> UiState {
        self.secure_cookie = secure;
        self
    }

    /// Sessions expire after these limits (a new, empty session table).
    pub fn with_session_limits(mut self, limits: session::SessionLimits) -> UiState {
        self.sessions = Arc::new(session::Sessions::new(limits));
        self
    }

    /// The engine whose datastore the pages show.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The API's state, when the UI is served beside the API (always, from
    /// `automate run` and `automate api`; not in the render benchmark).
    pub fn api(&self) -> Option<&automate_api::ApiState> {
        self.api.as_ref()
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn sessions(&self) -> &session::Sessions {
        &self.sessions
    }

    pub(crate) fn secure_cookie(&self) -> bool {
        self.secure_cookie
    }

    pub(crate) fn stash(&self) -> &domains::Stash {
        &self.stash
    }
}

/// The UI's routes: `/` (redirects to `/ui`), `/ui/login`, `/ui/logout`,
/// `/ui/static/*` and the pages, behind the session check and the CSRF
/// check. It has no fallback, so it merges with the API's router
/// ([`mount`]).
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(|| async { Redirect::to("/ui/explorer") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/explorer") }))
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/static/{file}", get(assets::serve))
        .route("/ui/explorer", get(explorer::home))
        .route("/ui/explorer/search", get(explorer::search))
        .route("/ui/explorer/resolve", get(explorer::resolve))
        .route("/ui/explorer/children", get(explorer::children))
        .route("/ui/events", get(events::list_page))
        .route("/ui/events/stream", get(events::stream))
        .route("/ui/events/{id}", get(events::event_page))
        .route("/ui/requests", get(requests::list).post(requests::create))
        .route("/ui/requests/new", get(requests::new_form))
        .route("/ui/requests/{id}", get(requests::request))
        .route("/ui/requests/{id}/approve", post(requests::approve))
        .route("/ui/requests/{id}/deny", post(requests::deny))
        .route("/ui/retries", get(requests::retries))
        .route("/ui/domains", get(domains::page))
        .route(
            "/ui/domains/import",
            post(domains::import).layer(axum::extract::DefaultBodyLimit::max(
                domains::MAX_UPLOAD_BYTES + 64 * 1024,
            )),
        )
        .route("/ui/domains/reload", post(domains::reload))
        .route("/ui/domains/{name}/enable", post(domains::enable))
        .route("/ui/domains/{name}/disable", post(domains::disable))
        .route("/ui/domains/{name}/priority", post(domains::priority))
        .route("/ui/domains/{name}/export", get(domains::export))
        .route("/ui/simulation", get(simulation::page))
        .route("/ui/simulation/objects", get(simulation::objects))
        .route("/ui/simulation/row", get(simulation::row))
        .route(
            "/ui/explorer/{kind}/{*path}",
            get(explorer::node).post(edit::save),
        )
        .route("/ui/{*rest}", get(page::not_found).post(page::not_found))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// `api` (the REST API's router) with the UI's routes beside it: what
/// `automate run` and `automate api` serve.
pub fn mount(api: Router, state: UiState) -> Router {
    router(state).merge(api)
}

/// The headers every UI answer carries: a Content-Security-Policy that
/// allows only this origin's scripts and styles (no inline script), no
/// framing, no MIME sniffing, and no caching of pages (the assets set
/// their own).
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A page that could not be rendered (a template error: a bug): 500 with
/// a short text, the error logged.
pub(crate) fn render_failed(e: askama::Error) -> Response {
    tracing::error!(target: "evm", "MIQ(ui) rendering a page failed: {e}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the page could not be rendered; see evm.log",
    )
        .into_response()
}
