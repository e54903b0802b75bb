//! The event queue of cluster mode on NATS JetStream: [`JetStreamQueue`],
//! an [`EventQueue`] (the contract is in [`automate_vmdb::event_queue`]).
//!
//! * **Streams.** `<PREFIX>_EVENTS` (work-queue retention, file storage, a
//!   two-minute duplicate window) holds the queued events on the subjects
//!   `<prefix>.events.<partition>`; an acked message is gone. `<PREFIX>_DEAD`
//!   (limits retention) holds the dead letters on `<prefix>.dead`.
//! * **Enqueue.** Each event is the JSON of `{provider, event, caught_us}`
//!   published to the partition `fnv1a(provider name, VM ems_ref (else host
//!   ems_ref, else event type)) % partitions`, so one VM's events share a
//!   subject and come out in order; its `Nats-Msg-Id` is the event's
//!   de-duplication key (provider | type | timestamp | chain | VM), so a
//!   catcher that reads its bus again after a restart queues nothing
//!   twice. A batch is published at once and every `PubAck` awaited after:
//!   `Ok` means every event is stored; an error fails the call (the caller
//!   retries; what did get stored is absorbed by the Msg-Id). An event's
//!   id is its stream sequence.
//! * **Partitions.** One durable pull consumer per partition
//!   (`<prefix>_p<n>`, explicit ack, `ack_wait`). A node claims only from
//!   the partitions whose lease `partition.<n>` it holds
//!   ([`Leases`]): at most `ceil(partitions / live nodes)` of them, a live
//!   node being one whose lease `node.<name>` is held (each node renews
//!   its own). A background thread renews them every
//!   [`Leases::renew_every`], takes free partitions up to its share, and
//!   gives up those above its share once the events it claimed from them
//!   are acked or given back (or `ack_wait` after it began draining them,
//!   when the server has delivered what is still in flight again anyway);
//!   a partition whose renewal fails is marked free at once, and one whose
//!   last renewal is older than the TTL less one renewal interval (a
//!   renewal stuck or late; each lease call gives up after 5 s) is not
//!   claimed from until renewed: a node stops before its lease can have
//!   run out. A dead node's partitions are free once its leases run out
//!   (the TTL), and taken by the others at their next renewal. At a clean
//!   stop ([`JetStreamQueue::close`]) everything in flight is given back
//!   (a nak without delay) before the leases. The queue refuses to open
//!   with fewer partitions than the stream has consumers for.
//! * **Claim** fetches (no wait) from the held partitions at once, oldest
//!   first (by stream sequence); `attempts` is the delivery count. A
//!   message whose sequence is still in flight on this node (its handling
//!   outlasted `ack_wait` and the server delivered it again) is skipped:
//!   one entry per sequence, the first delivery's ack settles it. A
//!   message delivered more than `max_deliver` times, or that cannot be
//!   decoded, is moved to the DEAD stream (with headers saying why, when
//!   and after how many deliveries) and acked, instead of handed out.
//! * **Ack** (after the PostgreSQL commit) is a double ack (the server
//!   confirms it), all at once; **release** is a nak with a delay (1 s
//!   after the first delivery, doubling with each, at most `ack_wait`:
//!   see [`release_delay`]; `max_deliver` counts deliveries, so the
//!   defaults ride out a PostgreSQL outage of about 30 s);
//!   `release_leases` has nothing to do (JetStream delivers a dead
//!   process's messages again after `ack_wait`).
//! * **Depth** is the stream's message count (claimed and unacked ones
//!   included), cached and refreshed in the background at most every
//!   200 ms: the hot path never waits for a round trip.

use crate::{Nats, NatsError};
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::stream::{self, Stream};
use async_nats::jetstream::AckKind;
use async_nats::HeaderMap;
use automate_vmdb::event_queue::{
    CaughtEvent, Claim, ClaimedEvent, EventQueue, Provider, ProviderEvent,
};
use automate_vmdb::lease::Leases;
use automate_vmdb::StoreError;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a claim's fetch may wait for the server (it asks for what is
/// there now: the dispatcher polls).
const FETCH_EXPIRES: Duration = Duration::from_millis(50);

/// How old the cached depth may be before it is refreshed (in the
/// background).
const DEPTH_REFRESH: Duration = Duration::from_millis(200);

/// The duplicate window of the events stream: a message with a `Nats-Msg-Id`
/// seen within it is not stored again.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long a closing node waits for its naks to reach the server.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// Messages a partition's consumer may have delivered and not yet acked.
const MAX_ACK_PENDING: i64 = 20_000;

/// The delay of a released event's next delivery after its first one
/// (doubled after each further delivery, up to `ack_wait`).
const RELEASE_DELAY: Duration = Duration::from_secs(1);

/// When an event released after its `delivered`-th delivery is delivered
/// again: [`RELEASE_DELAY`] doubled `delivered - 1` times, at most
/// `ack_wait`. `max_deliver` counts deliveries, so the default (5, with an
/// `ack_wait` of 30 s) gives up on an event whose commit keeps failing
/// after 1 + 2 + 4 + 8 + 16 = 31 s of waits (plus the handling of its five
/// attempts): a PostgreSQL outage shorter than that sends nothing to the
/// dead letters.
pub fn release_delay(delivered: i64, ack_wait: Duration) -> Duration {
    let doublings = u32::try_from(delivered.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    RELEASE_DELAY
        .saturating_mul(1u32 << doublings)
        .min(ack_wait)
}

/// Headers of a dead letter.
const H_REASON: &str = "Automate-Dead-Reason";
const H_DEAD_ON: &str = "Automate-Dead-On";
const H_DELIVERIES: &str = "Automate-Deliveries";
const H_KEY: &str = "Automate-Key";
const H_SUBJECT: &str = "Automate-Subject";
const H_ORIGINAL: &str = "Automate-Original-Seq";
const MSG_ID: &str = "Nats-Msg-Id";

/// How the queue is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// How many partitions (subjects, consumers, partition leases).
    pub partitions: u32,
    /// How long a claimed event may stay unacked before it is delivered
    /// again.
    pub ack_wait: Duration,
    /// How many times an event is handed out before its next delivery
    /// moves it to the dead letters (0 or less: no limit).
    pub max_deliver: i64,
}

