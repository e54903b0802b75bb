//! The Automate Explorer, read side: the domains by priority, the tree
//! (domain → namespaces → classes → instances and methods; htmx expands a
//! node in place, without JavaScript each node is a link to its page,
//! whose tree is open down to it), a class's schema, an instance's values
//! merged with its schema (the domain each value comes from, and the
//! values other domains give the same instance), a method's inputs and
//! highlighted source, search by name across domains, and for any path
//! the domains it resolves through and the winner.
//!
//! Everything is read from the engine's current overlay [`Index`] (what
//! the engine resolves against, swapped on hot reload) through
//! `automate_datastore`'s index and `describe` code.
//!
//! Routes: `GET /ui/explorer`, `/ui/explorer/{kind}/{*path}` (`kind`:
//! `domain`, `namespace`, `class`, `instance`, `method`; `path` fully
//! qualified, `Domain/ns/.../Class/name`), `/ui/explorer/children?path=`
//! (the tree fragment htmx asks for), `/ui/explorer/search?q=` and
//! `/ui/explorer/resolve?path=`. The edit forms of instances and methods
//! are `GET /ui/explorer/{kind}/{*path}?edit` and save with a `POST` to
//! the same path ([`crate::edit`]; the guard checks its CSRF token);
//! `?saved=` shows the outcome of a save as a flash message.

use crate::page::{error_page, escape_into, html, url_encode, Layout};
use crate::session::SessionInfo;
use crate::UiState;
use askama::Template;
use automate_datastore::describe;
use automate_datastore::index::{join_path, ClassDef, Index, InstanceDef, MethodDef, MISSING};
use automate_datastore::Source;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

/// The most search results shown.
pub const MAX_RESULTS: usize = 500;

/// A node kind of the tree, and its URL word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A domain.
    Domain,
    /// A namespace.
    Namespace,
    /// A class.
    Class,
    /// An instance.
    Instance,
    /// A method.
    Method,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "domain" => Kind::Domain,
            "namespace" => Kind::Namespace,
            "class" => Kind::Class,
            "instance" => Kind::Instance,
            "method" => Kind::Method,
            _ => return None,
        })
    }

    /// The URL word and the name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::Namespace => "namespace",
            Kind::Class => "class",
            Kind::Instance => "instance",
            Kind::Method => "method",
        }
    }

    fn letter(self) -> &'static str {
        match self {
            Kind::Domain => "D",
            Kind::Namespace => "N",
            Kind::Class => "C",
            Kind::Instance => "I",
            Kind::Method => "M",
        }
    }
}

/// The page of the node of `kind` at the fully-qualified `segs`.
pub fn href(kind: Kind, segs: &[&str]) -> String {
    let mut out = format!("/ui/explorer/{}", kind.as_str());
    for s in segs {
        out.push('/');
        out.push_str(&url_encode(s, false));
    }
    out
}

pub(crate) fn class_segs(c: &ClassDef) -> Vec<&str> {
    let mut v: Vec<&str> = vec![&c.domain];
    v.extend(c.namespace.split('/').filter(|s| !s.is_empty()));
    v.push(&c.name);
    v
}

fn class_href(c: &ClassDef) -> String {
    href(Kind::Class, &class_segs(c))
}

pub(crate) fn member_href(kind: Kind, c: &ClassDef, name: &str) -> String {
    let mut segs = class_segs(c);
    segs.push(name);
    href(kind, &segs)
}

fn locked(source: Source) -> bool {
    matches!(source, Source::System | Source::UserLocked)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

// ---------------------------------------------------------------------------
// The tree

/// The tree's HTML: every domain, and open down to `open` (a node's
/// fully-qualified segments, its kind last-resolved) when given.
pub fn tree_html(index: &Index, open: &[&str], selected: Option<Kind>) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("<ul class=\"tree-root\">");
    for d in index.domains() {
        let name: &str = &d.name;
        let is_open = open.first().is_some_and(|f| f.eq_ignore_ascii_case(name));
        let rest = if is_open { &open[1..] } else { &[][..] };
        node_li(
            &mut out,
            Kind::Domain,
            name,
            &href(Kind::Domain, &[name]),
            Some(&format!("/{name}")),
            is_open,
            is_open && rest.is_empty() && selected == Some(Kind::Domain),
            |out| {
                if is_open {
                    children_html(index, &[name], rest, selected, out);
                }
            },
        );
    }
    out.push_str("</ul>");
    out
}

