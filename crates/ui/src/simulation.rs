//! ManageIQ's Automate Simulation: pick an entry point (an instance of
//! `/System/Process`, or any URI), a message, an object from the store
//! (its type and id) and attributes, run it with methods executed or not,
//! and see the object tree it built, the trace as a tree of relationships
//! ([`crate::trace_tree`]), what it would have written, and the same run
//! as `automate instantiate` and `curl` commands.
//!
//! A simulation always runs in a sandbox (`automate_vmdb::sandbox`):
//! nothing is written, scheduled or sent; the diff shows what would have
//! been. It changes nothing, so the form is a GET and its URL is the
//! permalink. It runs through the REST API's own code
//! ([`automate_api::simulate`], what `POST /api/automate {"action":
//! "instantiate"}` runs).
//!
//! Routes: `GET /ui/simulation` (the form; with `run=1` the result),
//! `GET /ui/simulation/objects?object_type=` (the object field htmx swaps
//! in: a select of that type's objects) and `GET /ui/simulation/row?n=`
//! (one more attribute row, for htmx's "Add row").

use crate::page::{escape_into, html, url_encode, Layout};
use crate::session::SessionInfo;
use crate::UiState;
use askama::Template;
use automate_engine::{AttrValue, ObjectId, Workspace};
use automate_vmdb::page::PageQuery;
use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

/// The most objects a type's select lists (the newest first).
pub const MAX_OBJECTS: usize = 200;

/// Attribute rows the form shows at least.
const MIN_ROWS: usize = 3;

/// The most attribute rows a form may have.
const MAX_ROWS: usize = 100;

/// The entry points offered when the datastore has no `/System/Process`
/// class (ManageIQ's Simulation offers that class's instances).
const DEFAULT_ENTRIES: &[&str] = &[
    "/System/Process/Request",
    "/System/Process/Event",
    "/System/Process/Automation",
];

/// An object type the form offers: what it says, the class the
/// attribute key names (a base class of the store) and the attribute
/// (ManageIQ's `create_automation_attribute_key`: `VmOrTemplate::vm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectType {
    /// What the select says.
    pub label: &'static str,
    /// The class (the form's value).
    pub class: &'static str,
    /// The root attribute the object becomes.
    pub attr: &'static str,
}

impl ObjectType {
    /// The attribute key: `Class::attr`.
    pub fn key(&self) -> String {
        format!("{}::{}", self.class, self.attr)
    }
}

/// The object types, as ManageIQ's Simulation lists them.
pub const OBJECT_TYPES: &[ObjectType] = &[
    ObjectType {
        label: "VM and Instance",
        class: "VmOrTemplate",
        attr: "vm",
    },
    ObjectType {
        label: "Host",
        class: "Host",
        attr: "host",
    },
    ObjectType {
        label: "Provider",
        class: "ExtManagementSystem",
        attr: "ext_management_system",
    },
    ObjectType {
        label: "Cluster",
        class: "EmsCluster",
        attr: "ems_cluster",
    },
    ObjectType {
        label: "Datastore",
        class: "Storage",
        attr: "storage",
    },
    ObjectType {
        label: "Event",
        class: "EventStream",
        attr: "event_stream",
    },
    ObjectType {
        label: "Request",
        class: "MiqRequest",
        attr: "miq_request",
    },
    ObjectType {
        label: "Request Task",
        class: "MiqRequestTask",
        attr: "miq_request_task",
    },
    ObjectType {
        label: "Service",
        class: "Service",
        attr: "service",
    },
    ObjectType {
        label: "User",
        class: "User",
        attr: "user",
    },
    ObjectType {
        label: "Group",
        class: "MiqGroup",
        attr: "miq_group",
    },
    ObjectType {
        label: "Tenant",
        class: "Tenant",
        attr: "tenant",
    },
    ObjectType {
        label: "Server",
        class: "MiqServer",
        attr: "miq_server",
    },
];

