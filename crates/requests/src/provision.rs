//! Provisioning requests (ManageIQ's `MiqProvisionRequest`, request type
//! `template`, and its `MiqProvision` tasks): what
//! `$evm.execute('create_provision_request', ...)` makes
//! (`MiqAeServiceMethods.create_provision_request` →
//! `MiqProvisionVirtWorkflow.from_ws`, interface version 1.1).
//!
//! [`Requests::create_provision`] parses the web-service arguments
//! (`key=value|key=value` strings, or maps), finds the template among the
//! stored VMs and templates (`template: true`) by `name`, `guid` or
//! `ems_guid`, and stores the request (`pending_approval`) with ManageIQ's
//! option keys (`:src_vm_id`, `:vm_name`, `:number_of_vms`, `:vm_tags`,
//! `:ws_values`, ...); its life is then the automation request's
//! (`request_created`, approval, `request_approved`, `request_starting`).
//!
//! On start ([`Requests::create_provision_tasks`]) one `MiqProvision`
//! task is made per VM (names by ManageIQ's `$n{3}` rule) and each puts a
//! `clone_to_vm` provider operation for the template's provider
//! (`automate_vmdb::operation`). The task ends outside this service:
//! refused by the provider → `Error`
//! (`automate_vmdb::request_task::clone_failed`); its VM seen through the
//! provider's create event → `Ok` with `task.vm` set
//! ([`after_event_delivery`], from the engine's after-delivery hook).
//!
//! What ManageIQ's `VMProvision_VM` state machine adds (quota, placement,
//! customization, naming by Automate, post-provisioning) is domain content
//! this service does not run: the provider clones the template and the VM
//! appearing finishes the task.

use super::event::{automate_line, call_automate_event, evm};
use super::model::{set_task, text, touch, update_request_status, RequestView};
use super::{RequestError, Requests};
use automate_core::time::iso8601_secs_now;
use automate_engine::deliver::Delivery;
use automate_engine::{datatype, AttrValue, Attributes};
use automate_vmdb::operation::{self, NewOperation};
use automate_vmdb::request_task::{
    self, CLONE_METHOD, CREATED_EVENTS, PROVISION_REQUEST_CLASS, PROVISION_TASK_CLASS,
};
use automate_vmdb::{tags, ObjectStore, StoreError, VmdbRef};
use serde_json::{json, Map, Value};

/// `MiqProvisionRequest#request_type` of a provisioning request from a
/// template.
pub const PROVISION_REQUEST_TYPE: &str = "template";
/// The most VMs one request may provision (the `number_of_vms` dialog's
/// largest choice in ManageIQ).
pub const MAX_VMS: i64 = 50;

/// The arguments of `create_provision_request` (ManageIQ's
/// `MiqProvisionVirtWorkflow.from_ws`, version 1.1): each field argument
/// a `key=value|key=value` string, a map, or null.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct NewProvisionRequest {
    /// The interface version: `1.1` (1.x); `1.0` is ManageIQ's older
    /// positional interface, not supported.
    pub version: String,
    /// Finds the template: `name`, `guid`, `ems_guid` (one at least),
    /// `request_type` (`template`).
    #[serde(default)]
    pub template_fields: Value,
    /// The new VM: `vm_name` (required; `$n{3}` numbers it),
    /// `number_of_vms` (1 to 50), anything else kept in the options.
    #[serde(default)]
    pub vm_fields: Value,
    /// `user_name` (the requester), `owner_email`, `owner_first_name`,
    /// `owner_last_name`, `auto_approve` (`true`).
    #[serde(default)]
    pub requester: Value,
    /// Tags, `category=entry|...`: stored as the entries' ids
    /// (`:vm_tags`); unknown ones are left out with a warning, as ManageIQ
    /// does.
    #[serde(default)]
    pub tags: Value,
    /// `:ws_values` (keys lower-cased).
    #[serde(default)]
    pub additional_values: Value,
    /// `:ws_ems_custom_attributes` (keys as given).
    #[serde(default)]
    pub ems_custom_attributes: Value,
    /// `:ws_miq_custom_attributes` (keys as given).
    #[serde(default)]
    pub miq_custom_attributes: Value,
    /// Who asks when `requester` has no `user_name`; `admin` when `None`.
    #[serde(default)]
    pub userid: Option<String>,
}

