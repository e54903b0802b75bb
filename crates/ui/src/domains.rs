//! Domains: ManageIQ's Import/Export screen. The datastore's domains by
//! priority (enabled, locked, source, the commit of a git domain, what
//! they hold), and for each unlocked domain enable/disable, a new
//! priority (a number, or one place up or down); export of any domain as
//! a zip download; import of an uploaded zip or of a directory (or zip) on
//! the service's machine, previewed first (every file added, updated or
//! removed) when asked; and a reload of the datastore. A locked domain
//! (`system`, `user_locked`, `remote`) shows its actions disabled, with
//! why.
//!
//! Every action goes through the REST API's own code
//! (`automate_api::change_domain`, `export_domain`, `import_domain`,
//! `preview_import`, `reload_datastore`), which write through
//! `automate_datastore` and reload through the service's reloader.
//!
//! Routes: `GET /ui/domains`, `POST /ui/domains/{name}/enable`,
//! `/disable`, `/priority` (`priority=N` or `move=up|down`), `GET
//! /ui/domains/{name}/export` (the zip), `POST /ui/domains/import`
//! (multipart: the handler checks its `csrf_token` field, which must come
//! first), `POST /ui/domains/reload`.

use crate::page::{back_with, html, url_encode, Layout};
use crate::requests::{api_error_page, no_api};
use crate::session::{random_hex, Flash, SessionInfo};
use crate::UiState;
use askama::Template;
use automate_api::{ApiError, ImportSource};
use automate_datastore::import::ImportOptions;
use automate_datastore::settings::DomainChange;
use automate_datastore::Source;
use axum::extract::{Extension, Form, Multipart, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest zip the import form takes.
pub const MAX_UPLOAD_BYTES: usize = 64 << 20;

/// How long a previewed upload waits for its import.
const STASH_TTL: Duration = Duration::from_secs(15 * 60);

/// How many previewed uploads are kept (the oldest goes first).
const STASH_MAX: usize = 8;

/// Uploads previewed and not yet imported: the zip is kept (in memory,
/// for its session, at most [`STASH_MAX`] for [`STASH_TTL`]) so that the
/// preview's "Import" does not ask for the file again.
#[derive(Debug, Default)]
pub struct Stash {
    map: Mutex<HashMap<String, Stashed>>,
}

#[derive(Debug)]
struct Stashed {
    session: String,
    name: String,
    bytes: Vec<u8>,
    at: Instant,
}

impl Stash {
    fn put(&self, session: &str, name: &str, bytes: Vec<u8>) -> Option<String> {
        let id = random_hex(16).ok()?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.at.elapsed() < STASH_TTL);
        while map.len() >= STASH_MAX {
            let oldest = map.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            id.clone(),
            Stashed {
                session: session.to_string(),
                name: name.to_string(),
                bytes,
                at: Instant::now(),
            },
        );
        Some(id)
    }

    fn take(&self, session: &str, id: &str) -> Option<(String, Vec<u8>)> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.remove(id)?;
        (s.session == session && s.at.elapsed() < STASH_TTL).then_some((s.name, s.bytes))
    }
}

/// A domain as a row of the page, with what may be done to it.
pub(crate) struct DomainRow {
    pub name: String,
    pub explorer: String,
    pub export: String,
    pub action_base: String,
    pub priority: i64,
    pub enabled: bool,
    pub source: &'static str,
    pub commit: String,
    pub namespaces: usize,
    pub classes: usize,
    pub instances: usize,
    pub methods: usize,
    /// Why it cannot be changed (`None`: it can).
    pub locked: Option<String>,
    pub can_up: bool,
    pub can_down: bool,
}

fn lock_reason(name: &str, source: Source) -> Option<String> {
    match source {
        Source::User => None,
        Source::System => Some(format!(
            "{name} is the system domain: read-only, always enabled, priority 0"
        )),
        Source::UserLocked => Some(format!("{name} is locked (user_locked): read-only")),
        Source::Remote => Some(format!(
            "{name} comes from git (remote): read-only; refresh it from its repository"
        )),
    }
}

