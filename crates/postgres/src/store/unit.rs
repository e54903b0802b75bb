//! Units of work on PostgreSQL: a [`UnitView`] buffers a unit's creates and
//! updates in memory (its reads see them first, then what it handed over
//! and has not landed, then what it read of the table in this batch, then
//! the table), with savepoints as the redb `UnitStore`'s; [`commit`] writes
//! a unit's batch in one transaction (a multi-row `INSERT ... unnest` for
//! the objects created, the changed ones locked, merged and rewritten in
//! two statements, the scheduled work), whatever its size.
//!
//! [`PgUnits`] is the pipeline's [`UnitOfWork`]: each unit's hand-overs are
//! committed in order by a task of its own on the driver's runtime; after
//! a commit succeeded (only then) the queue's acks are sent
//! ([`EventQueue::ack`]: JetStream acks after commit), then the
//! [`Committing`] is answered. [`PgServedUnit`] is the API's
//! [`ServedUnit`].

use super::{
    codec, has_ref, index_keys, key_columns, lowercase_keys, sql_error, Key, Obj, PgStore, Reader,
    INDEXED,
};
use crate::Pg;
use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::event_queue::EventQueue;
use automate_vmdb::health::StoreHealth;
use automate_vmdb::served::ServedUnit;
use automate_vmdb::{
    base_class, AttrChange, CommitAnswer, Committing, HandOver, ObjectStore, PipelineUnit,
    Savepoint, StoreError, StoredObject, UnitOfWork, VmdbRef, WorkItem,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio_postgres::types::ToSql;

mod ahead;

/// An object's modifications ([`ObjectStore::modify`]), in order: the
/// attribute and its change.
pub(crate) type Mods = Vec<(String, AttrChange)>;

/// A unit's writes, to commit in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// Objects created, written whole, in the order they were created.
    pub(crate) created: Vec<(&'static str, i64, Obj)>,
    /// Objects of the table changed: the attributes set, applied to the
    /// object as committed then (another writer's change of other
    /// attributes is kept).
    pub(crate) changed: Vec<(&'static str, i64, Attributes)>,
    /// Of the objects in `changed`: the modifications ([`ObjectStore::modify`])
    /// to apply, in order, after the attributes set, to the object as
    /// committed (locked `FOR UPDATE`: atomic across nodes).
    pub(crate) modified: Vec<(&'static str, i64, Mods)>,
    /// Objects deleted (a missing one is no error: `destroy` of a record
    /// already gone).
    pub(crate) deleted: Vec<Key>,
}

/// What a commit did.
#[derive(Debug)]
pub(crate) struct Committed {
    /// Changed objects found (and rewritten).
    pub(crate) changed: usize,
    /// The ids of the scheduled work written.
    pub(crate) scheduled: Vec<u64>,
}

/// The multi-row insert: base, id, class, attrs text, then the key
/// columns, each an array.
fn insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(make_insert_sql)
}

fn make_insert_sql() -> String {
    let names: Vec<String> = (0..INDEXED.len()).map(|i| format!("k{i}")).collect();
    let arrays: Vec<String> = (0..INDEXED.len())
        .map(|i| format!("${}::text[]", i + 5))
        .collect();
    format!(
        "INSERT INTO objects (base, id, class, attrs, {})
         SELECT b, i, c, a::json, {}
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], {}) AS u(b, i, c, a, {})",
        key_columns(),
        names.join(", "),
        arrays.join(", "),
        names.join(", ")
    )
}

/// [`insert_sql`] with the unit's row of `unit_commits` written by the same
/// statement (its id the last parameter).
fn insert_unit_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH unit AS (INSERT INTO unit_commits (id) VALUES (${})) {}",
            INDEXED.len() + 5,
            make_insert_sql()
        )
    })
}

/// The multi-row update: base, id, attrs text, then the key columns.
fn update_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(make_update_sql)
}

fn make_update_sql() -> String {
    let names: Vec<String> = (0..INDEXED.len()).map(|i| format!("k{i}")).collect();
    let arrays: Vec<String> = (0..INDEXED.len())
        .map(|i| format!("${}::text[]", i + 4))
        .collect();
    let sets: Vec<String> = INDEXED
        .iter()
        .zip(&names)
        .map(|(a, n)| format!("k_{a} = u.{n}"))
        .collect();
    format!(
        "UPDATE objects o SET attrs = u.a::json, {}
         FROM unnest($1::text[], $2::bigint[], $3::text[], {}) AS u(b, i, a, {})
         WHERE o.base = u.b AND o.id = u.i",
        sets.join(", "),
        arrays.join(", "),
        names.join(", ")
    )
}

