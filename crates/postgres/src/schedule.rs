//! Scheduled work on PostgreSQL ([`PgSchedule`], the cluster's
//! [`Schedule`]): state-machine retries and request work in the
//! `scheduled` table of migration 2, due at `run_at`, claimed by any node
//! with `FOR UPDATE SKIP LOCKED` and leased to it (`node`) until
//! `lease_until`.
//!
//! # Rows
//!
//! | column | meaning |
//! |---|---|
//! | `id` | the item's id (a `bigserial`: never reused) |
//! | `kind`, `payload` | the [`WorkItem`] (`payload` as `jsonb`) |
//! | `run_at` | when it comes due, µs since the Unix epoch; while claimed, the end of the lease (as the redb schedule keeps it) |
//! | `attempts` | how many times it has been claimed |
//! | `lease_until`, `node` | set while claimed: the lease's end (= `run_at`) and the node holding it; cleared by a reschedule |
//!
//! Keeping a claimed item's `run_at` at the end of its lease makes "due"
//! one range of the `(run_at, id)` index whether an item was never
//! claimed or its lease ran out: an expired lease is claimable again by
//! any node, with its attempt counted. Due items come out in
//! `(run_at, id)` order, so items due at the same microsecond come out in
//! the order they were scheduled.
//!
//! # Several nodes
//!
//! A claim is one statement: the due rows are selected `FOR UPDATE SKIP
//! LOCKED` (rows another node is claiming at that moment are passed over,
//! not waited for) and moved to the end of the lease in the same
//! statement, so two nodes claiming at once get disjoint sets and a row a
//! concurrent claim has just leased no longer matches `run_at <= now` when
//! re-checked. [`Schedule::complete`] is a `DELETE`: of two nodes
//! completing the same item exactly one is told it was there.
//! [`Schedule::release_leases`] releases this node's leases only (its
//! previous run's, at start): another node's are its own business and
//! expire. Times are the callers' clocks (`now` is an argument): the nodes'
//! clocks are assumed in step to well within a lease.
//!
//! # Cost
//!
//! Every operation is one statement, auto-committed (durable when the call
//! returns), prepared once per pooled connection (`prepare_cached`): one
//! round trip to the server each, whatever the batch size (relaxed claims,
//! [`PgSchedule::with_relaxed_claims`], take four: a transaction block).
//! [`Schedule::schedule_and_complete`] is one statement too (a
//! data-modifying `WITH`), so it is atomic without a transaction block.

use crate::{Pg, PgError};
use automate_vmdb::{from_micros, to_micros, Claimed, Schedule, Scheduled, StoreError, WorkItem};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Inserts `items` into `scheduled` inside `tx` (a unit of work's
/// transaction: the retries an event's handling scheduled commit with
/// it); their ids, in order.
pub async fn insert_many(
    tx: &tokio_postgres::Transaction<'_>,
    items: &[(WorkItem, SystemTime)],
) -> Result<Vec<u64>, PgError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let (kinds, payloads, run_at) = columns(items);
    let rows = tx.query(INSERT, &[&kinds, &payloads, &run_at]).await?;
    Ok(ids_of(&rows))
}

/// Removes the items `ids` inside `tx` (a unit of work completing the
/// scheduled work it did, with its effects); how many there were.
pub async fn complete_many_in(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &[u64],
) -> Result<usize, PgError> {
    let ids = db_ids(ids);
    if ids.is_empty() {
        return Ok(0);
    }
    let n = tx.execute(COMPLETE_MANY, &[&ids]).await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Inserts unclaimed rows; `$1` kinds, `$2` payloads, `$3` run-at (µs).
/// `unnest` of several arrays keeps their order, and the `bigserial`
/// defaults are drawn in that order, so the ids come back ascending in the
/// items' order (sorted again by the caller, to be sure).
const INSERT: &str = "INSERT INTO scheduled (kind, payload, run_at)
     SELECT * FROM unnest($1::text[], $2::jsonb[], $3::bigint[])
     RETURNING id";

/// [`INSERT`] as claimed once by node `$4`: leased until its run-at.
const INSERT_CLAIMED: &str =
    "INSERT INTO scheduled (kind, payload, run_at, attempts, lease_until, node)
     SELECT k, p, r, 1, r, $4::text FROM unnest($1::text[], $2::jsonb[], $3::bigint[]) AS u(k, p, r)
     RETURNING id";

/// Deletes `$4` and inserts one unclaimed row, in one statement.
const SCHEDULE_AND_COMPLETE: &str = "WITH done AS (DELETE FROM scheduled WHERE id = $4)
     INSERT INTO scheduled (kind, payload, run_at) VALUES ($1, $2, $3)
     RETURNING id";

/// Claims up to `$2` rows due at `$1` (µs) for node `$4`, leasing them
/// until `$3`; each row's run-at before the claim comes back too.
const CLAIM: &str = "WITH due AS (
         SELECT id, run_at FROM scheduled
         WHERE run_at <= $1
         ORDER BY run_at, id
         LIMIT $2
         FOR UPDATE SKIP LOCKED)
     UPDATE scheduled s
        SET run_at = $3, lease_until = $3, node = $4, attempts = s.attempts + 1
       FROM due WHERE s.id = due.id
     RETURNING s.id, s.kind, s.payload, s.attempts, due.run_at";

