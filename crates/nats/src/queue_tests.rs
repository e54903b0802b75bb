//! The JetStream queue against the NATS this machine runs (skipped without
//! it, see [`crate::testing`]).

use super::*;
use crate::lease::KvLeases;
use crate::testing::TestNats;
use std::collections::HashSet;

fn provider(name: &str) -> Arc<Provider> {
    Arc::new(Provider {
        name: name.into(),
        kind: "VC".into(),
        hostname: "vc.example.com".into(),
        userid: "admin".into(),
    })
}

fn event(vm: &str, i: usize) -> ProviderEvent {
    ProviderEvent {
        event_type: "VmPoweredOnEvent".into(),
        timestamp: format!("2026-12-06T10:00:00.{i:06}Z"),
        chain_id: Some(i.to_string()),
        vm_ems_ref: Some(vm.into()),
        vm_name: Some(format!("name-{vm}")),
        host_ems_ref: None,
        host_name: None,
        full_data: serde_json::json!({"n": i}),
    }
}

fn batch(p: &Arc<Provider>, vms: &[&str], from: usize, n: usize) -> Vec<CaughtEvent> {
    (from..from + n)
        .map(|i| (p.clone(), event(vms[i % vms.len()], i), 1_000 + i as u64))
        .collect()
}

fn opts(partitions: u32, ack_wait: Duration, max_deliver: i64) -> QueueOptions {
    QueueOptions {
        partitions,
        ack_wait,
        max_deliver,
    }
}

fn open(nats: Arc<Nats>, ttl: Duration, o: QueueOptions) -> Arc<JetStreamQueue> {
    let leases = KvLeases::open(nats.clone(), ttl).expect("leases");
    JetStreamQueue::open(nats, leases, o).expect("the queue")
}

/// Claims until `want` events came (or 15 s passed).
fn claim_n(q: &JetStreamQueue, want: usize) -> Vec<ClaimedEvent> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && start.elapsed() < Duration::from_secs(15) {
        let c = q.claim(want - got.len()).expect("claim");
        if c.events.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        got.extend(c.events);
    }
    got
}

fn server_depth(q: &JetStreamQueue) -> u64 {
    q.shared.refresh_depth_now();
    q.shared.depth.value.load(Ordering::SeqCst)
}

