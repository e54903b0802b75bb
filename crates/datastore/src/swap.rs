//! Replacing a domain directory in one step, and cleaning up after an
//! import or export that was killed half way.
//!
//! **Work directories.** Every temporary directory the datastore code makes
//! (`.import-*` in the datastore root, `.export-*` beside an exported
//! directory, `.automate-zip-*` for an extracted zip) is a [`Workdir`]: it
//! holds a `.lock` file that its process holds an exclusive `flock` on for as
//! long as it works. The kernel drops the lock when the process dies, however
//! it dies, so a work directory whose lock can be taken belongs to nobody: it
//! is debris, and [`clean_debris`] removes it (a directory without a lock
//! file is debris once it is a minute old, which covers the instant between
//! creating a directory and locking it). Temporary zips (`.export-*.zip`) are
//! locked the same way, on the file itself.
//!
//! **Swapping a domain in** ([`swap_in`]). The new domain is written in full
//! inside a work directory in the datastore root (same filesystem), then:
//!
//! * on Linux, `renameat2(RENAME_EXCHANGE)` trades the new and the old
//!   directory in one step: at every instant `root/<Domain>` is either the
//!   old or the new domain, for a reader and for a crash alike;
//! * where the kernel or filesystem refuses the flag, a journal
//!   (`.swap`, naming the old and the new directory) is written and synced
//!   into the work directory first, then the old directory is renamed to
//!   `.previous` inside it, then the new one into place. A kill between the
//!   two renames leaves the journal, `.previous`, and no domain; the next
//!   [`clean_debris`] (run by `Datastore::open` and by every import) sees
//!   that neither name exists and renames `.previous` back: the domain is as
//!   it was before the import.
//!
//! Debris is removed only after recovery, and only with its lock held.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The lock file inside a work directory.
pub const LOCK_FILE: &str = ".lock";
/// The journal of a swap in progress (fallback path only).
pub const JOURNAL_FILE: &str = ".swap";
/// Where the old domain waits while a swap is in progress (fallback path).
pub const PREVIOUS_DIR: &str = ".previous";
/// Prefix of import work directories in the datastore root.
pub const IMPORT_PREFIX: &str = ".import-";
/// Prefix of export work directories and temporary zips.
pub const EXPORT_PREFIX: &str = ".export-";
/// Prefix of zip extraction directories (in the system temp directory).
pub const ZIP_PREFIX: &str = ".automate-zip-";
/// Age after which an unlocked work directory without a lock file is debris.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// A locked temporary directory (see the module doc). Removed on drop.
#[derive(Debug)]
pub struct Workdir {
    dir: tempfile::TempDir,
    /// Holds the `flock`; dropped with the directory.
    _lock: fs::File,
}

impl Workdir {
    /// Creates and locks `parent/<prefix>XXXXXX`.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<Workdir> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        let lock = fs::File::create(dir.path().join(LOCK_FILE))?;
        lock_exclusive(&lock)?;
        Ok(Workdir { dir, _lock: lock })
    }

    /// The work directory's path (`parent/<prefix>XXXXXX`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Removes the directory, logging (not failing) when it cannot be.
    pub fn close(self) {
        let path = self.dir.path().to_path_buf();
        if let Err(e) = self.dir.close() {
            tracing::warn!(
                "could not remove the temporary directory `{}`: {e}",
                path.display()
            );
        }
    }

    /// Keeps the directory on disk (its lock is released, so a later
    /// [`clean_debris`] treats it as debris and recovers from it).
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

/// Takes an exclusive `flock` on `file` without waiting.
pub fn lock_exclusive(file: &fs::File) -> io::Result<()> {
    #[cfg(unix)]
    {
        rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(io::Error::from)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
}

/// Whether the work directory or temporary file at `path` is debris: its
/// lock (the `.lock` inside a directory, or the file itself) can be taken.
/// Returns the lock to hold while removing it.
fn claim(path: &Path, is_dir: bool) -> Option<Option<fs::File>> {
    let lock_path = if is_dir {
        path.join(LOCK_FILE)
    } else {
        path.to_path_buf()
    };
    match fs::OpenOptions::new().read(true).open(&lock_path) {
        Ok(f) => lock_exclusive(&f).ok().map(|()| Some(f)),
        Err(_) if is_dir => {
            // No lock file: debris once it is old enough not to be a
            // directory created an instant ago and not locked yet.
            let age = fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())?;
            (age >= UNLOCKED_GRACE).then_some(None)
        }
        Err(_) => None,
    }
}

