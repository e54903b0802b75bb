//! The datastore shared by every node of a cluster (migration 3), as
//! ManageIQ's VMDB holds its `miq_ae_*` tables: one `domains` row per
//! domain (name, priority, enabled, source, commit, the digest of its
//! files, a `version`, when and by which node it last changed) and its
//! files, each a relative path and its bytes, in `domain_files`.
//!
//! * [`publish`] replaces a domain's row and files in one transaction,
//!   under a lock shared by every writer of the datastore, takes the next
//!   value of the one `datastore_versions` sequence as its version and
//!   announces it with `NOTIFY datastore_<schema>, '<domain>:<version>'` (delivered
//!   at commit, so a node that hears of a version can read it whole). A
//!   domain published again with the same digest is left as it is: a
//!   change a node pulled does not come back as a new version.
//! * [`remove`] deletes a domain (its files go with it) and announces it
//!   the same way.
//! * [`list`] gives each domain's name, version and digest (no files),
//!   [`fetch`] one domain's files, read in one snapshot and checked against
//!   the row's digest: never a half-written domain.
//! * [`listen`] holds a connection of its own (`LISTEN datastore`) and
//!   hands each notification to a callback; when the server goes away it
//!   connects again with a growing pause and says so
//!   ([`ListenEvent::Connected`]), since notifications sent meanwhile are
//!   lost and the listener must compare versions again.
//!
//! Two nodes changing one domain at once: the writers' lock orders them,
//! the later commit has the higher version and wins.
//!
//! `NOTIFY` is database-wide, so the channel is named after the schema
//! ([`channel`]): clusters (and tests) kept in other schemas of the same
//! database do not hear each other.

use crate::{Pg, PgError};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The channel the changes of `pg`'s schema are announced on:
/// `datastore_<schema>` (at most 63 bytes, PostgreSQL's identifier limit;
/// the schema is a plain ASCII identifier).
pub fn channel(pg: &Pg) -> String {
    let mut c = format!("datastore_{}", pg.schema());
    c.truncate(63);
    c
}

/// The advisory lock every writer of the datastore holds for its
/// transaction (distinct from the migrations' key).
const WRITE_LOCK: i64 = 0x6175_746f_6473_7972; // "autodsyr"

/// The first pause before connecting again after the listening connection
/// failed; doubled each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between two attempts to listen again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A failure of the shared datastore.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// PostgreSQL failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// A domain name that cannot be a directory of a datastore root.
    #[error("{0:?} is not a domain name (a plain directory name)")]
    BadName(String),
    /// A file path that is not a plain relative path inside its domain
    /// (absolute, `..`, a part starting with `.`).
    #[error("domain {domain}: {path:?} is not a relative path inside the domain")]
    BadPath {
        /// The domain.
        domain: String,
        /// The path as stored.
        path: String,
    },
    /// The files read do not have the digest the row says: refused.
    #[error("domain {domain} version {version}: its files do not match its digest")]
    DigestMismatch {
        /// The domain.
        domain: String,
        /// The version read.
        version: i64,
    },
    /// Reading or writing a domain directory failed.
    #[error("{path}: {error}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

impl From<tokio_postgres::Error> for DatastoreError {
    fn from(e: tokio_postgres::Error) -> DatastoreError {
        DatastoreError::Pg(PgError::Sql(e))
    }
}

/// A domain's files: each path relative to the domain directory (parts
/// joined with `/`) and its bytes, in path order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainFiles {
    files: BTreeMap<String, Vec<u8>>,
}

/// Whether a file or directory name is left out of a domain: the
/// datastore's work files and editors' (a name starting with `.`, or
/// ending with `~`).
pub fn ignored_name(name: &str) -> bool {
    name.starts_with('.') || name.ends_with('~')
}

/// Whether `path` (parts joined with `/`) may be written inside a domain
/// directory: relative, every part a plain name that is not
/// [`ignored_name`].
pub fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && !ignored_name(part) && !part.contains(['\\', '\0']))
}

/// Whether `name` may be a domain directory in a datastore root.
pub fn plain_domain_name(name: &str) -> bool {
    !name.contains('/') && plain_relative(name)
}

