//! `automate instantiate URI`: run the engine once and print what it did:
//! the automation trace (indented by relationship depth), then the object
//! tree with each object's attributes. `--json` prints both as JSON.
//!
//! A simulation by default (`--sandbox`): methods run, but every write to
//! the object store, every scheduled retry and every outbound action goes
//! to a throwaway [`Sandbox`] and is printed as a diff at the end; the
//! store is opened read-only and nothing is persisted. `--commit` writes
//! (the delivery a running service makes); `--no-methods` is ManageIQ's
//! Simulation with "Execute Methods" unchecked: methods are listed, not run.

use super::compose::{open_store, open_store_read_only};
use super::Global;
use anyhow::Context;
use automate_datastore::Datastore;
use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_engine::{AttrValue, Attributes, Engine, ObjectId, Workspace};
use automate_vmdb::sandbox::{Diff, Sandbox};
use automate_vmdb::{MemoryStore, ObjectStore, Schedule};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `automate instantiate`'s URI, attributes and output options.
#[derive(Debug, clap::Args)]
pub struct InstantiateArgs {
    /// The URI, e.g. `/System/Process/Event?event_type=USER_RUN_VM`.
    pub uri: String,
    /// An extra attribute `key=value` (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attrs: Vec<String>,
    /// Objects to load into an in-memory object store instead of using
    /// `--db`: a JSON file holding a list of
    /// `{"class": "EmsEvent", "id": 1, "attributes": {...}}`.
    #[arg(long, value_name = "FILE")]
    pub objects: Option<PathBuf>,
    /// Print the trace and the tree as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print only the object tree.
    #[arg(long)]
    pub quiet: bool,
    /// Simulate (the default): methods run, but nothing is written to the
    /// object store or scheduled and nothing is sent; what would have been
    /// is printed as a diff at the end.
    #[arg(long, conflicts_with = "commit")]
    pub sandbox: bool,
    /// Write what the instantiation does to the object store and schedule
    /// its retries (as a delivery by `automate run` does).
    #[arg(long)]
    pub commit: bool,
    /// Do not run methods (ManageIQ's "Execute Methods" unchecked): each is
    /// logged as skipped and they are listed at the end.
    #[arg(long)]
    pub no_methods: bool,
}

impl InstantiateArgs {
    /// `sandbox` or `commit`, as the API's `mode` says it.
    pub fn mode(&self) -> &'static str {
        if self.commit {
            "commit"
        } else {
            "sandbox"
        }
    }
}

