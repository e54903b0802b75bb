//! State machines (reference §6): one pass over the `state` fields in
//! order, driven by the root's `ae_*` attributes, with on_entry / main /
//! on_exit / on_error steps and the result codes ok, retry, error, restart,
//! continue, skip. A retry ends the pass with `ae_result = retry`; the
//! caller re-delivers the URI with [`super::Workspace::retry_args`].
//!
//! The flow and every log line follow ManageIQ's `MiqAeStateMachine`
//! (`engine/miq_ae_state_machine.rb`) and `MiqAeStateInfo`, including the
//! literal angle brackets of `State=<s> running <step> raised exception:
//! <msg>` and of the maxima messages.

use super::error::EngineError;
use super::instantiate::field_value;
use super::workspace::{Level, ObjectId};
use super::Runtime;
use automate_core::time::{now_utc_text, parse_utc_text};
use automate_core::value::{AttrValue, Attributes};
use automate_datastore::index::{AeType, ClassDef, FieldDef, ValueDef};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The four attributes saved per nested machine (reference §6.5).
pub(super) const SALIENT: [&str; 4] = [
    "ae_state",
    "ae_state_retries",
    "ae_state_started",
    "ae_state_max_retries",
];

/// The state machines being processed, innermost last (their saved
/// attributes live in [`super::Workspace::state_info`]).
#[derive(Debug, Clone, Default)]
pub struct StateInfo {
    stack: Vec<ObjectId>,
}

/// What one state field says, instance values over class values.
struct StateField<'a> {
    field: &'a FieldDef,
    value: Option<&'a ValueDef>,
    on_entry: Option<String>,
    on_exit: Option<String>,
    on_error: Option<String>,
    collect: Option<String>,
    max_retries: Option<String>,
    max_time: Option<String>,
}

