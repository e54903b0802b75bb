//! The Events pages (issue 21 §4): the event stream, newest first, paged
//! and filtered by provider, event type, VM and time range (a GET form:
//! the page reads without JavaScript), kept live by `assets/events.js`
//! over the session-authenticated server-sent events of
//! `GET /ui/events/stream` (the REST API's own stream,
//! [`automate_api::events_stream`], so the API token never reaches the
//! page); and one event's page: its payload, the objects it touched, the
//! generic events it raised, the policies and alerts that fired, the
//! methods with their return codes, its errors and its Automate trace,
//! from the delivery record the handler stored
//! ([`automate_events::trace::Record::of`]). The trace is drawn as the
//! Simulation page draws its own, by [`crate::trace_tree`] (relationships
//! nested, `.missing` fallbacks highlighted, methods with inputs and return
//! codes, states with results and retries) over the record's lines with
//! their depths and levels ([`Record::trace_lines`]; inferred for a record
//! stored before they were kept).
//!
//! Routes: `GET /ui/events?provider=&type=&vm=&from=&to=&page=`,
//! `GET /ui/events/stream?provider=&type=&vm=`, `GET /ui/events/{id}`.

use crate::page::{error_page, html, url_encode, Layout};
use crate::session::SessionInfo;
use crate::UiState;
use askama::Template;
use automate_engine::AttrValue;
use automate_events::trace::{Record, TRACE_ATTR};
use automate_vmdb::page::PageQuery;
use automate_vmdb::served::ServedStore;
use automate_vmdb::{StoreError, StoredObject, VmdbRef};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Events per page of the list.
pub const PAGE_SIZE: usize = 50;
/// Rows the live page keeps at most (`assets/events.js` trims to it).
pub const LIVE_ROWS: usize = 200;
/// The longest filter value taken (a longer one is refused).
const MAX_FILTER: usize = 256;

/// The list's filters as typed (empty: not filtering).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// The provider's name.
    pub provider: String,
    /// The event type.
    pub event_type: String,
    /// A VM's name, provider reference or id.
    pub vm: String,
    /// The range's start: any time `automate events list --since` takes.
    pub from: String,
    /// The range's end, the same forms.
    pub to: String,
    /// The page, from 1.
    pub page: usize,
}

impl Filters {
    /// The filters of a query's pairs; an unknown parameter, a repeated
    /// one, a value over 256 bytes or a page that is not a number from 1
    /// is an error naming it.
    pub fn parse(pairs: &[(String, String)]) -> Result<Filters, String> {
        let mut f = Filters {
            page: 1,
            ..Filters::default()
        };
        let mut seen = HashSet::new();
        for (k, v) in pairs {
            if !seen.insert(k.as_str()) {
                return Err(format!("{k}: given twice"));
            }
            if v.len() > MAX_FILTER {
                return Err(format!("{k}: longer than {MAX_FILTER} bytes"));
            }
            let v = v.trim().to_string();
            match k.as_str() {
                "provider" => f.provider = v,
                "type" => f.event_type = v,
                "vm" => f.vm = v,
                "from" => f.from = v,
                "to" => f.to = v,
                "page" => {
                    f.page = match v.parse::<usize>() {
                        Ok(n) if (1..=1_000_000).contains(&n) => n,
                        _ => return Err(format!("page: {v:?} is not a page number (1, 2, ...)")),
                    }
                }
                _ => {
                    return Err(format!(
                        "{k}: unknown filter (the list takes provider, type, vm, from, to, page)"
                    ))
                }
            }
        }
        Ok(f)
    }

    /// The query string of these filters (without `page`), `&`-joined,
    /// empty ones left out.
    fn query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("provider", &self.provider),
            ("type", &self.event_type),
            ("vm", &self.vm),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", url_encode(v, false)));
            }
        }
        parts.join("&")
    }

    /// The list's URL at `page` with these filters.
    fn href(&self, page: usize) -> String {
        let q = self.query();
        match (q.is_empty(), page) {
            (true, 1) => "/ui/events".into(),
            (true, p) => format!("/ui/events?page={p}"),
            (false, 1) => format!("/ui/events?{q}"),
            (false, p) => format!("/ui/events?{q}&page={p}"),
        }
    }
}

