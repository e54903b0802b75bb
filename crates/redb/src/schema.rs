//! The redb file's tables and their migration: the table definitions, the
//! `sequences` key, every table created on open, and `attr_index` rebuilt
//! when it was built for another version.

use super::backend;
use super::codec::decode_object;
use super::index::{index_entries, index_entry_key};
use super::schedule;
use automate_vmdb::{base_class, StoreError};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

pub(crate) const OBJECTS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("objects");
pub(crate) const SEQUENCES: TableDefinition<&str, i64> = TableDefinition::new("sequences");
pub(crate) const EMS_REFS: TableDefinition<(&str, i64, &str), i64> =
    TableDefinition::new("ems_refs");
/// Keys are [`index_entry_key`]'s flat bytes, so redb compares them with
/// one `memcmp` (a tuple key decodes three lengths per comparison).
pub(crate) const ATTR_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("attr_index_v2");
/// The index as files before [`ATTR_INDEX_VERSION`] 2 held it (a tuple
/// key); dropped when the flat one is built.
pub(super) const OLD_ATTR_INDEX: TableDefinition<(&str, &str, &[u8], i64), ()> =
    TableDefinition::new("attr_index");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The version of `attr_index`'s contents (bump when [`INDEXED_ATTRS`] or
/// the value encoding changes: the next open rebuilds the index).
pub(super) const ATTR_INDEX_VERSION: u64 = 5;
pub(super) const ATTR_INDEX_VERSION_KEY: &str = "attr_index_version";

/// The `sequences` key of a base class in a region: `VmOrTemplate:1`.
pub(super) fn seq_key(base: &str, region: i64) -> String {
    format!("{base}:{region}")
}

/// Creates every table the store uses that is missing (the scheduled-work
/// ones included, so a new file is complete from its first commit) and
/// rebuilds `attr_index` when it was built for another version.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(OBJECTS).map_err(backend)?;
    txn.open_table(SEQUENCES).map_err(backend)?;
    txn.open_table(EMS_REFS).map_err(backend)?;
    txn.open_table(ATTR_INDEX).map_err(backend)?;
    ensure_attr_index(txn)?;
    schedule::create_tables(txn)
}

/// Builds `attr_index` from the objects when it was built for another
/// [`ATTR_INDEX_VERSION`] (or never: a file from before the index).
pub(super) fn ensure_attr_index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    let version = meta
        .get(ATTR_INDEX_VERSION_KEY)
        .map_err(backend)?
        .map(|g| g.value());
    if version == Some(ATTR_INDEX_VERSION) {
        return Ok(());
    }
    let mut entries = Vec::new();
    {
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        for entry in objects.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (base, id) = k.value();
            let Some(base) = base_class(base) else {
                continue;
            };
            match decode_object(v.value()) {
                Ok(obj) => entries.extend(
                    index_entries(&obj.attrs)
                        .into_iter()
                        .map(|(attr, value)| (base, attr, value, id)),
                ),
                Err(e) => tracing::warn!("{base} [{id}] cannot be decoded: {e}"),
            }
        }
    }
    txn.delete_table(OLD_ATTR_INDEX).map_err(backend)?;
    txn.delete_table(ATTR_INDEX).map_err(backend)?;
    let mut index = txn.open_table(ATTR_INDEX).map_err(backend)?;
    let mut keys: Vec<Vec<u8>> = entries
        .iter()
        .map(|(base, attr, value, id)| index_entry_key(base, attr, value, *id))
        .collect();
    keys.sort_unstable();
    for key in &keys {
        index.insert(key.as_slice(), ()).map_err(backend)?;
    }
    meta.insert(ATTR_INDEX_VERSION_KEY, ATTR_INDEX_VERSION)
        .map_err(backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_attrs as attrs;
    use crate::RedbStore;
    use automate_core::value::AttrValue;
    use automate_vmdb::ObjectStore;
    use std::path::Path;

    /// The store at `path` opened again (which rebuilds an index of another
    /// version), checked by `verify`.
    fn reopened_consistent(path: &Path) -> RedbStore {
        let store = RedbStore::open(path).unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        store
    }

    #[test]
    fn attr_index_is_rebuilt_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = RedbStore::open(&path).unwrap();
        for i in 0..5 {
            store
                .create(
                    "EmsEvent",
                    attrs(&[
                        ("dedup_key", AttrValue::str(format!("k{i}"))),
                        ("event_type", AttrValue::str("E")),
                    ]),
                )
                .unwrap();
        }
        // As a file written before the index existed: no entries, no version.
        let txn = store.db.begin_write().unwrap();
        txn.delete_table(ATTR_INDEX).unwrap();
        txn.open_table(ATTR_INDEX).unwrap();
        txn.open_table(META)
            .unwrap()
            .remove(ATTR_INDEX_VERSION_KEY)
            .unwrap();
        txn.commit().unwrap();
        assert!(!store.verify().unwrap().is_ok());
        drop(store);
        let store = reopened_consistent(&path);
        let found = store
            .find_by("EventStream", "dedup_key", &AttrValue::str("k3"))
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            store
                .find_by("EventStream", "event_type", &AttrValue::str("E"))
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn tuple_keyed_index_of_older_files_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = RedbStore::open(&path).unwrap();
        let e = store
            .create(
                "EmsEvent",
                attrs(&[
                    ("dedup_key", AttrValue::str("k1")),
                    ("event_type", AttrValue::str("E")),
                ]),
            )
            .unwrap();
        // As a version-1 file: the tuple-keyed table, no flat one.
        let txn = store.db.begin_write().unwrap();
        txn.delete_table(ATTR_INDEX).unwrap();
        {
            let mut old = txn.open_table(OLD_ATTR_INDEX).unwrap();
            old.insert(("EventStream", "dedup_key", b"\"k1\"".as_slice(), e.id), ())
                .unwrap();
        }
        txn.open_table(META)
            .unwrap()
            .insert(ATTR_INDEX_VERSION_KEY, 1)
            .unwrap();
        txn.commit().unwrap();
        drop(store);
        let store = reopened_consistent(&path);
        let found = store
            .find_by("EventStream", "dedup_key", &AttrValue::str("k1"))
            .unwrap();
        assert_eq!(found.len(), 1);
        let txn = store.db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        assert!(!names.contains(&"attr_index".to_string()), "{names:?}");
        assert!(names.contains(&"attr_index_v2".to_string()), "{names:?}");
    }
}
