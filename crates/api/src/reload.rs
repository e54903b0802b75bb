//! `POST /api/automate_domains` with `{"action": "reload"}`: the datastore,
//! its Rhai methods and the control policies reloaded on demand through the
//! service's [`automate_datastore::Reload`] (all-or-nothing; a failure
//! keeps the running index), answered with the
//! [`automate_datastore::ReloadReport`] (200 either way: `ok` says which);
//! and the `datastore` part of `/api/health`.

use super::{blocking, json_object, ok, only_fields, opt_str, ApiError, ApiResult, ApiState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

/// `POST /api/automate_domains`: the `reload` action (and `validate`,
/// [`super::describe::validate`]).
pub(super) async fn action(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let obj = json_object(body, &state)?;
    match opt_str(&obj, "action", "action")? {
        Some("reload") => {}
        Some("validate") => return ok(super::describe::validate(&state, &obj).await?),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "action: [{other}] is not supported (reload, validate)"
            )))
        }
        None => return Err(ApiError::bad_request("action: missing (reload, validate)")),
    }
    only_fields(&obj, "reload", &["action"])?;
    let report = reload_datastore(&state).await?;
    ok(serde_json::to_value(&report).map_err(ApiError::internal)?)
}

/// `/api/health`'s `datastore`: `{"reload": "ok" | "failed", "at": ...,
/// "changed_domains": [...]}` after a reload, with the `problems` (file,
/// line, message) while the last one failed; `None` before any reload.
pub(super) fn health(state: &ApiState) -> Option<Value> {
    let report = state.reloader.as_ref()?.last()?;
    let problems = serde_json::to_value(&report.problems).unwrap_or(Value::Null);
    Some(if report.ok {
        json!({
            "reload": "ok",
            "at": report.at,
            "changed_domains": report.changed_domains,
        })
    } else {
        json!({
            "reload": "failed",
            "at": report.at,
            "problems": problems,
        })
    })
}

/// Reloads the datastore, its methods and the control policies through
/// the service's reloader (all-or-nothing: `ok` false keeps the running
/// index, `problems` say why); 409 when the service has none.
pub async fn reload_datastore(
    state: &ApiState,
) -> Result<automate_datastore::ReloadReport, ApiError> {
    let Some(reloader) = state.reloader.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this service does not reload its datastore",
        ));
    };
    blocking(move || Ok(reloader.reload())).await
}