/// The order a unit's new rows are inserted in: by base class, then by the
/// keys of the unique indexes (`dedup_key`; a provider's name; a VM's or
/// host's provider reference), then by id. Two nodes inserting the same
/// events (a redelivery) or the same new VMs in one batch each then take
/// the unique indexes' entries in one order: the second waits for the
/// first and fails on the duplicate, never a deadlock (each holding one
/// entry the other wants). The row order is no part of what is stored.
fn insert_order<'a>(
    base: &'static str,
    id: i64,
    keys: &'a [Option<String>],
) -> (&'static str, [Option<&'a str>; 4], i64) {
    let key = |attr: &str| {
        INDEXED
            .iter()
            .position(|a| *a == attr)
            .and_then(|i| keys.get(i))
            .and_then(|k| k.as_deref())
    };
    (
        base,
        [key("dedup_key"), key("name"), key("ems_id"), key("ems_ref")],
        id,
    )
}

/// Inserts the objects `created` in one statement (arrays, one per
/// column).
async fn insert_created<C: deadpool_postgres::GenericClient>(
    c: &C,
    created: &[(&'static str, i64, Obj)],
    unit: Option<&String>,
) -> Result<(), StoreError> {
    if created.is_empty() {
        return Ok(());
    }
    let n = created.len();
    let mut bases = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut classes = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    let mut keys: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(n); INDEXED.len()];
    let mut rows: Vec<(&'static str, i64, &Obj, Vec<Option<String>>)> = created
        .iter()
        .map(|(base, id, obj)| (*base, *id, obj, index_keys(&obj.attrs)))
        .collect();
    rows.sort_by(|a, b| insert_order(a.0, a.1, &a.3).cmp(&insert_order(b.0, b.1, &b.3)));
    for (base, id, obj, row_keys) in rows {
        bases.push(base);
        ids.push(id);
        classes.push(obj.class.as_str());
        texts.push(codec::encode_attrs(&obj.attrs));
        for (column, k) in keys.iter_mut().zip(row_keys) {
            column.push(k);
        }
    }
    let sql = if unit.is_some() {
        insert_unit_sql()
    } else {
        insert_sql()
    };
    let st = c.prepare_cached(sql).await.map_err(sql_error)?;
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&bases, &ids, &classes, &texts];
    for k in &keys {
        args.push(k);
    }
    if let Some(unit) = &unit {
        args.push(unit);
    }
    c.execute(&st, &args).await.map_err(sql_error)?;
    Ok(())
}

/// A new unit id: 128 random bits (the std hasher's random keys, a
/// counter and the clock), in hex.
fn unit_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u64(n);
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

/// Commits between two prunings of `unit_commits`.
const PRUNE_EVERY: u64 = 4096;

/// Writes `p` and `schedule` in one transaction on a connection of `pg`,
/// within [`Pg::call_timeout`], with a row of `unit_commits` naming the
/// unit. When the commit fails in a way that leaves its fate unknown (the
/// connection lost after `COMMIT` was sent, no answer in time), or fails
/// at all, [`verify`] settles it: a unit found committed is answered `Ok`
/// (with what it wrote), so its caller never writes it twice; a unit not
/// committed is fenced out (it can no longer commit later) and its error
/// answered. Each commit is thus applied once or not at all, as its answer
/// says, as long as PostgreSQL answers the check.
pub(crate) async fn commit(
    pg: &Pg,
    p: &Prepared,
    schedule: &[(WorkItem, SystemTime)],
) -> Result<Committed, StoreError> {
    static COMMITS: AtomicU64 = AtomicU64::new(0);
    if COMMITS.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
        prune(pg).await;
    }
    let unit = unit_id();
    let error = match tokio::time::timeout(pg.call_timeout(), write(pg, p, schedule, &unit)).await {
        Ok(Ok(c)) => return Ok(c),
        Ok(Err(e)) => e,
        Err(_) => {
            // The connection it held is dropped by now: it may be the
            // silent one.
            pg.drop_idle_connections();
            StoreError::from(crate::PgError::Timeout(pg.call_timeout()))
        }
    };
    verify(pg, &unit, error).await
}

/// Deletes the `unit_commits` rows older than an hour (a unit in doubt is
/// settled within minutes).
async fn prune(pg: &Pg) {
    let done = async {
        let c = pg.client().await?;
        c.execute(
            "DELETE FROM unit_commits WHERE at < now() - interval '1 hour'",
            &[],
        )
        .await
        .map_err(sql_error)
    };
    match tokio::time::timeout(pg.call_timeout(), done).await {
        Ok(Ok(n)) if n > 0 => {
            tracing::debug!(target: "evm", "MIQ(PgUnits) {n} unit_commits rows pruned")
        }
        Ok(Err(e)) => tracing::warn!(target: "evm", "MIQ(PgUnits) pruning unit_commits: {e}"),
        _ => {}
    }
}

