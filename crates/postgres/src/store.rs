//! The object store on PostgreSQL: [`PgStore`] ([`ObjectStore`], [`Pages`],
//! [`ServedStore`]) and its units of work ([`PgUnits`], the pipeline's
//! [`automate_vmdb::UnitOfWork`]), with the behaviour of the redb store:
//! subclasses found under their base class (`EventStream` finds an
//! `EmsEvent`), associations answered by [`automate_vmdb::associations`],
//! ManageIQ ids (`region * 10^12 + seq`, the sequence of the base class,
//! taken in blocks), a unit's writes buffered and committed in one
//! transaction.
//!
//! One table, `objects (base, id, class, attrs json)` (migration V1): the
//! attributes are one JSON object in their order ([`codec`]), found through
//! expression indexes on `attrs->>'<attr>'` for the attributes the handler
//! and the engine look objects up by. The event stream's `dedup_key` is
//! unique: a second node storing the same event fails its commit.
//!
//! The store's own writes commit at once (one transaction each); its reads
//! are one round trip each. A unit of work ([`unit`]) reads each object
//! once per batch (then from its memory) and commits its batch with a few
//! statements whatever its size (multi-row `INSERT ... unnest`).

mod codec;
#[cfg(test)]
mod harden_tests;
#[cfg(test)]
mod tests;
mod unit;

pub use unit::{PgPipelineUnit, PgUnits};

