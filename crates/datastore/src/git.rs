//! Git-backed domains: ManageIQ's "Import from Git" (`MiqAeGitImport`,
//! `GitBasedDomainImportService`).
//!
//! [`import_git`] opens a local repository (a path, bare or not, or a
//! `file://` URL; there is no network transport) with `gix`, resolves the
//! ref (a branch or a tag, matched case-insensitively as ManageIQ does; the
//! branch `HEAD` names when none is given), and writes the files of the
//! commit's tree into a locked temporary directory: no working checkout, and
//! the tree is hostile until checked (entry names with `/`, `..` or NUL,
//! symbolic links, more entries or bytes than a zip may hold are refused).
//! The domain is then imported from there through the ordinary all-or-nothing
//! import ([`import`](mod@super::import): parsed and validated first, written
//! to a temporary directory in the root and swapped in with one rename).
//!
//! The imported domain gets `source: remote` (read-only to every write
//! command, as in ManageIQ) and the commit in `__domain__.yaml`, after the
//! usual attributes, as ManageIQ keeps them in `MiqAeDomain`'s columns:
//! `git_repository` (the repository as given), `ref`, `ref_type` (`branch`
//! or `tag`), `commit_sha`, `commit_message` and `commit_time`
//! ([`GIT_COLUMNS`]). Export drops them, as ManageIQ's exporter does.
//!
//! [`refresh`] reads the same repository at the same ref again: an
//! unchanged commit changes nothing; a new one is validated and swapped in
//! like an import, and when it does not validate the domain stays as it was
//! and the error names each file as `REPOSITORY@SHA:path:line`.

use super::dirs::domain_dirs;
use super::fs::{self as dsfs, Problem, DOMAIN_FILE};
use super::import::{self, ImportError, ImportOptions, ImportPreview, ImportSummary};
use super::model::{Document, Source};
use super::swap::{self, Workdir};
use super::yaml::Value;
use super::zip_safety::{MAX_ZIP_ENTRIES, MAX_ZIP_ENTRY_BYTES, MAX_ZIP_TOTAL_BYTES};
use gix::bstr::ByteSlice;
use std::path::{Path, PathBuf};

/// The `__domain__.yaml` attributes of a git domain, in the order written
/// (ManageIQ's `MiqAeDomain` git columns; `git_repository` stands for its
/// `git_repository_id`).
pub const GIT_COLUMNS: &[&str] = &[
    "git_repository",
    "ref",
    "ref_type",
    "commit_sha",
    "commit_message",
    "commit_time",
];

/// The prefix of the temporary directories a repository's tree is written to.
pub const GIT_PREFIX: &str = ".automate-git-";

/// Whether the ref is a branch or a tag (ManageIQ's `ref_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    /// `refs/heads/*` (or `refs/remotes/*`).
    Branch,
    /// `refs/tags/*`.
    Tag,
}

impl RefType {
    /// `branch` or `tag`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefType::Branch => "branch",
            RefType::Tag => "tag",
        }
    }
}

/// Where a git domain came from: the repository, the ref and the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOrigin {
    /// The repository as the user gave it (a path or a `file://` URL).
    pub repository: String,
    /// The branch or tag name as the repository spells it.
    pub git_ref: String,
    /// Branch or tag.
    pub ref_type: RefType,
    /// The commit's full hexadecimal id.
    pub commit_sha: String,
    /// The commit message's first line.
    pub commit_message: String,
    /// When it was committed (RFC 3339, UTC).
    pub commit_time: String,
}

impl GitOrigin {
    /// The first 8 characters of the commit id (as `datastore list` shows it).
    pub fn short_sha(&self) -> &str {
        self.commit_sha.get(..8).unwrap_or(&self.commit_sha)
    }

