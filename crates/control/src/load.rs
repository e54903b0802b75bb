//! Reading `control/*.yaml`: the YAML is parsed with the datastore's
//! loader; the line of a field is found again in the text (block-style
//! YAML: `policies:` at the left margin, one `- ` item per policy).

use super::{Action, Alert, Condition, ConditionEngine, ControlError, ControlSet, Policy};
use automate_datastore::yaml::{parse_document, Mapping, Value};
use automate_engine::AttrValue;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads every `*.yaml` / `*.yml` file of `dir`, by file name, its
/// conditions compiled for an engine of their own ([`load_with`]).
pub fn load(dir: &Path) -> Result<ControlSet, ControlError> {
    load_with(&Arc::new(ConditionEngine::new()), dir)
}

/// Loads every `*.yaml` / `*.yml` file of `dir`, by file name, its
/// conditions compiled for (and run on) `conditions`. A missing
/// directory is an empty set; the first bad file or field is the error.
/// Files are read as the datastore's are ([`automate_datastore::fs::read_text`]):
/// a link is refused naming it, never followed, and a FIFO is never waited on.
pub fn load_with(
    conditions: &Arc<ConditionEngine>,
    dir: &Path,
) -> Result<ControlSet, ControlError> {
    let mut set = ControlSet::default();
    for file in control_files(dir)? {
        let text = automate_datastore::fs::read_text(&file)
            .map_err(|p| err(&file, p.line, "", p.message))?;
        load_text(conditions, &text, &file, &mut set)?;
    }
    Ok(set)
}

/// Every problem of the control files of `dir`, for `automate datastore
/// validate`: each file is loaded on its own, so a bad file does not hide
/// the next one's problems; when every file loads alone, the whole
/// directory is loaded as [`load`] does, so a clash between files (a name
/// defined twice) is reported too. A missing directory has no problems.
pub fn check(dir: &Path) -> Vec<ControlError> {
    let files = match control_files(dir) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let conditions = Arc::new(ConditionEngine::new());
    let mut problems = Vec::new();
    for file in &files {
        let mut set = ControlSet::default();
        let loaded = automate_datastore::fs::read_text(file)
            .map_err(|p| err(file, p.line, "", p.message))
            .and_then(|text| load_text(&conditions, &text, file, &mut set));
        if let Err(e) = loaded {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        if let Err(e) = load_with(&conditions, dir) {
            problems.push(e);
        }
    }
    problems
}

/// The `*.yaml` / `*.yml` files of `dir`, by name; none when it is missing.
fn control_files(dir: &Path) -> Result<Vec<PathBuf>, ControlError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir, 0, "", format!("cannot read directory: {e}"))),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            // Not `is_file`, which follows links: a link is read (and refused) below.
            !p.is_dir() && p.extension().is_some_and(|x| x == "yaml" || x == "yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn err(file: &Path, line: usize, field: &str, message: impl Into<String>) -> ControlError {
    ControlError {
        file: file.to_path_buf(),
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// Finds lines again in the text of one file.
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl Lines<'_> {
    /// The 1-based line of the top-level key `key`, and the 1-based lines
    /// of its `- ` items.
    fn section(&self, key: &str) -> (usize, Vec<usize>) {
        let Some(start) = self
            .lines
            .iter()
            .position(|l| l.starts_with(&format!("{key}:")))
        else {
            return (0, Vec::new());
        };
        let mut items = Vec::new();
        let mut indent = None;
        for (i, l) in self.lines.iter().enumerate().skip(start + 1) {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let ind = l.len() - t.len();
            if ind == 0 && !t.starts_with("- ") && t != "-" {
                break;
            }
            if (t.starts_with("- ") || t == "-") && indent.is_none_or(|n| n == ind) {
                indent = Some(ind);
                items.push(i + 1);
            }
        }
        (start + 1, items)
    }

    /// The 1-based line of `key:` in lines `from..to` (1-based, `to`
    /// exclusive), else `from`.
    fn key(&self, from: usize, to: usize, key: &str) -> usize {
        let want = format!("{key}:");
        (from..to.min(self.lines.len() + 1))
            .find(|&n| {
                let t = self.lines[n - 1].trim_start();
                let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
                t.starts_with(&want)
            })
            .unwrap_or(from)
    }

    /// Whether the value of the key on line `n` starts on a later line
    /// (`key: |`, `key: >-`, `key:`).
    fn block_value(&self, n: usize) -> bool {
        let Some(l) = n.checked_sub(1).and_then(|i| self.lines.get(i)) else {
            return false;
        };
        let after = l.split_once(':').map_or("", |(_, v)| v).trim();
        after.is_empty() || after.starts_with('|') || after.starts_with('>')
    }
}

/// One item being read: its file, field path and line range.
struct Item<'a> {
    conditions: &'a Arc<ConditionEngine>,
    file: &'a Path,
    lines: &'a Lines<'a>,
    path: String,
    from: usize,
    to: usize,
}

