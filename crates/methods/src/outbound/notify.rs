//! `evm.create_notification(#{level: "info", message: "...", subject: vm})`:
//! ManageIQ's `$evm.create_notification` / `create_notification!`, stored
//! as a `Notification` in the object store (both backends) and listed by
//! `GET /api/notifications` and `automate notifications list`.
//!
//! As ManageIQ's `MiqAeService#create_notification!` does:
//!
//! * the type is `type:` when given, else `automate_<audience>_<level>`
//!   (`level` default `info`, `audience` default `user`), and must be one
//!   of ManageIQ's automate notification types
//!   ([`NOTIFICATION_TYPES`]): otherwise `Invalid notification type
//!   specified`;
//! * the subject is `subject:` (a stored object), else the user running
//!   Automate (the root's `user`); neither is `Subject must be a valid
//!   Active Record object`;
//! * `message:` is kept when not blank; the initiator is the user's
//!   `userid` (`admin` without one).
//!
//! `create_notification` answers `()` when the notification cannot be made
//! (ManageIQ's rescue to nil; the reason is logged here as a warning);
//! `create_notification_strict` (ManageIQ's `create_notification!`) raises
//! it. Both log ManageIQ's `Calling Create Notification type: ...` line.

use super::{text_of, OutboundError, RhaiResult};
use crate::evm::{log_user, with_runtime, Evm, VmdbObject};
use automate_engine::{AttrValue, Attributes, Level, Runtime};
use automate_vmdb::VmdbRef;
use rhai::{Dynamic, Map};

/// The stored class of a notification.
pub const NOTIFICATION_CLASS: &str = "Notification";

/// ManageIQ's notification types an Automate method may create
/// (`db/fixtures/notification_types.yml`, `automate_*`).
pub const NOTIFICATION_TYPES: [&str; 12] = [
    "automate_user_info",
    "automate_user_success",
    "automate_user_warning",
    "automate_user_error",
    "automate_tenant_info",
    "automate_tenant_success",
    "automate_tenant_warning",
    "automate_tenant_error",
    "automate_global_info",
    "automate_global_success",
    "automate_global_warning",
    "automate_global_error",
];

/// The type of `values` (`type`, else `automate_<audience>_<level>`),
/// checked against [`NOTIFICATION_TYPES`].
pub fn notification_type(values: &Map) -> Result<String, OutboundError> {
    let given = values
        .get("type")
        .map(text_of)
        .filter(|t| !t.trim().is_empty());
    let t = match given {
        Some(t) => t.trim().trim_start_matches(':').to_string(),
        None => {
            let level = values
                .get("level")
                .map(text_of)
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "info".into());
            let audience = values
                .get("audience")
                .map(text_of)
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "user".into());
            format!(
                "automate_{}_{}",
                audience.trim_start_matches(':'),
                level.trim_start_matches(':')
            )
            .to_ascii_lowercase()
        }
    };
    if NOTIFICATION_TYPES.contains(&t.as_str()) {
        Ok(t)
    } else {
        Err(OutboundError::Notification(format!(
            "Invalid notification type specified ({t}; one of {})",
            NOTIFICATION_TYPES.join(", ")
        )))
    }
}

