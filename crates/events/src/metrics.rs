//! The service's metrics, served as `GET /metrics` in Prometheus' text
//! format (OpenMetrics, as `prometheus-client` encodes it).
//!
//! [`Metrics`] is a value: the composition root (`automate run`,
//! `automate api`) makes one, hands clones to the parts that count (the
//! pipeline's committer, workers and handlers, the REST API's middleware,
//! the hot reload) and tells it where the gauges read at scrape time come
//! from ([`Metrics::watch_queue`], [`Metrics::watch_schedule`]). There is
//! no global registry or recorder. Every count is an atomic; a label set
//! of the event counters is looked up once per event and stage (one read
//! lock, no allocation), and label sets that come from input (providers,
//! event types) are capped at [`MAX_LABEL_SETS`]: beyond that, new ones are
//! counted under the label value [`OTHER`].
//!
//! `docs/operations.md` lists every metric with its labels.

use crate::queue::{EventQueue, EVENT_KIND};
use automate_engine::deliver::RETRY_KIND;
use automate_vmdb::Schedule;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use rustc_hash::FxHashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Most distinct label sets a metric whose labels come from input keeps
/// (providers and event types, API routes and statuses); new ones beyond
/// it are counted under [`OTHER`].
pub const MAX_LABEL_SETS: usize = 1000;

/// The label value new label sets are counted under once a metric holds
/// [`MAX_LABEL_SETS`] of them.
pub const OTHER: &str = "other";

/// The route label of an API request no route matched (a 404).
pub const UNMATCHED: &str = "unmatched";

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency histograms' buckets: 0.5 ms to
/// 30 s.
const BUCKETS: [f64; 16] = [
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    f64::MAX,
];