impl Runtime<'_> {
    fn root_attr_text(&self, name: &str) -> String {
        self.root_text(name)
    }

    fn root_id(&self) -> Option<ObjectId> {
        self.current
            .map(|c| self.root_of(c))
            .or_else(|| self.root())
    }

    /// `save_current_state_info`: remember a machine's four attributes,
    /// unless the root has no `ae_state` at all.
    fn save_state_info(&mut self, machine: ObjectId) {
        let Some(root) = self.root_id() else {
            return;
        };
        if self.attr(root, "ae_state").is_none_or(AttrValue::is_nil) {
            return;
        }
        let values: Attributes = SALIENT
            .iter()
            .map(|k| {
                let v = self.attr(root, k).cloned().unwrap_or(AttrValue::Nil);
                (k.to_string(), v)
            })
            .collect();
        let name = self.ws.objects[machine].object_name.clone();
        self.ws.state_info.insert(name, values);
    }

    /// `reset_state_info`: clear the four attributes, then restore the
    /// machine's saved ones, if any.
    fn reset_state_info(&mut self, machine: ObjectId) {
        let Some(root) = self.root_id() else {
            return;
        };
        for k in SALIENT {
            self.set_attr(root, k, AttrValue::Nil);
        }
        let name = &self.ws.objects[machine].object_name;
        if let Some(values) = self.ws.state_info.get(name).cloned() {
            for (k, v) in values {
                self.set_attr(root, &k, v);
            }
        }
    }

    /// A new state-machine object: save the enclosing machine's values,
    /// then reset to this machine's saved values (reference §6.5).
    pub(super) fn push_state_machine(&mut self, id: ObjectId) {
        if let Some(&outer) = self.state_info.stack.last() {
            self.save_state_info(outer);
        }
        self.state_info.stack.push(id);
        self.reset_state_info(id);
    }

    /// A state machine finished its pass: forget its values when it
    /// ended `ok`, keep them when it is retrying, then restore the
    /// enclosing machine's (`pop_state_machine_info`).
    pub(super) fn pop_state_machine(&mut self, id: ObjectId) {
        self.state_info.stack.pop();
        if self.root_id().is_none() {
            return;
        }
        match self.root_attr_text("ae_result").as_str() {
            "ok" => {
                let name = &self.ws.objects[id].object_name;
                self.ws.state_info.shift_remove(name);
            }
            "retry" => self.save_state_info(id),
            _ => {}
        }
        if let Some(&outer) = self.state_info.stack.last() {
            self.reset_state_info(outer);
        }
    }

    /// One state field (reference §6.2, `process_state`).
    pub(super) fn process_state(
        &mut self,
        id: ObjectId,
        class: &Arc<ClassDef>,
        instance: Option<usize>,
        pos: usize,
        message: &str,
    ) -> Result<(), EngineError> {
        let field = &class.fields[pos];
        let value = field_value(class, instance, pos);
        let pick = |inst: Option<&String>, class_v: &Option<String>| -> Option<String> {
            inst.filter(|s| !s.trim().is_empty())
                .cloned()
                .or_else(|| class_v.clone())
        };
        let v = value;
        let sf = StateField {
            field,
            on_entry: pick(v.and_then(|v| v.on_entry.as_ref()), &field.on_entry),
            on_exit: pick(v.and_then(|v| v.on_exit.as_ref()), &field.on_exit),
            on_error: pick(v.and_then(|v| v.on_error.as_ref()), &field.on_error),
            collect: pick(v.and_then(|v| v.collect.as_ref()), &field.collect),
            max_retries: pick(v.and_then(|v| v.max_retries.as_ref()), &field.max_retries),
            max_time: pick(v.and_then(|v| v.max_time.as_ref()), &field.max_time),
            value,
        };
        let name = field.name.as_str();

        // 1. Initialise ae_state and ae_result if blank.
        if self.root_attr_text("ae_state").trim().is_empty() {
            self.set_root("ae_state", AttrValue::Str(name.to_string()));
        }
        if self.root_attr_text("ae_result").trim().is_empty() {
            self.set_root("ae_result", AttrValue::Str("ok".into()));
        }
        self.set_root("ae_next_state", AttrValue::Str(String::new()));
        self.set_root("ae_retry_server_affinity", AttrValue::Bool(false));
        // 2. Only the current state runs, and only while all is ok.
        if !self.runnable(name) {
            return Ok(());
        }
        // 3. Retry and timeout metadata.
        if self.root_attr_text("ae_state_started").trim().is_empty() {
            self.set_root("ae_state_started", AttrValue::Str(now_utc_text()));
        }
        if self.root_attr_text("ae_state_retries").trim().is_empty() {
            self.set_root("ae_state_retries", AttrValue::Int(0));
        }
        let max_r = sf
            .max_retries
            .as_deref()
            .map(super::datatype::ruby_to_i)
            .unwrap_or(0);
        self.set_root("ae_state_max_retries", AttrValue::Int(max_r));
        // 4. on_entry.
        self.state_step(name, "on_entry", |rt| {
            rt.state_methods(id, name, "on_entry", sf.on_entry.as_deref())
        })?;
        // 5. The main step, if on_entry left the state runnable.
        if self.runnable(name) {
            self.state_step(name, "", |rt| rt.state_main(id, &sf))?;
        }
        // 6. Dispatch on ae_result.
        match self.root_attr_text("ae_result").as_str() {
            "ok" => self.log(Level::Info, format!("Processed State=[{name}]")),
            "skip" => {
                self.log(Level::Warn, format!("Skipping State=[{name}]"));
                return self.set_next_state(class, name, message);
            }
            "retry" | "restart" | "async_launch" => self.bump_retries(),
            "error" => {
                self.log(Level::Warn, format!("Error in State=[{name}]"));
                return self.state_step(name, "on_error", |rt| {
                    rt.state_methods(id, name, "on_error", sf.on_error.as_deref())?;
                    if rt.root_attr_text("ae_result") == "continue" {
                        rt.log(Level::Warn, format!("Resetting Error in State=[{name}]"));
                        rt.set_root("ae_result", AttrValue::Str("ok".into()));
                        rt.set_next_state(class, name, message)?;
                    }
                    Ok(())
                });
            }
            _ => {}
        }
        // 7. on_exit, unless the state launched something asynchronous.
        let in_retry = self.root_attr_text("ae_result") == "retry";
        if self.root_attr_text("ae_result") == "async_launch" {
            self.set_root("ae_result", AttrValue::Str("retry".into()));
        } else {
            self.state_step(name, "on_exit", |rt| {
                rt.state_methods(id, name, "on_exit", sf.on_exit.as_deref())?;
                if rt.root_attr_text("ae_result") == "retry" && !in_retry {
                    rt.bump_retries();
                }
                Ok(())
            })?;
        }
        // 8. Advance.
        self.set_next_state(class, name, message)
    }

    fn runnable(&self, name: &str) -> bool {
        self.root_attr_text("ae_state") == name && self.root_attr_text("ae_result") == "ok"
    }

    fn bump_retries(&mut self) {
        let n = super::datatype::ruby_to_i(&self.root_attr_text("ae_state_retries"));
        self.set_root("ae_state_retries", AttrValue::Int(n + 1));
    }

    /// The main step (`process_state_relationship`): maxima, then a
    /// `METHOD::` call or a relationship (with the field's collect).
    fn state_main(&mut self, id: ObjectId, sf: &StateField<'_>) -> Result<(), EngineError> {
        let name = sf.field.name.as_str();
        let Some(main) = self.get_value(id, sf.field, sf.value, false)? else {
            return Ok(());
        };
        let text = main.to_text();
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            return Ok(());
        }
        self.log(Level::Info, format!("Processing State=[{name}]"));
        self.set_root("ae_state_step", AttrValue::Str("main".into()));
        self.enforce_maxima(sf.max_retries.as_deref(), sf.max_time.as_deref())?;
        let t = text.trim();
        if t.len() >= 8 && t.is_char_boundary(8) && t[..8].eq_ignore_ascii_case("METHOD::") {
            self.call_method_text(id, &t[8..])?;
        } else {
            if self
                .follow_relationship(id, name, t, sf.collect.as_deref())?
                .is_none()
            {
                return Err(EngineError::EmptyRelationship);
            }
        }
        let r = self.root_attr_text("ae_result");
        self.log(
            Level::Info,
            format!("Processed State=[{name}] with Result=[{r}]"),
        );
        Ok(())
    }

    /// `enforce_max_retries` / `enforce_max_time` (reference §6.2 step 5).
    fn enforce_maxima(
        &self,
        max_retries: Option<&str>,
        max_time: Option<&str>,
    ) -> Result<(), EngineError> {
        if let Some(m) = max_retries.filter(|m| !m.trim().is_empty()) {
            let retries_text = self.root_attr_text("ae_state_retries");
            let retries = super::datatype::ruby_to_i(&retries_text);
            if super::datatype::ruby_to_i(m) < retries {
                return Err(EngineError::Abort(format!(
                    "number of retries <{retries_text}> exceeded maximum of <{m}>"
                )));
            }
        }
        if let Some(t) = max_time.filter(|t| !t.trim().is_empty()) {
            let limit = automate_core::time::parse_duration_secs("max_time", t)
                .map_err(|e| EngineError::Abort(e.to_string()))?
                .as_secs_f64();
            let started = parse_utc_text(&self.root_attr_text("ae_state_started"));
            let lapsed = now_secs() - started.unwrap_or_else(now_secs);
            if limit <= lapsed {
                return Err(EngineError::Abort(format!(
                    "time in state <{} seconds> exceeded maximum of <{t}>",
                    automate_core::value::AttrValue::Float(lapsed).to_text()
                )));
            }
        }
        Ok(())
    }

    /// The `;`-separated methods of one step (`process_state_method`).
    fn state_methods(
        &mut self,
        id: ObjectId,
        state: &str,
        step: &str,
        methods: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(methods) = methods.filter(|m| !m.trim().is_empty()) else {
            return Ok(());
        };
        let result = (|| {
            for m in methods.split(';') {
                let m = self.substitute(id, m.trim(), false)?;
                if m.trim().is_empty() || m.trim_start().starts_with('#') {
                    continue;
                }
                self.log(
                    Level::Info,
                    format!("In State=[{state}], invoking [{step}] method=[{m}]"),
                );
                self.set_root("ae_status_state", AttrValue::Str(step.into()));
                self.set_root("ae_state", AttrValue::Str(state.into()));
                self.set_root("ae_state_step", AttrValue::Str(step.into()));
                self.call_method_text(id, &m)?;
            }
            Ok(())
        })();
        match result {
            Err(EngineError::MethodNotFound(msg)) => Err(EngineError::MethodNotFound(format!(
                "In State=[{state}], {step} {msg}"
            ))),
            other => other,
        }
    }

    /// `process_state_step_with_error_handling`: runs one step; a jump
    /// requested with `ae_next_state` is logged (and skips the state after
    /// on_entry); a stop is re-raised, every other error becomes
    /// `ae_result = error` with `ae_reason`.
    fn state_step(
        &mut self,
        state: &str,
        step: &str,
        f: impl FnOnce(&mut Self) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let before = self.root_attr_text("ae_state");
        match f(self) {
            Ok(()) => {
                let next = self.root_attr_text("ae_next_state");
                if !next.trim().is_empty() && next != before {
                    self.log(Level::Warn, format!("Skipping to state {next}"));
                    if step == "on_entry" {
                        self.set_root("ae_result", AttrValue::Str("skip".into()));
                    }
                }
                Ok(())
            }
            Err(e) => {
                let text = format!("State=<{state}> running {step} raised exception: <{e}>");
                self.log(Level::Error, text.clone());
                if matches!(e, EngineError::Stop(_) | EngineError::Budget(_)) {
                    return Err(e);
                }
                self.set_root("ae_reason", AttrValue::Str(text));
                self.set_root("ae_result", AttrValue::Str("error".into()));
                Ok(())
            }
        }
    }

    /// The state fields for `message`, in order.
    fn state_names<'c>(class: &'c ClassDef, message: &str) -> Vec<&'c str> {
        class
            .fields
            .iter()
            .filter(|f| f.aetype == AeType::State && f.runs_for(message))
            .map(|f| f.name.as_str())
            .collect()
    }

    /// `validate_state`: an `ae_next_state` naming no state aborts.
    fn validate_next_state(&mut self, states: &[&str]) -> Result<String, EngineError> {
        let next = self.root_attr_text("ae_next_state");
        if !next.trim().is_empty() && !states.contains(&next.as_str()) {
            self.log(
                Level::Error,
                format!("Next State={next} is invalid aborting state machine"),
            );
            return Err(EngineError::Abort(format!(
                "Invalid state specified <{next}>"
            )));
        }
        Ok(next)
    }

    /// `set_next_state` (reference §6.4).
    fn set_next_state(
        &mut self,
        class: &ClassDef,
        current: &str,
        message: &str,
    ) -> Result<(), EngineError> {
        let result = self.root_attr_text("ae_result");
        match result.as_str() {
            "ok" | "skip" => {
                let states = Self::state_names(class, message);
                let next = self.validate_next_state(&states)?;
                let jump = !next.trim().is_empty();
                let from = if jump { next.as_str() } else { current };
                let target = match states.iter().position(|s| *s == from) {
                    None => String::new(),
                    Some(i) if jump => states[i].to_string(),
                    Some(i) => states.get(i + 1).map(|s| s.to_string()).unwrap_or_default(),
                };
                self.set_root("ae_state", AttrValue::Str(target.clone()));
                self.set_root("ae_state_started", AttrValue::Str(String::new()));
                self.set_root("ae_state_retries", AttrValue::Int(0));
                self.set_root("ae_state_max_retries", AttrValue::Int(0));
                self.log(Level::Info, format!("Next State=[{target}]"));
                self.set_root("ae_result", AttrValue::Str("ok".into()));
            }
            "restart" => {
                self.log(
                    Level::Info,
                    format!("State=[{current}] has requested a restart"),
                );
                self.set_root("ae_result", AttrValue::Str("retry".into()));
                let states = Self::state_names(class, message);
                let next = self.validate_next_state(&states)?;
                let target = if next.trim().is_empty() {
                    states.first().map(|s| s.to_string()).unwrap_or_default()
                } else {
                    next
                };
                self.set_root("ae_state", AttrValue::Str(target.clone()));
                self.log(Level::Info, format!("Will restart at State=[{target}]"));
            }
            _ => {}
        }
        Ok(())
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
