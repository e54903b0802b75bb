//! One catcher per provider in the whole cluster: a reading catcher
//! (`simulate`, `jsonl`, `amqp`) runs only while its node holds the lease
//! `catcher.<provider>` ([`automate_vmdb::lease::Leases`]).
//!
//! [`run_leased`] tries to take the lease every `renew_every`; once held it
//! logs `MIQ(EventCatcher<Type>) EMS [<host>] as [<user>] lease taken by
//! node [<node>]`, runs the catcher with a child token, and renews every
//! `renew_every`. A renewal that answers `false` or fails cancels the
//! catcher at once (`... lease lost: stopping`), well before the lease's
//! time to live ends, and the loop goes back to trying to take it. At a
//! clean stop the catcher finishes, stores its position and the lease is
//! released, so another node takes over at once rather than after the TTL.
//!
//! **Positions.** A `jsonl` catcher (line numbers) and a `simulate` one
//! (its sequence is deterministic from its seed: events are counted) resume
//! from [`Leases::position`] and store theirs with
//! [`Leases::set_position`] through a [`Checkpoints`]: every
//! [`CHECKPOINT_EVENTS`] events or [`CHECKPOINT_EVERY`], it waits for the
//! pipeline's durability answers of every event sent since the last one
//! (the events are offered with an ack, as the `amqp` catcher's are) and
//! stores the position only when all were queued. So a node taking a
//! catcher over re-reads at most the last unstored stretch, which the
//! queue's de-duplication absorbs (a `simulate` catcher without `start`
//! also stores its clock's start beside the position, `<provider>#simulate-start`,
//! so the events remade keep their timestamps). An `amqp` catcher needs no position:
//! the broker keeps what was not acked. After a lost lease no position is
//! stored (another node may be ahead already).
//!
//! The `http` catcher is a push endpoint: every node accepts
//! `POST /api/events` (a client retrying on another node is absorbed by
//! de-duplication), so it runs under no lease.
//!
//! Without leases (the embedded mode) none of this runs: the catchers run
//! as they always did, with no position and no extra task.

use super::{AckReceiver, Catcher, CatcherError, Ctx};
use automate_vmdb::lease::Leases;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A stored position covers at most this many events' answers.
pub const CHECKPOINT_EVENTS: usize = 256;
/// A stored position is at most this old while events flow.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How long a clean stop waits for the last stretch's answers.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Where a catcher under a lease resumes, and where it stores its position.
#[derive(Clone)]
pub(crate) struct Resume {
    leases: Arc<dyn Leases>,
    /// The stored position when the lease was taken.
    pub from: u64,
    /// Set before the catcher is cancelled for a lost lease: store nothing
    /// more.
    lost: Arc<AtomicBool>,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// A catcher's position bookkeeping under a lease (a no-op without one).
pub(crate) struct Checkpoints {
    resume: Option<Resume>,
    pending: Vec<AckReceiver>,
    /// Everything before it has been offered.
    position: u64,
    stored: u64,
    last: Instant,
    /// An event since the stored position was not queued (its answer was
    /// an error): no later position is stored in this run, so the node
    /// that takes the catcher over reads that event again.
    held_back: bool,
}

impl Checkpoints {
    /// The bookkeeping of the catcher of `ctx` (it runs under a lease when
    /// `ctx` says where to resume).
    pub(crate) fn new(ctx: &Ctx) -> Checkpoints {
        let from = ctx.resume.as_ref().map_or(0, |r| r.from);
        Checkpoints {
            resume: ctx.resume.clone(),
            pending: Vec::new(),
            position: from,
            stored: from,
            last: Instant::now(),
            held_back: false,
        }
    }

    /// Whether events must be offered with a durability question (under a
    /// lease: the position is stored after their answers).
    pub(crate) fn durable(&self) -> bool {
        self.resume.is_some()
    }

    /// The position to resume from (0 without a lease or a stored one).
    pub(crate) fn from(&self) -> u64 {
        self.resume.as_ref().map_or(0, |r| r.from)
    }

