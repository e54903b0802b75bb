//! Tags, categories, custom attributes and request options (issue 20 §1):
//! Rhai methods calling `evm.execute('category_create'|'tag_create'|...)`,
//! `vm.tag_assign`, `vm.tags`, `vm.tagged_with`, `vm.custom_set`,
//! `request.set_option`, on a real redb file (written through a unit of
//! work and read back after reopening it) and on PostgreSQL
//! (`AUTOMATE_TEST_CLUSTER=1`), and through the REST API.

use crate::common::process::{automate_on, output_ok, stdout_ok};
use crate::common::{api_runtime, attrs, control_engine, serve_api};
use automate_engine::{AttrValue, Engine, EngineError, Workspace};
use automate_redb::RedbStore;
use automate_vmdb::tags;
use automate_vmdb::{ObjectStore, VmdbRef};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const DOMAIN: &str = "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: TAGS\n    description: tags tests\n    display_name:\n    priority: 10\n    enabled: true\n    tenant_id: 1\n    source: user\n    top_level_namespace:\n";
const NAMESPACE: &str = "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Auto\n    description:\n    display_name:\n    priority:\n    enabled:\n";
const CLASS: &str = "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    display_name:\n    name: Tags\n    type:\n    inherits:\n    visibility:\n    owner:\n  schema:\n  - field:\n      aetype: attribute\n      name: attr1\n      display_name:\n      datatype: string\n      priority: 1\n      owner:\n      default_value:\n      substitute: true\n      message: create\n      visibility:\n      collect:\n      scope:\n      description:\n      condition:\n      on_entry:\n      on_exit:\n      on_error:\n      max_retries:\n      max_time:\n";

