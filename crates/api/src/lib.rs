//! The REST API, ManageIQ style, under `/api` (axum): automation requests,
//! the event stream, the Automate datastore (browse and resolve), the VMs,
//! hosts and providers of the object store, liveness, the `http`
//! catcher's `POST /api/events` merged in, and `GET /metrics` (Prometheus'
//! text format, beside `/api`).
//!
//! Every request but `GET /api/health` (and `GET /metrics` with
//! `api.metrics_public`) carries `X-Auth-Token: <api.token>`.
//! Answers are JSON (but `/metrics`); errors are `{"error": {"kind": ..., "message": ...}}`
//! with the matching status (401, 400, 404, 405, 409, 413, 500).
//! [`ROUTES`] is the one table of endpoints: [`router`] is built from it and
//! a test checks `docs/api.yaml` describes exactly the same set.
//! `docs/api.md` is the user's guide.

#![deny(missing_docs)]

mod automate;
mod batch;
mod cluster;
mod collection;
pub mod db;
pub mod dead_letters;
mod describe;
mod domains;
mod eventtrace;
mod export;
mod import;
mod metrics;
mod objects;
mod reload;
mod requests;
mod retries;
mod run;
mod send;
mod server;
mod tags;

pub use run::{simulate, Simulate, Simulated};
pub use server::serve_with;

// What the web UI (`automate-ui`) calls to act as the REST API does: the
// handlers' cores, taking the API's state.
pub use automate_requests::{NewRequest, RequestView, TaskView};
pub use domains::change_domain;
pub use export::export_domain;
pub use import::{import_domain, preview_import, ImportSource, Imported};
pub use reload::reload_datastore;
pub use requests::{
    create_request, decide, parse_request, request, request_events, requests_page, RequestEventRow,
};
pub use retries::{scheduled_retries, RetryView};

