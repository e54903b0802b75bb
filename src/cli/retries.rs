//! `automate retries list|run-due`: the state-machine retries scheduled in
//! the object store (`--db`), and running the ones that have come due.

use super::compose::{open_store, open_store_read_only};
use super::table::Table;
use super::Global;
use automate_datastore::Datastore;
use automate_engine::deliver::{run_due, Outcome, DEFAULT_MAX_DELIVERIES, RETRY_KIND};
use automate_engine::Engine;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `automate retries list|run-due`.
#[derive(Debug, clap::Subcommand)]
pub enum RetriesCmd {
    /// List the scheduled retries.
    ///
    /// A table (ID, URI, DELIVERIES, ATTEMPTS), or with `--json` one JSON array of `{"id", "uri", "deliveries",
    /// "attempts"}` objects.
    List {
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Deliver the retries that are due.
    RunDue {
        /// Keep going until no retry is scheduled at all (sleeping until the
        /// next one is due).
        #[arg(long)]
        wait: bool,
        /// Give a delivery up after this many runs (the retry bound).
        #[arg(long, default_value_t = DEFAULT_MAX_DELIVERIES)]
        max_deliveries: u32,
        /// Print only a summary.
        #[arg(long)]
        quiet: bool,
    },
}

/// One scheduled retry as `retries list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRow {
    /// The schedule's id of the retry.
    pub id: u64,
    /// The state machine's URI to deliver again.
    pub uri: String,
    /// How many times it was delivered.
    pub deliveries: u64,
    /// How many times a worker claimed it.
    pub attempts: u32,
}

/// Prints the retries: a table with headers, or one JSON array.
pub fn render_retries(out: &mut impl Write, rows: &[RetryRow], json: bool) -> anyhow::Result<()> {
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "uri": r.uri,
                    "deliveries": r.deliveries,
                    "attempts": r.attempts,
                })
            })
            .collect();
        return super::table::print_json(out, &serde_json::Value::Array(items));
    }
    let mut t = Table::new(&["ID", "URI", "DELIVERIES", "ATTEMPTS"]).right(&[2, 3]);
    for r in rows {
        t.row(vec![
            r.id.to_string(),
            r.uri.clone(),
            r.deliveries.to_string(),
            r.attempts.to_string(),
        ]);
    }
    t.print(out)?;
    Ok(())
}

/// Runs one `automate retries` command on `--db`; `run-due` exits 1 when
/// a delivery failed or gave up.
pub fn run(global: &Global, cmd: RetriesCmd) -> anyhow::Result<ExitCode> {
    if let Some(remote) = super::remote::find(global)? {
        return through_api(&remote, cmd);
    }
    // `list` only reads: the file is opened read-only (never repaired).
    let db = if matches!(cmd, RetriesCmd::List { .. }) {
        open_store_read_only(&global.db)
    } else {
        open_store(&global.db)
    }
    .map_err(|e| super::remote::open_failed(global, e))?;
    let schedule = db.schedule();
    let mut out = std::io::stdout().lock();
    match cmd {
        RetriesCmd::List { json } => {
            let due = db.guard(|| {
                schedule.due(
                    SystemTime::now() + Duration::from_secs(10 * 365 * 86_400),
                    10_000,
                )
            })?;
            let rows: Vec<RetryRow> = due
                .into_iter()
                .filter(|(_, item, _)| item.kind == RETRY_KIND)
                .map(|(id, item, attempts)| RetryRow {
                    id,
                    uri: item.payload["uri"].as_str().unwrap_or("").to_string(),
                    deliveries: item.payload["deliveries"].as_u64().unwrap_or(0),
                    attempts,
                })
                .collect();
            render_retries(&mut out, &rows, json)?;
            Ok(ExitCode::SUCCESS)
        }
        RetriesCmd::RunDue {
            wait,
            max_deliveries,
            quiet,
        } => {
            let (ds, problems) = Datastore::open(&global.datastore);
            for p in &problems {
                eprintln!("warning: {p}");
            }
            let (engine, _runner) =
                automate_control::with_control(Engine::new(Arc::new(ds)).with_store(Arc::new(db)));
            // Claims of a process that died are due again at once.
            schedule.release_leases(SystemTime::now())?;
            let (mut done, mut retried, mut failed) = (0usize, 0usize, 0usize);
            loop {
                let outcomes = run_due(&engine, &schedule, 64, max_deliveries)?;
                for o in &outcomes {
                    match o {
                        Outcome::Done(_) => done += 1,
                        Outcome::Retry { .. } => retried += 1,
                        Outcome::Error { .. } | Outcome::GaveUp(_) => failed += 1,
                    }
                    if !quiet {
                        for line in &o.workspace().trace {
                            writeln!(out, "{}", line.text)?;
                        }
                    }
                }
                if !outcomes.is_empty() {
                    continue;
                }
                if !wait {
                    break;
                }
                match schedule.next_due()? {
                    None => break,
                    Some(at) => {
                        let pause = at
                            .duration_since(SystemTime::now())
                            .unwrap_or_default()
                            .clamp(Duration::from_millis(5), Duration::from_secs(1));
                        std::thread::sleep(pause);
                    }
                }
            }
            writeln!(
                out,
                "retries: {done} finished, {retried} scheduled again, {failed} failed or gave up, {} still scheduled",
                schedule.len()?
            )?;
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The command through a running service's API: the same lines and exit
/// code (the service's own retry runner may deliver some retries first).
fn through_api(remote: &super::remote::Remote, cmd: RetriesCmd) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        RetriesCmd::List { json } => {
            let rows: Vec<RetryRow> = remote
                .retries()?
                .into_iter()
                .map(|(id, uri, deliveries, attempts)| RetryRow {
                    id,
                    uri,
                    deliveries,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
                .collect();
            render_retries(&mut out, &rows, json)?;
            Ok(ExitCode::SUCCESS)
        }
        RetriesCmd::RunDue {
            wait,
            max_deliveries,
            quiet,
        } => {
            let (mut done, mut retried, mut failed) = (0u64, 0u64, 0u64);
            let mut still;
            loop {
                let answer = remote.run_due(max_deliveries)?;
                let n = |k: &str| answer[k].as_u64().unwrap_or(0);
                done += n("finished");
                retried += n("retried");
                failed += n("failed");
                still = n("still_scheduled");
                if !quiet {
                    for line in answer["trace"].as_array().into_iter().flatten() {
                        writeln!(out, "{}", line.as_str().unwrap_or_default())?;
                    }
                }
                if !wait {
                    break;
                }
                match answer["next_due_in_ms"].as_u64() {
                    None => break,
                    Some(ms) => std::thread::sleep(
                        Duration::from_millis(ms)
                            .clamp(Duration::from_millis(5), Duration::from_secs(1)),
                    ),
                }
            }
            writeln!(
                out,
                "retries: {done} finished, {retried} scheduled again, {failed} failed or gave up, {still} still scheduled"
            )?;
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
