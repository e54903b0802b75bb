//! The committer: drains the catchers' channel in groups, writes each group
//! to the durable queue (group commit), answers the catchers' acks after
//! the write, and applies `queue.when_full` (block, drop the newest, park).

use super::super::catchers::Caught;
use super::super::config::{QueueConfig, WhenFull};
use super::super::queue::EventQueue;
use super::super::{Provider, ProviderEvent};
use super::dispatcher::Wake;
use super::stats::{bump, Counters};
use automate_vmdb::health::StoreHealth;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// The backlog (events enqueued and not yet acked) from which the
/// committer waits up to `queue.batch_wait_ms` to fill a batch.
const BUSY_DEPTH: u64 = 64;

/// The committer: group commit of caught events into the durable queue,
/// then the catchers' acks.
pub(super) async fn commit_loop(
    mut rx: mpsc::Receiver<Caught>,
    queue: Arc<dyn EventQueue>,
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
        let caught_us = automate_vmdb::to_micros(SystemTime::now());
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
        for c in &batch {
            counters
                .metrics
                .event_caught(&c.provider.name, &c.event.event_type);
        }
        let mut items: Vec<(Arc<Provider>, ProviderEvent, u64)> = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for mut c in batch {
            if !blocking && !parking && queue.depth() + items.len() as u64 >= capacity {
                bump(&counters.dropped, 1);
                let dropped = counters.dropped.load(Ordering::Relaxed);
                tracing::warn!(target: "evm", "MIQ(EventQueue) queue full ({capacity} events): dropped event [{}] of EMS [{}] ({dropped} dropped so far)", c.event.event_type, c.provider.name);
                c.complete(Err(format!("event queue full ({capacity} events)")));
                bump(&counters.accounted, 1);
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
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || q.enqueue_owned(items))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Ok(_) => {
                counters.metrics.queue_commit(started.elapsed());
                bump(&counters.enqueued, n);
                bump(&counters.accounted, n);
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
                bump(&counters.accounted, n);
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
