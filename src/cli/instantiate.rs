//! `automate instantiate URI`: run the engine once and print what it did:
//! the automation trace (indented by relationship depth), then the object
//! tree with each object's attributes. `--json` prints both as JSON.

use super::compose::open_store;
use super::Global;
use anyhow::Context;
use automate_datastore::Datastore;
use automate_engine::deliver::{deliver, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_engine::{AttrValue, Attributes, Engine, ObjectId, Workspace};
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
    // With --objects: an in-memory store and no retries. Otherwise the
    // redb store at --db, and a state machine's retry is scheduled there.
    let (store, schedule): (Arc<dyn ObjectStore>, Option<Arc<dyn Schedule>>) = match &args.objects {
        Some(path) => {
            let mem = MemoryStore::new();
            load_objects(&mem, path)?;
            (Arc::new(mem), None)
        }
        None => {
            let db = open_store(&global.db).map_err(|e| super::remote::open_failed(global, e))?;
            let schedule: Arc<dyn Schedule> = Arc::new(db.schedule());
            (Arc::new(db), Some(schedule))
        }
    };
    let (engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store));
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
    if args.json {
        let doc = ws.to_json(&args.uri, err.as_ref());
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
    }
    match err {
        Some(e) => Err(anyhow::anyhow!(
            "instantiation of [{}] failed: {e}",
            args.uri
        )),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The instantiation through a running service's API: prints what the
/// local one prints, from the answer's `document`, `trace` and `tree`.
fn through_api(
    remote: &super::remote::Remote,
    args: &InstantiateArgs,
    attrs: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    let answer = remote.instantiate(&args.uri, attrs)?;
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
