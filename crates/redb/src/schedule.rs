//! Durable scheduled work on redb ([`RedbSchedule`], the redb
//! [`Schedule`]): items to run at a time, kept in the store's redb file so
//! they survive restarts and crashes. This is the seam the event pipeline's
//! durable queue is built on: *enqueue* is [`Schedule::schedule`] at now,
//! *claim batch* is [`Schedule::claim_due`], *ack* is
//! [`Schedule::complete`], *schedule-at* is [`Schedule::schedule`] at a later
//! time (and [`Schedule::reschedule`] for a retry).
//!
//! # Tables
//!
//! | table | key | value |
//! |---|---|---|
//! | `scheduled` | `(run_at_micros: u64, seq: u64)` | the item: kind, payload, attempts, leased, created time, in the binary layout of `Record::encode` (files written before it hold JSON `{"kind", "payload", ...}`, still read) |
//! | `scheduled_by_id` | `id: u64` | its `(run_at_micros, seq)` key in `scheduled` |
//! | `scheduled_meta` | `"next_id"` | the next id to hand out |
//!
//! `run_at_micros` is microseconds since the Unix epoch (times before it are
//! 0), so sub-second schedules keep their order; `seq` is the item's id, so
//! items due at the same microsecond come out in the order they were
//! scheduled, and a range scan from `(0, 0)` to `(now, MAX)` is exactly the
//! due items, in run-at order. Ids are allocated in the same transaction as
//! the insert and never reused.
//!
//! # Delivery and durability
//!
//! Every change (schedule, claim, complete, reschedule) is one redb write
//! transaction committed with [`redb::Durability::Immediate`]: when the
//! call returns, the change is on disk, and a crash at any point leaves the
//! last committed state; reads (`due`, `get`, `len`, `next_due`) are
//! snapshot reads. [`Schedule::claim_due`]
//! *leases* what it returns: in the same transaction it moves each item to
//! `run_at = now + lease` and counts the attempt. A worker that finishes
//! calls [`Schedule::complete`]; one that crashes (or outlives its lease)
//! leaves the item to come due again when the lease runs out, to be claimed
//! again with `attempts + 1`: delivery is **at-least-once**, and consumers
//! must be idempotent (or complete the item in the same transaction as the
//! writes it produced, with [`super::Batch::complete`], which makes the
//! store's effects exactly-once). After a restart, [`Schedule::release_leases`]
//! makes everything that was in flight due at once instead of waiting for
//! the lease. A late `complete` from a worker whose lease already ran out
//! still removes the item (there is no lease token yet).
//!
//! Several items can be scheduled, claimed or completed in one transaction
//! ([`Schedule::schedule_many`], [`Schedule::complete_many`], or any
//! [`super::RedbStore::write_batch`]), which is the group commit the queue
//! needs: one fsync for the whole batch.

use super::backend;
use super::file::Db;
use automate_vmdb::{from_micros, to_micros, Claimed, Schedule, Scheduled, StoreError, WorkItem};
use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) const SCHEDULED: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("scheduled");
pub(crate) const SCHEDULED_BY_ID: TableDefinition<u64, (u64, u64)> =
    TableDefinition::new("scheduled_by_id");
pub(crate) const SCHEDULED_META: TableDefinition<&str, u64> =
    TableDefinition::new("scheduled_meta");
const NEXT_ID: &str = "next_id";

/// The value of the `scheduled` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    kind: String,
    payload: serde_json::Value,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    leased: bool,
    #[serde(default)]
    created_us: u64,
}

/// The first byte of a binary record (a JSON record starts with `{`).
const RECORD_V1: u8 = 0xB1;
/// The payload tags of a binary record.
const PAYLOAD_JSON: u8 = 0;
const PAYLOAD_STRING: u8 = 1;
/// Where the kind's length (u16) is in a binary record; the kind follows.
const KIND_LEN_AT: usize = 14;

