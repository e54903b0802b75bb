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
//!   memory ([`EventQueue::with_handoff`], up to [`HANDOFF`] waiting): no
//!   claim has to read, decode and lease them in the file again. When the
//!   queue holds `queue.capacity` events, `when_full: block` stops reading
//!   the channel, which makes the catchers wait (back-pressure);
//!   `drop_newest` answers new events with `Err` and counts them; `park`
//!   keeps taking them and parks them on disk: they are written to the
//!   durable queue like the others (so the catchers never wait and nothing
//!   is lost), counted (`parked`) and logged when parking starts and when
//!   the backlog has drained below the capacity again, and worked in order
//!   as the workers catch up. Memory stays bounded either way: the channel
//!   holds at most one batch, the hand-off at most [`HANDOFF`] events
//!   (beyond that, events wait in the file only and are claimed from it),
//!   and the workers claim bounded batches.
//! * The **dispatcher** (a thread) claims batches from the queue and hands
//!   each event to one of `workers` **worker threads**, always the same one
//!   for the same provider and host (or VM, when the event names no host):
//!   events of one VM are handled in order, and a VM or host seen for the
//!   first time is created by one worker only. A worker runs
//!   [`Handler::handle`] for each event of its batch inside one *unit of
//!   work* ([`RedbStore::begin_unit`]): the objects the batch creates and
//!   updates are buffered in memory, and written together with the queue's
//!   ack of the whole batch in one durable transaction. The worker hands
//!   that transaction to the writer and goes on with its next batch while
//!   it commits ([`RedbStore::hand_over`]: its reads still see the handed
//!   writes); the next batch is handed over only once the last one is on
//!   disk, and is given back with it should that commit fail.
//! * The **writer** ([`GroupCommit`], a thread) makes those transactions:
//!   redb has one writer, and each commit pays a fixed price, so the
//!   writer takes every enqueue and every worker batch that is waiting and
//!   commits them together (the busier, the fewer and larger the commits).
//!   Each caller waits until its writes are on disk.
//! * A **retry** thread runs [`run_due`] for state-machine retries.
//!
//! **A full disk** ([`crate::vmdb::health`]): the store's writes wait for
//! space instead of failing; meanwhile the committer leaves the catchers'
//! channel unread (the catchers wait, the http catcher answers 503) and
//! everything resumes when there is space. [`Pipeline::shutdown`] gives up
//! on a store that takes no writes (what is not handled stays queued in the
//! file, `store_error` says why), and a store that failed otherwise (a
//! write error, a damaged page) ends `automate run` for a restart.
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
//! fsync ([`crate::vmdb::RedbSchedule::with_relaxed_claims`]): losing a lease
//! leaves the event due, as the lease release at start does anyway. The few writes
//! made outside a unit (a VM or host seen for the first time, which every
//! worker must see at once, and state-machine retries) use
//! [`RedbStore::with_relaxed_durability`] and become durable with the next
//! durable commit, which precedes the ack of any event that refers to them.

use super::catchers::{CatcherError, CatcherStats, Catchers, Caught};
use super::config::{Config, QueueConfig, WhenFull};
use super::queue::{ClaimedEvent, EventQueue};
use super::{EvmLog, Handler, Provider, ProviderEvent};
use crate::datastore::Datastore;
use crate::engine::deliver::{run_due, Outcome, PendingRetry, DEFAULT_MAX_DELIVERIES};
use crate::engine::Engine;
use crate::vmdb::health::StoreHealth;
use crate::vmdb::{Committing, GroupCommit, GroupWriter, RedbStore};
use anyhow::Context;
use serde::Serialize;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Claimed events a worker may have waiting (in batches) before the
/// dispatcher waits for it.
const WORKER_BACKLOG: usize = 2;
/// Most events one claim takes per worker.
const CLAIM_PER_WORKER: usize = 512;
/// Most queued events handed from the committer to the dispatcher in
/// memory at once ([`EventQueue::with_handoff`]).
const HANDOFF: usize = 4096;
/// How many times an event whose handling fails (the handler's error or
/// panic) is tried before it is dead-lettered.
pub const MAX_EVENT_ATTEMPTS: u32 = 3;
/// How long a worker waits after a failed commit before it takes its next
/// batch (the failed one is claimed again at once).
const COMMIT_BACKOFF: Duration = Duration::from_millis(500);
/// The backlog (events enqueued and not yet acked) from which the
/// committer waits up to `queue.batch_wait_ms` to fill a batch.
const BUSY_DEPTH: u64 = 64;
/// How long an idle dispatcher sleeps before looking at the queue again.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How often due state-machine retries are looked for.
const RETRY_POLL: Duration = Duration::from_millis(250);

