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
