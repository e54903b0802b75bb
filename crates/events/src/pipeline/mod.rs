//! The running event pipeline (`automate run`): catchers → committer →
//! durable queue → workers → handler and Automate.
//!
//! * The **catchers** of the configuration send [`Caught`] events into a
//!   bounded channel.
//! * The **committer** (a Tokio task) drains the channel in groups of up to
//!   `queue.batch_max` events or `queue.batch_wait_ms`, writes each group to
//!   the [`EventQueue`] durably (group commit), and only then answers the
//!   catchers' acks with `Ok` (so AMQP messages are acked upstream after the
//!   durable write). The written events are handed to the dispatcher in
//!   memory (`RedbEventQueue::with_handoff`, up to [`HANDOFF`] waiting): no
//!   claim has to read, decode and lease them in the file again. When the
//!   queue holds `queue.capacity` events, `when_full: block` stops reading
//!   the channel, which makes the catchers wait (back-pressure);
//!   `drop_newest` answers new events with `Err` and counts them; `park`
//!   keeps taking them and parks them on disk: they are written to the
//!   durable queue like the others (so the catchers never wait and nothing
//!   is lost), counted (`parked`) and logged when parking starts and when
//!   the backlog has drained below the capacity again, and worked in order
//!   as the workers catch up. Memory stays bounded either way: the channel
//!   holds at most one batch, the hand-off at most 4,096 events
//!   (beyond that, events wait in the file only and are claimed from it),
//!   and the workers claim bounded batches.
//! * The **dispatcher** (a thread) claims batches from the queue and hands
//!   each event to one of `workers` **worker threads**, always the same one
//!   for the same provider and host (or VM, when the event names no host):
//!   events of one VM are handled in order, and a VM or host seen for the
//!   first time is created by one worker only. A worker runs
//!   [`Handler::handle_in`] for each event of its batch inside one *unit
//!   of work* ([`UnitOfWork::begin_unit`], an explicit handle, not
//!   thread-local state): it opens the unit when work arrives, makes the
//!   handler's engine over the unit's objects once for as long as it is
//!   busy ([`PipelineUnit::objects`](automate_vmdb::PipelineUnit::objects)),
//!   and hands the engine down; the objects the batch creates and
//!   updates are buffered in memory, and written together with the queue's
//!   ack of the whole batch in one durable transaction. The worker hands
//!   that transaction to the writer and goes on with its next batch while
//!   it commits ([`PipelineUnit::hand_over`](automate_vmdb::PipelineUnit::hand_over):
//!   the unit's reads still see the handed writes); the next batch is
//!   handed over only once the last one is on disk, and is given back with
//!   it should that commit fail (the unit, and the engine over it, are
//!   dropped). Idle with nothing in flight, the worker drops its unit.
//! * The **writer** (the redb store's `GroupCommit`, a thread behind the
//!   [`UnitOfWork`] and the queue) makes those transactions:
//!   redb has one writer, and each commit pays a fixed price, so the
//!   writer takes every enqueue and every worker batch that is waiting and
//!   commits them together (the busier, the fewer and larger the commits).
//!   Each caller waits until its writes are on disk.
//! * A **retry** thread runs [`run_due`](automate_engine::deliver::run_due)
//!   for state-machine retries.
//!
//! **A full disk** ([`StoreHealth`]): the store's writes wait for
//! space instead of failing; meanwhile the committer leaves the catchers'
//! channel unread (the catchers wait, the http catcher answers 503) and
//! everything resumes when there is space. [`Pipeline::shutdown`] gives up
//! on a store that takes no writes (what is not handled stays queued in the
//! file, `store_error` says why), and a store that failed otherwise (a
//! write error, a damaged page) ends `automate run` for a restart.
//!
//! **Where it is built.** The pipeline is handed its engine and its
//! [`PipelineStore`] (the units of work, the durable queue and the
//! scheduled work, as traits); it never opens them, names no backend, and
//! knows nothing of the REST API. The composition root (`automate run`,
//! `src/cli/compose.rs`) opens the redb store, starts its group-commit
//! writer, opens the queue on it (`automate_redb::GroupUnits`,
//! `automate_redb::RedbEventQueue`), builds the engine with its methods,
//! [prepares](Pipeline::prepare)
//! the pipeline, serves the API (with the http catcher's
//! `POST /api/events`, [`Prepared::take_http_catcher`], and the queue's
//! depth, [`Prepared::queue`]) until [`Prepared::stop_signal`], and then
//! [starts](Prepared::start) the pipeline with that server's task, which
//! [`Pipeline::shutdown`] waits for after the catchers.
//!
//! One file per part: `committer.rs`, `dispatcher.rs`, `worker.rs`,
//! `retrier.rs` and `stats.rs`; this one prepares, starts and shuts down.
//!
//! At start the leases of a previous process are released, so whatever it
//! had claimed is delivered again (at-least-once; the handler's
//! de-duplication makes a second delivery store nothing new).
//! [`Pipeline::shutdown`] stops the catchers, lets the committer flush,
//! lets the workers drain the queue, and returns the counts.
//!
//! **Durability.** Enqueue is a durable commit (the catchers' acks, and the
//! http catcher's `202`, come after it). A batch's object writes and its ack
//! are one durable commit: a crash before it loses both, so the events are
//! handled again after the restart, and a crash after it has stored them
//! and removed them from the queue: each event is stored exactly once.
//! An event handed over in memory is leased by its durable enqueue (so no
//! claim from the file takes it twice); claims from the file (a backlog
//! beyond the hand-off, events of a previous run) lease without an
//! fsync (`automate_redb::RedbSchedule::with_relaxed_claims`): losing a lease
//! leaves the event due, as the lease release at start does anyway. The few writes
//! made outside a unit (a VM or host seen for the first time, which every
//! worker must see at once, and state-machine retries) use the store's
//! relaxed durability (set by the composition root) and become durable with the next
//! durable commit, which precedes the ack of any event that refers to them.