/// What the pipeline did (see [`Pipeline::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PipelineStats {
    /// Events the catchers parsed (filtered ones included).
    pub caught: u64,
    /// Events the providers' filters dropped.
    pub skipped: u64,
    /// Input the catchers could not parse.
    pub rejected: u64,
    /// Events written to the durable queue.
    pub enqueued: u64,
    /// Events refused because the queue was full (`when_full: drop_newest`).
    pub dropped: u64,
    /// Events written to the queue on disk while it held `capacity` events
    /// or more (`when_full: park`).
    pub parked: u64,
    /// Events the workers handled (duplicates included).
    pub handled: u64,
    /// Handled events that were stored already (nothing delivered).
    pub duplicates: u64,
    /// Events whose handling or delivery ended with an error, and queue
    /// writes that failed.
    pub errors: u64,
    /// Events handled again after a crash or an expired lease, or after
    /// their handling failed.
    pub redelivered: u64,
    /// Events whose handling failed (an error or a panic of the handler,
    /// not an Automate error): their writes were discarded and they were
    /// given back to the queue to be tried again.
    pub failed: u64,
    /// Events whose handling failed [`MAX_EVENT_ATTEMPTS`] times: removed
    /// from the queue and stored as a `DeadLetterEvent` row of the event
    /// stream (with the error), see `automate events list`.
    pub dead_lettered: u64,
    /// State-machine retries delivered.
    pub retries: u64,
    /// Events still in the queue.
    pub queued: u64,
    /// Latency of the events handled, from their catch to the durable
    /// commit of everything they caused (the last relationship followed,
    /// stored with the ack), in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Latency>,
    /// Microseconds from the first handled event's catch to the last
    /// batch's commit: the event flow without start-up and shutdown.
    pub flow_us: u64,
    /// Why a catcher stopped early, if one did (set by
    /// [`Pipeline::shutdown`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catcher_error: Option<String>,
    /// Why the object store took no more writes, if it did (a full disk
    /// at shutdown, a failed write): the events not handled stay queued
    /// in the file for the next start (set by [`Pipeline::shutdown`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

/// Latency percentiles (microseconds; about 0.2% resolution).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// A log-linear histogram of microseconds: exact below 1024, then 512
/// buckets per power of two.
#[derive(Debug)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
    first_us: u64,
    last_us: u64,
}

