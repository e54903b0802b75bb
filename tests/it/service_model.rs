//! The service model (issue 20 §1, the object part): stored objects as
//! ManageIQ's service models in Rhai methods and `${...}` chains
//! (associations, computed attributes, `NoMethodError`, `attributes`) and
//! `evm.vmdb(...)` queries (`where` with several conditions, `all`,
//! `order`, `limit`, `count`), the same on the memory, redb and
//! PostgreSQL stores (PostgreSQL skipped with a message unless it is
//! reachable or `AUTOMATE_TEST_CLUSTER=1`).

use automate_datastore::Datastore;
use automate_engine::{AttrValue, Attributes, Engine, Workspace};
use automate_postgres::testing::TestDb;
use automate_redb::RedbStore;
use automate_vmdb::query::Query;
use automate_vmdb::served::ServedStore;
use automate_vmdb::{MemoryStore, ObjectStore, VmdbRef};
use std::path::Path;
use std::sync::Arc;

use crate::common::attrs;

fn s(v: &str) -> AttrValue {
    AttrValue::str(v)
}

/// The world every test reads: a provider with two hosts, five VMs and a
/// template, an owner, an event moving a VM between hosts, a request and
/// two tasks.
struct World {
    ems: VmdbRef,
    host1: VmdbRef,
    host2: VmdbRef,
    /// web1 (on, host1), web2 (off, host1), db1 (on, host2), db2 (on, host2),
    /// "odd name<1>" (suspended, no host).
    vms: Vec<VmdbRef>,
    template: VmdbRef,
    user: VmdbRef,
    event: VmdbRef,
    request: VmdbRef,
    tasks: Vec<VmdbRef>,
}

fn world(store: &dyn ObjectStore) -> World {
    let ems = store
        .create(
            "ExtManagementSystem",
            attrs(&[("name", s("vc1")), ("hostname", s("vc1.example.com"))]),
        )
        .unwrap();
    let host = |name: &str| {
        store
            .create(
                "Host",
                attrs(&[("name", s(name)), ("ems_id", AttrValue::Int(ems.id))]),
            )
            .unwrap()
    };
    let (host1, host2) = (host("esx1"), host("esx2"));
    let user = store
        .create("User", attrs(&[("name", s("Ada")), ("userid", s("ada"))]))
        .unwrap();
    let mut vms = Vec::new();
    for (name, power, host, mem) in [
        ("web1", "on", Some(&host1), 2048),
        ("web2", "off", Some(&host1), 1024),
        ("db1", "on", Some(&host2), 8192),
        ("db2", "on", Some(&host2), 4096),
        ("odd name<1>", "suspended", None, 512),
    ] {
        let mut a = attrs(&[
            ("name", s(name)),
            ("power_state", s(power)),
            ("ems_id", AttrValue::Int(ems.id)),
            ("ems_ref", s(&format!("vm-{name}"))),
            ("memory_mb", AttrValue::Int(mem)),
            ("retired", AttrValue::Nil),
        ]);
        if let Some(h) = host {
            a.insert("host_id".into(), AttrValue::Int(h.id));
        }
        if name == "web1" {
            a.insert("evm_owner_id".into(), AttrValue::Int(user.id));
        }
        vms.push(store.create("Vm", a).unwrap());
    }
    let template = store
        .create(
            "MiqTemplate",
            attrs(&[
                ("name", s("tpl")),
                ("ems_id", AttrValue::Int(ems.id)),
                ("host_id", AttrValue::Int(host1.id)),
                ("template", AttrValue::Bool(true)),
            ]),
        )
        .unwrap();
    let event = store
        .create(
            "EmsEvent",
            attrs(&[
                ("event_type", s("VmMigratedEvent")),
                ("vm_or_template_id", AttrValue::Int(vms[0].id)),
                ("dest_vm_or_template_id", AttrValue::Int(vms[1].id)),
                ("host_id", AttrValue::Int(host1.id)),
                ("dest_host_id", AttrValue::Int(host2.id)),
                ("ems_id", AttrValue::Int(ems.id)),
            ]),
        )
        .unwrap();
    let request = store
        .create(
            "AutomationRequest",
            attrs(&[
                ("description", s("go")),
                ("requester_id", AttrValue::Int(user.id)),
            ]),
        )
        .unwrap();
    let tasks = (0..2)
        .map(|i| {
            store
                .create(
                    "AutomationTask",
                    attrs(&[
                        ("description", s(&format!("task {i}"))),
                        ("miq_request_id", AttrValue::Int(request.id)),
                    ]),
                )
                .unwrap()
        })
        .collect();
    World {
        ems,
        host1,
        host2,
        vms,
        template,
        user,
        event,
        request,
        tasks,
    }
}

