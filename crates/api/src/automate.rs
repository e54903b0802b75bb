//! `/api/automate`: the Automate datastore, browsed (domains with priority
//! and enabled flag, namespaces, a class's schema, an instance's values
//! merged with the class defaults) and resolved (`POST` with
//! `{"action": "resolve", "attributes": {...}}` instantiates the path and
//! answers the workspace and the trace, as `automate instantiate --json`).

use super::collection::{CollectionQuery, RawQuery};
use super::domains::domains_collection;
use super::{
    base_url, expect_action, in_unit, json_object, kind_of, ok, opt_str, path_arg, ApiError,
    ApiResult, ApiState,
};
use automate_datastore::index::{join_path, ClassDef, FieldDef, Index, InstanceDef, MISSING};
use automate_engine::Cancel;
use automate_vmdb::sandbox::Sandbox;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

fn class_json(c: &ClassDef, base: &str) -> Value {
    let path = c.fq_path();
    let mut methods: Vec<&str> = c.methods().map(|m| m.name.as_str()).collect();
    methods.sort_by_key(|m| m.to_lowercase());
    json!({
        "kind": "class",
        "href": format!("{base}/api/automate{path}"),
        "fqname": path,
        "domain": &*c.domain,
        "namespace": c.namespace,
        "name": c.name,
        "state_machine": c.is_state_machine(),
        "schema": c.fields.iter().map(FieldDef::to_json).collect::<Vec<_>>(),
        "instances": c.instances.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        "methods": methods,
    })
}

fn instance_json(c: &ClassDef, i: &InstanceDef, base: &str) -> Value {
    let path = format!("{}/{}", c.fq_path(), i.name);
    let fields: Vec<Value> = c
        .fields
        .iter()
        .zip(&i.values)
        .map(|(f, v)| {
            let own = v.as_ref();
            let pick = |inst: Option<&Option<String>>, class: &Option<String>| {
                inst.and_then(|s| s.clone()).or_else(|| class.clone())
            };
            let from_instance = own.is_some_and(|v| v.value.is_some());
            json!({
                "name": f.name,
                "aetype": f.aetype.as_str(),
                "datatype": f.datatype,
                "value": if from_instance { own.and_then(|v| v.value.clone()) } else { f.default_value.clone() },
                "from_instance": from_instance,
                "on_entry": pick(own.map(|v| &v.on_entry), &f.on_entry),
                "on_exit": pick(own.map(|v| &v.on_exit), &f.on_exit),
                "on_error": pick(own.map(|v| &v.on_error), &f.on_error),
                "collect": pick(own.map(|v| &v.collect), &f.collect),
                "max_retries": pick(own.map(|v| &v.max_retries), &f.max_retries),
                "max_time": pick(own.map(|v| &v.max_time), &f.max_time),
            })
        })
        .collect();
    json!({
        "kind": "instance",
        "href": format!("{base}/api/automate{path}"),
        "fqname": path,
        "domain": &*c.domain,
        "namespace": c.namespace,
        "class": c.name,
        "name": i.name,
        "fields": fields,
        "unknown_fields": i.unknown_fields,
    })
}

/// `GET /api/automate`: the domains, highest priority first, each in full
/// (as ManageIQ's `/api/automate` shows them); the collection queries
/// apply.
pub(super) async fn domains(State(state): State<ApiState>, raw: RawQuery) -> ApiResult {
    let mut q = CollectionQuery::parse(raw, &[], &state.limits)?;
    q.expand = true;
    ok(domains_collection(&state, &q, "automate", &[]))
}

/// The namespaces and classes directly under `ns` (`""`: the domain's
/// top) of `domain`; `None` when `ns` holds nothing.
fn namespace_json(index: &Index, domain: &str, ns: &str, base: &str) -> Option<Value> {
    let mut namespaces = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let prefix = ns.to_lowercase();
    for c in index.all_classes() {
        if !c.domain.eq_ignore_ascii_case(domain) {
            continue;
        }
        let cns = c.namespace.as_str();
        let lc = cns.to_lowercase();
        if lc == prefix {
            classes.insert(c.name.clone());
        } else if prefix.is_empty() || lc.starts_with(&format!("{prefix}/")) {
            let rest = if prefix.is_empty() {
                cns
            } else {
                &cns[prefix.len() + 1..]
            };
            if let Some(first) = rest.split('/').next().filter(|s| !s.is_empty()) {
                namespaces.insert(first.to_string());
            }
        }
    }
    if namespaces.is_empty() && classes.is_empty() {
        return None;
    }
    let fq = format!("/{}", join_path(domain, ns));
    Some(json!({
        "kind": if ns.is_empty() { "domain" } else { "namespace" },
        "href": format!("{base}/api/automate{fq}"),
        "fqname": fq,
        "domain": domain,
        "namespaces": namespaces,
        "classes": classes,
    }))
}

