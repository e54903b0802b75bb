//! Provisioning requests (issue 20, item 2): `$evm.execute(
//! 'create_provision_request', ...)` from a Rhai method stores a
//! `MiqProvisionRequest` with ManageIQ's options; its approval runs the
//! request events; on start each `MiqProvision` task puts a `clone_to_vm`
//! provider operation; the simulated provider clones the template, its
//! create events come back through the switchboard and finish the task
//! (`task.vm` set) and the request. A provider that refuses the clone
//! ends the request in `Error`; bad arguments are refused with nothing
//! stored.

use crate::common::{attrs, control_engine, copy_dir, manifest};
use automate_engine::{AttrValue, Engine, Workspace};
use automate_events::catchers::simulate::{SimulateConfig, Simulator};
use automate_methods::outbound::Outbound;
use automate_redb::RedbStore;
use automate_vmdb::operation::{self, OpState, ProviderOperation};
use automate_vmdb::{MemoryStore, ObjectStore, Schedule, VmdbRef};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const SEED: u64 = 11;

/// The shipped datastore plus a domain `Prov` with class `/Test/Prov`
/// whose instance `<name>` runs the Rhai method `<name>`.
fn datastore(dir: &Path, methods: &[(&str, &str)]) -> PathBuf {
    let root = dir.join("datastore");
    copy_dir(&manifest("datastore"), &root);
    let domain = root.join("Prov");
    let class = domain.join("Test/Prov.class");
    std::fs::create_dir_all(class.join("__methods__")).unwrap();
    std::fs::write(
        domain.join("__domain__.yaml"),
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Prov\n    priority: 20\n    enabled: true\n",
    )
    .unwrap();
    std::fs::write(
        domain.join("Test/__namespace__.yaml"),
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Test\n",
    )
    .unwrap();
    std::fs::write(
        class.join("__class__.yaml"),
        "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    name: Prov\n  schema:\n  - field:\n      aetype: method\n      name: execute\n",
    )
    .unwrap();
    for (name, body) in methods {
        std::fs::write(
            class.join(format!("{name}.yaml")),
            format!("---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n  fields:\n  - execute:\n      value: {name}\n"),
        )
        .unwrap();
        std::fs::write(
            class.join(format!("__methods__/{name}.yaml")),
            format!("---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    location: inline\n    language: rhai\n"),
        )
        .unwrap();
        std::fs::write(class.join(format!("__methods__/{name}.rhai")), body).unwrap();
    }
    root
}

/// The simulated RHEV provider's first template reference (seed [`SEED`]).
fn template_ref() -> String {
    let cfg = SimulateConfig {
        seed: SEED,
        rate: 0.0,
        count: Some(0),
        vms: 1,
        start: None,
    };
    Simulator::new(&cfg, "RHEVM").template_refs()[0].clone()
}

/// Stores provider `rhevm01` and its template `rhel9-template`
/// (`template: true`, provider reference `ems_ref`); answers the template.
fn seed_store(store: &dyn ObjectStore, ems_ref: &str) -> VmdbRef {
    let ems = store
        .create(
            "ExtManagementSystem",
            attrs(&[
                ("name", "rhevm01".into()),
                ("hostname", "rhevm01".into()),
                ("emstype", "RHEVM".into()),
            ]),
        )
        .unwrap();
    store
        .create(
            "VmOrTemplate",
            attrs(&[
                ("name", "rhel9-template".into()),
                ("template", AttrValue::Bool(true)),
                ("guid", "5b1c5d0e-1111-4c2a-9a53-000000000001".into()),
                ("uid_ems", "tpl-uid-1".into()),
                ("ems_ref", ems_ref.into()),
                ("ems_id", AttrValue::Int(ems.id)),
            ]),
        )
        .unwrap()
}