/// The type whose class is `class` (case-insensitively), or whose class
/// is `class`'s base class (`Vm` is `VmOrTemplate`, `EmsEvent` is
/// `EventStream`).
pub fn object_type(class: &str) -> Option<&'static ObjectType> {
    let find = |c: &str| {
        OBJECT_TYPES
            .iter()
            .find(|t| t.class.eq_ignore_ascii_case(c))
    };
    find(class).or_else(|| automate_vmdb::base_class(class).and_then(find))
}

/// The form, as the query string gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// The entry point chosen (`""`: the URI field).
    pub entry: String,
    /// A URI typed (wins over `entry`).
    pub uri: String,
    /// The message (`create` when empty).
    pub message: String,
    /// ManageIQ's "Request" field: the `request` attribute.
    pub request: String,
    /// The object type's class (`""`: none).
    pub object_type: String,
    /// The object's id.
    pub object_id: String,
    /// Attribute rows (name, value), as given (empty rows included).
    pub rows: Vec<(String, String)>,
    /// Run methods.
    pub execute_methods: bool,
    /// Run it (else the form alone).
    pub run: bool,
    /// "Add row" pressed (without JavaScript): the form again, one row
    /// more.
    pub add_row: bool,
}

impl Form {
    /// The form from the query's pairs (repeated `attr`/`value` keys are
    /// the rows, in order); `execute_methods` is on unless a submitted
    /// form (`submitted=1`) leaves it out.
    pub fn from_pairs(pairs: &[(String, String)]) -> Form {
        let mut f = Form::default();
        let mut names = Vec::new();
        let mut values = Vec::new();
        let mut submitted = false;
        let mut execute = false;
        for (k, v) in pairs {
            match k.as_str() {
                "entry" => f.entry = v.trim().to_string(),
                "uri" => f.uri = v.trim().to_string(),
                "message" => f.message = v.trim().to_string(),
                "request" => f.request = v.trim().to_string(),
                "object_type" => f.object_type = v.trim().to_string(),
                "object_id" => f.object_id = v.trim().to_string(),
                "attr" => names.push(v.trim().to_string()),
                "value" => values.push(v.clone()),
                "execute_methods" => execute = true,
                "submitted" => submitted = true,
                "run" => f.run = true,
                "add_row" => f.add_row = true,
                _ => {}
            }
        }
        f.execute_methods = execute || !submitted;
        if let Some(t) = object_type(&f.object_type) {
            f.object_type = t.class.to_string();
        }
        let n = names.len().max(values.len()).min(MAX_ROWS);
        f.rows = (0..n)
            .map(|i| {
                (
                    names.get(i).cloned().unwrap_or_default(),
                    values.get(i).cloned().unwrap_or_default(),
                )
            })
            .collect();
        f
    }

    /// The message, `create` when none is given.
    pub fn message(&self) -> &str {
        if self.message.is_empty() {
            "create"
        } else {
            &self.message
        }
    }

    /// The URI to instantiate: the typed URI or the entry point, with
    /// `#message` unless the message is `create`; or what is wrong.
    pub fn uri(&self) -> Result<String, String> {
        let base = if self.uri.is_empty() {
            &self.entry
        } else {
            &self.uri
        };
        if base.is_empty() {
            return Err("Entry point: choose one, or type a URI".into());
        }
        if !base.starts_with('/') && !base.contains(':') {
            return Err(format!(
                "URI: [{base}] is not an Automate URI (it starts with /, as /System/Process/Event)"
            ));
        }
        if let Some(c) = base.chars().find(|c| c.is_control()) {
            return Err(format!("URI: must not hold {c:?}"));
        }
        if base.contains('#') {
            return Err(format!(
                "URI: [{base}] holds a message after #; give it in the Message field"
            ));
        }
        let mut uri = base.to_string();
        if self.message() != "create" {
            uri.push('#');
            uri.push_str(self.message());
        }
        Ok(uri)
    }

