//! Fixtures shared by the test modules: a small RHEV world in a
//! `MemoryStore` (a provider, a host, a VM and its `USER_RUN_VM` EmsEvent,
//! with ManageIQ-style ids).

use automate::engine::{AttrValue, Attributes};
use automate::vmdb::MemoryStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const VM: i64 = 1_000_000_000_029;
pub const HOST: i64 = 1_000_000_000_002;
pub const EMS: i64 = 1_000_000_000_001;
pub const EVENT: i64 = 1_000_000_003_170;

/// A path below the crate root.
pub fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Attributes from `(name, value)` pairs.
pub fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A RHEV provider, a host, the VM `vm_name` (powered off) and its
/// `USER_RUN_VM` EmsEvent.
pub fn rhev_store(vm_name: &str) -> Arc<MemoryStore> {
    let s = MemoryStore::new();
    s.insert(
        "ExtManagementSystem",
        EMS,
        attrs(&[
            ("name", "rhevm01".into()),
            ("type", "ManageIQ::Providers::Redhat::InfraManager".into()),
        ]),
    );
    s.insert("Host", HOST, attrs(&[("name", "host01".into())]));
    s.insert(
        "VmOrTemplate",
        VM,
        attrs(&[
            ("name", vm_name.into()),
            ("power_state", "off".into()),
            ("ems_id", AttrValue::Int(EMS)),
            ("host_id", AttrValue::Int(HOST)),
        ]),
    );
    s.insert(
        "EmsEvent",
        EVENT,
        attrs(&[
            ("event_namespace", "EmsEvent".into()),
            ("source", "RHEVM".into()),
            ("event_type", "USER_RUN_VM".into()),
            ("vm_or_template_id", AttrValue::Int(VM)),
            ("host_id", AttrValue::Int(HOST)),
            ("ems_id", AttrValue::Int(EMS)),
        ]),
    );
    Arc::new(s)
}