/// [`CLAIM`] of the rows of kind `$5` only.
const CLAIM_KIND: &str = "WITH due AS (
         SELECT id, run_at FROM scheduled
         WHERE kind = $5 AND run_at <= $1
         ORDER BY run_at, id
         LIMIT $2
         FOR UPDATE SKIP LOCKED)
     UPDATE scheduled s
        SET run_at = $3, lease_until = $3, node = $4, attempts = s.attempts + 1
       FROM due WHERE s.id = due.id
     RETURNING s.id, s.kind, s.payload, s.attempts, due.run_at";

const DUE: &str = "SELECT id, kind, payload, attempts FROM scheduled
     WHERE run_at <= $1 ORDER BY run_at, id LIMIT $2";

const COMPLETE: &str = "DELETE FROM scheduled WHERE id = $1";

const COMPLETE_MANY: &str = "DELETE FROM scheduled WHERE id = ANY($1)";

const RESCHEDULE: &str =
    "UPDATE scheduled SET run_at = $2, lease_until = NULL, node = NULL WHERE id = $1";

const RELEASE: &str = "UPDATE scheduled SET run_at = $1, lease_until = NULL, node = NULL
     WHERE node = $2 AND lease_until IS NOT NULL";

const GET: &str = "SELECT kind, payload, attempts, run_at, lease_until IS NOT NULL
     FROM scheduled WHERE id = $1";

const NEXT_DUE: &str = "SELECT min(run_at) FROM scheduled";

const LEN: &str = "SELECT count(*) FROM scheduled";

const COUNT_KIND: &str = "SELECT count(*) FROM scheduled WHERE kind = $1";

const COUNT_KIND_DUE: &str = "SELECT count(*) FROM scheduled WHERE kind = $1 AND run_at <= $2";

/// The three column arrays of `items` for [`INSERT`].
fn columns(items: &[(WorkItem, SystemTime)]) -> (Vec<&str>, Vec<&serde_json::Value>, Vec<i64>) {
    let kinds = items.iter().map(|(w, _)| w.kind.as_str()).collect();
    let payloads = items.iter().map(|(w, _)| &w.payload).collect();
    let run_at = items.iter().map(|(_, t)| micros(*t)).collect();
    (kinds, payloads, run_at)
}

/// The ids `RETURNING id` answered, ascending (the items' order).
fn ids_of(rows: &[tokio_postgres::Row]) -> Vec<u64> {
    let mut ids: Vec<u64> = rows
        .iter()
        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
        .collect();
    ids.sort_unstable();
    ids
}

/// `t` in µs since the Unix epoch, as the `bigint` columns keep it
/// (saturating far ahead).
fn micros(t: SystemTime) -> i64 {
    i64::try_from(to_micros(t)).unwrap_or(i64::MAX)
}

/// The time a `bigint` µs column holds (0 for anything negative).
fn time(us: i64) -> SystemTime {
    from_micros(u64::try_from(us).unwrap_or(0))
}

/// An attempt count as the trait reports it.
fn attempts(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// The ids that can be rows (a `bigint`); larger ones cannot be scheduled.
fn db_ids(ids: &[u64]) -> Vec<i64> {
    ids.iter()
        .filter_map(|id| i64::try_from(*id).ok())
        .collect()
}

/// A `LIMIT` for `limit` items.
fn db_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The scheduled work of the cluster's PostgreSQL, as one node (`node`)
/// sees it: the PostgreSQL [`Schedule`]. Cheap to clone.
#[derive(Clone)]
pub struct PgSchedule {
    pg: Arc<Pg>,
    node: Arc<str>,
    /// Claims commit without waiting for the WAL flush: see
    /// [`PgSchedule::with_relaxed_claims`].
    relaxed_claims: bool,
}

impl std::fmt::Debug for PgSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSchedule")
            .field("pg", &self.pg)
            .field("node", &self.node)
            .field("relaxed_claims", &self.relaxed_claims)
            .finish()
    }
}

impl PgSchedule {
    /// The schedule in `pg`'s schema, claiming as `node` (the name the
    /// node's leases are recorded under).
    pub fn new(pg: Arc<Pg>, node: impl Into<String>) -> PgSchedule {
        PgSchedule {
            pg,
            node: Arc::from(node.into()),
            relaxed_claims: false,
        }
    }

    /// Claims ([`Schedule::claim_due`], [`Schedule::claim_due_kind`]) commit
    /// with `synchronous_commit = off`: the server answers before the WAL
    /// is flushed (other nodes see the claim at once all the same). A lease
    /// is a promise the server may forget only if it crashes in the
    /// following few milliseconds; the item is then due again (delivered
    /// twice, which at-least-once delivery allows) and its attempt is not
    /// counted. The next synchronous commit (a complete) flushes it. Saves
    /// the WAL flush of each claim, at three more round trips (`BEGIN`,
    /// the setting, `COMMIT`: each far cheaper than a flush).
    pub fn with_relaxed_claims(mut self, relaxed: bool) -> PgSchedule {
        self.relaxed_claims = relaxed;
        self
    }

