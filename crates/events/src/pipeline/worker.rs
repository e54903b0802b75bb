//! A worker thread: handles each batch the dispatcher gives it inside one
//! unit of work, each event in its own savepoint (a failed event is given
//! back to the queue, or dead-lettered after [`MAX_EVENT_ATTEMPTS`]), and
//! hands the unit with the batch's ack to the group-commit writer.

use super::super::queue::ClaimedEvent;
use super::super::Handler;
use super::dispatcher::Wake;
use super::stats::{bump, Counters};
use automate_engine::deliver::PendingRetry;
use automate_engine::Engine;
use automate_vmdb::event_queue::EventQueue;
use automate_vmdb::{Committing, HandOver, ObjectStore, PipelineUnit, UnitOfWork};
use std::time::{Duration, SystemTime};

/// How many times an event whose handling fails (the handler's error or
/// panic) is tried before it is dead-lettered.
pub const MAX_EVENT_ATTEMPTS: u32 = 3;
/// How long a worker waits after a failed commit before it takes its next
/// batch (the failed one is claimed again at once).
const COMMIT_BACKOFF: Duration = Duration::from_millis(500);

/// A worker: handles each batch it is given in a unit of work and hands
/// the unit (with the ack of the batch) to the writer, then goes on with
/// the next batch while that commit runs; its reads see the handed-over
/// writes meanwhile ([`PipelineUnit::hand_over`]). One commit at most is in
/// flight: a batch is handed over only once the one before is on disk, and
/// if that one failed, the batch built on it is given back too. The unit
/// (and the handler's engine over it) is opened when a batch arrives and
/// none is open, and kept while the worker is busy: dropped when nothing
/// waits once the last commit landed, or when a commit failed.
pub(super) fn work_loop(
    handler: &Handler,
    units: &dyn UnitOfWork,
    queue: &dyn EventQueue,
    counters: &Counters,
    wake: &Wake,
    rx: &std::sync::mpsc::Receiver<Vec<ClaimedEvent>>,
) {
    let mut in_flight: Option<InFlight> = None;
    let mut open: Option<OpenUnit> = None;
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
                if let Some(o) = &open {
                    land(&*o.unit, queue, counters, f);
                }
                open = None;
                wake.notify();
            }
            continue;
        };
        let unit = open.get_or_insert_with(|| OpenUnit::new(handler, units));
        let handled = handle_batch(handler, &unit.engine, counters, batch);
        if let Some(f) = in_flight.take() {
            let ok = land(&*unit.unit, queue, counters, f);
            wake.notify();
            if !ok {
                // This batch saw the failed one's writes: its unit goes
                // with them, and the batch is given back too.
                open = None;
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
        let handed = SystemTime::now();
        let committing = unit.unit.hand_over(HandOver {
            schedule: retries.into_iter().map(|r| (r.item, r.run_at)).collect(),
            acks: ids.clone(),
        });
        in_flight = Some(InFlight {
            committing,
            handed,
            ids,
            caught,
            failed,
        });
    }
    if let (Some(f), Some(o)) = (in_flight.take(), &open) {
        land(&*o.unit, queue, counters, f);
        wake.notify();
    }
}

/// A worker's open unit of work and the handler's engine over its objects
/// (made once per busy spell: a few `Arc` clones).
struct OpenUnit {
    unit: Box<dyn PipelineUnit>,
    engine: Engine,
}

impl OpenUnit {
    fn new(handler: &Handler, units: &dyn UnitOfWork) -> OpenUnit {
        let unit = units.begin_unit();
        let engine = handler.engine().clone().with_store(unit.objects());
        OpenUnit { unit, engine }
    }
}

