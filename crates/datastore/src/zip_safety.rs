//! What a zip of domains may hold, and extracting one without trusting it:
//! every entry name is checked (no `..`, absolute paths, drive letters,
//! backslashes, names that are not UTF-8, symlinks or special files), and the
//! entry count and the sizes are limited, counted while decompressing, never
//! trusting the sizes the zip declares. Export checks the same limits, so a
//! zip it writes is one import accepts.

use super::fs::RenderedFile;
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Most entries a zip may have (directories included).
pub const MAX_ZIP_ENTRIES: usize = 100_000;
/// Most bytes a zip may expand to, all entries together.
pub const MAX_ZIP_TOTAL_BYTES: u64 = 512 * 1024 * 1024;
/// Most bytes one entry may expand to: the largest file the loader reads
/// (a YAML file; method bodies are capped lower). There is no bound on the
/// compression ratio: a method body of repetitive text compresses 100:1
/// and more, and what a bomb can do is bounded by the three sizes.
pub const MAX_ZIP_ENTRY_BYTES: u64 = super::yaml::MAX_FILE_BYTES as u64;

/// Why a zip was refused.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    /// The file cannot be opened or read as a zip.
    #[error("cannot read zip `{}`: {error}", zip.display())]
    Open {
        /// The zip file.
        zip: PathBuf,
        /// The zip library's error.
        #[source]
        error: zip::result::ZipError,
    },
    /// An entry cannot be read or written out.
    #[error("cannot read entry `{entry}` of zip `{}`: {error}", zip.display())]
    Entry {
        /// The zip file.
        zip: PathBuf,
        /// The entry's name in the zip.
        entry: String,
        /// The error reading or writing it.
        #[source]
        error: io::Error,
    },
    /// An entry that may not be extracted: a name that is not UTF-8 or would
    /// leave the target (absolute, `..`), an encrypted entry, a symbolic link
    /// or other special file, or a name that clashes (ignoring case) with one
    /// already extracted.
    #[error("zip `{}`: entry `{entry}` is refused: {reason}; nothing was imported", zip.display())]
    UnsafeEntry {
        /// The zip file.
        zip: PathBuf,
        /// The entry's name in the zip.
        entry: String,
        /// Which of those it is.
        reason: String,
    },
    /// More entries than [`MAX_ZIP_ENTRIES`].
    #[error(
        "zip `{}` has {count} entries, more than the {max} allowed; nothing was imported",
        zip.display()
    )]
    TooManyEntries {
        /// The zip file.
        zip: PathBuf,
        /// The entries it has.
        count: usize,
        /// The most allowed ([`MAX_ZIP_ENTRIES`]).
        max: usize,
    },
    /// The entries together expand to more than [`MAX_ZIP_TOTAL_BYTES`].
    #[error(
        "zip `{}` expands to more than {max} bytes (at entry `{entry}`); refusing it as a \
         possible zip bomb, nothing was imported",
        zip.display()
    )]
    TooLarge {
        /// The zip file.
        zip: PathBuf,
        /// The entry at which the total passed the limit.
        entry: String,
        /// The most bytes allowed ([`MAX_ZIP_TOTAL_BYTES`]).
        max: u64,
    },
    /// One entry expands to more than [`MAX_ZIP_ENTRY_BYTES`].
    #[error(
        "zip `{}`: entry `{entry}` expands to more than {max} bytes, more than any datastore \
         file may hold; refusing it as a possible zip bomb, nothing was imported",
        zip.display()
    )]
    EntryTooLarge {
        /// The zip file.
        zip: PathBuf,
        /// The entry's name in the zip.
        entry: String,
        /// The most bytes one entry may have ([`MAX_ZIP_ENTRY_BYTES`]).
        max: u64,
    },
}