impl DomainFiles {
    /// No file.
    pub fn new() -> DomainFiles {
        DomainFiles::default()
    }

    /// Adds (or replaces) the file at `path`.
    pub fn insert(&mut self, path: impl Into<String>, body: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), body.into());
    }

    /// The file at `path`.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it holds no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Every file, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(p, b)| (p.as_str(), b.as_slice()))
    }

    /// Every regular file under `dir`, but those [`ignored_name`] leaves out
    /// (and what is below such a directory). A symbolic link is never
    /// followed and never taken (the datastore refuses them), nor is a name
    /// that is not UTF-8; both are logged.
    pub fn read_dir(dir: &Path) -> Result<DomainFiles, DatastoreError> {
        let mut files = DomainFiles::new();
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| DatastoreError::Io { path, error }
        };
        while let Some((at, rel)) = pending.pop() {
            for entry in std::fs::read_dir(&at).map_err(io(&at))? {
                let entry = entry.map_err(io(&at))?;
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    tracing::warn!(target: "evm", "MIQ(Datastore#sync) {}: not a UTF-8 name, left out", path.display());
                    continue;
                };
                if ignored_name(&name) {
                    continue;
                }
                let rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let kind = entry.file_type().map_err(io(&path))?;
                if kind.is_dir() {
                    pending.push((path, rel));
                } else if kind.is_file() {
                    let body = std::fs::read(&path).map_err(io(&path))?;
                    files.insert(rel, body);
                } else {
                    tracing::warn!(target: "evm", "MIQ(Datastore#sync) {}: not a regular file (a link?), left out", path.display());
                }
            }
        }
        Ok(files)
    }

    /// Writes every file under `dir` (created with its parents). Refuses
    /// (before writing anything) a path that is not [`plain_relative`].
    pub fn write_into(&self, domain: &str, dir: &Path) -> Result<(), DatastoreError> {
        if let Some((path, _)) = self.iter().find(|(p, _)| !plain_relative(p)) {
            return Err(DatastoreError::BadPath {
                domain: domain.to_string(),
                path: path.to_string(),
            });
        }
        for (path, body) in self.iter() {
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|error| DatastoreError::Io {
                    path: parent.to_path_buf(),
                    error,
                })?;
            }
            std::fs::write(&file, body)
                .map_err(|error| DatastoreError::Io { path: file, error })?;
        }
        Ok(())
    }

    /// The SHA-256 of every path and body, in path order, in hex: equal
    /// for equal domains wherever they are read.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, body) in self.iter() {
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update((body.len() as u64).to_le_bytes());
            h.update(body);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What the `domains` row says besides the files (taken from the domain's
/// `__domain__.yaml` by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainMeta {
    /// Higher wins the overlay.
    pub priority: i64,
    /// Whether the overlay searches it.
    pub enabled: bool,
    /// `system`, `user`, `user_locked` or `remote`.
    pub source: String,
    /// The Git commit a remote domain was imported from.
    pub commit: Option<String>,
}

impl Default for DomainMeta {
    fn default() -> DomainMeta {
        DomainMeta {
            priority: 0,
            enabled: true,
            source: "user".into(),
            commit: None,
        }
    }
}

/// One domain as PostgreSQL holds it (without its files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainVersion {
    /// The domain's (directory) name.
    pub name: String,
    /// Its version: higher is newer, across all domains.
    pub version: i64,
    /// [`DomainFiles::digest`] of its files.
    pub digest: String,
    /// The node that made this version.
    pub updated_by: String,
}

/// One domain with its files ([`fetch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedDomain {
    /// Name, version, digest, node.
    pub version: DomainVersion,
    /// Priority, enabled, source, commit.
    pub meta: DomainMeta,
    /// When this version was made.
    pub updated_on: SystemTime,
    /// Its files, checked against the digest.
    pub files: DomainFiles,
}

/// What [`publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The domain's version now.
    pub version: i64,
    /// False when PostgreSQL already held these very files (nothing
    /// written, no notification).
    pub changed: bool,
}

