//! A cluster node's backend ([`ClusterNode`]): the connections to the
//! cluster's PostgreSQL and NATS (on a runtime of their own, so the
//! synchronous traits can wait on them from any thread) and what is built
//! on them — the object store ([`PgStore`]), the scheduled work
//! ([`PgSchedule`]), the leases ([`KvLeases`]), the event queue
//! ([`JetStreamQueue`]), the datastore sync — with a watch on their
//! health.
//!
//! * **At start** a service that cannot be reached is an error naming it
//!   and its URL (`cluster.postgres: cannot connect to PostgreSQL at
//!   postgres://automate@db/vmdb: ...`).
//! * **After start** a lost connection never ends the process: the watch
//!   ([`HEALTH_EVERY`]) marks the store's health `unavailable` (which
//!   `/api/health` answers with a 503 and the reason), the pipeline's
//!   workers stop claiming ([`GuardedQueue`]: no event is taken that
//!   could not be committed), and once both services answer again (the
//!   drivers reconnect by themselves, with backoff) the health is ok and
//!   the workers claim again.
//! * A **front door** (`automate api` in cluster mode) opens the same
//!   queue without taking any partition ([`NoClaims`]): it enqueues and
//!   lists or retries dead letters, never claims.

use super::datastore::DatastoreSync;
use anyhow::Context;
use automate_control::Reloader;
use automate_events::config::ClusterConfig;
use automate_events::dead_letters::StoredDeadLetters;
use automate_nats::lease::KvLeases;
use automate_nats::nodes::{Heartbeat, NatsCluster, Registry};
use automate_nats::queue::{JetStreamQueue, QueueOptions};
use automate_nats::{Nats, NatsConfig};
use automate_postgres::ping::PgPing;
use automate_postgres::schedule::PgSchedule;
use automate_postgres::store::PgStore;
use automate_postgres::{Pg, PgConfig, PgTimeouts};
use automate_vmdb::cluster::{ClusterView, NodeInfo, Probe};
use automate_vmdb::dead_letter::{DeadLetter, DeadLetters};
use automate_vmdb::event_queue::{CaughtEvent, Claim, EventQueue, Provider};
use automate_vmdb::health::StoreHealth;
use automate_vmdb::lease::{LeaseInfo, Leases};
use automate_vmdb::served::ServedStore;
use automate_vmdb::StoreError;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the watch asks PostgreSQL and NATS whether they answer.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// How long PostgreSQL may take to answer the watch's `SELECT 1`.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `automate run`: claims its share of the queue's partitions.
    Worker,
    /// `automate api`: enqueues and reads, claims nothing.
    FrontDoor,
}

/// `url` as it may be shown: no password, no token
/// ([`automate_vmdb::shown::redact_url`]).
pub fn shown_url(url: &str) -> String {
    automate_vmdb::shown::redact_url(url)
}