/// One tree node: the expander (when it has children), its link, and a
/// place for its children (filled when `open`).
#[allow(clippy::too_many_arguments)]
fn node_li(
    out: &mut String,
    kind: Kind,
    name: &str,
    link: &str,
    children_path: Option<&str>,
    open: bool,
    selected: bool,
    fill: impl FnOnce(&mut String),
) {
    out.push_str("<li><span class=\"node\">");
    match children_path {
        Some(p) => {
            out.push_str("<a class=\"exp\" href=\"");
            escape_into(link, out);
            out.push_str("\" hx-get=\"/ui/explorer/children?path=");
            out.push_str(&url_encode(p, true));
            out.push_str("\" hx-target=\"next .sub\" hx-swap=\"innerHTML\" aria-label=\"");
            out.push_str(if open { "Reload " } else { "Expand " });
            escape_into(name, out);
            out.push_str("\">");
            out.push_str(if open { "−" } else { "+" });
            out.push_str("</a>");
        }
        None => out.push_str("<span class=\"exp\" aria-hidden=\"true\"></span>"),
    }
    out.push_str("<a href=\"");
    escape_into(link, out);
    out.push('"');
    if selected {
        out.push_str(" aria-current=\"page\"");
    }
    out.push_str(" title=\"");
    out.push_str(kind.as_str());
    out.push_str("\"><span class=\"k k-");
    out.push_str(kind.as_str());
    out.push_str("\" aria-hidden=\"true\">");
    out.push_str(kind.letter());
    out.push_str("</span>");
    escape_into(name, out);
    out.push_str("</a></span><div class=\"sub\">");
    fill(out);
    out.push_str("</div></li>");
}

/// The children of the domain, namespace or class at `at` (fully
/// qualified), as a list; the one named by `open[0]` opened further.
fn children_html(
    index: &Index,
    at: &[&str],
    open: &[&str],
    selected: Option<Kind>,
    out: &mut String,
) {
    let Some((domain, ns)) = at.split_first() else {
        return;
    };
    // A class: its instances and methods.
    if let Some((class, ns_segs)) = ns.split_last() {
        if let Some(c) = index.class(&join_path(domain, &ns_segs.join("/")), class) {
            out.push_str("<ul>");
            for i in &c.instances {
                let sel = open.len() == 1
                    && open[0].eq_ignore_ascii_case(&i.name)
                    && selected == Some(Kind::Instance);
                node_li(
                    out,
                    Kind::Instance,
                    &i.name,
                    &member_href(Kind::Instance, c, &i.name),
                    None,
                    false,
                    sel,
                    |_| {},
                );
            }
            let mut methods: Vec<&Arc<MethodDef>> = c.methods().collect();
            methods.sort_by_key(|m| m.name.to_lowercase());
            for m in methods {
                let sel = open.len() == 1
                    && open[0].eq_ignore_ascii_case(&m.name)
                    && selected == Some(Kind::Method);
                node_li(
                    out,
                    Kind::Method,
                    &m.name,
                    &member_href(Kind::Method, c, &m.name),
                    None,
                    false,
                    sel,
                    |_| {},
                );
            }
            out.push_str("</ul>");
            return;
        }
    }
    let Some(children) = index.children(domain, &ns.join("/")) else {
        return;
    };
    out.push_str("<ul>");
    for n in &children.namespaces {
        let mut segs: Vec<&str> = at.to_vec();
        segs.push(n);
        let is_open = open.first().is_some_and(|f| f.eq_ignore_ascii_case(n));
        let rest = if is_open { &open[1..] } else { &[][..] };
        let path = format!("/{}", segs.join("/"));
        node_li(
            out,
            Kind::Namespace,
            n,
            &href(Kind::Namespace, &segs),
            Some(&path),
            is_open,
            is_open && rest.is_empty() && selected == Some(Kind::Namespace),
            |out| {
                if is_open {
                    children_html(index, &segs, rest, selected, out);
                }
            },
        );
    }
    for c in &children.classes {
        let segs = class_segs(c);
        let is_open = open
            .first()
            .is_some_and(|f| f.eq_ignore_ascii_case(&c.name));
        let rest = if is_open { &open[1..] } else { &[][..] };
        let path = format!("/{}", segs.join("/"));
        node_li(
            out,
            Kind::Class,
            &c.name,
            &class_href(c),
            Some(&path),
            is_open,
            is_open && rest.is_empty() && selected == Some(Kind::Class),
            |out| {
                if is_open {
                    children_html(index, &segs, rest, selected, out);
                }
            },
        );
    }
    out.push_str("</ul>");
}

// ---------------------------------------------------------------------------
// Shared page parts

/// One breadcrumb.
pub(crate) struct Crumb {
    pub(crate) label: String,
    pub(crate) href: Option<String>,
}

/// The breadcrumbs of the node at `segs` (the last one is the page).
pub(crate) fn crumbs(index: &Index, segs: &[&str], last_kind: Kind) -> Vec<Crumb> {
    let mut out = vec![Crumb {
        label: "Explorer".into(),
        href: Some("/ui/explorer".into()),
    }];
    for i in 0..segs.len() {
        let kind = if i + 1 == segs.len() {
            last_kind
        } else if i == 0 {
            Kind::Domain
        } else if index
            .class(&segs[..i].join("/"), segs[i])
            .is_some_and(|_| i + 2 == segs.len())
        {
            Kind::Class
        } else {
            Kind::Namespace
        };
        out.push(Crumb {
            label: segs[i].to_string(),
            href: (i + 1 < segs.len()).then(|| href(kind, &segs[..=i])),
        });
    }
    out
}

/// One row of a resolution table.
struct ResRow {
    domain: String,
    priority: i64,
    enabled: &'static str,
    class: &'static str,
    instance: &'static str,
    missing: &'static str,
    method: &'static str,
    outcome: String,
    winner: bool,
    href: Option<String>,
}

