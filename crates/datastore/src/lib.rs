//! The automate datastore: domains → namespaces → classes → instances and
//! methods, on disk in ManageIQ's YAML export layout ([`fs`]), held as the
//! documents that were read ([`model`]), compiled into an immutable
//! case-insensitive overlay [`Index`] that the engine resolves against.
//!
//! [`Datastore`] owns a root directory and the current index; [`Datastore::reload`]
//! builds a new index and swaps it in atomically, so a running engine keeps
//! the index it started with until its next lookup.

#![deny(missing_docs)]

pub mod describe;
pub mod dirs;
pub mod edit;
pub mod export;
pub mod fs;
pub mod git;
pub mod import;
pub mod index;
pub mod model;
pub mod reload;
pub mod scaffold;
pub mod settings;
pub mod swap;
pub mod tests_file;
pub mod validate;
pub mod validate_ruby;
pub mod yaml;
pub mod zip_safety;

pub use export::{export, ExportOptions};
pub use fs::{LoadReport, Problem};
pub use import::{import, ImportOptions};
pub use index::{AeType, ClassDef, DomainInfo, FieldDef, Index, InstanceDef, MethodDef, ValueDef};
pub use model::{Class, Domain, Instance, Method, Namespace, Source};
pub use reload::{Reload, ReloadProblem, ReloadReport};
pub use validate::validate;

use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A datastore root and its current index.
#[derive(Debug)]
pub struct Datastore {
    root: PathBuf,
    index: ArcSwap<Index>,
    /// Each domain's fingerprint as last installed: which domains a
    /// reload changes ([`reload`]).
    fingerprints: Mutex<Vec<reload::Fingerprint>>,
}

/// A datastore read and indexed but not yet swapped in
/// ([`Datastore::candidate`], [`Datastore::install`]).
#[derive(Debug)]
pub struct Candidate {
    /// The new index.
    pub index: Arc<Index>,
    /// Every problem reading it (errors and warnings).
    pub problems: Vec<Problem>,
    /// How many domains it holds.
    pub domains: usize,
    fingerprints: Vec<reload::Fingerprint>,
}

impl Candidate {
    /// Reads every domain under `root` into a new index (the datastore's
    /// own temp and journal files, `.import-*`, are not domains and are
    /// skipped as [`fs::read_root`] skips them).
    pub fn read(root: &Path) -> Candidate {
        let report = fs::read_root(root);
        Candidate {
            index: Arc::new(Index::build(&report.domains)),
            problems: report.problems,
            domains: report.domains.len(),
            fingerprints: reload::fingerprints(&report.domains),
        }
    }

    /// The problems that are errors (not warnings).
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.warning)
    }
}

impl Datastore {
    /// Loads every domain under `root`. Bad files are reported and skipped;
    /// the rest loads. Symbolic links in the tree are reported and never
    /// followed ([`fs::read_root`]).
    ///
    /// First, what a killed import left in `root` is cleaned up: an
    /// `--overwrite` interrupted between its two renames is rolled back (the
    /// old domain goes back in place) and `.import-*` directories no live
    /// process holds are removed ([`swap::clean_debris`]).
    pub fn open(root: &Path) -> (Datastore, Vec<Problem>) {
        swap::clean_debris(root, swap::IMPORT_PREFIX);
        let c = Candidate::read(root);
        let ds = Datastore {
            root: root.to_path_buf(),
            index: ArcSwap::new(c.index),
            fingerprints: Mutex::new(c.fingerprints),
        };
        (ds, c.problems)
    }

    /// A datastore over domains already in memory (tests, benchmarks).
    pub fn from_domains(root: &Path, domains: &[Domain]) -> Datastore {
        Datastore {
            root: root.to_path_buf(),
            index: ArcSwap::from_pointee(Index::build(domains)),
            fingerprints: Mutex::new(reload::fingerprints(domains)),
        }
    }

    /// The datastore root directory: one child directory per domain.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The current index. Cheap; hold it for the length of one instantiation.
    pub fn index(&self) -> Arc<Index> {
        self.index.load_full()
    }

    /// Re-reads the root and swaps the new index in, whatever its
    /// problems (a service reloads all-or-nothing with [`Datastore::candidate`]
    /// and [`Datastore::install`] instead).
    pub fn reload(&self) -> Vec<Problem> {
        let c = self.candidate();
        let problems = c.problems.clone();
        self.install(c);
        problems
    }

    /// Reads the root into a new index without swapping it in.
    pub fn candidate(&self) -> Candidate {
        Candidate::read(&self.root)
    }

    /// Swaps `candidate`'s index in (a caller holding the old one keeps it)
    /// and returns the names of the domains added, removed or changed
    /// since the last install, in name order.
    pub fn install(&self, candidate: Candidate) -> Vec<String> {
        let mut fp = self.fingerprints.lock().unwrap_or_else(|e| e.into_inner());
        let changed = reload::changed(&fp, &candidate.fingerprints);
        self.index.store(candidate.index);
        *fp = candidate.fingerprints;
        changed
    }
}