/// A batch handed to the writer and not yet known to be on disk.
struct InFlight {
    committing: Committing,
    /// When it was handed to the writer.
    handed: SystemTime,
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

/// Runs the handler for each event of a batch with `engine`, the handler's
/// engine over the worker's unit of work. Each event is one item of the
/// unit (a savepoint of the engine's store, the unit's view:
/// [`ObjectStore::savepoint`](automate_vmdb::ObjectStore::savepoint)):
/// when its handling fails (the handler's error, or a panic) whatever it
/// wrote is discarded and its neighbours' writes stay. A failed event is
/// not acked but given back to the queue, to be tried again, up to
/// [`MAX_EVENT_ATTEMPTS`] times; then it is dead-lettered: acked, and
/// stored as a `DeadLetterEvent` row with the error, in the same commit. An
/// Automate error is not a failed event: the event is stored and acked, and
/// only what Automate wrote is discarded (see `Handler::handle`).
fn handle_batch(
    handler: &Handler,
    engine: &Engine,
    counters: &Counters,
    batch: Vec<ClaimedEvent>,
) -> HandledBatch {
    let store = engine.store();
    let mut out = HandledBatch {
        ids: Vec::with_capacity(batch.len()),
        caught: Vec::with_capacity(batch.len()),
        retries: Vec::new(),
        failed: Vec::new(),
    };
    // The batch's lookups in one go (a round trip per batch, not per
    // event, on a store whose reads are round trips).
    handler.read_ahead_in(engine, batch.iter().map(|e| (&*e.provider, &e.event)));
    for ev in batch {
        if ev.attempts > 1 {
            bump(&counters.redelivered, 1);
        }
        let sp = store.savepoint();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.handle_in(engine, &ev.provider, &ev.event)
        }));
        let failure = match result {
            Ok(Ok(outcome)) => {
                bump(&counters.handled, 1);
                counters
                    .metrics
                    .event_handled(&ev.provider.name, &ev.event.event_type);
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
                automate_vmdb::panic_text(&*panic)
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
        counters
            .metrics
            .event_failed(&ev.provider.name, &ev.event.event_type);
        if ev.attempts < MAX_EVENT_ATTEMPTS {
            bump(&counters.failed, 1);
            tracing::error!(target: "evm", "MIQ(EmsEventHandler-handle_event) event [{}] of EMS [{}] (queue id {}) {failure}; its writes were discarded, it will be tried again (attempt {} of {MAX_EVENT_ATTEMPTS})", ev.event.event_type, ev.provider.name, ev.id, ev.attempts);
            out.failed.push(ev.id);
            continue;
        }
        bump(&counters.dead_lettered, 1);
        tracing::error!(target: "evm", "MIQ(EmsEventHandler-handle_event) event [{}] of EMS [{}] (queue id {}) {failure}; its writes were discarded, dead-lettered after {} attempts (stored as a DeadLetterEvent)", ev.event.event_type, ev.provider.name, ev.id, ev.attempts);
        if let Err(e) = store_dead_letter(store.as_ref(), &ev, &failure) {
            tracing::error!(target: "evm", "MIQ(EmsEventHandler-handle_event) event [{}] of EMS [{}] (queue id {}): the dead letter could not be stored ({e}): the event is dropped", ev.event.event_type, ev.provider.name, ev.id);
        }
        out.ids.push(ev.id);
        out.caught.push(ev.caught_us);
    }
    out
}

/// A dead-lettered event as an event-stream row (`DeadLetterEvent`), in
/// the worker's unit (`store`, the unit's view: committed with the ack):
/// the event as caught and the last error.
fn store_dead_letter(
    store: &dyn ObjectStore,
    ev: &ClaimedEvent,
    failure: &str,
) -> Result<(), automate_vmdb::StoreError> {
    use automate_engine::{AttrValue, Attributes};
    let s = |v: &str| AttrValue::Str(v.to_string());
    let e = &ev.event;
    let mut attrs = Attributes::default();
    attrs.insert("event_namespace".into(), s("DeadLetter"));
    attrs.insert("source".into(), s(&ev.provider.kind));
    attrs.insert("provider".into(), s(&ev.provider.name));
    attrs.insert("event_type".into(), s(&e.event_type));
    attrs.insert("timestamp".into(), s(&e.timestamp));
    // Everything of the event as caught, so a retry
    // (`automate_events::dead_letters`) enqueues it as it was.
    let optional = [
        ("chain_id", &e.chain_id),
        ("vm_ems_ref", &e.vm_ems_ref),
        ("vm_name", &e.vm_name),
        ("host_ems_ref", &e.host_ems_ref),
        ("host_name", &e.host_name),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            attrs.insert(key.into(), s(v));
        }
    }
    attrs.insert(
        "full_data".into(),
        AttrValue::Str(automate_vmdb::json_text(&e.full_data)),
    );
    attrs.insert("error".into(), s(failure));
    attrs.insert("attempts".into(), AttrValue::Int(i64::from(ev.attempts)));
    // ISO 8601 UTC in whole seconds, as every other row's `created_on`
    // (requests, tasks) and as the API shows times.
    attrs.insert(
        "created_on".into(),
        AttrValue::Str(automate_core::time::iso8601_secs_now()),
    );
    store.create("DeadLetterEvent", attrs).map(|_| ())
}

