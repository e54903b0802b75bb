//! [`RequestError`]: why a request operation failed, and the kind the
//! REST API reports for it.

use automate_vmdb::StoreError;

/// Why a request operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("automation request [{0}] not found")]
    NotFound(i64),
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("automation request [{id}] is {state}: cannot {action} it")]
    WrongState {
        id: i64,
        state: String,
        action: String,
    },
    #[error("unknown {what} [{path}] in the datastore")]
    Unknown { what: String, path: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RequestError {
    /// The error's kind, as the REST API reports it: `not_found`,
    /// `bad_request`, `conflict` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::NotFound(_) => "not_found",
            RequestError::Invalid { .. } | RequestError::Unknown { .. } => "bad_request",
            RequestError::WrongState { .. } => "conflict",
            RequestError::Store(_) => "internal",
        }
    }
}
