//! The registry of a cluster's live nodes: [`Registry`], a NATS KV bucket
//! `<prefix>-nodes` whose `max_age` is the registry's time to live. Each
//! node writes its [`NodeInfo`] (its API url, pid, host, version, start,
//! workers, events handled, the queue depth it saw, the partitions and
//! catcher leases it holds) under its name every [`Registry::beat_every`]
//! (a third of the TTL, [`Heartbeat`]); a node that stops (or loses NATS)
//! disappears from [`Registry::list`] once its last heartbeat is older than
//! the TTL (the server removes it), and one that stops cleanly removes
//! itself at once ([`Registry::leave`]).
//!
//! [`NatsCluster`] is cluster mode's
//! [`ClusterView`](automate_vmdb::cluster::ClusterView) (`GET
//! /api/cluster`, `automate cluster status`): the nodes from the registry,
//! the leases from [`Leases::held`], and the event queue's depth and lag
//! from JetStream's stream info (the work-queue stream `<PREFIX>_EVENTS`
//! holds exactly the events not yet acked, so its message count is the
//! depth, the age of its first message the lag, and its subjects
//! `<prefix>.events.<partition>.…` the depth of each partition), with the
//! dead-letter stream's `<PREFIX>_DEAD` count.

use crate::lease::{bucket, decode_key, encode_key};
use crate::{Nats, NatsError};
use async_nats::jetstream::kv::{self, Operation, Store};
use automate_vmdb::cluster::{ClusterStatus, ClusterView, NodeInfo, PartitionStatus, QueueStatus};
use automate_vmdb::lease::Leases;
use automate_vmdb::StoreError;
use futures_util::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The live nodes of a cluster in the KV bucket `<prefix>-nodes`.
pub struct Registry {
    nats: Arc<Nats>,
    store: Store,
    ttl: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("node", &self.nats.node())
            .field("bucket", &self.store.name)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The registry of `nats`'s cluster, where a node is live for `ttl`
    /// after its last heartbeat: creates (or binds to) the bucket.
    pub fn open(nats: Arc<Nats>, ttl: Duration) -> Result<Arc<Registry>, NatsError> {
        let js = nats.jetstream().clone();
        let name = format!("{}-nodes", nats.prefix());
        let store = nats.block(async move {
            bucket(
                &js,
                kv::Config {
                    bucket: name,
                    description: "automate: the live nodes (heartbeats)".into(),
                    history: 1,
                    max_age: ttl,
                    ..Default::default()
                },
            )
            .await
        })??;
        Ok(Arc::new(Registry { nats, store, ttl }))
    }

    /// How long a node stays listed after its last heartbeat.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often a node should send its heartbeat: a third of the TTL.
    pub fn beat_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    /// The connection it works through.
    pub fn nats(&self) -> &Arc<Nats> {
        &self.nats
    }

    /// Writes `info` (its `last_seen` set to now) under its node's name.
    pub fn heartbeat(&self, info: &NodeInfo) -> Result<(), NatsError> {
        let mut info = info.clone();
        info.last_seen = automate_core::time::iso8601(automate_core::time::now_ms());
        let body = serde_json::to_vec(&info)
            .map_err(|e| NatsError::js("encoding the node's heartbeat", e))?;
        let store = self.store.clone();
        let key = encode_key(&info.node);
        self.nats.block(async move {
            store
                .put(key.as_str(), body.into())
                .await
                .map_err(|e| NatsError::js(format!("writing the heartbeat of {key}"), e))
        })??;
        Ok(())
    }

    /// Removes `node` from the registry at once (its clean stop).
    pub fn leave(&self, node: &str) -> Result<(), NatsError> {
        let store = self.store.clone();
        let key = encode_key(node);
        self.nats.block(async move {
            store
                .delete(key.as_str())
                .await
                .map_err(|e| NatsError::js(format!("removing the node {key}"), e))
        })??;
        Ok(())
    }