/// An event in the dead-letter stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream
    /// ([`JetStreamQueue::retry_dead_letters`] takes it).
    pub id: u64,
    /// The provider that sent it (`?` when the message was unreadable).
    pub provider: Provider,
    /// The event (an unreadable message's text is the `full_data` of an
    /// event of type `(unreadable)`).
    pub event: ProviderEvent,
    /// How many times it was delivered.
    pub deliveries: i64,
    /// Why it is here.
    pub reason: String,
    /// When it was moved here (ISO 8601, UTC).
    pub dead_on: String,
}

/// A queued event's payload as written.
#[derive(serde::Serialize)]
struct QueuedOut<'a> {
    provider: &'a Provider,
    event: &'a ProviderEvent,
    caught_us: u64,
}

/// A queued event's payload as read.
#[derive(serde::Deserialize)]
struct QueuedIn {
    provider: Provider,
    event: ProviderEvent,
    #[serde(default)]
    caught_us: u64,
}

/// What this node does with a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Not held.
    Free,
    /// Held and claimed from.
    Held,
    /// Held, not claimed from any more: released once nothing claimed
    /// from it is in flight (it is above this node's share).
    Draining,
}

/// A partition as this node sees it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    part: Part,
    /// When this node last took or renewed its lease: it is not claimed
    /// from once that is older than [`Shared::fresh`] (a renewal stuck or
    /// late), before the lease's TTL ends.
    renewed_at: Option<Instant>,
    /// When it began draining: given up anyway `ack_wait` after (what was
    /// claimed from it and is still in flight is delivered again by then).
    draining_since: Option<Instant>,
}

impl Slot {
    const FREE: Slot = Slot {
        part: Part::Free,
        renewed_at: None,
        draining_since: None,
    };
}

/// A claimed message, until acked or given back.
struct InFlight {
    acker: Acker,
    partition: u32,
    /// Its delivery count (1 the first time).
    delivered: i64,
}

/// The names of a cluster's streams, subjects and consumers.
#[derive(Debug, Clone)]
struct Names {
    events: String,
    dead: String,
    prefix: String,
}

impl Names {
    fn of(prefix: &str) -> Names {
        Names {
            events: format!("{}_EVENTS", prefix.to_ascii_uppercase()),
            dead: format!("{}_DEAD", prefix.to_ascii_uppercase()),
            prefix: prefix.to_string(),
        }
    }

    fn subject(&self, partition: u32) -> String {
        format!("{}.events.{partition}", self.prefix)
    }

    fn dead_subject(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    fn consumer(&self, partition: u32) -> String {
        format!("{}_p{partition}", self.prefix)
    }
}

/// The cached depth, refreshed in the background.
struct Depth {
    value: AtomicU64,
    at: Mutex<Option<Instant>>,
    refreshing: AtomicBool,
}

/// What the queue and its renewing thread share.
struct Shared {
    nats: Arc<Nats>,
    leases: Arc<dyn Leases>,
    opts: QueueOptions,
    names: Names,
    events: Stream,
    dead: Stream,
    consumers: Vec<PullConsumer>,
    parts: Mutex<Vec<Slot>>,
    /// How long after its last renewal a partition is still claimed from:
    /// the lease's TTL less one renewal interval (the [`Leases`] contract:
    /// stop before the TTL ends).
    fresh: Duration,
    /// One rebalance at a time (the thread's, or one asked for).
    rebalancing: Mutex<()>,
    /// Where the next claim starts among the held partitions.
    cursor: std::sync::atomic::AtomicUsize,
    inflight: Mutex<HashMap<u64, InFlight>>,
    depth: Arc<Depth>,
    /// Set (under its mutex) to stop the renewing thread; its condvar wakes
    /// it.
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The event queue on JetStream: see the module docs. Shared as
/// `Arc<JetStreamQueue>` (or `Arc<dyn EventQueue>`).
pub struct JetStreamQueue {
    shared: Arc<Shared>,
    renewer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("stream", &self.shared.names.events)
            .field("node", &self.shared.nats.node())
            .field("partitions", &self.shared.opts.partitions)
            .field("held", &self.held_partitions())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing a panicking holder leaves half-done matters more than
    // carrying on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// FNV-1a (64 bits) of `parts`, each followed by a 0xff byte (which UTF-8
/// never holds): stable across processes and builds, unlike std's
/// `RandomState`.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The partition of an event: by provider and VM (else host, else event
/// type), so one VM's events keep their order.
pub fn partition_of(provider: &Provider, event: &ProviderEvent, partitions: u32) -> u32 {
    let what = event
        .vm_ems_ref
        .as_deref()
        .or(event.host_ems_ref.as_deref())
        .unwrap_or(event.event_type.as_str());
    (fnv1a(&[provider.name.as_str(), what]) % u64::from(partitions.max(1))) as u32
}

/// The event's de-duplication key: provider | type | timestamp | chain |
/// VM.
pub fn dedup_key(provider: &Provider, event: &ProviderEvent) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        provider.name,
        event.event_type,
        event.timestamp,
        event.chain_id.as_deref().unwrap_or(""),
        event.vm_ems_ref.as_deref().unwrap_or("")
    )
}

/// `key` as a header value: itself when it is printable ASCII of a sane
/// length, else a 128-bit digest of it (two FNV-1a hashes).
fn msg_id(key: &str) -> String {
    let plain = key.len() <= 256 && key.bytes().all(|b| (0x20..0x7f).contains(&b));
    if plain {
        key.to_string()
    } else {
        format!("fnv:{:016x}{:016x}", fnv1a(&[key]), fnv1a(&[key, "2"]))
    }
}

/// The header `name` of `headers` (a name parsed, so that the standard
/// `Nats-…` headers of received messages are found).
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let name: async_nats::header::HeaderName = name.parse().ok()?;
    headers.get(name).map(|v| v.as_str().to_string())
}

