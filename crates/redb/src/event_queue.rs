//! The durable event queue on the redb file: [`RedbEventQueue`], the
//! [`EventQueue`] of `automate run` (SPEC §5's seam: enqueue, claim a
//! batch, ack, depth; the contract is in [`automate_vmdb::event_queue`]).
//!
//! It is a thin layer over [`RedbSchedule`]: an event is a work item of kind
//! [`EVENT_KIND`] whose payload is the JSON text `{"provider": {...},
//! "event": {...}, "caught_us": <when it was caught, µs since the epoch>}`
//! as one string (items written with that object itself as the payload are
//! read too), due at once. [`EventQueue::enqueue_batch`] writes a whole batch in one
//! durable transaction (group commit); [`EventQueue::claim`] leases due
//! events for [`LEASE`] (or, with a hand-off, takes those the enqueue wrote
//! as claimed and passed over in memory: [`RedbEventQueue::with_handoff`]);
//! [`EventQueue::ack`] removes handled ones. Delivery
//! is at-least-once: an event claimed by a process that dies is due again
//! after [`EventQueue::release_leases`] (at startup) or when its lease runs
//! out, and the handler's de-duplication makes a second delivery harmless.
//! The pipeline's workers ack in their unit of work's own transaction
//! (`automate_vmdb::HandOver::acks`, written by [`crate::GroupUnits`]) and
//! count it with [`EventQueue::acked`].

use crate::{GroupCommit, PreparedUnit, RedbSchedule};
use automate_vmdb::event_queue::{
    CaughtEvent, Claim, ClaimedEvent, EventQueue, Provider, ProviderEvent, EVENT_KIND, LEASE,
};
use automate_vmdb::{StoreError, WorkItem};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// A queued event's payload as written: `{"provider":{..},"event":{..},
/// "caught_us":N}`, the bytes serde_json writes for the two structs (the
/// test `queued_text_is_serde_jsons_text` holds it to that, field by field),
/// written by hand: serde's walk of the event's `full_data` was ~14 k
/// instructions an event. Kept as one JSON string in the work item, so
/// leasing an item copies a string instead of decoding and re-encoding the
/// event's whole tree. Read back as [`QueuedIn`].
fn queued_text(provider: &Provider, event: &ProviderEvent, caught_us: u64) -> String {
    use automate_vmdb::{write_json, write_str};
    fn field(out: &mut Vec<u8>, first: bool, name: &str) {
        out.extend_from_slice(if first { b"{\"" } else { b",\"" });
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    }
    fn opt(out: &mut Vec<u8>, v: &Option<String>) {
        match v {
            Some(s) => write_str(out, s),
            None => out.extend_from_slice(b"null"),
        }
    }
    let mut out = Vec::with_capacity(512);
    field(&mut out, true, "provider");
    field(&mut out, true, "name");
    write_str(&mut out, &provider.name);
    field(&mut out, false, "type");
    write_str(&mut out, &provider.kind);
    field(&mut out, false, "hostname");
    write_str(&mut out, &provider.hostname);
    field(&mut out, false, "userid");
    write_str(&mut out, &provider.userid);
    out.push(b'}');
    field(&mut out, false, "event");
    field(&mut out, true, "event_type");
    write_str(&mut out, &event.event_type);
    field(&mut out, false, "timestamp");
    write_str(&mut out, &event.timestamp);
    field(&mut out, false, "chain_id");
    opt(&mut out, &event.chain_id);
    field(&mut out, false, "vm_ems_ref");
    opt(&mut out, &event.vm_ems_ref);
    field(&mut out, false, "vm_name");
    opt(&mut out, &event.vm_name);
    field(&mut out, false, "host_ems_ref");
    opt(&mut out, &event.host_ems_ref);
    field(&mut out, false, "host_name");
    opt(&mut out, &event.host_name);
    field(&mut out, false, "full_data");
    write_json(&mut out, &event.full_data);
    out.push(b'}');
    field(&mut out, false, "caught_us");
    out.extend_from_slice(caught_us.to_string().as_bytes());
    out.push(b'}');
    // Written from `&str`s and ASCII only.
    String::from_utf8(out).unwrap_or_default()
}

/// A queued event's payload as read (also from the object form written
/// before).
#[derive(serde::Deserialize)]
struct QueuedIn {
    provider: Provider,
    event: ProviderEvent,
    #[serde(default)]
    caught_us: Option<u64>,
}

/// How often a queue with a hand-off claims from the file even when no
/// event was written to the file only: picks up leases that ran out.
const FILE_SWEEP: Duration = Duration::from_secs(1);