use crate::{Pg, PgError};
use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::associations::{self, as_id, Lookup};
use automate_vmdb::health::StoreHealth;
use automate_vmdb::page::{Keep, Page, PageQuery, Pages};
use automate_vmdb::query::Query;
use automate_vmdb::served::{BackupReport, ServedStore, ServedUnit};
use automate_vmdb::{
    base_class, AttrChange, BackendError, ObjectStore, Schedule, StoreError, StoredObject, VmdbRef,
    REGION_BASE,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Ids taken from a base class's sequence at a time: its `INCREMENT BY`
/// (migration V1). A node allocates from its block without a round trip.
const ID_BLOCK: i64 = 50;

/// The attributes with an expression index (migration V1): found by an
/// index lookup, the others by a scan of the base class.
pub(crate) const INDEXED: &[&str] = &[
    "name",
    "ems_ref",
    "uid_ems",
    "userid",
    "guid",
    "chain_id",
    "event_type",
    "host_id",
    "ems_id",
    "vm_or_template_id",
    "miq_request_id",
    "dedup_key",
    "state",
];

/// The key columns of `attrs`, in the order of [`INDEXED`]: what
/// [`codec::key_text`] makes of each attribute, NULL when absent or blank.
pub(crate) fn index_keys(attrs: &Attributes) -> Vec<Option<String>> {
    INDEXED
        .iter()
        .map(|a| {
            attrs
                .get(*a)
                .and_then(codec::key_text)
                .filter(|k| !k.is_empty())
        })
        .collect()
}

/// The key columns' names, comma-separated (`k_name, k_ems_ref, ...`).
pub(crate) fn key_columns() -> String {
    INDEXED
        .iter()
        .map(|a| format!("k_{a}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// (base class, id).
pub(crate) type Key = (&'static str, i64);

/// An object read from the table, shared by the caches that keep it.
pub(crate) type Obj = Arc<StoredObject>;

/// The object store on PostgreSQL. See the module docs.
pub struct PgStore {
    pg: Arc<Pg>,
    /// `postgresql://host/db#schema`, for messages.
    path: PathBuf,
    health: Arc<StoreHealth>,
    /// Per base class: the next sequence number of this node's block and
    /// the end of the block (exclusive).
    ids: Mutex<HashMap<&'static str, (i64, i64)>>,
    schedule: OnceLock<Arc<dyn Schedule>>,
    /// Round trips made by [`PgStore::run`] (reads, the store's own
    /// writes, id blocks), for the figures.
    round_trips: AtomicU64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A statement's failure, with the server's own words (the driver's
/// error prints `db error` only).
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL: {text}")]
pub(crate) struct SqlError {
    text: String,
}

pub(crate) fn sql_error(e: tokio_postgres::Error) -> StoreError {
    let text = match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{db} ({detail})"),
            None => db.to_string(),
        },
        None => e.to_string(),
    };
    StoreError::Failed(BackendError::new(SqlError { text }))
}

fn base_of(class: &str) -> Result<&'static str, StoreError> {
    base_class(class).ok_or_else(|| StoreError::UnknownClass(class.to_string()))
}

/// The attributes with their names lower-cased (as every backend keeps
/// them).
pub(crate) fn lowercase_keys(attrs: Attributes) -> Attributes {
    if attrs
        .keys()
        .all(|k| !k.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return attrs;
    }
    attrs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// Whether `attrs` are on provider `ems_id` with `ems_ref` or `uid_ems`
/// `r` (the redb store's provider references).
pub(crate) fn has_ref(attrs: &Attributes, ems_id: i64, r: &str) -> bool {
    if attrs.get("ems_id").and_then(as_id) != Some(ems_id) {
        return false;
    }
    ["ems_ref", "uid_ems"].iter().any(|k| match attrs.get(*k) {
        Some(AttrValue::Str(s) | AttrValue::Symbol(s)) => !s.is_empty() && s == r,
        Some(AttrValue::Int(i)) => i.to_string() == r,
        _ => false,
    })
}

fn row_obj(row: &tokio_postgres::Row) -> Result<(i64, Obj), StoreError> {
    let id: i64 = row.try_get(0).map_err(sql_error)?;
    let class: String = row.try_get(1).map_err(sql_error)?;
    let text: String = row.try_get(2).map_err(sql_error)?;
    let attrs = codec::decode_attrs(&text)?;
    Ok((id, Arc::new(StoredObject { class, attrs })))
}

const SELECT: &str = "SELECT id, class, attrs::text FROM objects";

/// The lookup of `base` ($1) by the key column of `attr` ($2). No `ORDER
/// BY id` (the rows are sorted here): with it, a generic plan on a table
/// not analyzed yet prefers the primary key (base, id), already in id
/// order, and filters every row of the base class (an event's dedup
/// lookup grew with the event stream).
pub(crate) fn finder_sql(attr: &str) -> String {
    format!("{SELECT} WHERE base = $1 AND k_{attr} = $2")
}

/// The provider-reference lookup of `base` ($1): `ems_ref` or `uid_ems`
/// ($2), each through its index.
pub(crate) fn ref_sql() -> String {
    format!(
        "{SELECT} WHERE base = $1 AND k_ems_ref = $2
         UNION ALL {SELECT} WHERE base = $1 AND k_uid_ems = $2"
    )
}

/// The reads, one round trip each, on the driver's runtime.
impl PgStore {
    /// Runs `f` (given the pool) on the driver's runtime and waits for it.
    pub(crate) fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Pg>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let out = self
            .pg
            .block(f(self.pg.clone()))
            .map_err(StoreError::from)?;
        out.inspect_err(|e| tracing::warn!(target: "evm", "MIQ(PgStore) object store: {e}"))
    }

    /// [`PgStore::run`] for a unit's commit ([`unit::commit`] bounds its
    /// parts itself: [`Pg::commit_timeout`] in all).
    pub(crate) fn run_commit<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Pg>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let out = self
            .pg
            .block_within(self.pg.commit_timeout(), f(self.pg.clone()))
            .map_err(StoreError::from)?;
        out.inspect_err(|e| tracing::warn!(target: "evm", "MIQ(PgStore) object store: {e}"))
    }

    pub(crate) fn db_load(&self, base: &'static str, id: i64) -> Result<Option<Obj>, StoreError> {
        self.run(move |pg| async move {
            let c = pg.client().await?;
            let st = c
                .prepare_cached(&format!("{SELECT} WHERE base = $1 AND id = $2"))
                .await
                .map_err(sql_error)?;
            match c.query_opt(&st, &[&base, &id]).await.map_err(sql_error)? {
                Some(row) => Ok(Some(row_obj(&row)?.1)),
                None => Ok(None),
            }
        })
    }

    /// The rows of `base` whose attribute `attr` (lower-case) is `value`,
    /// by id.
    pub(crate) fn db_find_by(
        &self,
        base: &'static str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<(i64, Obj)>, StoreError> {
        let attr = attr.to_string();
        let value = value.clone();
        self.run(move |pg| async move {
            let c = pg.client().await?;
            let rows = match codec::key_text(&value) {
                Some(key) if !key.is_empty() && INDEXED.contains(&attr.as_str()) => {
                    // The attribute is one of the fixed list: its key
                    // column, no quoting needed.
                    let st = c
                        .prepare_cached(&finder_sql(&attr))
                        .await
                        .map_err(sql_error)?;
                    c.query(&st, &[&base, &key]).await
                }
                // Not a key column: every row of the base class, compared
                // here. Never `attrs->>...` on the server: PostgreSQL's json
                // extraction fails on a whole object holding a NUL
                // (`\u0000`) anywhere, which one event's `full_data` would
                // make of every lookup.
                _ => {
                    let st = c
                        .prepare_cached(&format!("{SELECT} WHERE base = $1"))
                        .await
                        .map_err(sql_error)?;
                    c.query(&st, &[&base]).await
                }
            }
            .map_err(sql_error)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let (id, obj) = row_obj(row)?;
                if obj.attrs.get(&attr) == Some(&value) {
                    out.push((id, obj));
                }
            }
            out.sort_unstable_by_key(|(id, _)| *id);
            Ok(out)
        })
    }

    /// The rows of `base` that `q` selects, unsorted: its conditions on
    /// the key columns ([`INDEXED`], no nil value) and on `id` are the
    /// statement's `WHERE` (`k_name = ANY($2)`, through their indexes),
    /// every condition is checked again here on the decoded attributes
    /// (exact values: a key column holds text).
    pub(crate) fn db_query(
        &self,
        base: &'static str,
        q: &Query,
    ) -> Result<Vec<(VmdbRef, Obj)>, StoreError> {
        let mut sql = format!("{SELECT} WHERE base = $1");
        let mut texts: Vec<Vec<String>> = Vec::new();
        let mut ids: Option<Vec<i64>> = None;
        for c in &q.conditions {
            if c.attr == "id" {
                let these: Vec<i64> = c
                    .values
                    .iter()
                    .filter_map(|v| match v {
                        AttrValue::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect();
                ids = Some(match ids {
                    Some(prev) => prev.into_iter().filter(|i| these.contains(i)).collect(),
                    None => these,
                });
                continue;
            }
            let Some(attr) = INDEXED.iter().find(|a| **a == c.attr) else {
                continue;
            };
            let keys: Option<Vec<String>> = c
                .values
                .iter()
                .map(|v| codec::key_text(v).filter(|k| !k.is_empty()))
                .collect();
            if let Some(keys) = keys {
                texts.push(keys);
                sql.push_str(&format!(" AND k_{attr} = ANY(${})", texts.len() + 1));
            }
        }
        if ids.is_some() {
            sql.push_str(&format!(" AND id = ANY(${})", texts.len() + 2));
        }
        let q = q.clone();
        self.run(move |pg| async move {
            let c = pg.client().await?;
            let st = c.prepare_cached(&sql).await.map_err(sql_error)?;
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&base];
            for t in &texts {
                params.push(t);
            }
            if let Some(ids) = &ids {
                params.push(ids);
            }
            let rows = c.query(&st, &params).await.map_err(sql_error)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let (id, obj) = row_obj(row)?;
                if q.matches(id, &obj.attrs) {
                    let r = VmdbRef {
                        class: Arc::from(obj.class.as_str()),
                        id,
                    };
                    out.push((r, obj));
                }
            }
            Ok(out)
        })
    }

    /// The rows of `base` on provider `ems_id` with `ems_ref` or
    /// `uid_ems` `r`, by id.
    pub(crate) fn db_find_by_ref(
        &self,
        base: &'static str,
        ems_id: i64,
        r: &str,
    ) -> Result<Vec<(i64, Obj)>, StoreError> {
        let r = r.to_string();
        self.run(move |pg| async move {
            let c = pg.client().await?;
            let st = c.prepare_cached(&ref_sql()).await.map_err(sql_error)?;
            let mut out = Vec::new();
            for row in &c.query(&st, &[&base, &r]).await.map_err(sql_error)? {
                let (id, obj) = row_obj(row)?;
                if has_ref(&obj.attrs, ems_id, &r) {
                    out.push((id, obj));
                }
            }
            out.sort_unstable_by_key(|(id, _)| *id);
            out.dedup_by_key(|(id, _)| *id);
            Ok(out)
        })
    }

    /// Every object of `base`: id and class, by id.
    pub(crate) fn db_list(&self, base: &'static str) -> Result<Vec<(i64, String)>, StoreError> {
        self.run(move |pg| async move {
            let c = pg.client().await?;
            let st = c
                .prepare_cached("SELECT id, class FROM objects WHERE base = $1 ORDER BY id")
                .await
                .map_err(sql_error)?;
            c.query(&st, &[&base])
                .await
                .map_err(sql_error)?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get(0).map_err(sql_error)?,
                        r.try_get(1).map_err(sql_error)?,
                    ))
                })
                .collect()
        })
    }
}

