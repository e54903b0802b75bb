//! `automate test` files (issue 22 §3): YAML test cases that travel with
//! the code they test, in a class's `__tests__/` folder or a domain's
//! `tests/` folder (ManageIQ ignores both).
//!
//! ```yaml
//! ---
//! object_type: automate_test
//! version: 1.0
//! cases:
//! - name: USER_RUN_VM raises vm_start
//!   event: {source: RHEVM, event_type: USER_RUN_VM, vm_ems_ref: vm-1, vm_name: web01}
//!   objects:                       # seeded into the clean store, optional
//!   - {class: VmOrTemplate, attributes: {name: web01, ems_ref: vm-1}}
//!   expect:
//!     events_raised: [vm_start]    # exactly these, in order
//!     policies: [tag_prod]         # each fired (condition true)
//!     methods: [/System/...]       # each invoked (substring)
//!     relationships: [vm_start]    # each followed (substring)
//!     attributes: {key: value}     # root attributes after the run
//!     vmdb: [VmOrTemplate]         # each written (substring of a change)
//!     error: no such               # expected error (substring); absent: none
//! ```
//!
//! A case gives an `event` (as the `jsonl` catcher takes events, plus
//! `source`, the provider's kind, and `provider`, its name) or a `uri` with
//! `attributes`. This module holds the format ([`TestFile`]), its reading
//! with file:line errors ([`parse`], used by `datastore validate`) and the
//! finding of test files in a datastore ([`find`]); running them is
//! `automate_events::autotest`. Schema: `docs/schema/test.schema.json`.

use crate::fs::Problem;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A class's test folder, inside `<Class>.class/`.
pub const CLASS_TESTS_DIR: &str = "__tests__";
/// A domain's test folder, beside `__domain__.yaml`.
pub const DOMAIN_TESTS_DIR: &str = "tests";
/// The `object_type` of a test file.
pub const OBJECT_TYPE: &str = "automate_test";

/// One test file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Always [`OBJECT_TYPE`].
    pub object_type: String,
    /// The format's version (`1.0`).
    #[serde(default = "version_one")]
    pub version: serde_json::Value,
    /// What the file tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

fn version_one() -> serde_json::Value {
    serde_json::json!(1.0)
}

impl TestFile {
    /// A file of `cases`.
    pub fn new(cases: Vec<Case>) -> TestFile {
        TestFile {
            object_type: OBJECT_TYPE.into(),
            version: version_one(),
            description: None,
            cases,
        }
    }

    /// The file as YAML text (`---` first).
    pub fn to_yaml(&self) -> Result<String, serde_json::Error> {
        let value = serde_json::to_value(self)?;
        Ok(crate::yaml::to_psych_yaml(&yaml_of(&value)))
    }
}

/// A JSON value as the datastore's YAML tree (keys in order).
fn yaml_of(j: &serde_json::Value) -> crate::yaml::Value {
    use crate::yaml::{Mapping, Value};
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(a) => Value::Seq(a.iter().map(yaml_of).collect()),
        serde_json::Value::Object(m) => Value::Map(Mapping(
            m.iter().map(|(k, v)| (k.clone(), yaml_of(v))).collect(),
        )),
    }
}

/// One case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Its name, as the runner prints it.
    pub name: String,
    /// What it checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The provider event to handle (`event_type`, `source`, `provider`,
    /// `timestamp`, `vm_ems_ref`, `vm_name`, `host_ems_ref`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<CaseEvent>,
    /// Or a URI to instantiate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// With `uri`: extra attributes.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Objects seeded into the clean store before the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<SeedObject>,
    /// What must hold after the run.
    #[serde(default)]
    pub expect: Expect,
}

/// A case's event: a JSON object as the `jsonl` catcher reads one, plus
/// `source` and `provider`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseEvent(pub serde_json::Value);

impl Default for CaseEvent {
    fn default() -> Self {
        CaseEvent(serde_json::Value::Object(serde_json::Map::new()))
    }
}