/// The durable event queue on a store's [`RedbSchedule`]. Cheap to share
/// (`Arc`); the depth is counted in memory from the count at open.
#[derive(Debug)]
pub struct RedbEventQueue {
    schedule: RedbSchedule,
    depth: AtomicU64,
    handoff: Mutex<Handoff>,
    /// Writes go through this writer thread when set.
    group: Option<GroupCommit>,
}

/// Events handed from [`EventQueue::enqueue_owned`] to
/// [`EventQueue::claim`] in memory, once durably written: see
/// [`RedbEventQueue::with_handoff`].
#[derive(Debug, Default)]
struct Handoff {
    /// How many events `ready` may hold (0: no hand-off).
    capacity: usize,
    /// Written to the file (leased), handed over, not claimed yet (in queue
    /// order).
    ready: VecDeque<ClaimedEvent>,
    /// Room taken in `ready` by writes under way.
    reserved: usize,
    /// The file may hold due events (written while `ready` was full, by
    /// [`EventQueue::enqueue_caught`], by a previous process, or released
    /// after a failed commit): claims read the file until it has none left,
    /// and nothing is handed over in memory meanwhile (so the order is
    /// kept).
    from_file: bool,
    /// Bumped whenever events become due in the file.
    file_writes: u64,
    /// When the file was last claimed from.
    last_sweep: Option<Instant>,
}

impl Handoff {
    fn mark_file_due(&mut self) {
        self.from_file = true;
        self.file_writes = self.file_writes.wrapping_add(1);
    }
}

impl RedbEventQueue {
    /// The queue in `schedule`'s file; counts what is already queued.
    pub fn open(schedule: RedbSchedule) -> Result<RedbEventQueue, StoreError> {
        let depth = schedule.count_kind(EVENT_KIND)?;
        Ok(RedbEventQueue {
            schedule,
            depth: AtomicU64::new(depth),
            handoff: Mutex::new(Handoff {
                from_file: true,
                ..Handoff::default()
            }),
            group: None,
        })
    }

    /// Writes queued events through `group` (in the same transactions as
    /// other writers' work, see [`GroupCommit`]).
    pub fn with_group(mut self, group: GroupCommit) -> RedbEventQueue {
        self.group = Some(group);
        self
    }

    /// Hands events written by [`EventQueue::enqueue_owned`] to
    /// [`EventQueue::claim`] in memory, up to `capacity` waiting at once:
    /// a claim then takes them without reading, decoding and leasing them
    /// in the file (one write transaction less per claim). They are written
    /// as claimed already (leased for [`LEASE`], one attempt), in the same
    /// durable write, so no claim from the file can take them while they
    /// are handed over; at the next start (or should one stay unacked past
    /// its lease) they are due again like any leased event. For the single
    /// process that owns the queue (`automate run`); with `capacity` 0 (the
    /// default) every claim reads the file.
    pub fn with_handoff(self, capacity: usize) -> RedbEventQueue {
        if let Ok(mut h) = self.handoff.lock() {
            h.capacity = capacity;
        }
        self
    }

