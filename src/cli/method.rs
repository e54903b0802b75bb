//! `automate method run PATH`: run one method on a fresh object of its
//! class and print the trace and the object's attributes.

use super::compose::open_store;
use super::Global;
use automate_datastore::Datastore;
use automate_engine::{AttrValue, Engine};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// `automate method run`.
#[derive(Debug, clap::Subcommand)]
pub enum MethodCmd {
    /// Run a method: `automate method run /System/Request/hello_world`.
    Run {
        /// `/namespace/Class/method`, partial (overlay applies) or with the domain.
        path: String,
        /// An attribute of the object the method runs on, `key=value` (repeatable).
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Print one JSON object instead of text, as `instantiate --json`:
        /// `{"uri", "trace", "objects", "state_vars", "error"}` (`uri` is
        /// the method's path, `error` null or the failure; exit 1 on one).
        #[arg(long)]
        json: bool,
    },
    /// The functions and properties the Rhai engine registers for methods
    /// (`evm`, `VmdbObject`, ...), read from the engine: what
    /// `scripts/porting-coverage` checks ManageIQ's Ruby against.
    #[command(hide = true)]
    Functions {
        /// One JSON array of `{receiver, name, kind, arity, signature}`.
        #[arg(long)]
        json: bool,
    },
}

/// `automate method functions`: needs no datastore or store.
fn functions(json: bool) -> anyhow::Result<ExitCode> {
    let runner = automate_methods::RhaiRunner::new();
    let mut fns = automate_methods::functions::registered_functions(&runner);
    fns.extend(automate_methods::functions::service_model_names());
    let mut out = std::io::stdout().lock();
    if json {
        super::table::print_json(&mut out, &serde_json::to_value(&fns)?)?;
    } else {
        for f in &fns {
            writeln!(out, "{:<10} {:<9} {}", f.receiver, f.kind, f.signature)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the method on `--datastore` and `--db` and prints the trace and
/// the object's attributes; fails when the method ends with an error.
pub fn run(global: &Global, cmd: MethodCmd) -> anyhow::Result<ExitCode> {
    let (path, attrs, json) = match cmd {
        MethodCmd::Run { path, attrs, json } => (path, attrs, json),
        MethodCmd::Functions { json } => return functions(json),
    };
    let attrs = super::instantiate::parse_attrs(&attrs)?;
    if let Some(remote) = super::remote::find(global)? {
        let answer = remote.run_method(&path, &attrs)?;
        let mut out = std::io::stdout().lock();
        if json {
            super::table::print_json(&mut out, &answer["document"])?;
        } else {
            for line in answer["trace"].as_array().into_iter().flatten() {
                writeln!(out, "{}", line.as_str().unwrap_or_default())?;
            }
        }
        if let Some(o) = answer["object"].as_object().filter(|_| !json) {
            writeln!(out)?;
            writeln!(out, "{}", o["name"].as_str().unwrap_or_default())?;
            for pair in o["attributes"].as_array().into_iter().flatten() {
                let text = |i: usize| pair[i].as_str().unwrap_or_default();
                writeln!(out, "  {} = {}", text(0), text(1))?;
            }
        }
        return match answer["error"].as_str() {
            Some(e) => Err(anyhow::anyhow!("method [{path}] failed: {e}")),
            None => Ok(ExitCode::SUCCESS),
        };
    }
    let (ds, problems) = Datastore::open(&global.datastore);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let store = open_store(&global.db).map_err(|e| super::remote::open_failed(global, e))?;
    let (engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(Arc::new(store)));
    let (ws, err) = engine.run_method(&path, &attrs);
    let mut out = std::io::stdout().lock();
    if json {
        super::table::print_json(&mut out, &ws.to_json(&path, err.as_ref()))?;
        return match err {
            Some(e) => Err(anyhow::anyhow!("method [{path}] failed: {e}")),
            None => Ok(ExitCode::SUCCESS),
        };
    }
    for line in &ws.trace {
        writeln!(out, "{}", line.text)?;
    }
    if let Some(o) = ws.objects.first() {
        writeln!(out)?;
        writeln!(out, "{}", o.object_name)?;
        for (k, v) in &o.attributes {
            let shown = match v {
                AttrValue::Str(s) => s.clone(),
                other => other.inspect(),
            };
            writeln!(out, "  {k} = {shown}")?;
        }
    }
    match err {
        Some(e) => Err(anyhow::anyhow!("method [{path}] failed: {e}")),
        None => Ok(ExitCode::SUCCESS),
    }
}
