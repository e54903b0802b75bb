//! Control policies and alerts (`src/control`): the shipped datastore copied
//! to a temp root with `control/` files from `tests/data/control/<case>/`,
//! and the `USER_RUN_VM` event flow, which raises `vm_start` for the VM.

use automate_control::{self as control, Action};
use automate_datastore::Datastore;
use automate_engine::{AttrValue, Engine, Workspace};
use automate_methods::RhaiLimits;
use automate_vmdb::{MemoryStore, ObjectStore, VmdbRef};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{manifest, rhev_store, EVENT, VM};

/// A RHEV provider, a host, the VM `prod-web01` and its `USER_RUN_VM`.
fn store() -> Arc<MemoryStore> {
    rhev_store("prod-web01")
}

/// The shipped datastore in a temp dir, its `control/` replaced by the
/// files of `tests/data/control/<case>`.
fn root_with(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&manifest("datastore"), dir.path());
    let control = dir.path().join("control");
    let _ = std::fs::remove_dir_all(&control);
    crate::common::copy_dir(&manifest(&format!("tests/data/control/{case}")), &control);
    dir
}

fn engine_on(root: &Path, store: Arc<MemoryStore>) -> Engine {
    let (ds, problems) = Datastore::open(root);
    assert!(problems.is_empty(), "{problems:?}");
    let mut engine = Engine::new(Arc::new(ds)).with_store(store);
    engine.options.emit_tracing = false;
    control::with_control_and_limits(engine, RhaiLimits::default()).0
}

fn user_run_vm(engine: &Engine) -> Workspace {
    let (ws, err) = engine.instantiate_traced(
        &format!(
            "/System/Event/EmsEvent/RHEVM/USER_RUN_VM?EventStream%3A%3Aevent_stream={EVENT}&event_type=USER_RUN_VM"
        ),
        &[],
    );
    assert_eq!(err, None, "{}", dump(&ws));
    ws
}

fn dump(ws: &Workspace) -> String {
    ws.trace_lines().join("\n")
}

/// The index of the first trace line containing `needle`.
fn pos(ws: &Workspace, needle: &str) -> usize {
    ws.trace
        .iter()
        .position(|l| l.text.contains(needle))
        .unwrap_or_else(|| panic!("no line [{needle}] in\n{}", dump(ws)))
}

fn has_line(ws: &Workspace, needle: &str) -> bool {
    ws.trace.iter().any(|l| l.text.contains(needle))
}

fn vm_attr(store: &MemoryStore, name: &str) -> Option<AttrValue> {
    let vm = VmdbRef {
        class: "VmOrTemplate".into(),
        id: VM,
    };
    store.attribute(&vm, name).unwrap()
}

#[test]
fn policies_and_alerts_run_on_their_event() {
    let root = root_with("match");
    let store = store();
    let engine = engine_on(root.path(), store.clone());
    let ws = user_run_vm(&engine);

    let raised = pos(&ws, "MIQ(Event.raise_evm_event): Event Raised [vm_start]");
    let logged = pos(
        &ws,
        "MIQ(MiqPolicy.enforce_policy) Policy [tag_prod] action log: production VM started",
    );
    let set = pos(
        &ws,
        "MIQ(MiqPolicy.enforce_policy) Policy [tag_prod] action set_attribute: ",
    );
    let invoked = pos(
        &ws,
        "Policy [tag_prod] action invoke: [/System/Process/parse_provider_category] completed",
    );
    let not_dev = pos(
        &ws,
        "MIQ(MiqPolicy.enforce_policy) Policy [only_dev] action log: not a dev VM",
    );
    let alert_for = pos(
        &ws,
        "MIQ(Event.raise_evm_event): Alert for Event [vm_start]",
    );
    let alert = pos(
        &ws,
        "MIQ(MiqAlert.evaluate_alerts) Alert [started] action log: VM start seen",
    );
    assert!(
        raised < logged
            && logged < set
            && set < invoked
            && invoked < not_dev
            && not_dev < alert_for
            && alert_for < alert,
        "{}",
        dump(&ws)
    );
    assert!(has_line(
        &ws,
        "Policy [tag_prod] condition true for event [vm_start]"
    ));
    assert!(has_line(
        &ws,
        "Policy [only_dev] condition false for event [vm_start]"
    ));
    assert!(!has_line(&ws, "tag_prod does not apply"));
    assert!(!has_line(&ws, "dev VM started"));
    assert!(!has_line(&ws, "never on vm_start"));
    assert!(!has_line(&ws, "no vm_stop here"));
    assert!(!has_line(&ws, "parse_provider_category] failed"));

    assert_eq!(
        vm_attr(&store, "control_tag"),
        Some(AttrValue::str("production"))
    );
    assert_eq!(vm_attr(&store, "dev_checked"), Some(AttrValue::Bool(true)));
}