/// The store's own writes: one transaction each.
impl PgStore {
    /// The store on `pg` (migrated by [`Pg::connect`]).
    pub fn open(pg: Arc<Pg>) -> Result<Arc<PgStore>, PgError> {
        let path = PathBuf::from(format!("postgresql://{}#{}", pg.shown, pg.schema()));
        Ok(Arc::new(PgStore {
            health: Arc::new(StoreHealth::new(&path)),
            path,
            pg,
            ids: Mutex::new(HashMap::new()),
            schedule: OnceLock::new(),
            round_trips: AtomicU64::new(0),
        }))
    }

    /// The round trips this store's reads and own writes have made so far
    /// (a unit's commit is not counted: a few statements per batch).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The connection pool.
    pub fn pg(&self) -> &Arc<Pg> {
        &self.pg
    }

    /// The store's scheduled work, answered by
    /// [`ServedStore::scheduled_work`]: the node's own
    /// (`PgSchedule::new(pg, node)`, whose leases are this node's), given
    /// by the composition root before the first call; later calls are
    /// ignored.
    pub fn set_schedule(&self, schedule: Arc<dyn Schedule>) {
        let _ = self.schedule.set(schedule);
    }

    /// A new id of `base` in the region: from this node's block of its
    /// sequence, a new block when it is used up. The lock is never held
    /// across the round trip for a block (a slow PostgreSQL would stop
    /// every worker's create behind it): a thread that finds the block
    /// used up takes a new one on its own, and whichever block lands is
    /// used (a block fetched and not installed is skipped: ids are unique,
    /// not dense, as ManageIQ's).
    pub(crate) fn alloc_id(&self, base: &'static str) -> Result<i64, StoreError> {
        let region = self.pg.region() * REGION_BASE;
        if let Some(seq) = self.next_in_block(base, None)? {
            return Ok(region + seq);
        }
        let seq = format!("objects_seq_{}", base.to_ascii_lowercase());
        let start: i64 = self.run(move |pg| async move {
            let c = pg.client().await?;
            let st = c
                .prepare_cached("SELECT nextval($1::text::regclass)")
                .await
                .map_err(sql_error)?;
            c.query_one(&st, &[&seq])
                .await
                .map_err(sql_error)?
                .try_get(0)
                .map_err(sql_error)
        })?;
        match self.next_in_block(base, Some(start))? {
            Some(seq) => Ok(region + seq),
            // Unreachable: a fresh block has ID_BLOCK ids.
            None => Err(StoreError::Backend(format!(
                "no id left in a fresh block of {base}"
            ))),
        }
    }