fn ids(refs: &[VmdbRef]) -> Vec<i64> {
    refs.iter().map(|r| r.id).collect()
}

/// The query rules on one store (`what` names it in messages).
fn check_queries(store: &dyn ObjectStore, w: &World, what: &str) {
    let v = |i: usize| w.vms[i].id;
    let q = |q: Query| ids(&store.query(&q).unwrap());
    // all: every VM and the template, by id.
    let mut all = ids(&w.vms);
    all.push(w.template.id);
    assert_eq!(q(Query::new("vm")), all, "{what}: all");
    assert_eq!(
        store.count(&Query::new("VmOrTemplate")).unwrap(),
        6,
        "{what}"
    );
    // Several conditions, ANDed; an indexed one (name, host_id) and not.
    let on_host1 = Query::new("vm")
        .filter("host_id", AttrValue::Int(w.host1.id))
        .filter("power_state", s("on"));
    assert_eq!(
        q(on_host1.clone()),
        vec![v(0)],
        "{what}: host_id and power_state"
    );
    // An id given as text matches the stored integer.
    let as_text = Query::new("vm")
        .filter("host_id", s(&w.host2.id.to_string()))
        .filter("power_state", s("on"));
    assert_eq!(q(as_text), vec![v(2), v(3)], "{what}: id as text");
    // An array is IN.
    let names = Query::new("vm").filter(
        "name",
        AttrValue::Array(vec![s("db2"), s("web2"), s("nope")]),
    );
    assert_eq!(q(names), vec![v(1), v(3)], "{what}: IN");
    // nil matches unset and nil attributes.
    let no_host = Query::new("vm").filter("host_id", AttrValue::Nil);
    assert_eq!(q(no_host), vec![v(4)], "{what}: IS NULL");
    assert_eq!(
        store
            .count(&Query::new("vm").filter("retired", AttrValue::Nil))
            .unwrap(),
        6,
        "{what}: nil and absent"
    );
    // id conditions.
    let by_id = Query::new("vm").filter(
        "id",
        AttrValue::Array(vec![AttrValue::Int(v(2)), s(&v(0).to_string())]),
    );
    assert_eq!(q(by_id), vec![v(0), v(2)], "{what}: id");
    // order, then id; desc; nil last ascending; limit and offset.
    let by_mem = Query::new("vm")
        .filter("power_state", s("on"))
        .order_by("memory_mb desc");
    assert_eq!(q(by_mem), vec![v(2), v(3), v(0)], "{what}: order desc");
    let mut by_name = Query::new("vm").order_by("name");
    by_name.limit = Some(3);
    by_name.offset = 1;
    // db1 db2 odd... tpl web1 web2 -> skip db1: db2, "odd name<1>", tpl.
    assert_eq!(
        q(by_name.clone()),
        vec![v(3), v(4), w.template.id],
        "{what}: order, offset, limit"
    );
    assert_eq!(store.count(&by_name).unwrap(), 3, "{what}: count pages");
    let by_host = Query::new("vm").order_by("host_id desc").order_by("name");
    // nil first descending, then host2's, then host1's by name.
    assert_eq!(
        q(by_host),
        vec![v(4), v(2), v(3), w.template.id, v(0), v(1)],
        "{what}: two keys, nil first descending"
    );
    // Nothing matches; a subclass query sees only its base class's rows.
    assert!(q(Query::new("vm").filter("name", s("zzz"))).is_empty());
    assert_eq!(
        q(Query::new("Host")),
        ids(&[w.host1.clone(), w.host2.clone()])
    );
    assert!(
        store.query(&Query::new("Flavor")).is_err(),
        "{what}: unknown class"
    );
}