    /// Under a lease: the value stored as the position `name` (a catcher's
    /// other deterministic setting, e.g. the simulated clock's start),
    /// storing `default` first when none is; `default` without a lease or
    /// when the store cannot be reached.
    pub(crate) async fn anchor(&self, ctx: &Ctx, name: &str, default: u64) -> u64 {
        let Some(resume) = &self.resume else {
            return default;
        };
        let leases = resume.leases.clone();
        let key = format!("{}#{name}", ctx.provider.name);
        let r = tokio::task::spawn_blocking(move || match leases.position(&key)? {
            Some(v) => Ok(v),
            None => leases.set_position(&key, default).map(|()| default),
        })
        .await;
        match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(target: "evm", "{} cannot read or store its {name}: {e}", prefix(ctx));
                default
            }
            Err(e) => {
                tracing::warn!(target: "evm", "{} cannot read or store its {name}: {e}", prefix(ctx));
                default
            }
        }
    }

    /// Everything before `position` has been offered; `ack` is the answer
    /// of the last event, if it was sent with a question.
    pub(crate) async fn advance(&mut self, ctx: &Ctx, position: u64, ack: Option<AckReceiver>) {
        if self.resume.is_none() {
            return;
        }
        self.position = position;
        if let Some(rx) = ack {
            self.pending.push(rx);
        }
        if self.pending.len() >= CHECKPOINT_EVENTS || self.last.elapsed() >= CHECKPOINT_EVERY {
            self.store(ctx).await;
        }
    }

    /// The input starts over (a rotated file): positions count from 0.
    pub(crate) async fn restart(&mut self, ctx: &Ctx) {
        if self.resume.is_none() {
            return;
        }
        self.store(ctx).await;
        self.position = 0;
        self.stored = u64::MAX;
        // Position 0 stored at once: the old file's line count must not
        // make a node taking over skip as many lines of the new file.
        self.store(ctx).await;
    }

    /// Waits for the answers of the events sent since the last store and
    /// stores the position when all were queued.
    async fn store(&mut self, ctx: &Ctx) {
        self.last = Instant::now();
        let Some(resume) = &self.resume else { return };
        let mut all_ok = true;
        for rx in std::mem::take(&mut self.pending) {
            all_ok &= Ctx::settle(&ctx.stats, Some(rx)).await;
        }
        if resume.lost.load(Ordering::SeqCst) || self.position == self.stored {
            return;
        }
        if !all_ok && !self.held_back {
            tracing::warn!(
                target: "evm",
                "{} events before position {} were not all queued: no later position is stored by this run (the next holder of the lease reads them again)",
                prefix(ctx),
                self.position
            );
            self.held_back = true;
        }
        if self.held_back {
            return;
        }
        let leases = resume.leases.clone();
        let provider = ctx.provider.name.clone();
        let position = self.position;
        // Stored only by the lease's holder: renewed (and so checked) just
        // before the write, so a node that lost it does not overwrite the
        // new holder's position.
        let r = tokio::task::spawn_blocking(move || {
            if !leases.acquire(&lease_key(&provider))? {
                return Ok(false);
            }
            leases.set_position(&provider, position).map(|()| true)
        })
        .await;
        match r {
            Ok(Ok(true)) => self.stored = position,
            Ok(Ok(false)) => {
                resume.lost.store(true, Ordering::SeqCst);
                tracing::warn!(
                    target: "evm",
                    "{} position {position} not stored: the lease is held by another node",
                    prefix(ctx)
                );
            }
            Ok(Err(e)) => tracing::warn!(
                target: "evm",
                "{} cannot store position {position}: {e}",
                prefix(ctx)
            ),
            Err(e) => tracing::warn!(
                target: "evm",
                "{} cannot store position {position}: {e}",
                prefix(ctx)
            ),
        }
    }

    /// At the catcher's end: stores the last position (unless the lease was
    /// lost), waiting [`FINISH_WAIT`] at most for the last answers.
    pub(crate) async fn finish(&mut self, ctx: &Ctx) {
        let lost = self
            .resume
            .as_ref()
            .is_none_or(|r| r.lost.load(Ordering::SeqCst));
        if lost {
            return;
        }
        if tokio::time::timeout(FINISH_WAIT, self.store(ctx))
            .await
            .is_err()
        {
            tracing::warn!(
                target: "evm",
                "{} the last events were not answered in {} s: position {} not stored",
                prefix(ctx),
                FINISH_WAIT.as_secs(),
                self.position
            );
        }
    }
}

