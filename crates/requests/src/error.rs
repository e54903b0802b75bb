//! [`RequestError`]: why a request operation failed, and the kind the
//! REST API reports for it.

use automate_vmdb::StoreError;

/// Why a request operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No request (`AutomationRequest`, `MiqProvisionRequest`) has this id.
    #[error("automation request [{0}] not found")]
    NotFound(i64),
    /// A new request's input was refused: an empty or malformed name, a
    /// parameter naming a system key.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The input refused (`namespace`, `parameters`, ...).
        field: String,
        /// Why.
        message: String,
    },
    #[error("automation request [{id}] is {state}: cannot {action} it")]
    /// Approving or denying a request that is no longer
    /// `pending_approval`.
    WrongState {
        /// The request.
        id: i64,
        /// Its `approval_state` (`approved`, `denied`).
        state: String,
        /// What was asked: `approve` or `deny`.
        action: String,
    },
    /// The namespace, class or instance of a new request is not in the
    /// datastore (nothing is stored).
    #[error("unknown {what} [{path}] in the datastore")]
    Unknown {
        /// `namespace`, `class` or `instance`.
        what: String,
        /// The path that is missing (`/ns/Class/instance`).
        path: String,
    },
    /// No stored template matches a provisioning request's
    /// `template_fields` (ManageIQ's words; nothing is stored).
    #[error("No source template was found from input data:<{0}>")]
    NoTemplate(String),
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RequestError {
    /// The error's kind, as the REST API reports it: `not_found`,
    /// `bad_request`, `conflict` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::NotFound(_) => "not_found",
            RequestError::Invalid { .. }
            | RequestError::Unknown { .. }
            | RequestError::NoTemplate(_) => "bad_request",
            RequestError::WrongState { .. } => "conflict",
            RequestError::Store(_) => "internal",
        }
    }
}
