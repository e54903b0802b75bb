//! The engine's errors, named after ManageIQ's `MiqAeException` classes
//! because their handling differs (reference §4.1): datastore errors drop
//! one object, `Stop` drops one object, `Abort` unwinds to the caller,
//! everything else propagates unchanged.

use automate_core::uri::UriError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    // --- MiqAeDatastoreError: logged, the object is dropped, the caller goes on.
    #[error("Class [{0}] not found in MiqAeDatastore")]
    ClassNotFound(String),
    #[error("Instance [{0}] not found in MiqAeDatastore")]
    InstanceNotFound(String),
    #[error("{0}")]
    InvalidClass(String),
    #[error("empty relationship")]
    EmptyRelationship,

    // --- Handled by the object being instantiated.
    #[error("{0}")]
    AssertionFailure(String),
    #[error("{0}")]
    Stop(String),
    #[error("{0}")]
    UnknownMethodRc(String),
    #[error("{0}")]
    Abort(String),

    // --- Propagated unchanged.
    #[error("{0}")]
    InvalidPath(String),
    #[error("cyclical reference: [{0}]")]
    CyclicalRelationship(String),
    #[error("instantiation deeper than {0} levels: [{1}]")]
    TooDeep(usize, String),
    #[error("Object Not Found for path=[{0}]")]
    ObjectNotFound(String),
    #[error("Attribute {0} not found for object [{1}]")]
    AttributeNotFound(String, String),
    #[error("{0}")]
    MethodNotFound(String),
    #[error("Method [{0}] requires parameter [{1}]")]
    MethodParmMissing(String, String),
    #[error("{0}")]
    InvalidMethod(String),
    #[error("{0}")]
    ServiceNotFound(String),
    #[error("{0}")]
    InvalidCollection(String),
    /// The instantiation's budget ran out (or it was cancelled): every
    /// handler passes it up unchanged.
    #[error("Instantiation stopped: {0}")]
    Budget(super::budget::BudgetExceeded),
    /// The object store could not answer a read (an I/O error, a damaged
    /// file): the instantiation fails with the store's message instead of
    /// reading the object as absent (nil).
    #[error("{0}")]
    Store(#[from] automate_vmdb::StoreError),
}

impl EngineError {
    /// ManageIQ's `MiqAeDatastoreError` family.
    pub fn is_datastore_error(&self) -> bool {
        matches!(
            self,
            EngineError::ClassNotFound(_)
                | EngineError::InstanceNotFound(_)
                | EngineError::InvalidClass(_)
                | EngineError::EmptyRelationship
        )
    }
}

impl From<UriError> for EngineError {
    fn from(e: UriError) -> Self {
        EngineError::InvalidPath(e.to_string())
    }
}