/// Settles a unit whose commit answered `error`: inserts its id marked
/// failed on a connection of its own. That waits for the unit's
/// transaction while it is still open on the server (ended at the latest
/// by `idle_in_transaction_session_timeout`), then either conflicts (the
/// unit committed: its row says what it wrote, and that is the answer) or
/// lands (the unit did not commit and now never will: `error` is the
/// answer). When the check itself fails the unit is in doubt: `error` is
/// answered and the doubt logged.
async fn verify(pg: &Pg, unit: &String, error: StoreError) -> Result<Committed, StoreError> {
    // The check may wait out the unit's open transaction: twice the
    // statement bound (the server ends that transaction within one).
    let wait = pg.config().timeouts.statement * 2;
    let check = async {
        let mut c = pg.client().await?;
        let tx = c.transaction().await.map_err(sql_error)?;
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            wait.as_millis().max(1)
        ))
        .await
        .map_err(sql_error)?;
        let fenced = tx
            .execute(
                "INSERT INTO unit_commits (id, failed) VALUES ($1, true) ON CONFLICT (id) DO NOTHING",
                &[unit],
            )
            .await
            .map_err(sql_error)?;
        let row = tx
            .query_one(
                "SELECT failed, changed, scheduled FROM unit_commits WHERE id = $1",
                &[unit],
            )
            .await
            .map_err(sql_error)?;
        tx.commit().await.map_err(sql_error)?;
        let failed: bool = row.try_get(0).map_err(sql_error)?;
        if fenced == 1 || failed {
            return Ok(None);
        }
        let changed: i32 = row.try_get(1).map_err(sql_error)?;
        let scheduled: Vec<i64> = row.try_get(2).map_err(sql_error)?;
        Ok::<_, StoreError>(Some(Committed {
            changed: usize::try_from(changed).unwrap_or(0),
            scheduled: scheduled
                .into_iter()
                .filter_map(|i| u64::try_from(i).ok())
                .collect(),
        }))
    };
    match tokio::time::timeout(wait + pg.config().timeouts.connect, check).await {
        Ok(Ok(Some(committed))) => {
            tracing::info!(target: "evm", "MIQ(PgUnits) unit {unit}: its commit answered \"{error}\" but it was committed: answered as committed (not written twice)");
            Ok(committed)
        }
        Ok(Ok(None)) => Err(error),
        Ok(Err(e)) => {
            tracing::warn!(target: "evm", "MIQ(PgUnits) unit {unit}: its commit answered \"{error}\" and checking whether it was committed failed ({e}): in doubt, answered as failed");
            Err(error)
        }
        Err(_) => {
            tracing::warn!(target: "evm", "MIQ(PgUnits) unit {unit}: its commit answered \"{error}\" and checking whether it was committed had no answer: in doubt, answered as failed");
            Err(error)
        }
    }
}

