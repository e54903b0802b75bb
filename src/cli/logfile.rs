//! The log files `automate run` writes (evm.log, automation.log): a buffer
//! of whole lines written out in one `write` when it holds 64 KiB or when
//! flushed, with size-based rotation (`log.max_size`, `log.keep`: when a
//! file would grow past `max_size` it becomes `evm.log.1`, the older ones
//! move up to `evm.log.<keep>` and the oldest goes, as logrotate numbers
//! them) and counted drops: when a write fails (the disk is full) its
//! lines are dropped and counted, stderr says so once per failing spell,
//! and the next successful write starts with a line saying how many were
//! lost. [`Dropped`], shared by the files of one logging setup, is the
//! count for the run summary.
//!
//! Hand-written rather than `file-rotate` or `rolling-file` (see
//! docs/DECISIONS.md): those write through on each `write` call, so a
//! disk-full error cannot be tied to whole lines, and they either panic on
//! a missing rotated file (`file-rotate` asserts) or print a stderr line on
//! every write while the disk is full (`rolling-file`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many bytes of lines are buffered before they are written out.
const BUF_BYTES: usize = 1 << 16;

/// Log lines dropped because a write failed, counted by every log file
/// given a clone of it.
#[derive(Debug, Clone, Default)]
pub struct Dropped(Arc<AtomicU64>);

impl Dropped {
    /// Lines dropped so far.
    pub fn lines(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, lines: u64) {
        self.0.fetch_add(lines, Ordering::Relaxed);
    }
}

/// When to rotate and how many rotated files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before a write would take it past this size.
    pub max_size: u64,
    /// Rotated files kept (`evm.log.1` ... `evm.log.<keep>`); 0 keeps none.
    pub keep: u32,
}

impl Default for Rotation {
    /// `log.max_size` and `log.keep`'s defaults.
    fn default() -> Self {
        let log = automate_events::config::LogConfig::default();
        Rotation {
            max_size: log.max_size.0,
            keep: log.keep,
        }
    }
}

/// Writes one warning line (`message`, with its newline) in the file's
/// format.
pub type Notice = Box<dyn Fn(&mut Vec<u8>, &str) + Send>;

/// One log file: see the module docs. [`Write`] appends to the buffer and
/// never fails; call [`LogFile::line_done`] after each line.
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    /// Bytes in the current file.
    size: u64,
    rotation: Rotation,
    notice: Notice,
    /// Lines dropped since the last successful write (to be reported).
    unreported: u64,
    /// The last write stopped inside a line (the next starts a new one).
    mid_line: bool,
    /// The last rotation failed (said once on stderr).
    rotate_failed: bool,
    /// Where dropped lines are counted.
    dropped: Dropped,
}