    /// The live nodes, by name.
    pub fn list(&self) -> Result<Vec<NodeInfo>, NatsError> {
        let store = self.store.clone();
        let mut nodes = self.nats.block(async move {
            let keys: Vec<String> = store
                .keys()
                .await
                .map_err(|e| NatsError::js("listing the nodes", e))?
                .try_collect()
                .await
                .map_err(|e| NatsError::js("listing the nodes", e))?;
            let mut nodes = Vec::with_capacity(keys.len());
            for key in keys {
                let entry = store
                    .entry(key.as_str())
                    .await
                    .map_err(|e| NatsError::js(format!("reading the node {key}"), e))?;
                // Gone since it was listed (expired, left): skipped.
                let Some(e) = entry.filter(|e| e.operation == Operation::Put) else {
                    continue;
                };
                match serde_json::from_slice::<NodeInfo>(&e.value) {
                    Ok(info) => nodes.push(info),
                    Err(err) => tracing::warn!(
                        target: "evm",
                        "MIQ(Registry.list) node [{}]: unreadable heartbeat skipped: {err}",
                        decode_key(&key)
                    ),
                }
            }
            Ok::<_, NatsError>(nodes)
        })??;
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    /// Sends this node's heartbeat now and then every
    /// [`Registry::beat_every`] on a thread of its own, with the info
    /// `info` makes each time (its live figures), completed with the
    /// partitions and catcher leases this node holds in `leases`. The
    /// node leaves the registry when the [`Heartbeat`] is stopped (or
    /// dropped).
    pub fn start_heartbeat(
        self: &Arc<Self>,
        info: impl Fn() -> NodeInfo + Send + 'static,
        leases: Option<Arc<dyn Leases>>,
    ) -> std::io::Result<Heartbeat> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let registry = self.clone();
        let every = self.beat_every();
        let thread = std::thread::Builder::new()
            .name("automate-heartbeat".into())
            .spawn(move || {
                let mut failing = false;
                let node = loop {
                    let mut i = info();
                    if let Some(l) = &leases {
                        held_by(&mut i, &**l);
                    }
                    let node = &i.node;
                    match registry.heartbeat(&i) {
                        Ok(()) if failing => {
                            failing = false;
                            tracing::info!(target: "evm", "MIQ(Registry.heartbeat) node [{node}]: heartbeats written again");
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(target: "evm", "MIQ(Registry.heartbeat) node [{node}]: {e}");
                        }
                        Err(_) => {}
                    }
                    match rx.recv_timeout(every) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => break i.node,
                    }
                };
                if let Err(e) = registry.leave(&node) {
                    tracing::warn!(target: "evm", "MIQ(Registry.leave) node [{node}]: {e} (it disappears after the TTL)");
                }
            })?;
        Ok(Heartbeat {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

/// Fills `info`'s partitions and catcher leases from what `leases` says
/// its node holds (left as they are when the leases cannot be read).
pub fn held_by(info: &mut NodeInfo, leases: &dyn Leases) {
    let Ok(held) = leases.held() else { return };
    info.partitions.clear();
    info.catchers.clear();
    for l in held.into_iter().filter(|l| l.node == info.node) {
        if let Some(p) = l.key.strip_prefix("partition.") {
            if let Ok(p) = p.parse() {
                info.partitions.push(p);
            }
        } else if l.key.starts_with("catcher.") {
            info.catchers.push(l.key);
        }
    }
    info.partitions.sort_unstable();
}

/// A running heartbeat ([`Registry::start_heartbeat`]): stopping it
/// removes the node from the registry.
#[derive(Debug)]
pub struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Stops the heartbeats and removes the node from the registry.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Cluster mode's answer to `GET /api/cluster`.
#[derive(Debug, Clone)]
pub struct NatsCluster {
    registry: Arc<Registry>,
    leases: Arc<dyn Leases>,
}

impl NatsCluster {
    /// The cluster of `registry`'s NATS, with its `leases`.
    pub fn new(registry: Arc<Registry>, leases: Arc<dyn Leases>) -> NatsCluster {
        NatsCluster { registry, leases }
    }

    /// The event queue's depth, lag and partitions, and the dead-letter
    /// count, from the streams' info (zero when a stream does not exist
    /// yet).
    pub fn queue(&self) -> Result<QueueStatus, NatsError> {
        let nats = self.registry.nats.clone();
        let js = nats.jetstream().clone();
        let prefix = nats.prefix().to_string();
        let upper = prefix.to_ascii_uppercase();
        nats.block(async move {
            let mut status = QueueStatus::default();
            let events = format!("{upper}_EVENTS");
            if let Ok(mut stream) = js.get_stream(events.as_str()).await {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| NatsError::js(format!("reading the stream {events}"), e))?;
                status.depth = info.state.messages;
                if info.state.messages > 0 {
                    let first_ms =
                        (info.state.first_timestamp.unix_timestamp_nanos() / 1_000_000) as i64;
                    let age_ms = automate_core::time::now_ms()
                        .saturating_sub(first_ms)
                        .max(0);
                    status.lag_s = Some(age_ms as f64 / 1000.0);
                    let filter = format!("{prefix}.events.>");
                    let mut subjects =
                        stream
                            .info_with_subjects(filter.as_str())
                            .await
                            .map_err(|e| {
                                NatsError::js(format!("reading the subjects of {events}"), e)
                            })?;
                    let mut by: std::collections::BTreeMap<u32, u64> = Default::default();
                    while let Some((subject, count)) = subjects.try_next().await.map_err(|e| {
                        NatsError::js(format!("reading the subjects of {events}"), e)
                    })? {
                        if let Some(p) = partition_of(&prefix, &subject) {
                            *by.entry(p).or_default() += count as u64;
                        }
                    }
                    status.partitions = by
                        .into_iter()
                        .map(|(partition, pending)| PartitionStatus { partition, pending })
                        .collect();
                }
            }
            let dead = format!("{upper}_DEAD");
            if let Ok(mut stream) = js.get_stream(dead.as_str()).await {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| NatsError::js(format!("reading the stream {dead}"), e))?;
                status.dead_letters = Some(info.state.messages);
            }
            Ok::<_, NatsError>(status)
        })?
    }
}

/// The partition of a subject `<prefix>.events.<partition>.…`.
fn partition_of(prefix: &str, subject: &str) -> Option<u32> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".events.")?;
    rest.split('.').next()?.parse().ok()
}