/// The writes of [`commit`], with the unit's row.
async fn write(
    pg: &Pg,
    p: &Prepared,
    schedule: &[(WorkItem, SystemTime)],
    unit: &String,
) -> Result<Committed, StoreError> {
    let mut client = pg.client().await?;
    if p.changed.is_empty() && p.deleted.is_empty() && schedule.is_empty() {
        // One statement: atomic on its own, no transaction block (two
        // round trips fewer: a `create_now`, an object the API creates).
        insert_created(&client, &p.created, Some(unit)).await?;
        return Ok(Committed {
            changed: 0,
            scheduled: Vec::new(),
        });
    }
    let tx = client.transaction().await.map_err(sql_error)?;
    let n_keys = INDEXED.len();
    insert_created(&tx, &p.created, None).await?;
    let mut changed = 0;
    if !p.changed.is_empty() || !p.deleted.is_empty() {
        // Locked in one order (base, id) whoever commits, the rows to
        // delete with the rows to change: no deadlock between nodes
        // changing the same objects.
        let mut wanted: HashMap<Key, &Attributes> = HashMap::new();
        for (base, id, changes) in &p.changed {
            wanted.insert((*base, *id), changes);
        }
        let mods: HashMap<Key, &Mods> = p
            .modified
            .iter()
            .map(|(base, id, m)| ((*base, *id), m))
            .collect();
        let gone: HashSet<Key> = p.deleted.iter().copied().collect();
        let bases: Vec<&str> = p
            .changed
            .iter()
            .map(|c| c.0)
            .chain(p.deleted.iter().map(|k| k.0))
            .collect();
        let ids: Vec<i64> = p
            .changed
            .iter()
            .map(|c| c.1)
            .chain(p.deleted.iter().map(|k| k.1))
            .collect();
        let st = tx
            .prepare_cached(
                "SELECT base, id, attrs::text FROM objects
                 WHERE (base, id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
                 ORDER BY base, id FOR UPDATE",
            )
            .await
            .map_err(sql_error)?;
        let rows = tx.query(&st, &[&bases, &ids]).await.map_err(sql_error)?;
        let (mut ub, mut ui, mut ua) = (Vec::new(), Vec::new(), Vec::new());
        let mut keys: Vec<Vec<Option<String>>> = vec![Vec::new(); n_keys];
        for row in &rows {
            let base: String = row.try_get(0).map_err(sql_error)?;
            let id: i64 = row.try_get(1).map_err(sql_error)?;
            let text: String = row.try_get(2).map_err(sql_error)?;
            let Some(base) = base_class(&base) else {
                continue;
            };
            if gone.contains(&(base, id)) {
                continue;
            }
            let Some(changes) = wanted.get(&(base, id)) else {
                continue;
            };
            let mut attrs = codec::decode_attrs(&text)?;
            for (k, v) in changes.iter() {
                attrs.insert(k.clone(), v.clone());
            }
            for (k, change) in mods.get(&(base, id)).into_iter().flat_map(|m| m.iter()) {
                let value = change.apply(attrs.get(k));
                attrs.insert(k.clone(), value);
            }
            ub.push(base);
            ui.push(id);
            ua.push(codec::encode_attrs(&attrs));
            for (column, k) in keys.iter_mut().zip(index_keys(&attrs)) {
                column.push(k);
            }
        }
        changed = ub.len();
        if changed > 0 {
            let st = tx.prepare_cached(update_sql()).await.map_err(sql_error)?;
            let mut args: Vec<&(dyn ToSql + Sync)> = vec![&ub, &ui, &ua];
            for k in &keys {
                args.push(k);
            }
            tx.execute(&st, &args).await.map_err(sql_error)?;
        }
        if !p.deleted.is_empty() {
            let bases: Vec<&str> = p.deleted.iter().map(|k| k.0).collect();
            let ids: Vec<i64> = p.deleted.iter().map(|k| k.1).collect();
            let st = tx
                .prepare_cached(
                    "DELETE FROM objects
                     WHERE (base, id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))",
                )
                .await
                .map_err(sql_error)?;
            tx.execute(&st, &[&bases, &ids]).await.map_err(sql_error)?;
        }
    }
    let scheduled = crate::schedule::insert_many(&tx, schedule).await?;
    let ids: Vec<i64> = scheduled
        .iter()
        .filter_map(|i| i64::try_from(*i).ok())
        .collect();
    let n = i32::try_from(changed).unwrap_or(i32::MAX);
    let st = tx
        .prepare_cached("INSERT INTO unit_commits (id, changed, scheduled) VALUES ($1, $2, $3)")
        .await
        .map_err(sql_error)?;
    tx.execute(&st, &[unit, &n, &ids])
        .await
        .map_err(sql_error)?;
    tx.commit().await.map_err(sql_error)?;
    Ok(Committed { changed, scheduled })
}

/// One object a unit wrote.
#[derive(Clone)]
struct Pending {
    /// The object as the unit sees it.
    obj: Obj,
    /// Created in this unit (not in the table yet).
    created: bool,
    /// For an object of the table: the attributes this unit set.
    changes: Attributes,
    /// For an object of the table: the modifications this unit made, in
    /// order, applied after `changes` at commit (an attribute set after a
    /// modification drops the modification).
    mods: Mods,
    /// Deleted by this unit: `obj` is how it was.
    deleted: bool,
}

/// One buffered write of a unit ([`UnitState::put`]).
enum Write {
    Set(String, AttrValue),
    Modify(String, AttrChange),
    Delete,
}

/// How to take back one write ([`ObjectStore::rollback_to`]).
struct Undo {
    key: Key,
    /// The pending object before (`None`: new to the unit).
    prior: Option<Pending>,
}

/// What a unit's reads still need of writes it handed over.
struct Handed {
    /// `None`: deleted.
    objects: HashMap<Key, Option<Obj>>,
    index: HashMap<(&'static str, &'static str, String), Vec<i64>>,
}