#[test]
fn loads_the_case_files() {
    let set = control::load(&manifest("tests/data/control/match")).unwrap();
    assert_eq!(set.policies.len(), 3);
    assert_eq!(set.alerts.len(), 2);
    assert_eq!(set.policies[0].events, vec!["vm_start", "vm_poweroff"]);
    assert_eq!(
        set.policies[0].actions[2],
        Action::Invoke("/System/Process/parse_provider_category".into())
    );
    assert!(set.policies[2].condition.is_none());
    // The shipped example loads too.
    let shipped = control::load(&manifest("datastore/control")).unwrap();
    assert!(!shipped.policies.is_empty() && !shipped.alerts.is_empty());
}

#[test]
fn a_bad_condition_is_reported_with_file_and_line() {
    let dir = manifest("tests/data/control/bad");
    let err = control::load(&dir).unwrap_err();
    assert_eq!(err.file, dir.join("bad.yaml"));
    assert_eq!(err.field, "policies[1].condition");
    // `condition: |` is line 8; the incomplete expression ends on line 10.
    assert_eq!(err.line, 10, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("bad.yaml:") && text.contains("does not compile"),
        "{text}"
    );

    // The event still runs; the load error is logged, no policy runs.
    let root = root_with("bad");
    let engine = engine_on(root.path(), store());
    let ws = user_run_vm(&engine);
    assert!(has_line(&ws, "control policies and alerts not loaded"));
    assert!(has_line(&ws, "bad.yaml:"));
    assert!(!has_line(&ws, "Policy [fine]"));
    assert!(has_line(&ws, "Alert for Event [vm_start]"));
}

#[test]
fn a_looping_condition_fails_its_policy_not_the_event() {
    let root = root_with("loop");
    let engine = engine_on(root.path(), store());
    let started = Instant::now();
    let ws = user_run_vm(&engine);
    assert!(started.elapsed() < Duration::from_secs(30));
    let failed = pos(
        &ws,
        "MIQ(MiqPolicy.enforce_policy) Policy [spins] condition failed for event [vm_start]",
    );
    let after = pos(&ws, "Policy [after_spins] action log: still evaluated");
    let alert = pos(
        &ws,
        "Alert [still_alerts] action log: alert after a failed policy",
    );
    assert!(failed < after && after < alert, "{}", dump(&ws));
    assert!(
        has_line(&ws, "more than 100000 operations"),
        "{}",
        dump(&ws)
    );
    assert!(!has_line(&ws, "action log: never"));
}

#[test]
fn a_reloaded_datastore_reloads_its_control_files() {
    let root = root_with("match");
    let (ds, _) = Datastore::open(root.path());
    let control = control::Control::new();
    assert_eq!(control.control_for(&ds).unwrap().policies.len(), 3);
    std::fs::remove_file(root.path().join("control/policies.yaml")).unwrap();
    // Cached until the datastore reloads.
    assert_eq!(control.control_for(&ds).unwrap().policies.len(), 3);
    ds.reload();
    assert_eq!(control.control_for(&ds).unwrap().policies.len(), 0);
}

#[test]
fn raise_event_raises_a_generic_event_for_the_target() {
    let root = root_with("raise");
    let engine = engine_on(root.path(), store());
    let ws = user_run_vm(&engine);
    let action = pos(&ws, "Policy [chain] action raise_event: [vm_poweroff]");
    let raised = pos(&ws, "Event Raised [vm_poweroff]");
    let chained = pos(&ws, "Policy [chained] action log: raised by chain");
    assert!(action < raised && raised < chained, "{}", dump(&ws));
}
