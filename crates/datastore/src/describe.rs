//! What `automate datastore list|tree|show` print, gathered from the
//! domains read from a datastore directory: each answer as the `--json`
//! document and as the text, so the command line and the service (`POST
//! /api/automate` actions `tree` and `show`) print the same bytes.

use crate::index::{ClassDef, FieldDef, Index, InstanceDef, MethodDef};
use crate::{Class, Domain, Namespace};
use serde_json::json;
use std::sync::Arc;

/// One answer: the `--json` document and the text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Described {
    /// What `--json` prints (pretty-printed, one line feed after it).
    pub json: serde_json::Value,
    /// What the command prints without `--json`.
    pub text: String,
}

/// Why `tree` or `show` has nothing to print.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// `show` without a path.
    #[error("give a path such as /System/Process or /ManageIQ/System/Process/Event")]
    NoPath,
    /// The path names nothing; the message says what to run.
    #[error("{0}")]
    NotFound(String),
}

/// Domains sorted as the index orders them: highest priority first, then name.
pub fn by_priority(domains: &[Domain]) -> Vec<&Domain> {
    let mut v: Vec<&Domain> = domains.iter().collect();
    v.sort_by(|a, b| {
        b.priority()
            .cmp(&a.priority())
            .then_with(|| a.name().cmp(b.name()))
    });
    v
}

/// `automate datastore list --json`: one object per domain, highest
/// priority first: `{"name", "priority", "enabled", "source",
/// "namespaces", "classes", "instances", "methods"}`.
pub fn list(domains: &[Domain]) -> serde_json::Value {
    by_priority(domains)
        .iter()
        .map(|d| {
            let c = d.counts();
            let mut item = json!({
                "name": d.name(),
                "priority": d.priority(),
                "enabled": d.enabled(),
                "source": d.source().as_str(),
                "namespaces": c.namespaces,
                "classes": c.classes,
                "instances": c.instances,
                "methods": c.methods,
            });
            // A git domain: where it came from (`import --git`).
            if let (Some(o), Some(obj)) = (crate::git::GitOrigin::of(&d.doc), item.as_object_mut())
            {
                obj.insert("git_repository".into(), json!(o.repository));
                obj.insert("ref".into(), json!(o.git_ref));
                obj.insert("ref_type".into(), json!(o.ref_type.as_str()));
                obj.insert("commit_sha".into(), json!(o.commit_sha));
                obj.insert("commit_message".into(), json!(o.commit_message));
                obj.insert("commit_time".into(), json!(o.commit_time));
            }
            item
        })
        .collect()
}

/// The width of each column (in characters) over all rows.
fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// tree

/// `automate datastore tree [PATH]`: the subtrees at `path` (every
/// domain without one) as the `--json` array and as the indented text.
/// Fails when nothing is found, saying what to run.
pub fn tree(domains: &[Domain], path: Option<&str>) -> Result<Described, DescribeError> {
    let ordered = by_priority(domains);
    let segs: Vec<&str> = path
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let shown = tree_nodes(&ordered, &segs)?;
    let items: Vec<serde_json::Value> = shown.iter().map(tree_json).collect();
    let mut text = String::new();
    for s in shown {
        match &s.path {
            None => domain_header(s.domain, &mut text),
            Some(p) => text.push_str(&format!("{p}\n")),
        }
        print_node(s.node, 1, &mut text);
    }
    Ok(Described {
        json: serde_json::Value::Array(items),
        text,
    })
}

/// One subtree `datastore tree` shows: its domain, the path shown above
/// it (`None`: the domain's header line), and the node.
struct Shown<'a> {
    domain: &'a Domain,
    path: Option<String>,
    node: Node<'a>,
}