impl Record {
    /// `0xB1`, attempts (u32 LE), leased (u8), created_us (u64 LE), the
    /// kind's length (u16 LE) and bytes, a payload tag, the payload: a
    /// string payload (the event queue's) as its raw bytes, anything else
    /// as JSON text. Claims and re-schedules copy the payload, they never
    /// escape or parse it.
    fn encode(&self) -> Vec<u8> {
        encode_record(
            &self.kind,
            &self.payload,
            self.attempts,
            self.leased,
            self.created_us,
        )
    }

    fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
        let bad = |why: &str| StoreError::Backend(format!("undecodable scheduled item: {why}"));
        if bytes.first() != Some(&RECORD_V1) {
            return serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()));
        }
        let (kind, rest) = split_kind(bytes).ok_or_else(|| bad("truncated record"))?;
        let u32_at = |i: usize| bytes.get(i..i + 4).and_then(|b| b.try_into().ok());
        let u64_at = |i: usize| bytes.get(i..i + 8).and_then(|b| b.try_into().ok());
        let attempts = u32::from_le_bytes(u32_at(1).ok_or_else(|| bad("truncated record"))?);
        let created_us = u64::from_le_bytes(u64_at(6).ok_or_else(|| bad("truncated record"))?);
        let payload = match rest.split_first() {
            Some((&PAYLOAD_STRING, text)) => serde_json::Value::String(
                String::from_utf8(text.to_vec()).map_err(|e| bad(&e.to_string()))?,
            ),
            Some((&PAYLOAD_JSON, json)) => {
                serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?
            }
            _ => return Err(bad("unknown payload tag")),
        };
        Ok(Record {
            kind: String::from_utf8(kind.to_vec()).map_err(|e| bad(&e.to_string()))?,
            payload,
            attempts,
            leased: bytes[5] != 0,
            created_us,
        })
    }

    fn item(&self) -> WorkItem {
        WorkItem {
            kind: self.kind.clone(),
            payload: self.payload.clone(),
        }
    }
}

fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The scheduled-work tables of a redb database: the redb [`Schedule`].
/// Cheap to clone.
#[derive(Clone)]
pub struct RedbSchedule {
    db: Db,
    /// Claims commit without an fsync: see [`RedbSchedule::with_relaxed_claims`].
    relaxed_claims: bool,
}

impl std::fmt::Debug for RedbSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbSchedule").finish_non_exhaustive()
    }
}

impl RedbSchedule {
    /// The scheduled work of `db` (usually [`super::RedbStore::database`]);
    /// creates the tables if they are missing.
    pub fn new(db: Arc<Database>) -> Result<RedbSchedule, StoreError> {
        let txn = db.begin_write().map_err(backend)?;
        create_tables(&txn)?;
        txn.commit().map_err(backend)?;
        Ok(RedbSchedule {
            db: Db::Rw(db),
            relaxed_claims: false,
        })
    }

    /// For a database whose tables are known to exist.
    pub(crate) fn from_created(db: Db) -> RedbSchedule {
        RedbSchedule {
            db,
            relaxed_claims: false,
        }
    }

    /// Claims ([`Schedule::claim_due`], [`Schedule::claim_due_kind`]) commit
    /// with [`redb::Durability::None`]: a lease is only a promise to this
    /// process, and a crash that loses it leaves the item due, which is what
    /// [`Schedule::release_leases`] does at the next start anyway. The next
    /// durable commit (an ack) makes the claim durable too. Saves one fsync
    /// per claimed batch.
    pub fn with_relaxed_claims(mut self, relaxed: bool) -> RedbSchedule {
        self.relaxed_claims = relaxed;
        self
    }

    /// Schedules `item` to run at `run_at`; returns its id.
    pub fn schedule(&self, item: &WorkItem, run_at: SystemTime) -> Result<u64, StoreError> {
        self.write(|txn| schedule_in(txn, item, run_at))
    }