#[test]
fn queries_on_the_memory_store() {
    let store = MemoryStore::new();
    let w = world(&store);
    check_queries(&store, &w, "memory");
}

#[test]
fn queries_on_redb_and_through_a_unit_of_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("automate.redb")).unwrap());
    let w = world(store.as_ref());
    check_queries(store.as_ref(), &w, "redb");
    // Through a unit: its own buffered writes are seen.
    let unit = ServedStore::begin_unit(store.clone());
    let objects = unit.objects();
    check_queries(objects.as_ref(), &w, "redb unit");
    let extra = objects
        .create(
            "Vm",
            attrs(&[
                ("name", s("web3")),
                ("host_id", AttrValue::Int(w.host1.id)),
                ("power_state", s("on")),
            ]),
        )
        .unwrap();
    let on_host1 = Query::new("vm")
        .filter("host_id", AttrValue::Int(w.host1.id))
        .filter("power_state", s("on"));
    assert_eq!(
        ids(&objects.query(&on_host1).unwrap()),
        vec![w.vms[0].id, extra.id]
    );
    assert_eq!(ids(&store.query(&on_host1).unwrap()), vec![w.vms[0].id]);
}

#[test]
fn queries_on_postgresql_and_through_a_unit_of_work() {
    let Some(db) = TestDb::new("service_model_queries") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let w = world(store.as_ref());
    check_queries(store.as_ref(), &w, "postgres");
    let unit = ServedStore::begin_unit(store.clone());
    let objects = unit.objects();
    check_queries(objects.as_ref(), &w, "postgres unit");
    let extra = objects
        .create(
            "Vm",
            attrs(&[
                ("name", s("web3")),
                ("host_id", AttrValue::Int(w.host1.id)),
                ("power_state", s("on")),
            ]),
        )
        .unwrap();
    let on_host1 = Query::new("vm")
        .filter("host_id", AttrValue::Int(w.host1.id))
        .filter("power_state", s("on"));
    assert_eq!(
        ids(&objects.query(&on_host1).unwrap()),
        vec![w.vms[0].id, extra.id]
    );
}

// ------------------------------------------------------------ Rhai methods

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const CLASS: &str = "Svc/Model/Obj.class";

/// A domain `Svc` with the class `/Model/Obj`: its Rhai methods `methods`
/// (name, body), and an instance `subst` whose attribute fields substitute
/// `fields` (name, value) from the root's `vm` and `event_stream`.
fn domain(root: &Path, methods: &[(&str, &str)], fields: &[(&str, &str)]) {
    write(
        root,
        "Svc/__domain__.yaml",
        "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: Svc\n    \
         description:\n    display_name:\n    priority: 10\n    enabled: true\n    tenant_id: 1\n    \
         source: user\n    top_level_namespace:\n",
    );
    write(
        root,
        "Svc/Model/__namespace__.yaml",
        "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Model\n    \
         description:\n    display_name:\n    priority:\n    enabled:\n",
    );
    let mut schema = String::new();
    let mut values = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        schema.push_str(&format!(
            "  - field:\n      aetype: attribute\n      name: {name}\n      datatype: string\n      \
             priority: {}\n      substitute: true\n      message: create\n",
            i + 1
        ));
        values.push_str(&format!("  - {name}:\n      value: \"{value}\"\n"));
    }
    write(
        root,
        &format!("{CLASS}/__class__.yaml"),
        &format!(
            "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    description:\n    \
             display_name:\n    name: Obj\n    type:\n    inherits:\n    visibility:\n    \
             owner:\n  schema:\n{schema}"
        ),
    );
    write(
        root,
        &format!("{CLASS}/subst.yaml"),
        &format!(
            "---\nobject_type: instance\nversion: 1.0\nobject:\n  attributes:\n    \
             display_name:\n    name: subst\n    inherits:\n    description:\n  fields:\n{values}"
        ),
    );
    for (name, body) in methods {
        write(
            root,
            &format!("{CLASS}/__methods__/{name}.yaml"),
            &format!(
                "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: {name}\n    \
                 display_name:\n    description:\n    scope: instance\n    language: rhai\n    \
                 location: inline\n  inputs: []\n"
            ),
        );
        write(root, &format!("{CLASS}/__methods__/{name}.rhai"), body);
    }
}

