//! `automate replay`: re-runs recorded events in a sandbox against the
//! datastore (`--datastore`: the current one or another root) and prints,
//! for each event whose outcome changed, what changed (relationships
//! followed, methods run, attributes set, events raised, policies, alerts,
//! objects written, errors), then `N events, M changed, K errors`.
//!
//! The object store is opened read-only and never written; while a
//! service holds it, replay fetches a consistent copy through that
//! service's API (`POST /api/db/backup`) and replays the copy. Each event is
//! re-delivered in a throwaway [`automate_vmdb::sandbox::Sandbox`] over it
//! ([`automate_events::replay`]). Stored events are independent, so they
//! are replayed on one thread per core (`--workers N`), printed in event
//! order. `--from FILE.jsonl` replays events that were never stored (one
//! `jsonl` catcher line each), in order, all in one sandbox (they see each
//! other, as they would live).
//! `--save-as-test DIR` writes the changed (with `--all`, every selected)
//! events as `automate test` cases.

use super::compose::open_store_read_only;
use super::Global;
use anyhow::Context;
use automate_datastore::tests_file::{Case, CaseEvent, Expect, TestFile};
use automate_datastore::Datastore;
use automate_engine::AttrValue;
use automate_engine::Engine;
use automate_events::replay::{OutcomeDiff, Recorded, Replayed, Replayer};
use automate_events::trace::Record;
use automate_events::{Provider, ProviderEvent};
use automate_vmdb::sandbox::Sandbox;
use automate_vmdb::{ObjectStore, StoredObject};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `automate replay`'s selection and output options.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Only events at or after this time (as `events list --since`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events before this time (same forms as `--since`).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only events of this type.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events of this provider (its name, or its kind: `RHEVM`); with
    /// `--from`, the provider name the file's events come from.
    #[arg(long)]
    pub provider: Option<String>,
    /// With `--from`: the provider's kind (`source`).
    #[arg(long, default_value = "RHEVM", requires = "from")]
    pub provider_type: String,
    /// Only events of this VM (its name, provider reference or id).
    #[arg(long)]
    pub vm: Option<String>,
    /// Replay the events of this file (one JSON event per line, as the
    /// `jsonl` catcher reads) instead of the stored ones.
    #[arg(long, value_name = "FILE.jsonl")]
    pub from: Option<PathBuf>,
    /// Print every replayed event, not only the changed ones.
    #[arg(long)]
    pub all: bool,
    /// One JSON object: `events`, `changed`, `errors`, `not_recorded` and
    /// `results` (one per changed or failed event; every event with `--all`).
    #[arg(long)]
    pub json: bool,
    /// Write the changed events (every selected one with `--all`) as
    /// `automate test` cases to DIR/replay_tests.yaml, expecting what the
    /// recorded delivery did.
    #[arg(long, value_name = "DIR")]
    pub save_as_test: Option<PathBuf>,
    /// Stored events replayed at once, each in its own sandbox (default:
    /// one per core). Results print in event order whatever the number.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unchanged,
    Changed,
    NotRecorded,
    Error,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Unchanged => "unchanged",
            Status::Changed => "changed",
            Status::NotRecorded => "not_recorded",
            Status::Error => "error",
        }
    }
}

/// One event's result.
struct Row {
    id: i64,
    label: String,
    event: ProviderEvent,
    source: String,
    status: Status,
    recorded: Option<Record>,
    replayed: Option<Replayed>,
    diff: Option<OutcomeDiff>,
    error: Option<String>,
}

