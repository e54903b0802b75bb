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
    /// Export only this namespace (`Ns` or `Ns/Sub`, case-insensitive)
    /// and what it holds, with the `__domain__.yaml` and the
    /// `__namespace__.yaml` of each parent (ManageIQ's `NAMESPACE=`).
    pub namespace: Option<String>,
    /// With `namespace`, export only this class of it (ManageIQ's
    /// `CLASS=`). Unlike ManageIQ, the parent namespaces' files are written
    /// too, so the export imports as it is.
    pub class: Option<String>,
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
    /// `--namespace` or `--class` names nothing in the domain.
    #[error("no {what} `{path}` in domain `{domain}`; run `automate datastore tree {domain}` to see what it holds")]
    PartNotFound {
        /// `namespace` or `class`.
        what: &'static str,
        /// What was asked for.
        path: String,
        /// The domain searched.
        domain: String,
    },
    /// `namespace` or `class` was given with every domain (`*`).
    #[error("--namespace and --class take one domain, not `*`")]
    PartOfEveryDomain,
    /// `class` was given without `namespace`.
    #[error("--class needs --namespace (the namespace holding the class), as ManageIQ's CLASS= needs NAMESPACE=")]
    ClassWithoutNamespace,
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
    let (d, name) = load_for_export(root, domain)?;
    let d = select_part(d, opts)?;
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

/// The domain named `domain` (case-insensitive) of the datastore at
/// `root`, loaded, with the name it is exported under; a domain with a
/// loading problem or a name that cannot be a directory is refused.
fn load_for_export(root: &Path, domain: &str) -> Result<(Domain, String), ExportError> {
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
    let mut d = d;
    // ManageIQ's exporter drops a git domain's repository and commit.
    super::git::strip_git_columns(&mut d.doc);
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
    Ok((d, name))
}

/// The domain cut down to `opts.namespace` (and `opts.class`): the
/// namespaces on the way keep their files but only the one child on the
/// path; the namespace itself keeps everything, or only the class.
fn select_part(mut d: Domain, opts: &ExportOptions) -> Result<Domain, ExportError> {
    let Some(ns_path) = opts.namespace.as_deref() else {
        if opts.class.is_some() {
            return Err(ExportError::ClassWithoutNamespace);
        }
        return Ok(d);
    };
    let segs: Vec<&str> = ns_path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = |what, path: &str, d: &Domain| ExportError::PartNotFound {
        what,
        path: path.to_string(),
        domain: d.name().to_string(),
    };
    if segs.is_empty() {
        return Err(not_found("namespace", ns_path, &d));
    }
    // Only the test files of what is exported (a class's `__tests__/`).
    let prefix = format!("{}/", segs.join("/").to_lowercase());
    let class_prefix = opts
        .class
        .as_deref()
        .map(|c| format!("{prefix}{}.class/", c.to_lowercase()));
    d.tests.retain(|(rel, _)| {
        let rel = rel.to_lowercase();
        rel.starts_with(class_prefix.as_deref().unwrap_or(&prefix))
    });
    let mut level = std::mem::take(&mut d.namespaces);
    d.classes.clear();
    // Walk down, keeping one namespace per level.
    let mut chain: Vec<super::model::Namespace> = Vec::new();
    for seg in &segs {
        let Some(pos) = level.iter().position(|n| n.name.eq_ignore_ascii_case(seg)) else {
            return Err(not_found("namespace", ns_path, &d));
        };
        let mut ns = level.swap_remove(pos);
        level = std::mem::take(&mut ns.namespaces);
        chain.push(ns);
    }
    let Some(mut target) = chain.pop() else {
        return Err(not_found("namespace", ns_path, &d));
    };
    target.namespaces = level;
    if let Some(class) = opts.class.as_deref() {
        let Some(c) = target
            .classes
            .iter()
            .position(|c| c.name().eq_ignore_ascii_case(class))
        else {
            return Err(not_found("class", &format!("{ns_path}/{class}"), &d));
        };
        let kept = target.classes.swap_remove(c);
        target.classes = vec![kept];
        target.namespaces.clear();
    }
    // Parents from the inside out: each holds only the next one.
    let mut node = target;
    while let Some(mut parent) = chain.pop() {
        parent.classes.clear();
        parent.namespaces = vec![node];
        node = parent;
    }
    d.namespaces = vec![node];
    Ok(d)
}

