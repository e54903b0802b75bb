//! The command line as a client of a running service: when `automate run`
//! or `automate api` holds the object store (redb lets one process open
//! the file), the commands that read or change it go through its REST API
//! instead (`docs/operations.md`, "Commands while the service runs").
//!
//! * The service advertises itself: [`Advertisement::write`] puts
//!   `<db>.server` beside the redb file (`automate.redb.server`: JSON
//!   `{url, pid, token}`, mode 0600, written atomically) and removes it on
//!   a clean exit.
//! * A command finds its service with [`find`]: `--server URL` (or
//!   `AUTOMATE_SERVER`) first, then the advertisement when its process is
//!   alive and `GET /api/health` answers (a stale one is removed); the token
//!   is `--token` (or `AUTOMATE_API_TOKEN`), else the advertisement's.
//!   Without either the command opens the store itself; when that fails
//!   because the store is in use, [`in_use`] names both ways out.
//! * [`Remote`] is the HTTP client and the one place that knows the API's
//!   shapes: its methods answer the values the commands print (the same
//!   values the local path gathers), so a change to the API touches only
//!   this file.

use super::Global;
use anyhow::{bail, Context};
use automate_requests::RequestView;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The API's header carrying the token.
const TOKEN_HEADER: &str = "X-Auth-Token";

/// The largest page asked of a collection (`api.limits.max_limit`'s
/// default).
const PAGE: usize = 10_000;

/// `<db>.server`: where a service holding the store at `db` advertises its
/// address and token.
pub fn advertisement_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".server");
    db.with_file_name(name)
}

/// The advertisement a running service keeps beside its store; removed
/// when dropped (a clean exit).
#[derive(Debug)]
pub struct Advertisement {
    path: PathBuf,
}

impl Advertisement {
    /// Writes `{url, pid, token}` to [`advertisement_path`] of `db`: mode
    /// 0600 (it holds the token), through a temporary file renamed over it.
    pub fn write(db: &Path, url: &str, token: &str) -> anyhow::Result<Advertisement> {
        let path = advertisement_path(db);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let doc = json!({ "url": url, "pid": std::process::id(), "token": token });
        // tempfile creates the file with mode 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".automate-server-")
            .tempfile_in(&dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        writeln!(tmp, "{doc}").with_context(|| format!("writing {}", path.display()))?;
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("writing {}", path.display()))?;
        tmp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(target: "evm", "MIQ(automate) advertised {url} in {}", path.display());
        Ok(Advertisement { path })
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        // Only our own: a later service may have replaced it.
        if read_advertisement(&self.path).is_some_and(|a| a.pid == std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An advertisement as read back.
struct Advertised {
    url: String,
    pid: u32,
    token: String,
}

fn read_advertisement(path: &Path) -> Option<Advertised> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(Advertised {
        url: v["url"].as_str()?.to_string(),
        pid: u32::try_from(v["pid"].as_u64()?).ok()?,
        token: v["token"].as_str().unwrap_or("").to_string(),
    })
}

/// Whether the advertisement at `adv` can be believed: on Unix, owned by
/// the owner of the store's file and readable by no one else (another
/// user must not redirect the commands, and their token, elsewhere). A
/// cluster node has no store file at `--db` (its store is PostgreSQL):
/// then the advertisement must be the user's own who runs the command.
fn trusted(adv: &Path, db: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(a) = std::fs::metadata(adv) else {
            return false;
        };
        let owner = match std::fs::metadata(db) {
            Ok(d) => d.uid(),
            // The process's own user: /proc/self belongs to it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::metadata("/proc/self") {
                    Ok(me) => me.uid(),
                    Err(_) => return false,
                }
            }
            Err(_) => return false,
        };
        a.uid() == owner && a.mode() & 0o077 == 0
    }
    #[cfg(not(unix))]
    {
        let _ = (adv, db);
        true
    }
}

