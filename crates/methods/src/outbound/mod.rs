//! Outbound actions: what a method does to the world outside the workspace
//! (ManageIQ's `$evm.execute('send_email', ...)`,
//! `$evm.create_notification`, `$evm.execute('create_automation_request',
//! ...)`), `evm.http` for REST calls to other systems, and the state-machine
//! helpers `field_timeout`, `ansible_stats_vars` and `set_stats`.
//!
//! The settings ([`Outbound`]: the SMTP relay, the HTTP allow-list and
//! limits, the request service) are the runner's
//! ([`RhaiRunner::set_outbound`](super::RhaiRunner::set_outbound)), read by
//! each call from its frame; `automate.yaml`'s `methods:` section fills them
//! (`docs/configuration.md`). Without settings a method may still create
//! notifications, but `send_email` and `evm.http` are refused with an error
//! saying which key to set.
//!
//! Everything a method sends is written to automation.log at `info`, the
//! level of ManageIQ's `<AEMethod ...>` lines: `<AEMethod name> HTTP POST
//! https://host/path (12 bytes) → 201 (40 bytes)`, `<AEMethod name>
//! send_email to [..] from [..] subject [..]`. Credentials and bodies are
//! never logged.
//!
//! * [`http`] is `evm.http.get/post/put/delete`;
//! * [`email`] is `send_email` through `lettre`;
//! * [`notify`] is `create_notification`, stored as `Notification` objects;
//! * `execute` holds the `evm.execute(name, ...)` arms of this module.

pub mod email;
pub mod http;
pub mod notify;

use super::evm::{from_dynamic, log_user, runtime_error, to_dynamic, with_frame, with_runtime};
use automate_engine::{AttrValue, Level};
use rhai::{Dynamic, EvalAltResult, Map};
use std::sync::Arc;

pub use email::SmtpSettings;
pub use http::HttpSettings;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// What outbound actions may do: the SMTP relay, the HTTP allow-list and
/// limits, and who creates requests. The default sends nothing anywhere.
#[derive(Clone, Default)]
pub struct Outbound {
    /// `methods.smtp`: the relay `send_email` goes through; `None`:
    /// `send_email` is refused.
    pub smtp: Option<SmtpSettings>,
    /// `methods.http`: the hosts `evm.http` may reach, its timeout and
    /// answer size.
    pub http: HttpSettings,
    /// Creates the requests of `create_automation_request` (the request
    /// service of the running process); `None`: refused.
    pub requests: Option<Arc<dyn RequestMaker>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("smtp", &self.smtp)
            .field("http", &self.http)
            .field("requests", &self.requests.is_some())
            .finish()
    }
}

/// Creates automation requests for methods
/// (`$evm.execute('create_automation_request', options, userid,
/// auto_approve)`): implemented by the request service, which this crate
/// does not name.
pub trait RequestMaker: Send + Sync {
    /// Creates the request ManageIQ's `AutomationRequest.create_request`
    /// would, on `engine` (the engine of the calling method: its store):
    /// `options` holds `namespace`, `class_name`, `instance_name`,
    /// `message` and `attrs`; answers the stored request.
    fn create_automation_request(
        &self,
        engine: &automate_engine::Engine,
        options: &AttrValue,
        userid: &str,
        auto_approve: bool,
    ) -> Result<automate_vmdb::VmdbRef, String>;

    /// Creates the request ManageIQ's `MiqProvisionVirtWorkflow.from_ws`
    /// would (`create_provision_request`), on `engine`: `args` are the
    /// method's arguments after the name (version, template fields, VM
    /// fields, requester, tags, additional values, EMS and EVM custom
    /// attributes; each field a `key=value|...` string, a map or nil);
    /// answers the stored `MiqProvisionRequest`.
    fn create_provision_request(
        &self,
        engine: &automate_engine::Engine,
        args: &[AttrValue],
        userid: &str,
    ) -> Result<automate_vmdb::VmdbRef, String>;
}

