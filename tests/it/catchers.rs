//! Event catchers and `automate.yaml`: the example config loads; config
//! errors name file and line; the simulator is deterministic and keeps VM
//! power states consistent; the jsonl catcher skips bad lines by number and
//! filtered types; the HTTP endpoint (real server, real client) accepts
//! posts only after the pipeline acks, and refuses bad ones with JSON errors
//! without sending anything; the AMQP catcher (real RabbitMQ at
//! 127.0.0.1:5672, or `AUTOMATE_TEST_AMQP_ADDR`, when reachable; mandatory
//! with `AUTOMATE_TEST_AMQP=1`)
//! loses and duplicates nothing across a restart and requeues what the
//! pipeline refuses.

use automate_events::catchers::http::{self, HttpState};
use automate_events::catchers::simulate::{power_phase, SimulateConfig, Simulator};
use automate_events::catchers::{
    amqp::AmqpConfig, jsonl::JsonlConfig, oslo, sink_pair, Catcher, CatcherConfig, CatcherError,
    CatcherStats, Caught, Filter,
};
use automate_events::config::{Config, ConfigError, LogFormat, WhenFull};
use automate_events::{Provider, ProviderEvent};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn rhev() -> Arc<Provider> {
    Arc::new(Provider {
        name: "rhevm01".into(),
        kind: "RHEVM".into(),
        hostname: "rhevm01".into(),
        userid: "admin@internal".into(),
    })
}

fn openstack() -> Arc<Provider> {
    Arc::new(Provider {
        name: "rhosp-cont".into(),
        kind: "OPENSTACK".into(),
        hostname: "rhosp-cont".into(),
        userid: "admin".into(),
    })
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/catchers")
        .join(rel)
        .display()
        .to_string()
}

/// Everything in the channel right now.
fn drain(rx: &mut mpsc::Receiver<Caught>) -> Vec<Caught> {
    let mut out = Vec::new();
    while let Ok(c) = rx.try_recv() {
        out.push(c);
    }
    out
}

/// Waits until `cond` holds, checking every 20 ms for at most `limit`;
/// whether it did (a handshake with a deadline, not a guess of how long
/// something takes).
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A catcher running on a task of its own, with its stats and its stop.
struct Running {
    stats: Arc<CatcherStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), CatcherError>>,
}

impl Running {
    /// Runs `catcher` on a task of its own.
    fn start(catcher: Catcher) -> Running {
        let stats = catcher.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(catcher.run(stop.clone()));
        Running { stats, stop, task }
    }

    /// Tells it to stop and waits until it has, without an error.
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Tells it to stop and waits at most `limit` (`what` names the stop
    /// that did not come) until it has, without an error.
    async fn stop_within(self, limit: Duration, what: &str) {
        self.stop.cancel();
        tokio::time::timeout(limit, self.task)
            .await
            .expect(what)
            .unwrap()
            .unwrap();
    }
}

/// The next event from `rx`, within 10 s (`what` names it in the failure).
async fn next_within(rx: &mut mpsc::Receiver<Caught>, what: &str) -> Caught {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect(what)
        .unwrap()
}

// ---------------------------------------------------------------- config

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("automate.example.yaml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.providers.len(), 2);
    let r = cfg.provider("rhevm01").expect("rhevm01");
    assert_eq!(r.provider.kind, "RHEVM");
    assert_eq!(r.provider.userid, "admin@internal");
    assert_eq!(r.filter, vec!["USER_INITIATED_SHUTDOWN_VM".to_string()]);
    match &r.catcher {
        CatcherConfig::Simulate(s) => {
            assert_eq!((s.seed, s.rate, s.vms), (42, 2.0, 10));
        }
        other => panic!("{other:?}"),
    }
    let o = cfg.provider("rhosp-cont").expect("rhosp-cont");
    assert_eq!(o.provider.kind, "OPENSTACK");
    // Relative paths are relative to the config file.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        o.catcher,
        CatcherConfig::Jsonl(JsonlConfig {
            path: root.join("events/rhosp-cont.jsonl").display().to_string(),
            follow: true
        })
    );
    assert_eq!(cfg.workers, 2);
    assert_eq!(cfg.queue.when_full, WhenFull::Block);
    assert_eq!(cfg.api.listen, "127.0.0.1:3000");
    assert_eq!(cfg.log.format, LogFormat::Text);
    assert_eq!(cfg.log.dir, root.join("log"));
    // The commented-out amqp block is valid too.
    let amqp = "providers:\n  - name: o\n    type: OPENSTACK\n    hostname: o\n    userid: admin\n    catcher:\n      kind: amqp\n      url: amqp://guest:guest@127.0.0.1:5672/%2f\n      exchange: nova\n      routing_key: notifications.info\n      queue: automate.o\n      prefetch: 100\n";
    let cfg = Config::from_yaml(amqp, "amqp.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.providers[0].catcher,
        CatcherConfig::Amqp(AmqpConfig {
            queue: "automate.o".into(),
            ..AmqpConfig::default()
        })
    );
}