/// The buffered writes and the batch's reads of one unit.
#[derive(Default)]
struct UnitState {
    pending: HashMap<Key, Pending>,
    /// The order objects were first written in (the commit's order).
    order: Vec<Key>,
    /// Candidate ids per indexed (base, attribute, key text) of the
    /// pending objects: re-checked against the object on every read.
    index: HashMap<(&'static str, &'static str, String), Vec<i64>>,
    in_flight: VecDeque<Handed>,
    /// Objects read from the table in this batch.
    cache: HashMap<Key, Option<Obj>>,
    /// Provider references found in the table in this batch.
    refs: HashMap<(&'static str, i64, String), i64>,
    /// `find_by` answers read ahead ([`ObjectStore::read_ahead`]): the ids
    /// of the table's objects of (base, indexed attribute, key text); each
    /// answers one lookup.
    ahead: HashMap<(&'static str, &'static str, String), Vec<i64>>,
    /// Provider references read ahead and not in the table; each answers
    /// one lookup.
    absent_refs: HashSet<(&'static str, i64, String)>,
    undo: Option<Vec<Undo>>,
    savepoints: usize,
}

impl UnitState {
    /// What the unit itself knows of (base, id): `None` when it must ask
    /// the table.
    fn local(&self, key: &Key) -> Option<Option<Obj>> {
        if let Some(p) = self.pending.get(key) {
            return Some((!p.deleted).then(|| p.obj.clone()));
        }
        for h in self.in_flight.iter().rev() {
            if let Some(o) = h.objects.get(key) {
                return Some(o.clone());
            }
        }
        self.cache.get(key).cloned()
    }

    fn put(&mut self, key: Key, obj: StoredObject, created: bool, change: Option<Write>) {
        // Index the key texts this write brings (the unchanged ones of an
        // object already pending are there); candidates may repeat, every
        // read sorts them out and re-checks the object.
        let before = self.pending.get(&key).map(|p| p.obj.clone());
        let deleting = matches!(change, Some(Write::Delete));
        for attr in INDEXED.iter().filter(|_| !deleting) {
            let value = obj.attrs.get(*attr);
            if before.as_ref().is_some_and(|b| b.attrs.get(*attr) == value) {
                continue;
            }
            if let Some(k) = value.and_then(codec::key_text) {
                if !k.is_empty() {
                    let ids = self.index.entry((key.0, attr, k)).or_default();
                    if ids.last() != Some(&key.1) {
                        ids.push(key.1);
                    }
                }
            }
        }
        let obj = Arc::new(obj);
        let prior = self.pending.get(&key).cloned();
        if let Some(undo) = self.undo.as_mut() {
            undo.push(Undo {
                key,
                prior: prior.clone(),
            });
        }
        let mut p = prior.unwrap_or_else(|| {
            self.order.push(key);
            Pending {
                obj: obj.clone(),
                created,
                changes: Attributes::default(),
                mods: Vec::new(),
                deleted: false,
            }
        });
        p.obj = obj;
        match change {
            Some(Write::Set(k, v)) => {
                p.mods.retain(|(m, _)| *m != k);
                p.changes.insert(k, v);
            }
            Some(Write::Modify(k, f)) => p.mods.push((k, f)),
            Some(Write::Delete) => p.deleted = true,
            None => {}
        }
        self.pending.insert(key, p);
    }

    fn rollback(&mut self, keep: usize) {
        let Some(mut undo) = self.undo.take() else {
            return;
        };
        while undo.len() > keep {
            let Some(u) = undo.pop() else { break };
            match u.prior {
                Some(p) => {
                    self.pending.insert(u.key, p);
                }
                None => {
                    self.pending.remove(&u.key);
                    if self.order.last() == Some(&u.key) {
                        self.order.pop();
                    } else {
                        self.order.retain(|k| *k != u.key);
                    }
                }
            }
        }
        self.undo = Some(undo);
    }

    fn release(&mut self) {
        self.savepoints = self.savepoints.saturating_sub(1);
        if self.savepoints == 0 {
            self.undo = None;
        }
    }

    /// Takes the writes for a commit; with `keep`, the unit's reads keep
    /// seeing them until [`UnitState::landed`]. The batch's reads of the
    /// table are forgotten (the next batch reads afresh).
    fn take(&mut self, keep: bool) -> Prepared {
        self.undo = None;
        self.savepoints = 0;
        self.cache.clear();
        self.refs.clear();
        self.ahead.clear();
        self.absent_refs.clear();
        let pending = std::mem::take(&mut self.pending);
        let order = std::mem::take(&mut self.order);
        let index = std::mem::take(&mut self.index);
        let mut prepared = Prepared::default();
        for key in &order {
            if let Some(p) = pending.get(key) {
                if p.deleted {
                    // Created and deleted in the unit: nothing to write.
                    if !p.created {
                        prepared.deleted.push(*key);
                    }
                } else if p.created {
                    prepared.created.push((key.0, key.1, p.obj.clone()));
                } else {
                    prepared.changed.push((key.0, key.1, p.changes.clone()));
                    if !p.mods.is_empty() {
                        prepared.modified.push((key.0, key.1, p.mods.clone()));
                    }
                }
            }
        }
        if keep {
            self.in_flight.push_back(Handed {
                objects: pending
                    .into_iter()
                    .map(|(k, p)| (k, (!p.deleted).then_some(p.obj)))
                    .collect(),
                index,
            });
        }
        prepared
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend(
        "the unit of work is unusable (a panic inside the store while it was in use)".into(),
    )
}

/// An open unit of work on a [`PgStore`]: an [`ObjectStore`] whose
/// [`ObjectStore::create`] and [`ObjectStore::update`] are buffered (ids
/// are allocated at once, unique across nodes) and whose reads see them
/// first. [`ObjectStore::create_now`] writes at once. One thread uses a
/// unit at a time.
pub(crate) struct UnitView {
    store: Arc<PgStore>,
    state: Mutex<UnitState>,
}

impl UnitView {
    pub(crate) fn new(store: Arc<PgStore>) -> UnitView {
        UnitView {
            store,
            state: Mutex::new(UnitState::default()),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, UnitState>, StoreError> {
        self.state.lock().map_err(|_| poisoned())
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            store: &self.store,
            unit: Some(self),
        }
    }

    /// The object (base, id) as the unit sees it, read from the table at
    /// most once a batch.
    pub(crate) fn load(&self, base: &'static str, id: i64) -> Result<Option<Obj>, StoreError> {
        if let Some(known) = self.lock()?.local(&(base, id)) {
            return Ok(known);
        }
        let obj = self.store.db_load(base, id)?;
        // Only what is there is kept: an object another node commits
        // meanwhile is found by the next read.
        if let Some(o) = &obj {
            self.lock()?.cache.insert((base, id), Some(o.clone()));
        }
        Ok(obj)
    }

    /// Keeps rows read from the table for the batch (a row already read
    /// stays as first read).
    pub(crate) fn remember(
        &self,
        base: &'static str,
        rows: Vec<(i64, Obj)>,
    ) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        for (id, o) in rows {
            s.cache.entry((base, id)).or_insert(Some(o));
        }
        Ok(())
    }

    pub(crate) fn remember_ref(
        &self,
        base: &'static str,
        ems_id: i64,
        r: &str,
        id: i64,
    ) -> Result<(), StoreError> {
        self.lock()?.refs.insert((base, ems_id, r.to_string()), id);
        Ok(())
    }

    /// Every object of `base` the unit wrote (handed over or not), newest
    /// last; `None` for one it deleted.
    pub(crate) fn each_local(
        &self,
        base: &'static str,
        f: &mut dyn FnMut(i64, Option<&Obj>),
    ) -> Result<(), StoreError> {
        let s = self.lock()?;
        for h in &s.in_flight {
            for ((b, id), o) in &h.objects {
                if *b == base {
                    f(*id, o.as_ref());
                }
            }
        }
        for ((b, id), p) in &s.pending {
            if *b == base {
                f(*id, (!p.deleted).then_some(&p.obj));
            }
        }
        Ok(())
    }

    /// Ids of the unit's own objects of `base` that may have `attr` =
    /// `value` (to re-check).
    pub(crate) fn candidates(
        &self,
        base: &'static str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<i64>, StoreError> {
        let indexed = INDEXED.iter().find(|a| **a == attr);
        match (indexed, codec::key_text(value)) {
            (Some(a), Some(k)) if !k.is_empty() => {
                let s = self.lock()?;
                let key = (base, *a, k);
                let mut out = Vec::new();
                for index in std::iter::once(&s.index).chain(s.in_flight.iter().map(|h| &h.index)) {
                    if let Some(ids) = index.get(&key) {
                        out.extend(ids.iter().copied());
                    }
                }
                Ok(out)
            }
            _ => {
                let mut out = Vec::new();
                self.each_local(base, &mut |id, o| {
                    if o.is_some_and(|o| o.attrs.get(attr) == Some(value)) {
                        out.push(id);
                    }
                })?;
                Ok(out)
            }
        }
    }

    /// The unit's own answer to a provider-reference lookup: an object it
    /// wrote, or one found in the table in this batch.
    pub(crate) fn find_ref(
        &self,
        base: &'static str,
        ems_id: i64,
        r: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        // The unit's own objects with that reference: through its index of
        // the key texts (no scan of what it wrote), newest first.
        let key = AttrValue::Str(r.to_string());
        let mut ids = self.candidates(base, "ems_ref", &key)?;
        ids.extend(self.candidates(base, "uid_ems", &key)?);
        ids.sort_unstable();
        ids.dedup();
        for id in ids.into_iter().rev() {
            let local = self.lock()?.local(&(base, id));
            if let Some(Some(o)) = local {
                if has_ref(&o.attrs, ems_id, r) {
                    return Ok(Some(VmdbRef {
                        class: Arc::from(o.class.as_str()),
                        id,
                    }));
                }
            }
        }
        let known = self
            .lock()?
            .refs
            .get(&(base, ems_id, r.to_string()))
            .copied();
        if let Some(id) = known {
            if let Some(o) = self.load(base, id)? {
                if has_ref(&o.attrs, ems_id, r) {
                    return Ok(Some(VmdbRef {
                        class: Arc::from(o.class.as_str()),
                        id,
                    }));
                }
            }
        }
        Ok(None)
    }

    fn take(&self, keep: bool) -> Result<Prepared, StoreError> {
        Ok(self.lock()?.take(keep))
    }

    fn landed(&self) {
        if let Ok(mut s) = self.lock() {
            s.in_flight.pop_front();
        }
    }
}

impl ObjectStore for UnitView {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        self.reader().find(class, id)
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        self.reader().attribute(obj, name)
    }

    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        self.reader().load(class, id)
    }

    fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        self.reader().list(class)
    }