    /// Schedules `item` and completes `done` in one transaction: a retry
    /// that schedules its successor never leaves both or neither.
    pub fn schedule_and_complete(
        &self,
        item: &WorkItem,
        run_at: SystemTime,
        done: u64,
    ) -> Result<u64, StoreError> {
        self.write(|txn| {
            complete_in(txn, done)?;
            schedule_in(txn, item, run_at)
        })
    }

    /// Schedules several items in one transaction (group commit); returns
    /// their ids in order.
    pub fn schedule_many(&self, items: &[(WorkItem, SystemTime)]) -> Result<Vec<u64>, StoreError> {
        self.write(|txn| schedule_all_in(txn, items.iter().map(|(item, at)| (item, *at)), false))
    }

    /// [`Schedule::schedule_many`] for work the caller hands to a worker
    /// itself: written as claimed once, leased until its run-at (see
    /// [`super::Batch::schedule_all_claimed`]).
    pub fn schedule_many_claimed(
        &self,
        items: &[(WorkItem, SystemTime)],
    ) -> Result<Vec<u64>, StoreError> {
        self.write(|txn| schedule_all_in(txn, items.iter().map(|(item, at)| (item, *at)), true))
    }

    /// Up to `limit` items due at `now` (run-at ≤ now), in run-at order,
    /// with their attempt counts. Changes nothing.
    pub fn due(
        &self,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(u64, WorkItem, u32)>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(SCHEDULED).map_err(backend)?;
        let mut out = Vec::new();
        for entry in table
            .range((0u64, 0u64)..=(to_micros(now), u64::MAX))
            .map_err(backend)?
            .take(limit)
        {
            let (k, v) = entry.map_err(backend)?;
            let rec = Record::decode(v.value())?;
            out.push((k.value().1, rec.item(), rec.attempts));
        }
        Ok(out)
    }

    /// Claims up to `limit` items due at `now`, in run-at order: in one
    /// transaction each moves to `now + lease` with one more attempt. Call
    /// [`Schedule::complete`] when done; otherwise they come due again.
    pub fn claim_due(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        if !self.any_due(now, None)? {
            return Ok(Vec::new());
        }
        self.write_claim(|txn| claim_due_in(txn, now, limit, lease, None))
    }

    /// [`Schedule::claim_due`] restricted to items of `kind`: other due
    /// items are left alone (so the event queue and the Automate retries can
    /// share the table without claiming each other's work).
    pub fn claim_due_kind(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
        kind: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        if !self.any_due(now, Some(kind))? {
            return Ok(Vec::new());
        }
        self.write_claim(|txn| claim_due_in(txn, now, limit, lease, Some(kind)))
    }

