//! Importing and exporting whole domains (`automate import`, `automate export`).
//!
//! **Import** takes a domain directory, a directory holding domain
//! directories, a repository with `__domain__.yaml` at its root, or a `.zip`
//! in ManageIQ's layout (`<Domain>/__domain__.yaml ...`). It is all or nothing:
//!
//! 1. a zip is checked entry by entry (no `..`, absolute paths, drive letters,
//!    backslashes, names that are not UTF-8, symlinks or special files; at
//!    most [`MAX_ZIP_ENTRIES`] entries, [`MAX_ZIP_ENTRY_BYTES`] per entry and
//!    [`MAX_ZIP_TOTAL_BYTES`] in all, counted while decompressing, never
//!    trusting the sizes the zip declares) and extracted to a temporary
//!    directory;
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
//! A failed import leaves the datastore as it was.
//!
//! **Export** writes `dest/<Domain>/...` or, when `dest` ends in `.zip`, a zip
//! with `<Domain>/...` entries (directory entries included, deflate). Both go
//! through [`fs::render_domain`](super::fs::render_domain), so an unmodified
//! imported domain exports byte for byte as it came in.
//!
//! **Read-only domains** (`source` system, user_locked or remote) refuse to be
//! overwritten ([`ensure_writable`]). One exception: importing the `ManageIQ`
//! domain over the `ManageIQ` domain with `overwrite` is how the shipped
//! domain is updated, so it is allowed (under its own name only: a rename
//! never overwrites a read-only domain).

use super::fs::{self as dsfs, Problem, DOMAIN_FILE};
use super::index::DomainInfo;
use super::model::{Counts, Domain, Source};
use super::swap::{self, Workdir};
use super::validate;
use super::yaml::Value;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shipped domain's name.
pub const MANAGEIQ: &str = "ManageIQ";
/// Most entries a zip may have (directories included).
pub const MAX_ZIP_ENTRIES: usize = 100_000;
/// Most bytes a zip may expand to, all entries together.
pub const MAX_ZIP_TOTAL_BYTES: u64 = 512 * 1024 * 1024;
/// Most bytes one entry may expand to: the largest file the loader reads
/// (a YAML file; method bodies are capped lower). There is no bound on the
/// compression ratio: a method body of repetitive text compresses 100:1
/// and more, and what a bomb can do is bounded by the three sizes.
pub const MAX_ZIP_ENTRY_BYTES: u64 = super::yaml::MAX_FILE_BYTES as u64;

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
    pub domain: String,
    /// The domain directory in the datastore.
    pub path: PathBuf,
    pub priority: i64,
    pub enabled: bool,
    pub source: Source,
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
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error("`{}` does not exist", input.display())]
    NoSuchSource { input: PathBuf },
    #[error("`{}` is neither a directory nor a .zip file", input.display())]
    NotASource { input: PathBuf },
    #[error(
        "no domain found in `{}`: expected `__domain__.yaml` in it or in one of its directories",
        input.display()
    )]
    NoDomain { input: PathBuf },
    #[error(
        "`{}` holds several domains ({}); choose one with --from NAME",
        input.display(),
        found.join(", ")
    )]
    SeveralDomains { input: PathBuf, found: Vec<String> },
    #[error(
        "`{}` has no domain `{wanted}` (it has: {})",
        input.display(),
        found.join(", ")
    )]
    DomainNotFound {
        input: PathBuf,
        wanted: String,
        found: Vec<String>,
    },
    #[error("{}", ProblemList { what: "import", input, problems })]
    Invalid {
        input: PathBuf,
        problems: Vec<Problem>,
    },
    #[error(
        "domain `{domain}` already exists in the datastore (`{}`); pass --overwrite to replace \
         it, or --domain NEW_NAME to import it under another name",
        path.display()
    )]
    Exists { domain: String, path: PathBuf },
    #[error(transparent)]
    ReadOnly(#[from] ReadOnlyDomain),
    #[error("{0}")]
    BadOption(String),
    #[error("cannot import as `{name}`: {reason}; choose another name with --domain NEW_NAME")]
    BadName { name: String, reason: String },
    #[error(
        "`{}` is in the way: it exists but is not a domain directory (no __domain__.yaml); \
         move it away and retry",
        path.display()
    )]
    InTheWay { path: PathBuf },
    #[error(
        "the datastore root `{}` is itself a domain (it holds __domain__.yaml); point \
         --datastore at the directory that holds the domains",
        root.display()
    )]
    RootIsDomain { root: PathBuf },
    #[error(transparent)]
    Zip(#[from] ZipError),
}