/// The path's segments, empty ones dropped.
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The node `segs` names (`domain/ns.../class[/instance]`): a domain,
/// namespace, class or instance, or a 404 naming what is missing.
fn node_json(index: &Index, segs: &[&str], base: &str) -> Result<Value, ApiError> {
    let Some((first, rest)) = segs.split_first() else {
        return Err(ApiError::not_found("give a domain: /api/automate/<domain>"));
    };
    let Some(domain) = index.domain(first) else {
        return Err(ApiError::not_found(format!("no domain [{first}]")));
    };
    let domain: Arc<str> = domain.name.clone();
    if let Some((class, ns)) = rest.split_last() {
        let fq_ns = join_path(&domain, &ns.join("/"));
        if let Some(c) = index.class(&fq_ns, class) {
            let mut v = class_json(c, base);
            v["priority"] = json!(index.domain(&domain).map(|d| d.priority));
            return Ok(v);
        }
        if let Some((class, ns)) = ns.split_last() {
            let fq_ns = join_path(&domain, &ns.join("/"));
            if let Some(c) = index.class(&fq_ns, class) {
                let name = rest[rest.len() - 1];
                return match c.instance(name) {
                    Some(i) => Ok(instance_json(c, i, base)),
                    None => Err(ApiError::not_found(format!(
                        "no instance [{name}] in class {}",
                        c.fq_path()
                    ))),
                };
            }
        }
    }
    let ns = rest.join("/");
    match namespace_json(index, &domain, &ns, base) {
        Some(mut v) => {
            if ns.is_empty() {
                if let Some(d) = index.domain(&domain) {
                    v["name"] = json!(&*d.name);
                    v["priority"] = json!(d.priority);
                    v["enabled"] = json!(d.enabled);
                    v["source"] = json!(d.source.as_str());
                }
            }
            Ok(v)
        }
        None => Err(ApiError::not_found(format!(
            "no namespace, class or instance [/{domain}/{ns}]"
        ))),
    }
}

/// The names of a node's children: a domain's or namespace's namespaces
/// and classes, a class's instances.
fn children(node: &Value) -> Vec<String> {
    let names = |key: &str| -> Vec<String> {
        node[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    match node["kind"].as_str() {
        Some("domain" | "namespace") => {
            let mut out = names("namespaces");
            out.extend(names("classes"));
            out
        }
        Some("class") => names("instances"),
        _ => Vec::new(),
    }
}

/// `depth` and `attributes` of a browse (anything else is a 400 naming
/// it).
struct BrowseQuery {
    /// `None`: the node alone, as an object; `Some(0)`: the node as a
    /// collection; `Some(n)`: and n levels below; `Some(-1)`: the whole
    /// subtree.
    depth: Option<i64>,
    /// The attributes shown besides `href` and `fqname`.
    attributes: Option<Vec<String>>,
}

fn browse_query(raw: RawQuery, max: usize) -> Result<BrowseQuery, ApiError> {
    let raw = raw
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let mut q = BrowseQuery {
        depth: None,
        attributes: None,
    };
    let mut attrs = Vec::new();
    for (k, v) in raw {
        match k.as_str() {
            "depth" if q.depth.is_none() => {
                q.depth = Some(
                    v.trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|d| *d >= -1)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "depth: [{v}] is not -1 (the whole subtree) or a level count"
                            ))
                        })?,
                )
            }
            "attributes" if q.attributes.is_none() => {
                attrs.push(("attributes".to_string(), v));
                q.attributes = Some(Vec::new());
            }
            "depth" | "attributes" => {
                return Err(ApiError::bad_request(format!("{k}: given more than once")))
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other}: unknown parameter (browsing takes depth, attributes)"
                )))
            }
        }
    }
    if !attrs.is_empty() {
        let limits = automate_events::config::ApiLimits {
            max_limit: max,
            ..Default::default()
        };
        let parsed = CollectionQuery::parse(Ok(axum::extract::Query(attrs)), &[], &limits)?;
        q.attributes = parsed.attributes;
    }
    Ok(q)
}