/// A failed outbound action: the message a method's error line shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// An argument is missing or of the wrong kind.
    #[error("{call}: {message}")]
    Argument {
        /// The call (`send_email`, `evm.http.post`).
        call: String,
        /// What is wrong.
        message: String,
    },
    /// The action is not configured in automate.yaml.
    #[error("{call} is not configured: set {key} in automate.yaml (docs/configuration.md)")]
    NotConfigured {
        /// The call.
        call: String,
        /// The key to set.
        key: &'static str,
    },
    /// The HTTP host is not on `methods.http.allow`.
    #[error(
        "evm.http: {host} is not on methods.http.allow in automate.yaml: refused {method} {url}"
    )]
    NotAllowed {
        /// `GET`, `POST`, ...
        method: String,
        /// The URL asked for.
        url: String,
        /// Its `host:port`.
        host: String,
    },
    /// The HTTP call failed (connection, TLS, timeout, answer too large).
    #[error("evm.http: {method} {url}: {message}")]
    Http {
        /// `GET`, `POST`, ...
        method: String,
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The mail could not be built or sent.
    #[error("send_email: {0}")]
    Email(String),
    /// The notification is invalid or could not be stored.
    #[error("create_notification: {0}")]
    Notification(String),
    /// The request could not be created.
    #[error("create_automation_request: {0}")]
    Request(String),
    /// The provisioning request could not be created.
    #[error("create_provision_request: {0}")]
    ProvisionRequest(String),
    /// `field_timeout` without `ae_state_max_retries`.
    #[error("ae_state_max_retries is not set in automate field")]
    NoMaxRetries,
}

impl From<OutboundError> for Box<EvalAltResult> {
    fn from(e: OutboundError) -> Self {
        runtime_error(e.to_string())
    }
}

/// The outbound settings of the running call.
pub(crate) fn settings() -> RhaiResult<Arc<Outbound>> {
    with_frame(|f| f.outbound.clone())
        .ok_or_else(|| runtime_error("evm is only available while a method runs"))
}

/// The sandbox the running method's engine simulates in, if any
/// (`Engine::with_sandbox`): outbound actions are recorded there, not
/// performed.
pub(crate) fn sandbox() -> RhaiResult<Option<Arc<automate_vmdb::sandbox::Sandbox>>> {
    with_runtime(|rt, _, _| rt.engine().sandbox().cloned())
}

/// Writes `<AEMethod name> text` at `info` (ManageIQ's level for them).
pub(crate) fn log_sent(text: &str) -> RhaiResult<()> {
    with_runtime(|rt, _, _| log_user(rt, Level::Info, text))
}

/// A Rhai value as text: a string as is, nil as empty, anything else
/// printed.
pub(crate) fn text_of(d: &Dynamic) -> String {
    if d.is_unit() {
        return String::new();
    }
    if let Ok(s) = d.clone().into_string() {
        return s;
    }
    from_dynamic(d.clone()).to_text()
}

/// The `evm.execute(name, args...)` arms of this module: `None` when
/// `name` is not one of them (the dispatcher tries the others, then says
/// ManageIQ's `MethodNotFound`).
pub(crate) fn execute(name: &str, args: &[Dynamic]) -> Option<RhaiResult<Dynamic>> {
    let name = name.trim().trim_start_matches(':');
    Some(match name {
        "send_email" => email::send_email(args),
        "create_automation_request" => create_automation_request(args),
        "create_provision_request" => create_provision_request(args),
        _ => return None,
    })
}

/// The names [`execute`] answers (listed by the dispatcher's errors).
pub(crate) const EXECUTE_NAMES: &[&str] = &[
    "send_email",
    "create_automation_request",
    "create_provision_request",
];