#[test]
fn config_errors_name_file_and_line() {
    let base = "providers:\n  - name: r\n    type: RHEVM\n    hostname: h\n    userid: u\n";
    let cases = [
        (
            format!("{base}    catcher: {{kind: teleport}}\n"),
            "teleport",
        ),
        (
            format!("{base}    catcher: {{kind: simulate, rate: fast}}\n"),
            "",
        ),
        (format!("{base}    catcher: {{kind: jsonl}}\n"), "path"),
        (
            format!("{base}    catcher: {{kind: simulate}}\nworkerz: 3\n"),
            "workerz",
        ),
        (
            format!("{base}    catcher: {{kind: simulate}}\nqueue: {{when_full: panic}}\n"),
            "panic",
        ),
        ("providers: [\n".to_string(), ""),
        (
            format!("{base}    catcher: {{kind: simulate}}\n    filtr: [VM_DOWN]\n"),
            "filtr",
        ),
    ];
    for (text, word) in cases {
        let err = Config::from_yaml(&text, "bad.yaml").expect_err(&text);
        let msg = err.to_string();
        eprintln!("{msg}");
        match &err {
            ConfigError::Syntax { line, .. } => {
                assert!(*line >= 1, "no line in {msg:?} for {text}")
            }
            other => panic!("expected a syntax error for {text}, got {other}"),
        }
        assert!(msg.starts_with("bad.yaml:"), "{msg}");
        assert!(msg.contains(word), "{msg:?} should mention {word:?}");
    }
    // Checks serde cannot make.
    let dup = format!(
        "{base}    catcher: {{kind: simulate}}\n  - name: r\n    type: VC\n    hostname: v\n    userid: u\n    catcher: {{kind: http}}\n"
    );
    let err = Config::from_yaml(&dup, "dup.yaml").unwrap_err().to_string();
    assert!(err.contains("configured twice"), "{err}");
    let two_on_one_queue = "providers:\n  - {name: a, type: OPENSTACK, hostname: a, userid: u, catcher: {kind: amqp, queue: q}}\n  - {name: b, type: OPENSTACK, hostname: b, userid: u, catcher: {kind: amqp, queue: q}}\n";
    let err = Config::from_yaml(two_on_one_queue, "q.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("already consumed"), "{err}");
    let http_without_token =
        "providers:\n  - {name: v, type: VC, hostname: v, userid: u, catcher: {kind: http}}\n";
    let err = Config::from_yaml(http_without_token, "h.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("api.token"), "{err}");
    let err = Config::from_yaml("providers: []\n", "none.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least one provider"), "{err}");
    // A missing file names the path.
    let err = Config::load("/nonexistent/automate.yaml").unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/automate.yaml"));
}

#[test]
fn catchers_build_from_config_and_refuse_bad_settings() {
    let text = format!(
        "providers:\n{}{}{}\napi: {{token: t}}\n",
        "  - {name: r, type: RHEVM, hostname: r, userid: u, catcher: {kind: simulate, count: 3, rate: 0}}\n",
        "  - {name: v, type: VC, hostname: v, userid: u, catcher: {kind: http}, filter: [VmStoppingEvent]}\n",
        "  - {name: o, type: OPENSTACK, hostname: o, userid: u, catcher: {kind: amqp, url: 'amqp://guest:guest@127.0.0.1:1/%2f'}}\n",
    );
    let cfg = Config::from_yaml(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let (tx, _rx) = sink_pair(8);
    let built = cfg.build_catchers(tx.clone()).unwrap();
    let kinds: Vec<_> = built.catchers.iter().map(|c| c.kind()).collect();
    assert_eq!(kinds, ["simulate", "http", "amqp"]);
    let state = built.http.expect("an http endpoint");
    assert_eq!(state.provider_names().collect::<Vec<_>>(), ["v"]);

    let bad = [
        (
            CatcherConfig::Simulate(SimulateConfig {
                rate: -1.0,
                ..SimulateConfig::default()
            }),
            rhev(),
            "rate",
        ),
        (
            CatcherConfig::Simulate(SimulateConfig::default()),
            Arc::new(Provider {
                kind: "AZURE".into(),
                ..(*rhev()).clone()
            }),
            "AZURE",
        ),
        (
            CatcherConfig::Amqp(AmqpConfig {
                url: "http://nope".into(),
                ..AmqpConfig::default()
            }),
            openstack(),
            "amqp url",
        ),
        (
            CatcherConfig::Amqp(AmqpConfig {
                url: "amqps://guest:secret@host/%2f".into(),
                ..AmqpConfig::default()
            }),
            openstack(),
            "TLS",
        ),
    ];
    for (cc, p, word) in bad {
        let err = cc.build(p, Filter::default(), tx.clone()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(word), "{msg:?} should mention {word:?}");
        assert!(!msg.contains("secret"), "password leaked: {msg}");
    }
}

#[tokio::test]
async fn catchers_run_together_and_the_first_error_stops_the_rest() {
    let text = format!(
        "providers:\n{}  - {{name: o, type: OPENSTACK, hostname: o, userid: u, catcher: {{kind: jsonl, path: '{}'}}}}\n",
        "  - {name: r, type: RHEVM, hostname: r, userid: u, catcher: {kind: simulate, count: 20, rate: 0}}\n",
        data("events.jsonl")
    );
    let cfg = Config::from_yaml(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = sink_pair(100);
    let all = cfg.build_catchers(tx).unwrap();
    assert!(all.http.is_none());
    all.run(CancellationToken::new()).await.unwrap();
    let got = drain(&mut rx);
    assert_eq!(got.iter().filter(|c| c.provider.name == "r").count(), 20);
    assert_eq!(got.iter().filter(|c| c.provider.name == "o").count(), 5);

    // A catcher that fails (a missing file) stops the others.
    let text = "providers:\n  - {name: r, type: RHEVM, hostname: r, userid: u, catcher: {kind: simulate, rate: 100}}\n  - {name: o, type: OPENSTACK, hostname: o, userid: u, catcher: {kind: jsonl, path: /nonexistent/x.jsonl}}\n";
    let cfg = Config::from_yaml(text, "t.yaml").unwrap();
    let (tx, _rx) = sink_pair(1000);
    let all = cfg.build_catchers(tx).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), all.run(CancellationToken::new()))
        .await
        .expect("the simulate catcher was stopped too")
        .unwrap_err();
    assert!(err.to_string().contains("provider [o]"), "{err}");
}

// ---------------------------------------------------------------- simulate

#[test]
fn simulate_is_deterministic_for_a_seed() {
    let cfg = SimulateConfig {
        seed: 7,
        ..SimulateConfig::default()
    };
    for kind in ["RHEVM", "OPENSTACK", "VC"] {
        let a: Vec<ProviderEvent> = Simulator::new(&cfg, kind).take(100).collect();
        let b: Vec<ProviderEvent> = Simulator::new(&cfg, kind).take(100).collect();
        assert_eq!(a.len(), 100);
        assert_eq!(a, b, "{kind}");
        let other = SimulateConfig {
            seed: 8,
            ..cfg.clone()
        };
        let c: Vec<ProviderEvent> = Simulator::new(&other, kind).take(100).collect();
        assert_ne!(a, c, "{kind}: another seed gives other events");
    }
    // count stops the stream.
    let limited = SimulateConfig {
        count: Some(5),
        ..cfg
    };
    assert_eq!(Simulator::new(&limited, "RHEVM").count(), 5);
}

#[test]
fn simulate_keeps_power_states_consistent() {
    for kind in ["RHEVM", "OPENSTACK", "VC"] {
        let cfg = SimulateConfig {
            seed: 11,
            vms: 6,
            rate: 4.0,
            ..SimulateConfig::default()
        };
        // Per VM: the last phase seen (powering_on, finished).
        let mut last: HashMap<String, (bool, bool)> = HashMap::new();
        let mut types = HashSet::new();
        let mut prev_ts = String::new();
        for ev in Simulator::new(&cfg, kind).take(3000) {
            let vm = ev.vm_ems_ref.clone().expect("vm_ems_ref");
            assert!(ev.host_ems_ref.is_some() && ev.vm_name.is_some());
            assert!(ev.timestamp > prev_ts, "timestamps increase");
            prev_ts = ev.timestamp.clone();
            let phase = power_phase(&ev.event_type)
                .unwrap_or_else(|| panic!("unexpected {}", ev.event_type));
            if let Some(&(on, done)) = last.get(&vm) {
                let expected = if !done { (on, true) } else { (!on, false) };
                assert_eq!(
                    phase,
                    expected,
                    "{kind} {vm}: {} after {:?}",
                    ev.event_type,
                    (on, done)
                );
            } else {
                // The first event of a VM starts a transition.
                assert!(!phase.1, "{kind} {vm} starts with {}", ev.event_type);
            }
            last.insert(vm.clone(), phase);
            types.insert(ev.event_type.clone());
            // Provider-shaped full_data.
            match kind {
                "RHEVM" => {
                    assert!(ev.full_data["code"].is_u64());
                    assert_eq!(ev.full_data["vm"]["name"].as_str(), ev.vm_name.as_deref());
                    assert!(vm.starts_with("/api/vms/"));
                }
                "OPENSTACK" => {
                    assert_eq!(ev.full_data["event_type"], ev.event_type.as_str());
                    assert_eq!(
                        ev.full_data["payload"]["instance_id"].as_str(),
                        Some(vm.as_str())
                    );
                    assert!(ev.full_data["publisher_id"]
                        .as_str()
                        .unwrap()
                        .starts_with("compute."));
                    assert!(oslo::message_id(&ev).is_some());
                }
                _ => assert_eq!(ev.full_data["eventType"], ev.event_type.as_str()),
            }
        }
        assert_eq!(last.len(), 6, "{kind}: every VM moved");
        let expected = match kind {
            "RHEVM" => 5,
            _ => 4,
        };
        assert_eq!(types.len(), expected, "{kind}: {types:?}");
    }
}

#[tokio::test]
async fn simulate_catcher_paces_filters_and_stops() {
    let cfg = CatcherConfig::Simulate(SimulateConfig {
        seed: 3,
        rate: 200.0,
        count: Some(30),
        vms: 3,
        start: Some("2026-01-01T00:00:00Z".into()),
    });
    let (tx, mut rx) = sink_pair(100);
    let catcher = cfg
        .build(rhev(), Filter::new(["VM_DOWN"]), tx)
        .expect("build");
    let stats = catcher.stats();
    let started = Instant::now();
    catcher
        .run(CancellationToken::new())
        .await
        .expect("runs to count");
    // 30 events at 200/s take ~150 ms: just check it ran paced, not stalled.
    assert!(started.elapsed() < Duration::from_secs(20));
    let got = drain(&mut rx);
    let s = stats.snapshot();
    assert_eq!(s.caught, 30);
    assert_eq!(s.sent + s.skipped, 30);
    assert_eq!(got.len() as u64, s.sent);
    assert!(s.skipped > 0, "some VM_DOWN were filtered");
    assert!(got.iter().all(|c| c.event.event_type != "VM_DOWN"));
    assert!(got
        .iter()
        .all(|c| c.ack.is_none() && c.provider.name == "rhevm01"));
    let expected: Vec<ProviderEvent> = Simulator::new(
        &SimulateConfig {
            seed: 3,
            rate: 200.0,
            count: Some(30),
            vms: 3,
            start: Some("2026-01-01T00:00:00Z".into()),
        },
        "RHEVM",
    )
    .filter(|e| e.event_type != "VM_DOWN")
    .collect();
    let got_events: Vec<ProviderEvent> = got.into_iter().map(|c| c.event).collect();
    assert_eq!(got_events, expected);

    // Rates above the timer resolution average out: 600 events at 3,000/s
    // cannot take less than 0.2 s.
    let (tx, mut rx) = sink_pair(1000);
    let fast = CatcherConfig::Simulate(SimulateConfig {
        rate: 3000.0,
        count: Some(600),
        ..SimulateConfig::default()
    })
    .build(rhev(), Filter::default(), tx)
    .unwrap();
    let started = Instant::now();
    fast.run(CancellationToken::new()).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert_eq!(drain(&mut rx).len(), 600);

    // Without a count it runs until shutdown, also when the pipeline is full.
    let (tx, _rx) = sink_pair(1);
    let catcher = CatcherConfig::Simulate(SimulateConfig {
        rate: 0.0,
        ..SimulateConfig::default()
    })
    .build(openstack(), Filter::default(), tx)
    .unwrap();
    let running = Running::start(catcher);
    // Handshake: one event sent fills the one-slot pipeline, so the next
    // offer waits for room.
    assert!(
        until(Duration::from_secs(30), || running.stats.snapshot().sent
            >= 1)
        .await,
        "the simulator sends"
    );
    assert!(
        !running.task.is_finished(),
        "a full pipeline does not end it"
    );
    running
        .stop_within(Duration::from_secs(5), "stops on shutdown")
        .await;
}

// ---------------------------------------------------------------- jsonl

#[tokio::test]
async fn jsonl_skips_bad_lines_by_number_and_filtered_types() {
    let cfg = CatcherConfig::Jsonl(JsonlConfig {
        path: data("events.jsonl"),
        follow: false,
    });
    let (tx, mut rx) = sink_pair(100);
    let catcher = cfg
        .build(openstack(), Filter::new(["VM_DOWN"]), tx)
        .unwrap();
    let stats = catcher.stats();
    catcher.run(CancellationToken::new()).await.unwrap();
    let got = drain(&mut rx);
    let types: Vec<&str> = got.iter().map(|c| c.event.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "USER_STARTED_VM",
            "compute.instance.power_on.start",
            "compute.instance.power_on.end",
            "USER_RUN_VM"
        ]
    );
    // A plain ProviderEvent line, an oslo 1.0 notification, a 2.0 envelope.
    assert_eq!(got[0].event.host_name.as_deref(), Some("rhvh-01"));
    assert_eq!(got[1].event.vm_ems_ref.as_deref(), Some("i-1"));
    assert_eq!(got[1].event.timestamp, "2026-01-01T00:00:02.000Z");
    assert_eq!(oslo::message_id(&got[2].event), Some("m-5"));
    assert_eq!(got[2].event.host_ems_ref.as_deref(), Some("compute-0"));
    let s = stats.snapshot();
    assert_eq!((s.caught, s.sent, s.skipped, s.rejected), (5, 4, 1, 2));
    assert_eq!(s.problems.len(), 2);
    // Each names the file and the line.
    assert!(
        s.problems[0].contains("events.jsonl:4: "),
        "{:?}",
        s.problems
    );
    assert!(
        s.problems[1].contains("events.jsonl:8: ") && s.problems[1].contains("event_type"),
        "{:?}",
        s.problems
    );

    // A missing file is an error naming the path.
    let (tx, _rx) = sink_pair(1);
    let err = CatcherConfig::Jsonl(JsonlConfig {
        path: "/nonexistent/events.jsonl".into(),
        follow: false,
    })
    .build(openstack(), Filter::default(), tx)
    .unwrap()
    .run(CancellationToken::new())
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/events.jsonl"),
        "{err}"
    );
}

