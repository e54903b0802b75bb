//! The engine's errors, named after ManageIQ's `MiqAeException` classes
//! because their handling differs (reference §4.1): datastore errors drop
//! one object, `Stop` drops one object, `Abort` unwinds to the caller,
//! everything else propagates unchanged.

use automate_core::uri::UriError;

/// Why an instantiation, a method or a substitution failed. The `Display`
/// text is the line the engine logs (ManageIQ's wording where it has one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    // --- MiqAeDatastoreError: logged, the object is dropped, the caller goes on.
    /// No domain has the class `namespace/Class` (the payload).
    #[error("Class [{0}] not found in MiqAeDatastore")]
    ClassNotFound(String),
    /// The class has neither the instance (`/ns/Class/instance`) nor a
    /// `.missing` one.
    #[error("Instance [{0}] not found in MiqAeDatastore")]
    InstanceNotFound(String),
    /// A field's datatype is neither a datatype nor a known object class.
    #[error("{0}")]
    InvalidClass(String),
    /// A state's relationship instantiated nothing.
    #[error("empty relationship")]
    EmptyRelationship,

    // --- Handled by the object being instantiated.
    /// An assertion field was false: the object is dropped, logged at
    /// info.
    #[error("{0}")]
    AssertionFailure(String),
    /// A method exited with `MIQ_STOP` (or a builtin stopped): the object
    /// is dropped (`Stopping instantiation because [..]`).
    #[error("{0}")]
    Stop(String),
    /// A method exited with a code that is not one of ManageIQ's (0, 4,
    /// 8, 16): the instantiation aborts.
    #[error("{0}")]
    UnknownMethodRc(String),
    /// `MIQ_ABORT`, a failed builtin, a state past its `max_retries` or
    /// `max_time`: unwinds the whole instantiation to its caller.
    #[error("{0}")]
    Abort(String),

    // --- Propagated unchanged.
    /// A URI, method path or `${...}` substitution that cannot be parsed
    /// or names no class or attribute.
    #[error("{0}")]
    InvalidPath(String),
    /// The object (`/ns/Class/instance with message=..`) is already being
    /// instantiated further up the stack.
    #[error("cyclical reference: [{0}]")]
    CyclicalRelationship(String),
    /// The stack reached the engine's `max_depth` (the limit, the object).
    #[error("instantiation deeper than {0} levels: [{1}]")]
    TooDeep(usize, String),
    /// A workspace path (`/`, `..`, a class name, a `miqaews:` URI) names
    /// no object.
    #[error("Object Not Found for path=[{0}]")]
    ObjectNotFound(String),
    /// A required substitution's attribute (or state var) is missing:
    /// the attribute, the object path.
    #[error("Attribute {0} not found for object [{1}]")]
    AttributeNotFound(String, String),
    /// No domain has the method, no builtin has its name, or an embedded
    /// method it names is missing.
    #[error("{0}")]
    MethodNotFound(String),
    /// A method input without a default got no value: the method, the
    /// input.
    #[error("Method [{0}] requires parameter [{1}]")]
    MethodParmMissing(String, String),
    /// A method automate cannot run: bad call syntax, a Ruby body, a
    /// location it does not run, no script runner, a script that does not
    /// compile.
    #[error("{0}")]
    InvalidMethod(String),
    /// An object-typed value whose id is not a number or not in the
    /// object store.
    #[error("{0}")]
    ServiceNotFound(String),
    /// A `password` field's value that does not decrypt (ManageIQ's
    /// `ManageIQ::Password::PasswordError`), with the field named.
    #[error("{0}")]
    Password(String),
    /// A `collect` expression that cannot be parsed.
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