/// What [`swap_in`] records before moving the old domain aside.
struct Journal {
    /// The old domain's directory name in the parent.
    old: String,
    /// The new domain's directory name in the parent.
    new: String,
}

impl Journal {
    fn write(&self, path: &Path) -> io::Result<()> {
        let mut f = fs::File::create(path)?;
        writeln!(f, "old={}\nnew={}", self.old, self.new)?;
        f.sync_all()
    }

    fn read(path: &Path) -> Option<Journal> {
        let text = fs::read_to_string(path).ok()?;
        let mut old = None;
        let mut new = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("old=") {
                old = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("new=") {
                new = Some(v.to_string());
            }
        }
        let plain = |n: &String| !n.is_empty() && !n.contains(['/', '\0']) && n != "..";
        match (old, new) {
            (Some(old), Some(new)) if plain(&old) && plain(&new) => Some(Journal { old, new }),
            _ => None,
        }
    }
}

/// Where a swap stops, for the tests of the recovery: `AfterAside` stops
/// (as a kill would) once the old domain is in `.previous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopAt {
    Never,
    AfterAside,
}

/// Moves `new` (a directory inside `work`) to `dest`, replacing `old` when
/// given (both in the same parent directory as `dest`; `old` may differ
/// from `dest` in case). See the module doc for how the swap stays whole
/// across a crash.
pub fn swap_in(work: Workdir, new: &Path, dest: &Path, old: Option<&Path>) -> io::Result<()> {
    swap_in_stopping(work, new, dest, old, StopAt::Never)
}

fn swap_in_stopping(
    work: Workdir,
    new: &Path,
    dest: &Path,
    old: Option<&Path>,
    stop: StopAt,
) -> io::Result<()> {
    let Some(old) = old else {
        let r = fs::rename(new, dest);
        work.close();
        return r;
    };
    if stop == StopAt::Never && exchange(new, old)? {
        // `old` now holds the new domain; give it the new name if the case differs.
        let r = if old == dest {
            Ok(())
        } else {
            fs::rename(old, dest)
        };
        work.close();
        return r;
    }
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let journal = Journal {
        old: name(old),
        new: name(dest),
    };
    journal.write(&work.path().join(JOURNAL_FILE))?;
    let aside = work.path().join(PREVIOUS_DIR);
    fs::rename(old, &aside)?;
    if stop == StopAt::AfterAside {
        work.keep();
        return Ok(());
    }
    match fs::rename(new, dest) {
        Ok(()) => {
            work.close();
            Ok(())
        }
        Err(e) => {
            if let Err(e2) = fs::rename(&aside, old) {
                let kept = work.keep();
                tracing::error!(
                    "could not restore `{}` from `{}`: {e2}; the next import or datastore open \
                     restores it",
                    old.display(),
                    kept.join(PREVIOUS_DIR).display()
                );
            } else {
                work.close();
            }
            Err(e)
        }
    }
}

/// Trades `a` and `b` in one step. `Ok(false)` when the platform or the
/// filesystem cannot (the caller falls back to the journal).
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(true),
            Err(e)
                if e == rustix::io::Errno::INVAL
                    || e == rustix::io::Errno::NOSYS
                    || e == rustix::io::Errno::NOTSUP
                    || e == rustix::io::Errno::PERM =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// Recovers from and removes the work directories and temporary zips named