const SUB: u64 = 512;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; (1024 + 54 * SUB) as usize],
            count: 0,
            max: 0,
            first_us: u64::MAX,
            last_us: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 1024 {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros()) - 9;
        let m = v >> e;
        (1024 + (e - 1) * SUB + (m - SUB)) as usize
    }

    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < 1024 {
            return i;
        }
        let e = (i - 1024) / SUB + 1;
        let m = (i - 1024) % SUB + SUB;
        m << e
    }

    fn record(&mut self, v: u64) {
        let i = Self::index(v).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    fn quantile(&self, q: f64) -> u64 {
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    fn summary(&self) -> Option<Latency> {
        (self.count > 0).then(|| Latency {
            count: self.count,
            p50: self.quantile(0.5),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max,
        })
    }
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    enqueued: AtomicU64,
    dropped: AtomicU64,
    parked: AtomicU64,
    latency: Mutex<Histogram>,
    /// The latency since the last periodic stats line.
    window: Mutex<Histogram>,
    handled: AtomicU64,
    duplicates: AtomicU64,
    errors: AtomicU64,
    redelivered: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// Wakes the dispatcher when events were queued.
#[derive(Debug, Default)]
struct Wake {
    queued: Mutex<u64>,
    cond: Condvar,
}

impl Wake {
    fn notify(&self) {
        if let Ok(mut n) = self.queued.lock() {
            *n = n.wrapping_add(1);
        }
        self.cond.notify_all();
    }

    /// Waits until notified or `timeout`.
    fn wait(&self, timeout: Duration) {
        if let Ok(n) = self.queued.lock() {
            let seen = *n;
            let _ = self.cond.wait_timeout_while(n, timeout, |n| *n == seen);
        }
    }
}

/// The pipeline's counts from its parts ([`Pipeline::stats`]).
fn snapshot(
    c: &Counters,
    queue: &EventQueue,
    catcher_stats: &[Arc<CatcherStats>],
) -> PipelineStats {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut s = PipelineStats {
        enqueued: g(&c.enqueued),
        dropped: g(&c.dropped),
        parked: g(&c.parked),
        handled: g(&c.handled),
        duplicates: g(&c.duplicates),
        errors: g(&c.errors),
        redelivered: g(&c.redelivered),
        failed: g(&c.failed),
        dead_lettered: g(&c.dead_lettered),
        retries: g(&c.retries),
        queued: queue.depth(),
        ..PipelineStats::default()
    };
    if let Ok(h) = c.latency.lock() {
        s.latency_us = h.summary();
        s.flow_us = h.last_us.saturating_sub(h.first_us.min(h.last_us));
    }
    for cs in catcher_stats {
        let snap = cs.snapshot();
        s.caught += snap.caught;
        s.skipped += snap.skipped;
        s.rejected += snap.rejected;
    }
    s
}

/// Every `every`, logs `MIQ(automate run) stats {...}` to evm.log: the
/// counts so far, and the latency of the events handled since the previous
/// line (`latency_us` covers that interval only; `scripts/soak` reads it).
async fn log_stats(
    every: Duration,
    counters: Arc<Counters>,
    queue: Arc<EventQueue>,
    catcher_stats: Vec<Arc<CatcherStats>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut s = snapshot(&counters, &queue, &catcher_stats);
        s.latency_us = counters
            .window
            .lock()
            .ok()
            .and_then(|mut h| std::mem::take(&mut *h).summary());
        s.flow_us = 0;
        match serde_json::to_string(&s) {
            Ok(json) => tracing::info!(target: "evm", "MIQ(automate run) stats {json}"),
            Err(e) => tracing::warn!(target: "evm", "MIQ(automate run) stats: {e}"),
        }
    }
}

/// A running pipeline. Start it inside a Tokio runtime.
pub struct Pipeline {
    stop_catchers: CancellationToken,
    catchers: Option<JoinHandle<Result<(), CatcherError>>>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    committer: Option<JoinHandle<()>>,
    dispatcher: Option<std::thread::JoinHandle<()>>,
    retrier: Option<std::thread::JoinHandle<()>>,
    writer: Option<GroupWriter>,
    drain: Arc<AtomicBool>,
    stop_retries: Arc<AtomicBool>,
    wake: Arc<Wake>,
    queue: Arc<EventQueue>,
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
    /// Opens the store at `db_path` and the datastore at `datastore_root`,
    /// releases the leases of a previous process, and starts the catchers,
    /// the committer, the dispatcher with `config.workers` workers and the
    /// retry runner.
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
        let worker_store = store.clone();
        let (ds, problems) = Datastore::open(datastore_root);
        for p in &problems {
            tracing::warn!(target: "evm", "datastore: {p}");
        }
        let mut engine = Engine::new(Arc::new(ds)).with_store(store.clone());
        engine.options.budget = config.engine.limits();
        let (engine, _runner) = crate::control::with_control(engine);
        let (group, writer) = GroupCommit::start(store.clone())?;
        let queue = Arc::new(
            EventQueue::open(store.schedule().with_relaxed_claims(true))?
                .with_handoff(HANDOFF)
                .with_group(group.clone()),
        );
        let released = queue.release_leases()?;
        if released > 0 {
            tracing::info!(target: "evm", "MIQ(EventQueue) {released} items claimed by a previous run are due again");
        }
        // Handlers are made one after the other: the first creates the
        // MiqServer and User, the providers are created before any worker
        // runs, so no two workers race to create them.
        let dispatch_handler =
            Handler::new(engine.clone(), EvmLog::default())?.with_schedule(store.schedule());
        for p in &config.providers {
            dispatch_handler.provider_ref(&p.provider)?;
        }
        let workers = config.workers.max(1);
        let mut handlers = Vec::with_capacity(workers);
        for _ in 0..workers {
            handlers.push(
                Handler::new(engine.clone(), EvmLog::discarding())?
                    .with_schedule(store.schedule())
                    .deferring_retries(),
            );
        }

        let counters = Arc::new(Counters::default());
        let wake = Arc::new(Wake::default());
        let drain = Arc::new(AtomicBool::new(false));
        let stop_retries = Arc::new(AtomicBool::new(false));

        // Catchers and their channel (as deep as a batch: the backlog
        // lives in the durable queue).
        let (tx, rx) = super::catchers::sink_pair(config.queue.batch_max.max(16));
        let mut catchers = Catchers::build(config, tx)?;
        let catcher_stats: Vec<Arc<CatcherStats>> =
            catchers.catchers.iter().map(|c| c.stats()).collect();
        let stop_catchers = CancellationToken::new();
        // The REST API (`crate::api`, the http catcher's `POST /api/events`
        // merged in) on api.listen, when an http catcher or api.token asks.
        let mut events = catchers.http.take();
        let http = if events.is_some() || !config.api.token.is_empty() {
            let listener = tokio::net::TcpListener::bind(&config.api.listen)
                .await
                .with_context(|| format!("listening on {}", config.api.listen))?;
            if let Some(state) = events.as_mut() {
                state.set_shutdown(stop_catchers.clone());
                state.set_store_health(store.health());
            }
            let api = crate::api::ApiState::new(&*config.api.token, engine.clone(), store.clone())?
                .with_queue(queue.clone())
                .with_config(&config.api)?;
            let router = crate::api::router(api, events);
            let limits = config.api.limits.clone();
            let stop = stop_catchers.clone();
            Some(tokio::spawn(async move {
                crate::api::serve_with(listener, router, &limits, stop).await
            }))
        } else {
            None
        };
        let catchers_task = tokio::spawn(catchers.run(stop_catchers.clone()));
        let stats_logger = (config.log.stats_interval_secs > 0).then(|| {
            tokio::spawn(log_stats(
                Duration::from_secs(config.log.stats_interval_secs),
                counters.clone(),
                queue.clone(),
                catcher_stats.clone(),
            ))
        });

        let committer = tokio::spawn(commit_loop(
            rx,
            queue.clone(),
            config.queue.clone(),
            counters.clone(),
            wake.clone(),
            store.health(),
        ));

        let health = store.health();
        let dispatcher = {
            let queue = queue.clone();
            let counters = counters.clone();
            let wake = wake.clone();
            let drain = drain.clone();
            std::thread::Builder::new()
                .name("automate-dispatch".into())
                .spawn(move || {
                    dispatch_loop(
                        dispatch_handler,
                        handlers,
                        Writes {
                            store: worker_store,
                            group,
                        },
                        queue,
                        counters,
                        wake,
                        drain,
                    )
                })?
        };
        let retrier = {
            let schedule = store.schedule();
            let counters = counters.clone();
            let stop = stop_retries.clone();
            std::thread::Builder::new()
                .name("automate-retries".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match run_due(&engine, &schedule, 16, DEFAULT_MAX_DELIVERIES) {
                            Ok(outcomes) if !outcomes.is_empty() => {
                                for o in &outcomes {
                                    bump(&counters.retries, 1);
                                    if matches!(o, Outcome::Error { .. } | Outcome::GaveUp(_)) {
                                        bump(&counters.errors, 1);
                                    }
                                }
                                continue;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::error!(target: "evm", "MIQ(MiqAeEngine.deliver) running due retries: {e}")
                            }
                        }
                        std::thread::sleep(RETRY_POLL);
                    }
                })?
        };

        Ok(Pipeline {
            stop_catchers,
            catchers: Some(catchers_task),
            http,
            committer: Some(committer),
            dispatcher: Some(dispatcher),
            retrier: Some(retrier),
            writer: Some(writer),
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

    /// The counts so far.
    pub fn stats(&self) -> PipelineStats {
        snapshot(&self.counters, &self.queue, &self.catcher_stats)
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
        if let Some(h) = self.http.take() {
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
        let writer = self.writer.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(d) = dispatcher {
                let _ = d.join();
            }
            if let Some(r) = retrier {
                let _ = r.join();
            }
            if let Some(w) = writer {
                w.stop();
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

/// The committer: group commit of caught events into the durable queue,
/// then the catchers' acks.
async fn commit_loop(
    mut rx: mpsc::Receiver<Caught>,
    queue: Arc<EventQueue>,
    cfg: QueueConfig,
    counters: Arc<Counters>,
    wake: Arc<Wake>,
    health: Arc<StoreHealth>,
) {
    let capacity = cfg.capacity.max(1) as u64;
    let batch_max = cfg.batch_max.max(1);
    let wait = Duration::from_millis(cfg.batch_wait_ms);
    let blocking = cfg.when_full == WhenFull::Block;
    let parking = cfg.when_full == WhenFull::Park;
    // Whether events are being parked (the queue is at capacity).
    let mut parked_since: Option<u64> = None;
    let unparked = |from: u64| {
        let n = counters.parked.load(Ordering::Relaxed).saturating_sub(from);
        tracing::info!(target: "evm", "MIQ(EventQueue) backlog below capacity ({capacity} events) again: {n} events were parked on disk");
    };
    loop {
        if let Some(from) = parked_since {
            if queue.depth() < capacity {
                unparked(from);
                parked_since = None;
            }
        }
        // A full disk: leave the channel unread (the catchers wait; the
        // http catcher answers 503) until there is space, or the process
        // gives up on the store.
        while health.is_disk_full() && !health.gave_up() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if blocking {
            // Back-pressure: leave the channel unread while the queue is full.
            while queue.depth() >= capacity {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let Some(first) = rx.recv().await else { break };
        let caught_us = crate::vmdb::to_micros(SystemTime::now());
        let mut batch = vec![first];
        // Waiting for more only pays while the workers are busy (a backlog
        // of BUSY_DEPTH or more): then an event could not start sooner
        // anyway, and larger batches cost less per event. With the workers
        // idle, the events go at once (with whatever else is already here).
        let busy = queue.depth() >= BUSY_DEPTH;
        let deadline = tokio::time::Instant::now() + if busy { wait } else { Duration::ZERO };
        while batch.len() < batch_max {
            if blocking && queue.depth() + batch.len() as u64 >= capacity {
                break;
            }
            match rx.try_recv() {
                Ok(c) => {
                    batch.push(c);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(c)) => batch.push(c),
                Ok(None) | Err(_) => break,
            }
        }
        bump(&counters.received, batch.len() as u64);
        let mut items: Vec<(Arc<Provider>, ProviderEvent, u64)> = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for mut c in batch {
            if !blocking && !parking && queue.depth() + items.len() as u64 >= capacity {
                bump(&counters.dropped, 1);
                let dropped = counters.dropped.load(Ordering::Relaxed);
                tracing::warn!(target: "evm", "MIQ(EventQueue) queue full ({capacity} events): dropped event [{}] of EMS [{}] ({dropped} dropped so far)", c.event.event_type, c.provider.name);
                c.complete(Err(format!("event queue full ({capacity} events)")));
                continue;
            }
            acks.push(c.ack.take());
            items.push((c.provider, c.event, caught_us));
        }
        if items.is_empty() {
            continue;
        }
        let n = items.len() as u64;
        // Parked: the events that take the queue past its capacity.
        let over = if parking {
            (queue.depth() + n).saturating_sub(capacity.max(queue.depth()))
        } else {
            0
        };
        let q = queue.clone();
        let result = tokio::task::spawn_blocking(move || q.enqueue_owned(items))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Ok(_) => {
                bump(&counters.enqueued, n);
                if over > 0 {
                    if parked_since.is_none() {
                        let before = counters.parked.load(Ordering::Relaxed);
                        parked_since = Some(before);
                        tracing::warn!(target: "evm", "MIQ(EventQueue) queue full ({capacity} events): parking new events on disk until the backlog drains ({before} parked before)");
                    }
                    bump(&counters.parked, over);
                }
                wake.notify();
                for tx in acks.into_iter().flatten() {
                    let _ = tx.send(Ok(()));
                }
            }
            Err(e) => {
                bump(&counters.errors, n);
                tracing::error!(target: "evm", "MIQ(EventQueue) cannot queue {n} events: {e}");
                for tx in acks.into_iter().flatten() {
                    let _ = tx.send(Err(format!("event queue write failed: {e}")));
                }
            }
        }
    }
    // The input has ended with events parked: say when they are worked off.
    if let Some(from) = parked_since {
        while queue.depth() >= capacity {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        unparked(from);
    }
}

/// Which worker handles an event: by provider and host (or VM, or type).
fn worker_of(ev: &ClaimedEvent, workers: usize) -> usize {
    let mut h = DefaultHasher::new();
    ev.provider.name.hash(&mut h);
    let e = &ev.event;
    match (&e.host_ems_ref, &e.vm_ems_ref) {
        (Some(host), _) => ("host", host).hash(&mut h),
        (None, Some(vm)) => ("vm", vm).hash(&mut h),
        (None, None) => ("type", &e.event_type).hash(&mut h),
    }
    (h.finish() % workers as u64) as usize
}

/// Where the workers write: their units of work in the store, committed by
/// its group-commit writer.
#[derive(Clone)]
struct Writes {
    store: Arc<RedbStore>,
    group: GroupCommit,
}

/// The dispatcher: claims batches and hands them to the workers; with
/// `drain` set, ends (and joins the workers) once the queue is empty.
fn dispatch_loop(
    handler: Handler,
    handlers: Vec<Handler>,
    writes: Writes,
    queue: Arc<EventQueue>,
    counters: Arc<Counters>,
    wake: Arc<Wake>,
    drain: Arc<AtomicBool>,
) {
    let n = handlers.len().max(1);
    let mut senders: Vec<SyncSender<Vec<ClaimedEvent>>> = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    for (i, h) in handlers.into_iter().enumerate() {
        let (tx, rx) = sync_channel::<Vec<ClaimedEvent>>(WORKER_BACKLOG);
        let queue = queue.clone();
        let counters = counters.clone();
        let wake = wake.clone();
        let writes = writes.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("automate-worker-{i}"))
            .spawn(move || work_loop(&h, &writes, &queue, &counters, &wake, &rx));
        match spawned {
            Ok(t) => {
                senders.push(tx);
                threads.push(t);
            }
            Err(e) => {
                tracing::error!(target: "evm", "MIQ(EventQueue) cannot start worker {i}: {e}")
            }
        }
    }
    let mut known: HashSet<String> = HashSet::new();
    let health = writes.store.health();
    while !senders.is_empty() {
        // A drain on a store that takes no writes ends: the rest stays
        // queued in the file.
        if drain.load(Ordering::SeqCst) && health.gave_up() && !health.is_ok() {
            tracing::error!(target: "evm", "MIQ(EventQueue) the object store takes no writes: {} events stay queued for the next start", queue.depth());
            break;
        }
        let claim = match queue.claim(CLAIM_PER_WORKER * senders.len()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target: "evm", "MIQ(EventQueue) claim failed: {e}");
                std::thread::sleep(IDLE_POLL);
                continue;
            }
        };
        if !claim.unreadable.is_empty() {
            let ids: Vec<u64> = claim.unreadable.iter().map(|(id, _)| *id).collect();
            for (id, e) in &claim.unreadable {
                tracing::error!(target: "evm", "MIQ(EventQueue) queued item {id} is unreadable ({e}): dropped");
            }
            bump(&counters.errors, ids.len() as u64);
            if let Err(e) = queue.ack(&ids) {
                tracing::error!(target: "evm", "MIQ(EventQueue) ack failed: {e}");
            }
        }
        if claim.events.is_empty() {
            if drain.load(Ordering::SeqCst) && queue.depth() == 0 {
                break;
            }
            wake.wait(IDLE_POLL);
            continue;
        }
        // Providers first seen in the queue (configured ones exist already)
        // are created here, before any worker can race for them.
        for ev in &claim.events {
            if known.insert(ev.provider.name.clone()) {
                if let Err(e) = handler.provider_ref(&ev.provider) {
                    tracing::error!(target: "evm", "MIQ(EventQueue) provider [{}]: {e}", ev.provider.name);
                }
            }
        }
        let mut parts: Vec<Vec<ClaimedEvent>> = vec![Vec::new(); senders.len()];
        for ev in claim.events {
            let w = worker_of(&ev, senders.len());
            parts[w].push(ev);
        }
        for (w, part) in parts.into_iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            if senders[w].send(part).is_err() {
                // The worker died (its items come due again after the lease).
                tracing::error!(target: "evm", "MIQ(EventQueue) worker {w} is gone");
            }
        }
    }
    drop(senders);
    for t in threads {
        let _ = t.join();
    }
}

/// A worker: handles each batch it is given in a unit of work and hands
/// the unit (with the ack of the batch) to the writer, then goes on with
/// the next batch while that commit runs; its reads see the handed-over
/// writes meanwhile ([`RedbStore::hand_over`]). One commit at most is in
/// flight: a batch is handed over only once the one before is on disk, and
/// if that one failed, the batch built on it is given back too.
fn work_loop(
    handler: &Handler,
    writes: &Writes,
    queue: &EventQueue,
    counters: &Counters,
    wake: &Wake,
    rx: &std::sync::mpsc::Receiver<Vec<ClaimedEvent>>,
) {
    let Writes { store, group } = writes;
    let mut in_flight: Option<InFlight> = None;
    loop {
        let next = if in_flight.is_some() {
            // Empty or closed: the commit in flight is seen through first.
            rx.try_recv().ok()
        } else {
            match rx.recv() {
                Ok(batch) => Some(batch),
                Err(_) => break,
            }
        };
        let Some(batch) = next else {
            // Nothing waiting: see the commit through, close the unit.
            if let Some(f) = in_flight.take() {
                land(store, queue, counters, f);
                store.abort_unit();
                wake.notify();
            }
            continue;
        };
        store.begin_unit();
        let handled = handle_batch(handler, store, counters, batch);
        if let Some(f) = in_flight.take() {
            let ok = land(store, queue, counters, f);
            wake.notify();
            if !ok {
                // This batch saw the failed one's writes (its unit is gone
                // with them): give it back too.
                bump(&counters.errors, handled.ids.len() as u64);
                queue.release(&handled.ids);
                queue.release(&handled.failed);
                continue;
            }
        }
        let HandledBatch {
            ids,
            caught,
            retries,
            failed,
        } = handled;
        let acks = ids.clone();
        let committing = group.submit(store.hand_over(), move |b| {
            for r in &retries {
                b.schedule(&r.item, r.run_at)?;
            }
            b.complete_all(&acks)?;
            Ok(Vec::new())
        });
        in_flight = Some(InFlight {
            committing,
            ids,
            caught,
            failed,
        });
    }
    if let Some(f) = in_flight.take() {
        land(store, queue, counters, f);
        wake.notify();
    }
    store.abort_unit();
}

/// A batch handed to the writer and not yet known to be on disk.
struct InFlight {
    committing: Committing,
    ids: Vec<u64>,
    caught: Vec<u64>,
    /// Events of the batch whose handling failed: not acked, given back to
    /// the queue once the batch is on disk.
    failed: Vec<u64>,
}

/// A batch's events, handled, not committed yet.
struct HandledBatch {
    ids: Vec<u64>,
    caught: Vec<u64>,
    /// Retries the deliveries ask for, written with the batch (see
    /// `Handler::deferring_retries`).
    retries: Vec<PendingRetry>,
    /// Events whose handling failed, to be tried again (not acked).
    failed: Vec<u64>,
}

/// Runs the handler for each event of a batch (inside the worker's unit of
/// work). Each event is one item of the unit ([`RedbStore::savepoint`]):
/// when its handling fails (the handler's error, or a panic) whatever it
/// wrote is discarded and its neighbours' writes stay. A failed event is
/// not acked but given back to the queue, to be tried again, up to
/// [`MAX_EVENT_ATTEMPTS`] times; then it is dead-lettered: acked, and
/// stored as a `DeadLetterEvent` row with the error, in the same commit. An
/// Automate error is not a failed event: the event is stored and acked, and
/// only what Automate wrote is discarded (see `Handler::handle`).
fn handle_batch(
    handler: &Handler,
    store: &RedbStore,
    counters: &Counters,
    batch: Vec<ClaimedEvent>,
) -> HandledBatch {
    let mut out = HandledBatch {
        ids: Vec::with_capacity(batch.len()),
        caught: Vec::with_capacity(batch.len()),
        retries: Vec::new(),
        failed: Vec::new(),
    };
    for ev in batch {
        if ev.attempts > 1 {
            bump(&counters.redelivered, 1);
        }
        let sp = store.savepoint();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.handle(&ev.provider, &ev.event)
        }));
        let failure = match result {
            Ok(Ok(outcome)) => {
                bump(&counters.handled, 1);
                if outcome.duplicate {
                    bump(&counters.duplicates, 1);
                }
                out.retries.extend(outcome.retry);
                if let Some(e) = outcome.error {
                    bump(&counters.errors, 1);
                    tracing::warn!(target: "evm", "MIQ(MiqAeEngine.deliver) event [{}] EmsEvent.{} ended with an error: {e}", ev.event.event_type, outcome.event_id);
                }
                None
            }
            Ok(Err(e)) => Some(format!("not handled: {e}")),
            Err(panic) => Some(format!(
                "the handler panicked: {}",
                crate::vmdb::panic_text(&*panic)
            )),
        };
        // The lines went to tracing already; do not keep them.
        handler.log().drain();
        let Some(failure) = failure else {
            if let Some(sp) = sp {
                store.release_savepoint(sp);
            }
            out.ids.push(ev.id);
            out.caught.push(ev.caught_us);
            continue;
        };
        if let Some(sp) = sp {
            store.rollback_to(sp);
        }
        bump(&counters.errors, 1);
        if ev.attempts < MAX_EVENT_ATTEMPTS {
            bump(&counters.failed, 1);
            tracing::error!(target: "evm", "MIQ(EmsEventHandler-handle_event) event [{}] of EMS [{}] (queue id {}) {failure}; its writes were discarded, it will be tried again (attempt {} of {MAX_EVENT_ATTEMPTS})", ev.event.event_type, ev.provider.name, ev.id, ev.attempts);
            out.failed.push(ev.id);
            continue;
        }
        bump(&counters.dead_lettered, 1);
        tracing::error!(target: "evm", "MIQ(EmsEventHandler-handle_event) event [{}] of EMS [{}] (queue id {}) {failure}; its writes were discarded, dead-lettered after {} attempts (stored as a DeadLetterEvent)", ev.event.event_type, ev.provider.name, ev.id, ev.attempts);
        if let Err(e) = store_dead_letter(store, &ev, &failure) {
            tracing::error!(target: "evm", "MIQ(EmsEventHandler-handle_event) event [{}] of EMS [{}] (queue id {}): the dead letter could not be stored ({e}): the event is dropped", ev.event.event_type, ev.provider.name, ev.id);
        }
        out.ids.push(ev.id);
        out.caught.push(ev.caught_us);
    }
    out
}

