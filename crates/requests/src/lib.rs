//! Automation requests (ManageIQ's `AutomationRequest` and `AutomationTask`,
//! `docs/requests.md`): a request to run an Automate URI, with an approval
//! step, whose life is raised to Automate as request events, and which one
//! task executes through [`automate_engine::deliver`] so that a state machine
//! asking for a retry is scheduled durably.
//!
//! The life of a request, as `MiqRequest` has it:
//!
//! 1. [`Requests::create`] checks that the namespace, class and instance
//!    exist, stores an `AutomationRequest` (`pending_approval`, `pending`)
//!    and raises `request_created`: a `RequestEvent` row is stored and
//!    `/System/Process/Event` is delivered with the request, the event and
//!    `vmdb_object_type=automation_request`; with `auto_approve` it then
//!    approves the request at once.
//! 2. [`Requests::approve`] raises `request_approved`, then (synchronously)
//!    `request_starting`, creates the `AutomationTask` and delivers the
//!    requested URI with the request's parameters and the task
//!    (`AutomationTask::automation_task`). [`Requests::deny`] finishes the
//!    request with status `Denied` and raises `request_denied`.
//! 3. When a delivery for an `AutomationTask` ends (the first one or a
//!    retry run by `automate retries run-due` or the pipeline's retry
//!    runner and workers), [`AfterAeDelivery`], the hook the engine runs
//!    after every delivery ([`with_requests`] installs it), finishes the task and the request with
//!    the outcome: `ok` → `Ok`, `warn` → `Warn`, anything else → `Error`. A
//!    retry leaves both `active`.
//!
//! The lines ManageIQ writes (`MIQ(AutomationRequest#call_automate_event)
//! Raising event [..] to Automate`, the deliveries) go to `tracing` targets
//! `evm` and `automation`; Automate's own trace goes to `automation`.
//!
//! Provisioning requests (`MiqProvisionRequest`, made by
//! `create_provision_request`) share the approval and the request events;
//! their `MiqProvision` tasks send `clone_to_vm` to the template's provider
//! and finish when the new VM appears (`provision`, `docs/requests.md`).
//!
//! Files: `model` (the stored request and task, their rows and views),
//! `error`, `check` (a new request's input), `event` (request events raised
//! to Automate), `approval` (the approval states), `task` (the task, its
//! delivery and [`AfterAeDelivery`]), `provision` (provisioning requests);
//! this file is the [`Requests`] service.

#![deny(missing_docs)]

mod approval;
mod check;
mod error;
mod event;
mod model;
mod provision;
mod task;

pub use check::{check_parameters, check_uri_part};
pub use error::RequestError;
pub use model::{NewRequest, RequestView, TaskView, REQUEST_CLASS, REQUEST_TYPE, TASK_CLASS};
pub use provision::{parse_ws_string, NewProvisionRequest, MAX_VMS, PROVISION_REQUEST_TYPE};
pub use task::{with_requests, AfterAeDelivery};

use automate_engine::{AttrValue, Engine};
use automate_vmdb::{ObjectStore, Schedule, VmdbRef};
use check::{check_path, clean_path};
use event::call_automate_event;
use model::{request_row, view};
use std::sync::{Arc, Mutex};

/// The request service: creates, approves, denies and reads automation
/// requests in the engine's object store. `Send + Sync`; share it as
/// `Arc<Requests>`. Every call blocks (object store writes, Automate).
pub struct Requests {
    engine: Engine,
    schedule: Arc<dyn Schedule>,
    /// Serializes approval-state changes (two approvals of one request
    /// must not both start a task); shared by the services
    /// [`Requests::with_store`] makes.
    lock: Arc<Mutex<()>>,
}