/// On tokio's paused clock: each `sleep` below lets the catcher poll (every
/// 200 ms of its clock) a known number of times, however slow the machine;
/// the clock does not move while its file reads are in flight.
#[tokio::test(start_paused = true)]
async fn jsonl_follow_reads_appended_lines_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tail.jsonl");
    let line = |t: &str, s: u32| {
        format!("{{\"event_type\":\"{t}\",\"timestamp\":\"2026-01-01T00:00:{s:02}Z\"}}\n")
    };
    let (tx, mut rx) = sink_pair(100);
    let catcher = CatcherConfig::Jsonl(JsonlConfig {
        path: path.display().to_string(),
        follow: true,
    })
    .build(rhev(), Filter::default(), tx)
    .unwrap();
    let running = Running::start(catcher);
    // A followed file that does not exist yet is waited for (looked for at
    // 0 and 200 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.task.is_finished());
    std::fs::write(&path, line("USER_STARTED_VM", 1)).unwrap();
    let first = next_within(&mut rx, "the first line read").await;
    assert_eq!(first.event.event_type, "USER_STARTED_VM");
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // A line written in two pieces is read once it is complete (the
        // first piece is seen by at least one poll, and not sent).
        let l = line("USER_RUN_VM", 2);
        f.write_all(&l.as_bytes()[..10]).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "half a line is not an event");
        f.write_all(&l.as_bytes()[10..]).unwrap();
        f.write_all(line("VM_DOWN", 3).as_bytes()).unwrap();
    }
    for expected in ["USER_RUN_VM", "VM_DOWN"] {
        let c = next_within(&mut rx, "appended line read").await;
        assert_eq!(c.event.event_type, expected);
    }
    // Rotation (renamed away, a new file in its place), then truncation:
    // each time the new content is read from the start.
    std::fs::rename(&path, dir.path().join("tail.jsonl.1")).unwrap();
    std::fs::write(&path, line("USER_STOP_VM", 4)).unwrap();
    let c = next_within(&mut rx, "the rotated file is read").await;
    assert_eq!(c.event.event_type, "USER_STOP_VM");
    std::fs::write(&path, "").unwrap();
    // Two polls see the empty file (the truncation) before it grows again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(&path, line("USER_STARTED_VM", 5)).unwrap();
    let c = next_within(&mut rx, "the truncated file is read again").await;
    assert_eq!(c.event.event_type, "USER_STARTED_VM");
    // In the event stream's one format.
    assert_eq!(c.event.timestamp, "2026-01-01T00:00:05.000Z");
    running.stop_within(Duration::from_secs(5), "stops").await;
}