/// The filters checked: the times in ms since the epoch.
#[derive(Debug, Clone, Default)]
struct Checked {
    provider: Option<String>,
    event_type: Option<String>,
    vm: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Checked {
    fn of(f: &Filters, now_ms: i64) -> Result<Checked, String> {
        let time = |flag: &str, v: &str| -> Result<Option<i64>, String> {
            if v.is_empty() {
                return Ok(None);
            }
            automate_events::when::parse(flag, v, now_ms)
                .map(Some)
                .map_err(|e| e.to_string())
        };
        let c = Checked {
            provider: non_empty(&f.provider),
            event_type: non_empty(&f.event_type),
            vm: non_empty(&f.vm),
            from_ms: time("from", &f.from)?,
            to_ms: time("to", &f.to)?,
        };
        if let (Some(a), Some(b)) = (c.from_ms, c.to_ms) {
            if a > b {
                return Err(format!(
                    "from {:?} is after to {:?}: nothing can match",
                    f.from, f.to
                ));
            }
        }
        Ok(c)
    }
}

/// One event as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its id.
    pub id: i64,
    /// Its page.
    pub href: String,
    /// Its time as stored.
    pub timestamp: String,
    /// Its type.
    pub event_type: String,
    /// The provider's name (empty when the event has none: a MiqEvent).
    pub provider: String,
    /// The provider's type (the event's `source`).
    pub source: String,
    /// The VM: its name when known, else its provider reference.
    pub vm: String,
    /// What its delivery did, in a few words (from its record).
    pub outcome: String,
    /// It has a delivery record.
    pub recorded: bool,
}

/// A page of the list.
#[derive(Debug, Default)]
struct Listing {
    rows: Vec<Row>,
    /// There are older events past this page.
    more: bool,
    /// The providers' names, for the filter's choice.
    providers: Vec<String>,
}

fn text(obj: &StoredObject, k: &str) -> String {
    obj.attrs.get(k).map(AttrValue::to_text).unwrap_or_default()
}

fn int(obj: &StoredObject, k: &str) -> Option<i64> {
    match obj.attrs.get(k) {
        Some(AttrValue::Int(i)) => Some(*i),
        _ => None,
    }
}