/// Inserts the header `name` (parsed, like [`header`] reads it).
fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    match name.parse::<async_nats::header::HeaderName>() {
        Ok(n) => headers.insert(n, value),
        Err(_) => headers.insert(name, value),
    }
}

fn now_iso() -> String {
    automate_core::time::iso8601(automate_core::time::now_ms())
}

impl JetStreamQueue {
    /// The queue of `nats`'s cluster: creates (or binds to) the streams
    /// `<PREFIX>_EVENTS` and `<PREFIX>_DEAD` and one consumer per
    /// partition, takes this node's share of the partitions (through
    /// `leases`), and starts the thread that renews them. Refused
    /// ([`NatsError::TooFewPartitions`]) with fewer partitions than the
    /// stream has consumers for (the events queued for the others would
    /// never be claimed).
    pub fn open(
        nats: Arc<Nats>,
        leases: Arc<dyn Leases>,
        opts: QueueOptions,
    ) -> Result<Arc<JetStreamQueue>, NatsError> {
        let opts = QueueOptions {
            partitions: opts.partitions.max(1),
            ..opts
        };
        let names = Names::of(nats.prefix());
        let js = nats.jetstream().clone();
        let n = names.clone();
        let (events, dead, consumers) = nats.block(async move {
            let events = stream_of(
                &js,
                stream::Config {
                    name: n.events.clone(),
                    description: Some("automate: the queued provider events".into()),
                    subjects: vec![format!("{}.events.>", n.prefix)],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::File,
                    duplicate_window: DUPLICATE_WINDOW,
                    num_replicas: 1,
                    ..Default::default()
                },
            )
            .await?;
            let dead = stream_of(
                &js,
                stream::Config {
                    name: n.dead.clone(),
                    description: Some("automate: the dead-lettered provider events".into()),
                    subjects: vec![n.dead_subject()],
                    retention: stream::RetentionPolicy::Limits,
                    storage: stream::StorageType::File,
                    allow_direct: true,
                    num_replicas: 1,
                    ..Default::default()
                },
            )
            .await?;
            // Fewer partitions than before would strand the events queued
            // on the subjects of the others: refused.
            let found = partitions_found(&events, &n).await?;
            if found > opts.partitions {
                return Err(NatsError::TooFewPartitions {
                    configured: opts.partitions,
                    found,
                    stream: n.events.clone(),
                });
            }
            let mut consumers = Vec::with_capacity(opts.partitions as usize);
            for p in 0..opts.partitions {
                let name = n.consumer(p);
                let config = PullConfig {
                    durable_name: Some(name.clone()),
                    filter_subject: n.subject(p),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: opts.ack_wait,
                    // The limit is kept here (see `claim`): a message the
                    // server stops delivering would stay in the work queue
                    // for ever.
                    max_deliver: -1,
                    max_ack_pending: MAX_ACK_PENDING,
                    deliver_policy: DeliverPolicy::All,
                    ..Default::default()
                };
                let consumer = match events.create_consumer(config.clone()).await {
                    Ok(c) => c,
                    Err(created) => match events.get_consumer::<PullConfig>(&name).await {
                        Ok(c) => {
                            tracing::warn!(target: "evm", "MIQ(JetStreamQueue.open) consumer [{name}] exists with another configuration ({created}): used as it is");
                            c
                        }
                        Err(e) => {
                            return Err(NatsError::js(
                                format!("creating the consumer {name}"),
                                format!("{created}; then reading it: {e}"),
                            ))
                        }
                    },
                };
                consumers.push(consumer);
            }
            Ok::<_, NatsError>((events, dead, consumers))
        })??;
        let fresh = leases.ttl().saturating_sub(leases.renew_every());
        let shared = Arc::new(Shared {
            nats,
            leases,
            opts,
            names,
            events,
            dead,
            consumers,
            parts: Mutex::new(vec![Slot::FREE; opts.partitions as usize]),
            fresh,
            rebalancing: Mutex::new(()),
            cursor: std::sync::atomic::AtomicUsize::new(0),
            inflight: Mutex::new(HashMap::new()),
            depth: Arc::new(Depth {
                value: AtomicU64::new(0),
                at: Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        // The first share is taken now, so the node claims at once.
        shared.rebalance();
        shared.refresh_depth_now();
        tracing::info!(target: "evm", "MIQ(JetStreamQueue.open) node [{}]: stream [{}], {} partitions, holding {:?}", shared.nats.node(), shared.names.events, opts.partitions, shared.held_partitions());
        let s = shared.clone();
        let renewer = std::thread::Builder::new()
            .name("automate-partitions".into())
            .spawn(move || s.renew_loop())
            .map_err(|e| NatsError::js("starting the partitions' renewing thread", e))?;
        Ok(Arc::new(JetStreamQueue {
            shared,
            renewer: Mutex::new(Some(renewer)),
        }))
    }

    /// The partitions this node claims from now.
    pub fn held_partitions(&self) -> Vec<u32> {
        self.shared.held_partitions()
    }

    /// Renews and rebalances now (the background thread does it every
    /// [`Leases::renew_every`]).
    pub fn rebalance(&self) {
        self.shared.rebalance();
    }

    /// Stops renewing, gives every event in flight back (a nak without
    /// delay, oldest first, so the next holder of its partition gets them
    /// at once and in order), then gives every partition lease (and the
    /// node's own) up, so the other nodes take them over at once: at a
    /// clean stop, once the pipeline has stopped (an event a worker still
    /// handled would be handled again by the next holder).
    pub fn close(&self) {
        self.stop_renewing();
        let shared = &self.shared;
        let _one = lock(&shared.rebalancing);
        shared.give_back_everything();
        let mut parts = lock(&shared.parts);
        for (p, slot) in parts.iter_mut().enumerate() {
            if slot.part != Part::Free {
                *slot = Slot::FREE;
                if let Err(e) = shared.leases.release(&format!("partition.{p}")) {
                    tracing::warn!(target: "evm", "MIQ(JetStreamQueue.close) partition {p}: {e}");
                }
            }
        }
        drop(parts);
        let _ = shared
            .leases
            .release(&format!("node.{}", shared.leases.node()));
    }

    fn stop_renewing(&self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(t) = lock(&self.renewer).take() {
            let _ = t.join();
        }
    }

    /// Up to `limit` dead letters, oldest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, NatsError> {
        self.dead_box().list(limit)
    }

    /// Puts the dead letters `ids` back in the queue (under a new
    /// `Nats-Msg-Id`, so the old one's de-duplication does not drop them)
    /// and deletes them from the dead letters; how many there were.
    pub fn retry_dead_letters(&self, ids: &[u64]) -> Result<usize, NatsError> {
        let n = self.dead_box().retry(ids)?;
        self.shared
            .depth
            .value
            .fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn dead_box(&self) -> DeadLetters {
        DeadLetters {
            nats: self.shared.nats.clone(),
            dead: self.shared.dead.clone(),
            names: self.shared.names.clone(),
            partitions: self.shared.opts.partitions,
        }
    }

    fn publish(&self, events: &[CaughtEvent]) -> Result<Vec<u64>, NatsError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let partitions = self.shared.opts.partitions;
        let mut msgs = Vec::with_capacity(events.len());
        for (provider, event, caught_us) in events {
            let payload = serde_json::to_vec(&QueuedOut {
                provider,
                event,
                caught_us: *caught_us,
            })
            .map_err(|e| NatsError::js("encoding an event", e))?;
            let mut headers = HeaderMap::new();
            set_header(&mut headers, MSG_ID, &msg_id(&dedup_key(provider, event)));
            let subject = self
                .shared
                .names
                .subject(partition_of(provider, event, partitions));
            msgs.push((subject, headers, bytes::Bytes::from(payload)));
        }
        let js = self.shared.nats.jetstream().clone();
        let n = msgs.len();
        let acks = self.shared.nats.block(async move {
            let mut pending = Vec::with_capacity(msgs.len());
            for (subject, headers, payload) in msgs {
                let f = js
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|e| NatsError::js("queueing an event", e))?;
                pending.push(f.into_future());
            }
            let acks = futures_util::future::join_all(pending).await;
            let mut seqs = Vec::with_capacity(acks.len());
            let mut duplicates = 0usize;
            for a in acks {
                let a = a.map_err(|e| NatsError::js("queueing an event", e))?;
                duplicates += usize::from(a.duplicate);
                seqs.push(a.sequence);
            }
            Ok::<_, NatsError>((seqs, duplicates))
        })??;
        let (seqs, duplicates) = acks;
        self.shared
            .depth
            .value
            .fetch_add((n - duplicates) as u64, Ordering::SeqCst);
        if duplicates > 0 {
            tracing::debug!(target: "evm", "MIQ(JetStreamQueue.enqueue) {duplicates} of {n} events were queued already");
        }
        Ok(seqs)
    }
}

/// The dead-letter stream alone, for `automate events dead-letter
/// list|retry`: it takes no partition and starts no thread (a command
/// that opened a [`JetStreamQueue`] would count as a live node).
pub struct DeadLetters {
    nats: Arc<Nats>,
    dead: Stream,
    names: Names,
    partitions: u32,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("stream", &self.names.dead)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// The dead letters of `nats`'s cluster, whose queue has `partitions`
    /// partitions (where a retried letter goes when it does not say).
    pub fn open(nats: Arc<Nats>, partitions: u32) -> Result<DeadLetters, NatsError> {
        let names = Names::of(nats.prefix());
        let js = nats.jetstream().clone();
        let name = names.dead.clone();
        let dead = nats.block(async move {
            js.get_stream(&name)
                .await
                .map_err(|e| NatsError::js(format!("reading the stream {name}"), e))
        })??;
        Ok(DeadLetters {
            nats,
            dead,
            names,
            partitions: partitions.max(1),
        })
    }

    /// Up to `limit` dead letters, oldest first.
    pub fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, NatsError> {
        let dead = self.dead.clone();
        let subject = self.names.dead_subject();
        self.nats.block(async move {
            let mut out = Vec::new();
            let mut next = 1u64;
            while out.len() < limit {
                let msg = match dead.direct_get_next_for_subject(&subject, Some(next)).await {
                    Ok(m) => m,
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                    {
                        break
                    }
                    Err(e) => return Err(NatsError::js("reading the dead letters", e)),
                };
                let headers = msg.message.headers.clone().unwrap_or_default();
                let Some(seq) =
                    header(&headers, "Nats-Sequence").and_then(|s| s.parse::<u64>().ok())
                else {
                    return Err(NatsError::js(
                        "reading the dead letters",
                        "a message without its Nats-Sequence",
                    ));
                };
                next = seq + 1;
                out.push(dead_letter(seq, &headers, &msg.message.payload));
            }
            Ok(out)
        })?
    }

    /// Puts the dead letters `ids` back in the queue (under a new
    /// `Nats-Msg-Id`, so the old one's de-duplication does not drop them)
    /// and deletes them from the dead letters; how many there were.
    pub fn retry(&self, ids: &[u64]) -> Result<usize, NatsError> {
        let dead = self.dead.clone();
        let js = self.nats.jetstream().clone();
        let names = self.names.clone();
        let partitions = self.partitions;
        let ids = ids.to_vec();
        let n = self.nats.block(async move {
            let mut n = 0;
            for id in ids {
                let msg = match dead.get_raw_message(id).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(target: "evm", "MIQ(DeadLetters.retry) dead letter {id}: {e}");
                        continue;
                    }
                };
                let subject = match header(&msg.headers, H_SUBJECT) {
                    Some(s) => s,
                    None => {
                        // Its partition again, from the event itself.
                        match serde_json::from_slice::<QueuedIn>(&msg.payload) {
                            Ok(q) => names.subject(partition_of(&q.provider, &q.event, partitions)),
                            Err(_) => names.subject(0),
                        }
                    }
                };
                let key = header(&msg.headers, H_KEY).unwrap_or_else(|| format!("dead{id}"));
                let mut headers = HeaderMap::new();
                set_header(&mut headers, MSG_ID, &msg_id(&format!("{key}#retry{id}")));
                js.publish_with_headers(subject, headers, msg.payload.clone())
                    .await
                    .map_err(|e| NatsError::js(format!("re-queueing the dead letter {id}"), e))?
                    .await
                    .map_err(|e| NatsError::js(format!("re-queueing the dead letter {id}"), e))?;
                dead.delete_message(id)
                    .await
                    .map_err(|e| NatsError::js(format!("deleting the dead letter {id}"), e))?;
                n += 1;
            }
            Ok::<_, NatsError>(n)
        })??;
        if n > 0 {
            tracing::info!(target: "evm", "MIQ(DeadLetters.retry) {n} dead letters queued again");
        }
        Ok(n)
    }
}

