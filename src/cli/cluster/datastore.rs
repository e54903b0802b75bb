//! The datastore shared through PostgreSQL, hot-reloaded on every node.
//!
//! In cluster mode PostgreSQL holds the datastore (`automate_postgres::
//! datastore`: each domain's files, a digest, a version) and every node
//! keeps its own datastore root equal to it. [`start`] (called by the
//! composition root with the node's pool, root, reloader and name):
//!
//! * **At start**: when PostgreSQL holds no domain, this node seeds the
//!   cluster (every local domain is published). Otherwise the local root is
//!   made equal to PostgreSQL's domains (the changed and missing ones
//!   written, those PostgreSQL does not hold removed) and reloaded once.
//! * **A change made here** (an import, a domain action of the API, a file
//!   edited under the root and seen by the watcher, SIGHUP: anything that
//!   ends in a successful reload, which [`Reloader::observe`] reports):
//!   each local domain's digest is compared with the one this node last
//!   saw in PostgreSQL, and the domains that differ are published (those
//!   gone from the root are removed). A domain this node just pulled has
//!   the digest it saw: it does not bounce back.
//! * **A change made elsewhere**: on `NOTIFY datastore_<schema>` (and every
//!   [`POLL`] besides, in case a notification was lost while the
//!   listening connection was down) the domains whose version differs from
//!   the one this node holds are fetched, written with an atomic directory
//!   swap each and the datastore reloaded.
//!
//! **Never half a domain.** PostgreSQL changes a domain in one transaction
//! and a fetch reads it in one snapshot, checked against its digest; on
//! disk each domain is replaced by one `renameat2(RENAME_EXCHANGE)`
//! (`automate_datastore::swap`), so the root holds the old or the new
//! domain, never a mix. The reload is all-or-nothing; when it fails (a
//! domain another node published does not load here) the domains written
//! are put back as they were, the node keeps running on its datastore and
//! says why on evm.log (`MIQ(Datastore#sync) ... not taken`), and it takes
//! the next version of that domain when one comes. Two nodes changing one
//! domain at once: the later commit in PostgreSQL has the higher version
//! and every node ends on it (last writer wins).
//!
//! **One bad domain stops no other.** A local domain that cannot be
//! published (a file name PostgreSQL's copy refuses, such as one with a
//! `\\`; an unreadable file) is left out: the others are published, the
//! node says why on evm.log (`MIQ(Datastore#sync) domain ... not
//! published`) and in `/api/health`'s `warnings` until the domain changes
//! and publishes; PostgreSQL's copy of it (if any) is neither replaced nor
//! removed meanwhile.
//!
//! All the work runs on one thread of its own, in order; the observer and
//! the listener only wake it.

use anyhow::Context;
use automate_control::Reloader;
use automate_datastore::dirs::domain_dirs;
use automate_datastore::swap::{swap_in, Workdir, IMPORT_PREFIX};
use automate_postgres::datastore::{
    self as shared, DatastoreError, DomainFiles, DomainMeta, ListenEvent, Listening,
};
use automate_postgres::Pg;
use automate_vmdb::health::StoreHealth;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The safety net: PostgreSQL's versions are compared at least this often
/// even without a notification.
pub const POLL: Duration = Duration::from_secs(5);

/// A [`Seen::version`] for a domain this node keeps although PostgreSQL no
/// longer holds it (its removal did not load here).
const KEPT: i64 = 0;
/// A [`Seen::version`] for a local domain whose version is not known yet
/// (at start): PostgreSQL's decides.
const UNKNOWN: i64 = -1;

/// The sync of one node's datastore root with PostgreSQL; stops (and waits
/// for its thread) when dropped.
pub struct DatastoreSync {
    wake: Sender<Wake>,
    thread: Option<JoinHandle<()>>,
    _listening: Listening,
}

impl std::fmt::Debug for DatastoreSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatastoreSync").finish_non_exhaustive()
    }
}