// ---------------------------------------------------------------- http

const TOKEN: &str = "s3cret-token";

/// Serves the endpoint on an ephemeral port for `rhevm01` (filter:
/// `VM_DOWN`).
async fn http_server(
    tx: automate_events::catchers::CaughtSender,
) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state = HttpState::new(TOKEN).with_provider(rhev(), Filter::new(["VM_DOWN"]), tx);
    let stop = CancellationToken::new();
    state.set_shutdown(stop.clone());
    let s = stop.clone();
    // Served as `automate run` serves it: merged into the API's server,
    // with its limits.
    let limits = automate_events::config::ApiLimits::default();
    let task = tokio::spawn(async move {
        automate_api::serve_with(listener, http::router(state), &limits, s)
            .await
            .unwrap();
    });
    (format!("http://{addr}/api/events"), stop, task)
}

/// A blocking POST: (status, body as JSON).
fn post(url: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    let mut resp = req.send(&body[..]).expect("HTTP exchange");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

async fn post_async(url: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let url = url.to_string();
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || post(&url, token.as_deref(), body))
        .await
        .unwrap()
}

fn event_json(t: &str, s: u32) -> Value {
    json!({"event_type": t, "timestamp": format!("2026-01-01T00:00:{s:02}Z"),
           "vm_ems_ref": "/api/vms/1", "vm_name": "web-01"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_accepts_posts_after_the_pipeline_acks() {
    let (tx, mut rx) = sink_pair(16);
    let (url, stop, task) = http_server(tx).await;
    let stored: Arc<Mutex<Vec<ProviderEvent>>> = Arc::default();
    let st = stored.clone();
    let acker = tokio::spawn(async move {
        while let Some(mut c) = rx.recv().await {
            // "Store" it, then answer.
            st.lock().unwrap().push(c.event.clone());
            assert!(c.ack.is_some(), "http asks for durability");
            c.complete(Ok(()));
        }
    });

    let one = json!({"provider": "rhevm01", "event": event_json("USER_RUN_VM", 1)});
    let (status, body) = post_async(&url, Some(TOKEN), one.to_string().into_bytes()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": 1, "skipped": 0}));
    assert_eq!(stored.lock().unwrap().len(), 1, "stored before the answer");

    let list = json!([
        {"provider": "rhevm01", "event": event_json("USER_INITIATED_SHUTDOWN_VM", 2)},
        {"provider": "rhevm01", "event": event_json("VM_DOWN", 3)},
        {"provider": "rhevm01", "event": event_json("USER_STARTED_VM", 4)},
    ]);
    let (status, body) = post_async(&url, Some(TOKEN), list.to_string().into_bytes()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": 2, "skipped": 1}));
    let types: Vec<String> = stored
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(
        types,
        [
            "USER_RUN_VM",
            "USER_INITIATED_SHUTDOWN_VM",
            "USER_STARTED_VM"
        ]
    );
    stop.cancel();
    task.await.unwrap();
    acker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_bad_requests_with_json_errors_and_sends_nothing() {
    let (tx, mut rx) = sink_pair(16);
    let (url, stop, task) = http_server(tx).await;
    let good = json!({"provider": "rhevm01", "event": event_json("USER_RUN_VM", 1)});
    let mut big = json!({"provider": "rhevm01", "event": event_json("USER_RUN_VM", 1)});
    big["event"]["full_data"] = json!({"blob": "x".repeat(http::MAX_BODY + 10)});
    // (what, token, body, status, error kind, word in the message)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("missing token", None, good.to_string().into(), 401, "unauthorized", "missing"),
        ("wrong token", Some("nope"), good.to_string().into(), 401, "unauthorized", "invalid"),
        ("malformed JSON", Some(TOKEN), b"{\"provider\": ".to_vec(), 400, "malformed_json", "JSON"),
        (
            "wrong type",
            Some(TOKEN),
            json!({"provider": "rhevm01", "event": {"event_type": 5, "timestamp": "t"}}).to_string().into(),
            400,
            "invalid_event",
            "event.event_type",
        ),
        (
            "missing field",
            Some(TOKEN),
            json!({"provider": "rhevm01", "event": {"event_type": "X"}}).to_string().into(),
            400,
            "invalid_event",
            "event.timestamp",
        ),
        (
            "one bad item spoils the list",
            Some(TOKEN),
            json!([good.clone(), {"provider": "rhevm01", "event": {"event_type": "X", "timestamp": "t", "vm_name": 3}}])
                .to_string()
                .into(),
            400,
            "invalid_event",
            "[1].event.vm_name",
        ),
        (
            "unknown provider",
            Some(TOKEN),
            json!({"provider": "nobody", "event": event_json("USER_RUN_VM", 1)}).to_string().into(),
            404,
            "unknown_provider",
            "nobody",
        ),
        ("oversize", Some(TOKEN), big.to_string().into(), 413, "payload_too_large", "larger"),
    ];
    for (what, token, body, status, kind, word) in cases {
        let (got, v) = post_async(&url, token, body).await;
        assert_eq!(got, status, "{what}: {v}");
        assert_eq!(v["error"]["kind"], kind, "{what}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(word),
            "{what}: {msg:?} should mention {word:?}"
        );
        assert!(
            rx.try_recv().is_err(),
            "{what}: nothing may reach the pipeline"
        );
    }
    // Other methods get a JSON 405.
    let get_url = url.clone();
    let (status, text) = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent.get(&get_url).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(status, 405);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["kind"], "method_not_allowed");
    // The pipeline refusing an event is a 503, not a 202.
    let refuser = tokio::spawn(async move {
        if let Some(mut c) = rx.recv().await {
            c.complete(Err("disk full".into()));
        }
    });
    let (got, v) = post_async(&url, Some(TOKEN), good.to_string().into()).await;
    assert_eq!(got, 503, "{v}");
    assert_eq!(v["error"]["kind"], "not_stored");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disk full"));
    refuser.await.unwrap();
    stop.cancel();
    task.await.unwrap();
}

// ---------------------------------------------------------------- amqp

/// The broker the AMQP tests use: `127.0.0.1:5672` (guest/guest), or
/// `AUTOMATE_TEST_AMQP_ADDR` (`host:port`).
fn rabbit_addr() -> String {
    std::env::var("AUTOMATE_TEST_AMQP_ADDR")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1:5672".into())
}

fn rabbit_url() -> String {
    format!("amqp://guest:guest@{}/%2f", rabbit_addr())
}

/// Whether RabbitMQ is reachable; `false` (with a message) when it is not,
/// a panic when `AUTOMATE_TEST_AMQP` says it must be.
fn rabbit_available() -> bool {
    use std::net::ToSocketAddrs;
    let addr = rabbit_addr();
    let reach = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
        .and_then(|a| {
            std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1))
                .map_err(|e| e.to_string())
        });
    match reach {
        Ok(_) => true,
        Err(e) => {
            let required = std::env::var("AUTOMATE_TEST_AMQP")
                .map(|v| !v.is_empty() && v != "0")
                .unwrap_or(false);
            assert!(
                !required,
                "RabbitMQ is not reachable at {addr} ({e}) and AUTOMATE_TEST_AMQP is set"
            );
            eprintln!(
                "skipping: RabbitMQ is not reachable at {addr} ({e}); set AUTOMATE_TEST_AMQP=1 to fail instead"
            );
            false
        }
    }
}

/// A unique exchange and queue for this run, declared and bound (so that
/// messages published before the catcher starts are kept).
async fn rabbit_setup(tag: &str) -> (lapin::Connection, lapin::Channel, String, String) {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let exchange = format!("automate-test-{tag}-{}-{nanos}", std::process::id());
    let queue = format!("{exchange}.q");
    let conn = lapin::Connection::connect(&rabbit_url(), lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "notifications.info".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, ch, exchange, queue)
}

async fn rabbit_teardown(conn: lapin::Connection, ch: lapin::Channel, exchange: &str, queue: &str) {
    use lapin::options::*;
    if let Err(e) = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
    {
        eprintln!("cannot delete queue {queue}: {e}");
    }
    if let Err(e) = ch
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
    {
        eprintln!("cannot delete exchange {exchange}: {e}");
    }
    let _ = conn.close(200, "done".into()).await;
}

async fn publish(ch: &lapin::Channel, exchange: &str, body: &[u8]) {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            "notifications.info".into(),
            lapin::options::BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "broker confirmed");
}

/// Publishes the notifications numbered `0..n`; their message ids.
async fn publish_notifications(ch: &lapin::Channel, exchange: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let (id, body) = notification(i);
        publish(ch, exchange, &body).await;
        ids.push(id);
    }
    ids
}

