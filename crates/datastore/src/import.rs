//! Importing a whole domain (`automate import`).
//!
//! Import takes a domain directory, a directory holding domain directories, a
//! repository with `__domain__.yaml` at its root, or a `.zip` in ManageIQ's
//! layout (`<Domain>/__domain__.yaml ...`). It is all or nothing:
//!
//! 1. a zip is checked entry by entry and extracted to a temporary directory
//!    ([`zip_safety::extract_zip`]: unsafe names, links and special files are
//!    refused, entries and sizes are limited and counted while
//!    decompressing);
//! 2. the whole domain is parsed: any problem (YAML error, bad shape, bad
//!    name, unknown instance field, a symbolic link anywhere in the tree, a
//!    file name that is not UTF-8, a second YAML document in a file, ...)
//!    aborts with the list of problems. Nothing is read through a link or
//!    from outside the source tree ([`dsfs::read_root`]). Warnings (a
//!    `*.YAML` file, which ManageIQ does not load either) are returned in
//!    [`ImportSummary::warnings`];
//! 3. the options are applied to the in-memory `__domain__.yaml` (name,
//!    priority, enabled, source; see [`import`]);
//! 4. the domain is written into a temporary directory inside the datastore
//!    root and swapped into place in one step ([`swap::swap_in`]: a kill at
//!    any point leaves the old or the new domain, never none; what a killed
//!    import leaves behind is recovered and removed by the next import or
//!    `Datastore::open`).
//!
//! A failed import leaves the datastore as it was. Export, the way back, is
//! [`export`](mod@super::export).
//!
//! **Read-only domains** (`source` system, user_locked or remote) refuse to be
//! overwritten ([`ensure_writable`]). One exception: importing the `ManageIQ`
//! domain over the `ManageIQ` domain with `overwrite` is how the shipped
//! domain is updated, so it is allowed (under its own name only: a rename
//! never overwrites a read-only domain).

use super::dirs::{domain_dirs, domain_info, DomainDir};
use super::fs::{self as dsfs, Problem, ProblemList, WriteError, DOMAIN_FILE};
use super::index::DomainInfo;
use super::model::{Counts, Domain, Source};
use super::swap::{self, Workdir};
use super::validate;
use super::yaml::Value;
use super::zip_safety::{self, ZipError};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The shipped domain's name.
pub const MANAGEIQ: &str = "ManageIQ";

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Which domain of a source holding several (by directory or domain name,
    /// case-insensitive).
    pub domain_filter: Option<String>,
    /// A new name for the domain (`--domain NEW_NAME`): sets `name` and the directory.
    pub rename: Option<String>,
    /// The priority; else the existing domain's (overwrite), else highest + 1.
    pub priority: Option<i64>,
    /// Replace an existing domain of the same name (case-insensitive).
    pub overwrite: bool,
    /// Set `enabled`; else the existing domain's (overwrite), else the file's, else true.
    pub enabled: Option<bool>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The domain's name in the datastore (after any rename).
    pub domain: String,
    /// The domain directory in the datastore.
    pub path: PathBuf,
    /// The priority it was given (higher wins in the overlay).
    pub priority: i64,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Its `source`, as written to `__domain__.yaml`.
    pub source: Source,
    /// How many namespaces, classes, instances and methods it holds.
    pub counts: Counts,
    /// Files written.
    pub files: usize,
    /// An existing domain was replaced.
    pub replaced: bool,
    /// What was skipped on purpose (e.g. a `*.YAML` file), with file names.
    pub warnings: Vec<Problem>,
}