impl Drop for JetStreamQueue {
    /// Stops renewing without giving the leases up (they run out after the
    /// TTL, as a crashed node's would): [`JetStreamQueue::close`] gives
    /// them up.
    fn drop(&mut self) {
        self.stop_renewing();
    }
}

/// How many partitions the consumers of the events stream show exist (the
/// highest `<prefix>_p<n>` + 1; 0 for a new stream).
async fn partitions_found(events: &Stream, names: &Names) -> Result<u32, NatsError> {
    let what = || format!("listing the consumers of {}", names.events);
    let mut listing = events.consumer_names();
    let mine = format!("{}_p", names.prefix);
    let mut found = 0u32;
    while let Some(name) = listing.next().await {
        let name = name.map_err(|e| NatsError::js(what(), e))?;
        if let Some(p) = name
            .strip_prefix(mine.as_str())
            .and_then(|n| n.parse::<u32>().ok())
        {
            found = found.max(p.saturating_add(1));
        }
    }
    Ok(found)
}

/// Creates the stream, or binds to it (updating a changed configuration).
async fn stream_of(
    js: &async_nats::jetstream::Context,
    config: stream::Config,
) -> Result<Stream, NatsError> {
    let name = config.name.clone();
    match js.create_stream(config.clone()).await {
        Ok(s) => Ok(s),
        Err(created) => {
            if let Err(updated) = js.update_stream(config).await {
                return Err(NatsError::js(
                    format!("creating the stream {name}"),
                    format!("{created}; then updating it: {updated}"),
                ));
            }
            js.get_stream(&name)
                .await
                .map_err(|e| NatsError::js(format!("reading the stream {name}"), e))
        }
    }
}