use super::catchers::http::HttpState;
use super::catchers::{CatcherError, CatcherStats, Catchers, Caught};
use super::config::{Config, QueueConfig};
use super::handler::FirstSight;
use super::metrics::Metrics;
use super::queue::EventQueue;
use super::{EvmLog, Handler, HandlerError};
use automate_engine::Engine;
use automate_vmdb::health::StoreHealth;
use automate_vmdb::{Schedule, StoreError, UnitOfWork};
use dispatcher::Wake;
use stats::{snapshot, Counters};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod committer;
mod dispatcher;
mod retrier;
mod stats;
mod worker;

pub use stats::{Latency, PipelineStats};
pub use worker::MAX_EVENT_ATTEMPTS;

/// Most queued events handed from the committer to the dispatcher in
/// memory at once (the composition root gives it to
/// `automate_redb::RedbEventQueue::with_handoff`).
pub const HANDOFF: usize = 4096;

/// Where the pipeline writes, handed in by the composition root as
/// traits: the pipeline names no backend.
#[derive(Clone)]
pub struct PipelineStore {
    /// The workers' units of work and the writer that commits them (with
    /// the queue's acks); also the store's health. Over the engine's own
    /// object store: a worker runs its handler with the engine over its
    /// unit's view ([`PipelineUnit::objects`](automate_vmdb::PipelineUnit::objects)),
    /// so what the handler and Automate write is what the unit buffers.
    pub units: Arc<dyn UnitOfWork>,
    /// The durable event queue (its enqueues go through the same writer).
    pub queue: Arc<dyn EventQueue>,
    /// The scheduled work the handlers' retries go to and the retry runner
    /// delivers.
    pub schedule: Arc<dyn Schedule>,
}