/// `MiqRequestWorkflow.parse_ws_string`: `key=value|key=value` (items
/// split on `|`, each on its first `=`, both sides stripped, keys
/// lower-cased unless `keep_keys`), or a map (keys treated alike), or
/// null (nothing). Unlike ManageIQ, which skips them silently, an item
/// without `=` or with an empty key is refused, naming `field` and the
/// item.
pub fn parse_ws_string(
    field: &str,
    input: &Value,
    keep_keys: bool,
) -> Result<Vec<(String, Value)>, RequestError> {
    let key = |k: &str| {
        let k = k.trim();
        if keep_keys {
            k.to_string()
        } else {
            k.to_ascii_lowercase()
        }
    };
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut put = |k: String, v: Value| match out.iter_mut().find(|(o, _)| *o == k) {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    };
    match input {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let k = key(k);
                if k.is_empty() {
                    return Err(invalid(field, "a key is empty".into()));
                }
                put(k, v.clone());
            }
        }
        Value::String(s) => {
            for (n, item) in s.split('|').enumerate() {
                if item.trim().is_empty() {
                    continue;
                }
                let Some((k, v)) = item.split_once('=') else {
                    return Err(invalid(
                        field,
                        format!(
                            "item {} [{}] is not key=value (the argument is key=value|key=value)",
                            n + 1,
                            item.trim()
                        ),
                    ));
                };
                let k = key(k);
                if k.is_empty() {
                    return Err(invalid(
                        field,
                        format!("item {} [{}] has an empty key", n + 1, item.trim()),
                    ));
                }
                put(k, Value::String(v.trim().to_string()));
            }
        }
        other => {
            return Err(invalid(
                field,
                format!("must be a key=value|key=value string or a map, not {other}"),
            ))
        }
    }
    Ok(out)
}

fn invalid(field: &str, message: String) -> RequestError {
    RequestError::Invalid {
        field: field.to_string(),
        message,
    }
}

fn get<'a>(pairs: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A value as text (`""` for null; numbers and booleans printed).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn get_text(pairs: &[(String, Value)], key: &str) -> Option<String> {
    get(pairs, key).map(value_text).filter(|s| !s.is_empty())
}

/// Checks the interface version: 1.x other than 1.0.
fn check_version(version: &str) -> Result<(), RequestError> {
    let v = version.trim();
    let Ok(n) = v.parse::<f64>() else {
        return Err(invalid(
            "version",
            format!("[{v}] is not an interface version: give 1.1"),
        ));
    };
    if n == 1.0 {
        return Err(invalid(
            "version",
            "1.0 is ManageIQ's older positional interface (user, source name, target name, \
             auto_approve, tags, values), which automate does not support: give 1.1"
                .into(),
        ));
    }
    if !(1.0..2.0).contains(&n) {
        return Err(invalid(
            "version",
            format!("unknown interface version [{v}]: give 1.1"),
        ));
    }
    Ok(())
}

/// Whether a stored `template` attribute says template.
fn is_template(v: Option<AttrValue>) -> bool {
    match v {
        Some(AttrValue::Bool(b)) => b,
        Some(AttrValue::Str(s)) => matches!(s.trim(), "true" | "t" | "1"),
        Some(AttrValue::Int(i)) => i != 0,
        _ => false,
    }
}

/// `ws_template_fields`: the one stored template matching `name`, `guid`
/// and `ems_guid` (those given; case-insensitive).
fn find_template(
    store: &dyn ObjectStore,
    templ: &[(String, Value)],
) -> Result<VmdbRef, RequestError> {
    let want = |k: &str| get_text(templ, k).map(|s| s.to_lowercase());
    let (name, guid, ems_guid) = (want("name"), want("guid"), want("ems_guid"));
    let shown = || {
        templ
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join("|")
    };
    if name.is_none() && guid.is_none() && ems_guid.is_none() {
        return Err(invalid(
            "template_fields",
            format!(
                "name, guid or ems_guid is needed to find the template (given [{}])",
                shown()
            ),
        ));
    }
    let mut candidates: Vec<VmdbRef> = Vec::new();
    for v in [AttrValue::Bool(true), AttrValue::str("true")] {
        for r in store.find_by("VmOrTemplate", "template", &v)? {
            if !candidates.contains(&r) {
                candidates.push(r);
            }
        }
    }
    let lower = |r: &VmdbRef, k: &str| -> Result<String, StoreError> {
        Ok(text(store, r, k)?.to_lowercase())
    };
    let mut found = Vec::new();
    for r in candidates {
        if !is_template(store.attribute(&r, "template")?) {
            continue;
        }
        let mut matches = true;
        for (want, attr) in [(&name, "name"), (&guid, "guid"), (&ems_guid, "uid_ems")] {
            if let Some(w) = want {
                if *w != lower(&r, attr)? {
                    matches = false;
                }
            }
        }
        if !matches {
            continue;
        }
        found.push(r);
    }
    match found.len() {
        0 => Err(RequestError::NoTemplate(shown())),
        1 => Ok(found.remove(0)),
        n => Err(invalid(
            "template_fields",
            format!(
                "Multiple source template were found from input data:<{}> ({n} templates): give guid or ems_guid",
                shown()
            ),
        )),
    }
}

