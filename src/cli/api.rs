//! `automate api [--listen ADDR] [--config FILE]`: serves the REST API
//! (`automate_api`, `docs/api.md`) on `--db` and `--datastore` without the
//! event pipeline's catchers, for automation requests and datastore
//! browsing. State-machine retries of the requests it runs are re-delivered
//! by a retry runner in the same process. With `cluster:` in `--config` it
//! is a front door of the cluster: the same API over the cluster's
//! PostgreSQL store and NATS queue (its dead letters), claiming no event
//! and running no retry (the `automate run` nodes do both). Runs until SIGTERM or SIGINT;
//! reloads the datastore (and its methods and control policies) when a
//! file under it changes, on SIGHUP and on `POST /api/automate_domains
//! {"action": "reload"}`.

use super::cluster::backend::Role;
use super::compose::open_store;
use super::Global;
use anyhow::Context;
use automate_api::{router, serve_with, ApiState};
use automate_datastore::Datastore;
use automate_engine::deliver::{run_due, DEFAULT_MAX_DELIVERIES};
use automate_engine::Engine;
use automate_events::catchers::http::HttpState;
use automate_events::config::{ApiConfig, EngineConfig};
use automate_events::dead_letters::StoredDeadLetters;
use automate_events::queue::{CaughtEvent, EventQueue};
use automate_events::Metrics;
use automate_redb::RedbEventQueue;
use automate_vmdb::dead_letter::DeadLetters;
use automate_vmdb::served::ServedStore;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `automate api`'s options: the address and the configuration file.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// `host:port` to listen on (default: `api.listen` of --config, else
    /// 127.0.0.1:3000). Port 0 picks a free port; the address is printed.
    #[arg(long)]
    pub listen: Option<String>,
    /// automate.yaml to read `api.listen`, `api.token`, `api.public_url`,
    /// `api.limits`, `api.metrics_public` and the `engine:` budget from. `--token` (or
    /// AUTOMATE_API_TOKEN) replaces `api.token`; with neither, a token is made for the session
    /// and written only to `<db>.server`.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Serves the API on `--db` and `--datastore` until SIGTERM or SIGINT,
