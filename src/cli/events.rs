//! `automate event send` (one event through the handler and Automate, on
//! `--db`, printing the evm.log lines), `automate events list` (the
//! stored event stream), `automate events show` (one event and its
//! delivery's record) and `automate events dead-letter list|retry`.

use super::compose::{open_store, open_store_read_only};
use super::table::Table;
use super::Global;
use anyhow::Context;
use automate_core::time::{iso8601, now_ms};
use automate_datastore::Datastore;
use automate_engine::datatype::to_json;
use automate_engine::{AttrValue, Engine};
use automate_events::dead_letters::StoredDeadLetters;
use automate_events::stream::{event_streams, EventFilter};
use automate_events::{EvmLog, Handler, Provider, ProviderEvent};
use automate_vmdb::dead_letter::DeadLetters;
use automate_vmdb::served::ServedStore;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `automate event send`.
#[derive(Debug, clap::Subcommand)]
pub enum EventCmd {
    /// Handle one provider event now: store it and deliver it to Automate.
    Send(SendArgs),
}

/// The event `automate event send` handles and its provider. `chain_id`
/// is the event's `chain_id` (no doc comment on it: clap would print it
/// as `--chain-id`'s help).
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The provider's name (looked up in --config when given).
    #[arg(long)]
    pub provider: String,
    /// The provider type when it is not configured: RHEVM, OPENSTACK, VC, ...
    #[arg(long, default_value = "RHEVM")]
    pub provider_type: String,
    /// The provider-native event type, e.g. USER_RUN_VM.
    #[arg(long = "type")]
    pub event_type: String,
    /// The provider's reference of the VM.
    #[arg(long)]
    pub vm: Option<String>,
    /// The VM's name (default: its reference).
    #[arg(long)]
    pub vm_name: Option<String>,
    /// The provider's reference of the host.
    #[arg(long)]
    pub host: Option<String>,
    /// When it happened (default: now): an RFC 3339 time
    /// (2026-12-01T00:00:00Z), a date and time in UTC, a date, or a span
    /// ago (30m, 1h, 2d). Stored as the event stream's ISO 8601 UTC text
    /// (2026-12-01T00:00:00.000Z).
    #[arg(long, visible_alias = "time", value_name = "TIME")]
    pub timestamp: Option<String>,
    #[allow(missing_docs)]
    #[arg(long)]
    pub chain_id: Option<String>,
    /// The configuration naming the provider.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `automate events list`.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCmd {
    /// List the stored events (EmsEvent, MiqEvent, RequestEvent).
    List(ListArgs),
    /// One stored event and what its delivery did: the generic events it
    /// raised, the policies and alerts that fired, the methods invoked,
    /// the objects it created or changed, its errors and digest
    /// (`events.trace`); `--trace` adds its Automate trace.
    Show(ShowArgs),
    /// Events whose handling failed too many times: list them, retry them.
    #[command(subcommand)]
    DeadLetter(DeadLetterCmd),
}

/// `automate events dead-letter list|retry`.
#[derive(Debug, clap::Subcommand)]
pub enum DeadLetterCmd {
    /// List the dead-lettered events not yet retried, oldest first.
    List(DeadLetterListArgs),
    /// Put dead-lettered events back on the event queue (new events, their
    /// attempts from one) and take them off the list.
    Retry(DeadLetterRetryArgs),
}

/// `automate events dead-letter list`'s options.
#[derive(Debug, clap::Args)]
pub struct DeadLetterListArgs {
    /// One JSON array of objects, one per dead letter: `id`, `provider`,
    /// `source`, `event_type`, `timestamp`, `vm_ems_ref`, `error`,
    /// `attempts`, `dead_lettered_on` and the whole `event`.
    #[arg(long)]
    pub json: bool,
}

/// `automate events dead-letter retry`'s options.
#[derive(Debug, clap::Args)]
pub struct DeadLetterRetryArgs {
    /// The dead letters' ids (as `list` prints them).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<u64>,
    /// Every dead letter listed now.
    #[arg(long)]
    pub all: bool,
    /// `{"retried": ["ID", ...]}` instead of a line.
    #[arg(long)]
    pub json: bool,
}

