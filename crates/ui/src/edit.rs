//! The Automate Explorer, write side: editing an instance's values and an
//! inline Rhai method's body in place, in unlocked domains.
//!
//! `GET /ui/explorer/{instance|method}/{*path}?edit` is the form (plain
//! HTML, no JavaScript needed); its `POST` to the same path (CSRF-checked
//! by the guard) validates and writes through
//! [`automate_datastore::edit`] (field names from the class's schema,
//! values that read back as written, one file replaced atomically in
//! ManageIQ's export layout), checks a method body with the service's own
//! Rhai runner first ([`automate_datastore::Reload::method_problems`]: a
//! compile error is shown at its line and column, the line marked in the
//! listing, nothing written), then reloads the datastore through the same
//! reloader as `POST /api/automate_domains {"action": "reload"}`, so the
//! next instantiation uses the change at once, and redirects (303) back to
//! the page with a flash (`?saved=`). A domain whose `source` is `system`,
//! `user_locked` or `remote` is read-only: its pages say why and point to
//! copying the object to an unlocked domain that overlays it.

use crate::explorer::{
    class_segs, crumbs, index_of, member_href, not_found, tree_html, Crumb, Flash, Kind,
};
use crate::page::{error_page, html, Layout};
use crate::session::SessionInfo;
use crate::UiState;
use askama::Template;
use automate_datastore::describe;
use automate_datastore::edit::{self as ds_edit, EditError, Edited};
use automate_datastore::index::{join_path, ClassDef, Index, MethodDef};
use automate_datastore::Problem;
use axum::extract::{Extension, Form, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, OnceLock};

/// Whether a page offers its edit form, and why not when it does not.
pub(crate) struct Editable {
    /// The edit form's URL, when the object can be edited.
    pub href: Option<String>,
    /// Why it cannot be, when it cannot.
    pub why_not: Option<String>,
}

fn read_only_reason(index: &Index, c: &ClassDef, what: &str) -> Option<String> {
    let d = index.domain(&c.domain)?;
    d.source.is_read_only().then(|| {
        format!(
            "Read-only: domain {} is {} (system, user_locked and remote domains are never changed here). \
             To change this {what}, copy it to an unlocked domain of higher priority: the copy there overlays this one.",
            d.name,
            d.source.as_str()
        )
    })
}

/// Whether the instance `name` of `c` can be edited.
pub(crate) fn instance_editable(index: &Index, c: &ClassDef, name: &str) -> Editable {
    match read_only_reason(index, c, "instance") {
        Some(why) => Editable {
            href: None,
            why_not: Some(why),
        },
        None => Editable {
            href: Some(format!("{}?edit", member_href(Kind::Instance, c, name))),
            why_not: None,
        },
    }
}

fn method_why_not(index: &Index, c: &ClassDef, m: &MethodDef) -> Option<String> {
    read_only_reason(index, c, "method").or_else(|| {
        (!m.language.eq_ignore_ascii_case("rhai") || m.location != "inline").then(|| {
            format!(
                "Only inline Rhai methods are edited here; this one is {} ({}).",
                m.language, m.location
            )
        })
    })
}

/// Whether the method `m` of `c` can be edited.
pub(crate) fn method_editable(index: &Index, c: &ClassDef, m: &MethodDef) -> Editable {
    match method_why_not(index, c, m) {
        Some(why) => Editable {
            href: None,
            why_not: Some(why),
        },
        None => Editable {
            href: Some(format!("{}?edit", member_href(Kind::Method, c, &m.name))),
            why_not: None,
        },
    }
}

/// The flash of `?saved=code`.
pub(crate) fn flash(state: &UiState, code: &str) -> Flash {
    match code {
        "unchanged" => Flash {
            text: "Nothing changed: the values were already these.".into(),
            warning: false,
        },
        "reload_failed" => {
            let problems = state
                .api()
                .and_then(|a| a.reloader())
                .and_then(|r| r.last())
                .filter(|r| !r.ok)
                .map(|r| {
                    r.problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| "see evm.log".into());
            Flash {
                text: format!(
                    "Saved, but the datastore did not reload, so the engine still runs the previous one: {problems}"
                ),
                warning: true,
            }
        }
        _ => Flash {
            text: "Saved.".into(),
            warning: false,
        },
    }
}

/// The class and the member name of a fully-qualified
/// `Domain/ns.../Class/name` path (the domain name as the index spells it).
fn lookup(index: &Index, path: &str) -> Result<(Arc<ClassDef>, String), String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(domain) = segs.first().and_then(|d| index.domain(d)) else {
        return Err(format!("No domain holds /{}.", segs.join("/")));
    };
    if segs.len() < 4 {
        return Err("Give Domain/namespace/Class/name.".into());
    }
    let ns = format!("{}/{}", domain.name, segs[1..segs.len() - 2].join("/"));
    let class = segs[segs.len() - 2];
    match index.class(&ns, class) {
        Some(c) => Ok((c.clone(), segs[segs.len() - 1].to_string())),
        None => Err(format!("No class /{ns}/{class}.")),
    }
}