/// A dead letter as stored.
fn dead_letter(id: u64, headers: &HeaderMap, payload: &[u8]) -> DeadLetter {
    let (provider, event) = match serde_json::from_slice::<QueuedIn>(payload) {
        Ok(q) => (q.provider, q.event),
        Err(_) => (
            Provider {
                name: "?".into(),
                kind: String::new(),
                hostname: String::new(),
                userid: String::new(),
            },
            ProviderEvent {
                event_type: "(unreadable)".into(),
                timestamp: String::new(),
                chain_id: None,
                vm_ems_ref: None,
                vm_name: None,
                host_ems_ref: None,
                host_name: None,
                full_data: serde_json::Value::String(String::from_utf8_lossy(payload).into()),
            },
        ),
    };
    DeadLetter {
        id,
        provider,
        event,
        deliveries: header(headers, H_DELIVERIES)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
        reason: header(headers, H_REASON).unwrap_or_default(),
        dead_on: header(headers, H_DEAD_ON).unwrap_or_default(),
    }
}

/// A message to move to the dead letters.
struct Doomed {
    seq: u64,
    subject: String,
    key: Option<String>,
    deliveries: i64,
    reason: String,
    payload: bytes::Bytes,
    acker: Acker,
}

impl Shared {
    /// Naks (without delay) every event in flight, oldest first, and
    /// forgets them: at [`JetStreamQueue::close`].
    fn give_back_everything(&self) {
        let mut all: Vec<(u64, Acker)> = lock(&self.inflight)
            .drain()
            .map(|(seq, f)| (seq, f.acker))
            .collect();
        if all.is_empty() {
            return;
        }
        all.sort_by_key(|(seq, _)| *seq);
        let n = all.len();
        let client = self.nats.client().clone();
        // One after the other: the server queues them for redelivery in
        // the order it gets them.
        let given = self.nats.block_within(
            ANSWER_LIMIT,
            "giving back the events in flight",
            async move {
                let mut failed = 0usize;
                for (_, a) in all {
                    if a.ack_with(AckKind::Nak(None)).await.is_err() {
                        failed += 1;
                    }
                }
                client
                    .flush()
                    .await
                    .map_err(|e| NatsError::js("giving back the events in flight", e))?;
                Ok(failed)
            },
        );
        match given {
            Ok(0) => {
                tracing::info!(target: "evm", "MIQ(JetStreamQueue.close) {n} events in flight given back")
            }
            Ok(f) => {
                tracing::warn!(target: "evm", "MIQ(JetStreamQueue.close) {f} of {n} events in flight not given back: they come back after the ack wait")
            }
            Err(e) => {
                tracing::warn!(target: "evm", "MIQ(JetStreamQueue.close) {n} events in flight: {e}: they come back after the ack wait")
            }
        }
    }