/// `MIQ(EventCatcher<Type>) EMS [<host>] as [<user>]`.
fn prefix(ctx: &Ctx) -> String {
    format!(
        "MIQ({}) EMS [{}] as [{}]",
        ctx.provider.catcher_name(),
        ctx.provider.hostname,
        ctx.provider.userid
    )
}

/// The lease key of a provider's catcher.
pub fn lease_key(provider: &str) -> String {
    format!("catcher.{provider}")
}

/// Runs `catcher` whenever this node holds its lease, until its input ends
/// or `shutdown` fires (see the module's text).
pub(crate) async fn run_leased(
    catcher: Catcher,
    leases: Arc<dyn Leases>,
    shutdown: CancellationToken,
) -> Result<(), CatcherError> {
    let ctx = catcher.ctx.clone();
    let who = prefix(&ctx);
    let provider = ctx.provider.name.clone();
    let key = lease_key(&provider);
    let node = leases.node().to_string();
    let every = leases.renew_every().max(Duration::from_millis(10));
    let call = |f: fn(&dyn Leases, &str) -> Result<bool, automate_vmdb::StoreError>| {
        let leases = leases.clone();
        let key = key.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&*leases, &key))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        }
    };
    let acquire = |l: &dyn Leases, k: &str| l.acquire(k);
    let mut unreachable = false;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match call(acquire).await {
            Ok(true) => unreachable = false,
            Ok(false) => {
                unreachable = false;
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(every) => continue,
                }
            }
            Err(e) => {
                if !unreachable {
                    tracing::warn!(target: "evm", "{who} lease store unreachable: {e}; trying again every {} ms", every.as_millis());
                    unreachable = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(every) => continue,
                }
            }
        }
        let from = {
            let leases = leases.clone();
            let provider = provider.clone();
            match tokio::task::spawn_blocking(move || leases.position(&provider)).await {
                Ok(Ok(p)) => p.unwrap_or(0),
                Ok(Err(e)) => {
                    tracing::warn!(target: "evm", "{who} cannot read the stored position: {e}; starting from the beginning");
                    0
                }
                Err(e) => {
                    tracing::warn!(target: "evm", "{who} cannot read the stored position: {e}; starting from the beginning");
                    0
                }
            }
        };
        tracing::info!(target: "evm", "{who} lease taken by node [{node}] (resuming at position {from})");
        let lost = Arc::new(AtomicBool::new(false));
        let child = shutdown.child_token();
        let mut run = catcher.clone();
        run.ctx.resume = Some(Resume {
            leases: leases.clone(),
            from,
            lost: lost.clone(),
        });
        let mut task = AbortOnDrop(tokio::spawn(run.run(child.clone())));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = &mut task => {
                    // The input ended (or the catcher failed): give the
                    // lease up.
                    release(&leases, &key, &who).await;
                    return flatten(r);
                }
                _ = shutdown.cancelled() => {
                    let r = (&mut task).await;
                    release(&leases, &key, &who).await;
                    tracing::info!(target: "evm", "{who} lease released by node [{node}]");
                    return flatten(r);
                }
                _ = tick.tick() => {
                    // A renewal that does not answer within a renew
                    // interval counts as failed: the catcher must stop
                    // before the TTL ends, whatever the lease store does.
                    let why = match tokio::time::timeout(every, call(acquire)).await {
                        Ok(Ok(true)) => continue,
                        Ok(Ok(false)) => "taken by another node".to_string(),
                        Ok(Err(e)) => e,
                        Err(_) => format!("no answer to the renewal in {} ms", every.as_millis()),
                    };
                    lost.store(true, Ordering::SeqCst);
                    child.cancel();
                    tracing::warn!(target: "evm", "{who} lease lost ({why}): stopping");
                    flatten((&mut task).await)?;
                    break;
                }
            }
        }
    }
}