// ---------------------------------------------------------------------------
// The forms

/// One row of the instance form.
pub(crate) struct EditRow {
    id: String,
    name: String,
    aetype: &'static str,
    datatype: String,
    value: String,
    default: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "explorer_instance_edit.html")]
struct InstanceEditPage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    heading: String,
    action: String,
    back: String,
    error: Option<String>,
    rows: Vec<EditRow>,
}

/// One compile problem of a method body.
pub(crate) struct ProblemRow {
    line: usize,
    col: usize,
    message: String,
}

#[derive(Template)]
#[template(path = "explorer_method_edit.html")]
struct MethodEditPage {
    layout: Layout,
    crumbs: Vec<Crumb>,
    tree: String,
    query: String,
    heading: String,
    fqname: String,
    action: String,
    back: String,
    body: String,
    rows: usize,
    error: Option<String>,
    problems: Vec<ProblemRow>,
    listing: Option<String>,
}

/// `GET /ui/explorer/{kind}/{*path}?edit`: the edit form of an instance
/// or a method (a read-only object answers 403 saying why).
pub(crate) fn edit_form(
    state: &UiState,
    session: &SessionInfo,
    kind: &str,
    path: &str,
) -> Response {
    let index = index_of(state);
    let (c, name) = match lookup(&index, path) {
        Ok(x) => x,
        Err(e) => return not_found(session, e),
    };
    match kind {
        "instance" => {
            let Some(i) = c.instance(&name) else {
                return not_found(
                    session,
                    format!("No instance {name} in class {}.", c.fq_path()),
                );
            };
            let name = i.name.clone();
            instance_form(
                state,
                session,
                &index,
                &c,
                &name,
                None,
                None,
                StatusCode::OK,
            )
        }
        "method" => {
            let Some(m) = c.method(&name) else {
                return not_found(
                    session,
                    format!("No method {name} in class {}.", c.fq_path()),
                );
            };
            let body = m.body.as_deref().unwrap_or("").to_string();
            method_form(
                state,
                session,
                &index,
                &c,
                m,
                body,
                None,
                Vec::new(),
                StatusCode::OK,
            )
        }
        _ => not_found(session, format!("A {kind} has no edit form.")),
    }
}

/// The instance form; `submitted` (field → text) replaces the values
/// shown, `error` is `(field or None, message)`.
#[allow(clippy::too_many_arguments)]
fn instance_form(
    _state: &UiState,
    session: &SessionInfo,
    index: &Index,
    c: &Arc<ClassDef>,
    name: &str,
    submitted: Option<&[(String, String)]>,
    error: Option<(Option<String>, String)>,
    status: StatusCode,
) -> Response {
    if let Some(why) = read_only_reason(index, c, "instance") {
        return error_page(StatusCode::FORBIDDEN, Some(session), "Read-only", why);
    }
    let Some(i) = c.instance(name) else {
        return not_found(
            session,
            format!("No instance {name} in class {}.", c.fq_path()),
        );
    };
    let mut segs = class_segs(c);
    segs.push(&i.name);
    let (field_error, top_error) = match error {
        Some((Some(f), msg)) if c.fields.iter().any(|x| x.name.eq_ignore_ascii_case(&f)) => (
            Some((f, msg.clone())),
            Some(format!("Nothing was saved: {msg}")),
        ),
        Some((Some(f), msg)) => (None, Some(format!("Nothing was saved: {f}: {msg}"))),
        Some((None, msg)) => (None, Some(format!("Nothing was saved: {msg}"))),
        None => (None, None),
    };
    let rows = describe::merged_values(c, i)
        .into_iter()
        .enumerate()
        .map(|(n, m)| {
            let own = if m.from_instance {
                m.value.clone().unwrap_or_default()
            } else {
                String::new()
            };
            let value = submitted
                .and_then(|s| {
                    s.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&m.field.name))
                })
                .map(|(_, v)| v.clone())
                .unwrap_or(own);
            EditRow {
                id: format!("f-{n}"),
                name: m.field.name.clone(),
                aetype: m.field.aetype.as_str(),
                datatype: m.field.datatype.clone().unwrap_or_default(),
                value,
                default: m.field.default_value.clone().unwrap_or_default(),
                error: field_error
                    .as_ref()
                    .filter(|(f, _)| f.eq_ignore_ascii_case(&m.field.name))
                    .map(|(_, msg)| msg.clone()),
            }
        })
        .collect();
    let page = member_href(Kind::Instance, c, &i.name);
    let heading = format!("Edit instance {}/{}", c.fq_path(), i.name);
    html(
        &InstanceEditPage {
            layout: Layout::new(heading.clone(), Some(session), "/ui/explorer/instance"),
            crumbs: crumbs(index, &segs, Kind::Instance),
            tree: tree_html(index, &segs, Some(Kind::Instance)),
            query: String::new(),
            heading,
            action: page.clone(),
            back: page,
            error: top_error,
            rows,
        },
        status,
    )
}