impl Item<'_> {
    fn fail(&self, field: &str, message: impl Into<String>) -> ControlError {
        let line = if field.is_empty() {
            self.from
        } else {
            self.lines.key(self.from, self.to, field)
        };
        let name = if field.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{field}", self.path)
        };
        err(self.file, line, &name, message)
    }

    fn string(&self, m: &Mapping, field: &str, required: bool) -> Result<String, ControlError> {
        match m.get(field) {
            None | Some(Value::Null) if !required => Ok(String::new()),
            None | Some(Value::Null) => Err(self.fail(field, "is required")),
            Some(v) => match v.scalar_text() {
                Some(s) if !(required && s.trim().is_empty()) => Ok(s),
                Some(_) => Err(self.fail(field, "must not be empty")),
                None => Err(self.fail(field, "must be a string")),
            },
        }
    }

    fn condition(&self, m: &Mapping) -> Result<Option<Condition>, ControlError> {
        let source = match m.get("condition") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Str(s)) => s.clone(),
            Some(_) => return Err(self.fail("condition", "must be a Rhai expression (a string)")),
        };
        if source.trim().is_empty() {
            return Ok(None);
        }
        self.conditions
            .compile(&source)
            .map(Some)
            .map_err(|(line, msg)| {
                let key_line = self.lines.key(self.from, self.to, "condition");
                // Rhai places "incomplete" at the end of input: keep the line
                // within the condition.
                let last = source.trim_end().lines().count().max(1);
                let line = if self.lines.block_value(key_line) {
                    key_line + line.clamp(1, last)
                } else {
                    key_line
                };
                err(
                    self.file,
                    line,
                    &format!("{}.condition", self.path),
                    format!("does not compile: {msg}"),
                )
            })
    }

    fn actions(&self, m: &Mapping, field: &str) -> Result<Vec<Action>, ControlError> {
        let items = match m.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Seq(items)) => items,
            Some(_) => return Err(self.fail(field, "must be a list of actions")),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, a)| self.action(field, i, a))
            .collect()
    }

    fn action(&self, field: &str, i: usize, a: &Value) -> Result<Action, ControlError> {
        let what = format!("{field}[{i}]");
        let bad = |msg: &str| {
            self.fail(field, msg)
                .with_field(format!("{}.{what}", self.path))
        };
        let Some((kind, v)) = a
            .as_map()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next())
        else {
            return Err(bad(
                "each action is a mapping with one key: log, raise_event, invoke or set_attribute",
            ));
        };
        let text = || v.scalar_text().filter(|s| !s.trim().is_empty());
        match kind {
            "log" => text()
                .map(Action::Log)
                .ok_or_else(|| bad("log: needs a message")),
            "raise_event" => text()
                .map(|s| Action::RaiseEvent(s.trim().to_string()))
                .ok_or_else(|| bad("raise_event: needs an event name")),
            "invoke" => text()
                .map(|s| Action::Invoke(s.trim().to_string()))
                .ok_or_else(|| bad("invoke: needs an automate URI")),
            "set_attribute" => {
                let sm = v.as_map().ok_or_else(|| {
                    bad("set_attribute: needs {name: <attribute>, value: <value>}")
                })?;
                let name = sm
                    .get("name")
                    .and_then(Value::scalar_text)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| bad("set_attribute: needs a name"))?;
                let value = match sm.get("value") {
                    None | Some(Value::Null) => AttrValue::Nil,
                    Some(Value::Bool(b)) => AttrValue::Bool(*b),
                    Some(Value::Int(n)) => AttrValue::Int(*n),
                    Some(Value::Float(f)) => AttrValue::Float(*f),
                    Some(Value::Str(s)) => AttrValue::Str(s.clone()),
                    Some(_) => return Err(bad("set_attribute: the value must be a scalar")),
                };
                Ok(Action::SetAttribute { name, value })
            }
            other => match crate::VM_OPERATION_ACTIONS
                .iter()
                .find(|(k, _)| *k == other)
            {
                Some((_, method)) => Ok(Action::VmOperation(method)),
                None => Err(bad(&format!(
                    "unknown action [{other}]: one of log, raise_event, invoke, set_attribute, {}",
                    crate::VM_OPERATION_ACTIONS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            },
        }
    }
}