/// The service's metrics: cheap to clone (every clone counts into the
/// same values). See the module docs.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    events: Arc<EventCounters>,
    batch_queue: Histogram,
    batch_handled: Histogram,
    instantiation: Histogram,
    api: Arc<ApiRequests>,
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
    sources: Arc<Sources>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric family at zero, reading no gauge
    /// source yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("automate");
        let events = Arc::new(EventCounters::default());
        registry.register_collector(Box::new(events.clone()));
        let batch_queue = Histogram::default();
        let batch_handled = Histogram::default();
        registry.register_with_unit(
            "batch_commit",
            "Durable commits of the event pipeline, by kind: queue (a group of caught events written to the queue), handled (a worker's batch, its events' writes with the queue's acks, from hand-over to the writer until on disk)",
            Unit::Seconds,
            BatchCommit {
                queue: batch_queue.clone(),
                handled: batch_handled.clone(),
            },
        );
        let instantiation = Histogram::default();
        registry.register_with_unit(
            "instantiation",
            "Automate instantiations of the events the pipeline delivers (/System/Process/Event and everything it runs)",
            Unit::Seconds,
            instantiation.clone(),
        );
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(sources.clone()));
        let api = Arc::new(ApiRequests::default());
        registry.register_collector(Box::new(api.clone()));
        let reloads = Family::<[(&'static str, &'static str); 1], Counter>::default();
        for outcome in ["ok", "failed"] {
            let _ = reloads.get_or_create(&[("outcome", outcome)]);
        }
        registry.register(
            "reloads",
            "Configuration and datastore reloads, by outcome (ok, failed)",
            reloads.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                events,
                batch_queue,
                batch_handled,
                instantiation,
                api,
                reloads,
                sources,
            }),
        }
    }

    /// The text of a scrape: every metric in OpenMetrics' text format,
    /// ending in `# EOF` (served with [`CONTENT_TYPE`]). Reads the gauges'
    /// sources (the queue's depth, the scheduled retries: a read of the
    /// store), so call it off the async threads.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    /// `automate_queue_depth` reads this queue's depth at each scrape
    /// (the running pipeline's; without one, the events queued in the
    /// schedule of [`Metrics::watch_schedule`] are counted).
    pub fn watch_queue(&self, queue: Arc<dyn EventQueue>) {
        if let Ok(mut q) = self.inner.sources.queue.lock() {
            *q = Some(queue);
        }
    }

    /// `automate_retries_scheduled` and `automate_retries_due` count this
    /// schedule's state-machine retries at each scrape.
    pub fn watch_schedule(&self, schedule: Arc<dyn Schedule>) {
        if let Ok(mut s) = self.inner.sources.schedule.lock() {
            *s = Some(schedule);
        }
    }

    /// Counts an event a catcher handed to the pipeline
    /// (`automate_events_caught_total`).
    pub fn event_caught(&self, provider: &str, event_type: &str) {
        self.inner
            .events
            .with(provider, event_type, |c| bump(&c.caught));
    }

    /// Counts an event a worker handled (stored and delivered, or a
    /// duplicate; an Automate error included): `automate_events_handled_total`.
    pub fn event_handled(&self, provider: &str, event_type: &str) {
        self.inner
            .events
            .with(provider, event_type, |c| bump(&c.handled));
    }

    /// Counts a failed handling of an event (the handler's error or panic:
    /// its writes discarded, the event tried again or dead-lettered):
    /// `automate_events_failed_total`.
    pub fn event_failed(&self, provider: &str, event_type: &str) {
        self.inner
            .events
            .with(provider, event_type, |c| bump(&c.failed));
    }

    /// Records the committer's durable write of a group of caught events
    /// to the queue (`automate_batch_commit_seconds{kind="queue"}`).
    pub fn queue_commit(&self, took: Duration) {
        self.inner.batch_queue.observe(took);
    }

    /// Records a worker batch's commit, from its hand-over to the writer
    /// until it was on disk (`automate_batch_commit_seconds{kind="handled"}`).
    pub fn batch_commit(&self, took: Duration) {
        self.inner.batch_handled.observe(took);
    }

    /// Records one Automate instantiation of an event's delivery
    /// (`automate_instantiation_seconds`).
    pub fn instantiation(&self, took: Duration) {
        self.inner.instantiation.observe(took);
    }

    /// Counts an API request by method, route template (a `ROUTES` path,
    /// or [`UNMATCHED`]) and status (`automate_api_requests_total`).
    pub fn api_request(&self, method: &str, route: &'static str, status: u16) {
        self.inner.api.count(static_method(method), route, status);
    }

    /// Counts a reload of the configuration or the datastore, `ok` or not
    /// (`automate_reloads_total{outcome}`).
    pub fn reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.inner
            .reloads
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The methods the API counts by name; any other is [`OTHER`].
fn static_method(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

/// A label value written as the exposition format wants it: `\`, `"`
/// and line feeds escaped (they come from input: event types, providers).
#[derive(Debug, Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0;
        if !s.contains(['\\', '"', '\n']) {
            return encoder.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The three counts of one provider and event type.
#[derive(Debug, Default)]
struct EventCounts {
    caught: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
}

/// One provider's counts by event type.
type ByType = FxHashMap<Box<str>, EventCounts>;

/// The event counters by provider, then event type (nested, so a lookup
/// by two `&str` allocates nothing), capped at [`MAX_LABEL_SETS`] pairs.
#[derive(Debug, Default)]
struct EventCounters {
    by_provider: RwLock<FxHashMap<Box<str>, ByType>>,
    /// Pairs held in `by_provider`.
    held: AtomicU64,
    /// Everything counted once the cap was reached.
    other: EventCounts,
    /// Whether the cap's warning was logged.
    warned: AtomicBool,
}

impl EventCounters {
    /// Runs `f` on the counts of (`provider`, `event_type`), made on first
    /// sight, or on [`OTHER`]'s when the cap is reached.
    fn with(&self, provider: &str, event_type: &str, f: impl Fn(&EventCounts)) {
        if let Ok(map) = self.by_provider.read() {
            if let Some(c) = map.get(provider).and_then(|t| t.get(event_type)) {
                f(c);
                return;
            }
        }
        let Ok(mut map) = self.by_provider.write() else {
            f(&self.other);
            return;
        };
        if let Some(c) = map.get(provider).and_then(|t| t.get(event_type)) {
            f(c);
            return;
        }
        if self.held.load(Ordering::Relaxed) as usize >= MAX_LABEL_SETS {
            drop(map);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(target: "evm", "MIQ(Metrics) the event counters hold {MAX_LABEL_SETS} provider and event type pairs: new ones are counted under provider=\"{OTHER}\", type=\"{OTHER}\"");
            }
            f(&self.other);
            return;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        let counts = map
            .entry(provider.into())
            .or_default()
            .entry(event_type.into())
            .or_default();
        f(counts);
    }
}

impl Collector for EventCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Pick = fn(&EventCounts) -> &AtomicU64;
        let families: [(&str, &str, Pick); 3] = [
            (
                "events_caught",
                "Events the catchers handed to the pipeline (after the providers' filters), by provider and event type.",
                |c| &c.caught,
            ),
            (
                "events_handled",
                "Events the workers handled (stored and delivered to Automate, or found stored already), by provider and event type.",
                |c| &c.handled,
            ),
            (
                "events_failed",
                "Handlings of an event that failed (the handler's error or panic; the event is tried again, then dead-lettered), by provider and event type.",
                |c| &c.failed,
            ),
        ];
        let Ok(map) = self.by_provider.read() else {
            return Ok(());
        };
        for (name, help, pick) in families {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (provider, types) in map.iter() {
                for (event_type, counts) in types {
                    let labels = [
                        ("provider", Escaped(provider)),
                        ("type", Escaped(event_type)),
                    ];
                    counter(&mut metric, &labels, pick(counts).load(Ordering::Relaxed))?;
                }
            }
            let other = pick(&self.other).load(Ordering::Relaxed);
            if other > 0 {
                let labels = [("provider", Escaped(OTHER)), ("type", Escaped(OTHER))];
                counter(&mut metric, &labels, other)?;
            }
        }
        Ok(())
    }
}

