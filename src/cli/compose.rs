//! The composition root of `automate run`: opens the object store and the
//! datastore, builds the engine with its methods, prepares the event
//! pipeline on them, serves the REST API beside it (with the http
//! catcher's `POST /api/events` merged into the same listener) and starts
//! the pipeline. The pipeline knows nothing of the API; this is the one
//! place that wires the two (and the redb store) together.
//!
//! It is also where every other command gets its object store
//! ([`open_store`], [`open_store_read_only`], the [`Store`] they return):
//! the one place in the binary that names the backend.

use anyhow::Context;
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_events::config::Config;
use automate_events::pipeline::{Pipeline, PipelineError, PipelineStore, HANDOFF};
use automate_redb::{GroupCommit, GroupUnits, RedbEventQueue, RedbStore};
use std::path::Path;
use std::sync::Arc;

/// The object store the commands open: the embedded redb backend.
pub type Store = RedbStore;

/// Opens the object store at `path` for a command that writes (creating
/// the file if there is none; repairing it after a crash).
pub fn open_store(path: &Path) -> Result<Store, automate_vmdb::StoreError> {
    RedbStore::open(path)
}

/// Opens the object store at `path` for a command that only reads: never
/// written, never repaired ([`automate_vmdb::StoreError::NeedsRepair`] when
/// the last writer crashed).
pub fn open_store_read_only(path: &Path) -> Result<Store, automate_vmdb::StoreError> {
    RedbStore::open_read_only(path)
}

/// The URL a client on this host reaches `addr` at (an unspecified
/// address, `0.0.0.0`, through the loopback).
pub fn served_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Opens the store at `db_path` and the datastore at `datastore_root`,
/// prepares the pipeline of `config` (the leases of a previous process
/// released), serves the REST API on `api.listen` (a free port when that
/// is taken and neither an http catcher nor `api.token` asked for it; a
/// session token without `api.token`), advertises it beside the store
/// (`<db>.server`, removed when the API stops), and starts the catchers, the committer, the
/// dispatcher with `config.workers` workers and the retry runner. Call it
/// inside a Tokio runtime; [`Pipeline::shutdown`] stops the API with the
/// catchers.
pub async fn start(
    config: &Config,
    datastore_root: &Path,
    db_path: &Path,
) -> anyhow::Result<Pipeline> {
    let store = Arc::new(
        RedbStore::open(db_path)
            .with_context(|| format!("opening the object store {}", db_path.display()))?
            .with_relaxed_durability(true),
    );
    let (ds, problems) = Datastore::open(datastore_root);
    for p in &problems {
        tracing::warn!(target: "evm", "datastore: {p}");
    }
    let mut engine = Engine::new(Arc::new(ds)).with_store(store.clone());
    engine.options.budget = config.engine.limits();
    let (engine, _runner) = automate_control::with_control(engine);
    // The pipeline's backend: the store's group-commit writer, the
    // workers' units of work committed by it, and the durable queue in the
    // same file (its enqueues through the same writer, its claims leased
    // without an fsync, its written events handed to the dispatcher in
    // memory).
    let (group, writer) =
        GroupCommit::start(store.clone()).map_err(|source| PipelineError::Thread {
            what: "group-commit writer",
            source,
        })?;
    let queue = Arc::new(
        RedbEventQueue::open(store.schedule().with_relaxed_claims(true))?
            .with_handoff(HANDOFF)
            .with_group(group.clone()),
    );
    let backend = PipelineStore {
        units: Arc::new(GroupUnits::new(store.clone(), group, writer)),
        queue,
        schedule: Arc::new(store.schedule()),
    };
    let mut pipeline = Pipeline::prepare(config, engine.clone(), backend)?;
    // The REST API (the http catcher's `POST /api/events` merged in) on
    // api.listen, always: the front door of the commands run while this
    // process holds the store. Without an http catcher or api.token
    // asking for it, an address in use is no reason to fail: it listens on
    // a free port instead. Without a token it makes one for the session;
    // the address and the token are advertised beside the store.
    let events = pipeline.take_http_catcher();
    let asked = events.is_some() || !config.api.token.is_empty();
    let listener = match tokio::net::TcpListener::bind(&config.api.listen).await {
        Ok(l) => l,
        Err(e) if !asked => {
            tracing::warn!(target: "evm", "MIQ(automate run) cannot listen on {} (api.listen): {e}; the API listens on a free port of 127.0.0.1 instead", config.api.listen);
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("listening on 127.0.0.1:0")?
        }
        Err(e) => return Err(e).with_context(|| format!("listening on {}", config.api.listen)),
    };
    let token = if config.api.token.is_empty() {
        super::remote::session_token()?
    } else {
        config.api.token.to_string()
    };
    let url = served_url(listener.local_addr()?);
    tracing::info!(target: "evm", "MIQ(automate run) API listening on {url}/api");
    // Without it the service still runs: the commands need --server.
    let advertisement = super::remote::Advertisement::write(db_path, &url, &token)
        .map_err(|e| tracing::warn!(target: "evm", "MIQ(automate run) not advertised: {e:#}"))
        .ok();
    let api = automate_api::ApiState::new(token, engine, store)?
        .with_queue(pipeline.queue())
        .with_config(&config.api)?;
    let router = automate_api::router(api, events);
    let limits = config.api.limits.clone();
    let stop = pipeline.stop_signal();
    let server = Some(tokio::spawn(async move {
        let served = automate_api::serve_with(listener, router, &limits, stop).await;
        // Removed once the API no longer answers.
        drop(advertisement);
        served
    }));
    Ok(pipeline.start(server)?)
}