    /// The next id of this node's block of `base`; with `fresh` (the start
    /// of a block just taken), that block replaces a used-up one first.
    fn next_in_block(
        &self,
        base: &'static str,
        fresh: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let mut ids = self
            .ids
            .lock()
            .map_err(|_| StoreError::Backend("id block lock poisoned".into()))?;
        let block = ids.entry(base).or_insert((0, 0));
        if block.0 >= block.1 {
            match fresh {
                Some(start) => *block = (start, start + ID_BLOCK),
                None => return Ok(None),
            }
        }
        let seq = block.0;
        block.0 += 1;
        Ok(Some(seq))
    }

    /// Stores (or replaces) an object with a given id (imports,
    /// fixtures); the sequence of its base class moves past it.
    pub fn insert(&self, class: &str, id: i64, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let base = base_of(class)?;
        let attrs = lowercase_keys(attrs);
        let keys = index_keys(&attrs);
        let text = codec::encode_attrs(&attrs);
        let class_s = class.to_string();
        let seq_no = id - self.pg.region() * REGION_BASE;
        let seq = format!("objects_seq_{}", base.to_ascii_lowercase());
        self.run(move |pg| async move {
            let mut c = pg.client().await?;
            let tx = c.transaction().await.map_err(sql_error)?;
            let cols = key_columns();
            let params: Vec<String> = (0..INDEXED.len()).map(|i| format!("${}", i + 5)).collect();
            let updates: Vec<String> = INDEXED
                .iter()
                .map(|a| format!("k_{a} = EXCLUDED.k_{a}"))
                .collect();
            let sql = format!(
                "INSERT INTO objects (base, id, class, attrs, {cols})
                 VALUES ($1, $2, $3, $4::text::json, {})
                 ON CONFLICT (base, id) DO UPDATE SET class = EXCLUDED.class,
                 attrs = EXCLUDED.attrs, {}",
                params.join(", "),
                updates.join(", ")
            );
            let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&base, &id, &class_s, &text];
            for k in &keys {
                args.push(k);
            }
            tx.execute(&sql, &args).await.map_err(sql_error)?;
            if seq_no > 0 && seq_no < REGION_BASE {
                tx.execute(
                    &format!(
                        "SELECT setval('{seq}', GREATEST((SELECT last_value FROM {seq}), $1))"
                    ),
                    &[&seq_no],
                )
                .await
                .map_err(sql_error)?;
            }
            tx.commit().await.map_err(sql_error)
        })?;
        Ok(VmdbRef {
            class: Arc::from(class),
            id,
        })
    }

    /// How many objects the store holds.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.run(|pg| async move {
            let c = pg.client().await?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM objects", &[])
                .await
                .map_err(sql_error)?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}

