//! System keys: the URI arguments the engine and its callers set
//! themselves when they build a delivery (the task, request, event, user
//! and server a delivery is for, `object_name`, `vmdb_object_type`, the
//! state machine's `ae_state*`), in ONE place.
//!
//! A query key means the attribute it names (`AutomationTask::automation_task`,
//! `foo::AUTOMATION_TASK` and `automation_task` all set `automation_task`, see
//! [`automate_core::uri::classify_arg_key`]), so keys are compared by that
//! attribute name. User input (request parameters, resolve attributes,
//! `raise_evm_event` inputs) never overrides a system key: where a user sends
//! one it is refused ([`check_user_key`]), and where user input and system
//! pairs meet inside the product the system's win ([`merge_args`]).

use automate_core::uri::{classify_arg_key, ArgKey};

/// The attribute names the product sets itself on a delivery (lower case).
/// An object reference `Class::name` also sets `name_id`, so both are here.
pub const SYSTEM_ATTRS: &[&str] = &[
    // The object a delivery is for, and who runs it.
    "automation_task",
    "automation_task_id",
    "automation_request",
    "automation_request_id",
    "miq_request",
    "miq_request_id",
    "miq_request_task",
    "miq_request_task_id",
    "user",
    "user_id",
    "userid",
    "miq_server",
    "miq_server_id",
    "dialog_param_parent_request_id",
    // Events.
    "event_type",
    "event_id",
    "event_stream",
    "event_stream_id",
    "miq_event",
    "miq_event_id",
    // What the delivery is.
    "object_name",
    "vmdb_object_type",
    // The state machine's position, carried by retries.
    "ae_state",
    "ae_state_retries",
    "ae_state_started",
    "ae_state_step",
    "ae_state_data",
    "ae_state_previous",
    "ae_status_state",
];

/// A user-supplied key that names a system attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field}: [{key}] sets the system attribute [{attr}], which only automate sets; \
     use another name"
)]
pub struct SystemKeyError {
    /// Where the key was given (`parameters.AutomationTask::automation_task`).
    pub field: String,
    /// The key as the user wrote it.
    pub key: String,
    /// The attribute it would set.
    pub attr: String,
}

/// The attribute a query key sets (lower case): the name after the last
/// `::`, or the whole key.
pub fn attr_name(key: &str) -> String {
    match classify_arg_key(key) {
        ArgKey::Plain(n) | ArgKey::Array(n) => n,
        ArgKey::Typed { name, .. } | ArgKey::ObjectRef { name, .. } => name,
    }
}

/// The system attribute `key` would set, if it sets one.
pub fn system_attr(key: &str) -> Option<String> {
    let name = attr_name(key);
    SYSTEM_ATTRS.contains(&name.trim()).then_some(name)
}

/// Whether `key` (a query key or attribute name) sets a system attribute.
pub fn is_system_key(key: &str) -> bool {
    system_attr(key).is_some()
}

/// Refuses a key a user sent when it sets a system attribute; `field` says
/// where it was given (it becomes the error's field, e.g. `parameters`).
pub fn check_user_key(field: &str, key: &str) -> Result<(), SystemKeyError> {
    match system_attr(key) {
        Some(attr) => Err(SystemKeyError {
            field: format!("{field}.{key}"),
            key: key.to_string(),
            attr,
        }),
        None => Ok(()),
    }
}

/// The arguments of a delivery built from `system` pairs and `user` pairs:
/// a user pair is dropped (with a warning) when it sets a system attribute
/// or the same attribute as one of `system`'s pairs; the system pairs all
/// stay. `system`'s pairs come first, then the user pairs kept, in their
/// order.
pub fn merge_args(
    system: Vec<(String, String)>,
    user: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let taken: Vec<String> = system.iter().map(|(k, _)| attr_name(k)).collect();
    let mut out = system;
    for (k, v) in user {
        let name = attr_name(&k);
        if is_system_key(&k) || taken.contains(&name) {
            tracing::warn!(
                target: "evm",
                "argument [{k}] sets [{name}], which the system sets; the system's value is kept"
            );
            continue;
        }
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_are_compared_by_the_attribute_they_set() {
        for key in [
            "AutomationTask::automation_task",
            "automationtask::AUTOMATION_TASK",
            "Foo::automation_task",
            "automation_task",
            "integer::automation_task_id",
            "Array::ae_state",
            "ManageIQ::Providers::Vm::user",
            "EventStream::event_stream",
            "VMDB_OBJECT_TYPE",
        ] {
            assert!(is_system_key(key), "{key}");
        }
        for key in ["who", "VmOrTemplate::vm", "dialog_x", "task", "::"] {
            assert!(!is_system_key(key), "{key}");
        }
        let e = check_user_key("parameters", "AutomationTask::automation_task")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("parameters.AutomationTask::automation_task")
                && e.contains("[automation_task]"),
            "{e}"
        );
    }

    #[test]
    fn system_pairs_win_over_user_pairs() {
        let merged = merge_args(
            pairs(&[
                ("AutomationTask::automation_task", "7"),
                ("VmOrTemplate::vm", "3"),
            ]),
            pairs(&[
                ("Foo::automation_task", "1"),
                ("automation_task", "2"),
                ("vm", "9"),
                ("who", "Ada"),
                ("object_name", "x"),
            ]),
        );
        assert_eq!(
            merged,
            pairs(&[
                ("AutomationTask::automation_task", "7"),
                ("VmOrTemplate::vm", "3"),
                ("who", "Ada"),
            ])
        );
    }
}