    /// The root's attributes, in order: the object (`Class::attr=id`),
    /// `request`, then the rows with a name; or what is wrong, naming the
    /// field or the row.
    pub fn attrs(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        if !self.object_type.is_empty() {
            let t = object_type(&self.object_type).ok_or_else(|| {
                format!(
                    "Object type: [{}] is not one of {}",
                    self.object_type,
                    OBJECT_TYPES
                        .iter()
                        .map(|t| t.class)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if !self.object_id.is_empty() {
                self.object_id.parse::<i64>().map_err(|_| {
                    format!(
                        "Object id: [{}] is not a number (a {} id)",
                        self.object_id, t.class
                    )
                })?;
                out.push((t.key(), self.object_id.clone()));
            }
        } else if !self.object_id.is_empty() {
            return Err(format!(
                "Object id: [{}] given without an object type",
                self.object_id
            ));
        }
        if !self.request.is_empty() {
            out.push(("request".to_string(), self.request.clone()));
        }
        for (i, (k, v)) in self.rows.iter().enumerate() {
            if k.is_empty() {
                if !v.is_empty() {
                    return Err(format!(
                        "Attribute row {}: the value [{v}] has no name",
                        i + 1
                    ));
                }
                continue;
            }
            if let Some(c) = k.chars().find(|c| c.is_control() || *c == '=') {
                return Err(format!(
                    "Attribute row {}: the name [{k}] must not hold {c:?}",
                    i + 1
                ));
            }
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }

    /// The permalink: this form's URL, running it.
    pub fn permalink(&self) -> String {
        let mut q: Vec<(&str, &str)> = Vec::new();
        if !self.entry.is_empty() {
            q.push(("entry", &self.entry));
        }
        if !self.uri.is_empty() {
            q.push(("uri", &self.uri));
        }
        q.push(("message", self.message()));
        if !self.request.is_empty() {
            q.push(("request", &self.request));
        }
        if !self.object_type.is_empty() {
            q.push(("object_type", &self.object_type));
        }
        if !self.object_id.is_empty() {
            q.push(("object_id", &self.object_id));
        }
        for (k, v) in self.rows.iter().filter(|(k, _)| !k.is_empty()) {
            q.push(("attr", k));
            q.push(("value", v));
        }
        if self.execute_methods {
            q.push(("execute_methods", "1"));
        }
        q.push(("submitted", "1"));
        q.push(("run", "1"));
        let mut out = String::from("/ui/simulation?");
        for (i, (k, v)) in q.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&url_encode(v, true));
        }
        out
    }
}

/// `s` quoted for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-.:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The `automate instantiate` command that runs the same simulation.
pub fn cli_command(uri: &str, attrs: &[(String, String)], execute_methods: bool) -> String {
    let mut out = format!("automate instantiate {}", shell_quote(uri));
    for (k, v) in attrs {
        out.push_str(" --attr ");
        out.push_str(&shell_quote(&format!("{k}={v}")));
    }
    if !execute_methods {
        out.push_str(" --no-methods");
    }
    out
}

/// The `curl` command that runs the same simulation through the REST API
/// at `base`, with the token from `$AUTOMATE_TOKEN` (never a real one).
pub fn curl_command(
    base: &str,
    uri: &str,
    attrs: &[(String, String)],
    execute_methods: bool,
) -> String {
    let body = serde_json::json!({
        "action": "instantiate",
        "uri": uri,
        "attributes": attrs.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
        "mode": "sandbox",
        "execute_methods": execute_methods,
    });
    format!(
        "curl -s -X POST -H \"X-Auth-Token: $AUTOMATE_TOKEN\" -H 'Content-Type: application/json' \\\n  -d {} \\\n  {}/api/automate",
        shell_quote(&body.to_string()),
        base.trim_end_matches('/')
    )
}

/// The entry points offered: the instances of `/System/Process` in the
/// enabled domains (each once), or [`DEFAULT_ENTRIES`].
pub fn entry_points(index: &automate_datastore::index::Index) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in index.classes_at("System", "Process") {
        for i in &c.instances {
            let uri = format!("/System/Process/{}", i.name);
            if !out.iter().any(|u| u.eq_ignore_ascii_case(&uri)) {
                out.push(uri);
            }
        }
    }
    if out.is_empty() {
        out = DEFAULT_ENTRIES.iter().map(|s| s.to_string()).collect();
    }
    out.sort_by_key(|u| u.to_lowercase());
    out
}

/// An object the id select offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Its id.
    pub id: String,
    /// `id: name (class)`.
    pub label: String,
}