impl LogFile {
    /// Opens (creates, appends to) `path`; lines it drops are counted in
    /// `dropped`.
    pub fn open(
        path: &Path,
        rotation: Rotation,
        notice: Notice,
        dropped: Dropped,
    ) -> io::Result<LogFile> {
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Some(file),
            buf: Vec::with_capacity(BUF_BYTES + 1024),
            size,
            rotation,
            notice,
            unreported: 0,
            mid_line: false,
            rotate_failed: false,
            dropped,
        })
    }

    /// Where the next line starts in the buffer ([`LogFile::mask_from`]).
    pub fn line_start(&self) -> usize {
        self.buf.len()
    }

    /// Masks every encrypted password (`v2:{...}` → `********`) in what was
    /// written since `start` (a [`LogFile::line_start`]), as ManageIQ's
    /// logger sanitizes each message.
    pub fn mask_from(&mut self, start: usize) {
        let Some(tail) = self.buf.get(start..) else {
            return;
        };
        if !automate_password::may_hold_password(tail) {
            return;
        }
        let masked = match std::str::from_utf8(tail) {
            Ok(text) => automate_password::sanitize(text).into_owned(),
            Err(_) => return,
        };
        self.buf.truncate(start);
        self.buf.extend_from_slice(masked.as_bytes());
    }

    /// A line has been written: writes the buffer out when it is full.
    pub fn line_done(&mut self) {
        if self.buf.len() >= BUF_BYTES {
            self.write_out();
        }
    }

    /// Writes the buffered lines to the file, rotating it whenever the
    /// next whole lines would take it past `max_size` (a single line longer
    /// than that gets a file of its own); on failure drops and counts the
    /// lines not written.
    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.file.is_none() {
            // Reopened after a failed rotation or open.
            self.reopen();
        }
        let mut lines = std::mem::take(&mut self.buf);
        // Said first: how many lines the failed writes lost.
        let mut head = Vec::new();
        if self.mid_line {
            head.push(b'\n');
        }
        if self.unreported > 0 {
            (self.notice)(
                &mut head,
                &format!(
                    "MIQ(automate log) {} log lines dropped: writing {} failed",
                    self.unreported,
                    self.path.display()
                ),
            );
        }
        let head_len = head.len();
        if head_len > 0 {
            head.extend_from_slice(&lines);
            lines = head;
        }
        let mut at = 0;
        let mut rotated = false;
        let mut failure = None;
        while at < lines.len() {
            let rest = lines.get(at..).unwrap_or_default();
            let room = self.rotation.max_size.saturating_sub(self.size);
            let fits = if rest.len() as u64 <= room {
                rest.len()
            } else {
                // The whole lines that fit.
                let window = rest.get(..room as usize).unwrap_or_default();
                window
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
            };
            let chunk = if fits > 0 {
                fits
            } else if self.size > 0 && !rotated {
                // Truncated by someone else (`scripts/soak` empties the
                // files)? Then there is room after all.
                let real = self.file.as_ref().and_then(|f| f.metadata().ok());
                if let Some(len) = real.map(|m| m.len()).filter(|l| *l < self.size) {
                    self.size = len;
                    continue;
                }
                self.rotate();
                // Once per write-out: a failed rotation writes on.
                rotated = self.rotate_failed;
                continue;
            } else if self.rotate_failed {
                // Rotation failed: the lines go on to the file as it is.
                rest.len()
            } else {
                // A line longer than max_size: a file of its own.
                rest.iter()
                    .position(|b| *b == b'\n')
                    .map_or(rest.len(), |i| i + 1)
            };
            rotated = self.rotate_failed;
            let part = rest.get(..chunk).unwrap_or_default();
            let (written, outcome) = match self.file.as_mut() {
                Some(f) => write_counting(f, part),
                None => (0, Err(io::Error::other("the file is not open"))),
            };
            self.size = self.size.saturating_add(written as u64);
            at += written;
            if let Err(e) = outcome {
                failure = Some(e);
                break;
            }
        }
        match failure {
            None => {
                if self.unreported > 0 {
                    eprintln!(
                        "automate: {} is written again; {} log lines were dropped",
                        self.path.display(),
                        self.unreported
                    );
                }
                self.unreported = 0;
                self.mid_line = false;
            }
            Some(e) => {
                // The lines not written (the notice is not counted).
                let rest = lines.get(at.max(head_len)..).unwrap_or_default();
                let lost = rest.iter().filter(|b| **b == b'\n').count() as u64;
                if self.unreported == 0 {
                    eprintln!(
                        "automate: writing {} failed ({e}): log lines are dropped and counted until it works again",
                        self.path.display()
                    );
                }
                self.unreported = self.unreported.saturating_add(lost);
                self.dropped.add(lost);
                self.mid_line = at > 0 && lines.get(at - 1) != Some(&b'\n');
            }
        }
        // The allocation is kept for the next lines.
        lines.clear();
        if lines.capacity() >= self.buf.capacity() {
            self.buf = lines;
        }
    }

    /// Writes out what is buffered (to the file as it was opened, which a
    /// `logrotate` may have renamed), then opens the path again: after a
    /// rename, the next lines go to a new file at the original path
    /// (SIGHUP, `docs/operations.md`).
    pub fn reopen_path(&mut self) {
        self.write_out();
        self.reopen();
    }

    /// Opens the file again (after a rotation, or a failed open).
    fn reopen(&mut self) {
        self.file = open_append(&self.path).ok();
        self.size = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
    }

    /// `evm.log` → `evm.log.1` → ... → `evm.log.<keep>` (the oldest is
    /// removed), then a new `evm.log`. A failure is said once on stderr;
    /// the lines then go on to the file as it is.
    fn rotate(&mut self) {
        self.file = None;
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let mut result = Ok(());
        if self.rotation.keep == 0 {
            result = std::fs::remove_file(&self.path);
        } else {
            match std::fs::remove_file(numbered(self.rotation.keep)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
            for n in (1..self.rotation.keep).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                    _ => {}
                }
            }
            if let Err(e) = std::fs::rename(&self.path, numbered(1)) {
                result = Err(e);
            }
        }
        match result {
            Ok(()) => self.rotate_failed = false,
            Err(e) => {
                if !self.rotate_failed {
                    eprintln!(
                        "automate: rotating {} failed ({e}); writing on to it",
                        self.path.display()
                    );
                }
                self.rotate_failed = true;
            }
        }
        self.reopen();
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Writes the buffered lines out (never fails: a failed write is
    /// counted, see [`LogFile`]).
    fn flush(&mut self) -> io::Result<()> {
        self.write_out();
        Ok(())
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.write_out();
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Writes all of `bytes` (retrying short writes and interrupts): how many
/// were written, and the error that stopped it.
fn write_counting(f: &mut File, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut done = 0;
    while done < bytes.len() {
        match f.write(bytes.get(done..).unwrap_or_default()) {
            Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(out: &mut Vec<u8>, message: &str) {
        out.extend_from_slice(b"W -- : ");
        out.extend_from_slice(message.as_bytes());
        out.push(b'\n');
    }

    fn line(f: &mut LogFile, n: usize) {
        writeln!(f, "line {n:05} {}", "x".repeat(90)).unwrap();
        f.line_done();
    }

    #[test]
    fn reopen_after_a_rename_writes_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evm.log");
        let rotation = Rotation {
            max_size: 1 << 20,
            keep: 2,
        };
        let mut f = LogFile::open(&path, rotation, Box::new(notice), Dropped::default()).unwrap();
        f.write_all(b"before\n").unwrap();
        f.line_done();
        std::fs::rename(&path, dir.path().join("evm.log.rotated")).unwrap();
        f.write_all(b"buffered\n").unwrap();
        f.reopen_path();
        f.write_all(b"after\n").unwrap();
        f.flush().unwrap();
        let old = std::fs::read_to_string(dir.path().join("evm.log.rotated")).unwrap();
        assert_eq!(old, "before\nbuffered\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }

    #[test]
    fn rotates_at_the_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evm.log");
        let rotation = Rotation {
            max_size: 10_000,
            keep: 3,
        };
        let mut f = LogFile::open(&path, rotation, Box::new(notice), Dropped::default()).unwrap();
        for n in 0..1000 {
            line(&mut f, n);
            if n % 10 == 9 {
                f.flush().unwrap();
            }
        }
        f.flush().unwrap();
        let names = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(dir.path()),
            ["evm.log", "evm.log.1", "evm.log.2", "evm.log.3"]
        );
        let mut last = None;
        for name in ["evm.log.3", "evm.log.2", "evm.log.1", "evm.log"] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 10_000, "{name}: {}", text.len());
            // Whole lines, in order across the files.
            for l in text.lines() {
                assert_eq!(l.len(), 101, "{name}: {l}");
                let n: usize = l[5..10].parse().unwrap();
                if let Some(last) = last {
                    assert_eq!(n, last + 1, "{name}");
                }
                last = Some(n);
            }
        }
        assert_eq!(last, Some(999));
        // Opened again: appends, and the size counts what is there.
        drop(f);
        let mut f = LogFile::open(&path, rotation, Box::new(notice), Dropped::default()).unwrap();
        for n in 0..100 {
            line(&mut f, n);
        }
        f.flush().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= 10_000);
        assert_eq!(names(dir.path()).len(), 4);
    }

    #[test]
    fn a_file_truncated_by_someone_else_is_not_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evm.log");
        let rotation = Rotation {
            max_size: 10_000,
            keep: 3,
        };
        let mut f = LogFile::open(&path, rotation, Box::new(notice), Dropped::default()).unwrap();
        for round in 0..5 {
            for n in 0..90 {
                line(&mut f, round * 100 + n);
            }
            f.flush().unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        assert!(!dir.path().join("evm.log.1").exists());
    }

    #[test]
    fn a_failed_write_is_counted_and_reported_in_the_next_one() {
        let dev_full = Path::new("/dev/full");
        if !dev_full.exists() {
            eprintln!("skipped: no /dev/full on this system");
            return;
        }
        let rotation = Rotation {
            max_size: u64::MAX,
            keep: 1,
        };
        let dropped = Dropped::default();
        let mut f = LogFile::open(dev_full, rotation, Box::new(notice), dropped.clone()).unwrap();
        for n in 0..25 {
            line(&mut f, n);
        }
        f.flush().unwrap();
        for n in 25..30 {
            line(&mut f, n);
        }
        f.flush().unwrap();
        assert_eq!(f.unreported, 30);
        assert_eq!(dropped.lines(), 30);
        // The disk has room again: the next write says what was lost.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evm.log");
        f.file = Some(open_append(&path).unwrap());
        f.path = path.clone();
        line(&mut f, 30);
        f.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("30 log lines dropped"), "{text}");
        assert!(lines[1].starts_with("line 00030"), "{text}");
        assert_eq!(f.unreported, 0);
    }
}