/// One sample of a counter family.
fn counter(
    metric: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> Result<(), std::fmt::Error> {
    metric
        .encode_family(labels)?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)
}

/// A latency histogram over [`BUCKETS`], of atomics (no lock on the
/// event path): a bucket's count, the sum in nanoseconds.
#[derive(Debug, Clone, Default)]
struct Histogram(Arc<HistogramCounts>);

#[derive(Debug, Default)]
struct HistogramCounts {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len() - 1);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Writes the histogram's samples (the count is the buckets' total, so
    /// a scrape during an observation stays consistent).
    fn write(&self, mut metric: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.0.buckets)
            .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        metric
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, metric: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.write(metric)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `automate_batch_commit_seconds`, by `kind`.
#[derive(Debug)]
struct BatchCommit {
    queue: Histogram,
    handled: Histogram,
}

impl EncodeMetric for BatchCommit {
    fn encode(&self, mut metric: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.queue
            .write(metric.encode_family(&[("kind", "queue")])?)?;
        self.handled
            .write(metric.encode_family(&[("kind", "handled")])?)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Where the gauges read at scrape time come from.
#[derive(Default)]
struct Sources {
    queue: Mutex<Option<Arc<dyn EventQueue>>>,
    schedule: Mutex<Option<Arc<dyn Schedule>>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let queue = self.queue.lock().ok().and_then(|q| q.clone());
        let schedule = self.schedule.lock().ok().and_then(|s| s.clone());
        let depth = match (&queue, &schedule) {
            (Some(q), _) => Some(q.depth()),
            (None, Some(s)) => read("queue depth", s.count_kind(EVENT_KIND)),
            (None, None) => None,
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&v)
        };
        if let Some(d) = depth {
            gauge(
                &mut encoder,
                "queue_depth",
                "Events in the durable queue, waiting or being handled.",
                d,
            )?;
        }
        if let Some(s) = schedule {
            if let Some(n) = read("scheduled retries", s.count_kind(RETRY_KIND)) {
                gauge(
                    &mut encoder,
                    "retries_scheduled",
                    "State-machine retries scheduled (due or not, being run included).",
                    n,
                )?;
            }
            if let Some(n) = read(
                "due retries",
                s.count_kind_due(RETRY_KIND, SystemTime::now()),
            ) {
                gauge(
                    &mut encoder,
                    "retries_due",
                    "State-machine retries whose time has come and that no runner holds.",
                    n,
                )?;
            }
        }
        Ok(())
    }
}

