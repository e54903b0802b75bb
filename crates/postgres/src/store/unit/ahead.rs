//! Reading ahead for a unit's batch ([`ObjectStore::read_ahead`]): the
//! lookups every event of a claimed batch is about to make (its
//! de-duplication key, its VM's and host's provider references) read in
//! one round trip, one statement per kind of lookup pipelined on one
//! connection, instead of one round trip per event from the worker
//! thread. Each answer serves one lookup of the batch
//! ([`UnitView::take_ahead`], [`UnitView::take_absent_ref`]); the unit's
//! own writes are seen first as always, and the answers are dropped with
//! the batch's other reads at the hand-over. A reference found is kept as
//! the lookups of the table keep theirs (`refs`); an object created at
//! once in the unit ([`ObjectStore::create_now`]: a VM seen for the first
//! time) is remembered by its references too, so the batch's next events
//! of that VM need no read.

use super::super::{codec, has_ref, sql_error, Obj, INDEXED};
use super::{UnitState, UnitView};
use automate_core::value::AttrValue;
use automate_vmdb::associations::as_id;
use automate_vmdb::{base_class, ReadAhead, StoreError, StoredObject};
use std::collections::{BTreeMap, HashMap};

/// The batched `find_by` of `base` ($1) by the key column of `attr`: every
/// row whose key is one of $2, with that key.
fn by_sql(attr: &str) -> String {
    format!(
        "SELECT id, class, attrs::text, k_{attr} FROM objects
         WHERE base = $1 AND k_{attr} = ANY($2::text[])"
    )
}

/// The batched provider-reference lookup of `base` ($1): `ems_ref` or
/// `uid_ems` one of $2, each through its index.
const REFS_SQL: &str = "SELECT id, class, attrs::text FROM objects
     WHERE base = $1 AND k_ems_ref = ANY($2::text[])
     UNION ALL SELECT id, class, attrs::text FROM objects
     WHERE base = $1 AND k_uid_ems = ANY($2::text[])";

/// Rows of one statement: (id, object, key column if selected).
type Rows = Vec<(i64, Obj, Option<String>)>;

fn decode(rows: &[tokio_postgres::Row], keyed: bool) -> Result<Rows, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, obj) = super::super::row_obj(row)?;
        let key = if keyed {
            row.try_get::<_, Option<String>>(3).map_err(sql_error)?
        } else {
            None
        };
        out.push((id, obj, key));
    }
    Ok(out)
}

/// The indexed attribute `attr` names (its static name), if any.
fn indexed(attr: &str) -> Option<&'static str> {
    INDEXED
        .iter()
        .copied()
        .find(|a| a.eq_ignore_ascii_case(attr))
}

/// What a unit created at once ([`ObjectStore::create_now`]) answers for
/// its provider references in this batch.
pub(super) fn created_now(s: &mut UnitState, base: &'static str, id: i64, obj: &StoredObject) {
    let Some(ems_id) = obj.attrs.get("ems_id").and_then(as_id) else {
        return;
    };
    for attr in ["ems_ref", "uid_ems"] {
        if let Some(AttrValue::Str(r)) = obj.attrs.get(attr) {
            if !r.is_empty() {
                let key = (base, ems_id, r.clone());
                s.absent_refs.remove(&key);
                s.refs.insert(key, id);
            }
        }
    }
}