/// Why an import failed. Nothing was changed in the datastore.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the source or writing the datastore failed.
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        /// What was being done (`read`, `create a temporary directory in`).
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The error the operating system gave.
        #[source]
        error: io::Error,
    },
    /// The source does not exist.
    #[error("`{}` does not exist", input.display())]
    NoSuchSource {
        /// The path given as the source.
        input: PathBuf,
    },
    /// The source is neither a directory nor a `.zip` file.
    #[error("`{}` is neither a directory nor a .zip file", input.display())]
    NotASource {
        /// The path given as the source.
        input: PathBuf,
    },
    /// No `__domain__.yaml` in the source or in any of its directories.
    #[error(
        "no domain found in `{}`: expected `__domain__.yaml` in it or in one of its directories",
        input.display()
    )]
    NoDomain {
        /// The source directory or zip.
        input: PathBuf,
    },
    /// The source holds several domains and [`ImportOptions::domain_filter`] chose none.
    #[error(
        "`{}` holds several domains ({}); choose one with --from NAME",
        input.display(),
        found.join(", ")
    )]
    SeveralDomains {
        /// The source directory or zip.
        input: PathBuf,
        /// The names of the domains in it.
        found: Vec<String>,
    },
    /// The source has no domain [`ImportOptions::domain_filter`] names.
    #[error(
        "`{}` has no domain `{wanted}` (it has: {})",
        input.display(),
        found.join(", ")
    )]
    DomainNotFound {
        /// The source directory or zip.
        input: PathBuf,
        /// The domain asked for.
        wanted: String,
        /// The names of the domains it does have.
        found: Vec<String>,
    },
    /// The domain has problems; nothing was imported.
    #[error("{}", ProblemList { what: "import", input, problems })]
    Invalid {
        /// The domain directory in the source.
        input: PathBuf,
        /// Every problem found, sorted by file.
        problems: Vec<Problem>,
    },
    /// A domain of that name (case-insensitive) exists and `overwrite` was not given.
    #[error(
        "domain `{domain}` already exists in the datastore (`{}`); pass --overwrite to replace \
         it, or --domain NEW_NAME to import it under another name",
        path.display()
    )]
    Exists {
        /// The name of the domain already there.
        domain: String,
        /// Its directory in the datastore.
        path: PathBuf,
    },
    /// The domain to replace is read-only.
    #[error(transparent)]
    ReadOnly(#[from] ReadOnlyDomain),
    /// An option that cannot apply to this domain (a priority other than 0 or
    /// `enabled: false` for `ManageIQ`); the text says which and what to do.
    #[error("{0}")]
    BadOption(String),
    /// The name to import under is not a valid domain name.
    #[error("cannot import as `{name}`: {reason}; choose another name with --domain NEW_NAME")]
    BadName {
        /// The name refused.
        name: String,
        /// Why it is refused (empty, a character not allowed, a leading `.`, `$`).
        reason: String,
    },
    /// A non-domain file or directory has the name the domain would take.
    #[error(
        "`{}` is in the way: it exists but is not a domain directory (no __domain__.yaml); \
         move it away and retry",
        path.display()
    )]
    InTheWay {
        /// The file or directory in the way.
        path: PathBuf,
    },
    /// The datastore root holds `__domain__.yaml` itself.
    #[error(
        "the datastore root `{}` is itself a domain (it holds __domain__.yaml); point \
         --datastore at the directory that holds the domains",
        root.display()
    )]
    RootIsDomain {
        /// The datastore root given.
        root: PathBuf,
    },
    /// The zip was refused or could not be read.
    #[error(transparent)]
    Zip(#[from] ZipError),
}

/// A write refused because the domain is read-only.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "domain `{domain}` is read-only (source: {}): system, user_locked and remote domains refuse \
     every write; import under another name with --domain NEW_NAME, or change its source",
    source_kind.as_str()
)]
pub struct ReadOnlyDomain {
    /// The domain's name.
    pub domain: String,
    /// Its `source` (never [`Source::User`]).
    pub source_kind: Source,
}

/// Refuses writes to a read-only domain (`source` system, user_locked, remote).
pub fn ensure_writable(info: &DomainInfo) -> Result<(), ReadOnlyDomain> {
    if info.source.is_read_only() {
        Err(ReadOnlyDomain {
            domain: info.name.to_string(),
            source_kind: info.source,
        })
    } else {
        Ok(())
    }
}