    fn handoff(&self) -> MutexGuard<'_, Handoff> {
        // Nothing a panicking holder leaves half-done matters more than
        // carrying on.
        self.handoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes events to the file in one durable transaction: due now, or
    /// (`claimed`) leased to this process for [`LEASE`].
    fn write_events(&self, events: &[CaughtEvent], claimed: bool) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = SystemTime::now();
        let run_at = if claimed { now + LEASE } else { now };
        let items: Vec<(WorkItem, SystemTime)> = events
            .iter()
            .map(|(p, e, caught)| {
                let text = queued_text(p, e, *caught);
                (
                    WorkItem::new(EVENT_KIND, serde_json::Value::String(text)),
                    run_at,
                )
            })
            .collect();
        // Counted before the commit: once it is committed a worker may claim
        // and ack the events before this thread runs again, and an ack
        // counted first would be lost (the depth saturates at 0) and leave
        // the depth above the truth for ever.
        let n = items.len() as u64;
        self.depth.fetch_add(n, Ordering::SeqCst);
        let written = match (&self.group, claimed) {
            (Some(g), false) => g.commit(PreparedUnit::default(), move |b| b.schedule_all(&items)),
            (Some(g), true) => g.commit(PreparedUnit::default(), move |b| {
                b.schedule_all_claimed(&items)
            }),
            (None, false) => self.schedule.schedule_many(&items),
            (None, true) => self.schedule.schedule_many_claimed(&items),
        };
        match written {
            Ok(ids) => Ok(ids),
            Err(e) => {
                self.acked(n as usize);
                Err(e)
            }
        }
    }

    /// Leases up to `limit` due events of the file.
    fn claim_file(&self, limit: usize) -> Result<Claim, StoreError> {
        let claimed = self
            .schedule
            .claim_due_kind(SystemTime::now(), limit, LEASE, EVENT_KIND)?;
        let mut out = Claim::default();
        // Events of one provider share one `Arc<Provider>`.
        let mut providers: Vec<Arc<Provider>> = Vec::new();
        for mut c in claimed {
            let parsed = match c.item.payload.take() {
                serde_json::Value::String(text) => serde_json::from_str::<QueuedIn>(&text),
                // Written before the payload became a string.
                other => serde_json::from_value::<QueuedIn>(other),
            };
            match parsed {
                Ok(QueuedIn {
                    provider: p,
                    event: e,
                    caught_us,
                }) => {
                    let caught_us = caught_us.unwrap_or_else(|| automate_vmdb::to_micros(c.run_at));
                    let provider = match providers.iter().find(|x| x.as_ref() == &p) {
                        Some(x) => x.clone(),
                        None => {
                            let x = Arc::new(p);
                            providers.push(x.clone());
                            x
                        }
                    };
                    out.events.push(ClaimedEvent {
                        id: c.id,
                        attempts: c.attempts,
                        provider,
                        event: e,
                        caught_us,
                    })
                }
                Err(e) => out.unreadable.push((c.id, e.to_string())),
            }
        }
        Ok(out)
    }

    /// The underlying scheduled-work table.
    pub fn schedule(&self) -> &RedbSchedule {
        &self.schedule
    }
}

impl EventQueue for RedbEventQueue {
    /// [`EventQueue::enqueue_caught`] taking the events: with a hand-off
    /// ([`RedbEventQueue::with_handoff`]) that has room, they are written as
    /// claimed and handed to the next claims in memory. Their ids, in
    /// order.
    fn enqueue_owned(&self, events: Vec<CaughtEvent>) -> Result<Vec<u64>, StoreError> {
        let n = events.len();
        let hand_over = {
            let mut h = self.handoff();
            let room =
                h.capacity > 0 && !h.from_file && h.ready.len() + h.reserved + n <= h.capacity;
            if room {
                h.reserved += n;
            }
            room
        };
        let written = self.write_events(&events, hand_over);
        let mut h = self.handoff();
        if hand_over {
            h.reserved -= n;
        }
        let ids = written?;
        if !hand_over {
            h.mark_file_due();
            return Ok(ids);
        }
        for (id, (provider, event, caught_us)) in ids.iter().zip(events) {
            h.ready.push_back(ClaimedEvent {
                id: *id,
                attempts: 1,
                provider,
                event,
                caught_us,
            });
        }
        Ok(ids)
    }

    /// [`EventQueue::enqueue_batch`] with the time each event was caught
    /// (µs since the Unix epoch), kept for the latency figures.
    fn enqueue_caught(&self, events: &[CaughtEvent]) -> Result<Vec<u64>, StoreError> {
        let ids = self.write_events(events, false)?;
        if !ids.is_empty() {
            self.handoff().mark_file_due();
        }
        Ok(ids)
    }

    /// Claims up to `limit` due events (oldest first): those handed over in
    /// memory ([`RedbEventQueue::with_handoff`]), then, when the file may hold
    /// due ones (and at least every `FILE_SWEEP`, for leases that ran
    /// out), leases due ones from the file.
    fn claim(&self, limit: usize) -> Result<Claim, StoreError> {
        let limit = limit.max(1);
        let (mut out, writes_seen) = {
            let mut h = self.handoff();
            let n = limit.min(h.ready.len());
            let events: Vec<ClaimedEvent> = h.ready.drain(..n).collect();
            let due_sweep =
                h.capacity > 0 && h.last_sweep.is_none_or(|t| t.elapsed() >= FILE_SWEEP);
            let sweep = events.len() < limit && (h.from_file || h.capacity == 0 || due_sweep);
            if !sweep {
                return Ok(Claim {
                    events,
                    unreadable: Vec::new(),
                });
            }
            h.last_sweep = Some(Instant::now());
            (
                Claim {
                    events,
                    unreadable: Vec::new(),
                },
                h.file_writes,
            )
        };
        let want = limit - out.events.len();
        let from_file = match self.claim_file(want) {
            Ok(c) => c,
            // Keep what was handed over (it is leased: dropping it here
            // would delay it until its lease runs out).
            Err(e) if !out.events.is_empty() => {
                tracing::warn!(target: "evm", "MIQ(EventQueue) claim from the file failed: {e}");
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        if from_file.events.len() + from_file.unreadable.len() < want {
            // Nothing due is left in the file, unless written since.
            let mut h = self.handoff();
            if h.file_writes == writes_seen && h.capacity > 0 {
                h.from_file = false;
            }
        }
        out.events.extend(from_file.events);
        out.unreadable.extend(from_file.unreadable);
        Ok(out)
    }

    /// Removes handled events (one durable transaction); how many there
    /// were.
    fn ack(&self, ids: &[u64]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let n = self.schedule.complete_many(ids)?;
        self.acked(n);
        Ok(n)
    }

    /// Counts `n` events acked by a transaction of the caller's own (a unit
    /// of work committed with [`crate::Batch::complete_all`]).
    fn acked(&self, n: usize) {
        let _ = self
            .depth
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                Some(d.saturating_sub(n as u64))
            });
    }