    /// The node its claims are leased to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `f` with a pooled connection on the driver's runtime and waits
    /// for its answer.
    fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object, Arc<str>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, PgError>> + Send,
    {
        let pg = self.pg.clone();
        let node = self.node.clone();
        Ok(self.pg.block(async move {
            let client = pg.client().await?;
            f(client, node).await
        })??)
    }

    fn claim(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
        kind: Option<&str>,
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_us = micros(now);
        let until = now_us.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let limit = db_limit(limit);
        let kind = kind.map(str::to_string);
        let relaxed = self.relaxed_claims;
        let mut claimed = self.with(move |mut c, node| async move {
            let node: &str = &node;
            let (sql, params): (_, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>) = match &kind {
                Some(kind) => (CLAIM_KIND, vec![&now_us, &limit, &until, &node, kind]),
                None => (CLAIM, vec![&now_us, &limit, &until, &node]),
            };
            let rows = if relaxed {
                let tx = c.transaction().await?;
                tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
                    .await?;
                let st = tx.prepare_cached(sql).await?;
                let rows = tx.query(&st, &params).await?;
                tx.commit().await?;
                rows
            } else {
                let st = c.prepare_cached(sql).await?;
                c.query(&st, &params).await?
            };
            Ok(rows
                .iter()
                .map(|r| {
                    let run_at: i64 = r.get(4);
                    (
                        run_at,
                        Claimed {
                            id: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                            item: WorkItem {
                                kind: r.get(1),
                                payload: r.get(2),
                            },
                            attempts: attempts(r.get(3)),
                            run_at: time(run_at),
                            lease_until: time(until),
                        },
                    )
                })
                .collect::<Vec<_>>())
        })?;
        // `RETURNING` comes in no particular order: the claim's is run-at's.
        claimed.sort_by_key(|(run_at, c)| (*run_at, c.id));
        if !claimed.is_empty() {
            tracing::debug!(target: "evm", "MIQ(PgSchedule.claim_due) node {}: {} item(s) leased", self.node, claimed.len());
        }
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    fn insert(
        &self,
        items: &[(WorkItem, SystemTime)],
        claimed: bool,
    ) -> Result<Vec<u64>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (kinds, payloads, run_at) = columns(items);
        let kinds: Vec<String> = kinds.into_iter().map(str::to_string).collect();
        let payloads: Vec<serde_json::Value> = payloads.into_iter().cloned().collect();
        self.with(move |c, node| async move {
            let rows = if claimed {
                let st = c.prepare_cached(INSERT_CLAIMED).await?;
                c.query(&st, &[&kinds, &payloads, &run_at, &&*node]).await?
            } else {
                let st = c.prepare_cached(INSERT).await?;
                c.query(&st, &[&kinds, &payloads, &run_at]).await?
            };
            Ok(ids_of(&rows))
        })
    }

    /// A count (`SELECT count(*) ...`).
    fn count(
        &self,
        sql: &'static str,
        kind: Option<&str>,
        now: Option<SystemTime>,
    ) -> Result<u64, StoreError> {
        let kind = kind.map(str::to_string);
        let now = now.map(micros);
        self.with(move |c, _| async move {
            let st = c.prepare_cached(sql).await?;
            let row = match (&kind, &now) {
                (Some(k), Some(n)) => c.query_one(&st, &[k, n]).await?,
                (Some(k), None) => c.query_one(&st, &[k]).await?,
                _ => c.query_one(&st, &[]).await?,
            };
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }
}

impl Schedule for PgSchedule {
    fn schedule(&self, item: &WorkItem, run_at: SystemTime) -> Result<u64, StoreError> {
        self.insert(&[(item.clone(), run_at)], false)?
            .pop()
            .ok_or_else(|| StoreError::Backend("scheduling wrote nothing".into()))
    }

    fn schedule_and_complete(
        &self,
        item: &WorkItem,
        run_at: SystemTime,
        done: u64,
    ) -> Result<u64, StoreError> {
        let kind = item.kind.clone();
        let payload = item.payload.clone();
        let run_at = micros(run_at);
        // An id past the bigint range is no row: -1 deletes nothing.
        let done = i64::try_from(done).unwrap_or(-1);
        self.with(move |c, _| async move {
            let st = c.prepare_cached(SCHEDULE_AND_COMPLETE).await?;
            let row = c.query_one(&st, &[&kind, &payload, &run_at, &done]).await?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn schedule_many(&self, items: &[(WorkItem, SystemTime)]) -> Result<Vec<u64>, StoreError> {
        self.insert(items, false)
    }

    fn schedule_many_claimed(
        &self,
        items: &[(WorkItem, SystemTime)],
    ) -> Result<Vec<u64>, StoreError> {
        self.insert(items, true)
    }

    fn due(&self, now: SystemTime, limit: usize) -> Result<Vec<(u64, WorkItem, u32)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = micros(now);
        let limit = db_limit(limit);
        self.with(move |c, _| async move {
            let st = c.prepare_cached(DUE).await?;
            let rows = c.query(&st, &[&now, &limit]).await?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                        WorkItem {
                            kind: r.get(1),
                            payload: r.get(2),
                        },
                        attempts(r.get(3)),
                    )
                })
                .collect())
        })
    }