impl Drop for DatastoreSync {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What wakes the sync thread.
#[derive(Debug)]
enum Wake {
    /// A reload succeeded on this node.
    Reloaded,
    /// PostgreSQL announced a change.
    Changed { domain: String, version: i64 },
    /// Listening (again): notifications may have been missed.
    Connected,
    /// The handle was dropped.
    Stop,
}

/// What this node last saw of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// PostgreSQL's version ([`KEPT`], [`UNKNOWN`]).
    version: i64,
    /// The digest of the domain this node has on disk (and runs), `None`
    /// when it has none (a version that did not load here).
    local: Option<String>,
}

/// Starts syncing the datastore `root` of node `node` with PostgreSQL:
/// the first reconciliation (see the module doc) is done before it
/// returns (so the node starts on the cluster's datastore), then a thread
/// and a listening connection (on `pg`'s runtime) keep it in sync until
/// the handle is dropped. The listening connection's task runs on
/// `handle` (any multi-threaded runtime: `pg`'s own, or the service's).
/// Call it from a thread that may block: not from inside async code
/// (there, through `tokio::task::block_in_place` or `spawn_blocking`).
pub fn start(
    pg: Arc<Pg>,
    root: &Path,
    reloader: Arc<Reloader>,
    node: &str,
    handle: tokio::runtime::Handle,
) -> anyhow::Result<DatastoreSync> {
    start_reporting(pg, root, reloader, node, handle, None)
}

/// [`start`], reporting the local domains it cannot publish to `health`
/// (its warnings, shown by `/api/health`).
pub fn start_reporting(
    pg: Arc<Pg>,
    root: &Path,
    reloader: Arc<Reloader>,
    node: &str,
    handle: tokio::runtime::Handle,
    health: Option<Arc<StoreHealth>>,
) -> anyhow::Result<DatastoreSync> {
    let mut sync = Sync {
        pg: pg.clone(),
        root: root.to_path_buf(),
        reloader: reloader.clone(),
        node: node.to_string(),
        seen: BTreeMap::new(),
        health,
        refused: BTreeMap::new(),
    };
    sync.first()?;
    let (tx, rx) = channel();
    {
        let tx = tx.clone();
        reloader.observe(move |report| {
            if report.ok {
                let _ = tx.send(Wake::Reloaded);
            }
        });
    }
    let listening = {
        let tx = tx.clone();
        shared::listen_on(&handle, pg, move |event| {
            let _ = tx.send(match event {
                ListenEvent::Connected { .. } => Wake::Connected,
                ListenEvent::Changed { domain, version } => Wake::Changed { domain, version },
            });
        })
    };
    let thread = std::thread::Builder::new()
        .name("automate-ds-sync".into())
        .spawn(move || sync.run(rx))
        .context("starting the datastore sync thread")?;
    Ok(DatastoreSync {
        wake: tx,
        thread: Some(thread),
        _listening: listening,
    })
}

/// A change to make on disk.
#[derive(Debug)]
enum Change {
    /// Write this version of the domain.
    Write {
        name: String,
        version: i64,
        by: String,
        files: DomainFiles,
    },
    /// Remove the domain (PostgreSQL no longer holds it).
    Remove { name: String },
}

impl Change {
    fn name(&self) -> &str {
        match self {
            Change::Write { name, .. } | Change::Remove { name } => name,
        }
    }
}

/// A local domain as read from the root.
struct Local {
    files: DomainFiles,
    meta: DomainMeta,
}

/// The sync thread's state.
struct Sync {
    pg: Arc<Pg>,
    root: PathBuf,
    reloader: Arc<Reloader>,
    node: String,
    /// Per domain (directory name), what this node last saw.
    seen: BTreeMap<String, Seen>,
    /// Where refused domains are reported (`/api/health`'s warnings).
    health: Option<Arc<StoreHealth>>,
    /// Local domains that could not be published, with the digest refused
    /// (not tried again until the domain changes).
    refused: BTreeMap<String, Option<String>>,
}