/// `<prefix>*` in `parent` that no live process holds (see the module doc).
/// Returns one line per thing done, for the log. Errors are logged and
/// skipped: cleaning never stops an open or an import.
pub fn clean_debris(parent: &Path, prefix: &str) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return done;
    };
    for entry in entries.flatten() {
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else { continue };
        if !name.starts_with(prefix) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_symlink() {
            continue;
        }
        let Some(_lock) = claim(&path, kind.is_dir()) else {
            continue; // a live import or export
        };
        if kind.is_dir() {
            if let Some(line) = recover(parent, &path) {
                done.push(line);
            }
            match fs::remove_dir_all(&path) {
                Ok(()) => done.push(format!(
                    "removed `{}` left by an interrupted import or export",
                    path.display()
                )),
                Err(e) => tracing::warn!("could not remove `{}`: {e}", path.display()),
            }
        } else if kind.is_file() {
            match fs::remove_file(&path) {
                Ok(()) => done.push(format!(
                    "removed `{}` left by an interrupted export",
                    path.display()
                )),
                Err(e) => tracing::warn!("could not remove `{}`: {e}", path.display()),
            }
        }
    }
    for line in &done {
        tracing::warn!("{line}");
    }
    done
}

/// Rolls back an interrupted swap recorded in `work`: when the old domain
/// is in `.previous` and neither the old nor the new name exists in
/// `parent`, the old domain goes back where it was.
fn recover(parent: &Path, work: &Path) -> Option<String> {
    let previous = work.join(PREVIOUS_DIR);
    fs::symlink_metadata(&previous).ok()?;
    let journal = Journal::read(&work.join(JOURNAL_FILE))?;
    let old = parent.join(&journal.old);
    let new = parent.join(&journal.new);
    if fs::symlink_metadata(&old).is_ok() || fs::symlink_metadata(&new).is_ok() {
        return None; // the swap got through (or someone re-created it): keep what is there
    }
    match fs::rename(&previous, &old) {
        Ok(()) => Some(format!(
            "restored domain directory `{}`, which an interrupted --overwrite import had moved \
             aside",
            old.display()
        )),
        Err(e) => {
            tracing::error!(
                "could not restore `{}` from `{}`: {e}; move it back by hand",
                old.display(),
                previous.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(root: &Path, name: &str, marker: &str) -> PathBuf {
        let d = root.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("file"), marker).unwrap();
        d
    }

    #[test]
    fn a_swap_replaces_in_one_step_and_leaves_no_work_dir() {
        let root = tempfile::tempdir().unwrap();
        let old = domain(root.path(), "D", "old");
        let work = Workdir::new_in(root.path(), IMPORT_PREFIX).unwrap();
        let new = domain(work.path(), "D", "new");
        swap_in(work, &new, &old, Some(&old)).unwrap();
        assert_eq!(fs::read_to_string(old.join("file")).unwrap(), "new");
        let left: Vec<_> = fs::read_dir(root.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_swap_killed_after_moving_the_old_domain_aside_is_rolled_back() {
        let root = tempfile::tempdir().unwrap();
        let old = domain(root.path(), "d", "old");
        let work = Workdir::new_in(root.path(), IMPORT_PREFIX).unwrap();
        let new = domain(work.path(), "D", "new");
        let dest = root.path().join("D");
        swap_in_stopping(work, &new, &dest, Some(&old), StopAt::AfterAside).unwrap();
        assert!(!old.exists() && !dest.exists(), "the crash window");
        let done = clean_debris(root.path(), IMPORT_PREFIX);
        assert!(done.iter().any(|l| l.contains("restored")), "{done:?}");
        assert_eq!(fs::read_to_string(old.join("file")).unwrap(), "old");
        let left: Vec<_> = fs::read_dir(root.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_live_work_dir_is_not_debris() {
        let root = tempfile::tempdir().unwrap();
        let work = Workdir::new_in(root.path(), IMPORT_PREFIX).unwrap();
        assert!(clean_debris(root.path(), IMPORT_PREFIX).is_empty());
        assert!(work.path().exists());
        let kept = work.keep();
        assert_eq!(clean_debris(root.path(), IMPORT_PREFIX).len(), 1);
        assert!(!kept.exists());
    }
}