/// Messages ready in `queue`, as the broker counts them (those delivered
/// and not yet acked are not among them).
async fn ready_in(ch: &lapin::Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

/// The handshake before stopping an AMQP catcher: waits (at most `limit`)
/// until every event it handed to the pipeline has its answer (so its ack
/// or nack is on the way, and a stop drains those) and the broker has
/// nothing left ready to deliver; whether that happened.
async fn settled(ch: &lapin::Channel, queue: &str, stats: &CatcherStats, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let s = stats.snapshot();
        if s.sent == s.acked + s.nacked && ready_in(ch, queue).await == 0 {
            return true;
        }
        if start.elapsed() >= limit {
            eprintln!("not settled: {s:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An oslo 2.0 notification numbered `i`.
fn notification(i: usize) -> (String, Vec<u8>) {
    let id = format!("00000000-0000-4000-8000-{i:012}");
    let note = json!({
        "event_type": if i % 2 == 0 { "compute.instance.power_on.end" } else { "compute.instance.power_off.end" },
        "payload": {"instance_id": format!("inst-{}", i % 50), "display_name": format!("vm-{}", i % 50),
                    "state": "active", "host": "compute-0"},
        "publisher_id": "compute.compute-0",
        "timestamp": format!("2026-01-01 00:{:02}:{:02}.{:06}", i / 3600 % 60, i / 60 % 60, (i % 60) * 1000),
        "message_id": id,
        "priority": "INFO",
    });
    (id, oslo::envelope(&note).to_string().into_bytes())
}

fn amqp_catcher(exchange: &str, queue: &str, prefetch: u16) -> CatcherConfig {
    CatcherConfig::Amqp(AmqpConfig {
        url: rabbit_url(),
        exchange: exchange.into(),
        routing_key: "notifications.info".into(),
        queue: queue.into(),
        prefetch,
    })
}

/// A pipeline stand-in: "stores" each event by message_id, then acks.
#[derive(Default)]
struct Store {
    ids: HashSet<String>,
    received: usize,
}

fn spawn_store(
    rx: mpsc::Receiver<Caught>,
    store: Arc<Mutex<Store>>,
    refuse_first: HashSet<String>,
) -> tokio::task::JoinHandle<()> {
    spawn_store_gated(rx, store, refuse_first, None)
}

/// [`spawn_store`] that, with `pause` `(n, gate)`, takes nothing more once
/// `n` events are stored until `gate` is notified (so a test can stop a
/// catcher part way whatever the machine's speed).
fn spawn_store_gated(
    mut rx: mpsc::Receiver<Caught>,
    store: Arc<Mutex<Store>>,
    refuse_first: HashSet<String>,
    pause: Option<(usize, Arc<tokio::sync::Notify>)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut refused = HashSet::new();
        let mut pause = pause;
        loop {
            if let Some((n, gate)) = &pause {
                if store.lock().unwrap().ids.len() >= *n {
                    gate.notified().await;
                    pause = None;
                }
            }
            let Some(mut c) = rx.recv().await else { break };
            let id = oslo::message_id(&c.event).unwrap_or_default().to_string();
            if refuse_first.contains(&id) && refused.insert(id.clone()) {
                c.complete(Err("not now".into()));
                continue;
            }
            {
                let mut s = store.lock().unwrap();
                s.received += 1;
                s.ids.insert(id);
            }
            c.complete(Ok(()));
        }
    })
}

async fn wait_for(store: &Arc<Mutex<Store>>, n: usize, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if store.lock().unwrap().ids.len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_delivers_1000_notifications_across_a_restart() {
    if !rabbit_available() {
        return;
    }
    let (conn, ch, exchange, queue) = rabbit_setup("restart").await;
    let published: HashSet<String> = publish_notifications(&ch, &exchange, 1000)
        .await
        .into_iter()
        .collect();
    let (tx, rx) = sink_pair(64);
    let store: Arc<Mutex<Store>> = Arc::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let storer = spawn_store_gated(rx, store.clone(), HashSet::new(), Some((500, gate.clone())));

    // First run: stop it half way (the stand-in takes no more after 500
    // until the catcher is told to stop).
    let run1 = Running::start(
        amqp_catcher(&exchange, &queue, 50)
            .build(openstack(), Filter::default(), tx.clone())
            .unwrap(),
    );
    let stats1 = run1.stats.clone();
    assert!(
        wait_for(&store, 500, Duration::from_secs(60)).await,
        "the first run received {} events",
        store.lock().unwrap().ids.len()
    );
    run1.stop.cancel();
    // The events in flight are stored and acked while the catcher stops.
    gate.notify_one();
    run1.stop_within(Duration::from_secs(15), "the catcher stops")
        .await;
    let after_first = store.lock().unwrap().ids.len();
    assert!(after_first < 1000, "stopped before the end ({after_first})");

    // Second run: the rest, nothing lost.
    let run2 = Running::start(
        amqp_catcher(&exchange, &queue, 50)
            .build(openstack(), Filter::default(), tx.clone())
            .unwrap(),
    );
    let stats2 = run2.stats.clone();
    let complete = wait_for(&store, 1000, Duration::from_secs(60)).await;
    // The last acks are on their way before stopping.
    assert!(settled(&ch, &queue, &stats2, Duration::from_secs(60)).await);
    run2.stop_within(Duration::from_secs(15), "the catcher stops")
        .await;

    {
        let s = store.lock().unwrap();
        assert!(complete, "only {} of 1000 arrived", s.ids.len());
        assert_eq!(s.ids.len(), 1000, "1,000 distinct events stored");
        assert!(published.iter().all(|id| s.ids.contains(id)), "none lost");
        let (s1, s2) = (stats1.snapshot(), stats2.snapshot());
        // Redelivered = received twice: only what was in flight at the stop.
        let dupes = s.received - s.ids.len();
        assert!(dupes <= 64 + 50, "{dupes} duplicates");
        assert_eq!(s1.acked + s2.acked, s.received as u64);
        assert_eq!(s1.rejected + s2.rejected, 0);
        eprintln!(
            "amqp restart: first run stored {after_first}, {} received in all, {dupes} redelivered",
            s.received
        );
    }

    // The queue is empty: everything was acked.
    assert_eq!(
        ready_in(&ch, &queue).await,
        0,
        "nothing left unacked in the queue"
    );
    drop(tx);
    storer.await.unwrap();
    rabbit_teardown(conn, ch, &exchange, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_requeues_refused_events_and_drops_garbage() {
    if !rabbit_available() {
        return;
    }
    let (conn, ch, exchange, queue) = rabbit_setup("requeue").await;
    let published = publish_notifications(&ch, &exchange, 10).await;
    publish(&ch, &exchange, b"this is not json").await;
    // A filtered type is acked without reaching the pipeline.
    let filtered = json!({"event_type": "compute.instance.exists", "payload": {},
                          "timestamp": "2026-01-01 00:00:00.000000", "message_id": "f-1"});
    publish(&ch, &exchange, filtered.to_string().as_bytes()).await;

    let refuse: HashSet<String> = published[..3].iter().cloned().collect();
    let (tx, rx) = sink_pair(16);
    let store: Arc<Mutex<Store>> = Arc::default();
    let storer = spawn_store(rx, store.clone(), refuse);
    let c = amqp_catcher(&exchange, &queue, 5)
        .build(
            openstack(),
            Filter::new(["compute.instance.exists"]),
            tx.clone(),
        )
        .unwrap();
    let running = Running::start(c);
    let stats = running.stats.clone();
    let complete = wait_for(&store, 10, Duration::from_secs(30)).await;
    assert!(settled(&ch, &queue, &stats, Duration::from_secs(30)).await);
    running.stop().await;
    assert!(complete, "{} of 10 stored", store.lock().unwrap().ids.len());
    let s = stats.snapshot();
    assert_eq!(s.nacked, 3, "{s:?}");
    assert_eq!(s.acked, 10, "{s:?}");
    assert_eq!(s.skipped, 1, "{s:?}");
    assert_eq!(s.rejected, 1, "{s:?}");
    assert_eq!(ready_in(&ch, &queue).await, 0);
    drop(tx);
    storer.await.unwrap();
    rabbit_teardown(conn, ch, &exchange, &queue).await;
}

#[tokio::test]
async fn amqp_retries_an_unreachable_broker_with_backoff_until_shutdown() {
    let (tx, _rx) = sink_pair(1);
    let c = CatcherConfig::Amqp(AmqpConfig {
        // Port 1: nothing listens there.
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        ..AmqpConfig::default()
    })
    .build(openstack(), Filter::default(), tx)
    .unwrap();
    let stats = c.stats();
    let started = Instant::now();
    let running = Running::start(c);
    // Attempts at 0, 100, 300, 700 ms...: the third failure comes no
    // sooner than 300 ms after the start (it backs off, however fast the
    // machine), then it stops at once during the backoff.
    assert!(
        until(Duration::from_secs(30), || stats.snapshot().reconnects >= 3).await,
        "{:?}",
        stats.snapshot()
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "backed off: {took:?}");
    running
        .stop_within(Duration::from_secs(5), "stops promptly during backoff")
        .await;
    let n = stats.snapshot().reconnects;
    assert!((3..=6).contains(&n), "{n} attempts");
}

/// A TCP proxy to RabbitMQ whose connections the test can cut.
struct Proxy {
    addr: std::net::SocketAddr,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let target = rabbit_addr();
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            conns,
            accept,
        }
    }

    /// Drops every proxied connection (the catcher sees a reset).
    fn cut(&self) -> usize {
        let mut c = self.conns.lock().unwrap();
        let n = c.len();
        for h in c.drain(..) {
            h.abort();
        }
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_reconnects_after_losing_the_connection() {
    if !rabbit_available() {
        return;
    }
    let (conn, ch, exchange, queue) = rabbit_setup("reconnect").await;
    let published: HashSet<String> = publish_notifications(&ch, &exchange, 300)
        .await
        .into_iter()
        .collect();
    let proxy = Proxy::start().await;
    let (tx, rx) = sink_pair(16);
    let store: Arc<Mutex<Store>> = Arc::default();
    let storer = spawn_store(rx, store.clone(), HashSet::new());
    let c = CatcherConfig::Amqp(AmqpConfig {
        url: format!("amqp://guest:guest@{}/%2f", proxy.addr),
        exchange: exchange.clone(),
        routing_key: "notifications.info".into(),
        queue: queue.clone(),
        prefetch: 10,
    })
    .build(openstack(), Filter::default(), tx.clone())
    .unwrap();
    let running = Running::start(c);
    let stats = running.stats.clone();
    assert!(wait_for(&store, 100, Duration::from_secs(30)).await);
    assert!(
        proxy.cut() >= 1,
        "the catcher was connected through the proxy"
    );
    let complete = wait_for(&store, 300, Duration::from_secs(60)).await;
    assert!(settled(&ch, &queue, &stats, Duration::from_secs(60)).await);
    running.stop_within(Duration::from_secs(15), "stops").await;
    {
        let s = store.lock().unwrap();
        assert!(complete, "{} of 300 stored after the cut", s.ids.len());
        assert!(published.iter().all(|id| s.ids.contains(id)), "none lost");
        let snap = stats.snapshot();
        assert!(snap.reconnects >= 1, "{snap:?}");
        eprintln!(
            "amqp reconnect: {} received, {} redelivered, {} reconnects",
            s.received,
            s.received - s.ids.len(),
            snap.reconnects
        );
    }
    proxy.accept.abort();
    drop(tx);
    storer.await.unwrap();
    rabbit_teardown(conn, ch, &exchange, &queue).await;
}

/// AMQP → catcher → the real event handler on the shipped ManageIQ domain;
/// the broker message is acked only after the handler stored the EmsEvent
/// and delivered it to Automate. A restart half way redelivers what was in
/// flight; the handler's de-duplication keeps exactly 1,000 EmsEvents. The
/// object store is in memory (the redb store writes each object in its own
/// transaction, ~60 ms an event on this machine in debug builds);
/// `AUTOMATE_TEST_AMQP_REDB=1` uses a redb file instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_end_to_end_stores_1000_ems_events_across_a_restart() {
    use automate_engine::AttrValue;
    use automate_redb::RedbStore;
    use automate_vmdb::{MemoryStore, ObjectStore};
    if !rabbit_available() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datastore");
    let (ds, _problems) = automate_datastore::Datastore::open(&root);
    assert!(!ds.index().domains().is_empty(), "the shipped domain loads");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        if std::env::var("AUTOMATE_TEST_AMQP_REDB").as_deref() == Ok("1") {
            Arc::new(RedbStore::open(dir.path().join("vmdb.redb")).unwrap())
        } else {
            Arc::new(MemoryStore::new())
        };
    let engine = automate_control::with_control_builtins(
        automate_engine::Engine::new(Arc::new(ds)).with_store(store.clone()),
    );
    let log = automate_events::EvmLog::default();
    let handler = automate_events::Handler::new(engine, log.clone()).unwrap();
    // EventStream also holds the MiqEvents the policies raise.
    let ems_events = |s: &Arc<dyn ObjectStore>| {
        s.find_by(
            "EventStream",
            "event_namespace",
            &AttrValue::Str("EmsEvent".into()),
        )
        .unwrap()
        .len()
    };
    let (conn, ch, exchange, queue) = rabbit_setup("e2e").await;
    publish_notifications(&ch, &exchange, 1000).await;
    let (tx, mut rx) = sink_pair(64);
    // The pipeline stand-in: one handler thread, ack after the store.
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = handled.clone();
    let worker = std::thread::spawn(move || {
        let mut delivered = 0usize;
        let mut duplicates = 0usize;
        while let Some(mut c) = rx.blocking_recv() {
            match handler.handle(&c.provider, &c.event) {
                Ok(outcome) => {
                    if outcome.duplicate {
                        duplicates += 1;
                    } else {
                        delivered += 1;
                    }
                    c.complete(Ok(()));
                    log.drain();
                }
                Err(e) => c.complete(Err(e.to_string())),
            }
            h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        (delivered, duplicates)
    });
    let wait_handled = |n: usize| {
        let handled = handled.clone();
        async move {
            let start = Instant::now();
            while handled.load(std::sync::atomic::Ordering::Relaxed) < n {
                assert!(
                    start.elapsed() < Duration::from_secs(300),
                    "only {} handled",
                    handled.load(std::sync::atomic::Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let began = Instant::now();
    let run1 = Running::start(
        amqp_catcher(&exchange, &queue, 20)
            .build(openstack(), Filter::default(), tx.clone())
            .unwrap(),
    );
    wait_handled(500).await;
    // A crash, not a clean stop: whatever was handled but not yet acked
    // comes back.
    run1.task.abort();
    let _ = run1.task.await;
    drop(run1.stop);
    let run2 = Running::start(
        amqp_catcher(&exchange, &queue, 20)
            .build(openstack(), Filter::default(), tx.clone())
            .unwrap(),
    );
    let start = Instant::now();
    loop {
        let left = ready_in(&ch, &queue).await;
        let events = ems_events(&store);
        if events >= 1000 && left == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{events} EmsEvents, {left} messages left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(settled(&ch, &queue, &run2.stats, Duration::from_secs(60)).await);
    run2.stop().await;
    drop(tx);
    let (delivered, duplicates) = worker.join().unwrap();
    assert_eq!(ems_events(&store), 1000, "exactly 1,000 EmsEvents stored");
    assert_eq!(delivered, 1000, "each delivered to Automate once");
    eprintln!(
        "amqp end to end: 1000 EmsEvents stored and delivered in {:.1} s, {duplicates} redeliveries de-duplicated",
        began.elapsed().as_secs_f64()
    );
    rabbit_teardown(conn, ch, &exchange, &queue).await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever arrives on a bus or in a file, parsing never panics.
    #[test]
    fn parsers_never_panic(text in "\\PC{0,80}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
        let _ = automate_core::time::parse_time(&text);
        let _ = automate_events::catchers::jsonl::parse_line(&text);
        let _ = oslo::parse_bytes(&bytes);
        let _ = oslo::parse_bytes(text.as_bytes());
        let envelope = json!({"oslo.message": text.clone()}).to_string();
        let _ = oslo::parse_bytes(envelope.as_bytes());
        let stamped = json!({"event_type": "x", "timestamp": format!("2026-01-01T00:00:00{text}")});
        let _ = oslo::parse_value(stamped);
    }
}