    /// Buffered in the unit.
    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let base = base_class(class).ok_or_else(|| StoreError::UnknownClass(class.to_string()))?;
        let id = self.store.alloc_id(base)?;
        let obj = StoredObject {
            class: class.to_string(),
            attrs: lowercase_keys(attrs),
        };
        self.lock()?.put((base, id), obj, true, None);
        Ok(VmdbRef {
            class: Arc::from(class),
            id,
        })
    }

    /// Not buffered: committed now, seen by every node.
    fn create_now(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let attrs = lowercase_keys(attrs);
        let r = self.store.create(class, attrs.clone())?;
        if let Some(base) = base_class(class) {
            let obj = Arc::new(StoredObject {
                class: class.to_string(),
                attrs,
            });
            let mut s = self.lock()?;
            ahead::created_now(&mut s, base, r.id, &obj);
            s.cache.insert((base, r.id), Some(obj));
        }
        Ok(r)
    }

    /// Buffered in the unit.
    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        let base = base_class(&obj.class)
            .ok_or_else(|| StoreError::UnknownClass(obj.class.to_string()))?;
        let current = self
            .load(base, obj.id)?
            .ok_or_else(|| StoreError::NotFound(obj.class.to_string(), obj.id))?;
        let name = name.to_ascii_lowercase();
        let mut new = StoredObject::clone(&current);
        new.attrs.insert(name.clone(), value.clone());
        // `created` stays as first recorded.
        self.lock()?
            .put((base, obj.id), new, false, Some(Write::Set(name, value)));
        Ok(())
    }

    /// Buffered in the unit (its reads see the change now) and applied
    /// again at commit to the row as committed, locked `FOR UPDATE`.
    fn modify(&self, obj: &VmdbRef, name: &str, change: &AttrChange) -> Result<(), StoreError> {
        let base = base_class(&obj.class)
            .ok_or_else(|| StoreError::UnknownClass(obj.class.to_string()))?;
        let current = self
            .load(base, obj.id)?
            .ok_or_else(|| StoreError::NotFound(obj.class.to_string(), obj.id))?;
        let name = name.to_ascii_lowercase();
        let mut new = StoredObject::clone(&current);
        let value = change.apply(new.attrs.get(&name));
        new.attrs.insert(name.clone(), value);
        self.lock()?.put(
            (base, obj.id),
            new,
            false,
            Some(Write::Modify(name, change.clone())),
        );
        Ok(())
    }

    /// Buffered in the unit: its reads no longer find the object; the row
    /// goes when the unit commits.
    fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        let base = base_class(&obj.class)
            .ok_or_else(|| StoreError::UnknownClass(obj.class.to_string()))?;
        let Some(current) = self.load(base, obj.id)? else {
            return Ok(false);
        };
        self.lock()?.put(
            (base, obj.id),
            StoredObject::clone(&current),
            false,
            Some(Write::Delete),
        );
        Ok(true)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        self.reader().find_by(class, attr, value)
    }

    fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.reader().find_by_ems_ref(class, ems_id, ems_ref)
    }

    /// The batch's lookups in one round trip: see [`ahead`].
    fn read_ahead(&self, wants: &automate_vmdb::ReadAhead) -> Result<(), StoreError> {
        self.read_ahead_batch(wants)
    }

    /// A point in the unit to come back to (savepoints nest); `None` only
    /// for a unit made unusable by a panic.
    fn savepoint(&self) -> Option<Savepoint> {
        let mut s = self.lock().ok()?;
        s.savepoints += 1;
        Some(Savepoint::new(s.undo.get_or_insert_with(Vec::new).len()))
    }

    /// Discards the writes made since `sp` and ends it.
    fn rollback_to(&self, sp: Savepoint) {
        if let Ok(mut s) = self.lock() {
            s.rollback(sp.mark());
            s.release();
        }
    }

    /// Ends `sp`, keeping the writes made since.
    fn release_savepoint(&self, _sp: Savepoint) {
        if let Ok(mut s) = self.lock() {
            s.release();
        }
    }
}