fn engine(root: &Path, store: Arc<dyn ObjectStore>) -> Engine {
    let (ds, problems) = Datastore::open(root);
    assert!(problems.is_empty(), "{problems:?}");
    let mut engine = Engine::new(Arc::new(ds)).with_store(store);
    engine.options.emit_tracing = false;
    automate_control::with_control(engine).0
}

/// Runs method `name` with the object's attributes `args`: the object's
/// attributes after it, or the error and the trace.
fn run(engine: &Engine, name: &str, args: &[(&str, String)]) -> Result<Attributes, String> {
    let args: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let (ws, err): (Workspace, _) = engine.run_method(&format!("/Model/Obj/{name}"), &args);
    match err {
        None => Ok(ws.objects[0].attributes.clone()),
        Some(e) => Err(format!("{e}\n{}", ws.trace_lines().join("\n"))),
    }
}

fn text(a: &Attributes, k: &str) -> String {
    a.get(k)
        .map(AttrValue::to_text)
        .unwrap_or_else(|| format!("<no {k}>"))
}

const ASSOCIATIONS: &str = r#"
let vm = evm.vmdb("vm", evm.object["vm_id"]);
let o = evm.object;
o["host"] = vm.host.name;
o["ems"] = vm.ext_management_system.name;
o["ems_hosts"] = vm.ext_management_system.hosts.len();
o["ems_vms"] = vm.ext_management_system.vms.len();
o["ems_templates"] = vm.ext_management_system.miq_templates.len();
let host_vms = vm.host.vms.map(|v| v.name);
host_vms.sort();
o["host_vms"] = host_vms;
o["owner"] = vm.owner.name;
o["owner_vms"] = vm.owner.vms.len();
o["normalized"] = evm.vmdb("vm").find_by("power_state", "suspended").normalized_name;
o["ems_ref_string"] = vm.ems_ref_string;
o["type"] = vm["type"];
o["retired_is_nil"] = type_of(vm.retired) == "()";
o["vendor_is_nil"] = type_of(vm.vendor) == "()";
o["cluster_is_nil"] = type_of(vm.ems_cluster) == "()";
o["attr_name"] = vm.attributes["name"];
o["attr_id"] = vm.attributes["id"] == vm.id;
o["responds"] = vm.respond_to("power_state") && !vm.respond_to("bogus");
let ev = evm.vmdb("ems_event", evm.object["event_id"]);
o["ev_vm"] = ev.vm.name;
o["ev_src_vm"] = ev.src_vm.name;
o["ev_dest_vm"] = ev.dest_vm.name;
o["ev_host"] = ev.host.name;
o["ev_src_host"] = ev.src_host.name;
o["ev_dest_host"] = ev.dest_host.name;
o["ev_ems"] = ev.ext_management_system.name;
o["ev_namespace"] = ev.event_namespace;
let req = evm.vmdb("miq_request", evm.object["request_id"]);
o["tasks"] = req.miq_request_tasks.len();
o["task_request"] = req.miq_request_tasks[0].miq_request.id == req.id;
o["requester"] = req.requester.userid;
"#;

