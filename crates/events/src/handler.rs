//! The event handler (ManageIQ's `EmsEvent.add` + `EmsEventHelper#handle` +
//! `MiqAeEvent.raise_ems_event` + `MiqAeEngine.deliver`, reference §9.1).
//!
//! For each provider event: log `Processing EMS event [..] chain_id [..] on
//! EMS [..]...`; persist an `EmsEvent` (de-duplicated on ManageIQ's key:
//! event type, timestamp, chain id, provider, VM reference), resolving the
//! VM and host references to object ids and creating them on first sight;
//! log `Delivering {...} for object [EmsEvent.<id>] with state [] to
//! Automate`; instantiate `/System/Process/Event?...` with the attribute set
//! of the seed; log `...Complete`.

use super::{Provider, ProviderEvent};
use crate::metrics::Metrics;
use crate::trace::{
    self, LiveEvent, LiveEvents, ObjectTouched, Record, Recording, TraceConfig, TRACE_ATTR,
};
use automate_core::uri::query_uri;
use automate_engine::deliver::{
    deliver, deliver_deferred, Delivery, Outcome, PendingRetry, DEFAULT_MAX_DELIVERIES,
};
use automate_engine::{
    inspect_delivery_attrs, AttrValue, Attributes, Engine, EngineError, TraceLine, Workspace,
};
use automate_vmdb::{ObjectStore, ReadAhead, Schedule, StoreError, VmdbRef};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Serializes the creation of VMs and hosts seen for the first time, so two
/// handlers never create the same one twice (they are created with
/// [`ObjectStore::create_now`], outside any unit of work, so every handler
/// finds them at once). Handlers that write the same store at once share
/// one ([`Handler::with_first_sight`]); cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct FirstSight(Arc<Mutex<()>>);

/// Why an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event's `event_type` is empty or blank: nothing is stored.
    #[error("event has no event_type")]
    NoEventType,
    /// The object store failed: writing the provider, a VM or host or the
    /// `EmsEvent`, or during the delivery (then what Automate wrote is
    /// rolled back; the `EmsEvent` stays).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The evm.log lines the pipeline writes: kept in order (for `automate
/// demo` and tests) and sent to `tracing` (target `evm`).
#[derive(Debug, Default, Clone)]
pub struct EvmLog {
    lines: Arc<Mutex<Vec<String>>>,
    /// Only send the lines to `tracing`; keep none (the pipeline's workers).
    discard: bool,
    /// Neither keep nor send the lines (replay, `automate test`).
    silent: bool,
}

impl EvmLog {
    /// A log that sends its lines to `tracing` only: [`EvmLog::drain`]
    /// returns nothing.
    pub fn discarding() -> EvmLog {
        EvmLog {
            discard: true,
            ..EvmLog::default()
        }
    }

    /// A log that writes nowhere: a replay's deliveries are not the
    /// service's evm.log.
    pub fn silent() -> EvmLog {
        EvmLog {
            discard: true,
            silent: true,
            ..EvmLog::default()
        }
    }

    /// Sends `line` to `tracing` (target `evm`) and keeps it for
    /// [`EvmLog::drain`] unless the log is [`EvmLog::discarding`].
    pub fn info(&self, line: impl Into<String>) {
        if self.silent {
            return;
        }
        let line = line.into();
        tracing::info!(target: "evm", message = line.as_str());
        if self.discard {
            return;
        }
        if let Ok(mut l) = self.lines.lock() {
            l.push(line);
        }
    }

    /// [`EvmLog::info`] of a line the caller keeps: sent to `tracing` as a
    /// `&str` (the log writer copies it as it is, no `fmt` pass), copied
    /// only when this log keeps its lines.
    pub fn info_str(&self, line: &str) {
        if self.silent {
            return;
        }
        if self.discard {
            tracing::info!(target: "evm", message = line);
        } else {
            self.info(line);
        }
    }

    /// [`EvmLog::info`] of a formatted line: a discarding log (the
    /// pipeline's) sends it to `tracing` without making a `String` of it.
    pub fn info_fmt(&self, line: std::fmt::Arguments<'_>) {
        if self.silent {
            return;
        }
        if self.discard {
            tracing::info!(target: "evm", "{line}");
        } else {
            self.info(line.to_string());
        }
    }