/// The domains a path resolves through (`templates/resolution.html`).
pub struct Resolution {
    path: String,
    /// Whether the path names an instance or method (else a class).
    named: bool,
    rows: Vec<ResRow>,
    summary: String,
    winner: String,
    winner_href: Option<String>,
}

/// The resolution of the partial `ns/class[/name]` through every domain,
/// highest priority first: ManageIQ's domain search (the first enabled
/// domain with the instance, else the first with `.missing`) and the
/// method overlay (the first enabled domain with the method).
pub fn resolution_rows(index: &Index, ns: &str, class: &str, name: Option<&str>) -> Resolution {
    let shown = match name {
        Some(n) => format!("/{}", join_path(&join_path(ns, class), n)),
        None => format!("/{}", join_path(ns, class)),
    };
    let inst_winner: Option<(&Arc<ClassDef>, bool)> = name.and_then(|n| {
        index
            .resolve(ns, class, n)
            .map(|c| (c, c.instance(n).is_some()))
    });
    let method_winner: Option<&Arc<ClassDef>> = name.and_then(|n| {
        index
            .classes_at(ns, class)
            .iter()
            .find(|c| c.method(n).is_some())
    });
    let class_winner = index.classes_at(ns, class).first();
    let mut rows = Vec::new();
    for d in index.domains() {
        let c = index.class(&join_path(&d.name, ns), class);
        let has_inst = name.is_some_and(|n| c.is_some_and(|c| c.instance(n).is_some()));
        let has_missing = c.is_some_and(|c| c.instance(MISSING).is_some());
        let has_method = name.is_some_and(|n| c.is_some_and(|c| c.method(n).is_some()));
        let is = |w: Option<&Arc<ClassDef>>| w.is_some_and(|w| w.domain == d.name);
        let mut winner = false;
        let outcome = if c.is_none() {
            "no such class".to_string()
        } else if !d.enabled {
            "skipped: the domain is disabled".to_string()
        } else if name.is_none() {
            if is(class_winner) {
                winner = true;
                "the class used first".to_string()
            } else {
                "searched after the domains above".to_string()
            }
        } else {
            let mut parts = Vec::new();
            match inst_winner {
                Some((w, exact)) if w.domain == d.name => {
                    winner = true;
                    parts.push(if exact {
                        "the instance used".to_string()
                    } else {
                        "its .missing is used: no enabled domain has the instance".to_string()
                    });
                }
                Some((w, true)) if has_inst => {
                    parts.push(format!("instance shadowed by {}", w.domain));
                }
                _ if has_inst => parts.push("has the instance".into()),
                _ => {}
            }
            if has_method {
                if is(method_winner) {
                    winner = true;
                    parts.push("the method used".into());
                } else if let Some(w) = method_winner {
                    parts.push(format!("method shadowed by {}", w.domain));
                }
            }
            if parts.is_empty() {
                if has_missing {
                    "only a .missing, used when no domain has the instance".into()
                } else {
                    "the class has neither".into()
                }
            } else {
                parts.join("; ")
            }
        };
        let href = c.map(|c| match name {
            Some(n) if c.instance(n).is_some() => member_href(Kind::Instance, c, n),
            Some(n) if c.method(n).is_some() => member_href(Kind::Method, c, n),
            _ => class_href(c),
        });
        rows.push(ResRow {
            domain: d.name.to_string(),
            priority: d.priority,
            enabled: yes_no(d.enabled),
            class: yes_no(c.is_some()),
            instance: yes_no(has_inst),
            missing: yes_no(has_missing),
            method: yes_no(has_method),
            outcome,
            winner,
            href,
        });
    }
    let (summary, winner, winner_href) = match (name, inst_winner, method_winner) {
        (Some(n), Some((c, true)), _) => (
            format!("{shown} resolves to the instance"),
            format!("/{}/{}", c.fq_namespace(), join_path(&c.name, n)),
            Some(member_href(Kind::Instance, c, n)),
        ),
        (Some(n), _, Some(c)) => (
            format!("{shown} resolves to the method"),
            format!("/{}/{}", c.fq_namespace(), join_path(&c.name, n)),
            Some(member_href(Kind::Method, c, n)),
        ),
        (Some(_), Some((c, false)), None) => (
            format!("No enabled domain has {shown}: the engine falls back to"),
            format!("/{}/{}", c.fq_namespace(), join_path(&c.name, MISSING)),
            Some(member_href(Kind::Instance, c, MISSING)),
        ),
        (Some(_), None, None) => (
            format!("{shown} resolves to nothing: no enabled domain has the instance, a .missing or the method."),
            String::new(),
            None,
        ),
        (None, _, _) => match class_winner {
            Some(c) => (
                format!("{shown} is searched first in"),
                c.fq_path(),
                Some(class_href(c)),
            ),
            None => (
                format!("No enabled domain has the class {shown}."),
                String::new(),
                None,
            ),
        },
    };
    Resolution {
        path: shown,
        named: name.is_some(),
        rows,
        summary,
        winner,
        winner_href,
    }
}

pub(crate) fn index_of(state: &UiState) -> Arc<Index> {
    state.engine().datastore().index()
}