/// The commit a git domain's `__domain__.yaml` records (short id and
/// message), by domain name in lower case.
fn commits(root: &std::path::Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok((dirs, _)) = automate_datastore::dirs::domain_dirs(root) else {
        return out;
    };
    for d in dirs.iter().filter(|d| d.info.source == Source::Remote) {
        let file = d.path.join(automate_datastore::fs::DOMAIN_FILE);
        let Ok(text) = automate_datastore::fs::read_text(&file) else {
            continue;
        };
        let mut problems = Vec::new();
        let Some(doc) = automate_datastore::fs::parse_doc(&text, &file, &mut problems) else {
            continue;
        };
        if let Some(o) = automate_datastore::git::GitOrigin::of(&doc) {
            out.insert(
                d.info.name.to_ascii_lowercase(),
                format!("{} {}", o.short_sha(), o.commit_message),
            );
        }
    }
    out
}

/// The domains by priority, as the page shows them.
pub(crate) fn rows(state: &UiState) -> Vec<DomainRow> {
    let datastore = state.engine().datastore();
    let index = datastore.index();
    let domains = index.domains();
    let commits = commits(datastore.root());
    domains
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let name = d.name.to_string();
            let locked = lock_reason(&name, d.source);
            let above = i.checked_sub(1).and_then(|j| domains.get(j));
            let below = domains.get(i + 1);
            let seg = url_encode(&name, false);
            DomainRow {
                explorer: format!("/ui/explorer/domain/{seg}"),
                export: format!("/ui/domains/{seg}/export"),
                action_base: format!("/ui/domains/{seg}"),
                priority: d.priority,
                enabled: d.enabled,
                source: d.source.as_str(),
                commit: commits
                    .get(&name.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_default(),
                namespaces: d.counts.namespaces,
                classes: d.counts.classes,
                instances: d.counts.instances,
                methods: d.counts.methods,
                can_up: locked.is_none() && above.is_some(),
                can_down: locked.is_none() && below.is_some_and(|b| b.priority > 1),
                locked,
                name,
            }
        })
        .collect()
}

/// `templates/domains.html`.
#[derive(Template)]
#[template(path = "domains.html")]
struct DomainsPage {
    layout: Layout,
    rows: Vec<DomainRow>,
    max_upload_mb: usize,
}

/// `GET /ui/domains`.
pub(crate) async fn page(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
) -> Response {
    html(
        &DomainsPage {
            layout: Layout::flashed("Domains", &state, &session, "/ui/domains"),
            rows: rows(&state),
            max_upload_mb: MAX_UPLOAD_BYTES >> 20,
        },
        StatusCode::OK,
    )
}

const BACK: &str = "/ui/domains";

async fn apply(
    state: &UiState,
    session: &SessionInfo,
    name: &str,
    change: DomainChange,
) -> Response {
    let Some(api) = state.api() else {
        return no_api(session);
    };
    let flash = match automate_api::change_domain(api, name, change).await {
        Ok(d) => Flash::done(match change {
            DomainChange::Enable => format!("Domain {} enabled.", d.name),
            DomainChange::Disable => format!("Domain {} disabled.", d.name),
            DomainChange::Priority(p) => format!("Domain {} given priority {p}.", d.name),
        }),
        Err(e) => Flash::failed(format!("Domain {name} was not changed: {}", e.message)),
    };
    back_with(state, session, BACK, flash)
}

/// `POST /ui/domains/{name}/enable`.
pub(crate) async fn enable(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(name): Path<String>,
) -> Response {
    apply(&state, &session, &name, DomainChange::Enable).await
}

/// `POST /ui/domains/{name}/disable`.
pub(crate) async fn disable(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(name): Path<String>,
) -> Response {
    apply(&state, &session, &name, DomainChange::Disable).await
}

/// The priority form: a number, or one place up or down.
#[derive(Debug, Deserialize)]
pub(crate) struct PriorityForm {
    #[serde(default)]
    priority: Option<String>,
    #[serde(default, rename = "move")]
    direction: Option<String>,
}