/// An object seeded into a case's store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedObject {
    /// Its class (`VmOrTemplate`, `Host`, `ExtManagementSystem`, ...).
    pub class: String,
    /// Its id (default: the store's next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Its attributes.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A case's expectations; each one absent is not checked (but `error`:
/// absent means the run must end without one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The generic events raised, exactly, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_raised: Option<Vec<String>>,
    /// Policies that fired (condition true), each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Methods invoked, each (a substring of the method's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Relationships followed, each (a substring of the URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationships: Option<Vec<String>>,
    /// Attributes of the root object after the run, each equal (as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// Objects created or changed, each (a substring of one of the
    /// sandbox's changes: `would create MiqEvent ...`, `would update
    /// VmOrTemplate [1] power_state: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmdb: Option<Vec<String>>,
    /// The error the run ends with (a substring); absent: no error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads `text` (the contents of `file`) as a test file: a problem with
/// its line when the YAML or its shape is bad, or a case has neither (or
/// both of) `event` and `uri`, or an event has no `event_type`.
pub fn parse(text: &str, file: &Path) -> Result<TestFile, Problem> {
    crate::yaml::parse_document(text, file).map_err(|e| {
        let mut p = Problem::new(file, e.message);
        p.line = e.line;
        p.column = e.column;
        p
    })?;
    let tf: TestFile = serde_saphyr::from_str(text).map_err(|e| {
        let mut p = Problem::new(file, first_line(&e.to_string()));
        if let Some(l) = e.location() {
            p.line = usize::try_from(l.line()).unwrap_or(0);
            p.column = usize::try_from(l.column()).unwrap_or(0);
        }
        p
    })?;
    if tf.object_type != OBJECT_TYPE {
        return Err(Problem::new(
            file,
            format!(
                "object_type is `{}`; a test file's is `{OBJECT_TYPE}`",
                tf.object_type
            ),
        )
        .at_line(key_line(text, "object_type", 0))
        .with_field("object_type"));
    }
    for (i, c) in tf.cases.iter().enumerate() {
        let line = case_line(text, i);
        let bad = |field: &str, m: String| {
            Problem::new(file, format!("case {} `{}`: {m}", i + 1, c.name))
                .at_line(line)
                .with_field(field)
        };
        if c.name.trim().is_empty() {
            return Err(bad("name", "the name is empty".into()));
        }
        match (&c.event, &c.uri) {
            (None, None) => return Err(bad("event", "give an `event` or a `uri`".into())),
            (Some(_), Some(_)) => {
                return Err(bad("uri", "give an `event` or a `uri`, not both".into()))
            }
            (Some(ev), None) => {
                let ok =
                    ev.0.get("event_type")
                        .and_then(|t| t.as_str())
                        .is_some_and(|t| !t.trim().is_empty());
                if !ev.0.is_object() || !ok {
                    return Err(bad(
                        "event",
                        "the event needs a non-empty `event_type`".into(),
                    ));
                }
            }
            (None, Some(u)) if !u.starts_with('/') => {
                return Err(bad("uri", format!("`{u}` does not start with /")))
            }
            _ => {}
        }
        if let Some(o) = c.objects.iter().find(|o| o.class.trim().is_empty()) {
            return Err(bad("objects", format!("an object has no class: {o:?}")));
        }
    }
    Ok(tf)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// The 1-based line of `key:` at `indent` spaces (0 if none).
fn key_line(text: &str, key: &str, indent: usize) -> usize {
    text.lines()
        .position(|l| {
            l.len() > indent
                && l[..indent].trim().is_empty()
                && l[indent..].starts_with(key)
                && l[indent + key.len()..].starts_with(':')
        })
        .map_or(0, |i| i + 1)
}

/// The 1-based line of case `i` (its `- ` under `cases:`), 0 if not found.
fn case_line(text: &str, i: usize) -> usize {
    let start = key_line(text, "cases", 0);
    if start == 0 {
        return 0;
    }
    let mut indent = None;
    let mut n = 0;
    for (k, l) in text.lines().enumerate().skip(start) {
        let trimmed = l.trim_start();
        if !trimmed.starts_with("- ") && trimmed != "-" {
            continue;
        }
        let ind = l.len() - trimmed.len();
        let first = *indent.get_or_insert(ind);
        if ind != first {
            continue;
        }
        if n == i {
            return k + 1;
        }
        n += 1;
    }
    0
}

/// Every test file below `root` (a datastore root or one domain's
/// directory), sorted: `*.yaml` in a class's `__tests__/` and in a
/// domain's `tests/`.
pub fn find(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let domains: Vec<PathBuf> = if root.join(crate::fs::DOMAIN_FILE).is_file() {
        vec![root.to_path_buf()]
    } else {
        read_dirs(root)
            .into_iter()
            .filter(|d| d.join(crate::fs::DOMAIN_FILE).is_file())
            .collect()
    };
    for d in domains {
        yaml_files(&d.join(DOMAIN_TESTS_DIR), &mut out);
        walk_classes(&d, &mut out);
    }
    out.sort();
    out
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_file())
            && p.extension().is_some_and(|x| x == "yaml" || x == "yml")
        {
            out.push(p);
        }
    }
}

