//! Each delivery's record (`automate_events::trace`): the outcome, trace
//! and digest stored with the event in the pipeline's unit of work (redb
//! and PostgreSQL), bounded and pruned; `GET /api/event_streams/{id}/trace`,
//! `automate events show`, and the live stream `GET /api/events/stream`.
//! The flow is the seed's: `USER_RUN_VM` raises `vm_start`, whose policies
//! (`tests/data/control/match`) fire for the VM `prod-web01`.

use automate_engine::{AttrValue, Attributes, Engine};
use automate_events::trace::{Pruner, Record, TraceConfig, TRACE_ATTR, TRUNCATED_MARKER};
use automate_events::{EvmLog, Handler, Provider, ProviderEvent};
use automate_vmdb::served::ServedStore;
use automate_vmdb::{HandOver, ObjectStore, UnitOfWork};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{copy_dir, manifest};

const TOKEN: &str = "trace-token";

/// The shipped datastore with the policies of `tests/data/control/match`.
/// Recording on (`events.trace.enabled: true`; off by default), with the
/// default bounds.
fn on() -> TraceConfig {
    TraceConfig {
        enabled: true,
        ..TraceConfig::default()
    }
}

fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&manifest("datastore"), dir.path());
    let control = dir.path().join("control");
    let _ = std::fs::remove_dir_all(&control);
    copy_dir(&manifest("tests/data/control/match"), &control);
    dir
}

fn provider() -> Provider {
    Provider {
        name: "rhevm01".into(),
        kind: "RHEVM".into(),
        hostname: "rhevm01.example.com".into(),
        userid: "admin@internal".into(),
    }
}

fn user_run_vm(chain: &str) -> ProviderEvent {
    ProviderEvent {
        event_type: "USER_RUN_VM".into(),
        timestamp: "2026-12-01T10:00:00Z".into(),
        chain_id: Some(chain.into()),
        vm_ems_ref: Some("/api/vms/prod-web01".into()),
        vm_name: Some("prod-web01".into()),
        host_ems_ref: None,
        host_name: None,
        full_data: json!({"name": "USER_RUN_VM", "vm": {"name": "prod-web01"}}),
    }
}

/// The engine with control on `root`, over `store`.
fn engine(root: &Path, store: Arc<dyn ObjectStore>) -> (Engine, Arc<automate_methods::RhaiRunner>) {
    let (mut engine, runner) = crate::common::control_engine(root, store);
    engine.options.emit_tracing = false;
    (engine, runner)
}

/// The VM `prod-web01`, powered off (so the alert `started` fires), made
/// before the event, on the provider the handler uses.
fn powered_off_vm(handler: &Handler, store: &dyn ObjectStore) {
    let ems = handler.provider_ref(&provider()).unwrap();
    let mut attrs = Attributes::default();
    for (k, v) in [
        ("name", AttrValue::Str("prod-web01".into())),
        ("ems_ref", AttrValue::Str("/api/vms/prod-web01".into())),
        ("ems_id", AttrValue::Int(ems.id)),
        ("power_state", AttrValue::Str("off".into())),
    ] {
        attrs.insert(k.into(), v);
    }
    store.create_now("VmOrTemplate", attrs).unwrap();
}

/// Handles `events` as a pipeline worker does: in one unit of work of
/// `units`, handed over and waited for; the records and the event ids.
fn handle_in_unit(
    handler: &Handler,
    units: &dyn UnitOfWork,
    events: &[ProviderEvent],
) -> Vec<(i64, Option<Record>)> {
    let unit = units.begin_unit();
    let engine = handler.engine().clone().with_store(unit.objects());
    let mut out = Vec::new();
    for ev in events {
        let o = handler.handle_in(&engine, &provider(), ev).unwrap();
        assert!(o.error.is_none(), "{:?}", o.error);
        out.push((o.event_id, o.record));
    }
    drop(engine);
    unit.hand_over(HandOver::default()).wait().unwrap();
    unit.landed();
    out
}

/// The record stored with event `id`.
fn stored_record(store: &dyn ObjectStore, id: i64) -> Option<Record> {
    let obj = store.load("EventStream", id).unwrap().expect("the event");
    Record::of(&obj).unwrap()
}

