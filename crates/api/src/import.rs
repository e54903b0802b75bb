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
    let datastore = state.engine.datastore().clone();
    let reloader = state.reloader.clone();
    let doc = blocking(move || {
        let mut zip = tempfile::Builder::new()
            .prefix("automate-upload-")
            .suffix(".zip")
            .tempfile()
            .map_err(ApiError::internal)?;
        zip.write_all(&bytes).map_err(ApiError::internal)?;
        zip.flush().map_err(ApiError::internal)?;
        let s = import::import(datastore.root(), zip.path(), &opts).map_err(|e| {
            let (status, kind) = match e {
                ImportError::Exists { .. } => (StatusCode::CONFLICT, "conflict"),
                ImportError::Io { .. } => return ApiError::internal(e),
                _ => (StatusCode::BAD_REQUEST, "bad_request"),
            };
            ApiError::new(status, kind, e.to_string())
        })?;
        // The service's own reload when it has one (all-or-nothing: the
        // index, the compiled methods and the policies together, its report
        // on /api/health); a bare index swap otherwise.
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
        Ok(json!({
            "domain": s.domain,
            "path": s.path.display().to_string(),
            "priority": s.priority,
            "enabled": s.enabled,
            "source": s.source.as_str(),
            "counts": {
                "namespaces": s.counts.namespaces,
                "classes": s.counts.classes,
                "instances": s.counts.instances,
                "methods": s.counts.methods,
            },
            "files": s.files,
            "replaced": s.replaced,
            "warnings": s.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            "reload": reload,
        }))
    })
    .await?;
    ok(doc)
}