use automate_engine::Engine;
use automate_events::catchers::http::{self, error_response, kind_of, HttpState, TOKEN_HEADER};
use automate_events::config::{check_public_url, ApiConfig, ApiLimits};
use automate_events::queue::{EventQueue, EVENT_KIND};
use automate_requests::Requests;
use automate_vmdb::dead_letter::DeadLetters;
use automate_vmdb::served::ServedStore;
use automate_vmdb::Schedule;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What an endpoint does (the handler [`router`] mounts for a [`Route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/health`: liveness, the event queue's depth and the object
    /// store's health; no token.
    Health,
    /// `GET /api/cluster`: the nodes, leases and queue of the cluster
    /// (`automate cluster status`).
    Cluster,
    /// `POST /api/events`: served by the `http` catcher's router.
    Events,
    /// `GET /api/automation_requests`: a page of the automation requests.
    ListRequests,
    /// `POST /api/automation_requests`: ManageIQ's
    /// `AutomationRequest.create_from_ws` (a body, or a `create` action of
    /// `resources`).
    CreateRequest,
    /// `GET /api/automation_requests/{id}`: one request, with its tasks.
    GetRequest,
    /// `POST /api/automation_requests/{id}`: the `approve` or `deny`
    /// action.
    RequestAction,
    /// `GET /api/provision_requests`: a page of the provisioning requests
    /// (`MiqProvisionRequest`).
    ListProvisionRequests,
    /// `GET /api/provision_requests/{id}`: one provisioning request, with
    /// its `MiqProvision` tasks.
    GetProvisionRequest,
    /// `POST /api/provision_requests/{id}`: the `approve` or `deny` action.
    ProvisionRequestAction,
    /// `GET /api/requests`: a page of every request (automation and
    /// provisioning, by `type`).
    ListAllRequests,
    /// `GET /api/requests/{id}`: one request of either kind.
    GetAnyRequest,
    /// `POST /api/requests/{id}`: the `approve` or `deny` action on a
    /// request of either kind.
    AnyRequestAction,
    /// `GET /api/event_streams`: the stored events (EmsEvent, MiqEvent,
    /// RequestEvent, DeadLetterEvent rows) by `type` and `since`, paged.
    EventStreams,
    /// `GET /api/event_streams/{id}`: one stored event.
    EventStream,
    /// `GET /api/event_streams/{id}/trace`: the event's delivery record
    /// (outcome, trace, digest).
    EventTrace,
    /// `GET /api/events/stream`: the handled events, live (server-sent
    /// events).
    LiveEvents,
    /// `GET /api/automate`: the datastore's domains, highest priority
    /// first.
    Domains,
    /// `GET /api/automate/{path}`: a domain, namespace, class or instance.
    Browse,
    /// `POST /api/automate/{path}`: the `resolve` action, the engine run on
    /// the path.
    Resolve,
    /// `GET /api/vms`: a page of the store's `VmOrTemplate` objects.
    Vms,
    /// `GET /api/vms/{id}`: one `VmOrTemplate`.
    Vm,
    /// `GET /api/vms/{id}/tags`: the VM's tags.
    VmTags,
    /// `GET /api/vms/{id}/custom_attributes`: the VM's custom attributes.
    VmCustomAttributes,
    /// `GET /api/categories`: the tag categories (`Classification`).
    Categories,
    /// `GET /api/tags`: the tags (the categories' entries).
    Tags,
    /// `GET /api/categories/{id}`: one category.
    Category,
    /// `GET /api/tags/{id}`: one tag.
    Tag,
    /// `GET /api/hosts`: a page of the store's `Host` objects.
    Hosts,
    /// `GET /api/notifications`: a page of the notifications methods made
    /// (`evm.create_notification`).
    Notifications,
    /// `GET /api/notifications/{id}`: one notification.
    Notification,
    /// `GET /api/hosts/{id}`: one `Host`.
    Host,
    /// `GET /api/services`: a page of the store's `Service` objects.
    Services,
    /// `GET /api/services/{id}`: one `Service`.
    Service,
    /// `GET /api/services/{id}/vms`: the VMs of the service and of the
    /// services below it (ManageIQ's `service.vms`).
    ServiceVms,
    /// `GET /api/providers`: a page of the store's `ExtManagementSystem`
    /// objects.
    Providers,
    /// `GET /api/providers/{id}`: one `ExtManagementSystem`.
    Provider,
    /// `GET /api/provider_operations`: a page of the provider operations
    /// (`MiqQueue` messages of the `ems_operations` role, `vm.stop()`...).
    ProviderOperations,
    /// `GET /api/provider_operations/{id}`: one provider operation.
    ProviderOperation,
    /// `POST /api/db/backup`: a consistent copy of the store's file,
    /// streamed back ([`db`]).
    DbBackup,
    /// `GET /api/retries`: the scheduled state-machine retries.
    Retries,
    /// `POST /api/retries`: the `run_due` action.
    RetriesAction,
    /// `GET /api/retries/{id}`: one scheduled retry.
    Retry,
    /// `POST /api/automate`: the `instantiate` and `run_method` actions.
    AutomateAction,
    /// `POST /api/event_streams`: the `send` action (one event through the
    /// handler and Automate now).
    SendEvent,
    /// `POST /api/automate_domains/import`: a domain uploaded as a zip,
    /// imported and the datastore reloaded.
    ImportDomain,
    /// `POST /api/automate_domains/export`: a domain as a zip.
    ExportDomain,
    /// `POST /api/automate_domains` with `{"action": "reload"}`: reloads
    /// the datastore, its methods and the control policies (all-or-nothing)
    /// and answers the [`automate_datastore::ReloadReport`].
    ReloadDomains,
    /// `GET /api`: the entry point (name, version, the collections with
    /// their `href`s).
    Entry,
    /// `GET /api/openapi.json`: `docs/api.yaml` as JSON.
    OpenApi,
    /// `GET /api/automate_domains`: the datastore's domains as a
    /// collection.
    AutomateDomains,
    /// `GET /api/automate_domains/{id}`: one domain (its name is its id).
    AutomateDomain,
    /// `POST /api/automate_domains/{id}`: the `enable`, `disable` or
    /// `set_priority` action.
    AutomateDomainAction,
    /// `GET /metrics`: the service's metrics in Prometheus' text format;
    /// no token when `api.metrics_public` is set.
    Metrics,
    /// `GET /api/dead_letters`: the dead-lettered events not yet retried.
    DeadLetters,
    /// `POST /api/dead_letters`: the `retry` action.
    DeadLettersAction,
}

/// One endpoint: method, path (OpenAPI syntax: `{id}`; `{path}` in
/// `/api/automate/{path}` spans several segments) and handler.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET`, `POST`, `PUT` or `DELETE` (upper case).
    pub method: &'static str,
    /// The path as `docs/api.yaml` writes it: `/api/vms/{id}`.
    pub path: &'static str,
    /// What answers it.
    pub endpoint: Endpoint,
}