pub(crate) fn not_found(session: &SessionInfo, what: String) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        Some(session),
        "Not found",
        format!("{what} Browse the tree, or search by name."),
    )
}

// ---------------------------------------------------------------------------
// Home

pub(crate) struct DomainRow {
    name: String,
    href: String,
    priority: i64,
    enabled: &'static str,
    locked: &'static str,
    source: &'static str,
    namespaces: usize,
    classes: usize,
    instances: usize,
    methods: usize,
}

#[derive(Template)]
#[template(path = "explorer_home.html")]
struct HomePage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    domains: Vec<DomainRow>,
}

/// `GET /ui/explorer`: the domains by priority and the tree.
pub(crate) async fn home(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
) -> Response {
    render_home(&state, &session)
}

fn render_home(state: &UiState, session: &SessionInfo) -> Response {
    let index = index_of(state);
    let domains = index
        .domains()
        .iter()
        .map(|d| DomainRow {
            name: d.name.to_string(),
            href: href(Kind::Domain, &[&d.name]),
            priority: d.priority,
            enabled: yes_no(d.enabled),
            locked: yes_no(locked(d.source)),
            source: d.source.as_str(),
            namespaces: d.counts.namespaces,
            classes: d.counts.classes,
            instances: d.counts.instances,
            methods: d.counts.methods,
        })
        .collect();
    html(
        &HomePage {
            layout: Layout::new("Automate Explorer", Some(session), "/ui/explorer"),
            crumbs: Vec::new(),
            tree: tree_html(&index, &[], None),
            query: String::new(),
            domains,
        },
        StatusCode::OK,
    )
}

// ---------------------------------------------------------------------------
// Nodes

pub(crate) struct ChildRow {
    name: String,
    kind: &'static str,
    href: String,
}

#[derive(Template)]
#[template(path = "explorer_container.html")]
struct ContainerPage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    heading: String,
    props: Vec<(String, String)>,
    children: Vec<ChildRow>,
}

pub(crate) struct FieldRow {
    name: String,
    aetype: &'static str,
    datatype: String,
    default: String,
    messages: String,
    substitute: &'static str,
    collect: String,
    on_entry: String,
    on_exit: String,
    on_error: String,
    max_retries: String,
    max_time: String,
}

pub(crate) struct NameLink {
    name: String,
    href: String,
}

pub(crate) struct MethodRow {
    name: String,
    href: String,
    language: String,
    location: String,
}

#[derive(Template)]
#[template(path = "explorer_class.html")]
struct ClassPage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    heading: String,
    props: Vec<(String, String)>,
    state_machine: bool,
    fields: Vec<FieldRow>,
    instances: Vec<NameLink>,
    methods: Vec<MethodRow>,
    resolution: Resolution,
}

pub(crate) struct ValueRow {
    name: String,
    aetype: &'static str,
    value: String,
    from_instance: bool,
    source: String,
    on_entry: String,
    on_exit: String,
    on_error: String,
    max_retries: String,
    max_time: String,
    collect: String,
    others: Vec<String>,
}

#[derive(Template)]
#[template(path = "explorer_instance.html")]
struct InstancePage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    heading: String,
    props: Vec<(String, String)>,
    notes: Vec<String>,
    state_machine: bool,
    values: Vec<ValueRow>,
    resolution: Resolution,
    flash: Option<Flash>,
    edit: crate::edit::Editable,
}

#[derive(Template)]
#[template(path = "explorer_method.html")]
struct MethodPage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    heading: String,
    props: Vec<(String, String)>,
    inputs: Vec<(String, String, String)>,
    language: String,
    source: Option<String>,
    no_source: String,
    resolution: Resolution,
    flash: Option<Flash>,
    edit: crate::edit::Editable,
}

/// The outcome of a save, shown once on the page it redirected to.
pub(crate) struct Flash {
    /// The message.
    pub text: String,
    /// A warning (the save worked, something after it did not).
    pub warning: bool,
}

/// The query of a node's page: `?edit` (the edit form) and `?saved=`
/// (the flash of the save that redirected here).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NodeQuery {
    edit: Option<String>,
    saved: Option<String>,
}

fn s(o: &Option<String>) -> String {
    o.clone().unwrap_or_default()
}

/// `GET /ui/explorer/{kind}/{*path}`: the page of a domain, namespace,
/// class, instance or method.
pub(crate) async fn node(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path((kind, path)): Path<(String, String)>,
    Query(q): Query<NodeQuery>,
) -> Response {
    if q.edit.is_some() {
        return crate::edit::edit_form(&state, &session, &kind, &path);
    }
    let flash = q.saved.as_deref().map(|s| crate::edit::flash(&state, s));
    render_node_with(&state, &session, &kind, &path, flash)
}

/// The page of the node `kind` at the fully-qualified `path`
/// (`Domain/ns/Class/name`), as `GET /ui/explorer/{kind}/{path}` answers
/// it (the benchmark calls it).
pub fn render_node(state: &UiState, session: &SessionInfo, kind: &str, path: &str) -> Response {
    render_node_with(state, session, kind, path, None)
}

