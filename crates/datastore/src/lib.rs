//! The automate datastore: domains → namespaces → classes → instances and
//! methods, on disk in ManageIQ's YAML export layout ([`fs`]), held as the
//! documents that were read ([`model`]), compiled into an immutable
//! case-insensitive overlay [`Index`] that the engine resolves against.
//!
//! [`Datastore`] owns a root directory and the current index; [`Datastore::reload`]
//! builds a new index and swaps it in atomically, so a running engine keeps
//! the index it started with until its next lookup.

#![deny(missing_docs)]

pub mod dirs;
pub mod export;
pub mod fs;
pub mod import;
pub mod index;
pub mod model;
pub mod settings;
pub mod swap;
pub mod validate;
pub mod yaml;
pub mod zip_safety;

pub use export::{export, ExportOptions};
pub use fs::{LoadReport, Problem};
pub use import::{import, ImportOptions};
pub use index::{AeType, ClassDef, DomainInfo, FieldDef, Index, InstanceDef, MethodDef, ValueDef};
pub use model::{Class, Domain, Instance, Method, Namespace, Source};
pub use validate::validate;

use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A datastore root and its current index.
#[derive(Debug)]
pub struct Datastore {
    root: PathBuf,
    index: ArcSwap<Index>,
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
        let report = fs::read_root(root);
        let index = Index::build(&report.domains);
        let ds = Datastore {
            root: root.to_path_buf(),
            index: ArcSwap::from_pointee(index),
        };
        (ds, report.problems)
    }

    /// A datastore over domains already in memory (tests, benchmarks).
    pub fn from_domains(root: &Path, domains: &[Domain]) -> Datastore {
        Datastore {
            root: root.to_path_buf(),
            index: ArcSwap::from_pointee(Index::build(domains)),
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

    /// Re-reads the root and swaps the new index in.
    pub fn reload(&self) -> Vec<Problem> {
        let report = fs::read_root(&self.root);
        self.index.store(Arc::new(Index::build(&report.domains)));
        report.problems
    }
}