/// printing `automate api: listening on http://ADDR/api` once bound and
/// advertising the address beside the store (`<db>.server`, with the
/// token: `api.token`, `AUTOMATE_API_TOKEN`, else one made for the
/// session). Fails on a bad
/// `--config`, or when the store cannot be opened or the address bound.
pub fn run(global: &Global, args: ApiArgs) -> anyhow::Result<ExitCode> {
    let (mut api, budget, cluster, config) = match &args.config {
        Some(path) => {
            let cfg = super::load_config(global, path)?;
            super::password::install_key(&cfg)?;
            (
                cfg.api.clone(),
                cfg.engine.limits(),
                cfg.cluster.clone(),
                Some(cfg),
            )
        }
        None => (
            ApiConfig::default(),
            EngineConfig::default().limits(),
            None,
            None,
        ),
    };
    let methods = config
        .as_ref()
        .map(|c| c.methods.clone())
        .unwrap_or_default();
    if let Some(token) = global.token.as_deref().filter(|t| !t.is_empty()) {
        api.token = token.to_string();
    }
    // Without one, a token for this session, advertised beside the store.
    if api.token.is_empty() {
        api.token = super::remote::session_token()?;
    }
    let listen = args.listen.clone().unwrap_or_else(|| api.listen.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (engine, store, reloader, dead_letters, retrier, mut node): (
        _,
        Arc<dyn ServedStore>,
        _,
        Arc<dyn DeadLetters>,
        _,
        _,
    ) = match &cluster {
        // Cluster mode: a front door over the cluster's store. The
        // retries of the requests it creates are run by the `automate run`
        // nodes (the scheduled work is shared); it claims no event.
        Some(cluster) => {
            let (node, engine, reloader) = super::compose::cluster_engine(
                cluster,
                Role::FrontDoor,
                &global.datastore,
                budget,
                &methods,
            )?;
            let store: Arc<dyn ServedStore> = node.store.clone();
            let providers = config
                .iter()
                .flat_map(|c| c.providers.iter().map(|p| p.provider.clone()))
                .collect();
            let dead = node.dead_letters(providers);
            (engine, store, reloader, dead, None, Some(node))
        }
        None => {
            // As `automate run` opens it: every API call that writes commits its
            // unit of work durably before answering, and a re-delivered retry
            // completes its scheduled item (durably) after its writes.
            let store = Arc::new(
                open_store(&global.db)
                    .with_context(|| format!("opening the object store {}", global.db.display()))?
                    .with_relaxed_durability(true),
            );
            let (ds, problems) = Datastore::open(&global.datastore);
            for p in &problems {
                eprintln!("warning: {p}");
            }
            let mut engine = Engine::new(Arc::new(ds)).with_store(store.clone());
            engine.options.budget = budget;
            let (engine, runner, reloader) = automate_control::with_control_reloadable(
                engine,
                automate_methods::RhaiLimits::default(),
            );
            let _outbound =
                super::compose::set_outbound(&runner, &methods, Arc::new(store.schedule()));
            // Dead letters retried here are enqueued in the store's queue, for
            // the next `automate run`.
            let dead: Arc<dyn DeadLetters> = Arc::new(
                StoredDeadLetters::new(store.clone(), Vec::new())
                    .with_queue(Arc::new(RedbEventQueue::open(store.schedule())?)),
            );

            // Re-delivers the state-machine retries of the requests run here.
            let retrier = {
                let engine = engine.clone();
                let schedule = store.schedule();
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("automate-retries".into())
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            match run_due(&engine, &schedule, 16, DEFAULT_MAX_DELIVERIES) {
                                Ok(done) if !done.is_empty() => continue,
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::error!(target: "evm", "MIQ(MiqAeEngine.deliver) running due retries: {e}")
                                }
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    })?
            };
            (engine, store, reloader, dead, Some(retrier), None)
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        // `GET /metrics`: the API's requests, the events queued and the
        // state-machine retries in the store.
        let metrics = Metrics::new();
        metrics.watch_schedule(store.scheduled_work());
        {
            // Only the counter: the reloader (held by the watcher) must not
            // keep the store open through the metrics' schedule.
            let reloads = metrics.reloads();
            reloader.observe(move |report| reloads.count(report.ok));
        }
        let mut state = ApiState::new(api.token.clone(), engine, store)?
            .with_dead_letters(dead_letters);
        if let Some(node) = &node {
            state = state.with_cluster(node.view());
        }
        let state = state
            .with_config(&api)?
            .with_reloader(reloader.clone())
            .with_metrics(metrics);
        // Hot reload: a change under the datastore root reloads it.
        let _watch = match super::watch::start(&global.datastore, reloader.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("warning: the datastore is not watched ({e:#}): reload it with SIGHUP or `automate datastore reload`");
                None
            }
        };
        // Signals are ours from here: a SIGTERM or SIGHUP from now on
        // drains or reloads (and removes the advertisement), never kills.
        let mut signals = super::run::Signals::new()?;
        // Without it the API still serves: the commands need --server.
        let advertisement = super::remote::Advertisement::write(
            &global.db,
            &super::compose::served_url(addr),
            &api.token,
        )
        .map_err(|e| eprintln!("warning: not advertised: {e:#}"))
        .ok();
        if let Some(node) = node.as_mut() {
            node.start_heartbeat(&super::compose::served_url(addr), None)?;
        }
        // Said once the datastore is watched and the service advertised: a
        // change made after this line is reloaded, and a command started
        // after it finds the service.
        println!("automate api: listening on http://{addr}/api");
        // A reader that took only the line above may have closed the
        // pipe already: this line must not fail the service.
        {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "automate api: the web UI is at http://{addr}/ui");
        }
        let shutdown = CancellationToken::new();
        // A front door takes `POST /api/events` for the providers with an
        // `http` catcher, straight into the cluster's queue.
        let (events, enqueuer) = match (&node, &config) {
            (Some(node), Some(cfg)) => {
                match front_door_events(cfg, node.queue.clone(), node.health(), shutdown.clone())? {
                    Some((http, enqueuer)) => (Some(http), Some(enqueuer)),
                    None => (None, None),
                }
            }
            _ => (None, None),
        };
        let mut state = state.with_shutdown(shutdown.clone());
        if let Some(cfg) = &config {
            state = state.with_trace(cfg.events.trace.clone());
        }
        let ui = super::compose::ui_state(&state, &api);
        let limits = api.limits.clone();
        let stop = shutdown.clone();
        let server =
            tokio::spawn(
                async move {
                    let routes = automate_ui::mount(router(state, events), ui);
                    serve_with(listener, routes, &limits, stop).await
                },
            );
        loop {
            match signals.next().await {
                super::run::Sig::Stop(_) => break,
                super::run::Sig::Hangup => {
                    let reloader = reloader.clone();
                    let report = tokio::task::spawn_blocking(move || reloader.reload_now()).await;
                    // A failure is on stderr already (an error line per
                    // problem); a success is logged at info, which the
                    // default filter hides.
                    if let Some(report) = report.ok().filter(|r| r.ok) {
                        eprintln!("{}", report.log_line());
                    }
                }
            }
        }
        shutdown.cancel();
        let served = server.await.context("the API server panicked");
        // A front door: the posts taken before the stop are put in the
        // queue before the node goes (the enqueuer ends when the server's
        // last handle on it does).
        if let Some(enqueuer) = enqueuer {
            if tokio::time::timeout(FRONT_DOOR_DRAIN, enqueuer).await.is_err() {
                tracing::warn!(target: "evm", "MIQ(automate api) posted events still being queued after {} s of shutdown", FRONT_DOOR_DRAIN.as_secs());
            }
        }
        drop(advertisement);
        served??;
        anyhow::Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(retrier) = retrier {
        let _ = retrier.join();
    }
    // The API's blocking work (a front door's enqueue of posted events, a
    // unit's commit) ends while the node still stands: only then is the
    // queue closed and the drivers' runtime stopped.
    rt.shutdown_timeout(FRONT_DOOR_DRAIN);
    // Out of the registry; the connections closed (off the runtime).
    drop(node);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// How long a stopping `automate api` waits for the posted events it took
