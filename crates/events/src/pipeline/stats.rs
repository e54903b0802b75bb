//! The pipeline's counts: the counters its parts bump, the latency
//! histogram, [`PipelineStats`] (what `automate run` prints) and the
//! periodic `MIQ(automate run) stats {...}` line of evm.log.

use super::super::catchers::CatcherStats;
use super::super::queue::EventQueue;
use crate::metrics::Metrics;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the pipeline did (see [`Pipeline::stats`](super::Pipeline::stats)).
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
    /// Events whose handling failed [`MAX_EVENT_ATTEMPTS`](super::MAX_EVENT_ATTEMPTS) times: removed
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
    /// [`Pipeline::shutdown`](super::Pipeline::shutdown)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catcher_error: Option<String>,
    /// Why the object store took no more writes, if it did (a full disk
    /// at shutdown, a failed write): the events not handled stay queued
    /// in the file for the next start (set by [`Pipeline::shutdown`](super::Pipeline::shutdown)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

/// Latency percentiles (microseconds; about 0.2% resolution).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Events measured.
    pub count: u64,
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p999: u64,
    /// The longest.
    pub max: u64,
}

/// A log-linear histogram of microseconds: exact below 1024, then 512
/// buckets per power of two.
#[derive(Debug)]
pub(super) struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
    /// The earliest catch recorded (microseconds since the epoch).
    pub(super) first_us: u64,
    /// The latest commit recorded (microseconds since the epoch).
    pub(super) last_us: u64,
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

    pub(super) fn record(&mut self, v: u64) {
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

/// What the committer, the dispatcher, the workers and the retry runner
/// count (shared; read by [`snapshot`]).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) received: AtomicU64,
    /// Events the committer is done with (queued, dropped or failed to
    /// queue): with the catchers' `sent`, whether any is on its way.
    pub(super) accounted: AtomicU64,
    pub(super) enqueued: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) parked: AtomicU64,
    pub(super) latency: Mutex<Histogram>,
    /// The latency since the last periodic stats line.
    pub(super) window: Mutex<Histogram>,
    pub(super) handled: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) redelivered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) retries: AtomicU64,
    /// What `GET /metrics` serves (by provider and event type, latency
    /// histograms): given by [`Prepared::with_metrics`](super::Prepared::with_metrics).
    pub(super) metrics: Metrics,
}

/// Adds `n` to a counter.
pub(super) fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// The pipeline's counts from its parts ([`Pipeline::stats`](super::Pipeline::stats)).
pub(super) fn snapshot(
    c: &Counters,
    queue: &dyn EventQueue,
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
pub(super) async fn log_stats(
    every: Duration,
    counters: Arc<Counters>,
    queue: Arc<dyn EventQueue>,
    catcher_stats: Vec<Arc<CatcherStats>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut s = snapshot(&counters, &*queue, &catcher_stats);
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
