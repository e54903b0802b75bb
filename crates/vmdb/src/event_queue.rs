//! The event queue's contract, backend-neutral: the [`EventQueue`] trait,
//! the provider events it carries ([`Provider`], [`ProviderEvent`]) and
//! what a claim hands out ([`ClaimedEvent`], [`Claim`]).
//!
//! It lives here, beside [`Schedule`](crate::Schedule), because its
//! implementations live below the event pipeline: the redb backend's
//! (`automate_redb::RedbEventQueue`, on the store's scheduled-work table
//! with group commit and an in-memory hand-off) depends on this crate and
//! not on `automate-events`, which reaches the queue only through the
//! trait (re-exported as `automate_events::queue`).
//!
//! # Contract
//!
//! What a broker such as NATS JetStream (a work-queue stream with explicit
//! acks and an ack wait) can honour as well as the redb file:
//!
//! * **Enqueue** ([`EventQueue::enqueue_owned`],
//!   [`EventQueue::enqueue_caught`]) is durable when it returns `Ok`: the
//!   catchers acknowledge upstream (and the `http` catcher answers `202`)
//!   only after it. Ids are never reused.
//! * **Claim** ([`EventQueue::claim`]) hands out up to a batch of due
//!   events, oldest first, each *leased* for [`LEASE`] (a broker's ack
//!   wait) with its attempt count (one more per claim).
//! * **Ack** removes handled events. It comes only after the handling's
//!   writes are durable: either in the same transaction as those writes
//!   (a queue in the object store's own file: the unit of work's
//!   hand-over carries the acks, and [`EventQueue::acked`] counts them
//!   once they land), or with [`EventQueue::ack`] after the commit (a
//!   broker). A crash between the writes and the ack re-delivers the event.
//! * **Nak / release** ([`EventQueue::release`]): events given back (their
//!   commit failed, or their handling failed and will be tried again) are
//!   due again at once, keeping their attempt count, so the worker can
//!   dead-letter an event after too many attempts. An event whose lease
//!   runs out unacked is due again too.
//! * **Release leases at start** ([`EventQueue::release_leases`]): what a
//!   previous process had claimed is due again at once.
//! * **Depth** ([`EventQueue::depth`]): events queued and not yet acked.
//!
//! Delivery is therefore **at-least-once**. Re-handling is idempotent
//! through the event's de-duplication key: the handler
//! (`automate_events::Handler`) stores an event under a `dedup_key` made
//! from the provider and the event, and a second delivery of the same
//! event finds the row and stores nothing new. The contract relies on
//! that; a backend need not de-duplicate.

use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The work-item kind of a queued provider event (in a
/// [`Schedule`](crate::Schedule)).
pub const EVENT_KIND: &str = "ems_event";

/// How long a claimed event is leased before it comes due again.
pub const LEASE: Duration = Duration::from_secs(60);

/// A provider (ManageIQ's ExtManagementSystem) as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    /// The provider's name (its `ExtManagementSystem`'s).
    pub name: String,
    /// `RHEVM`, `OPENSTACK`, `VC`, ...: the event `source`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The host its events come from.
    pub hostname: String,
    /// The user the catcher connects as.
    pub userid: String,
}

impl Provider {
    /// The catcher's log prefix: `MIQ(EventCatcherRedhat)`.
    pub fn catcher_name(&self) -> String {
        let kind = match self.kind.to_ascii_uppercase().as_str() {
            "RHEVM" => "Redhat".to_string(),
            "OPENSTACK" => "Openstack".to_string(),
            "VC" | "VMWARE" => "Vmware".to_string(),
            "AMAZON" => "Amazon".to_string(),
            "AZURE" => "Azure".to_string(),
            other => {
                let mut c = other.chars();
                match c.next() {
                    Some(f) => {
                        f.to_uppercase().collect::<String>() + c.as_str().to_lowercase().as_str()
                    }
                    None => String::new(),
                }
            }
        };
        format!("EventCatcher{kind}")
    }

    /// `MIQ(EventCatcher<Type>) EMS [<hostname>] as [<userid>] Caught event [<type>]`.
    pub fn caught_line(&self, event_type: &str) -> String {
        format!(
            "MIQ({}) EMS [{}] as [{}] Caught event [{}]",
            self.catcher_name(),
            self.hostname,
            self.userid,
            event_type
        )
    }
}