/// The subtrees at `segs`: every domain when empty; one domain (or a
/// path in it) when `segs[0]` names a domain; else every domain that
/// holds the partial path. Nothing found is an error saying what to run.
fn tree_nodes<'a>(ordered: &[&'a Domain], segs: &[&str]) -> Result<Vec<Shown<'a>>, DescribeError> {
    if segs.is_empty() {
        return Ok(ordered
            .iter()
            .map(|d| Shown {
                domain: d,
                path: None,
                node: Node::Level(&d.namespaces, &d.classes),
            })
            .collect());
    }
    // A domain name first: only that domain.
    if let Some(d) = ordered
        .iter()
        .find(|d| d.name().eq_ignore_ascii_case(segs[0]))
    {
        return match find_node(&d.namespaces, &d.classes, &segs[1..]) {
            Some(node) => Ok(vec![Shown {
                domain: d,
                path: (segs.len() > 1).then(|| format!("{}/{}", d.name(), segs[1..].join("/"))),
                node,
            }]),
            None => Err(DescribeError::NotFound(format!(
                "`{}` not found in domain {}; run `automate datastore tree {}` to see what it holds",
                segs[1..].join("/"),
                d.name(),
                d.name()
            ))),
        };
    }
    // A partial path: every domain holding it.
    let found: Vec<Shown<'a>> = ordered
        .iter()
        .filter_map(|d| {
            find_node(&d.namespaces, &d.classes, segs).map(|node| Shown {
                domain: d,
                path: Some(format!("{}/{}", d.name(), segs.join("/"))),
                node,
            })
        })
        .collect();
    if found.is_empty() {
        return Err(DescribeError::NotFound(format!(
            "`{}` is neither a domain nor a namespace or class of any domain; run `automate \
             datastore tree` to see the whole datastore",
            segs.join("/")
        )));
    }
    Ok(found)
}

fn tree_json(s: &Shown<'_>) -> serde_json::Value {
    let d = s.domain;
    let (namespaces, classes) = match s.node {
        Node::Level(ns, cl) => (namespaces_json(ns), classes_json(cl.iter().collect())),
        Node::Class(c) => (Vec::new(), classes_json(vec![c])),
    };
    json!({
        "domain": d.name(),
        "priority": d.priority(),
        "enabled": d.enabled(),
        "source": d.source().as_str(),
        "path": s.path.clone().unwrap_or_else(|| d.name().to_string()),
        "namespaces": namespaces,
        "classes": classes,
    })
}

fn namespaces_json(namespaces: &[Namespace]) -> Vec<serde_json::Value> {
    let mut nss: Vec<&Namespace> = namespaces.iter().collect();
    nss.sort_by_key(|n| n.name.to_lowercase());
    nss.into_iter()
        .map(|ns| {
            json!({
                "name": ns.name,
                "namespaces": namespaces_json(&ns.namespaces),
                "classes": classes_json(ns.classes.iter().collect()),
            })
        })
        .collect()
}

fn classes_json(mut classes: Vec<&Class>) -> Vec<serde_json::Value> {
    classes.sort_by_key(|c| c.name().to_lowercase());
    classes
        .into_iter()
        .map(|c| {
            let mut insts: Vec<&str> = c.instances.iter().map(|i| i.name()).collect();
            insts.sort_by_key(|n| n.to_lowercase());
            let mut methods: Vec<&str> = c.methods.iter().map(|m| m.name()).collect();
            methods.sort_by_key(|n| n.to_lowercase());
            json!({ "name": c.name(), "instances": insts, "methods": methods })
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Level(&'a [Namespace], &'a [Class]),
    Class(&'a Class),
}

fn find_node<'a>(
    namespaces: &'a [Namespace],
    classes: &'a [Class],
    segs: &[&str],
) -> Option<Node<'a>> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(Node::Level(namespaces, classes));
    };
    if let Some(ns) = namespaces
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(first))
    {
        if let Some(node) = find_node(&ns.namespaces, &ns.classes, rest) {
            return Some(node);
        }
    }
    if rest.is_empty() {
        if let Some(c) = classes
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(first))
        {
            return Some(Node::Class(c));
        }
    }
    None
}

fn print_node(node: Node<'_>, depth: usize, out: &mut String) {
    match node {
        Node::Level(ns, cl) => level(ns, cl, depth, out),
        Node::Class(c) => class_body(c, depth, out),
    }
}

fn domain_header(d: &Domain, out: &mut String) {
    out.push_str(&format!(
        "{} (priority {}, {}, {})\n",
        d.name(),
        d.priority(),
        if d.enabled() { "enabled" } else { "disabled" },
        d.source().as_str()
    ));
}