impl ClusterView for NatsCluster {
    fn status(&self) -> Result<ClusterStatus, StoreError> {
        Ok(ClusterStatus {
            mode: "cluster".into(),
            node: self.registry.nats.node().to_string(),
            nodes: self.registry.list()?,
            leases: self.leases.held()?,
            queue: self.queue()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::KvLeases;
    use crate::testing::TestNats;
    use std::time::Instant;

    #[test]
    fn a_node_that_stops_heartbeating_disappears_after_the_ttl() {
        let Some(t) = TestNats::new("registry") else {
            return;
        };
        let ttl = Duration::from_secs(2);
        let r1 = Registry::open(t.nats(), ttl).expect("registry");
        let r2 = Registry::open(t.node("node2"), ttl).expect("registry");
        let leases: Arc<dyn Leases> = KvLeases::open(t.nats(), Duration::from_secs(30)).unwrap();
        assert!(leases.acquire("catcher.vc1").unwrap());
        assert!(leases.acquire("partition.2").unwrap());
        let beat1 = r1
            .start_heartbeat(
                || {
                    let mut n = NodeInfo::this_process("node1", "http://127.0.0.1:3001");
                    n.workers = 4;
                    n.handled = 12;
                    n
                },
                Some(leases.clone()),
            )
            .unwrap();
        // node2 beats once, by hand, and then never again.
        r2.heartbeat(&NodeInfo::this_process("node2", "http://127.0.0.1:3002"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listed = loop {
            let l = r1.list().unwrap();
            if l.len() == 2 || Instant::now() > deadline {
                break l;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let names: Vec<&str> = listed.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["node1", "node2"]);
        let n1 = &listed[0];
        assert_eq!(n1.url, "http://127.0.0.1:3001");
        assert_eq!((n1.workers, n1.handled), (4, 12));
        assert_eq!(n1.pid, std::process::id());
        assert_eq!(n1.catchers, ["catcher.vc1"]);
        assert_eq!(n1.partitions, [2]);

        // node2's entry runs out (the server's expiry runs on its own
        // timer: waited for, up to 5 TTLs); node1 keeps beating.
        let stopped = Instant::now();
        let after = loop {
            let l = r2.list().unwrap();
            if l.len() == 1 || stopped.elapsed() > ttl * 5 {
                break l;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let names: Vec<&str> = after.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["node1"], "node2 expired, node1 is still beating");

        // The cluster's view: the live node, the leases, an empty queue.
        let view = NatsCluster::new(r1.clone(), leases.clone());
        let s = view.status().unwrap();
        assert_eq!(s.mode, "cluster");
        assert_eq!(s.node, "node1");
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.leases.len(), 2);
        assert_eq!(s.queue.depth, 0);

        // A clean stop leaves at once.
        beat1.stop();
        assert!(r1.list().unwrap().is_empty());
    }

    #[test]
    fn the_cluster_view_reads_the_queue_from_jetstream() {
        use crate::queue::{JetStreamQueue, QueueOptions};
        use automate_vmdb::event_queue::{EventQueue, Provider, ProviderEvent};
        let Some(t) = TestNats::new("registry_queue") else {
            return;
        };
        let leases: Arc<dyn Leases> = KvLeases::open(t.nats(), Duration::from_secs(30)).unwrap();
        let q = JetStreamQueue::open(
            t.nats(),
            leases.clone(),
            QueueOptions {
                partitions: 4,
                ack_wait: Duration::from_secs(30),
                max_deliver: 5,
            },
        )
        .unwrap();
        let p = Arc::new(Provider {
            name: "vc1".into(),
            kind: "VC".into(),
            hostname: "vc.example.com".into(),
            userid: "admin".into(),
        });
        let events = (0..12)
            .map(|i| {
                let e = ProviderEvent {
                    event_type: "VmPoweredOnEvent".into(),
                    timestamp: format!("2026-12-06T10:00:00.{i:06}Z"),
                    chain_id: Some(i.to_string()),
                    vm_ems_ref: Some(format!("vm-{}", i % 5)),
                    vm_name: None,
                    host_ems_ref: None,
                    host_name: None,
                    full_data: serde_json::json!({"n": i}),
                };
                (p.clone(), e, 1_000)
            })
            .collect();
        q.enqueue_owned(events).unwrap();
        let registry = Registry::open(t.nats(), Duration::from_secs(10)).unwrap();
        let view = NatsCluster::new(registry, leases);
        let s = view.status().unwrap().queue;
        assert_eq!(s.depth, 12);
        assert!(s.lag_s.is_some_and(|l| l >= 0.0), "{s:?}");
        assert_eq!(
            s.partitions.iter().map(|p| p.pending).sum::<u64>(),
            12,
            "{s:?}"
        );
        assert!(s.partitions.iter().all(|p| p.partition < 4), "{s:?}");
        assert_eq!(s.dead_letters, Some(0));
        // Claimed and acked: gone from the queue.
        let mut ids = Vec::new();
        for _ in 0..200 {
            ids.extend(q.claim(12).unwrap().events.into_iter().map(|c| c.id));
            if ids.len() >= 12 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(q.ack(&ids).unwrap(), 12);
        let s = view.status().unwrap().queue;
        assert_eq!((s.depth, s.lag_s), (0, None), "{s:?}");
        assert!(s.partitions.is_empty());
    }

    #[test]
    fn partitions_are_read_from_subjects() {
        assert_eq!(
            partition_of("automate", "automate.events.3.vc1.vm-1"),
            Some(3)
        );
        assert_eq!(partition_of("automate", "automate.events.x"), None);
        assert_eq!(partition_of("automate", "other.events.3"), None);
    }
}
