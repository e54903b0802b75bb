//! Scheduled work on PostgreSQL under the retry runner: a state machine
//! (`tests/data/requests`' `/Test/Counter/default`, which retries twice at
//! 50 ms, then finishes with `n=3`) delivered once, its retries then run
//! by `run_due` (what the pipeline's retry runner calls) on two nodes at
//! once, each with its own `PgSchedule` on the same schema. Skipped
//! without PostgreSQL (a failure with `AUTOMATE_TEST_CLUSTER=1`).

use automate_engine::deliver::{deliver, run_due, Delivery, Outcome, DEFAULT_MAX_DELIVERIES};
use automate_postgres::schedule::PgSchedule;
use automate_postgres::testing::TestDb;
use automate_postgres::Pg;
use automate_vmdb::{MemoryStore, Schedule};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn cluster_state_machine_retries_run_once_each_from_two_nodes() {
    let Some(db) = TestDb::new("it_retries") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/requests");
    let (engine, _runner) = crate::common::control_engine(&root, Arc::new(MemoryStore::new()));
    let a = PgSchedule::new(db.pg(), "a");
    let b = PgSchedule::new(
        Pg::connect(&db.config(), db.handle()).expect("node b's pool"),
        "b",
    )
    .with_relaxed_claims(true);

    // The first delivery: the machine asks for a retry, written to
    // PostgreSQL.
    let first = Delivery {
        uri: "/Test/Counter/default".into(),
        attrs: Vec::new(),
        object: String::new(),
        deliveries: 0,
    };
    let id = match deliver(&engine, &a, &first, DEFAULT_MAX_DELIVERIES).expect("deliver") {
        Outcome::Retry { id: Some(id), .. } => id,
        other => panic!(
            "a retry was expected: {:?}",
            other.workspace().trace_lines()
        ),
    };
    let item = b.get(id).expect("get").expect("the retry is scheduled");
    assert_eq!(item.item.kind, "automate_retry");
    assert_eq!(b.len().expect("len"), 1);

    // Both nodes run the retry runner until nothing is scheduled.
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for node in [&a, &b] {
            let (engine, outcomes) = (&engine, &outcomes);
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while node.len().expect("len") > 0 {
                    assert!(Instant::now() < deadline, "the retries never ended");
                    for o in run_due(engine, node, 16, DEFAULT_MAX_DELIVERIES).expect("run_due") {
                        let kind = match &o {
                            Outcome::Done(_) => "done",
                            Outcome::Retry { .. } => "retry",
                            Outcome::Error { .. } => "error",
                            Outcome::GaveUp(_) => "gave up",
                        };
                        let finished = o
                            .workspace()
                            .trace_lines()
                            .iter()
                            .any(|l| l.contains("task finished with n=3"));
                        outcomes
                            .lock()
                            .unwrap()
                            .push((node.node().to_string(), kind, finished));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    // Passes 2 and 3, each delivered exactly once, by whichever node
    // claimed it; the last one finished the machine.
    assert_eq!(
        outcomes
            .iter()
            .map(|(_, kind, finished)| (*kind, *finished))
            .collect::<Vec<_>>(),
        vec![("retry", false), ("done", true)],
        "{outcomes:?}"
    );
    assert!(a.is_empty().expect("empty"));
    assert!(
        b.get(id).expect("get").is_none(),
        "the first retry was completed"
    );
}