impl ControlError {
    fn with_field(mut self, field: String) -> Self {
        self.field = field;
        self
    }
}

fn load_text(
    conditions: &Arc<ConditionEngine>,
    text: &str,
    file: &Path,
    set: &mut ControlSet,
) -> Result<(), ControlError> {
    let doc = parse_document(text, file).map_err(|e| ControlError {
        file: e.file,
        line: e.line,
        field: String::new(),
        message: e.message,
    })?;
    let lines = Lines {
        lines: text.lines().collect(),
    };
    let top = match &doc {
        Value::Null => return Ok(()),
        Value::Map(m) => m,
        _ => {
            return Err(err(
                file,
                1,
                "",
                "a control file is a mapping with `policies:` and `alerts:`",
            ))
        }
    };
    for (key, _) in top.iter() {
        if key != "policies" && key != "alerts" {
            let line = lines.key(1, lines.lines.len() + 1, key);
            return Err(err(
                file,
                line,
                key,
                "unknown key: a control file has `policies:` and `alerts:`",
            ));
        }
    }
    for (section, is_policy) in [("policies", true), ("alerts", false)] {
        let items = match top.get(section) {
            None | Some(Value::Null) => continue,
            Some(Value::Seq(items)) => items,
            Some(_) => {
                let line = lines.section(section).0;
                return Err(err(file, line, section, "must be a list"));
            }
        };
        let (section_line, item_lines) = lines.section(section);
        for (i, v) in items.iter().enumerate() {
            let from = item_lines.get(i).copied().unwrap_or(section_line);
            let to = item_lines
                .get(i + 1)
                .copied()
                .unwrap_or(lines.lines.len() + 1);
            let item = Item {
                conditions,
                file,
                lines: &lines,
                path: format!("{section}[{i}]"),
                from,
                to,
            };
            let Some(m) = v.as_map() else {
                return Err(item.fail("", "must be a mapping"));
            };
            let allowed: &[&str] = if is_policy {
                &[
                    "name",
                    "description",
                    "events",
                    "condition",
                    "actions",
                    "else_actions",
                ]
            } else {
                &["name", "description", "event", "condition", "actions"]
            };
            if let Some((k, _)) = m.iter().find(|(k, _)| !allowed.contains(k)) {
                return Err(item.fail(k, format!("unknown field; allowed: {}", allowed.join(", "))));
            }
            let name = item.string(m, "name", true)?;
            let description = item.string(m, "description", false)?;
            let condition = item.condition(m)?;
            let actions = item.actions(m, "actions")?;
            if is_policy {
                let events: Vec<String> = match m.get("events") {
                    Some(Value::Seq(evs)) => evs
                        .iter()
                        .map(|e| {
                            e.scalar_text()
                                .filter(|s| !s.trim().is_empty())
                                .map(|s| s.trim().to_string())
                                .ok_or_else(|| item.fail("events", "event names are strings"))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(Value::Str(s)) if !s.trim().is_empty() => vec![s.trim().to_string()],
                    None | Some(Value::Null) => {
                        return Err(item.fail("events", "is required: a list of event names"))
                    }
                    Some(_) => return Err(item.fail("events", "must be a list of event names")),
                };
                if events.is_empty() {
                    return Err(item.fail("events", "names no event"));
                }
                let else_actions = item.actions(m, "else_actions")?;
                set.policies.push(Policy {
                    name,
                    description,
                    events,
                    condition,
                    actions,
                    else_actions,
                    file: file.to_path_buf(),
                    line: from,
                });
            } else {
                let event = item.string(m, "event", true)?.trim().to_string();
                set.alerts.push(Alert {
                    name,
                    description,
                    event,
                    condition,
                    actions,
                    file: file.to_path_buf(),
                    line: from,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ControlSet, ControlError> {
        let mut set = ControlSet::default();
        let conditions = Arc::new(ConditionEngine::new());
        load_text(&conditions, text, Path::new("c.yaml"), &mut set).map(|()| set)
    }

    #[test]
    fn reads_policies_and_alerts() {
        let set = parse(
            "policies:\n- name: p\n  events: [vm_start]\n  condition: 'target.name == \"x\"'\n  actions:\n  - log: hi\n  - set_attribute: {name: a, value: 1}\n  else_actions:\n  - invoke: /System/Request/x\nalerts:\n- name: a\n  event: vm_start\n  actions:\n  - raise_event: vm_stop\n",
        )
        .unwrap();
        assert_eq!(set.policies.len(), 1);
        let p = &set.policies[0];
        assert_eq!(p.line, 2);
        assert_eq!(p.actions[0], Action::Log("hi".into()));
        assert_eq!(
            p.actions[1],
            Action::SetAttribute {
                name: "a".into(),
                value: AttrValue::Int(1)
            }
        );
        assert_eq!(
            set.alerts[0].actions[0],
            Action::RaiseEvent("vm_stop".into())
        );
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = parse("policies:\n- name: p\n  events: [vm_start]\n- name: q\n  events: [x]\n  condition: |\n    true &&\n    (\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (8, "policies[1].condition"),
            "{e}"
        );
        let e = parse("policies:\n- name: p\n  events: [vm_start]\n  actions:\n  - shout: x\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (4, "policies[0].actions[0]"),
            "{e}"
        );
        let e = parse("alerts:\n  - name: a\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "alerts[0].event"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_policy_file_is_refused_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, "policies:\n- name: leaked\n  events: [vm_start]\n").unwrap();
        let control = dir.path().join("control");
        std::fs::create_dir(&control).unwrap();
        std::os::unix::fs::symlink(&secret, control.join("evil.yaml")).unwrap();
        let e = load(&control).unwrap_err();
        assert!(e.file.ends_with("evil.yaml"), "{e}");
        assert!(e.message.contains("link"), "{e}");
    }

    #[test]
    fn check_lists_every_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(&dir.path().join("control")).is_empty(), "missing dir");
        let control = dir.path().join("control");
        std::fs::create_dir(&control).unwrap();
        std::fs::write(
            control.join("a.yaml"),
            "policies:\n- name: p\n  events: [vm_start]\n  actions:\n  - shout: x\n",
        )
        .unwrap();
        std::fs::write(control.join("b.yaml"), "alerts:\n  - name: a\n").unwrap();
        std::fs::write(
            control.join("c.yaml"),
            "policies:\n- name: ok\n  events: [vm_start]\n",
        )
        .unwrap();
        let found: Vec<(String, usize)> = check(&control)
            .iter()
            .map(|e| {
                let name = e.file.file_name().unwrap().to_string_lossy().into_owned();
                (name, e.line)
            })
            .collect();
        assert_eq!(
            found,
            vec![("a.yaml".to_string(), 4), ("b.yaml".to_string(), 2)]
        );
        std::fs::remove_file(control.join("a.yaml")).unwrap();
        std::fs::remove_file(control.join("b.yaml")).unwrap();
        assert!(check(&control).is_empty());
    }
}
