//! State machines (reference §6): one pass over the `state` fields in
//! order, driven by the root's `ae_*` attributes, with on_entry / main /
//! on_exit / on_error steps and the result codes ok, retry, error, restart,
//! continue, skip. A retry ends the pass with `ae_result = retry`; the
//! caller re-delivers the URI with the state (see [`super::Engine`] users).

use super::error::EngineError;
use super::instantiate::field_value;
use super::value::AttrValue;
use super::workspace::{Level, ObjectId};
use super::Runtime;
use crate::datastore::index::{AeType, ClassDef};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The four attributes saved per nested machine (reference §6.5).
const SALIENT: [&str; 4] = [
    "ae_state",
    "ae_state_retries",
    "ae_state_started",
    "ae_state_max_retries",
];

/// Saved `ae_*` attributes of state machines, by machine object name.
#[derive(Debug, Clone, Default)]
pub struct StateInfo {
    /// Machines being processed, innermost last.
    stack: Vec<ObjectId>,
    /// Saved values by machine object name.
    pub saved: HashMap<String, Vec<(String, AttrValue)>>,
}

impl Runtime<'_> {
    fn root_attr_text(&self, name: &str) -> String {
        self.root_text(name)
    }

    /// A new state-machine object: save the enclosing machine's values,
    /// clear them, and restore this machine's saved values if any.
    pub(super) fn push_state_machine(&mut self, id: ObjectId) {
        if let Some(&outer) = self.state_info.stack.last() {
            let name = self.ws.objects[outer].object_name.clone();
            let values = self.salient_values();
            self.state_info.saved.insert(name, values);
            for k in SALIENT {
                self.set_root(k, AttrValue::Nil);
            }
        }
        self.state_info.stack.push(id);
        let name = self.ws.objects[id].object_name.clone();
        if let Some(values) = self.state_info.saved.get(&name).cloned() {
            for (k, v) in values {
                self.set_root(&k, v);
            }
        }
    }

    /// A state machine finished its pass: keep its values if it is
    /// retrying, then restore the enclosing machine's.
    pub(super) fn pop_state_machine(&mut self, id: ObjectId) {
        self.state_info.stack.pop();
        let name = self.ws.objects[id].object_name.clone();
        if self.root().is_none() {
            return;
        }
        match self.root_attr_text("ae_result").as_str() {
            "retry" => {
                let values = self.salient_values();
                self.state_info.saved.insert(name, values);
            }
            _ => {
                self.state_info.saved.remove(&name);
            }
        }
        if let Some(&outer) = self.state_info.stack.last() {
            let outer_name = self.ws.objects[outer].object_name.clone();
            if let Some(values) = self.state_info.saved.get(&outer_name).cloned() {
                for (k, v) in values {
                    self.set_root(&k, v);
                }
            }
        }
    }

    fn salient_values(&self) -> Vec<(String, AttrValue)> {
        let root = self
            .current
            .map(|c| self.root_of(c))
            .or_else(|| self.root());
        SALIENT
            .iter()
            .map(|k| {
                let v = root
                    .and_then(|r| self.attr(r, k).cloned())
                    .unwrap_or(AttrValue::Nil);
                (k.to_string(), v)
            })
            .collect()
    }

    /// One state field (reference §6.2).
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
        let name = field.name.clone();
        let pick = |inst: Option<&String>, class_v: &Option<String>| -> Option<String> {
            inst.filter(|s| !s.trim().is_empty())
                .cloned()
                .or_else(|| class_v.clone())
        };
        let v = value.as_ref();
        let on_entry = pick(v.and_then(|v| v.on_entry.as_ref()), &field.on_entry);
        let on_exit = pick(v.and_then(|v| v.on_exit.as_ref()), &field.on_exit);
        let on_error = pick(v.and_then(|v| v.on_error.as_ref()), &field.on_error);
        let max_retries = pick(v.and_then(|v| v.max_retries.as_ref()), &field.max_retries);
        let max_time = pick(v.and_then(|v| v.max_time.as_ref()), &field.max_time);

        // 1.
        if self.root_attr_text("ae_state").trim().is_empty() {
            self.set_root("ae_state", AttrValue::Str(name.clone()));
        }
        if self.root_attr_text("ae_result").trim().is_empty() {
            self.set_root("ae_result", AttrValue::Str("ok".into()));
        }
        self.set_root("ae_next_state", AttrValue::Str(String::new()));
        self.set_root("ae_retry_server_affinity", AttrValue::Bool(false));
        // 2.
        if !self.runnable(&name) {
            return Ok(());
        }
        // 3.
        if self.root_attr_text("ae_state_started").trim().is_empty() {
            self.set_root("ae_state_started", AttrValue::Str(now_utc_text()));
        }
        if self.root_attr_text("ae_state_retries").trim().is_empty() {
            self.set_root("ae_state_retries", AttrValue::Int(0));
        }
        let max_r = max_retries
            .as_deref()
            .map(super::datatype::ruby_to_i)
            .unwrap_or(0);
        self.set_root("ae_state_max_retries", AttrValue::Int(max_r));
        // 4.
        self.run_step(id, &name, "on_entry", on_entry.as_deref())?;
        // 5.
        if self.runnable(&name) {
            let main = self.get_value(id, field, value.as_ref(), false)?;
            let text = main.map(|m| m.to_text()).unwrap_or_default();
            if !text.trim().is_empty() && !text.trim_start().starts_with('#') {
                self.log(Level::Info, format!("Processing State=[{name}]"));
                self.set_root("ae_state_step", AttrValue::Str("main".into()));
                let before = self.root_attr_text("ae_state");
                let result = self.run_main(
                    id,
                    &name,
                    &text,
                    max_retries.as_deref(),
                    max_time.as_deref(),
                );
                self.after_step(&name, "", &before, result)?;
                let r = self.root_attr_text("ae_result");
                self.log(
                    Level::Info,
                    format!("Processed State=[{name}] with Result=[{r}]"),
                );
            }
        }
        // 6.
        let result = self.root_attr_text("ae_result");
        match result.as_str() {
            "ok" => self.log(Level::Info, format!("Processed State=[{name}]")),
            "skip" => {
                self.log(Level::Warn, format!("Skipping State=[{name}]"));
                return self.set_next_state(class, &name, message);
            }
            "retry" | "restart" | "async_launch" => self.bump_retries(),
            "error" => {
                self.log(Level::Warn, format!("Error in State=[{name}]"));
                self.run_step(id, &name, "on_error", on_error.as_deref())?;
                if self.root_attr_text("ae_result") == "continue" {
                    self.log(Level::Warn, format!("Resetting Error in State=[{name}]"));
                    self.set_root("ae_result", AttrValue::Str("ok".into()));
                    return self.set_next_state(class, &name, message);
                }
                return Ok(());
            }
            _ => {}
        }
        // 7.
        if self.root_attr_text("ae_result") == "async_launch" {
            self.set_root("ae_result", AttrValue::Str("retry".into()));
        } else {
            let was_retry = self.root_attr_text("ae_result") == "retry";
            self.run_step(id, &name, "on_exit", on_exit.as_deref())?;
            if !was_retry && self.root_attr_text("ae_result") == "retry" {
                self.bump_retries();
            }
        }
        // 8.
        self.set_next_state(class, &name, message)
    }

    fn runnable(&self, name: &str) -> bool {
        self.root_attr_text("ae_state") == name && self.root_attr_text("ae_result") == "ok"
    }

    fn bump_retries(&mut self) {
        let n = super::datatype::ruby_to_i(&self.root_attr_text("ae_state_retries"));
        self.set_root("ae_state_retries", AttrValue::Int(n + 1));
    }

    /// The main step: maxima, then a `METHOD::` call or a relationship.
    fn run_main(
        &mut self,
        id: ObjectId,
        name: &str,
        text: &str,
        max_retries: Option<&str>,
        max_time: Option<&str>,
    ) -> Result<(), EngineError> {
        self.enforce_maxima(max_retries, max_time)?;
        let t = text.trim();
        if t.len() >= 8 && t[..8].eq_ignore_ascii_case("METHOD::") {
            return self.call_method_text(id, &t[8..]);
        }
        match self.follow_relationship(id, name, t, None)? {
            Some(_) => Ok(()),
            None => Err(EngineError::EmptyRelationship),
        }
    }

    /// `enforce_max_retries` / `enforce_max_time` (reference §6.2 step 5).
    fn enforce_maxima(
        &self,
        max_retries: Option<&str>,
        max_time: Option<&str>,
    ) -> Result<(), EngineError> {
        let retries = super::datatype::ruby_to_i(&self.root_attr_text("ae_state_retries"));
        if let Some(m) = max_retries.filter(|m| !m.trim().is_empty()) {
            let m = super::datatype::ruby_to_i(m);
            if m < retries {
                return Err(EngineError::Abort(format!(
                    "number of retries {retries} exceeded maximum of {m}"
                )));
            }
        }
        if let Some(t) = max_time.filter(|t| !t.trim().is_empty()) {
            let limit = super::datatype::duration_seconds(t).unwrap_or(0.0);
            if let Some(started) = parse_utc_text(&self.root_attr_text("ae_state_started")) {
                let elapsed = now_secs() - started;
                if elapsed >= limit {
                    return Err(EngineError::Abort(format!(
                        "time in state {elapsed:.0} seconds exceeded maximum of {}",
                        t.trim()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs the `;`-separated methods of one step under the step error
    /// handler (reference §6.3).
    fn run_step(
        &mut self,
        id: ObjectId,
        state: &str,
        step: &str,
        methods: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(methods) = methods.filter(|m| !m.trim().is_empty()) else {
            return Ok(());
        };
        let before = self.root_attr_text("ae_state");
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
                match self.call_method_text(id, &m) {
                    Err(EngineError::MethodNotFound(msg)) => {
                        return Err(EngineError::MethodNotFound(format!(
                            "In State=[{state}], {step} {msg}"
                        )))
                    }
                    other => other?,
                }
            }
            Ok(())
        })();
        self.after_step(state, step, &before, result)
    }

    /// What happens after a step ran: `ae_next_state` jumps, and errors
    /// turned into `ae_result = error` (a stop is re-raised).
    fn after_step(
        &mut self,
        state: &str,
        step: &str,
        before: &str,
        result: Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        if let Err(e) = result {
            let text = format!("State={state} running {step} raised exception: {e}");
            self.log(Level::Error, text.clone());
            if matches!(e, EngineError::Stop(_)) {
                return Err(e);
            }
            self.set_root("ae_reason", AttrValue::Str(text));
            self.set_root("ae_result", AttrValue::Str("error".into()));
            return Ok(());
        }
        let next = self.root_attr_text("ae_next_state");
        if !next.trim().is_empty() && next != before {
            self.log(Level::Warn, format!("Skipping to state {next}"));
            if step == "on_entry" {
                self.set_root("ae_result", AttrValue::Str("skip".into()));
            }
        }
        Ok(())
    }

    /// `set_next_state` (reference §6.4).
    fn set_next_state(
        &mut self,
        class: &ClassDef,
        current: &str,
        message: &str,
    ) -> Result<(), EngineError> {
        let states: Vec<&str> = class
            .fields
            .iter()
            .filter(|f| f.aetype == AeType::State && f.runs_for(message))
            .map(|f| f.name.as_str())
            .collect();
        let next = self.root_attr_text("ae_next_state");
        if !next.trim().is_empty() && !states.contains(&next.as_str()) {
            self.log(
                Level::Error,
                format!("Next State={next} is invalid aborting state machine"),
            );
            return Err(EngineError::Abort(format!(
                "Invalid state specified {next}"
            )));
        }
        let result = self.root_attr_text("ae_result");
        match result.as_str() {
            "ok" | "skip" => {
                let target = if !next.trim().is_empty() {
                    next
                } else {
                    states
                        .iter()
                        .position(|s| *s == current)
                        .and_then(|i| states.get(i + 1))
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                };
                self.set_root("ae_state_started", AttrValue::Str(String::new()));
                self.set_root("ae_state_retries", AttrValue::Int(0));
                self.set_root("ae_state_max_retries", AttrValue::Int(0));
                self.log(Level::Info, format!("Next State=[{target}]"));
                self.set_root("ae_state", AttrValue::Str(target));
                self.set_root("ae_result", AttrValue::Str("ok".into()));
            }
            "restart" => {
                self.log(
                    Level::Info,
                    format!("State=[{current}] has requested a restart"),
                );
                self.set_root("ae_result", AttrValue::Str("retry".into()));
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

/// `Time.now.utc.to_s`: `2026-11-24 20:05:09 UTC`.
pub fn now_utc_text() -> String {
    utc_text(now_secs() as i64)
}

pub fn utc_text(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses `utc_text` output back to seconds since the epoch.
pub fn parse_utc_text(s: &str) -> Option<f64> {
    let s = s.trim().strip_suffix("UTC")?.trim();
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    Some((days_from_civil(y, m, dd) * 86_400 + hh * 3600 + mm * 60 + ss) as f64)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_round_trips() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_795_000_000), "2026-11-18 10:13:20 UTC");
        assert_eq!(
            parse_utc_text("2026-11-18 10:13:20 UTC"),
            Some(1_795_000_000.0)
        );
    }
}