    /// Marks `doc` (a `__domain__.yaml`) as this commit of a git domain:
    /// `source: remote` and the [`GIT_COLUMNS`].
    pub fn apply(&self, doc: &mut Document) {
        doc.set_attribute("source", Value::Str(Source::Remote.as_str().into()));
        let values = [
            &self.repository,
            &self.git_ref,
            &self.ref_type.as_str().to_string(),
            &self.commit_sha,
            &self.commit_message,
            &self.commit_time,
        ];
        for (key, value) in GIT_COLUMNS.iter().zip(values) {
            doc.set_attribute(key, Value::Str(value.clone()));
        }
    }

    /// The origin `doc` (a `__domain__.yaml`) records, when it has one
    /// (`git_repository` and `commit_sha` at least).
    pub fn of(doc: &Document) -> Option<GitOrigin> {
        let a = |k: &str| doc.attr_str(k).map(str::to_string);
        Some(GitOrigin {
            repository: a("git_repository")?,
            git_ref: a("ref").unwrap_or_default(),
            ref_type: match doc.attr_str("ref_type") {
                Some("tag") => RefType::Tag,
                _ => RefType::Branch,
            },
            commit_sha: a("commit_sha")?,
            commit_message: a("commit_message").unwrap_or_default(),
            commit_time: a("commit_time").unwrap_or_default(),
        })
    }
}

/// Removes the [`GIT_COLUMNS`] from a `__domain__.yaml` (export drops them,
/// as ManageIQ's exporter does).
pub fn strip_git_columns(doc: &mut Document) {
    for key in GIT_COLUMNS {
        doc.remove_attribute(key);
    }
}

/// Why a git import or refresh failed. Nothing was changed in the datastore.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository cannot be opened.
    #[error("cannot open the git repository `{repository}`: {message}")]
    Open {
        /// The repository as given.
        repository: String,
        /// What gix said.
        message: String,
    },
    /// A URL with a transport other than a local path.
    #[error(
        "`{repository}` is not a local repository: only paths and file:// URLs are supported \
         (clone it first and import the clone)"
    )]
    NotLocal {
        /// The repository as given.
        repository: String,
    },
    /// No branch or tag of that name.
    #[error(
        "the git repository `{repository}` has no branch or tag `{wanted}` (branches: {}; tags: {})",
        list(branches),
        list(tags)
    )]
    NoSuchRef {
        /// The repository as given.
        repository: String,
        /// The ref asked for.
        wanted: String,
        /// Its branches.
        branches: Vec<String>,
        /// Its tags.
        tags: Vec<String>,
    },
    /// Reading an object of the repository failed.
    #[error("cannot read {what} of the git repository `{repository}`: {message}")]
    Read {
        /// The repository as given.
        repository: String,
        /// What was being read (`the commit of tag v1`, `blob a/b.yaml`).
        what: String,
        /// What gix said.
        message: String,
    },
    /// A tree entry that is never written (a link, an unsafe name).
    #[error("`{repository}@{sha}:{path}` {reason}; nothing was imported")]
    Unsafe {
        /// The repository as given.
        repository: String,
        /// The commit.
        sha: String,
        /// The entry's path in the tree.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// Writing the tree to a temporary directory failed.
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The error the operating system gave.
        #[source]
        error: std::io::Error,
    },
    /// `refresh` of a domain that does not exist.
    #[error("no domain [{domain}] in the datastore `{}` (it has: {})", root.display(), list(found))]
    NoDomain {
        /// The domain asked for.
        domain: String,
        /// The datastore root.
        root: PathBuf,
        /// The domains it has.
        found: Vec<String>,
    },
    /// `refresh` of a domain that was not imported from git.
    #[error(
        "domain [{domain}] was not imported from git (source: {}, no git_repository and \
         commit_sha in its __domain__.yaml): nothing to refresh",
        source_kind.as_str()
    )]
    NotGit {
        /// The domain.
        domain: String,
        /// Its source.
        source_kind: Source,
    },
    /// The import itself failed (the tree does not validate, a name clash, ...).
    #[error(transparent)]
    Import(#[from] ImportError),
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// What a git import did: the import and the commit it took.
#[derive(Debug, Clone)]
pub struct GitImportSummary {
    /// The import (domain, priority, counts, files).
    pub import: ImportSummary,
    /// The repository, ref and commit recorded in the domain.
    pub origin: GitOrigin,
}

/// What a refresh did.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The domain's name.
    pub domain: String,
    /// The commit it had.
    pub previous: GitOrigin,
    /// The commit it has now.
    pub origin: GitOrigin,
    /// The import, `None` when the ref still names the same commit
    /// (nothing written).
    pub import: Option<ImportSummary>,
}

