//! The seed's scenario: RHEV and OpenStack VMs powering on and off, as
//! `automate demo` plays it (seed `event_processing.md`).

use super::{Provider, ProviderEvent};

/// The two providers of the seed.
pub fn providers() -> (Provider, Provider) {
    (
        Provider {
            name: "rhevm01".into(),
            kind: "RHEVM".into(),
            hostname: "rhevm01".into(),
            userid: "admin@internal".into(),
        },
        Provider {
            name: "rhosp-cont".into(),
            kind: "OPENSTACK".into(),
            hostname: "rhosp-cont".into(),
            userid: "admin".into(),
        },
    )
}

fn event(
    event_type: &str,
    second: u32,
    vm: &str,
    vm_name: &str,
    host: Option<&str>,
) -> ProviderEvent {
    ProviderEvent {
        event_type: event_type.to_string(),
        timestamp: format!("2026-11-24T10:00:{second:02}Z"),
        chain_id: None,
        vm_ems_ref: Some(vm.to_string()),
        vm_name: Some(vm_name.to_string()),
        host_ems_ref: host.map(str::to_string),
        host_name: host.map(|h| format!("{h}.example.com")),
        full_data: serde_json::json!({ "event_type": event_type, "vm": vm }),
    }
}

/// The events in the order they are caught: (provider index 0 = RHEV,
/// 1 = OpenStack, event).
pub fn events() -> Vec<(usize, ProviderEvent)> {
    let rhev_vm = "/api/vms/6b1e3c1a";
    let os_vm = "a1b2c3d4-0000-4000-8000-000000000001";
    vec![
        (
            1,
            event("compute.instance.power_on.start", 1, os_vm, "db-01", None),
        ),
        (
            1,
            event("compute.instance.power_on.end", 2, os_vm, "db-01", None),
        ),
        (
            0,
            event("USER_STARTED_VM", 3, rhev_vm, "web-01", Some("host-1")),
        ),
        (
            0,
            event("USER_RUN_VM", 4, rhev_vm, "web-01", Some("host-1")),
        ),
        (
            0,
            event(
                "USER_INITIATED_SHUTDOWN_VM",
                5,
                rhev_vm,
                "web-01",
                Some("host-1"),
            ),
        ),
        (0, event("VM_DOWN", 6, rhev_vm, "web-01", Some("host-1"))),
        (
            1,
            event("compute.instance.power_off.start", 7, os_vm, "db-01", None),
        ),
        (
            1,
            event("compute.instance.power_off.end", 8, os_vm, "db-01", None),
        ),
        (
            0,
            event("USER_STOP_VM", 9, rhev_vm, "web-01", Some("host-1")),
        ),
    ]
}