/// Whether a publish failure is the domain's own (trying again without
/// changing it fails again), not PostgreSQL's.
fn the_domains_fault(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<DatastoreError>(),
        Some(
            DatastoreError::BadName(_) | DatastoreError::BadPath { .. } | DatastoreError::Io { .. }
        )
    )
}

impl Sync {
    /// The first reconciliation: seed PostgreSQL, or take its domains.
    fn first(&mut self) -> anyhow::Result<()> {
        if self.root.join(automate_datastore::fs::DOMAIN_FILE).exists() {
            anyhow::bail!(
                "the datastore root {} is a domain itself: cluster mode shares a root of domain \
                 directories",
                self.root.display()
            );
        }
        let remote = self.block(|pg| async move { shared::list(&pg).await })?;
        let (local, unreadable) = local_domains(&self.root)?;
        for (name, e) in unreadable {
            self.refuse(&name, None, &e);
        }
        if remote.is_empty() {
            tracing::info!(target: "evm", "MIQ(Datastore#sync) PostgreSQL holds no domain: node {} seeds it with its {} domain(s)", self.node, local.len());
            for (name, domain) in local {
                match self.publish(&name, &domain) {
                    Err(e) if the_domains_fault(&e) => {
                        self.refuse(&name, Some(domain.files.digest()), &e)
                    }
                    other => other?,
                }
            }
            return Ok(());
        }
        for (name, domain) in &local {
            self.seen.insert(
                name.clone(),
                Seen {
                    version: UNKNOWN,
                    local: Some(domain.files.digest()),
                },
            );
        }
        self.pull()
    }

    /// Runs until told to stop.
    fn run(mut self, rx: Receiver<Wake>) {
        let mut last_pull = Instant::now();
        // A local change not published yet (PostgreSQL was away): tried
        // again at each wake until it goes out.
        let mut unpublished = false;
        loop {
            let first = match rx.recv_timeout(POLL.saturating_sub(last_pull.elapsed())) {
                Ok(w) => Some(w),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut reloaded = false;
            let mut pull = first.is_none();
            for wake in first.into_iter().chain(rx.try_iter()) {
                match wake {
                    Wake::Stop => return,
                    Wake::Reloaded => reloaded = true,
                    Wake::Connected => pull = true,
                    Wake::Changed { domain, version } => {
                        // This node's own change comes back: nothing to do.
                        pull |= self.seen.get(&domain).map(|s| s.version) != Some(version);
                    }
                }
            }
            // A change made here first: it is the later one.
            if reloaded || unpublished {
                unpublished = false;
                if let Err(e) = self.push() {
                    unpublished = true;
                    tracing::error!(target: "evm", "MIQ(Datastore#sync) publishing this node's domains (tried again in {} s): {e:#}", POLL.as_secs());
                }
            }
            if pull || last_pull.elapsed() >= POLL {
                last_pull = Instant::now();
                if let Err(e) = self.pull() {
                    tracing::error!(target: "evm", "MIQ(Datastore#sync) reading PostgreSQL's domains: {e:#}");
                }
            }
        }
    }

    /// Reports a local domain that cannot be published (once per digest):
    /// evm.log and `/api/health`'s warnings. What this node knows of
    /// PostgreSQL's copy stays: the domain is neither pulled over the
    /// local change nor removed.
    fn refuse(&mut self, name: &str, digest: Option<String>, e: &anyhow::Error) {
        if self.refused.get(name) == Some(&digest) {
            return;
        }
        let message = format!(
            "domain {name} on node {} is not published to PostgreSQL (the other domains are): {e:#}; fix it under the datastore root",
            self.node
        );
        tracing::error!(target: "evm", "MIQ(Datastore#sync) {message}");
        if let Some(h) = &self.health {
            h.warn(&format!("datastore.{name}"), message);
        }
        if let Some(d) = &digest {
            let version = self.seen.get(name).map_or(KEPT, |s| s.version);
            self.seen.insert(
                name.to_string(),
                Seen {
                    version,
                    local: Some(d.clone()),
                },
            );
        }
        self.refused.insert(name.to_string(), digest);
    }

    /// A domain refused before is published (or gone): no more warning.
    fn accept(&mut self, name: &str) {
        if self.refused.remove(name).is_some() {
            tracing::info!(target: "evm", "MIQ(Datastore#sync) domain {name} on node {} is published again", self.node);
            if let Some(h) = &self.health {
                h.clear_warning(&format!("datastore.{name}"));
            }
        }
    }

    /// Runs `f` on the driver's runtime and waits.
    fn block<T, F>(&self, f: impl FnOnce(Arc<Pg>) -> F) -> Result<T, DatastoreError>
    where
        F: std::future::Future<Output = Result<T, DatastoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.pg.block(f(self.pg.clone()))?
    }