    /// Takes the lines written so far.
    pub fn drain(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// What handling one event did.
#[derive(Debug)]
pub struct HandleOutcome {
    /// The EmsEvent's id.
    pub event_id: i64,
    /// The event had been stored already: nothing was delivered.
    pub duplicate: bool,
    /// The delivery URI.
    pub uri: String,
    /// The workspace Automate built (`None` for duplicates).
    pub workspace: Option<Workspace>,
    /// The error Automate ended with, if any (the event stays stored).
    pub error: Option<EngineError>,
    /// The retry the delivery asked for, when the handler defers retries
    /// ([`Handler::deferring_retries`]): the caller schedules it.
    pub retry: Option<PendingRetry>,
    /// The delivery's record, stored with the event
    /// ([`Handler::with_trace`]; `None` when recording is off or for
    /// duplicates).
    pub record: Option<Record>,
}

/// A stored `EmsEvent` to deliver ([`Handler::deliver_stored`]): its id
/// and type and the ids of its VM and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The `EmsEvent`'s id.
    pub id: i64,
    /// Its `event_type`.
    pub event_type: String,
    /// Its VM's id (`vm_or_template_id`).
    pub vm: Option<i64>,
    /// Its host's id (`host_id`).
    pub host: Option<i64>,
}

/// What one delivery of a stored event did ([`Handler::deliver_stored`]).
#[derive(Debug)]
pub struct Delivered {
    /// The delivery URI.
    pub uri: String,
    /// The workspace Automate built.
    pub workspace: Workspace,
    /// The error Automate ended with, if any.
    pub error: Option<EngineError>,
    /// The retry asked for, when the handler defers retries.
    pub retry: Option<PendingRetry>,
    /// The objects created and changed (`None` unless recorded; empty
    /// when what Automate wrote was discarded).
    pub objects: Option<Vec<ObjectTouched>>,
    /// What Automate wrote was discarded (it ended with an error).
    pub discarded: bool,
}

impl Delivered {
    /// The delivery's [`Record`], its trace cut at `max_bytes`. The
    /// objects touched move into it ([`Delivered::objects`] is `None`
    /// after).
    pub fn record(&mut self, max_bytes: usize) -> Record {
        let objects = self.objects.take().unwrap_or_default();
        self.record_of(&self.workspace.trace, objects, max_bytes)
    }

    /// [`Delivered::record`] of `trace` instead of the workspace's (replay
    /// gives the trace with the ids of objects it created in a sandbox
    /// mapped back to the recorded ones).
    pub fn record_over(&mut self, trace: &[TraceLine], max_bytes: usize) -> Record {
        let objects = self.objects.take().unwrap_or_default();
        self.record_of(trace, objects, max_bytes)
    }

    fn record_of(
        &self,
        trace: &[TraceLine],
        objects: Vec<ObjectTouched>,
        max_bytes: usize,
    ) -> Record {
        let mut outcome = trace::outcome_of(trace);
        outcome.objects = objects;
        outcome.discarded = self.discarded;
        outcome.retry = self.retry.is_some();
        if let Some(e) = &self.error {
            outcome.errors.push(e.to_string());
        }
        let digest = trace::digest(&outcome, trace);
        let (lines, shapes, truncated) = trace::bounded_trace(trace, max_bytes);
        Record {
            recorded_on: automate_core::time::iso8601(automate_core::time::now_ms()),
            uri: self.uri.clone(),
            digest,
            outcome,
            trace: lines,
            shapes,
            truncated,
        }
    }
}

/// Persists provider events and delivers them to Automate.
pub struct Handler {
    engine: Engine,
    log: EvmLog,
    server: VmdbRef,
    user: VmdbRef,
    /// Providers by name, once found or created (they are never deleted
    /// while the pipeline runs).
    providers: Mutex<rustc_hash::FxHashMap<String, VmdbRef>>,
    /// Where a delivery whose state machine asks for a retry is scheduled
    /// (`MiqAeEngine.deliver`); without one, a retry is logged and dropped.
    schedule: Option<Arc<dyn Schedule>>,
    /// Hand retries back in [`HandleOutcome::retry`] instead of scheduling
    /// them.
    defer_retries: bool,
    /// Held while a VM or host seen for the first time is looked up again
    /// and created.
    first_sight: FirstSight,
    /// Where the latency of each delivery's instantiation is recorded.
    metrics: Option<Metrics>,
    /// `events.trace`: each delivery's record, stored with the event.
    trace: Option<TraceConfig>,
    /// Where each handled event is shown live.
    live: Option<LiveEvents>,
}

impl Handler {
    /// A handler writing to the engine's object store. Creates the
    /// `MiqServer` and `User` the delivery URI names if the store has none.
    pub fn new(engine: Engine, log: EvmLog) -> Result<Handler, HandlerError> {
        let store = engine.store().as_ref();
        let server = ensure_one(store, "MiqServer", "name", "EVM")?;
        let user = ensure_one(store, "User", "userid", "admin")?;
        Ok(Handler {
            engine,
            log,
            server,
            user,
            providers: Mutex::new(rustc_hash::FxHashMap::default()),
            schedule: None,
            defer_retries: false,
            first_sight: FirstSight::default(),
            metrics: None,
            trace: None,
            live: None,
        })
    }