/// The method form showing `body`; with compile `problems`, the listing
/// of `body` with the first problem's line marked.
#[allow(clippy::too_many_arguments)]
fn method_form(
    _state: &UiState,
    session: &SessionInfo,
    index: &Index,
    c: &Arc<ClassDef>,
    m: &MethodDef,
    body: String,
    error: Option<String>,
    problems: Vec<Problem>,
    status: StatusCode,
) -> Response {
    if let Some(why) = method_why_not(index, c, m) {
        return error_page(StatusCode::FORBIDDEN, Some(session), "Not editable", why);
    }
    let mut segs = class_segs(c);
    segs.push(&m.name);
    let listing = problems
        .first()
        .map(|p| mark_line(&crate::highlight::highlight(&m.language, &body), p));
    let problems: Vec<ProblemRow> = problems
        .iter()
        .map(|p| ProblemRow {
            line: p.line,
            col: p.column,
            message: p.message.clone(),
        })
        .collect();
    let page = member_href(Kind::Method, c, &m.name);
    let heading = format!("Edit method {}", m.fqname);
    html(
        &MethodEditPage {
            layout: Layout::new(heading.clone(), Some(session), "/ui/explorer/method"),
            crumbs: crumbs(index, &segs, Kind::Method),
            tree: tree_html(index, &segs, Some(Kind::Method)),
            query: String::new(),
            heading,
            fqname: m.fqname.clone(),
            action: page.clone(),
            back: page,
            rows: body.lines().count().clamp(12, 40) + 2,
            body,
            error,
            problems,
            listing,
        },
        status,
    )
}

