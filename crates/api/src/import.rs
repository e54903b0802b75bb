//! `POST /api/automate_domains/import`: a domain uploaded as a zip (the
//! body, `application/zip`) imported into the service's datastore root, as
//! `automate import` does, then the datastore reloaded so the engine
//! resolves against it at once. Options are query parameters: `domain`
//! (import under this name), `from` (which domain of several), `priority`,
//! `overwrite` and `enabled` (`true` / `false`).

use super::collection::RawQuery;
use super::{blocking, ok, ApiError, ApiResult, ApiState};
use automate_datastore::import::{self, ImportError, ImportOptions};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use std::io::Write;

/// The largest zip the endpoint takes (the zip checks bound what it
/// unpacks to).
pub(super) const MAX_ZIP_BYTES: usize = 256 << 20;

fn flag(
    q: &std::collections::HashMap<String, String>,
    key: &str,
) -> Result<Option<bool>, ApiError> {
    match q.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key}: [{other}] is not true or false"
        ))),
    }
}

/// Imports the uploaded zip; answers what `automate import` prints:
/// `domain`, `path`, `priority`, `enabled`, `source`, `counts`, `files`,
/// `replaced`, `warnings`. 400 on a bad zip or domain, 409 on a name
/// clash without `overwrite`.
pub(super) async fn import(
    State(state): State<ApiState>,
    query: RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let q: std::collections::HashMap<String, String> = query
        .map(|axum::extract::Query(v)| v.into_iter().collect())
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    for k in q.keys() {
        if !["domain", "from", "priority", "overwrite", "enabled"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "{k}: unknown parameter (domain, from, priority, overwrite, enabled)"
            )));
        }
    }
    let priority = q
        .get("priority")
        .map(|p| {
            p.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("priority: [{p}] is not an integer")))
        })
        .transpose()?;
    let opts = ImportOptions {
        domain_filter: q.get("from").cloned(),
        rename: q.get("domain").cloned(),
        priority,
        overwrite: flag(&q, "overwrite")?.unwrap_or(false),
        enabled: flag(&q, "enabled")?,
    };
    let bytes = body
        .map_err(|e| ApiError::bad_request(format!("cannot read the body: {}", e.body_text())))?;
    let source = ImportSource::Zip {
        name: "upload.zip".into(),
        bytes: bytes.to_vec(),
    };
    let s = import_domain(&state, source, opts).await?;
    ok(json!({
        "domain": s.summary.domain,
        "path": s.summary.path.display().to_string(),
        "priority": s.summary.priority,
        "enabled": s.summary.enabled,
        "source": s.summary.source.as_str(),
        "counts": {
            "namespaces": s.summary.counts.namespaces,
            "classes": s.summary.counts.classes,
            "instances": s.summary.counts.instances,
            "methods": s.summary.counts.methods,
        },
        "files": s.summary.files,
        "replaced": s.summary.replaced,
        "warnings": s.summary.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "reload": s.reload,
    }))
}

/// Where a domain to import comes from.
#[derive(Debug, Clone)]
pub enum ImportSource {
    /// A zip's bytes (an upload) and its file name (errors name it).
    Zip {
        /// The uploaded file's name (`Custom.zip`).
        name: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A directory or a `.zip` file on the service's machine.
    Path(std::path::PathBuf),
}

/// What [`import_domain`] did: the import and the service's reload.
#[derive(Debug)]
pub struct Imported {
    /// What the import wrote.
    pub summary: import::ImportSummary,
    /// The service's reload after it (`None` without a reloader: the
    /// index alone was swapped).
    pub reload: Option<automate_datastore::ReloadReport>,
}

/// An import error as an answer: 409 on a name clash without
/// `overwrite`, 500 on an I/O error, 400 otherwise (the message names the
/// file, line or option).
fn import_error(e: ImportError) -> ApiError {
    let (status, kind) = match e {
        ImportError::Exists { .. } => (StatusCode::CONFLICT, "conflict"),
        ImportError::Io { .. } => return ApiError::internal(e),
        _ => (StatusCode::BAD_REQUEST, "bad_request"),
    };
    ApiError::new(status, kind, e.to_string())
}

/// Runs `f` on the source as a path: a zip upload is written to a
/// temporary directory first, under its own file name, and an error
/// names the upload rather than the temporary file.
fn with_source<T>(
    source: &ImportSource,
    f: impl FnOnce(&std::path::Path) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    match source {
        ImportSource::Path(p) => f(p),
        ImportSource::Zip { name, bytes } => {
            let dir = tempfile::Builder::new()
                .prefix("automate-upload-")
                .tempdir()
                .map_err(ApiError::internal)?;
            // Only the last component, and always a .zip (the import
            // tells zips from directories by the extension).
            let base = std::path::Path::new(name)
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| n.to_ascii_lowercase().ends_with(".zip"))
                .unwrap_or("upload.zip");
            let path = dir.path().join(base);
            let mut file = std::fs::File::create(&path).map_err(ApiError::internal)?;
            file.write_all(bytes).map_err(ApiError::internal)?;
            file.flush().map_err(ApiError::internal)?;
            drop(file);
            let shown = format!("{}/", dir.path().display());
            f(&path).map_err(|mut e| {
                e.message = e.message.replace(&shown, "");
                e
            })
        }
    }
}

/// Imports a domain into the service's datastore root as `POST
/// /api/automate_domains/import` (and `automate import`) does, then
/// reloads: the service's reloader when it has one (all-or-nothing), a
/// bare index swap otherwise. Nothing changes on a bad source (a 400
/// naming the file) or a name clash without `overwrite` (409).
pub async fn import_domain(
    state: &ApiState,
    source: ImportSource,
    opts: ImportOptions,
) -> Result<Imported, ApiError> {
    let datastore = state.engine.datastore().clone();
    let reloader = state.reloader.clone();
    blocking(move || {
        let s = with_source(&source, |p| {
            import::import(datastore.root(), p, &opts).map_err(import_error)
        })?;
        let reload = match reloader {
            Some(r) => Some(r.reload()),
            None => {
                for p in datastore.reload() {
                    tracing::warn!(target: "evm", "datastore: {p}");
                }
                None
            }
        };
        tracing::info!(target: "evm", "MIQ(Api) imported domain {} into {}", s.domain, s.path.display());
        Ok(Imported { summary: s, reload })
    })
    .await
}

/// What [`import_domain`] would do with the same arguments, writing
/// nothing (ManageIQ's import preview): the same errors, then each file
/// added, updated or removed.
pub async fn preview_import(
    state: &ApiState,
    source: ImportSource,
    opts: ImportOptions,
) -> Result<import::ImportPreview, ApiError> {
    let datastore = state.engine.datastore().clone();
    blocking(move || {
        with_source(&source, |p| {
            import::preview(datastore.root(), p, &opts).map_err(import_error)
        })
    })
    .await
}
