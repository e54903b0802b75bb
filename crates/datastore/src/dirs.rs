//! The domain directories in a datastore root (or in an import source):
//! which child directories hold a `__domain__.yaml`, and what that file says
//! about each (name, priority, enabled, source). Import and export both find
//! domains this way.

use super::fs::{self as dsfs, DOMAIN_FILE};
use super::index::DomainInfo;
use super::model::{Domain, Source};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A domain directory found in the datastore root.
#[derive(Debug, Clone)]
pub struct DomainDir {
    /// The domain directory itself (`<root>/<dir_name>`).
    pub path: PathBuf,
    /// The directory name.
    pub dir_name: String,
    /// What its `__domain__.yaml` says (name, priority, enabled, source); the
    /// directory name as the name when the file does not parse.
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

/// What `dir/__domain__.yaml` says; defaults (`dir_name`, priority 0,
/// enabled, user) when it cannot be read.
pub(super) fn domain_info(dir: &Path, dir_name: &str) -> DomainInfo {
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
                tests: Vec::new(),
            };
            DomainInfo {
                name: Arc::from(d.name()),
                priority: d.priority(),
                enabled: d.enabled(),
                source: d.source(),
                counts: Default::default(),
            }
        }
        None => DomainInfo {
            name: Arc::from(dir_name),
            priority: 0,
            enabled: true,
            source: Source::User,
            counts: Default::default(),
        },
    }
}