impl UnitView {
    /// Reads the lookups of `wants` not answered yet in one round trip and
    /// keeps the answers for the batch.
    pub(super) fn read_ahead_batch(&self, wants: &ReadAhead) -> Result<(), StoreError> {
        // (base, attribute) -> key texts; base -> (provider, reference).
        let mut by: BTreeMap<(&'static str, &'static str), Vec<String>> = BTreeMap::new();
        let mut refs: BTreeMap<&'static str, Vec<(i64, String)>> = BTreeMap::new();
        {
            let s = self.lock()?;
            for (class, attr, value) in &wants.by {
                let (Some(base), Some(attr)) = (base_class(class), indexed(attr)) else {
                    continue;
                };
                let Some(key) = codec::key_text(value).filter(|k| !k.is_empty()) else {
                    continue;
                };
                if !s.ahead.contains_key(&(base, attr, key.clone())) {
                    by.entry((base, attr)).or_default().push(key);
                }
            }
            for (class, ems_id, r) in &wants.refs {
                let Some(base) = base_class(class) else {
                    continue;
                };
                if r.is_empty() || r.contains('\0') {
                    continue;
                }
                let key = (base, *ems_id, r.clone());
                if !s.refs.contains_key(&key) && !s.absent_refs.contains(&key) {
                    refs.entry(base).or_default().push((*ems_id, r.clone()));
                }
            }
        }
        for keys in by.values_mut() {
            keys.sort_unstable();
            keys.dedup();
        }
        for wanted in refs.values_mut() {
            wanted.sort_unstable();
            wanted.dedup();
        }
        if by.is_empty() && refs.is_empty() {
            return Ok(());
        }
        let by_asked: Vec<((&'static str, &'static str), Vec<String>)> = by.into_iter().collect();
        let refs_asked: Vec<(&'static str, Vec<String>)> = refs
            .iter()
            .map(|(base, wanted)| {
                let mut texts: Vec<String> = wanted.iter().map(|(_, r)| r.clone()).collect();
                texts.sort_unstable();
                texts.dedup();
                (*base, texts)
            })
            .collect();
        let (by_asked, by_rows, ref_rows) = self.store.run(move |pg| async move {
            let c = pg.client().await?;
            let by_all = by_asked.iter().map(|((base, attr), keys)| {
                let c = &c;
                async move {
                    let st = c.prepare_cached(&by_sql(attr)).await.map_err(sql_error)?;
                    let rows = c.query(&st, &[base, keys]).await.map_err(sql_error)?;
                    decode(&rows, true)
                }
            });
            let refs_all = refs_asked.iter().map(|(base, texts)| {
                let c = &c;
                async move {
                    let st = c.prepare_cached(REFS_SQL).await.map_err(sql_error)?;
                    let rows = c.query(&st, &[base, texts]).await.map_err(sql_error)?;
                    decode(&rows, false)
                }
            });
            let (by_rows, ref_rows) = futures_util::future::try_join(
                futures_util::future::try_join_all(by_all),
                futures_util::future::try_join_all(refs_all),
            )
            .await?;
            Ok((by_asked, by_rows, ref_rows))
        })?;
        let mut s = self.lock()?;
        for (((base, attr), keys), rows) in by_asked.into_iter().zip(by_rows) {
            let mut found: HashMap<String, Vec<i64>> = HashMap::new();
            for (id, obj, key) in rows {
                if let Some(k) = key {
                    found.entry(k).or_default().push(id);
                }
                s.cache.entry((base, id)).or_insert(Some(obj));
            }
            for k in keys {
                let mut ids = found.remove(&k).unwrap_or_default();
                ids.sort_unstable();
                s.ahead.insert((base, attr, k), ids);
            }
        }
        for ((base, wanted), rows) in refs.into_iter().zip(ref_rows) {
            // Rows by reference text (either column), for the checks.
            let mut by_text: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, (_, obj, _)) in rows.iter().enumerate() {
                for attr in ["ems_ref", "uid_ems"] {
                    if let Some(AttrValue::Str(r)) = obj.attrs.get(attr) {
                        by_text.entry(r.as_str()).or_default().push(i);
                    }
                }
            }
            let mut answers = Vec::with_capacity(wanted.len());
            for (ems_id, r) in wanted {
                // The newest object on that provider with the reference,
                // as a lookup of the table answers.
                let newest = by_text
                    .get(r.as_str())
                    .into_iter()
                    .flatten()
                    .map(|i| &rows[*i])
                    .filter(|(_, obj, _)| has_ref(&obj.attrs, ems_id, &r))
                    .map(|(id, _, _)| *id)
                    .max();
                answers.push(((base, ems_id, r), newest));
            }
            drop(by_text);
            for (key, newest) in answers {
                match newest {
                    Some(id) => {
                        s.refs.insert(key, id);
                    }
                    None => {
                        s.absent_refs.insert(key);
                    }
                }
            }
            for (id, obj, _) in rows {
                s.cache.entry((base, id)).or_insert(Some(obj));
            }
        }
        Ok(())
    }