/// The priority that moves `name` one place `up` (above the domain now
/// above it) or down (below the one below it), or why it cannot move.
fn moved(state: &UiState, name: &str, up: bool) -> Result<i64, String> {
    let index = state.engine().datastore().index();
    let domains = index.domains();
    let i = domains
        .iter()
        .position(|d| d.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("no domain [{name}] in the datastore"))?;
    if up {
        let above = i
            .checked_sub(1)
            .and_then(|j| domains.get(j))
            .ok_or_else(|| format!("{name} already has the highest priority"))?;
        Ok(above.priority + 1)
    } else {
        let below = domains
            .get(i + 1)
            .ok_or_else(|| format!("{name} already has the lowest priority"))?;
        if below.priority <= 1 {
            return Err(format!(
                "{name} cannot go below {} (priority {}): priorities start at 1",
                below.name, below.priority
            ));
        }
        Ok(below.priority - 1)
    }
}

/// `POST /ui/domains/{name}/priority`: `priority=N`, or `move=up|down`.
pub(crate) async fn priority(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(name): Path<String>,
    Form(form): Form<PriorityForm>,
) -> Response {
    let target = match (form.direction.as_deref(), form.priority.as_deref()) {
        (Some("up"), _) => moved(&state, &name, true),
        (Some("down"), _) => moved(&state, &name, false),
        (Some(other), _) => Err(format!("move: [{other}] is not up or down")),
        (None, Some(p)) => p
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("priority: [{p}] is not an integer")),
        (None, None) => Err("priority: missing".to_string()),
    };
    match target {
        Ok(p) => apply(&state, &session, &name, DomainChange::Priority(p)).await,
        Err(m) => back_with(
            &state,
            &session,
            BACK,
            Flash::failed(format!("Domain {name} was not changed: {m}")),
        ),
    }
}

/// `GET /ui/domains/{name}/export`: the domain as a zip download, the
/// bytes `automate export NAME DEST.zip` writes.
pub(crate) async fn export(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    Path(name): Path<String>,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    match automate_api::export_domain(api, &name).await {
        Ok(bytes) => {
            let file: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut res = (StatusCode::OK, bytes).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}.zip\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            res
        }
        Err(e) => api_error_page(&session, "Export failed", e),
    }
}