    fn held_partitions(&self) -> Vec<u32> {
        lock(&self.parts)
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.part == Part::Held && s.renewed_at.is_some_and(|t| t.elapsed() < self.fresh)
            })
            .map(|(p, _)| p as u32)
            .collect()
    }

    fn renew_loop(&self) {
        let every = self.leases.renew_every().max(Duration::from_millis(50));
        loop {
            {
                let stop = lock(&self.stop);
                if *stop {
                    return;
                }
                let (stop, _) = self
                    .wake
                    .wait_timeout(stop, every)
                    .unwrap_or_else(|e| e.into_inner());
                if *stop {
                    return;
                }
            }
            self.rebalance();
        }
    }

    /// Renews this node's liveness and partition leases, gives up the
    /// partitions above its share (once drained) and takes free ones up to
    /// it.
    fn rebalance(&self) {
        let _one = lock(&self.rebalancing);
        let node = self.leases.node().to_string();
        if let Err(e) = self.leases.acquire(&format!("node.{node}")) {
            tracing::warn!(target: "evm", "MIQ(JetStreamQueue.rebalance) node [{node}]: liveness lease not renewed: {e}");
        }
        let listing = self.leases.held();
        let n = self.opts.partitions as usize;
        let mut parts = lock(&self.parts).clone();
        // Renew what is held; a failed renewal stops the claims at once
        // (written under the lock now, not at the end of the rebalance).
        for (p, slot) in parts.iter_mut().enumerate() {
            if slot.part == Part::Free {
                continue;
            }
            match self.leases.acquire(&format!("partition.{p}")) {
                Ok(true) => {
                    slot.renewed_at = Some(Instant::now());
                    lock(&self.parts)[p].renewed_at = slot.renewed_at;
                }
                Ok(false) => {
                    *slot = Slot::FREE;
                    lock(&self.parts)[p] = Slot::FREE;
                    tracing::warn!(target: "evm", "MIQ(JetStreamQueue.rebalance) node [{node}]: partition {p} was taken by another node: no more claims from it");
                }
                Err(e) => {
                    *slot = Slot::FREE;
                    lock(&self.parts)[p] = Slot::FREE;
                    tracing::warn!(target: "evm", "MIQ(JetStreamQueue.rebalance) node [{node}]: partition {p} not renewed ({e}): no more claims from it");
                }
            }
        }
        let Ok(listing) = listing else {
            // Without the listing, nothing is taken or given up.
            // Bound first: a guard in the assigned value lives to the end
            // of the statement, and the same mutex locked again there
            // would deadlock.
            let merged = merge(&lock(&self.parts), &parts);
            *lock(&self.parts) = merged;
            return;
        };
        let live = listing
            .iter()
            .filter(|l| l.key.starts_with("node."))
            .count()
            .max(1);
        let share = n.div_ceil(live);
        let taken: Vec<bool> = (0..n)
            .map(|p| {
                let key = format!("partition.{p}");
                listing.iter().any(|l| l.key == key && l.node != node)
            })
            .collect();
        // Drained partitions are given up.
        let busy: Vec<bool> = {
            let inflight = lock(&self.inflight);
            let mut busy = vec![false; n];
            for f in inflight.values() {
                if let Some(b) = busy.get_mut(f.partition as usize) {
                    *b = true;
                }
            }
            busy
        };
        for (p, slot) in parts.iter_mut().enumerate() {
            if slot.part != Part::Draining {
                continue;
            }
            let overdue = slot
                .draining_since
                .is_some_and(|t| t.elapsed() >= self.opts.ack_wait);
            if busy[p] && overdue {
                // Never acked nor given back: delivered again by the server
                // since, so this node's entries are dropped (an ack of them
                // later acks nothing).
                let mut inflight = lock(&self.inflight);
                let before = inflight.len();
                inflight.retain(|_, f| f.partition as usize != p);
                let dropped = before - inflight.len();
                drop(inflight);
                tracing::warn!(target: "evm", "MIQ(JetStreamQueue.rebalance) node [{node}]: partition {p} still has {dropped} events in flight after the ack wait ({:?}): given up anyway", self.opts.ack_wait);
            } else if busy[p] {
                continue;
            }
            if let Err(e) = self.leases.release(&format!("partition.{p}")) {
                tracing::warn!(target: "evm", "MIQ(JetStreamQueue.rebalance) partition {p}: {e}");
            }
            *slot = Slot::FREE;
            tracing::info!(target: "evm", "MIQ(JetStreamQueue.rebalance) node [{node}]: partition {p} given up ({live} nodes, a share of {share})");
        }
        let mut held = parts.iter().filter(|s| s.part == Part::Held).count();
        if held > share {
            // The highest ones go first.
            let mut extra = held - share;
            for slot in parts.iter_mut().rev() {
                if extra == 0 {
                    break;
                }
                if slot.part == Part::Held {
                    slot.part = Part::Draining;
                    slot.draining_since = Some(Instant::now());
                    extra -= 1;
                }
            }
        }
        // Under the share: draining ones are claimed from again first.
        for slot in parts.iter_mut() {
            if held >= share {
                break;
            }
            if slot.part == Part::Draining {
                slot.part = Part::Held;
                slot.draining_since = None;
                held += 1;
            }
        }
        if held < share {
            // Free partitions, from a place of this node's own so that
            // nodes do not all race for the same ones.
            let start = (fnv1a(&[node.as_str()]) % n as u64) as usize;
            for i in 0..n {
                if held >= share {
                    break;
                }
                let p = (start + i) % n;
                if parts[p].part != Part::Free || taken[p] {
                    continue;
                }
                match self.leases.acquire(&format!("partition.{p}")) {
                    Ok(true) => {
                        parts[p] = Slot {
                            part: Part::Held,
                            renewed_at: Some(Instant::now()),
                            draining_since: None,
                        };
                        held += 1;
                        tracing::info!(target: "evm", "MIQ(JetStreamQueue.rebalance) node [{node}]: partition {p} taken ({live} nodes, a share of {share})");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(target: "evm", "MIQ(JetStreamQueue.rebalance) partition {p}: {e}");
                        break;
                    }
                }
            }
        }
        *lock(&self.parts) = parts;
    }

    /// The depth from the server now (at open).
    fn refresh_depth_now(&self) {
        let mut events = self.events.clone();
        if let Ok(Ok(messages)) = self
            .nats
            .block(async move { events.info().await.map(|i| i.state.messages) })
        {
            self.depth.value.store(messages, Ordering::SeqCst);
            *lock(&self.depth.at) = Some(Instant::now());
        }
    }

    /// Refreshes the cached depth in the background when it is stale.
    fn refresh_depth(&self) {
        let stale = lock(&self.depth.at).is_none_or(|t| t.elapsed() >= DEPTH_REFRESH);
        if !stale || self.depth.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let depth = self.depth.clone();
        let events = self.events.clone();
        self.nats.handle().spawn(async move {
            if let Ok(info) = events.get_info().await {
                depth.value.store(info.state.messages, Ordering::SeqCst);
            }
            *lock(&depth.at) = Some(Instant::now());
            depth.refreshing.store(false, Ordering::SeqCst);
        });
    }

    /// Moves `doomed` to the dead letters, then acks each.
    fn bury(&self, doomed: Vec<Doomed>) {
        if doomed.is_empty() {
            return;
        }
        let js = self.nats.jetstream().clone();
        let subject = self.names.dead_subject();
        let n = doomed.len();
        let buried = self.nats.block(async move {
            let mut buried = 0usize;
            for d in doomed {
                let mut headers = HeaderMap::new();
                set_header(&mut headers, MSG_ID, &format!("dead.{}", d.seq));
                set_header(&mut headers, H_REASON, &d.reason.replace(['\r', '\n'], " "));
                set_header(&mut headers, H_DEAD_ON, &now_iso());
                set_header(&mut headers, H_DELIVERIES, &d.deliveries.to_string());
                set_header(&mut headers, H_SUBJECT, &d.subject);
                set_header(&mut headers, H_ORIGINAL, &d.seq.to_string());
                if let Some(k) = &d.key {
                    set_header(&mut headers, H_KEY, k);
                }
                let stored = match js
                    .publish_with_headers(subject.clone(), headers, d.payload.clone())
                    .await
                {
                    Ok(f) => f.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match stored {
                    Ok(()) => match d.acker.double_ack().await {
                        Ok(()) => buried += 1,
                        Err(e) => {
                            tracing::warn!(target: "evm", "MIQ(JetStreamQueue.claim) event {} dead-lettered but not acked ({e}): it comes back and is dead-lettered again", d.seq)
                        }
                    },
                    Err(e) => {
                        tracing::error!(target: "evm", "MIQ(JetStreamQueue.claim) event {} could not be dead-lettered ({e}): it comes back after the ack wait", d.seq)
                    }
                }
            }
            buried
        });
        let buried = buried.unwrap_or(0);
        if buried > 0 {
            let _ = self
                .depth
                .value
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                    Some(d.saturating_sub(buried as u64))
                });
        }
        tracing::error!(target: "evm", "MIQ(JetStreamQueue.claim) {buried} of {n} events moved to the dead letters ({})", self.names.dead);
    }
}

