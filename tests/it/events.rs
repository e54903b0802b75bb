//! The event flow end to end through the handler: the seed's scenario on the
//! real ManageIQ domain imported as the only domain (the same switchboard,
//! event instances and event handlers ManageIQ ships), on a real redb store.

use crate::common::assert_in_order;
use crate::datastore::fixture_dir;
use automate_datastore::Datastore;
use automate_engine::AttrValue;
use automate_engine::Engine;
use automate_events::{scenario, EvmLog, Handler};
use automate_redb::RedbStore;
use automate_vmdb::ObjectStore;
use std::process::Command;
use std::sync::Arc;

#[test]
fn seed_scenario_runs_on_the_real_manageiq_domain_as_the_only_domain() {
    let Some(fixture) = fixture_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("datastore");
    std::fs::create_dir_all(&root).expect("mkdir");
    let import = Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(&root)
        .arg("import")
        .arg(&fixture)
        .output()
        .expect("run automate import");
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let (ds, problems) = Datastore::open(&root);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(ds.index().domains().len(), 1, "ManageIQ is the only domain");
    let store = Arc::new(RedbStore::open(tmp.path().join("automate.redb")).expect("store"));
    let (engine, _runner) =
        automate_control::with_control(Engine::new(Arc::new(ds)).with_store(store.clone()));
    let log = EvmLog::default();
    let handler = Handler::new(engine, log.clone()).expect("handler");
    let (rhev, openstack) = scenario::providers();

    let mut errors = Vec::new();
    for (which, ev) in scenario::events() {
        let provider = if which == 0 { &rhev } else { &openstack };
        log.info(provider.caught_line(&ev.event_type));
        let outcome = handler.handle(provider, &ev).expect("handled");
        if let Some(e) = outcome.error {
            errors.push(format!("{}: {e}", ev.event_type));
        }
    }
    let lines = log.drain();
    assert!(errors.is_empty(), "{errors:?}\n{}", lines.join("\n"));

    // The OpenStack power-off, then the RHEV one, each through the
    // fixture's own instances down to POLICY/.missing and event_enforce_policy.
    assert_in_order(
        &lines,
        &[
            "MIQ(EventCatcherOpenstack) EMS [rhosp-cont] as [admin] Caught event [compute.instance.power_off.end]",
            "Processing EMS event [compute.instance.power_off.end] chain_id []",
            "<AutomationEngine> Instantiating [/System/Process/Event?EventStream%3A%3Aevent_stream=",
            "<AutomationEngine> Following Relationship [miqaedb:/System/Event/EmsEvent/OPENSTACK/compute.instance.power_off.end#create]",
            "<AutomationEngine> Updated namespace [miqaedb:/System/Event/EmsEvent/OPENSTACK/compute.instance.power_off.end#create  ManageIQ/System/Event/EmsEvent]",
            "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_policy]",
            "MIQ(Event.raise_evm_event): Event Raised [vm_poweroff]",
            "MIQ(Event.raise_evm_event): Alert for Event [vm_poweroff]",
            "<AutomationEngine> Instantiating [/System/Process/Event?EventStream%3A%3Aevent_stream=",
            "<AutomationEngine> Instance [/ManageIQ/System/Event/MiqEvent/POLICY/vm_poweroff] not found in MiqAeDatastore - trying [.missing]",
            "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_enforce_policy]",
            "Processing EMS event [compute.instance.power_off.end] chain_id [] on EMS [1000000000001]...Complete",
            "MIQ(EventCatcherRedhat) EMS [rhevm01] as [admin@internal] Caught event [USER_STOP_VM]",
            "Processing EMS event [USER_STOP_VM] chain_id []",
            "<AutomationEngine> Following Relationship [miqaedb:/System/Event/EmsEvent/RHEVM/USER_STOP_VM#create]",
            "MIQ(Event.raise_evm_event): Event Raised [vm_poweroff]",
            "MIQ(Event.raise_evm_event): Alert for Event [vm_poweroff]",
            "Processing EMS event [USER_STOP_VM] chain_id [] on EMS [1000000000002]...Complete",
        ],
    );
    // The VMs' power states followed the events: both ended powered off.
    for name in ["web-01", "db-01"] {
        let vm = store
            .find_by("VmOrTemplate", "name", &AttrValue::Str(name.into()))
            .unwrap()
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("VM {name} was created on first sight"));
        assert_eq!(
            store.attribute(&vm, "power_state").unwrap(),
            Some(AttrValue::Str("off".into())),
            "{name}"
        );
    }
    // The fixture's RHEVM USER_RUN_VM raises vm_start the same way.
    assert_in_order(
        &lines,
        &[
            "Caught event [USER_RUN_VM]",
            "MIQ(Event.raise_evm_event): Event Raised [vm_start]",
            "MIQ(Event.raise_evm_event): Alert for Event [vm_start]",
        ],
    );
}

