//! `POST /api/automate_domains/export` with `{"domain": NAME}`: the domain
//! of the service's datastore as a zip of `<Domain>/...` (the body,
//! `application/zip`), as `automate export NAME DEST.zip` writes it; what
//! `automate export` asks of a service named by `--server`.

use super::{blocking, json_object, only_fields, opt_str, ApiError, ApiResult, ApiState};
use automate_datastore::export::{self, ExportError, ExportOptions};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

/// Exports the domain into a temporary zip and answers its bytes; 404 for
/// an unknown domain, 400 for one with problems.
pub(super) async fn export(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    // One domain, whole: the command line narrows it to a namespace or a
    // class itself (`export --namespace/--class`).
    only_fields(&obj, "export", &["domain"])?;
    let domain = opt_str(&obj, "domain", "domain")?
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("domain: missing"))?
        .to_string();
    let bytes = export_domain(&state, &domain).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/zip")],
        bytes,
    )
        .into_response())
}

/// The domain `domain` of the service's datastore as a zip of
/// `<Domain>/...` (its bytes), written as `automate export NAME DEST.zip`
/// writes it: 404 for an unknown domain, 400 for one with problems.
pub async fn export_domain(state: &ApiState, domain: &str) -> Result<Vec<u8>, ApiError> {
    let datastore = state.engine.datastore().clone();
    let domain = domain.to_string();
    blocking(move || {
        let dir = tempfile::Builder::new()
            .prefix("automate-export-")
            .tempdir()
            .map_err(ApiError::internal)?;
        let zip = dir.path().join("domain.zip");
        let opts = ExportOptions {
            overwrite: true,
            namespace: None,
            class: None,
        };
        export::export(datastore.root(), &domain, &zip, &opts).map_err(|e| match e {
            ExportError::DomainNotFound { .. } => ApiError::not_found(e.to_string()),
            ExportError::Io { .. } => ApiError::internal(e),
            _ => ApiError::bad_request(e.to_string()),
        })?;
        std::fs::read(&zip).map_err(ApiError::internal)
    })
    .await
}