    /// Whether an item (of `kind`, when given) is due at `now`, seen in a
    /// read snapshot: claims look first, because most polls find nothing
    /// due, and a write transaction would wait for the store's writer (and
    /// hold up whoever polls) for nothing.
    fn any_due(&self, now: SystemTime, kind: Option<&str>) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = match txn.open_table(SCHEDULED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(backend(e)),
        };
        for entry in table
            .range((0u64, 0u64)..=(to_micros(now), u64::MAX))
            .map_err(backend)?
        {
            let (_, v) = entry.map_err(backend)?;
            if kind.map_or(Ok(true), |k| is_kind(v.value(), k))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// How many items of `kind` are scheduled (claimed ones included).
    pub fn count_kind(&self, kind: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(SCHEDULED).map_err(backend)?;
        let mut n = 0;
        for entry in table.iter().map_err(backend)? {
            let (_, v) = entry.map_err(backend)?;
            if is_kind(v.value(), kind)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// How many items of `kind` are due at `now` and not claimed (a
    /// claimed item's run-at is its lease's end): the due range of the
    /// run-at order, each item's kind read without decoding its payload.
    pub fn count_kind_due(&self, kind: &str, now: SystemTime) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = match txn.open_table(SCHEDULED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(backend(e)),
        };
        let mut n = 0;
        for entry in table
            .range((0u64, 0u64)..=(to_micros(now), u64::MAX))
            .map_err(backend)?
        {
            let (_, v) = entry.map_err(backend)?;
            if is_kind(v.value(), kind)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes a finished item; `false` when there was none.
    pub fn complete(&self, id: u64) -> Result<bool, StoreError> {
        self.write(|txn| complete_in(txn, id))
    }

    /// Removes several finished items in one transaction; how many there
    /// were.
    pub fn complete_many(&self, ids: &[u64]) -> Result<usize, StoreError> {
        self.write(|txn| {
            let mut n = 0;
            for id in ids {
                n += usize::from(complete_in(txn, *id)?);
            }
            Ok(n)
        })
    }

    /// Moves an item to run at `run_at` (a retry, or a lease given back),
    /// keeping its attempts; `false` when there is no such item.
    pub fn reschedule(&self, id: u64, run_at: SystemTime) -> Result<bool, StoreError> {
        self.write(|txn| reschedule_in(txn, id, run_at))
    }

    /// Makes every claimed item due at `now` (at startup, when no worker of
    /// the previous run can still hold a lease); how many there were.
    pub fn release_leases(&self, now: SystemTime) -> Result<usize, StoreError> {
        self.write(|txn| {
            let table = txn.open_table(SCHEDULED).map_err(backend)?;
            let mut leased = Vec::new();
            for entry in table.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let rec = Record::decode(v.value())?;
                if rec.leased {
                    leased.push(k.value().1);
                }
            }
            drop(table);
            for id in &leased {
                reschedule_in(txn, *id, now)?;
            }
            Ok(leased.len())
        })
    }

    /// One item, if it is still scheduled.
    pub fn get(&self, id: u64) -> Result<Option<Scheduled>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
        let Some(key) = by_id.get(id).map_err(backend)?.map(|g| g.value()) else {
            return Ok(None);
        };
        let table = txn.open_table(SCHEDULED).map_err(backend)?;
        let Some(bytes) = table.get(key).map_err(backend)? else {
            return Err(StoreError::Backend(format!(
                "scheduled item {id} is indexed but missing"
            )));
        };
        let rec = Record::decode(bytes.value())?;
        Ok(Some(Scheduled {
            id,
            item: rec.item(),
            attempts: rec.attempts,
            run_at: from_micros(key.0),
            leased: rec.leased,
        }))
    }

    /// When the earliest item is due, if there is one (for a worker to
    /// sleep until).
    pub fn next_due(&self) -> Result<Option<SystemTime>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(SCHEDULED).map_err(backend)?;
        let first = table.first().map_err(backend)?;
        Ok(first.map(|(k, _)| from_micros(k.value().0)))
    }

    /// How many items are scheduled (claimed ones included).
    pub fn len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
        by_id.len().map_err(backend)
    }

    /// Whether nothing is scheduled (claimed items count as scheduled).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Checks that the two tables agree and every item decodes; the
    /// problems found (none when consistent).
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        verify_in(&txn).map(|(_, problems)| problems)
    }

    /// A claim's transaction; one that claimed nothing is aborted, so an
    /// idle poll (the retry runner's, the dispatcher's) writes no page and
    /// syncs nothing.
    fn write_claim(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<Vec<Claimed>, StoreError>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        if self.relaxed_claims {
            txn.set_durability(redb::Durability::None)
                .map_err(backend)?;
        }
        match f(&txn) {
            Ok(claimed) if claimed.is_empty() => {
                let _ = txn.abort();
                Ok(claimed)
            }
            result => self.finish(txn, |_| result),
        }
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        self.finish(txn, f)
    }

    fn finish<T>(
        &self,
        txn: WriteTransaction,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match f(&txn) {
            Ok(out) => {
                txn.commit().map_err(backend)?;
                Ok(out)
            }
            Err(e) => {
                let _ = txn.abort();
                Err(e)
            }
        }
    }
}

