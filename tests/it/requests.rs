//! Automation requests through the real `automate request` command on a
//! real redb store: the request events in automation.log (snapshot), the
//! deny path, refusals, a task whose state machine retries until
//! `automate retries run-due` finishes it (and one the pipeline's deferred
//! delivery finishes, through the engine's after-delivery hook), and the
//! flow on the real ManageIQ domain imported as the only domain.
//!
//! The datastore is the shipped ManageIQ domain plus `tests/data/requests`
//! (`Req`: `/Test/Work/{hello,warn,fail}` and the retrying
//! `/Test/Counter/default`), imported into a temp root.

use crate::common::process::{stderr, stdout};
use crate::datastore::fixture_dir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    /// A temp dir with a datastore root holding `domains` (imported).
    fn with(domains: &[PathBuf]) -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("datastore");
        std::fs::create_dir_all(&root).expect("mkdir");
        let env = Env { tmp, root };
        for d in domains {
            let out = env.automate(&["import", d.to_str().expect("utf-8 path")]);
            assert!(
                out.status.success(),
                "import {}: {}",
                d.display(),
                stderr(&out)
            );
        }
        env
    }

    fn standard() -> Env {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        Env::with(&[
            manifest.join("datastore/ManageIQ"),
            manifest.join("tests/data/requests/Req"),
        ])
    }

    /// Runs `automate` in the temp dir (logs go to `<tmp>/log`).
    fn automate(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_automate"))
            .current_dir(self.tmp.path())
            .arg("--datastore")
            .arg(&self.root)
            .arg("--db")
            .arg(self.tmp.path().join("automate.redb"))
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run automate")
    }

    /// Runs a request command with `--json` and parses its output.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.automate(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_str(&stdout(&out)).expect("json output")
    }

    /// automation.log's messages (the line prefix with time and pid cut).
    fn automation_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.tmp.path().join("log/automation.log"))
            .expect("log/automation.log");
        text.lines()
            .map(|l| match l.find(" -- : ") {
                Some(p) => l[p + 6..].to_string(),
                None => l.to_string(),
            })
            .collect()
    }
}

use crate::common::{assert_in_order, mask_ids_and_times as mask};

const RAISING: &str = "MIQ(AutomationRequest#call_automate_event) Raising event";

#[test]
fn auto_approved_request_raises_its_events_then_runs_the_task() {
    let env = Env::standard();
    let v = env.json(&[
        "request",
        "create",
        "/Test/Work/hello",
        "--attr",
        "who=Ada",
        "--auto-approve",
    ]);
    assert_eq!(v["type"], "AutomationRequest");
    assert_eq!(v["request_type"], "automation");
    assert_eq!(v["approval_state"], "approved");
    assert_eq!(v["request_state"], "finished");
    assert_eq!(v["status"], "Ok");
    assert_eq!(v["message"], "Automation Request completed");
    assert_eq!(v["options"]["attrs"]["who"], "Ada");
    assert_eq!(v["tasks"][0]["type"], "AutomationTask");
    assert_eq!(v["tasks"][0]["state"], "finished");

    let lines = env.automation_log();
    assert_in_order(
        &lines,
        &[
            &format!("{RAISING} [request_created] to Automate"),
            "Instantiating [/System/Process/Event?AutomationRequest%3A%3Aautomation_request=",
            "Following Relationship [miqaedb:/System/Event/RequestEvent/Request/request_created#create]",
            "Following Relationship [miqaedb:/System/Policy/request_created#create]",
            &format!("{RAISING} [request_approved] to Automate"),
            &format!("{RAISING} [request_starting] to Automate"),
            "Instantiating [/Test/Work/hello?AutomationTask%3A%3Aautomation_task=",
            "Hello, Ada!",
            "Method exited with rc=MIQ_OK",
        ],
    );
    insta::assert_snapshot!("auto_approved_automation_log", mask(&lines.join("\n")));
}