fn render_node_with(
    state: &UiState,
    session: &SessionInfo,
    kind: &str,
    path: &str,
    flash: Option<Flash>,
) -> Response {
    let Some(kind) = Kind::parse(kind) else {
        return not_found(session, format!("There is no kind of node [{kind}]."));
    };
    let index = index_of(state);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(domain) = segs.first().and_then(|d| index.domain(d)) else {
        return not_found(session, format!("No domain holds /{}.", segs.join("/")));
    };
    let dname = domain.name.to_string();
    let mut segs = segs;
    segs[0] = &dname;
    let page_path = format!("/ui/explorer/{}", kind.as_str());
    match kind {
        Kind::Domain | Kind::Namespace => {
            let ns = segs[1..].join("/");
            if kind == Kind::Domain && segs.len() != 1 {
                return not_found(session, "A domain is one name.".into());
            }
            let Some(children) = index.children(&dname, &ns) else {
                return not_found(session, format!("No namespace /{}.", segs.join("/")));
            };
            let mut rows: Vec<ChildRow> = Vec::new();
            for n in &children.namespaces {
                let mut s2 = segs.clone();
                s2.push(n);
                rows.push(ChildRow {
                    name: n.clone(),
                    kind: "namespace",
                    href: href(Kind::Namespace, &s2),
                });
            }
            for c in &children.classes {
                rows.push(ChildRow {
                    name: c.name.clone(),
                    kind: "class",
                    href: class_href(c),
                });
            }
            let (heading, props) = if kind == Kind::Domain {
                let c = &domain.counts;
                (
                    format!("Domain {dname}"),
                    vec![
                        ("Priority".into(), domain.priority.to_string()),
                        ("Enabled".into(), yes_no(domain.enabled).into()),
                        ("Locked".into(), yes_no(locked(domain.source)).into()),
                        ("Source".into(), domain.source.as_str().into()),
                        ("Namespaces".into(), c.namespaces.to_string()),
                        ("Classes".into(), c.classes.to_string()),
                        ("Instances".into(), c.instances.to_string()),
                        ("Methods".into(), c.methods.to_string()),
                    ],
                )
            } else {
                (
                    format!("Namespace /{}", segs.join("/")),
                    vec![("Domain".into(), dname.clone())],
                )
            };
            html(
                &ContainerPage {
                    layout: Layout::new(heading.clone(), Some(session), &page_path),
                    crumbs: crumbs(&index, &segs, kind),
                    tree: tree_html(&index, &segs, Some(kind)),
                    query: String::new(),
                    heading,
                    props,
                    children: rows,
                },
                StatusCode::OK,
            )
        }
        Kind::Class => {
            let Some((class, ns)) = segs.split_last() else {
                return not_found(session, "No class.".into());
            };
            let Some(c) = index.class(&ns.join("/"), class) else {
                return not_found(session, format!("No class /{}.", segs.join("/")));
            };
            render_class(state, session, &index, c)
        }
        Kind::Instance | Kind::Method => {
            let (Some((name, rest)), true) = (segs.split_last(), segs.len() >= 3) else {
                return not_found(session, "Give Domain/namespace/Class/name.".into());
            };
            let Some((class, ns)) = rest.split_last() else {
                return not_found(session, "No class.".into());
            };
            let Some(c) = index.class(&ns.join("/"), class) else {
                return not_found(session, format!("No class /{}.", rest.join("/")));
            };
            if kind == Kind::Instance {
                match c.instance(name) {
                    Some(i) => render_instance(session, &index, c, i, flash),
                    None => not_found(
                        session,
                        format!("No instance {name} in class {}.", c.fq_path()),
                    ),
                }
            } else {
                match c.method(name) {
                    Some(m) => render_method(session, &index, c, m, flash),
                    None => not_found(
                        session,
                        format!("No method {name} in class {}.", c.fq_path()),
                    ),
                }
            }
        }
    }
}

fn render_class(
    _state: &UiState,
    session: &SessionInfo,
    index: &Index,
    c: &Arc<ClassDef>,
) -> Response {
    let segs = class_segs(c);
    let fields = c
        .fields
        .iter()
        .map(|f| FieldRow {
            name: f.name.clone(),
            aetype: f.aetype.as_str(),
            datatype: s(&f.datatype),
            default: s(&f.default_value),
            messages: f.messages.join(", "),
            substitute: yes_no(f.substitute),
            collect: s(&f.collect),
            on_entry: s(&f.on_entry),
            on_exit: s(&f.on_exit),
            on_error: s(&f.on_error),
            max_retries: s(&f.max_retries),
            max_time: s(&f.max_time),
        })
        .collect();
    let instances = c
        .instances
        .iter()
        .map(|i| NameLink {
            name: i.name.clone(),
            href: member_href(Kind::Instance, c, &i.name),
        })
        .collect();
    let mut methods: Vec<&Arc<MethodDef>> = c.methods().collect();
    methods.sort_by_key(|m| m.name.to_lowercase());
    let methods = methods
        .into_iter()
        .map(|m| MethodRow {
            name: m.name.clone(),
            href: member_href(Kind::Method, c, &m.name),
            language: m.language.clone(),
            location: m.location.clone(),
        })
        .collect();
    let heading = format!("Class {}", c.fq_path());
    html(
        &ClassPage {
            layout: Layout::new(heading.clone(), Some(session), "/ui/explorer/class"),
            crumbs: crumbs(index, &segs, Kind::Class),
            tree: tree_html(index, &segs, Some(Kind::Class)),
            query: String::new(),
            heading,
            props: vec![
                ("Domain".into(), c.domain.to_string()),
                ("Namespace".into(), c.namespace.clone()),
                ("State machine".into(), yes_no(c.is_state_machine()).into()),
            ],
            state_machine: c.is_state_machine(),
            fields,
            instances,
            methods,
            resolution: resolution_rows(index, &c.namespace, &c.name, None),
        },
        StatusCode::OK,
    )
}

