//! Semantics that must match ManageIQ's engine (issue 20 §4), each test
//! stating ManageIQ's behaviour and the source it comes from
//! (manageiq-automation_engine unless said otherwise):
//!
//! * a collect over a wildcard relationship is an Array even when one
//!   instance matched (`MiqAeObject#process_relationship_raw`:
//!   `rels = []` whenever the relationship includes `*`);
//! * URI queries take any character but `#` (Ruby's RFC 3986 parser,
//!   `(?<query>[^#]*+)`), so `Array::` values joined with a raw `\x1F` pass;
//! * `ae_state_data` / `ae_state_previous` are read in ManageIQ's YAML form
//!   (`MiqAeEngine.deliver` writes `YAML.dump(...)`) as well as JSON;
//! * `parse_provider_category` and `parse_automation_request` follow
//!   `MiqAeBuiltinMethod`'s whole tables;
//! * assertions and `${...}` chains written in Ruby evaluate as Ruby's
//!   `eval` and `send` would; anything else is a `datastore validate`
//!   warning with file:line.

use crate::common::{attrs, control_engine, shipped_datastore};
use automate_engine::{AttrValue, Engine, Workspace};
use automate_vmdb::MemoryStore;
use std::path::Path;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// A small domain written for each test

const DOMAIN: &str = "---
object_type: domain
version: 1.0
object:
  attributes:
    name: SEM
    description:
    display_name:
    priority: 100
    enabled: true
    tenant_id: 1
    source: user
    top_level_namespace:
";

/// One schema field: `(aetype, name, default_value, collect)`.
type FieldSpec<'a> = (&'a str, &'a str, &'a str, &'a str);