/// The newest [`MAX_OBJECTS`] objects of `class`'s base class in `store`.
fn objects_of(
    store: &dyn automate_vmdb::served::ServedStore,
    class: &str,
) -> Result<Vec<Choice>, automate_vmdb::StoreError> {
    let page = store.page(
        class,
        PageQuery {
            offset: 0,
            limit: MAX_OBJECTS,
            newest_first: true,
        },
        None,
    )?;
    Ok(page
        .rows
        .into_iter()
        .map(|(id, o)| {
            let name = ["name", "event_type", "description", "userid", "ems_ref"]
                .iter()
                .find_map(|k| o.attrs.get(*k).filter(|v| !v.is_nil()).map(|v| v.to_text()))
                .unwrap_or_default();
            Choice {
                id: id.to_string(),
                label: format!("{id}: {name} ({})", o.class),
            }
        })
        .collect())
}

/// The object field: a select of the type's objects when the store has
/// any (and JavaScript swapped it in, or the type is known), else a text
/// field for the id.
#[derive(Template)]
#[template(path = "simulation_object.html")]
struct ObjectField {
    object_id: String,
    /// `None`: a text field.
    choices: Option<Vec<Choice>>,
    note: String,
}

async fn object_field(state: &UiState, object_type: &str, object_id: &str) -> ObjectField {
    let mut field = ObjectField {
        object_id: object_id.to_string(),
        choices: None,
        note: String::new(),
    };
    let Some(t) = object_type_of(object_type) else {
        field.note =
            "Choose a type to list its objects (without JavaScript: run, or type an id).".into();
        return field;
    };
    let Some(api) = state.api() else {
        field.note = "No object store here: type an id.".into();
        return field;
    };
    let store = api.store().clone();
    let class = t.class;
    let listed = tokio::task::spawn_blocking(move || objects_of(&*store, class)).await;
    match listed {
        Ok(Ok(list)) if list.is_empty() => {
            field.note = format!("The store holds no {} objects.", t.class);
        }
        Ok(Ok(list)) => {
            if list.len() == MAX_OBJECTS {
                field.note = format!("The newest {MAX_OBJECTS} shown; type another id in the URL.");
            }
            field.choices = Some(list);
        }
        Ok(Err(e)) => {
            tracing::warn!(target: "evm", "MIQ(ui) listing {} objects failed: {e}", t.class);
            field.note = format!("Listing the {} objects failed: {e}", t.class);
        }
        Err(e) => field.note = format!("Listing the objects failed: {e}"),
    }
    field
}

fn object_type_of(class: &str) -> Option<&'static ObjectType> {
    (!class.is_empty()).then(|| object_type(class)).flatten()
}

/// One attribute row of the form.
pub(crate) struct Row {
    n: usize,
    name: String,
    value: String,
}

/// The "Add row" fragment: row `n` (1-based) and the button, asking for
/// row `n + 1` next (swapped out of band).
#[derive(Template)]
#[template(path = "simulation_row.html")]
struct RowFragment {
    row: Row,
    next: usize,
}

/// A simulation's outcome, as the page shows it.
struct Outcome {
    uri: String,
    error: Option<String>,
    nothing: bool,
    objects_html: String,
    trace_html: String,
    raw_trace: String,
    diff: Vec<String>,
    skipped: Vec<String>,
    cli: String,
    curl: String,
    permalink: String,
}

#[derive(Template)]
#[template(path = "simulation.html")]
struct SimulationPage {
    layout: Layout,
    form: Form,
    entries: Vec<String>,
    entry_custom: bool,
    types: &'static [ObjectType],
    /// The object field, rendered ([`ObjectField`]).
    object_html: String,
    rows: Vec<Row>,
    next_row: usize,
    error: Option<String>,
    outcome: Option<Outcome>,
}

/// An attribute value as `automate instantiate` prints it: a string as
/// is, anything else as Ruby's `inspect`.
fn shown(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.clone(),
        other => other.inspect(),
    }
}

