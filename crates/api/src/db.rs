//! `POST /api/db/backup`: a consistent copy of the running store's file,
//! streamed back (`application/octet-stream`), for `automate db backup`
//! while `automate run` (or `automate api`) holds the file's lock.
//!
//! The copy is made by [`ServedStore::backup`] (the redb store: one read transaction copied
//! into a new redb file, beside the running writer) into a temporary
//! directory beside the store, opened, unlinked and streamed from the open
//! descriptor: nothing is left behind, and no client chooses a path on the
//! server.

use super::{blocking, ApiError, ApiResult, ApiState};
use automate_vmdb::served::ServedStore;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;

/// The header that carries how many objects the backup holds.
pub const OBJECTS_HEADER: &str = "x-automate-objects";

/// Makes the copy and opens it (already unlinked).
fn make_backup(store: &dyn ServedStore) -> Result<(std::fs::File, u64, u64), ApiError> {
    let dir = match store.path().parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".automate-backup-")
        .tempdir_in(&dir)
        .map_err(|e| {
            ApiError::internal(format!(
                "backup: cannot create a temporary directory in {}: {e}",
                dir.display()
            ))
        })?;
    let dest = tmp.path().join("backup.redb");
    let report = store.backup(&dest).map_err(ApiError::internal)?;
    let file = std::fs::File::open(&dest)
        .map_err(|e| ApiError::internal(format!("backup: {}: {e}", dest.display())))?;
    // `tmp` goes now; the open file keeps the bytes until streamed.
    Ok((file, report.bytes, report.objects))
}

/// `POST /api/db/backup`.
pub(super) async fn backup(State(state): State<ApiState>) -> ApiResult {
    let store: Arc<dyn ServedStore> = state.store.clone();
    let (file, len, objects) = blocking(move || make_backup(&*store)).await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(OBJECTS_HEADER, HeaderValue::from(objects));
    Ok(r)
}