/// The `name` of `class` `id`, memoised in `cache`.
fn name_of(
    store: &dyn ServedStore,
    cache: &mut HashMap<(&'static str, i64), String>,
    class: &'static str,
    id: i64,
) -> String {
    cache
        .entry((class, id))
        .or_insert_with(|| {
            store
                .attribute(
                    &VmdbRef {
                        class: Arc::from(class),
                        id,
                    },
                    "name",
                )
                .ok()
                .flatten()
                .map(|v| v.to_text())
                .unwrap_or_default()
        })
        .clone()
}

/// What a delivery did, in a few words: the generic events, the policies
/// whose condition held, the alerts, the errors.
fn summary(r: &Record) -> String {
    let o = &r.outcome;
    let mut parts = Vec::new();
    if !o.generic_events.is_empty() {
        parts.push(format!("raised {}", o.generic_events.join(", ")));
    }
    let held: Vec<&str> = o
        .policies
        .iter()
        .filter(|p| p.condition)
        .map(|p| p.policy.as_str())
        .collect();
    if !held.is_empty() {
        parts.push(format!("policies {}", held.join(", ")));
    }
    if !o.alerts.is_empty() {
        let a: Vec<&str> = o.alerts.iter().map(|a| a.alert.as_str()).collect();
        parts.push(format!("alerts {}", a.join(", ")));
    }
    match o.errors.len() {
        0 => {}
        1 => parts.push("1 error".into()),
        n => parts.push(format!("{n} errors")),
    }
    if parts.is_empty() {
        "nothing raised".into()
    } else {
        parts.join("; ")
    }
}

/// The page `page` (from 1) of the stored events passing `f`, newest
/// first.
fn list(store: &dyn ServedStore, f: &Checked, page: usize) -> Result<Listing, StoreError> {
    let mut providers: Vec<String> = Vec::new();
    let mut names = HashMap::new();
    let mut ems_ids = HashSet::new();
    for r in store.list("ExtManagementSystem")? {
        let name = name_of(store, &mut names, "ExtManagementSystem", r.id);
        if f.provider.as_deref() == Some(name.as_str()) {
            ems_ids.insert(r.id);
        }
        providers.push(name);
    }
    providers.sort();
    providers.dedup();
    if f.provider.is_some() && ems_ids.is_empty() {
        // No provider of that name: nothing can match.
        return Ok(Listing {
            providers,
            ..Listing::default()
        });
    }
    let mut vm_ids = HashSet::new();
    if let Some(vm) = &f.vm {
        for r in store.find_by("VmOrTemplate", "name", &AttrValue::Str(vm.clone()))? {
            vm_ids.insert(r.id);
        }
        if let Ok(id) = vm.parse::<i64>() {
            vm_ids.insert(id);
        }
    }
    let keep = |obj: &StoredObject| -> bool {
        if let Some(t) = &f.event_type {
            if text(obj, "event_type") != *t {
                return false;
            }
        }
        if f.provider.is_some() && !int(obj, "ems_id").is_some_and(|id| ems_ids.contains(&id)) {
            return false;
        }
        if let Some(vm) = &f.vm {
            let by_id = int(obj, "vm_or_template_id").is_some_and(|id| vm_ids.contains(&id));
            if !by_id && text(obj, "vm_ems_ref") != *vm {
                return false;
            }
        }
        if f.from_ms.is_some() || f.to_ms.is_some() {
            let Some(t) = automate_core::time::parse_time(&text(obj, "timestamp")) else {
                return false;
            };
            if f.from_ms.is_some_and(|from| t < from) || f.to_ms.is_some_and(|to| t > to) {
                return false;
            }
        }
        true
    };
    let filtered = f.event_type.is_some()
        || f.provider.is_some()
        || f.vm.is_some()
        || f.from_ms.is_some()
        || f.to_ms.is_some();
    let q = PageQuery {
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE + 1,
        newest_first: true,
    };
    let got = store.page("EventStream", q, if filtered { Some(&keep) } else { None })?;
    let more = got.rows.len() > PAGE_SIZE;
    let mut rows = Vec::with_capacity(PAGE_SIZE);
    for (id, obj) in got.rows.into_iter().take(PAGE_SIZE) {
        let provider = match int(&obj, "ems_id") {
            Some(ems) => name_of(store, &mut names, "ExtManagementSystem", ems),
            None => String::new(),
        };
        let vm = match int(&obj, "vm_or_template_id") {
            Some(vm) => name_of(store, &mut names, "VmOrTemplate", vm),
            None => String::new(),
        };
        let vm = if vm.is_empty() {
            text(&obj, "vm_ems_ref")
        } else {
            vm
        };
        let (outcome, recorded) = match Record::of(&obj) {
            Ok(Some(r)) => (summary(&r), true),
            // A MiqEvent or RequestEvent: its delivery is in the trace of
            // the event that raised it.
            Ok(None) if obj.class != "EmsEvent" => (obj.class.clone(), false),
            Ok(None) => ("not recorded".to_string(), false),
            Err(e) => (format!("unreadable record: {e}"), false),
        };
        rows.push(Row {
            id,
            href: format!("/ui/events/{id}"),
            timestamp: text(&obj, "timestamp"),
            event_type: text(&obj, "event_type"),
            provider,
            source: text(&obj, "source"),
            vm,
            outcome,
            recorded,
        });
    }
    Ok(Listing {
        rows,
        more,
        providers,
    })
}

/// `templates/events.html`.
#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    layout: Layout,
    filters: Filters,
    providers: Vec<String>,
    /// Why the filters were refused, if they were.
    problem: String,
    rows: Vec<Row>,
    newer: Option<String>,
    older: Option<String>,
    /// The live stream's URL (empty: no live updates: a later page, or
    /// the range has an end).
    stream: String,
    /// The range's start for the live rows (ms; empty: none).
    from_ms: String,
    /// Why there are no live updates, when there are none.
    no_live: String,
    live_rows: usize,
    script: String,
}