    /// Schedules the retries that deliveries ask for in `schedule` (the
    /// store's scheduled-work table, run by the pipeline's retry runner and
    /// `automate retries run-due`).
    pub fn with_schedule(mut self, schedule: Arc<dyn Schedule>) -> Handler {
        self.schedule = Some(schedule);
        self
    }

    /// Hands the retries deliveries ask for back in
    /// [`HandleOutcome::retry`] instead of scheduling them: the pipeline
    /// writes them in the transaction of the worker batch that stores and
    /// acknowledges the event, so a crash leaves both or neither (a
    /// re-delivered event does not schedule its retry twice).
    pub fn deferring_retries(mut self) -> Handler {
        self.defer_retries = true;
        self
    }

    /// Shares `lock` with the other handlers that write the same store at
    /// once (the pipeline's workers), so no two of them create the same VM
    /// or host seen for the first time. A handler made by [`Handler::new`]
    /// has a lock of its own.
    pub fn with_first_sight(mut self, lock: FirstSight) -> Handler {
        self.first_sight = lock;
        self
    }

    /// Records how long each delivery's instantiation takes in `metrics`
    /// (`automate_instantiation_seconds`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Handler {
        self.metrics = Some(metrics);
        self
    }

    /// Records each delivery as `config` says (`events.trace`; on by
    /// default, bounds from [`TraceConfig::default`]): its outcome, its
    /// trace and their digest, in the event row's [`TRACE_ATTR`], written
    /// in the event's own unit of work.
    pub fn with_trace(mut self, config: TraceConfig) -> Handler {
        self.trace = config.enabled.then_some(config);
        self
    }

    /// Shows each handled event on `live` (the API's live stream).
    pub fn with_live(mut self, live: LiveEvents) -> Handler {
        self.live = Some(live);
        self
    }

    /// Where this handler writes its evm.log lines.
    pub fn log(&self) -> &EvmLog {
        &self.log
    }

    /// The engine this handler delivers to (its object store is the one
    /// [`Handler::handle`] writes).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The provider's `ExtManagementSystem`, created on first use.
    pub fn provider_ref(&self, provider: &Provider) -> Result<VmdbRef, HandlerError> {
        self.provider_ref_in(self.engine.store().as_ref(), provider)
    }

    /// [`Handler::provider_ref`], looked up in `store`.
    fn provider_ref_in(
        &self,
        store: &dyn ObjectStore,
        provider: &Provider,
    ) -> Result<VmdbRef, HandlerError> {
        if let Some(r) = self
            .providers
            .lock()
            .ok()
            .and_then(|m| m.get(&provider.name).cloned())
        {
            return Ok(r);
        }
        let r = find_or_create_provider(store, provider)?;
        if let Ok(mut m) = self.providers.lock() {
            m.insert(provider.name.clone(), r.clone());
        }
        Ok(r)
    }

