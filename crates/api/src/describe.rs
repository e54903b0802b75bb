//! What `automate datastore tree|show|validate` print, answered by the
//! service from its own datastore directory: `POST /api/automate` with
//! `{"action": "tree", "path": ...}` or `{"action": "show", "path": ...}`
//! (the [`automate_datastore::describe::Described`] document: `json` and
//! `text`), and `POST /api/automate_domains` with `{"action":
//! "validate"}` (the document `validate --json` prints). The directory is
//! read afresh, as the command line reads it.

use super::{blocking, only_fields, ApiError, ApiState};
use automate_datastore::describe::{self, DescribeError};
use automate_datastore::fs as dsfs;
use axum::http::StatusCode;
use serde_json::{Map, Value};

/// The service's datastore root, or a 409 when it is not a directory.
fn root(state: &ApiState) -> Result<std::path::PathBuf, ApiError> {
    let root = state.engine.datastore().root().to_path_buf();
    if !root.is_dir() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the service's datastore `{}` is not a directory",
                root.display()
            ),
        ));
    }
    Ok(root)
}

/// The `tree` (`path` optional) or `show` (`path` required) action: a
/// path that names nothing is a 404 with the command line's message.
pub(super) async fn tree_or_show(
    state: &ApiState,
    obj: &Map<String, Value>,
    action: &'static str,
) -> Result<Value, ApiError> {
    only_fields(obj, action, &["action", "path"])?;
    let path = match obj.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "path: expected a string, got {}",
                super::kind_of(other)
            )))
        }
    };
    let root = root(state)?;
    blocking(move || {
        let domains = dsfs::read_root(&root).domains;
        let answer = match action {
            "tree" => describe::tree(&domains, path.as_deref()),
            _ => describe::show(&domains, path.as_deref().unwrap_or("")),
        };
        let d = answer.map_err(|e| match e {
            DescribeError::NoPath => ApiError::bad_request(format!("path: {e}")),
            DescribeError::NotFound(m) => ApiError::not_found(m),
        })?;
        serde_json::to_value(&d).map_err(ApiError::internal)
    })
    .await
}

/// The `validate` action: the service's root validated as `automate
/// datastore validate --json` does (Rhai methods compiled, control
/// policy files checked).
pub(super) async fn validate(
    state: &ApiState,
    obj: &Map<String, Value>,
) -> Result<Value, ApiError> {
    only_fields(obj, "validate", &["action"])?;
    let root = root(state)?;
    blocking(move || Ok(automate_control::validate::validate_document(&root))).await
}
