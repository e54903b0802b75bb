//! A domain's settings changed in place: `enabled` and `priority` in its
//! `__domain__.yaml` (what ManageIQ's Automate Explorer changes with
//! "Enable / Disable" and "Edit Priority Order of Domains"), written as
//! Psych writes the file and swapped in with a rename, then the index
//! rebuilt ([`Datastore::change_domain`]). `system`, `user_locked` and
//! `remote` domains refuse, naming the domain.

use super::dirs::domain_dirs;
use super::fs::{self as dsfs, DOMAIN_FILE};
use super::index::DomainInfo;
use super::model::{Domain, Source};
use super::yaml::{self, Value};
use super::Datastore;
use std::path::{Path, PathBuf};

/// Highest priority a domain may be given.
pub const MAX_PRIORITY: i64 = 1_000_000;

/// What to change in a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainChange {
    /// `enabled: true`: the overlay searches it again.
    Enable,
    /// `enabled: false`: partial paths no longer find its classes.
    Disable,
    /// `priority: n` (1..=[`MAX_PRIORITY`]; 0 is the `ManageIQ` domain's).
    Priority(i64),
}

/// Why a domain could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum DomainChangeError {
    /// No domain of that name in the root.
    #[error("no domain [{0}] in the datastore")]
    NotFound(String),
    /// The domain is `system`, `user_locked` or `remote`.
    #[error("domain [{name}] is {} (read-only): it cannot be changed", from.as_str())]
    ReadOnly {
        /// The domain.
        name: String,
        /// Its source (`system`, `user_locked`, `remote`).
        from: Source,
    },
    /// A priority out of 1..=[`MAX_PRIORITY`].
    #[error("domain [{name}]: priority {priority} is out of range (1 to {MAX_PRIORITY}; 0 is the ManageIQ domain's)")]
    BadPriority {
        /// The domain.
        name: String,
        /// The priority asked for.
        priority: i64,
    },
    /// `__domain__.yaml` could not be read or parsed.
    #[error("domain [{name}]: cannot read `{}`: {message}", path.display())]
    Read {
        /// The domain.
        name: String,
        /// The file.
        path: PathBuf,
        /// What is wrong (file, line, field).
        message: String,
    },
    /// The file could not be written.
    #[error("domain [{name}]: cannot write `{}`: {source}", path.display())]
    Write {
        /// The domain.
        name: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The directory of the domain `name` (case-insensitive) in `root`, and its
/// name as the file says it.
fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    if dsfs::present(&root.join(DOMAIN_FILE)) {
        return Some(root.to_path_buf());
    }
    let (dirs, _) = domain_dirs(root).ok()?;
    dirs.into_iter()
        .find(|d| d.info.name.eq_ignore_ascii_case(name))
        .map(|d| d.path)
}

impl Datastore {
    /// Applies `change` to the domain `name`'s `__domain__.yaml` (the file
    /// is replaced in one rename) and swaps a rebuilt index in; returns the
    /// domain as the new index holds it.
    pub fn change_domain(
        &self,
        name: &str,
        change: DomainChange,
    ) -> Result<DomainInfo, DomainChangeError> {
        let shown = self.write_domain_change(name, change)?;
        for p in self.reload() {
            tracing::warn!("datastore reload after changing domain [{shown}]: {p}");
        }
        self.index()
            .domain(&shown)
            .cloned()
            .ok_or(DomainChangeError::NotFound(shown))
    }

