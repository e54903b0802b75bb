//! The `simulate` catcher: a seeded, deterministic stream of realistic
//! provider events, VMs powering on and off with consistent state.
//!
//! Each VM goes round the power cycle of its provider type, and never skips
//! a step:
//!
//! | type | power on | power off |
//! |---|---|---|
//! | `RHEVM` | `USER_STARTED_VM` → `USER_RUN_VM` | `USER_INITIATED_SHUTDOWN_VM` or `USER_STOP_VM` → `VM_DOWN` |
//! | `OPENSTACK` | `compute.instance.power_on.start` → `.end` | `compute.instance.power_off.start` → `.end` |
//! | `VC` | `VmStartingEvent` → `VmPoweredOnEvent` | `VmStoppingEvent` → `VmPoweredOffEvent` |
//!
//! Each step picks a VM at random (with the seeded PRNG) and moves it one
//! step on. `full_data` has the provider's own shape (a RHEV API event, an
//! oslo notification, a vSphere event) and the refs are filled as that
//! provider's parser would. [`Simulator`] is a plain iterator (no tokio);
//! the catcher paces it at `rate` events per second.

use super::lease::Checkpoints;
use super::operations::{self, InventoryChange};
use super::{CatcherError, Ctx, Offer};
use crate::{Provider, ProviderEvent};
use automate_core::time;
use automate_core::value::AttrValue;
use automate_vmdb::snapshots::NewSnapshot;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `kind: simulate` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulateConfig {
    /// The PRNG seed: the same seed gives the same events.
    pub seed: u64,
    /// Events per second; `0` = as fast as the pipeline takes them.
    pub rate: f64,
    /// Stop after this many events (default: run until shutdown).
    pub count: Option<u64>,
    /// How many VMs the provider has.
    pub vms: usize,
    /// The first event's time (`2026-01-01T00:00:00Z`); later events are
    /// `1/rate` seconds apart (1 ms when `rate` is 0). The catcher defaults to
    /// the current time, the bare [`Simulator`] to 2026-01-01T00:00:00Z.
    pub start: Option<String>,
}

/// The slowest `rate` other than 0 (one event a ~11.6 days).
pub const MIN_RATE: f64 = 1e-6;
/// The fastest `rate` (events a second; 0 is "as fast as taken").
pub const MAX_RATE: f64 = 10_000_000.0;
/// The most VMs a simulated provider may have (each costs memory up
/// front).
pub const MAX_VMS: usize = 1_000_000;
/// The largest `count`.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

impl SimulateConfig {
    /// Every problem of these settings, as (field under `catcher`, message).
    pub(crate) fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(self.rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&self.rate)) {
            out.push((
                "rate",
                format!(
                    "{} events a second is out of range: give 0 (as fast as taken) or \
                     {MIN_RATE} to {MAX_RATE}",
                    self.rate
                ),
            ));
        }
        if !(1..=MAX_VMS).contains(&self.vms) {
            out.push(("vms", format!("{} is out of range 1..={MAX_VMS}", self.vms)));
        }
        if let Some(c) = self.count.filter(|c| *c > MAX_COUNT) {
            out.push((
                "count",
                format!("{c} is more than the most allowed ({MAX_COUNT})"),
            ));
        }
        if let Some(s) = &self.start {
            if time::parse_time(s).is_none() {
                out.push((
                    "start",
                    format!("{s:?} is not a UTC time like 2026-01-01T00:00:00Z (years 0 to 9999)"),
                ));
            }
        }
        out
    }

    /// The time between two events (`None` for rate 0: no pacing).
    fn period(&self) -> Option<Duration> {
        if self.rate == 0.0 {
            return None;
        }
        let secs = 1.0 / self.rate;
        let p = time::duration_from_secs("rate", &self.rate.to_string(), secs)
            .unwrap_or(Duration::from_secs_f64(1.0 / MIN_RATE));
        Some(p.max(Duration::from_nanos(1)))
    }
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            seed: 42,
            rate: 1.0,
            count: None,
            vms: 10,
            start: None,
        }
    }
}

/// 2026-01-01T00:00:00Z.
const DEFAULT_START_MS: i64 = 1_767_225_600_000;

/// SplitMix64: tiny, fast and good enough for a simulation.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`: the same seed, the same sequence.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift; the bias is negligible for small n.
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// `true` with a chance of `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A random (version 4 shaped) UUID.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Rhev,
    Openstack,
    Vmware,
}

impl Flavour {
    fn of(kind: &str) -> Option<Flavour> {
        match kind.to_ascii_uppercase().as_str() {
            "RHEVM" | "REDHAT" | "OVIRT" => Some(Flavour::Rhev),
            "OPENSTACK" => Some(Flavour::Openstack),
            "VC" | "VMWARE" => Some(Flavour::Vmware),
            _ => None,
        }
    }
}

/// Whether [`Simulator`] has an event model for this provider type.
pub fn supports(kind: &str) -> bool {
    Flavour::of(kind).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    Off,
    Starting,
    On,
    /// Powering off; `true` for a hard stop (RHEV `USER_STOP_VM`).
    Stopping(bool),
}

#[derive(Debug, Clone)]
struct SimHost {
    id: String,
    name: String,
}