/// `POST /ui/domains/reload`: reloads the datastore (all-or-nothing).
pub(crate) async fn reload(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    let flash = match automate_api::reload_datastore(api).await {
        Ok(r) if r.ok => Flash::done(if r.changed_domains.is_empty() {
            "Datastore reloaded: nothing changed.".to_string()
        } else {
            format!(
                "Datastore reloaded: {} changed.",
                r.changed_domains.join(", ")
            )
        }),
        Ok(r) => Flash::failed(format!(
            "The datastore did not reload (the running one is kept): {}",
            r.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(e) => Flash::failed(format!("The datastore did not reload: {}", e.message)),
    };
    back_with(&state, &session, BACK, flash)
}

/// The import form, read from its multipart body.
#[derive(Debug, Default)]
struct ImportForm {
    csrf: Option<String>,
    upload: Option<(String, Vec<u8>)>,
    path: String,
    stash: String,
    domain: String,
    priority: String,
    enabled: String,
    overwrite: bool,
    preview: bool,
}

/// Reads the multipart import form; its first field must be the
/// session's `csrf_token` (checked before the upload is read).
async fn read_form(session: &SessionInfo, mut mp: Multipart) -> Result<ImportForm, String> {
    let mut form = ImportForm::default();
    let mut first = true;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(format!("the form could not be read: {}", e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        if first {
            first = false;
            if name != crate::auth::CSRF_FIELD {
                return Err("csrf".into());
            }
        }
        if name == "zip" {
            let file = field.file_name().unwrap_or("").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| format!("zip: the upload could not be read: {}", e.body_text()))?;
            if !bytes.is_empty() {
                form.upload = Some((file, bytes.to_vec()));
            }
            continue;
        }
        let text = field
            .text()
            .await
            .map_err(|e| format!("{name}: could not be read: {}", e.body_text()))?;
        match name.as_str() {
            "csrf_token" => form.csrf = Some(text),
            "path" => form.path = text.trim().to_string(),
            "stash" => form.stash = text.trim().to_string(),
            "domain" => form.domain = text.trim().to_string(),
            "priority" => form.priority = text.trim().to_string(),
            "enabled" => form.enabled = text.trim().to_string(),
            "overwrite" => form.overwrite = text == "true",
            "action" => form.preview = text == "preview",
            other => return Err(format!("{other}: unknown field")),
        }
    }
    match &form.csrf {
        Some(t) if crate::auth::csrf_matches(session, t) => Ok(form),
        _ => Err("csrf".into()),
    }
}

fn options(form: &ImportForm) -> Result<ImportOptions, String> {
    let priority = match form.priority.as_str() {
        "" => None,
        p => Some(
            p.parse::<i64>()
                .map_err(|_| format!("priority: [{p}] is not an integer"))?,
        ),
    };
    let enabled = match form.enabled.as_str() {
        "" | "keep" => None,
        "true" => Some(true),
        "false" => Some(false),
        other => return Err(format!("enabled: [{other}] is not true or false")),
    };
    Ok(ImportOptions {
        domain_filter: None,
        rename: Some(form.domain.clone()).filter(|d| !d.is_empty()),
        priority,
        overwrite: form.overwrite,
        enabled,
    })
}

/// One file an import would change, as the preview lists it.
pub(crate) struct ChangeRow {
    pub change: &'static str,
    pub kind: &'static str,
    pub file: String,
}

/// `templates/domain_preview.html`.
#[derive(Template)]
#[template(path = "domain_preview.html")]
struct PreviewPage {
    layout: Layout,
    source: String,
    domain: String,
    priority: i64,
    enabled: bool,
    replaced: bool,
    changes: Vec<ChangeRow>,
    unchanged: usize,
    warnings: Vec<String>,
    stash: String,
    path: String,
    form_domain: String,
    form_priority: String,
    form_enabled: String,
    overwrite: bool,
}

/// `POST /ui/domains/import`: previews or imports an uploaded zip (or a
/// previewed one), or a directory or zip on the service's machine.
pub(crate) async fn import(
    State(state): State<UiState>,
    Extension(session): Extension<SessionInfo>,
    mp: Multipart,
) -> Response {
    let Some(api) = &state.api() else {
        return no_api(&session);
    };
    let form = match read_form(&session, mp).await {
        Ok(f) => f,
        Err(m) if m == "csrf" => {
            tracing::warn!(target: "evm", "MIQ(ui) an import without a valid CSRF token was refused");
            return crate::page::error_page(
                StatusCode::FORBIDDEN,
                Some(&session),
                "Forbidden",
                "The form did not carry this session's CSRF token, so nothing was changed. Reload the page and try again.",
            );
        }
        Err(m) => {
            return back_with(
                &state,
                &session,
                BACK,
                Flash::failed(format!("Nothing was imported: {m}")),
            )
        }
    };
    let failed = |m: String| {
        back_with(
            &state,
            &session,
            BACK,
            Flash::failed(format!("Nothing was imported: {m}")),
        )
    };
    let opts = match options(&form) {
        Ok(o) => o,
        Err(m) => return failed(m),
    };
    let (source, shown) =
        match (&form.upload, form.path.as_str(), form.stash.as_str()) {
            (Some((name, bytes)), "", "") => (
                ImportSource::Zip {
                    name: name.clone(),
                    bytes: bytes.clone(),
                },
                format!("the upload {name}"),
            ),
            (None, path, "") if !path.is_empty() => {
                (ImportSource::Path(PathBuf::from(path)), path.to_string())
            }
            (None, "", id) if !id.is_empty() => match state.stash().take(&session.id, id) {
                Some((name, bytes)) => (
                    ImportSource::Zip {
                        name: name.clone(),
                        bytes,
                    },
                    format!("the upload {name}"),
                ),
                None => return failed(
                    "the previewed upload is gone (it is kept 15 minutes); choose the file again"
                        .into(),
                ),
            },
            (None, "", "") => {
                return failed("zip: choose a .zip file to upload, or give a directory path".into())
            }
            _ => return failed("give either a .zip file or a directory path, not both".into()),
        };
    if form.preview {
        return preview(&state, &session, api, source, opts, &form, shown).await;
    }
    match automate_api::import_domain(api, source, opts).await {
        Ok(done) => {
            let s = &done.summary;
            let mut text = format!(
                "Imported domain {} from {shown}: {} files, priority {}, {}{}.",
                s.domain,
                s.files,
                s.priority,
                if s.enabled { "enabled" } else { "disabled" },
                if s.replaced {
                    ", replacing the domain of that name"
                } else {
                    ""
                }
            );
            match &done.reload {
                Some(r) if !r.ok => {
                    text.push_str(&format!(
                        " The datastore did not reload (the running one is kept): {}",
                        r.problems
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                    back_with(&state, &session, BACK, Flash::failed(text))
                }
                _ => back_with(&state, &session, BACK, Flash::done(text)),
            }
        }
        Err(e) => failed(format!("{shown}: {}", e.message)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn preview(
    state: &UiState,
    session: &SessionInfo,
    api: &automate_api::ApiState,
    source: ImportSource,
    opts: ImportOptions,
    form: &ImportForm,
    shown: String,
) -> Response {
    // An upload is kept for the preview's "Import".
    let (stash, path) = match &source {
        ImportSource::Zip { name, bytes } => (
            state
                .stash()
                .put(&session.id, name, bytes.clone())
                .unwrap_or_default(),
            String::new(),
        ),
        ImportSource::Path(p) => (String::new(), p.display().to_string()),
    };
    let p = match automate_api::preview_import(api, source, opts).await {
        Ok(p) => p,
        Err(e) => {
            let e: ApiError = e;
            return back_with(
                state,
                session,
                BACK,
                Flash::failed(format!("Nothing would be imported: {shown}: {}", e.message)),
            );
        }
    };
    html(
        &PreviewPage {
            layout: Layout::new("Import preview", Some(session), "/ui/domains"),
            source: shown,
            domain: p.summary.domain.clone(),
            priority: p.summary.priority,
            enabled: p.summary.enabled,
            replaced: p.summary.replaced,
            changes: p
                .changes
                .iter()
                .map(|c| ChangeRow {
                    change: c.change.as_str(),
                    kind: c.kind,
                    file: c.file.clone(),
                })
                .collect(),
            unchanged: p.unchanged,
            warnings: p.summary.warnings.iter().map(|w| w.to_string()).collect(),
            stash,
            path,
            form_domain: form.domain.clone(),
            form_priority: form.priority.clone(),
            form_enabled: form.enabled.clone(),
            overwrite: form.overwrite,
        },
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stashed_upload_is_its_sessions_only_once() {
        let stash = Stash::default();
        let id = stash.put("s1", "a.zip", vec![1, 2]).unwrap();
        assert!(stash.take("s2", &id).is_none(), "another session");
        let id = stash.put("s1", "a.zip", vec![1, 2]).unwrap();
        assert_eq!(stash.take("s1", &id), Some(("a.zip".into(), vec![1, 2])));
        assert!(stash.take("s1", &id).is_none(), "taken once");
        for i in 0..STASH_MAX + 3 {
            stash.put("s1", &format!("{i}.zip"), vec![]);
        }
        assert!(stash.map.lock().unwrap().len() <= STASH_MAX);
    }

    #[test]
    fn import_options_name_the_field() {
        let mut f = ImportForm {
            priority: "x".into(),
            ..ImportForm::default()
        };
        assert_eq!(options(&f).unwrap_err(), "priority: [x] is not an integer");
        f.priority = "7".into();
        f.enabled = "false".into();
        f.domain = "Copy".into();
        let o = options(&f).unwrap();
        assert_eq!(
            (o.priority, o.enabled, o.rename.as_deref()),
            (Some(7), Some(false), Some("Copy"))
        );
    }
}