fn render_instance(
    session: &SessionInfo,
    index: &Index,
    c: &Arc<ClassDef>,
    i: &InstanceDef,
    flash: Option<Flash>,
) -> Response {
    let mut segs = class_segs(c);
    segs.push(&i.name);
    // The same instance in the other domains, highest priority first.
    let others: Vec<(&Arc<ClassDef>, &InstanceDef)> = index
        .domains()
        .iter()
        .filter(|d| d.name != c.domain)
        .filter_map(|d| {
            let oc = index.class(&join_path(&d.name, &c.namespace), &c.name)?;
            Some((oc, oc.instance(&i.name)?))
        })
        .collect();
    let others_merged: Vec<(&Arc<ClassDef>, Vec<describe::MergedValue<'_>>)> = others
        .iter()
        .map(|(oc, oi)| (*oc, describe::merged_values(oc, oi)))
        .collect();
    let values = describe::merged_values(c, i)
        .into_iter()
        .map(|m| {
            let value = m.value.clone().unwrap_or_default();
            let other_values = others_merged
                .iter()
                .filter_map(|(oc, vals)| {
                    let ov = vals
                        .iter()
                        .find(|v| v.field.name.eq_ignore_ascii_case(&m.field.name))?;
                    let shown = ov.value.clone().unwrap_or_default();
                    (shown != value).then(|| {
                        format!(
                            "{}: {} ({})",
                            oc.domain,
                            if shown.is_empty() { "(nil)" } else { &shown },
                            if ov.from_instance {
                                "instance"
                            } else {
                                "class default"
                            }
                        )
                    })
                })
                .collect();
            ValueRow {
                name: m.field.name.clone(),
                aetype: m.field.aetype.as_str(),
                value,
                from_instance: m.from_instance,
                source: if m.from_instance {
                    format!("instance in {}", c.domain)
                } else {
                    format!("class default in {}", c.domain)
                },
                on_entry: s(&m.on_entry),
                on_exit: s(&m.on_exit),
                on_error: s(&m.on_error),
                max_retries: s(&m.max_retries),
                max_time: s(&m.max_time),
                collect: s(&m.collect),
                others: other_values,
            }
        })
        .collect();
    let mut notes = Vec::new();
    if i.name == MISSING {
        notes.push(format!(
            "This is the class's fallback: the engine uses it for any name of {} that no enabled domain has as an instance.",
            c.fq_path()
        ));
    }
    match index.resolve(&c.namespace, &c.name, &i.name) {
        Some(w) if w.domain != c.domain => notes.push(format!(
            "Shadowed: for /{} the engine uses the instance in domain {}.",
            join_path(&join_path(&c.namespace, &c.name), &i.name),
            w.domain
        )),
        None => notes.push(format!(
            "Domain {} is disabled: the engine does not search it for partial paths.",
            c.domain
        )),
        _ => {}
    }
    if !i.unknown_fields.is_empty() {
        notes.push(format!(
            "Values for fields the class does not define (ignored): {}.",
            i.unknown_fields.join(", ")
        ));
    }
    let heading = format!("Instance {}/{}", c.fq_path(), i.name);
    html(
        &InstancePage {
            layout: Layout::new(heading.clone(), Some(session), "/ui/explorer/instance"),
            crumbs: crumbs(index, &segs, Kind::Instance),
            tree: tree_html(index, &segs, Some(Kind::Instance)),
            query: String::new(),
            heading,
            props: vec![
                ("Domain".into(), c.domain.to_string()),
                ("Class".into(), c.fq_path()),
            ],
            notes,
            state_machine: c.is_state_machine(),
            values,
            resolution: resolution_rows(index, &c.namespace, &c.name, Some(&i.name)),
            flash,
            edit: crate::edit::instance_editable(index, c, &i.name),
        },
        StatusCode::OK,
    )
}

fn render_method(
    session: &SessionInfo,
    index: &Index,
    c: &Arc<ClassDef>,
    m: &Arc<MethodDef>,
    flash: Option<Flash>,
) -> Response {
    let mut segs = class_segs(c);
    segs.push(&m.name);
    let mut props = vec![
        ("Domain".to_string(), c.domain.to_string()),
        ("Class".to_string(), c.fq_path()),
        ("Location".to_string(), m.location.clone()),
        ("Language".to_string(), m.language.clone()),
        ("Scope".to_string(), m.scope.clone()),
    ];
    if !m.embedded_methods.is_empty() {
        props.push(("Embedded methods".into(), m.embedded_methods.join(", ")));
    }
    let inputs = m
        .inputs
        .iter()
        .map(|f| (f.name.clone(), s(&f.datatype), s(&f.default_value)))
        .collect();
    let source = m
        .body
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(|b| crate::highlight::highlight(&m.language, b));
    let no_source = match m.location.as_str() {
        "builtin" => "A builtin: it runs natively, there is no source.".to_string(),
        _ if m.language.eq_ignore_ascii_case("ruby") => {
            "The Ruby body was not imported (a ManageIQ export without it); it never runs here: port it to Rhai.".to_string()
        }
        _ => "No body.".to_string(),
    };
    let heading = format!("Method {}", m.fqname);
    html(
        &MethodPage {
            layout: Layout::new(heading.clone(), Some(session), "/ui/explorer/method"),
            crumbs: crumbs(index, &segs, Kind::Method),
            tree: tree_html(index, &segs, Some(Kind::Method)),
            query: String::new(),
            heading,
            props,
            inputs,
            language: m.language.clone(),
            source,
            no_source,
            resolution: resolution_rows(index, &c.namespace, &c.name, Some(&m.name)),
            flash,
            edit: crate::edit::method_editable(index, c, m),
        },
        StatusCode::OK,
    )
}

// ---------------------------------------------------------------------------
// The tree fragment

/// `?path=` of the children fragment and the resolve page.
#[derive(Debug, Deserialize)]
pub(crate) struct PathQuery {
    path: Option<String>,
}

/// `GET /ui/explorer/children?path=/Domain/ns`: the children of a tree
/// node as a list (what htmx puts under the node).
pub(crate) async fn children(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Query(q): Query<PathQuery>,
) -> Response {
    let index = index_of(&state);
    let path = q.path.unwrap_or_default();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(d) = segs.first().and_then(|d| index.domain(d)) else {
        return not_found(&session, format!("No domain holds {path}."));
    };
    let dname = d.name.to_string();
    let mut segs = segs;
    segs[0] = &dname;
    let mut out = String::new();
    children_html(&index, &segs, &[], None, &mut out);
    let mut res = axum::response::IntoResponse::into_response(axum::response::Html(out));
    res.headers_mut().insert(
        axum::http::header::VARY,
        axum::http::HeaderValue::from_static("HX-Request"),
    );
    res
}

// ---------------------------------------------------------------------------
// Search

/// `?q=` of the search page.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    q: Option<String>,
}