/// A server's unit of work on the store: committed in one transaction
/// by [`ServedUnit::commit`].
pub(crate) struct PgServedUnit(Arc<UnitView>);

impl PgServedUnit {
    pub(crate) fn new(store: Arc<PgStore>) -> PgServedUnit {
        PgServedUnit(Arc::new(UnitView::new(store)))
    }
}

impl ServedUnit for PgServedUnit {
    fn objects(&self) -> Arc<dyn ObjectStore> {
        self.0.clone()
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let prepared = self.0.take(false)?;
        self.0
            .store
            .run_commit(move |pg| async move { commit(&pg, &prepared, &[]).await.map(|_| ()) })
    }
}

/// Hand-overs under way, for [`UnitOfWork::close`] to wait for.
#[derive(Debug, Default)]
struct Outstanding {
    n: Mutex<usize>,
    done: Condvar,
}

impl Outstanding {
    fn add(&self) {
        if let Ok(mut n) = self.n.lock() {
            *n += 1;
        }
    }

    fn sub(&self) {
        if let Ok(mut n) = self.n.lock() {
            *n = n.saturating_sub(1);
        }
        self.done.notify_all();
    }

    fn wait_idle(&self, limit: Duration) {
        if let Ok(n) = self.n.lock() {
            let _ = self.done.wait_timeout_while(n, limit, |n| *n > 0);
        }
    }
}