/// The stream's depth once it has reached `want` (acks are sent without
/// waiting for the server's answer, so it may take a moment), or what it
/// is after 10 s.
fn depth_reaching(q: &JetStreamQueue, want: u64) -> u64 {
    let start = Instant::now();
    loop {
        let d = server_depth(q);
        if d == want || start.elapsed() > Duration::from_secs(10) {
            return d;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn partitions_are_stable_and_keep_a_vm_together() {
    // FNV-1a is fixed: these values hold in every process and build.
    assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(&["a"]), fnv1a(&["a"]));
    assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
    let p = provider("vc1");
    let a = partition_of(&p, &event("vm-1", 1), 16);
    for i in 0..50 {
        assert_eq!(partition_of(&p, &event("vm-1", i), 16), a);
    }
    let spread: HashSet<u32> = (0..200)
        .map(|i| partition_of(&p, &event(&format!("vm-{i}"), i), 16))
        .collect();
    assert!(spread.len() > 8, "{spread:?}");
    let mut host = event("x", 1);
    host.vm_ems_ref = None;
    host.host_ems_ref = Some("host-1".into());
    assert!(partition_of(&p, &host, 16) < 16);
    assert_eq!(
        dedup_key(&p, &event("vm-1", 7)),
        "vc1|VmPoweredOnEvent|2026-12-06T10:00:00.000007Z|7|vm-1"
    );
    assert_eq!(msg_id("a|b"), "a|b");
    assert!(msg_id("a\r\nb").starts_with("fnv:"));
    assert!(msg_id("ü").starts_with("fnv:"));
}

#[test]
fn a_released_event_waits_longer_after_each_delivery_up_to_the_ack_wait() {
    let s = Duration::from_secs;
    let wait = s(30);
    let delays: Vec<Duration> = (1..=7).map(|d| release_delay(d, wait)).collect();
    assert_eq!(delays, vec![s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
    // The default max_deliver (5): 31 s of waits before the 6th delivery,
    // which goes to the dead letters.
    assert_eq!(
        (1..=5).map(|d| release_delay(d, wait)).sum::<Duration>(),
        s(31)
    );
    assert_eq!(release_delay(0, wait), s(1));
    assert_eq!(release_delay(i64::MAX, wait), wait);
    assert_eq!(release_delay(3, s(1)), s(1));
}

#[test]
fn the_same_events_queued_twice_are_stored_once_and_ack_removes_them() {
    let Some(t) = TestNats::new("queue_dedup") else {
        return;
    };
    let q = open(
        t.nats(),
        Duration::from_secs(30),
        opts(4, Duration::from_secs(30), 5),
    );
    assert_eq!(q.held_partitions(), vec![0, 1, 2, 3]);
    let p = provider("vc1");
    let events = batch(&p, &["vm-1", "vm-2", "vm-3"], 0, 10);
    let ids = q.enqueue_caught(&events).unwrap();
    let again = q.enqueue_owned(events.clone()).unwrap();
    assert_eq!(ids, again, "the duplicates answer with the first ids");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 10);
    assert_eq!(server_depth(&q), 10);
    let claimed = claim_n(&q, 10);
    assert_eq!(claimed.len(), 10);
    assert!(claimed.iter().all(|c| c.attempts == 1));
    let mut got: Vec<u64> = claimed.iter().map(|c| c.id).collect();
    got.sort_unstable();
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(claimed[0].provider.name, "vc1");
    assert_eq!(claimed[0].caught_us, 1_000);
    // Nothing more to claim; still queued until acked.
    assert!(q.claim(10).unwrap().events.is_empty());
    assert_eq!(server_depth(&q), 10);
    assert_eq!(q.ack(&got).unwrap(), 10);
    assert_eq!(depth_reaching(&q, 0), 0);
    assert_eq!(q.depth(), 0);
    assert!(q.claim(10).unwrap().events.is_empty());
    assert_eq!(q.release_leases().unwrap(), 0);
}

#[test]
fn a_released_event_comes_back_after_its_delay_one_delivery_later() {
    let Some(t) = TestNats::new("queue_release") else {
        return;
    };
    let q = open(
        t.nats(),
        Duration::from_secs(30),
        opts(2, Duration::from_secs(1), 10),
    );
    let p = provider("vc1");
    let ids = q.enqueue_caught(&batch(&p, &["vm-1"], 0, 1)).unwrap();
    let first = claim_n(&q, 1);
    assert_eq!((first[0].id, first[0].attempts), (ids[0], 1));
    q.release(&[ids[0]]);
    let second = claim_n(&q, 1);
    assert_eq!((second[0].id, second[0].attempts), (ids[0], 2));
    // Released again (a longer delay): back once more. (Left unacked, it
    // would be delivered again after the ack wait, but not handed out
    // again on this node while in flight here: see
    // `an_event_delivered_again_while_in_flight_is_not_handed_out_twice`.)
    q.release(&[ids[0]]);
    let third = claim_n(&q, 1);
    assert_eq!(third.len(), 1, "back after its delay");
    assert_eq!((third[0].id, third[0].attempts), (ids[0], 3));
    assert_eq!(q.ack(&[ids[0]]).unwrap(), 1);
    assert_eq!(depth_reaching(&q, 0), 0);
}

#[test]
fn an_event_delivered_too_often_is_dead_lettered_and_can_be_retried() {
    let Some(t) = TestNats::new("queue_dead") else {
        return;
    };
    let q = open(
        t.nats(),
        Duration::from_secs(30),
        opts(2, Duration::from_secs(30), 2),
    );
    let p = provider("vc1");
    let ids = q.enqueue_caught(&batch(&p, &["vm-1"], 0, 1)).unwrap();
    for attempt in 1..=2 {
        let c = claim_n(&q, 1);
        assert_eq!((c[0].id, c[0].attempts), (ids[0], attempt));
        q.release(&[ids[0]]);
    }
    // The third delivery goes to the dead letters.
    let start = Instant::now();
    let mut dead = Vec::new();
    while dead.is_empty() && start.elapsed() < Duration::from_secs(10) {
        assert!(q.claim(5).unwrap().events.is_empty());
        dead = q.dead_letters(10).unwrap();
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].provider.name, "vc1");
    assert_eq!(dead[0].event, event("vm-1", 0));
    assert_eq!(dead[0].deliveries, 2);
    assert!(dead[0].reason.contains("2 times"), "{}", dead[0].reason);
    assert!(dead[0].dead_on.ends_with('Z'));
    assert_eq!(depth_reaching(&q, 0), 0);
    // The command line's view (no queue, no partition taken) sees the same.
    let cli = DeadLetters::open(t.node("cli"), 2).unwrap();
    assert_eq!(cli.list(10).unwrap(), dead);
    assert!(cli.list(0).unwrap().is_empty());
    // Retried: queued again (the old Msg-Id does not drop it), one
    // attempt, and gone from the dead letters.
    assert_eq!(q.retry_dead_letters(&[dead[0].id, 999_999]).unwrap(), 1);
    assert!(q.dead_letters(10).unwrap().is_empty());
    let back = claim_n(&q, 1);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].attempts, 1);
    assert_eq!(back[0].event, event("vm-1", 0));
    assert_eq!(q.ack(&[back[0].id]).unwrap(), 1);
}