/// A cluster node's connections and backends; stops its watch, gives its
/// partitions up, stops the datastore sync and the drivers' runtime when
/// dropped.
pub struct ClusterNode {
    /// The node's name.
    pub node: String,
    /// The PostgreSQL pool.
    pub pg: Arc<Pg>,
    /// The NATS connection.
    pub nats: Arc<Nats>,
    /// The object store (its scheduled work is [`ClusterNode::schedule`]).
    pub store: Arc<PgStore>,
    /// The scheduled work (retries, request work).
    pub schedule: Arc<PgSchedule>,
    /// The leases (catchers, partitions), as the node sees them.
    pub leases: Arc<KvLeases>,
    /// The event queue.
    pub queue: Arc<JetStreamQueue>,
    /// The registry of live nodes (heartbeats).
    pub registry: Arc<Registry>,
    role: Role,
    sync: Option<DatastoreSync>,
    heartbeat: Option<Heartbeat>,
    watch: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node", &self.node)
            .field("pg", &self.pg)
            .field("nats", &self.nats)
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Connects to the cluster of `cluster` as `role` (errors name the
    /// service and its URL), builds the backends, and starts the health
    /// watch. Blocks: call it off the async threads (`spawn_blocking`).
    pub fn connect(cluster: &ClusterConfig, role: Role) -> anyhow::Result<ClusterNode> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("automate-cluster")
            .enable_all()
            .build()
            .context("starting the cluster drivers' runtime")?;
        let handle = runtime.handle().clone();
        let pg_config = PgConfig {
            url: cluster.postgres.clone(),
            schema: cluster.schema.clone(),
            region: cluster.region,
            timeouts: PgTimeouts {
                connect: Duration::from_secs(cluster.connect_timeout_s.max(1)),
                keepalive: Duration::from_secs(cluster.keepalive_s.max(1)),
                pool_wait: Duration::from_secs(cluster.pool_wait_s.max(1)),
                statement: Duration::from_secs(cluster.statement_timeout_s.max(1)),
                call: Duration::from_secs(cluster.call_timeout_s.max(1)),
            },
            ..PgConfig::new(cluster.postgres.clone())
        };
        let pg = Pg::connect(&pg_config, handle.clone()).with_context(|| {
            format!(
                "cluster.postgres: cannot connect to PostgreSQL at {} (schema {})",
                shown_url(&cluster.postgres),
                cluster.schema
            )
        })?;
        let nats_config = NatsConfig {
            url: cluster.nats.clone(),
            prefix: cluster.prefix.clone(),
            node: cluster.node.clone(),
        };
        let nats = Nats::connect(&nats_config, handle).with_context(|| {
            format!(
                "cluster.nats: cannot connect to NATS at {}",
                shown_url(&cluster.nats)
            )
        })?;
        let store = PgStore::open(pg.clone()).with_context(|| {
            format!(
                "cluster.postgres: opening the object store at {}",
                shown_url(&cluster.postgres)
            )
        })?;
        let schedule =
            Arc::new(PgSchedule::new(pg.clone(), cluster.node.clone()).with_relaxed_claims(true));
        store.set_schedule(schedule.clone());
        let ttl = Duration::from_secs(cluster.lease_ttl_s.max(1));
        let leases = KvLeases::open(nats.clone(), ttl).with_context(|| {
            format!(
                "cluster.nats: opening the leases at {}",
                shown_url(&cluster.nats)
            )
        })?;
        let queue_leases: Arc<dyn Leases> = match role {
            Role::Worker => leases.clone(),
            Role::FrontDoor => Arc::new(NoClaims(leases.clone())),
        };
        let queue = JetStreamQueue::open(
            nats.clone(),
            queue_leases,
            QueueOptions {
                partitions: cluster.partitions.max(1),
                ack_wait: Duration::from_secs(cluster.ack_wait_s.max(1)),
                max_deliver: cluster.max_deliver,
            },
        )
        .with_context(|| {
            format!(
                "cluster.nats: opening the event queue at {} (prefix {})",
                shown_url(&cluster.nats),
                cluster.prefix
            )
        })?;
        // From here on the queue may hold partition leases: a later failure
        // gives them up at once (else the other nodes wait out the TTL).
        let closing = CloseOnError(Some(queue.clone()));
        let registry = Registry::open(nats.clone(), ttl).with_context(|| {
            format!(
                "cluster.nats: opening the node registry at {}",
                shown_url(&cluster.nats)
            )
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let watch = {
            let (pg, nats, health, stop) = (pg.clone(), nats.clone(), store.health(), stop.clone());
            let shown = (shown_url(&cluster.postgres), shown_url(&cluster.nats));
            std::thread::Builder::new()
                .name("automate-cluster-health".into())
                .spawn(move || watch_health(&pg, &nats, &health, &stop, &shown))
                .context("starting the cluster's health watch")?
        };
        closing.disarm();
        tracing::info!(target: "evm", "MIQ(automate cluster) node [{}] connected: PostgreSQL {} (schema {}), NATS {} (prefix {}), {} partitions, holding {:?}", cluster.node, shown_url(&cluster.postgres), cluster.schema, shown_url(&cluster.nats), cluster.prefix, cluster.partitions, queue.held_partitions());
        Ok(ClusterNode {
            node: cluster.node.clone(),
            pg,
            nats,
            store,
            schedule,
            leases,
            queue,
            registry,
            role,
            sync: None,
            heartbeat: None,
            watch: Some((stop, watch)),
            runtime: Some(runtime),
        })
    }

    /// Keeps `root` equal to the domains PostgreSQL holds (the first
    /// reconciliation done before it returns), reloading with `reloader`.
    /// Blocks: call it off the async threads.
    pub fn sync_datastore(&mut self, root: &Path, reloader: Arc<Reloader>) -> anyhow::Result<()> {
        let handle = self.pg.handle().clone();
        let sync = super::datastore::start_reporting(
            self.pg.clone(),
            root,
            reloader,
            &self.node,
            handle,
            Some(self.store.health()),
        )
        .context("syncing the datastore with PostgreSQL")?;
        self.sync = Some(sync);
        Ok(())
    }

    /// Tells the cluster this node is live, serving its API at `url`:
    /// a heartbeat (with `probe`'s live figures and the leases it holds)
    /// every third of the lease TTL until the node is dropped, when it
    /// leaves the registry.
    /// A front door registers as `<node>-api`: it may run with the very
    /// config of an `automate run` node, whose entry it must not replace.
    pub fn start_heartbeat(&mut self, url: &str, probe: Option<Probe>) -> anyhow::Result<()> {
        let name = match self.role {
            Role::Worker => self.node.clone(),
            Role::FrontDoor => format!("{}-api", self.node),
        };
        let info = NodeInfo::this_process(name, url);
        let beat = self
            .registry
            .start_heartbeat(
                move || {
                    let mut i = info.clone();
                    if let Some(p) = &probe {
                        p(&mut i);
                    }
                    i
                },
                Some(self.leases.clone()),
            )
            .context("starting the node's heartbeat")?;
        self.heartbeat = Some(beat);
        Ok(())
    }

    /// The cluster as this node sees it (`GET /api/cluster`).
    pub fn view(&self) -> Arc<dyn ClusterView> {
        Arc::new(NatsCluster::new(self.registry.clone(), self.leases.clone()))
    }

    /// The store's health (PostgreSQL's and NATS's, as the watch sees them).
    pub fn health(&self) -> Arc<StoreHealth> {
        self.store.health()
    }

    /// The queue as the pipeline's workers claim from it: nothing while
    /// the store is unavailable.
    pub fn guarded_queue(&self) -> Arc<dyn EventQueue> {
        Arc::new(GuardedQueue {
            inner: self.queue.clone(),
            health: self.health(),
        })
    }

    /// The cluster's dead letters: the `DeadLetterEvent` rows the workers
    /// store in PostgreSQL (events whose handling failed
    /// `MAX_EVENT_ATTEMPTS` times), then the queue's dead-letter stream
    /// (events delivered `max_deliver` times without an ack). `providers`:
    /// the configured ones, a retried row's provider taken from them.
    pub fn dead_letters(&self, providers: Vec<Provider>) -> Arc<dyn DeadLetters> {
        let queue: Arc<dyn EventQueue> = self.queue.clone();
        Arc::new(ClusterDeadLetters {
            rows: StoredDeadLetters::new(self.store.clone(), providers).with_queue(queue),
            stream: StreamDeadLetters(self.queue.clone()),
        })
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.watch.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        // Out of the registry at once.
        if let Some(beat) = self.heartbeat.take() {
            beat.stop();
        }
        // Partitions and the node's lease given up now: the other nodes
        // take them over at their next renewal, not after the TTL.
        self.queue.close();
        self.sync.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Closes the queue (its partition leases given up) when dropped armed:
/// [`ClusterNode::connect`] failing after the queue was opened.
struct CloseOnError(Option<Arc<JetStreamQueue>>);

impl CloseOnError {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnError {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            tracing::info!(target: "evm", "MIQ(automate cluster) node start failed: its partitions given up");
            queue.close();
        }
    }
}

/// Asks PostgreSQL (`SELECT 1`, [`PgPing`]: a connection of its own) and NATS (the client's state) every
/// [`HEALTH_EVERY`] until `stop`, marking `health` unavailable (with
/// which service and why) or available.
fn watch_health(
    pg: &Arc<Pg>,
    nats: &Arc<Nats>,
    health: &StoreHealth,
    stop: &AtomicBool,
    (pg_url, nats_url): &(String, String),
) {
    // Its own connection, not the pool's: a busy node's workers may hold
    // every pooled one.
    let mut ping = PgPing::new(pg.clone(), PING_TIMEOUT);
    while !stop.load(Ordering::SeqCst) {
        let mut down = Vec::new();
        if let Err(e) = ping.ping() {
            down.push(format!("PostgreSQL at {pg_url} does not answer ({e})"));
        }
        if !nats.connected() {
            down.push(format!("NATS at {nats_url} is not connected"));
        }
        if down.is_empty() {
            health.available();
        } else {
            health.unavailable(format!(
                "{}: the workers claim nothing until it answers again (the drivers reconnect with backoff)",
                down.join("; ")
            ));
        }
        // Sleeps in steps, so a stop is quick.
        let mut slept = Duration::ZERO;
        while slept < HEALTH_EVERY && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            slept += Duration::from_millis(50);
        }
    }
}

/// The pipeline's view of the queue: claims nothing while the store is
/// unavailable (an event claimed then could not be committed, and each
/// delivery counts towards `max_deliver`); everything else as the queue.
#[derive(Debug)]
pub struct GuardedQueue {
    inner: Arc<JetStreamQueue>,
    health: Arc<StoreHealth>,
}

impl EventQueue for GuardedQueue {
    fn enqueue_owned(&self, events: Vec<CaughtEvent>) -> Result<Vec<u64>, StoreError> {
        self.inner.enqueue_owned(events)
    }

    fn enqueue_caught(&self, events: &[CaughtEvent]) -> Result<Vec<u64>, StoreError> {
        self.inner.enqueue_caught(events)
    }

    fn claim(&self, limit: usize) -> Result<Claim, StoreError> {
        if self.health.is_unavailable() {
            return Ok(Claim::default());
        }
        self.inner.claim(limit)
    }

    fn ack(&self, ids: &[u64]) -> Result<usize, StoreError> {
        self.inner.ack(ids)
    }

    fn acked(&self, n: usize) {
        self.inner.acked(n)
    }

    fn release(&self, ids: &[u64]) {
        self.inner.release(ids)
    }

    fn release_leases(&self) -> Result<usize, StoreError> {
        self.inner.release_leases()
    }

    fn depth(&self) -> u64 {
        self.inner.depth()
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }
}

/// Leases for a node that must claim no partition (a front door): it
/// never holds one; what it reads is the cluster's.
#[derive(Debug)]
pub struct NoClaims(pub Arc<KvLeases>);

impl Leases for NoClaims {
    fn node(&self) -> &str {
        self.0.node()
    }

    fn acquire(&self, _key: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn release(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn held(&self) -> Result<Vec<LeaseInfo>, StoreError> {
        self.0.held()
    }

    fn renew_every(&self) -> Duration {
        self.0.renew_every()
    }

    fn position(&self, provider: &str) -> Result<Option<u64>, StoreError> {
        self.0.position(provider)
    }

    fn set_position(&self, _provider: &str, _position: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Cluster mode's dead letters: the rows (ids `region * 10^12 + seq`), then
/// the stream (its sequences); a retry sends each id to the one that lists
/// it.
#[derive(Debug)]
pub struct ClusterDeadLetters {
    rows: StoredDeadLetters,
    stream: StreamDeadLetters,
}

impl DeadLetters for ClusterDeadLetters {
    fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = self.rows.list(limit)?;
        if out.len() < limit {
            out.extend(self.stream.list(limit - out.len())?);
        }
        Ok(out)
    }

    fn retry(&self, ids: &[u64]) -> Result<Vec<u64>, StoreError> {
        let rows: std::collections::HashSet<u64> =
            self.rows.list(usize::MAX)?.iter().map(|d| d.id).collect();
        let (of_rows, of_stream): (Vec<u64>, Vec<u64>) =
            ids.iter().partition(|id| rows.contains(id));
        let mut done = self.rows.retry(&of_rows)?;
        done.extend(self.stream.retry(&of_stream)?);
        Ok(done)
    }
}

/// The dead letters of cluster mode's queue: its dead-letter stream.
#[derive(Debug)]
pub struct StreamDeadLetters(pub Arc<JetStreamQueue>);

impl DeadLetters for StreamDeadLetters {
    fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .0
            .dead_letters(limit)?
            .into_iter()
            .map(|d| DeadLetter {
                id: d.id,
                provider: d.provider,
                event: d.event,
                error: d.reason,
                attempts: u32::try_from(d.deliveries).unwrap_or(0),
                dead_lettered_on: d.dead_on,
            })
            .collect())
    }

    fn retry(&self, ids: &[u64]) -> Result<Vec<u64>, StoreError> {
        // The stream says how many it retried, not which: the ids listed
        // now are the ones it can.
        let listed: std::collections::HashSet<u64> = self
            .0
            .dead_letters(usize::MAX)?
            .iter()
            .map(|d| d.id)
            .collect();
        let ids: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| listed.contains(id))
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        self.0.retry_dead_letters(&ids)?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_have_no_password() {
        assert_eq!(
            shown_url("postgres://automate:secret@db:5432/vmdb"),
            "postgres://***@db:5432/vmdb"
        );
        assert_eq!(shown_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            shown_url("host=db user=automate password=secret dbname=vmdb"),
            "host=db user=automate password=*** dbname=vmdb"
        );
    }
}