/// `GET /ui/events`: the stored events, newest first, filtered and paged,
/// with live updates on the first page.
pub async fn list_page(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Some(api) = state.api() else {
        return no_store(&session);
    };
    let pairs = match query {
        Ok(Query(p)) => p,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Bad filter",
                e.body_text(),
            )
        }
    };
    let mut page = EventsPage {
        layout: Layout::new("Events", Some(&session), "/ui/events"),
        filters: Filters {
            page: 1,
            ..Filters::default()
        },
        providers: Vec::new(),
        problem: String::new(),
        rows: Vec::new(),
        newer: None,
        older: None,
        stream: String::new(),
        from_ms: String::new(),
        no_live: String::new(),
        live_rows: LIVE_ROWS,
        script: crate::assets::events_js_url(),
    };
    let checked = Filters::parse(&pairs).and_then(|f| {
        let c = Checked::of(&f, automate_core::time::now_ms());
        page.filters = f;
        c
    });
    let checked = match checked {
        Ok(c) => c,
        Err(problem) => {
            page.problem = problem;
            page.no_live = "the filters are not valid".into();
            return html(&page, StatusCode::BAD_REQUEST);
        }
    };
    let store = api.store().clone();
    let n = page.filters.page;
    let c = checked.clone();
    let listing = match tokio::task::spawn_blocking(move || list(&*store, &c, n)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return store_failed(&session, &e.to_string()),
        Err(e) => return store_failed(&session, &e.to_string()),
    };
    let f = &page.filters;
    page.newer = (f.page > 1).then(|| f.href(f.page - 1));
    page.older = listing.more.then(|| f.href(f.page + 1));
    if f.page > 1 {
        page.no_live = "live updates show on the first page only".into();
    } else if checked.to_ms.is_some() {
        page.no_live = "the time range has an end".into();
    } else {
        let mut q = Vec::new();
        for (k, v) in [
            ("provider", &f.provider),
            ("type", &f.event_type),
            ("vm", &f.vm),
        ] {
            if !v.is_empty() {
                q.push(format!("{k}={}", url_encode(v, false)));
            }
        }
        page.stream = if q.is_empty() {
            "/ui/events/stream".into()
        } else {
            format!("/ui/events/stream?{}", q.join("&"))
        };
        page.from_ms = checked.from_ms.map(|t| t.to_string()).unwrap_or_default();
    }
    page.rows = listing.rows;
    page.providers = listing.providers;
    // A provider typed in the URL that the store does not know stays chosen.
    if !f.provider.is_empty() && !page.providers.contains(&f.provider) {
        page.providers.push(f.provider.clone());
    }
    html(&page, StatusCode::OK)
}

/// `GET /ui/events/stream`: the REST API's live event stream
/// (`GET /api/events/stream`, the same code: [`automate_api::events_stream`])
/// for the signed-in session, so the page's script needs no API token.
pub async fn stream(
    State(state): State<UiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Some(api) = state.api() else {
        return (
            StatusCode::NOT_FOUND,
            "no event stream: the UI runs without the API",
        )
            .into_response();
    };
    match query {
        Ok(Query(pairs)) => automate_api::events_stream(api.clone(), pairs).await,
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

fn no_store(session: &SessionInfo) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        Some(session),
        "No event stream",
        "This UI runs without the REST API's store: start it with automate run or automate api.",
    )
}

