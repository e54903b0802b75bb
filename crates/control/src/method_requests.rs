//! Requests made by methods: `$evm.execute('create_automation_request',
//! options, userid, auto_approve)` and `$evm.execute('create_provision_request',
//! version, template_fields, vm_fields, requester, tags, values,
//! ems_custom_attributes, miq_custom_attributes)` ([`MethodRequests`], the
//! `automate_methods::outbound::RequestMaker` the service gives the Rhai
//! runner). It lives here, above both `methods` and `requests`, so
//! neither names the other.
//!
//! ManageIQ's options map to a [`NewRequest`]: `namespace`, `class_name`,
//! `instance_name`, `message` and `attrs` (the parameters); `user_id` in
//! the options is ignored (the requester is `userid`). The request is
//! created on the calling method's engine, so it lands in the same store
//! (and unit of work) as the method's other writes; with `auto_approve`
//! its task runs before the call returns, as [`Requests::create`] does.

use automate_engine::datatype::to_json;
use automate_engine::{AttrValue, Engine};
use automate_methods::outbound::RequestMaker;
use automate_requests::{NewProvisionRequest, NewRequest, Requests, REQUEST_CLASS};
use automate_vmdb::{Schedule, VmdbRef};
use std::sync::Arc;

/// Creates automation requests for methods, their retries scheduled in
/// `schedule`.
pub struct MethodRequests {
    schedule: Arc<dyn Schedule>,
}

impl MethodRequests {
    /// Requests whose retries go to `schedule` (the store's scheduled work).
    pub fn new(schedule: Arc<dyn Schedule>) -> MethodRequests {
        MethodRequests { schedule }
    }
}

/// ManageIQ's `create_automation_request` options as a [`NewRequest`].
pub fn new_request(
    options: &AttrValue,
    userid: &str,
    auto_approve: bool,
) -> Result<NewRequest, String> {
    let serde_json::Value::Object(o) = to_json(options) else {
        return Err("the options must be a map".into());
    };
    let text = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let need = |k: &str| {
        text(k)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("options.{k} is missing"))
    };
    let parameters = match o.get("attrs") {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => return Err("options.attrs must be a map".into()),
    };
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "namespace" | "class_name" | "instance_name" | "message" | "attrs" | "user_id"
        ) {
            return Err(format!(
                "unknown option {k} (namespace, class_name, instance_name, message, attrs, user_id)"
            ));
        }
    }
    Ok(NewRequest {
        namespace: need("namespace")?,
        class: need("class_name")?,
        instance: need("instance_name")?,
        message: text("message"),
        parameters,
        auto_approve,
        userid: Some(userid.to_string()),
    })
}

/// `create_provision_request`'s arguments (after the name) as a
/// [`NewProvisionRequest`]: the version's text, each field argument as a
/// string, a map or null (anything else is refused by the parser, naming
/// the argument).
pub fn new_provision_request(
    args: &[AttrValue],
    userid: &str,
) -> Result<NewProvisionRequest, String> {
    let field = |i: usize| args.get(i).map(to_json).unwrap_or(serde_json::Value::Null);
    let version = match args.first() {
        None | Some(AttrValue::Nil) => {
            return Err("the version (first argument, '1.1') is missing".into())
        }
        Some(v) => v.to_text(),
    };
    Ok(NewProvisionRequest {
        version,
        template_fields: field(1),
        vm_fields: field(2),
        requester: field(3),
        tags: field(4),
        additional_values: field(5),
        ems_custom_attributes: field(6),
        miq_custom_attributes: field(7),
        userid: Some(userid.to_string()),
    })
}

impl RequestMaker for MethodRequests {
    fn create_provision_request(
        &self,
        engine: &Engine,
        args: &[AttrValue],
        userid: &str,
    ) -> Result<VmdbRef, String> {
        let req = new_provision_request(args, userid)?;
        let view = Requests::new(engine.clone(), self.schedule.clone())
            .create_provision(req)
            .map_err(|e| e.to_string())?;
        Ok(VmdbRef {
            class: Arc::from(automate_vmdb::request_task::PROVISION_REQUEST_CLASS),
            id: view.id,
        })
    }

    fn create_automation_request(
        &self,
        engine: &Engine,
        options: &AttrValue,
        userid: &str,
        auto_approve: bool,
    ) -> Result<VmdbRef, String> {
        let req = new_request(options, userid, auto_approve)?;
        let view = Requests::new(engine.clone(), self.schedule.clone())
            .create(req)
            .map_err(|e| e.to_string())?;
        Ok(VmdbRef {
            class: Arc::from(REQUEST_CLASS),
            id: view.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manageiq_options_become_a_new_request() {
        let s = AttrValue::str;
        let opts = AttrValue::Hash(vec![
            (s("namespace"), s("System")),
            (s("class_name"), s("Request")),
            (s("instance_name"), s("HelloWorld")),
            (s("attrs"), AttrValue::Hash(vec![(s("who"), s("Ada"))])),
        ]);
        let r = new_request(&opts, "jdoe", true).map_err(|e| e.to_string());
        let r = r.as_ref().map(|r| {
            (
                r.namespace.as_str(),
                r.class.as_str(),
                r.instance.as_str(),
                r.parameters.get("who").and_then(|v| v.as_str()),
                r.userid.as_deref(),
                r.auto_approve,
            )
        });
        assert_eq!(
            r,
            Ok((
                "System",
                "Request",
                "HelloWorld",
                Some("Ada"),
                Some("jdoe"),
                true
            ))
        );
        let missing = AttrValue::Hash(vec![(s("namespace"), s("System"))]);
        assert_eq!(
            new_request(&missing, "admin", false).map(|_| ()),
            Err("options.class_name is missing".to_string())
        );
    }
}