fn level(namespaces: &[Namespace], classes: &[Class], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let mut nss: Vec<&Namespace> = namespaces.iter().collect();
    nss.sort_by_key(|n| n.name.to_lowercase());
    for ns in nss {
        out.push_str(&format!("{pad}{}/\n", ns.name));
        level(&ns.namespaces, &ns.classes, depth + 1, out);
    }
    let mut cls: Vec<&Class> = classes.iter().collect();
    cls.sort_by_key(|c| c.name().to_lowercase());
    for c in cls {
        out.push_str(&format!("{pad}{} [class]\n", c.name()));
        class_body(c, depth + 1, out);
    }
}

fn class_body(c: &Class, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let mut insts: Vec<&str> = c.instances.iter().map(|i| i.name()).collect();
    insts.sort_by_key(|n| n.to_lowercase());
    for i in insts {
        out.push_str(&format!("{pad}{i}\n"));
    }
    let mut methods: Vec<&str> = c.methods.iter().map(|m| m.name()).collect();
    methods.sort_by_key(|n| n.to_lowercase());
    for m in methods {
        out.push_str(&format!("{pad}{m}() [method]\n"));
    }
}

// ---------------------------------------------------------------------------
// show

/// `automate datastore show PATH`: a class schema, an instance (merged
/// with its class defaults) or a method, as the `--json` document and as
/// text. Fails on an empty path or one that names nothing.
pub fn show(domains: &[Domain], path: &str) -> Result<Described, DescribeError> {
    let index = Index::build(domains);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() {
        return Err(DescribeError::NoPath);
    }
    let target = resolve_show(&index, &segs).ok_or_else(|| {
        DescribeError::NotFound(format!(
            "`{path}` is not a class, instance or method of any enabled domain; check it with \
             `automate datastore tree`"
        ))
    })?;
    let asked = segs.last().copied();
    Ok(match &target {
        Target::Class(c) => Described {
            json: class_json(c),
            text: class_text(c),
        },
        Target::Instance(c, i, exact) => Described {
            json: instance_json(c, i, *exact, asked),
            text: instance_text(c, i, *exact, asked),
        },
        Target::Method(c, m) => Described {
            json: method_json(c, m),
            text: method_text(c, m),
        },
    })
}

enum Target<'a> {
    Class(&'a Arc<ClassDef>),
    /// The class, the instance, and whether the name matched exactly (else `.missing`).
    Instance(&'a Arc<ClassDef>, &'a InstanceDef, bool),
    Method(&'a Arc<ClassDef>, &'a Arc<MethodDef>),
}

/// A class at `segs` (fully qualified or partial), else an instance or a
/// method of the class at `segs[..n-1]`.
fn resolve_show<'a>(index: &'a Index, segs: &[&str]) -> Option<Target<'a>> {
    let class_at = |segs: &[&str]| -> Option<&'a Arc<ClassDef>> {
        let (class, ns) = segs.split_last()?;
        let ns = ns.join("/");
        index
            .classes_at(&ns, class)
            .first()
            .or_else(|| index.class(&ns, class))
    };
    if let Some(c) = class_at(segs) {
        return Some(Target::Class(c));
    }
    let (last, parent) = segs.split_last()?;
    let (class, ns) = parent.split_last()?;
    let ns = ns.join("/");
    // `name()` asks for the method even when an instance has the same name.
    let (last, method_only) = match last.strip_suffix("()") {
        Some(m) => (m, true),
        None => (*last, false),
    };
    if method_only {
        return find_method(index, &ns, class, last);
    }
    // Partial path: the engine's domain search (instance, else `.missing`).
    if let Some(c) = index.resolve(&ns, class, last) {
        if let Some(i) = c.instance(last) {
            return Some(Target::Instance(c, i, true));
        }
    }
    if let Some(c) = index.class(&ns, class) {
        if let Some(i) = c.instance(last) {
            return Some(Target::Instance(c, i, true));
        }
    }
    if let Some(m) = find_method(index, &ns, class, last) {
        return Some(m);
    }
    let c = index
        .resolve(&ns, class, last)
        .or_else(|| index.class(&ns, class))?;
    let missing = c.instance(crate::index::MISSING)?;
    Some(Target::Instance(c, missing, false))
}