/// The object tree's HTML: each object a `<details>` (the root open) with
/// its attributes in a table and its children beneath; an object built
/// from `.missing` carries the class `missing` and a label.
pub fn objects_html(ws: &Workspace) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str("<ul class=\"object-tree\">");
    for r in ws.roots() {
        object_html(ws, r, 0, &mut out);
    }
    out.push_str("</ul>");
    out
}

fn object_html(ws: &Workspace, id: ObjectId, depth: usize, out: &mut String) {
    let o = ws.object(id);
    let missing = o
        .instance
        .eq_ignore_ascii_case(automate_datastore::index::MISSING);
    out.push_str(if missing {
        "<li class=\"missing\">"
    } else {
        "<li>"
    });
    out.push_str(if depth == 0 {
        "<details open><summary>"
    } else {
        "<details><summary>"
    });
    out.push_str("<code>/");
    escape_into(&o.namespace, out);
    out.push('/');
    escape_into(&o.class, out);
    out.push('/');
    escape_into(&o.instance, out);
    out.push_str("</code>");
    if missing {
        out.push_str(" <span class=\"badge b-missing\">.missing fallback for ");
        escape_into(&o.object_name, out);
        out.push_str("</span>");
    }
    out.push_str(" <span class=\"hint-inline\">");
    out.push_str(&o.attributes.len().to_string());
    out.push_str(" attributes</span></summary>");
    if !o.attributes.is_empty() {
        out.push_str("<table class=\"grid attrs\"><caption>Attributes of ");
        escape_into(&o.object_name, out);
        out.push_str("</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Value</th></tr></thead><tbody>");
        for (k, v) in o.attributes.iter() {
            out.push_str("<tr><th scope=\"row\">");
            escape_into(k, out);
            out.push_str("</th><td class=\"v\">");
            escape_into(&shown(v), out);
            out.push_str("</td></tr>");
        }
        out.push_str("</tbody></table>");
    }
    let children = ws.children(id);
    if !children.is_empty() {
        out.push_str("<ul>");
        for c in children {
            object_html(ws, c, depth + 1, out);
        }
        out.push_str("</ul>");
    }
    out.push_str("</details></li>");
}

/// The base URL the `curl` command names: the request's `Host`.
fn base_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1:3000");
    format!("http://{host}")
}