/// Creates the notification (`create_notification!`).
fn create(rt: &mut Runtime<'_>, obj: usize, values: &Map) -> Result<VmdbRef, OutboundError> {
    for k in values.keys() {
        if !matches!(
            k.as_str(),
            "type" | "level" | "audience" | "message" | "subject"
        ) {
            return Err(OutboundError::Notification(format!(
                "unknown key {k} (type, level, audience, message, subject)"
            )));
        }
    }
    let ty = notification_type(values)?;
    rt.log(Level::Info, format!("Validating Notification type: {ty}"));
    let root = rt.root_of(obj);
    let user = match rt.attr(root, "user") {
        Some(AttrValue::Object(r)) => Some(r.clone()),
        _ => None,
    };
    let subject = match values.get("subject") {
        Some(d) if d.is::<VmdbObject>() => d.clone().cast::<VmdbObject>().0,
        Some(d) if !d.is_unit() => {
            return Err(OutboundError::Notification(
                "Subject must be a valid Active Record object (a stored object: evm.root[\"vm\"], evm.vmdb(...))".into(),
            ))
        }
        _ => user.clone().ok_or_else(|| {
            OutboundError::Notification(
                "Subject must be a valid Active Record object (no subject given, and no user in the workspace)".into(),
            )
        })?,
    };
    // ManageIQ's polymorphic `subject_type`: the base class (`VmOrTemplate`).
    let subject_type = automate_vmdb::base_class(&subject.class)
        .unwrap_or(&subject.class)
        .to_string();
    let store = rt.engine().store().clone();
    let initiator = match &user {
        Some(u) => store
            .attribute(u, "userid")
            .ok()
            .flatten()
            .map(|v| v.to_text())
            .filter(|u| !u.is_empty()),
        None => None,
    }
    .unwrap_or_else(|| "admin".into());
    let message = values
        .get("message")
        .map(text_of)
        .filter(|m| !m.trim().is_empty());
    let (level, audience) = {
        let rest = ty.trim_start_matches("automate_");
        rest.split_once('_')
            .map(|(a, l)| (l.to_string(), a.to_string()))
            .unwrap_or_default()
    };
    rt.log(
        Level::Info,
        format!(
            "Calling Create Notification type: {ty} subject type: {subject_type} id: {} options: {}",
            subject.id,
            match &message {
                Some(m) => format!("{{:message=>{m:?}}}"),
                None => "{}".into(),
            }
        ),
    );
    let mut attrs = Attributes::default();
    attrs.insert("notification_type".into(), AttrValue::Str(ty));
    attrs.insert("level".into(), AttrValue::Str(level));
    attrs.insert("audience".into(), AttrValue::Str(audience));
    attrs.insert(
        "message".into(),
        message.map_or(AttrValue::Nil, AttrValue::Str),
    );
    attrs.insert("subject_type".into(), AttrValue::Str(subject_type));
    attrs.insert("subject_id".into(), AttrValue::Int(subject.id));
    attrs.insert("initiator".into(), AttrValue::Str(initiator));
    attrs.insert(
        "created_on".into(),
        AttrValue::Str(automate_core::time::iso8601_secs_now()),
    );
    attrs.insert("seen".into(), AttrValue::Bool(false));
    store
        .create_now(NOTIFICATION_CLASS, attrs)
        .map_err(|e| OutboundError::Notification(e.to_string()))
}

fn create_from_script(values: Map, strict: bool) -> RhaiResult<Dynamic> {
    let r = with_runtime(|rt, obj, _| {
        let r = create(rt, obj, &values);
        if let (Err(e), false) = (&r, strict) {
            log_user(rt, Level::Warn, &e.to_string());
        }
        r
    })?;
    match r {
        Ok(r) => Ok(Dynamic::from(VmdbObject(r))),
        Err(_) if !strict => Ok(Dynamic::UNIT),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn register(engine: &mut rhai::Engine) {
    engine.register_fn("create_notification", |_: &mut Evm, values: Map| {
        create_from_script(values, false)
    });
    engine.register_fn("create_notification_strict", |_: &mut Evm, values: Map| {
        create_from_script(values, true)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), Dynamic::from(v.to_string())))
            .collect()
    }

    #[test]
    fn the_type_is_made_from_audience_and_level_as_manageiq_does() {
        assert_eq!(
            notification_type(&Map::new()).ok().as_deref(),
            Some("automate_user_info")
        );
        assert_eq!(
            notification_type(&map(&[("level", "error"), ("audience", "global")]))
                .ok()
                .as_deref(),
            Some("automate_global_error")
        );
        assert_eq!(
            notification_type(&map(&[("type", ":automate_tenant_warning")]))
                .ok()
                .as_deref(),
            Some("automate_tenant_warning")
        );
        let e = notification_type(&map(&[("level", "loud")])).map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(|e| e.starts_with(
                "create_notification: Invalid notification type specified (automate_user_loud"
            )),
            "{e:?}"
        );
    }
}