fn yaml_str(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// Writes class `SEM/NS/<class>` with `fields` and `instances`
/// (`(name, [(field, value)])`).
fn write_class(
    root: &Path,
    class: &str,
    fields: &[FieldSpec<'_>],
    instances: &[(&str, &[(&str, &str)])],
) {
    let dir = root.join("SEM/NS").join(format!("{class}.class"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(root.join("SEM/__domain__.yaml"), DOMAIN).unwrap();
    std::fs::write(
        root.join("SEM/NS/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: NS\n    description:\n    display_name:\n    priority:\n    enabled:\n",
    )
    .unwrap();
    let mut text = format!(
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    display_name:\n    name: {class}\n    type:\n    inherits:\n    visibility:\n    owner:\n  schema:\n"
    );
    for (i, (aetype, name, default, collect)) in fields.iter().enumerate() {
        text.push_str(&format!(
            "  - field:\n      aetype: {aetype}\n      name: {name}\n      display_name:\n      datatype:\n      priority: {}\n      owner:\n      default_value: {}\n      substitute: true\n      message: create\n      visibility:\n      collect: {}\n      scope:\n      description:\n      condition:\n      on_entry:\n      on_exit:\n      on_error:\n      max_retries:\n      max_time:\n",
            i + 1,
            yaml_str(default),
            yaml_str(collect)
        ));
    }
    std::fs::write(dir.join("__class__.yaml"), text).unwrap();
    for (name, values) in instances {
        let mut text = format!(
            "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    display_name:\n    name: {name}\n    inherits:\n    description:\n  fields:\n"
        );
        for (field, value) in values.iter() {
            text.push_str(&format!("  - {field}:\n      value: {}\n", yaml_str(value)));
        }
        std::fs::write(dir.join(format!("{}.yaml", name.to_lowercase())), text).unwrap();
    }
}

fn engine_at(root: &Path) -> (Engine, Arc<automate_methods::RhaiRunner>) {
    control_engine(root, Arc::new(MemoryStore::new()))
}

fn run(engine: &Engine, uri: &str) -> Workspace {
    let (ws, err) = engine.instantiate_traced(uri, &[]);
    assert_eq!(err, None, "{uri}:\n{}", ws.trace_lines().join("\n"));
    ws
}

fn root_text(ws: &Workspace, name: &str) -> String {
    ws.root_attr(name)
        .map(AttrValue::to_text)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Collect over a wildcard

/// ManageIQ: `rels = []` for a relationship that includes `*`, and
/// `process_collect_string` gives `rels.collect { |r| r[name] }` for an
/// Array, `rels[name]` for one object. So one matching instance still gives
/// an Array of one.
#[test]
fn wildcard_collect_is_an_array_even_for_one_match() {
    let tmp = tempfile::tempdir().unwrap();
    write_class(
        tmp.path(),
        "ONLY",
        &[("attribute", "word", "", "")],
        &[("ONE_A", &[("word", "alpha")])],
    );
    write_class(
        tmp.path(),
        "START",
        &[
            ("relationship", "wild", "", "words = word"),
            ("relationship", "plain", "", "single = word"),
        ],
        &[(
            "GO",
            &[("wild", "/NS/ONLY/ONE*"), ("plain", "/NS/ONLY/ONE_A")],
        )],
    );
    let (engine, _runner) = engine_at(tmp.path());
    let ws = run(&engine, "/NS/START/GO");
    let start = ws.roots()[0];
    assert_eq!(
        ws.objects[start].attributes.get("words"),
        Some(&AttrValue::Array(vec![AttrValue::str("alpha")])),
        "a wildcard's collect is an Array"
    );
    assert_eq!(
        ws.objects[start].attributes.get("single"),
        Some(&AttrValue::str("alpha")),
        "a plain relationship's collect is the value"
    );
}

// ---------------------------------------------------------------------------
// URI queries

/// ManageIQ's `load_array_objects_from_string` splits on a raw `\x1F`,
/// which Ruby's URI parser lets through in a query (`[^#]*`).
#[test]
fn array_argument_joined_with_a_raw_unit_separator() {
    let tmp = tempfile::tempdir().unwrap();
    write_class(
        tmp.path(),
        "START",
        &[("attribute", "x", "", "")],
        &[("GO", &[])],
    );
    let (engine, _runner) = engine_at(tmp.path());
    let ws = run(
        &engine,
        "/NS/START/GO?Array::names=web\x1Fdb\x1F\x1Fapp&note=a\tb",
    );
    assert_eq!(
        ws.root_attr("names"),
        Some(&AttrValue::Array(vec![
            AttrValue::str("web"),
            AttrValue::str("db"),
            AttrValue::str("app")
        ]))
    );
    assert_eq!(root_text(&ws, "note"), "a\tb");
}

// ---------------------------------------------------------------------------
// ae_state_data in ManageIQ's YAML

/// `MiqAeEngine.deliver` re-queues a retry with
/// `ae_state_data = YAML.dump(persist_state_hash)`; the next delivery's
/// instantiate pops it back into the state vars (read with
/// `${state_var#...}`). Symbol keys are the same keys (indifferent access).
#[test]
fn ae_state_data_in_yaml_is_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    write_class(
        tmp.path(),
        "START",
        &[(
            "attribute",
            "seen",
            "${state_var#vm_name}/${state_var#count}",
            "",
        )],
        &[("GO", &[])],
    );
    let (engine, _runner) = engine_at(tmp.path());
    let yaml =
        "--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\n:vm_name: web01\ncount: 3\n";
    let uri = format!(
        "/NS/START/GO?ae_state_data={}",
        automate_core::uri::url_encode(yaml)
    );
    let ws = run(&engine, &uri);
    assert_eq!(root_text(&ws, "seen"), "web01/3");
    assert_eq!(ws.state_vars.get("count"), Some(&AttrValue::Int(3)));
    // automate's own JSON form still reads.
    let uri = format!(
        "/NS/START/GO?ae_state_data={}",
        automate_core::uri::url_encode(r#"{"vm_name":"db01","count":4}"#)
    );
    assert_eq!(root_text(&run(&engine, &uri), "seen"), "db01/4");
}

// ---------------------------------------------------------------------------
// parse_provider_category / parse_automation_request

const CLOUD_VM: i64 = 1_000_000_000_101;
const INFRA_VM: i64 = 1_000_000_000_102;
const TYPED_VM: i64 = 1_000_000_000_103;
const TASK: i64 = 1_000_000_000_201;
const PHYS_REQ: i64 = 1_000_000_000_301;
const CLOUD_REQ: i64 = 1_000_000_000_302;

fn category_store() -> Arc<MemoryStore> {
    let s = MemoryStore::new();
    s.insert(
        "VmOrTemplate",
        CLOUD_VM,
        attrs(&[("name", "c1".into()), ("cloud", AttrValue::Bool(true))]),
    );
    s.insert(
        "VmOrTemplate",
        INFRA_VM,
        attrs(&[("name", "i1".into()), ("cloud", AttrValue::Bool(false))]),
    );
    s.insert(
        "VmOrTemplate",
        TYPED_VM,
        attrs(&[
            ("name", "t1".into()),
            (
                "type",
                "ManageIQ::Providers::Amazon::CloudManager::Vm".into(),
            ),
        ]),
    );
    s.insert(
        "MiqRequestTask",
        TASK,
        attrs(&[("source_id", AttrValue::Int(CLOUD_VM))]),
    );
    s.insert(
        "MiqRequest",
        PHYS_REQ,
        attrs(&[("type", "PhysicalServerProvisionRequest".into())]),
    );
    s.insert(
        "MiqRequest",
        CLOUD_REQ,
        attrs(&[
            ("type", "MiqProvisionRequest".into()),
            ("source_id", AttrValue::Int(CLOUD_VM)),
        ]),
    );
    Arc::new(s)
}

/// `MiqAeBuiltinMethod.miq_parse_provider_category`: the first of
/// `ATTRIBUTE_LIST` on the root that tells, `unknown` when none does.
#[test]
fn parse_provider_category_follows_manageiq_table() {
    let (engine, _runner) = control_engine(&shipped_datastore(), category_store());
    for (query, want) in [
        (format!("VmOrTemplate::vm={CLOUD_VM}"), "cloud"),
        (format!("VmOrTemplate::vm={INFRA_VM}"), "infrastructure"),
        (format!("VmOrTemplate::vm={TYPED_VM}"), "cloud"),
        (
            format!("MiqRequest::miq_request={PHYS_REQ}"),
            "physicalinfrastructure",
        ),
        (format!("MiqRequest::miq_request={CLOUD_REQ}"), "cloud"),
        (format!("MiqRequestTask::miq_provision={TASK}"), "cloud"),
        (format!("MiqRequestTask::vm_migrate_task={TASK}"), "cloud"),
        (format!("MiqRequestTask::vm_retire_task={TASK}"), "cloud"),
        (
            format!("MiqRequestTask::orchestration_stack_retire_task={TASK}"),
            "cloud",
        ),
        (
            format!("MiqRequestTask::physical_server_provision_task={TASK}"),
            "physicalinfrastructure",
        ),
        // A service retirement gives "" (truthy in Ruby, so it stays).
        (format!("MiqRequestTask::service_retire_task={TASK}"), ""),
        ("platform_category=infra".to_string(), "infrastructure"),
        ("platform_category=cloud".to_string(), "cloud"),
        // `vm` comes first in the list.
        (
            format!("VmOrTemplate::vm={INFRA_VM}&MiqRequest::miq_request={PHYS_REQ}"),
            "infrastructure",
        ),
        ("other=1".to_string(), "unknown"),
    ] {
        let ws = run(
            &engine,
            &format!("/System/Process/parse_provider_category?{query}"),
        );
        assert_eq!(root_text(&ws, "ae_provider_category"), want, "{query}");
    }
}

/// `MiqAeBuiltinMethod.miq_parse_automation_request`'s `case obj['request']`.
#[test]
fn parse_automation_request_follows_manageiq_table() {
    let (engine, _runner) = control_engine(&shipped_datastore(), category_store());
    for (request, want) in [
        ("vm_provision", "VM/Lifecycle/Provisioning"),
        ("vm_retired", "VM/Lifecycle/Retirement"),
        ("vm_retire", "VM/Lifecycle/Retirement"),
        ("vm_migrate", "VM/Lifecycle/Migrate"),
        ("service_retire", "Service/Lifecycle/Retirement"),
        (
            "orchestration_stack_retire",
            "Orchestration/Lifecycle/Retirement",
        ),
        (
            "configured_system_provision",
            "Configured_System/Lifecycle/Provisioning",
        ),
        (
            "physical_server_provision",
            "PhysicalServer/Lifecycle/Provisioning",
        ),
        ("something_else", "//"),
    ] {
        let ws = run(
            &engine,
            &format!("/System/Process/parse_automation_request?request={request}"),
        );
        let got = ["target_component", "target_class", "target_instance"]
            .map(|k| root_text(&ws, k))
            .join("/");
        assert_eq!(got, want, "{request}");
        let line = format!("Request:<{request}> Target Component:<");
        assert!(
            ws.trace.iter().any(|l| l.text.starts_with(&line)),
            "{request}"
        );
    }
    let ws = run(
        &engine,
        "/System/Process/parse_automation_request?request=configured_system_provision",
    );
    assert_eq!(root_text(&ws, "ae_provider_category"), "infrastructure");
}

// ---------------------------------------------------------------------------
// Ruby in assertions and chains

/// ManageIQ `eval`s the substituted assertion: a falsy result drops the
/// object (`Assertion Failed`), a true one keeps it. Each of these is what
/// Ruby gives.
#[test]
fn ruby_assertions_evaluate_as_manageiq() {
    let tmp = tempfile::tempdir().unwrap();
    write_class(
        tmp.path(),
        "GUARDED",
        &[
            ("assertion", "guard", "", ""),
            ("attribute", "reached", "yes", ""),
        ],
        &[
            (
                "WORDS_IN",
                &[("guard", "%w(vmware redhat).include?('${/#vendor}')")],
            ),
            (
                "WORDS_OUT",
                &[("guard", "%w(amazon azure).include?('${/#vendor}')")],
            ),
            ("NIL_CHECK", &[("guard", "nil.nil? && !'${/#vendor}'.nil?")]),
            (
                "BLANK",
                &[("guard", "'${/#empty}'.blank? && '${/#vendor}'.present?")],
            ),
            ("REGEX", &[("guard", "'${/#vm_name}' =~ /^WEB\\d+$/i")]),
            (
                "REGEX_NOT",
                &[(
                    "guard",
                    "'${/#vm_name}' !~ /^db/ and '${/#vendor}' != 'amazon'",
                )],
            ),
            ("MESSAGE", &[("guard", "message == 'create'")]),
            (
                "INCLUDE",
                &[("guard", "'${/#vm_name}'.include?('eb') || false")],
            ),
            ("NOT_PRESENT", &[("guard", "!'${/#vendor}'.present?")]),
        ],
    );
    write_class(
        tmp.path(),
        "START",
        &[("relationship", "rel", "", "")],
        &[("GO", &[("rel", "/NS/GUARDED/${/#which}")])],
    );
    let (engine, _runner) = engine_at(tmp.path());
    for (which, kept) in [
        ("WORDS_IN", true),
        ("WORDS_OUT", false),
        ("NIL_CHECK", true),
        ("BLANK", true),
        ("REGEX", true),
        ("REGEX_NOT", true),
        ("MESSAGE", true),
        ("INCLUDE", true),
        ("NOT_PRESENT", false),
    ] {
        let uri = format!("/NS/START/GO?which={which}&vendor=redhat&vm_name=web01&empty=");
        let ws = run(&engine, &uri);
        let reached = ws
            .objects
            .iter()
            .any(|o| !o.removed && o.class == "GUARDED" && o.attributes.get("reached").is_some());
        assert_eq!(reached, kept, "{which}:\n{}", ws.trace_lines().join("\n"));
        if !kept {
            assert!(
                ws.trace
                    .iter()
                    .any(|l| l.text.contains("Assertion Failed: <")),
                "{which}"
            );
        }
    }
}

/// `${path#attr.m1.m2}` applies each method with `send`; `nil?`,
/// `blank?`, `present?` and `include?` are Ruby's and ActiveSupport's.
#[test]
fn ruby_predicates_in_substitution_chains() {
    let tmp = tempfile::tempdir().unwrap();
    write_class(
        tmp.path(),
        "START",
        &[
            ("attribute", "a", "${/#name.nil?}", ""),
            ("attribute", "b", "${/#nothing.nil?}", ""),
            ("attribute", "c", "${/#blank.blank?}", ""),
            ("attribute", "d", "${/#name.present?}", ""),
            ("attribute", "e", "${/#name.include?(eb)}", ""),
            ("attribute", "f", "${/#name.upcase.start_with?(WEB)}", ""),
        ],
        &[("GO", &[])],
    );
    let (engine, _runner) = engine_at(tmp.path());
    let ws = run(&engine, "/NS/START/GO?name=web01&blank=%20");
    let got: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| root_text(&ws, k))
        .collect();
    assert_eq!(got, ["false", "true", "true", "true", "true", "true"]);
}

/// What the subset does not cover is reported by `datastore validate`
/// with file:line and the field, as a warning.
#[test]
fn validate_reports_ruby_outside_the_subset() {
    let tmp = tempfile::tempdir().unwrap();
    write_class(
        tmp.path(),
        "GUARDED",
        &[
            ("assertion", "guard", "", ""),
            ("attribute", "note", "", ""),
        ],
        &[
            ("OK", &[("guard", "%w(a b).include?('${/#x}')")]),
            ("BAD", &[("guard", "${/#vm}.tags.map { |t| t.name }.any?")]),
            ("CHAIN", &[("note", "${/#vm.name.gsub('a','b')}")]),
        ],
    );
    let report = automate_datastore::validate::validate_report(tmp.path(), &[]);
    let shown: Vec<String> = report.warnings.iter().map(|p| p.to_string()).collect();
    let bad = report
        .warnings
        .iter()
        .find(|p| p.file.ends_with("bad.yaml"))
        .unwrap_or_else(|| panic!("{shown:#?}"));
    assert_eq!(bad.field.as_deref(), Some("guard"));
    assert!(
        bad.line > 0 && bad.message.contains("outside the Ruby"),
        "{bad}"
    );
    let chain = report
        .warnings
        .iter()
        .find(|p| p.file.ends_with("chain.yaml"))
        .unwrap_or_else(|| panic!("{shown:#?}"));
    assert!(chain.line > 0 && chain.message.contains("gsub"), "{chain}");
    assert!(!shown.iter().any(|s| s.contains("ok.yaml")), "{shown:#?}");
}