    /// Reads ahead, in `engine`'s object store, what handling `events`
    /// will look up: each event's de-duplication key, its VM and its host
    /// by provider reference ([`ObjectStore::read_ahead`]: one round trip
    /// for a batch on PostgreSQL, nothing on a local store). A pipeline
    /// worker calls it with its batch before handling it; a failure is
    /// logged and left to the lookups themselves.
    pub fn read_ahead_in<'a>(
        &self,
        engine: &Engine,
        events: impl IntoIterator<Item = (&'a Provider, &'a ProviderEvent)>,
    ) {
        let store = engine.store().as_ref();
        let mut wants = ReadAhead::default();
        for (provider, ev) in events {
            if ev.event_type.trim().is_empty() {
                continue;
            }
            let Ok(ems) = self.provider_ref_in(store, provider) else {
                continue;
            };
            wants.by.push((
                "EventStream",
                "dedup_key",
                AttrValue::Str(dedup_key(ev, ems.id)),
            ));
            if let Some(r) = &ev.host_ems_ref {
                wants.refs.push(("Host", ems.id, r.clone()));
            }
            if let Some(r) = &ev.vm_ems_ref {
                wants.refs.push(("VmOrTemplate", ems.id, r.clone()));
            }
        }
        if wants.is_empty() {
            return;
        }
        if let Err(e) = store.read_ahead(&wants) {
            tracing::warn!(target: "evm", "MIQ(EmsEventHandler-handle_event) reading ahead for a batch of {} events failed (each looks up for itself): {e}", wants.by.len());
        }
    }

    /// Handles one event end to end, with the handler's engine (and its
    /// object store).
    pub fn handle(
        &self,
        provider: &Provider,
        ev: &ProviderEvent,
    ) -> Result<HandleOutcome, HandlerError> {
        self.handle_in(&self.engine, provider, ev)
    }

    /// [`Handler::handle`] with `engine`: the handler's engine over another
    /// object store (a pipeline worker's unit of work: what the event and
    /// Automate write lands in the unit, each delivery behind a savepoint of
    /// that store).
    pub fn handle_in(
        &self,
        engine: &Engine,
        provider: &Provider,
        ev: &ProviderEvent,
    ) -> Result<HandleOutcome, HandlerError> {
        if ev.event_type.trim().is_empty() {
            return Err(HandlerError::NoEventType);
        }
        let store = engine.store().as_ref();
        let ems = self.provider_ref_in(store, provider)?;
        let chain = ev.chain_id.clone().unwrap_or_default();
        let processing = format!(
            "MIQ(EmsEventHandler-handle_event) Processing EMS event [{}] chain_id [{}] on EMS [{}]...",
            ev.event_type, chain, ems.id
        );
        self.log.info_fmt(format_args!("{processing}"));
        let key = dedup_key(ev, ems.id);
        // A failed read fails the event (the caller retries it): it must
        // not pass for "not stored yet" and store the event twice.
        if let Some(existing) = store
            .find_by("EventStream", "dedup_key", &AttrValue::Str(key.clone()))?
            .into_iter()
            .next()
        {
            self.log.info(format!("{processing}Complete"));
            return Ok(HandleOutcome {
                event_id: existing.id,
                duplicate: true,
                uri: String::new(),
                workspace: None,
                error: None,
                retry: None,
                record: None,
            });
        }
        let host = match &ev.host_ems_ref {
            Some(r) => {
                Some(self.find_or_create(store, &ems, "Host", r, ev.host_name.as_deref(), None)?)
            }
            None => None,
        };
        let vm = match &ev.vm_ems_ref {
            Some(r) => Some(self.find_or_create(
                store,
                &ems,
                "VmOrTemplate",
                r,
                ev.vm_name.as_deref(),
                host.as_ref(),
            )?),
            None => None,
        };
        let mut attrs = Attributes::default();
        let s = |v: &str| AttrValue::Str(v.to_string());
        attrs.insert("event_namespace".into(), s("EmsEvent"));
        attrs.insert("source".into(), s(&provider.kind));
        attrs.insert("event_type".into(), s(&ev.event_type));
        // The event stream's one format (ISO 8601 UTC with milliseconds,
        // as MiqEvent and RequestEvent rows), whatever the caller passed;
        // catchers normalise already, `event send` and the demo may not.
        let stamp = automate_core::time::parse_time(&ev.timestamp)
            .map(automate_core::time::iso8601)
            .unwrap_or_else(|| ev.timestamp.clone());
        attrs.insert("timestamp".into(), AttrValue::Str(stamp));
        attrs.insert("chain_id".into(), s(&chain));
        attrs.insert("ems_id".into(), AttrValue::Int(ems.id));
        if let Some(vm) = &vm {
            attrs.insert("vm_or_template_id".into(), AttrValue::Int(vm.id));
        }
        if let Some(h) = &host {
            attrs.insert("host_id".into(), AttrValue::Int(h.id));
        }
        if let Some(r) = &ev.vm_ems_ref {
            attrs.insert("vm_ems_ref".into(), s(r));
        }
        attrs.insert(
            "full_data".into(),
            AttrValue::Str(automate_vmdb::json_text(&ev.full_data)),
        );
        attrs.insert("dedup_key".into(), AttrValue::Str(key));
        let event = store.create("EmsEvent", attrs)?;
        let stored = StoredEvent {
            id: event.id,
            event_type: ev.event_type.clone(),
            vm: vm.as_ref().map(|v| v.id),
            host: host.as_ref().map(|h| h.id),
        };
        let mut delivered = self.deliver_stored(engine, &stored, self.trace.is_some())?;
        let record = match &self.trace {
            Some(config) => {
                let record = delivered.record(config.max_bytes);
                store.update(&event, TRACE_ATTR, record.to_attr())?;
                Some(record)
            }
            None => None,
        };
        let Delivered {
            uri,
            workspace: ws,
            error,
            retry,
            ..
        } = delivered;
        if let Some(live) = self.live.as_ref().filter(|l| l.listened()) {
            live.publish(live_event(
                provider,
                ev,
                event.id,
                vm.as_ref(),
                record.as_ref(),
                &ws,
                error.as_ref(),
            ));
        }
        self.log.info_fmt(format_args!("{processing}Complete"));
        Ok(HandleOutcome {
            event_id: event.id,
            duplicate: false,
            uri,
            workspace: Some(ws),
            error,
            retry,
            record,
        })
    }

    /// Delivers a stored `EmsEvent` to Automate: `/System/Process/Event`
    /// with MiqAeEvent.raise_ems_event's attributes, each delivery behind a
    /// savepoint of `engine`'s store (what Automate wrote is taken back
    /// when it ends with an error), its trace written to the evm.log. The
    /// one delivery path of live handling ([`Handler::handle_in`]) and of
    /// replay (`crate::replay`, over a sandbox). With `record`, the
    /// delivery runs over a [`Recording`] view that notes the objects it
    /// creates and changes ([`Delivered::objects`]).
    pub fn deliver_stored(
        &self,
        engine: &Engine,
        event: &StoredEvent,
        record: bool,
    ) -> Result<Delivered, HandlerError> {
        let store = engine.store().as_ref();
        let event_type = &event.event_type;
        // MiqAeEvent.raise_ems_event's attributes, in its order.
        let mut pairs: Vec<(String, String)> = vec![
            ("event_id".into(), event.id.to_string()),
            ("event_stream_id".into(), event.id.to_string()),
            ("event_type".into(), event_type.clone()),
        ];
        if let Some(vm) = event.vm {
            pairs.push(("VmOrTemplate::vm".into(), vm.to_string()));
            pairs.push(("vm_id".into(), vm.to_string()));
        }
        if let Some(h) = event.host {
            pairs.push(("Host::host".into(), h.to_string()));
            pairs.push(("host_id".into(), h.to_string()));
        }
        self.log.info_fmt(format_args!(
            "MIQ(MiqAeEngine.deliver) Delivering {} for object [EmsEvent.{}] with state [] to Automate",
            inspect_delivery_attrs(&pairs),
            event.id
        ));
        pairs.push(("EventStream::event_stream".into(), event.id.to_string()));
        pairs.push(("MiqServer::miq_server".into(), self.server.id.to_string()));
        pairs.push(("User::user".into(), self.user.id.to_string()));
        pairs.push(("object_name".into(), "Event".into()));
        pairs.push(("vmdb_object_type".into(), "event_stream".into()));
        let (uri, parsed) = query_uri("/System/Process/Event", pairs);
        let d = Delivery {
            uri: uri.clone(),
            attrs: Vec::new(),
            object: format!("EmsEvent.{}", event.id),
            deliveries: 0,
        };
        // What Automate writes is kept only if it ends without an error;
        // the event row stays either way (ManageIQ's EmsEvent.add comes
        // before the delivery).
        let sp = store.savepoint();
        let started = self.metrics.as_ref().map(|_| Instant::now());
        // Recording: the delivery runs over a view that notes the objects
        // it creates and changes (a sandboxed engine stays sandboxed).
        let recording = record.then(|| Arc::new(Recording::new(engine.store().clone())));
        let recorded_engine = recording
            .as_ref()
            .map(|r| engine.clone().with_store_view(r.clone()));
        let run_engine = recorded_engine.as_ref().unwrap_or(engine);
        let delivered = match &self.schedule {
            _ if self.defer_retries => {
                deliver_deferred(run_engine, &d, Some(parsed), DEFAULT_MAX_DELIVERIES)
            }
            Some(schedule) => deliver(run_engine, &**schedule, &d, DEFAULT_MAX_DELIVERIES)
                .map(|outcome| (outcome, None)),
            None => {
                let (workspace, error) = run_engine.instantiate_traced_parsed(&uri, parsed, &[]);
                let outcome = match error {
                    None => Outcome::Done(workspace),
                    error => Outcome::Error { workspace, error },
                };
                Ok((outcome, None))
            }
        };
        drop(recorded_engine);
        if let (Some(m), Some(t)) = (&self.metrics, started) {
            m.instantiation(t.elapsed());
        }
        let (ws, error, retry) = match delivered {
            Ok((Outcome::Error { workspace, error }, retry)) => (workspace, error, retry),
            Ok((outcome, retry)) => (outcome.into_workspace(), None, retry),
            Err(e) => {
                if let Some(sp) = sp {
                    store.rollback_to(sp);
                }
                return Err(HandlerError::Store(e));
            }
        };
        if let Some(sp) = sp {
            if error.is_some() {
                store.rollback_to(sp);
                self.log.info_fmt(format_args!(
                    "MIQ(MiqAeEngine.deliver) Automate ended with an error for object [EmsEvent.{}]: what it wrote was discarded",
                    event.id
                ));
            } else {
                store.release_savepoint(sp);
            }
        }
        let mut prefixed = String::new();
        for line in &ws.trace {
            // Core lines raised from inside Automate (generic events, their
            // delivery) keep their own `MIQ(...)` prefix, as in evm.log.
            if line.text.starts_with("MIQ(") {
                self.log.info_str(&line.text);
            } else {
                prefixed.clear();
                prefixed.push_str("<AutomationEngine> ");
                prefixed.push_str(&line.text);
                self.log.info_str(&prefixed);
            }
        }
        // A sandbox is thrown away as a whole: what an erring delivery
        // wrote there counts as discarded, as on the pipeline's stores.
        let discarded = error.is_some() && (sp.is_some() || engine.sandbox().is_some());
        let objects = recording.map(|r| if discarded { Vec::new() } else { r.take() });
        Ok(Delivered {
            uri,
            workspace: ws,
            error,
            retry,
            objects,
            discarded,
        })
    }

    /// A VM or host of this provider by its provider reference, created on
    /// first sight.
    fn find_or_create(
        &self,
        store: &dyn ObjectStore,
        ems: &VmdbRef,
        class: &str,
        ems_ref: &str,
        name: Option<&str>,
        host: Option<&VmdbRef>,
    ) -> Result<VmdbRef, HandlerError> {
        let find = || store.find_by_ems_ref(class, ems.id, ems_ref);
        if let Some(r) = find()? {
            return Ok(r);
        }
        // First sight: look again under the lock (another worker may have
        // just created it), then create it for everyone at once.
        let _guard = self.first_sight.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = find()? {
            return Ok(r);
        }
        let mut attrs = Attributes::default();
        attrs.insert(
            "name".into(),
            AttrValue::Str(name.unwrap_or(ems_ref).to_string()),
        );
        attrs.insert("ems_ref".into(), AttrValue::Str(ems_ref.to_string()));
        attrs.insert("ems_id".into(), AttrValue::Int(ems.id));
        if let Some(h) = host {
            attrs.insert("host_id".into(), AttrValue::Int(h.id));
        }
        // Another node may have created it meanwhile (cluster mode: the
        // store refuses a second object with the reference): use its.
        match store.create_now(class, attrs) {
            Ok(r) => Ok(r),
            Err(e) => find()?.ok_or(HandlerError::from(e)),
        }
    }
}