#[derive(Debug, Clone)]
struct SimVm {
    id: String,
    name: String,
    host: usize,
    power: Power,
}

/// The deterministic event generator behind the `simulate` catcher.
#[derive(Debug, Clone)]
pub struct Simulator {
    rng: SplitMix64,
    flavour: Flavour,
    user: String,
    tenant: String,
    hosts: Vec<SimHost>,
    vms: Vec<SimVm>,
    clock_ms: i64,
    step_ms: i64,
    seq: u64,
    remaining: Option<u64>,
    /// The provider's templates (never in the event stream; clone
    /// sources).
    templates: Vec<SimVm>,
    /// Draws for templates and clones, apart from the stream's `rng`, so
    /// a seed's event stream is the same with or without them.
    clone_rng: SplitMix64,
    /// The snapshot name (or custom field) the event being made is about.
    label: String,
}

/// The templates every simulated provider has, by name.
pub const TEMPLATE_NAMES: [&str; 2] = ["rhel9-template", "cirros-template"];

const NAMES: [&str; 8] = ["web", "db", "app", "cache", "mq", "build", "api", "batch"];

impl Simulator {
    /// A generator for a provider type (`RHEVM`, `OPENSTACK`, `VC`; other
    /// types get RHEV's events: check [`supports`] first). Stops after
    /// `cfg.count` events if set.
    pub fn new(cfg: &SimulateConfig, provider_kind: &str) -> Simulator {
        let flavour = Flavour::of(provider_kind).unwrap_or(Flavour::Rhev);
        let mut rng = SplitMix64::new(cfg.seed);
        let nvms = cfg.vms.max(1);
        let nhosts = nvms.div_ceil(4);
        let hosts = (0..nhosts)
            .map(|i| {
                let (id, name) = match flavour {
                    Flavour::Rhev => (rng.uuid(), format!("rhvh-{:02}.example.com", i + 1)),
                    Flavour::Openstack => {
                        let n = format!("compute-{i}.localdomain");
                        (n.clone(), n)
                    }
                    Flavour::Vmware => (
                        format!("host-{}", 101 + i),
                        format!("esx-{:02}.example.com", i + 1),
                    ),
                };
                SimHost { id, name }
            })
            .collect::<Vec<_>>();
        let vms = (0..nvms)
            .map(|i| {
                let id = match flavour {
                    Flavour::Vmware => format!("vm-{}", 1001 + i),
                    _ => rng.uuid(),
                };
                let name = format!("{}-{:02}", NAMES[i % NAMES.len()], i / NAMES.len() + 1);
                let host = rng.below(nhosts as u64) as usize;
                let power = if rng.chance(50) {
                    Power::On
                } else {
                    Power::Off
                };
                SimVm {
                    id,
                    name,
                    host,
                    power,
                }
            })
            .collect();
        let step_ms = if cfg.rate > 0.0 && cfg.rate.is_finite() {
            ((1000.0 / cfg.rate).round() as i64).max(1)
        } else {
            1
        };
        let start = cfg
            .start
            .as_deref()
            .and_then(time::parse_time)
            .unwrap_or(DEFAULT_START_MS);
        let tenant = rng.uuid().replace('-', "");
        let mut clone_rng = SplitMix64::new(cfg.seed ^ 0x5EED_C10E_7E3A_11AB);
        let templates = TEMPLATE_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| SimVm {
                id: match flavour {
                    Flavour::Vmware => format!("vm-{}", 9001 + i),
                    _ => clone_rng.uuid(),
                },
                name: (*name).to_string(),
                host: 0,
                power: Power::Off,
            })
            .collect();
        Simulator {
            rng,
            flavour,
            user: match flavour {
                Flavour::Rhev => "admin@internal".into(),
                Flavour::Openstack => "admin".into(),
                Flavour::Vmware => "administrator@vsphere.local".into(),
            },
            tenant,
            hosts,
            vms,
            clock_ms: start,
            step_ms,
            seq: 0,
            remaining: cfg.count,
            templates,
            clone_rng,
            label: String::new(),
        }
    }

    /// A generator for this provider: its userid appears in the events.
    pub fn for_provider(cfg: &SimulateConfig, provider: &Provider) -> Simulator {
        let mut s = Simulator::new(cfg, &provider.kind);
        s.user = provider.userid.clone();
        s
    }

    fn start_at(&mut self, ms: i64) {
        self.clock_ms = ms;
    }

    fn step(&mut self) -> ProviderEvent {
        let i = self.rng.below(self.vms.len() as u64) as usize;
        let before = self.vms[i].power;
        let after = match before {
            Power::Off => Power::Starting,
            Power::Starting => Power::On,
            Power::On => Power::Stopping(self.flavour == Flavour::Rhev && self.rng.chance(40)),
            Power::Stopping(_) => Power::Off,
        };
        self.vms[i].power = after;
        let event_type = match (self.flavour, before, after) {
            (Flavour::Rhev, Power::Off, _) => "USER_STARTED_VM",
            (Flavour::Rhev, Power::Starting, _) => "USER_RUN_VM",
            (Flavour::Rhev, Power::On, Power::Stopping(true)) => "USER_STOP_VM",
            (Flavour::Rhev, Power::On, _) => "USER_INITIATED_SHUTDOWN_VM",
            (Flavour::Rhev, Power::Stopping(_), _) => "VM_DOWN",
            (Flavour::Openstack, Power::Off, _) => "compute.instance.power_on.start",
            (Flavour::Openstack, Power::Starting, _) => "compute.instance.power_on.end",
            (Flavour::Openstack, Power::On, _) => "compute.instance.power_off.start",
            (Flavour::Openstack, Power::Stopping(_), _) => "compute.instance.power_off.end",
            (Flavour::Vmware, Power::Off, _) => "VmStartingEvent",
            (Flavour::Vmware, Power::Starting, _) => "VmPoweredOnEvent",
            (Flavour::Vmware, Power::On, _) => "VmStoppingEvent",
            (Flavour::Vmware, Power::Stopping(_), _) => "VmPoweredOffEvent",
        };
        self.seq += 1;
        self.clock_ms += self.step_ms;
        let vm = self.vms[i].clone();
        let host = self.hosts[vm.host].clone();
        match self.flavour {
            Flavour::Rhev => self.rhev_event(event_type, &vm, &host),
            Flavour::Openstack => self.openstack_event(event_type, &vm, &host, after),
            Flavour::Vmware => self.vmware_event(event_type, &vm, &host),
        }
    }

    fn rhev_event(&mut self, event_type: &str, vm: &SimVm, host: &SimHost) -> ProviderEvent {
        let (code, description) = match event_type {
            "USER_STARTED_VM" => (
                153,
                format!(
                    "VM {} was started by {} (Host: {}).",
                    vm.name, self.user, host.name
                ),
            ),
            "USER_RUN_VM" => (32, format!("VM {} started on Host {}", vm.name, host.name)),
            "USER_ADD_VM" => (34, format!("VM {} was created by {}.", vm.name, self.user)),
            "USER_ADD_VM_FINISHED_SUCCESS" => {
                (53, format!("VM {} creation has been completed.", vm.name))
            }
            "USER_CREATE_SNAPSHOT" => (
                45,
                format!(
                    "Snapshot '{}' creation for VM '{}' was initiated by {}.",
                    self.label, vm.name, self.user
                ),
            ),
            "USER_CREATE_SNAPSHOT_FINISHED_SUCCESS" => (
                68,
                format!(
                    "Snapshot '{}' creation for VM '{}' has been completed.",
                    self.label, vm.name
                ),
            ),
            "USER_REMOVE_SNAPSHOT" => (
                342,
                format!(
                    "Snapshot '{}' deletion for VM '{}' was initiated by {}.",
                    self.label, vm.name, self.user
                ),
            ),
            "USER_REMOVE_SNAPSHOT_FINISHED_SUCCESS" => (
                356,
                format!(
                    "Snapshot '{}' deletion for VM '{}' has been completed.",
                    self.label, vm.name
                ),
            ),
            "USER_RESTORE_FROM_SNAPSHOT" => (
                99,
                format!(
                    "VM {} restored from Snapshot '{}' by {}.",
                    vm.name, self.label, self.user
                ),
            ),
            "USER_RESTORE_FROM_SNAPSHOT_FINISH_SUCCESS" => (
                100,
                format!(
                    "VM {} restoring from Snapshot '{}' has been completed.",
                    vm.name, self.label
                ),
            ),
            "USER_STOP_VM" => (
                33,
                format!(
                    "VM {} powered off by {} (Host: {}).",
                    vm.name, self.user, host.name
                ),
            ),
            "USER_INITIATED_SHUTDOWN_VM" => (
                73,
                format!(
                    "VM shutdown initiated by {} on VM {} (Host: {}).",
                    self.user, vm.name, host.name
                ),
            ),
            _ => (
                61,
                format!(
                    "VM {} is down. Exit message: User shut down from within the guest",
                    vm.name
                ),
            ),
        };
        let id = 10_000 + self.seq;
        let time = time::iso8601(self.clock_ms);
        let correlation = self.rng.uuid();
        ProviderEvent {
            event_type: event_type.to_string(),
            timestamp: time.clone(),
            chain_id: None,
            vm_ems_ref: Some(format!("/api/vms/{}", vm.id)),
            vm_name: Some(vm.name.clone()),
            host_ems_ref: Some(format!("/api/hosts/{}", host.id)),
            host_name: Some(host.name.clone()),
            full_data: json!({
                "id": id.to_string(),
                "href": format!("/ovirt-engine/api/events/{id}"),
                "code": code,
                "description": description,
                "severity": "normal",
                "time": time,
                "origin": "oVirt",
                "correlation_id": correlation,
                "user": {"name": self.user},
                "vm": {"id": vm.id, "name": vm.name, "href": format!("/ovirt-engine/api/vms/{}", vm.id)},
                "host": {"id": host.id, "name": host.name, "href": format!("/ovirt-engine/api/hosts/{}", host.id)},
            }),
        }
    }

    fn openstack_event(
        &mut self,
        event_type: &str,
        vm: &SimVm,
        host: &SimHost,
        after: Power,
    ) -> ProviderEvent {
        let (state, task) = match after {
            Power::Starting => ("stopped", "powering-on"),
            Power::On => ("active", ""),
            Power::Stopping(_) => ("active", "powering-off"),
            Power::Off => ("stopped", ""),
        };
        let message_id = self.rng.uuid();
        let request_id = format!("req-{}", self.rng.uuid());
        let note = json!({
            "event_type": event_type,
            "payload": {
                "instance_id": vm.id,
                "display_name": vm.name,
                "state": state,
                "state_description": task,
                "host": host.id,
                "node": host.name,
                "tenant_id": self.tenant,
                "user_id": self.user,
                "instance_type": "m1.small",
                "memory_mb": 2048,
                "vcpus": 1,
                "image_ref_url": "http://glance.localdomain:9292/images/cirros",
            },
            "publisher_id": format!("compute.{}", host.id),
            "timestamp": time::oslo_time(self.clock_ms),
            "message_id": message_id,
            "priority": "INFO",
            "_context_request_id": request_id,
            "_context_user_name": self.user,
        });
        super::oslo::from_notification(note).unwrap_or_else(|_| unreachable!("a valid note"))
    }

    fn vmware_event(&mut self, event_type: &str, vm: &SimVm, host: &SimHost) -> ProviderEvent {
        let key = 5_000 + self.seq;
        let time = time::iso8601(self.clock_ms);
        let verb = match event_type {
            "CreateSnapshot_Task" => "Task: Create virtual machine snapshot",
            "RemoveSnapshot_Task" => "Task: Remove snapshot",
            "RemoveAllSnapshots_Task" => "Task: Remove all snapshots",
            "RevertToSnapshot_Task" => "Task: Revert to snapshot",
            "CustomFieldValueChangedEvent" => "custom field changed",
            "VmStartingEvent" => "is starting",
            "VmPoweredOnEvent" => "is powered on",
            "VmStoppingEvent" => "is stopping",
            "VmBeingDeployedEvent" => "is being deployed from a template",
            "VmDeployedEvent" => "was deployed from a template",
            _ => "is powered off",
        };
        ProviderEvent {
            event_type: event_type.to_string(),
            timestamp: time.clone(),
            chain_id: Some(key.to_string()),
            vm_ems_ref: Some(vm.id.clone()),
            vm_name: Some(vm.name.clone()),
            host_ems_ref: Some(host.id.clone()),
            host_name: Some(host.name.clone()),
            full_data: json!({
                "eventType": event_type,
                "key": key,
                "chainId": key,
                "createdTime": time,
                "userName": self.user,
                "fullFormattedMessage": format!("{} on {} {}", vm.name, host.name, verb),
                "vm": {"name": vm.name, "vm": vm.id},
                "host": {"name": host.name, "host": host.id},
            }),
        }
    }

    /// Performs a provider operation (`method` of `automate_vmdb::operation`,
    /// `stop`, `start`, `migrate_via_ids`...) on the VM whose provider
    /// reference is `vm_ref`, as the provider would: the events it emits
    /// for it, in order (`stop` on RHEV: `USER_STOP_VM`, `VM_DOWN`), with
    /// the VM's simulated power state moved accordingly. `to_host` is the
    /// provider reference of a migration's destination. `Err` says why
    /// the provider refuses (an unknown VM, a VM already in that state, an
    /// operation it has no event for).
    pub fn perform(
        &mut self,
        method: &str,
        vm_ref: &str,
        to_host: Option<&str>,
    ) -> Result<Vec<ProviderEvent>, String> {
        self.perform_operation(method, vm_ref, to_host, &[])
            .map(|(events, _)| events)
    }

    /// Performs a provider operation as [`Simulator::perform`] does, with
    /// its arguments (`create_snapshot`'s name, description and memory
    /// flag; `remove_snapshot`'s and `revert_to_snapshot`'s snapshot id;
    /// `set_custom_field`'s key and value), and says what the provider's
    /// inventory holds afterwards (a new snapshot, a removed one, a custom
    /// field), which the catcher stores before sending the events.
    /// Snapshots: RHEV (`USER_CREATE_SNAPSHOT`,
    /// `USER_CREATE_SNAPSHOT_FINISHED_SUCCESS`, `USER_REMOVE_SNAPSHOT`...,
    /// `USER_RESTORE_FROM_SNAPSHOT`...), VMware (`CreateSnapshot_Task`,
    /// `RemoveSnapshot_Task`, `RemoveAllSnapshots_Task`,
    /// `RevertToSnapshot_Task`), OpenStack (`create_snapshot` only:
    /// `compute.instance.snapshot.start`/`.end`). Custom fields: VMware
    /// only (`CustomFieldValueChangedEvent`), as in ManageIQ.
    pub fn perform_operation(
        &mut self,
        method: &str,
        vm_ref: &str,
        to_host: Option<&str>,
        args: &[AttrValue],
    ) -> Result<(Vec<ProviderEvent>, Option<InventoryChange>), String> {
        use Flavour::{Openstack as O, Rhev as R, Vmware as V};
        let arg_text = |i: usize| {
            args.get(i)
                .filter(|v| !matches!(v, AttrValue::Nil))
                .map(AttrValue::to_text)
        };
        let arg_id = |i: usize| {
            args.get(i)
                .and_then(automate_vmdb::associations::as_id)
                .ok_or_else(|| format!("{method}: no snapshot id"))
        };
        let (types, change): (&[&str], InventoryChange) = match (method, self.flavour) {
            ("create_snapshot", f) => {
                let name = arg_text(0).ok_or("create_snapshot: no snapshot name")?;
                self.label = name.clone();
                let uid = match f {
                    V => format!("snapshot-{}", 2_000 + self.seq),
                    _ => self.rng.uuid(),
                };
                let change = InventoryChange::SnapshotCreated(NewSnapshot {
                    name,
                    description: arg_text(1),
                    uid,
                    memory: matches!(args.get(2), Some(AttrValue::Bool(true))),
                    create_time: time::iso8601(self.clock_ms + self.step_ms),
                    total_size: 1_073_741_824,
                });
                let types: &[&str] = match f {
                    R => &[
                        "USER_CREATE_SNAPSHOT",
                        "USER_CREATE_SNAPSHOT_FINISHED_SUCCESS",
                    ],
                    V => &["CreateSnapshot_Task"],
                    O => &[
                        "compute.instance.snapshot.start",
                        "compute.instance.snapshot.end",
                    ],
                };
                (types, change)
            }
            ("remove_snapshot", R) => (
                &[
                    "USER_REMOVE_SNAPSHOT",
                    "USER_REMOVE_SNAPSHOT_FINISHED_SUCCESS",
                ],
                InventoryChange::SnapshotRemoved(arg_id(0)?),
            ),
            ("remove_snapshot", V) => (
                &["RemoveSnapshot_Task"],
                InventoryChange::SnapshotRemoved(arg_id(0)?),
            ),
            ("remove_all_snapshots", R) => (
                &[
                    "USER_REMOVE_SNAPSHOT",
                    "USER_REMOVE_SNAPSHOT_FINISHED_SUCCESS",
                ],
                InventoryChange::AllSnapshotsRemoved,
            ),
            ("remove_all_snapshots", V) => (
                &["RemoveAllSnapshots_Task"],
                InventoryChange::AllSnapshotsRemoved,
            ),
            ("revert_to_snapshot", R) => (
                &[
                    "USER_RESTORE_FROM_SNAPSHOT",
                    "USER_RESTORE_FROM_SNAPSHOT_FINISH_SUCCESS",
                ],
                InventoryChange::SnapshotReverted(arg_id(0)?),
            ),
            ("revert_to_snapshot", V) => (
                &["RevertToSnapshot_Task"],
                InventoryChange::SnapshotReverted(arg_id(0)?),
            ),
            ("set_custom_field", V) => {
                let name = arg_text(0).ok_or("set_custom_field: no attribute name")?;
                self.label = name.clone();
                (
                    &["CustomFieldValueChangedEvent"],
                    InventoryChange::CustomField {
                        name,
                        value: args.get(1).cloned().unwrap_or(AttrValue::Nil),
                    },
                )
            }
            _ => {
                return self
                    .perform_power(method, vm_ref, to_host)
                    .map(|e| (e, None))
            }
        };
        if !matches!(method, "create_snapshot" | "set_custom_field") {
            self.label = match &change {
                InventoryChange::SnapshotRemoved(id) | InventoryChange::SnapshotReverted(id) => {
                    id.to_string()
                }
                _ => "all".to_string(),
            };
        }
        let Some(i) = self.vms.iter().position(|v| self.vm_ref_of(v) == vm_ref) else {
            return Err(format!("the provider has no VM [{vm_ref}]"));
        };
        let mut out = Vec::with_capacity(types.len());
        for t in types {
            self.seq += 1;
            self.clock_ms += self.step_ms;
            let vm = self.vms[i].clone();
            let host = self.hosts[vm.host].clone();
            out.push(match self.flavour {
                Flavour::Rhev => self.rhev_event(t, &vm, &host),
                Flavour::Openstack => self.openstack_event(t, &vm, &host, vm.power),
                Flavour::Vmware => self.vmware_event(t, &vm, &host),
            });
        }
        Ok((out, Some(change)))
    }

    /// The power, migration and removal operations ([`Simulator::perform`]).
    fn perform_power(
        &mut self,
        method: &str,
        vm_ref: &str,
        to_host: Option<&str>,
    ) -> Result<Vec<ProviderEvent>, String> {
        let Some(i) = self.vms.iter().position(|v| self.vm_ref_of(v) == vm_ref) else {
            return Err(format!("the provider has no VM [{vm_ref}]"));
        };
        let on = matches!(self.vms[i].power, Power::On | Power::Starting);
        let name = self.vms[i].name.clone();
        use Flavour::{Openstack as O, Rhev as R, Vmware as V};
        let (types, after): (&[&str], Option<Power>) = match (method, self.flavour) {
            ("start", _) if on => return Err(format!("VM [{name}] is already powered on")),
            ("stop" | "shutdown_guest" | "suspend" | "standby_guest", _) if !on => {
                return Err(format!("VM [{name}] is not powered on"))
            }
            ("reboot_guest" | "reset", _) if !on => {
                return Err(format!("VM [{name}] is not powered on"))
            }
            ("start", R) => (&["USER_STARTED_VM", "USER_RUN_VM"], Some(Power::On)),
            ("start", O) => (
                &[
                    "compute.instance.power_on.start",
                    "compute.instance.power_on.end",
                ],
                Some(Power::On),
            ),
            ("start", V) => (&["VmStartingEvent", "VmPoweredOnEvent"], Some(Power::On)),
            ("stop" | "retire_now", R) => (&["USER_STOP_VM", "VM_DOWN"], Some(Power::Off)),
            ("shutdown_guest", R) => (&["USER_INITIATED_SHUTDOWN_VM", "VM_DOWN"], Some(Power::Off)),
            ("stop" | "shutdown_guest" | "retire_now", O) => (
                &[
                    "compute.instance.power_off.start",
                    "compute.instance.power_off.end",
                ],
                Some(Power::Off),
            ),
            ("stop" | "retire_now", V) => {
                (&["VmStoppingEvent", "VmPoweredOffEvent"], Some(Power::Off))
            }
            ("shutdown_guest", V) => (
                &["VmGuestShutdownEvent", "VmPoweredOffEvent"],
                Some(Power::Off),
            ),
            ("suspend", R) => (&["USER_SUSPEND_VM", "USER_SUSPEND_VM_OK"], Some(Power::Off)),
            ("suspend", O) => (
                &[
                    "compute.instance.suspend.start",
                    "compute.instance.suspend.end",
                ],
                Some(Power::Off),
            ),
            ("suspend", V) => (&["VmSuspendingEvent", "VmSuspendedEvent"], Some(Power::Off)),
            ("standby_guest", V) => (
                &["VmGuestStandbyEvent", "VmSuspendedEvent"],
                Some(Power::Off),
            ),
            ("reboot_guest", R) => (&["USER_REBOOT_VM"], None),
            ("reboot_guest", O) => (
                &[
                    "compute.instance.reboot.start",
                    "compute.instance.reboot.end",
                ],
                None,
            ),
            ("reboot_guest", V) => (&["VmGuestRebootEvent"], None),
            ("reset", R) => (&["USER_RESET_VM"], None),
            ("reset", V) => (&["VmResettingEvent"], None),
            ("migrate_via_ids", R) => (&["VM_MIGRATION_START", "VM_MIGRATION_DONE"], None),
            ("migrate_via_ids", O) => (
                &[
                    "compute.instance.live_migration._prep.start",
                    "compute.instance.live_migration._post.end",
                ],
                None,
            ),
            ("migrate_via_ids", V) => (&["VmBeingHotMigratedEvent", "VmMigratedEvent"], None),
            ("vm_destroy", R) => (&["USER_REMOVE_VM_FINISHED"], None),
            ("vm_destroy", O) => (
                &[
                    "compute.instance.delete.start",
                    "compute.instance.delete.end",
                ],
                None,
            ),
            ("vm_destroy", V) => (&["VmRemovedEvent"], None),
            // Answered by the provider without an event.
            ("refresh_ems" | "scan", _) => (&[], None),
            (other, _) => {
                return Err(format!(
                    "the simulated {} provider cannot perform [{other}]",
                    self.flavour_name()
                ))
            }
        };
        if method == "migrate_via_ids" {
            let Some(to) = to_host else {
                return Err("migrate: no destination host".into());
            };
            let Some(h) = self.hosts.iter().position(|h| self.host_ref_of(h) == to) else {
                return Err(format!("the provider has no host [{to}]"));
            };
            self.vms[i].host = h;
        }
        let mut out = Vec::with_capacity(types.len());
        for t in types {
            self.seq += 1;
            self.clock_ms += self.step_ms;
            let vm = self.vms[i].clone();
            let host = self.hosts[vm.host].clone();
            let power = after.unwrap_or(vm.power);
            out.push(match self.flavour {
                Flavour::Rhev => self.rhev_event(t, &vm, &host),
                Flavour::Openstack => self.openstack_event(t, &vm, &host, power),
                Flavour::Vmware => self.vmware_event(t, &vm, &host),
            });
        }
        if let Some(p) = after {
            self.vms[i].power = p;
        }
        Ok(out)
    }

    /// Clones the template (or VM) whose provider reference is
    /// `source_ref` into a new VM named `name`, as the provider would
    /// (`clone_to_vm`): the new VM joins the simulated ones (powered off;
    /// on for OpenStack, whose instances start when built) and the
    /// provider's create events are answered, in order (RHEV `USER_ADD_VM`
    /// → `USER_ADD_VM_FINISHED_SUCCESS`, VMware `VmBeingDeployedEvent` →
    /// `VmDeployedEvent`, OpenStack `compute.instance.create.start` →
    /// `.end`), each naming the new VM. `Err` says why the provider
    /// refuses (an unknown source, no name, a name taken).
    pub fn clone_vm(&mut self, source_ref: &str, name: &str) -> Result<Vec<ProviderEvent>, String> {
        let name = name.trim();
        let known = self
            .templates
            .iter()
            .chain(self.vms.iter())
            .any(|v| self.vm_ref_of(v) == source_ref);
        if !known {
            return Err(format!("the provider has no template or VM [{source_ref}]"));
        }
        if name.is_empty() {
            return Err("clone_to_vm: the new VM has no name".into());
        }
        if self.vms.iter().any(|v| v.name.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "a VM named [{name}] exists already on the provider"
            ));
        }
        let id = match self.flavour {
            Flavour::Vmware => format!("vm-{}", 1001 + self.vms.len()),
            _ => self.clone_rng.uuid(),
        };
        let host = self.clone_rng.below(self.hosts.len() as u64) as usize;
        let (types, power): ([&str; 2], Power) = match self.flavour {
            Flavour::Rhev => (["USER_ADD_VM", "USER_ADD_VM_FINISHED_SUCCESS"], Power::Off),
            Flavour::Vmware => (["VmBeingDeployedEvent", "VmDeployedEvent"], Power::Off),
            Flavour::Openstack => (
                [
                    "compute.instance.create.start",
                    "compute.instance.create.end",
                ],
                Power::On,
            ),
        };
        let vm = SimVm {
            id,
            name: name.to_string(),
            host,
            power,
        };
        let mut out = Vec::with_capacity(2);
        for (i, t) in types.iter().enumerate() {
            self.seq += 1;
            self.clock_ms += self.step_ms;
            let h = self.hosts[host].clone();
            let during = if i == 0 { Power::Starting } else { power };
            out.push(match self.flavour {
                Flavour::Rhev => self.rhev_event(t, &vm, &h),
                Flavour::Openstack => self.openstack_event(t, &vm, &h, during),
                Flavour::Vmware => self.vmware_event(t, &vm, &h),
            });
        }
        self.vms.push(vm);
        Ok(out)
    }

    /// The simulated templates' provider references (`ems_ref`), in the
    /// order of [`TEMPLATE_NAMES`]: the sources `clone_to_vm` accepts
    /// besides the VMs.
    pub fn template_refs(&self) -> Vec<String> {
        self.templates.iter().map(|v| self.vm_ref_of(v)).collect()
    }

    /// Every simulated VM's provider reference (`vm_ems_ref`), in order.
    pub fn vm_refs(&self) -> Vec<String> {
        self.vms.iter().map(|v| self.vm_ref_of(v)).collect()
    }

    /// The provider reference the events give a VM (`vm_ems_ref`).
    fn vm_ref_of(&self, vm: &SimVm) -> String {
        match self.flavour {
            Flavour::Rhev => format!("/api/vms/{}", vm.id),
            _ => vm.id.clone(),
        }
    }

    /// The provider reference the events give a host (`host_ems_ref`).
    fn host_ref_of(&self, host: &SimHost) -> String {
        match self.flavour {
            Flavour::Rhev => format!("/api/hosts/{}", host.id),
            _ => host.id.clone(),
        }
    }

    fn flavour_name(&self) -> &'static str {
        match self.flavour {
            Flavour::Rhev => "RHEVM",
            Flavour::Openstack => "OPENSTACK",
            Flavour::Vmware => "VC",
        }
    }
}