/// A notification's payload: `<domain>:<version>`.
pub fn payload(domain: &str, version: i64) -> String {
    format!("{domain}:{version}")
}

/// Reads a notification's payload (the domain name may hold `:`).
pub fn parse_payload(payload: &str) -> Option<(String, i64)> {
    let (domain, version) = payload.rsplit_once(':')?;
    Some((domain.to_string(), version.parse().ok()?))
}

/// Makes `files` the domain `name`'s, with `meta`, as changed by `node`:
/// see the module doc. A domain of the same name in another case is
/// replaced.
pub async fn publish(
    pg: &Pg,
    name: &str,
    meta: &DomainMeta,
    files: &DomainFiles,
    node: &str,
) -> Result<Published, DatastoreError> {
    if !plain_domain_name(name) {
        return Err(DatastoreError::BadName(name.to_string()));
    }
    if let Some((path, _)) = files.iter().find(|(p, _)| !plain_relative(p)) {
        return Err(DatastoreError::BadPath {
            domain: name.to_string(),
            path: path.to_string(),
        });
    }
    let digest = files.digest();
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    let held = tx
        .query_opt(
            "SELECT name, digest, version FROM domains WHERE lower(name) = lower($1)",
            &[&name],
        )
        .await?;
    if let Some(row) = &held {
        let (held_name, held_digest, version): (String, String, i64) =
            (row.get(0), row.get(1), row.get(2));
        if held_name == name && held_digest == digest {
            return Ok(Published {
                version,
                changed: false,
            });
        }
        if held_name != name {
            tx.execute("DELETE FROM domains WHERE name = $1", &[&held_name])
                .await?;
        }
    }
    let version: i64 = tx
        .query_one("SELECT nextval('datastore_versions')", &[])
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO domains
             (name, priority, enabled, source, commit_sha, digest, version, updated_on, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8)
         ON CONFLICT (name) DO UPDATE SET
             priority = EXCLUDED.priority, enabled = EXCLUDED.enabled,
             source = EXCLUDED.source, commit_sha = EXCLUDED.commit_sha,
             digest = EXCLUDED.digest, version = EXCLUDED.version,
             updated_on = EXCLUDED.updated_on, updated_by = EXCLUDED.updated_by",
        &[
            &name,
            &meta.priority,
            &meta.enabled,
            &meta.source,
            &meta.commit,
            &digest,
            &version,
            &node,
        ],
    )
    .await?;
    tx.execute("DELETE FROM domain_files WHERE domain = $1", &[&name])
        .await?;
    let paths: Vec<&str> = files.iter().map(|(p, _)| p).collect();
    let bodies: Vec<&[u8]> = files.iter().map(|(_, b)| b).collect();
    tx.execute(
        "INSERT INTO domain_files (domain, path, body)
         SELECT $1, * FROM unnest($2::text[], $3::bytea[])",
        &[&name, &paths, &bodies],
    )
    .await?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&channel(pg), &payload(name, version)],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(target: "evm", "MIQ(Datastore#publish) domain {name} version {version} ({} files) published by node {node}", files.len());
    Ok(Published {
        version,
        changed: true,
    })
}

/// Removes the domain `name` (any case) and its files; the version of the
/// removal, `None` when PostgreSQL did not hold it.
pub async fn remove(pg: &Pg, name: &str, node: &str) -> Result<Option<i64>, DatastoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    let Some(row) = tx
        .query_opt(
            "DELETE FROM domains WHERE lower(name) = lower($1) RETURNING name",
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let removed: String = row.get(0);
    let version: i64 = tx
        .query_one("SELECT nextval('datastore_versions')", &[])
        .await?
        .get(0);
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&channel(pg), &payload(&removed, version)],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(target: "evm", "MIQ(Datastore#publish) domain {removed} removed (version {version}) by node {node}");
    Ok(Some(version))
}

/// Every domain PostgreSQL holds (name, version, digest, node), by name.
pub async fn list(pg: &Pg) -> Result<Vec<DomainVersion>, DatastoreError> {
    let client = pg.client().await?;
    let rows = client
        .query(
            "SELECT name, version, digest, updated_by FROM domains ORDER BY name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DomainVersion {
            name: r.get(0),
            version: r.get(1),
            digest: r.get(2),
            updated_by: r.get(3),
        })
        .collect())
}