/// A handled event as the live stream shows it (the outcome from its
/// record, or read from the trace when recording is off).
fn live_event(
    provider: &Provider,
    ev: &ProviderEvent,
    id: i64,
    vm: Option<&VmdbRef>,
    record: Option<&Record>,
    ws: &Workspace,
    error: Option<&EngineError>,
) -> LiveEvent {
    let read;
    let outcome = match record {
        Some(r) => &r.outcome,
        None => {
            read = trace::outcome_of(&ws.trace);
            &read
        }
    };
    LiveEvent {
        id: id.to_string(),
        event_type: ev.event_type.clone(),
        provider: provider.name.clone(),
        source: provider.kind.clone(),
        timestamp: automate_core::time::parse_time(&ev.timestamp)
            .map(automate_core::time::iso8601)
            .unwrap_or_else(|| ev.timestamp.clone()),
        vm_ems_ref: ev.vm_ems_ref.clone(),
        vm_name: ev.vm_name.clone(),
        vm_id: vm.map(|v| v.id.to_string()),
        generic_events: outcome.generic_events.clone(),
        policies: outcome
            .policies
            .iter()
            .filter(|p| p.condition)
            .map(|p| p.policy.clone())
            .collect(),
        alerts: outcome.alerts.iter().map(|a| a.alert.clone()).collect(),
        error: error.map(ToString::to_string),
    }
}