/// `renewed` with the partitions `current` gave up since (none is taken
/// without the listing).
fn merge(current: &[Slot], renewed: &[Slot]) -> Vec<Slot> {
    current
        .iter()
        .zip(renewed)
        .map(|(c, r)| if r.part == Part::Free { Slot::FREE } else { *c })
        .collect()
}

impl EventQueue for JetStreamQueue {
    /// Every node of the cluster claims from the stream.
    fn shared(&self) -> bool {
        true
    }

    fn enqueue_owned(&self, events: Vec<CaughtEvent>) -> Result<Vec<u64>, StoreError> {
        Ok(self.publish(&events)?)
    }

    fn enqueue_caught(&self, events: &[CaughtEvent]) -> Result<Vec<u64>, StoreError> {
        Ok(self.publish(events)?)
    }

    fn claim(&self, limit: usize) -> Result<Claim, StoreError> {
        let shared = &self.shared;
        let held = shared.held_partitions();
        if held.is_empty() {
            return Ok(Claim::default());
        }
        // `limit` spread over the held partitions, the remainder (or, when
        // fewer are asked for than partitions are held, the whole claim)
        // to the next ones in turn.
        let limit = limit.max(1);
        let k = held.len();
        let (base, extra) = (limit / k, limit % k);
        let start = shared.cursor.fetch_add(1, Ordering::Relaxed) % k;
        let fetches: Vec<(u32, usize, PullConsumer)> = (0..k)
            .filter_map(|i| {
                let p = held[(start + i) % k];
                let want = base + usize::from(i < extra);
                let c = shared.consumers.get(p as usize)?;
                (want > 0).then(|| (p, want, c.clone()))
            })
            .collect();
        let asked = fetches.len();
        let fetched = shared.nats.block(async move {
            let all = fetches.into_iter().map(|(p, per, c)| async move {
                let mut got = Vec::new();
                let mut batch = match c
                    .fetch()
                    .max_messages(per)
                    .expires(FETCH_EXPIRES)
                    .messages()
                    .await
                {
                    Ok(b) => b,
                    Err(e) => return (p, got, Some(e.to_string())),
                };
                while let Some(m) = batch.next().await {
                    match m {
                        Ok(m) => got.push(m),
                        Err(e) => return (p, got, Some(e.to_string())),
                    }
                }
                (p, got, None)
            });
            futures_util::future::join_all(all).await
        })?;
        let mut failures = 0;
        let mut last_error = None;
        let mut messages = Vec::new();
        for (p, got, error) in fetched {
            if let Some(e) = error {
                failures += 1;
                tracing::warn!(target: "evm", "MIQ(JetStreamQueue.claim) partition {p}: {e}");
                last_error = Some(e);
            }
            messages.extend(got.into_iter().map(|m| (p, m)));
        }
        if messages.is_empty() && failures == asked {
            if let Some(e) = last_error {
                return Err(NatsError::js("claiming events", e).into());
            }
        }
        let mut out = Claim::default();
        let mut doomed = Vec::new();
        let mut providers: Vec<Arc<Provider>> = Vec::new();
        let mut ready: Vec<(u64, ClaimedEvent)> = Vec::with_capacity(messages.len());
        {
            let mut inflight = lock(&shared.inflight);
            for (partition, m) in messages {
                let (seq, delivered) = match m.info() {
                    Ok(i) => (i.stream_sequence, i.delivered),
                    Err(e) => {
                        tracing::warn!(target: "evm", "MIQ(JetStreamQueue.claim) a message without its metadata ({e}): left to come back");
                        continue;
                    }
                };
                if inflight.contains_key(&seq) {
                    // Delivered again while this node still handles it
                    // (slower than `ack_wait`): left alone, neither acked
                    // nor handed out twice; the first delivery's ack (or
                    // release) settles it.
                    tracing::debug!(target: "evm", "MIQ(JetStreamQueue.claim) event {seq} delivered again ({delivered}) while in flight here: skipped");
                    continue;
                }
                let (msg, acker) = m.split();
                let key = msg.headers.as_ref().and_then(|h| header(h, MSG_ID));
                let max = shared.opts.max_deliver;
                if max > 0 && delivered > max {
                    doomed.push(Doomed {
                        seq,
                        subject: msg.subject.to_string(),
                        key,
                        deliveries: delivered - 1,
                        reason: format!("delivered {} times, never acked", delivered - 1),
                        payload: msg.payload,
                        acker,
                    });
                    continue;
                }
                match serde_json::from_slice::<QueuedIn>(&msg.payload) {
                    Ok(q) => {
                        let provider = match providers.iter().find(|x| x.as_ref() == &q.provider) {
                            Some(x) => x.clone(),
                            None => {
                                let x = Arc::new(q.provider);
                                providers.push(x.clone());
                                x
                            }
                        };
                        inflight.insert(
                            seq,
                            InFlight {
                                acker,
                                partition,
                                delivered,
                            },
                        );
                        ready.push((
                            seq,
                            ClaimedEvent {
                                id: seq,
                                attempts: u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
                                provider,
                                event: q.event,
                                caught_us: q.caught_us,
                            },
                        ));
                    }
                    Err(e) => {
                        out.unreadable.push((seq, e.to_string()));
                        doomed.push(Doomed {
                            seq,
                            subject: msg.subject.to_string(),
                            key,
                            deliveries: delivered,
                            reason: format!("unreadable: {e}"),
                            payload: msg.payload,
                            acker,
                        });
                    }
                }
            }
        }
        shared.bury(doomed);
        ready.sort_by_key(|(seq, _)| *seq);
        out.events = ready.into_iter().map(|(_, e)| e).collect();
        Ok(out)
    }