/// A `DeadLetterEvent` row as the pipeline's workers write it.
fn dead_letter_row(store: &RedbStore, vm: &str) -> i64 {
    let s = |v: &str| AttrValue::Str(v.to_string());
    let mut attrs = automate_engine::Attributes::default();
    for (k, v) in [
        ("event_namespace", "DeadLetter"),
        ("source", "RHEVM"),
        ("provider", "rhevm01"),
        ("event_type", "USER_RUN_VM"),
        ("timestamp", "2026-01-01T00:00:00Z"),
        ("vm_ems_ref", vm),
        ("vm_name", vm),
        ("full_data", "{}"),
        ("error", "the handler panicked: boom"),
        ("created_on", "2026-01-01T00:00:01Z"),
    ] {
        attrs.insert(k.into(), s(v));
    }
    attrs.insert("attempts".into(), AttrValue::Int(3));
    store.create("DeadLetterEvent", attrs).unwrap().id
}

/// `automate events dead-letter list|retry` on the store (no service),
/// then through `automate api` (the service holding it): listed, retried
/// onto the store's queue, off the list; an unknown id is an error.
#[test]
fn dead_letters_are_listed_and_retried_with_and_without_a_service() {
    use crate::common::process::{automate_on, stdout, stdout_ok};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.redb");
    let root = crate::common::shipped_datastore();
    let (a, b) = {
        let store = RedbStore::open(&db).unwrap();
        (
            dead_letter_row(&store, "vm-a"),
            dead_letter_row(&store, "vm-b"),
        )
    };
    let list = || {
        let out = automate_on(&root, &db)
            .args(["events", "dead-letter", "list", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout_ok(&out, "list")).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(list(), vec![a.to_string(), b.to_string()]);
    let text = automate_on(&root, &db)
        .args(["events", "dead-letter", "list"])
        .output()
        .unwrap();
    let text = stdout_ok(&text, "list");
    assert!(
        text.contains("ERROR") && text.contains("the handler panicked: boom"),
        "{text}"
    );

    // Without a service: retried into the file's queue.
    let out = automate_on(&root, &db)
        .args(["events", "dead-letter", "retry", &a.to_string()])
        .output()
        .unwrap();
    assert!(stdout_ok(&out, "retry").contains(&format!("1 dead letter enqueued again: {a}")));
    assert_eq!(list(), vec![b.to_string()]);
    let out = automate_on(&root, &db)
        .args(["events", "dead-letter", "retry", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // Through `automate api`, holding the store.
    let mut api = automate_on(&root, &db)
        .args(["api", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let adv = dir.path().join("d.redb.server");
    let started = std::time::Instant::now();
    while !adv.exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(list(), vec![b.to_string()]);
    let out = automate_on(&root, &db)
        .args(["events", "dead-letter", "retry", "--all", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout_ok(&out, "retry --all")).unwrap();
    assert_eq!(v, serde_json::json!({ "retried": [b.to_string()] }));
    assert!(list().is_empty());
    assert!(crate::common::terminate(&mut api).is_some_and(|s| s.success()));

    // Both are queued for the next `automate run`.
    let store = RedbStore::open(&db).unwrap();
    assert_eq!(
        automate_vmdb::Schedule::count_kind(
            &store.schedule(),
            automate_vmdb::event_queue::EVENT_KIND
        )
        .unwrap(),
        2
    );
}