/// Whether process `pid` exists (always `true` where `/proc` does not).
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// A random token for a service started without one: 32 hex digits from
/// the system's random source.
pub fn session_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a session token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// How a command found its service (named in its errors).
#[derive(Debug, Clone)]
enum Found {
    /// `--server` or `AUTOMATE_SERVER`.
    Flag,
    /// The advertisement file at this path.
    Advertised(PathBuf),
}

/// A running service's REST API.
pub struct Remote {
    url: String,
    token: String,
    found: Found,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Remote {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("found", &self.found)
            .finish_non_exhaustive()
    }
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(timeout)
        .build()
        .into()
}

/// Whether `GET url/api/health` answers (any status: a service whose store
/// is unavailable answers 503, and its errors are the ones to show).
fn answers(url: &str) -> bool {
    agent(Some(Duration::from_secs(5)))
        .get(format!("{}/api/health", url.trim_end_matches('/')))
        .call()
        .is_ok()
}

/// The service this command goes through: `--server` (or
/// `AUTOMATE_SERVER`), else a live advertisement beside `--db`; `None`:
/// open the store here.
pub fn find(global: &Global) -> anyhow::Result<Option<Remote>> {
    let adv_path = advertisement_path(&global.db);
    if let Some(url) = global.server.as_deref().filter(|u| !u.is_empty()) {
        let url = url.trim_end_matches('/').to_string();
        let token = match global.token.clone().filter(|t| !t.is_empty()) {
            Some(t) => t,
            // The advertisement's token, when it advertises this URL.
            None => read_advertisement(&adv_path)
                .filter(|a| a.url.trim_end_matches('/') == url)
                .map(|a| a.token)
                .unwrap_or_default(),
        };
        return Ok(Some(Remote {
            url,
            token,
            found: Found::Flag,
            agent: agent(None),
        }));
    }
    let Some(adv) = read_advertisement(&adv_path) else {
        return Ok(None);
    };
    if !trusted(&adv_path, &global.db) {
        tracing::warn!(
            "{}: ignored: not owned by the owner of {}, or readable by others",
            adv_path.display(),
            global.db.display()
        );
        return Ok(None);
    }
    if !alive(adv.pid) {
        // Left by a service that did not exit cleanly.
        tracing::debug!(
            "{}: stale (process {} is gone), removed",
            adv_path.display(),
            adv.pid
        );
        // Only if it still names the dead process: a service restarted
        // since the read may have written its own in the meantime.
        if read_advertisement(&adv_path).is_some_and(|now| now.pid == adv.pid) {
            let _ = std::fs::remove_file(&adv_path);
        }
        return Ok(None);
    }
    if !answers(&adv.url) {
        return Ok(None);
    }
    let token = global
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or(adv.token);
    Ok(Some(Remote {
        url: adv.url.trim_end_matches('/').to_string(),
        token,
        found: Found::Advertised(adv_path),
        agent: agent(None),
    }))
}

/// The error of a command that found no service and could not open the
/// store because another process holds it: names both ways out.
pub fn in_use(global: &Global, err: automate_vmdb::StoreError) -> anyhow::Error {
    anyhow::Error::new(err).context(format!(
        "the object store {} is held by another process and no running service answers \
         (no live {}): stop that process to use the store directly, or reach the service \
         through its API with --server URL --token TOKEN (AUTOMATE_SERVER, AUTOMATE_API_TOKEN)",
        global.db.display(),
        advertisement_path(&global.db).display()
    ))
}

/// What a command does after failing to open the store: the clear error
/// when it is in use ([`in_use`]), else the error with its context.
pub fn open_failed(global: &Global, err: automate_vmdb::StoreError) -> anyhow::Error {
    match err {
        e @ automate_vmdb::StoreError::InUse(_) => in_use(global, e),
        // No file: a cluster node keeps none at its --db, only its
        // advertisement; without a running node there is nothing to go
        // through.
        e if !global.db.exists() => anyhow::Error::new(e).context(format!(
            "opening the object store {} (no such file; a cluster node keeps its store in \
             PostgreSQL: run the command with the --db of a running node, or --server URL)",
            global.db.display()
        )),
        e => anyhow::Error::new(e)
            .context(format!("opening the object store {}", global.db.display())),
    }
}