#[test]
fn an_unreadable_message_is_reported_and_dead_lettered() {
    let Some(t) = TestNats::new("queue_unreadable") else {
        return;
    };
    let nats = t.nats();
    let q = open(
        nats.clone(),
        Duration::from_secs(30),
        opts(1, Duration::from_secs(30), 5),
    );
    let js = nats.jetstream().clone();
    let subject = format!("{}.events.0", nats.prefix());
    nats.block(async move { js.publish(subject, "not json".into()).await.unwrap().await })
        .unwrap()
        .unwrap();
    let start = Instant::now();
    let mut claim = Claim::default();
    while claim.unreadable.is_empty() && start.elapsed() < Duration::from_secs(10) {
        claim = q.claim(5).unwrap();
    }
    assert_eq!(claim.unreadable.len(), 1);
    assert!(claim.events.is_empty());
    let dead = q.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.event_type, "(unreadable)");
    assert_eq!(dead[0].event.full_data, serde_json::json!("not json"));
    assert!(dead[0].reason.starts_with("unreadable"));
    assert_eq!(depth_reaching(&q, 0), 0);
}

#[test]
fn the_events_of_one_vm_come_out_in_order() {
    let Some(t) = TestNats::new("queue_order") else {
        return;
    };
    let q = open(
        t.nats(),
        Duration::from_secs(30),
        opts(4, Duration::from_secs(30), 5),
    );
    let p = provider("vc1");
    let vms = ["vm-1", "vm-2", "vm-3", "vm-4", "vm-5"];
    for b in 0..5 {
        q.enqueue_caught(&batch(&p, &vms, b * 40, 40)).unwrap();
    }
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    let mut n = 0;
    let start = Instant::now();
    while n < 200 && start.elapsed() < Duration::from_secs(15) {
        // Small claims: the order must hold from one claim to the next.
        let c = q.claim(7).unwrap();
        let ids: Vec<u64> = c.events.iter().map(|e| e.id).collect();
        for e in c.events {
            let i: usize = e.event.chain_id.as_deref().unwrap_or("0").parse().unwrap();
            seen.entry(e.event.vm_ems_ref.clone().unwrap_or_default())
                .or_default()
                .push(i);
            n += 1;
        }
        q.ack(&ids).unwrap();
    }
    assert_eq!(n, 200);
    for (vm, chain) in &seen {
        let mut sorted = chain.clone();
        sorted.sort_unstable();
        assert_eq!(chain, &sorted, "{vm}");
        assert_eq!(chain.len(), 40, "{vm}");
    }
}