fn engine_over(root: &Path, store: Arc<dyn ObjectStore>, schedule: Arc<dyn Schedule>) -> Engine {
    let (mut engine, runner) = control_engine(root, store);
    engine.options.emit_tracing = false;
    runner.set_outbound(Outbound {
        requests: Some(Arc::new(automate_control::MethodRequests::new(schedule))),
        ..Outbound::default()
    });
    engine
}

fn run(engine: &Engine, method: &str) -> Workspace {
    engine.run_method(&format!("/Test/Prov/{method}"), &[]).0
}

fn attr(ws: &Workspace, name: &str) -> String {
    ws.root_attr(name)
        .map(AttrValue::to_text)
        .unwrap_or_default()
}

fn dump(ws: &Workspace) -> String {
    ws.trace_lines().join("\n")
}

fn text(store: &dyn ObjectStore, obj: &VmdbRef, k: &str) -> String {
    store
        .attribute(obj, k)
        .unwrap()
        .map(|v| v.to_text())
        .unwrap_or_default()
}

/// The methods the tests run: a ws-string request (pending), an
/// auto-approved map-form request for two VMs, the service model's reads,
/// and the refused ones.
const METHODS: &[(&str, &str)] = &[
    (
        "pending",
        r#"
let r = evm.execute("create_provision_request", "1.1",
    "name=RHEL9-Template|request_type=template",
    "vm_name=web01|vm_memory=2048",
    "owner_email=ada@example.com|owner_first_name=Ada|owner_last_name=Lovelace",
    "environment=prod|nosuch=tag", "cost_center=001", "Owner=ada", ());
evm.root["request"] = r.id;
"#,
    ),
    (
        "auto",
        r#"
let r = evm.execute("create_provision_request", "1.1",
    #{guid: "5B1C5D0E-1111-4C2A-9A53-000000000001"},
    #{vm_name: "app", number_of_vms: 2},
    #{owner_email: "ada@example.com", auto_approve: "true"},
    (), (), (), ());
evm.root["request"] = r.id;
evm.root["vm_name"] = r.get_option("vm_name");
evm.root["src"] = r.get_option("src_vm_id");
evm.root["count"] = r.get_option("number_of_vms");
evm.root["source"] = r.source.name;
evm.root["tasks"] = r.miq_request_tasks.len();
evm.root["state"] = r.approval_state;
"#,
    ),
    (
        "unknown_template",
        r#"evm.execute("create_provision_request", "1.1", "name=nope", "vm_name=x", "", "", "", "", "");"#,
    ),
    (
        "malformed",
        r#"evm.execute("create_provision_request", "1.1", "name=rhel9-template", "vm_name=x|memory", "", "", "", "", "");"#,
    ),
    (
        "old_version",
        r#"evm.execute("create_provision_request", "1.0", "name=rhel9-template", "vm_name=x", "", "", "", "", "");"#,
    ),
    (
        "no_name",
        r#"evm.execute("create_provision_request", "1.1", "name=rhel9-template", "vm_memory=1", "", "", "", "", "");"#,
    ),
];

fn provision_ops(store: &dyn ObjectStore) -> Vec<ProviderOperation> {
    operation::list(store)
        .unwrap()
        .into_iter()
        .filter_map(|(id, o)| ProviderOperation::from_stored(id, &o))
        .filter(|o| o.method_name == "clone_to_vm")
        .collect()
}