/// A stored event as `automate events list --json` prints it: `id`,
/// `class`, then its attributes.
fn event_item(v: &Value) -> anyhow::Result<Value> {
    let obj = v.as_object().context("an event is not an object")?;
    let mut m = Map::new();
    m.insert("id".into(), json!(id_of(obj.get("id"))?));
    m.insert(
        "class".into(),
        obj.get("type").cloned().unwrap_or(Value::Null),
    );
    for (k, val) in obj {
        if !matches!(k.as_str(), "href" | "id" | "type") {
            m.insert(k.clone(), integer_id(k, val));
        }
    }
    Ok(Value::Object(m))
}

/// The API shows `*_id` integers as strings (ManageIQ's ids): back as the
/// integers they are stored as.
fn integer_id(key: &str, v: &Value) -> Value {
    if let Value::String(s) = v {
        if key.ends_with("_id") {
            if let Ok(n) = s.parse::<i64>() {
                if n.to_string() == *s {
                    return json!(n);
                }
            }
        }
    }
    v.clone()
}

/// An id the API gives as a string (ManageIQ's) or a number.
fn id_of(v: Option<&Value>) -> anyhow::Result<i64> {
    match v {
        Some(Value::String(s)) => s
            .parse()
            .with_context(|| format!("id [{s}] is not an integer")),
        Some(Value::Number(n)) => n
            .as_i64()
            .with_context(|| format!("id {n} is not an integer")),
        other => bail!("expected an id, got {other:?}"),
    }
}

/// A request as the API shows it, back as the view the command prints.
fn request_view(v: &Value) -> anyhow::Result<RequestView> {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        let id = id_of(m.get("id"))?;
        m.insert("id".into(), json!(id));
        m.remove("href");
        if let Some(Value::Array(tasks)) = m.get_mut("tasks") {
            for t in tasks {
                if let Value::Object(t) = t {
                    let id = id_of(t.get("id"))?;
                    t.insert("id".into(), json!(id));
                    t.remove("href");
                }
            }
        }
    }
    serde_json::from_value(v)
        .context("the API's automation request does not have the expected shape")
}

/// The `resources` of a collection answer.
fn resources(v: &Value) -> anyhow::Result<&Vec<Value>> {
    v["resources"]
        .as_array()
        .context("the API's answer has no resources list")
}

impl Remote {
    /// The service's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token the requests carry (`None` when there is none).
    pub fn token(&self) -> Option<&str> {
        Some(self.token.as_str()).filter(|t| !t.is_empty())
    }

    fn how(&self) -> String {
        match &self.found {
            Found::Flag => format!("the service at {} (--server)", self.url),
            Found::Advertised(p) => {
                format!(
                    "the service at {} (advertised in {})",
                    self.url,
                    p.display()
                )
            }
        }
    }