/// Reads through a unit of work's writes and memory when given, else the
/// table itself.
pub(crate) struct Reader<'a> {
    pub(crate) store: &'a PgStore,
    pub(crate) unit: Option<&'a unit::UnitView>,
}

impl Reader<'_> {
    fn load_obj(&self, base: &'static str, id: i64) -> Result<Option<Obj>, StoreError> {
        match self.unit {
            Some(u) => u.load(base, id),
            None => self.store.db_load(base, id),
        }
    }

    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(None);
        };
        Ok(self.load_obj(base, id)?.map(|o| VmdbRef {
            class: Arc::from(o.class.as_str()),
            id,
        }))
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        let name = name.to_ascii_lowercase();
        if name == "id" {
            return Ok(Some(AttrValue::Int(obj.id)));
        }
        let Some(base) = base_class(&obj.class) else {
            return Ok(None);
        };
        let Some(stored) = self.load_obj(base, obj.id)? else {
            return Ok(None);
        };
        associations::resolve(self, base, obj.id, &stored.attrs, &name)
    }

    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        let base = base_of(class)?;
        Ok(self.load_obj(base, id)?.map(Arc::unwrap_or_clone))
    }

    fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        let base = base_of(class)?;
        let mut all: BTreeMap<i64, Arc<str>> = self
            .store
            .db_list(base)?
            .into_iter()
            .map(|(id, c)| (id, Arc::from(c)))
            .collect();
        if let Some(u) = self.unit {
            u.each_local(base, &mut |id, o| match o {
                Some(o) => {
                    all.insert(id, Arc::from(o.class.as_str()));
                }
                None => {
                    all.remove(&id);
                }
            })?;
        }
        Ok(all
            .into_iter()
            .map(|(id, class)| VmdbRef { class, id })
            .collect())
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(Vec::new());
        };
        let attr = attr.to_ascii_lowercase();
        let Some(u) = self.unit else {
            return Ok(self
                .store
                .db_find_by(base, &attr, value)?
                .into_iter()
                .map(|(id, o)| VmdbRef {
                    class: Arc::from(o.class.as_str()),
                    id,
                })
                .collect());
        };
        // The table's answer: read ahead for the batch, else read now.
        let mut ids = match u.take_ahead(base, &attr, value)? {
            Some(ids) => ids,
            None => {
                let rows = self.store.db_find_by(base, &attr, value)?;
                let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
                u.remember(base, rows)?;
                ids
            }
        };
        ids.extend(u.candidates(base, &attr, value)?);
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            if let Some(o) = u.load(base, id)? {
                if o.attrs.get(&attr) == Some(value) {
                    out.push(VmdbRef {
                        class: Arc::from(o.class.as_str()),
                        id,
                    });
                }
            }
        }
        Ok(out)
    }

    fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        r: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        let Some(base) = base_class(class) else {
            return Ok(None);
        };
        let Some(u) = self.unit else {
            return Ok(self
                .store
                .db_find_by_ref(base, ems_id, r)?
                .pop()
                .map(|(id, o)| VmdbRef {
                    class: Arc::from(o.class.as_str()),
                    id,
                }));
        };
        if let Some(found) = u.find_ref(base, ems_id, r)? {
            return Ok(Some(found));
        }
        if u.take_absent_ref(base, ems_id, r)? {
            return Ok(None);
        }
        let rows = self.store.db_find_by_ref(base, ems_id, r)?;
        let last = rows.last().map(|(id, _)| *id);
        u.remember(base, rows)?;
        match last {
            Some(id) => {
                u.remember_ref(base, ems_id, r, id)?;
                self.find(base, id)
            }
            None => Ok(None),
        }
    }
}

