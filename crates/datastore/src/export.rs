//! Exporting a whole domain (`automate export`): `dest/<Domain>/...`, or,
//! when `dest` ends in `.zip`, a zip with `<Domain>/...` entries (directory
//! entries included, deflate) that import would accept
//! (`zip_safety::exceeds_limits`). Both go through
//! [`fs::render_domain`](super::fs::render_domain), so an unmodified imported
//! domain exports byte for byte as it came in. Either is staged in a locked
//! temporary file or directory next to `dest` and moved into place in one
//! step ([`swap`]).

use super::dirs::domain_dirs;
use super::fs::{self as dsfs, Problem, ProblemList, WriteError, DOMAIN_FILE};
use super::model::{Counts, Domain};
use super::swap::{self, Workdir};
use super::validate;
use super::zip_safety;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Replace an existing `dest/<Domain>` directory or zip.
    pub overwrite: bool,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The domain's name as exported.
    pub domain: String,
    /// The domain directory or the zip written.
    pub path: PathBuf,
    /// Whether a zip was written (else a directory).
    pub zip: bool,
    /// The number of files written.
    pub files: usize,
    /// How many namespaces, classes, instances and methods the domain holds.
    pub counts: Counts,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the datastore or writing the export failed.
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        /// What was being done (`create directory`, `move the zip into`).
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The error the operating system gave.
        #[source]
        error: io::Error,
    },
    /// The datastore has no domain of that name.
    #[error(
        "no domain `{domain}` in the datastore `{}` (it has: {})",
        root.display(),
        found.join(", ")
    )]
    DomainNotFound {
        /// The domain asked for.
        domain: String,
        /// The datastore root searched.
        root: PathBuf,
        /// The names of the domains it does have.
        found: Vec<String>,
    },
    /// The domain has problems (or an unexportable name); nothing was written.
    #[error("{}", ProblemList { what: "export", input, problems })]
    Invalid {
        /// The domain directory.
        input: PathBuf,
        /// Every problem found, sorted by file.
        problems: Vec<Problem>,
    },
    /// The destination exists and `overwrite` was not given.
    #[error("`{}` already exists; pass --overwrite to replace it", path.display())]
    Exists {
        /// The directory or zip in the way.
        path: PathBuf,
    },
    /// The domain is beyond a limit import puts on zips (entries or bytes).
    #[error(
        "cannot export to zip `{}`: {reason}, so import would refuse it; export to a directory \
         instead",
        path.display()
    )]
    TooLarge {
        /// The zip that was not written.
        path: PathBuf,
        /// The limit passed: too many entries, a file too large, or too many
        /// bytes in all.
        reason: String,
    },
    /// Writing the zip failed.
    #[error("cannot write zip `{}`: {error}", path.display())]
    Zip {
        /// The zip being written.
        path: PathBuf,
        /// The zip library's error.
        #[source]
        error: zip::result::ZipError,
    },
}

fn export_io(action: &'static str, path: &Path, error: io::Error) -> ExportError {
    ExportError::Io {
        action,
        path: path.to_path_buf(),
        error,
    }
}

impl From<WriteError> for ExportError {
    fn from(f: WriteError) -> Self {
        ExportError::Io {
            action: f.action,
            path: f.path,
            error: f.error,
        }
    }
}

/// Exports the domain named `domain` (case-insensitive) of the datastore at
/// `root` to `dest`: a directory (`dest/<Domain>/...`) or, when `dest` ends
/// in `.zip`, a zip of `<Domain>/...`. A domain with any loading problem is
/// refused (it would export incomplete).
pub fn export(
    root: &Path,
    domain: &str,
    dest: &Path,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    let dir = if root.join(DOMAIN_FILE).is_file() {
        root.to_path_buf()
    } else {
        let (found, _) =
            domain_dirs(root).map_err(|e| export_io("read the datastore directory", root, e))?;
        match found.iter().find(|d| {
            d.info.name.eq_ignore_ascii_case(domain) || d.dir_name.eq_ignore_ascii_case(domain)
        }) {
            Some(d) => d.path.clone(),
            None => {
                return Err(ExportError::DomainNotFound {
                    domain: domain.to_string(),
                    root: root.to_path_buf(),
                    found: found.iter().map(|d| d.info.name.to_string()).collect(),
                })
            }
        }
    };
    let mut problems = Vec::new();
    let loaded = dsfs::read_domain(&dir, &mut problems);
    // Warnings (files the loader skips on purpose) do not stop an export.
    problems.retain(|p| !p.warning);
    let Some(d) = loaded.filter(|_| problems.is_empty()) else {
        validate::sort_problems(&mut problems);
        return Err(ExportError::Invalid {
            input: dir,
            problems,
        });
    };
    if root.join(DOMAIN_FILE).is_file() && !d.name().eq_ignore_ascii_case(domain) {
        return Err(ExportError::DomainNotFound {
            domain: domain.to_string(),
            root: root.to_path_buf(),
            found: vec![d.name().to_string()],
        });
    }
    let name = d.name().to_string();
    // The name becomes a directory or zip entry name: it must be a plain one.
    if let Some(reason) = validate::bad_name(&name, validate::NameKind::Domain).or_else(|| {
        name.starts_with('.')
            .then(|| "it starts with `.`".to_string())
    }) {
        return Err(ExportError::Invalid {
            input: dir.clone(),
            problems: vec![Problem::new(
                &dir.join(DOMAIN_FILE),
                format!("domain name `{name}` is invalid: {reason}"),
            )
            .with_field("name")],
        });
    }
    let is_zip = dest
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    let rendered = dsfs::render_domain(&d, &name);
    let files = rendered.len();
    let path = if is_zip {
        write_zip(&rendered, dest, opts.overwrite)?;
        dest.to_path_buf()
    } else {
        write_dir(&d, &name, dest, opts.overwrite)?
    };
    Ok(ExportSummary {
        domain: name,
        path,
        zip: is_zip,
        files,
        counts: d.counts(),
    })
}