/// The domain `name` (exact case) with its files, read in one snapshot and
/// checked against its digest; `None` when PostgreSQL does not hold it.
pub async fn fetch(pg: &Pg, name: &str) -> Result<Option<FetchedDomain>, DatastoreError> {
    let mut client = pg.client().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let Some(row) = tx
        .query_opt(
            "SELECT name, version, digest, updated_by, priority, enabled, source, commit_sha,
                    updated_on
             FROM domains WHERE name = $1",
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let version = DomainVersion {
        name: row.get(0),
        version: row.get(1),
        digest: row.get(2),
        updated_by: row.get(3),
    };
    let meta = DomainMeta {
        priority: row.get(4),
        enabled: row.get(5),
        source: row.get(6),
        commit: row.get(7),
    };
    let updated_on: SystemTime = row.get(8);
    let mut files = DomainFiles::new();
    for r in tx
        .query(
            "SELECT path, body FROM domain_files WHERE domain = $1",
            &[&name],
        )
        .await?
    {
        files.insert(r.get::<_, String>(0), r.get::<_, Vec<u8>>(1));
    }
    tx.commit().await?;
    if let Some((path, _)) = files.iter().find(|(p, _)| !plain_relative(p)) {
        return Err(DatastoreError::BadPath {
            domain: version.name,
            path: path.to_string(),
        });
    }
    if files.digest() != version.digest {
        return Err(DatastoreError::DigestMismatch {
            domain: version.name,
            version: version.version,
        });
    }
    Ok(Some(FetchedDomain {
        version,
        meta,
        updated_on,
        files,
    }))
}

/// What [`listen`] hands its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// Listening (again) on a new connection (its server process id):
    /// notifications sent while there was none are lost, compare versions.
    Connected {
        /// `pg_backend_pid()` of the listening connection.
        backend_pid: i32,
    },
    /// A domain changed or was removed.
    Changed {
        /// Its name.
        domain: String,
        /// The version of the change.
        version: i64,
    },
}