/// Creation, the options, approval and the operations on `store`.
fn create_and_approve(store: Arc<dyn ObjectStore>, schedule: Arc<dyn Schedule>, root: &Path) {
    let template = seed_store(store.as_ref(), "/api/templates/t-1");
    let engine = engine_over(root, store.clone(), schedule.clone());
    let classification = |name: &str, parent: i64, tag: &str| {
        store
            .create(
                "Classification",
                attrs(&[
                    ("name", name.into()),
                    ("description", name.into()),
                    ("parent_id", AttrValue::Int(parent)),
                    ("tag_name", tag.into()),
                ]),
            )
            .unwrap()
    };
    let env = classification("environment", 0, "/managed/environment");
    let prod = classification("prod", env.id, "/managed/environment/prod");

    // Pending: nothing runs until it is approved.
    let ws = run(&engine, "pending");
    let id: i64 = attr(&ws, "request")
        .parse()
        .unwrap_or_else(|_| panic!("no request: {}", dump(&ws)));
    let requests = automate_requests::Requests::new(engine.clone(), schedule.clone());
    let v = requests.get(id).unwrap();
    assert_eq!(v.r#type, "MiqProvisionRequest");
    assert_eq!(v.request_type, "template");
    assert_eq!(
        (v.approval_state.as_str(), v.request_state.as_str()),
        ("pending_approval", "pending")
    );
    assert_eq!(v.userid, "admin");
    let o = &v.options;
    assert_eq!(o["vm_name"], "web01");
    assert_eq!(o["vm_memory"], "2048");
    assert_eq!(o["src_vm_id"][0], template.id);
    assert_eq!(o["src_vm_id"][1], "rhel9-template");
    assert_eq!(o["number_of_vms"][0], 1);
    assert_eq!(o["owner_first_name"], "Ada");
    assert_eq!(o["vm_tags"], serde_json::json!([prod.id]));
    assert_eq!(o["ws_values"]["cost_center"], "001");
    assert_eq!(o["ws_ems_custom_attributes"]["Owner"], "ada");
    assert!(v.tasks.is_empty());
    assert!(provision_ops(store.as_ref()).is_empty());
    let events: Vec<String> = store
        .find_by("RequestEvent", "target_id", &AttrValue::Int(id))
        .unwrap()
        .iter()
        .map(|e| text(store.as_ref(), e, "event_type"))
        .collect();
    assert_eq!(events, ["request_created"]);

    // Approved: request_approved, request_starting, one task, its clone.
    let v = requests.approve(id, Some("ok")).unwrap();
    assert_eq!(v.approval_state, "approved");
    assert_eq!(v.tasks.len(), 1);
    assert_eq!(v.tasks[0].r#type, "MiqProvision");
    assert_eq!(v.tasks[0].state, "active");
    assert_eq!(v.request_state, "active");
    let ops = provision_ops(store.as_ref());
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].instance_id, template.id);
    assert_eq!(ops[0].state, OpState::Ready);
    assert_eq!(
        ops[0].args,
        vec![AttrValue::str("web01"), AttrValue::Int(v.tasks[0].id)]
    );
    let mut events: Vec<String> = store
        .find_by("RequestEvent", "target_id", &AttrValue::Int(id))
        .unwrap()
        .iter()
        .map(|e| text(store.as_ref(), e, "event_type"))
        .collect();
    events.sort();
    assert_eq!(
        events,
        ["request_approved", "request_created", "request_starting"]
    );

    // Auto-approved, map arguments, two VMs named by $n{3}; the service
    // model reads the request.
    let ws = run(&engine, "auto");
    assert_eq!(attr(&ws, "vm_name"), "app", "{}", dump(&ws));
    assert_eq!(attr(&ws, "src"), template.id.to_string());
    assert_eq!(attr(&ws, "count"), "2");
    assert_eq!(attr(&ws, "source"), "rhel9-template");
    assert_eq!(attr(&ws, "tasks"), "2");
    assert_eq!(attr(&ws, "state"), "approved");
    let id: i64 = attr(&ws, "request").parse().unwrap();
    let v = requests.get(id).unwrap();
    let names: Vec<String> = provision_ops(store.as_ref())
        .iter()
        .filter(|o| {
            v.tasks
                .iter()
                .any(|t| Some(&AttrValue::Int(t.id)) == o.args.get(1))
        })
        .map(|o| o.args[0].to_text())
        .collect();
    assert_eq!(names, ["app001", "app002"]);
    assert_eq!(requests.list_provision().unwrap().len(), 2);

    // Bad arguments: clear errors, nothing stored.
    for (method, needle) in [
        (
            "unknown_template",
            "create_provision_request: No source template was found from input data:<name=nope>",
        ),
        (
            "malformed",
            "create_provision_request: invalid vm_fields: item 2 [memory] is not key=value",
        ),
        (
            "old_version",
            "create_provision_request: invalid version: 1.0 is ManageIQ's older positional interface",
        ),
        (
            "no_name",
            "create_provision_request: invalid vm_fields: vm_name is required",
        ),
    ] {
        let (ws, err) = engine.run_method(&format!("/Test/Prov/{method}"), &[]);
        assert!(err.is_some(), "{method}");
        assert!(
            ws.trace_lines().iter().any(|l| l.contains(needle)),
            "{method}: no [{needle}] in\n{}",
            dump(&ws)
        );
    }
    assert_eq!(requests.list_provision().unwrap().len(), 2);
}