/// `highlighted` (the highlighter's lines) with line `p.line` marked as
/// the error (`id="err-line"`) and the message after it.
fn mark_line(highlighted: &str, p: &Problem) -> String {
    let mut out = String::with_capacity(highlighted.len() + 256);
    for (n, line) in highlighted.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        if n + 1 == p.line {
            let rest = line.strip_prefix("<span class=\"ln\">").unwrap_or(line);
            out.push_str("<span class=\"ln err\" id=\"err-line\">");
            let inner = rest.strip_suffix("</span>").unwrap_or(rest);
            out.push_str(inner);
            out.push_str("<span class=\"err-note\"> ◀ ");
            if p.column > 0 {
                out.push_str(&format!("column {}: ", p.column));
            }
            crate::page::escape_into(&p.message, &mut out);
            out.push_str("</span></span>");
        } else {
            out.push_str(line);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Saving

/// A runner with the default limits, for a service without a reloader
/// (the render benchmark): the same engine configuration
/// `automate_methods` builds.
fn fallback_runner() -> &'static automate_methods::RhaiRunner {
    static RUNNER: OnceLock<automate_methods::RhaiRunner> = OnceLock::new();
    RUNNER.get_or_init(automate_methods::RhaiRunner::new)
}

/// Reloads the datastore as `POST /api/automate_domains {"action":
/// "reload"}` does; whether the new index is in.
async fn reload(state: &UiState) -> bool {
    let state = state.clone();
    tokio::task::spawn_blocking(move || match state.api().and_then(|a| a.reloader()) {
        Some(r) => r.reload().ok,
        None => state.engine().datastore().reload().is_empty(),
    })
    .await
    .unwrap_or(false)
}

fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// After a write: reload, and back to the page with the flash.
async fn saved(state: &UiState, page: &str, edited: Edited) -> Response {
    let code = if edited.changed.is_empty() {
        "unchanged"
    } else if reload(state).await {
        "saved"
    } else {
        "reload_failed"
    };
    see_other(&format!("{page}?saved={code}"))
}

fn status_of(e: &EditError) -> StatusCode {
    match e {
        EditError::ReadOnly(_) | EditError::NotRhai { .. } => StatusCode::FORBIDDEN,
        EditError::NotFound { .. } | EditError::BadPath { .. } => StatusCode::NOT_FOUND,
        EditError::BadValue { .. } | EditError::Compile(_) | EditError::Unreadable(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        EditError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST /ui/explorer/{instance|method}/{*path}`: saves the edit form
/// (fields `value:<field>` of an instance, `body` of a method).
pub(crate) async fn save(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path((kind, path)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let index = index_of(&state);
    let (c, name) = match lookup(&index, &path) {
        Ok(x) => x,
        Err(e) => return not_found(&session, e),
    };
    let root = state.engine().datastore().root().to_path_buf();
    match kind.as_str() {
        "instance" => {
            let Some(i) = c.instance(&name) else {
                return not_found(
                    &session,
                    format!("No instance {name} in class {}.", c.fq_path()),
                );
            };
            if let Some(why) = read_only_reason(&index, &c, "instance") {
                return error_page(StatusCode::FORBIDDEN, Some(&session), "Read-only", why);
            }
            let name = i.name.clone();
            let changes: Vec<(String, String)> = form
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("value:")?.to_string(), v.clone())))
                .collect();
            let fq = format!("{}/{}", join_path(c.fq_namespace(), &c.name), name);
            let ch = changes.clone();
            let result =
                tokio::task::spawn_blocking(move || ds_edit::set_instance_values(&root, &fq, &ch))
                    .await;
            match result {
                Ok(Ok(edited)) => {
                    saved(&state, &member_href(Kind::Instance, &c, &name), edited).await
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "evm", "MIQ(ui) saving instance {path} refused: {e}");
                    let status = status_of(&e);
                    let err = match e {
                        EditError::BadValue { field, message } => (Some(field), message),
                        e => (None, e.to_string()),
                    };
                    instance_form(
                        &state,
                        &session,
                        &index,
                        &c,
                        &name,
                        Some(&changes),
                        Some(err),
                        status,
                    )
                }
                Err(e) => internal(&session, e),
            }
        }
        "method" => {
            let Some(m) = c.method(&name).cloned() else {
                return not_found(
                    &session,
                    format!("No method {name} in class {}.", c.fq_path()),
                );
            };
            if let Some(why) = method_why_not(&index, &c, &m) {
                return error_page(StatusCode::FORBIDDEN, Some(&session), "Not editable", why);
            }
            // A textarea sends CRLF line ends; files keep LF.
            let body = form
                .iter()
                .find(|(k, _)| k == "body")
                .map(|(_, v)| v.replace("\r\n", "\n"))
                .unwrap_or_default();
            let fq = format!("{}/{}", join_path(c.fq_namespace(), &c.name), m.name);
            let st = state.clone();
            let b = body.clone();
            let result = tokio::task::spawn_blocking(move || {
                let reloader = st.api().and_then(|a| a.reloader()).cloned();
                let check = move |meth: &automate_datastore::Method, p: &std::path::Path| {
                    reloader
                        .as_ref()
                        .and_then(|r| r.method_problems(meth, p))
                        .unwrap_or_else(|| fallback_runner().method_problems(meth, p))
                };
                ds_edit::set_method_body(&root, &fq, &b, &check)
            })
            .await;
            match result {
                Ok(Ok(edited)) => {
                    saved(&state, &member_href(Kind::Method, &c, &m.name), edited).await
                }
                Ok(Err(EditError::Compile(problems))) => {
                    tracing::info!(target: "evm", "MIQ(ui) method {path} not saved: it does not compile");
                    method_form(
                        &state,
                        &session,
                        &index,
                        &c,
                        &m,
                        body,
                        Some("The method does not compile; nothing was saved.".into()),
                        problems,
                        StatusCode::UNPROCESSABLE_ENTITY,
                    )
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "evm", "MIQ(ui) saving method {path} refused: {e}");
                    let status = status_of(&e);
                    method_form(
                        &state,
                        &session,
                        &index,
                        &c,
                        &m,
                        body,
                        Some(format!("Nothing was saved: {e}")),
                        Vec::new(),
                        status,
                    )
                }
                Err(e) => internal(&session, e),
            }
        }
        _ => not_found(&session, format!("A {kind} cannot be edited here.")),
    }
}

fn internal(session: &SessionInfo, e: impl std::fmt::Display) -> Response {
    tracing::error!(target: "evm", "MIQ(ui) an edit failed: {e}");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(session),
        "Not saved",
        "The edit failed; see evm.log.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_is_marked_in_the_listing() {
        let h = crate::highlight::highlight("rhai", "let a = 1;\nlet b = ;\nMIQ_OK\n");
        let p = Problem::new(
            std::path::Path::new("m.rhai"),
            "Rhai syntax error: oops <x>",
        )
        .at_line(2);
        let out = mark_line(&h, &p);
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("<span class=\"ln err\" id=\"err-line\">"),
            "{out}"
        );
        assert!(lines[1].contains("oops &lt;x&gt;"), "{out}");
        assert!(lines[0].starts_with("<span class=\"ln\">"), "{out}");
        assert!(!out.contains("id=\"err-line\">let a"), "{out}");
    }
}