/// What the seed's flow must have recorded.
fn assert_seed_outcome(r: &Record) {
    let o = &r.outcome;
    assert_eq!(o.generic_events, ["vm_start"], "{r:#?}");
    assert!(
        o.policies
            .iter()
            .any(|p| p.policy == "tag_prod" && p.event == "vm_start" && p.condition),
        "{r:#?}"
    );
    assert!(
        o.policies
            .iter()
            .any(|p| p.policy == "only_dev" && !p.condition),
        "{r:#?}"
    );
    assert!(
        o.alerts
            .iter()
            .any(|a| a.alert == "started" && a.event == "vm_start"),
        "{r:#?}"
    );
    // tag_prod's set_attribute on the VM.
    assert!(
        o.objects.iter().any(|x| x.class.contains("Vm")
            && !x.created
            && x.attributes.iter().any(|a| a == "control_tag")),
        "{r:#?}"
    );
    assert!(o.methods.iter().any(|m| !m.method.is_empty()), "{r:#?}");
    assert!(o.errors.is_empty(), "{r:#?}");
    assert!(!r.truncated);
    assert!(r
        .trace
        .iter()
        .any(|l| l.contains("Event Raised [vm_start]")));
    assert_eq!(r.digest.len(), 64);
}

/// A redb store in `dir` and its pipeline units (the group-commit writer).
fn redb_units(dir: &Path) -> (Arc<automate_redb::RedbStore>, automate_redb::GroupUnits) {
    let store = Arc::new(automate_redb::RedbStore::open(dir.join("trace.redb")).unwrap());
    let (group, writer) = automate_redb::GroupCommit::start(store.clone()).unwrap();
    let units = automate_redb::GroupUnits::new(store.clone(), group, writer);
    (store, units)
}

#[test]
fn a_delivery_records_its_generic_event_policies_alerts_and_objects_on_redb() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let (store, units) = redb_units(dir.path());
    let (engine, _runner) = engine(root.path(), store.clone());
    let handler = Handler::new(engine, EvmLog::discarding())
        .unwrap()
        .with_trace(on());
    powered_off_vm(&handler, &*store);
    let handled = handle_in_unit(&handler, &units, &[user_run_vm("1")]);
    let (id, answered) = &handled[0];
    let record = stored_record(&*store, *id).expect("a record stored with the event");
    assert_seed_outcome(&record);
    assert_eq!(answered.as_ref(), Some(&record));
    units.close();
}

#[test]
fn two_deliveries_of_identical_events_have_one_digest() {
    let root = root();
    let mut digests = Vec::new();
    for extra in [0, 3] {
        let dir = tempfile::tempdir().unwrap();
        let (store, units) = redb_units(dir.path());
        // Ids differ between the two runs.
        for i in 0..extra {
            let mut a = Attributes::default();
            a.insert("name".into(), AttrValue::Str(format!("other-{i}")));
            store.create_now("VmOrTemplate", a).unwrap();
            store.create_now("MiqEvent", Attributes::default()).unwrap();
        }
        let (engine, _runner) = engine(root.path(), store.clone());
        let handler = Handler::new(engine, EvmLog::discarding())
            .unwrap()
            .with_trace(on());
        powered_off_vm(&handler, &*store);
        let handled = handle_in_unit(&handler, &units, &[user_run_vm("1")]);
        let r = stored_record(&*store, handled[0].0).unwrap();
        digests.push((handled[0].0, r.digest));
        units.close();
    }
    assert_ne!(digests[0].0, digests[1].0, "the event ids differ");
    assert_eq!(digests[0].1, digests[1].1);

    // A different outcome (a VM the production policy does not apply to)
    // has another digest.
    let dir = tempfile::tempdir().unwrap();
    let (store, units) = redb_units(dir.path());
    let (engine, _runner) = engine(root.path(), store.clone());
    let handler = Handler::new(engine, EvmLog::discarding())
        .unwrap()
        .with_trace(on());
    let mut ev = user_run_vm("1");
    ev.vm_name = Some("dev-db01".into());
    ev.vm_ems_ref = Some("/api/vms/dev-db01".into());
    let handled = handle_in_unit(&handler, &units, &[ev]);
    let r = stored_record(&*store, handled[0].0).unwrap();
    assert_ne!(r.digest, digests[0].1);
    units.close();
}