/// The running catcher's task, aborted if the lease loop is dropped (its
/// task aborted): a catcher never outlives the loop renewing its lease.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), CatcherError>>);

impl std::future::Future for AbortOnDrop {
    type Output = Result<Result<(), CatcherError>, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn release(leases: &Arc<dyn Leases>, key: &str, who: &str) {
    let leases = leases.clone();
    let k = key.to_string();
    match tokio::task::spawn_blocking(move || leases.release(&k)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(target: "evm", "{who} cannot release lease {key}: {e} (it runs out after its TTL)")
        }
        Err(e) => {
            tracing::warn!(target: "evm", "{who} cannot release lease {key}: {e} (it runs out after its TTL)")
        }
    }
}

fn flatten(
    r: Result<Result<(), CatcherError>, tokio::task::JoinError>,
) -> Result<(), CatcherError> {
    r.unwrap_or_else(|e| {
        Err(CatcherError::Config {
            provider: String::from("?"),
            message: format!("catcher task failed: {e}"),
        })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::jsonl::JsonlConfig;
    use super::super::simulate::{SimulateConfig, Simulator};
    use super::super::{sink_pair, CatcherConfig, Catchers, Caught, Filter};
    use super::*;
    use crate::{Provider, ProviderEvent};
    use automate_vmdb::lease::LeaseInfo;
    use automate_vmdb::StoreError;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    /// Leases in memory, shared by the nodes of one test cluster.
    #[derive(Debug, Default)]
    pub(crate) struct Shared {
        holders: Mutex<HashMap<String, String>>,
        positions: Mutex<HashMap<String, u64>>,
        /// Acquires that answered `false`.
        refused: AtomicU64,
        /// The switch: acquires do not answer while it is on.
        hang: AtomicBool,
        /// Acquires begun while `hang` was on.
        hung: AtomicU64,
    }

    /// One node's view of [`Shared`].
    #[derive(Debug, Clone)]
    pub(crate) struct MemLeases {
        node: String,
        shared: Arc<Shared>,
    }

    impl MemLeases {
        pub(crate) fn new(node: &str, shared: Arc<Shared>) -> MemLeases {
            MemLeases {
                node: node.into(),
                shared,
            }
        }

        /// The switch: `node` holds `key` now (or nobody).
        pub(crate) fn give(&self, key: &str, node: Option<&str>) {
            let mut h = self.shared.holders.lock().unwrap();
            match node {
                Some(n) => h.insert(key.into(), n.into()),
                None => h.remove(key),
            };
        }

        pub(crate) fn holder(&self, key: &str) -> Option<String> {
            self.shared.holders.lock().unwrap().get(key).cloned()
        }

        pub(crate) fn refused(&self) -> u64 {
            self.shared.refused.load(Ordering::SeqCst)
        }
    }

    impl Leases for MemLeases {
        fn node(&self) -> &str {
            &self.node
        }
        fn acquire(&self, key: &str) -> Result<bool, StoreError> {
            if self.shared.hang.load(Ordering::SeqCst) {
                self.shared.hung.fetch_add(1, Ordering::SeqCst);
                while self.shared.hang.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let mut h = self.shared.holders.lock().unwrap();
            let held = match h.get(key) {
                None => {
                    h.insert(key.into(), self.node.clone());
                    true
                }
                Some(n) => *n == self.node,
            };
            if !held {
                self.shared.refused.fetch_add(1, Ordering::SeqCst);
            }
            Ok(held)
        }
        fn release(&self, key: &str) -> Result<(), StoreError> {
            let mut h = self.shared.holders.lock().unwrap();
            if h.get(key) == Some(&self.node) {
                h.remove(key);
            }
            Ok(())
        }
        fn held(&self) -> Result<Vec<LeaseInfo>, StoreError> {
            let h = self.shared.holders.lock().unwrap();
            Ok(h.iter()
                .map(|(k, n)| LeaseInfo {
                    key: k.clone(),
                    node: n.clone(),
                })
                .collect())
        }
        fn renew_every(&self) -> Duration {
            Duration::from_millis(20)
        }
        fn position(&self, provider: &str) -> Result<Option<u64>, StoreError> {
            Ok(self.shared.positions.lock().unwrap().get(provider).copied())
        }
        fn set_position(&self, provider: &str, position: u64) -> Result<(), StoreError> {
            self.shared
                .positions
                .lock()
                .unwrap()
                .insert(provider.into(), position);
            Ok(())
        }
    }

    fn provider() -> Arc<Provider> {
        Arc::new(Provider {
            name: "rhevm01".into(),
            kind: "RHEVM".into(),
            hostname: "rhevm01.example.com".into(),
            userid: "admin@internal".into(),
        })
    }

    /// A pipeline stand-in: takes every event and answers it queued.
    fn consume(mut rx: mpsc::Receiver<Caught>) -> Arc<Mutex<Vec<ProviderEvent>>> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        tokio::spawn(async move {
            while let Some(mut c) = rx.recv().await {
                g.lock().unwrap().push(c.event.clone());
                c.complete(Ok(()));
            }
        });
        got
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..3000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("waited 30 s for {what}");
    }

    fn jsonl_run(
        path: &std::path::Path,
        leases: &MemLeases,
    ) -> (Catchers, Arc<Mutex<Vec<ProviderEvent>>>) {
        let (tx, rx) = sink_pair(16);
        let c = CatcherConfig::Jsonl(JsonlConfig {
            path: path.display().to_string(),
            follow: false,
        })
        .build(provider(), Filter::default(), tx)
        .unwrap();
        let got = consume(rx);
        (
            Catchers::new(vec![c], "").with_leases(Arc::new(leases.clone())),
            got,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_jsonl_catcher_stores_its_position_and_resumes_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let lines: String = (1..=10)
            .map(|i| {
                format!(
                    "{{\"event_type\": \"E{i}\", \"timestamp\": \"2026-01-01T00:00:{i:02}Z\"}}\n"
                )
            })
            .collect();
        std::fs::write(&path, lines).unwrap();
        let leases = MemLeases::new("n1", Arc::default());

        let (catchers, got) = jsonl_run(&path, &leases);
        catchers.run(CancellationToken::new()).await.unwrap();
        let types: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event_type.clone())
            .collect();
        assert_eq!(types.len(), 10);
        assert_eq!(leases.position("rhevm01").unwrap(), Some(10));
        // The input ended: the lease is given up for another node.
        assert_eq!(leases.holder("catcher.rhevm01"), None);

        // Another run resumes after the stored line.
        leases.set_position("rhevm01", 6).unwrap();
        let (catchers, got) = jsonl_run(&path, &leases);
        catchers.run(CancellationToken::new()).await.unwrap();
        let types: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event_type.clone())
            .collect();
        assert_eq!(types, ["E7", "E8", "E9", "E10"]);
        assert_eq!(leases.position("rhevm01").unwrap(), Some(10));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_catcher_stops_when_its_lease_is_lost_and_resumes_where_it_stopped() {
        // No start: the clock starts at the first holder's now, stored.
        let cfg = SimulateConfig {
            seed: 7,
            rate: 0.0,
            count: None,
            vms: 5,
            start: None,
        };
        let (tx, rx) = sink_pair(16);
        let c = CatcherConfig::Simulate(cfg.clone())
            .build(provider(), Filter::default(), tx)
            .unwrap();
        let got = consume(rx);
        let stats = c.stats();
        let sent = move || stats.sent.load(Ordering::SeqCst) as usize;
        let leases = MemLeases::new("n1", Arc::default());
        let key = "catcher.rhevm01";
        let stop = CancellationToken::new();
        let run = tokio::spawn(
            Catchers::new(vec![c], "")
                .with_leases(Arc::new(leases.clone()))
                .run(stop.clone()),
        );
        wait_for("600 events", || got.lock().unwrap().len() >= 600).await;
        assert_eq!(leases.holder(key).as_deref(), Some("n1"));

        // Node n2 takes the lease (n1's renewal answers false).
        leases.give(key, Some("n2"));
        // A second refusal comes from the loop trying again, after the
        // catcher has stopped.
        wait_for("the catcher to stop", || leases.refused() >= 2).await;
        // Everything it sent comes before what it sends after a take-over.
        let stopped_at = sent();
        let stored = leases.position("rhevm01").unwrap().unwrap();
        assert!(
            stored > 0 && stored as usize <= stopped_at,
            "{stored} of {stopped_at}"
        );
        wait_for("a third refusal", || leases.refused() >= 3).await;
        assert_eq!(sent(), stopped_at, "no event without the lease");

        // n2 gives it up: n1 takes it again and resumes at the stored
        // position (the same events the seed makes from there).
        leases.give(key, None);
        wait_for("events after the take-over", || {
            got.lock().unwrap().len() >= stopped_at + 20
        })
        .await;
        let resumed: Vec<(String, Option<String>)> = got.lock().unwrap()
            [stopped_at..stopped_at + 20]
            .iter()
            .map(|e| (e.event_type.clone(), e.vm_name.clone()))
            .collect();
        let expected: Vec<(String, Option<String>)> = Simulator::for_provider(&cfg, &provider())
            .skip(stored as usize)
            .take(20)
            .map(|e| (e.event_type, e.vm_name))
            .collect();
        assert_eq!(resumed, expected);
        let first = got.lock().unwrap()[stopped_at].clone();
        assert_eq!(first.full_data["id"], (10_000 + stored + 1).to_string());
        // Its time is the one the first run gave it (1 ms an event at
        // rate 0), so a re-read event is de-duplicated.
        let anchor = leases.position("rhevm01#simulate-start").unwrap().unwrap();
        assert_eq!(
            first.timestamp,
            automate_core::time::iso8601((anchor + stored + 1) as i64)
        );
        assert_eq!(
            got.lock().unwrap()[0].timestamp,
            automate_core::time::iso8601(anchor as i64 + 1)
        );

        // A clean stop stores the position and releases the lease.
        stop.cancel();
        run.await.unwrap().unwrap();
        assert_eq!(leases.holder(key), None);
        assert!(leases.position("rhevm01").unwrap().unwrap() > stored);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_takes_a_dead_nodes_catcher_over_through_nats_and_resumes() {
        use automate_nats::lease::KvLeases;
        use automate_nats::testing::TestNats;
        let Some(t) = TestNats::new("catcher_takeover") else {
            return;
        };
        let ttl = Duration::from_secs(2);
        let cfg = SimulateConfig {
            seed: 11,
            rate: 0.0,
            count: None,
            vms: 5,
            start: Some("2026-01-01T00:00:00Z".into()),
        };
        let node = |nats| -> (
            tokio::task::JoinHandle<_>,
            Arc<Mutex<Vec<ProviderEvent>>>,
            CancellationToken,
        ) {
            let leases: Arc<dyn Leases> = KvLeases::open(nats, ttl).expect("leases");
            let (tx, rx) = sink_pair(16);
            let c = CatcherConfig::Simulate(cfg.clone())
                .build(provider(), Filter::default(), tx)
                .unwrap();
            let got = consume(rx);
            let stop = CancellationToken::new();
            let run = tokio::spawn(
                Catchers::new(vec![c], "")
                    .with_leases(leases)
                    .run(stop.clone()),
            );
            (run, got, stop)
        };
        let seq = |e: &ProviderEvent| -> u64 {
            e.full_data["id"].as_str().unwrap().parse::<u64>().unwrap() - 10_000
        };
        let (run1, got1, _stop1) = node(t.nats());
        wait_for("node1's first 1,000 events", || {
            got1.lock().unwrap().len() >= 1000
        })
        .await;
        let (run2, got2, stop2) = node(t.node("node2"));
        // node1 dies: no release, no last position; its lease runs out.
        run1.abort();
        let _ = run1.await;
        let caught1 = got1.lock().unwrap().len() as u64;
        assert_eq!(got2.lock().unwrap().len(), 0, "node2 waits for the lease");
        wait_for("node2 to take over", || got2.lock().unwrap().len() >= 20).await;
        let from = seq(&got2.lock().unwrap()[0]);
        // Resumed at a stored position (three stores at least were made
        // for 1,000 events), with no gap after what node1 caught.
        assert!(from > 3 * CHECKPOINT_EVENTS as u64, "resumed at {from}");
        assert!(
            from <= caught1 + 1,
            "resumed at {from} after {caught1} caught"
        );
        let resumed: Vec<(String, Option<String>)> = got2.lock().unwrap()[..20]
            .iter()
            .map(|e| (e.event_type.clone(), e.vm_name.clone()))
            .collect();
        let expected: Vec<(String, Option<String>)> = Simulator::for_provider(&cfg, &provider())
            .skip(from as usize - 1)
            .take(20)
            .map(|e| (e.event_type, e.vm_name))
            .collect();
        assert_eq!(resumed, expected);
        stop2.cancel();
        run2.await.unwrap().unwrap();
        let leases = KvLeases::open(t.nats(), ttl).unwrap();
        assert!(
            leases.held().unwrap().is_empty(),
            "released at the clean stop"
        );
        assert!(leases.position("rhevm01").unwrap().unwrap() >= from);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_without_answer_stops_the_catcher() {
        let cfg = SimulateConfig {
            seed: 3,
            rate: 0.0,
            count: None,
            vms: 5,
            start: Some("2026-01-01T00:00:00Z".into()),
        };
        let (tx, rx) = sink_pair(16);
        let c = CatcherConfig::Simulate(cfg)
            .build(provider(), Filter::default(), tx)
            .unwrap();
        let got = consume(rx);
        let stats = c.stats();
        let shared = Arc::new(Shared::default());
        let leases = MemLeases::new("n1", shared.clone());
        let stop = CancellationToken::new();
        let run = tokio::spawn(
            Catchers::new(vec![c], "")
                .with_leases(Arc::new(leases.clone()))
                .run(stop.clone()),
        );
        wait_for("300 events", || got.lock().unwrap().len() >= 300).await;
        // The lease store stops answering: the renewal times out, the
        // catcher stops, and the loop's next acquire hangs too.
        shared.hang.store(true, Ordering::SeqCst);
        wait_for("the catcher to stop", || {
            shared.hung.load(Ordering::SeqCst) >= 2
        })
        .await;
        let stopped_at = stats.sent.load(Ordering::SeqCst) as usize;
        let stored = leases.position("rhevm01").unwrap().unwrap();
        assert!(stored as usize <= stopped_at);
        // It answers again (this node still holds the key): the catcher
        // resumes at the stored position.
        shared.hang.store(false, Ordering::SeqCst);
        wait_for("events again", || got.lock().unwrap().len() > stopped_at).await;
        // From a stored position: not before the one read while it hung (a
        // store under way then may land once the lease store answers, this
        // node still holding the key), never past what was sent (no gap).
        let first = got.lock().unwrap()[stopped_at].full_data["id"].clone();
        let resumed = first
            .as_str()
            .and_then(|id| id.parse::<u64>().ok())
            .map(|id| id - 10_000 - 1)
            .unwrap();
        assert!(
            stored <= resumed && resumed as usize <= stopped_at,
            "resumed at {resumed}, stored {stored}, sent {stopped_at}"
        );
        stop.cancel();
        run.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_http_catcher_takes_no_lease() {
        let (tx, _rx) = sink_pair(16);
        let c = CatcherConfig::Http(Default::default())
            .build(provider(), Filter::default(), tx)
            .unwrap();
        let leases = MemLeases::new("n1", Arc::default());
        let stop = CancellationToken::new();
        let run = tokio::spawn(
            Catchers::new(vec![c], "t")
                .with_leases(Arc::new(leases.clone()))
                .run(stop.clone()),
        );
        tokio::task::yield_now().await;
        stop.cancel();
        run.await.unwrap().unwrap();
        assert!(leases.held().unwrap().is_empty());
    }
}