#[test]
fn two_nodes_split_the_partitions_and_one_takes_over_the_others() {
    let Some(t) = TestNats::new("queue_nodes") else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let o = opts(4, Duration::from_secs(30), 5);
    let q1 = open(t.nats(), ttl, o);
    assert_eq!(
        q1.held_partitions().len(),
        4,
        "alone, node1 holds every partition"
    );
    let q2 = open(t.node("node2"), ttl, o);
    // Both renew (and rebalance) on their own every TTL/3: node1 gives up
    // two partitions (nothing is in flight), node2 takes them.
    let start = Instant::now();
    while (q1.held_partitions().len(), q2.held_partitions().len()) != (2, 2)
        && start.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (h1, h2) = (q1.held_partitions(), q2.held_partitions());
    assert_eq!((h1.len(), h2.len()), (2, 2), "{h1:?} {h2:?}");
    assert!(h1.iter().all(|p| !h2.contains(p)), "{h1:?} {h2:?}");

    // Events go to both; nobody claims an event the other claimed.
    let p = provider("vc1");
    let vms: Vec<String> = (0..40).map(|i| format!("vm-{i}")).collect();
    let vms: Vec<&str> = vms.iter().map(|s| s.as_str()).collect();
    let ids = q1.enqueue_caught(&batch(&p, &vms, 0, 200)).unwrap();
    let mut by1 = HashSet::new();
    let mut by2 = HashSet::new();
    let start = Instant::now();
    while by1.len() + by2.len() < 200 && start.elapsed() < Duration::from_secs(15) {
        for (q, mine) in [(&q1, &mut by1), (&q2, &mut by2)] {
            for e in q.claim(16).unwrap().events {
                assert!(mine.insert(e.id), "claimed twice by one node");
            }
        }
    }
    assert_eq!(by1.len() + by2.len(), 200);
    assert!(by1.is_disjoint(&by2));
    assert!(!by1.is_empty() && !by2.is_empty());
    let all: HashSet<u64> = by1.union(&by2).copied().collect();
    assert_eq!(all, ids.iter().copied().collect::<HashSet<_>>());
    q1.ack(&by1.iter().copied().collect::<Vec<_>>()).unwrap();
    q2.ack(&by2.iter().copied().collect::<Vec<_>>()).unwrap();
    assert_eq!(depth_reaching(&q1, 0), 0);

    // node1 dies (stops renewing, gives nothing up): after the TTL node2
    // holds every partition.
    drop(q1);
    let start = Instant::now();
    while q2.held_partitions().len() < 4 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(q2.held_partitions(), vec![0, 1, 2, 3]);
    let ids = q2.enqueue_caught(&batch(&p, &vms, 200, 40)).unwrap();
    let got = claim_n(&q2, 40);
    assert_eq!(got.len(), 40);
    assert_eq!(q2.ack(&ids).unwrap(), 40);

    // A clean stop hands over at once.
    let q3 = open(t.node("node3"), ttl, o);
    q2.close();
    q3.rebalance();
    assert_eq!(q3.held_partitions(), vec![0, 1, 2, 3]);
}

/// Publish + claim + ack of 20,000 events, timed (a measurement, not a
/// check of speed: `cargo test -p automate-nats --lib throughput --
/// --ignored --nocapture`).
#[test]
#[ignore]
fn throughput_of_20000_events() {
    let Some(t) = TestNats::new("queue_throughput") else {
        return;
    };
    let n = 20_000;
    let q = open(
        t.nats(),
        Duration::from_secs(30),
        opts(8, Duration::from_secs(60), 5),
    );
    let p = provider("vc1");
    let vms: Vec<String> = (0..500).map(|i| format!("vm-{i}")).collect();
    let vms: Vec<&str> = vms.iter().map(|s| s.as_str()).collect();
    let events = batch(&p, &vms, 0, n);
    let start = Instant::now();
    for chunk in events.chunks(500) {
        q.enqueue_caught(chunk).unwrap();
    }
    let published = start.elapsed();
    let start = Instant::now();
    let mut done = 0;
    let mut claims = 0;
    while done < n && start.elapsed() < Duration::from_secs(300) {
        let c = q.claim(256).unwrap();
        claims += 1;
        let ids: Vec<u64> = c.events.iter().map(|e| e.id).collect();
        done += q.ack(&ids).unwrap();
    }
    let consumed = start.elapsed();
    assert_eq!(done, n);
    assert_eq!(depth_reaching(&q, 0), 0);
    eprintln!(
        "{n} events: publish {:.2} s ({:.0}/s, batches of 500); claim+ack {:.2} s ({:.0}/s, {claims} claims of up to 256); total {:.0}/s",
        published.as_secs_f64(),
        n as f64 / published.as_secs_f64(),
        consumed.as_secs_f64(),
        n as f64 / consumed.as_secs_f64(),
        n as f64 / (published + consumed).as_secs_f64()
    );
}

