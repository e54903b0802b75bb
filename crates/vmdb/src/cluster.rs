//! What `automate cluster status` and `GET /api/cluster` show: the live
//! nodes (each one's API url, pid, host, version, start, last heartbeat,
//! workers, events handled, the queue depth it saw, the partitions and
//! catcher leases it holds), the leases by key, and the event queue's depth
//! and lag. [`ClusterView`] is the backend-neutral question; the embedded
//! mode answers with [`EmbeddedCluster`] (one node named after the host,
//! mode `embedded`), cluster mode with `automate_nats::nodes::NatsCluster`
//! (the node registry in a NATS KV bucket, the leases, JetStream's stream
//! and consumer info).

use crate::lease::LeaseInfo;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One node as it last told the cluster (its heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name (unique in the cluster).
    pub node: String,
    /// Its REST API (`http://10.0.0.5:3000`), empty when it serves none.
    #[serde(default)]
    pub url: String,
    /// Its process id.
    #[serde(default)]
    pub pid: u32,
    /// The host it runs on.
    #[serde(default)]
    pub host: String,
    /// The `automate` version it runs.
    #[serde(default)]
    pub version: String,
    /// When it started (ISO 8601 UTC).
    #[serde(default)]
    pub started_on: String,
    /// Its last heartbeat (ISO 8601 UTC).
    #[serde(default)]
    pub last_seen: String,
    /// Its worker threads.
    #[serde(default)]
    pub workers: u64,
    /// Events its workers handled since it started.
    #[serde(default)]
    pub handled: u64,
    /// The event queue's depth as it last saw it.
    #[serde(default)]
    pub queue_depth: u64,
    /// The queue partitions it holds.
    #[serde(default)]
    pub partitions: Vec<u32>,
    /// The catcher leases it holds (`catcher.<provider>`).
    #[serde(default)]
    pub catchers: Vec<String>,
}

/// One partition of the event queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// Its number.
    pub partition: u32,
    /// Events waiting in it (not yet acked).
    pub pending: u64,
}

/// The event queue as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Events queued and not yet acked.
    pub depth: u64,
    /// Seconds since the oldest event still queued was queued (the lag),
    /// when the backend knows it and the queue is not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_s: Option<f64>,
    /// Per partition (cluster mode), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionStatus>,
    /// Events in the dead-letter stream (cluster mode), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<u64>,
}

/// The whole cluster as one node sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// `embedded` (one process, redb) or `cluster` (PostgreSQL and NATS).
    pub mode: String,
    /// The node that answered.
    pub node: String,
    /// The live nodes, by name.
    pub nodes: Vec<NodeInfo>,
    /// The leases held now, by key.
    pub leases: Vec<LeaseInfo>,
    /// The event queue.
    pub queue: QueueStatus,
}

/// The question `GET /api/cluster` asks.
pub trait ClusterView: Send + Sync + std::fmt::Debug {
    /// The cluster as this node sees it now.
    fn status(&self) -> Result<ClusterStatus, StoreError>;
}

/// What a running process fills in of its own [`NodeInfo`] (its workers,
/// events handled, queue depth): given by the composition root, which knows
/// the pipeline.
pub type Probe = Arc<dyn Fn(&mut NodeInfo) + Send + Sync>;

/// The embedded mode's view: one node (this process), no leases.
#[derive(Clone)]
pub struct EmbeddedCluster {
    info: NodeInfo,
    probe: Option<Probe>,
}

impl std::fmt::Debug for EmbeddedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCluster")
            .field("node", &self.info.node)
            .finish_non_exhaustive()
    }
}

impl EmbeddedCluster {
    /// This process as the only node: named after the host, started now,
    /// serving its API at `url` (empty when unknown).
    pub fn new(url: impl Into<String>) -> EmbeddedCluster {
        EmbeddedCluster {
            info: NodeInfo::this_process(local_host_name(), url),
            probe: None,
        }
    }

    /// Fills the live figures (workers, handled, queue depth) with `probe`
    /// at each [`ClusterView::status`].
    pub fn with_probe(mut self, probe: Probe) -> EmbeddedCluster {
        self.probe = Some(probe);
        self
    }
}

impl ClusterView for EmbeddedCluster {
    fn status(&self) -> Result<ClusterStatus, StoreError> {
        let mut info = self.info.clone();
        info.last_seen = automate_core::time::iso8601(automate_core::time::now_ms());
        if let Some(p) = &self.probe {
            p(&mut info);
        }
        Ok(ClusterStatus {
            mode: "embedded".into(),
            node: info.node.clone(),
            queue: QueueStatus {
                depth: info.queue_depth,
                ..QueueStatus::default()
            },
            nodes: vec![info],
            leases: Vec::new(),
        })
    }
}

impl NodeInfo {
    /// This process as `node`: its pid, host, version, started now.
    pub fn this_process(node: impl Into<String>, url: impl Into<String>) -> NodeInfo {
        let now = automate_core::time::iso8601(automate_core::time::now_ms());
        NodeInfo {
            node: node.into(),
            url: url.into(),
            pid: std::process::id(),
            host: local_host_name(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_on: now.clone(),
            last_seen: now,
            ..NodeInfo::default()
        }
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, `$HOSTNAME`, or
/// `localhost`).
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_view_is_one_node_with_its_probed_figures() {
        let view = EmbeddedCluster::new("http://127.0.0.1:3000").with_probe(Arc::new(|n| {
            n.workers = 4;
            n.handled = 17;
            n.queue_depth = 3;
        }));
        let s = view.status().unwrap();
        assert_eq!(s.mode, "embedded");
        assert_eq!(s.nodes.len(), 1);
        let n = &s.nodes[0];
        assert_eq!(n.node, local_host_name());
        assert_eq!(s.node, n.node);
        assert_eq!((n.workers, n.handled, n.queue_depth), (4, 17, 3));
        assert_eq!(n.pid, std::process::id());
        assert_eq!(s.queue.depth, 3);
        assert!(s.leases.is_empty());
        let back: ClusterStatus =
            serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