/// Imports one domain from `source` into the datastore at `root`.
///
/// Attributes written to `__domain__.yaml`:
/// * `name`: `opts.rename`, else the file's. A domain named `ManageIQ` (any
///   case) becomes exactly `ManageIQ` with priority 0, source `system`,
///   enabled, and no legacy `system` key; `--priority` other than 0 or
///   `--disabled` are refused for it.
/// * `priority`: `opts.priority`, else the replaced domain's, else the highest
///   priority in the datastore + 1 (1 in an empty datastore).
/// * `enabled`: `opts.enabled`, else the replaced domain's, else the file's, else true.
/// * `source`: kept; a legacy `system: true|false` key becomes `source:
///   user_locked|user`; a `system` domain imported under a new name becomes
///   `user` (a copy is the user's).
pub fn import(
    root: &Path,
    source: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    import_from(root, source, opts, None)
}

/// [`import`], the domain marked as coming from `git` when given
/// ([`crate::git`]): `source: remote` and the commit in `__domain__.yaml`;
/// a `remote` domain may then be replaced (a refresh).
pub(crate) fn import_from(
    root: &Path,
    source: &Path,
    opts: &ImportOptions,
    git: Option<&crate::git::GitOrigin>,
) -> Result<ImportSummary, ImportError> {
    let Prepared {
        domain,
        name,
        conflict,
        warnings,
        extracted,
    } = prepare(root, source, opts, false, git)?;
    let conflict = conflict.as_ref();
    // Write into a temporary directory inside the root, then rename into place.
    let created_root = !root.exists();
    if created_root {
        fs::create_dir_all(root).map_err(|e| io_err("create the datastore directory", root, e))?;
    }
    let result = write_and_swap(root, &domain, &name, conflict.map(|c| c.path.as_path()));
    if result.is_err() && created_root {
        let _ = fs::remove_dir(root);
    }
    let files = result?;
    if let Some(tmp) = extracted {
        tmp.close();
    }
    Ok(ImportSummary {
        warnings,
        path: root.join(&name),
        priority: domain.priority(),
        enabled: domain.enabled(),
        source: domain.source(),
        counts: domain.counts(),
        files,
        replaced: conflict.is_some(),
        domain: name,
    })
}

/// An import checked and ready to write: the domain with the options
/// applied, its name, the domain it replaces, the warnings, and the
/// temporary directory a zip was extracted to (kept until the end).
struct Prepared {
    domain: Domain,
    name: String,
    conflict: Option<DomainDir>,
    warnings: Vec<Problem>,
    extracted: Option<Workdir>,
}