/// A dead-lettered event as an event-stream row (`DeadLetterEvent`), in
/// the worker's unit: the event as caught and the last error.
fn store_dead_letter(
    store: &RedbStore,
    ev: &ClaimedEvent,
    failure: &str,
) -> Result<(), crate::vmdb::StoreError> {
    use crate::engine::{AttrValue, Attributes};
    use crate::vmdb::ObjectStore;
    let s = |v: &str| AttrValue::Str(v.to_string());
    let e = &ev.event;
    let mut attrs = Attributes::default();
    attrs.insert("event_namespace".into(), s("DeadLetter"));
    attrs.insert("source".into(), s(&ev.provider.kind));
    attrs.insert("provider".into(), s(&ev.provider.name));
    attrs.insert("event_type".into(), s(&e.event_type));
    attrs.insert("timestamp".into(), s(&e.timestamp));
    if let Some(r) = &e.vm_ems_ref {
        attrs.insert("vm_ems_ref".into(), s(r));
    }
    if let Some(r) = &e.host_ems_ref {
        attrs.insert("host_ems_ref".into(), s(r));
    }
    attrs.insert(
        "full_data".into(),
        AttrValue::Str(crate::vmdb::json_text(&e.full_data)),
    );
    attrs.insert("error".into(), s(failure));
    attrs.insert("attempts".into(), AttrValue::Int(i64::from(ev.attempts)));
    attrs.insert(
        "created_on".into(),
        AttrValue::Str(crate::engine::time::now_utc_text()),
    );
    store.create("DeadLetterEvent", attrs).map(|_| ())
}