    /// The JSON answer of `req`; an error answer becomes an error with the
    /// API's message.
    fn send(
        &self,
        what: &str,
        req: impl FnOnce(&ureq::Agent, &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut resp = req(&self.agent, &self.url)
            .with_context(|| format!("{what}: {} does not answer", self.how()))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .with_context(|| format!("{what}: reading the answer of {}", self.how()))?;
        if !status.is_success() {
            return Err(self.error_of(what, status, &body));
        }
        serde_json::from_str(&body).with_context(|| {
            format!(
                "{what}: {} answered {status} with no JSON: {body}",
                self.how()
            )
        })
    }

    /// An error answer as an error: the API's message (a refused token
    /// says how to pass one).
    fn error_of(&self, what: &str, status: ureq::http::StatusCode, body: &str) -> anyhow::Error {
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let msg = v["error"]["message"].as_str().unwrap_or(body).to_string();
        if status == 401 {
            return anyhow::anyhow!(
                "{what}: {} refused the token ({msg}): pass --token (AUTOMATE_API_TOKEN)",
                self.how()
            );
        }
        if msg.is_empty() {
            return anyhow::anyhow!("{what}: {} answered {status}", self.how());
        }
        anyhow::anyhow!("{msg}")
    }

    fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(&format!("GET {path}"), |agent, url| {
            let mut r = agent
                .get(format!("{url}{path}"))
                .header(TOKEN_HEADER, &self.token);
            for (k, v) in query {
                r = r.query(*k, v);
            }
            r.call()
        })
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(&format!("POST {path}"), |agent, url| {
            agent
                .post(format!("{url}{path}"))
                .header(TOKEN_HEADER, &self.token)
                .header("Content-Type", "application/json")
                .send(body.to_string())
        })
    }

    /// `automate vmdb show`: one object of `collection` (`vms`, ...) as the
    /// API answers it.
    pub fn object(&self, collection: &str, id: i64) -> anyhow::Result<Value> {
        self.get(&format!("/api/{collection}/{id}"), &[])
    }