/// A method at a partial (overlay) or fully-qualified `ns/class/name`.
fn find_method<'a>(index: &'a Index, ns: &str, class: &str, name: &str) -> Option<Target<'a>> {
    if let Some(c) = index
        .classes_at(ns, class)
        .iter()
        .find(|c| c.method(name).is_some())
    {
        return c.method(name).map(|m| Target::Method(c, m));
    }
    let c = index.class(ns, class)?;
    c.method(name).map(|m| Target::Method(c, m))
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn class_json(c: &ClassDef) -> serde_json::Value {
    json!({
        "kind": "class",
        "path": c.fq_path(),
        "domain": &*c.domain,
        "namespace": c.namespace,
        "class": c.name,
        "state_machine": c.is_state_machine(),
        "fields": c.fields.iter().map(FieldDef::to_json).collect::<Vec<_>>(),
        "instances": c.instances.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        "methods": sorted_methods(c).iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
    })
}

fn sorted_methods(c: &ClassDef) -> Vec<&Arc<MethodDef>> {
    let mut v: Vec<&Arc<MethodDef>> = c.methods().collect();
    v.sort_by_key(|m| m.name.to_lowercase());
    v
}

fn class_text(c: &ClassDef) -> String {
    let mut out = format!(
        "class {} (domain {}{})\n",
        c.fq_path(),
        c.domain,
        if c.is_state_machine() {
            ", state machine"
        } else {
            ""
        }
    );
    let mut rows = vec![[
        "NAME",
        "AETYPE",
        "DATATYPE",
        "DEFAULT",
        "MESSAGE",
        "SUBST",
        "ON_ENTRY",
        "ON_EXIT",
        "ON_ERROR",
        "COLLECT",
        "MAX_RETRIES",
        "MAX_TIME",
    ]
    .map(String::from)
    .to_vec()];
    for f in &c.fields {
        rows.push(vec![
            f.name.clone(),
            f.aetype.as_str().to_string(),
            opt(&f.datatype).to_string(),
            opt(&f.default_value).to_string(),
            f.messages.join(","),
            f.substitute.to_string(),
            opt(&f.on_entry).to_string(),
            opt(&f.on_exit).to_string(),
            opt(&f.on_error).to_string(),
            opt(&f.collect).to_string(),
            opt(&f.max_retries).to_string(),
            opt(&f.max_time).to_string(),
        ]);
    }
    out.push_str(&table_string(&drop_empty_columns_from(
        rows,
        2,
        str::is_empty,
    )));
    out.push_str(&format!(
        "{} instance(s), {} method(s)\n",
        c.instances.len(),
        c.methods().count()
    ));
    out
}

fn table_string(rows: &[Vec<String>]) -> String {
    let widths = column_widths(rows);
    let mut out = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            line.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count()) + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One field of an instance merged with its class's schema: the value the
/// engine starts from (the instance's, else the class default) and the
/// state parts, each the instance's when it sets one.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedValue<'a> {
    /// The schema field.
    pub field: &'a FieldDef,
    /// The value as written (before substitution); `None` is nil.
    pub value: Option<String>,
    /// Whether the instance sets the value (else it is the class default).
    pub from_instance: bool,
    /// The method run on entry (a state).
    pub on_entry: Option<String>,
    /// The method run on exit (a state).
    pub on_exit: Option<String>,
    /// The method run on error (a state).
    pub on_error: Option<String>,
    /// The `collect` expression.
    pub collect: Option<String>,
    /// How often a state may retry.
    pub max_retries: Option<String>,
    /// How long a state may run.
    pub max_time: Option<String>,
}

/// The instance's values merged with the class's schema, in schema order
/// (what `datastore show` and the web UI's Explorer show).
pub fn merged_values<'a>(c: &'a ClassDef, i: &InstanceDef) -> Vec<MergedValue<'a>> {
    c.fields
        .iter()
        .zip(&i.values)
        .map(|(f, v)| {
            let from_instance = v.as_ref().is_some_and(|v| v.value.is_some());
            let pick = |inst: Option<&Option<String>>, class: &Option<String>| -> Option<String> {
                inst.and_then(|s| s.clone()).or_else(|| class.clone())
            };
            MergedValue {
                field: f,
                value: if from_instance {
                    v.as_ref().and_then(|v| v.value.clone())
                } else {
                    f.default_value.clone()
                },
                from_instance,
                on_entry: pick(v.as_ref().map(|v| &v.on_entry), &f.on_entry),
                on_exit: pick(v.as_ref().map(|v| &v.on_exit), &f.on_exit),
                on_error: pick(v.as_ref().map(|v| &v.on_error), &f.on_error),
                collect: pick(v.as_ref().map(|v| &v.collect), &f.collect),
                max_retries: pick(v.as_ref().map(|v| &v.max_retries), &f.max_retries),
                max_time: pick(v.as_ref().map(|v| &v.max_time), &f.max_time),
            }
        })
        .collect()
}