fn walk_classes(dir: &Path, out: &mut Vec<PathBuf>) {
    for d in read_dirs(dir) {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref() {
            Some(crate::fs::METHODS_DIR) | Some(DOMAIN_TESTS_DIR) => {}
            Some(CLASS_TESTS_DIR) => yaml_files(&d, out),
            _ => walk_classes(&d, out),
        }
    }
}

/// `datastore validate`'s check of the test files below `root`.
pub fn validate(root: &Path) -> Vec<Problem> {
    find(root)
        .into_iter()
        .filter_map(|f| match std::fs::read_to_string(&f) {
            Ok(text) => parse(&text, &f).err(),
            Err(e) => Some(Problem::new(&f, format!("cannot read: {e}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "---\nobject_type: automate_test\nversion: 1.0\ncases:\n- name: start\n  event: {source: RHEVM, event_type: USER_RUN_VM}\n  expect:\n    events_raised: [vm_start]\n- name: hello\n  uri: /System/Request/HelloWorld\n  attributes: {k: v}\n";

    #[test]
    fn a_good_file_reads_and_round_trips() {
        let tf = parse(GOOD, Path::new("t.yaml")).expect("parses");
        assert_eq!(tf.cases.len(), 2);
        assert_eq!(
            tf.cases[0].expect.events_raised.as_deref(),
            Some(&["vm_start".to_string()][..])
        );
        let again = parse(&tf.to_yaml().expect("yaml"), Path::new("t.yaml")).expect("again");
        assert_eq!(again, tf);
    }

    #[test]
    fn bad_files_name_their_line_and_field() {
        let no_target = GOOD.replace("  uri: /System/Request/HelloWorld\n", "");
        let p = parse(&no_target, Path::new("t.yaml")).expect_err("no event or uri");
        assert_eq!((p.line, p.field.as_deref()), (9, Some("event")), "{p}");
        let unknown = GOOD.replace("events_raised", "events_rasied");
        let p = parse(&unknown, Path::new("t.yaml")).expect_err("unknown key");
        assert_eq!(p.line, 8, "{p}");
        assert!(p.message.contains("events_rasied"), "{p}");
        let syntax = GOOD.replace("{k: v}", "{k: v");
        let p = parse(&syntax, Path::new("t.yaml")).expect_err("syntax");
        assert!(p.line >= 11, "{p}");
        let kind = GOOD.replace("automate_test", "method");
        let p = parse(&kind, Path::new("t.yaml")).expect_err("kind");
        assert_eq!(p.line, 2, "{p}");
    }
}