/// Reads and checks the source, picks the name and applies the options,
/// writing nothing to `root` (the debris of killed imports is cleaned
/// first unless `preview`).
fn prepare(
    root: &Path,
    source: &Path,
    opts: &ImportOptions,
    preview: bool,
    git: Option<&crate::git::GitOrigin>,
) -> Result<Prepared, ImportError> {
    if root.join(DOMAIN_FILE).is_file() {
        return Err(ImportError::RootIsDomain {
            root: root.to_path_buf(),
        });
    }
    let meta = fs::metadata(source).map_err(|_| ImportError::NoSuchSource {
        input: source.to_path_buf(),
    })?;
    // What killed imports left: an interrupted swap is rolled back first
    // (a preview writes nothing, not even that).
    if !preview {
        swap::clean_debris(root, swap::IMPORT_PREFIX);
    }
    // A zip is checked and extracted first; its temporary directory lives
    // until the import is over.
    let (extracted, zip_path) = if meta.is_file() {
        if !is_zip(source) {
            return Err(ImportError::NotASource {
                input: source.to_path_buf(),
            });
        }
        let temp = std::env::temp_dir();
        swap::clean_debris(&temp, swap::ZIP_PREFIX);
        let tmp = Workdir::new_in(&temp, swap::ZIP_PREFIX)
            .map_err(|e| io_err("create a temporary directory for", &temp, e))?;
        zip_safety::extract_zip(source, tmp.path())?;
        (Some(tmp), Some(source.to_path_buf()))
    } else {
        (None, None)
    };
    let base = extracted.as_ref().map(|t| t.path()).unwrap_or(source);

    let domain_dir = select_domain(base, source, opts.domain_filter.as_deref())?;
    let show = |p: &Path| -> PathBuf {
        match (&zip_path, p.strip_prefix(base)) {
            (Some(z), Ok(rel)) => PathBuf::from(format!("{}:{}", z.display(), rel.display())),
            _ => p.to_path_buf(),
        }
    };

    // Parse everything; any problem aborts.
    let mut problems = Vec::new();
    let domain = dsfs::read_domain(&domain_dir, &mut problems);
    if let Some(d) = &domain {
        problems.extend(validate::check_domain(d, &domain_dir));
    }
    let (mut warnings, mut problems): (Vec<Problem>, Vec<Problem>) =
        problems.into_iter().partition(|p| p.warning);
    let Some(mut domain) = domain.filter(|_| problems.is_empty()) else {
        if problems.is_empty() {
            problems.push(Problem::new(
                &domain_dir.join(DOMAIN_FILE),
                "cannot be read",
            ));
        }
        validate::sort_problems(&mut problems);
        for p in &mut problems {
            p.file = show(&p.file);
        }
        return Err(ImportError::Invalid {
            input: source.to_path_buf(),
            problems,
        });
    };

    validate::sort_problems(&mut warnings);
    for p in &mut warnings {
        p.file = show(&p.file);
    }

    // The destination.
    let (existing, others) =
        domain_dirs(root).map_err(|e| io_err("read the datastore directory", root, e))?;
    let original_name = domain.name().to_string();
    let wanted = opts.rename.clone().unwrap_or_else(|| original_name.clone());
    if let Some(reason) = validate::bad_name(&wanted, validate::NameKind::Domain)
        .or_else(|| {
            wanted
                .starts_with('.')
                .then(|| "it starts with `.`".to_string())
        })
        .or_else(|| (wanted == "$").then(|| "`$` is reserved".to_string()))
    {
        return Err(ImportError::BadName {
            name: wanted,
            reason,
        });
    }
    let is_miq = wanted.eq_ignore_ascii_case(MANAGEIQ);
    let name = if is_miq { MANAGEIQ.to_string() } else { wanted };
    if is_miq && git.is_some() {
        return Err(ImportError::BadOption(
            "the ManageIQ domain is never imported from git (ManageIQ refuses it too); import \
             it under another name with --domain NEW_NAME"
                .into(),
        ));
    }
    if is_miq {
        if opts.priority.is_some_and(|p| p != 0) {
            return Err(ImportError::BadOption(
                "the ManageIQ domain always has priority 0; drop --priority, or import it \
                 under another name with --domain NEW_NAME"
                    .into(),
            ));
        }
        if opts.enabled == Some(false) {
            return Err(ImportError::BadOption(
                "the ManageIQ domain cannot be disabled; drop --disabled, or import it under \
                 another name with --domain NEW_NAME"
                    .into(),
            ));
        }
    } else if let Some(p) = opts
        .priority
        .filter(|p| !(1..=crate::settings::MAX_PRIORITY).contains(p))
    {
        return Err(ImportError::BadOption(format!(
            "priority: {p} is out of 1..={} (0 is the ManageIQ domain's)",
            crate::settings::MAX_PRIORITY
        )));
    }
    let conflict = existing.iter().find(|d| {
        d.info.name.eq_ignore_ascii_case(&name) || d.dir_name.eq_ignore_ascii_case(&name)
    });
    if let Some(c) = conflict {
        if !opts.overwrite {
            return Err(ImportError::Exists {
                domain: c.info.name.to_string(),
                path: c.path.clone(),
            });
        }
        let updating_shipped = is_miq
            && c.info.name.eq_ignore_ascii_case(MANAGEIQ)
            && original_name.eq_ignore_ascii_case(MANAGEIQ);
        // A git import may replace a domain that came from git (a refresh,
        // or the same repository at another ref), as ManageIQ's does.
        let refreshing = git.is_some() && c.info.source == Source::Remote;
        if !updating_shipped && !refreshing {
            ensure_writable(&c.info)?;
        }
    }
    if let Some(p) = others.iter().find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(&name))
    }) {
        return Err(ImportError::InTheWay { path: p.clone() });
    }

    // Apply the options to `__domain__.yaml`.
    let renamed = !name.eq_ignore_ascii_case(&original_name);
    apply_options(
        &mut domain,
        &name,
        renamed,
        is_miq,
        opts,
        conflict,
        &existing,
    );
    if let Some(g) = git {
        g.apply(&mut domain.doc);
    }
    domain.dir_name = name.clone();
    Ok(Prepared {
        domain,
        name,
        conflict: conflict.cloned(),
        warnings,
        extracted,
    })
}