/// A commit's tree written out, and where it came from.
struct Checkout {
    dir: Workdir,
    origin: GitOrigin,
}

/// Imports a domain from the local repository `repository` (a path or a
/// `file://` URL) at `git_ref` (a branch or tag, case-insensitive; default:
/// the branch `HEAD` names). `opts` as for [`import::import`]: a repository
/// holding several domains needs `domain_filter`.
pub fn import_git(
    root: &Path,
    repository: &str,
    git_ref: Option<&str>,
    opts: &ImportOptions,
) -> Result<GitImportSummary, GitError> {
    let co = checkout(repository, git_ref)?;
    let summary = import::import_from(root, co.dir.path(), opts, Some(&co.origin))
        .map_err(|e| located(e, &co))?;
    let origin = co.origin.clone();
    co.dir.close();
    Ok(GitImportSummary {
        import: summary,
        origin,
    })
}

/// What [`import_git`] would do, writing nothing (`import --git --preview`).
pub fn preview_git(
    root: &Path,
    repository: &str,
    git_ref: Option<&str>,
    opts: &ImportOptions,
) -> Result<(ImportPreview, GitOrigin), GitError> {
    let co = checkout(repository, git_ref)?;
    let p = import::preview_from(root, co.dir.path(), opts, Some(&co.origin))
        .map_err(|e| located(e, &co))?;
    let origin = co.origin.clone();
    co.dir.close();
    Ok((p, origin))
}

/// Reads the git domain `domain` (case-insensitive) of the datastore at
/// `root` again from its repository at its ref; when the ref names another
/// commit, that commit is validated and swapped in (all or nothing). Keeps
/// the domain's name, priority and enabled flag.
pub fn refresh(root: &Path, domain: &str) -> Result<Refreshed, GitError> {
    let (found, _) = domain_dirs(root).map_err(|error| GitError::Io {
        action: "read the datastore directory",
        path: root.to_path_buf(),
        error,
    })?;
    let Some(dir) = found.iter().find(|d| {
        d.info.name.eq_ignore_ascii_case(domain) || d.dir_name.eq_ignore_ascii_case(domain)
    }) else {
        return Err(GitError::NoDomain {
            domain: domain.to_string(),
            root: root.to_path_buf(),
            found: found.iter().map(|d| d.info.name.to_string()).collect(),
        });
    };
    let name = dir.info.name.to_string();
    let file = dir.path.join(DOMAIN_FILE);
    let mut ignored = Vec::new();
    let previous = dsfs::read_text(&file)
        .ok()
        .and_then(|t| dsfs::parse_doc(&t, &file, &mut ignored))
        .and_then(|doc| GitOrigin::of(&doc))
        .filter(|_| dir.info.source == Source::Remote)
        .ok_or_else(|| GitError::NotGit {
            domain: name.clone(),
            source_kind: dir.info.source,
        })?;
    let wanted = (!previous.git_ref.is_empty()).then_some(previous.git_ref.as_str());
    let co = checkout(&previous.repository, wanted)?;
    if co.origin.commit_sha == previous.commit_sha {
        let origin = co.origin.clone();
        co.dir.close();
        return Ok(Refreshed {
            domain: name,
            previous,
            origin,
            import: None,
        });
    }
    // The same domain of the repository: the only one, else the one of
    // the domain's name.
    let mut opts = ImportOptions {
        rename: Some(name.clone()),
        overwrite: true,
        ..ImportOptions::default()
    };
    let first = import::import_from(root, co.dir.path(), &opts, Some(&co.origin));
    let summary = match first {
        Err(ImportError::SeveralDomains { .. }) => {
            opts.domain_filter = Some(name.clone());
            import::import_from(root, co.dir.path(), &opts, Some(&co.origin))
        }
        other => other,
    }
    .map_err(|e| located(e, &co))?;
    let origin = co.origin.clone();
    co.dir.close();
    Ok(Refreshed {
        domain: name,
        previous,
        origin,
        import: Some(summary),
    })
}

