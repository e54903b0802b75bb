//! `automate vmdb show <model> <id> [--json]`: one stored object (a VM, a
//! host, a provider, a category or tag, a request, ...) with its
//! attributes, its tags and its custom attributes (`vm.tag_assign`,
//! `vm.custom_set` in methods), read from the store at `--db`, or through
//! the running service's API (`/api/vms|hosts|providers|categories|tags/{id}`)
//! when it holds the store.

use super::compose::open_store_read_only;
use super::Global;
use anyhow::{bail, Context};
use automate_engine::datatype::to_json;
use automate_vmdb::tags::{CUSTOM_ATTR, TAGS_ATTR};
use automate_vmdb::ObjectStore;
use serde_json::{Map, Value};
use std::process::ExitCode;

/// `automate vmdb ...`.
#[derive(Debug, clap::Subcommand)]
pub enum VmdbCmd {
    /// Show one stored object: its class, attributes, tags and custom attributes.
    ///
    /// `--json`: one object, `{"id", "type", <attributes>...}` as the REST
    /// API shows it (ids as strings; `tags` as `[{"id", "name"}]`,
    /// `custom_attributes` as `[{"name", "value", "source"}]`).
    Show {
        /// The service-model name, as `$evm.vmdb` takes it: `vm`, `host`,
        /// `ems`, `classification`, `miq_request`, ...
        model: String,
        /// The object's id.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The API collection serving objects of base class `class`.
fn collection(class: &str) -> Option<&'static str> {
    Some(match class {
        "VmOrTemplate" => "vms",
        "Host" => "hosts",
        "ExtManagementSystem" => "providers",
        "Service" => "services",
        _ => return None,
    })
}

/// `id` and `*_id` integers as strings, at the top level and in arrays of
/// objects (as the API answers).
fn stringify_ids(v: &mut Value) {
    fn one(m: &mut Map<String, Value>) {
        for (k, val) in m.iter_mut() {
            if (k == "id" || k.ends_with("_id")) && (val.is_i64() || val.is_u64()) {
                *val = Value::String(val.to_string());
            }
        }
    }
    if let Value::Object(m) = v {
        one(m);
        for val in m.values_mut() {
            if let Value::Array(items) = val {
                for item in items.iter_mut() {
                    if let Value::Object(im) = item {
                        one(im);
                    }
                }
            }
        }
    }
}

/// Runs `automate vmdb`.
pub fn run(global: &Global, cmd: VmdbCmd) -> anyhow::Result<ExitCode> {
    let VmdbCmd::Show { model, id, json } = cmd;
    let class = automate_methods::evm::service_model(&model).with_context(|| {
        format!("unknown model [{model}]: use vm, host, ems, classification, miq_request, ...")
    })?;
    let base = automate_vmdb::base_class(&class).unwrap_or("");
    let mut doc = match super::remote::find(global)? {
        Some(remote) => {
            let Some(name) = collection(base) else {
                bail!("a running service holds the store, and its API does not serve {class} objects: stop it to read {}", global.db.display());
            };
            let mut v = remote.object(name, id)?;
            if let Value::Object(m) = &mut v {
                m.remove("href");
            }
            v
        }
        None => {
            let store = open_store_read_only(&global.db)
                .map_err(|e| super::remote::open_failed(global, e))?;
            let Some(obj) = store.load(&class, id)? else {
                bail!("{class} [{id}] not found in {}", global.db.display());
            };
            let mut m = Map::new();
            m.insert("id".into(), Value::from(id));
            m.insert("type".into(), Value::from(obj.class.clone()));
            for (k, v) in &obj.attrs {
                if k != "id" && k != "dedup_key" && k != automate_events::trace::TRACE_ATTR {
                    m.insert(k.clone(), to_json(v));
                }
            }
            Value::Object(m)
        }
    };
    stringify_ids(&mut doc);
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&doc));
    Ok(ExitCode::SUCCESS)
}

/// The text form: `key  value` lines, tags as `category/entry`, custom
/// attributes as `key=value`.
fn render(doc: &Value) -> String {
    let Some(m) = doc.as_object() else {
        return format!("{doc}\n");
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let width = m.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in m {
        let shown = match (k.as_str(), v) {
            (TAGS_ATTR, Value::Array(items)) => items
                .iter()
                .map(|t| text(&t["name"]).trim_start_matches("/managed/").to_string())
                .collect::<Vec<_>>()
                .join(", "),
            (CUSTOM_ATTR, Value::Array(items)) => items
                .iter()
                .map(|c| format!("{}={}", text(&c["name"]), text(&c["value"])))
                .collect::<Vec<_>>()
                .join(", "),
            _ => text(v),
        };
        out.push_str(&format!("{k:<width$}  {shown}\n"));
    }
    out
}