/// `$evm.execute('create_automation_request', options, userid = "admin",
/// auto_approve = false)`.
fn create_automation_request(args: &[Dynamic]) -> RhaiResult<Dynamic> {
    let call = "create_automation_request";
    let options = match args.first() {
        Some(o) if o.is_map() => from_dynamic(o.clone()),
        _ => {
            return Err(OutboundError::Argument {
                call: call.into(),
                message: "the first argument must be the options map (#{namespace: .., class_name: .., instance_name: .., attrs: #{..}})".into(),
            }
            .into())
        }
    };
    let userid = args
        .get(1)
        .map(text_of)
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "admin".to_string());
    let auto_approve = args.get(2).and_then(|d| d.as_bool().ok()).unwrap_or(false);
    if let Some(sandbox) = sandbox()? {
        // A simulation: the request (and the task it schedules) is
        // recorded, not created.
        let detail = format!(
            "for [{userid}] auto_approve [{auto_approve}] options {}",
            options.inspect()
        );
        log_sent(&format!(
            "sandbox: create_automation_request {detail} not created"
        ))?;
        sandbox.suppress("create_automation_request", &detail);
        return Ok(Dynamic::UNIT);
    }
    let maker = settings()?
        .requests
        .clone()
        .ok_or(OutboundError::NotConfigured {
            call: call.into(),
            key: "a request service (run under `automate run` or `automate api`)",
        })?;
    log_sent(&format!(
        "create_automation_request for [{userid}] auto_approve [{auto_approve}] options {}",
        options.inspect()
    ))?;
    let engine = with_runtime(|rt, _, _| rt.engine().clone())?;
    let r = maker
        .create_automation_request(&engine, &options, &userid, auto_approve)
        .map_err(OutboundError::Request)?;
    Ok(Dynamic::from(super::evm::VmdbObject(r)))
}

/// `$evm.execute('create_provision_request', version, template_fields,
/// vm_fields, requester, tags, additional_values, ems_custom_attributes,
/// miq_custom_attributes)`: each field a `key=value|key=value` string, a
/// map, or nil; ManageIQ's requester is `admin` (its own TODO), as here
/// unless the requester fields name a `user_name`.
fn create_provision_request(args: &[Dynamic]) -> RhaiResult<Dynamic> {
    let call = "create_provision_request";
    if args.is_empty() {
        return Err(OutboundError::Argument {
            call: call.into(),
            message: "wrong number of arguments (given 0, expected 1..8): version ('1.1'), template_fields, vm_fields, requester, tags, additional_values, ems_custom_attributes, miq_custom_attributes".into(),
        }
        .into());
    }
    let values: Vec<AttrValue> = args.iter().map(|d| from_dynamic(d.clone())).collect();
    if let Some(sandbox) = sandbox()? {
        // A simulation: the request (its tasks, its provider operations)
        // is recorded, not created.
        let detail = format!(
            "version [{}] template_fields {} vm_fields {}",
            values[0].to_text(),
            values.get(1).map(AttrValue::inspect).unwrap_or_default(),
            values.get(2).map(AttrValue::inspect).unwrap_or_default(),
        );
        log_sent(&format!(
            "sandbox: create_provision_request {detail} not created"
        ))?;
        sandbox.suppress("create_provision_request", &detail);
        return Ok(Dynamic::UNIT);
    }
    let maker = settings()?
        .requests
        .clone()
        .ok_or(OutboundError::NotConfigured {
            call: call.into(),
            key: "a request service (run under `automate run` or `automate api`)",
        })?;
    log_sent(&format!(
        "create_provision_request version [{}] template_fields {} vm_fields {}",
        values[0].to_text(),
        values.get(1).map(AttrValue::inspect).unwrap_or_default(),
        values.get(2).map(AttrValue::inspect).unwrap_or_default(),
    ))?;
    let engine = with_runtime(|rt, _, _| rt.engine().clone())?;
    let r = maker
        .create_provision_request(&engine, &values, "admin")
        .map_err(OutboundError::ProvisionRequest)?;
    Ok(Dynamic::from(super::evm::VmdbObject(r)))
}

/// `$evm.field_timeout`: `ae_retry_interval` (seconds, `"1.minute"`;
/// default 1) times `ae_state_max_retries` of the root; an error when
/// `ae_state_max_retries` is not set.
fn field_timeout() -> RhaiResult<i64> {
    let (retries, interval) = with_runtime(|rt, obj, _| {
        let root = rt.root_of(obj);
        (
            rt.attr(root, "ae_state_max_retries").cloned(),
            rt.attr(root, "ae_retry_interval").cloned(),
        )
    })?;
    field_timeout_of(retries.as_ref(), interval.as_ref()).map_err(Into::into)
}

fn blank(v: Option<&AttrValue>) -> bool {
    match v {
        None | Some(AttrValue::Nil) => true,
        Some(v) => v.to_text().trim().is_empty(),
    }
}