/// The import error with every file named `REPOSITORY@SHA:path` (not the
/// temporary directory the tree was written to).
fn located(e: ImportError, co: &Checkout) -> GitError {
    let base = co.dir.path();
    let show = |p: &mut Problem| {
        if let Ok(rel) = p.file.strip_prefix(base) {
            p.file = PathBuf::from(format!(
                "{}@{}:{}",
                co.origin.repository,
                co.origin.short_sha(),
                rel.display()
            ));
        }
    };
    match e {
        ImportError::Invalid {
            input: _,
            mut problems,
        } => {
            problems.iter_mut().for_each(show);
            GitError::Import(ImportError::Invalid {
                input: PathBuf::from(format!(
                    "{}@{}",
                    co.origin.repository,
                    co.origin.short_sha()
                )),
                problems,
            })
        }
        ImportError::NoDomain { .. } => GitError::Import(ImportError::NoDomain {
            input: PathBuf::from(format!("{}@{}", co.origin.repository, co.origin.git_ref)),
        }),
        ImportError::SeveralDomains { found, .. } => {
            GitError::Import(ImportError::SeveralDomains {
                input: PathBuf::from(format!("{}@{}", co.origin.repository, co.origin.git_ref)),
                found,
            })
        }
        ImportError::DomainNotFound { wanted, found, .. } => {
            GitError::Import(ImportError::DomainNotFound {
                input: PathBuf::from(format!("{}@{}", co.origin.repository, co.origin.git_ref)),
                wanted,
                found,
            })
        }
        other => GitError::Import(other),
    }
}

/// The local path of `repository`: a `file://` URL's path, or the path
/// itself; other URLs (`https://`, `ssh://`, `git@host:path`) are refused.
fn local_path(repository: &str) -> Result<PathBuf, GitError> {
    if let Some(rest) = repository.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    let scp_like = !repository.starts_with('/')
        && !repository.starts_with('.')
        && repository
            .split_once(':')
            .is_some_and(|(host, _)| !host.contains('/') && host.contains('@'));
    if repository.contains("://") || scp_like {
        return Err(GitError::NotLocal {
            repository: repository.to_string(),
        });
    }
    Ok(PathBuf::from(repository))
}