impl Lookup for Reader<'_> {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        Reader::find(self, class, id)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        Reader::find_by(self, class, attr, value)
    }
}

/// The store's own reads see what is committed; its writes commit at once
/// (one transaction each). Writes to commit together go through a unit of
/// work ([`ServedStore::begin_unit`], [`PgStore::units`]).
impl ObjectStore for PgStore {
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

    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let base = base_of(class)?;
        let id = self.alloc_id(base)?;
        let obj = StoredObject {
            class: class.to_string(),
            attrs: lowercase_keys(attrs),
        };
        let prepared = unit::Prepared {
            created: vec![(base, id, Arc::new(obj))],
            ..Default::default()
        };
        self.run_commit(
            move |pg| async move { unit::commit(&pg, &prepared, &[]).await.map(|_| ()) },
        )?;
        Ok(VmdbRef {
            class: Arc::from(class),
            id,
        })
    }

    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        let base = base_of(&obj.class)?;
        let mut changes = Attributes::default();
        changes.insert(name.to_ascii_lowercase(), value);
        let prepared = unit::Prepared {
            changed: vec![(base, obj.id, changes)],
            ..Default::default()
        };
        let updated =
            self.run_commit(move |pg| async move { unit::commit(&pg, &prepared, &[]).await })?;
        if updated.changed == 0 {
            return Err(StoreError::NotFound(obj.class.to_string(), obj.id));
        }
        Ok(())
    }

    /// One transaction: the row locked `FOR UPDATE`, changed from its
    /// value then and rewritten; atomic across nodes.
    fn modify(&self, obj: &VmdbRef, name: &str, change: &AttrChange) -> Result<(), StoreError> {
        let base = base_of(&obj.class)?;
        let prepared = unit::Prepared {
            changed: vec![(base, obj.id, Attributes::default())],
            modified: vec![(
                base,
                obj.id,
                vec![(name.to_ascii_lowercase(), change.clone())],
            )],
            ..Default::default()
        };
        let updated =
            self.run_commit(move |pg| async move { unit::commit(&pg, &prepared, &[]).await })?;
        if updated.changed == 0 {
            return Err(StoreError::NotFound(obj.class.to_string(), obj.id));
        }
        Ok(())
    }

    /// One transaction; `false` when the row was not there when read.
    fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        let base = base_of(&obj.class)?;
        if self.db_load(base, obj.id)?.is_none() {
            return Ok(false);
        }
        let prepared = unit::Prepared {
            deleted: vec![(base, obj.id)],
            ..Default::default()
        };
        self.run_commit(move |pg| async move { unit::commit(&pg, &prepared, &[]).await })?;
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

    /// One index lookup (`ems_ref` or `uid_ems`); the newest match.
    fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.reader().find_by_ems_ref(class, ems_id, ems_ref)
    }

    /// One statement ([`PgStore::db_query`]), sorted and paged here.
    fn query(&self, q: &Query) -> Result<Vec<VmdbRef>, StoreError> {
        let base = q.base()?;
        Ok(q.finish(self.db_query(base, q)?))
    }

    fn count(&self, q: &Query) -> Result<usize, StoreError> {
        let base = q.base()?;
        Ok(q.paged_count(self.db_query(base, q)?.len()))
    }
}