#[test]
fn a_method_creates_and_approves_provision_requests_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), METHODS);
    let store = Arc::new(RedbStore::open(dir.path().join("vmdb.redb")).unwrap());
    let schedule: Arc<dyn Schedule> = Arc::new(store.schedule());
    create_and_approve(store, schedule, &root);
}

#[test]
fn a_method_creates_and_approves_provision_requests_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), METHODS);
    // The objects in memory; retries (none here) in a redb schedule.
    let retries = RedbStore::open(dir.path().join("retries.redb")).unwrap();
    let schedule: Arc<dyn Schedule> = Arc::new(retries.schedule());
    create_and_approve(Arc::new(MemoryStore::new()), schedule, &root);
}

/// `automate run --until-idle` with the simulated `rhevm01` (no stream
/// events: it only serves operations) over the redb file in `dir`.
fn run_simulated_provider(dir: &Path, root: &Path) -> serde_json::Value {
    let config = dir.join("automate.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  - name: rhevm01\n    type: RHEVM\n    hostname: rhevm01\n    userid: admin@internal\n    catcher: {{kind: simulate, seed: {SEED}, rate: 0, count: 0, vms: 1}}\nworkers: 1\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(root)
        .arg("--db")
        .arg(dir.join("vmdb.redb"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_API_TOKEN")
        .env_remove("AUTOMATE_SERVER")
        .args(["run", "--until-idle", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates an auto-approved request for `vm_name` from the template whose
/// provider reference is `ems_ref`, in the redb file of `dir`; answers
/// its id.
fn request_in_file(dir: &Path, root: &Path, ems_ref: &str, vm_name: &str) -> i64 {
    let store = Arc::new(RedbStore::open(dir.join("vmdb.redb")).unwrap());
    let schedule: Arc<dyn Schedule> = Arc::new(store.schedule());
    seed_store(store.as_ref(), ems_ref);
    let engine = engine_over(root, store.clone(), schedule.clone());
    let v = automate_requests::Requests::new(engine, schedule)
        .create_provision(automate_requests::NewProvisionRequest {
            version: "1.1".into(),
            template_fields: "name=rhel9-template".into(),
            vm_fields: format!("vm_name={vm_name}").into(),
            requester: "auto_approve=true".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(v.request_state, "active", "{v:?}");
    v.id
}

#[test]
fn closed_loop_the_simulated_provider_clones_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), &[]);
    let id = request_in_file(dir.path(), &root, &template_ref(), "web-new");
    let stats = run_simulated_provider(dir.path(), &root);
    // The two create events, handled.
    assert_eq!(stats["handled"], 2, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");

    let store = RedbStore::open_read_only(dir.path().join("vmdb.redb")).unwrap();
    let request = store.find("MiqRequest", id).unwrap().unwrap();
    assert_eq!(text(&store, &request, "request_state"), "finished");
    assert_eq!(text(&store, &request, "status"), "Ok");
    let task = automate_vmdb::request_task::tasks_of(&store, &request).unwrap()[0].clone();
    assert_eq!(text(&store, &task, "state"), "finished");
    assert_eq!(text(&store, &task, "status"), "Ok");
    assert_eq!(
        text(&store, &task, "message"),
        "[EVM] VM [web-new] Provisioned Successfully"
    );
    // task.vm is the new VM: on the provider, not a template.
    let vm = match store.attribute(&task, "vm").unwrap() {
        Some(AttrValue::Object(vm)) => vm,
        other => panic!("task.vm: {other:?}"),
    };
    assert_eq!(text(&store, &vm, "name"), "web-new");
    assert_eq!(
        store.attribute(&vm, "template").unwrap(),
        Some(AttrValue::Bool(false))
    );
    let template_ems = store
        .find_by("ExtManagementSystem", "name", &AttrValue::str("rhevm01"))
        .unwrap()[0]
        .id;
    assert_eq!(
        store.attribute(&vm, "ems_id").unwrap(),
        Some(AttrValue::Int(template_ems))
    );
    assert!(store.attribute(&vm, "host_id").unwrap().is_some());
    // The provider's create events came back through the switchboard.
    let events: Vec<String> = store
        .find_by("EventStream", "vm_or_template_id", &AttrValue::Int(vm.id))
        .unwrap()
        .iter()
        .map(|e| text(&store, e, "event_type"))
        .collect();
    assert!(
        events.contains(&"USER_ADD_VM_FINISHED_SUCCESS".to_string()),
        "{events:?}"
    );
    assert!(events.contains(&"USER_ADD_VM".to_string()), "{events:?}");
    let op = &provision_ops(&store)[0];
    assert_eq!(op.state, OpState::Ok);
    let log = std::fs::read_to_string(dir.path().join("log/evm.log")).unwrap();
    for needle in [
        "MIQ(MiqQueue#deliver)",
        "Caught event [USER_ADD_VM_FINISHED_SUCCESS]",
        "MIQ(MiqProvision#poll_clone_complete) Provision task [",
    ] {
        assert!(log.contains(needle), "no [{needle}] in evm.log:\n{log}");
    }
}

#[test]
fn a_provider_refusing_the_clone_ends_the_request_in_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), &[]);
    // A template the simulated provider does not have.
    let id = request_in_file(dir.path(), &root, "/api/templates/gone", "web-new");
    let stats = run_simulated_provider(dir.path(), &root);
    assert_eq!(stats["handled"], 0, "{stats}");

    let store = RedbStore::open_read_only(dir.path().join("vmdb.redb")).unwrap();
    let request = store.find("MiqRequest", id).unwrap().unwrap();
    assert_eq!(text(&store, &request, "request_state"), "finished");
    assert_eq!(text(&store, &request, "status"), "Error");
    let message = text(&store, &request, "message");
    assert!(
        message.contains("the provider has no template or VM [/api/templates/gone]"),
        "{message}"
    );
    assert_eq!(provision_ops(&store)[0].state, OpState::Error);
    assert!(store
        .find_by("VmOrTemplate", "name", &AttrValue::str("web-new"))
        .unwrap()
        .is_empty());
}

/// `GET url` with the token: (status, JSON body).
fn api_get(url: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .header("X-Auth-Token", "tok")
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[test]
fn the_api_lists_both_kinds_of_requests() {
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), &[]);
    let store = Arc::new(RedbStore::open(dir.path().join("vmdb.redb")).unwrap());
    let schedule: Arc<dyn Schedule> = Arc::new(store.schedule());
    seed_store(store.as_ref(), "/api/templates/t-1");
    let engine = engine_over(&root, store.clone(), schedule.clone());
    let requests = automate_requests::Requests::new(engine.clone(), schedule);
    let automation = requests
        .create(automate_requests::NewRequest {
            namespace: "System".into(),
            class: "Request".into(),
            instance: "HelloWorld".into(),
            message: None,
            parameters: serde_json::Map::new(),
            auto_approve: false,
            userid: None,
        })
        .unwrap()
        .id;
    let provision = requests
        .create_provision(automate_requests::NewProvisionRequest {
            version: "1.1".into(),
            template_fields: serde_json::json!({"name": "rhel9-template"}),
            vm_fields: "vm_name=db01".into(),
            ..Default::default()
        })
        .unwrap()
        .id;
    let rt = crate::common::api_runtime();
    let stop = tokio_util::sync::CancellationToken::new();
    let base = format!(
        "http://{}",
        crate::common::serve_api(&rt, "tok", engine, store.clone(), &stop)
    );

    let (status, all) = api_get(&format!("{base}/api/requests?expand=resources"));
    assert_eq!(status, 200, "{all}");
    let kinds: Vec<(String, String)> = all["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (automation.to_string(), "AutomationRequest".to_string()),
            (provision.to_string(), "MiqProvisionRequest".to_string())
        ],
        "{all}"
    );
    let (_, only) = api_get(&format!("{base}/api/provision_requests?expand=resources"));
    assert_eq!(only["resources"].as_array().unwrap().len(), 1, "{only}");
    let (status, one) = api_get(&format!("{base}/api/provision_requests/{provision}"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["request_type"], "template");
    assert_eq!(one["options"]["vm_name"], "db01");
    assert!(
        one["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/provision_requests/{provision}")),
        "{one}"
    );
    let (_, automations) = api_get(&format!("{base}/api/automation_requests?expand=resources"));
    assert_eq!(automations["resources"].as_array().unwrap().len(), 1);
    let (status, _) = api_get(&format!("{base}/api/automation_requests/{provision}"));
    assert_eq!(status, 404);
    let (status, _) = api_get(&format!("{base}/api/provision_requests/{automation}"));
    assert_eq!(status, 404);
    stop.cancel();
}

#[test]
fn the_simulator_clones_with_each_providers_create_events() {
    let cfg = SimulateConfig {
        seed: SEED,
        rate: 0.0,
        count: Some(0),
        vms: 2,
        start: None,
    };
    for (kind, created) in [
        ("RHEVM", ["USER_ADD_VM", "USER_ADD_VM_FINISHED_SUCCESS"]),
        ("VC", ["VmBeingDeployedEvent", "VmDeployedEvent"]),
        (
            "OPENSTACK",
            [
                "compute.instance.create.start",
                "compute.instance.create.end",
            ],
        ),
    ] {
        let mut sim = Simulator::new(&cfg, kind);
        let template = sim.template_refs()[1].clone();
        let events = sim.clone_vm(&template, "web-900").unwrap();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, created, "{kind}");
        let new_ref = events[1].vm_ems_ref.clone().unwrap();
        assert!(events
            .iter()
            .all(|e| e.vm_name.as_deref() == Some("web-900")
                && e.vm_ems_ref.as_deref() == Some(new_ref.as_str())));
        assert_eq!(
            sim.vm_refs().len(),
            3,
            "{kind}: the clone is one of its VMs"
        );
        assert!(automate_vmdb::request_task::CREATED_EVENTS.contains(&created[1]));
        // Refusals: a name taken, an unknown source.
        let taken = sim.clone_vm(&template, "WEB-900").unwrap_err();
        assert!(taken.contains("exists already"), "{taken}");
        let unknown = sim.clone_vm("nope", "web-901").unwrap_err();
        assert!(
            unknown.contains("has no template or VM [nope]"),
            "{unknown}"
        );
    }
}

/// The same on PostgreSQL (cluster mode's store and scheduled work):
/// skipped without a reachable server unless `AUTOMATE_TEST_CLUSTER=1`.
#[test]
fn provision_requests_on_postgres() {
    let Some(db) = automate_postgres::testing::TestDb::new("provision_requests") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = datastore(dir.path(), METHODS);
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let schedule: Arc<dyn Schedule> = Arc::new(automate_postgres::schedule::PgSchedule::new(
        db.pg(),
        "node-a",
    ));
    create_and_approve(store, schedule, &root);
}
