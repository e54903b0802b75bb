//! Hot reload for `automate run` and `automate api`: watches the datastore
//! root (its domains and `control/`) with `notify` and, once the changes
//! have settled ([`SETTLE`] without a new one, at most [`MAX_DELAY`] after
//! the first), reloads through the service's [`Reloader`] (all-or-nothing:
//! a failure keeps the running datastore and is logged and reported on
//! `/api/health`). The datastore's own work files (`.import-*`, `.swap`,
//! anything whose path under the root has a part starting with `.`) and
//! mere reads are ignored.

use anyhow::Context;
use automate_control::Reloader;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quiet time after the last change before reloading.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Longest wait from the first change of a burst to its reload (a tree
/// written without pause still reloads).
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// The watch of a datastore root; stops (with its thread) when dropped.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching `root` (recursively) and reloading through `reloader`
/// on changes. Fails when the root cannot be watched (it is missing, or
/// the system's inotify limits are reached).
pub fn start(root: &Path, reloader: Arc<Reloader>) -> anyhow::Result<Watch> {
    let (tx, rx) = channel::<()>();
    let base = root.to_path_buf();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if relevant(&base, &ev) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(target: "evm", "MIQ(Datastore#watch) watching the datastore: {e}")
            }
        })
        .context("starting the datastore watcher")?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .with_context(|| format!("watching the datastore root {}", root.display()))?;
    std::thread::Builder::new()
        .name("automate-watch".into())
        .spawn(move || {
            // Ends when the watcher (the sender) is dropped.
            while rx.recv().is_ok() {
                let first = Instant::now();
                loop {
                    let left = MAX_DELAY.saturating_sub(first.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(SETTLE.min(left)) {
                        Ok(()) => continue,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                reloader.reload_now();
            }
        })
        .context("starting the datastore watcher thread")?;
    Ok(Watch { _watcher: watcher })
}

/// A change worth a reload: a write, creation, removal or rename of a path
/// that is not a work file of the datastore's.
fn relevant(root: &Path, ev: &notify::Event) -> bool {
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    ev.paths.iter().any(|p| !ignored(root, p))
}

/// A path under a part starting with `.` (the datastore's work
/// directories and journal, editors' swap files), or outside the root.
fn ignored(root: &Path, path: &Path) -> bool {
    let rel: PathBuf = match path.strip_prefix(root) {
        Ok(r) => r.to_path_buf(),
        // The root as the watcher spells it may differ (a link): compare
        // the canonical forms.
        Err(_) => match (root.canonicalize(), path.canonicalize()) {
            (Ok(r), Ok(p)) => match p.strip_prefix(&r) {
                Ok(rel) => rel.to_path_buf(),
                Err(_) => return false,
            },
            _ => return false,
        },
    };
    rel.components().any(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|s| s.starts_with('.') || s.ends_with('~'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_files_are_ignored() {
        let root = Path::new("/ds");
        assert!(ignored(root, Path::new("/ds/.import-1/ManageIQ/x.yaml")));
        assert!(ignored(root, Path::new("/ds/ManageIQ/.x.yaml.swp")));
        assert!(ignored(root, Path::new("/ds/.swap")));
        assert!(ignored(root, Path::new("/ds/ManageIQ/x.yaml~")));
        assert!(!ignored(root, Path::new("/ds/ManageIQ/System/x.yaml")));
        assert!(!ignored(root, Path::new("/ds/control/policies.yaml")));
    }
}