impl Schedule for RedbSchedule {
    fn schedule(&self, item: &WorkItem, run_at: SystemTime) -> Result<u64, StoreError> {
        RedbSchedule::schedule(self, item, run_at)
    }

    fn schedule_and_complete(
        &self,
        item: &WorkItem,
        run_at: SystemTime,
        done: u64,
    ) -> Result<u64, StoreError> {
        RedbSchedule::schedule_and_complete(self, item, run_at, done)
    }

    fn schedule_many(&self, items: &[(WorkItem, SystemTime)]) -> Result<Vec<u64>, StoreError> {
        RedbSchedule::schedule_many(self, items)
    }

    fn schedule_many_claimed(
        &self,
        items: &[(WorkItem, SystemTime)],
    ) -> Result<Vec<u64>, StoreError> {
        RedbSchedule::schedule_many_claimed(self, items)
    }

    fn due(&self, now: SystemTime, limit: usize) -> Result<Vec<(u64, WorkItem, u32)>, StoreError> {
        RedbSchedule::due(self, now, limit)
    }

    fn claim_due(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        RedbSchedule::claim_due(self, now, limit, lease)
    }

    fn claim_due_kind(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
        kind: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        RedbSchedule::claim_due_kind(self, now, limit, lease, kind)
    }

    fn count_kind(&self, kind: &str) -> Result<u64, StoreError> {
        RedbSchedule::count_kind(self, kind)
    }

    fn count_kind_due(&self, kind: &str, now: SystemTime) -> Result<u64, StoreError> {
        RedbSchedule::count_kind_due(self, kind, now)
    }

    fn complete(&self, id: u64) -> Result<bool, StoreError> {
        RedbSchedule::complete(self, id)
    }

    fn complete_many(&self, ids: &[u64]) -> Result<usize, StoreError> {
        RedbSchedule::complete_many(self, ids)
    }

    fn reschedule(&self, id: u64, run_at: SystemTime) -> Result<bool, StoreError> {
        RedbSchedule::reschedule(self, id, run_at)
    }

    fn release_leases(&self, now: SystemTime) -> Result<usize, StoreError> {
        RedbSchedule::release_leases(self, now)
    }

    fn get(&self, id: u64) -> Result<Option<Scheduled>, StoreError> {
        RedbSchedule::get(self, id)
    }

    fn next_due(&self) -> Result<Option<SystemTime>, StoreError> {
        RedbSchedule::next_due(self)
    }

    fn len(&self) -> Result<u64, StoreError> {
        RedbSchedule::len(self)
    }
}

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SCHEDULED).map_err(backend)?;
    txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
    txn.open_table(SCHEDULED_META).map_err(backend)?;
    Ok(())
}

pub(crate) fn schedule_in(
    txn: &WriteTransaction,
    item: &WorkItem,
    run_at: SystemTime,
) -> Result<u64, StoreError> {
    let mut ids = schedule_all_in(txn, std::iter::once((item, run_at)), false)?;
    ids.pop()
        .ok_or_else(|| StoreError::Backend("scheduling wrote nothing".into()))
}

/// Schedules `items` in `txn`, opening each table once; their ids in order.
/// With `claimed`, each is written as claimed once already (leased until its
/// run-at, one attempt): for work handed to a worker at once.
pub(crate) fn schedule_all_in<'a>(
    txn: &WriteTransaction,
    items: impl ExactSizeIterator<Item = (&'a WorkItem, SystemTime)>,
    claimed: bool,
) -> Result<Vec<u64>, StoreError> {
    let mut meta = txn.open_table(SCHEDULED_META).map_err(backend)?;
    let first = meta
        .get(NEXT_ID)
        .map_err(backend)?
        .map(|g| g.value())
        .unwrap_or(1);
    meta.insert(NEXT_ID, first + items.len() as u64)
        .map_err(backend)?;
    let mut table = txn.open_table(SCHEDULED).map_err(backend)?;
    let mut by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
    let created_us = to_micros(SystemTime::now());
    let mut ids = Vec::with_capacity(items.len());
    for (id, (item, run_at)) in (first..).zip(items) {
        let bytes = encode_record(
            &item.kind,
            &item.payload,
            u32::from(claimed),
            claimed,
            created_us,
        );
        let key = (to_micros(run_at), id);
        table.insert(key, bytes.as_slice()).map_err(backend)?;
        by_id.insert(id, key).map_err(backend)?;
        ids.push(id);
    }
    Ok(ids)
}