/// Exports every domain of the datastore at `root` (ManageIQ's
/// `DOMAIN='*'`): each to `dest/<Domain>`, or, when `dest` ends in `.zip`,
/// all of them side by side in one zip (as `evm:automate:backup`). A
/// domain with a loading problem stops the export there (domains exported
/// to directories before it stay).
pub fn export_all(
    root: &Path,
    dest: &Path,
    opts: &ExportOptions,
) -> Result<Vec<ExportSummary>, ExportError> {
    if opts.namespace.is_some() || opts.class.is_some() {
        return Err(ExportError::PartOfEveryDomain);
    }
    let names: Vec<String> = if root.join(DOMAIN_FILE).is_file() {
        let mut problems = Vec::new();
        dsfs::read_domain(root, &mut problems)
            .map(|d| vec![d.name().to_string()])
            .unwrap_or_default()
    } else {
        let (found, _) =
            domain_dirs(root).map_err(|e| export_io("read the datastore directory", root, e))?;
        found.iter().map(|d| d.info.name.to_string()).collect()
    };
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let is_zip = dest
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if !is_zip {
        return names.iter().map(|n| export(root, n, dest, opts)).collect();
    }
    // One zip: every domain rendered (and checked) before anything is written.
    let mut rendered = Vec::new();
    let mut summaries = Vec::new();
    for n in &names {
        let (d, name) = load_for_export(root, n)?;
        let files = dsfs::render_domain(&d, &name);
        summaries.push(ExportSummary {
            domain: name,
            path: dest.to_path_buf(),
            zip: true,
            files: files.len(),
            counts: d.counts(),
        });
        rendered.extend(files);
    }
    write_zip(&rendered, dest, opts.overwrite)?;
    Ok(summaries)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Class, Namespace};

    fn ns(name: &str, namespaces: Vec<Namespace>, classes: &[&str]) -> Namespace {
        Namespace {
            name: name.into(),
            doc: crate::model::Document(Default::default()),
            namespaces,
            classes: classes
                .iter()
                .map(|c| Class {
                    dir_name: format!("{c}.class"),
                    doc: crate::model::Document(Default::default()),
                    instances: Vec::new(),
                    methods: Vec::new(),
                })
                .collect(),
        }
    }

    fn domain() -> Domain {
        Domain {
            dir_name: "D".into(),
            doc: crate::model::Document(Default::default()),
            namespaces: vec![
                ns(
                    "System",
                    vec![ns("Event", vec![ns("Deep", vec![], &["X"])], &["A", "B"])],
                    &["Top"],
                ),
                ns("Other", vec![], &["O"]),
            ],
            classes: Vec::new(),
            tests: Vec::new(),
        }
    }

    /// The tree as `ns/ns/Class` paths.
    fn paths(namespaces: &[Namespace], prefix: &str, out: &mut Vec<String>) {
        for n in namespaces {
            let here = format!("{prefix}{}", n.name);
            out.push(format!("{here}/"));
            for c in &n.classes {
                out.push(format!("{here}/{}", c.name()));
            }
            paths(&n.namespaces, &format!("{here}/"), out);
        }
    }

    #[test]
    fn a_namespace_or_a_class_keeps_only_its_path() {
        let part = |namespace: Option<&str>, class: Option<&str>| {
            let opts = ExportOptions {
                overwrite: false,
                namespace: namespace.map(str::to_string),
                class: class.map(str::to_string),
            };
            select_part(domain(), &opts).map(|d| {
                let mut out = Vec::new();
                paths(&d.namespaces, "", &mut out);
                out
            })
        };
        assert_eq!(part(None, None).unwrap().len(), 9);
        assert_eq!(
            part(Some("system/event"), None).unwrap(),
            [
                "System/",
                "System/Event/",
                "System/Event/A",
                "System/Event/B",
                "System/Event/Deep/",
                "System/Event/Deep/X"
            ]
        );
        assert_eq!(
            part(Some("System/Event"), Some("b")).unwrap(),
            ["System/", "System/Event/", "System/Event/B"]
        );
        assert!(matches!(
            part(Some("System/Nope"), None),
            Err(ExportError::PartNotFound {
                what: "namespace",
                ..
            })
        ));
        assert!(matches!(
            part(Some("System"), Some("Nope")),
            Err(ExportError::PartNotFound { what: "class", .. })
        ));
        assert!(matches!(
            part(None, Some("A")),
            Err(ExportError::ClassWithoutNamespace)
        ));
    }
}