#[test]
fn records_are_bounded_in_size_and_pruned_by_age_and_count() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let (store, units) = redb_units(dir.path());
    let (engine, _runner) = engine(root.path(), store.clone());
    let config = TraceConfig {
        max_bytes: 512,
        keep_days: 7,
        keep_max: 3,
        ..on()
    };
    let handler = Handler::new(engine, EvmLog::discarding())
        .unwrap()
        .with_trace(config.clone());
    let events: Vec<ProviderEvent> = (0..5).map(|i| user_run_vm(&i.to_string())).collect();
    let handled = handle_in_unit(&handler, &units, &events);
    let ids: Vec<i64> = handled.iter().map(|(id, _)| *id).collect();
    let full = handled[0].1.as_ref().unwrap();
    assert!(full.truncated);
    assert_eq!(
        full.trace.last().map(String::as_str),
        Some(TRUNCATED_MARKER)
    );
    let text: usize = full.trace[..full.trace.len() - 1]
        .iter()
        .map(|l| l.len() + 1)
        .sum();
    assert!(text <= 512, "{text} bytes kept");
    // The digest covers the whole trace: the same as without the bound.
    assert_eq!(full.digest, stored_record(&*store, ids[0]).unwrap().digest);

    // Count: the newest 3 are kept.
    let served: Arc<dyn ServedStore> = store.clone();
    let mut pruner = Pruner::new(served.clone(), config.clone());
    let now = automate_core::time::now_ms();
    let p = pruner.prune(now).unwrap();
    assert_eq!((p.cleared, p.kept), (2, 3));
    let kept: Vec<bool> = ids
        .iter()
        .map(|id| stored_record(&*store, *id).is_some())
        .collect();
    assert_eq!(kept, [false, false, true, true, true]);
    // The events themselves stay, without their record.
    let first = store.load("EventStream", ids[0]).unwrap().unwrap();
    assert_eq!(first.attrs.get(TRACE_ATTR), Some(&AttrValue::Nil));
    assert_eq!(
        first.attrs.get("event_type"),
        Some(&AttrValue::Str("USER_RUN_VM".into()))
    );
    // Nothing more to do now.
    assert_eq!(pruner.prune(now).unwrap().cleared, 0);
    // Age: 8 days later every record is older than keep_days.
    let later = now + 8 * 86_400_000;
    assert_eq!(pruner.prune(later).unwrap().cleared, 3);
    assert!(ids.iter().all(|id| stored_record(&*store, *id).is_none()));
    units.close();
}

#[test]
fn recording_off_stores_nothing() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let (store, units) = redb_units(dir.path());
    let (engine, _runner) = engine(root.path(), store.clone());
    let handler = Handler::new(engine, EvmLog::discarding())
        .unwrap()
        .with_trace(TraceConfig {
            enabled: false,
            ..on()
        });
    let handled = handle_in_unit(&handler, &units, &[user_run_vm("1")]);
    assert!(handled[0].1.is_none());
    assert!(stored_record(&*store, handled[0].0).is_none());
    units.close();
}

#[test]
fn a_delivery_records_its_outcome_on_postgresql() {
    let Some(db) = automate_postgres::testing::TestDb::new("eventtrace") else {
        return;
    };
    let root = root();
    let store = automate_postgres::store::PgStore::open(db.pg()).unwrap();
    let units = store.units(None);
    let (engine, _runner) = engine(root.path(), store.clone());
    let handler = Handler::new(engine, EvmLog::discarding())
        .unwrap()
        .with_trace(on());
    powered_off_vm(&handler, &*store);
    let handled = handle_in_unit(&handler, &*units, &[user_run_vm("1"), user_run_vm("2")]);
    let record = stored_record(&*store, handled[0].0).expect("a record in PostgreSQL");
    assert_seed_outcome(&record);
    // The provider's payload as caught, stored with it.
    let obj = store.load("EventStream", handled[0].0).unwrap().unwrap();
    let payload = obj
        .attrs
        .get("full_data")
        .map(AttrValue::to_text)
        .unwrap_or_default();
    assert!(payload.contains("prod-web01"), "{payload}");
    // The same flow on redb has the same digest (the ids differ).
    let dir = tempfile::tempdir().unwrap();
    let (local, local_units) = redb_units(dir.path());
    for _ in 0..2 {
        local.create_now("MiqEvent", Attributes::default()).unwrap();
    }
    let (engine, _local_runner) = self::engine(root.path(), local.clone());
    let local_handler = Handler::new(engine, EvmLog::discarding())
        .unwrap()
        .with_trace(on());
    powered_off_vm(&local_handler, &*local);
    let on_redb = handle_in_unit(&local_handler, &local_units, &[user_run_vm("1")]);
    assert_ne!(on_redb[0].0, handled[0].0);
    assert_eq!(
        stored_record(&*local, on_redb[0].0).unwrap().digest,
        record.digest
    );
    local_units.close();
    // Pruned there too.
    let served: Arc<dyn ServedStore> = store.clone();
    let mut pruner = Pruner::new(
        served,
        TraceConfig {
            keep_max: 1,
            ..on()
        },
    );
    let p = pruner.prune(automate_core::time::now_ms()).unwrap();
    assert_eq!((p.cleared, p.kept), (1, 1));
    assert!(stored_record(&*store, handled[0].0).is_none());
    assert!(stored_record(&*store, handled[1].0).is_some());
    units.close();
}

/// An SSE client on a raw TCP connection: sends the request, then yields
/// each `data:` line.
struct Sse {
    reader: BufReader<std::net::TcpStream>,
}

impl Sse {
    fn open(port: u16, query: &str) -> Sse {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            tcp,
            "GET /api/events/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(tcp);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        Sse { reader }
    }

    /// The next message's data, `None` at the end of the stream.
    fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).ok()?;
            if n == 0 {
                return None;
            }
            if let Some(d) = line.trim_end().strip_prefix("data: ") {
                return serde_json::from_str(d).ok();
            }
        }
    }
}

