//! The dispatcher: claims batches from the durable queue and hands each
//! event to one of the worker threads, always the same one for the same
//! provider and host (or VM); creates providers first seen in the queue;
//! with the drain set, ends once the queue is empty.

use super::super::queue::{ClaimedEvent, EventQueue};
use super::super::Handler;
use super::stats::{bump, Counters};
use super::worker::work_loop;
use automate_vmdb::UnitOfWork;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Claimed events a worker may have waiting (in batches) before the
/// dispatcher waits for it.
const WORKER_BACKLOG: usize = 2;
/// Most events one claim takes per worker.
const CLAIM_PER_WORKER: usize = 512;
/// How long an idle dispatcher sleeps before looking at the queue again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Wakes the dispatcher when events were queued.
#[derive(Debug, Default)]
pub(super) struct Wake {
    queued: Mutex<u64>,
    cond: Condvar,
}

impl Wake {
    pub(super) fn notify(&self) {
        if let Ok(mut n) = self.queued.lock() {
            *n = n.wrapping_add(1);
        }
        self.cond.notify_all();
    }

    /// Waits until notified or `timeout`.
    pub(super) fn wait(&self, timeout: Duration) {
        if let Ok(n) = self.queued.lock() {
            let seen = *n;
            let _ = self.cond.wait_timeout_while(n, timeout, |n| *n == seen);
        }
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

/// The dispatcher: claims batches and hands them to the workers; with
/// `drain` set, ends (and joins the workers) once the queue is empty.
pub(super) fn dispatch_loop(
    handler: Handler,
    handlers: Vec<Handler>,
    writes: Arc<dyn UnitOfWork>,
    queue: Arc<dyn EventQueue>,
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
            .spawn(move || work_loop(&h, &*writes, &*queue, &counters, &wake, &rx));
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
    let health = writes.health();
    while !senders.is_empty() {
        // A drain on a store that takes no writes ends: the rest stays
        // queued in the file.
        if drain.load(Ordering::SeqCst) && health.gave_up() && !health.is_ok() {
            tracing::error!(target: "evm", "MIQ(EventQueue) the object store takes no writes: {} events stay queued for the next start", queue.depth());
            break;
        }
        // A drain on a queue other nodes share: claim nothing more; the
        // workers finish what they have, the others handle the rest.
        if drain.load(Ordering::SeqCst) && queue.shared() {
            tracing::info!(target: "evm", "MIQ(EventQueue) draining: no more claims; the other nodes handle the {} events queued", queue.depth());
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