    /// Publishes one local domain and remembers its version.
    fn publish(&mut self, name: &str, domain: &Local) -> anyhow::Result<()> {
        let (n, meta, files, node) = (
            name.to_string(),
            domain.meta.clone(),
            domain.files.clone(),
            self.node.clone(),
        );
        let published = self
            .block(|pg| async move { shared::publish(&pg, &n, &meta, &files, &node).await })
            .with_context(|| format!("publishing domain {name}"))?;
        if published.changed {
            tracing::info!(target: "evm", "MIQ(Datastore#sync) domain {name} changed on node {}: published as version {}", self.node, published.version);
        }
        self.accept(name);
        self.seen.insert(
            name.to_string(),
            Seen {
                version: published.version,
                local: Some(domain.files.digest()),
            },
        );
        Ok(())
    }

    /// Publishes the local domains that differ from what this node last
    /// saw in PostgreSQL, and removes those gone from the root.
    /// A domain that cannot be published is reported and left out; the
    /// others go on. A failure of PostgreSQL is answered (after the others
    /// were tried), to be tried again.
    fn push(&mut self) -> anyhow::Result<()> {
        let (local, unreadable) = local_domains(&self.root)?;
        for (name, e) in &unreadable {
            self.refuse(name, None, e);
        }
        let mut failed = None;
        for (name, domain) in &local {
            let digest = domain.files.digest();
            if self.seen.get(name).and_then(|s| s.local.as_ref()) == Some(&digest) {
                continue;
            }
            match self.publish(name, domain) {
                Ok(()) => {}
                Err(e) if the_domains_fault(&e) => self.refuse(name, Some(digest), &e),
                Err(e) => {
                    tracing::warn!(target: "evm", "MIQ(Datastore#sync) {e:#}");
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // An unreadable domain is not gone: PostgreSQL keeps its copy.
        let gone: Vec<String> = self
            .seen
            .iter()
            .filter(|(name, s)| {
                s.local.is_some() && !local.contains_key(*name) && !unreadable.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            let (n, node) = (name.clone(), self.node.clone());
            let removed = self
                .block(|pg| async move { shared::remove(&pg, &n, &node).await })
                .with_context(|| format!("removing domain {name}"))?;
            if let Some(version) = removed {
                tracing::info!(target: "evm", "MIQ(Datastore#sync) domain {name} removed on node {}: removed from PostgreSQL (version {version})", self.node);
            }
            self.seen.remove(&name);
            self.accept(&name);
        }
        Ok(())
    }

    /// Takes the domains whose version in PostgreSQL differs from the one
    /// this node saw (see the module doc).
    fn pull(&mut self) -> anyhow::Result<()> {
        let remote = self.block(|pg| async move { shared::list(&pg).await })?;
        let mut changes = Vec::new();
        let mut forget = Vec::new();
        for (name, seen) in &self.seen {
            if seen.version != KEPT && !remote.iter().any(|r| &r.name == name) {
                if existing(&self.root, name).is_some() {
                    changes.push(Change::Remove { name: name.clone() });
                } else {
                    forget.push(name.clone());
                }
            }
        }
        for name in forget {
            self.seen.remove(&name);
        }
        for r in &remote {
            if self.seen.get(&r.name).map(|s| s.version) == Some(r.version) {
                continue;
            }
            if !shared::plain_domain_name(&r.name) {
                tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {:?} version {} (from node {}) not taken: not a directory name", r.name, r.version, r.updated_by);
                self.seen.insert(
                    r.name.clone(),
                    Seen {
                        version: r.version,
                        local: None,
                    },
                );
                continue;
            }
            let dir = self.root.join(&r.name);
            let here = if dir.is_dir() {
                match DomainFiles::read_dir(&dir) {
                    Ok(files) => Some(files.digest()),
                    Err(e) => {
                        // Left as it is (not overwritten unseen); the
                        // other domains go on.
                        tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {} version {} (from node {}) not taken: the local copy cannot be read: {e}", r.name, r.version, r.updated_by);
                        continue;
                    }
                }
            } else {
                None
            };
            if here.as_ref() == Some(&r.digest) {
                // Already here (seeded, or written by hand the same).
                self.seen.insert(
                    r.name.clone(),
                    Seen {
                        version: r.version,
                        local: here,
                    },
                );
                continue;
            }
            if let Some(seen) = self.seen.get(&r.name) {
                if seen.version > 0 && here.is_some() && seen.local != here {
                    tracing::warn!(target: "evm", "MIQ(Datastore#sync) domain {} changed here and (version {}) on node {}: the cluster's version wins, this node's change is dropped", r.name, r.version, r.updated_by);
                }
            }
            let name = r.name.clone();
            match self.block(|pg| async move { shared::fetch(&pg, &name).await }) {
                Ok(Some(fetched)) => changes.push(Change::Write {
                    name: r.name.clone(),
                    version: fetched.version.version,
                    by: fetched.version.updated_by,
                    files: fetched.files,
                }),
                // Removed since the list: the next pull sees it gone.
                Ok(None) => {}
                // Stored wrong: this version is never taken (the next is).
                Err(
                    e @ (DatastoreError::BadPath { .. } | DatastoreError::DigestMismatch { .. }),
                ) => {
                    tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {} version {} (from node {}) not taken: {e}", r.name, r.version, r.updated_by);
                    self.seen.insert(
                        r.name.clone(),
                        Seen {
                            version: r.version,
                            local: here,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {} version {}: cannot be fetched (tried again in {} s): {e}", r.name, r.version, POLL.as_secs())
                }
            }
        }
        // Removals first: a domain renamed in case is removed, then written.
        changes.sort_by_key(|c| matches!(c, Change::Write { .. }));
        if !changes.is_empty() {
            self.apply(changes);
        }
        Ok(())
    }

    /// Writes `changes` and reloads; when the reload fails, puts them
    /// back and tries each alone, so that one domain that does not load
    /// keeps only itself out.
    fn apply(&mut self, changes: Vec<Change>) {
        // What each domain is on disk now, to put back.
        let mut batch = Vec::new();
        for change in changes {
            let dir = self.root.join(change.name());
            let before = if dir.is_dir() {
                match DomainFiles::read_dir(&dir) {
                    Ok(files) => Some(files),
                    Err(e) => {
                        tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {}: not changed, its directory cannot be read: {e}", change.name());
                        continue;
                    }
                }
            } else {
                None
            };
            batch.push((change, before));
        }
        let mut written = Vec::new();
        for (change, before) in batch {
            match self.make(&change) {
                Ok(()) => written.push((change, before)),
                Err(e) => {
                    // Not swapped in: nothing to put back.
                    tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {}: cannot be written: {e:#}", change.name());
                }
            }
        }
        if written.is_empty() {
            return;
        }
        let report = self.reloader.reload_now();
        if report.ok {
            for (change, _) in written {
                self.taken(change);
            }
            return;
        }
        for (change, before) in &written {
            self.restore(change, before.as_ref());
        }
        if written.len() == 1 {
            for (change, before) in written {
                self.refused(change, before, &report);
            }
            return;
        }
        for (change, before) in written {
            if let Err(e) = self.make(&change) {
                tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {}: cannot be written: {e:#}", change.name());
                continue;
            }
            let report = self.reloader.reload_now();
            if report.ok {
                self.taken(change);
            } else {
                self.restore(&change, before.as_ref());
                self.refused(change, before, &report);
            }
        }
    }

    /// Makes `change` on disk.
    fn make(&self, change: &Change) -> anyhow::Result<()> {
        match change {
            Change::Write { name, files, .. } => write_domain(&self.root, name, files),
            Change::Remove { name } => remove_domain(&self.root, name),
        }
    }

    /// Puts the domain of `change` back as it was (`before`; `None`:
    /// absent), unless it changed on disk since it was written (an import
    /// or an edit on this node meanwhile: left as it is, its own reload
    /// publishes it).
    fn restore(&self, change: &Change, before: Option<&DomainFiles>) {
        let name = change.name();
        let written = match change {
            Change::Write { files, .. } => Some(files.digest()),
            Change::Remove { .. } => None,
        };
        let now = match existing(&self.root, name).map(|dir| DomainFiles::read_dir(&dir)) {
            None => None,
            Some(Ok(files)) => Some(files.digest()),
            Some(Err(e)) => {
                tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {name}: not put back, it cannot be read: {e}");
                return;
            }
        };
        if now != written {
            tracing::warn!(target: "evm", "MIQ(Datastore#sync) domain {name}: changed on this node since it was written, left as it is");
            return;
        }
        let done = match before {
            Some(files) => write_domain(&self.root, name, files),
            None => remove_domain(&self.root, name),
        };
        if let Err(e) = done {
            tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {name}: cannot be put back as it was: {e:#}");
        }
    }

    /// A change that loaded.
    fn taken(&mut self, change: Change) {
        match change {
            Change::Write {
                name,
                version,
                by,
                files,
            } => {
                tracing::info!(target: "evm", "MIQ(Datastore#sync) domain {name} version {version} (from node {by}) taken");
                self.seen.insert(
                    name,
                    Seen {
                        version,
                        local: Some(files.digest()),
                    },
                );
            }
            Change::Remove { name } => {
                tracing::info!(target: "evm", "MIQ(Datastore#sync) domain {name} removed (PostgreSQL no longer holds it)");
                self.seen.remove(&name);
            }
        }
    }

    /// A change that did not load: the node keeps what it has until the
    /// domain changes again (here or in PostgreSQL).
    fn refused(
        &mut self,
        change: Change,
        before: Option<DomainFiles>,
        report: &automate_datastore::ReloadReport,
    ) {
        let why: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        let local = before.as_ref().map(DomainFiles::digest);
        match change {
            Change::Write {
                name, version, by, ..
            } => {
                tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {name} version {version} (from node {by}) not taken: it does not load here, the running datastore is kept: {}", why.join("; "));
                self.seen.insert(name, Seen { version, local });
            }
            Change::Remove { name } => {
                tracing::error!(target: "evm", "MIQ(Datastore#sync) domain {name} not removed: the datastore does not load without it, the running datastore is kept: {}", why.join("; "));
                self.seen.insert(
                    name,
                    Seen {
                        version: KEPT,
                        local,
                    },
                );
            }
        }
    }
}

/// The domains of the root (each child directory with `__domain__.yaml`),
/// read whole.
/// The domains under `root`, and those that cannot be read (with why).
#[allow(clippy::type_complexity)]
fn local_domains(
    root: &Path,
) -> anyhow::Result<(BTreeMap<String, Local>, BTreeMap<String, anyhow::Error>)> {
    let (dirs, _) = domain_dirs(root)
        .with_context(|| format!("reading the datastore root {}", root.display()))?;
    let mut local = BTreeMap::new();
    let mut unreadable = BTreeMap::new();
    for d in dirs {
        let files = match DomainFiles::read_dir(&d.path) {
            Ok(files) => files,
            Err(e) => {
                unreadable.insert(d.dir_name, anyhow::Error::new(e));
                continue;
            }
        };
        let commit = files
            .get(automate_datastore::fs::DOMAIN_FILE)
            .and_then(|text| std::str::from_utf8(text).ok())
            .and_then(|text| {
                automate_datastore::fs::parse_doc(text, &d.path, &mut Vec::new())?
                    .attr_str("commit_sha")
                    .map(str::to_string)
            });
        let meta = DomainMeta {
            priority: d.info.priority,
            enabled: d.info.enabled,
            source: d.info.source.as_str().to_string(),
            commit,
        };
        local.insert(d.dir_name, Local { files, meta });
    }
    Ok((local, unreadable))
}

/// The directory of the domain `name` in `root`, in whatever case it is
/// there.
fn existing(root: &Path, name: &str) -> Option<PathBuf> {
    let exact = root.join(name);
    if exact.is_dir() {
        return Some(exact);
    }
    domain_dirs(root)
        .ok()?
        .0
        .into_iter()
        .find(|d| d.dir_name.eq_ignore_ascii_case(name))
        .map(|d| d.path)
}

/// Replaces (or creates) the domain `name` in `root` with `files` in one
/// step: written whole in a work directory of the root, then swapped in.
pub fn write_domain(root: &Path, name: &str, files: &DomainFiles) -> anyhow::Result<()> {
    if !shared::plain_domain_name(name) {
        anyhow::bail!("{name:?} is not a domain name");
    }
    let work = Workdir::new_in(root, IMPORT_PREFIX)
        .with_context(|| format!("making a work directory in {}", root.display()))?;
    let new = work.path().join(name);
    files.write_into(name, &new)?;
    let dest = root.join(name);
    let old = existing(root, name);
    swap_in(work, &new, &dest, old.as_deref())
        .with_context(|| format!("swapping in {}", dest.display()))
}

/// Removes the domain `name` from `root` in one step (moved into a work
/// directory, then deleted). Nothing to do when it is not there.
pub fn remove_domain(root: &Path, name: &str) -> anyhow::Result<()> {
    let Some(old) = existing(root, name) else {
        return Ok(());
    };
    let work = Workdir::new_in(root, IMPORT_PREFIX)
        .with_context(|| format!("making a work directory in {}", root.display()))?;
    std::fs::rename(&old, work.path().join(name))
        .with_context(|| format!("moving {} aside", old.display()))?;
    work.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_is_written_swapped_and_removed_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut one = DomainFiles::new();
        one.insert("__domain__.yaml", "a");
        one.insert("Ns/x.yaml", "1");
        write_domain(root, "D", &one).unwrap();
        assert_eq!(DomainFiles::read_dir(&root.join("D")).unwrap(), one);
        let mut two = DomainFiles::new();
        two.insert("__domain__.yaml", "b");
        write_domain(root, "D", &two).unwrap();
        assert_eq!(
            DomainFiles::read_dir(&root.join("D")).unwrap(),
            two,
            "the old files are gone with the old directory"
        );
        remove_domain(root, "d").unwrap();
        assert!(!root.join("D").exists());
        remove_domain(root, "D").unwrap();
        let left: Vec<_> = std::fs::read_dir(root).unwrap().flatten().collect();
        assert!(left.is_empty(), "no work directory left: {left:?}");
        assert!(write_domain(root, "../x", &one).is_err());
    }
}