impl Requests {
    /// A service over the engine's object store; retries go to `schedule`
    /// (the same store's scheduled-work table). The service's engine is
    /// given the requests' after-delivery hook ([`with_requests`]), so its
    /// own deliveries finish its tasks whatever engine it was handed.
    pub fn new(engine: Engine, schedule: Arc<dyn Schedule>) -> Requests {
        Requests {
            engine: with_requests(engine),
            schedule,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The same service over `store` (a unit of work's objects: what it
    /// writes lands in the unit), sharing this one's scheduled work and
    /// approval lock. A few `Arc` clones.
    pub fn with_store(&self, store: Arc<dyn ObjectStore>) -> Requests {
        Requests {
            engine: self.engine.clone().with_store(store),
            schedule: self.schedule.clone(),
            lock: self.lock.clone(),
        }
    }

    fn store(&self) -> &dyn ObjectStore {
        self.engine.store().as_ref()
    }

    /// Creates a request (refused, with nothing stored, when the
    /// namespace, class or instance does not exist), raises
    /// `request_created`, and with `auto_approve` approves it and runs its
    /// task before returning.
    pub fn create(&self, req: NewRequest) -> Result<RequestView, RequestError> {
        let namespace = clean_path(&req.namespace);
        let class = clean_path(&req.class);
        let instance = req.instance.trim().to_string();
        for (field, value) in [
            ("namespace", &namespace),
            ("class", &class),
            ("instance", &instance),
        ] {
            if value.is_empty() {
                return Err(RequestError::Invalid {
                    field: field.to_string(),
                    message: "must not be empty".to_string(),
                });
            }
        }
        check_uri_part("namespace", &namespace)?;
        check_uri_part("class", &class)?;
        check_uri_part("instance", &instance)?;
        check_parameters("parameters", &req.parameters)?;
        if class.contains('/') || instance.contains('/') {
            return Err(RequestError::Invalid {
                field: if class.contains('/') {
                    "class"
                } else {
                    "instance"
                }
                .to_string(),
                message: "must be a single name without '/'".to_string(),
            });
        }
        let message = req
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        check_path(&self.engine, &namespace, &class, &instance)?;
        let userid = req
            .userid
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or("admin")
            .to_string();

        let mut attrs = serde_json::Map::new();
        for (k, v) in &req.parameters {
            attrs.insert(k.clone(), v.clone());
        }
        attrs.insert("userid".into(), serde_json::Value::String(userid.clone()));
        let options = serde_json::json!({
            "namespace": namespace,
            "class_name": class,
            "instance_name": instance,
            "message": message,
            "attrs": attrs,
            "schedule_type": "immediately",
        });
        let request = self
            .store()
            .create(REQUEST_CLASS, request_row(userid, &options))?;
        tracing::info!(target: "evm", "MIQ(AutomationRequest.create_request) Automation request [{}] created for [{}/{}/{}]", request.id, namespace, class, instance);
        call_automate_event(&self.engine, &*self.schedule, &request, "request_created")?;
        if req.auto_approve {
            return self.approve_as(request.id, "admin", Some("Auto-Approved"));
        }
        self.get(request.id)
    }
    /// One request with its tasks.
    pub fn get(&self, id: i64) -> Result<RequestView, RequestError> {
        let request = self.find(id)?;
        Ok(view(self.store(), &request)?)
    }

    /// Every automation request, by id.
    pub fn list(&self) -> Result<Vec<RequestView>, RequestError> {
        let store = self.store();
        let mut refs: Vec<VmdbRef> = store
            .find_by("MiqRequest", "request_type", &AttrValue::str(REQUEST_TYPE))?
            .into_iter()
            .filter(|r| r.class.eq_ignore_ascii_case(REQUEST_CLASS))
            .collect();
        refs.sort_by_key(|r| r.id);
        Ok(refs
            .iter()
            .map(|r| view(store, r))
            .collect::<Result<_, _>>()?)
    }

    /// Every request of every kind (automation and provisioning), by id:
    /// ManageIQ's `/api/requests`.
    pub fn list_all(&self) -> Result<Vec<RequestView>, RequestError> {
        let store = self.store();
        Ok(self
            .all_refs()?
            .iter()
            .map(|r| view(store, r))
            .collect::<Result<_, _>>()?)
    }

    /// Every request of every kind this service serves, by id (not read).
    fn all_refs(&self) -> Result<Vec<VmdbRef>, RequestError> {
        let mut refs: Vec<VmdbRef> = self
            .store()
            .list("MiqRequest")?
            .into_iter()
            .filter(|r| is_served(&r.class))
            .collect();
        refs.sort_by_key(|r| r.id);
        Ok(refs)
    }

    /// A page of every request (of either kind), newest first: the
    /// `limit` after the newest `skip`, and how many there are in all
    /// (only the page's requests are read).
    pub fn page_newest(
        &self,
        skip: usize,
        limit: usize,
    ) -> Result<(usize, Vec<RequestView>), RequestError> {
        let store = self.store();
        let refs = self.all_refs()?;
        let total = refs.len();
        let page = refs
            .iter()
            .rev()
            .skip(skip)
            .take(limit)
            .map(|r| view(store, r))
            .collect::<Result<_, _>>()?;
        Ok((total, page))
    }

    /// Every provisioning request (`MiqProvisionRequest`), by id.
    pub fn list_provision(&self) -> Result<Vec<RequestView>, RequestError> {
        Ok(self
            .list_all()?
            .into_iter()
            .filter(|v| {
                v.r#type
                    .eq_ignore_ascii_case(automate_vmdb::request_task::PROVISION_REQUEST_CLASS)
            })
            .collect())
    }

    /// The request `id`: an automation or a provisioning request (the
    /// approval and the views are the same for both).
    fn find(&self, id: i64) -> Result<VmdbRef, RequestError> {
        self.store()
            .find("MiqRequest", id)?
            .filter(|r| is_served(&r.class))
            .ok_or(RequestError::NotFound(id))
    }
}

/// The request classes this service runs.
fn is_served(class: &str) -> bool {
    class.eq_ignore_ascii_case(REQUEST_CLASS)
        || class.eq_ignore_ascii_case(automate_vmdb::request_task::PROVISION_REQUEST_CLASS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_datastore::Datastore;
    use automate_redb::RedbStore;
    use std::sync::Arc;

    fn service(dir: &std::path::Path) -> Requests {
        let root =
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datastore"));
        let (ds, _problems) = Datastore::open(&root);
        let store = RedbStore::open(dir.join("t.redb")).expect("open store");
        let schedule = store.schedule();
        // Requests::new installs its own after-delivery hook; the policies
        // are none (control sits above requests).
        let (engine, _runner) = automate_methods::with_methods(
            Engine::new(Arc::new(ds)).with_store(Arc::new(store)),
            Arc::new(NoPolicies),
        );
        Requests::new(engine, Arc::new(schedule))
    }

    /// No control policies: raised request events run no policy.
    struct NoPolicies;

    impl automate_engine::Policies for NoPolicies {
        fn evaluate_policies(
            &self,
            _rt: &mut automate_engine::Runtime<'_>,
            _event: Option<&automate_vmdb::VmdbRef>,
            _target: Option<&automate_vmdb::VmdbRef>,
            _event_type: &str,
        ) {
        }

        fn evaluate_alerts(
            &self,
            _rt: &mut automate_engine::Runtime<'_>,
            _event: Option<&automate_vmdb::VmdbRef>,
            _target: Option<&automate_vmdb::VmdbRef>,
            _event_type: &str,
        ) {
        }
    }

    fn hello(auto: bool) -> NewRequest {
        NewRequest {
            namespace: "/System/".into(),
            class: "Request".into(),
            instance: "HelloWorld".into(),
            message: None,
            parameters: serde_json::Map::new(),
            auto_approve: auto,
            userid: None,
        }
    }

    #[test]
    fn kinds_map_to_api_statuses() {
        assert_eq!(RequestError::NotFound(1).kind(), "not_found");
        let e = RequestError::WrongState {
            id: 1,
            state: "denied".into(),
            action: "approve".into(),
        };
        assert_eq!(e.kind(), "conflict");
        assert_eq!(
            e.to_string(),
            "automation request [1] is denied: cannot approve it"
        );
    }

    #[test]
    fn paths_are_cleaned_like_manageiq() {
        assert_eq!(clean_path(" /System/Request/ "), "System/Request");
        assert_eq!(clean_path("System"), "System");
    }

    #[test]
    fn pending_then_approved_runs_the_task() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = service(tmp.path());
        let v = s.create(hello(false)).expect("create");
        assert_eq!(
            (v.approval_state.as_str(), v.request_state.as_str()),
            ("pending_approval", "pending")
        );
        assert!(v.tasks.is_empty());
        assert_eq!(v.options["namespace"], "System");
        let v = s.approve(v.id, None).expect("approve");
        assert_eq!(v.approval_state, "approved");
        assert_eq!(
            (v.request_state.as_str(), v.status.as_str()),
            ("finished", "Ok")
        );
        assert_eq!(v.tasks.len(), 1);
        assert_eq!(v.tasks[0].state, "finished");
        assert_eq!(s.list().expect("list").len(), 1);
        assert!(matches!(
            s.approve(v.id, None),
            Err(RequestError::WrongState { .. })
        ));
    }

    #[test]
    fn pages_are_newest_first_and_read_only_their_requests() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = service(tmp.path());
        let ids: Vec<i64> = (0..5)
            .map(|_| s.create(hello(false)).expect("create").id)
            .collect();
        let (total, first) = s.page_newest(0, 2).expect("page 1");
        assert_eq!(total, 5);
        let got: Vec<i64> = first.iter().map(|v| v.id).collect();
        assert_eq!(got, [ids[4], ids[3]]);
        let (_, last) = s.page_newest(4, 2).expect("page 3");
        assert_eq!(last.iter().map(|v| v.id).collect::<Vec<_>>(), [ids[0]]);
        assert!(s.page_newest(10, 2).expect("past the end").1.is_empty());
        // A page's view is the one `get` gives.
        assert_eq!(
            serde_json::to_value(&first[0]).expect("json"),
            serde_json::to_value(s.get(ids[4]).expect("get")).expect("json")
        );
        assert_eq!(first[0].options["namespace"], "System");
    }

    #[test]
    fn of_two_concurrent_approvals_one_wins() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Requests>();
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(service(tmp.path()));
        let id = s.create(hello(false)).expect("create").id;
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.approve(id, None))
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results.iter().any(
            |r| matches!(r, Err(RequestError::WrongState { state, .. }) if state == "approved")
        ));
        assert_eq!(s.get(id).expect("get").tasks.len(), 1);
    }

    #[test]
    fn unknown_parts_are_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = service(tmp.path());
        let mut r = hello(true);
        r.instance = "Nope".into();
        match s.create(r) {
            Err(RequestError::Unknown { what, path }) => {
                assert_eq!(what, "instance");
                assert_eq!(path, "/System/Request/Nope");
            }
            other => panic!("{other:?}"),
        }
        let mut r = hello(true);
        r.class = "Nope".into();
        assert!(matches!(s.create(r), Err(RequestError::Unknown { what, .. }) if what == "class"));
        let mut r = hello(true);
        r.namespace = "Nowhere".into();
        assert!(
            matches!(s.create(r), Err(RequestError::Unknown { what, .. }) if what == "namespace")
        );
        assert!(s.list().expect("list").is_empty());
        assert!(matches!(s.get(1), Err(RequestError::NotFound(1))));
    }
}