#[test]
fn denied_request_is_finished_and_cannot_be_approved() {
    let env = Env::standard();
    let v = env.json(&["request", "create", "Test/Work/hello"]);
    assert_eq!(v["approval_state"], "pending_approval");
    assert_eq!(v["request_state"], "pending");
    assert_eq!(v["tasks"], serde_json::json!([]));
    let id = v["id"].as_i64().expect("id");

    let v = env.json(&["request", "deny", &id.to_string(), "--reason", "not today"]);
    assert_eq!(v["approval_state"], "denied");
    assert_eq!(v["request_state"], "finished");
    assert_eq!(v["status"], "Denied");
    assert_eq!(v["message"], "Request denied: not today");

    let out = env.automate(&["request", "approve", &id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!(
            "automation request [{id}] is denied: cannot approve it"
        )),
        "{}",
        stderr(&out)
    );
    let v = env.json(&["request", "show", &id.to_string()]);
    assert_eq!(v["status"], "Denied");
    assert_eq!(v["tasks"], serde_json::json!([]));

    let lines = env.automation_log();
    assert_in_order(
        &lines,
        &[
            &format!("{RAISING} [request_created] to Automate"),
            &format!("{RAISING} [request_denied] to Automate"),
            "Following Relationship [miqaedb:/System/Policy/request_denied#create]",
        ],
    );
    assert!(!lines.iter().any(|l| l.contains("[request_approved]")));
    // A missing reason is a usage error.
    let out = env.automate(&["request", "deny", &id.to_string()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_parts_are_refused_and_nothing_is_stored() {
    let env = Env::standard();
    for (path, what) in [
        ("/Test/Work/nope", "unknown instance [/Test/Work/nope]"),
        ("/Test/Nope/hello", "unknown class [/Test/Nope]"),
        ("/Nowhere/Work/hello", "unknown namespace [/Nowhere]"),
    ] {
        let out = env.automate(&["request", "create", path, "--auto-approve"]);
        assert_eq!(out.status.code(), Some(1), "{path}: {}", stdout(&out));
        assert!(stderr(&out).contains(what), "{path}: {}", stderr(&out));
    }
    let out = env.automate(&["request", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).expect("json"),
        serde_json::json!([])
    );
    let out = env.automate(&["request", "show", "1000000000001"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn outcomes_map_to_statuses() {
    let env = Env::standard();
    let warn = env.json(&["request", "create", "/Test/Work/warn", "--auto-approve"]);
    assert_eq!(warn["request_state"], "finished");
    assert_eq!(warn["status"], "Warn");
    assert_eq!(warn["message"], "finished with a warning");
    let fail = env.json(&["request", "create", "/Test/Work/fail", "--auto-approve"]);
    assert_eq!(fail["request_state"], "finished");
    assert_eq!(fail["status"], "Error");
    assert_eq!(fail["message"], "it failed on purpose");
    assert_eq!(fail["tasks"][0]["status"], "Error");

    let out = env.automate(&["request", "list"]);
    let listed = stdout(&out);
    // The header and the two requests.
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.starts_with("ID "), "{listed}");
    let warn: Vec<&str> = listed
        .lines()
        .find(|l| l.contains("/Test/Work/warn"))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        warn.get(1..5),
        Some(&["approved", "finished", "Warn", "/Test/Work/warn"][..]),
        "{listed}"
    );
}

#[test]
fn retrying_task_keeps_the_request_active_until_run_due_finishes_it() {
    let env = Env::standard();
    let v = env.json(&[
        "request",
        "create",
        "/Test/Counter/default",
        "--auto-approve",
    ]);
    let id = v["id"].as_i64().expect("id");
    assert_eq!(v["approval_state"], "approved");
    assert_eq!(v["request_state"], "active");
    assert_eq!(v["tasks"][0]["state"], "active");

    let list = env.automate(&["retries", "list"]);
    assert!(
        stdout(&list).contains("/Test/Counter/default?AutomationTask%3A%3Aautomation_task="),
        "{}",
        stdout(&list)
    );
    let run = env.automate(&["retries", "run-due", "--wait"]);
    assert!(run.status.success(), "{}\n{}", stdout(&run), stderr(&run));
    assert!(
        stdout(&run).contains("task finished with n=3"),
        "{}",
        stdout(&run)
    );
    assert!(
        stdout(&run).contains("0 still scheduled"),
        "{}",
        stdout(&run)
    );

    let v = env.json(&["request", "show", &id.to_string()]);
    assert_eq!(v["request_state"], "finished");
    assert_eq!(v["status"], "Ok");
    assert_eq!(v["tasks"][0]["state"], "finished");
    assert_eq!(v["tasks"][0]["status"], "Ok");
}

#[test]
fn request_flow_runs_on_the_real_manageiq_domain_as_the_only_domain() {
    let Some(fixture) = fixture_dir() else {
        return;
    };
    let env = Env::with(&[fixture]);
    // A target the fixture runs natively (its methods are mostly Ruby,
    // which automate does not run): the builtin parse_provider_category.
    let v = env.json(&[
        "request",
        "create",
        "/System/Process/parse_provider_category",
        "--auto-approve",
    ]);
    assert_eq!(v["approval_state"], "approved", "{v}");
    assert_eq!(v["request_state"], "finished", "{v}");
    assert_eq!(v["status"], "Ok", "{v}");
    assert_eq!(v["tasks"].as_array().map(Vec::len), Some(1), "{v}");
    let lines = env.automation_log();
    assert_in_order(
        &lines,
        &[
            &format!("{RAISING} [request_created] to Automate"),
            "Following Relationship [miqaedb:/System/Event/RequestEvent/Request/request_created#create]",
            "Following Relationship [miqaedb:/System/Policy/request_created#create]",
            &format!("{RAISING} [request_approved] to Automate"),
            &format!("{RAISING} [request_starting] to Automate"),
            // The fixture's request_starting policy calls get_request_type,
            // a Ruby method: logged, and the request goes on.
            "Instantiating [/System/Process/parse_provider_category?AutomationTask%3A%3Aautomation_task=",
            "Invoking [builtin] method [/ManageIQ/System/Process/parse_provider_category]",
        ],
    );
}

#[test]
fn the_retry_runner_finishes_the_request_through_the_library() {
    use automate_engine::deliver::{run_due, DEFAULT_MAX_DELIVERIES};
    use automate_redb::RedbStore;
    use automate_requests::{NewRequest, RequestError, Requests};
    use std::sync::Arc;

    let env = Env::standard();
    let store = RedbStore::open(env.tmp.path().join("lib.redb")).expect("store");
    let schedule = store.schedule();
    let (engine, _runner) = crate::common::control_engine(&env.root, Arc::new(store));
    let requests = Requests::new(engine.clone(), Arc::new(schedule.clone()));
    let new = |instance: &str| NewRequest {
        namespace: "Test".into(),
        class: "Counter".into(),
        instance: instance.into(),
        message: None,
        parameters: serde_json::Map::new(),
        auto_approve: false,
        userid: Some("ada".into()),
    };
    assert!(matches!(
        requests.create(new("nope")),
        Err(RequestError::Unknown { ref what, .. }) if what == "instance"
    ));
    let v = requests.create(new("default")).expect("create");
    assert_eq!(v.userid, "ada");
    assert_eq!(v.approval_state, "pending_approval");
    let v = requests.approve(v.id, Some("looks fine")).expect("approve");
    assert_eq!(
        (v.request_state.as_str(), v.status.as_str()),
        ("active", "Ok")
    );
    let err = requests
        .deny(v.id, "too late")
        .expect_err("deny an approved request");
    assert_eq!(err.kind(), "conflict");

    // What the pipeline's retry runner does: run_due until nothing is left.
    let mut passes = 0;
    while schedule.len().expect("len") > 0 {
        passes += 1;
        assert!(passes < 1000, "the retries never ended");
        run_due(&engine, &schedule, 16, DEFAULT_MAX_DELIVERIES).expect("run_due");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let v = requests.get(v.id).expect("get");
    assert_eq!(
        (v.request_state.as_str(), v.status.as_str()),
        ("finished", "Ok")
    );
    assert_eq!(v.tasks.len(), 1);
    assert_eq!(v.tasks[0].status, "Ok");
    assert_eq!(requests.list().expect("list").len(), 1);
}

/// The pipeline's workers deliver through `deliver_deferred` (the retry is
/// handed back and written by the caller, with its claim completed in the
/// same transaction). A request whose task retries is finished on that path
/// by the engine's after-delivery hook, which `control::with_control`
/// (through `methods::with_event_builtins`) installs: with the hook replaced by one that does nothing, the same
/// deliveries leave the request active.
#[test]
fn deliver_deferred_finishes_the_request_through_the_after_delivery_hook() {
    use automate_engine::deliver::{
        deliver_deferred, AfterDelivery, Delivery, Outcome, DEFAULT_MAX_DELIVERIES, RETRY_KIND,
        RETRY_LEASE,
    };
    use automate_engine::Engine;
    use automate_redb::RedbStore;
    use automate_requests::{NewRequest, RequestView, Requests};
    use automate_vmdb::Schedule;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    struct Nothing;
    impl AfterDelivery for Nothing {
        fn after_delivery(&self, _: &Engine, _: &Delivery, _: &Outcome) {}
    }

    /// Claims the due retries and delivers each with `deliver_deferred`,
    /// writing the retry it hands back, until none is left.
    fn drive(engine: &Engine, schedule: &dyn Schedule) -> usize {
        let mut delivered = 0;
        while schedule.len().expect("len") > 0 {
            assert!(delivered < 1000, "the retries never ended");
            let claimed = schedule
                .claim_due_kind(SystemTime::now(), 16, RETRY_LEASE, RETRY_KIND)
                .expect("claim");
            for c in claimed {
                let d: Delivery = serde_json::from_value(c.item.payload).expect("a delivery");
                let (outcome, retry) =
                    deliver_deferred(engine, &d, None, DEFAULT_MAX_DELIVERIES).expect("deliver");
                delivered += 1;
                match retry {
                    Some(r) => {
                        assert!(matches!(outcome, Outcome::Retry { id: None, .. }));
                        schedule
                            .schedule_and_complete(&r.item, r.run_at, c.id)
                            .expect("schedule");
                    }
                    None => {
                        schedule.complete(c.id).expect("complete");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        delivered
    }

    let env = Env::standard();
    let store = RedbStore::open(env.tmp.path().join("lib.redb")).expect("store");
    let schedule = store.schedule();
    let (engine, _runner) = crate::common::control_engine(&env.root, Arc::new(store));
    let requests = Requests::new(engine.clone(), Arc::new(schedule.clone()));
    let start = || -> RequestView {
        let v = requests
            .create(NewRequest {
                namespace: "Test".into(),
                class: "Counter".into(),
                instance: "default".into(),
                message: None,
                parameters: serde_json::Map::new(),
                auto_approve: true,
                userid: None,
            })
            .expect("create");
        // The Counter retries twice: the first delivery left a retry.
        assert_eq!(
            (v.request_state.as_str(), v.tasks[0].state.as_str()),
            ("active", "active")
        );
        v
    };

    // Without the hook the deferred deliveries run, but nothing finishes
    // the request.
    let unhooked = start();
    let silent = engine.clone().with_after_delivery(Arc::new(Nothing));
    assert_eq!(drive(&silent, &schedule), 2);
    let v = requests.get(unhooked.id).expect("get");
    assert_eq!(
        (v.request_state.as_str(), v.tasks[0].state.as_str()),
        ("active", "active")
    );

    // The engine as `with_control` builds it finishes request and task.
    let hooked = start();
    assert_eq!(drive(&engine, &schedule), 2);
    let v = requests.get(hooked.id).expect("get");
    assert_eq!(
        (v.request_state.as_str(), v.status.as_str()),
        ("finished", "Ok")
    );
    assert_eq!(v.message, "Automation Request completed");
    assert_eq!(
        (v.tasks[0].state.as_str(), v.tasks[0].status.as_str()),
        ("finished", "Ok")
    );
}