    /// The answer read ahead for the lookup of (base, `attr`, `value`),
    /// taken (it answers one lookup): the ids in the table, or `None` when
    /// none was read ahead.
    pub(crate) fn take_ahead(
        &self,
        base: &'static str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let Some(attr) = indexed(attr) else {
            return Ok(None);
        };
        let Some(key) = codec::key_text(value).filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let mut s = self.lock()?;
        if s.ahead.is_empty() {
            return Ok(None);
        }
        Ok(s.ahead.remove(&(base, attr, key)))
    }

    /// Whether the reference was read ahead and not found in the table
    /// (taken: it answers one lookup).
    pub(crate) fn take_absent_ref(
        &self,
        base: &'static str,
        ems_id: i64,
        r: &str,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock()?;
        if s.absent_refs.is_empty() {
            return Ok(false);
        }
        Ok(s.absent_refs.remove(&(base, ems_id, r.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::PgStore;
    use crate::testing::TestDb;
    use automate_core::value::{AttrValue, Attributes};
    use automate_vmdb::{HandOver, ObjectStore, ReadAhead, UnitOfWork};
    use std::sync::Arc;

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> AttrValue {
        AttrValue::str(v)
    }

    /// A batch's lookups read ahead in one round trip answer as the table
    /// does, the unit's own writes first; an absent answer serves one
    /// lookup (the next reads the table, where another node may have
    /// created it meanwhile); a VM created at once is found by reference.
    #[test]
    fn a_batch_read_ahead_answers_its_lookups_in_one_round_trip() {
        let Some(db) = TestDb::new("read_ahead") else {
            return;
        };
        let store = PgStore::open(db.pg()).expect("open");
        let ems = store
            .create("ExtManagementSystem", attrs(&[("name", s("vc"))]))
            .unwrap();
        let on = |r: &str| {
            attrs(&[
                ("name", s(r)),
                ("ems_id", AttrValue::Int(ems.id)),
                ("ems_ref", s(r)),
            ])
        };
        let vm1 = store.create("Vm", on("vm-1")).unwrap();
        let host = store.create("Host", on("h-1")).unwrap();
        let old = store
            .create("EmsEvent", attrs(&[("dedup_key", s("k-old"))]))
            .unwrap();
        let units = store.units(None);
        let unit = units.begin_unit();
        let view = unit.objects();
        let wants = ReadAhead {
            by: vec![
                ("EventStream", "dedup_key", s("k-old")),
                ("EventStream", "dedup_key", s("k-new")),
                ("EventStream", "dedup_key", s("k-new")),
            ],
            refs: vec![
                ("VmOrTemplate", ems.id, "vm-1".into()),
                ("VmOrTemplate", ems.id, "vm-2".into()),
                ("VmOrTemplate", ems.id, "vm-3".into()),
                ("Host", ems.id, "h-1".into()),
            ],
        };
        let trips = store.round_trips();
        view.read_ahead(&wants).expect("read ahead");
        assert_eq!(store.round_trips() - trips, 1, "one round trip");
        let trips = store.round_trips();
        let found = view
            .find_by("EventStream", "dedup_key", &s("k-old"))
            .unwrap();
        assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), [old.id]);
        // The unit's own event with the key is seen over the answer read
        // ahead (none in the table).
        let mine = view
            .create("EmsEvent", attrs(&[("dedup_key", s("k-new"))]))
            .unwrap();
        let found = view
            .find_by("EventStream", "dedup_key", &s("k-new"))
            .unwrap();
        assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), [mine.id]);
        let vm = view
            .find_by_ems_ref("VmOrTemplate", ems.id, "vm-1")
            .unwrap();
        assert_eq!(vm.map(|r| r.id), Some(vm1.id));
        assert_eq!(
            view.attribute(&vm1, "name").unwrap(),
            Some(s("vm-1")),
            "read with the reference"
        );
        let h = view.find_by_ems_ref("Host", ems.id, "h-1").unwrap();
        assert_eq!(h.map(|r| r.id), Some(host.id));
        assert_eq!(
            view.find_by_ems_ref("VmOrTemplate", ems.id, "vm-2")
                .unwrap(),
            None
        );
        // First sight: created at once, then found by reference.
        let vm2 = view.create_now("Vm", on("vm-2")).unwrap();
        assert_eq!(
            view.find_by_ems_ref("VmOrTemplate", ems.id, "vm-2")
                .unwrap()
                .map(|r| r.id),
            Some(vm2.id)
        );
        assert_eq!(
            store.round_trips() - trips,
            1,
            "no reads: the create at once only (its id from the block in hand)"
        );
        // vm-3 absent when read ahead, then created by another node: the
        // absent answer serves one lookup, the next reads the table.
        assert_eq!(
            view.find_by_ems_ref("VmOrTemplate", ems.id, "vm-3")
                .unwrap(),
            None
        );
        let vm3 = store.create("Vm", on("vm-3")).unwrap();
        assert_eq!(
            view.find_by_ems_ref("VmOrTemplate", ems.id, "vm-3")
                .unwrap()
                .map(|r| r.id),
            Some(vm3.id)
        );
        unit.hand_over(HandOver::default()).wait().expect("commit");
        unit.landed();
        // The next batch reads afresh: nothing read ahead is left.
        let again = view
            .find_by("EventStream", "dedup_key", &s("k-new"))
            .unwrap();
        assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), [mine.id]);
        let _ = Arc::clone(&store);
    }
}
