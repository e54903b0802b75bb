//! `automate demo`: plays the seed's scenario (RHEV and OpenStack VMs
//! powering on and off) through the catcher log line, the event handler
//! and Automate, on the shipped datastore and a fresh object store, and
//! prints the evm.log lines as the seed shows them, then a summary.

use super::Global;
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_events::{scenario, EvmLog, Handler};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// `automate demo`'s options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Print only the summary.
    #[arg(long)]
    pub quiet: bool,
}

/// Plays the scenario and prints the lines and the summary; exits 1 when a
/// delivery ended with an error.
pub fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let (ds, problems) = Datastore::open(&global.datastore);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("warning: {p}");
        }
    }
    if ds.index().domains().is_empty() {
        anyhow::bail!(
            "no domain found under {}: run from the repository root or pass --datastore DIR",
            global.datastore.display()
        );
    }
    // A fresh object store in a temp dir: the demo never touches --db.
    let tmp = tempfile::Builder::new()
        .prefix("automate-demo-")
        .tempdir()?;
    let db = tmp.path().join("automate.redb");
    let store = Arc::new(super::compose::open_store(&db)?);
    let engine =
        automate_control::with_control_builtins(Engine::new(Arc::new(ds)).with_store(store));
    let log = EvmLog::default();
    let handler = Handler::new(engine, log.clone())?;
    let (rhev, openstack) = scenario::providers();
    let started = Instant::now();
    let (mut handled, mut failed) = (0usize, Vec::new());
    for (which, ev) in scenario::events() {
        let provider = if which == 0 { &rhev } else { &openstack };
        log.info(provider.caught_line(&ev.event_type));
        let outcome = handler.handle(provider, &ev)?;
        handled += 1;
        if let Some(e) = outcome.error {
            failed.push(format!("{} [{}]: {e}", ev.event_type, outcome.event_id));
        }
        if !args.quiet {
            for line in log.drain() {
                writeln!(out, "{line}")?;
            }
        }
    }
    let elapsed = started.elapsed();
    writeln!(out)?;
    writeln!(
        out,
        "demo: {handled} provider events caught, stored and delivered to Automate in {:.1} ms",
        elapsed.as_secs_f64() * 1000.0
    )?;
    if failed.is_empty() {
        writeln!(out, "demo: every delivery completed")?;
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failed {
            writeln!(out, "demo: delivery ended with an error: {f}")?;
        }
        Ok(ExitCode::from(1))
    }
}