/// Opens the repository, resolves the ref and writes the commit's tree to
/// a locked temporary directory.
fn checkout(repository: &str, git_ref: Option<&str>) -> Result<Checkout, GitError> {
    let path = local_path(repository)?;
    let repo =
        gix::open_opts(&path, gix::open::Options::isolated()).map_err(|e| GitError::Open {
            repository: repository.to_string(),
            message: e.to_string(),
        })?;
    let read = |what: String| {
        let repository = repository.to_string();
        move |e: &dyn std::fmt::Display| GitError::Read {
            repository,
            what,
            message: e.to_string(),
        }
    };
    let (full_name, short, ref_type) = resolve(&repo, repository, git_ref)?;
    let mut reference = repo
        .find_reference(full_name.as_str())
        .map_err(|e| read(format!("the ref `{full_name}`"))(&e))?;
    let commit = reference
        .peel_to_commit()
        .map_err(|e| read(format!("the commit of `{full_name}`"))(&e))?;
    let sha = commit.id.to_string();
    let message = commit
        .message_raw()
        .map(|m| m.to_str_lossy().lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    let time = commit
        .time()
        .ok()
        .and_then(|t| jiff::Timestamp::from_second(t.seconds).ok())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let tree = commit
        .tree()
        .map_err(|e| read(format!("the tree of commit {sha}"))(&e))?;
    let temp = std::env::temp_dir();
    swap::clean_debris(&temp, GIT_PREFIX);
    let dir = Workdir::new_in(&temp, GIT_PREFIX).map_err(|error| GitError::Io {
        action: "create a temporary directory in",
        path: temp.clone(),
        error,
    })?;
    let mut budget = Budget::default();
    write_tree(&repo, repository, &sha, &tree, dir.path(), "", &mut budget)?;
    Ok(Checkout {
        dir,
        origin: GitOrigin {
            repository: repository.to_string(),
            git_ref: short,
            ref_type,
            commit_sha: sha,
            commit_message: message,
            commit_time: time,
        },
    })
}

/// The full name, short name and type of the ref `wanted` names: a branch
/// (`refs/heads/`, then `refs/remotes/`), else a tag, compared
/// case-insensitively; a full `refs/...` name as it is. No ref: the branch
/// `HEAD` points at.
fn resolve(
    repo: &gix::Repository,
    repository: &str,
    wanted: Option<&str>,
) -> Result<(String, String, RefType), GitError> {
    let names = |prefix: &str| -> Vec<String> {
        repo.references()
            .ok()
            .and_then(|r| {
                r.prefixed(prefix)
                    .ok()
                    .map(|it| it.flatten().collect::<Vec<_>>())
            })
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| {
                r.name()
                    .as_bstr()
                    .to_str()
                    .ok()
                    .and_then(|n| n.strip_prefix(prefix))
                    .map(str::to_string)
            })
            .collect()
    };
    let branches = names("refs/heads/");
    let remotes = names("refs/remotes/");
    let tags = names("refs/tags/");
    let Some(wanted) = wanted else {
        let head = repo
            .head_name()
            .ok()
            .flatten()
            .ok_or_else(|| GitError::NoSuchRef {
                repository: repository.to_string(),
                wanted: "HEAD (a branch)".into(),
                branches: branches.clone(),
                tags: tags.clone(),
            })?;
        let full = head.as_bstr().to_str_lossy().into_owned();
        let short = full
            .strip_prefix("refs/heads/")
            .unwrap_or(&full)
            .to_string();
        if !branches.contains(&short) {
            return Err(GitError::NoSuchRef {
                repository: repository.to_string(),
                wanted: format!("HEAD ({short}, which has no commit)"),
                branches,
                tags,
            });
        }
        return Ok((full, short, RefType::Branch));
    };
    let find = |list: &[String], w: &str| list.iter().find(|n| n.eq_ignore_ascii_case(w)).cloned();
    if let Some(b) = find(&branches, wanted) {
        return Ok((format!("refs/heads/{b}"), b, RefType::Branch));
    }
    if let Some(b) = find(&remotes, wanted) {
        return Ok((format!("refs/remotes/{b}"), b, RefType::Branch));
    }
    // ManageIQ's default `origin/master` names a remote branch of its
    // clone: here, the repository's own branch.
    if let Some(b) = wanted
        .split_once('/')
        .and_then(|(_, rest)| find(&branches, rest))
    {
        return Ok((format!("refs/heads/{b}"), b, RefType::Branch));
    }
    if let Some(t) = find(&tags, wanted) {
        return Ok((format!("refs/tags/{t}"), t, RefType::Tag));
    }
    for (prefix, list, kind) in [
        ("refs/heads/", &branches, RefType::Branch),
        ("refs/tags/", &tags, RefType::Tag),
    ] {
        if let Some(rest) = wanted.strip_prefix(prefix) {
            if let Some(n) = find(list, rest) {
                return Ok((format!("{prefix}{n}"), n, kind));
            }
        }
    }
    Err(GitError::NoSuchRef {
        repository: repository.to_string(),
        wanted: wanted.to_string(),
        branches,
        tags,
    })
}