/// `ws_tags`: the entry ids of `category=entry` pairs; unknown ones are
/// logged and left out (ManageIQ's `compact`).
fn tag_ids(store: &dyn ObjectStore, pairs: &[(String, Value)]) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::new();
    for (cat, entry) in pairs {
        let entry = value_text(entry).to_lowercase();
        let found = match tags::find_category(store, cat)? {
            Some(c) => tags::find_entry(store, &c, &entry)?,
            None => None,
        };
        match found {
            Some(e) => ids.push(e.obj.id),
            None => {
                tracing::warn!(target: "evm", "MIQ(MiqProvisionVirtWorkflow#ws_tags) tag [{cat}/{entry}] not found: left out")
            }
        }
    }
    Ok(ids)
}

fn to_map(pairs: Vec<(String, Value)>) -> Map<String, Value> {
    pairs.into_iter().collect()
}

/// `number_of_vms` of the VM fields: 1 by default, 1 to [`MAX_VMS`].
fn number_of_vms(vm: &[(String, Value)]) -> Result<i64, RequestError> {
    let Some(v) = get(vm, "number_of_vms") else {
        return Ok(1);
    };
    let n = match v {
        Value::Number(n) => n.as_i64(),
        other => value_text(other).parse::<i64>().ok(),
    };
    match n {
        Some(n) if (1..=MAX_VMS).contains(&n) => Ok(n),
        _ => Err(invalid(
            "vm_fields",
            format!(
                "number_of_vms [{}] must be a whole number from 1 to {MAX_VMS}",
                value_text(v)
            ),
        )),
    }
}

/// `MiqProvision::Naming`'s `$n{N}`: the name split around its first
/// `$n{N}` (prefix, width, suffix), if it has one.
fn sequence_of(name: &str) -> Option<(&str, usize, &str)> {
    let start = name.find("$n{")?;
    let rest = &name[start + 3..];
    let close = rest.find('}')?;
    let width: usize = rest[..close].parse().ok()?;
    Some((&name[..start], width, &rest[close + 1..]))
}