fn claim_due_in(
    txn: &WriteTransaction,
    now: SystemTime,
    limit: usize,
    lease: Duration,
    kind: Option<&str>,
) -> Result<Vec<Claimed>, StoreError> {
    let now_us = to_micros(now);
    let until = now_us.saturating_add(duration_micros(lease));
    let mut table = txn.open_table(SCHEDULED).map_err(backend)?;
    let mut by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
    let mut due = Vec::new();
    for entry in table
        .range((0u64, 0u64)..=(now_us, u64::MAX))
        .map_err(backend)?
    {
        if due.len() >= limit {
            break;
        }
        let (k, v) = entry.map_err(backend)?;
        if let Some(kind) = kind {
            if !is_kind(v.value(), kind)? {
                continue;
            }
        }
        due.push((k.value(), Record::decode(v.value())?));
    }
    let mut out = Vec::with_capacity(due.len());
    for ((run_at, seq), mut rec) in due {
        table.remove((run_at, seq)).map_err(backend)?;
        rec.attempts = rec.attempts.saturating_add(1);
        rec.leased = true;
        table
            .insert((until, seq), rec.encode().as_slice())
            .map_err(backend)?;
        by_id.insert(seq, (until, seq)).map_err(backend)?;
        out.push(Claimed {
            id: seq,
            item: rec.item(),
            attempts: rec.attempts,
            run_at: from_micros(run_at),
            lease_until: from_micros(until),
        });
    }
    Ok(out)
}

/// A record in the binary layout of [`Record::encode`].
fn encode_record(
    kind: &str,
    payload: &serde_json::Value,
    attempts: u32,
    leased: bool,
    created_us: u64,
) -> Vec<u8> {
    let kind = kind.as_bytes();
    let kind_len = u16::try_from(kind.len()).unwrap_or(u16::MAX);
    let kind = &kind[..usize::from(kind_len)];
    let payload_len = match payload {
        serde_json::Value::String(text) => text.len(),
        _ => 64,
    };
    let mut out = Vec::with_capacity(KIND_LEN_AT + 3 + kind.len() + payload_len);
    out.push(RECORD_V1);
    out.extend_from_slice(&attempts.to_le_bytes());
    out.push(u8::from(leased));
    out.extend_from_slice(&created_us.to_le_bytes());
    out.extend_from_slice(&kind_len.to_le_bytes());
    out.extend_from_slice(kind);
    match payload {
        serde_json::Value::String(text) => {
            out.push(PAYLOAD_STRING);
            out.extend_from_slice(text.as_bytes());
        }
        other => {
            out.push(PAYLOAD_JSON);
            // Writing a `Value` to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, other);
        }
    }
    out
}

/// A binary record's kind and what follows it.
fn split_kind(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = bytes.get(KIND_LEN_AT..KIND_LEN_AT + 2)?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    let at = KIND_LEN_AT + 2;
    Some((bytes.get(at..at + len)?, bytes.get(at + len..)?))
}