#[test]
fn with_the_sole_nodes_leases_one_process_holds_every_partition() {
    let Some(t) = TestNats::new("queue_sole") else {
        return;
    };
    let leases = Arc::new(automate_vmdb::lease::SoleNode::new("node1"));
    let q = JetStreamQueue::open(t.nats(), leases, opts(3, Duration::from_secs(30), 5)).unwrap();
    assert_eq!(q.held_partitions(), vec![0, 1, 2]);
    let p = provider("vc1");
    let ids = q
        .enqueue_caught(&batch(&p, &["a", "b", "c", "d"], 0, 12))
        .unwrap();
    let got = claim_n(&q, 12);
    assert_eq!(got.len(), 12);
    assert_eq!(q.ack(&ids).unwrap(), 12);
    q.close();
    assert!(q.held_partitions().is_empty());
}

#[test]
fn a_claim_never_hands_out_more_than_asked() {
    let Some(t) = TestNats::new("queue_limit") else {
        return;
    };
    let q = open(
        t.nats(),
        Duration::from_secs(30),
        opts(4, Duration::from_secs(30), 5),
    );
    let p = provider("vc1");
    let vms: Vec<String> = (0..20).map(|i| format!("vm-{i}")).collect();
    let vms: Vec<&str> = vms.iter().map(|s| s.as_str()).collect();
    q.enqueue_caught(&batch(&p, &vms, 0, 30)).unwrap();
    let mut got = HashSet::new();
    let start = Instant::now();
    while got.len() < 30 && start.elapsed() < Duration::from_secs(15) {
        for limit in [1, 2, 3] {
            let c = q.claim(limit).unwrap();
            assert!(c.events.len() <= limit, "{} > {limit}", c.events.len());
            for e in c.events {
                assert!(got.insert(e.id));
            }
        }
    }
    assert_eq!(got.len(), 30);
    assert_eq!(q.ack(&got.into_iter().collect::<Vec<_>>()).unwrap(), 30);
}

#[test]
fn a_node_that_lost_a_partitions_lease_stops_claiming_from_it() {
    let Some(t) = TestNats::new("queue_lost") else {
        return;
    };
    let ttl = Duration::from_secs(30);
    let q1 = open(t.nats(), ttl, opts(2, Duration::from_secs(30), 5));
    assert_eq!(q1.held_partitions(), vec![0, 1]);
    // Its lease of partition 0 vanishes (as after a long pause past the
    // TTL) and node2 takes it.
    let nats = t.nats();
    let bucket = format!("{}-leases", nats.prefix());
    let js = nats.jetstream().clone();
    nats.block(async move {
        let kv = js.get_key_value(bucket).await.unwrap();
        kv.delete("partition.0").await.unwrap();
    })
    .unwrap();
    let node2 = KvLeases::open(t.node("node2"), ttl).unwrap();
    assert!(node2.acquire("partition.0").unwrap());
    q1.rebalance();
    assert_eq!(q1.held_partitions(), vec![1]);
}

/// [`KvLeases`] whose `held()` fails while `fail_held` is set (the KV
/// bucket unreachable for a listing), whose `acquire` of the keys in
/// `fail_acquire` fails, and whose next `acquire` of the key `stall` names
/// says so on its first channel and waits for a word on its second (a
/// renewal stuck on the network).
#[derive(Debug, Default)]
struct Flaky {
    inner: Option<Arc<KvLeases>>,
    fail_held: AtomicBool,
    fail_acquire: Mutex<Vec<String>>,
    #[allow(clippy::type_complexity)]
    stall: Mutex<
        Option<(
            String,
            std::sync::mpsc::Sender<()>,
            std::sync::mpsc::Receiver<()>,
        )>,
    >,
}