/// One merged field of an instance as JSON.
fn merged(c: &ClassDef, i: &InstanceDef) -> Vec<serde_json::Value> {
    merged_values(c, i)
        .into_iter()
        .map(|m| {
            let f = m.field;
            json!({
                "name": f.name,
                "aetype": f.aetype.as_str(),
                "datatype": f.datatype,
                "value": m.value,
                "from_instance": m.from_instance,
                "on_entry": m.on_entry,
                "on_exit": m.on_exit,
                "on_error": m.on_error,
                "collect": m.collect,
                "max_retries": m.max_retries,
                "max_time": m.max_time,
            })
        })
        .collect()
}

fn instance_json(
    c: &ClassDef,
    i: &InstanceDef,
    exact: bool,
    asked: Option<&str>,
) -> serde_json::Value {
    json!({
        "kind": "instance",
        "path": format!("{}/{}", c.fq_path(), i.name),
        "domain": &*c.domain,
        "namespace": c.namespace,
        "class": c.name,
        "instance": i.name,
        "requested": asked,
        "fallback_to_missing": !exact,
        "fields": merged(c, i),
        "unknown_fields": i.unknown_fields,
    })
}

fn instance_text(c: &ClassDef, i: &InstanceDef, exact: bool, asked: Option<&str>) -> String {
    let mut out = format!(
        "instance {}/{} (domain {})\n",
        c.fq_path(),
        i.name,
        c.domain
    );
    if !exact {
        out.push_str(&format!(
            "  (no instance `{}`: the engine falls back to `.missing`)\n",
            asked.unwrap_or("")
        ));
    } else if c.method(&i.name).is_some() {
        out.push_str(&format!(
            "  (a method has the same name: show it with `{}/{}()`)\n",
            c.fq_path(),
            i.name
        ));
    }
    let mut rows = vec![[
        "",
        "FIELD",
        "AETYPE",
        "VALUE",
        "ON_ENTRY",
        "ON_EXIT",
        "ON_ERROR",
        "COLLECT",
        "MAX_RETRIES",
        "MAX_TIME",
    ]
    .map(String::from)
    .to_vec()];
    for m in merged(c, i) {
        let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
        rows.push(vec![
            if m["from_instance"].as_bool() == Some(true) {
                "*"
            } else {
                " "
            }
            .to_string(),
            s("name"),
            s("aetype"),
            s("value"),
            s("on_entry"),
            s("on_exit"),
            s("on_error"),
            s("collect"),
            s("max_retries"),
            s("max_time"),
        ]);
    }
    // Keep the marker, name and aetype columns; drop others that are all empty.
    let rows = drop_empty_columns_from(rows, 3, |s| s.trim().is_empty());
    out.push_str(&table_string(&rows));
    out.push_str("  (* value set by the instance; others are class defaults)\n");
    if !i.unknown_fields.is_empty() {
        out.push_str(&format!(
            "  warning: values for fields not in the class: {}\n",
            i.unknown_fields.join(", ")
        ));
    }
    out
}

/// Drops the columns after the first `always` whose cells are `blank` in
/// every row but the header.
fn drop_empty_columns_from(
    rows: Vec<Vec<String>>,
    always: usize,
    blank: fn(&str) -> bool,
) -> Vec<Vec<String>> {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let keep: Vec<bool> = (0..cols)
        .map(|i| {
            i < always
                || rows
                    .iter()
                    .skip(1)
                    .any(|r| r.get(i).is_some_and(|s| !blank(s)))
        })
        .collect();
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .enumerate()
                .filter(|(i, _)| keep[*i])
                .map(|(_, s)| s)
                .collect()
        })
        .collect()
}

fn method_json(c: &ClassDef, m: &MethodDef) -> serde_json::Value {
    json!({
        "kind": "method",
        "path": m.fqname,
        "domain": &*c.domain,
        "namespace": c.namespace,
        "class": c.name,
        "method": m.name,
        "location": m.location,
        "language": m.language,
        "scope": m.scope,
        "embedded_methods": m.embedded_methods,
        "inputs": m.inputs.iter().map(FieldDef::to_json).collect::<Vec<_>>(),
        "body": m.body.as_deref(),
    })
}