fn store_failed(session: &SessionInfo, e: &str) -> Response {
    tracing::error!(target: "evm", "MIQ(ui) reading the event stream failed: {e}");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(session),
        "The event stream could not be read",
        format!("{e} (see evm.log)"),
    )
}

// ---------------------------------------------------------------------------
// One event

/// An attribute of the event as the page shows it.
struct Attr {
    name: String,
    value: String,
}

/// An object the event refers to or its delivery touched.
struct Related {
    role: String,
    class: String,
    id: i64,
    name: String,
    what: String,
}

/// `templates/event.html`.
#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    layout: Layout,
    id: i64,
    event_type: String,
    class: String,
    attrs: Vec<Attr>,
    full_data: String,
    related: Vec<Related>,
    record: Option<Record>,
    /// Why there is no record, or why it could not be read.
    no_record: String,
    /// The trace as a tree ([`crate::trace_tree`], as on the Simulation
    /// page).
    trace: String,
    /// The trace as automation.log writes it, indented by depth.
    raw_trace: String,
    trace_lines: usize,
    /// The record kept each line's depth and level (else they were
    /// inferred: a record stored before `trace/3|`).
    depths_known: bool,
}

/// `GET /ui/events/{id}`: one event, its payload and its delivery record.
pub async fn event_page(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
) -> Response {
    let Some(api) = state.api() else {
        return no_store(&session);
    };
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such event",
            format!("{id:?} is not an event id (a number)."),
        );
    };
    let store = api.store().clone();
    let loaded = tokio::task::spawn_blocking(move || load_event(&*store, id)).await;
    let page = match loaded {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => {
            return error_page(
                StatusCode::NOT_FOUND,
                Some(&session),
                "No such event",
                format!("There is no event {id} in the event stream."),
            )
        }
        Ok(Err(e)) => return store_failed(&session, &e.to_string()),
        Err(e) => return store_failed(&session, &e.to_string()),
    };
    let mut page = page;
    page.layout = Layout::new(
        format!("Event {id} {}", page.event_type),
        Some(&session),
        "/ui/events",
    );
    html(&page, StatusCode::OK)
}

/// The event `id`'s page (its layout left to the caller), `None` when
/// there is no such event.
fn load_event(store: &dyn ServedStore, id: i64) -> Result<Option<EventPage>, StoreError> {
    let Some(obj) = store.load("EventStream", id)? else {
        return Ok(None);
    };
    let mut names = HashMap::new();
    let mut related = Vec::new();
    for (attr, class, role) in [
        ("ems_id", "ExtManagementSystem", "provider"),
        ("vm_or_template_id", "VmOrTemplate", "VM"),
        ("host_id", "Host", "host"),
    ] {
        if let Some(rid) = int(&obj, attr) {
            related.push(Related {
                role: role.into(),
                class: class.into(),
                id: rid,
                name: name_of(store, &mut names, class, rid),
                what: format!("the event's {attr}"),
            });
        }
    }
    let attrs = obj
        .attrs
        .iter()
        .filter(|(k, _)| k.as_str() != TRACE_ATTR && k.as_str() != "full_data")
        .map(|(k, v)| Attr {
            name: k.to_string(),
            value: v.to_text(),
        })
        .collect();
    let full_data = match obj.attrs.get("full_data").map(AttrValue::to_text) {
        Some(t) => match serde_json::from_str::<serde_json::Value>(&t) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or(t),
            Err(_) => t,
        },
        None => String::new(),
    };
    let (record, no_record) = match Record::of(&obj) {
        Ok(Some(r)) => (Some(r), String::new()),
        Ok(None) if obj.class != "EmsEvent" => (
            None,
            format!(
                "A {} has no delivery record of its own: its delivery is in the trace of the \
                 provider event that raised it.",
                obj.class
            ),
        ),
        Ok(None) => (
            None,
            "This event has no delivery record: recording was off when it was handled \
             (events.trace.enabled in automate.yaml), it was a duplicate of an event already \
             stored, or its record was pruned (events.trace.keep_days, keep_max)."
                .to_string(),
        ),
        Err(e) => (None, format!("Its delivery record could not be read: {e}")),
    };
    let (mut trace, mut raw_trace) = (String::new(), String::new());
    let mut trace_lines = 0;
    let mut depths_known = true;
    if let Some(r) = &record {
        for o in &r.outcome.objects {
            let class: &'static str = match o.class.as_str() {
                "VmOrTemplate" | "Vm" | "ManageIQ::Providers::InfraManager::Vm" => "VmOrTemplate",
                "Host" => "Host",
                _ => "",
            };
            let name = if class.is_empty() {
                String::new()
            } else {
                name_of(store, &mut names, class, o.id)
            };
            let mut what = if o.deleted {
                "deleted".to_string()
            } else if o.created {
                "created".to_string()
            } else {
                "updated".to_string()
            };
            if !o.attributes.is_empty() {
                what.push_str(": ");
                what.push_str(&o.attributes.join(", "));
            }
            related.push(Related {
                role: "touched".into(),
                class: o.class.clone(),
                id: o.id,
                name,
                what,
            });
        }
        (trace, raw_trace) = trace_view(r);
        trace_lines = r.trace.len();
        depths_known = r.has_depths();
    }
    Ok(Some(EventPage {
        layout: Layout::new("", None, ""),
        id,
        event_type: text(&obj, "event_type"),
        class: obj.class.clone(),
        attrs,
        full_data,
        related,
        record,
        no_record,
        trace,
        raw_trace,
        trace_lines,
        depths_known,
    }))
}

