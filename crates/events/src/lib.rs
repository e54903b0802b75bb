//! The event front end: what a provider's event bus delivers, how the
//! handler persists it and hands it to Automate, with ManageIQ's evm.log
//! lines (`Caught event`, `Processing EMS event`, `Delivering ... to
//! Automate`, `...Complete`).
//!
//! [`handler`] is the synchronous core: persist one provider event as an
//! `EmsEvent` (de-duplicated, VMs and hosts created on first sight) and
//! deliver `/System/Process/Event?...` to the engine. [`scenario`] holds the
//! seed's event scenario that `automate demo` plays.

#![deny(missing_docs)]

pub mod catchers;
pub mod config;
pub mod handler;
pub mod pipeline;
pub mod queue;
pub mod scenario;
pub mod stream;

pub use handler::{EvmLog, HandleOutcome, Handler, HandlerError};

use serde::{Deserialize, Serialize};

/// A provider (ManageIQ's ExtManagementSystem) as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    /// `providers[].name`: unique (compared ignoring case); the
    /// `ExtManagementSystem` the handler finds or creates by it, and the
    /// `provider` an `http` catcher's post names.
    pub name: String,
    /// `RHEVM`, `OPENSTACK`, `VC`, ...: the event `source`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `providers[].hostname`: the `EMS [<hostname>]` of the catcher's log
    /// lines and the `ExtManagementSystem`'s `hostname`.
    pub hostname: String,
    /// `providers[].userid`: the `as [<userid>]` of the catcher's log lines.
    pub userid: String,
}

impl Provider {
    /// The catcher's log prefix: `MIQ(EventCatcherRedhat)`.
    pub fn catcher_name(&self) -> String {
        let kind = match self.kind.to_ascii_uppercase().as_str() {
            "RHEVM" => "Redhat".to_string(),
            "OPENSTACK" => "Openstack".to_string(),
            "VC" | "VMWARE" => "Vmware".to_string(),
            "AMAZON" => "Amazon".to_string(),
            "AZURE" => "Azure".to_string(),
            other => {
                let mut c = other.chars();
                match c.next() {
                    Some(f) => {
                        f.to_uppercase().collect::<String>() + c.as_str().to_lowercase().as_str()
                    }
                    None => String::new(),
                }
            }
        };
        format!("EventCatcher{kind}")
    }

    /// `MIQ(EventCatcher<Type>) EMS [<hostname>] as [<userid>] Caught event [<type>]`.
    pub fn caught_line(&self, event_type: &str) -> String {
        format!(
            "MIQ({}) EMS [{}] as [{}] Caught event [{}]",
            self.catcher_name(),
            self.hostname,
            self.userid,
            event_type
        )
    }
}

/// One event as a catcher parsed it from the provider's bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderEvent {
    /// The provider-native name: `USER_RUN_VM`, `compute.instance.power_off.end`.
    pub event_type: String,
    /// When the provider says it happened (ISO 8601).
    pub timestamp: String,
    /// Ties the events of one provider operation together (ManageIQ's
    /// `chain_id`); part of the de-duplication key, empty when absent.
    #[serde(default)]
    pub chain_id: Option<String>,
    /// The provider's reference of the VM the event is about.
    #[serde(default)]
    pub vm_ems_ref: Option<String>,
    /// The VM's name, given to the `VmOrTemplate` created on first sight
    /// (its `vm_ems_ref` when absent).
    #[serde(default)]
    pub vm_name: Option<String>,
    /// The provider's reference of the host the event is about.
    #[serde(default)]
    pub host_ems_ref: Option<String>,
    /// The host's name, given to the `Host` created on first sight (its
    /// `host_ems_ref` when absent).
    #[serde(default)]
    pub host_name: Option<String>,
    /// The whole payload as received.
    #[serde(default)]
    pub full_data: serde_json::Value,
}