/// `node` with only `href`, `fqname`, `kind` and `attributes`.
fn pick(node: Value, attributes: Option<&[String]>) -> Value {
    let (Some(names), Value::Object(m)) = (attributes, &node) else {
        return node;
    };
    let mut out = serde_json::Map::new();
    for (k, v) in m {
        if ["href", "fqname", "kind"].contains(&k.as_str()) || names.iter().any(|n| n == k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// `GET /api/automate/<domain>/<ns...>/<class>[/<instance>]`: the node;
/// with `depth`, ManageIQ's form: a collection of the node and its
/// descendants down to `depth` levels (`-1`: all), at most
/// `api.limits.max_limit` nodes.
pub(super) async fn browse(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    raw: RawQuery,
) -> ApiResult {
    let index = state.engine.datastore().index();
    let base = base_url(&state);
    let path = path_arg(path)?;
    let max = state.limits.max_limit;
    let bq = browse_query(raw, max)?;
    let segs = segments(&path);
    let node = node_json(&index, &segs, &base)?;
    let Some(depth) = bq.depth else {
        return ok(pick(node, bq.attributes.as_deref()));
    };
    let mut level: Vec<(Vec<String>, Value)> =
        vec![(segs.iter().map(|s| s.to_string()).collect(), node)];
    let mut out: Vec<Value> = Vec::new();
    let mut d = 0i64;
    loop {
        let mut next = Vec::new();
        for (segs, node) in level {
            if depth == -1 || d < depth {
                for child in children(&node) {
                    let mut cs = segs.clone();
                    cs.push(child);
                    let refs: Vec<&str> = cs.iter().map(String::as_str).collect();
                    if let Ok(v) = node_json(&index, &refs, &base) {
                        next.push((cs, v));
                    }
                }
            }
            out.push(pick(node, bq.attributes.as_deref()));
            if out.len() + next.len() > max {
                return Err(ApiError::bad_request(format!(
                    "depth: the subtree holds more than {max} nodes (api.limits.max_limit); \
                     ask a smaller depth or a deeper path"
                )));
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
        d += 1;
    }
    ok(json!({
        "name": "automate",
        "subcount": out.len(),
        "resources": out,
    }))
}

/// Whether `segs` (`[domain/]ns.../class/instance`) names an instance (or
/// a `.missing`) the engine can find; the error names the unknown part.
fn check_resolvable(index: &Index, segs: &[&str]) -> Result<(), ApiError> {
    let [ns @ .., class, instance] = segs else {
        return Err(ApiError::not_found(
            "resolve needs a path /namespace/class/instance",
        ));
    };
    let ns = ns.join("/");
    if index.resolve(&ns, class, instance).is_some() {
        return Ok(());
    }
    if let Some(c) = index.class(&ns, class) {
        if c.instance(instance).is_some() || c.instance(MISSING).is_some() {
            return Ok(());
        }
        return Err(ApiError::not_found(format!(
            "no instance [{instance}] (nor .missing) in class {}",
            c.fq_path()
        )));
    }
    if !index.classes_at(&ns, class).is_empty() {
        return Err(ApiError::not_found(format!(
            "no instance [{instance}] (nor .missing) in /{ns}/{class} of any enabled domain"
        )));
    }
    Err(ApiError::not_found(format!(
        "no class [/{ns}/{class}] in any enabled domain"
    )))
}

/// `POST /api/automate/<path>` with `{"action": "resolve", "attributes":
/// {...}, "message": ...}`.
pub(super) async fn resolve(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    expect_action(&obj, "resolve")?;
    let mut attrs: Vec<(String, String)> = Vec::new();
    match obj.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                automate_engine::keys::check_user_key("attributes", k)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "attributes.{k}: expected a string, number or boolean, got {}",
                            kind_of(other)
                        )))
                    }
                };
                attrs.push((k.clone(), text));
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "attributes: expected an object, got {}",
                kind_of(other)
            )))
        }
    }
    let message = opt_str(&obj, "message", "message")?;
    let (sandboxed, execute_methods) = super::run::simulation(&obj)?;
    let path = path_arg(path)?;
    let segs = segments(&path);
    if let Some(c) = path
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_control())
    {
        return Err(ApiError::bad_request(format!(
            "path: must not hold {c:?} (give attributes and message in the body)"
        )));
    }
    let index = state.engine.datastore().index();
    check_resolvable(&index, &segs)?;
    let mut uri = format!("/{}", segs.join("/"));
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        uri.push('#');
        uri.push_str(m);
    }
    let engine = state.engine.clone();
    // The engine runs on a blocking thread, which a dropped future does not
    // stop: when the client goes away (axum drops this handler's future),
    // the guard cancels the instantiation, which stops at its next budget
    // check and logs `Instantiation cancelled`.
    let cancel = Cancel::new();
    let guard = cancel.on_drop();
    let metrics = state.metrics.clone();
    let engine = engine.with_execute_methods(execute_methods);
    let schedule = state.store.scheduled_work();
    let run = move |engine: automate_engine::Engine, sandbox: Option<&Sandbox>| {
        let started = std::time::Instant::now();
        let (ws, err) = engine.instantiate_traced_cancellable(&uri, &attrs, cancel);
        // `automate_instantiation_seconds` counts the API's resolves with
        // the pipeline's deliveries.
        metrics.instantiation(started.elapsed());
        let diff = sandbox
            .map(Sandbox::diff)
            .transpose()
            .map_err(ApiError::internal)?;
        Ok(super::run::with_simulation(
            ws.to_json(&uri, err.as_ref()),
            &ws,
            diff.as_ref(),
        ))
    };
    let done = if sandboxed {
        // Read through a unit of work never committed; written nowhere.
        let store = state.store.clone();
        super::blocking(move || {
            let unit = store.begin_unit();
            let sandbox = Arc::new(Sandbox::new(unit.objects(), Some(schedule)));
            let engine = engine
                .with_store(unit.objects())
                .with_sandbox(sandbox.clone());
            let out = run(engine, Some(&sandbox));
            drop(unit);
            out
        })
        .await
    } else {
        in_unit(state.store.clone(), move |objects| {
            run(engine.with_store(objects), None)
        })
        .await
    };
    guard.disarm();
    ok(done?)
}