    fn ack(&self, ids: &[u64]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ackers: Vec<(u64, Acker)> = {
            let mut inflight = lock(&self.shared.inflight);
            ids.iter()
                .filter_map(|id| inflight.remove(id).map(|f| (*id, f.acker)))
                .collect()
        };
        if ackers.is_empty() {
            return Ok(0);
        }
        // A plain ack, not a double ack awaiting the server's answer: the
        // commit is already durable, and an ack the server never got only
        // makes the event come back after the ack wait, where its dedup_key
        // finds it stored (a round trip per event saved on the node and on
        // nats-server: docs/performance.md, "Cluster"). The flush sends
        // them before this returns.
        let client = self.shared.nats.client().clone();
        let results = self.shared.nats.block(async move {
            let mut results = Vec::with_capacity(ackers.len());
            for (id, a) in ackers {
                results.push(a.ack().await.map_err(|e| (id, e.to_string())));
            }
            let flushed = client.flush().await.map_err(|e| e.to_string());
            (results, flushed)
        })?;
        let (results, flushed) = results;
        if let Err(e) = flushed {
            return Err(NatsError::js(
                "sending the acks (the events come back after the ack wait)",
                e,
            )
            .into());
        }
        let mut n = 0;
        let mut failed = Vec::new();
        for r in results {
            match r {
                Ok(()) => n += 1,
                Err(f) => failed.push(f),
            }
        }
        // Not counted off the depth here: the worker counts every landed
        // batch with `acked` (whose unit of work called this), and the
        // depth is the server's again within `DEPTH_REFRESH` anyway.
        match failed.first() {
            None => Ok(n),
            Some((id, e)) => Err(NatsError::js(
                format!(
                    "acking {} of {} events (event {id}; they come back after the ack wait)",
                    failed.len(),
                    n + failed.len()
                ),
                e,
            )
            .into()),
        }
    }

    /// Counts `n` events off the cached depth: the worker calls it for
    /// every batch whose unit of work landed (and acked it with
    /// [`EventQueue::ack`]).
    fn acked(&self, n: usize) {
        let _ = self
            .shared
            .depth
            .value
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                Some(d.saturating_sub(n as u64))
            });
    }

    /// A nak with a delay ([`release_delay`]: 1 s after the first
    /// delivery, doubling with each, at most `ack_wait`), not "due again
    /// at once": a failed commit (PostgreSQL away for a few seconds) must
    /// not spend an event's deliveries in a burst and send it to the dead
    /// letters.
    fn release(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let ack_wait = self.shared.opts.ack_wait;
        let ackers: Vec<(Acker, Duration)> = {
            let mut inflight = lock(&self.shared.inflight);
            ids.iter()
                .filter_map(|id| {
                    inflight
                        .remove(id)
                        .map(|f| (f.acker, release_delay(f.delivered, ack_wait)))
                })
                .collect()
        };
        if ackers.is_empty() {
            return;
        }
        let given = self.shared.nats.block(async move {
            let all = ackers
                .into_iter()
                .map(|(a, d)| async move { a.ack_with(AckKind::Nak(Some(d))).await });
            futures_util::future::join_all(all)
                .await
                .into_iter()
                .filter(|r| r.is_err())
                .count()
        });
        match given {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(target: "evm", "MIQ(JetStreamQueue.release) {n} events not given back: they come back after the ack wait")
            }
            Err(e) => tracing::warn!(target: "evm", "MIQ(JetStreamQueue.release) {e}"),
        }
    }

    /// Nothing to do: JetStream delivers what a dead process had claimed
    /// again once its ack wait ends.
    fn release_leases(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn depth(&self) -> u64 {
        self.shared.refresh_depth();
        self.shared.depth.value.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