/// A gauge's value, or `None` (logged) when the store could not be read:
/// the scrape leaves that gauge out.
fn read(what: &str, r: Result<u64, automate_vmdb::StoreError>) -> Option<u64> {
    r.map_err(|e| tracing::warn!(target: "evm", "MIQ(Metrics) cannot read the {what}: {e}"))
        .ok()
}

/// API requests by method, route and status, capped at
/// [`MAX_LABEL_SETS`].
#[derive(Debug, Default)]
struct ApiRequests {
    counts: RwLock<FxHashMap<(&'static str, &'static str, u16), AtomicU64>>,
    other: AtomicU64,
}

impl ApiRequests {
    fn count(&self, method: &'static str, route: &'static str, status: u16) {
        let key = (method, route, status);
        if let Ok(map) = self.counts.read() {
            if let Some(c) = map.get(&key) {
                bump(c);
                return;
            }
        }
        let Ok(mut map) = self.counts.write() else {
            bump(&self.other);
            return;
        };
        if map.len() >= MAX_LABEL_SETS && !map.contains_key(&key) {
            bump(&self.other);
            return;
        }
        bump(map.entry(key).or_default());
    }
}

impl Collector for ApiRequests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "api_requests",
            "REST API requests answered, by method, route template and status.",
            None,
            MetricType::Counter,
        )?;
        let Ok(map) = self.counts.read() else {
            return Ok(());
        };
        let mut status = itoa::Buffer::new();
        for ((method, route, code), n) in map.iter() {
            let labels = [
                ("method", *method),
                ("route", *route),
                ("status", status.format(*code)),
            ];
            counter(&mut metric, &labels, n.load(Ordering::Relaxed))?;
        }
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            let labels = [("method", OTHER), ("route", OTHER), ("status", OTHER)];
            counter(&mut metric, &labels, other)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples of `name` (with their labels) in a scrape.
    fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, u64)> {
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let (labels, value) = rest.rsplit_once(' ')?;
                if !(labels.is_empty() || labels.starts_with('{')) {
                    return None;
                }
                Some((labels, value.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn events_are_counted_by_provider_and_type() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.event_caught("rhevm01", "USER_RUN_VM");
        }
        m.event_caught("vc01", "VmPoweredOffEvent");
        m.event_handled("rhevm01", "USER_RUN_VM");
        m.event_failed("vc01", "VmPoweredOffEvent");
        let text = m.encode().unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE automate_events_caught counter"),
            "{text}"
        );
        let caught = samples(&text, "automate_events_caught_total");
        assert!(
            caught.contains(&("{provider=\"rhevm01\",type=\"USER_RUN_VM\"}", 3)),
            "{text}"
        );
        assert!(
            caught.contains(&("{provider=\"vc01\",type=\"VmPoweredOffEvent\"}", 1)),
            "{text}"
        );
        let handled = samples(&text, "automate_events_handled_total");
        assert!(
            handled.contains(&("{provider=\"rhevm01\",type=\"USER_RUN_VM\"}", 1)),
            "{text}"
        );
        assert!(
            handled.contains(&("{provider=\"vc01\",type=\"VmPoweredOffEvent\"}", 0)),
            "{text}"
        );
        let failed = samples(&text, "automate_events_failed_total");
        assert!(
            failed.contains(&("{provider=\"vc01\",type=\"VmPoweredOffEvent\"}", 1)),
            "{text}"
        );
    }

    #[test]
    fn label_sets_from_input_are_capped_then_counted_as_other() {
        let m = Metrics::new();
        for i in 0..MAX_LABEL_SETS + 5 {
            m.event_caught("p", &format!("TYPE_{i}"));
        }
        // A pair held before the cap still counts as itself.
        m.event_caught("p", "TYPE_0");
        let text = m.encode().unwrap();
        let caught = samples(&text, "automate_events_caught_total");
        assert_eq!(caught.len(), MAX_LABEL_SETS + 1, "held pairs and other");
        assert!(caught.contains(&("{provider=\"p\",type=\"TYPE_0\"}", 2)));
        assert!(caught.contains(&("{provider=\"other\",type=\"other\"}", 5)));
        assert_eq!(
            caught.iter().map(|(_, n)| n).sum::<u64>(),
            (MAX_LABEL_SETS + 6) as u64
        );

        let api = Metrics::new();
        for status in 0..(MAX_LABEL_SETS as u16 + 3) {
            api.api_request("GET", "/api/vms", status);
        }
        let text = api.encode().unwrap();
        let requests = samples(&text, "automate_api_requests_total");
        assert_eq!(requests.len(), MAX_LABEL_SETS + 1);
        assert!(requests.contains(&("{method=\"other\",route=\"other\",status=\"other\"}", 3)));
    }

    #[test]
    fn label_values_from_input_are_escaped() {
        let m = Metrics::new();
        m.event_caught("a\"b", "line\nbreak\\");
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                "automate_events_caught_total{provider=\"a\\\"b\",type=\"line\\nbreak\\\\\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn histograms_count_and_sum_their_observations() {
        let m = Metrics::new();
        m.instantiation(Duration::from_millis(3));
        m.instantiation(Duration::from_millis(40));
        m.instantiation(Duration::from_secs(100));
        m.batch_commit(Duration::from_micros(200));
        m.queue_commit(Duration::from_millis(2));
        let text = m.encode().unwrap();
        assert!(
            text.contains("# TYPE automate_instantiation_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT automate_instantiation_seconds seconds"),
            "{text}"
        );
        assert_eq!(
            samples(&text, "automate_instantiation_seconds_count"),
            [("", 3)]
        );
        let buckets = samples(&text, "automate_instantiation_seconds_bucket");
        assert!(buckets.contains(&("{le=\"0.0025\"}", 0)), "{text}");
        assert!(buckets.contains(&("{le=\"0.005\"}", 1)), "{text}");
        assert!(buckets.contains(&("{le=\"0.05\"}", 2)), "{text}");
        assert!(buckets.contains(&("{le=\"30.0\"}", 2)), "{text}");
        assert!(buckets.contains(&("{le=\"+Inf\"}", 3)), "{text}");
        assert!(
            text.contains("automate_instantiation_seconds_sum 100.043\n"),
            "{text}"
        );
        assert_eq!(
            samples(&text, "automate_batch_commit_seconds_count"),
            [("{kind=\"queue\"}", 1), ("{kind=\"handled\"}", 1)]
        );
    }

    #[test]
    fn reloads_are_counted_by_outcome() {
        let m = Metrics::new();
        let text = m.encode().unwrap();
        let reloads = samples(&text, "automate_reloads_total");
        assert!(reloads.contains(&("{outcome=\"ok\"}", 0)), "{text}");
        assert!(reloads.contains(&("{outcome=\"failed\"}", 0)), "{text}");
        m.reload(true);
        m.reload(true);
        m.clone().reload(false);
        let text = m.encode().unwrap();
        let reloads = samples(&text, "automate_reloads_total");
        assert!(reloads.contains(&("{outcome=\"ok\"}", 2)), "{text}");
        assert!(reloads.contains(&("{outcome=\"failed\"}", 1)), "{text}");
    }

    #[test]
    fn gauges_read_the_queue_and_the_schedule_at_scrape_time() {
        use automate_vmdb::WorkItem;
        let dir = tempfile::tempdir().unwrap();
        let store = automate_redb::RedbStore::open(dir.path().join("m.redb")).unwrap();
        let schedule: Arc<dyn Schedule> = Arc::new(store.schedule());
        let m = Metrics::new();
        // No source: no gauge.
        assert!(!m.encode().unwrap().contains("automate_queue_depth"));
        m.watch_schedule(schedule.clone());
        let now = SystemTime::now();
        let retry = WorkItem::new(RETRY_KIND, serde_json::Value::Null);
        schedule
            .schedule(&retry, now - Duration::from_secs(1))
            .unwrap();
        schedule
            .schedule(&retry, now + Duration::from_secs(3600))
            .unwrap();
        let event = WorkItem::new(EVENT_KIND, serde_json::Value::Null);
        schedule.schedule(&event, now).unwrap();
        let text = m.encode().unwrap();
        assert_eq!(
            samples(&text, "automate_retries_scheduled"),
            [("", 2)],
            "{text}"
        );
        assert_eq!(samples(&text, "automate_retries_due"), [("", 1)], "{text}");
        assert_eq!(samples(&text, "automate_queue_depth"), [("", 1)], "{text}");
    }
}
