//! `automate datastore reload [--json]`: loads the datastore root, compiles
//! every Rhai method and loads the control policies exactly as a running
//! service's hot reload does ([`automate_control::Reloader`]), and prints
//! the [`ReloadReport`] (the one a service answers `POST
//! /api/automate_domains {"action": "reload"}` with; [`print_report`]
//! prints either). Exits 1 when the reload would fail. While a service
//! runs (`cli::remote`), it is that service that reloads.

use super::Global;
use automate_datastore::{Datastore, ReloadReport};
use automate_engine::Engine;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// Reloads the datastore at `--datastore` in this process (or, while a
/// service runs, asks it to reload its own) and prints the report.
pub fn run(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    // A running service reloads its own datastore and says how it went.
    if let Some(remote) = super::remote::find(global)? {
        return print_report(&remote.reload()?, json);
    }
    let (ds, _) = Datastore::open(&global.datastore);
    let (_engine, _runner, reloader) = automate_control::with_control_reloadable(
        Engine::new(Arc::new(ds)),
        automate_methods::RhaiLimits::default(),
    );
    let report = reloader.reload_quietly();
    print_report(&report, json)
}

/// Prints `report` (JSON with `json`, else one line per problem and a
/// summary line) and maps it to the exit code: 1 when it failed.
pub fn print_report(report: &ReloadReport, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
    } else {
        for p in &report.problems {
            writeln!(out, "{p}")?;
        }
        for w in &report.warnings {
            writeln!(out, "{w} (warning)")?;
        }
        if report.ok {
            if report.changed_domains.is_empty() {
                writeln!(out, "reloaded: no domain changed")?;
            } else {
                writeln!(
                    out,
                    "reloaded: domains changed: {}",
                    report.changed_domains.join(", ")
                )?;
            }
        } else {
            writeln!(
                out,
                "reload failed: {} problem{}; the running datastore is kept",
                report.problems.len(),
                if report.problems.len() == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