/// A record's trace as the Simulation page shows its own: the tree
/// ([`crate::trace_tree`]) and the plain lines indented by depth.
fn trace_view(r: &Record) -> (String, String) {
    let lines = r.trace_lines();
    let tree = crate::trace_tree::html(&crate::trace_tree::build(&lines));
    let mut raw = String::with_capacity(r.trace.iter().map(|l| l.len() + 8).sum());
    for l in &lines {
        for _ in 0..l.depth {
            raw.push_str("  ");
        }
        raw.push_str(&l.text);
        raw.push('\n');
    }
    (tree, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_parse_and_round_trip() {
        let f = Filters::parse(&pairs(&[
            ("provider", "rhevm01"),
            ("type", "USER_RUN_VM"),
            ("vm", "web 01"),
            ("from", ""),
            ("page", "2"),
        ]))
        .unwrap();
        assert_eq!(f.provider, "rhevm01");
        assert_eq!(f.page, 2);
        assert_eq!(
            f.href(3),
            "/ui/events?provider=rhevm01&type=USER_RUN_VM&vm=web%2001&page=3"
        );
        assert_eq!(Filters::default().href(1), "/ui/events");
        for (bad, why) in [
            (pairs(&[("colour", "red")]), "colour: unknown filter"),
            (pairs(&[("page", "0")]), "page: \"0\" is not a page number"),
            (pairs(&[("vm", "a"), ("vm", "b")]), "vm: given twice"),
        ] {
            let e = Filters::parse(&bad).unwrap_err();
            assert!(e.starts_with(why), "{e}");
        }
        let long = "x".repeat(300);
        assert!(Filters::parse(&pairs(&[("type", &long)]))
            .unwrap_err()
            .contains("longer than 256"));
    }

    #[test]
    fn times_are_checked() {
        let now = automate_core::time::parse_time("2026-12-06T12:00:00Z").unwrap();
        let f = Filters {
            from: "1h".into(),
            to: "2026-12-06T11:30:00Z".into(),
            ..Filters::default()
        };
        let c = Checked::of(&f, now).unwrap();
        assert_eq!(c.from_ms, Some(now - 3_600_000));
        assert_eq!(c.to_ms, Some(now - 1_800_000));
        let bad = Filters {
            from: "yesterday-ish".into(),
            ..Filters::default()
        };
        assert!(Checked::of(&bad, now).unwrap_err().contains("from"));
        let reversed = Filters {
            from: "2026-12-06".into(),
            to: "2026-12-05".into(),
            ..Filters::default()
        };
        assert!(Checked::of(&reversed, now)
            .unwrap_err()
            .contains("is after to"));
    }

    #[test]
    fn a_record_s_trace_is_the_simulation_tree_old_records_too() {
        use automate_engine::{Level, TraceLine};
        use automate_events::trace::{bounded_trace, Outcome};
        let rel = "miqaedb:/System/Event/MiqEvent/POLICY/vm_start#create";
        let inner = "miqaedb:/System/event_handlers/missing_handler#create";
        let l = |depth: usize, level: Level, text: String| TraceLine { depth, level, text };
        let engine = vec![
            l(0, Level::Info, "Instantiating [/System/Process/Event?event_type=vm_start]".into()),
            l(0, Level::Info, format!("Following Relationship [{rel}]")),
            l(0, Level::Info, format!("Updated namespace [{rel}  ManageIQ/System/Event/MiqEvent]")),
            l(0, Level::Warn, "Instance [/ManageIQ/System/Event/MiqEvent/POLICY/vm_start] not found in MiqAeDatastore - trying [.missing]".into()),
            l(1, Level::Info, format!("Following Relationship [{inner}]")),
            l(2, Level::Info, "Invoking [inline] method [/Custom/System/event_handlers/log_it] with inputs [{\"x\"=>\"<b>\"}]".into()),
            l(2, Level::Info, "<AEMethod [/Custom/System/event_handlers/log_it]> Starting ".into()),
            l(2, Level::Error, "Rhai error at line 3: boom".into()),
            l(2, Level::Info, "<AEMethod [/Custom/System/event_handlers/log_it]> Ending".into()),
            l(2, Level::Info, "Method exited with rc=MIQ_OK".into()),
            l(1, Level::Info, format!("Followed  Relationship [{inner}]")),
            l(0, Level::Info, format!("Followed  Relationship [{rel}]")),
        ];
        let (trace, shapes, truncated) = bounded_trace(&engine, 64 * 1024);
        let mut r = Record {
            recorded_on: "2026-12-06T23:00:00.000Z".into(),
            uri: "/System/Process/Event?event_type=vm_start".into(),
            digest: String::new(),
            outcome: Outcome {
                errors: vec!["Rhai error at line 3: boom".into()],
                ..Outcome::default()
            },
            trace,
            shapes,
            truncated,
        };
        let (tree, raw) = trace_view(&r);
        // The very tree the Simulation page draws from the engine's lines.
        assert_eq!(
            tree,
            crate::trace_tree::html(&crate::trace_tree::build(&engine))
        );
        assert!(raw.contains("\n    Invoking [inline]"), "{raw}");
        // A record stored without depths (trace/2|, JSON): the same
        // relationships, method and marks.
        r.shapes.clear();
        let (old, _) = trace_view(&r);
        for h in [&tree, &old] {
            assert!(h.starts_with("<ul class=\"trace-tree\">"), "{h}");
            assert!(
                h.contains("<li class=\"t-relationship missing\"><details open>"),
                "{h}"
            );
            assert!(
                h.contains("<span class=\"badge b-ok\">rc=MIQ_OK</span>"),
                "{h}"
            );
            assert!(h.contains("class=\"t-line lvl-error\""), "{h}");
            assert!(h.contains("&lt;b&gt;"), "{h}");
            assert!(!h.contains("<b>"), "{h}");
            // The method sits in the inner relationship, in the outer one.
            let at = h.find("log_it").unwrap();
            let before = &h[..at];
            let rels = before.matches("<li class=\"t-relationship").count();
            assert_eq!(rels, 2, "{h}");
        }
    }
}
