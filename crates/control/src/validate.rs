//! `automate datastore validate`'s report as one JSON document, for the
//! command line and for the service (`POST /api/automate_domains` with
//! `{"action": "validate"}`): every file of the datastore (with the Rhai
//! methods compiled) and the control policy files, as `automate run`
//! loads them.

use automate_datastore::{validate, Problem};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// The control policy files' problems (`ROOT/control/*.yaml`) as
/// datastore problems: errors at file:line, naming the field.
pub fn control_problems(root: &Path) -> Vec<Problem> {
    crate::check(&crate::control_dir(root))
        .into_iter()
        .map(|e| {
            let mut p = Problem::new(&e.file, e.message).at_line(e.line);
            if !e.field.is_empty() {
                p.field = Some(e.field);
            }
            p
        })
        .collect()
}

/// Validates the datastore at `root` and its control policy files:
/// `{"root", "errors", "warnings", "files", "problems": [{"file", "line",
/// "column", "field", "message", "severity"}]}` (`severity` is `error` or
/// `warning`; problems sorted by file then line). `root` should be a
/// directory (the caller says so otherwise).
pub fn validate_document(root: &Path) -> Value {
    let runner = automate_methods::RhaiRunner::new();
    let rhai_check =
        move |m: &automate_datastore::Method, path: &Path| runner.method_problems(m, path);
    let mut report = validate::validate_report(root, &[&rhai_check]);
    report.errors.extend(control_problems(root));
    let all = report.all();
    let files: BTreeSet<_> = all.iter().map(|p| &p.file).collect();
    let problems: Vec<Value> = all
        .iter()
        .map(|p| {
            json!({
                "file": p.file.display().to_string(),
                "line": p.line,
                "column": p.column,
                "field": p.field,
                "message": p.message,
                "severity": if report.warnings.contains(p) { "warning" } else { "error" },
            })
        })
        .collect();
    json!({
        "root": root.display().to_string(),
        "errors": report.errors.len(),
        "warnings": report.warnings.len(),
        "files": files.len(),
        "problems": problems,
    })
}