impl Flaky {
    fn over(inner: Arc<KvLeases>) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: Some(inner),
            ..Default::default()
        })
    }

    fn kv(&self) -> &KvLeases {
        self.inner.as_deref().expect("the leases wrapped")
    }

    /// Arms the stall of the next `acquire(key)`: (reached, go on).
    fn stall(&self, key: &str) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (reached_tx, reached_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        *lock(&self.stall) = Some((key.to_string(), reached_tx, go_rx));
        (reached_rx, go_tx)
    }
}

impl Leases for Flaky {
    fn node(&self) -> &str {
        self.kv().node()
    }
    fn acquire(&self, key: &str) -> Result<bool, StoreError> {
        let stalled = {
            let mut stall = lock(&self.stall);
            match stall.as_ref() {
                Some((k, _, _)) if k == key => stall.take(),
                _ => None,
            }
        };
        if let Some((_, reached, go)) = stalled {
            let _ = reached.send(());
            let _ = go.recv();
        }
        if lock(&self.fail_acquire).iter().any(|k| k == key) {
            return Err(StoreError::Backend("the renewal fails (test)".into()));
        }
        self.kv().acquire(key)
    }
    fn release(&self, key: &str) -> Result<(), StoreError> {
        self.kv().release(key)
    }
    fn held(&self) -> Result<Vec<automate_vmdb::lease::LeaseInfo>, StoreError> {
        if self.fail_held.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the listing fails (test)".into()));
        }
        self.kv().held()
    }
    fn renew_every(&self) -> Duration {
        self.kv().renew_every()
    }
    fn ttl(&self) -> Duration {
        Leases::ttl(self.kv())
    }
    fn position(&self, provider: &str) -> Result<Option<u64>, StoreError> {
        self.kv().position(provider)
    }
    fn set_position(&self, provider: &str, position: u64) -> Result<(), StoreError> {
        self.kv().set_position(provider, position)
    }
}

/// Runs `f` on a thread of its own and waits up to 30 s for it: a
/// deadlock fails the test instead of hanging it.
fn within_30s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what}: no answer in 30 s (a deadlock)"))
}

#[test]
fn a_failed_listing_of_the_leases_leaves_the_queue_answering() {
    let Some(t) = TestNats::new("queue_held_fails") else {
        return;
    };
    let leases = Flaky::over(KvLeases::open(t.nats(), Duration::from_secs(30)).unwrap());
    let q = JetStreamQueue::open(
        t.nats(),
        leases.clone(),
        opts(2, Duration::from_secs(30), 5),
    )
    .unwrap();
    assert_eq!(q.held_partitions(), vec![0, 1]);
    leases.fail_held.store(true, Ordering::SeqCst);
    let q2 = q.clone();
    within_30s("a rebalance whose listing fails", move || q2.rebalance());
    // Renewed (the renewals do not need the listing): still held, and
    // claims answer.
    assert_eq!(q.held_partitions(), vec![0, 1]);
    let p = provider("vc1");
    let ids = q
        .enqueue_caught(&batch(&p, &["vm-1", "vm-2"], 0, 4))
        .unwrap();
    let q2 = q.clone();
    let got = within_30s("a claim after it", move || claim_n(&q2, 4));
    assert_eq!(got.len(), 4);
    assert_eq!(q.ack(&ids).unwrap(), 4);
}

#[test]
fn a_failed_renewal_stops_the_claims_at_once_not_at_the_end_of_the_rebalance() {
    let Some(t) = TestNats::new("queue_renew_fails") else {
        return;
    };
    let leases = Flaky::over(KvLeases::open(t.nats(), Duration::from_secs(30)).unwrap());
    let q = JetStreamQueue::open(
        t.nats(),
        leases.clone(),
        opts(2, Duration::from_secs(30), 5),
    )
    .unwrap();
    assert_eq!(q.held_partitions(), vec![0, 1]);
    // Partition 0's renewal fails; partition 1's (renewed after it) hangs.
    lock(&leases.fail_acquire).push("partition.0".into());
    let (reached, go) = leases.stall("partition.1");
    let q2 = q.clone();
    let rebalance = std::thread::spawn(move || q2.rebalance());
    reached
        .recv_timeout(Duration::from_secs(30))
        .expect("the rebalance reached partition 1");
    // Mid-rebalance: partition 0 is no longer claimed from.
    assert_eq!(q.held_partitions(), vec![1]);
    go.send(()).unwrap();
    rebalance.join().unwrap();
    assert_eq!(q.held_partitions(), vec![1]);
}