impl Iterator for Simulator {
    type Item = ProviderEvent;

    fn next(&mut self) -> Option<ProviderEvent> {
        if let Some(r) = &mut self.remaining {
            if *r == 0 {
                return None;
            }
            *r -= 1;
        }
        Some(self.step())
    }
}

/// Which phase of the power cycle an event type is (for consistency
/// checks): `Some((powering_on, finished))`.
pub fn power_phase(event_type: &str) -> Option<(bool, bool)> {
    Some(match event_type {
        "USER_STARTED_VM" | "compute.instance.power_on.start" | "VmStartingEvent" => (true, false),
        "USER_RUN_VM" | "compute.instance.power_on.end" | "VmPoweredOnEvent" => (true, true),
        "USER_INITIATED_SHUTDOWN_VM"
        | "USER_STOP_VM"
        | "compute.instance.power_off.start"
        | "VmStoppingEvent" => (false, false),
        "VM_DOWN" | "compute.instance.power_off.end" | "VmPoweredOffEvent" => (false, true),
        _ => return None,
    })
}

/// A built `simulate` catcher.
#[derive(Clone)]
pub(crate) struct SimulateCatcher {
    cfg: SimulateConfig,
}

impl SimulateConfig {
    pub(crate) fn build(&self, ctx: &Ctx) -> Result<SimulateCatcher, CatcherError> {
        if !supports(&ctx.provider.kind) {
            return Err(ctx.config_error(format!(
                "the simulate catcher has no events for provider type {} (RHEVM, OPENSTACK, VC)",
                ctx.provider.kind
            )));
        }
        if let Some((field, message)) = self.check().into_iter().next() {
            return Err(ctx.config_error(format!("simulate {field}: {message}")));
        }
        Ok(SimulateCatcher { cfg: self.clone() })
    }
}