    fn claim_due(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.claim(now, limit, lease, None)
    }

    fn claim_due_kind(
        &self,
        now: SystemTime,
        limit: usize,
        lease: Duration,
        kind: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.claim(now, limit, lease, Some(kind))
    }

    fn count_kind(&self, kind: &str) -> Result<u64, StoreError> {
        self.count(COUNT_KIND, Some(kind), None)
    }

    fn count_kind_due(&self, kind: &str, now: SystemTime) -> Result<u64, StoreError> {
        self.count(COUNT_KIND_DUE, Some(kind), Some(now))
    }

    fn complete(&self, id: u64) -> Result<bool, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        self.with(move |c, _| async move {
            let st = c.prepare_cached(COMPLETE).await?;
            Ok(c.execute(&st, &[&id]).await? == 1)
        })
    }

    fn complete_many(&self, ids: &[u64]) -> Result<usize, StoreError> {
        let ids = db_ids(ids);
        if ids.is_empty() {
            return Ok(0);
        }
        self.with(move |c, _| async move {
            let st = c.prepare_cached(COMPLETE_MANY).await?;
            let n = c.execute(&st, &[&ids]).await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn reschedule(&self, id: u64, run_at: SystemTime) -> Result<bool, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        let run_at = micros(run_at);
        self.with(move |c, _| async move {
            let st = c.prepare_cached(RESCHEDULE).await?;
            Ok(c.execute(&st, &[&id, &run_at]).await? == 1)
        })
    }

    fn release_leases(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now = micros(now);
        let n = self.with(move |c, node| async move {
            let st = c.prepare_cached(RELEASE).await?;
            let n = c.execute(&st, &[&now, &&*node]).await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })?;
        if n > 0 {
            tracing::info!(target: "evm", "MIQ(PgSchedule.release_leases) node {}: {n} leased item(s) due again", self.node);
        }
        Ok(n)
    }

    fn get(&self, id: u64) -> Result<Option<Scheduled>, StoreError> {
        let Ok(db_id) = i64::try_from(id) else {
            return Ok(None);
        };
        self.with(move |c, _| async move {
            let st = c.prepare_cached(GET).await?;
            Ok(c.query_opt(&st, &[&db_id]).await?.map(|r| Scheduled {
                id,
                item: WorkItem {
                    kind: r.get(0),
                    payload: r.get(1),
                },
                attempts: attempts(r.get(2)),
                run_at: time(r.get(3)),
                leased: r.get(4),
            }))
        })
    }

    fn next_due(&self) -> Result<Option<SystemTime>, StoreError> {
        self.with(move |c, _| async move {
            let st = c.prepare_cached(NEXT_DUE).await?;
            let row = c.query_one(&st, &[]).await?;
            Ok(row.get::<_, Option<i64>>(0).map(time))
        })
    }

    fn len(&self) -> Result<u64, StoreError> {
        self.count(LEN, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;
    use serde_json::json;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::{Instant, UNIX_EPOCH};

    /// A fresh schema and its schedule as node `a`, or `None` (skip).
    fn open(name: &str) -> Option<(TestDb, PgSchedule)> {
        let db = TestDb::new(name)?;
        let s = PgSchedule::new(db.pg(), "a");
        Some((db, s))
    }

    /// Node `node` of the same cluster: a pool of its own on the schema.
    fn other_node(db: &TestDb, node: &str) -> PgSchedule {
        let pg = Pg::connect(&db.config(), db.handle()).expect("a second pool");
        PgSchedule::new(pg, node)
    }

    /// Now, to the whole microsecond (what the table keeps).
    fn now_whole_micros() -> SystemTime {
        from_micros(to_micros(SystemTime::now()))
    }

    fn ids_attempts(c: &[Claimed]) -> Vec<(u64, u32)> {
        c.iter().map(|c| (c.id, c.attempts)).collect()
    }

    #[test]
    fn payloads_and_kinds_round_trip() {
        let Some((_db, s)) = open("sched_round_trip") else {
            return;
        };
        let now = now_whole_micros();
        let cases = [
            ("event", json!("{\"a\": \"é\\n\"}")),
            (
                "automate_retry",
                json!({"uri": "/x", "n": [1, 2], "f": 1.5}),
            ),
            ("k", serde_json::Value::Null),
            ("ünïcode kind", json!([true, {"deep": {"er": null}}])),
        ];
        for (kind, payload) in cases {
            let id = s
                .schedule(&WorkItem::new(kind, payload.clone()), now)
                .unwrap();
            let got = s.get(id).unwrap().expect("scheduled");
            assert_eq!(
                (got.id, got.item, got.attempts, got.run_at, got.leased),
                (id, WorkItem::new(kind, payload.clone()), 0, now, false),
                "{kind}"
            );
            let claimed = s
                .claim_due_kind(now, 10, Duration::from_secs(5), kind)
                .unwrap();
            assert_eq!(claimed.len(), 1, "{kind}");
            assert_eq!(claimed[0].item, WorkItem::new(kind, payload), "{kind}");
            assert!(s.complete(id).unwrap());
        }
        assert!(s.is_empty().unwrap());
    }

    #[test]
    fn scheduled_work_claims_leases_and_completes_in_run_at_order() {
        let Some((db, sched)) = open("sched_claims") else {
            return;
        };
        let now = now_whole_micros();
        let lease = Duration::from_secs(30);
        let future = sched
            .schedule(
                &WorkItem::new("future", json!({"n": 3})),
                now + Duration::from_millis(300),
            )
            .unwrap();
        let present = sched
            .schedule(&WorkItem::new("now", json!({"n": 2})), now)
            .unwrap();
        let past = sched
            .schedule(
                &WorkItem::new("past", json!({"n": 1})),
                now - Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(sched.len().unwrap(), 3);

        // Read-only view: due ones in run-at order, nothing changes.
        let due = sched.due(now, 10).unwrap();
        assert_eq!(
            due.iter()
                .map(|d| (d.0, d.1.kind.as_str(), d.2))
                .collect::<Vec<_>>(),
            vec![(past, "past", 0), (present, "now", 0)]
        );
        // Limits, and sub-second run-ats: due at +300 ms, not at +299 ms.
        for (at, limit, n) in [
            (now, 1, 1),
            (now, 0, 0),
            (now, usize::MAX, 2),
            (now + Duration::from_millis(299), 10, 2),
            (now + Duration::from_millis(300), 10, 3),
            (now - Duration::from_secs(61), 10, 0),
        ] {
            assert_eq!(sched.due(at, limit).unwrap().len(), n, "{at:?} {limit}");
        }
        assert_eq!(
            sched.next_due().unwrap(),
            Some(now - Duration::from_secs(60))
        );

        let claimed = sched.claim_due(now, 10, lease).unwrap();
        assert_eq!(ids_attempts(&claimed), vec![(past, 1), (present, 1)]);
        assert_eq!(claimed[0].item, WorkItem::new("past", json!({"n": 1})));
        assert_eq!(claimed[0].run_at, now - Duration::from_secs(60));
        assert_eq!(claimed[1].run_at, now);
        assert_eq!(claimed[0].lease_until, now + lease);
        assert!(
            sched.claim_due(now, 10, lease).unwrap().is_empty(),
            "leased"
        );
        assert!(sched.due(now, 10).unwrap().is_empty());
        let p = sched.get(present).unwrap().unwrap();
        assert_eq!((p.attempts, p.leased, p.run_at), (1, true, now + lease));
        assert_eq!(
            sched.next_due().unwrap(),
            Some(now + Duration::from_millis(300))
        );

        // `past` is done; `present` is not completed and comes back after
        // the lease, with its attempt counted.
        assert!(sched.complete(past).unwrap());
        assert!(!sched.complete(past).unwrap());
        let later = now + lease + Duration::from_millis(1);
        let again = sched.claim_due(later, 10, lease).unwrap();
        assert_eq!(
            ids_attempts(&again),
            vec![(future, 1), (present, 2)],
            "run-at order: future (+300 ms) before present's lease end"
        );
        assert_eq!(sched.len().unwrap(), 2);

        // Another connection (a restart of this node): still there, leased.
        let restarted = other_node(&db, "a");
        assert_eq!(restarted.len().unwrap(), 2);
        assert!(restarted.get(past).unwrap().is_none());
        let p = restarted.get(present).unwrap().unwrap();
        assert_eq!((p.attempts, p.leased), (2, true));
        // After a restart no worker of this node holds a lease.
        assert_eq!(restarted.release_leases(now).unwrap(), 2);
        let due = restarted.due(now, 10).unwrap();
        assert_eq!(
            due.iter().map(|d| (d.0, d.2)).collect::<Vec<_>>(),
            vec![(future, 1), (present, 2)],
            "same run-at: scheduling order"
        );
        assert!(!restarted.get(present).unwrap().unwrap().leased);
        assert_eq!(
            restarted
                .complete_many(&[present, future, 12345, u64::MAX])
                .unwrap(),
            2
        );
        assert!(restarted.is_empty().unwrap());
        assert_eq!(restarted.next_due().unwrap(), None);
        // Ids are never reused.
        let next = sched
            .schedule(&WorkItem::new("x", json!(null)), now)
            .unwrap();
        assert!(next > past.max(present).max(future));
    }

    /// An item whose claimer died is not handed out again while its lease
    /// runs, to the microsecond; it is as soon as the lease has run out,
    /// its attempt counted, to whichever node asks.
    #[test]
    fn a_dead_claimers_item_comes_back_when_its_lease_runs_out_to_the_other_node() {
        let Some((db, a)) = open("sched_expiry") else {
            return;
        };
        let b = other_node(&db, "b");
        let now = now_whole_micros();
        let lease = Duration::from_secs(30);
        let expires = now + lease;
        let just_before = expires - Duration::from_micros(1);
        let id = a
            .schedule(&WorkItem::new("job", json!({"n": 1})), now)
            .unwrap();
        let claimed = a.claim_due(now, 10, lease).unwrap();
        assert_eq!(ids_attempts(&claimed), vec![(id, 1)]);
        assert_eq!(claimed[0].lease_until, expires);
        drop(a); // node a dies without completing it
        for at in [now, now + lease / 2, just_before] {
            assert!(b.claim_due(at, 10, lease).unwrap().is_empty(), "{at:?}");
            assert!(b.due(at, 10).unwrap().is_empty(), "{at:?}");
            assert_eq!(b.count_kind_due("job", at).unwrap(), 0, "{at:?}");
        }
        let held = b.get(id).unwrap().expect("still scheduled");
        assert_eq!(
            (held.attempts, held.leased, held.run_at),
            (1, true, expires)
        );
        // b's release at its start leaves a's lease alone.
        assert_eq!(b.release_leases(now).unwrap(), 0);
        assert_eq!(b.count_kind_due("job", expires).unwrap(), 1);
        let again = b.claim_due(expires, 10, lease).unwrap();
        assert_eq!(ids_attempts(&again), vec![(id, 2)]);
        assert_eq!(again[0].lease_until, expires + lease);
        assert_eq!(again[0].run_at, expires);
        assert_eq!(again[0].item, WorkItem::new("job", json!({"n": 1})));
        assert!(b.claim_due(expires, 10, lease).unwrap().is_empty());
        // The lease is b's now: b's release gives it back.
        assert_eq!(b.release_leases(expires).unwrap(), 1);
        assert!(b.complete(id).unwrap());
        assert!(b.is_empty().unwrap());
    }

    #[test]
    fn release_leases_releases_this_nodes_leases_only() {
        let Some((db, a)) = open("sched_release") else {
            return;
        };
        let b = other_node(&db, "b");
        let now = now_whole_micros();
        let lease = Duration::from_secs(3600);
        let items: Vec<(WorkItem, SystemTime)> = (0..6)
            .map(|n| (WorkItem::new("x", json!(n)), now))
            .collect();
        let ids = a.schedule_many(&items).unwrap();
        assert_eq!(ids.len(), 6);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let by_a = a.claim_due(now, 2, lease).unwrap();
        let by_b = b.claim_due(now, 3, lease).unwrap();
        assert_eq!(ids_attempts(&by_a), vec![(ids[0], 1), (ids[1], 1)]);
        assert_eq!(
            ids_attempts(&by_b),
            vec![(ids[2], 1), (ids[3], 1), (ids[4], 1)]
        );
        // b's handed-to-a-worker work is b's lease too.
        let handed = b
            .schedule_many_claimed(&[(WorkItem::new("y", json!("h")), now + lease)])
            .unwrap();
        assert_eq!(a.release_leases(now).unwrap(), 2);
        let due: Vec<u64> = a.due(now, 10).unwrap().into_iter().map(|d| d.0).collect();
        assert_eq!(due, vec![ids[0], ids[1], ids[5]]);
        for id in &ids[2..5] {
            assert!(a.get(*id).unwrap().unwrap().leased, "{id}");
        }
        assert!(a.get(handed[0]).unwrap().unwrap().leased);
        assert_eq!(a.release_leases(now).unwrap(), 0, "nothing of a's is left");
        assert_eq!(b.release_leases(now).unwrap(), 4);
        assert_eq!(a.due(now, 10).unwrap().len(), 7);
    }

    #[test]
    fn schedule_many_claimed_is_leased_until_its_run_at() {
        let Some((_db, s)) = open("sched_claimed") else {
            return;
        };
        let now = now_whole_micros();
        let at = now + Duration::from_secs(10);
        assert!(s.schedule_many_claimed(&[]).unwrap().is_empty());
        let ids = s
            .schedule_many_claimed(&[
                (WorkItem::new("w", json!(1)), at),
                (WorkItem::new("w", json!(2)), at),
            ])
            .unwrap();
        for id in &ids {
            let g = s.get(*id).unwrap().unwrap();
            assert_eq!((g.attempts, g.leased, g.run_at), (1, true, at));
        }
        assert!(s
            .claim_due(now, 10, Duration::from_secs(1))
            .unwrap()
            .is_empty());
        assert_eq!(s.count_kind("w").unwrap(), 2);
        assert_eq!(s.count_kind_due("w", now).unwrap(), 0);
        let again = s.claim_due(at, 10, Duration::from_secs(1)).unwrap();
        assert_eq!(ids_attempts(&again), vec![(ids[0], 2), (ids[1], 2)]);
    }

    #[test]
    fn schedule_and_complete_is_one_change() {
        let Some((_db, s)) = open("sched_and_complete") else {
            return;
        };
        let now = now_whole_micros();
        let first = s
            .schedule(&WorkItem::new("retry", json!({"n": 1})), now)
            .unwrap();
        assert_eq!(
            s.claim_due(now, 1, Duration::from_secs(60)).unwrap().len(),
            1
        );
        let next_at = now + Duration::from_secs(5);
        let second = s
            .schedule_and_complete(&WorkItem::new("retry", json!({"n": 2})), next_at, first)
            .unwrap();
        assert!(second > first);
        assert!(s.get(first).unwrap().is_none());
        let g = s.get(second).unwrap().unwrap();
        assert_eq!(
            (g.item, g.attempts, g.run_at, g.leased),
            (WorkItem::new("retry", json!({"n": 2})), 0, next_at, false)
        );
        assert_eq!(s.len().unwrap(), 1);
        // Completing what is not there still schedules.
        let third = s
            .schedule_and_complete(&WorkItem::new("retry", json!(3)), now, u64::MAX)
            .unwrap();
        assert_eq!(s.len().unwrap(), 2);
        // A failed statement changes nothing: a payload PostgreSQL refuses
        // (a NUL in jsonb text) neither schedules nor completes.
        let refused =
            s.schedule_and_complete(&WorkItem::new("retry", json!("a\u{0}b")), now, third);
        assert!(refused.is_err(), "{refused:?}");
        assert!(s.get(third).unwrap().is_some());
        assert_eq!(s.len().unwrap(), 2);
    }

    #[test]
    fn kinds_claim_and_count_apart() {
        let Some((_db, s)) = open("sched_kinds") else {
            return;
        };
        let now = now_whole_micros();
        let soon = now + Duration::from_secs(1);
        let items = [
            ("event", now),
            ("automate_retry", now),
            ("event", soon),
            ("automate_retry", now - Duration::from_secs(1)),
            ("event", now),
        ];
        let ids = s
            .schedule_many(
                &items
                    .iter()
                    .map(|(k, t)| (WorkItem::new(*k, json!(null)), *t))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        // (kind, at): count, count due.
        for (kind, at, total, due) in [
            ("event", now, 3, 2),
            ("event", soon, 3, 3),
            ("automate_retry", now, 2, 2),
            ("nothing", soon, 0, 0),
        ] {
            assert_eq!(s.count_kind(kind).unwrap(), total, "{kind}");
            assert_eq!(s.count_kind_due(kind, at).unwrap(), due, "{kind} {at:?}");
        }
        let retries = s
            .claim_due_kind(now, 10, Duration::from_secs(60), "automate_retry")
            .unwrap();
        assert_eq!(ids_attempts(&retries), vec![(ids[3], 1), (ids[1], 1)]);
        // Claimed ones still count as scheduled, not as due.
        assert_eq!(s.count_kind("automate_retry").unwrap(), 2);
        assert_eq!(s.count_kind_due("automate_retry", now).unwrap(), 0);
        let events = s
            .claim_due_kind(soon, 10, Duration::from_secs(60), "event")
            .unwrap();
        assert_eq!(
            ids_attempts(&events),
            vec![(ids[0], 1), (ids[4], 1), (ids[2], 1)]
        );
        assert!(s
            .claim_due(soon, 10, Duration::from_secs(1))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reschedule_moves_and_unleases() {
        let Some((_db, s)) = open("sched_reschedule") else {
            return;
        };
        let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let late = s
            .schedule(
                &WorkItem::new("b", json!(2)),
                base + Duration::from_millis(900),
            )
            .unwrap();
        let early = s
            .schedule(
                &WorkItem::new("a", json!(1)),
                base + Duration::from_millis(100),
            )
            .unwrap();
        let due = s.due(base + Duration::from_millis(500), 10).unwrap();
        assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), vec![early]);
        assert!(s.reschedule(late, base).unwrap());
        let ids: Vec<u64> = s
            .due(base + Duration::from_secs(1), 10)
            .unwrap()
            .into_iter()
            .map(|d| d.0)
            .collect();
        assert_eq!(ids, vec![late, early]);
        assert_eq!(s.next_due().unwrap(), Some(base));
        // A claimed item given back keeps its attempts and is no longer leased.
        let c = s.claim_due(base, 1, Duration::from_secs(3600)).unwrap();
        assert_eq!(ids_attempts(&c), vec![(late, 1)]);
        assert!(s.reschedule(late, base + Duration::from_secs(2)).unwrap());
        let g = s.get(late).unwrap().unwrap();
        assert_eq!(
            (g.attempts, g.leased, g.run_at),
            (1, false, base + Duration::from_secs(2))
        );
        for missing in [999_999, u64::MAX] {
            assert!(!s.reschedule(missing, base).unwrap());
            assert!(!s.complete(missing).unwrap());
            assert!(s.get(missing).unwrap().is_none());
        }
    }

    /// Two nodes, four threads each, claiming from 400 due items at once
    /// under a long lease: every item is claimed exactly once (node a's
    /// claims relaxed, node b's not: the two kinds of claim mix).
    #[test]
    fn two_nodes_claim_disjoint_sets_concurrently() {
        let Some((db, a)) = open("sched_concurrent") else {
            return;
        };
        let a = a.with_relaxed_claims(true);
        let b = other_node(&db, "b");
        let now = now_whole_micros();
        const N: usize = 400;
        let items: Vec<(WorkItem, SystemTime)> = (0..N)
            .map(|n| (WorkItem::new("job", json!(n)), now))
            .collect();
        let ids = a.schedule_many(&items).unwrap();
        let seen = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..8 {
                let s = if t % 2 == 0 { a.clone() } else { b.clone() };
                let seen = &seen;
                scope.spawn(move || loop {
                    let got = s.claim_due(now, 7, Duration::from_secs(3600)).unwrap();
                    if got.is_empty() {
                        break;
                    }
                    seen.lock().unwrap().extend(
                        got.into_iter()
                            .map(|c| (c.id, c.attempts, s.node().to_string())),
                    );
                });
            }
        });
        let seen = seen.into_inner().unwrap();
        let unique: HashSet<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(seen.len(), N, "claimed once each");
        assert_eq!(unique, ids.iter().copied().collect::<HashSet<_>>());
        assert!(seen.iter().all(|s| s.1 == 1));
        let by_a = seen.iter().filter(|s| s.2 == "a").count();
        eprintln!("node a claimed {by_a}, node b {}", N - by_a);
        // Each node's release gives back exactly its own claims.
        assert_eq!(a.release_leases(now).unwrap(), by_a);
        assert_eq!(b.release_leases(now).unwrap(), N - by_a);
    }

    /// Both nodes complete every item from several threads: each item is
    /// reported completed exactly once.
    #[test]
    fn complete_is_exactly_once_across_nodes() {
        let Some((db, a)) = open("sched_complete_once") else {
            return;
        };
        let b = other_node(&db, "b");
        let now = now_whole_micros();
        const N: usize = 200;
        let items: Vec<(WorkItem, SystemTime)> = (0..N)
            .map(|n| (WorkItem::new("job", json!(n)), now))
            .collect();
        let ids = a.schedule_many(&items).unwrap();
        let done = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..6 {
                let s = if t % 2 == 0 { a.clone() } else { b.clone() };
                let (ids, done) = (&ids, &done);
                scope.spawn(move || {
                    // Half the threads one at a time, half in batches of 10.
                    if t < 3 {
                        for id in ids {
                            if s.complete(*id).unwrap() {
                                done.lock().unwrap().push(*id);
                            }
                        }
                    } else {
                        for chunk in ids.chunks(10) {
                            let n = s.complete_many(chunk).unwrap();
                            done.lock().unwrap().extend(std::iter::repeat_n(0, n));
                        }
                    }
                });
            }
        });
        assert_eq!(done.into_inner().unwrap().len(), N);
        assert!(a.is_empty().unwrap());
    }

    /// The cost of claim and complete, one item at a time and as one
    /// batch, for 1,000 items (printed; nothing is asserted of the times).
    #[test]
    fn cost_of_claim_and_complete_for_1000_items() {
        let Some((_db, s)) = open("sched_cost") else {
            return;
        };
        const N: usize = 1000;
        let now = now_whole_micros();
        let lease = Duration::from_secs(3600);
        let items: Vec<(WorkItem, SystemTime)> = (0..N)
            .map(|n| (WorkItem::new("job", json!({"n": n})), now))
            .collect();
        let per = |t: Instant, n: usize| t.elapsed().as_micros() / n as u128;

        let t = Instant::now();
        let ids = s.schedule_many(&items).unwrap();
        let schedule_many = t.elapsed().as_micros();
        let t = Instant::now();
        let mut claimed = 0;
        for _ in 0..N {
            claimed += s.claim_due(now, 1, lease).unwrap().len();
        }
        let claim_one = per(t, N);
        assert_eq!(claimed, N);
        let t = Instant::now();
        for id in &ids {
            assert!(s.complete(*id).unwrap());
        }
        let complete_one = per(t, N);

        let ids = s.schedule_many(&items).unwrap();
        let t = Instant::now();
        assert_eq!(s.claim_due(now, N, lease).unwrap().len(), N);
        let claim_batch = t.elapsed().as_micros();
        let t = Instant::now();
        assert_eq!(s.complete_many(&ids).unwrap(), N);
        let complete_batch = t.elapsed().as_micros();
        let t = Instant::now();
        for _ in 0..N {
            assert!(s.claim_due(now, 1, lease).unwrap().is_empty());
        }
        let idle_poll = per(t, N);

        let relaxed = s.clone().with_relaxed_claims(true);
        let ids = s.schedule_many(&items).unwrap();
        let t = Instant::now();
        let mut claimed = 0;
        for _ in 0..N {
            claimed += relaxed.claim_due(now, 1, lease).unwrap().len();
        }
        let relaxed_one = per(t, N);
        assert_eq!(claimed, N);
        assert_eq!(s.complete_many(&ids).unwrap(), N);
        eprintln!(
            "PgSchedule, {N} items: schedule_many {schedule_many} µs; claim_due(limit 1) {claim_one} µs/op, \
             complete {complete_one} µs/op; claim_due(limit {N}) {claim_batch} µs, complete_many {complete_batch} µs; \
             idle claim poll {idle_poll} µs/op; relaxed claim_due(limit 1) {relaxed_one} µs/op"
        );
    }
}