    /// `automate events show`: the event's delivery record as
    /// `GET /api/event_streams/{id}/trace` answers it (the event within);
    /// `None` when the event has no record (the event itself is then read
    /// with [`Remote::object`]).
    pub fn event_trace(&self, id: i64) -> anyhow::Result<Option<Value>> {
        match self.get(&format!("/api/event_streams/{id}/trace"), &[]) {
            Ok(v) => Ok(Some(v)),
            Err(e) if format!("{e:#}").contains("no delivery record") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `automate events list`: the last `limit` (all without) stored events
    /// of `event_type` since `since`, oldest first, as `--json` prints
    /// them (read a page at a time, newest page first).
    pub fn events(
        &self,
        event_type: Option<&str>,
        since: Option<&str>,
        limit: Option<usize>,
    ) -> anyhow::Result<Vec<Value>> {
        let mut pages: Vec<Vec<Value>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let (mut fetched, mut offset) = (0usize, 0usize);
        let mut want = limit.unwrap_or(usize::MAX);
        while fetched < want {
            let mut q = vec![
                ("expand", "resources".to_string()),
                ("offset", offset.to_string()),
                ("limit", (want - fetched).min(PAGE).to_string()),
            ];
            if let Some(t) = event_type {
                q.push(("type", t.to_string()));
            }
            if let Some(s) = since {
                q.push(("since", s.to_string()));
            }
            let page = self.get("/api/event_streams", &q)?;
            if let Some(total) = page["count"].as_u64() {
                want = want.min(usize::try_from(total).unwrap_or(usize::MAX));
            }
            let rows = resources(&page)?;
            if rows.is_empty() {
                break;
            }
            offset += rows.len();
            // Events stored meanwhile shift the pages: keep each once.
            let mut items = Vec::with_capacity(rows.len());
            for r in rows {
                let item = event_item(r)?;
                if seen.insert(item["id"].as_i64()) {
                    items.push(item);
                }
            }
            fetched += items.len();
            pages.push(items);
        }
        Ok(pages.into_iter().rev().flatten().collect())
    }

    /// `automate request list`: every automation request, by id.
    pub fn requests(&self) -> anyhow::Result<Vec<RequestView>> {
        self.all_resources("/api/requests", request_view)
    }

    /// `automate request show ID`.
    pub fn request(&self, id: i64) -> anyhow::Result<RequestView> {
        request_view(&self.get(&format!("/api/requests/{id}"), &[])?)
    }

    /// `automate request create`: `create_from_ws` of `req`.
    pub fn create_request(
        &self,
        req: &automate_requests::NewRequest,
    ) -> anyhow::Result<RequestView> {
        let mut uri_parts = json!({
            "namespace": req.namespace,
            "class": req.class,
            "instance": req.instance,
        });
        if let Some(m) = &req.message {
            uri_parts["message"] = json!(m);
        }
        let mut requester = json!({ "auto_approve": req.auto_approve });
        if let Some(u) = &req.userid {
            requester["user_name"] = json!(u);
        }
        let body = json!({
            "version": "1.1",
            "uri_parts": uri_parts,
            "parameters": req.parameters,
            "requester": requester,
        });
        let answer = self.post("/api/automation_requests", &body)?;
        let first = answer["results"]
            .as_array()
            .and_then(|r| r.first())
            .context("the API answered no created request")?;
        request_view(first)
    }

    /// `automate request approve|deny ID`.
    pub fn request_action(
        &self,
        id: i64,
        action: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<RequestView> {
        let mut body = json!({ "action": action });
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        let answer = self.post(&format!("/api/automation_requests/{id}"), &body)?;
        request_view(&answer["result"])
    }

    /// `automate operations list`: every provider operation as
    /// `/api/provider_operations` answers it.
    pub fn provider_operations(&self) -> anyhow::Result<Vec<Value>> {
        self.all_resources("/api/provider_operations", |r| Ok(r.clone()))
    }

    /// `automate events dead-letter list`: every dead letter as
    /// `/api/dead_letters` answers it.
    pub fn dead_letters(&self) -> anyhow::Result<Vec<Value>> {
        self.all_resources("/api/dead_letters", |r| Ok(r.clone()))
    }

    /// `automate events dead-letter retry`: the ids retried.
    pub fn retry_dead_letters(&self, ids: &[u64], all: bool) -> anyhow::Result<Vec<String>> {
        let body = if all {
            json!({ "action": "retry", "all": true })
        } else {
            let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
            json!({ "action": "retry", "ids": ids })
        };
        let answer = self.post("/api/dead_letters", &body)?;
        Ok(answer["retried"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    /// `automate notifications list`: every notification as
    /// `/api/notifications` answers it.
    pub fn notifications(&self) -> anyhow::Result<Vec<Value>> {
        self.all_resources("/api/notifications", |r| Ok(r.clone()))
    }

    /// `automate retries list`: `(id, uri, deliveries, attempts)` of every
    /// scheduled retry.
    pub fn retries(&self) -> anyhow::Result<Vec<(u64, String, u64, u64)>> {
        self.all_resources("/api/retries", |r| {
            let id = id_of(r.get("id"))?;
            Ok((
                u64::try_from(id).context("a negative retry id")?,
                r["uri"].as_str().unwrap_or("").to_string(),
                r["deliveries"].as_u64().unwrap_or(0),
                r["attempts"].as_u64().unwrap_or(0),
            ))
        })
    }

    /// `automate cluster status`: the `GET /api/cluster` document.
    pub fn cluster(&self) -> anyhow::Result<Value> {
        self.get("/api/cluster", &[])
    }

    /// `automate retries run-due`: one round; the answer's `finished`,
    /// `retried`, `failed`, `still_scheduled`, `next_due_in_ms`, `trace`.
    pub fn run_due(&self, max_deliveries: u32) -> anyhow::Result<Value> {
        self.post(
            "/api/retries",
            &json!({ "action": "run_due", "max_deliveries": max_deliveries }),
        )
    }

    /// `automate instantiate URI`: `document` (what `--json` prints),
    /// `trace` (`depth`, `text`), `tree` (`depth`, `path`, `attributes` as
    /// shown), `skipped_methods`, `diff_lines` (a sandbox's diff as text)
    /// and `error`; `mode` is `sandbox` or `commit`.
    pub fn instantiate(
        &self,
        uri: &str,
        attrs: &[(String, String)],
        mode: &str,
        execute_methods: bool,
    ) -> anyhow::Result<Value> {
        self.post(
            "/api/automate",
            &json!({ "action": "instantiate", "uri": uri, "attributes": attrs,
                     "mode": mode, "execute_methods": execute_methods }),
        )
    }

    /// `automate method run PATH`: `document` (what `--json` prints),
    /// `trace`, `object` (`name`, `attributes` as shown) and `error`.
    pub fn run_method(&self, path: &str, attrs: &[(String, String)]) -> anyhow::Result<Value> {
        self.post(
            "/api/automate",
            &json!({ "action": "run_method", "path": path, "attributes": attrs }),
        )
    }

    /// `automate import`: uploads `zip` (a domain, or a directory of
    /// domains, zipped) with the options as query parameters; the answer's
    /// `domain`, `path`, `priority`, `enabled`, `source`, `counts`,
    /// `files`, `replaced`, `warnings`.
    pub fn import(&self, zip: Vec<u8>, options: &[(&str, String)]) -> anyhow::Result<Value> {
        let path = "/api/automate_domains/import";
        self.send(&format!("POST {path}"), |agent, url| {
            let mut r = agent
                .post(format!("{url}{path}"))
                .header(TOKEN_HEADER, &self.token)
                .header("Content-Type", "application/zip");
            for (k, v) in options {
                r = r.query(*k, v);
            }
            r.send(&zip[..])
        })
    }

    /// `automate export`: the domain as a zip of `<Domain>/...`.
    pub fn export(&self, domain: &str) -> anyhow::Result<Vec<u8>> {
        let path = "/api/automate_domains/export";
        let what = format!("POST {path}");
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header(TOKEN_HEADER, &self.token)
            .header("Content-Type", "application/json")
            .send(json!({ "domain": domain }).to_string())
            .with_context(|| format!("{what}: {} does not answer", self.how()))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(self.error_of(&what, status, &body));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_body().into_reader(), &mut bytes)
            .with_context(|| format!("{what}: reading the zip from {}", self.how()))?;
        Ok(bytes)
    }

    /// `automate datastore reload`: the service reloads its datastore
    /// (`POST /api/automate_domains` `{"action": "reload"}`) and answers
    /// its report.
    pub fn reload(&self) -> anyhow::Result<automate_datastore::ReloadReport> {
        let answer = self.post("/api/automate_domains", &json!({ "action": "reload" }))?;
        serde_json::from_value(answer)
            .context("the service's reload report does not have the expected shape")
    }

    /// `automate datastore list`: the service's domains (`GET
    /// /api/automate_domains?expand=resources`, every page) as `--json`
    /// prints them, and what to name in the empty case.
    pub fn domain_list(&self) -> anyhow::Result<(Value, String)> {
        let out = self.all_resources("/api/automate_domains", |r| {
            let mut item = serde_json::Map::new();
            for k in [
                "name",
                "priority",
                "enabled",
                "source",
                "namespaces",
                "classes",
                "instances",
                "methods",
            ] {
                let v = r.get(k).with_context(|| {
                    format!("the service's domain has no `{k}` (an older service?)")
                })?;
                item.insert(k.to_string(), v.clone());
            }
            Ok(Value::Object(item))
        })?;
        Ok((Value::Array(out), format!("the service at {}", self.url)))
    }

    /// Every resource of the collection at `path`, expanded, read page by
    /// page (`offset`, `limit`) until `count` are read, each mapped by `f`.
    fn all_resources<T>(
        &self,
        path: &str,
        f: impl Fn(&Value) -> anyhow::Result<T>,
    ) -> anyhow::Result<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let q = [
                ("expand", "resources".to_string()),
                ("offset", out.len().to_string()),
                ("limit", PAGE.to_string()),
            ];
            let page = self.get(path, &q)?;
            let rows = resources(&page)?;
            for r in rows {
                out.push(f(r)?);
            }
            let total = page["count"].as_u64().unwrap_or(0) as usize;
            if rows.is_empty() || out.len() >= total {
                return Ok(out);
            }
        }
    }

    /// `automate datastore tree|show` (`what`) at `path` through the
    /// service (`POST /api/automate` `{"action": what, "path": path}`):
    /// the `--json` document and the text, as the service's datastore
    /// directory gives them.
    pub fn describe(
        &self,
        what: &str,
        path: Option<&str>,
    ) -> anyhow::Result<automate_datastore::describe::Described> {
        let mut body = json!({ "action": what });
        if let Some(p) = path {
            body["path"] = json!(p);
        }
        let answer = self.post("/api/automate", &body)?;
        serde_json::from_value(answer).with_context(|| {
            format!("the service's {what} answer does not have the expected shape")
        })
    }

    /// `automate datastore validate` through the service: it validates
    /// its own root (`POST /api/automate_domains` `{"action":
    /// "validate"}`) and answers the document `validate --json` prints.
    pub fn validate(&self) -> anyhow::Result<Value> {
        self.post("/api/automate_domains", &json!({ "action": "validate" }))
    }

    /// `automate event send`: `event_id`, `duplicate`, the evm.log `lines`
    /// and `error`.
    pub fn send_event(
        &self,
        provider: &automate_events::Provider,
        event: &automate_events::ProviderEvent,
    ) -> anyhow::Result<Value> {
        self.post(
            "/api/event_streams",
            &json!({ "action": "send", "provider": provider, "event": event }),
        )
    }
}

/// The directory `dir` as a zip held in memory, its entries relative to
/// `dir` (what `automate import` of `dir` reads, so an import of the zip
/// selects the same domain). Symbolic links are refused, as the import
/// refuses them.
pub fn zip_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    fn add(
        zip: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>,
        base: &Path,
        dir: &Path,
    ) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap_or(&path);
            let name = rel
                .to_str()
                .with_context(|| format!("{}: the name is not UTF-8", path.display()))?
                .replace('\\', "/");
            let kind = e
                .file_type()
                .with_context(|| format!("reading {}", path.display()))?;
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            if kind.is_symlink() {
                bail!(
                    "{}: a symbolic link (an import never follows one)",
                    path.display()
                );
            } else if kind.is_dir() {
                zip.add_directory(format!("{name}/"), opts)?;
                add(zip, base, &path)?;
            } else {
                zip.start_file(name, opts)?;
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                zip.write_all(&bytes)?;
            }
        }
        Ok(())
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    add(&mut zip, dir, dir)?;
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_sits_beside_the_store() {
        assert_eq!(
            advertisement_path(Path::new("/var/lib/automate/automate.redb")),
            PathBuf::from("/var/lib/automate/automate.redb.server")
        );
        assert_eq!(
            advertisement_path(Path::new("x.redb")),
            PathBuf::from("x.redb.server")
        );
    }

    #[test]
    fn api_events_come_back_as_the_command_prints_them() {
        let api = json!({"href": "/api/event_streams/7", "id": "7", "type": "EmsEvent", "event_type": "USER_RUN_VM", "ems_id": 3});
        assert_eq!(
            event_item(&api).unwrap().to_string(),
            r#"{"id":7,"class":"EmsEvent","event_type":"USER_RUN_VM","ems_id":3}"#
        );
    }

    #[test]
    fn advertisements_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("automate.redb");
        let adv = Advertisement::write(&db, "http://127.0.0.1:1", "t0k").unwrap();
        let read = read_advertisement(&advertisement_path(&db)).unwrap();
        assert_eq!(
            (read.url.as_str(), read.token.as_str()),
            ("http://127.0.0.1:1", "t0k")
        );
        assert_eq!(read.pid, std::process::id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(advertisement_path(&db))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&db, b"").unwrap();
        assert!(trusted(&advertisement_path(&db), &db));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = advertisement_path(&db);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(!trusted(&p, &db), "readable by others: not believed");
        }
        drop(adv);
        assert!(!advertisement_path(&db).exists());
    }
}