/// Replays the selected events and prints the differences and the
/// summary. Exits 1 when the store or datastore cannot be opened, or an
/// argument is bad; changed events do not fail it.
pub fn run(global: &Global, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let now = automate_core::time::now_ms();
    let since = args
        .since
        .as_deref()
        .map(|s| automate_events::when::parse("--since", s, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| automate_events::when::parse("--until", s, now))
        .transpose()?;
    let (ds, problems) = Datastore::open(&global.datastore);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    // (A copy fetched from a running service lives until replay ends.)
    let mut _copy = None;
    let store: Arc<dyn ObjectStore> = match open_store_read_only(&global.db) {
        Ok(store) => Arc::new(store),
        Err(e) => match copy_of_running(global, &e)? {
            Some((copy, store)) => {
                _copy = Some(copy);
                store
            }
            // A file of events needs no store: they meet an empty one.
            None if args.from.is_some() && !global.db.exists() => {
                Arc::new(automate_vmdb::MemoryStore::new())
            }
            None => return Err(super::remote::open_failed(global, e)),
        },
    };
    let (mut engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store.clone()));
    engine.options.emit_tracing = false;
    let replayer = Replayer::new(engine)?;
    let mut rows = Vec::new();
    let started = std::time::Instant::now();
    let mut workers = 1;
    match &args.from {
        Some(path) => {
            let provider = Provider {
                name: args.provider.clone().unwrap_or_else(|| "replay".into()),
                kind: args.provider_type.clone(),
                hostname: "replay".into(),
                userid: "admin".into(),
            };
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let sandbox = Arc::new(Sandbox::new(store.clone(), None));
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let ev = automate_events::catchers::jsonl::parse_line(line)
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
                if !selected_file_event(&args, &ev, since, until) {
                    continue;
                }
                let label = format!("{}:{} {}", path.display(), n + 1, ev.event_type);
                let mut row = Row {
                    id: n as i64 + 1,
                    label,
                    event: ev.clone(),
                    source: provider.kind.clone(),
                    status: Status::NotRecorded,
                    recorded: None,
                    replayed: None,
                    diff: None,
                    error: None,
                };
                match replayer.handle(&sandbox, &provider, &ev) {
                    Ok(r) => {
                        if r.error.is_some() {
                            row.status = Status::Error;
                            row.error = r.error.clone();
                        }
                        row.replayed = Some(r);
                    }
                    Err(e) => {
                        row.status = Status::Error;
                        row.error = Some(e.to_string());
                    }
                }
                rows.push(row);
            }
        }
        None => {
            let mut ids: Vec<i64> = store.list("EmsEvent")?.iter().map(|r| r.id).collect();
            ids.sort_unstable();
            workers = args
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .clamp(1, ids.len().max(1));
            rows = replay_all(&replayer, &*store, &args, &ids, workers, since, until)?;
        }
    }
    let elapsed = started.elapsed();
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let (changed, errors, not_recorded) = (
        count(Status::Changed),
        count(Status::Error),
        count(Status::NotRecorded),
    );
    if let Some(dir) = &args.save_as_test {
        let saved = save_as_test(dir, &rows, args.all)?;
        eprintln!("wrote {saved} test case(s) to {}", dir.display());
    }
    let mut out = std::io::stdout().lock();
    let shown = |r: &&Row| args.all || matches!(r.status, Status::Changed | Status::Error);
    if args.json {
        let results: Vec<serde_json::Value> = rows.iter().filter(shown).map(row_json).collect();
        let doc = serde_json::json!({
            "events": rows.len(),
            "changed": changed,
            "errors": errors,
            "not_recorded": not_recorded,
            "workers": workers,
            "elapsed_ms": elapsed.as_millis() as u64,
            "results": results,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for r in rows.iter().filter(shown) {
            print_row(&mut out, r)?;
        }
        let mut summary = format!(
            "{} event{}, {changed} changed, {errors} error{}",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            if errors == 1 { "" } else { "s" }
        );
        if not_recorded > 0 {
            summary.push_str(&format!(" ({not_recorded} without a record: not compared)"));
        }
        writeln!(out, "{summary}")?;
    }
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "replayed {} event{} in {secs:.2} s ({:.0} events/s, {workers} worker{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        rows.len() as f64 / secs.max(1e-9),
        if workers == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}

/// When the store cannot be opened because a running service holds it
/// (or, on a cluster node, keeps it in PostgreSQL), a consistent copy of
/// it fetched from that service's API (`POST /api/db/backup`, as `automate
/// db backup` does) into a temporary file: the replay's reads, and its
/// CPU, stay out of the service. `None` when no service holds it.
fn copy_of_running(
    global: &Global,
    err: &automate_vmdb::StoreError,
) -> anyhow::Result<Option<(tempfile::NamedTempFile, Arc<dyn ObjectStore>)>> {
    let in_use = matches!(err, automate_vmdb::StoreError::InUse(_)) || !global.db.exists();
    let remote = if in_use {
        super::remote::find(global)?
    } else {
        None
    };
    let Some(remote) = remote else {
        return Ok(None);
    };
    let dest = std::env::temp_dir().join("automate-replay.redb");
    let (copy, held, bytes) =
        super::db::download_backup(remote.url(), remote.token().unwrap_or_default(), &dest)
            .context("replaying through the running service: fetching a copy of its store")?;
    eprintln!(
        "the store is held by the service at {}: replaying a consistent copy of it \
         ({held} objects, {bytes} bytes, fetched through POST /api/db/backup)",
        remote.url()
    );
    let store = open_store_read_only(copy.path())
        .with_context(|| format!("opening the copy {}", copy.path().display()))?;
    Ok(Some((copy, Arc::new(store))))
}

/// Replays the stored events `ids` (in that order) that `args` selects,
/// on `workers` threads: each thread takes the next event, replays it in
/// a sandbox of its own and keeps its row; the rows come back in `ids`'
/// order. An unchanged event's row keeps only its status and label
/// (unless `--all`), so a replay of 100,000 events holds little more
/// than the changed ones.
fn replay_all(
    replayer: &Replayer,
    store: &dyn ObjectStore,
    args: &ReplayArgs,
    ids: &[i64],
    workers: usize,
    since: Option<i64>,
    until: Option<i64>,
) -> anyhow::Result<Vec<Row>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let work = || -> anyhow::Result<Vec<(usize, Row)>> {
        let mut names = Names::default();
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&id) = ids.get(i) else {
                return Ok(out);
            };
            // (The list is of the event stream: MiqEvent and RequestEvent
            // rows are not provider events.)
            let Some(obj) = store
                .load("EmsEvent", id)?
                .filter(|o| o.class == "EmsEvent")
            else {
                continue;
            };
            if !names.selected(store, args, &obj, since, until)? {
                continue;
            }
            let mut row = replay_stored(replayer, store, &mut names, id, &obj);
            if !args.all && !matches!(row.status, Status::Changed | Status::Error) {
                row.recorded = None;
                row.replayed = None;
                row.event.full_data = serde_json::Value::Null;
            }
            out.push((i, row));
        }
    };
    let parts: Vec<anyhow::Result<Vec<(usize, Row)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut rows = Vec::with_capacity(ids.len());
    for part in parts {
        rows.extend(part?);
    }
    rows.sort_unstable_by_key(|(i, _)| *i);
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// Replays stored event `id`.
fn replay_stored(
    replayer: &Replayer,
    store: &dyn ObjectStore,
    names: &mut Names,
    id: i64,
    obj: &StoredObject,
) -> Row {
    let mut row = Row {
        id,
        label: format!("EmsEvent {id}"),
        event: ProviderEvent {
            event_type: String::new(),
            timestamp: String::new(),
            chain_id: None,
            vm_ems_ref: None,
            vm_name: None,
            host_ems_ref: None,
            host_name: None,
            full_data: serde_json::Value::Null,
        },
        source: String::new(),
        status: Status::Error,
        recorded: None,
        replayed: None,
        diff: None,
        error: None,
    };
    let rec = match Recorded::of(id, obj) {
        Ok(r) => r,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    let vm_name = rec.event.vm.and_then(|v| names.vm(store, v));
    row.label = format!(
        "EmsEvent {id} {} {}{}",
        rec.event.event_type,
        rec.timestamp,
        vm_name
            .as_deref()
            .map(|n| format!(" VM {n}"))
            .unwrap_or_default()
    );
    row.source = rec.source.clone();
    row.event = ProviderEvent {
        event_type: rec.event.event_type.clone(),
        timestamp: rec.timestamp.clone(),
        chain_id: match obj.attrs.get("chain_id") {
            Some(AttrValue::Str(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        vm_ems_ref: rec.vm_ems_ref.clone(),
        vm_name,
        host_ems_ref: None,
        host_name: None,
        full_data: rec.full_data.clone(),
    };
    match replayer.replay(&rec) {
        Ok(r) => {
            row.status = match &rec.record {
                None => Status::NotRecorded,
                Some(before) if r.changed_from(before) => {
                    row.diff = Some(OutcomeDiff::of(before, &r.record));
                    Status::Changed
                }
                Some(_) => Status::Unchanged,
            };
            if r.error.is_some() && row.status != Status::Unchanged {
                row.error = r.error.clone();
                if row.status == Status::NotRecorded {
                    row.status = Status::Error;
                }
            }
            row.replayed = Some(r);
        }
        Err(e) => row.error = Some(e.to_string()),
    }
    row.recorded = rec.record;
    row
}

fn print_row(out: &mut impl Write, r: &Row) -> std::io::Result<()> {
    let status = match r.status {
        Status::Unchanged => "unchanged",
        Status::Changed => "changed",
        Status::NotRecorded => "replayed (no record to compare)",
        Status::Error => "error",
    };
    writeln!(out, "{}: {status}", r.label)?;
    if let Some(d) = &r.diff {
        for l in d.lines(10) {
            writeln!(out, "  {l}")?;
        }
    }
    if let (None, Some(rep)) = (&r.diff, &r.replayed) {
        if r.status == Status::NotRecorded {
            let o = &rep.record.outcome;
            writeln!(out, "  events raised: {}", o.generic_events.join(", "))?;
            writeln!(out, "  methods run: {}", o.methods.len())?;
        }
    }
    if let Some(e) = &r.error {
        writeln!(out, "  error: {e}")?;
    }
    Ok(())
}

fn row_json(r: &Row) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "event": r.label,
        "event_type": r.event.event_type,
        "status": r.status.as_str(),
        "recorded_digest": r.recorded.as_ref().map(|x| x.digest.clone()),
        "digest": r.replayed.as_ref().map(|x| x.record.digest.clone()),
        "diff": r.diff,
        "outcome": r.replayed.as_ref().map(|x| &x.record.outcome),
        "error": r.error,
    })
}

/// Writes `rows` (the changed ones, or all with `all`) as test cases.
fn save_as_test(dir: &std::path::Path, rows: &[Row], all: bool) -> anyhow::Result<usize> {
    let mut cases = Vec::new();
    for r in rows
        .iter()
        .filter(|r| all || r.status == Status::Changed)
        .filter(|r| !r.event.event_type.is_empty())
    {
        let Some(outcome) = r
            .recorded
            .as_ref()
            .or(r.replayed.as_ref().map(|x| &x.record))
            .map(|x| &x.outcome)
        else {
            continue;
        };
        let mut event = serde_json::to_value(&r.event)?;
        if let Some(m) = event.as_object_mut() {
            m.insert("source".into(), r.source.clone().into());
            m.retain(|_, v| !v.is_null());
        }
        let expect = Expect {
            events_raised: Some(outcome.generic_events.clone()),
            policies: Some(
                outcome
                    .policies
                    .iter()
                    .filter(|p| p.condition)
                    .map(|p| p.policy.clone())
                    .collect(),
            ),
            methods: Some(outcome.methods.iter().map(|m| m.method.clone()).collect()),
            error: outcome.errors.last().cloned(),
            ..Expect::default()
        };
        cases.push(Case {
            name: format!("{} ({})", r.label, r.event.event_type),
            event: Some(CaseEvent(event)),
            expect,
            ..Case::default()
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let n = cases.len();
    let file = TestFile::new(cases);
    let path = dir.join("replay_tests.yaml");
    std::fs::write(&path, file.to_yaml()?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

fn selected_file_event(
    args: &ReplayArgs,
    ev: &ProviderEvent,
    since: Option<i64>,
    until: Option<i64>,
) -> bool {
    if args
        .event_type
        .as_ref()
        .is_some_and(|t| *t != ev.event_type)
    {
        return false;
    }
    let at = automate_core::time::parse_time(&ev.timestamp);
    if since.is_some_and(|s| at.is_none_or(|t| t < s))
        || until.is_some_and(|u| at.is_none_or(|t| t >= u))
    {
        return false;
    }
    if let Some(vm) = &args.vm {
        if ev.vm_ems_ref.as_ref() != Some(vm) && ev.vm_name.as_ref() != Some(vm) {
            return false;
        }
    }
    true
}

/// Provider and VM names by id, read once.
#[derive(Default)]
struct Names {
    providers: HashMap<i64, Option<String>>,
    vms: HashMap<i64, Option<String>>,
}

impl Names {
    fn name_of(store: &dyn ObjectStore, class: &str, id: i64) -> Option<String> {
        let obj = store.load(class, id).ok().flatten()?;
        match obj.attrs.get("name") {
            Some(AttrValue::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn vm(&mut self, store: &dyn ObjectStore, id: i64) -> Option<String> {
        self.vms
            .entry(id)
            .or_insert_with(|| Self::name_of(store, "VmOrTemplate", id))
            .clone()
    }

    fn provider(&mut self, store: &dyn ObjectStore, id: i64) -> Option<String> {
        self.providers
            .entry(id)
            .or_insert_with(|| Self::name_of(store, "ExtManagementSystem", id))
            .clone()
    }

    /// Whether stored event `obj` is one `args` selects.
    fn selected(
        &mut self,
        store: &dyn ObjectStore,
        args: &ReplayArgs,
        obj: &StoredObject,
        since: Option<i64>,
        until: Option<i64>,
    ) -> anyhow::Result<bool> {
        let text = |k: &str| match obj.attrs.get(k) {
            Some(AttrValue::Str(s)) => Some(s.as_str()),
            _ => None,
        };
        let int = |k: &str| match obj.attrs.get(k) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        };
        if let Some(t) = &args.event_type {
            if text("event_type") != Some(t.as_str()) {
                return Ok(false);
            }
        }
        if since.is_some() || until.is_some() {
            let at = text("timestamp").and_then(automate_core::time::parse_time);
            if since.is_some_and(|s| at.is_none_or(|t| t < s))
                || until.is_some_and(|u| at.is_none_or(|t| t >= u))
            {
                return Ok(false);
            }
        }
        if let Some(p) = &args.provider {
            let by_kind = text("source").is_some_and(|s| s.eq_ignore_ascii_case(p));
            let by_name = int("ems_id")
                .and_then(|id| self.provider(store, id))
                .is_some_and(|n| n == *p);
            if !by_kind && !by_name {
                return Ok(false);
            }
        }
        if let Some(v) = &args.vm {
            let by_ref = text("vm_ems_ref") == Some(v.as_str());
            let vm_id = int("vm_or_template_id");
            let by_id = vm_id.is_some_and(|id| id.to_string() == *v);
            let by_name =
                !by_ref && !by_id && vm_id.and_then(|id| self.vm(store, id)).as_deref() == Some(v);
            if !by_ref && !by_id && !by_name {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