/// What a change of one file would do ([`preview`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// A file the import adds.
    Add,
    /// A file the import rewrites with other bytes.
    Update,
    /// A file of the replaced domain the import removes.
    Remove,
}

impl Change {
    /// `add`, `update` or `remove`, as ManageIQ's import statistics say.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Update => "update",
            Change::Remove => "remove",
        }
    }
}

/// One file an import would change: the change, what the file holds
/// (`domain`, `namespace`, `class`, `instance`, `method`) and its path
/// inside the domain directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewItem {
    /// Added, updated or removed.
    pub change: Change,
    /// `domain`, `namespace`, `class`, `instance` or `method`.
    pub kind: &'static str,
    /// The file, relative to the domain directory (`System/Event.class/__class__.yaml`).
    pub file: String,
}

/// What an import would do ([`preview`]), ManageIQ's `PREVIEW=true`.
#[derive(Debug, Clone)]
pub struct ImportPreview {
    /// What the import would report, `files` being the files it would write.
    pub summary: ImportSummary,
    /// Every file added, updated or removed, by file.
    pub changes: Vec<PreviewItem>,
    /// Files written with the bytes they already have.
    pub unchanged: usize,
}

/// What [`import`] would do with the same arguments, writing nothing: the
/// same checks and errors (an invalid source, a name clash without
/// `overwrite`, a read-only domain), then, file by file, what would be
/// added, updated or removed in `root/<Domain>`.
pub fn preview(
    root: &Path,
    source: &Path,
    opts: &ImportOptions,
) -> Result<ImportPreview, ImportError> {
    preview_from(root, source, opts, None)
}

/// [`preview`] of a git import ([`import_from`]).
pub(crate) fn preview_from(
    root: &Path,
    source: &Path,
    opts: &ImportOptions,
    git: Option<&crate::git::GitOrigin>,
) -> Result<ImportPreview, ImportError> {
    let p = prepare(root, source, opts, true, git)?;
    let new: std::collections::BTreeMap<String, Vec<u8>> = dsfs::render_domain(&p.domain, &p.name)
        .into_iter()
        .map(|(rel, bytes)| {
            let rel = rel
                .strip_prefix(&format!("{}/", p.name))
                .map(str::to_string)
                .unwrap_or(rel);
            (rel, bytes)
        })
        .collect();
    let mut old = std::collections::BTreeMap::new();
    if let Some(c) = &p.conflict {
        files_under(&c.path, &c.path, &mut old)
            .map_err(|e| io_err("read the replaced domain", &c.path, e))?;
    }
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (rel, bytes) in &new {
        match old.get(rel) {
            None => changes.push((Change::Add, rel.clone())),
            Some(before) if before != bytes => changes.push((Change::Update, rel.clone())),
            Some(_) => unchanged += 1,
        }
    }
    for rel in old.keys().filter(|r| !new.contains_key(*r)) {
        changes.push((Change::Remove, rel.clone()));
    }
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    let changes = changes
        .into_iter()
        .map(|(change, file)| PreviewItem {
            change,
            kind: file_kind(&file),
            file,
        })
        .collect();
    let d = &p.domain;
    Ok(ImportPreview {
        summary: ImportSummary {
            warnings: p.warnings,
            path: root.join(&p.name),
            priority: d.priority(),
            enabled: d.enabled(),
            source: d.source(),
            counts: d.counts(),
            files: new.len(),
            replaced: p.conflict.is_some(),
            domain: p.name,
        },
        changes,
        unchanged,
    })
}