#[test]
fn a_renewal_stuck_past_the_ttl_less_one_interval_stops_the_claims() {
    let Some(t) = TestNats::new("queue_renew_stuck") else {
        return;
    };
    // TTL 2 s, renewed every 2/3 s: claimed from for 4/3 s after a renewal.
    let leases = Flaky::over(KvLeases::open(t.nats(), Duration::from_secs(2)).unwrap());
    let q = JetStreamQueue::open(
        t.nats(),
        leases.clone(),
        opts(2, Duration::from_secs(30), 5),
    )
    .unwrap();
    assert_eq!(
        q.shared.fresh,
        Duration::from_secs(2) - Duration::from_secs(2) / 3
    );
    assert_eq!(q.held_partitions(), vec![0, 1]);
    let p = provider("vc1");
    let ids = q
        .enqueue_caught(&batch(&p, &["vm-1", "vm-2", "vm-3"], 0, 6))
        .unwrap();
    // The renewing thread's next renewal of partition 0 hangs.
    let (reached, go) = leases.stall("partition.0");
    reached
        .recv_timeout(Duration::from_secs(30))
        .expect("the renewing thread reached partition 0");
    let start = Instant::now();
    while !q.held_partitions().is_empty() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(q.held_partitions().is_empty(), "nothing renewed lately");
    assert!(
        q.claim(10).unwrap().events.is_empty(),
        "no claim while stale"
    );
    // Renewed again: claimed from again.
    go.send(()).unwrap();
    let got = claim_n(&q, 6);
    assert_eq!(got.len(), 6);
    assert_eq!(q.ack(&ids).unwrap(), 6);
}

#[test]
fn a_draining_partition_whose_events_are_never_acked_is_given_up_after_the_ack_wait() {
    let Some(t) = TestNats::new("queue_drain_stuck") else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let o = opts(4, Duration::from_secs(1), 50);
    let q1 = open(t.nats(), ttl, o);
    assert_eq!(q1.held_partitions(), vec![0, 1, 2, 3]);
    let p = provider("vc1");
    let vms: Vec<String> = (0..40).map(|i| format!("vm-{i}")).collect();
    let vms: Vec<&str> = vms.iter().map(|s| s.as_str()).collect();
    let events = batch(&p, &vms, 0, 40);
    q1.enqueue_caught(&events).unwrap();
    // Claimed by node1 from every partition, never acked nor given back.
    let claimed = claim_n(&q1, 40);
    assert_eq!(claimed.len(), 40);
    let busy: HashSet<u32> = lock(&q1.shared.inflight)
        .values()
        .map(|f| f.partition)
        .collect();
    assert_eq!(busy.len(), 4);
    // node2 comes: node1 drains two partitions, and gives them up once
    // the ack wait has passed although their events are still in flight.
    let q2 = open(t.node("node2"), ttl, o);
    let start = Instant::now();
    while (q1.held_partitions().len(), q2.held_partitions().len()) != (2, 2)
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (h1, h2) = (q1.held_partitions(), q2.held_partitions());
    assert_eq!((h1.len(), h2.len()), (2, 2), "{h1:?} {h2:?}");
    // node1 keeps no entry of the partitions it gave up.
    assert!(lock(&q1.shared.inflight)
        .values()
        .all(|f| h1.contains(&f.partition)));
    // node2 gets their events again (delivered once more).
    let theirs: Vec<u64> = claimed
        .iter()
        .filter(|c| h2.contains(&partition_of(&c.provider, &c.event, 4)))
        .map(|c| c.id)
        .collect();
    assert!(!theirs.is_empty());
    let again = claim_n(&q2, theirs.len());
    let mut got: Vec<u64> = again.iter().map(|c| c.id).collect();
    got.sort_unstable();
    let mut want = theirs.clone();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(again.iter().all(|c| c.attempts >= 2));
    assert_eq!(q2.ack(&got).unwrap(), got.len());
}