/// Entries and bytes written so far (the limits of a zip import).
#[derive(Default)]
struct Budget {
    entries: usize,
    bytes: u64,
}

/// Writes `tree` below `dir`; `prefix` is its path in the commit.
fn write_tree(
    repo: &gix::Repository,
    repository: &str,
    sha: &str,
    tree: &gix::Tree<'_>,
    dir: &Path,
    prefix: &str,
    budget: &mut Budget,
) -> Result<(), GitError> {
    use gix::object::tree::EntryKind;
    let unsafe_entry = |path: &str, reason: String| GitError::Unsafe {
        repository: repository.to_string(),
        sha: sha.to_string(),
        path: path.to_string(),
        reason,
    };
    let read = |what: String, e: &dyn std::fmt::Display| GitError::Read {
        repository: repository.to_string(),
        what,
        message: e.to_string(),
    };
    for entry in tree.iter() {
        let entry = entry.map_err(|e| read(format!("a tree of commit {sha}"), &e))?;
        let raw = entry.filename();
        let name = raw.to_str_lossy().into_owned();
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if raw.to_str().is_err() {
            return Err(unsafe_entry(
                &path,
                "has a name that is not valid UTF-8".into(),
            ));
        }
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\', '\0'])
            || name.eq_ignore_ascii_case(".git")
        {
            return Err(unsafe_entry(
                &path,
                "has a name a file cannot have (empty, `.`, `..`, `.git`, or with `/`, `\\` or NUL)"
                    .into(),
            ));
        }
        budget.entries += 1;
        if budget.entries > MAX_ZIP_ENTRIES {
            return Err(unsafe_entry(
                &path,
                format!("is past the {MAX_ZIP_ENTRIES} entries an import reads"),
            ));
        }
        let target = dir.join(&name);
        match entry.mode().kind() {
            EntryKind::Tree => {
                let sub = repo
                    .find_tree(entry.object_id())
                    .map_err(|e| read(format!("tree {path}"), &e))?;
                std::fs::create_dir(&target).map_err(|error| GitError::Io {
                    action: "create directory",
                    path: target.clone(),
                    error,
                })?;
                write_tree(repo, repository, sha, &sub, &target, &path, budget)?;
            }
            EntryKind::Blob | EntryKind::BlobExecutable => {
                let blob = repo
                    .find_blob(entry.object_id())
                    .map_err(|e| read(format!("blob {path}"), &e))?;
                let len = blob.data.len() as u64;
                if len > MAX_ZIP_ENTRY_BYTES {
                    return Err(unsafe_entry(
                        &path,
                        format!(
                            "is {len} bytes, more than the {MAX_ZIP_ENTRY_BYTES} a file may have"
                        ),
                    ));
                }
                budget.bytes += len;
                if budget.bytes > MAX_ZIP_TOTAL_BYTES {
                    return Err(unsafe_entry(
                        &path,
                        format!("is past the {MAX_ZIP_TOTAL_BYTES} bytes an import reads"),
                    ));
                }
                std::fs::write(&target, &blob.data).map_err(|error| GitError::Io {
                    action: "write",
                    path: target.clone(),
                    error,
                })?;
            }
            EntryKind::Link => {
                return Err(unsafe_entry(
                    &path,
                    "is a symbolic link; import never follows a link: commit the file itself"
                        .into(),
                ))
            }
            // A submodule: its commit is in another repository.
            EntryKind::Commit => {
                tracing::warn!("{repository}@{sha}:{path} is a submodule; it is not imported");
            }
        }
    }
    Ok(())
}
