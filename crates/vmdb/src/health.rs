//! The health of a store's file, backend-neutral: [`StoreHealth`] (ok,
//! the disk is full and writes wait for space, unavailable (a cluster's
//! PostgreSQL or NATS cannot be reached: work waits and goes on once they
//! answer again), or failed until the store is opened again) and the
//! [`StoreFault`] it reports. A backend sets it
//! from its storage layer (the redb store's `GuardedFile`); the pipeline,
//! the `http` catcher and `/api/health` read it. What each state means
//! for the redb store is told in `automate_redb::health`.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

const OK: u8 = 0;
const DISK_FULL: u8 = 1;
const FAILED: u8 = 2;
const UNAVAILABLE: u8 = 3;

/// What is wrong with the store's file (see [`StoreHealth::fault`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreFault {
    /// `disk_full` (writes wait for space) or `failed` (the file must be
    /// opened again: restart the process).
    pub state: &'static str,
    /// The file.
    pub path: String,
    /// The error, and what to do.
    pub message: String,
    /// Since when (RFC 3339, UTC).
    pub since: String,
}

/// The health of one store file, shared by its backend (which sets it) and
/// whoever must know (the pipeline, `/api/health`). Reading it is one
/// atomic load.
#[derive(Debug)]
pub struct StoreHealth {
    path: PathBuf,
    state: AtomicU8,
    fault: Mutex<Option<StoreFault>>,
    give_up: AtomicBool,
    /// Problems that stop no work but need a person (a domain a cluster
    /// node cannot publish), by what they are about.
    warnings: Mutex<std::collections::BTreeMap<String, String>>,
}

impl StoreHealth {
    /// A healthy store at `path`.
    pub fn new(path: impl AsRef<Path>) -> StoreHealth {
        StoreHealth {
            path: path.as_ref().to_path_buf(),
            state: AtomicU8::new(OK),
            fault: Mutex::new(None),
            give_up: AtomicBool::new(false),
            warnings: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Whether the store takes writes.
    pub fn is_ok(&self) -> bool {
        self.state.load(Ordering::Relaxed) == OK
    }

    /// Whether writes wait for disk space.
    pub fn is_disk_full(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DISK_FULL
    }

    /// Whether the store must be opened again (see the module docs).
    pub fn is_failed(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FAILED
    }

    /// What is wrong, `None` when nothing is.
    pub fn fault(&self) -> Option<StoreFault> {
        if self.is_ok() {
            return None;
        }
        self.fault.lock().ok().and_then(|f| f.clone())
    }

    /// Writes waiting for disk space fail from now on (and later ones fail
    /// at once when the disk is full): for a process that must end.
    pub fn give_up(&self) {
        self.give_up.store(true, Ordering::SeqCst);
    }

    /// Whether [`StoreHealth::give_up`] was called.
    pub fn gave_up(&self) -> bool {
        self.give_up.load(Ordering::SeqCst)
    }

    fn set(&self, state: u8, message: String) {
        let name = match state {
            DISK_FULL => "disk_full",
            UNAVAILABLE => "unavailable",
            _ => "failed",
        };
        let previous = self.state.swap(state, Ordering::SeqCst);
        if previous == state {
            return;
        }
        if let Ok(mut f) = self.fault.lock() {
            *f = Some(StoreFault {
                state: name,
                path: self.path.display().to_string(),
                message: message.clone(),
                since: automate_core::time::iso8601(now_ms()),
            });
        }
        tracing::error!(target: "evm", "MIQ(ObjectStore) {}: {message}", self.path.display());
    }

    /// The disk has no room for a write: writes wait (see the module docs).
    /// Called by the backend's storage layer.
    pub fn disk_full(&self, op: &str, e: &std::io::Error) {
        if self.is_failed() {
            return;
        }
        self.set(
            DISK_FULL,
            format!("the disk is full ({op}: {e}); writes wait for space and go on when there is some (free space on its file system)"),
        );
    }

    /// The services the store lives on (a cluster's PostgreSQL, NATS)
    /// cannot be reached: work waits (see the module docs) until
    /// [`StoreHealth::available`]. The message says which and where.
    pub fn unavailable(&self, message: impl Into<String>) {
        if self.is_failed() {
            return;
        }
        let message = message.into();
        if self.state.load(Ordering::SeqCst) == UNAVAILABLE {
            // Still down; the reason may have changed.
            if let Ok(mut f) = self.fault.lock() {
                if let Some(f) = f.as_mut() {
                    f.message = message;
                }
            }
            return;
        }
        self.set(UNAVAILABLE, message);
    }

    /// Whether the store's services cannot be reached now.
    pub fn is_unavailable(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UNAVAILABLE
    }

    /// The store's services answer again: an unavailable store is ok.
    pub fn available(&self) {
        if self
            .state
            .compare_exchange(UNAVAILABLE, OK, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            if let Ok(mut f) = self.fault.lock() {
                *f = None;
            }
            tracing::warn!(target: "evm", "MIQ(ObjectStore) {}: reachable again; work goes on", self.path.display());
        }
    }

    /// Records a problem about `about` that stops no work (the store stays
    /// ok) but that `/api/health` shows until [`StoreHealth::clear_warning`].
    pub fn warn(&self, about: &str, message: impl Into<String>) {
        if let Ok(mut w) = self.warnings.lock() {
            w.insert(about.to_string(), message.into());
        }
    }

    /// The problem about `about` is gone.
    pub fn clear_warning(&self, about: &str) {
        if let Ok(mut w) = self.warnings.lock() {
            w.remove(about);
        }
    }

    /// The problems recorded by [`StoreHealth::warn`], by what they are
    /// about.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Marks the store failed: only a new open makes it usable again.
    pub fn fail(&self, message: impl Into<String>) {
        self.set(FAILED, message.into());
    }

    /// A write went through: a store that waited for space is ok again.
    /// Called by the backend's storage layer on every write.
    pub fn wrote(&self) {
        // One relaxed load on the usual path (the writer's every write).
        if self.state.load(Ordering::Relaxed) == DISK_FULL
            && self
                .state
                .compare_exchange(DISK_FULL, OK, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            if let Ok(mut f) = self.fault.lock() {
                *f = None;
            }
            tracing::warn!(target: "evm", "MIQ(ObjectStore) {}: there is disk space again; writes go on", self.path.display());
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_leave_the_store_ok_and_are_cleared_one_by_one() {
        let h = StoreHealth::new("postgresql://db/test#automate");
        h.warn("datastore.a", "domain a: not published");
        h.warn("datastore.b", "domain b: not published");
        h.warn("datastore.a", "domain a: still not published");
        assert!(h.is_ok());
        assert_eq!(
            h.warnings(),
            ["domain a: still not published", "domain b: not published"]
        );
        h.clear_warning("datastore.a");
        assert_eq!(h.warnings(), ["domain b: not published"]);
    }

    #[test]
    fn an_unavailable_store_is_not_ok_not_failed_and_recovers() {
        let h = StoreHealth::new("postgresql://db/test#automate");
        h.unavailable("PostgreSQL at db/test: connection refused");
        assert!(!h.is_ok() && !h.is_failed() && h.is_unavailable());
        let fault = h.fault().expect("a fault");
        assert_eq!(fault.state, "unavailable");
        h.unavailable("NATS at nats://127.0.0.1:4222: disconnected");
        assert!(h.fault().unwrap().message.contains("NATS"));
        h.available();
        assert!(h.is_ok() && h.fault().is_none());
        // A failed store stays failed.
        h.fail("broken");
        h.unavailable("down");
        h.available();
        assert!(h.is_failed());
    }
}