const fn r(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Every endpoint of the API. `docs/api.yaml` lists the same (method,
/// path) pairs (a test checks it).
pub const ROUTES: &[Route] = &[
    r("GET", "/api/health", Endpoint::Health),
    r("GET", "/api/cluster", Endpoint::Cluster),
    r("POST", "/api/events", Endpoint::Events),
    r("GET", "/api/automation_requests", Endpoint::ListRequests),
    r("POST", "/api/automation_requests", Endpoint::CreateRequest),
    r("GET", "/api/automation_requests/{id}", Endpoint::GetRequest),
    r(
        "POST",
        "/api/automation_requests/{id}",
        Endpoint::RequestAction,
    ),
    r(
        "GET",
        "/api/provision_requests",
        Endpoint::ListProvisionRequests,
    ),
    r(
        "GET",
        "/api/provision_requests/{id}",
        Endpoint::GetProvisionRequest,
    ),
    r(
        "POST",
        "/api/provision_requests/{id}",
        Endpoint::ProvisionRequestAction,
    ),
    r("GET", "/api/requests", Endpoint::ListAllRequests),
    r("GET", "/api/requests/{id}", Endpoint::GetAnyRequest),
    r("POST", "/api/requests/{id}", Endpoint::AnyRequestAction),
    r("GET", "/api/event_streams", Endpoint::EventStreams),
    r("GET", "/api/event_streams/{id}", Endpoint::EventStream),
    r("GET", "/api/event_streams/{id}/trace", Endpoint::EventTrace),
    r("GET", "/api/events/stream", Endpoint::LiveEvents),
    r("GET", "/api/automate", Endpoint::Domains),
    r("GET", "/api/automate/{path}", Endpoint::Browse),
    r("POST", "/api/automate/{path}", Endpoint::Resolve),
    r("GET", "/metrics", Endpoint::Metrics),
    r("GET", "/api/vms", Endpoint::Vms),
    r("GET", "/api/vms/{id}", Endpoint::Vm),
    r("GET", "/api/vms/{id}/tags", Endpoint::VmTags),
    r(
        "GET",
        "/api/vms/{id}/custom_attributes",
        Endpoint::VmCustomAttributes,
    ),
    r("GET", "/api/categories", Endpoint::Categories),
    r("GET", "/api/tags", Endpoint::Tags),
    r("GET", "/api/categories/{id}", Endpoint::Category),
    r("GET", "/api/tags/{id}", Endpoint::Tag),
    r("GET", "/api/hosts", Endpoint::Hosts),
    r("GET", "/api/hosts/{id}", Endpoint::Host),
    r("GET", "/api/notifications", Endpoint::Notifications),
    r("GET", "/api/notifications/{id}", Endpoint::Notification),
    r("GET", "/api/services", Endpoint::Services),
    r("GET", "/api/services/{id}", Endpoint::Service),
    r("GET", "/api/services/{id}/vms", Endpoint::ServiceVms),
    r("GET", "/api/providers", Endpoint::Providers),
    r("GET", "/api/providers/{id}", Endpoint::Provider),
    r(
        "GET",
        "/api/provider_operations",
        Endpoint::ProviderOperations,
    ),
    r(
        "GET",
        "/api/provider_operations/{id}",
        Endpoint::ProviderOperation,
    ),
    r("POST", "/api/db/backup", Endpoint::DbBackup),
    r("GET", "/api/retries", Endpoint::Retries),
    r("POST", "/api/retries", Endpoint::RetriesAction),
    r("GET", "/api/retries/{id}", Endpoint::Retry),
    r("POST", "/api/automate", Endpoint::AutomateAction),
    r("POST", "/api/event_streams", Endpoint::SendEvent),
    r(
        "POST",
        "/api/automate_domains/import",
        Endpoint::ImportDomain,
    ),
    r(
        "POST",
        "/api/automate_domains/export",
        Endpoint::ExportDomain,
    ),
    r("POST", "/api/automate_domains", Endpoint::ReloadDomains),
    r("GET", "/api", Endpoint::Entry),
    r("GET", "/api/openapi.json", Endpoint::OpenApi),
    r("GET", "/api/automate_domains", Endpoint::AutomateDomains),
    r(
        "GET",
        "/api/automate_domains/{id}",
        Endpoint::AutomateDomain,
    ),
    r(
        "POST",
        "/api/automate_domains/{id}",
        Endpoint::AutomateDomainAction,
    ),
    r("GET", "/api/dead_letters", Endpoint::DeadLetters),
    r("POST", "/api/dead_letters", Endpoint::DeadLettersAction),
];

/// Where `GET /api/health` reads the event queue's depth.
#[derive(Clone)]
enum Depth {
    /// The running pipeline's queue (counted in memory).
    Queue(Arc<dyn EventQueue>),
    /// No pipeline in this process: count the queued events in the store.
    Stored(Arc<dyn Schedule>),
}

/// What the handlers share: the token, the engine (datastore and object
/// store), the store itself and the request service.
#[derive(Clone)]
pub struct ApiState {
    token: Arc<str>,
    engine: Engine,
    store: Arc<dyn ServedStore>,
    requests: Arc<Requests>,
    /// Held from an approval's read to its unit's commit: `Requests`'
    /// own lock ends when the transition is written into the unit, before
    /// the unit commits, so two concurrent approvals could both read
    /// `pending_approval`.
    approvals: Arc<std::sync::Mutex<()>>,
    /// The lock for VMs and hosts seen for the first time, shared with
    /// the pipeline's workers when one runs beside the API.
    first_sight: automate_events::FirstSight,
    batcher: Arc<batch::Batcher>,
    depth: Depth,
    /// `api.limits`.
    limits: Arc<ApiLimits>,
    /// What every `href` starts with: `api.public_url`, or empty (paths).
    public_url: Arc<str>,
    /// Reloads the datastore on demand; its last report is on `/api/health`.
    reloader: Option<Arc<dyn automate_datastore::Reload>>,
    /// What `GET /metrics` serves; it also counts the requests.
    metrics: automate_events::Metrics,
    /// `api.metrics_public`: `GET /metrics` without the token.
    metrics_public: bool,
    /// The dead letters `/api/dead_letters` lists and retries (none: an
    /// empty list, and a retry is a 409).
    dead_letters: Option<Arc<dyn DeadLetters>>,
    /// What `GET /api/cluster` answers.
    cluster: ClusterSource,
    /// The handled events `GET /api/events/stream` shows (the pipeline's,
    /// and those `event send` handles).
    live: automate_events::trace::LiveEvents,
    /// `events.trace`, for the events `event send` handles.
    trace: automate_events::trace::TraceConfig,
    /// Cancelled when the service stops: the live streams end.
    shutdown: CancellationToken,
}

/// The view `GET /api/cluster` answers, and whether the composition root
/// gave it (else: the embedded default, this API as the one node).
#[derive(Clone)]
struct ClusterSource {
    view: Arc<dyn automate_vmdb::cluster::ClusterView>,
    given: bool,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The API over `engine`, whose object store is `store`, with its
    /// request writer threads (see `batch`). An empty token refuses every
    /// request (but `/api/health`).
    pub fn new(
        token: impl Into<String>,
        engine: Engine,
        store: Arc<dyn ServedStore>,
    ) -> std::io::Result<ApiState> {
        let schedule = store.scheduled_work();
        let requests = Arc::new(Requests::new(engine.clone(), schedule.clone()));
        let writers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 4);
        let batcher = batch::Batcher::start(store.clone(), requests.clone(), writers)?;
        let metrics = automate_events::Metrics::new();
        metrics.watch_schedule(schedule.clone());
        Ok(ApiState {
            token: Arc::from(token.into()),
            requests,
            batcher: Arc::new(batcher),
            engine,
            store,
            depth: Depth::Stored(schedule),
            limits: Arc::new(ApiLimits::default()),
            public_url: Arc::from(""),
            reloader: None,
            approvals: Arc::new(std::sync::Mutex::new(())),
            first_sight: automate_events::FirstSight::default(),
            metrics,
            metrics_public: false,
            dead_letters: None,
            cluster: ClusterSource {
                view: Arc::new(automate_vmdb::cluster::EmbeddedCluster::new("")),
                given: false,
            },
            live: automate_events::trace::LiveEvents::default(),
            trace: automate_events::trace::TraceConfig::default(),
            shutdown: CancellationToken::new(),
        })
    }

    /// The API configured by `api`: its limits and `public_url` (the
    /// token is [`ApiState::new`]'s). Fails on a `public_url` that is not
    /// an http(s) URL.
    pub fn with_config(mut self, api: &ApiConfig) -> std::io::Result<ApiState> {
        let url = match &api.public_url {
            Some(u) => check_public_url(u).map_err(std::io::Error::other)?,
            None => String::new(),
        };
        self.public_url = Arc::from(url);
        self.limits = Arc::new(api.limits.clone());
        self.metrics_public = api.metrics_public;
        Ok(self)
    }

    /// `POST /api/automate_domains {"action": "reload"}` reloads with
    /// `reloader`, and `/api/health` reports its last reload.
    pub fn with_reloader(mut self, reloader: Arc<dyn automate_datastore::Reload>) -> ApiState {
        self.reloader = Some(reloader);
        self
    }

    /// The reloader `POST /api/automate_domains {"action": "reload"}`
    /// uses, when the service reloads (the web UI reloads through it after
    /// an edit).
    pub fn reloader(&self) -> Option<&Arc<dyn automate_datastore::Reload>> {
        self.reloader.as_ref()
    }

    /// `GET /metrics` serves `metrics` (the composition root's, shared
    /// with the pipeline), which also counts the API's requests. Without
    /// it the API has metrics of its own, over the store's scheduled work.
    pub fn with_metrics(mut self, metrics: automate_events::Metrics) -> ApiState {
        self.metrics = metrics;
        self
    }

    /// `event send` (`POST /api/event_streams`) takes `first_sight`, the
    /// running pipeline's lock for VMs and hosts seen for the first time.
    pub fn with_first_sight(mut self, first_sight: automate_events::FirstSight) -> ApiState {
        self.first_sight = first_sight;
        self
    }

    /// `GET /api/cluster` answers `view` (cluster mode's node registry and
    /// leases, or an embedded view with the pipeline's figures). Without
    /// it the API answers this process as the one node of an embedded
    /// cluster, with its queue depth.
    pub fn with_cluster(mut self, view: Arc<dyn automate_vmdb::cluster::ClusterView>) -> ApiState {
        self.cluster = ClusterSource { view, given: true };
        self
    }

    /// `/api/health` reports this queue's depth (the running pipeline's).
    pub fn with_queue(mut self, queue: Arc<dyn EventQueue>) -> ApiState {
        self.depth = Depth::Queue(queue);
        self
    }

    /// `GET /api/events/stream` shows `live`'s events (the pipeline's,
    /// `Prepared::live_events`); `event send` publishes to it too.
    pub fn with_live_events(mut self, live: automate_events::trace::LiveEvents) -> ApiState {
        self.live = live;
        self
    }

    /// The events `event send` handles are recorded as `trace` says
    /// (`events.trace`; default [`TraceConfig::default`](automate_events::trace::TraceConfig)).
    pub fn with_trace(mut self, trace: automate_events::trace::TraceConfig) -> ApiState {
        self.trace = trace;
        self
    }

    /// The live streams end when `shutdown` is cancelled (give the
    /// server's own token, so a graceful shutdown is not held open by
    /// them).
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> ApiState {
        self.shutdown = shutdown;
        self
    }

    /// `/api/dead_letters` lists and retries `dead_letters`.
    pub fn with_dead_letters(mut self, dead_letters: Arc<dyn DeadLetters>) -> ApiState {
        self.dead_letters = Some(dead_letters);
        self
    }

    /// The API token requests must carry (the web UI signs in with it).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The engine (its datastore) the API resolves with.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The object store the API reads and writes.
    pub fn store(&self) -> &Arc<dyn ServedStore> {
        &self.store
    }

    fn queue_depth(&self) -> Result<u64, ApiError> {
        match &self.depth {
            Depth::Queue(q) => Ok(q.depth()),
            Depth::Stored(s) => s.count_kind(EVENT_KIND).map_err(ApiError::internal),
        }
    }
}

/// The live event stream `GET /api/events/stream` serves, for the query
/// pairs `query` (`provider`, `type`, `vm`, `since`), on `state`: the
/// same server-sent events, batching and throttling, for a caller that
/// authenticated otherwise (the web UI's session). A bad query is the
/// API's 400 JSON error.
pub async fn events_stream(state: ApiState, query: Vec<(String, String)>) -> Response {
    match eventtrace::live_stream(state, query).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

/// An error answer: status, kind and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The answer's HTTP status.
    pub status: StatusCode,
    /// The body's `error.kind`: `bad_request`, `malformed_json`,
    /// `not_found`, `conflict`, `payload_too_large`, `internal`, ...
    /// (`docs/api.md` lists them).
    pub kind: &'static str,
    /// The body's `error.message`: what is wrong, naming the field or the
    /// `api.limits` key.
    pub message: String,
}

impl ApiError {
    /// The answer `status` with `{"error": {"kind": kind, "message":
    /// message}}`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400 `bad_request`: a field, query parameter or id is wrong (the
    /// message names it).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`: no such request, object, domain, ...
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal` with `e` as the message, logged to evm.log as
    /// `MIQ(Api) internal error: ...` (the store or a worker failed).
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(target: "evm", "MIQ(Api) internal error: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.kind, self.message)
    }
}

/// A handler's result.
type ApiResult = Result<Response, ApiError>;

/// `200` with a JSON body.
fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(v)).into_response())
}

/// Runs blocking work (redb, the engine) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the request's worker failed: {e}")))?
}

/// Runs `f` on the blocking pool in one unit of work of the store
/// ([`ServedStore::begin_unit`]), handing it the unit's objects (an
/// `ObjectStore` whose writes the unit buffers): every object it writes
/// through them is committed in one durable transaction before the answer,
/// or (when it fails or panics) none is: the unit is dropped unsaved.
async fn in_unit<T: Send + 'static>(
    store: Arc<dyn ServedStore>,
    f: impl FnOnce(Arc<dyn automate_vmdb::ObjectStore>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    in_unit_under(store, None, f).await
}

/// [`in_unit`] holding `lock` (when given) from before the unit begins to
/// after it commits, on the blocking thread itself (so a client that goes
/// away does not release it early).
async fn in_unit_under<T: Send + 'static>(
    store: Arc<dyn ServedStore>,
    lock: Option<Arc<std::sync::Mutex<()>>>,
    f: impl FnOnce(Arc<dyn automate_vmdb::ObjectStore>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(move || {
        let _held = lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        let unit = store.begin_unit();
        let out = f(unit.objects())?;
        unit.commit().map_err(ApiError::internal)?;
        Ok(out)
    })
    .await
}

/// The body as a JSON object: 413 when too large, 400 when not JSON or
/// not an object.
fn json_object(
    body: Result<Bytes, BytesRejection>,
    state: &ApiState,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(server::too_large(state.limits.max_body_bytes))
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "cannot read the body: {}",
                e.body_text()
            )))
        }
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad_request(format!(
            "body: expected an object, got {}",
            kind_of(&other)
        ))),
    }
}

/// An optional string field; 400 naming `field` when it has another type.
fn opt_str<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{field}: expected a string, got {}",
            kind_of(other)
        ))),
    }
}

/// Refuses fields other than `allowed` in `action`'s body (a 400 naming
/// the first unknown field).
fn only_fields(
    obj: &serde_json::Map<String, Value>,
    action: &str,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ApiError::bad_request(format!(
            "{key}: unknown field (the {action} action takes {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The body's `action` when it is the one action `only` an endpoint takes;
/// otherwise a 400 naming the action given (or saying it is missing).
fn expect_action(obj: &serde_json::Map<String, Value>, only: &str) -> Result<(), ApiError> {
    match opt_str(obj, "action", "action")? {
        Some(a) if a == only => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "action: [{other}] is not supported ({only})"
        ))),
        None => Err(ApiError::bad_request(format!("action: missing ({only})"))),
    }
}

/// What `href`s start with: `api.public_url`, else nothing (the links are
/// paths, `/api/...`). Never the request's `Host` header, which the client
/// chooses.
fn base_url(state: &ApiState) -> String {
    state.public_url.to_string()
}

/// ManageIQ shows ids as strings: `id` and every `*_id` that is an
/// integer, at the top of `v` and in its lists of objects (a request's
/// `tasks`), become strings. Nested objects (`options`, an event's
/// `full_data`) are shown as stored.
fn stringify_ids(v: &mut Value) {
    fn one(m: &mut serde_json::Map<String, Value>) {
        for (k, val) in m.iter_mut() {
            if (k == "id" || k.ends_with("_id")) && (val.is_i64() || val.is_u64()) {
                *val = Value::String(val.to_string());
            }
        }
    }
    if let Value::Object(m) = v {
        one(m);
        for val in m.values_mut() {
            if let Value::Array(items) = val {
                for item in items {
                    if let Value::Object(im) = item {
                        one(im);
                    }
                }
            }
        }
    }
}

/// A path parameter; 400 (JSON) when axum cannot decode it.
fn path_arg(
    p: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    p.map(|axum::extract::Path(s)| s)
        .map_err(|e| ApiError::bad_request(format!("path: {}", e.body_text())))
}

/// A path id: 400 when it is not an integer.
fn parse_id(s: &str) -> Result<i64, ApiError> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("id: [{s}] is not an integer id")))
}

/// Checks `X-Auth-Token` on every request but `GET /api/health` (and
/// `GET /metrics` when `api.metrics_public` is set).
async fn auth(
    State((token, metrics_public)): State<(Arc<str>, bool)>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/api/health" || (metrics_public && path == "/metrics") {
        return next.run(req).await;
    }
    let message = if token.is_empty() {
        "the API has no token configured (api.token); every request is refused"
    } else {
        match req.headers().get(TOKEN_HEADER) {
            None => "missing X-Auth-Token header",
            Some(v) if http::token_matches(v.as_bytes(), token.as_bytes()) => {
                return next.run(req).await
            }
            Some(_) => "invalid X-Auth-Token",
        }
    };
    error_response(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {method} {}", uri.path()),
    )
}

fn method_not_allowed(path: &str, allow: &str) -> Response {
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{path} takes {allow}"),
    );
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// The axum path of a table path (`{path}` of `/api/automate` spans
/// segments).
fn axum_path(path: &str) -> String {
    path.replace("/api/automate/{path}", "/api/automate/{*path}")
}

fn handler(method: &str, endpoint: Endpoint) -> Option<MethodRouter<ApiState>> {
    let filter = match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        _ => return None,
    };
    Some(match endpoint {
        Endpoint::Events => return None,
        Endpoint::Health => on(filter, health),
        Endpoint::Cluster => on(filter, cluster::status),
        Endpoint::ListRequests => on(filter, requests::list),
        Endpoint::CreateRequest => on(filter, requests::create),
        Endpoint::GetRequest => on(filter, requests::get),
        Endpoint::RequestAction => on(filter, requests::action),
        Endpoint::ListProvisionRequests => on(filter, requests::list_provision),
        Endpoint::GetProvisionRequest => on(filter, requests::get_provision),
        Endpoint::ProvisionRequestAction => on(filter, requests::action),
        Endpoint::ListAllRequests => on(filter, requests::list_all),
        Endpoint::GetAnyRequest => on(filter, requests::get_any),
        Endpoint::AnyRequestAction => on(filter, requests::action),
        Endpoint::EventStreams => on(filter, objects::event_streams_handler),
        Endpoint::EventStream => on(filter, objects::event_stream),
        Endpoint::EventTrace => on(filter, eventtrace::event_trace),
        Endpoint::LiveEvents => on(filter, eventtrace::live),
        Endpoint::Domains => on(filter, automate::domains),
        Endpoint::Browse => on(filter, automate::browse),
        Endpoint::Resolve => on(filter, automate::resolve),
        Endpoint::Vms => on(filter, objects::vms),
        Endpoint::Vm => on(filter, objects::vm),
        Endpoint::VmTags => on(filter, tags::vm_tags),
        Endpoint::VmCustomAttributes => on(filter, tags::vm_custom_attributes),
        Endpoint::Categories => on(filter, tags::categories),
        Endpoint::Tags => on(filter, tags::tag_entries),
        Endpoint::Category => on(filter, tags::category),
        Endpoint::Tag => on(filter, tags::tag_entry),
        Endpoint::Services => on(filter, objects::services),
        Endpoint::Service => on(filter, objects::service),
        Endpoint::ServiceVms => on(filter, objects::service_vms),
        Endpoint::Hosts => on(filter, objects::hosts),
        Endpoint::Host => on(filter, objects::host),
        Endpoint::Notifications => on(filter, objects::notifications),
        Endpoint::Notification => on(filter, objects::notification),
        Endpoint::Providers => on(filter, objects::providers),
        Endpoint::Provider => on(filter, objects::provider),
        Endpoint::ProviderOperations => on(filter, objects::provider_operations),
        Endpoint::ProviderOperation => on(filter, objects::provider_operation),
        Endpoint::DbBackup => on(filter, db::backup),
        Endpoint::Retries => on(filter, retries::list),
        Endpoint::RetriesAction => on(filter, retries::action),
        Endpoint::Retry => on(filter, retries::show),
        Endpoint::AutomateAction => on(filter, run::action),
        Endpoint::SendEvent => on(filter, send::action),
        Endpoint::ImportDomain => {
            on(filter, import::import).layer(DefaultBodyLimit::max(import::MAX_ZIP_BYTES))
        }
        Endpoint::ExportDomain => on(filter, export::export),
        Endpoint::ReloadDomains => on(filter, reload::action),
        Endpoint::Entry => on(filter, domains::entry),
        Endpoint::OpenApi => on(filter, domains::openapi),
        Endpoint::AutomateDomains => on(filter, domains::list),
        Endpoint::AutomateDomain => on(filter, domains::show),
        Endpoint::AutomateDomainAction => on(filter, domains::action),
        Endpoint::Metrics => on(filter, metrics::metrics),
        Endpoint::DeadLetters => on(filter, dead_letters::list),
        Endpoint::DeadLettersAction => on(filter, dead_letters::action),
    })
}

/// The whole API: [`ROUTES`], with `events` (the `http` catcher's state;
/// without one, `POST /api/events` knows no provider) merged in, behind
/// the token check.
pub fn router(state: ApiState, events: Option<HttpState>) -> Router {
    let token = state.token.clone();
    let limits = state.limits.clone();
    let metrics = state.metrics.clone();
    let metrics_public = state.metrics_public;
    let mut by_path: BTreeMap<&str, Vec<&Route>> = BTreeMap::new();
    for route in ROUTES {
        by_path.entry(route.path).or_default().push(route);
    }
    let mut api: Router<ApiState> = Router::new();
    for (path, routes) in by_path {
        let mut mr: Option<MethodRouter<ApiState>> = None;
        for route in &routes {
            if let Some(h) = handler(route.method, route.endpoint) {
                mr = Some(match mr {
                    None => h,
                    Some(m) => m.merge(h),
                });
            }
        }
        let Some(mr) = mr else { continue };
        let allow = routes
            .iter()
            .map(|r| r.method)
            .collect::<Vec<_>>()
            .join(", ");
        let shown = path.to_string();
        let mr = mr.fallback(move || {
            let (shown, allow) = (shown.clone(), allow.clone());
            async move { method_not_allowed(&shown, &allow) }
        });
        api = api.route(&axum_path(path), mr);
    }
    let events = events.unwrap_or_else(|| HttpState::new(token.to_string()));
    api.layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
        .merge(http::router(events))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            (token, metrics_public),
            auth,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            server::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::count,
        ))
}

/// Serves `router` on `listener` until `shutdown`, within the default
/// [`ApiLimits`] ([`serve_with`] takes configured ones).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, &ApiLimits::default(), shutdown).await
}

/// `GET /api/health`: liveness, the event queue's depth and the object
/// store's health (no token). 503 `{"status": "unavailable", "store":
/// {...}}` while the store takes no writes (a full disk, a failed write,
/// a damaged page: `automate_vmdb::health`).
async fn health(State(state): State<ApiState>) -> ApiResult {
    if let Some(fault) = state.store.health().fault() {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "version": env!("CARGO_PKG_VERSION"),
                "store": fault,
            })),
        )
            .into_response());
    }
    let s = state.clone();
    let depth = blocking(move || s.queue_depth()).await?;
    let mut body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "queue_depth": depth,
    });
    if let Some(datastore) = reload::health(&state) {
        body["datastore"] = datastore;
    }
    // Problems that stop no work but need a person (a domain a cluster
    // node cannot publish).
    let warnings = state.store.health().warnings();
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `docs/api.yaml` describes exactly [`ROUTES`].
    #[test]
    fn openapi_document_lists_every_route() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("docs/api.yaml");
        let text = std::fs::read_to_string(&path).expect("docs/api.yaml");
        let doc: Value = serde_saphyr::from_str(&text).expect("docs/api.yaml is YAML");
        assert_eq!(doc["openapi"].as_str().map(|s| &s[..2]), Some("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = BTreeSet::new();
        for (p, ops) in paths {
            for m in ops.as_object().expect("operations").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&m.as_str()) {
                    documented.insert((m.to_uppercase(), p.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_route_has_a_handler_but_events() {
        for r in ROUTES {
            assert_eq!(
                handler(r.method, r.endpoint).is_none(),
                r.endpoint == Endpoint::Events,
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}