/// Whether the encoded record is of `kind`: read from its header (a JSON
/// record of an older file is told by its first field, or decoded).
fn is_kind(bytes: &[u8], kind: &str) -> Result<bool, StoreError> {
    if bytes.first() == Some(&RECORD_V1) {
        return match split_kind(bytes) {
            Some((k, _)) => Ok(k == kind.as_bytes()),
            None => Err(StoreError::Backend(
                "undecodable scheduled item: truncated record".into(),
            )),
        };
    }
    let mut prefix = b"{\"kind\":".to_vec();
    prefix.extend(serde_json::to_vec(kind).unwrap_or_default());
    prefix.push(b',');
    if bytes.starts_with(&prefix) {
        return Ok(true);
    }
    if bytes.starts_with(b"{\"kind\":") {
        return Ok(false);
    }
    Ok(Record::decode(bytes)?.kind == kind)
}

/// Removes the items `ids` in `txn`, opening each table once; how many
/// there were.
pub(crate) fn complete_all_in(txn: &WriteTransaction, ids: &[u64]) -> Result<usize, StoreError> {
    let mut by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
    let mut table = txn.open_table(SCHEDULED).map_err(backend)?;
    let mut n = 0;
    for id in ids {
        if let Some(key) = by_id.remove(*id).map_err(backend)?.map(|g| g.value()) {
            table.remove(key).map_err(backend)?;
            n += 1;
        }
    }
    Ok(n)
}

pub(crate) fn complete_in(txn: &WriteTransaction, id: u64) -> Result<bool, StoreError> {
    let mut by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
    let Some(key) = by_id.remove(id).map_err(backend)?.map(|g| g.value()) else {
        return Ok(false);
    };
    txn.open_table(SCHEDULED)
        .map_err(backend)?
        .remove(key)
        .map_err(backend)?;
    Ok(true)
}

fn reschedule_in(txn: &WriteTransaction, id: u64, run_at: SystemTime) -> Result<bool, StoreError> {
    let mut by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
    let Some(old) = by_id.get(id).map_err(backend)?.map(|g| g.value()) else {
        return Ok(false);
    };
    let mut table = txn.open_table(SCHEDULED).map_err(backend)?;
    let Some(bytes) = table
        .remove(old)
        .map_err(backend)?
        .map(|g| g.value().to_vec())
    else {
        return Err(StoreError::Backend(format!(
            "scheduled item {id} is indexed but missing"
        )));
    };
    let mut rec = Record::decode(&bytes)?;
    rec.leased = false;
    let key = (to_micros(run_at), old.1);
    table
        .insert(key, rec.encode().as_slice())
        .map_err(backend)?;
    by_id.insert(id, key).map_err(backend)?;
    Ok(true)
}