/// Creates the categories and entries, tags the VM and sets custom
/// attributes; answers in `evm.root["out"]`.
const SETUP: &str = r#"
if !evm.execute("category_exists?", "environment") {
    evm.execute("category_create", #{ name: "environment", description: "Environment", single_value: true });
}
evm.execute("category_create", #{ name: "department", description: "Department", single_value: false, unknown_key: 1 });
for e in ["prod", "dev"] { evm.execute("tag_create", "environment", #{ name: e, description: e }); }
for e in ["finance", "hr"] { evm.execute("tag_create", "department", #{ name: e }); }
let vm = evm.vmdb("vm", evm.root["vm_id"]);
vm.tag_assign("environment/dev");
vm.tag_assign("environment/prod");
vm.tag_assign("department/finance");
vm.tag_assign("department/hr");
vm.tag_unassign("department/hr");
vm.tag_assign("nosuch/tag");
vm.custom_set("owner", "ada");
vm.custom_set("cost_center", 42);
vm.custom_set("temporary", "x");
vm.custom_set("temporary", "");
evm.root["out"] = `${evm.execute("tag_exists?", "environment", "prod")} ${evm.execute("tag_exists?", "environment", "qa")}`;
"#;

/// Reads it all back; answers in `evm.root["out"]`.
const CHECK: &str = r#"
let vm = evm.vmdb("vm", evm.root["vm_id"]);
let out = [];
// `.len()` on a computed property: Rhai writes the property back, which
// must leave the stored tags alone.
out.push(vm.tags.len());
out.push(vm.tags().len());
for t in vm.tags { out.push(t); }
out.push(vm.tags("environment"));
out.push(vm.tagged_with("environment", "prod"));
out.push(vm.tagged_with("environment", "dev"));
out.push(vm.custom_get("owner"));
out.push(vm.custom_get("cost_center"));
out.push(type_of(vm.custom_get("temporary")));
out.push(vm.custom_keys);
out.push(evm.vmdb("classification").find_by("name", "environment")["description"]);
evm.root["out"] = out.map(|v| `${v}`).reduce(|s, v| s + "|" + v, "");
"#;

/// Request options; answers in `evm.root["out"]`.
const OPTIONS: &str = r#"
let req = evm.vmdb("miq_request", evm.root["request_id"]);
req.set_option("vm_name", "web02");
req.set_option("placement", ["host1", "host2"]);
let o = req.options;
let n = req.options.len();
try { req.options = #{}; } catch (e) { evm.root["assign"] = e; }
evm.root["out"] = `${req.get_option("namespace")}|${req.get_option("vm_name")}|${req.get_option("placement")}|${req.get_option("missing")}|${o.len()}`;
"#;

/// Errors ManageIQ raises; each line of `evm.root["out"]` one outcome.
const ERRORS: &str = r#"
let out = [];
try { evm.execute("bogus_method"); } catch (e) { out.push(e); }
try { evm.execute("category_create", #{ name: "environment" }); } catch (e) { out.push(e); }
try { evm.execute("tag_create", "nosuch", #{ name: "x" }); } catch (e) { out.push(e); }
try { evm.execute("category_create", #{ name: "Bad Name" }); } catch (e) { out.push(e); }
out.push(evm.execute("tag_delete", "environment", "prod"));
out.push(evm.execute("category_delete", "environment"));
out.push(evm.execute("tag_delete", "department", "hr"));
try { evm.execute("tag_exists?", "one"); } catch (e) { out.push(e); }
let ev = evm.vmdb("ems_event", evm.root["event_id"]);
try { ev.tag_assign("environment/prod"); } catch (e) { out.push(e); }
let vm = evm.vmdb("vm", evm.root["vm_id"]);
try { vm.get_option("x"); } catch (e) { out.push(e); }
evm.root["out"] = out.map(|v| `${v}`).reduce(|s, v| s + "\n" + v, "");
"#;

fn method_yaml(name: &str) -> String {
    format!("---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    display_name:\n    description:\n    scope: instance\n    language: rhai\n    location: inline\n  inputs: []\n")
}

/// A datastore with `/Auto/Tags/{setup,check,options,errors}`.
fn datastore(root: &Path) {
    let dom = root.join("TAGS");
    let cls = dom.join("Auto/Tags.class");
    std::fs::create_dir_all(cls.join("__methods__")).unwrap();
    std::fs::write(dom.join("__domain__.yaml"), DOMAIN).unwrap();
    std::fs::write(dom.join("Auto/__namespace__.yaml"), NAMESPACE).unwrap();
    std::fs::write(cls.join("__class__.yaml"), CLASS).unwrap();
    for (name, body) in [
        ("setup", SETUP),
        ("check", CHECK),
        ("options", OPTIONS),
        ("errors", ERRORS),
    ] {
        std::fs::write(
            cls.join(format!("__methods__/{name}.yaml")),
            method_yaml(name),
        )
        .unwrap();
        std::fs::write(cls.join(format!("__methods__/{name}.rhai")), body).unwrap();
    }
}

/// A VM, an event and an automation request with options.
fn seed(store: &dyn ObjectStore) -> (VmdbRef, VmdbRef, VmdbRef) {
    let vm = store
        .create("Vm", attrs(&[("name", AttrValue::str("web01"))]))
        .unwrap();
    let ev = store
        .create(
            "EmsEvent",
            attrs(&[("event_type", AttrValue::str("USER_RUN_VM"))]),
        )
        .unwrap();
    let options = AttrValue::Hash(vec![
        (AttrValue::str("namespace"), AttrValue::str("System")),
        (
            AttrValue::str("attrs"),
            AttrValue::Hash(vec![(AttrValue::str("userid"), AttrValue::str("admin"))]),
        ),
    ]);
    let req = store
        .create("AutomationRequest", attrs(&[("options", options)]))
        .unwrap();
    (vm, ev, req)
}

fn run(engine: &Engine, method: &str, ids: &[(&str, i64)]) -> (Workspace, Option<EngineError>) {
    let attrs: Vec<(String, String)> = ids
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    engine.run_method(&format!("/Auto/Tags/{method}"), &attrs)
}

fn out(ws: &Workspace) -> String {
    let trace: Vec<&str> = ws.trace.iter().map(|l| l.text.as_str()).collect();
    match ws.objects[0].attributes.get("out") {
        Some(v) => v.to_text(),
        None => panic!("no out; trace:\n{}", trace.join("\n")),
    }
}

fn ok_run(engine: &Engine, method: &str, ids: &[(&str, i64)]) -> (Workspace, String) {
    let (ws, err) = run(engine, method, ids);
    let trace: Vec<&str> = ws.trace.iter().map(|l| l.text.as_str()).collect();
    assert!(err.is_none(), "{method}: {err:?}\n{}", trace.join("\n"));
    let o = out(&ws);
    (ws, o)
}

/// What `CHECK` answers after `SETUP`: `environment` is single-valued
/// (prod replaced dev), `department/hr` was unassigned, `temporary` set
/// blank (removed).
fn expected_check() -> String {
    "|2|2|environment/prod|department/finance|[\"prod\"]|true|false|ada|42|()|[\"owner\", \"cost_center\"]|Environment".to_string()
}

#[test]
fn a_method_s_tags_and_custom_attributes_commit_with_its_unit_and_survive_reopening_redb() {
    let dir = tempfile::tempdir().unwrap();
    datastore(&dir.path().join("ds"));
    let path = dir.path().join("automate.redb");
    let (vm, ev, req) = {
        let store = Arc::new(RedbStore::open(&path).unwrap());
        let ids = seed(&*store);
        // The method writes through a unit of work, as in the pipeline.
        let unit = store.begin_unit();
        let (engine, _runner) = control_engine(&dir.path().join("ds"), unit.clone());
        let (ws, o) = ok_run(&engine, "setup", &[("vm_id", ids.0.id)]);
        assert_eq!(o, "true false");
        assert!(
            ws.trace.iter().any(|l| l
                .text
                .contains("tag_assign: Tag category 'nosuch' not found")),
            "a missing category is logged"
        );
        // Not visible outside the unit before it commits.
        assert!(!tags::category_exists(&*store, "environment").unwrap());
        unit.commit(|_| Ok(())).unwrap();
        assert!(tags::category_exists(&*store, "environment").unwrap());
        ids
    };
    // Reopened: everything read back, through a method and directly.
    let store = Arc::new(RedbStore::open(&path).unwrap());
    let (engine, _runner) = control_engine(&dir.path().join("ds"), store.clone());
    let (_, o) = ok_run(&engine, "check", &[("vm_id", vm.id)]);
    assert_eq!(o, expected_check());
    assert_eq!(
        tags::tag_list(&*store, &vm, None).unwrap(),
        ["environment/prod", "department/finance"]
    );
    assert_eq!(
        tags::custom_get(&*store, &vm, "cost_center")
            .unwrap()
            .as_deref(),
        Some("42")
    );
    // Request options.
    let (_, o) = ok_run(&engine, "options", &[("request_id", req.id)]);
    assert_eq!(o, "System|web02|host1||4");
    let stored = store.attribute(&req, "options").unwrap().unwrap();
    assert!(stored.inspect().contains("web02"), "{}", stored.inspect());
    // ManageIQ's errors and answers.
    let (_, o) = ok_run(&engine, "errors", &[("vm_id", vm.id), ("event_id", ev.id)]);
    let lines: Vec<&str> = o.lines().skip(1).collect();
    assert!(
        lines[0].contains(
            "unknown execute method [bogus_method]: ManageIQ's $evm.execute takes send_email"
        ),
        "{o}"
    );
    assert_eq!(lines[1], "Category <environment> already exists");
    assert_eq!(lines[2], "Category <nosuch> does not exist");
    assert!(
        lines[3].starts_with("category name [Bad Name] must be lowercase"),
        "{o}"
    );
    // Assigned: not deleted, `false` as ManageIQ's non-! forms answer.
    assert_eq!(lines[4], "false");
    assert_eq!(lines[5], "false");
    // hr is not assigned any more: deleted.
    assert_eq!(lines[6], "true");
    assert_eq!(
        lines[7],
        "execute method [tag_exists?]: wrong number of arguments (given 1, expected 2)"
    );
    assert_eq!(lines[8], "Model EmsEvent doesn't support tagging");
    assert!(
        lines[9].starts_with("undefined method `get_option' for Vm"),
        "{o}"
    );
    assert!(!tags::tag_exists(&*store, "department", "hr").unwrap());
    assert!(tags::tag_exists(&*store, "environment", "prod").unwrap());

    // The command line shows them (the file is free once closed).
    drop(engine);
    drop(store);
    let out = output_ok(
        automate_on(&dir.path().join("ds"), &path).args([
            "vmdb",
            "show",
            "vm",
            &vm.id.to_string(),
            "--json",
        ]),
        "vmdb show --json",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], vm.id.to_string(), "{v}");
    assert_eq!(v["name"], "web01", "{v}");
    assert_eq!(v["tags"][0]["name"], "/managed/environment/prod", "{v}");
    assert!(v["tags"][0]["id"].is_string(), "{v}");
    assert_eq!(v["custom_attributes"][1]["value"], "42", "{v}");
    let text = stdout_ok(
        &output_ok(
            automate_on(&dir.path().join("ds"), &path).args([
                "vmdb",
                "show",
                "vm",
                &vm.id.to_string(),
            ]),
            "vmdb show",
        ),
        "vmdb show",
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("tags ") && l.ends_with("environment/prod, department/finance")),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("custom_attributes ") && l.ends_with("owner=ada, cost_center=42")
        ),
        "{text}"
    );
}

fn get(base: &str, path: &str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(format!("{base}{path}"))
        .header("X-Auth-Token", "t0ken")
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "GET {path}");
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn tags_and_custom_attributes_through_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    datastore(&dir.path().join("ds"));
    let store = Arc::new(RedbStore::open(dir.path().join("automate.redb")).unwrap());
    let (vm, _, _) = seed(&*store);
    let (engine, _runner) = control_engine(&dir.path().join("ds"), store.clone());
    ok_run(&engine, "setup", &[("vm_id", vm.id)]);
    let rt = api_runtime();
    let stop = CancellationToken::new();
    let base = format!(
        "http://{}",
        serve_api(&rt, "t0ken", engine, store.clone(), &stop)
    );
    let id = vm.id;
    let v = get(
        &base,
        &format!("/api/vms/{id}?attributes=tags,custom_attributes"),
    );
    assert_eq!(v["tags"][0]["name"], "/managed/environment/prod", "{v}");
    assert!(v["tags"][0]["id"].is_string(), "{v}");
    assert_eq!(v["tags"][1]["name"], "/managed/department/finance", "{v}");
    assert_eq!(v["custom_attributes"][0]["name"], "owner", "{v}");
    assert_eq!(v["custom_attributes"][0]["value"], "ada", "{v}");
    assert_eq!(v["custom_attributes"][0]["source"], "EVM", "{v}");
    let t = get(&base, &format!("/api/vms/{id}/tags"));
    assert_eq!(t["count"], 2, "{t}");
    assert_eq!(
        t["resources"][0]["name"], "/managed/environment/prod",
        "{t}"
    );
    let c = get(&base, &format!("/api/vms/{id}/custom_attributes"));
    assert_eq!(c["count"], 2, "{c}");
    assert_eq!(c["resources"][1]["name"], "cost_center", "{c}");
    assert_eq!(c["resources"][1]["value"], "42", "{c}");
    let cats = get(&base, "/api/categories?sort_by=name&expand=resources");
    assert_eq!(cats["count"], 2, "{cats}");
    assert_eq!(cats["resources"][0]["name"], "department", "{cats}");
    assert_eq!(cats["resources"][1]["single_value"], true, "{cats}");
    let all = get(
        &base,
        "/api/tags?filter[]=name=/managed/environment/prod&expand=resources",
    );
    assert_eq!(all["count"], 4, "{all}");
    assert_eq!(all["subcount"], 1, "{all}");
    assert_eq!(all["resources"][0]["entry_name"], "prod", "{all}");
    let href = all["resources"][0]["href"].as_str().unwrap().to_string();
    let one = get(&base, href.strip_prefix(&base).unwrap_or(&href));
    assert_eq!(one["name"], "/managed/environment/prod", "{one}");
    let cat = get(
        &base,
        &format!("/api/categories/{}", one["category_id"].as_str().unwrap()),
    );
    assert_eq!(cat["name"], "environment", "{cat}");
    stop.cancel();
}

/// The same on PostgreSQL: a method's writes through a unit of work
/// (`PgUnits`), committed, read back by a fresh `PgStore`.
#[test]
fn tags_and_custom_attributes_are_durable_on_postgres() {
    let Some(db) = automate_postgres::testing::TestDb::new("tags") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    datastore(&dir.path().join("ds"));
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let (vm, _, req) = seed(&*store);
    let units = store.units(None);
    let unit = automate_vmdb::UnitOfWork::begin_unit(&*units);
    let (engine, _runner) = control_engine(&dir.path().join("ds"), unit.objects());
    let (_, o) = ok_run(&engine, "setup", &[("vm_id", vm.id)]);
    assert_eq!(o, "true false");
    let (_, o) = ok_run(&engine, "options", &[("request_id", req.id)]);
    assert_eq!(o, "System|web02|host1||4");
    assert!(!tags::category_exists(&*store, "environment").unwrap());
    unit.hand_over(automate_vmdb::HandOver {
        schedule: Vec::new(),
        acks: Vec::new(),
    })
    .wait()
    .unwrap();
    drop(engine);
    let fresh = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let (engine, _runner) = control_engine(&dir.path().join("ds"), fresh.clone());
    let (_, o) = ok_run(&engine, "check", &[("vm_id", vm.id)]);
    assert_eq!(o, expected_check());
    let stored = fresh.attribute(&req, "options").unwrap().unwrap();
    assert!(stored.inspect().contains("web02"), "{}", stored.inspect());
}