/// Waits for a batch's commit: on success counts its events acked and
/// records their latency; on failure gives them back to the queue and
/// drops the worker's unit (whatever was built on the batch). Whether it
/// was stored.
fn land(store: &RedbStore, queue: &EventQueue, counters: &Counters, f: InFlight) -> bool {
    let InFlight {
        committing,
        ids,
        caught,
        failed,
    } = f;
    // When the writer was done: the latency ends there, not when this
    // worker, busy with its next batch, comes to look.
    let (result, at) = committing.wait_timed();
    match result {
        Ok(_) => {
            store.landed();
            queue.acked(ids.len());
            // The failed events go back to the queue only now: their
            // neighbours' writes, which they may read, are on disk.
            if !failed.is_empty() {
                queue.release(&failed);
            }
            let done = crate::vmdb::to_micros(at);
            if let Ok(mut h) = counters.latency.lock() {
                for c in caught.iter() {
                    h.record(done.saturating_sub(*c));
                    h.first_us = h.first_us.min(*c);
                }
                h.last_us = h.last_us.max(done);
            }
            if let Ok(mut h) = counters.window.lock() {
                for c in caught.iter() {
                    h.record(done.saturating_sub(*c));
                }
            }
            true
        }
        Err(e) => {
            // Nothing of the batch was stored: its events are claimed
            // again, those handed over in memory at once, those leased in
            // the file when their lease runs out (or at the next start).
            store.abort_unit();
            bump(&counters.errors, ids.len() as u64);
            tracing::error!(target: "evm", "MIQ(EventQueue) commit of a batch of {} events failed (they will be delivered again): {e}", ids.len());
            queue.release(&ids);
            queue.release(&failed);
            std::thread::sleep(COMMIT_BACKOFF);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AttrValue, Attributes, EngineError, ObjectId, Runtime};
    use crate::events::EvmLog;
    use crate::vmdb::ObjectStore;

    /// `event_action_refresh` (which VM_DOWN runs) replaced by one that
    /// writes a note on the event's VM, then panics for the VM named
    /// `poisoned*` and fails (an Automate error) for `failing`.
    fn write_then_fail(
        rt: &mut Runtime<'_>,
        obj: ObjectId,
        _: &Attributes,
    ) -> Result<(), EngineError> {
        let root = rt.root_of(obj);
        let Some(AttrValue::Object(vm)) = rt.attr(root, "vm").cloned() else {
            return Err(EngineError::Abort("no vm".into()));
        };
        let store = rt.engine().store().clone();
        store
            .update(&vm, "note", AttrValue::from("written"))
            .map_err(|e| EngineError::Abort(e.to_string()))?;
        let name = store
            .attribute(&vm, "name")
            .map(|v| v.to_text())
            .unwrap_or_default();
        if name.starts_with("poisoned") {
            panic!("poisoned event");
        }
        if name == "failing" {
            return Err(EngineError::Abort("failed after writing".into()));
        }
        Ok(())
    }

    #[test]
    fn a_failed_events_writes_are_discarded_and_it_is_retried_then_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("p.redb")).unwrap());
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datastore");
        let (ds, problems) = crate::datastore::Datastore::open(&root);
        assert!(problems.is_empty(), "{problems:?}");
        let (engine, _runner) =
            crate::control::with_control(Engine::new(Arc::new(ds)).with_store(store.clone()));
        let mut builtins = crate::methods::event_builtins();
        builtins.insert("event_action_refresh", write_then_fail);
        let engine = engine.with_builtins(builtins);
        let handler = Handler::new(engine, EvmLog::discarding())
            .unwrap()
            .deferring_retries();
        let provider = Arc::new(Provider {
            name: "rhevm01".into(),
            kind: "RHEVM".into(),
            hostname: "rhevm01".into(),
            userid: "admin".into(),
        });
        let event = |id: u64, vm: &str, attempts: u32| ClaimedEvent {
            id,
            attempts,
            provider: provider.clone(),
            event: ProviderEvent {
                event_type: "VM_DOWN".into(),
                timestamp: format!("2026-01-01T00:00:0{id}Z"),
                chain_id: None,
                vm_ems_ref: Some(format!("/api/vms/{vm}")),
                vm_name: Some(vm.into()),
                host_ems_ref: None,
                host_name: None,
                full_data: serde_json::Value::Null,
            },
            caught_us: 0,
        };
        let batch = vec![
            event(1, "web-1", 1),
            event(2, "poisoned", 1),
            event(3, "failing", 1),
            event(4, "web-2", 1),
            event(5, "poisoned-last", MAX_EVENT_ATTEMPTS),
        ];
        let counters = Counters::default();
        store.begin_unit();
        let handled = handle_batch(&handler, &store, &counters, batch);
        store.commit_unit(|_| Ok(())).unwrap();

        assert_eq!(handled.failed, [2], "the panicking event is tried again");
        assert_eq!(handled.ids, [1, 3, 4, 5], "acked (5: dead-lettered)");
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.dead_lettered.load(Ordering::Relaxed), 1);
        let vm = |name: &str| {
            store
                .find_by("VmOrTemplate", "name", &AttrValue::from(name))
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("VM {name}"))
        };
        let note = |name: &str| store.attribute(&vm(name), "note").map(|v| v.to_text());
        // The neighbours' writes are stored; the failed events' are not.
        assert_eq!(note("web-1").as_deref(), Some("written"));
        assert_eq!(note("web-2").as_deref(), Some("written"));
        assert_eq!(note("poisoned"), None);
        assert_eq!(note("failing"), None);
        assert_eq!(note("poisoned-last"), None);
        let rows: Vec<_> = store
            .list("EventStream")
            .unwrap()
            .into_iter()
            .map(|r| {
                let text = |k: &str| store.attribute(&r, k).map(|v| v.to_text());
                (
                    r.class.to_string(),
                    text("vm_ems_ref").unwrap_or_default(),
                    text("attempts"),
                    text("error"),
                )
            })
            .collect();
        let ems: Vec<&str> = rows
            .iter()
            .filter(|r| r.0 == "EmsEvent")
            .map(|r| r.1.as_str())
            .collect();
        // The Automate error keeps its event row (ManageIQ stores the
        // event before it delivers it); the panicking events have none.
        assert_eq!(
            ems,
            ["/api/vms/web-1", "/api/vms/failing", "/api/vms/web-2"]
        );
        let dead: Vec<_> = rows.iter().filter(|r| r.0 == "DeadLetterEvent").collect();
        assert_eq!(dead.len(), 1, "{rows:?}");
        assert_eq!(dead[0].1, "/api/vms/poisoned-last");
        assert_eq!(dead[0].2.as_deref(), Some("3"));
        assert!(
            dead[0]
                .3
                .as_deref()
                .is_some_and(|e| e.contains("poisoned event")),
            "{dead:?}"
        );
    }
}