impl PgStore {
    fn reader(&self) -> Reader<'_> {
        Reader {
            store: self,
            unit: None,
        }
    }

    /// A page of `class`'s base class in one snapshot: see [`Pages::page`].
    /// Without `keep`, the count and the page are one statement (one
    /// snapshot, one round trip). With it, rows are read in chunks by id
    /// until the page is full, the count and every chunk in one read-only
    /// REPEATABLE READ transaction (one snapshot: a row committed meanwhile
    /// is neither counted nor listed) held by a task of the driver's
    /// runtime while this thread filters.
    pub fn page(
        &self,
        class: &str,
        q: PageQuery,
        keep: Option<Keep<'_>>,
    ) -> Result<Page, StoreError> {
        let base = base_of(class)?;
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let Some(keep) = keep else {
            let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
            let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
            let rows = self.run(move |pg| async move {
                let c = pg.client().await?;
                // The count rides on every row, and on one row of NULLs
                // when the page is empty.
                let st = c
                    .prepare_cached(&format!(
                        "SELECT p.id, p.class, p.attrs, (SELECT count(*) FROM objects WHERE base = $1)
                         FROM (SELECT 1) AS one LEFT JOIN (
                             SELECT id, class, attrs::text AS attrs FROM objects
                             WHERE base = $1 ORDER BY id {order} OFFSET $2 LIMIT $3
                         ) AS p ON true
                         ORDER BY p.id {order}"
                    ))
                    .await
                    .map_err(sql_error)?;
                c.query(&st, &[&base, &offset, &limit])
                    .await
                    .map_err(sql_error)
            })?;
            let mut page = Page::default();
            for row in &rows {
                let total: i64 = row.try_get(3).map_err(sql_error)?;
                page.total = usize::try_from(total).unwrap_or(0);
                if row
                    .try_get::<_, Option<i64>>(0)
                    .map_err(sql_error)?
                    .is_none()
                {
                    continue;
                }
                page.decoded += 1;
                match row_obj(row) {
                    Ok((id, o)) => page.rows.push((id, Arc::unwrap_or_clone(o))),
                    Err(e) => tracing::warn!(target: "evm", "MIQ(PgStore.page) {base}: {e}"),
                }
            }
            return Ok(page);
        };
        // With a filter: chunks by id, from the oldest (or newest) on.
        const CHUNK: i64 = 256;
        let snapshot = PageSnapshot::open(&self.pg, base, q.newest_first, CHUNK);
        let mut page = Page {
            total: snapshot.total()?,
            ..Page::default()
        };
        let mut after: Option<i64> = None;
        let mut skipped = 0usize;
        while page.rows.len() < q.limit {
            let bound = after.unwrap_or(if q.newest_first { i64::MAX } else { i64::MIN });
            let rows = snapshot.chunk(bound)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                if page.rows.len() >= q.limit {
                    break;
                }
                page.decoded += 1;
                // The chunk moves on past every row, undecodable ones too
                // (else a chunk of them would be read again for ever).
                if let Ok(id) = row.try_get::<_, i64>(0) {
                    after = Some(id);
                }
                let (id, o) = match row_obj(row) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(target: "evm", "MIQ(PgStore.page) {base}: {e}");
                        continue;
                    }
                };
                if !keep(&o) {
                    continue;
                }
                if skipped < q.offset {
                    skipped += 1;
                    continue;
                }
                page.rows.push((id, Arc::unwrap_or_clone(o)));
            }
            if (rows.len() as i64) < CHUNK {
                break;
            }
        }
        Ok(page)
    }
}

/// What a [`PageSnapshot`]'s task answers.
type Answer<T> = std::sync::mpsc::Receiver<Result<T, StoreError>>;