/// `GET /ui/simulation`.
pub(crate) async fn page(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let mut form = Form::from_pairs(&pairs);
    let index = state.engine().datastore().index();
    let entries = entry_points(&index);
    drop(index);
    if form.entry.is_empty() && form.uri.is_empty() && !form.run {
        form.entry = entries
            .iter()
            .find(|e| e.eq_ignore_ascii_case("/System/Process/Request"))
            .or(entries.first())
            .cloned()
            .unwrap_or_default();
    }
    let entry_custom = !form.entry.is_empty() && !entries.contains(&form.entry);
    let mut error = None;
    let mut outcome = None;
    let mut status = StatusCode::OK;
    if form.run && !form.add_row {
        match run(&state, &form, &headers).await {
            Ok(o) => outcome = Some(o),
            Err(e) => {
                status = StatusCode::BAD_REQUEST;
                error = Some(e);
            }
        }
    }
    let mut rows: Vec<Row> = form
        .rows
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Row {
            n: i + 1,
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    let wanted = (rows.len() + usize::from(form.add_row)).clamp(MIN_ROWS, MAX_ROWS);
    while rows.len() < wanted {
        rows.push(Row {
            n: rows.len() + 1,
            name: String::new(),
            value: String::new(),
        });
    }
    let object_html = match object_field(&state, &form.object_type, &form.object_id)
        .await
        .render()
    {
        Ok(h) => h,
        Err(e) => return crate::render_failed(e),
    };
    let next_row = rows.len() + 1;
    html(
        &SimulationPage {
            layout: Layout::new("Simulation", Some(&session), "/ui/simulation"),
            form,
            entries,
            entry_custom,
            types: OBJECT_TYPES,
            object_html,
            rows,
            next_row,
            error,
            outcome,
        },
        status,
    )
}

/// Runs the form's simulation in a sandbox; the outcome, or what is
/// wrong with the form (or the store).
async fn run(state: &UiState, form: &Form, headers: &HeaderMap) -> Result<Outcome, String> {
    let uri = form.uri()?;
    let attrs = form.attrs()?;
    let Some(api) = state.api() else {
        return Err("Simulation needs the object store: serve the UI with the API".into());
    };
    if let (Some(t), Ok(id)) = (
        object_type_of(&form.object_type),
        form.object_id.parse::<i64>(),
    ) {
        let store = api.store().clone();
        let found = tokio::task::spawn_blocking(move || store.find(t.class, id))
            .await
            .map_err(|e| format!("looking up the object failed: {e}"))?
            .map_err(|e| format!("looking up the object failed: {e}"))?;
        if found.is_none() {
            return Err(format!(
                "Object id: the store holds no {} with id {id}",
                t.class
            ));
        }
    }
    let execute_methods = form.execute_methods;
    let done = automate_api::simulate(
        api,
        automate_api::Simulate {
            uri: uri.clone(),
            attrs: attrs.clone(),
            sandboxed: true,
            execute_methods,
        },
    )
    .await
    .map_err(|e| e.message)?;
    let ws = &done.workspace;
    let tree = crate::trace_tree::build(&ws.trace);
    let mut raw_trace = String::new();
    for l in &ws.trace {
        raw_trace.push_str(&"  ".repeat(l.depth));
        raw_trace.push_str(&l.text);
        raw_trace.push('\n');
    }
    let nothing = ws.roots().is_empty();
    let error = done.error.as_ref().map(|e| e.to_string()).or_else(|| {
        nothing.then(|| {
            ws.trace
                .iter()
                .rev()
                .find(|l| l.level == automate_engine::Level::Error)
                .map(|l| l.text.clone())
                .unwrap_or_else(|| "nothing was instantiated".to_string())
        })
    });
    Ok(Outcome {
        cli: cli_command(&uri, &attrs, execute_methods),
        curl: curl_command(&base_of(headers), &uri, &attrs, execute_methods),
        permalink: form.permalink(),
        uri,
        error,
        nothing,
        objects_html: objects_html(ws),
        trace_html: crate::trace_tree::html(&tree),
        raw_trace,
        diff: done.diff.as_ref().map(|d| d.lines()).unwrap_or_default(),
        skipped: ws.skipped_methods.clone(),
    })
}

/// `GET /ui/simulation/objects?object_type=&object_id=`: the object
/// field for the type (htmx swaps it in when the type changes).
pub(crate) async fn objects(
    State(state): State<UiState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let form = Form::from_pairs(&pairs);
    if !form.object_type.is_empty() && object_type(&form.object_type).is_none() {
        return error_fragment(format!(
            "object_type: [{}] is not an object type",
            form.object_type
        ));
    }
    html(
        &object_field(&state, &form.object_type, &form.object_id).await,
        StatusCode::OK,
    )
}

/// `GET /ui/simulation/row?n=`: attribute row `n` (htmx's "Add row").
pub(crate) async fn row(Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let n = pairs
        .iter()
        .find(|(k, _)| k == "n")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .filter(|n| (1..=MAX_ROWS).contains(n));
    let Some(n) = n else {
        return error_fragment(format!("n: a row number from 1 to {MAX_ROWS}"));
    };
    html(
        &RowFragment {
            row: Row {
                n,
                name: String::new(),
                value: String::new(),
            },
            next: n + 1,
        },
        StatusCode::OK,
    )
}

fn error_fragment(message: String) -> Response {
    let mut out = String::from("<p class=\"error\" role=\"alert\">");
    escape_into(&message, &mut out);
    out.push_str("</p>");
    let mut res = axum::response::IntoResponse::into_response((StatusCode::BAD_REQUEST, out));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_reads_rows_and_builds_the_uri_and_attributes() {
        let f = Form::from_pairs(&pairs(&[
            ("entry", "/System/Process/Event"),
            ("message", "create"),
            ("object_type", "Host"),
            ("object_id", "1000000000001"),
            ("attr", "event_type"),
            ("value", "USER_RUN_VM"),
            ("attr", ""),
            ("value", ""),
            ("submitted", "1"),
            ("run", "1"),
        ]));
        assert!(f.run && !f.execute_methods);
        assert_eq!(f.uri().unwrap(), "/System/Process/Event");
        assert_eq!(
            f.attrs().unwrap(),
            [
                ("Host::host".to_string(), "1000000000001".to_string()),
                ("event_type".to_string(), "USER_RUN_VM".to_string())
            ]
        );
        // Not submitted: methods run by default.
        assert!(Form::from_pairs(&[]).execute_methods);
        let typed = Form::from_pairs(&pairs(&[
            ("entry", "/System/Process/Event"),
            ("uri", "/System/Event/EmsEvent/RHEVM/USER_RUN_VM"),
            ("message", "retire"),
        ]));
        assert_eq!(
            typed.uri().unwrap(),
            "/System/Event/EmsEvent/RHEVM/USER_RUN_VM#retire"
        );
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        let err = |q: &[(&str, &str)]| {
            let f = Form::from_pairs(&pairs(q));
            f.uri().and(f.attrs()).unwrap_err()
        };
        assert!(err(&[]).starts_with("Entry point"));
        assert!(err(&[("uri", "System/x")]).contains("not an Automate URI"));
        assert!(err(&[("uri", "/A/b#c")]).contains("Message field"));
        assert!(err(&[("uri", "/A/b/c"), ("object_type", "Nope")]).starts_with("Object type"));
        assert!(
            err(&[("uri", "/A/b/c"), ("object_type", "Vm"), ("object_id", "x")])
                .contains("not a number (a VmOrTemplate id)")
        );
        let f = Form::from_pairs(&pairs(&[
            ("uri", "/A/b/c"),
            ("object_type", "EmsEvent"),
            ("object_id", "4"),
        ]));
        assert_eq!(
            f.attrs().unwrap(),
            [("EventStream::event_stream".to_string(), "4".to_string())]
        );
        assert!(err(&[("uri", "/A/b/c"), ("object_id", "3")]).contains("without an object type"));
        assert_eq!(
            err(&[("uri", "/A/b/c"), ("attr", ""), ("value", "v")]),
            "Attribute row 1: the value [v] has no name"
        );
        assert!(err(&[("uri", "/A/b/c"), ("attr", "a=b"), ("value", "v")]).contains("'='"));
    }

    #[test]
    fn the_commands_and_the_permalink() {
        let attrs = vec![
            ("VmOrTemplate::vm".to_string(), "7".to_string()),
            ("note".to_string(), "it's here".to_string()),
        ];
        assert_eq!(
            cli_command("/System/Process/Event", &attrs, false),
            "automate instantiate /System/Process/Event --attr VmOrTemplate::vm=7 \
             --attr 'note=it'\\''s here' --no-methods"
        );
        let curl = curl_command("http://h:3000/", "/A/b/c#x", &attrs, true);
        assert!(curl.contains("\"X-Auth-Token: $AUTOMATE_TOKEN\""), "{curl}");
        assert!(curl.contains("\"uri\":\"/A/b/c#x\""), "{curl}");
        assert!(curl.contains("[\"note\",\"it'\\''s here\"]"), "{curl}");
        assert!(curl.ends_with("http://h:3000/api/automate"), "{curl}");
        let f = Form::from_pairs(&pairs(&[
            ("uri", "/System/Event/EmsEvent/RHEVM/USER_RUN_VM"),
            ("attr", "a b"),
            ("value", "x&y"),
            ("attr", ""),
            ("value", ""),
        ]));
        let link = f.permalink();
        assert_eq!(
            link,
            "/ui/simulation?uri=/System/Event/EmsEvent/RHEVM/USER_RUN_VM&message=create\
             &attr=a%20b&value=x%26y&execute_methods=1&submitted=1&run=1"
        );
        let back = Form::from_pairs(
            &link
                .split_once('?')
                .unwrap()
                .1
                .split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.replace("%20", " ").replace("%26", "&"))
                })
                .collect::<Vec<_>>(),
        );
        assert_eq!(back.attrs(), f.attrs());
        assert!(back.run && back.execute_methods);
    }
}