fn method_text(c: &ClassDef, m: &MethodDef) -> String {
    let mut out = format!(
        "method {} (domain {})\n  location: {}\n  language: {}\n  scope: {}\n",
        m.fqname, c.domain, m.location, m.language, m.scope
    );
    if !m.embedded_methods.is_empty() {
        out.push_str(&format!(
            "  embedded_methods: {}\n",
            m.embedded_methods.join(", ")
        ));
    }
    if m.inputs.is_empty() {
        out.push_str("  inputs: none\n");
    } else {
        out.push_str("  inputs:\n");
        let mut rows = vec![["NAME", "DATATYPE", "DEFAULT"].map(String::from).to_vec()];
        for f in &m.inputs {
            rows.push(vec![
                f.name.clone(),
                opt(&f.datatype).to_string(),
                opt(&f.default_value).to_string(),
            ]);
        }
        out.push_str(&table_string(&rows));
    }
    match m.body.as_deref() {
        Some(body) if !body.is_empty() => {
            out.push_str("  body:\n");
            for line in body.lines() {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
        _ => out.push_str("  body: none\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's shipped datastore.
    fn shipped() -> Vec<Domain> {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datastore"));
        crate::fs::read_root(root).domains
    }

    #[test]
    fn list_tree_and_show_answer_the_same_thing_as_json_and_text() {
        let domains = shipped();
        let list = list(&domains);
        assert_eq!(list[0]["name"], "ManageIQ", "{list}");
        assert!(list[0]["classes"].as_u64().unwrap_or(0) > 0, "{list}");

        let t = tree(&domains, Some("ManageIQ/System/Request")).unwrap();
        assert!(
            t.text.starts_with("ManageIQ/System/Request\n"),
            "{}",
            t.text
        );
        assert_eq!(t.json[0]["path"], "ManageIQ/System/Request");
        let whole = tree(&domains, None).unwrap();
        assert!(
            whole.text.starts_with("ManageIQ (priority 0, "),
            "{}",
            whole.text
        );

        let s = show(&domains, "/System/Request/HelloWorld").unwrap();
        assert_eq!(s.json["kind"], "instance");
        assert!(
            s.text
                .starts_with("instance /ManageIQ/System/Request/HelloWorld"),
            "{}",
            s.text
        );
    }

    #[test]
    fn index_children_and_merged_values() {
        let domains = shipped();
        let index = Index::build(&domains);
        let top = index.children("manageiq", "").unwrap();
        assert_eq!(top.namespaces, vec!["System".to_string()]);
        let system = index.children("ManageIQ", "system").unwrap();
        assert!(system.namespaces.iter().any(|n| n == "Event"), "{system:?}");
        assert!(system.classes.iter().any(|c| c.name == "Process"));
        assert!(index.children("ManageIQ", "No/Such").is_none());
        assert!(index.children("NoDomain", "").is_none());
        assert!(index
            .namespaces("ManageIQ")
            .iter()
            .any(|n| n == "System/Event/EmsEvent"));

        let c = index.class("ManageIQ/System", "Request").unwrap();
        let i = c.instance("HelloWorld").unwrap();
        let merged = merged_values(c, i);
        assert_eq!(merged.len(), c.fields.len());
        let shown = show(&domains, "/System/Request/HelloWorld").unwrap();
        for (m, j) in merged.iter().zip(shown.json["fields"].as_array().unwrap()) {
            assert_eq!(j["name"], m.field.name.as_str());
            assert_eq!(j["from_instance"], m.from_instance);
            assert_eq!(j["value"].as_str(), m.value.as_deref());
        }
    }

    #[test]
    fn nothing_found_says_what_to_run() {
        let domains = shipped();
        let e = tree(&domains, Some("No/Such/Thing")).unwrap_err();
        assert!(e.to_string().contains("automate datastore tree"), "{e}");
        let e = show(&domains, "/No/Such").unwrap_err();
        assert!(e.to_string().contains("automate datastore tree"), "{e}");
        assert!(matches!(show(&domains, "//"), Err(DescribeError::NoPath)));
    }
}