/// Where a [`PageSnapshot`]'s task answers one chunk.
type ChunkAnswer = std::sync::mpsc::SyncSender<Result<Vec<tokio_postgres::Row>, StoreError>>;

/// One read-only REPEATABLE READ transaction on a pooled connection, held
/// by a task of the driver's runtime: its count of a base class first,
/// then chunks of rows by id, as this thread asks (so a filter that is not
/// `Send` runs here, between the chunks, all in one snapshot). Dropping it
/// ends the transaction.
struct PageSnapshot {
    asks: tokio::sync::mpsc::Sender<(i64, ChunkAnswer)>,
    total: Answer<usize>,
    wait: std::time::Duration,
}

impl PageSnapshot {
    fn open(pg: &Arc<Pg>, base: &'static str, newest_first: bool, chunk: i64) -> PageSnapshot {
        let (asks, mut asked) = tokio::sync::mpsc::channel::<(i64, ChunkAnswer)>(1);
        let (total_tx, total) = std::sync::mpsc::sync_channel(1);
        let p = pg.clone();
        let (order, cmp) = if newest_first {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        pg.handle().spawn(async move {
            let mut c = match p.client().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = total_tx.send(Err(e.into()));
                    return;
                }
            };
            let tx = match c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
            {
                Ok(tx) => tx,
                Err(e) => {
                    let _ = total_tx.send(Err(sql_error(e)));
                    return;
                }
            };
            let n = async {
                let st = tx
                    .prepare_cached("SELECT count(*) FROM objects WHERE base = $1")
                    .await
                    .map_err(sql_error)?;
                let n: i64 = tx
                    .query_one(&st, &[&base])
                    .await
                    .map_err(sql_error)?
                    .try_get(0)
                    .map_err(sql_error)?;
                Ok(usize::try_from(n).unwrap_or(0))
            }
            .await;
            let failed = n.is_err();
            let _ = total_tx.send(n);
            if failed {
                return;
            }
            let sql =
                format!("{SELECT} WHERE base = $1 AND id {cmp} $2 ORDER BY id {order} LIMIT $3");
            while let Some((bound, answer)) = asked.recv().await {
                let rows = async {
                    let st = tx.prepare_cached(&sql).await.map_err(sql_error)?;
                    tx.query(&st, &[&base, &bound, &chunk])
                        .await
                        .map_err(sql_error)
                }
                .await;
                let _ = answer.send(rows);
            }
        });
        PageSnapshot {
            asks,
            total,
            wait: pg.call_timeout(),
        }
    }

    fn gone() -> StoreError {
        StoreError::from(PgError::RuntimeGone)
    }

    fn timed_out(&self) -> StoreError {
        StoreError::from(PgError::Timeout(self.wait))
    }

    fn total(&self) -> Result<usize, StoreError> {
        match self.total.recv_timeout(self.wait) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(self.timed_out()),
            Err(_) => Err(Self::gone()),
        }
    }

    fn chunk(&self, bound: i64) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.asks.try_send((bound, tx)).map_err(|_| Self::gone())?;
        match rx.recv_timeout(self.wait) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(self.timed_out()),
            Err(_) => Err(Self::gone()),
        }
    }
}

impl Pages for PgStore {
    fn page(&self, class: &str, q: PageQuery, keep: Option<Keep<'_>>) -> Result<Page, StoreError> {
        PgStore::page(self, class, q, keep)
    }
}

impl ServedStore for PgStore {
    fn begin_unit(self: Arc<Self>) -> Box<dyn ServedUnit> {
        Box::new(unit::PgServedUnit::new(self))
    }

    /// The one [`PgStore::set_schedule`] gave, else a
    /// [`PgSchedule`](crate::schedule::PgSchedule) named after this host.
    fn scheduled_work(&self) -> Arc<dyn Schedule> {
        self.schedule
            .get_or_init(|| {
                let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "automate".into());
                Arc::new(crate::schedule::PgSchedule::new(self.pg.clone(), node))
            })
            .clone()
    }

    fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn backup(&self, _dest: &Path) -> Result<BackupReport, StoreError> {
        Err(StoreError::Backend(format!(
            "the object store is PostgreSQL ({}): back it up with `pg_dump --schema {}`",
            self.path.display(),
            self.pg.schema()
        )))
    }
}