/// The listening task; stopped when dropped.
#[derive(Debug)]
pub struct Listening {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on [`channel`] on a connection of its own (on the driver's
/// runtime) and calls `on` with each event (see the module doc), until
/// the returned handle is dropped.
pub fn listen(pg: Arc<Pg>, on: impl FnMut(ListenEvent) + Send + 'static) -> Listening {
    let handle = pg.handle().clone();
    listen_on(&handle, pg, on)
}

/// [`listen`] with its task on the runtime `handle`.
pub fn listen_on(
    handle: &tokio::runtime::Handle,
    pg: Arc<Pg>,
    mut on: impl FnMut(ListenEvent) + Send + 'static,
) -> Listening {
    let task = handle.spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut connected = false;
            let why = match listen_once(&pg, &mut on, &mut connected).await {
                Ok(()) => "the connection closed".to_string(),
                Err(e) => e.to_string(),
            };
            if connected {
                backoff = MIN_BACKOFF;
            }
            tracing::warn!(target: "evm", "MIQ(Datastore#listen) not listening for datastore changes ({why}); again in {} ms", backoff.as_millis());
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    Listening { task }
}

/// Aborts the task it holds when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One listening connection, until it fails or closes.
async fn listen_once(
    pg: &Pg,
    on: &mut (impl FnMut(ListenEvent) + Send),
    connected: &mut bool,
) -> Result<(), DatastoreError> {
    let (client, mut connection) = pg.dedicated().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(Ok(n)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    }));
    let channel = channel(pg);
    // Quoted: the name keeps its case, as pg_notify's argument does.
    client
        .batch_execute(&format!("LISTEN \"{channel}\""))
        .await?;
    let backend_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    *connected = true;
    tracing::info!(target: "evm", "MIQ(Datastore#listen) listening on {channel} (backend {backend_pid})");
    on(ListenEvent::Connected { backend_pid });
    while let Some(message) = rx.recv().await {
        let n = message?;
        match parse_payload(n.payload()) {
            Some((domain, version)) => on(ListenEvent::Changed { domain, version }),
            None => {
                tracing::warn!(target: "evm", "MIQ(Datastore#listen) notification {:?} is not <domain>:<version>, ignored", n.payload())
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;
    use std::sync::mpsc;

    fn files(value: &str) -> DomainFiles {
        let mut f = DomainFiles::new();
        f.insert(
            "__domain__.yaml",
            "---\nobject_type: domain\nobject:\n  attributes:\n    name: D\n",
        );
        f.insert("Ns/Cls.class/one.yaml", value.as_bytes().to_vec());
        f
    }

    fn block<T: Send + 'static>(
        pg: &Arc<Pg>,
        f: impl FnOnce(Arc<Pg>) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>,
    ) -> T {
        pg.block(f(pg.clone())).unwrap()
    }

    #[test]
    fn paths_and_payloads() {
        assert!(plain_relative("Ns/Cls.class/__methods__/m.rhai"));
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            ".import-1/x",
            "a/.swp",
            "x~",
        ] {
            assert!(!plain_relative(bad), "{bad}");
        }
        assert!(plain_domain_name("ManageIQ") && !plain_domain_name("a/b"));
        assert_eq!(
            parse_payload("My:Domain:42"),
            Some(("My:Domain".into(), 42))
        );
        assert_eq!(parse_payload("D"), None);
        assert_eq!(parse_payload(&payload("D", 7)), Some(("D".into(), 7)));
    }

    #[test]
    fn a_directory_reads_writes_and_digests_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let f = files("a");
        f.write_into("D", &tmp.path().join("D")).unwrap();
        std::fs::write(tmp.path().join("D/.swap"), "work file").unwrap();
        std::fs::write(tmp.path().join("D/Ns/x.yaml~"), "editor").unwrap();
        let read = DomainFiles::read_dir(&tmp.path().join("D")).unwrap();
        assert_eq!(read, f);
        assert_eq!(read.digest(), f.digest());
        assert_ne!(files("b").digest(), f.digest());
        let mut bad = DomainFiles::new();
        bad.insert("../escape", "x");
        assert!(matches!(
            bad.write_into("D", &tmp.path().join("E")),
            Err(DatastoreError::BadPath { .. })
        ));
        assert!(!tmp.path().join("escape").exists() && !tmp.path().join("E").exists());
    }

    #[test]
    fn publish_list_fetch_remove_with_versions_and_notifications() {
        let Some(db) = TestDb::new("ds_publish") else {
            return;
        };
        let pg = db.pg();
        let (tx, rx) = mpsc::channel();
        let listening = listen(pg.clone(), move |e| {
            let _ = tx.send(e);
        });
        let wait = |rx: &mpsc::Receiver<ListenEvent>| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("an event within 30 s")
        };
        assert!(matches!(wait(&rx), ListenEvent::Connected { .. }));

        let meta = DomainMeta {
            priority: 10,
            ..DomainMeta::default()
        };
        let first = block(&pg, |pg| {
            Box::pin(async move {
                publish(&pg, "D", &meta, &files("a"), "node1")
                    .await
                    .unwrap()
            })
        });
        assert!(first.changed);
        assert_eq!(
            wait(&rx),
            ListenEvent::Changed {
                domain: "D".into(),
                version: first.version
            }
        );
        // The same files again: nothing written, nothing announced.
        let again = block(&pg, |pg| {
            Box::pin(async move {
                publish(&pg, "D", &DomainMeta::default(), &files("a"), "node2")
                    .await
                    .unwrap()
            })
        });
        assert_eq!(
            again,
            Published {
                version: first.version,
                changed: false
            }
        );
        let second = block(&pg, |pg| {
            Box::pin(async move {
                publish(&pg, "D", &DomainMeta::default(), &files("b"), "node2")
                    .await
                    .unwrap()
            })
        });
        assert!(second.changed && second.version > first.version);
        assert_eq!(
            wait(&rx),
            ListenEvent::Changed {
                domain: "D".into(),
                version: second.version
            }
        );
        let listed = block(&pg, |pg| Box::pin(async move { list(&pg).await.unwrap() }));
        assert_eq!(
            listed,
            vec![DomainVersion {
                name: "D".into(),
                version: second.version,
                digest: files("b").digest(),
                updated_by: "node2".into(),
            }]
        );
        let fetched = block(&pg, |pg| {
            Box::pin(async move { fetch(&pg, "D").await.unwrap().unwrap() })
        });
        assert_eq!(fetched.files, files("b"));
        assert_eq!(fetched.meta, DomainMeta::default());
        assert_eq!(fetched.version, listed[0]);