/// Every regular file below `dir`, by path relative to `base` (with `/`).
fn files_under(
    base: &Path,
    dir: &Path,
    out: &mut std::collections::BTreeMap<String, Vec<u8>>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            files_under(base, &path, out)?;
        } else if ty.is_file() {
            let rel = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.insert(rel, fs::read(&path)?);
        }
    }
    Ok(())
}

/// What a file of the export layout holds, from its path.
fn file_kind(rel: &str) -> &'static str {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if name == DOMAIN_FILE {
        "domain"
    } else if name == "__namespace__.yaml" {
        "namespace"
    } else if name == "__class__.yaml" {
        "class"
    } else if rel.contains("/__methods__/") || rel.starts_with("__methods__/") {
        "method"
    } else if rel.contains(".class/") {
        "instance"
    } else {
        "file"
    }
}

fn apply_options(
    domain: &mut Domain,
    name: &str,
    renamed: bool,
    is_miq: bool,
    opts: &ImportOptions,
    conflict: Option<&DomainDir>,
    existing: &[DomainDir],
) {
    let doc = &mut domain.doc;
    if doc.attr_str("name") != Some(name) {
        doc.set_attribute("name", Value::Str(name.to_string()));
    }
    let set = |doc: &mut super::model::Document, key: &str, v: Value| {
        if doc.attributes().get(key) != Some(&v) {
            doc.set_attribute(key, v);
        }
    };
    if is_miq {
        set(doc, "priority", Value::Int(0));
        set(doc, "enabled", Value::Bool(true));
        set(doc, "source", Value::Str("system".into()));
        doc.remove_attribute("system");
        return;
    }
    let attrs = doc.attributes();
    if attrs.get_str("source").and_then(Source::parse).is_none() {
        if let Some(legacy) = attrs.get("system").cloned() {
            let source = if legacy.as_bool() == Some(true) {
                "user_locked"
            } else {
                "user"
            };
            doc.remove_attribute("system");
            set(doc, "source", Value::Str(source.into()));
        }
    }
    if renamed && doc.attr_str("source") == Some("system") {
        set(doc, "source", Value::Str("user".into()));
    }
    let priority = opts
        .priority
        .or_else(|| conflict.map(|c| c.info.priority))
        .unwrap_or_else(|| {
            existing
                .iter()
                .filter(|d| conflict.is_none_or(|c| c.path != d.path))
                .map(|d| d.info.priority)
                .max()
                .unwrap_or(0)
                + 1
        });
    set(doc, "priority", Value::Int(priority));
    let enabled = opts
        .enabled
        .or_else(|| conflict.map(|c| c.info.enabled))
        .or_else(|| doc.attributes().get("enabled").and_then(Value::as_bool))
        .unwrap_or(true);
    set(doc, "enabled", Value::Bool(enabled));
}

/// Renders `domain` into a `.import-*` directory in `root`, then swaps it
/// into `root/<name>` in one step, replacing `old` ([`swap::swap_in`]).
/// Returns the number of files written.
fn write_and_swap(
    root: &Path,
    domain: &Domain,
    name: &str,
    old: Option<&Path>,
) -> Result<usize, ImportError> {
    let tmp = Workdir::new_in(root, swap::IMPORT_PREFIX)
        .map_err(|e| io_err("create a temporary directory in", root, e))?;
    let files = dsfs::write_domain(domain, tmp.path(), name)?;
    let new = tmp.path().join(name);
    let dest = root.join(name);
    swap::swap_in(tmp, &new, &dest, old)
        .map_err(WriteError::during("move the new domain into", &dest))?;
    Ok(files)
}

