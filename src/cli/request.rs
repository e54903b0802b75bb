//! `automate request create|approve|deny|list|show`: automation requests
//! (`docs/requests.md`; `list`, `show`, `approve` and `deny` also serve
//! provisioning requests) in the object store (`--db`), run against the
//! datastore (`--datastore`).
//!
//! Like `automate run`, these commands write ManageIQ's lines to
//! `<log-dir>/evm.log` (target `evm`) and `<log-dir>/automation.log`
//! (target `automation`, Automate's trace), appending; warnings also go to
//! stderr.

use super::compose::{open_store, open_store_read_only};
use super::Global;
use anyhow::Context;
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_requests::{NewRequest, RequestView, Requests};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `automate request`'s log directory and command.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// Where evm.log and automation.log are written.
    #[arg(long, global = true, default_value = "log")]
    pub log_dir: PathBuf,
    /// `create`, `approve`, `deny`, `list` or `show`.
    #[command(subcommand)]
    pub cmd: RequestCmd,
}

/// `automate request create|approve|deny|list|show`. The arguments
/// without a doc comment (clap would print it as their `--help` text):
/// `path` is the instance to run, `id` the request's id, `reason` why it
/// is approved (optional) or denied (required, not empty), `json` prints
/// the request(s) as JSON.
#[allow(missing_docs)]
#[derive(Debug, clap::Subcommand)]
pub enum RequestCmd {
    /// Create an automation request for PATH (`/System/Request/HelloWorld`
    /// or `ns/class/instance#message`).
    Create {
        path: String,
        /// A parameter, `key=value` (repeatable).
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Approve at once (`requester.auto_approve`) and run the task.
        #[arg(long)]
        auto_approve: bool,
        /// The requester.
        #[arg(long)]
        userid: Option<String>,
        /// Print the request as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request and run its task.
    Approve {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending request.
    Deny {
        id: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// List the requests (automation and provisioning).
    ///
    /// A table (ID, APPROVAL_STATE, REQUEST_STATE, STATUS, URI, MESSAGE),
    /// or with `--json` one JSON array of the requests, each as `show
    /// --json` prints it.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one request and its tasks.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `automate request` command on `--db` and `--datastore`,
/// logging to `--log-dir`, and prints the request(s) (text or `--json`).
/// Fails on an unknown id, a bad `--attr`, or an action the request's
/// state refuses.
pub fn run(global: &Global, args: RequestArgs) -> anyhow::Result<ExitCode> {
    let logs = super::run::init_file_logging(
        &args.log_dir,
        global.log_format,
        super::logfile::Rotation::default(),
    )?;
    let result = run_command(global, args);
    logs.flush();
    result
}

/// What a request command shows, gathered locally or from a running
/// service: one or more requests (`create`, `approve`, `deny`, `show`), or
/// the list; and whether as JSON.
enum Shown {
    Views(Vec<RequestView>, bool),
    List(Vec<RequestView>, bool),
}

fn run_command(global: &Global, args: RequestArgs) -> anyhow::Result<ExitCode> {
    let shown = match super::remote::find(global)? {
        Some(remote) => through_api(&remote, args.cmd)?,
        None => locally(global, args.cmd)?,
    };
    let mut out = std::io::stdout().lock();
    match shown {
        Shown::List(all, json) => render_list(&mut out, &all, json)?,
        Shown::Views(views, json) => {
            for v in &views {
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
                } else {
                    write_view(&mut out, v)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The command through a running service's API.
fn through_api(remote: &super::remote::Remote, cmd: RequestCmd) -> anyhow::Result<Shown> {
    Ok(match cmd {
        RequestCmd::Create {
            path,
            attrs,
            auto_approve,
            userid,
            json,
        } => {
            let req = new_request(&path, &attrs, auto_approve, userid)?;
            Shown::Views(vec![remote.create_request(&req)?], json)
        }
        RequestCmd::Approve { id, reason, json } => Shown::Views(
            vec![remote.request_action(id, "approve", reason.as_deref())?],
            json,
        ),
        RequestCmd::Deny { id, reason, json } => Shown::Views(
            vec![remote.request_action(id, "deny", Some(&reason))?],
            json,
        ),
        RequestCmd::Show { id, json } => Shown::Views(vec![remote.request(id)?], json),
        RequestCmd::List { json } => Shown::List(remote.requests()?, json),
    })
}

/// The request `create` asks for: PATH, `--attr`s, `--auto-approve`,
/// `--userid`.
fn new_request(
    path: &str,
    attrs: &[String],
    auto_approve: bool,
    userid: Option<String>,
) -> anyhow::Result<NewRequest> {
    let mut req = parse_path(path)?;
    for a in attrs {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("--attr {a}: expected KEY=VALUE"))?;
        req.parameters.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        );
    }
    req.auto_approve = auto_approve;
    req.userid = userid;
    Ok(req)
}

/// The command on the store opened here.
fn locally(global: &Global, cmd: RequestCmd) -> anyhow::Result<Shown> {
    // `list` and `show` only read: the file is opened read-only (never
    // repaired), and a panic inside redb is an error naming it.
    let read_only = matches!(cmd, RequestCmd::List { .. } | RequestCmd::Show { .. });
    let db = if read_only {
        open_store_read_only(&global.db)
    } else {
        open_store(&global.db)
    }
    .map_err(|e| super::remote::open_failed(global, e))?;
    let db = Arc::new(db);
    let schedule = Arc::new(db.schedule());
    let (ds, problems) = Datastore::open(&global.datastore);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let (engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(db.clone()));
    let requests = Requests::new(engine, schedule);
    Ok(match cmd {
        RequestCmd::Create {
            path,
            attrs,
            auto_approve,
            userid,
            json,
        } => {
            let req = new_request(&path, &attrs, auto_approve, userid)?;
            Shown::Views(vec![requests.create(req)?], json)
        }
        RequestCmd::Approve { id, reason, json } => {
            Shown::Views(vec![requests.approve(id, reason.as_deref())?], json)
        }
        RequestCmd::Deny { id, reason, json } => {
            Shown::Views(vec![requests.deny(id, &reason)?], json)
        }
        RequestCmd::Show { id, json } => {
            Shown::Views(vec![guarded(&db, || requests.get(id))?], json)
        }
        RequestCmd::List { json } => Shown::List(guarded(&db, || requests.list_all())?, json),
    })
}

/// `/System/Request/HelloWorld#create` or `System/Request/HelloWorld`:
/// the last two segments are class and instance, the rest the namespace.
fn parse_path(path: &str) -> anyhow::Result<NewRequest> {
    let (path, message) = match path.split_once('#') {
        Some((p, m)) => (p, Some(m.to_string())),
        None => (path, None),
    };
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() < 3 {
        anyhow::bail!("request path [{path}] must be namespace/class/instance");
    }
    let n = parts.len();
    Ok(NewRequest {
        namespace: parts[..n - 2].join("/"),
        class: parts[n - 2].to_string(),
        instance: parts[n - 1].to_string(),
        message,
        parameters: serde_json::Map::new(),
        auto_approve: false,
        userid: None,
    })
}

fn uri_of(v: &RequestView) -> String {
    let part = |k: &str| v.options.get(k).and_then(|x| x.as_str()).unwrap_or("");
    if v.r#type == automate_vmdb::request_task::PROVISION_REQUEST_CLASS {
        // A provisioning request runs no URI: its template and VM name.
        let template = v.options["src_vm_id"][1].as_str().unwrap_or("");
        return format!("provision [{template}] -> [{}]", part("vm_name"));
    }
    let mut uri = format!(
        "/{}/{}/{}",
        part("namespace"),
        part("class_name"),
        part("instance_name")
    );
    if !part("message").is_empty() {
        uri.push('#');
        uri.push_str(part("message"));
    }
    uri
}

/// Prints the requests: a table (ID, APPROVAL_STATE, REQUEST_STATE,
/// STATUS, URI, MESSAGE) or one JSON array of the requests as `show
/// --json` prints each.
fn render_list(out: &mut impl Write, all: &[RequestView], json: bool) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(all)?)?;
        return Ok(());
    }
    let mut t = super::table::Table::new(&[
        "ID",
        "APPROVAL_STATE",
        "REQUEST_STATE",
        "STATUS",
        "URI",
        "MESSAGE",
    ]);
    for v in all {
        t.row(vec![
            v.id.to_string(),
            v.approval_state.clone(),
            v.request_state.clone(),
            v.status.clone(),
            uri_of(v),
            v.message.clone(),
        ]);
    }
    t.print(out)?;
    Ok(())
}

fn write_view(out: &mut impl Write, v: &RequestView) -> std::io::Result<()> {
    writeln!(out, "id:             {}", v.id)?;
    writeln!(out, "type:           {}", v.r#type)?;
    writeln!(out, "uri:            {}", uri_of(v))?;
    writeln!(out, "userid:         {}", v.userid)?;
    writeln!(out, "approval_state: {}", v.approval_state)?;
    writeln!(out, "request_state:  {}", v.request_state)?;
    writeln!(out, "status:         {}", v.status)?;
    writeln!(out, "message:        {}", v.message)?;
    writeln!(out, "created_on:     {}", v.created_on)?;
    writeln!(out, "updated_on:     {}", v.updated_on)?;
    if let Some(attrs) = v.options.get("attrs").and_then(|a| a.as_object()) {
        for (k, val) in attrs {
            let val = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            writeln!(out, "attr:           {k}={val}")?;
        }
    }
    for t in &v.tasks {
        writeln!(
            out,
            "task:           {} {} {} {}",
            t.id, t.state, t.status, t.message
        )?;
    }
    Ok(())
}

/// Runs a read of `db` with a panic inside redb turned into an error naming
/// the file ([`Store::guard`](super::compose::Store)).
fn guarded<T>(
    db: &super::compose::Store,
    f: impl FnOnce() -> Result<T, automate_requests::RequestError>,
) -> anyhow::Result<T> {
    let mut out = None;
    db.guard(|| {
        out = Some(f());
        Ok(())
    })?;
    Ok(out.with_context(|| format!("{}: the read did not run", db.path().display()))??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_parts() {
        let r = parse_path("/System/Request/HelloWorld").unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.class.as_str(), r.instance.as_str()),
            ("System", "Request", "HelloWorld")
        );
        assert_eq!(r.message, None);
        let r = parse_path("a/b/Cls/inst#go").unwrap();
        assert_eq!(r.namespace, "a/b");
        assert_eq!(r.message.as_deref(), Some("go"));
        assert!(parse_path("/Cls/inst").is_err());
    }
}
