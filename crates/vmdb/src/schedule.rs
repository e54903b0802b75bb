//! Scheduled work, backend-neutral: the [`Schedule`] trait (items to run at
//! a time, claimed under a lease, completed when done) and its values. The
//! engine's retries, the request service and the event handler schedule
//! through it; the redb store implements it (`RedbSchedule` in automate-redb).
//!
//! # Contract
//!
//! *Enqueue* is [`Schedule::schedule`] at now, *claim batch* is
//! [`Schedule::claim_due`], *ack* is [`Schedule::complete`], *schedule-at*
//! is [`Schedule::schedule`] at a later time (and [`Schedule::reschedule`]
//! for a retry). Each change is durable when the call returns.
//! [`Schedule::claim_due`] *leases* what it returns: each item moves to
//! `run_at = now + lease` with one more attempt. A worker that finishes
//! calls [`Schedule::complete`]; one that crashes (or outlives its lease)
//! leaves the item to come due again when the lease runs out: delivery is
//! **at-least-once**, and consumers must be idempotent. After a restart,
//! [`Schedule::release_leases`] makes everything that was in flight due at
//! once. Items due at the same time come out in the order they were
//! scheduled; ids are never reused.

use super::StoreError;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A unit of work: what to do (`kind`, e.g. `"ems_event"`) and its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// What to do: the worker that claims the item dispatches on it
    /// (`automate_retry`).
    pub kind: String,
    /// The data that work needs, as JSON.
    pub payload: serde_json::Value,
}

impl WorkItem {
    /// A work item of `kind` carrying `payload`.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> WorkItem {
        WorkItem {
            kind: kind.into(),
            payload,
        }
    }
}

/// An item handed out by [`Schedule::claim_due`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The item's id, as [`Schedule::schedule`] returned it.
    pub id: u64,
    /// The work to do.
    pub item: WorkItem,
    /// How many times the item has been claimed, this claim included.
    pub attempts: u32,
    /// When the item was due before this claim.
    pub run_at: SystemTime,
    /// When it comes due again unless completed or rescheduled.
    pub lease_until: SystemTime,
}

/// An item as [`Schedule::get`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// The item's id.
    pub id: u64,
    /// The work to do.
    pub item: WorkItem,
    /// How many times the item has been claimed.
    pub attempts: u32,
    /// When it comes due (the end of the lease when it is claimed).
    pub run_at: SystemTime,
    /// Whether it is claimed (its `run_at` is the end of the lease).
    pub leased: bool,
}

/// Microseconds since the Unix epoch (0 before it, saturating far ahead).
pub fn to_micros(t: SystemTime) -> u64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

/// The time `micros` after the Unix epoch.
pub fn from_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

/// Durable scheduled work: see the module docs for the contract.
pub trait Schedule: Send + Sync {
    /// Schedules `item` to run at `run_at`; returns its id.
    fn schedule(&self, item: &WorkItem, run_at: SystemTime) -> Result<u64, StoreError>;

    /// Schedules `item` and completes `done` in one transaction: a retry
    /// that schedules its successor never leaves both or neither.
    fn schedule_and_complete(
        &self,
        item: &WorkItem,
        run_at: SystemTime,
        done: u64,
    ) -> Result<u64, StoreError>;

    /// Schedules several items in one transaction (group commit); returns
    /// their ids in order.
    fn schedule_many(&self, items: &[(WorkItem, SystemTime)]) -> Result<Vec<u64>, StoreError>;

    /// [`Schedule::schedule_many`] for work the caller hands to a worker
    /// itself: written as claimed once, leased until its run-at.
    fn schedule_many_claimed(
        &self,
        items: &[(WorkItem, SystemTime)],
    ) -> Result<Vec<u64>, StoreError>;

    /// Up to `limit` items due at `now` (run-at ≤ now), in run-at order,
    /// with their attempt counts. Changes nothing.
    fn due(&self, now: SystemTime, limit: usize) -> Result<Vec<(u64, WorkItem, u32)>, StoreError>;

    /// Claims up to `limit` items due at `now`, in run-at order: each moves
    /// to `now + lease` with one more attempt. Call [`Schedule::complete`]
    /// when done; otherwise they come due again.
    fn claim_due(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// [`Schedule::claim_due`] restricted to items of `kind`: other due
    /// items are left alone (so the event queue and the Automate retries can
    /// share one schedule without claiming each other's work).
    fn claim_due_kind(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
        kind: &str,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// How many items of `kind` are scheduled (claimed ones included).
    fn count_kind(&self, kind: &str) -> Result<u64, StoreError>;

    /// How many items of `kind` are due at `now` and not claimed (a
    /// claimed item's run-at is its lease's end). Changes nothing. The
    /// default reads them all through [`Schedule::due`]; a backend counts
    /// them in place.
    fn count_kind_due(&self, kind: &str, now: SystemTime) -> Result<u64, StoreError> {
        Ok(self
            .due(now, usize::MAX)?
            .iter()
            .filter(|(_, item, _)| item.kind == kind)
            .count() as u64)
    }

    /// Removes a finished item; `false` when there was none.
    fn complete(&self, id: u64) -> Result<bool, StoreError>;

    /// Removes several finished items in one transaction; how many there
    /// were.
    fn complete_many(&self, ids: &[u64]) -> Result<usize, StoreError>;

    /// Moves an item to run at `run_at` (a retry, or a lease given back),
    /// keeping its attempts; `false` when there is no such item.
    fn reschedule(&self, id: u64, run_at: SystemTime) -> Result<bool, StoreError>;

    /// Makes every claimed item due at `now` (at startup, when no worker of
    /// the previous run can still hold a lease); how many there were.
    fn release_leases(&self, now: SystemTime) -> Result<usize, StoreError>;

    /// One item, if it is still scheduled.
    fn get(&self, id: u64) -> Result<Option<Scheduled>, StoreError>;

    /// When the earliest item is due, if there is one (for a worker to
    /// sleep until).
    fn next_due(&self) -> Result<Option<SystemTime>, StoreError>;

    /// How many items are scheduled (claimed ones included).
    fn len(&self) -> Result<u64, StoreError>;

    /// Whether nothing is scheduled.
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}