fn post_event(port: u16, event_type: &str, vm: &str, chain: &str) {
    let body = json!({"provider": "rhevm01", "event": {"event_type": event_type,
        "timestamp": "2026-12-01T10:00:00Z", "chain_id": chain,
        "vm_ems_ref": format!("/api/vms/{vm}"), "vm_name": vm}})
    .to_string();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        tcp,
        "POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

#[test]
fn the_live_stream_shows_posted_events_filtered_and_the_trace_is_served() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::process::free_port();
    let yaml = format!(
        "providers:\n  - {{name: rhevm01, type: RHEVM, hostname: r, userid: u, catcher: {{kind: http}}}}\n\
         workers: 1\napi: {{listen: '127.0.0.1:{port}', token: {TOKEN}}}\n\
         events: {{trace: {{enabled: true}}}}\n"
    );
    let cfg = automate_events::config::Config::from_yaml(&yaml, "trace.yaml").unwrap();
    let rt = crate::common::api_runtime();
    let db = dir.path().join("run.redb");
    let started = rt
        .block_on(automate::cli::compose::start(&cfg, root.path(), &db))
        .unwrap();
    let automate::cli::compose::Started {
        pipeline,
        pruner,
        outbound,
        reloader,
        ..
    } = started;

    // Unknown filters are refused.
    {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(tcp, "GET /api/events/stream?colour=red HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("colour: unknown parameter"), "{answer}");
    }
    let mut runs = Sse::open(port, "provider=rhevm01&type=USER_RUN_VM&vm=prod-web01");
    let mut downs = Sse::open(port, "type=VM_DOWN");
    let posted = Instant::now();
    post_event(port, "USER_RUN_VM", "prod-web01", "1");
    let msg = runs.next().expect("a message");
    let seen = posted.elapsed();
    eprintln!("eventtrace: the live stream showed the event {seen:?} after it was posted");
    assert!(seen < Duration::from_secs(20));
    let events = msg["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{msg}");
    let e = &events[0];
    assert_eq!(e["event_type"], "USER_RUN_VM");
    assert_eq!(e["provider"], "rhevm01");
    assert_eq!(e["vm_name"], "prod-web01");
    assert_eq!(e["generic_events"], json!(["vm_start"]));
    assert!(
        e["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("tag_prod")),
        "{e}"
    );
    let id = e["id"].as_str().unwrap().to_string();

    // The other filter sees only its own type.
    post_event(port, "VM_DOWN", "prod-web01", "2");
    let msg = downs.next().expect("a message");
    let types: Vec<&str> = msg["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(types, ["VM_DOWN"], "{msg}");

    // The trace of the event, through the API.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(format!(
            "http://127.0.0.1:{port}/api/event_streams/{id}/trace"
        ))
        .header("X-Auth-Token", TOKEN)
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        doc["outcome"]["generic_events"],
        json!(["vm_start"]),
        "{doc}"
    );
    assert_eq!(doc["event"]["event_type"], "USER_RUN_VM", "{doc}");
    assert!(doc["event"].get(TRACE_ATTR).is_none());
    assert!(doc["trace"].as_array().is_some_and(|t| !t.is_empty()));
    // The event itself does not carry the record.
    let mut r = agent
        .get(format!("http://127.0.0.1:{port}/api/event_streams/{id}"))
        .header("X-Auth-Token", TOKEN)
        .call()
        .unwrap();
    let ev: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert!(ev.get(TRACE_ATTR).is_none(), "{ev}");

    // `automate events show` through the running service.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_automate"))
        .args(["--datastore"])
        .arg(root.path())
        .arg("--db")
        .arg(&db)
        .args(["events", "show", &id, "--json"])
        .env_remove("AUTOMATE_SERVER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["digest"], doc["digest"]);
    assert!(shown.get("trace").is_none(), "without --trace: {shown}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(root.path())
        .arg("--db")
        .arg(&db)
        .args(["events", "show", &id, "--trace"])
        .env_remove("AUTOMATE_SERVER")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Generic events: vm_start"), "{text}");
    assert!(
        text.contains("tag_prod [vm_start] condition true"),
        "{text}"
    );
    assert!(text.contains("Event Raised [vm_start]"), "{text}");

    // Shutdown ends the streams.
    rt.block_on(pipeline.shutdown());
    drop(pruner);
    drop(outbound);
    drop(reloader);
    while runs.next().is_some() {}
    while downs.next().is_some() {}

    // And with the service gone, `events show` reads the file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(root.path())
        .arg("--db")
        .arg(&db)
        .args(["events", "show", &id, "--json"])
        .env_remove("AUTOMATE_SERVER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(local["digest"], doc["digest"]);
    assert_eq!(local["outcome"], doc["outcome"]);
}