/// Why a zip was refused.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("cannot read zip `{}`: {error}", zip.display())]
    Open {
        zip: PathBuf,
        #[source]
        error: zip::result::ZipError,
    },
    #[error("cannot read entry `{entry}` of zip `{}`: {error}", zip.display())]
    Entry {
        zip: PathBuf,
        entry: String,
        #[source]
        error: io::Error,
    },
    #[error("zip `{}`: entry `{entry}` is refused: {reason}; nothing was imported", zip.display())]
    UnsafeEntry {
        zip: PathBuf,
        entry: String,
        reason: String,
    },
    #[error(
        "zip `{}` has {count} entries, more than the {max} allowed; nothing was imported",
        zip.display()
    )]
    TooManyEntries {
        zip: PathBuf,
        count: usize,
        max: usize,
    },
    #[error(
        "zip `{}` expands to more than {max} bytes (at entry `{entry}`); refusing it as a \
         possible zip bomb, nothing was imported",
        zip.display()
    )]
    TooLarge {
        zip: PathBuf,
        entry: String,
        max: u64,
    },
    #[error(
        "zip `{}`: entry `{entry}` expands to more than {max} bytes, more than any datastore \
         file may hold; refusing it as a possible zip bomb, nothing was imported",
        zip.display()
    )]
    EntryTooLarge {
        zip: PathBuf,
        entry: String,
        max: u64,
    },
}

/// A write refused because the domain is read-only.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "domain `{domain}` is read-only (source: {}): system, user_locked and remote domains refuse \
     every write; import under another name with --domain NEW_NAME, or change its source",
    source_kind.as_str()
)]
pub struct ReadOnlyDomain {
    pub domain: String,
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

/// Displays a list of problems under a heading.
struct ProblemList<'a> {
    what: &'a str,
    input: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "`{}` has {n} problem{}; nothing was {}ed (fix them and retry):",
            self.input.display(),
            if n == 1 { "" } else { "s" },
            self.what
        )?;
        for p in self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// A domain directory found in the datastore root.
#[derive(Debug, Clone)]
pub struct DomainDir {
    pub path: PathBuf,
    /// The directory name.
    pub dir_name: String,
    pub info: DomainInfo,
}

/// The domains in `root` (each child directory with `__domain__.yaml`), from
/// their `__domain__.yaml` only. A domain whose file does not parse is listed
/// under its directory name. Also returns the other (non-dot) entries.
pub fn domain_dirs(root: &Path) -> io::Result<(Vec<DomainDir>, Vec<PathBuf>)> {
    let mut domains = Vec::new();
    let mut others = Vec::new();
    if !root.exists() {
        return Ok((domains, others));
    }
    let mut entries: Vec<_> = fs::read_dir(root)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let raw = entry.file_name();
        if raw.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let path = entry.path();
        // A name that is not UTF-8 is never a domain (it could not be told
        // from another such name); a link is never followed.
        let Some(name) = raw.to_str().map(str::to_string) else {
            others.push(path);
            continue;
        };
        if !entry.file_type()?.is_dir() || !dsfs::present(&path.join(DOMAIN_FILE)) {
            others.push(path);
            continue;
        }
        let info = domain_info(&path, &name);
        domains.push(DomainDir {
            path,
            dir_name: name,
            info,
        });
    }
    Ok((domains, others))
}