    /// Gives back claimed events that were not acked (their batch's commit
    /// failed): they are made due now (should that write fail too, they
    /// come due when their lease runs out) and claimed again from the file.
    fn release(&self, ids: &[u64]) {
        let now = SystemTime::now();
        for id in ids {
            if let Err(e) = self.schedule.reschedule(*id, now) {
                tracing::warn!(target: "evm", "MIQ(EventQueue) event {id} stays leased until its lease runs out: {e}");
            }
        }
        self.handoff().mark_file_due();
    }

    /// Makes every claimed event due now (at startup: a previous process
    /// that died holds no lease any more). Also releases leased Automate
    /// retries, which is as right for them. How many there were.
    fn release_leases(&self) -> Result<usize, StoreError> {
        self.schedule.release_leases(SystemTime::now())
    }

    /// Events queued and not yet acked (claimed ones included).
    fn depth(&self) -> u64 {
        self.depth.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedbStore;

    /// What [`queued_text`] must write: serde_json's text of this.
    #[derive(serde::Serialize)]
    struct QueuedOut<'a> {
        provider: &'a Provider,
        event: &'a ProviderEvent,
        caught_us: u64,
    }

    #[test]
    fn queued_text_is_serde_jsons_text() {
        // Struct literals without `..`: a field added to either struct stops
        // this test compiling until it (and `queued_text`) say what to write.
        let provider = Provider {
            name: "rhevm \"01\"".into(),
            kind: "RHEVM".into(),
            hostname: "h\u{e9}\u{1f600}\n".into(),
            userid: "admin@internal".into(),
        };
        let full = ProviderEvent {
            event_type: "USER_RUN_VM".into(),
            timestamp: "2026-11-25T12:00:00.000Z".into(),
            chain_id: Some("".into()),
            vm_ems_ref: Some("/api/vms/1".into()),
            vm_name: Some("vm\t1\\".into()),
            host_ems_ref: Some("/api/hosts/2".into()),
            host_name: Some("\u{7f}\u{1}".into()),
            full_data: serde_json::json!({
                "id": "10002", "code": 73, "ratio": 0.5, "neg": -3, "big": 18446744073709551615u64,
                "ok": true, "none": null, "list": [1, "two", {"three": [false]}],
                "nested": {"vm": {"name": "mq-18 \"x\""}}
            }),
        };
        let bare = ProviderEvent {
            event_type: "compute.instance.power_off.end".into(),
            timestamp: String::new(),
            chain_id: None,
            vm_ems_ref: None,
            vm_name: None,
            host_ems_ref: None,
            host_name: None,
            full_data: serde_json::Value::Null,
        };
        for (event, caught_us) in [
            (&full, 1_795_000_000_123_456),
            (&bare, 0),
            (&bare, u64::MAX),
        ] {
            let text = queued_text(&provider, event, caught_us);
            let want = serde_json::to_string(&QueuedOut {
                provider: &provider,
                event,
                caught_us,
            })
            .expect("serializes");
            assert_eq!(text, want);
            let back: QueuedIn = serde_json::from_str(&text).expect("reads back");
            assert_eq!((&back.provider, &back.event), (&provider, event));
            assert_eq!(back.caught_us, Some(caught_us));
        }
    }

    fn provider() -> Arc<Provider> {
        Arc::new(Provider {
            name: "p".into(),
            kind: "RHEVM".into(),
            hostname: "h".into(),
            userid: "u".into(),
        })
    }

    fn event(n: u32) -> ProviderEvent {
        ProviderEvent {
            event_type: "USER_RUN_VM".into(),
            timestamp: format!("2026-01-01T00:00:{n:02}Z"),
            chain_id: None,
            vm_ems_ref: Some(format!("vm-{n}")),
            vm_name: None,
            host_ems_ref: None,
            host_name: None,
            full_data: serde_json::Value::Null,
        }
    }

