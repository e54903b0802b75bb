//! The integrity check of `automate db check`: [`check`] copies the
//! store's file aside, runs redb's own check on the copy, and reads it back
//! through [`RedbStore`] ([`RedbStore::verify`]); [`CheckReport`] is what
//! it found. It uses both the file layer (`file`) and the store, so
//! neither of those calls the other back.

use crate::file::{guard, open_read_only};
use crate::{backend, RedbStore};
use automate_vmdb::{BackendError, StoreError};
use redb::Database;
use std::path::Path;

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    /// Objects read (`objects` rows).
    pub objects: u64,
    /// Provider references (`ems_refs` rows) read.
    pub ems_refs: u64,
    /// Scheduled items (claimed ones included).
    pub scheduled: u64,
    /// What is wrong (empty: the file is sound).
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether the file is sound: no problems found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the store at `path` without touching it: copies it into
/// `scratch` (a directory), runs redb's integrity check on the copy
/// (which verifies every page's checksum, and may repair the copy), then
/// reads every object, reference and scheduled item of the copy and checks
/// the indexes ([`RedbStore::verify`]). A file in use by a running
/// process is refused (its bytes change under the copy): back it up with
/// `automate db backup` and check the backup.
pub fn check(path: &Path, scratch: &Path) -> Result<CheckReport, StoreError> {
    // Refuses a file another process has open (and one that is no redb file).
    match open_read_only(path) {
        Ok(db) => drop(db),
        Err(StoreError::NeedsRepair(_)) => {}
        Err(e) => return Err(e),
    }
    let copy = scratch.join("check.redb");
    std::fs::copy(path, &copy).map_err(|e| StoreError::Copy {
        from: path.display().to_string(),
        to: copy.display().to_string(),
        error: BackendError::new(e),
    })?;
    let mut report = CheckReport::default();
    let opened = guard(path, || {
        let mut db = Database::builder()
            .set_check_integrity_on_open(true)
            .open(&copy)
            .map_err(backend)?;
        db.check_integrity().map_err(backend)
    });
    match opened {
        Ok(true) => {}
        Ok(false) => report.problems.push(
            "redb's integrity check failed; it could repair the file (back to an earlier commit or without damaged pages): see docs/operations.md".into(),
        ),
        Err(e) => {
            report
                .problems
                .push(format!("redb's integrity check failed: {e}"));
            return Ok(report);
        }
    }
    let verified = guard(path, || {
        let store = RedbStore::open_read_only(&copy)?;
        let v = store.verify()?;
        let scheduled = store.schedule().len()?;
        Ok((v, scheduled))
    });
    match verified {
        Ok((v, scheduled)) => {
            report.objects = v.objects;
            report.ems_refs = v.ems_refs;
            report.scheduled = scheduled;
            report.problems.extend(v.problems);
        }
        Err(e) => report.problems.push(format!("reading every object: {e}")),
    }
    Ok(report)
}