/// [`field_timeout`] of the two root attributes.
pub(crate) fn field_timeout_of(
    max_retries: Option<&AttrValue>,
    interval: Option<&AttrValue>,
) -> Result<i64, OutboundError> {
    if blank(max_retries) {
        return Err(OutboundError::NoMaxRetries);
    }
    // Ruby's `to_i`: leading digits, else 0.
    let retries = max_retries.map(|v| ruby_to_i(&v.to_text())).unwrap_or(0);
    let interval = if blank(interval) {
        1
    } else {
        interval
            .and_then(|v| automate_core::time::duration_seconds(&v.to_text()))
            .map(|s| s as i64)
            .unwrap_or(0)
    };
    Ok(interval.saturating_mul(retries))
}

/// Ruby's `String#to_i`: an optional sign and the leading digits; 0 when
/// there are none.
fn ruby_to_i(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let n = digits
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '_')
        .filter(|c| *c != '_')
        .fold(0i64, |acc, c| {
            acc.saturating_mul(10)
                .saturating_add(i64::from(c as u8 - b'0'))
        });
    if neg {
        -n
    } else {
        n
    }
}

/// The prefix Ansible's `set_stats` values are kept under in the state
/// vars (ManageIQ's `ANSIBLE_STATS_PREFIX`).
pub const ANSIBLE_STATS_PREFIX: &str = "ansible_stats_";

/// `$evm.ansible_stats_vars`: the state vars named `ansible_stats_*`,
/// the prefix removed.
fn ansible_stats_vars() -> RhaiResult<Map> {
    with_runtime(|rt, _, _| {
        rt.ws
            .state_vars
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(ANSIBLE_STATS_PREFIX)
                    .map(|name| (name.into(), to_dynamic(v)))
            })
            .collect()
    })
}

/// `evm.set_stats(#{k: v})`: what an Ansible method's `set_stats` leaves
/// behind, `ansible_stats_<k>` state vars, for the next states to read
/// with `ansible_stats_vars`.
fn set_stats(stats: Map) -> RhaiResult<()> {
    with_runtime(|rt, _, _| {
        for (k, v) in stats {
            rt.ws
                .state_vars
                .insert(format!("{ANSIBLE_STATS_PREFIX}{k}"), from_dynamic(v));
        }
    })
}

/// Registers the outbound API on the `evm` marker (its `execute` arms are
/// reached through [`crate::execute`]): `create_notification`, `create_notification_strict`, `http`,
/// `field_timeout`, `ansible_stats_vars`, `set_stats`.
pub(crate) fn register(engine: &mut rhai::Engine) {
    use super::evm::Evm;
    engine.register_fn("field_timeout", |_: &mut Evm| field_timeout());
    engine.register_get("field_timeout", |_: &mut Evm| field_timeout());
    engine.register_fn("ansible_stats_vars", |_: &mut Evm| ansible_stats_vars());
    engine.register_get("ansible_stats_vars", |_: &mut Evm| ansible_stats_vars());
    engine.register_fn("set_stats", |_: &mut Evm, stats: Map| set_stats(stats));
    notify::register(engine);
    http::register(engine);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_timeout_is_interval_times_retries() {
        let s = AttrValue::str;
        assert_eq!(field_timeout_of(Some(&s("10")), None), Ok(10));
        assert_eq!(
            field_timeout_of(Some(&s("10")), Some(&s("1.minute"))),
            Ok(600)
        );
        assert_eq!(
            field_timeout_of(Some(&AttrValue::Int(3)), Some(&AttrValue::Int(30))),
            Ok(90)
        );
        assert_eq!(
            field_timeout_of(Some(&s("")), Some(&s("30"))),
            Err(OutboundError::NoMaxRetries)
        );
        assert_eq!(
            field_timeout_of(None, None),
            Err(OutboundError::NoMaxRetries)
        );
        assert_eq!(
            OutboundError::NoMaxRetries.to_string(),
            "ae_state_max_retries is not set in automate field"
        );
    }

    #[test]
    fn ruby_to_i_takes_the_leading_digits() {
        assert_eq!(ruby_to_i("42abc"), 42);
        assert_eq!(ruby_to_i(" -7"), -7);
        assert_eq!(ruby_to_i("1_000"), 1000);
        assert_eq!(ruby_to_i("x"), 0);
    }
}