fn domain_info(dir: &Path, dir_name: &str) -> DomainInfo {
    let file = dir.join(DOMAIN_FILE);
    let mut ignored = Vec::new();
    let doc = dsfs::read_text(&file)
        .ok()
        .and_then(|text| dsfs::parse_doc(&text, &file, &mut ignored));
    match doc {
        Some(doc) => {
            let d = Domain {
                dir_name: dir_name.to_string(),
                doc,
                namespaces: Vec::new(),
                classes: Vec::new(),
            };
            DomainInfo {
                name: Arc::from(d.name()),
                priority: d.priority(),
                enabled: d.enabled(),
                source: d.source(),
            }
        }
        None => DomainInfo {
            name: Arc::from(dir_name),
            priority: 0,
            enabled: true,
            source: Source::User,
        },
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
    if root.join(DOMAIN_FILE).is_file() {
        return Err(ImportError::RootIsDomain {
            root: root.to_path_buf(),
        });
    }
    let meta = fs::metadata(source).map_err(|_| ImportError::NoSuchSource {
        input: source.to_path_buf(),
    })?;
    // What killed imports left: an interrupted swap is rolled back first.
    swap::clean_debris(root, swap::IMPORT_PREFIX);
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
        extract_zip(source, tmp.path())?;
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
        if !updating_shipped {
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
    domain.dir_name = name.clone();

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
    let files = write_rendered(domain, tmp.path(), name)?;
    let new = tmp.path().join(name);
    let dest = root.join(name);
    swap::swap_in(tmp, &new, &dest, old).map_err(fail("move the new domain into", &dest))?;
    Ok(files)
}

/// An I/O failure with what was being done and where.
struct IoFail {
    action: &'static str,
    path: PathBuf,
    error: io::Error,
}

fn fail(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IoFail {
    let path = path.to_path_buf();
    move |error| IoFail {
        action,
        path,
        error,
    }
}

impl From<IoFail> for ImportError {
    fn from(f: IoFail) -> Self {
        ImportError::Io {
            action: f.action,
            path: f.path,
            error: f.error,
        }
    }
}

impl From<IoFail> for ExportError {
    fn from(f: IoFail) -> Self {
        ExportError::Io {
            action: f.action,
            path: f.path,
            error: f.error,
        }
    }
}

/// Writes the rendered files of `domain` below `parent/<name>/`.
fn write_rendered(domain: &Domain, parent: &Path, name: &str) -> Result<usize, IoFail> {
    let rendered = dsfs::render_domain(domain, name);
    let top = parent.join(name);
    fs::create_dir_all(&top).map_err(fail("create directory", &top))?;
    for (rel, bytes) in &rendered {
        let path = parent.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(fail("create directory", dir))?;
        }
        fs::write(&path, bytes).map_err(fail("write", &path))?;
    }
    Ok(rendered.len())
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

// ---------------------------------------------------------------------------
// Zip

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

// ---------------------------------------------------------------------------
// Export

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Replace an existing `dest/<Domain>` directory or zip.
    pub overwrite: bool,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub domain: String,
    /// The domain directory or the zip written.
    pub path: PathBuf,
    pub zip: bool,
    pub files: usize,
    pub counts: Counts,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error(
        "no domain `{domain}` in the datastore `{}` (it has: {})",
        root.display(),
        found.join(", ")
    )]
    DomainNotFound {
        domain: String,
        root: PathBuf,
        found: Vec<String>,
    },
    #[error("{}", ProblemList { what: "export", input, problems })]
    Invalid {
        input: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("`{}` already exists; pass --overwrite to replace it", path.display())]
    Exists { path: PathBuf },
    #[error(
        "cannot export to zip `{}`: {reason}, so import would refuse it; export to a directory \
         instead",
        path.display()
    )]
    TooLarge { path: PathBuf, reason: String },
    #[error("cannot write zip `{}`: {error}", path.display())]
    Zip {
        path: PathBuf,
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
    write_rendered(d, tmp.path(), name)?;
    let new = tmp.path().join(name);
    swap::swap_in(tmp, &new, &target, existing.as_deref())
        .map_err(|e| export_io("move the exported domain into", &target, e))?;
    Ok(target)
}

/// Refuses a zip export that import would refuse: more entries (files and
/// directories) than [`MAX_ZIP_ENTRIES`], a file over
/// [`MAX_ZIP_ENTRY_BYTES`], or more than [`MAX_ZIP_TOTAL_BYTES`] in all.
fn check_importable(rendered: &[dsfs::RenderedFile], dest: &Path) -> Result<(), ExportError> {
    let mut dirs = std::collections::HashSet::new();
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
        let reason = if len > MAX_ZIP_ENTRY_BYTES {
            Some(format!(
                "`{rel}` is {len} bytes, over {MAX_ZIP_ENTRY_BYTES}"
            ))
        } else if total > MAX_ZIP_TOTAL_BYTES {
            Some(format!(
                "the files add up to more than {MAX_ZIP_TOTAL_BYTES} bytes"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ExportError::TooLarge {
                path: dest.to_path_buf(),
                reason,
            });
        }
    }
    let entries = rendered.len().saturating_add(dirs.len());
    if entries > MAX_ZIP_ENTRIES {
        return Err(ExportError::TooLarge {
            path: dest.to_path_buf(),
            reason: format!("it would hold {entries} entries, over {MAX_ZIP_ENTRIES}"),
        });
    }
    Ok(())
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
    check_importable(rendered, dest)?;
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