/// Checks every entry of `zip_path` and extracts it below `into`.
pub fn extract_zip(zip_path: &Path, into: &Path) -> Result<(), ZipError> {
    let zip = zip_path.to_path_buf();
    let open_err = |error| ZipError::Open {
        zip: zip.clone(),
        error,
    };
    let file = fs::File::open(zip_path).map_err(|e| open_err(e.into()))?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(open_err)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(ZipError::TooManyEntries {
            zip,
            count: archive.len(),
            max: MAX_ZIP_ENTRIES,
        });
    }
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(open_err)?;
        let raw = entry.name_raw().to_vec();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_entry = |reason: &str| ZipError::UnsafeEntry {
            zip: zip.clone(),
            entry: name.clone(),
            reason: reason.to_string(),
        };
        if std::str::from_utf8(&raw).is_err() {
            return Err(unsafe_entry("its name is not UTF-8"));
        }
        let parts = safe_entry_parts(&name).map_err(unsafe_entry)?;
        if entry.encrypted() {
            return Err(unsafe_entry("it is encrypted"));
        }
        if entry.is_symlink() {
            return Err(unsafe_entry("it is a symbolic link"));
        }
        if let Some(mode) = entry.unix_mode() {
            let kind = mode & 0o170000;
            if !matches!(kind, 0 | 0o100000 | 0o040000) {
                return Err(unsafe_entry("it is not a regular file or directory"));
            }
        }
        let mut path = into.to_path_buf();
        for p in &parts {
            path.push(p);
        }
        let io_fail = |error: io::Error| ZipError::Entry {
            zip: zip.clone(),
            entry: name.clone(),
            error,
        };
        if entry.is_dir() {
            fs::create_dir_all(&path).map_err(io_fail)?;
            continue;
        }
        // Early refusal on the declared sizes; the real counting follows
        // (a zip may lie about them).
        let declared = entry.size();
        if declared > MAX_ZIP_ENTRY_BYTES {
            return Err(ZipError::EntryTooLarge {
                zip,
                entry: name,
                max: MAX_ZIP_ENTRY_BYTES,
            });
        }
        if total.saturating_add(declared) > MAX_ZIP_TOTAL_BYTES {
            return Err(ZipError::TooLarge {
                zip,
                entry: name,
                max: MAX_ZIP_TOTAL_BYTES,
            });
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_fail)?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    unsafe_entry("a file of the same name (ignoring case) was already extracted")
                } else {
                    io_fail(e)
                }
            })?;
        let mut written: u64 = 0;
        loop {
            let n = entry.read(&mut buf).map_err(io_fail)?;
            if n == 0 {
                break;
            }
            written = written.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
            if written > MAX_ZIP_ENTRY_BYTES {
                return Err(ZipError::EntryTooLarge {
                    zip,
                    entry: name,
                    max: MAX_ZIP_ENTRY_BYTES,
                });
            }
            if total.saturating_add(written) > MAX_ZIP_TOTAL_BYTES {
                return Err(ZipError::TooLarge {
                    zip,
                    entry: name,
                    max: MAX_ZIP_TOTAL_BYTES,
                });
            }
            out.write_all(buf.get(..n).unwrap_or_default())
                .map_err(io_fail)?;
        }
        total = total.saturating_add(written);
    }
    Ok(())
}

/// The path components of a zip entry name, or why it is unsafe.
fn safe_entry_parts(name: &str) -> Result<Vec<&str>, &'static str> {
    if name.is_empty() {
        return Err("its name is empty");
    }
    if name.contains('\0') {
        return Err("its name contains a NUL byte");
    }
    if name.contains('\\') {
        return Err("its name contains a backslash (Windows path separator)");
    }
    if name.starts_with('/') {
        return Err("it is an absolute path");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err("it starts with a drive letter");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            ".." => return Err("it has a `..` component (path traversal)"),
            "" => return Err("it has an empty path component (`//`)"),
            "." => return Err("it has a `.` component"),
            p => parts.push(p),
        }
    }
    Ok(parts)
}

/// Why import would refuse a zip of `rendered` with a directory entry for
/// each directory: more entries (files and directories) than
/// [`MAX_ZIP_ENTRIES`], a file over [`MAX_ZIP_ENTRY_BYTES`], or more than
/// [`MAX_ZIP_TOTAL_BYTES`] in all. `None` when it would accept it.
pub(super) fn exceeds_limits(rendered: &[RenderedFile]) -> Option<String> {
    let mut dirs = HashSet::new();
    let mut total: u64 = 0;
    for (rel, bytes) in rendered {
        let mut prefix = rel.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if !dirs.insert(parent) {
                break;
            }
            prefix = parent;
        }
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        total = total.saturating_add(len);
        if len > MAX_ZIP_ENTRY_BYTES {
            return Some(format!(
                "`{rel}` is {len} bytes, over {MAX_ZIP_ENTRY_BYTES}"
            ));
        }
        if total > MAX_ZIP_TOTAL_BYTES {
            return Some(format!(
                "the files add up to more than {MAX_ZIP_TOTAL_BYTES} bytes"
            ));
        }
    }
    let entries = rendered.len().saturating_add(dirs.len());
    (entries > MAX_ZIP_ENTRIES)
        .then(|| format!("it would hold {entries} entries, over {MAX_ZIP_ENTRIES}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(
            safe_entry_parts("ManageIQ/System/x.yaml").unwrap(),
            vec!["ManageIQ", "System", "x.yaml"]
        );
        assert_eq!(safe_entry_parts("ManageIQ/").unwrap(), vec!["ManageIQ"]);
        assert!(safe_entry_parts("../evil").is_err());
        assert!(safe_entry_parts("a/../../evil").is_err());
        assert!(safe_entry_parts("/etc/passwd").is_err());
        assert!(safe_entry_parts("C:/x").is_err());
        assert!(safe_entry_parts("a\\b").is_err());
        assert!(safe_entry_parts("a//b").is_err());
    }
}
