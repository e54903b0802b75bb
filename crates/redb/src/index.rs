//! What an object is indexed under: the `attr_index` keys of its indexed
//! attributes (flat bytes; by id bucket first for the event stream's VM and
//! host ids) and its provider references (`ems_refs`), and the index
//! lookups.

use super::backend;
use super::codec::write_value;
use super::read::IndexTable;
use automate_core::value::{AttrValue, Attributes};
use automate_vmdb::associations::as_id;
use automate_vmdb::StoreError;
use redb::ReadableTable;

/// The attributes [`ObjectStore::find_by`] answers from `attr_index`
/// rather than by a scan: names, provider references, the event handler's
/// de-duplication key, the ids the has-many associations query, and
/// `state` (a provider's catcher polls its queued operations by it).
pub(super) const INDEXED_ATTRS: &[&str] = &[
    "name",
    "ems_ref",
    "uid_ems",
    "dedup_key",
    "userid",
    "guid",
    "chain_id",
    "event_type",
    "host_id",
    "ems_id",
    "vm_or_template_id",
    "miq_request_id",
    "state",
];

impl<T: ReadableTable<&'static [u8], ()>> IndexTable for T {
    fn ids(&self, base: &str, attr: &str, value: &[u8]) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::new();
        let prefix = index_prefix(base, attr);
        // Plain: one range. Bucketed: one range per bucket there is (a seek
        // to the next bucket, then the value's range in it).
        let mut bucket = None;
        if bucketed(base, attr) {
            let Some(b) = self.first_bucket(&prefix, 0)? else {
                return Ok(out);
            };
            bucket = Some(b);
        }
        loop {
            let range_key = |id: u64| {
                let mut k = prefix.clone();
                if let Some(b) = bucket {
                    k.extend_from_slice(&u64::to_be_bytes(b));
                }
                k.extend_from_slice(value);
                k.push(0);
                k.extend_from_slice(&id.to_be_bytes());
                k
            };
            let (from, to) = (range_key(0), range_key(u64::MAX));
            for entry in self
                .range(from.as_slice()..=to.as_slice())
                .map_err(backend)?
            {
                let key = entry.map_err(backend)?.0;
                out.push(index_entry_id(key.value())?);
            }
            match bucket {
                Some(b) if b < u64::MAX => match self.first_bucket(&prefix, b + 1)? {
                    Some(next) => bucket = Some(next),
                    None => break,
                },
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Seeking the buckets of a bucketed index ([`bucketed`]).
pub(super) trait Buckets {
    /// The first bucket at or after `from` under `prefix`, if any.
    fn first_bucket(&self, prefix: &[u8], from: u64) -> Result<Option<u64>, StoreError>;
}

impl<T: ReadableTable<&'static [u8], ()>> Buckets for T {
    fn first_bucket(&self, prefix: &[u8], from: u64) -> Result<Option<u64>, StoreError> {
        let mut seek = prefix.to_vec();
        seek.extend_from_slice(&from.to_be_bytes());
        let Some(entry) = self.range(seek.as_slice()..).map_err(backend)?.next() else {
            return Ok(None);
        };
        let key = entry.map_err(backend)?.0;
        let key = key.value();
        let Some(rest) = key.strip_prefix(prefix) else {
            return Ok(None);
        };
        let bucket = rest
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| StoreError::Backend(format!("attr_index key too short: {key:?}")))?;
        Ok(Some(u64::from_be_bytes(bucket)))
    }
}

/// The provider references an object is indexed under: its `ems_id` and
/// its `ems_ref` and `uid_ems` (those set).
pub(super) fn ref_keys(attrs: &Attributes) -> Option<(i64, Vec<String>)> {
    let ems_id = as_id(attrs.get("ems_id")?)?;
    let refs: Vec<String> = ["ems_ref", "uid_ems"]
        .iter()
        .filter_map(|k| match attrs.get(*k)? {
            AttrValue::Str(s) | AttrValue::Symbol(s) if !s.is_empty() => Some(s.clone()),
            AttrValue::Int(i) => Some(i.to_string()),
            _ => None,
        })
        .collect();
    (!refs.is_empty()).then_some((ems_id, refs))
}

/// The bytes `attr_index` files `value` under (its stored encoding), when
/// `attr` is indexed and the value is of a type whose equality is byte
/// equality of its encoding (strings, symbols, integers, booleans, object
/// references). Blank strings are not indexed (an EmsEvent's empty
/// `chain_id` would be one more entry per event that no lookup wants): a
/// query for `""` scans.
pub(super) fn index_key(attr: &str, value: &AttrValue) -> Option<Vec<u8>> {
    if !INDEXED_ATTRS.contains(&attr) {
        return None;
    }
    match value {
        AttrValue::Str(s) if s.is_empty() => None,
        AttrValue::Str(_)
        | AttrValue::Symbol(_)
        | AttrValue::Int(_)
        | AttrValue::Bool(_)
        | AttrValue::Object(_) => {
            let mut out = Vec::with_capacity(24);
            write_value(&mut out, value);
            Some(out)
        }
        _ => None,
    }
}