const QUERIES: &str = r#"
let o = evm.object;
let vms = evm.vmdb("vm");
o["all"] = vms.all().count();
o["count"] = vms.count();
o["on_host1"] = map_names(vms.where(#{host_id: evm.object["host1"], power_state: "on"}));
o["where_chain"] = vms.where("power_state", "on").where(#{host_id: evm.object["host2"]}).count();
o["ordered"] = vms.where(#{power_state: "on"}).order("memory_mb desc").limit(2).to_a().map(|v| v.name);
o["first"] = vms.order("name").first().name;
o["last"] = vms.order("name").last().name;
o["offset"] = vms.order("name").offset(1).limit(1)[0].name;
o["negative_index"] = vms.order("name")[-1].name;
let names = [];
for vm in vms.where(#{name: ["db1", "db2"]}) { names.push(vm.name); }
o["iterated"] = names;
o["find_by_map"] = vms.find_by(#{name: "web2"}).power_state;
o["none"] = vms.where(#{name: "zzz"}).is_empty();
o["old_where"] = vms.where("name", "web1")[0].name;
o["vmdb_where"] = evm.vmdb_where("vm", "name", "web1").len();
o["stored_query"] = vms.where(#{power_state: "off"});
o["type_prop"] = vms.find_by(#{name: "web1"}).type;
"#;

fn method_args(w: &World) -> Vec<(&'static str, String)> {
    vec![
        ("vm_id", w.vms[0].id.to_string()),
        ("event_id", w.event.id.to_string()),
        ("request_id", w.request.id.to_string()),
        ("host1", w.host1.id.to_string()),
        ("host2", w.host2.id.to_string()),
    ]
}

fn check_methods(store: Arc<dyn ObjectStore>, what: &str) {
    let w = world(store.as_ref());
    let dir = tempfile::tempdir().unwrap();
    // `map_names` is a script function the query test calls on its result.
    let queries = format!("fn map_names(q) {{ q.to_a().map(|v| v.name) }}\n{QUERIES}");
    domain(
        dir.path(),
        &[
            ("associations", ASSOCIATIONS),
            ("queries", &queries),
            ("unknown_attr", "let vm = evm.vmdb(\"vm\", evm.object[\"vm_id\"]);\nevm.object[\"x\"] = vm.bogus;\n"),
            ("unknown_index", "let vm = evm.vmdb(\"vm\", evm.object[\"vm_id\"]);\nevm.object[\"x\"] = vm[\"bogus\"];\n"),
            ("unknown_call", "let vm = evm.vmdb(\"vm\", evm.object[\"vm_id\"]);\nvm.bogus_call(1);\n"),
            ("caught", "let vm = evm.vmdb(\"vm\", evm.object[\"vm_id\"]);\ntry { vm.bogus; } catch (e) { evm.object[\"caught\"] = e; }\n"),
        ],
        &[],
    );
    let engine = engine(dir.path(), store);
    let args = method_args(&w);
    let a = run(&engine, "associations", &args).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (k, want) in [
        ("host", "esx1"),
        ("ems", "vc1"),
        ("ems_hosts", "2"),
        ("ems_vms", "5"),
        ("ems_templates", "1"),
        ("owner", "Ada"),
        ("owner_vms", "1"),
        ("normalized", "odd_name_1_"),
        ("ems_ref_string", "vm-web1"),
        ("type", "Vm"),
        ("retired_is_nil", "true"),
        ("vendor_is_nil", "true"),
        ("cluster_is_nil", "true"),
        ("attr_name", "web1"),
        ("attr_id", "true"),
        ("responds", "true"),
        ("ev_vm", "web1"),
        ("ev_src_vm", "web1"),
        ("ev_dest_vm", "web2"),
        ("ev_host", "esx1"),
        ("ev_src_host", "esx1"),
        ("ev_dest_host", "esx2"),
        ("ev_ems", "vc1"),
        ("ev_namespace", "EmsEvent"),
        ("tasks", "2"),
        ("task_request", "true"),
        ("requester", "ada"),
    ] {
        assert_eq!(text(&a, k), want, "{what}: {k}");
    }
    // host1 holds web1, web2 and the template: `vms` leaves templates out.
    assert_eq!(
        a.get("host_vms"),
        Some(&AttrValue::Array(vec![s("web1"), s("web2")])),
        "{what}"
    );

    let q = run(&engine, "queries", &args).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (k, want) in [
        ("all", "6"),
        ("count", "6"),
        ("where_chain", "2"),
        ("first", "db1"),
        ("last", "web2"),
        ("offset", "db2"),
        ("negative_index", "web2"),
        ("find_by_map", "off"),
        ("none", "true"),
        ("old_where", "web1"),
        ("vmdb_where", "1"),
    ] {
        assert_eq!(text(&q, k), want, "{what}: {k}");
    }
    assert_eq!(
        q.get("on_host1"),
        Some(&AttrValue::Array(vec![s("web1")])),
        "{what}"
    );
    assert_eq!(
        q.get("ordered"),
        Some(&AttrValue::Array(vec![s("db1"), s("db2")])),
        "{what}"
    );
    assert_eq!(
        q.get("iterated"),
        Some(&AttrValue::Array(vec![s("db1"), s("db2")])),
        "{what}"
    );

    // Unknown names are ManageIQ's NoMethodError, naming class and method.
    let vm_id = w.vms[0].id;
    let want =
        format!("undefined method `bogus' for #<MiqAeMethodService::MiqAeServiceVm id: {vm_id}>");
    for m in ["unknown_attr", "unknown_index"] {
        let err = run(&engine, m, &args).expect_err(m);
        assert!(err.contains(&want), "{what}: {m}: {err}");
    }
    let err = run(&engine, "unknown_call", &args).expect_err("unknown_call");
    assert!(
        err.contains(
            "undefined method `bogus_call' for #<MiqAeMethodService::MiqAeServiceModelBase>"
        ),
        "{what}: {err}"
    );
    let c = run(&engine, "caught", &args).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        text(&c, "caught"),
        want,
        "{what}: a NoMethodError can be rescued"
    );
}

#[test]
fn methods_read_the_service_model_on_memory() {
    check_methods(Arc::new(MemoryStore::new()), "memory");
}

#[test]
fn methods_read_the_service_model_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("automate.redb")).unwrap());
    check_methods(store, "redb");
}

#[test]
fn methods_read_the_service_model_on_postgresql() {
    let Some(db) = TestDb::new("service_model_methods") else {
        return;
    };
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    check_methods(store, "postgres");
}

#[test]
fn substitution_chains_read_the_service_model() {
    let store = Arc::new(MemoryStore::new());
    let w = world(store.as_ref());
    let dir = tempfile::tempdir().unwrap();
    domain(
        dir.path(),
        &[],
        &[
            ("host_name", "${/#vm.host.name}"),
            ("ems_name", "${/#vm.host.ext_management_system.name}"),
            ("owner", "${/#vm.owner.userid}"),
            ("normalized", "${/#vm.normalized_name}"),
            ("ev_dest", "${/#event_stream.dest_vm.name}"),
            ("ev_src_host", "${/#event_stream.src_host.name}"),
            ("host_vm_count", "${/#vm.host.vms.length}"),
            ("unset", "${/#vm.vendor}"),
            ("bogus", "${/#vm.bogus}"),
        ],
    );
    let engine = engine(dir.path(), store);
    let uri = format!(
        "/Model/Obj/subst?VmOrTemplate::vm={}&EventStream::event_stream={}",
        w.vms[4].id, w.event.id
    );
    // web1 has the owner; vms[4] ("odd name<1>") has no host: use web1 for
    // the host chain and the odd name for normalized_name.
    let (ws, err) = engine.instantiate_traced(&uri, &[]);
    assert!(err.is_none(), "{err:?}: {:?}", ws.trace_lines());
    let root = |k: &str| ws.root_attr(k).map(AttrValue::to_text).unwrap_or_default();
    assert_eq!(root("normalized"), "odd_name_1_");
    assert_eq!(root("host_name"), "", "no host: nil");
    assert_eq!(root("ev_dest"), "web2");
    assert_eq!(root("ev_src_host"), "esx1");
    assert_eq!(root("unset"), "");
    assert_eq!(root("bogus"), "");
    // A method the model does not have is logged with ManageIQ's words.
    let lines = ws.trace_lines().join("\n");
    assert!(
        lines.contains(&format!(
            "undefined method `bogus' for #<MiqAeMethodService::MiqAeServiceVm id: {}>",
            w.vms[4].id
        )),
        "{lines}"
    );
    let uri = format!(
        "/Model/Obj/subst?VmOrTemplate::vm={}&EventStream::event_stream={}",
        w.vms[0].id, w.event.id
    );
    let (ws, err) = engine.instantiate_traced(&uri, &[]);
    assert!(err.is_none(), "{err:?}");
    let root = |k: &str| ws.root_attr(k).map(AttrValue::to_text).unwrap_or_default();
    assert_eq!(root("host_name"), "esx1");
    assert_eq!(root("ems_name"), "vc1");
    assert_eq!(root("owner"), "ada");
    assert_eq!(root("host_vm_count"), "2", "templates are not vms");
    let _ = (&w.ems, &w.template, &w.user, &w.tasks);
}