/// Instantiates the URI on `--datastore` (and `--db`, or `--objects`) and
/// prints the trace and the object tree; fails when the instantiation
/// ends with an error (after printing what it did).
pub fn run(global: &Global, args: InstantiateArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let attrs = parse_attrs(&args.attrs)?;
    if args.objects.is_none() {
        if let Some(remote) = super::remote::find(global)? {
            return through_api(&remote, &args, &attrs);
        }
    }
    let (ds, problems) = Datastore::open(&global.datastore);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    // With --objects: an in-memory store. Otherwise the redb store at
    // --db: read-only for a simulation (its bytes never change; an absent
    // file is an empty store), read-write with --commit, where a state
    // machine's retry is scheduled.
    let (store, schedule): (Arc<dyn ObjectStore>, Option<Arc<dyn Schedule>>) = match &args.objects {
        Some(path) => {
            let mem = MemoryStore::new();
            load_objects(&mem, path)?;
            (Arc::new(mem), None)
        }
        None if !args.commit && !global.db.exists() => (Arc::new(MemoryStore::new()), None),
        None => {
            let db = if args.commit {
                open_store(&global.db)
            } else {
                open_store_read_only(&global.db)
            }
            .map_err(|e| super::remote::open_failed(global, e))?;
            let schedule: Arc<dyn Schedule> = Arc::new(db.schedule());
            (Arc::new(db), Some(schedule))
        }
    };
    let (engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store.clone()));
    let engine = engine.with_execute_methods(!args.no_methods);
    let sandbox = (!args.commit).then(|| Arc::new(Sandbox::new(store, schedule.clone())));
    let (engine, schedule) = match &sandbox {
        Some(sb) => (
            engine.with_sandbox(sb.clone()),
            Some(sb.clone() as Arc<dyn Schedule>),
        ),
        None => (engine, schedule),
    };
    let (ws, err) = match &schedule {
        Some(schedule) => {
            let d = Delivery {
                uri: args.uri.clone(),
                attrs: attrs.clone(),
                object: String::new(),
                deliveries: 0,
            };
            match deliver(&engine, &**schedule, &d, DEFAULT_MAX_DELIVERIES)? {
                Outcome::Error { workspace, error } => (workspace, error),
                other => (other.into_workspace(), None),
            }
        }
        None => engine.instantiate_traced(&args.uri, &attrs),
    };
    let diff = sandbox.as_ref().map(|sb| sb.diff()).transpose()?;
    if args.json {
        let mut doc = ws.to_json(&args.uri, err.as_ref());
        doc["mode"] = args.mode().into();
        doc["skipped_methods"] = serde_json::json!(ws.skipped_methods);
        doc["diff"] = diff.as_ref().map_or(serde_json::Value::Null, Diff::to_json);
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        if !args.quiet && !ws.trace.is_empty() {
            for line in &ws.trace {
                writeln!(out, "{}{}", "  ".repeat(line.depth), line.text)?;
            }
            writeln!(out)?;
        }
        for r in ws.roots() {
            print_tree(&mut out, &ws, r, 0)?;
        }
        let lines = diff.as_ref().map(Diff::lines).unwrap_or_default();
        if !args.quiet {
            print_endings(&mut out, &args, &ws.skipped_methods, &lines)?;
        }
    }
    match err {
        Some(e) => Err(anyhow::anyhow!(
            "instantiation of [{}] failed: {e}",
            args.uri
        )),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// After the tree: the methods not run (`--no-methods`) and, in a
/// sandbox, what would have been written (or `nothing`).
fn print_endings(
    out: &mut impl Write,
    args: &InstantiateArgs,
    skipped: &[String],
    diff: &[String],
) -> std::io::Result<()> {
    if args.no_methods {
        writeln!(out)?;
        writeln!(out, "Methods not run (--no-methods): {}", skipped.len())?;
        for m in skipped {
            writeln!(out, "  {m}")?;
        }
    }
    if !args.commit {
        writeln!(out)?;
        writeln!(
            out,
            "Sandbox: nothing was written; {} change{} would have been made{}",
            diff.len(),
            if diff.len() == 1 { "" } else { "s" },
            if diff.is_empty() { "." } else { ":" }
        )?;
        for l in diff {
            writeln!(out, "  {l}")?;
        }
    }
    Ok(())
}

/// The instantiation through a running service's API: prints what the
/// local one prints, from the answer's `document`, `trace` and `tree`.
fn through_api(
    remote: &super::remote::Remote,
    args: &InstantiateArgs,
    attrs: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    let answer = remote.instantiate(&args.uri, attrs, args.mode(), !args.no_methods)?;
    let mut out = std::io::stdout().lock();
    let list = |k: &str| answer[k].as_array().cloned().unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&answer["document"])?
        )?;
    } else {
        let trace = list("trace");
        if !args.quiet && !trace.is_empty() {
            for line in &trace {
                let depth = line["depth"].as_u64().unwrap_or(0) as usize;
                writeln!(out, "{}{}", "  ".repeat(depth), text(&line["text"]))?;
            }
            writeln!(out)?;
        }
        for o in list("tree") {
            let pad = "  ".repeat(o["depth"].as_u64().unwrap_or(0) as usize);
            writeln!(out, "{pad}{}", text(&o["path"]))?;
            for pair in o["attributes"].as_array().into_iter().flatten() {
                writeln!(out, "{pad}  {} = {}", text(&pair[0]), text(&pair[1]))?;
            }
        }
        let skipped: Vec<String> = list("skipped_methods").iter().map(text).collect();
        let diff: Vec<String> = list("diff_lines").iter().map(text).collect();
        if !args.quiet {
            print_endings(&mut out, args, &skipped, &diff)?;
        }
    }
    match answer["error"].as_str() {
        Some(e) => Err(anyhow::anyhow!(
            "instantiation of [{}] failed: {e}",
            args.uri
        )),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `--attr key=value` arguments.
pub fn parse_attrs(attrs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    attrs
        .iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--attr {a}: expected KEY=VALUE"))
        })
        .collect()
}

/// Loads `[{"class","id","attributes"}]` into the store.
pub fn load_objects(store: &MemoryStore, path: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of objects", path.display()))?;
    for (i, obj) in list.iter().enumerate() {
        let class = obj["class"].as_str().with_context(|| {
            format!(
                "{}: object {}: `class` must be a string",
                path.display(),
                i + 1
            )
        })?;
        let id = obj["id"].as_i64().with_context(|| {
            format!(
                "{}: object {}: `id` must be an integer",
                path.display(),
                i + 1
            )
        })?;
        let mut attrs = Attributes::default();
        if let Some(map) = obj["attributes"].as_object() {
            for (k, v) in map {
                attrs.insert(k.to_lowercase(), automate_engine::datatype::from_json(v));
            }
        }
        store.insert(class, id, attrs).with_context(|| {
            format!(
                "{}: object {}: unknown class [{class}]",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(())
}

fn print_tree(
    out: &mut impl Write,
    ws: &Workspace,
    id: ObjectId,
    depth: usize,
) -> std::io::Result<()> {
    let o = ws.object(id);
    let pad = "  ".repeat(depth);
    writeln!(out, "{pad}/{}/{}/{}", o.namespace, o.class, o.instance)?;
    for (k, v) in &o.attributes {
        let shown = match v {
            AttrValue::Str(s) => s.clone(),
            other => other.inspect(),
        };
        writeln!(out, "{pad}  {k} = {shown}")?;
    }
    for c in ws.children(id) {
        print_tree(out, ws, c, depth + 1)?;
    }
    Ok(())
}