/// (items, problems): `scheduled` and `scheduled_by_id` hold the same
/// items, every item decodes, and `next_id` is past every id.
pub(crate) fn verify_in(txn: &ReadTransaction) -> Result<(u64, Vec<String>), StoreError> {
    let table = txn.open_table(SCHEDULED).map_err(backend)?;
    let by_id = txn.open_table(SCHEDULED_BY_ID).map_err(backend)?;
    let meta = txn.open_table(SCHEDULED_META).map_err(backend)?;
    let next = meta.get(NEXT_ID).map_err(backend)?.map(|g| g.value());
    let mut problems = Vec::new();
    let mut n = 0;
    for entry in table.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        let key = k.value();
        n += 1;
        if let Err(e) = Record::decode(v.value()) {
            problems.push(format!("scheduled item {}: {e}", key.1));
        }
        if by_id.get(key.1).map_err(backend)?.map(|g| g.value()) != Some(key) {
            problems.push(format!("scheduled item {} is not indexed by id", key.1));
        }
        if next.is_none_or(|next| next <= key.1) {
            problems.push(format!("scheduled next_id {next:?} is not past {}", key.1));
        }
    }
    let indexed = by_id.len().map_err(backend)?;
    if indexed != n {
        problems.push(format!("{indexed} scheduled ids index {n} scheduled items"));
    }
    Ok((n, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn open() -> (tempfile::TempDir, RedbSchedule) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        let s = RedbSchedule::new(Arc::new(db)).unwrap();
        (dir, s)
    }

    #[test]
    fn records_round_trip_in_the_binary_layout_and_old_json_still_reads() {
        let cases = [
            (
                "event",
                serde_json::Value::String("{\"a\": \"é\\n\"}".into()),
            ),
            (
                "automate_retry",
                serde_json::json!({"uri": "/x", "n": [1, 2]}),
            ),
            ("k", serde_json::Value::Null),
        ];
        for (kind, payload) in cases {
            let rec = Record {
                kind: kind.into(),
                payload: payload.clone(),
                attempts: 7,
                leased: true,
                created_us: 1_234_567,
            };
            let bytes = rec.encode();
            assert_eq!(bytes[0], RECORD_V1);
            let back = Record::decode(&bytes).unwrap();
            assert_eq!(
                (
                    back.kind.as_str(),
                    &back.payload,
                    back.attempts,
                    back.leased,
                    back.created_us
                ),
                (kind, &payload, 7, true, 1_234_567)
            );
            assert!(is_kind(&bytes, kind).unwrap());
            assert!(!is_kind(&bytes, "other").unwrap());
            // A record written by an earlier version, as JSON.
            let json = serde_json::to_vec(&rec).unwrap();
            let old = Record::decode(&json).unwrap();
            assert_eq!(
                (old.kind.as_str(), &old.payload, old.attempts),
                (kind, &payload, 7)
            );
            assert!(is_kind(&json, kind).unwrap());
            assert!(!is_kind(&json, "other").unwrap());
        }
        // A damaged record is an error naming the problem, never a panic.
        let bytes = Record {
            kind: "event".into(),
            payload: serde_json::Value::String("x".into()),
            attempts: 0,
            leased: false,
            created_us: 0,
        }
        .encode();
        for cut in [1, 6, 13, 15, 20] {
            let err = Record::decode(&bytes[..cut]).unwrap_err().to_string();
            assert!(err.contains("undecodable scheduled item"), "{cut}: {err}");
        }
        let mut bad_tag = bytes.clone();
        bad_tag[KIND_LEN_AT + 2 + 5] = 9;
        assert!(Record::decode(&bad_tag).is_err());
    }

    #[test]
    fn micros_round_trip_and_clamp() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(from_micros(to_micros(t)), t);
        assert_eq!(to_micros(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[test]
    fn sub_second_order_and_reschedule() {
        let (_dir, s) = open();
        let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let late = s
            .schedule(
                &WorkItem::new("b", serde_json::json!(2)),
                base + Duration::from_millis(900),
            )
            .unwrap();
        let early = s
            .schedule(
                &WorkItem::new("a", serde_json::json!(1)),
                base + Duration::from_millis(100),
            )
            .unwrap();
        // At +500 ms only the +100 ms item is due.
        let due = s.due(base + Duration::from_millis(500), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, early);
        assert!(s.reschedule(late, base).unwrap());
        let ids: Vec<u64> = s
            .due(base + Duration::from_secs(1), 10)
            .unwrap()
            .into_iter()
            .map(|d| d.0)
            .collect();
        assert_eq!(ids, vec![late, early]);
        assert_eq!(s.next_due().unwrap(), Some(base));
        assert!(!s.reschedule(999, base).unwrap());
        assert!(s.verify().unwrap().is_empty());
    }

    #[test]
    fn release_leases_makes_claims_due() {
        let (_dir, s) = open();
        let now = SystemTime::now();
        let id = s
            .schedule(&WorkItem::new("x", serde_json::Value::Null), now)
            .unwrap();
        let claimed = s.claim_due(now, 10, Duration::from_secs(3600)).unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(s.get(id).unwrap().unwrap().leased);
        assert!(s.due(now, 10).unwrap().is_empty());
        assert_eq!(s.release_leases(now).unwrap(), 1);
        let due = s.due(now, 10).unwrap();
        assert_eq!(
            due,
            vec![(id, WorkItem::new("x", serde_json::Value::Null), 1)]
        );
        assert!(!s.get(id).unwrap().unwrap().leased);
    }
}
