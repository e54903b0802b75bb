//! Who runs what in a cluster: a lease per key, held by one node at a time
//! for a time to live and renewed by its holder (`catcher.<provider>`: the
//! one catcher of a provider in the whole cluster; `partition.<n>`: the one
//! node handling a partition of the event queue, so one VM's events are
//! handled in order). Cluster mode keeps them in a NATS KV bucket
//! (`automate_nats::lease`); the embedded mode's [`SoleNode`] always holds
//! every lease, since it is the only process.
//!
//! The contract: a holder renews every [`Leases::renew_every`] (well under
//! the TTL) and stops the work a lease guards as soon as a renewal fails
//! or answers `false`, before the TTL ends; so two holders of one key
//! overlap by at most one renew interval, and what they both did is
//! absorbed by de-duplication (the event's `Nats-Msg-Id`, its `dedup_key`).
//! The same store keeps a catcher's position in its provider's bus
//! ([`Leases::position`]), so a node that takes a catcher over resumes
//! where the last holder left off.

use crate::StoreError;
use std::time::Duration;

/// One lease as held now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseInfo {
    /// Its key (`catcher.vc1`, `partition.3`).
    pub key: String,
    /// The node holding it.
    pub node: String,
}

/// The leases of a cluster (and the catchers' positions), as one node sees
/// them.
pub trait Leases: Send + Sync + std::fmt::Debug {
    /// This node's name.
    fn node(&self) -> &str;

    /// Takes `key` for this node when no node holds it (or its holder's
    /// lease ran out), or renews it when this node holds it: whether this
    /// node holds it now. `Err` when the lease store cannot be reached
    /// (the caller must then act as if it had lost the lease).
    fn acquire(&self, key: &str) -> Result<bool, StoreError>;

    /// Gives `key` up if this node holds it (at a clean stop, so another
    /// node takes over at once rather than after the TTL).
    fn release(&self, key: &str) -> Result<(), StoreError>;

    /// Every lease held now, by key.
    fn held(&self) -> Result<Vec<LeaseInfo>, StoreError>;

    /// How often a holder renews: well under the time to live.
    fn renew_every(&self) -> Duration;

    /// How long a lease lives after its last renewal (a holder stops the
    /// work it guards once its last renewal is older than `ttl() -
    /// renew_every()`). Three renewal intervals unless said otherwise.
    fn ttl(&self) -> Duration {
        self.renew_every() * 3
    }

    /// The stored position of the catcher `provider` in its bus (a line
    /// number of a jsonl file, a simulated sequence), if any.
    fn position(&self, provider: &str) -> Result<Option<u64>, StoreError>;

    /// Stores the position of the catcher `provider` (everything before it
    /// is queued).
    fn set_position(&self, provider: &str, position: u64) -> Result<(), StoreError>;
}

/// The embedded mode's leases: the one process holds every lease; no
/// position is stored (a catcher starts where its configuration says, and
/// de-duplication absorbs what it reads twice).
#[derive(Debug, Clone)]
pub struct SoleNode {
    node: String,
}

impl SoleNode {
    /// The leases of the process named `node`.
    pub fn new(node: impl Into<String>) -> SoleNode {
        SoleNode { node: node.into() }
    }
}

impl Leases for SoleNode {
    fn node(&self) -> &str {
        &self.node
    }

    fn acquire(&self, _key: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    fn release(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn held(&self) -> Result<Vec<LeaseInfo>, StoreError> {
        Ok(Vec::new())
    }

    fn renew_every(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn position(&self, _provider: &str) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    fn set_position(&self, _provider: &str, _position: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sole_node_holds_everything_and_stores_no_position() {
        let l = SoleNode::new("local");
        assert_eq!(l.node(), "local");
        assert!(l.acquire("catcher.vc1").unwrap());
        assert!(l.acquire("catcher.vc1").unwrap());
        l.set_position("vc1", 10).unwrap();
        assert_eq!(l.position("vc1").unwrap(), None);
        assert!(l.held().unwrap().is_empty());
    }
}