impl SimulateCatcher {
    pub(crate) async fn run(
        self,
        ctx: Ctx,
        shutdown: CancellationToken,
    ) -> Result<(), CatcherError> {
        let mut sim = Simulator::for_provider(&self.cfg, &ctx.provider);
        let mut marks = Checkpoints::new(&ctx);
        if self.cfg.start.is_none() {
            // Under a lease, every node's clock starts where the first
            // holder's did (stored beside the position), so the events a
            // node taking over makes again are the same, timestamps
            // included, and de-duplicated.
            let now = u64::try_from(time::now_ms()).unwrap_or(0);
            let start = marks.anchor(&ctx, "simulate-start", now).await;
            sim.start_at(i64::try_from(start).unwrap_or(i64::MAX));
        }
        // Pacing by deadline: event n is due at start + n/rate, so rates
        // above the timer's 1 ms resolution still average out; after a stall
        // (a full pipeline) of over a second the schedule restarts instead
        // of bursting to catch up.
        let period = self.cfg.period();
        let mut due = tokio::time::Instant::now();
        let mut n: u64 = 0;
        // Under a lease: the sequence is deterministic from the seed, so
        // the events before the stored position are made and dropped.
        let from = marks.from();
        for _ in 0..from {
            if sim.next().is_none() {
                break;
            }
        }
        let mut position = from;
        let durable = marks.durable();
        // Provider operations (`vm.stop()`...) are looked for every POLL
        // between the stream's events, and performed by the simulator.
        let mut polled = tokio::time::Instant::now();
        let result = loop {
            if ctx.ops.is_some() && polled.elapsed() >= operations::POLL {
                polled = tokio::time::Instant::now();
                let mut perform = |t: &operations::Taken| perform_with(&mut sim, t);
                if operations::serve_ready(&ctx, &shutdown, &mut perform)
                    .await
                    .is_none()
                {
                    break Ok(());
                }
            }
            let Some(ev) = sim.next() else {
                // The stream's count is reached: serve operations until
                // the pipeline has handled everything.
                let mut perform = |t: &operations::Taken| perform_with(&mut sim, t);
                operations::serve_until_settled(&ctx, &shutdown, &mut perform).await;
                break Ok(());
            };
            if let Some(period) = period {
                let now = tokio::time::Instant::now();
                if due > now {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = shutdown.cancelled() => break Ok(()),
                    }
                } else if now - due > Duration::from_secs(1) {
                    due = now;
                }
                due = due.checked_add(period).unwrap_or(now);
            }
            if shutdown.is_cancelled() {
                break Ok(());
            }
            let ack = match ctx.offer(ev, durable, &shutdown).await {
                Offer::Sent(ack) => ack,
                Offer::Skipped => None,
                Offer::Cancelled => break Ok(()),
                Offer::Closed => return Err(ctx.closed()),
            };
            position += 1;
            marks.advance(&ctx, position, ack).await;
            n += 1;
            if n % 256 == 0 {
                tokio::task::yield_now().await;
            }
        };
        marks.finish(&ctx).await;
        result
    }
}

