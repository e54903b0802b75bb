//! Hot reload of a datastore: what one reload found ([`ReloadReport`],
//! the one answer `automate datastore reload`, `POST /api/automate_domains
//! {"action": "reload"}` and `/api/health` give), the [`Reload`] seam a
//! service triggers it through (implemented where the whole automation
//! stack is known: `control::Reloader` also compiles the Rhai methods and
//! loads the control policies), and the per-domain fingerprints that tell
//! which domains changed.
//!
//! A reload is all-or-nothing: the new index is built, and everything else
//! checked, before it is swapped in ([`super::Datastore::install`]); when
//! anything fails, the running index stays and the report lists every
//! problem with its file and line.

use serde::{Deserialize, Serialize};
use std::hash::Hasher;
use std::path::Path;

/// One problem a reload found: where and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadProblem {
    /// The file at fault.
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ReloadProblem {
    /// A problem in `file` at `line`.
    pub fn new(file: &Path, line: usize, message: impl Into<String>) -> ReloadProblem {
        ReloadProblem {
            file: file.display().to_string(),
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ReloadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl From<&super::Problem> for ReloadProblem {
    fn from(p: &super::Problem) -> ReloadProblem {
        let message = match &p.field {
            Some(field) => format!("{field}: {}", p.message),
            None => p.message.clone(),
        };
        ReloadProblem::new(&p.file, p.line, message)
    }
}

/// What one reload did: `ok` with the domains whose content changed (in
/// name order), or not `ok` with the problems that kept the running index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Whether the new index was swapped in.
    pub ok: bool,
    /// The domains added, removed or changed (empty when nothing was
    /// swapped in).
    pub changed_domains: Vec<String>,
    /// Every error that failed the reload, with file and line (empty when
    /// `ok`).
    pub problems: Vec<ReloadProblem>,
    /// Warnings (files skipped or suspicious) of a reload that succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ReloadProblem>,
    /// When the reload ran (UTC, ISO 8601).
    pub at: String,
}

impl ReloadReport {
    /// A report stamped with the time now.
    pub fn now(
        changed_domains: Vec<String>,
        problems: Vec<ReloadProblem>,
        warnings: Vec<ReloadProblem>,
    ) -> ReloadReport {
        ReloadReport {
            ok: problems.is_empty(),
            changed_domains,
            problems,
            warnings,
            at: automate_core::time::iso8601(automate_core::time::now_ms()),
        }
    }

    /// The evm.log line ManageIQ-style: `MIQ(Datastore#reload) Reloaded
    /// datastore: domains changed: A, B` (or `no domain changed`), or
    /// `Reload failed, the running datastore is kept: <problems>`.
    pub fn log_line(&self) -> String {
        if self.ok {
            if self.changed_domains.is_empty() {
                "MIQ(Datastore#reload) Reloaded datastore: no domain changed".to_string()
            } else {
                format!(
                    "MIQ(Datastore#reload) Reloaded datastore: domains changed: {}",
                    self.changed_domains.join(", ")
                )
            }
        } else {
            let problems: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
            format!(
                "MIQ(Datastore#reload) Reload failed, the running datastore is kept: {} problem(s): {}",
                problems.len(),
                problems.join("; ")
            )
        }
    }
}

/// How a running service reloads its datastore (and what depends on it)
/// on demand, and what its last reload found.
pub trait Reload: Send + Sync {
    /// Reloads now (all-or-nothing) and returns the report.
    fn reload(&self) -> ReloadReport;
    /// The report of the last reload, if one ran.
    fn last(&self) -> Option<ReloadReport>;
    /// The problems of method `m` (read from `yaml_path`) as the service's
    /// method runner compiles it, which a reload would report (the web
    /// UI checks an edited body with it before writing); `None` when this
    /// reloader compiles no methods.
    fn method_problems(
        &self,
        _m: &super::Method,
        _yaml_path: &Path,
    ) -> Option<Vec<super::Problem>> {
        None
    }
}

/// A domain's name and a hash of everything read for it.
pub(crate) type Fingerprint = (String, u64);

/// The fingerprint of each domain (its parsed documents, so a change of a
/// file's bytes that changes nothing read, such as a comment, is no change).
pub(crate) fn fingerprints(domains: &[super::Domain]) -> Vec<Fingerprint> {
    struct HashWrite(rustc_hash::FxHasher);
    impl std::fmt::Write for HashWrite {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let mut out: Vec<Fingerprint> = domains
        .iter()
        .map(|d| {
            let mut h = HashWrite(rustc_hash::FxHasher::default());
            let _ = std::fmt::write(&mut h, format_args!("{d:?}"));
            (d.name().to_string(), h.0.finish())
        })
        .collect();
    out.sort();
    out
}

/// The domains added, removed or changed between `old` and `new` (both
/// sorted by name), in name order.
pub(crate) fn changed(old: &[Fingerprint], new: &[Fingerprint]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, hash) in new {
        if !old.iter().any(|(n, h)| n == name && h == hash) {
            names.push(name.clone());
        }
    }
    for (name, _) in old {
        if !new.iter().any(|(n, _)| n == name) {
            names.push(name.clone());
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(pairs: &[(&str, u64)]) -> Vec<Fingerprint> {
        pairs.iter().map(|(n, h)| (n.to_string(), *h)).collect()
    }

    #[test]
    fn changed_names_added_removed_and_changed_domains() {
        let old = fp(&[("A", 1), ("B", 2), ("C", 3)]);
        let new = fp(&[("A", 1), ("B", 9), ("D", 4)]);
        assert_eq!(changed(&old, &new), vec!["B", "C", "D"]);
        assert!(changed(&old, &old).is_empty());
    }

    #[test]
    fn the_log_line_says_what_changed_or_why_it_failed() {
        let ok = ReloadReport::now(vec!["ManageIQ".into(), "Custom".into()], vec![], vec![]);
        assert_eq!(
            ok.log_line(),
            "MIQ(Datastore#reload) Reloaded datastore: domains changed: ManageIQ, Custom"
        );
        let none = ReloadReport::now(vec![], vec![], vec![]);
        assert!(none.log_line().ends_with("no domain changed"));
        let failed = ReloadReport::now(
            vec![],
            vec![ReloadProblem::new(Path::new("d/x.yaml"), 3, "bad")],
            vec![],
        );
        assert!(!failed.ok);
        assert!(
            failed.log_line().contains("d/x.yaml:3: bad"),
            "{}",
            failed.log_line()
        );
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["problems"][0]["line"], 3);
        let back: ReloadReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, failed);
    }
}