impl From<WriteError> for ImportError {
    fn from(f: WriteError) -> Self {
        ImportError::Io {
            action: f.action,
            path: f.path,
            error: f.error,
        }
    }
}

fn io_err(action: &'static str, path: &Path, error: io::Error) -> ImportError {
    ImportError::Io {
        action,
        path: path.to_path_buf(),
        error,
    }
}

fn is_zip(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

/// The domain directory in `base`: `base` itself when it holds
/// `__domain__.yaml`, else its one child domain directory, else the one
/// `filter` names (by directory or domain name, case-insensitive).
fn select_domain(base: &Path, input: &Path, filter: Option<&str>) -> Result<PathBuf, ImportError> {
    let matches = |dir: &Path, dir_name: &str, f: &str| {
        dir_name.eq_ignore_ascii_case(f) || domain_info(dir, dir_name).name.eq_ignore_ascii_case(f)
    };
    if base.join(DOMAIN_FILE).is_file() {
        let dir_name = base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(f) = filter {
            if !matches(base, &dir_name, f) {
                return Err(ImportError::DomainNotFound {
                    input: input.to_path_buf(),
                    wanted: f.to_string(),
                    found: vec![domain_info(base, &dir_name).name.to_string()],
                });
            }
        }
        return Ok(base.to_path_buf());
    }
    let (found, others) = domain_dirs(base).map_err(|e| io_err("read", base, e))?;
    // A linked or non-UTF-8 directory is never imported; say so rather than
    // "no domain" when it may be the one that was meant.
    let refused: Vec<Problem> = others
        .iter()
        .filter_map(|p| {
            let meta = fs::symlink_metadata(p).ok()?;
            if meta.file_type().is_symlink() {
                Some(Problem::new(
                    p,
                    "is a symbolic link; import never follows a link: copy the domain directory \
                     itself here",
                ))
            } else if meta.is_dir() && p.file_name().is_some_and(|n| n.to_str().is_none()) {
                Some(Problem::new(
                    p,
                    format!(
                        "the name `{}` is not valid UTF-8; rename the directory",
                        dsfs::escape_path(p)
                    ),
                ))
            } else {
                None
            }
        })
        .collect();
    let refuse = |refused: Vec<Problem>| ImportError::Invalid {
        input: input.to_path_buf(),
        problems: refused,
    };
    match (found.len(), filter) {
        (0, _) if !refused.is_empty() => Err(refuse(refused)),
        (0, _) => Err(ImportError::NoDomain {
            input: input.to_path_buf(),
        }),
        (_, Some(f))
            if !found.iter().any(|d| matches(&d.path, &d.dir_name, f))
                && refused.iter().any(|p| {
                    p.file
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(f))
                }) =>
        {
            Err(refuse(refused))
        }
        (_, Some(f)) => found
            .iter()
            .find(|d| matches(&d.path, &d.dir_name, f))
            .map(|d| d.path.clone())
            .ok_or_else(|| ImportError::DomainNotFound {
                input: input.to_path_buf(),
                wanted: f.to_string(),
                found: found.iter().map(|d| d.info.name.to_string()).collect(),
            }),
        (1, None) => Ok(found[0].path.clone()),
        (_, None) => Err(ImportError::SeveralDomains {
            input: input.to_path_buf(),
            found: found.iter().map(|d| d.info.name.to_string()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_names_what_each_file_holds() {
        let cases = [
            ("__domain__.yaml", "domain"),
            ("System/__namespace__.yaml", "namespace"),
            ("System/Event.class/__class__.yaml", "class"),
            ("System/Event.class/user_run_vm.yaml", "instance"),
            ("System/Event.class/_missing.yaml", "instance"),
            ("System/Event.class/__methods__/say.yaml", "method"),
            ("System/Event.class/__methods__/say.rhai", "method"),
            ("Top.class/__methods__/m.rb", "method"),
            ("README.md", "file"),
        ];
        for (file, kind) in cases {
            assert_eq!(file_kind(file), kind, "{file}");
        }
    }
}