#[test]
fn an_event_delivered_again_while_in_flight_is_not_handed_out_twice() {
    let Some(t) = TestNats::new("queue_redelivered") else {
        return;
    };
    let q = open(
        t.nats(),
        Duration::from_secs(30),
        opts(1, Duration::from_secs(1), 50),
    );
    let p = provider("vc1");
    let ids = q.enqueue_caught(&batch(&p, &["vm-1"], 0, 1)).unwrap();
    let first = claim_n(&q, 1);
    assert_eq!((first[0].id, first[0].attempts), (ids[0], 1));
    // Its handling outlasts the ack wait: the server delivers it again
    // (seen in the consumer's count of deliveries), and this node's claims
    // skip it.
    let start = Instant::now();
    let mut redelivered = false;
    while !redelivered && start.elapsed() < Duration::from_secs(30) {
        assert!(q.claim(5).unwrap().events.is_empty(), "handed out twice");
        let mut c = q.shared.consumers[0].clone();
        let info = q
            .shared
            .nats
            .block(async move { c.info().await.map(|i| i.num_redelivered) })
            .unwrap()
            .unwrap();
        redelivered = info > 0;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(redelivered, "delivered again after the ack wait");
    assert!(q.claim(5).unwrap().events.is_empty(), "handed out twice");
    assert_eq!(lock(&q.shared.inflight).len(), 1);
    // The first delivery's ack still removes it.
    assert_eq!(q.ack(&[ids[0]]).unwrap(), 1);
    assert_eq!(depth_reaching(&q, 0), 0);
}

#[test]
fn a_closing_node_gives_its_events_in_flight_back_at_once() {
    let Some(t) = TestNats::new("queue_close_naks") else {
        return;
    };
    let ttl = Duration::from_secs(30);
    // An ack wait far longer than the wait below: what comes back came
    // back through the naks.
    let o = opts(2, Duration::from_secs(600), 5);
    let q1 = open(t.nats(), ttl, o);
    let p = provider("vc1");
    let ids = q1
        .enqueue_caught(&batch(&p, &["vm-1", "vm-2", "vm-3"], 0, 9))
        .unwrap();
    let claimed = claim_n(&q1, 9);
    assert_eq!(claimed.len(), 9);
    q1.close();
    assert!(lock(&q1.shared.inflight).is_empty());
    let q2 = open(t.node("node2"), ttl, o);
    assert_eq!(q2.held_partitions(), vec![0, 1]);
    let again = claim_n(&q2, 9);
    assert_eq!(again.len(), 9, "given back, not left to the ack wait");
    assert!(again.iter().all(|c| c.attempts == 2));
    // Each VM's events still in order.
    let mut by_vm: HashMap<String, Vec<u64>> = HashMap::new();
    for c in &again {
        by_vm
            .entry(c.event.vm_ems_ref.clone().unwrap_or_default())
            .or_default()
            .push(c.id);
    }
    for (vm, seqs) in &by_vm {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{vm}: {seqs:?}");
    }
    assert_eq!(q2.ack(&ids).unwrap(), 9);
}

#[test]
fn fewer_partitions_than_the_stream_has_consumers_for_are_refused() {
    let Some(t) = TestNats::new("queue_fewer_parts") else {
        return;
    };
    let ttl = Duration::from_secs(30);
    let q = open(t.nats(), ttl, opts(4, Duration::from_secs(30), 5));
    let leases = KvLeases::open(t.node("node2"), ttl).unwrap();
    let e = JetStreamQueue::open(
        t.node("node2"),
        leases.clone(),
        opts(2, Duration::from_secs(30), 5),
    )
    .expect_err("2 partitions where 4 exist");
    assert!(
        matches!(
            e,
            NatsError::TooFewPartitions {
                configured: 2,
                found: 4,
                ..
            }
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("cluster.partitions") && text.contains('4'),
        "{text}"
    );
    // The same count, or more, is taken.
    let q2 =
        JetStreamQueue::open(t.node("node2"), leases, opts(4, Duration::from_secs(30), 5)).unwrap();
    q2.close();
    q.close();
}