/// The `attr_index` key of one entry: `base \0 attr \0 value \0` and the
/// id as 8 big-endian bytes with the sign bit flipped, so byte order is
/// (base, attribute, value, id) order and one value's entries are one
/// range. The value bytes are JSON ([`index_key`]), which never holds a
/// raw NUL, nor do class or attribute names. A [`bucketed`] index has the
/// id's bucket (8 bytes) before the value: (base, attribute, bucket,
/// value, id).
pub(super) fn index_entry_key(base: &str, attr: &str, value: &[u8], id: i64) -> Vec<u8> {
    let mut key = index_prefix(base, attr);
    let id = (id as u64) ^ (1 << 63);
    if bucketed(base, attr) {
        key.extend_from_slice(&(id >> BUCKET_BITS).to_be_bytes());
    }
    key.extend_from_slice(value);
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `base \0 attr \0`: what every `attr_index` key of that attribute
/// starts with.
pub(super) fn index_prefix(base: &str, attr: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(base.len() + attr.len() + 40);
    key.extend_from_slice(base.as_bytes());
    key.push(0);
    key.extend_from_slice(attr.as_bytes());
    key.push(0);
    key
}

/// Indexes filed by id bucket first: the event stream's references to a
/// VM and a host. Their values are many (one run per VM), so entries filed
/// by value land on a different leaf for every VM an event names, and each
/// commit copied one 4 KiB leaf per VM it touched; by bucket first, a
/// commit's entries (new events, ids in one or two buckets) land together.
/// A lookup seeks once per bucket instead: `find_by` on these attributes
/// costs a seek per [`BUCKET_BITS`]-sized run of event ids.
pub(super) fn bucketed(base: &str, attr: &str) -> bool {
    base == "EventStream" && matches!(attr, "vm_or_template_id" | "host_id")
}

/// A bucket is 2^BUCKET_BITS consecutive ids (512 events).
pub(super) const BUCKET_BITS: u32 = 9;

/// The id at the end of an [`index_entry_key`].
pub(super) fn index_entry_id(key: &[u8]) -> Result<i64, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
        .ok_or_else(|| StoreError::Backend(format!("attr_index key too short: {key:?}")))?;
    Ok((u64::from_be_bytes(tail) ^ (1 << 63)) as i64)
}

/// The `attr_index` entries of an object: (attribute, value bytes).
pub(super) fn index_entries(attrs: &Attributes) -> Vec<(&'static str, Vec<u8>)> {
    INDEXED_ATTRS
        .iter()
        .filter_map(|attr| Some((*attr, index_key(attr, attrs.get(*attr)?)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_attrs as attrs;
    use crate::RedbStore;
    use automate_vmdb::{ObjectStore, REGION_BASE};

    #[test]
    fn index_keys_order_as_base_attr_value_id() {
        let key = |v: &[u8], id| index_entry_key("EventStream", "event_type", v, id);
        let mut keys = [
            key(b"\"b\"", 1),
            key(b"\"a\"", i64::MAX),
            key(b"\"a\"", -5),
            key(b"\"a\"", 7),
            key(b"\"a\"", 1_000_000_000_001),
            index_entry_key("EventStream", "chain_id", b"\"z\"", 1),
            index_entry_key("EventStreamX", "a", b"1", 1),
        ];
        keys.sort();
        let ids: Vec<i64> = keys.iter().map(|k| index_entry_id(k).unwrap()).collect();
        assert_eq!(ids, [1, -5, 7, 1_000_000_000_001, i64::MAX, 1, 1]);
        assert!(keys[0].starts_with(b"EventStream\0chain_id\0"));
        // A value that is a prefix of another stays in its own range.
        assert!(key(b"\"a\"", i64::MAX) < key(b"\"ab\"", i64::MIN));
        assert!(index_entry_id(b"short").is_err());
    }

    #[test]
    fn bucketed_index_finds_every_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("t.redb")).unwrap();
        // Ids in the first bucket, far later ones, and another region's.
        let first = REGION_BASE + 1;
        let ids = [
            first,
            first + 1,
            first + 511,
            first + 512,
            first + 5_000,
            first + 1_000_000,
            2 * REGION_BASE + 3,
        ];
        for (i, id) in ids.iter().enumerate() {
            let vm = if i % 2 == 0 { 7 } else { 8 };
            store
                .insert(
                    "EmsEvent",
                    *id,
                    attrs(&[
                        ("vm_or_template_id", AttrValue::Int(vm)),
                        ("host_id", AttrValue::Int(70)),
                        ("event_type", AttrValue::str("E")),
                    ]),
                )
                .unwrap();
        }
        // A VM (not bucketed: VmOrTemplate's host_id is a has-many).
        store
            .insert("Vm", first, attrs(&[("host_id", AttrValue::Int(70))]))
            .unwrap();
        let found = |class: &str, attr: &str, v: i64| -> Vec<i64> {
            let mut ids: Vec<i64> = store
                .find_by(class, attr, &AttrValue::Int(v))
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            ids.sort_unstable();
            ids
        };
        let want = |pick: &dyn Fn(usize) -> bool| -> Vec<i64> {
            let mut w: Vec<i64> = (0..ids.len())
                .filter(|i| pick(*i))
                .map(|i| ids[i])
                .collect();
            w.sort_unstable();
            w
        };
        assert_eq!(
            found("EventStream", "vm_or_template_id", 7),
            want(&|i| i % 2 == 0)
        );
        assert_eq!(
            found("EventStream", "vm_or_template_id", 8),
            want(&|i| i % 2 == 1)
        );
        assert_eq!(
            found("EventStream", "vm_or_template_id", 9),
            Vec::<i64>::new()
        );
        assert_eq!(found("EventStream", "host_id", 70), want(&|_| true));
        assert_eq!(found("VmOrTemplate", "host_id", 70), vec![first]);
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        // The keys: by bucket before value, so one bucket's entries for
        // different VMs sit together.
        let k = |v: &[u8], id| index_entry_key("EventStream", "vm_or_template_id", v, id);
        assert!(k(b"9", first) < k(b"1", first + 512));
        assert!(k(b"1", first + 512) < k(b"9", first + 512));
        assert_eq!(
            index_entry_id(&k(b"9", first + 5_000)).unwrap(),
            first + 5_000
        );
    }
}