/// The units of work of the event pipeline's workers on a [`PgStore`]
/// ([`PgStore::units`]): see the module docs.
pub struct PgUnits {
    store: Arc<PgStore>,
    acker: Option<Arc<dyn EventQueue>>,
    closed: Arc<AtomicBool>,
    outstanding: Arc<Outstanding>,
}

impl std::fmt::Debug for PgUnits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUnits")
            .field("store", &self.store)
            .field("acker", &self.acker.is_some())
            .finish()
    }
}

impl PgStore {
    /// The pipeline's units of work on this store; the acks a hand-over
    /// carries go to `acker` once its commit succeeded (none without).
    pub fn units(self: &Arc<Self>, acker: Option<Arc<dyn EventQueue>>) -> Arc<PgUnits> {
        Arc::new(PgUnits {
            store: self.clone(),
            acker,
            closed: Arc::new(AtomicBool::new(false)),
            outstanding: Arc::new(Outstanding::default()),
        })
    }
}

/// One hand-over to commit.
struct Job {
    prepared: Prepared,
    with: HandOver,
    answer: std::sync::mpsc::Sender<CommitAnswer>,
}

/// One open unit of [`PgUnits`]: its view, and the task committing its
/// hand-overs in order.
pub struct PgPipelineUnit {
    view: Arc<UnitView>,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    closed: Arc<AtomicBool>,
    outstanding: Arc<Outstanding>,
}

impl std::fmt::Debug for PgPipelineUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPipelineUnit").finish_non_exhaustive()
    }
}

/// Commits a unit's hand-overs one after the other; acks each batch
/// after its commit succeeded.
async fn run_jobs(
    pg: Arc<Pg>,
    acker: Option<Arc<dyn EventQueue>>,
    outstanding: Arc<Outstanding>,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<Job>,
) {
    while let Some(job) = jobs.recv().await {
        let Job {
            prepared,
            with: HandOver { schedule, acks },
            answer,
        } = job;
        let result = commit(&pg, &prepared, &schedule).await;
        let result = match result {
            Ok(c) => {
                if let (Some(acker), false) = (&acker, acks.is_empty()) {
                    let acker = acker.clone();
                    let n = acks.len();
                    match tokio::task::spawn_blocking(move || acker.ack(&acks)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(
                            target: "evm",
                            "MIQ(PgUnits) {n} events stored, their acks failed (they will be redelivered and found stored): {e}"
                        ),
                        Err(e) => {
                            tracing::warn!(target: "evm", "MIQ(PgUnits) ack of {n} events: {e}")
                        }
                    }
                }
                Ok(c.scheduled)
            }
            Err(e) => {
                tracing::warn!(target: "evm", "MIQ(PgUnits) commit of a batch failed, nothing of it is stored: {e}");
                Err(e)
            }
        };
        let _ = answer.send((result, SystemTime::now()));
        outstanding.sub();
    }
}

impl PipelineUnit for PgPipelineUnit {
    fn objects(&self) -> Arc<dyn ObjectStore> {
        self.view.clone()
    }

    fn hand_over(&self, with: HandOver) -> Committing {
        let (answer, committing) = Committing::pair();
        if self.closed.load(Ordering::Acquire) {
            let _ = answer.send((
                Err(StoreError::Backend("the store's writer has stopped".into())),
                SystemTime::now(),
            ));
            return committing;
        }
        let prepared = match self.view.take(true) {
            Ok(p) => p,
            Err(e) => {
                let _ = answer.send((Err(e), SystemTime::now()));
                return committing;
            }
        };
        self.outstanding.add();
        if let Err(e) = self.jobs.send(Job {
            prepared,
            with,
            answer,
        }) {
            self.outstanding.sub();
            let _ = e.0.answer.send((
                Err(StoreError::Backend("the store's writer has stopped".into())),
                SystemTime::now(),
            ));
        }
        committing
    }

    fn landed(&self) {
        self.view.landed();
    }
}

impl UnitOfWork for PgUnits {
    fn begin_unit(&self) -> Box<dyn PipelineUnit> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pg = self.store.pg().clone();
        pg.handle().spawn(run_jobs(
            pg.clone(),
            self.acker.clone(),
            self.outstanding.clone(),
            rx,
        ));
        Box::new(PgPipelineUnit {
            view: Arc::new(UnitView::new(self.store.clone())),
            jobs: tx,
            closed: self.closed.clone(),
            outstanding: self.outstanding.clone(),
        })
    }

    fn health(&self) -> Arc<StoreHealth> {
        automate_vmdb::served::ServedStore::health(&*self.store)
    }

    /// Later hand-overs fail; waits (a minute at most) for those under
    /// way.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.outstanding.wait_idle(Duration::from_secs(60));
    }
}