fn write_dir(d: &Domain, name: &str, dest: &Path, overwrite: bool) -> Result<PathBuf, ExportError> {
    let target = dest.join(name);
    let existing = fs::read_dir(dest).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(name))
        })
    });
    if let Some(p) = &existing {
        if !overwrite {
            return Err(ExportError::Exists { path: p.clone() });
        }
    }
    fs::create_dir_all(dest).map_err(|e| export_io("create directory", dest, e))?;
    swap::clean_debris(dest, swap::EXPORT_PREFIX);
    let tmp = Workdir::new_in(dest, swap::EXPORT_PREFIX)
        .map_err(|e| export_io("create a temporary directory in", dest, e))?;
    dsfs::write_domain(d, tmp.path(), name)?;
    let new = tmp.path().join(name);
    swap::swap_in(tmp, &new, &target, existing.as_deref())
        .map_err(|e| export_io("move the exported domain into", &target, e))?;
    Ok(target)
}

/// Writes the rendered files as a zip: a directory entry for every
/// directory (parents first, as `mkdir` adds them), then each file, deflated.
fn write_zip(
    rendered: &[dsfs::RenderedFile],
    dest: &Path,
    overwrite: bool,
) -> Result<(), ExportError> {
    if dest.exists() && !overwrite {
        return Err(ExportError::Exists {
            path: dest.to_path_buf(),
        });
    }
    if let Some(reason) = zip_safety::exceeds_limits(rendered) {
        return Err(ExportError::TooLarge {
            path: dest.to_path_buf(),
            reason,
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| export_io("create directory", &parent, e))?;
    // A temp file is private (0600); the export is an ordinary file.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".export-").suffix(".zip");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    swap::clean_debris(&parent, swap::EXPORT_PREFIX);
    let tmp = builder
        .tempfile_in(&parent)
        .map_err(|e| export_io("create a temporary file in", &parent, e))?;
    // Locked while written, so that a concurrent export's cleanup leaves it
    // alone and a later one removes it if this process is killed.
    swap::lock_exclusive(tmp.as_file())
        .map_err(|e| export_io("lock the temporary file", tmp.path(), e))?;
    let zip_err = |error| ExportError::Zip {
        path: dest.to_path_buf(),
        error,
    };
    {
        let mut zw = zip::ZipWriter::new(io::BufWriter::new(tmp.as_file()));
        let dir_opts = zip::write::SimpleFileOptions::default();
        let file_opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        let mut dirs_done = std::collections::HashSet::new();
        for (rel, bytes) in rendered {
            let mut prefix = String::new();
            let parts: Vec<&str> = rel.split('/').collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                prefix.push_str(part);
                prefix.push('/');
                if dirs_done.insert(prefix.clone()) {
                    zw.add_directory(prefix.as_str(), dir_opts)
                        .map_err(zip_err)?;
                }
            }
            zw.start_file(rel.as_str(), file_opts).map_err(zip_err)?;
            zw.write_all(bytes)
                .map_err(|e| export_io("write zip entry in", dest, e))?;
        }
        let mut inner = zw.finish().map_err(zip_err)?;
        inner.flush().map_err(|e| export_io("write", dest, e))?;
    }
    let persisted = if overwrite {
        tmp.persist(dest).map_err(|e| e.error)
    } else {
        tmp.persist_noclobber(dest).map_err(|e| e.error)
    };
    persisted.map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ExportError::Exists {
                path: dest.to_path_buf(),
            }
        } else {
            export_io("move the zip into", dest, e)
        }
    })?;
    Ok(())
}