    /// [`Datastore::change_domain`]'s write alone: the domain's
    /// `__domain__.yaml` rewritten (one rename), the index left as it is
    /// (a service reloads through its all-or-nothing reloader). Returns the
    /// domain's name as written.
    pub fn write_domain_change(
        &self,
        name: &str,
        change: DomainChange,
    ) -> Result<String, DomainChangeError> {
        let dir = find_dir(self.root(), name)
            .ok_or_else(|| DomainChangeError::NotFound(name.to_string()))?;
        let file = dir.join(DOMAIN_FILE);
        let read_error = |message: String| DomainChangeError::Read {
            name: name.to_string(),
            path: file.clone(),
            message,
        };
        let text = dsfs::read_text(&file).map_err(|p| read_error(p.to_string()))?;
        let mut problems = Vec::new();
        let doc = dsfs::parse_doc(&text, &file, &mut problems).ok_or_else(|| {
            read_error(
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut domain = Domain {
            dir_name,
            doc,
            namespaces: Vec::new(),
            classes: Vec::new(),
            tests: Vec::new(),
        };
        let shown = domain.name().to_string();
        let source = domain.source();
        if source.is_read_only() {
            return Err(DomainChangeError::ReadOnly {
                name: shown,
                from: source,
            });
        }
        match change {
            DomainChange::Enable => domain.doc.set_attribute("enabled", Value::Bool(true)),
            DomainChange::Disable => domain.doc.set_attribute("enabled", Value::Bool(false)),
            DomainChange::Priority(p) if (1..=MAX_PRIORITY).contains(&p) => {
                domain.doc.set_attribute("priority", Value::Int(p))
            }
            DomainChange::Priority(priority) => {
                return Err(DomainChangeError::BadPriority {
                    name: shown,
                    priority,
                })
            }
        }
        let rendered = yaml::to_psych_yaml(&Value::Map(domain.doc.0.clone()));
        let tmp = dir.join(format!(".{DOMAIN_FILE}.tmp"));
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            let name = shown.clone();
            move |source| DomainChangeError::Write { name, path, source }
        };
        std::fs::write(&tmp, rendered.as_bytes()).map_err(write_error(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(write_error(&file))?;
        Ok(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(domains: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, attrs) in domains {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(
                d.join(DOMAIN_FILE),
                format!(
                    "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n{attrs}"
                ),
            )
            .expect("write");
        }
        dir
    }

    #[test]
    fn enable_disable_and_priority_are_written_and_indexed() {
        let root = root_with(&[(
            "Custom",
            "    priority: 3\n    enabled: true\n    source: user\n",
        )]);
        let (ds, _) = Datastore::open(root.path());
        let d = ds
            .change_domain("custom", DomainChange::Disable)
            .expect("disable");
        assert!(!d.enabled);
        assert!(!ds.index().domain("Custom").expect("domain").enabled);
        let d = ds
            .change_domain("Custom", DomainChange::Priority(7))
            .expect("priority");
        assert_eq!(d.priority, 7);
        let text =
            std::fs::read_to_string(root.path().join("Custom").join(DOMAIN_FILE)).expect("read");
        assert!(text.contains("priority: 7"), "{text}");
        assert!(text.contains("enabled: false"), "{text}");
        let d = ds
            .change_domain("Custom", DomainChange::Enable)
            .expect("enable");
        assert!(d.enabled);
        // A fresh open reads the same.
        let (again, _) = Datastore::open(root.path());
        let d = again.index().domain("Custom").cloned().expect("domain");
        assert_eq!((d.priority, d.enabled), (7, true));
    }

    #[test]
    fn locked_unknown_and_out_of_range_are_refused_naming_the_domain() {
        let root = root_with(&[
            ("Locked", "    priority: 2\n    source: user_locked\n"),
            ("Mine", "    priority: 1\n"),
        ]);
        let (ds, _) = Datastore::open(root.path());
        let e = ds
            .change_domain("Locked", DomainChange::Disable)
            .expect_err("locked");
        assert!(
            e.to_string().contains("domain [Locked] is user_locked"),
            "{e}"
        );
        let e = ds
            .change_domain("Nope", DomainChange::Enable)
            .expect_err("unknown");
        assert_eq!(e.to_string(), "no domain [Nope] in the datastore");
        let e = ds
            .change_domain("Mine", DomainChange::Priority(0))
            .expect_err("zero");
        assert!(e.to_string().contains("domain [Mine]: priority 0"), "{e}");
        assert!(ds.index().domain("Locked").expect("domain").enabled);
    }
}
