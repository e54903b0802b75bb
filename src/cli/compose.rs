//! The composition root of `automate run`: opens the object store and the
//! datastore, builds the engine with its methods, prepares the event
//! pipeline on them, serves the REST API beside it (with the http
//! catcher's `POST /api/events` merged into the same listener) and starts
//! the pipeline. It makes the one [`Metrics`] both count into and
//! `GET /metrics` serves. The pipeline knows nothing of the API; this is the one
//! place that wires the two (and the redb store) together.
//!
//! With `cluster:` configured, [`start`] builds a cluster node instead
//! ([`super::cluster::backend::ClusterNode`]: PostgreSQL for the objects,
//! the scheduled work and the datastore; NATS JetStream for the queue, its
//! dead letters, the leases and the node registry) behind the same traits,
//! and [`cluster_engine`] is what `automate api` builds its front door on.
//!
//! It is also where every other command gets its object store
//! ([`open_store`], [`open_store_read_only`], the [`Store`] they return):
//! the one place in the binary that names the backend.

use super::cluster::backend::{ClusterNode, Role};
use anyhow::{bail, Context};
use automate_control::{with_control_reloadable, Reloader};
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_events::config::ClusterConfig;
use automate_events::config::Config;
use automate_events::dead_letters::StoredDeadLetters;
use automate_events::pipeline::{Pipeline, PipelineError, PipelineStore, HANDOFF};
use automate_events::queue::EventQueue;
use automate_events::Metrics;
use automate_methods::RhaiLimits;
use automate_redb::{GroupCommit, GroupUnits, RedbEventQueue, RedbStore};
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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

/// What [`start`] started: the running pipeline, the reloader of its
/// engine (for the watcher and SIGHUP) and where the API listens.
pub struct Started {
    /// The pipeline, running.
    pub pipeline: Pipeline,
    /// Reloads the datastore, methods and policies the pipeline and API run on.
    pub reloader: Arc<Reloader>,
    /// The REST API's address, when it is served.
    pub listening: Option<std::net::SocketAddr>,
    /// In cluster mode, the node's connections and backends: keep it
    /// until the pipeline has shut down (dropping it gives the node's
    /// partitions up and closes the connections).
    pub cluster: Option<ClusterNode>,
    /// The runner's request service (`create_automation_request`), taken
    /// back when the run ends (embedded mode: it holds the redb file).
    pub outbound: Option<OutboundGuard>,
    /// The delivery records' pruner (`events.trace`): dropping it stops
    /// its thread and waits for it (it holds the store).
    pub pruner: Option<PrunerGuard>,
}