/// to be queued, and for its blocking work, before the cluster node goes.
const FRONT_DOOR_DRAIN: Duration = Duration::from_secs(30);

/// The `http` catcher of a front door: the endpoints of `config`'s `http`
/// providers (its other catchers are built, never started: the `automate
/// run` nodes run them under their leases), their events enqueued into
/// `queue` in batches, each post answered once its events are in the queue,
/// by the task returned (it ends once the catcher is dropped and what it
/// took is queued). `None` when no provider uses the `http` catcher.
fn front_door_events(
    config: &automate_events::config::Config,
    queue: Arc<dyn EventQueue>,
    health: Arc<automate_vmdb::health::StoreHealth>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<(HttpState, tokio::task::JoinHandle<()>)>> {
    let (tx, mut rx) = automate_events::catchers::sink_pair(256);
    let Some(mut http) = config.build_catchers(tx)?.http else {
        return Ok(None);
    };
    http.set_shutdown(shutdown);
    http.set_store_health(health);
    let enqueuer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let now = automate_vmdb::to_micros(std::time::SystemTime::now());
            let events: Vec<CaughtEvent> = batch
                .iter()
                .map(|c| (c.provider.clone(), c.event.clone(), now))
                .collect();
            let q = queue.clone();
            let result = match tokio::task::spawn_blocking(move || q.enqueue_owned(events)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the enqueue failed: {e}")),
            };
            if let Err(e) = &result {
                tracing::error!(target: "evm", "MIQ(automate api) {} posted events not queued: {e}", batch.len());
            }
            for mut c in batch {
                c.complete(result.clone());
            }
        }
    });
    Ok(Some((http, enqueuer)))
}