pub(crate) struct SearchRow {
    name: String,
    kind: &'static str,
    path: String,
    href: String,
    domain: String,
}

#[derive(Template)]
#[template(path = "explorer_search.html")]
struct SearchPage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    summary: String,
    results: Vec<SearchRow>,
}

/// Every namespace, class, instance and method whose name contains
/// `query` (case-insensitively), domains by priority, at most
/// [`MAX_RESULTS`]; and whether there were more.
pub fn search_index(index: &Index, query: &str) -> (Vec<SearchResult>, bool) {
    let q = query.to_lowercase();
    let mut out = Vec::new();
    let mut more = false;
    let mut push = |r: SearchResult, out: &mut Vec<SearchResult>| {
        if out.len() < MAX_RESULTS {
            out.push(r);
        } else {
            more = true;
        }
    };
    let mut classes: Vec<&Arc<ClassDef>> = index.all_classes().collect();
    classes.sort_by_key(|c| c.fq_path().to_lowercase());
    for d in index.domains() {
        for ns in index.namespaces(&d.name) {
            let last = ns.rsplit('/').next().unwrap_or(ns);
            if last.to_lowercase().contains(&q) {
                let mut segs: Vec<&str> = vec![&d.name];
                segs.extend(ns.split('/'));
                push(
                    SearchResult {
                        kind: Kind::Namespace,
                        name: last.to_string(),
                        path: format!("/{}", segs.join("/")),
                        href: href(Kind::Namespace, &segs),
                        domain: d.name.to_string(),
                    },
                    &mut out,
                );
            }
        }
        for c in classes.iter().filter(|c| c.domain == d.name) {
            if c.name.to_lowercase().contains(&q) {
                push(
                    SearchResult {
                        kind: Kind::Class,
                        name: c.name.clone(),
                        path: c.fq_path(),
                        href: class_href(c),
                        domain: d.name.to_string(),
                    },
                    &mut out,
                );
            }
            for i in &c.instances {
                if i.name.to_lowercase().contains(&q) {
                    push(
                        SearchResult {
                            kind: Kind::Instance,
                            name: i.name.clone(),
                            path: format!("{}/{}", c.fq_path(), i.name),
                            href: member_href(Kind::Instance, c, &i.name),
                            domain: d.name.to_string(),
                        },
                        &mut out,
                    );
                }
            }
            let mut methods: Vec<&Arc<MethodDef>> = c.methods().collect();
            methods.sort_by_key(|m| m.name.to_lowercase());
            for m in methods {
                if m.name.to_lowercase().contains(&q) {
                    push(
                        SearchResult {
                            kind: Kind::Method,
                            name: m.name.clone(),
                            path: m.fqname.clone(),
                            href: member_href(Kind::Method, c, &m.name),
                            domain: d.name.to_string(),
                        },
                        &mut out,
                    );
                }
            }
        }
    }
    (out, more)
}