/// ManageIQ's de-duplication key of an event on provider `ems_id`: event
/// type, timestamp, chain id, provider, VM reference.
fn dedup_key(ev: &ProviderEvent, ems_id: i64) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        ev.event_type,
        ev.timestamp,
        ev.chain_id.as_deref().unwrap_or(""),
        ems_id,
        ev.vm_ems_ref.as_deref().unwrap_or("")
    )
}

/// The first object of `class` with `attr == value`, created if none.
fn ensure_one(
    store: &dyn ObjectStore,
    class: &str,
    attr: &str,
    value: &str,
) -> Result<VmdbRef, StoreError> {
    let v = AttrValue::Str(value.to_string());
    if let Some(r) = store.find_by(class, attr, &v)?.into_iter().next() {
        return Ok(r);
    }
    let mut attrs = Attributes::default();
    attrs.insert(attr.to_string(), v);
    store.create(class, attrs)
}

/// The provider's `ExtManagementSystem` in `store` by name, created (at
/// once, for every reader) if none.
fn find_or_create_provider(
    store: &dyn ObjectStore,
    provider: &Provider,
) -> Result<VmdbRef, HandlerError> {
    let found = store.find_by(
        "ExtManagementSystem",
        "name",
        &AttrValue::Str(provider.name.clone()),
    )?;
    if let Some(r) = found.into_iter().next() {
        return Ok(r);
    }
    let mut attrs = Attributes::default();
    attrs.insert("name".into(), AttrValue::Str(provider.name.clone()));
    attrs.insert("hostname".into(), AttrValue::Str(provider.hostname.clone()));
    attrs.insert("emstype".into(), AttrValue::Str(provider.kind.clone()));
    // Another node may have created it meanwhile (cluster mode: the store
    // refuses a second provider of one name): use its.
    match store.create_now("ExtManagementSystem", attrs) {
        Ok(r) => Ok(r),
        Err(e) => store
            .find_by(
                "ExtManagementSystem",
                "name",
                &AttrValue::Str(provider.name.clone()),
            )?
            .into_iter()
            .next()
            .ok_or(HandlerError::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_datastore::Datastore;
    use automate_vmdb::{MemoryStore, StoredObject};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A [`MemoryStore`] whose reads fail while `failing` is set (a damaged
    /// page, an I/O error); writes go through.
    #[derive(Default)]
    struct FlakyStore {
        inner: MemoryStore,
        failing: AtomicBool,
        /// What [`ObjectStore::read_ahead`] was asked for.
        ahead: Mutex<Vec<ReadAhead>>,
    }

    impl FlakyStore {
        fn check(&self) -> Result<(), StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("read failed: damaged page".into()));
            }
            Ok(())
        }
    }

    impl ObjectStore for FlakyStore {
        fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
            self.check()?;
            self.inner.find(class, id)
        }

        fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
            self.check()?;
            self.inner.attribute(obj, name)
        }

        fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
            self.check()?;
            self.inner.load(class, id)
        }

        fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
            self.check()?;
            self.inner.list(class)
        }

        fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
            self.inner.create(class, attrs)
        }

        fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
            self.inner.update(obj, name, value)
        }

        fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
            self.inner.delete(obj)
        }

        fn find_by(
            &self,
            class: &str,
            attr: &str,
            value: &AttrValue,
        ) -> Result<Vec<VmdbRef>, StoreError> {
            self.check()?;
            self.inner.find_by(class, attr, value)
        }

        fn read_ahead(&self, wants: &ReadAhead) -> Result<(), StoreError> {
            self.ahead.lock().expect("lock").push(wants.clone());
            self.check()
        }
    }

    /// The read-ahead asks for what handling then looks up: each event's
    /// dedup key (the one stored), its host and VM by reference; an event
    /// without a type is left out, and a failed read-ahead fails nothing.
    #[test]
    fn a_batch_is_read_ahead_with_the_lookups_its_handling_makes() {
        let store = Arc::new(FlakyStore::default());
        let ds = Datastore::from_domains(std::path::Path::new("."), &[]);
        let engine = Engine::new(Arc::new(ds)).with_store(store.clone());
        let handler = Handler::new(engine.clone(), EvmLog::discarding()).expect("handler");
        let provider = Provider {
            name: "vc".into(),
            kind: "VMWARE".into(),
            hostname: "vc".into(),
            userid: "admin".into(),
        };
        let ev = |t: &str, vm: Option<&str>, host: Option<&str>| ProviderEvent {
            event_type: t.into(),
            timestamp: "2024-01-01T00:00:00Z".into(),
            chain_id: Some("7".into()),
            vm_ems_ref: vm.map(String::from),
            vm_name: None,
            host_ems_ref: host.map(String::from),
            host_name: None,
            full_data: serde_json::Value::Null,
        };
        let batch = [
            ev("VmPoweredOnEvent", Some("vm-1"), Some("host-1")),
            ev(" ", Some("vm-2"), None),
            ev("AlarmStatusChangedEvent", None, None),
        ];
        // The provider known (the dispatcher makes it before any batch).
        let ems = handler.provider_ref(&provider).expect("provider").id;
        store.failing.store(true, Ordering::SeqCst);
        handler.read_ahead_in(&engine, batch.iter().map(|e| (&provider, e)));
        store.failing.store(false, Ordering::SeqCst);
        let asked = store.ahead.lock().expect("lock").clone();
        assert_eq!(asked.len(), 1, "one read-ahead for the batch");
        assert_eq!(
            asked[0].refs,
            [
                ("Host", ems, "host-1".to_string()),
                ("VmOrTemplate", ems, "vm-1".to_string())
            ]
        );
        let mut stored_keys = Vec::new();
        for e in [&batch[0], &batch[2]] {
            let out = handler.handle(&provider, e).expect("handled");
            let row = VmdbRef {
                class: Arc::from("EmsEvent"),
                id: out.event_id,
            };
            stored_keys.push(
                store
                    .inner
                    .attribute(&row, "dedup_key")
                    .expect("read")
                    .expect("key"),
            );
        }
        let asked_keys: Vec<AttrValue> = asked[0].by.iter().map(|(_, _, k)| k.clone()).collect();
        assert_eq!(asked_keys, stored_keys);
        assert!(asked[0]
            .by
            .iter()
            .all(|(c, a, _)| (*c, *a) == ("EventStream", "dedup_key")));
    }

    #[test]
    fn a_failed_read_fails_the_event_instead_of_storing_it_twice() {
        let store = Arc::new(FlakyStore::default());
        let ds = Datastore::from_domains(std::path::Path::new("."), &[]);
        let engine = Engine::new(Arc::new(ds)).with_store(store.clone());
        let handler = Handler::new(engine, EvmLog::discarding()).expect("handler");
        let provider = Provider {
            name: "rhevm01".into(),
            kind: "RHEVM".into(),
            hostname: "rhevm01".into(),
            userid: "admin".into(),
        };
        let ev = ProviderEvent {
            event_type: "USER_RUN_VM".into(),
            timestamp: "2024-01-01T00:00:00Z".into(),
            chain_id: Some("1".into()),
            // No VM or host to look up: the duplicate check is the only
            // read once the provider is known.
            vm_ems_ref: None,
            vm_name: None,
            host_ems_ref: None,
            host_name: None,
            full_data: serde_json::Value::Null,
        };
        let stored = || store.inner.list("EventStream").expect("list").len();
        let first = handler.handle(&provider, &ev).expect("handled");
        assert!(!first.duplicate);
        assert_eq!(stored(), 1);
        // Stored in the event stream's one format (as MiqEvent rows).
        let row = store.inner.list("EventStream").expect("list");
        let stamp = store.inner.attribute(&row[0], "timestamp").expect("read");
        assert_eq!(
            stamp.as_ref().map(AttrValue::to_text).as_deref(),
            Some("2024-01-01T00:00:00.000Z")
        );

        // The duplicate check cannot read: the event fails (the pipeline
        // retries it), it is not taken for new and stored again.
        store.failing.store(true, Ordering::SeqCst);
        match handler.handle(&provider, &ev) {
            Err(HandlerError::Store(e)) => assert!(e.to_string().contains("damaged page"), "{e}"),
            other => panic!("expected a store error, got {other:?}"),
        }
        assert_eq!(stored(), 1);

        // Retried once the store reads again: a duplicate.
        store.failing.store(false, Ordering::SeqCst);
        let again = handler.handle(&provider, &ev).expect("handled");
        assert!(again.duplicate);
        assert_eq!(again.event_id, first.event_id);
        assert_eq!(stored(), 1);
    }
}