/// The running [`automate_events::trace::Pruner`]: dropped, it stops and
/// is waited for.
pub struct PrunerGuard {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PrunerGuard {
    /// Starts pruning `store`'s delivery records as `config` says (none
    /// when recording is off).
    pub fn start(
        store: Arc<dyn automate_vmdb::served::ServedStore>,
        config: &automate_events::trace::TraceConfig,
    ) -> anyhow::Result<Option<PrunerGuard>> {
        if !config.enabled || (config.keep_days == 0 && config.keep_max == 0) {
            return Ok(None);
        }
        let stop = CancellationToken::new();
        let thread = automate_events::trace::Pruner::new(store, config.clone())
            .spawn(stop.clone())
            .context("starting the trace pruner")?;
        Ok(Some(PrunerGuard {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for PrunerGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Refuses a datastore `automate run` cannot work on: a root that is
/// missing, holds no domain, or does not validate (errors; warnings are
/// logged). Returns the datastore and the engine composed on it (the
/// automation stack, [`with_control_reloadable`]) with its reloader and
/// its Rhai runner (for [`set_outbound`]).
pub fn checked_engine(
    datastore_root: &Path,
    budget: automate_engine::BudgetLimits,
) -> anyhow::Result<(Engine, Arc<Reloader>, Arc<automate_methods::RhaiRunner>)> {
    if !datastore_root.is_dir() {
        bail!(
            "the datastore root `{}` does not exist or is not a directory: pass --datastore DIR \
             (or set AUTOMATE_DATASTORE), or import a domain there with `automate import`",
            datastore_root.display()
        );
    }
    let (ds, _) = Datastore::open(datastore_root);
    if ds.index().domains().is_empty() {
        bail!(
            "the datastore root `{}` holds no domain (a domain is a directory with \
             __domain__.yaml): import one with `automate import`",
            datastore_root.display()
        );
    }
    let mut engine = Engine::new(Arc::new(ds));
    engine.options.budget = budget;
    let (engine, runner, reloader) = with_control_reloadable(engine, RhaiLimits::default());
    let (errors, warnings) = reloader.check();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|p| format!("  {p}")).collect();
        bail!(
            "the datastore `{}` does not validate ({} error{}; `automate datastore validate` \
             lists them too):\n{}",
            datastore_root.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            list.join("\n")
        );
    }
    for w in &warnings {
        tracing::warn!(target: "evm", "datastore: {w}");
    }
    Ok((engine, reloader, runner))
}

/// Gives `runner` automate.yaml's `methods:` (the SMTP relay, the hosts
/// `evm.http` may reach) and a request service whose retries go to
/// `schedule` (`create_automation_request` from a method).
/// Keep the answer while the service runs: dropping it takes the request
/// service back from the runner, which outlives the run (the reloader and
/// the watcher hold it) and must not keep the store open past it (a redb
/// file left open is not closed cleanly).
#[must_use = "dropping the guard takes the request service back at once"]
pub fn set_outbound(
    runner: &Arc<automate_methods::RhaiRunner>,
    methods: &automate_events::config::MethodsConfig,
    schedule: Arc<dyn automate_vmdb::Schedule>,
) -> OutboundGuard {
    runner.set_outbound(outbound_of(methods, Some(schedule)));
    OutboundGuard(runner.clone())
}

/// What [`set_outbound`] gave a runner, taken back when dropped.
pub struct OutboundGuard(Arc<automate_methods::RhaiRunner>);

impl Drop for OutboundGuard {
    fn drop(&mut self) {
        self.0
            .set_outbound(automate_methods::outbound::Outbound::default());
    }
}

/// The runner's outbound settings of `methods:`.
pub fn outbound_of(
    methods: &automate_events::config::MethodsConfig,
    schedule: Option<Arc<dyn automate_vmdb::Schedule>>,
) -> automate_methods::outbound::Outbound {
    use automate_methods::outbound::{email::SmtpSecurity, HttpSettings, Outbound, SmtpSettings};
    let smtp = methods.smtp.as_ref().map(|s| SmtpSettings {
        host: s.host.clone(),
        port: s.port,
        domain: s.domain.clone(),
        from: s.from.clone(),
        credentials: s
            .user_name
            .clone()
            .map(|u| (u, s.password.clone().unwrap_or_default())),
        authentication: s.authentication.clone().filter(|a| a != "none"),
        security: match s.security.as_str() {
            "starttls" => SmtpSecurity::Starttls,
            "tls" => SmtpSecurity::Tls,
            "none" => SmtpSecurity::None,
            _ => SmtpSecurity::StarttlsAuto,
        },
        timeout: std::time::Duration::from_secs(s.timeout_s),
    });
    Outbound {
        smtp,
        http: HttpSettings {
            allow: methods.http.allow.clone(),
            timeout: std::time::Duration::from_secs(methods.http.timeout_s),
            max_response_bytes: methods.http.max_response_bytes,
        },
        requests: schedule.map(|s| {
            Arc::new(automate_control::MethodRequests::new(s))
                as Arc<dyn automate_methods::outbound::RequestMaker>
        }),
    }
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

/// Opens the store at `db_path` and the datastore at `datastore_root`
/// (refused as [`checked_engine`] says), prepares the pipeline of `config`
/// (the leases of a previous process released), serves the REST API on
/// `api.listen` (a free port when that is taken and neither an http
/// catcher nor `api.token` asked for it; a session token without
/// `api.token`), advertises it beside the store (`<db>.server`, removed
/// when the API stops), and starts the catchers, the committer, the dispatcher with
/// `config.workers` workers and the retry runner. Call it inside a Tokio
/// runtime; [`Pipeline::shutdown`] stops the API with the catchers.
pub async fn start(
    config: &Config,
    datastore_root: &Path,
    db_path: &Path,
) -> anyhow::Result<Started> {
    if let Some(cluster) = &config.cluster {
        return start_cluster(config, cluster, datastore_root, db_path).await;
    }
    let (engine, reloader, runner) = checked_engine(datastore_root, config.engine.limits())?;
    let store = Arc::new(
        RedbStore::open(db_path)
            .with_context(|| format!("opening the object store {}", db_path.display()))?
            .with_relaxed_durability(true),
    );
    let engine = engine.with_store(store.clone());
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
    let outbound = set_outbound(&runner, &config.methods, Arc::new(store.schedule()));
    // The metrics `GET /metrics` serves: one registry, counted into by the
    // pipeline and the API, its gauges reading the pipeline's queue and
    // schedule.
    let metrics = Metrics::new();
    {
        // Only the counter: the reloader outlives the run (the watcher
        // holds it), and must not keep the metrics' sources (the queue, the
        // schedule, and through them the store) alive past it.
        let reloads = metrics.reloads();
        reloader.observe(move |report| reloads.count(report.ok));
    }
    let mut pipeline =
        Pipeline::prepare(config, engine.clone(), backend)?.with_metrics(metrics.clone());
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
    let addr = listener.local_addr()?;
    let listening = Some(addr);
    let url = served_url(addr);
    tracing::info!(target: "evm", "MIQ(automate run) API listening on {url}/api, the web UI on {url}/ui");
    // Without it the service still runs: the commands need --server.
    let advertisement = super::remote::Advertisement::write(db_path, &url, &token)
        .map_err(|e| tracing::warn!(target: "evm", "MIQ(automate run) not advertised: {e:#}"))
        .ok();
    let providers = config
        .providers
        .iter()
        .map(|p| p.provider.clone())
        .collect();
    let dead_letters =
        StoredDeadLetters::new(store.clone(), providers).with_queue(pipeline.queue());
    let pruner = PrunerGuard::start(store.clone(), &config.events.trace)?;
    let api = automate_api::ApiState::new(token, engine, store)?
        .with_queue(pipeline.queue())
        .with_dead_letters(Arc::new(dead_letters))
        .with_config(&config.api)?
        .with_reloader(reloader.clone())
        .with_metrics(metrics)
        .with_first_sight(pipeline.first_sight())
        .with_live_events(pipeline.live_events())
        .with_trace(config.events.trace.clone())
        .with_shutdown(pipeline.stop_signal())
        // `automate cluster status` on the embedded mode: this one node,
        // with its live load.
        .with_cluster(Arc::new(
            automate_vmdb::cluster::EmbeddedCluster::new(url.clone())
                .with_probe(pipeline.node_load().probe()),
        ));
    let ui = ui_state(&api, &config.api);
    let router = automate_ui::mount(automate_api::router(api, events), ui);
    let limits = config.api.limits.clone();
    let stop = pipeline.stop_signal();
    let server = Some(tokio::spawn(async move {
        let served = automate_api::serve_with(listener, router, &limits, stop).await;
        // Removed once the API no longer answers.
        drop(advertisement);
        served
    }));
    Ok(Started {
        pipeline: pipeline.start(server)?,
        reloader,
        listening,
        cluster: None,
        outbound: Some(outbound),
        pruner,
    })
}

/// Connects to the cluster of `cluster` as `role` and syncs the datastore
/// at `datastore_root` with it (the root created when missing: a new node
/// starts on the cluster's domains), then composes the engine on it,
/// refused as [`checked_engine`] says. Blocks: call it off the async
/// threads.
pub fn cluster_engine(
    cluster: &ClusterConfig,
    role: Role,
    datastore_root: &Path,
    budget: automate_engine::BudgetLimits,
    methods: &automate_events::config::MethodsConfig,
) -> anyhow::Result<(ClusterNode, Engine, Arc<Reloader>)> {
    let mut node = ClusterNode::connect(cluster, role)?;
    std::fs::create_dir_all(datastore_root)
        .with_context(|| format!("creating the datastore root {}", datastore_root.display()))?;
    let (ds, _) = Datastore::open(datastore_root);
    let mut engine = Engine::new(Arc::new(ds));
    engine.options.budget = budget;
    let (engine, runner, reloader) = with_control_reloadable(engine, RhaiLimits::default());
    runner.set_outbound(outbound_of(methods, Some(node.schedule.clone())));
    node.sync_datastore(datastore_root, reloader.clone())?;
    // Checked once the cluster's domains are on disk (and loaded).
    checked_engine(datastore_root, budget)?;
    let engine = engine.with_store(node.store.clone());
    Ok((node, engine, reloader))
}

/// [`start`] in cluster mode (`cluster:` configured): the object store,
/// the scheduled work and the datastore in PostgreSQL, the event queue,
/// its dead letters and the leases in NATS JetStream
/// ([`ClusterNode`]); the pipeline's catchers run under their leases and
/// its workers claim this node's share of the queue's partitions (nothing
/// while PostgreSQL or NATS is unreachable); the API serves the cluster's
/// store. The advertisement (`<db>.server`) is still written beside
/// `--db`: a per-node local path, since there is no store file (see
/// docs/operations.md).
async fn start_cluster(
    config: &Config,
    cluster: &ClusterConfig,
    datastore_root: &Path,
    db_path: &Path,
) -> anyhow::Result<Started> {
    let (mut node, engine, reloader) = {
        let (cluster, root, budget, methods) = (
            cluster.clone(),
            datastore_root.to_path_buf(),
            config.engine.limits(),
            config.methods.clone(),
        );
        tokio::task::spawn_blocking(move || {
            cluster_engine(&cluster, Role::Worker, &root, budget, &methods)
        })
        .await
        .context("connecting to the cluster")??
    };
    let store = node.store.clone();
    // The workers' units commit in PostgreSQL, then ack the queue (the
    // raw one: an ack must go through whatever the health says).
    let raw: Arc<dyn EventQueue> = node.queue.clone();
    let backend = PipelineStore {
        units: store.units(Some(raw)),
        queue: node.guarded_queue(),
        schedule: node.schedule.clone(),
    };
    let metrics = Metrics::new();
    {
        let reloads = metrics.reloads();
        reloader.observe(move |report| reloads.count(report.ok));
    }
    let mut pipeline = Pipeline::prepare(config, engine.clone(), backend)?
        .with_metrics(metrics.clone())
        .with_leases(node.leases.clone());
    let events = pipeline.take_http_catcher();
    let asked = events.is_some() || !config.api.token.is_empty();
    let (listener, token) = listen(config, asked).await?;
    let addr = listener.local_addr()?;
    let url = served_url(addr);
    tracing::info!(target: "evm", "MIQ(automate run) node [{}] API listening on {url}/api", node.node);
    node.start_heartbeat(&url, Some(pipeline.node_load().probe()))?;
    let advertisement = super::remote::Advertisement::write(db_path, &url, &token)
        .map_err(|e| tracing::warn!(target: "evm", "MIQ(automate run) not advertised: {e:#}"))
        .ok();
    let pruner = PrunerGuard::start(store.clone(), &config.events.trace)?;
    let api = automate_api::ApiState::new(token, engine, store)?
        .with_queue(pipeline.queue())
        .with_dead_letters(
            node.dead_letters(
                config
                    .providers
                    .iter()
                    .map(|p| p.provider.clone())
                    .collect(),
            ),
        )
        .with_cluster(node.view())
        .with_config(&config.api)?
        .with_reloader(reloader.clone())
        .with_metrics(metrics)
        .with_first_sight(pipeline.first_sight())
        .with_live_events(pipeline.live_events())
        .with_trace(config.events.trace.clone())
        .with_shutdown(pipeline.stop_signal());
    let ui = ui_state(&api, &config.api);
    let router = automate_ui::mount(automate_api::router(api, events), ui);
    let limits = config.api.limits.clone();
    let stop = pipeline.stop_signal();
    let server = Some(tokio::spawn(async move {
        let served = automate_api::serve_with(listener, router, &limits, stop).await;
        drop(advertisement);
        served
    }));
    Ok(Started {
        pipeline: pipeline.start(server)?,
        reloader,
        listening: Some(addr),
        cluster: Some(node),
        outbound: None,
        pruner,
    })
}

/// The web UI beside the API (`/ui`): it signs in with the API's token,
/// reads and acts through the API's state (`state`: its store, requests,
/// live events, reloader) and marks its cookie `Secure` when
/// `api.public_url` is https.
pub fn ui_state(
    state: &automate_api::ApiState,
    api: &automate_events::config::ApiConfig,
) -> automate_ui::UiState {
    automate_ui::UiState::with_api(state.clone()).with_public_url(api.public_url.as_deref())
}

/// The API's listener on `api.listen` (a free port of 127.0.0.1 when that
/// is taken and nothing `asked` for it) and its token (`api.token`, else
/// one made for the session), as [`start`] makes them.
async fn listen(config: &Config, asked: bool) -> anyhow::Result<(tokio::net::TcpListener, String)> {
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
    Ok((listener, token))
}