        // The same domain in another case replaces it.
        let renamed = block(&pg, |pg| {
            Box::pin(async move {
                publish(&pg, "d", &DomainMeta::default(), &files("b"), "node1")
                    .await
                    .unwrap()
            })
        });
        assert!(renamed.changed);
        let _ = wait(&rx);
        let names: Vec<String> = block(&pg, |pg| Box::pin(async move { list(&pg).await.unwrap() }))
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, vec!["d".to_string()]);

        let removed = block(&pg, |pg| {
            Box::pin(async move { remove(&pg, "D", "node1").await.unwrap() })
        })
        .expect("removed");
        assert!(removed > renamed.version);
        assert_eq!(
            wait(&rx),
            ListenEvent::Changed {
                domain: "d".into(),
                version: removed
            }
        );
        let gone = block(&pg, |pg| {
            Box::pin(async move {
                (
                    list(&pg).await.unwrap(),
                    fetch(&pg, "d").await.unwrap(),
                    remove(&pg, "d", "node1").await.unwrap(),
                )
            })
        });
        assert_eq!(gone, (Vec::new(), None, None));
        drop(listening);
    }

    #[test]
    fn a_fetch_refuses_files_that_do_not_match_the_digest_or_escape() {
        let Some(db) = TestDb::new("ds_fetch_refuses") else {
            return;
        };
        let pg = db.pg();
        let errors = block(&pg, |pg| {
            Box::pin(async move {
                publish(&pg, "D", &DomainMeta::default(), &files("a"), "n")
                    .await
                    .unwrap();
                let c = pg.client().await.unwrap();
                c.execute(
                    "UPDATE domain_files SET body = 'tampered' WHERE path = 'Ns/Cls.class/one.yaml'",
                    &[],
                )
                .await
                .unwrap();
                let mismatch = fetch(&pg, "D").await.map(|_| ());
                c.execute(
                    "INSERT INTO domain_files (domain, path, body) VALUES ('D', '../x', '')",
                    &[],
                )
                .await
                .unwrap();
                let escape = fetch(&pg, "D").await.map(|_| ());
                (mismatch, escape)
            })
        });
        assert!(
            matches!(errors.0, Err(DatastoreError::DigestMismatch { .. })),
            "{errors:?}"
        );
        assert!(
            matches!(errors.1, Err(DatastoreError::BadPath { .. })),
            "{errors:?}"
        );
    }

    #[test]
    fn the_listener_listens_again_after_the_server_drops_it() {
        let Some(db) = TestDb::new("ds_listen_again") else {
            return;
        };
        let pg = db.pg();
        let (tx, rx) = mpsc::channel();
        let _listening = listen(pg.clone(), move |e| {
            let _ = tx.send(e);
        });
        let wait = || {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("an event within 30 s")
        };
        let ListenEvent::Connected { backend_pid } = wait() else {
            panic!("first, connected")
        };
        block(&pg, |pg| {
            Box::pin(async move {
                let c = pg.client().await.unwrap();
                c.execute("SELECT pg_terminate_backend($1)", &[&backend_pid])
                    .await
                    .unwrap();
            })
        });
        let ListenEvent::Connected { backend_pid: again } = wait() else {
            panic!("connected again")
        };
        assert_ne!(again, backend_pid);
        let published = block(&pg, |pg| {
            Box::pin(async move {
                publish(&pg, "D", &DomainMeta::default(), &files("a"), "n")
                    .await
                    .unwrap()
            })
        });
        assert_eq!(
            wait(),
            ListenEvent::Changed {
                domain: "D".into(),
                version: published.version
            }
        );
    }
}