/// One event as a catcher parsed it from the provider's bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderEvent {
    /// The provider-native name: `USER_RUN_VM`, `compute.instance.power_off.end`.
    pub event_type: String,
    /// When the provider says it happened (ISO 8601).
    pub timestamp: String,
    /// The provider's id of the chain of events this one belongs to.
    #[serde(default)]
    pub chain_id: Option<String>,
    /// The provider's reference of the VM the event is about.
    #[serde(default)]
    pub vm_ems_ref: Option<String>,
    /// The VM's name, when the event gives it.
    #[serde(default)]
    pub vm_name: Option<String>,
    /// The provider's reference of the host the event is about.
    #[serde(default)]
    pub host_ems_ref: Option<String>,
    /// The host's name, when the event gives it.
    #[serde(default)]
    pub host_name: Option<String>,
    /// The whole payload as received.
    #[serde(default)]
    pub full_data: serde_json::Value,
}

/// A claimed event, ready for the handler.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    /// The queue id: [`EventQueue::ack`] it once handled.
    pub id: u64,
    /// How many times it has been claimed, this claim included (more than
    /// one: a re-delivery).
    pub attempts: u32,
    /// The provider that sent it (shared by the events of one provider).
    pub provider: Arc<Provider>,
    /// The event as caught.
    pub event: ProviderEvent,
    /// When it was caught (µs since the Unix epoch; when it was queued for
    /// items written before this was recorded).
    pub caught_us: u64,
}

/// One claim's result: the events, and the ids of items that could not be
/// read (ack them: they can never be handled).
#[derive(Debug, Default)]
pub struct Claim {
    /// The claimed events, oldest first.
    pub events: Vec<ClaimedEvent>,
    /// Items that could not be decoded, with why.
    pub unreadable: Vec<(u64, String)>,
}

/// An event to enqueue: its provider, the event, and when it was caught
/// (µs since the Unix epoch, for the latency figures).
pub type CaughtEvent = (Arc<Provider>, ProviderEvent, u64);

/// The durable event queue: see the module docs for the contract. Shared
/// as `Arc<dyn EventQueue>`; every call works on a batch, so one dynamic
/// call serves many events.
pub trait EventQueue: Send + Sync + std::fmt::Debug {
    /// Queues `events` durably (one write); their ids, in order. A queue
    /// may keep the events it was given and hand them to the next claims
    /// in memory, once durably written (the redb queue's hand-off).
    fn enqueue_owned(&self, events: Vec<CaughtEvent>) -> Result<Vec<u64>, StoreError>;

    /// Queues copies of `events` durably (one write); their ids, in order.
    fn enqueue_caught(&self, events: &[CaughtEvent]) -> Result<Vec<u64>, StoreError>;

    /// [`EventQueue::enqueue_caught`] with every event caught now.
    fn enqueue_batch(
        &self,
        events: &[(Arc<Provider>, ProviderEvent)],
    ) -> Result<Vec<u64>, StoreError> {
        let now = crate::to_micros(std::time::SystemTime::now());
        let events: Vec<CaughtEvent> = events
            .iter()
            .map(|(p, e)| (p.clone(), e.clone(), now))
            .collect();
        self.enqueue_caught(&events)
    }

    /// Claims up to `limit` due events (at least one is asked for), oldest
    /// first, leasing each for [`LEASE`].
    fn claim(&self, limit: usize) -> Result<Claim, StoreError>;

    /// Removes handled events (one durable write); how many there were.
    fn ack(&self, ids: &[u64]) -> Result<usize, StoreError>;

    /// Counts `n` events acked by a transaction of the caller's own (a
    /// unit of work whose hand-over carried their acks).
    fn acked(&self, n: usize);

    /// Gives back claimed events that were not acked (nak): due again at
    /// once, their attempts kept. Best effort: an event that cannot be
    /// given back comes due when its lease runs out.
    fn release(&self, ids: &[u64]);

    /// Makes every claimed event due now (at startup: a previous process
    /// that died holds no lease any more); how many there were.
    fn release_leases(&self) -> Result<usize, StoreError>;

    /// Whether other processes handle this queue too (cluster mode's
    /// JetStream queue). A draining pipeline (SIGTERM) on a shared queue
    /// stops claiming at once and ends when what it claimed is handled:
    /// the others handle the rest, which may never run out while their
    /// catchers go on. On a queue of its own (the embedded one) it drains
    /// the whole queue first.
    fn shared(&self) -> bool {
        false
    }

    /// Events queued and not yet acked (claimed ones included).
    fn depth(&self) -> u64;
}