/// One search match.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// What it is.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its fully-qualified path.
    pub path: String,
    /// Its page.
    pub href: String,
    /// Its domain.
    pub domain: String,
}

/// `GET /ui/explorer/search?q=name`.
pub(crate) async fn search(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Query(q): Query<SearchQuery>,
) -> Response {
    render_search(&state, &session, q.q.as_deref().unwrap_or(""))
}

/// The search page for `query`, as `GET /ui/explorer/search?q=` answers.
pub fn render_search(state: &UiState, session: &SessionInfo, query: &str) -> Response {
    let index = index_of(state);
    let query = query.trim().to_string();
    let (results, more) = if query.is_empty() {
        (Vec::new(), false)
    } else {
        search_index(&index, &query)
    };
    let summary = match (results.len(), more) {
        (0, _) => format!("Nothing is named like “{query}”."),
        (n, false) => format!("{n} match(es) for “{query}”."),
        (n, true) => format!("The first {n} matches for “{query}”; narrow the search."),
    };
    let results = results
        .into_iter()
        .map(|r| SearchRow {
            name: r.name,
            kind: r.kind.as_str(),
            path: r.path,
            href: r.href,
            domain: r.domain,
        })
        .collect();
    html(
        &SearchPage {
            layout: Layout::new(
                if query.is_empty() {
                    "Search".to_string()
                } else {
                    format!("Search: {query}")
                },
                Some(session),
                "/ui/explorer/search",
            ),
            crumbs: vec![
                Crumb {
                    label: "Explorer".into(),
                    href: Some("/ui/explorer".into()),
                },
                Crumb {
                    label: "Search".into(),
                    href: None,
                },
            ],
            tree: tree_html(&index, &[], None),
            query,
            summary,
            results,
        },
        StatusCode::OK,
    )
}

// ---------------------------------------------------------------------------
// Resolve

#[derive(Template)]
#[template(path = "explorer_resolve.html")]
struct ResolvePage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    asked: String,
    error: Option<String>,
    resolution: Option<Resolution>,
}

/// The path part of what a user may paste: `miqaedb:/A/B/C?x=1#create`
/// → `A/B/C` segments.
fn path_segments(asked: &str) -> Vec<&str> {
    let p = asked.trim();
    let p = p
        .strip_prefix("miqaedb:")
        .or_else(|| p.strip_prefix("miqaews:"))
        .unwrap_or(p);
    let p = p.split(['?', '#']).next().unwrap_or("");
    p.split('/').filter(|s| !s.is_empty()).collect()
}

/// The resolution of any path: a fully-qualified one (its first segment
/// a domain) is shown as the partial path it overlays.
pub fn resolve_path(index: &Index, asked: &str) -> Result<Resolution, String> {
    let segs = path_segments(asked);
    if segs.len() < 2 {
        return Err("Give at least namespace/Class, such as /System/Process/Event.".into());
    }
    let rel: &[&str] = match segs.first() {
        Some(first) if segs.len() > 2 && index.domain(first).is_some() => &segs[1..],
        _ => &segs,
    };
    let (last, parent) = rel.split_last().ok_or("empty path")?;
    // A class at the whole path?
    if !index.classes_at(&parent.join("/"), last).is_empty()
        || index.domains().iter().any(|d| {
            index
                .class(&join_path(&d.name, &parent.join("/")), last)
                .is_some()
        })
    {
        return Ok(resolution_rows(index, &parent.join("/"), last, None));
    }
    let Some((class, ns)) = parent.split_last() else {
        return Err(format!("No class {}.", asked.trim()));
    };
    let name = last.strip_suffix("()").unwrap_or(last);
    let r = resolution_rows(index, &ns.join("/"), class, Some(name));
    if r.rows.iter().all(|row| row.class == "no") {
        return Err(format!(
            "No domain has the class /{}.",
            join_path(&ns.join("/"), class)
        ));
    }
    Ok(r)
}

/// `GET /ui/explorer/resolve?path=/System/Process/Event`.
pub(crate) async fn resolve(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Query(q): Query<PathQuery>,
) -> Response {
    render_resolve(&state, &session, q.path.as_deref().unwrap_or(""))
}

/// The resolve page for `asked`, as `GET /ui/explorer/resolve?path=`
/// answers.
pub fn render_resolve(state: &UiState, session: &SessionInfo, asked: &str) -> Response {
    let index = index_of(state);
    let (resolution, error) = if asked.trim().is_empty() {
        (None, None)
    } else {
        match resolve_path(&index, asked) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        }
    };
    let status = if error.is_some() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    html(
        &ResolvePage {
            layout: Layout::new("Resolve a path", Some(session), "/ui/explorer/resolve"),
            crumbs: vec![
                Crumb {
                    label: "Explorer".into(),
                    href: Some("/ui/explorer".into()),
                },
                Crumb {
                    label: "Resolve".into(),
                    href: None,
                },
            ],
            tree: tree_html(&index, &[], None),
            query: String::new(),
            asked: asked.trim().to_string(),
            error,
            resolution,
        },
        status,
    )
}
