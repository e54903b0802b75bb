//! `automate operations list`: the provider operations (ManageIQ's
//! `MiqQueue` messages of the `ems_operations` role that `vm.stop()` and
//! the control actions `vm_stop`... queue), read from `--db`, or from the
//! running service's `GET /api/provider_operations` when one runs.

use super::compose::open_store_read_only;
use super::table::{print_json, Table};
use super::Global;
use automate_engine::datatype::to_json;
use automate_vmdb::operation;
use serde_json::{json, Value};
use std::process::ExitCode;

/// `automate operations ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OperationsCmd {
    /// List the provider operations, oldest first: what was queued for
    /// which VM, and its state (ready, dequeue, ok, warn, error).
    List(ListArgs),
}

/// `automate operations list`'s options.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// One JSON array of objects, one per operation: `id`, `class`, then
    /// its stored columns (`class_name`, `instance_id`, `method_name`,
    /// `args`, `state`, `ems_id`, `created_on`, `message`...).
    #[arg(long)]
    pub json: bool,
    /// Only operations in this state.
    #[arg(long)]
    pub state: Option<String>,
}

/// Runs `automate operations ...`.
pub fn run(global: &Global, cmd: OperationsCmd) -> anyhow::Result<ExitCode> {
    let OperationsCmd::List(args) = cmd;
    let mut items: Vec<Value> = match super::remote::find(global)? {
        Some(remote) => remote.provider_operations()?,
        None => {
            let store = open_store_read_only(&global.db)
                .map_err(|e| super::remote::open_failed(global, e))?;
            store
                .guard(|| operation::list(&store))?
                .into_iter()
                .map(|(id, obj)| {
                    let mut m = serde_json::Map::new();
                    m.insert("id".into(), json!(id.to_string()));
                    m.insert("class".into(), json!(obj.class));
                    for (k, v) in &obj.attrs {
                        m.insert(k.clone(), to_json(v));
                    }
                    Value::Object(m)
                })
                .collect()
        }
    };
    if let Some(state) = &args.state {
        items.retain(|i| i["state"].as_str() == Some(state.as_str()));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        print_json(&mut out, &Value::Array(items))?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut table = Table::new(&[
        "ID",
        "CREATED_ON",
        "COMMAND",
        "TARGET",
        "ARGS",
        "STATE",
        "MESSAGE",
    ]);
    for i in &items {
        table.row(vec![
            text(&i["id"]),
            text(&i["created_on"]),
            format!("{}.{}", text(&i["class_name"]), text(&i["method_name"])),
            text(&i["instance_id"]),
            text(&i["args"]),
            text(&i["state"]),
            text(&i["message"]),
        ]);
    }
    table.print(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