/// `automate events show`'s options.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The event's id (as `events list` prints it).
    pub id: i64,
    /// Also print the Automate trace of its delivery.
    #[arg(long)]
    pub trace: bool,
    /// One JSON object: `id`, `event` (its stored columns, the provider's
    /// payload in `full_data`) and, when recorded, `digest`,
    /// `recorded_on`, `uri`, `outcome`, `truncated` (and `trace` with
    /// `--trace`).
    #[arg(long)]
    pub json: bool,
}

/// Which stored events `automate events list` prints, and how.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only events of this type.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events at or after this time: a span ago (30m, 1h, 2d, 1w), a
    /// number of seconds ago (3600), an RFC 3339 time
    /// (2026-12-01T00:00:00Z), a date and time in UTC or a date
    /// (2026-12-01). An impossible date (2026-02-31) is an error.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only the last N events.
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON array of objects, one per event: `id`, `class` (EmsEvent,
    /// MiqEvent, RequestEvent) and the stored columns (`event_type`,
    /// `event_namespace`, `source`, `timestamp` in ISO 8601 UTC, ...).
    #[arg(long)]
    pub json: bool,
}

/// `automate event send`: handles the event on `--db` and prints the
/// evm.log lines; exits 1 when Automate ended with an error (the event
/// stays stored). Fails when `--provider` is not in `--config`.
pub fn send(global: &Global, cmd: EventCmd) -> anyhow::Result<ExitCode> {
    let EventCmd::Send(args) = cmd;
    // `events.trace` of --config: whether the delivery is recorded (for
    // `automate replay`), as the pipeline would.
    let mut trace = automate_events::trace::TraceConfig::default();
    let provider = match &args.config {
        Some(path) => {
            let cfg = super::load_config(global, path)?;
            super::password::install_key(&cfg)?;
            trace = cfg.events.trace.clone();
            cfg.provider(&args.provider)
                .map(|p| p.provider.clone())
                .with_context(|| {
                    format!("provider [{}] is not in {}", args.provider, path.display())
                })?
        }
        None => Provider {
            name: args.provider.clone(),
            kind: args.provider_type.clone(),
            hostname: args.provider.clone(),
            userid: "admin".into(),
        },
    };
    // The event stream's one format, whatever form the user typed.
    let timestamp = match &args.timestamp {
        Some(t) => iso8601(automate_events::when::parse("--timestamp", t, now_ms())?),
        None => iso8601(now_ms()),
    };
    let event = ProviderEvent {
        event_type: args.event_type.clone(),
        timestamp,
        chain_id: args.chain_id.clone(),
        vm_ems_ref: args.vm.clone(),
        vm_name: args.vm_name.clone().or_else(|| args.vm.clone()),
        host_ems_ref: args.host.clone(),
        host_name: args.host.clone(),
        full_data: serde_json::json!({ "event_type": args.event_type, "source": "automate event send" }),
    };
    if let Some(remote) = super::remote::find(global)? {
        let answer = remote.send_event(&provider, &event)?;
        let mut out = std::io::stdout().lock();
        for line in answer["lines"].as_array().into_iter().flatten() {
            writeln!(out, "{}", line.as_str().unwrap_or_default())?;
        }
        let event_id = answer["event_id"].as_i64().unwrap_or_default();
        if answer["duplicate"].as_bool() == Some(true) {
            writeln!(out, "event: already stored as EmsEvent.{event_id}")?;
        }
        return match answer["error"].as_str() {
            Some(e) => {
                eprintln!("error: delivery of EmsEvent.{event_id} failed: {e}");
                Ok(ExitCode::from(1))
            }
            None => Ok(ExitCode::SUCCESS),
        };
    }
    let store =
        Arc::new(open_store(&global.db).map_err(|e| super::remote::open_failed(global, e))?);
    let (ds, problems) = Datastore::open(&global.datastore);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let schedule = Arc::new(store.schedule());
    let (engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store));
    let log = EvmLog::default();
    // A state machine that asks for a retry is scheduled for
    // `automate retries run-due` (or a running `automate run`).
    let handler = Handler::new(engine, log.clone())?
        .with_schedule(schedule)
        .with_trace(trace);
    log.info(provider.caught_line(&event.event_type));
    let outcome = handler.handle(&provider, &event)?;
    let mut out = std::io::stdout().lock();
    for line in log.drain() {
        writeln!(out, "{line}")?;
    }
    if outcome.duplicate {
        writeln!(
            out,
            "event: already stored as EmsEvent.{}",
            outcome.event_id
        )?;
    }
    match outcome.error {
        Some(e) => {
            eprintln!(
                "error: delivery of EmsEvent.{} failed: {e}",
                outcome.event_id
            );
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `automate events list`: prints the stored events, oldest first (text
/// or `--json`). Fails on a `--since` that is not a time
/// ([`automate_events::when::parse`]).
pub fn list(global: &Global, cmd: EventsCmd) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        EventsCmd::List(args) => args,
        EventsCmd::DeadLetter(cmd) => return dead_letter(global, cmd),
        EventsCmd::Show(args) => return show(global, &args),
    };
    let since_ms = match &args.since {
        None => None,
        Some(s) => Some(automate_events::when::parse("--since", s, now_ms())?),
    };
    let rows = match super::remote::find(global)? {
        // The service's answer, back as the stored rows it was read from.
        Some(remote) => remote
            .events(
                args.event_type.as_deref(),
                args.since.as_deref(),
                args.limit,
            )?
            .iter()
            .map(|item| {
                let mut attrs = automate_engine::Attributes::default();
                for (k, v) in item.as_object().into_iter().flatten() {
                    if k != "id" && k != "class" {
                        attrs.insert(k.clone(), automate_engine::datatype::from_json(v));
                    }
                }
                let class = item["class"].as_str().unwrap_or_default().to_string();
                (
                    item["id"].as_i64().unwrap_or_default(),
                    automate_vmdb::StoredObject { class, attrs },
                )
            })
            .collect(),
        None => {
            // Read-only: never writes (nor repairs) the file.
            let store = open_store_read_only(&global.db)
                .map_err(|e| super::remote::open_failed(global, e))?;
            let filter = EventFilter {
                event_type: args.event_type.clone(),
                since_ms,
                limit: args.limit,
                offset: 0,
            };
            store.guard(|| event_streams(&store, &filter))?.1
        }
    };
    let mut out = std::io::stdout().lock();
    render_events(&mut out, &rows, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints stored events: a table (ID, TIMESTAMP, NAMESPACE, SOURCE,
/// EVENT_TYPE, VM) or one JSON array of objects (`id`, `class`, then the
/// stored columns but the internal `dedup_key`).
pub fn render_events(
    out: &mut impl Write,
    rows: &[(i64, automate_vmdb::StoredObject)],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, obj)| {
                let mut m = serde_json::Map::new();
                m.insert("id".into(), serde_json::json!(id));
                m.insert("class".into(), serde_json::json!(obj.class));
                for (k, v) in &obj.attrs {
                    if k != "dedup_key" && k != automate_events::trace::TRACE_ATTR {
                        m.insert(k.clone(), to_json(v));
                    }
                }
                serde_json::Value::Object(m)
            })
            .collect();
        return super::table::print_json(out, &serde_json::Value::Array(items));
    }
    let mut t = Table::new(&["ID", "TIMESTAMP", "NAMESPACE", "SOURCE", "EVENT_TYPE", "VM"]);
    for (id, obj) in rows {
        let text = |k: &str| obj.attrs.get(k).map(AttrValue::to_text).unwrap_or_default();
        let vm = text("vm_or_template_id");
        t.row(vec![
            id.to_string(),
            text("timestamp"),
            text("event_namespace"),
            text("source"),
            text("event_type"),
            if vm.is_empty() { "-".into() } else { vm },
        ]);
    }
    t.print(out)?;
    Ok(())
}

/// `automate events show ID [--trace] [--json]`: through the running
/// service's API (`GET /api/event_streams/{id}/trace`), or read-only from
/// the embedded store at `--db`. Fails when there is no such event.
pub fn show(global: &Global, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let mut doc = match super::remote::find(global)? {
        Some(remote) => match remote.event_trace(args.id)? {
            Some(doc) => doc,
            None => serde_json::json!({
                "id": args.id.to_string(),
                "event": remote.object("event_streams", args.id)?,
            }),
        },
        None => {
            let store = open_store_read_only(&global.db)
                .map_err(|e| super::remote::open_failed(global, e))?;
            let obj = store
                .guard(|| automate_vmdb::ObjectStore::load(&store, "EventStream", args.id))?
                .with_context(|| format!("event {}: no such event", args.id))?;
            show_doc(args.id, &obj)?
        }
    };
    if !args.trace {
        if let Some(m) = doc.as_object_mut() {
            m.remove("trace");
        }
    }
    let mut out = std::io::stdout().lock();
    render_show(&mut out, &doc, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// The document `events show --json` prints, from a stored event: as
/// `GET /api/event_streams/{id}/trace` answers (without `href`s).
pub fn show_doc(id: i64, obj: &automate_vmdb::StoredObject) -> anyhow::Result<serde_json::Value> {
    let mut event = serde_json::Map::new();
    event.insert("id".into(), serde_json::json!(id.to_string()));
    event.insert("type".into(), serde_json::json!(obj.class));
    for (k, v) in &obj.attrs {
        if k == "dedup_key" || k == automate_events::trace::TRACE_ATTR {
            continue;
        }
        let mut j = to_json(v);
        if k == "full_data" {
            if let Some(parsed) = j.as_str().and_then(|t| serde_json::from_str(t).ok()) {
                j = parsed;
            }
        }
        event.insert(k.clone(), j);
    }
    let mut doc = serde_json::json!({"id": id.to_string(), "event": event});
    let record =
        automate_events::trace::Record::of(obj).map_err(|e| anyhow::anyhow!("event {id}: {e}"))?;
    if let (Some(r), Some(m)) = (record, doc.as_object_mut()) {
        if let serde_json::Value::Object(r) = serde_json::to_value(&r)? {
            m.extend(r);
        }
    }
    Ok(doc)
}

/// Prints `events show`'s document: as it is (`--json`), or the event's
/// line, then its outcome one line per part, then its trace when the
/// document holds it.
pub fn render_show(
    out: &mut impl Write,
    doc: &serde_json::Value,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return super::table::print_json(out, doc);
    }
    let ev = &doc["event"];
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        v => v.to_string(),
    };
    writeln!(
        out,
        "Event {} {} [{}] at {} from {} VM {}",
        s(&doc["id"]),
        s(&ev["type"]),
        s(&ev["event_type"]),
        s(&ev["timestamp"]),
        s(&ev["source"]),
        s(&ev["vm_or_template_id"]),
    )?;
    if doc.get("digest").is_none() {
        writeln!(
            out,
            "No delivery record (events.trace off, a duplicate event, or pruned)"
        )?;
        return Ok(());
    }
    let o = &doc["outcome"];
    let list = |v: &serde_json::Value, f: &dyn Fn(&serde_json::Value) -> String| {
        let items: Vec<String> = v.as_array().into_iter().flatten().map(f).collect();
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    writeln!(
        out,
        "Delivered:      {} ({})",
        s(&doc["uri"]),
        s(&doc["recorded_on"])
    )?;
    writeln!(out, "Digest:         {}", s(&doc["digest"]))?;
    writeln!(
        out,
        "Generic events: {}",
        list(&o["generic_events"], &|v| s(v))
    )?;
    writeln!(
        out,
        "Policies:       {}",
        list(&o["policies"], &|p| format!(
            "{} [{}] condition {}",
            s(&p["policy"]),
            s(&p["event"]),
            p["condition"]
        ))
    )?;
    writeln!(
        out,
        "Alerts:         {}",
        list(&o["alerts"], &|a| format!(
            "{} [{}]",
            s(&a["alert"]),
            s(&a["event"])
        ))
    )?;
    writeln!(
        out,
        "Methods:        {}",
        list(&o["methods"], &|m| match m.get("rc") {
            Some(rc) => format!("{} rc={}", s(&m["method"]), s(rc)),
            None => s(&m["method"]),
        })
    )?;
    let discarded = if o["discarded"].as_bool() == Some(true) {
        " (discarded: Automate ended with an error)"
    } else {
        ""
    };
    writeln!(
        out,
        "Objects:        {}{discarded}",
        list(&o["objects"], &|x| {
            let what = if x["created"].as_bool() == Some(true) {
                "created".to_string()
            } else {
                format!("updated {}", list(&x["attributes"], &|a| s(a)))
            };
            format!("{}.{} {what}", s(&x["class"]), s(&x["id"]))
        })
    )?;
    writeln!(out, "Errors:         {}", list(&o["errors"], &|e| s(e)))?;
    if let Some(lines) = doc.get("trace").and_then(|t| t.as_array()) {
        writeln!(out, "Trace:")?;
        for l in lines {
            writeln!(out, "  {}", s(l))?;
        }
    }
    Ok(())
}

/// `automate events dead-letter list|retry`: through the running service's
/// API (`/api/dead_letters`: the `DeadLetterEvent` rows in embedded mode,
/// the JetStream dead-letter stream in cluster mode); without a service,
/// on the embedded store at `--db` (a retry enqueues into its queue, for
/// the next `automate run`).
pub fn dead_letter(global: &Global, cmd: DeadLetterCmd) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let remote = super::remote::find(global)?;
    match cmd {
        DeadLetterCmd::List(args) => {
            let rows = match &remote {
                Some(remote) => remote.dead_letters()?,
                None => {
                    let store: Arc<dyn ServedStore> = Arc::new(
                        open_store_read_only(&global.db)
                            .map_err(|e| super::remote::open_failed(global, e))?,
                    );
                    StoredDeadLetters::new(store, Vec::new())
                        .list(automate_api::dead_letters::LIST_MAX)?
                        .iter()
                        .map(automate_api::dead_letters::row)
                        .collect()
                }
            };
            render_dead_letters(&mut out, &rows, args.json)?;
        }
        DeadLetterCmd::Retry(args) => {
            let retried: Vec<String> = match &remote {
                Some(remote) => remote.retry_dead_letters(&args.ids, args.all)?,
                None => {
                    let store = Arc::new(
                        open_store(&global.db)
                            .map_err(|e| super::remote::open_failed(global, e))?,
                    );
                    let queue = Arc::new(automate_redb::RedbEventQueue::open(store.schedule())?);
                    let dead = StoredDeadLetters::new(store, Vec::new()).with_queue(queue);
                    let ids = if args.all {
                        dead.retry_all()?
                    } else {
                        dead.retry(&args.ids)?
                    };
                    ids.iter().map(u64::to_string).collect()
                }
            };
            if args.json {
                super::table::print_json(&mut out, &serde_json::json!({ "retried": retried }))?;
            } else if retried.is_empty() {
                writeln!(out, "no dead letter retried")?;
            } else {
                writeln!(
                    out,
                    "{} dead letter{} enqueued again: {}",
                    retried.len(),
                    if retried.len() == 1 { "" } else { "s" },
                    retried.join(", ")
                )?;
            }
            if !args.all && retried.len() < args.ids.len() {
                let missing: Vec<String> = args
                    .ids
                    .iter()
                    .map(u64::to_string)
                    .filter(|id| !retried.contains(id))
                    .collect();
                eprintln!("error: no dead letter {}", missing.join(", "));
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints dead letters (rows as `/api/dead_letters` answers them): a table
/// (ID, DEAD_LETTERED_ON, PROVIDER, EVENT_TYPE, VM, ATTEMPTS, ERROR) or
/// one JSON array.
pub fn render_dead_letters(
    out: &mut impl Write,
    rows: &[serde_json::Value],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(m) = r.as_object_mut() {
                    m.remove("href");
                }
                r
            })
            .collect();
        return super::table::print_json(out, &serde_json::Value::Array(items));
    }
    let mut t = Table::new(&[
        "ID",
        "DEAD_LETTERED_ON",
        "PROVIDER",
        "EVENT_TYPE",
        "VM",
        "ATTEMPTS",
        "ERROR",
    ]);
    for r in rows {
        let text = |k: &str| match &r[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_string(),
            v => v.to_string(),
        };
        t.row(vec![
            text("id"),
            text("dead_lettered_on"),
            text("provider"),
            text("event_type"),
            text("vm_ems_ref"),
            text("attempts"),
            text("error"),
        ]);
    }
    t.print(out)?;
    Ok(())
}
