//! The consistency check of a store file ([`RedbStore::verify`]).

use super::codec::decode_object;
use super::index::{index_entries, index_entry_key, ref_keys};
use super::read::load_from;
use super::schedule;
use super::schema::{seq_key, ATTR_INDEX, EMS_REFS, OBJECTS, SEQUENCES};
use super::{backend, RedbStore};
use automate_vmdb::{base_class, region_of, StoreError};
use redb::{ReadableTable, ReadableTableMetadata};

/// What [`RedbStore::verify`] found: counts, and the inconsistencies
/// (empty when the file is consistent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    /// Objects read (`objects` rows).
    pub objects: u64,
    /// The largest object id in the file, of any class; `None` when empty.
    pub max_id: Option<i64>,
    /// Provider references (`ems_refs` rows) checked.
    pub ems_refs: u64,
    /// Scheduled items checked.
    pub scheduled: u64,
    /// Each inconsistency found, as one line.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the file is consistent: no problems found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl RedbStore {
    /// Checks the file's invariants: every object decodes and is filed under
    /// its class's base class, every sequence is past the largest id of its
    /// base class and region, every provider reference points at an object
    /// that carries it, the attribute index holds exactly the objects'
    /// indexed values, and the scheduled-work tables agree.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        let seqs = txn.open_table(SEQUENCES).map_err(backend)?;
        let refs = txn.open_table(EMS_REFS).map_err(backend)?;
        let index = txn.open_table(ATTR_INDEX).map_err(backend)?;
        let mut indexed = 0u64;
        let mut max_by_seq = std::collections::BTreeMap::<String, i64>::new();
        for entry in objects.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (base, id) = k.value();
            report.objects += 1;
            report.max_id = report.max_id.max(Some(id));
            let m = max_by_seq.entry(seq_key(base, region_of(id))).or_insert(id);
            *m = (*m).max(id);
            match decode_object(v.value()) {
                Ok(obj) => {
                    if base_class(&obj.class) != Some(base) {
                        report
                            .problems
                            .push(format!("{base} [{id}] holds a {}", obj.class));
                    }
                    for (attr, value) in index_entries(&obj.attrs) {
                        indexed += 1;
                        let key = index_entry_key(base, attr, &value, id);
                        if index.get(key.as_slice()).map_err(backend)?.is_none() {
                            report
                                .problems
                                .push(format!("{base} [{id}] {attr} is not indexed"));
                        }
                    }
                }
                Err(e) => report.problems.push(format!("{base} [{id}]: {e}")),
            }
        }
        for (key, max) in max_by_seq {
            let next = seqs.get(key.as_str()).map_err(backend)?.map(|g| g.value());
            if next.is_none_or(|n| n <= max) {
                report
                    .problems
                    .push(format!("sequence {key} is {next:?}, not past id {max}"));
            }
        }
        for entry in refs.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (base, ems_id, r) = k.value();
            let id = v.value();
            report.ems_refs += 1;
            let ok = load_from(&objects, base, id)?.is_some_and(|o| {
                ref_keys(&o.attrs).is_some_and(|(e, rs)| e == ems_id && rs.iter().any(|x| x == r))
            });
            if !ok {
                report.problems.push(format!(
                    "ems_ref ({base}, {ems_id}, {r}) points at {id}, which does not carry it"
                ));
            }
        }
        let index_len = index.len().map_err(backend)?;
        if index_len != indexed {
            report.problems.push(format!(
                "attr_index has {index_len} entries for {indexed} indexed values"
            ));
        }
        drop((objects, seqs, refs, index));
        let (scheduled, problems) = schedule::verify_in(&txn)?;
        report.scheduled = scheduled;
        report.problems.extend(problems);
        Ok(report)
    }
}
