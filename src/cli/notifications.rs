//! `automate notifications list [--json]`: the notifications methods
//! created (`evm.create_notification`, ManageIQ's
//! `$evm.create_notification`), read from the object store (`--db`), or
//! through the running service's `GET /api/notifications`.

use super::compose::open_store_read_only;
use super::table::Table;
use super::Global;
use automate_engine::datatype::to_json;
use automate_vmdb::ObjectStore;
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

/// `automate notifications ...`.
#[derive(Debug, clap::Subcommand)]
pub enum NotificationsCmd {
    /// List the notifications, oldest first.
    ///
    /// A table (ID, TYPE, SUBJECT, MESSAGE, CREATED), or with `--json` one JSON array of `{"id",
    /// "notification_type", "level", "audience", "message", "subject_type", "subject_id", "initiator",
    /// "created_on", "seen"}` objects.
    List {
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// The keys a notification is shown with, in order.
const KEYS: [&str; 9] = [
    "notification_type",
    "level",
    "audience",
    "message",
    "subject_type",
    "subject_id",
    "initiator",
    "created_on",
    "seen",
];

/// One notification as `--json` prints it (ids as integers).
fn item(id: i64, get: impl Fn(&str) -> Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(id));
    for k in KEYS {
        let mut v = get(k);
        if k == "subject_id" {
            if let Some(n) = v.as_str().and_then(|s| s.parse::<i64>().ok()) {
                v = json!(n);
            }
        }
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// Every stored notification, by id.
fn local(store: &dyn ObjectStore) -> Result<Vec<Value>, automate_vmdb::StoreError> {
    let mut out = Vec::new();
    for r in store.list("Notification")? {
        if let Some(o) = store.load("Notification", r.id)? {
            out.push(item(r.id, |k| {
                o.attrs.get(k).map(to_json).unwrap_or(Value::Null)
            }));
        }
    }
    Ok(out)
}

/// Prints the notifications: a table with headers, or one JSON array.
pub fn render(out: &mut impl Write, rows: &[Value], json: bool) -> anyhow::Result<()> {
    if json {
        return super::table::print_json(out, &Value::Array(rows.to_vec()));
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let mut t = Table::new(&["ID", "TYPE", "SUBJECT", "MESSAGE", "CREATED"]);
    for r in rows {
        t.row(vec![
            text(&r["id"]),
            text(&r["notification_type"]),
            format!("{}::{}", text(&r["subject_type"]), text(&r["subject_id"])),
            text(&r["message"]),
            text(&r["created_on"]),
        ]);
    }
    t.print(out)?;
    Ok(())
}

/// Runs `automate notifications list`.
pub fn run(global: &Global, cmd: NotificationsCmd) -> anyhow::Result<ExitCode> {
    let NotificationsCmd::List { json } = cmd;
    let rows = match super::remote::find(global)? {
        Some(remote) => remote
            .notifications()?
            .into_iter()
            .map(|r| {
                let id = r["id"]
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .or_else(|| r["id"].as_i64())
                    .unwrap_or(0);
                item(id, |k| r.get(k).cloned().unwrap_or(Value::Null))
            })
            .collect(),
        None => {
            let db = open_store_read_only(&global.db)
                .map_err(|e| super::remote::open_failed(global, e))?;
            db.guard(|| local(&db))?
        }
    };
    render(&mut std::io::stdout().lock(), &rows, json)?;
    Ok(ExitCode::SUCCESS)
}