/// The names of `n` VMs from `vm_name` on provider `ems_id`: with
/// several and no `$n{N}`, `$n{3}` is appended (ManageIQ's `vm_name`
/// method); `$n{N}` becomes the next number, zero-padded to N, not taken
/// by a VM of the provider nor by an earlier name of this request.
fn vm_names(
    store: &dyn ObjectStore,
    ems_id: Option<&AttrValue>,
    vm_name: &str,
    n: i64,
) -> Result<Vec<String>, StoreError> {
    let unresolved = if n > 1 && sequence_of(vm_name).is_none() {
        format!("{vm_name}$n{{3}}")
    } else {
        vm_name.to_string()
    };
    let Some((prefix, width, suffix)) = sequence_of(&unresolved) else {
        return Ok(vec![unresolved; 1]);
    };
    let taken = |name: &str| -> Result<bool, StoreError> {
        for r in store.find_by("VmOrTemplate", "name", &AttrValue::str(name))? {
            if store.attribute(&r, "ems_id")?.as_ref() == ems_id {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let mut out = Vec::new();
    let mut next: u64 = 1;
    while (out.len() as i64) < n {
        let name = format!("{prefix}{next:0width$}{suffix}");
        next += 1;
        if !out.contains(&name) && !taken(&name)? {
            out.push(name);
        }
    }
    Ok(out)
}

impl Requests {
    /// `create_provision_request`: checks the arguments, finds the
    /// template, stores the `MiqProvisionRequest` (`pending_approval`),
    /// raises `request_created`, and with the requester's
    /// `auto_approve=true` approves it (its tasks put their clone
    /// operations) before returning. Nothing is stored when an argument
    /// is refused.
    pub fn create_provision(&self, req: NewProvisionRequest) -> Result<RequestView, RequestError> {
        check_version(&req.version)?;
        let store = self.store();
        let templ = parse_ws_string("template_fields", &req.template_fields, false)?;
        let vm = parse_ws_string("vm_fields", &req.vm_fields, false)?;
        let requester = parse_ws_string("requester", &req.requester, false)?;
        let tag_pairs = parse_ws_string("tags", &req.tags, false)?;
        let values = parse_ws_string("additional_values", &req.additional_values, false)?;
        let ems_custom =
            parse_ws_string("ems_custom_attributes", &req.ems_custom_attributes, true)?;
        let miq_custom =
            parse_ws_string("miq_custom_attributes", &req.miq_custom_attributes, true)?;

        match get_text(&templ, "request_type").as_deref() {
            None | Some("template") => {}
            Some(other) => {
                return Err(invalid(
                    "template_fields",
                    format!("request_type [{other}]: only provisioning from a template (template) is supported"),
                ))
            }
        }
        let vm_name = get_text(&vm, "vm_name").ok_or_else(|| {
            invalid(
                "vm_fields",
                "vm_name is required (the new VM's name; $n{3} numbers several)".into(),
            )
        })?;
        let count = number_of_vms(&vm)?;
        let userid = get_text(&requester, "user_name")
            .or_else(|| {
                req.userid
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "admin".to_string());
        tracing::warn!(target: "evm", "MIQ(MiqProvisionVirtWorkflow.from_ws_ver_1_x) Web-service provisioning starting with interface version <{}> by requester <{userid}>", req.version.trim());

        let template = find_template(store, &templ)?;
        let template_name = text(store, &template, "name")?;
        let Some(ems_id) = store.attribute(&template, "ems_id")?.and_then(|v| match v {
            AttrValue::Int(i) => Some(i),
            other => other.to_text().trim().parse().ok(),
        }) else {
            return Err(invalid(
                "template_fields",
                format!(
                    "Source Template/Vm with id [{}] ({template_name}) has no EMS, unable to provision",
                    template.id
                ),
            ));
        };
        let ems_name = match store.find("ExtManagementSystem", ems_id)? {
            Some(e) => text(store, &e, "name")?,
            None => String::new(),
        };
        let auto_approve = get_text(&requester, "auto_approve").as_deref() == Some("true");
        let vm_tags = tag_ids(store, &tag_pairs)?;

        // ManageIQ's option keys; dialog choices as [value, description].
        let mut options = Map::new();
        for (k, v) in &vm {
            if k != "number_of_vms" {
                options.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &requester {
            if k != "auto_approve" && k != "user_name" {
                options.insert(k.clone(), v.clone());
            }
        }
        options.insert("request_type".into(), json!(PROVISION_REQUEST_TYPE));
        options.insert("src_vm_id".into(), json!([template.id, template_name]));
        options.insert("src_ems_id".into(), json!([ems_id, ems_name]));
        options.insert("vm_name".into(), json!(vm_name));
        options.insert("number_of_vms".into(), json!([count, count.to_string()]));
        options.insert("placement_auto".into(), json!([true, 1]));
        options.insert("vm_tags".into(), json!(vm_tags));
        options.insert("ws_values".into(), Value::Object(to_map(values)));
        options.insert(
            "ws_ems_custom_attributes".into(),
            Value::Object(to_map(ems_custom)),
        );
        options.insert(
            "ws_miq_custom_attributes".into(),
            Value::Object(to_map(miq_custom)),
        );
        options.insert("auto_approve".into(), json!(auto_approve));
        options.insert("schedule_type".into(), json!("immediately"));
        let options = Value::Object(options);

        let now = iso8601_secs_now();
        let description = format!("Provision from [{template_name}] to [{vm_name}]");
        let mut row = Attributes::default();
        let s = |v: &str| AttrValue::str(v);
        row.insert("type".into(), s(PROVISION_REQUEST_CLASS));
        row.insert("request_type".into(), s(PROVISION_REQUEST_TYPE));
        row.insert("description".into(), s(&description));
        row.insert("approval_state".into(), s("pending_approval"));
        row.insert("request_state".into(), s("pending"));
        row.insert("status".into(), s("Ok"));
        row.insert("message".into(), s(""));
        row.insert("userid".into(), s(&userid));
        row.insert("requester_name".into(), s(&userid));
        row.insert("source_type".into(), s("VmOrTemplate"));
        row.insert("source_id".into(), AttrValue::Int(template.id));
        row.insert("options".into(), datatype::from_json(&options));
        row.insert("created_on".into(), s(&now));
        row.insert("updated_on".into(), s(&now));
        let request = store.create(PROVISION_REQUEST_CLASS, row)?;
        tracing::info!(target: "evm", "MIQ(MiqProvisionRequest.create_request) Provision request [{}] created: {description}", request.id);
        call_automate_event(&self.engine, &*self.schedule, &request, "request_created")?;
        if auto_approve {
            return self.approve_as(request.id, "admin", Some("Auto-Approved"));
        }
        self.get(request.id)
    }

    /// `MiqProvisionRequest#create_request_tasks` after `request_starting`:
    /// one `MiqProvision` per VM, each putting a `clone_to_vm` operation
    /// for the template's provider (`active` until the provider answers).
    pub(super) fn create_provision_tasks(&self, request: &VmdbRef) -> Result<(), RequestError> {
        let store = self.store();
        let description = text(store, request, "description")?;
        evm(&format!(
            "MIQ(MiqProvisionRequest#create_request_tasks) Creating request task instances for: <{description}>..."
        ));
        let options = store
            .attribute(request, "options")?
            .map(|v| datatype::to_json(&v))
            .unwrap_or(Value::Null);
        let first = |k: &str| match options.get(k) {
            Some(Value::Array(a)) => a.first().cloned(),
            other => other.cloned(),
        };
        let fail = |message: String| -> Result<(), RequestError> {
            tracing::error!(target: "evm", "MIQ(MiqProvisionRequest#create_request_tasks) {message}");
            store.update(request, "request_state", AttrValue::str("finished"))?;
            store.update(request, "status", AttrValue::str("Error"))?;
            store.update(request, "message", AttrValue::str(message))?;
            touch(store, request)?;
            Ok(())
        };
        let template = match store.attribute(request, "source_id")? {
            Some(AttrValue::Int(id)) => store.find("VmOrTemplate", id)?,
            _ => None,
        };
        let Some(template) = template else {
            return fail("Unable to find source Template/Vm: it is gone".into());
        };
        let Some(ems_id) = store.attribute(&template, "ems_id")? else {
            return fail(format!(
                "Source Template/Vm with id [{}] has no EMS, unable to provision",
                template.id
            ));
        };
        let template_name = text(store, &template, "name")?;
        let vm_name = first("vm_name").map(|v| value_text(&v)).unwrap_or_default();
        let count = first("number_of_vms")
            .and_then(|v| v.as_i64())
            .unwrap_or(1)
            .clamp(1, MAX_VMS);
        let names = vm_names(store, Some(&ems_id), &vm_name, count)?;
        let userid = text(store, request, "userid")?;
        let mut tasks = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let mut task_options = options.clone();
            if let Value::Object(m) = &mut task_options {
                m.insert("vm_target_name".into(), json!(name));
                m.insert("vm_target_hostname".into(), json!(name));
                m.insert("pass".into(), json!(i + 1));
            }
            let now = iso8601_secs_now();
            let s = |v: &str| AttrValue::str(v);
            let mut row = Attributes::default();
            row.insert("type".into(), s(PROVISION_TASK_CLASS));
            row.insert("request_type".into(), s(PROVISION_REQUEST_TYPE));
            row.insert(
                "description".into(),
                s(&format!("Provision from [{template_name}] to [{name}]")),
            );
            row.insert("state".into(), s("pending"));
            row.insert("status".into(), s("Ok"));
            row.insert("message".into(), s("Pending"));
            row.insert("miq_request_id".into(), AttrValue::Int(request.id));
            row.insert("userid".into(), s(&userid));
            row.insert("source_type".into(), s("VmOrTemplate"));
            row.insert("source_id".into(), AttrValue::Int(template.id));
            row.insert("dest_ems_id".into(), ems_id.clone());
            row.insert("options".into(), datatype::from_json(&task_options));
            row.insert("created_on".into(), s(&now));
            row.insert("updated_on".into(), s(&now));
            tasks.push((store.create(PROVISION_TASK_CLASS, row)?, name.clone()));
        }
        update_request_status(store, request)?;
        let ems = match &ems_id {
            AttrValue::Int(i) => *i,
            other => other.to_text().trim().parse().unwrap_or(0),
        };
        for (task, name) in &tasks {
            // MiqProvision#execute → the state machine's `start_clone`:
            // the template's provider clones it.
            let op = operation::put(
                store,
                NewOperation {
                    class_name: template.class.to_string(),
                    instance_id: template.id,
                    ems_id: ems,
                    method_name: CLONE_METHOD.into(),
                    args: vec![AttrValue::str(name.clone()), AttrValue::Int(task.id)],
                },
            )?;
            store.update(task, "phase", AttrValue::str("start_clone"))?;
            store.update(task, "miq_queue_id", AttrValue::Int(op.id))?;
            automate_line(&format!(
                "MIQ(MiqProvision#start_clone) Provision task [{}]: cloning [{template_name}] to [{name}] on provider [{ems}] ({})",
                task.id,
                operation::short_log(op.id)
            ));
            set_task(
                store,
                task,
                "active",
                "Ok",
                &format!("Cloning [{template_name}] to [{name}]"),
            )?;
        }
        update_request_status(store, request)?;
        Ok(())
    }
}

/// The engine's after-delivery hook for an event's delivery: a provider
/// create event (`USER_ADD_VM_FINISHED_SUCCESS`, `VmDeployedEvent`,
/// `compute.instance.create.end`) whose VM a provisioning task waits for
/// finishes that task ([`request_task::vm_appeared`]). Any other event
/// costs a few substring checks. Failures are logged.
pub(super) fn after_event_delivery(store: &dyn ObjectStore, d: &Delivery) {
    if !CREATED_EVENTS
        .iter()
        .any(|e| d.uri.contains(&format!("event_type={e}")))
    {
        return;
    }
    let Ok(uri) = automate_core::uri::parse(&d.uri) else {
        return;
    };
    let vm = uri
        .query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("VmOrTemplate::vm"))
        .and_then(|(_, v)| v.trim().parse::<i64>().ok());
    let Some(vm) = vm else { return };
    let found = store.find("VmOrTemplate", vm).and_then(|r| match r {
        Some(r) => request_task::vm_appeared(store, &r),
        None => Ok(None),
    });
    if let Err(e) = found {
        tracing::error!(target: "evm", "MIQ(MiqProvision#poll_clone_complete) VM [{vm}] of {}: {e}", d.object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_strings_parse_as_manageiq_does() {
        let v = parse_ws_string(
            "vm_fields",
            &json!("VM_Name = web$n{3} | number_of_vms=2||vlan=a=b"),
            false,
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                ("vm_name".to_string(), json!("web$n{3}")),
                ("number_of_vms".to_string(), json!("2")),
                ("vlan".to_string(), json!("a=b")),
            ]
        );
        let kept = parse_ws_string("x", &json!("Owner=Ada"), true).unwrap();
        assert_eq!(kept[0].0, "Owner");
        let map = parse_ws_string("x", &json!({"Name": "t1"}), false).unwrap();
        assert_eq!(map, vec![("name".to_string(), json!("t1"))]);
        assert!(parse_ws_string("x", &Value::Null, false)
            .unwrap()
            .is_empty());
        let e = parse_ws_string("tags", &json!("cc=001|environment"), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid tags: item 2 [environment] is not key=value (the argument is key=value|key=value)"
        );
        assert!(parse_ws_string("x", &json!("=v"), false).is_err());
        assert!(parse_ws_string("x", &json!(5), false).is_err());
    }

    #[test]
    fn versions_other_than_1x_are_refused() {
        assert!(check_version("1.1").is_ok());
        assert!(check_version(" 1.2 ").is_ok());
        for bad in ["1.0", "2.0", "abc", ""] {
            let e = check_version(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid version:"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_follow_the_n_rule() {
        assert_eq!(sequence_of("web$n{3}x"), Some(("web", 3, "x")));
        assert_eq!(sequence_of("web"), None);
        let store = automate_vmdb::MemoryStore::new();
        let mut row = Attributes::default();
        row.insert("name".into(), AttrValue::str("web002"));
        row.insert("ems_id".into(), AttrValue::Int(1));
        store.create("VmOrTemplate", row).unwrap();
        let ems = AttrValue::Int(1);
        assert_eq!(
            vm_names(&store, Some(&ems), "web", 3).unwrap(),
            ["web001", "web003", "web004"]
        );
        assert_eq!(vm_names(&store, Some(&ems), "db", 1).unwrap(), ["db"]);
        assert_eq!(
            vm_names(&store, Some(&ems), "db$n{2}", 1).unwrap(),
            ["db01"]
        );
    }
}