    #[test]
    fn enqueue_claim_ack_and_redeliver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            let q = RedbEventQueue::open(store.schedule()).unwrap();
            let batch: Vec<_> = (0..5).map(|n| (provider(), event(n))).collect();
            let ids = q.enqueue_batch(&batch).unwrap();
            assert_eq!(ids.len(), 5);
            assert_eq!(q.depth(), 5);
            // A retry due now is not claimed by the queue.
            store
                .schedule()
                .schedule(
                    &WorkItem::new("automate_retry", serde_json::Value::Null),
                    SystemTime::now(),
                )
                .unwrap();
            let c = q.claim(3).unwrap();
            assert_eq!(c.events.len(), 3);
            assert_eq!(c.events[0].event, event(0));
            assert_eq!(q.ack(&[c.events[0].id]).unwrap(), 1);
            assert_eq!(q.depth(), 4);
            // Two claimed, never acked: the process "dies".
        }
        let store = RedbStore::open(&path).unwrap();
        let q = RedbEventQueue::open(store.schedule()).unwrap();
        assert_eq!(q.depth(), 4);
        assert_eq!(q.release_leases().unwrap(), 2);
        let c = q.claim(10).unwrap();
        assert_eq!(c.events.len(), 4);
        assert_eq!(c.events.iter().filter(|e| e.attempts == 2).count(), 2);
        let ids: Vec<u64> = c.events.iter().map(|e| e.id).collect();
        assert_eq!(q.ack(&ids).unwrap(), 4);
        assert_eq!(q.depth(), 0);
        assert_eq!(store.schedule().len().unwrap(), 1);
    }

    #[test]
    fn items_with_an_object_payload_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("q.redb")).unwrap();
        let payload = serde_json::json!({ "provider": provider().as_ref(), "event": event(3) });
        store
            .schedule()
            .schedule(&WorkItem::new(EVENT_KIND, payload), SystemTime::now())
            .unwrap();
        store
            .schedule()
            .schedule(
                &WorkItem::new(EVENT_KIND, serde_json::json!("not an event")),
                SystemTime::now(),
            )
            .unwrap();
        let q = RedbEventQueue::open(store.schedule()).unwrap();
        let c = q.claim(10).unwrap();
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.events[0].event, event(3));
        assert!(c.events[0].caught_us > 0);
        assert_eq!(c.unreadable.len(), 1);
    }

    fn owned(range: std::ops::Range<u32>) -> Vec<(Arc<Provider>, ProviderEvent, u64)> {
        range.map(|n| (provider(), event(n), 1)).collect()
    }

    #[test]
    fn handed_over_events_are_claimed_in_order_leased_and_overflow_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("q.redb")).unwrap();
        let q = RedbEventQueue::open(store.schedule())
            .unwrap()
            .with_handoff(4);
        // The first claim reads the (empty) file and turns to the hand-off.
        assert!(q.claim(8).unwrap().events.is_empty());
        q.enqueue_owned(owned(0..3)).unwrap();
        let c = q.claim(2).unwrap();
        let got: Vec<_> = c.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(got, vec![event(0), event(1)]);
        // Handed over: leased in the file, so no claim from it takes them.
        assert!(store
            .schedule()
            .due(SystemTime::now(), 10)
            .unwrap()
            .is_empty());
        assert_eq!(store.schedule().len().unwrap(), 3);
        // Three more do not fit (one is waiting, room for four): they go to
        // the file only, and come after the one waiting.
        q.enqueue_owned(owned(3..6)).unwrap();
        let c2 = q.claim(10).unwrap();
        let got: Vec<_> = c2.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(got, vec![event(2), event(3), event(4), event(5)]);
        assert_eq!(q.depth(), 6);
        let acked: Vec<u64> = c.events.iter().chain(&c2.events).map(|e| e.id).collect();
        // A failed commit gives two back: claimed again (from the file).
        q.release(&acked[..2]);
        let again = q.claim(10).unwrap();
        let got: Vec<_> = again.events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(got, vec![event(0), event(1)]);
        assert_eq!(q.ack(&acked).unwrap(), 6);
        assert_eq!(q.depth(), 0);
        assert!(q.claim(10).unwrap().events.is_empty());
        // Drained: the hand-off is used again.
        q.enqueue_owned(owned(6..7)).unwrap();
        assert_eq!(q.claim(10).unwrap().events[0].event, event(6));
    }
}