/// Performs a taken provider operation on the simulator.
fn perform_with(sim: &mut Simulator, t: &operations::Taken) -> operations::Performed {
    let Some(vm_ref) = t.vm_ref.as_deref() else {
        return Err(format!(
            "{} [{}] has no provider reference (ems_ref)",
            t.op.class_name, t.op.instance_id
        ));
    };
    if t.op.method_name == automate_vmdb::request_task::CLONE_METHOD {
        let name = t.op.args.first().map(|v| v.to_text()).unwrap_or_default();
        return sim.clone_vm(vm_ref, &name).map(|events| (events, None));
    }
    sim.perform_operation(&t.op.method_name, vm_ref, t.host_ref.as_deref(), &t.op.args)
}

/// What [`floor`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloorStats {
    /// Lines parsed and acked (every line made, unless one failed to parse).
    pub events: u64,
    /// Threads the lines were shared out to.
    pub threads: usize,
    /// Wall-clock seconds from the start of the first thread to the end of
    /// the last.
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_s: f64,
    /// Distinct VMs the lookups found (a check that the work was done).
    pub vms: usize,
}

/// The physical floor of the event flow on this machine (`scripts/bench`):
/// the same simulated events as JSON lines (as a catcher receives them),
/// each only parsed, its provider and VM looked up in hash maps (created on
/// first sight) and acked (counted), on `threads` threads, each with its
/// own share and maps. No queue, no store, no Automate. The lines are made
/// before the clock starts.
pub fn floor(cfg: &SimulateConfig, provider: &Provider, threads: usize) -> FloorStats {
    use std::collections::HashMap;
    let threads = threads.max(1);
    let lines: Vec<String> = Simulator::new(cfg, &provider.kind)
        .filter_map(|e| serde_json::to_string(&e).ok())
        .collect();
    let chunk = lines.len().div_ceil(threads).max(1);
    let started = std::time::Instant::now();
    let per_thread: Vec<(u64, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut providers: HashMap<String, i64> = HashMap::new();
                    let mut vms: HashMap<(i64, String), i64> = HashMap::new();
                    let mut acked = 0u64;
                    for line in part {
                        let Ok(ev) = serde_json::from_str::<ProviderEvent>(line) else {
                            continue;
                        };
                        let next = providers.len() as i64 + 1;
                        let ems = *providers.entry(provider.name.clone()).or_insert(next);
                        if let Some(r) = ev.vm_ems_ref {
                            let next = vms.len() as i64 + 1;
                            vms.entry((ems, r)).or_insert(next);
                        }
                        acked += 1;
                    }
                    (acked, vms.len())
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let events: u64 = per_thread.iter().map(|p| p.0).sum();
    FloorStats {
        events,
        threads,
        seconds,
        events_per_s: events as f64 / seconds.max(1e-9),
        vms: per_thread.iter().map(|p| p.1).max().unwrap_or(0),
    }
}