/// Waits for a batch's commit: on success tells `unit` it landed, counts
/// its events acked and records their latency; on failure gives them back
/// to the queue (the caller drops the unit, and whatever was built on the
/// batch). Whether it was stored.
fn land(unit: &dyn PipelineUnit, queue: &dyn EventQueue, counters: &Counters, f: InFlight) -> bool {
    let InFlight {
        committing,
        handed,
        ids,
        caught,
        failed,
    } = f;
    // When the writer was done: the latency ends there, not when this
    // worker, busy with its next batch, comes to look.
    let (result, at) = committing.wait_timed();
    match result {
        Ok(_) => {
            counters
                .metrics
                .batch_commit(at.duration_since(handed).unwrap_or_default());
            unit.landed();
            queue.acked(ids.len());
            // The failed events go back to the queue only now: their
            // neighbours' writes, which they may read, are on disk.
            if !failed.is_empty() {
                queue.release(&failed);
            }
            let done = automate_vmdb::to_micros(at);
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
    use crate::{EvmLog, Provider, ProviderEvent};
    use automate_engine::{AttrValue, Attributes, EngineError, ObjectId, Runtime};
    use automate_redb::RedbStore;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

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
            .attribute(&vm, "name")?
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
        let root =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("datastore");
        let (ds, problems) = automate_datastore::Datastore::open(&root);
        assert!(problems.is_empty(), "{problems:?}");
        let (engine, _runner) =
            automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store.clone()));
        let mut builtins = automate_methods::event_builtins();
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
        let (group, writer) = automate_redb::GroupCommit::start(store.clone()).unwrap();
        let units = automate_redb::GroupUnits::new(store.clone(), group, writer);
        let unit = units.begin_unit();
        let engine = handler.engine().clone().with_store(unit.objects());
        let handled = handle_batch(&handler, &engine, &counters, batch);
        unit.hand_over(HandOver::default()).wait().unwrap();
        unit.landed();
        drop((unit, engine));
        units.close();

        assert_eq!(handled.failed, [2], "the panicking event is tried again");
        assert_eq!(handled.ids, [1, 3, 4, 5], "acked (5: dead-lettered)");
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.dead_lettered.load(Ordering::Relaxed), 1);
        // `GET /metrics`: both panics are failed handlings (one tried
        // again, one dead-lettered); the Automate error is a handled event.
        let scrape = counters.metrics.encode().unwrap();
        let labels = "{provider=\"rhevm01\",type=\"VM_DOWN\"}";
        for (name, n) in [("failed", 2), ("handled", 3)] {
            let line = format!("automate_events_{name}_total{labels} {n}\n");
            assert!(scrape.contains(&line), "{line} in {scrape}");
        }
        let vm = |name: &str| {
            store
                .find_by("VmOrTemplate", "name", &AttrValue::from(name))
                .unwrap()
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("VM {name}"))
        };
        let note = |name: &str| {
            store
                .attribute(&vm(name), "note")
                .unwrap()
                .map(|v| v.to_text())
        };
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
                let text = |k: &str| store.attribute(&r, k).unwrap().map(|v| v.to_text());
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