impl std::fmt::Debug for PipelineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineStore")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Why the pipeline could not be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The object store, or the durable queue in it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Making the handlers (the `MiqServer`, `User` and providers they
    /// write).
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// A catcher's settings.
    #[error(transparent)]
    Catcher(#[from] CatcherError),
    /// A thread (the group-commit writer, the dispatcher, the retry
    /// runner) could not be started.
    #[error("starting the {what}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A server the composition root runs beside the pipeline (the REST API
/// with the http catcher's endpoint): stopped by [`Prepared::stop_signal`],
/// awaited by [`Pipeline::shutdown`] after the catchers.
pub type ServerTask = JoinHandle<std::io::Result<()>>;

/// A pipeline whose queue is open (the leases of a previous process
/// released), whose handlers and catchers are built, and of which nothing
/// runs yet but the store's group-commit writer: see [`Prepared::start`].
pub struct Prepared {
    engine: Engine,
    units: Arc<dyn UnitOfWork>,
    schedule: Arc<dyn Schedule>,
    queue: Arc<dyn EventQueue>,
    released: usize,
    dispatch_handler: Handler,
    handlers: Vec<Handler>,
    catchers: Catchers,
    caught: mpsc::Receiver<Caught>,
    catcher_stats: Vec<Arc<CatcherStats>>,
    stop_catchers: CancellationToken,
    queue_config: QueueConfig,
    stats_interval: Duration,
    metrics: Metrics,
    first_sight: FirstSight,
    workers: usize,
    /// The running pipeline's counters, set by [`Prepared::start`] (what a
    /// [`NodeLoad`] reads).
    live: Arc<std::sync::OnceLock<Arc<Counters>>>,
    /// The events the workers handle, shown live ([`Prepared::live_events`]).
    live_events: crate::trace::LiveEvents,
}

/// A running node's figures for the cluster's status (its workers, the
/// events handled, the queue depth it sees), readable before the pipeline
/// starts ([`Prepared::node_load`]): what the embedded
/// [`ClusterView`](automate_vmdb::cluster::ClusterView) probes and a
/// cluster node's heartbeat sends.
#[derive(Clone)]
pub struct NodeLoad {
    workers: usize,
    queue: Arc<dyn EventQueue>,
    live: Arc<std::sync::OnceLock<Arc<Counters>>>,
}

impl std::fmt::Debug for NodeLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLoad")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl NodeLoad {
    /// Fills `info`'s workers, events handled (0 before the start) and
    /// queue depth.
    pub fn fill(&self, info: &mut automate_vmdb::cluster::NodeInfo) {
        info.workers = self.workers as u64;
        info.handled = self
            .live
            .get()
            .map_or(0, |c| c.handled.load(Ordering::Relaxed));
        info.queue_depth = self.queue.depth();
    }

    /// [`NodeLoad::fill`] as an [`EmbeddedCluster`](automate_vmdb::cluster::EmbeddedCluster)'s probe.
    pub fn probe(self) -> automate_vmdb::cluster::Probe {
        Arc::new(move |info| self.fill(info))
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("queued", &self.queue.depth())
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The durable queue (the REST API's `/api/health` reports its depth).
    pub fn queue(&self) -> Arc<dyn EventQueue> {
        self.queue.clone()
    }

    /// The lock the workers' handlers share for VMs and hosts seen for
    /// the first time: a handler made elsewhere in the process (the API's
    /// `event send`) takes it too, so no two create the same VM.
    pub fn first_sight(&self) -> FirstSight {
        self.first_sight.clone()
    }

    /// The `http` catchers' endpoint state, to be served by the REST API
    /// (merged into its router), with the pipeline's shutdown and the
    /// store's health set; `None` when no provider uses the `http`
    /// catcher (or it was taken already).
    pub fn take_http_catcher(&mut self) -> Option<HttpState> {
        let mut state = self.catchers.http.take()?;
        state.set_shutdown(self.stop_catchers.clone());
        state.set_store_health(self.units.health());
        Some(state)
    }

    /// Counts into `metrics` (`GET /metrics`, made by the composition
    /// root and shared with the REST API): events by provider and type,
    /// the batch commits' and the instantiations' latency; its queue depth
    /// and retry gauges read this pipeline's queue and schedule. Without
    /// it the pipeline counts into a registry of its own nobody reads.
    pub fn with_metrics(mut self, metrics: Metrics) -> Prepared {
        metrics.watch_queue(self.queue.clone());
        metrics.watch_schedule(self.schedule.clone());
        let with = |h: Handler| h.with_metrics(metrics.clone());
        self.handlers = std::mem::take(&mut self.handlers)
            .into_iter()
            .map(with)
            .collect();
        self.metrics = metrics;
        self
    }

    /// The events this node's workers handle, as they are handled: what
    /// the API's live stream (`GET /api/events/stream`) listens to.
    pub fn live_events(&self) -> crate::trace::LiveEvents {
        self.live_events.clone()
    }

    /// In a cluster: each reading catcher runs only while this node holds
    /// its lease `catcher.<provider>` and resumes from the stored position
    /// (`crate::catchers::lease`). Without it (the embedded mode) every
    /// catcher runs as it always did.
    pub fn with_leases(mut self, leases: Arc<dyn automate_vmdb::lease::Leases>) -> Prepared {
        self.catchers.set_leases(leases);
        self
    }

    /// This node's live figures for the cluster's status.
    pub fn node_load(&self) -> NodeLoad {
        NodeLoad {
            workers: self.workers,
            queue: self.queue.clone(),
            live: self.live.clone(),
        }
    }

    /// Cancelled when [`Pipeline::shutdown`] begins: the server beside the
    /// pipeline stops accepting with the catchers.
    pub fn stop_signal(&self) -> CancellationToken {
        self.stop_catchers.clone()
    }

    /// Starts the catchers, the periodic stats line, the committer, the
    /// dispatcher with its workers and the retry runner. `server` (the
    /// REST API's task, if the composition root serves one) is awaited by
    /// [`Pipeline::shutdown`] after the catchers. Call it inside a Tokio
    /// runtime.
    pub fn start(self, server: Option<ServerTask>) -> Result<Pipeline, PipelineError> {
        let Prepared {
            engine,
            units,
            schedule,
            queue,
            released,
            dispatch_handler,
            handlers,
            catchers,
            caught,
            catcher_stats,
            stop_catchers,
            queue_config,
            stats_interval,
            metrics,
            first_sight: _,
            workers: _,
            live,
            live_events: _,
        } = self;
        let counters = Arc::new(Counters {
            metrics,
            ..Counters::default()
        });
        let _ = live.set(counters.clone());
        let wake = Arc::new(Wake::default());
        let drain = Arc::new(AtomicBool::new(false));
        let stop_retries = Arc::new(AtomicBool::new(false));

        let mut catchers = catchers;
        catchers.set_operations(Arc::new(crate::catchers::operations::Operations::new(
            engine.store().clone(),
            &format!("automate pid {}", std::process::id()),
            settled_probe(counters.clone(), queue.clone(), catcher_stats.clone()),
        )));
        let catchers_task = tokio::spawn(catchers.run(stop_catchers.clone()));
        let stats_logger = (!stats_interval.is_zero()).then(|| {
            tokio::spawn(stats::log_stats(
                stats_interval,
                counters.clone(),
                queue.clone(),
                catcher_stats.clone(),
            ))
        });

        let committer = tokio::spawn(committer::commit_loop(
            caught,
            queue.clone(),
            queue_config,
            counters.clone(),
            wake.clone(),
            units.health(),
        ));

        let health = units.health();
        let dispatcher = {
            let queue = queue.clone();
            let counters = counters.clone();
            let wake = wake.clone();
            let drain = drain.clone();
            let writes = units.clone();
            std::thread::Builder::new()
                .name("automate-dispatch".into())
                .spawn(move || {
                    dispatcher::dispatch_loop(
                        dispatch_handler,
                        handlers,
                        writes,
                        queue,
                        counters,
                        wake,
                        drain,
                    )
                })
                .map_err(|source| PipelineError::Thread {
                    what: "dispatcher",
                    source,
                })?
        };
        let retrier = {
            let schedule = schedule.clone();
            let counters = counters.clone();
            let stop = stop_retries.clone();
            std::thread::Builder::new()
                .name("automate-retries".into())
                .spawn(move || retrier::retry_loop(&engine, &*schedule, &counters, &stop))
                .map_err(|source| PipelineError::Thread {
                    what: "retry runner",
                    source,
                })?
        };

        Ok(Pipeline {
            stop_catchers,
            catchers: Some(catchers_task),
            server,
            committer: Some(committer),
            dispatcher: Some(dispatcher),
            retrier: Some(retrier),
            units: Some(units),
            drain,
            stop_retries,
            wake,
            queue,
            counters,
            catcher_stats,
            stats_logger,
            health,
            released,
        })
    }
}

/// Whether every event the catchers sent has been handled: the committer
/// is done with as many as they sent and the queue is empty (what a
/// catcher serving provider operations waits for before it ends,
/// `crate::catchers::operations`).
fn settled_probe(
    counters: Arc<Counters>,
    queue: Arc<dyn EventQueue>,
    catcher_stats: Vec<Arc<CatcherStats>>,
) -> crate::catchers::operations::Settled {
    Arc::new(move || {
        let sent: u64 = catcher_stats
            .iter()
            .map(|c| c.sent.load(Ordering::Relaxed))
            .sum();
        sent <= counters.accounted.load(Ordering::Relaxed) && queue.depth() == 0
    })
}

/// A running pipeline. Start it inside a Tokio runtime.
pub struct Pipeline {
    stop_catchers: CancellationToken,
    catchers: Option<JoinHandle<Result<(), CatcherError>>>,
    /// The server beside the pipeline ([`Prepared::start`]).
    server: Option<ServerTask>,
    committer: Option<JoinHandle<()>>,
    dispatcher: Option<std::thread::JoinHandle<()>>,
    retrier: Option<std::thread::JoinHandle<()>>,
    /// Closed (its writer stopped) at the end of [`Pipeline::shutdown`].
    units: Option<Arc<dyn UnitOfWork>>,
    drain: Arc<AtomicBool>,
    stop_retries: Arc<AtomicBool>,
    wake: Arc<Wake>,
    queue: Arc<dyn EventQueue>,
    counters: Arc<Counters>,
    catcher_stats: Vec<Arc<CatcherStats>>,
    stats_logger: Option<JoinHandle<()>>,
    /// The store file's health (a full disk pauses the intake).
    health: Arc<StoreHealth>,
    /// Leases released at start (events a previous process had claimed).
    pub released: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("queued", &self.queue.depth())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Prepares the pipeline of `config` on `engine` (with its methods),
    /// whose object store `backend` writes to (the store opened with
    /// relaxed durability: the pipeline's commits make its writes durable;
    /// its writer started; the queue open on it): releases the leases of a
    /// previous process, makes the handlers (the providers of `config` are
    /// created first) and builds the catchers. Nothing else runs until
    /// [`Prepared::start`].
    pub fn prepare(
        config: &Config,
        engine: Engine,
        backend: PipelineStore,
    ) -> Result<Prepared, PipelineError> {
        let PipelineStore {
            units,
            queue,
            schedule,
        } = backend;
        let released = queue.release_leases()?;
        if released > 0 {
            tracing::info!(target: "evm", "MIQ(EventQueue) {released} items claimed by a previous run are due again");
        }
        // Handlers are made one after the other: the first creates the
        // MiqServer and User, the providers are created before any worker
        // runs, so no two workers race to create them. They share one
        // lock for the VMs and hosts seen for the first time.
        let first_sight = FirstSight::default();
        let live_events = crate::trace::LiveEvents::default();
        let dispatch_handler = Handler::new(engine.clone(), EvmLog::default())?
            .with_schedule(schedule.clone())
            .with_first_sight(first_sight.clone());
        for p in &config.providers {
            dispatch_handler.provider_ref(&p.provider)?;
        }
        let workers = config.workers.max(1);
        let mut handlers = Vec::with_capacity(workers);
        for _ in 0..workers {
            handlers.push(
                Handler::new(engine.clone(), EvmLog::discarding())?
                    .with_schedule(schedule.clone())
                    .deferring_retries()
                    .with_first_sight(first_sight.clone())
                    .with_trace(config.events.trace.clone())
                    .with_live(live_events.clone()),
            );
        }

        // Catchers and their channel (as deep as a batch: the backlog
        // lives in the durable queue).
        let (tx, caught) = super::catchers::sink_pair(config.queue.batch_max.max(16));
        let catchers = config.build_catchers(tx)?;
        let catcher_stats: Vec<Arc<CatcherStats>> =
            catchers.catchers.iter().map(|c| c.stats()).collect();
        Ok(Prepared {
            engine,
            units,
            schedule,
            queue,
            released,
            dispatch_handler,
            handlers,
            catchers,
            caught,
            catcher_stats,
            stop_catchers: CancellationToken::new(),
            queue_config: config.queue.clone(),
            stats_interval: Duration::from_secs(config.log.stats_interval_secs),
            metrics: Metrics::default(),
            first_sight,
            workers,
            live: Arc::default(),
            live_events,
        })
    }

    /// The run's counts so far (catchers, queue, handlers).
    pub fn stats(&self) -> PipelineStats {
        snapshot(&self.counters, &*self.queue, &self.catcher_stats)
    }

    /// The metrics the pipeline counts into ([`Prepared::with_metrics`]):
    /// what a reload reports to ([`Metrics::reload`]).
    pub fn metrics(&self) -> Metrics {
        self.counters.metrics.clone()
    }

    /// Whether the catchers have ended (their input is exhausted), every
    /// caught event is queued and the queue is empty.
    pub fn is_idle(&self) -> bool {
        self.committer.as_ref().is_none_or(|c| c.is_finished()) && self.queue.depth() == 0
    }

    /// Waits until [`Pipeline::is_idle`], or until the store has failed
    /// (then it never will be).
    pub async fn wait_idle(&self) {
        while !self.is_idle() && !self.health.is_failed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The store file's health: a full disk pauses the intake until there
    /// is space; a failed store needs a restart.
    pub fn store_health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    /// Waits until the store has failed (a write or sync error other than
    /// a full disk, a damaged page): only a restart opens it again.
    pub async fn wait_store_failed(&self) {
        while !self.health.is_failed() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops gracefully: stops the catchers, lets the committer queue what
    /// they sent, lets the workers drain the queue, then returns the counts.
    /// A catcher's error is logged.
    pub async fn shutdown(mut self) -> PipelineStats {
        self.stop_catchers.cancel();
        // A store that takes no writes (a full disk, now or during the
        // drain) ends the drain: waiting writes give up, and what is not
        // handled stays queued in the file.
        let health = self.health.clone();
        let give_up = tokio::spawn(async move {
            while health.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::error!(target: "evm", "MIQ(automate run) the object store takes no writes: the drain gives up; events not handled stay queued for the next start");
            health.give_up();
        });
        if let Some(l) = self.stats_logger.take() {
            l.abort();
        }
        let mut catcher_error = None;
        if let Some(c) = self.catchers.take() {
            match c.await {
                Ok(Ok(())) => {}
                // Catchers::run has logged it.
                Ok(Err(e)) => catcher_error = Some(e.to_string()),
                Err(e) => {
                    tracing::error!(target: "evm", "MIQ(EventCatcher) task failed: {e}");
                    catcher_error = Some(format!("catcher task failed: {e}"));
                }
            }
        }
        if let Some(h) = self.server.take() {
            if let Ok(Err(e)) = h.await {
                tracing::error!(target: "evm", "MIQ(EventCatcher) http listener: {e}");
            }
        }
        if let Some(c) = self.committer.take() {
            let _ = c.await;
        }
        self.drain.store(true, Ordering::SeqCst);
        self.wake.notify();
        self.stop_retries.store(true, Ordering::SeqCst);
        let dispatcher = self.dispatcher.take();
        let retrier = self.retrier.take();
        let units = self.units.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(d) = dispatcher {
                let _ = d.join();
            }
            if let Some(r) = retrier {
                let _ = r.join();
            }
            if let Some(u) = units {
                u.close();
            }
        })
        .await;
        give_up.abort();
        PipelineStats {
            catcher_error,
            store_error: self
                .health
                .fault()
                .map(|f| format!("{} ({}): {}", f.path, f.state, f.message)),
            ..self.stats()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catchers::lease::tests::{MemLeases, Shared};
    use automate_vmdb::lease::Leases;

    /// The whole pipeline on redb with a jsonl catcher under a lease: the
    /// committer's answers let the catcher store its position, the events
    /// are handled once, the lease is given up at the end of the input.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leased_catcher_stores_its_position_once_its_events_are_queued() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (1..=40)
            .map(|i| {
                format!(
                    "{{\"event_type\": \"USER_RUN_VM\", \"timestamp\": \"2026-01-01T00:00:{:02}Z\", \"vm_ems_ref\": \"/api/vms/vm-{i}\", \"vm_name\": \"vm-{i}\"}}\n",
                    i % 60
                )
            })
            .collect();
        std::fs::write(dir.path().join("events.jsonl"), lines).unwrap();
        let config = Config::from_yaml(
            &format!(
                "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: jsonl, path: {}}}\nworkers: 2\n",
                dir.path().join("events.jsonl").display()
            ),
            "automate.yaml",
        )
        .unwrap();
        let store = Arc::new(
            automate_redb::RedbStore::open(dir.path().join("p.redb"))
                .unwrap()
                .with_relaxed_durability(true),
        );
        let root =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("datastore");
        let (ds, problems) = automate_datastore::Datastore::open(&root);
        assert!(problems.is_empty(), "{problems:?}");
        let (engine, _runner) =
            automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store.clone()));
        let (group, writer) = automate_redb::GroupCommit::start(store.clone()).unwrap();
        let queue = Arc::new(
            automate_redb::RedbEventQueue::open(store.schedule())
                .unwrap()
                .with_group(group.clone()),
        );
        let backend = PipelineStore {
            units: Arc::new(automate_redb::GroupUnits::new(store.clone(), group, writer)),
            queue,
            schedule: Arc::new(store.schedule()),
        };
        let leases = MemLeases::new("n1", Arc::new(Shared::default()));
        let prepared = Pipeline::prepare(&config, engine, backend)
            .unwrap()
            .with_leases(Arc::new(leases.clone()));
        let load = prepared.node_load();
        let pipeline = prepared.start(None).unwrap();
        pipeline.wait_idle().await;
        let stats = pipeline.shutdown().await;
        assert_eq!((stats.enqueued, stats.handled), (40, 40), "{stats:?}");
        assert_eq!(leases.position("rhevm01").unwrap(), Some(40));
        assert_eq!(
            leases.holder("catcher.rhevm01"),
            None,
            "given up at the end"
        );
        let mut info = automate_vmdb::cluster::NodeInfo::default();
        load.fill(&mut info);
        assert_eq!((info.workers, info.handled, info.queue_depth), (2, 40, 0));
    }
}
