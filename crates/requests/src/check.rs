//! The checks a new request's namespace, class, instance and parameters
//! pass before anything is stored.

use super::RequestError;
use automate_engine::{keys, Engine};

/// Refuses a namespace, class or instance name holding `?`, `#` or a
/// control character: it would smuggle a query (system keys) or a message
/// into the task's URI.
pub fn check_uri_part(field: &str, value: &str) -> Result<(), RequestError> {
    match value
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_control())
    {
        Some(c) => Err(RequestError::Invalid {
            field: field.to_string(),
            message: format!("must not hold {c:?} (a name, not a URI)"),
        }),
        None => Ok(()),
    }
}

/// Refuses request parameters that name a system key
/// ([`keys::SYSTEM_ATTRS`]): the system sets those itself. `field` names
/// where the parameters were given (`parameters`, `resources[2].parameters`).
pub fn check_parameters(
    field: &str,
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), RequestError> {
    for k in parameters.keys() {
        keys::check_user_key(field, k).map_err(|e| RequestError::Invalid {
            field: e.field.clone(),
            message: format!(
                "[{}] is a system key (it sets [{}], which automate sets for the task); use another name",
                e.key, e.attr
            ),
        })?;
    }
    Ok(())
}

/// `strip.gsub(/(^\/|\/$)/, "")`, applied until no slash is left at
/// either end.
pub(super) fn clean_path(s: &str) -> String {
    s.trim().trim_matches('/').trim().to_string()
}

/// Refuses a namespace, class or instance the datastore does not have.
pub(super) fn check_path(
    engine: &Engine,
    namespace: &str,
    class: &str,
    instance: &str,
) -> Result<(), RequestError> {
    let index = engine.datastore().index();
    let mut classes: Vec<_> = index.classes_at(namespace, class).to_vec();
    if let Some(c) = index.class(namespace, class) {
        classes.push(c.clone());
    }
    if classes.is_empty() {
        let ns = namespace.to_ascii_lowercase();
        let prefix = format!("{ns}/");
        let known = index.all_classes().any(|c| {
            [
                c.namespace.to_ascii_lowercase(),
                c.fq_namespace().to_ascii_lowercase(),
            ]
            .iter()
            .any(|n| *n == ns || n.starts_with(&prefix))
        });
        return Err(if known {
            RequestError::Unknown {
                what: "class".into(),
                path: format!("/{namespace}/{class}"),
            }
        } else {
            RequestError::Unknown {
                what: "namespace".into(),
                path: format!("/{namespace}"),
            }
        });
    }
    if classes.iter().any(|c| c.instance(instance).is_some()) {
        return Ok(());
    }
    Err(RequestError::Unknown {
        what: "instance".into(),
        path: format!("/{namespace}/{class}/{instance}"),
    })
}
