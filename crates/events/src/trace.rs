//! Each delivery's record (issue 21 §4, 22 §2): what an event's delivery
//! to Automate did (its [`Outcome`]: the generic events it raised, the
//! policies and alerts that fired, the methods invoked with their return
//! codes, the objects it created or changed, its errors), its Automate
//! trace (each line's text, and its relationship depth and level, a
//! [`LineShape`], so the UI draws it as the Simulation page's tree),
//! bounded by `events.trace.max_bytes`, and a [`digest`] of both
//! that leaves out what differs from run to run (ids, times), so two
//! deliveries of the same event compare equal.
//!
//! The record is one attribute of the `EmsEvent` row, [`TRACE_ATTR`],
//! written by the handler through the same object-store view as the row
//! itself (the pipeline worker's unit of work): it lands in the event's own
//! durable commit, on redb and on PostgreSQL alike, with no write of its
//! own. [`Pruner`] clears records older than `events.trace.keep_days` or
//! beyond the newest `events.trace.keep_max`, in the background; the event
//! row stays. [`LiveEvents`] is the stream of handled events the API's
//! `GET /api/events/stream` serves.

use automate_core::value::{AttrValue, Attributes};
use automate_engine::{Level, TraceLine};
use automate_vmdb::page::PageQuery;
use automate_vmdb::served::ServedStore;
use automate_vmdb::{
    AttrChange, ObjectStore, ReadAhead, Savepoint, StoreError, StoredObject, VmdbRef,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

pub mod codec;

/// The `EmsEvent` attribute holding a delivery's record (a [`Record`] in
/// [`codec`]'s text); left out of the event's attributes in the API.
pub const TRACE_ATTR: &str = "automate_trace";

/// The line that ends a trace cut at `events.trace.max_bytes`.
pub const TRUNCATED_MARKER: &str = "... trace truncated at events.trace.max_bytes";

/// `events.trace`: whether and how much of each delivery is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// Record each delivery (on by default since session 14, when the
    /// record's stored form and digest were made cheap; docs/performance.md).
    pub enabled: bool,
    /// Most bytes of trace text kept per delivery; the rest is cut with
    /// [`TRUNCATED_MARKER`] (the digest covers the whole trace).
    pub max_bytes: usize,
    /// Records older than this many days are cleared (0: no age limit).
    pub keep_days: u32,
    /// Only the newest this many records are kept (0: no count limit).
    pub keep_max: u64,
    /// How often the pruner looks, in seconds.
    pub prune_every_secs: u64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            enabled: true,
            max_bytes: 64 * 1024,
            keep_days: 7,
            keep_max: 100_000,
            prune_every_secs: 60,
        }
    }
}

impl TraceConfig {
    /// The largest `max_bytes` (1 MiB).
    pub const MAX_BYTES: usize = 1 << 20;

    /// Every problem of these settings, as (field under `events.trace`,
    /// message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(256..=Self::MAX_BYTES).contains(&self.max_bytes) {
            out.push((
                "max_bytes",
                format!(
                    "{} is out of range 256..={}",
                    self.max_bytes,
                    Self::MAX_BYTES
                ),
            ));
        }
        if self.keep_days > 3650 {
            out.push((
                "keep_days",
                format!("{} is out of range 0..=3650", self.keep_days),
            ));
        }
        if !(1..=86_400).contains(&self.prune_every_secs) {
            out.push((
                "prune_every_secs",
                format!("{} is out of range 1..=86400", self.prune_every_secs),
            ));
        }
        out
    }
}

/// A policy evaluated for a raised event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFired {
    /// The policy's name.
    pub policy: String,
    /// The generic event it was evaluated for.
    pub event: String,
    /// Whether its condition held (its actions ran; else its
    /// `else_actions`).
    pub condition: bool,
}

/// An alert that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFired {
    /// The alert's name.
    pub alert: String,
    /// The generic event it fired on.
    pub event: String,
}

/// A method invoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodRun {
    /// Its fully qualified name (`/ManageIQ/System/Event/.../method`).
    pub method: String,
    /// `builtin`, `inline`, ...
    pub location: String,
    /// `MIQ_OK`, `MIQ_WARN`, ... when the method said (builtins do not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rc: Option<String>,
}

/// An object the delivery created or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectTouched {
    /// Its class as written.
    pub class: String,
    /// Its id.
    pub id: i64,
    /// Created by this delivery (else updated).
    pub created: bool,
    /// The attributes it updated, in first-write order (empty for a
    /// creation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// Deleted by this delivery (`tag_delete`, `category_delete`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// What one delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The generic events raised (`Event Raised [vm_start]`), in order.
    pub generic_events: Vec<String>,
    /// The policies evaluated, in order.
    pub policies: Vec<PolicyFired>,
    /// The alerts that fired, in order.
    pub alerts: Vec<AlertFired>,
    /// The methods invoked, in order.
    pub methods: Vec<MethodRun>,
    /// The objects created or changed (kept only when the delivery ended
    /// without an error: else discarded, and `discarded` says so).
    pub objects: Vec<ObjectTouched>,
    /// What Automate wrote was discarded (it ended with an error).
    #[serde(default)]
    pub discarded: bool,
    /// The error lines of the trace and the error the delivery ended with.
    pub errors: Vec<String>,
    /// A retry was asked for (the state machine's `ae_result` = `retry`).
    #[serde(default)]
    pub retry: bool,
}

/// Where a stored trace line was written: the relationship depth and the
/// level of its [`TraceLine`] (the record keeps the text apart, in
/// [`Record::trace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineShape {
    /// Relationship depth: 0 for the root object.
    pub depth: u32,
    /// Its level (`debug`, `info`, `warn`, `error`).
    #[serde(deserialize_with = "level_named")]
    pub level: Level,
}

impl LineShape {
    /// The shape of `line`.
    pub fn of(line: &TraceLine) -> LineShape {
        LineShape {
            depth: u32::try_from(line.depth).unwrap_or(u32::MAX),
            level: line.level,
        }
    }
}

/// A [`Level`] by the name its `Serialize` writes.
fn level_named<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Level, D::Error> {
    let name = String::deserialize(d)?;
    match name.as_str() {
        "debug" => Ok(Level::Debug),
        "info" => Ok(Level::Info),
        "warn" => Ok(Level::Warn),
        "error" => Ok(Level::Error),
        _ => Err(serde::de::Error::custom(format!(
            "{name:?} is not a level (debug, info, warn, error)"
        ))),
    }
}

/// One delivery's record, stored in [`TRACE_ATTR`] ([`codec`]'s text; its
/// JSON, as the API serves it, was the stored form before session 14 and
/// still reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When it was recorded (ISO 8601 UTC).
    pub recorded_on: String,
    /// The delivery URI.
    pub uri: String,
    /// [`digest`] of the outcome and the whole trace (hex SHA-256).
    pub digest: String,
    /// What the delivery did.
    pub outcome: Outcome,
    /// The trace lines (`automation.log`'s), cut at `max_bytes`.
    pub trace: Vec<String>,
    /// Each line of `trace`'s depth and level, one per line; empty for a
    /// record stored before they were kept (`trace/2|` and JSON text), whose
    /// [`Record::trace_lines`] infers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shapes: Vec<LineShape>,
    /// The trace was cut (its last line is [`TRUNCATED_MARKER`]).
    #[serde(default)]
    pub truncated: bool,
}

impl Record {
    /// The record in a stored `EmsEvent`'s attributes, if any (either
    /// stored form; an unreadable one is `Err` saying why and where).
    pub fn of(obj: &StoredObject) -> Result<Option<Record>, String> {
        match obj.attrs.get(TRACE_ATTR) {
            Some(AttrValue::Str(s)) => codec::decode(s)
                .map(Some)
                .map_err(|e| format!("{TRACE_ATTR}: {e}")),
            _ => Ok(None),
        }
    }

    /// Whether each trace line's depth and level was kept (not for a
    /// record stored before `trace/3|`).
    pub fn has_depths(&self) -> bool {
        self.shapes.len() == self.trace.len()
    }

    /// The trace as the engine wrote it: each line with its depth and level
    /// (what `crates/ui`'s trace tree reads). For a record that did not
    /// keep them ([`Record::has_depths`] false), they are inferred: the
    /// depth from the relationships open (`Following Relationship [X]`
    /// opens X at the depth of the lines before it, the lines after it are
    /// one deeper, `Followed  Relationship [X]` closes X and whatever was
    /// opened inside it, `Instantiating [..]` starts again at 0), so a
    /// relationship that failed (no `Followed`) keeps what follows nested
    /// in it until one around it closes; the level is `error` for the
    /// lines among the outcome's errors, `warn` for the
    /// [`TRUNCATED_MARKER`], else `info`.
    pub fn trace_lines(&self) -> Vec<TraceLine> {
        if self.has_depths() {
            return self
                .trace
                .iter()
                .zip(&self.shapes)
                .map(|(text, s)| TraceLine {
                    depth: s.depth as usize,
                    level: s.level,
                    text: text.clone(),
                })
                .collect();
        }
        let mut open: Vec<&str> = Vec::new();
        self.trace
            .iter()
            .map(|text| {
                let bracketed = |prefix: &str| {
                    text.strip_prefix(prefix)
                        .and_then(|r| r.rsplit_once(']'))
                        .map(|(uri, _)| uri)
                };
                let depth = if bracketed("Instantiating [").is_some() {
                    open.clear();
                    0
                } else if let Some(uri) = bracketed("Following Relationship [") {
                    open.push(uri);
                    open.len() - 1
                } else {
                    if let Some(uri) = bracketed("Followed  Relationship [") {
                        if let Some(at) = open.iter().rposition(|u| *u == uri) {
                            open.truncate(at);
                        }
                    }
                    open.len()
                };
                let level = if self.outcome.errors.iter().any(|e| e == text) {
                    Level::Error
                } else if text == TRUNCATED_MARKER {
                    Level::Warn
                } else {
                    Level::Info
                };
                TraceLine {
                    depth,
                    level,
                    text: text.clone(),
                }
            })
            .collect()
    }

    /// The value of [`TRACE_ATTR`] holding this record ([`codec`]'s text).
    pub fn to_attr(&self) -> AttrValue {
        let bytes: usize = self.trace.iter().map(|l| l.len() + 8).sum();
        let mut text = String::with_capacity(256 + self.uri.len() + bytes);
        codec::encode(&mut text, self);
        AttrValue::Str(text)
    }
}

/// Reads an [`Outcome`] (all but `objects`) from trace lines.
pub fn outcome_of(trace: &[TraceLine]) -> Outcome {
    let mut o = Outcome::default();
    for line in trace {
        let t = line.text.as_str();
        if let Some(rest) = t.strip_prefix("MIQ(Event.raise_evm_event): Event Raised [") {
            if let Some(name) = rest.strip_suffix(']') {
                o.generic_events.push(name.to_string());
            }
        } else if let Some(rest) = t.strip_prefix("MIQ(MiqPolicy.enforce_policy) Policy [") {
            // `Policy [p] condition true for event [e]`
            if let Some((name, tail)) = rest.split_once("] condition ") {
                let cond = if let Some(e) = tail.strip_prefix("true for event [") {
                    Some((true, e))
                } else {
                    tail.strip_prefix("false for event [").map(|e| (false, e))
                };
                if let Some((condition, e)) = cond {
                    o.policies.push(PolicyFired {
                        policy: name.to_string(),
                        event: e.trim_end_matches(']').to_string(),
                        condition,
                    });
                }
            }
        } else if let Some(rest) = t.strip_prefix("MIQ(MiqAlert.evaluate_alerts) Alert [") {
            if let Some((name, e)) = rest.split_once("] fired for event [") {
                o.alerts.push(AlertFired {
                    alert: name.to_string(),
                    event: e.trim_end_matches(']').to_string(),
                });
            }
        } else if let Some(rest) = t.strip_prefix("Invoking [") {
            if let Some((location, tail)) = rest.split_once("] method [") {
                if let Some((method, _)) = tail.split_once("] with inputs [") {
                    o.methods.push(MethodRun {
                        method: method.to_string(),
                        location: location.to_string(),
                        rc: None,
                    });
                }
            }
        } else if let Some(rc) = t.strip_prefix("Method exited with rc=") {
            if let Some(m) = o.methods.iter_mut().rev().find(|m| m.rc.is_none()) {
                m.rc = Some(rc.to_string());
            }
        }
        if line.level == Level::Error {
            o.errors.push(t.to_string());
        }
    }
    o
}

/// Text with what differs from run to run left out: every run of digits
/// (with the `-`, `:`, `.`, `T` between them: ids, times, durations)
/// holding 4 digits or more becomes `#`. Short numbers (an index, a
/// count, `rc=4`) stay.
pub fn normalize(text: &str, out: &mut String) {
    normalize_to(text, |s| out.push_str(s));
}

/// [`normalize`], handing the pieces of the result to `push` in order.
fn normalize_to(text: &str, mut push: impl FnMut(&str)) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Copy up to the next digit (char boundaries: digits are ASCII).
        let next = next_digit(b, i);
        if next > i {
            push(&text[i..next]);
        }
        if next == b.len() {
            break;
        }
        let start = next;
        let mut digits = 0;
        let mut end = next;
        let mut j = next;
        while j < b.len() {
            if b[j].is_ascii_digit() {
                digits += 1;
                j += 1;
                end = j;
            } else if matches!(b[j], b'-' | b':' | b'.' | b'T')
                && b.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                j += 1;
            } else {
                break;
            }
        }
        push(if digits >= 4 { "#" } else { &text[start..end] });
        i = end;
    }
}

/// The position of the first ASCII digit of `b` at or after `from`
/// (`b.len()` if none), eight bytes at a time.
fn next_digit(b: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // The high bit of each byte in 0x30..=0x39 ("has a byte between
        // m and n", exact per byte: no carry or borrow crosses bytes).
        let low = x & (ONES * 0x7F);
        let flags = (ONES * (127 + 0x3A)).wrapping_sub(low)
            & !x
            & (low + ONES * (127 - 0x2F))
            & (ONES * 0x80);
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(u8::is_ascii_digit)
        .map_or(b.len(), |p| i + p)
}

/// The digest of a delivery: SHA-256 (hex) of its outcome and its whole
/// trace, [`normalize`]d, with the objects by class and attributes only
/// (their ids differ run to run). Equal for two deliveries of identical
/// events on identical datastores and stores. The text hashed, one line
/// each: `event <name>` per generic event, `policy <name> <event>
/// <true|false>`, `alert <name> <event>`, `method <location> <method>
/// <rc>`, `object <class> <created|updated> <attr,attr>`, `discarded <b>
/// retry <b>`, `error <text>`, then the trace lines' text, without their
/// depths and levels (unchanged since session 13: a digest recorded then,
/// or in any version of [`codec`], compares with one made now).
pub fn digest(outcome: &Outcome, trace: &[TraceLine]) -> String {
    use std::fmt::Write;
    let bytes: usize = trace.iter().map(|l| l.text.len() + 1).sum();
    let mut buf = String::with_capacity(bytes + 256);
    let mut line = String::with_capacity(128);
    let feed = |buf: &mut String, s: &str| {
        normalize(s, buf);
        buf.push('\n');
    };
    for e in &outcome.generic_events {
        line.clear();
        let _ = write!(line, "event {e}");
        feed(&mut buf, &line);
    }
    for p in &outcome.policies {
        line.clear();
        let _ = write!(line, "policy {} {} {}", p.policy, p.event, p.condition);
        feed(&mut buf, &line);
    }
    for a in &outcome.alerts {
        line.clear();
        let _ = write!(line, "alert {} {}", a.alert, a.event);
        feed(&mut buf, &line);
    }
    for m in &outcome.methods {
        line.clear();
        let rc = m.rc.as_deref().unwrap_or("");
        let _ = write!(line, "method {} {} {rc}", m.location, m.method);
        feed(&mut buf, &line);
    }
    for o in &outcome.objects {
        line.clear();
        let how = if o.created { "created" } else { "updated" };
        let _ = write!(line, "object {} {how} ", o.class);
        for (i, a) in o.attributes.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(a);
        }
        feed(&mut buf, &line);
    }
    line.clear();
    let _ = write!(
        line,
        "discarded {} retry {}",
        outcome.discarded, outcome.retry
    );
    feed(&mut buf, &line);
    for e in &outcome.errors {
        line.clear();
        let _ = write!(line, "error {e}");
        feed(&mut buf, &line);
    }
    for l in trace {
        feed(&mut buf, &l.text);
    }
    let out = Sha256::digest(buf.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in out {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0xF)] as char);
    }
    hex
}

/// The trace lines as text and their shapes, cut at `max_bytes` of text
/// (on a line boundary, then a [`TRUNCATED_MARKER`] line, at depth 0 and
/// level `warn`): (lines, shapes, truncated).
pub fn bounded_trace(trace: &[TraceLine], max_bytes: usize) -> (Vec<String>, Vec<LineShape>, bool) {
    let mut used = 0usize;
    let mut out = Vec::with_capacity(trace.len());
    let mut shapes = Vec::with_capacity(trace.len());
    for l in trace {
        let n = l.text.len() + 1;
        if used + n > max_bytes {
            // The rest of the budget takes as much of this line as fits
            // (with its newline).
            let room = max_bytes.saturating_sub(used + 1);
            if room > 16 {
                let mut cut = room;
                while !l.text.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push(l.text[..cut].to_string());
                shapes.push(LineShape::of(l));
            }
            out.push(TRUNCATED_MARKER.to_string());
            shapes.push(LineShape {
                depth: 0,
                level: Level::Warn,
            });
            return (out, shapes, true);
        }
        used += n;
        out.push(l.text.clone());
        shapes.push(LineShape::of(l));
    }
    (out, shapes, false)
}

/// The objects a delivery created and changed, as seen by
/// [`Recording`].
#[derive(Debug, Default)]
struct Touched {
    list: Vec<ObjectTouched>,
    /// Each savepoint's length of `list`, to take writes back with it.
    marks: Vec<(Savepoint, usize)>,
}

/// An [`ObjectStore`] view that passes everything to the store it wraps
/// and notes the objects created and updated (what a delivery touched).
/// A rollback to a savepoint takes back what was noted since.
pub struct Recording {
    inner: Arc<dyn ObjectStore>,
    touched: Mutex<Touched>,
}

impl Recording {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Recording {
        Recording {
            inner,
            touched: Mutex::new(Touched::default()),
        }
    }

    /// The objects noted.
    pub fn take(&self) -> Vec<ObjectTouched> {
        self.touched
            .lock()
            .map(|mut t| std::mem::take(&mut t.list))
            .unwrap_or_default()
    }

    fn note(&self, obj: &VmdbRef, created: bool, attr: Option<&str>) {
        let Ok(mut t) = self.touched.lock() else {
            return;
        };
        if let Some(o) = t
            .list
            .iter_mut()
            .find(|o| o.id == obj.id && *o.class == *obj.class)
        {
            if let Some(a) = attr {
                if !o.created && !o.attributes.iter().any(|x| x == a) {
                    o.attributes.push(a.to_string());
                }
            }
            return;
        }
        t.list.push(ObjectTouched {
            class: obj.class.to_string(),
            id: obj.id,
            created,
            attributes: attr.map(|a| vec![a.to_string()]).unwrap_or_default(),
            deleted: false,
        });
    }
}

impl ObjectStore for Recording {
    fn find(&self, class: &str, id: i64) -> Result<Option<VmdbRef>, StoreError> {
        self.inner.find(class, id)
    }

    fn attribute(&self, obj: &VmdbRef, name: &str) -> Result<Option<AttrValue>, StoreError> {
        self.inner.attribute(obj, name)
    }

    fn load(&self, class: &str, id: i64) -> Result<Option<StoredObject>, StoreError> {
        self.inner.load(class, id)
    }

    fn list(&self, class: &str) -> Result<Vec<VmdbRef>, StoreError> {
        self.inner.list(class)
    }

    fn create(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let r = self.inner.create(class, attrs)?;
        self.note(&r, true, None);
        Ok(r)
    }

    fn create_now(&self, class: &str, attrs: Attributes) -> Result<VmdbRef, StoreError> {
        let r = self.inner.create_now(class, attrs)?;
        self.note(&r, true, None);
        Ok(r)
    }

    fn update(&self, obj: &VmdbRef, name: &str, value: AttrValue) -> Result<(), StoreError> {
        self.inner.update(obj, name, value)?;
        self.note(obj, false, Some(&name.to_ascii_lowercase()));
        Ok(())
    }

    fn modify(&self, obj: &VmdbRef, name: &str, change: &AttrChange) -> Result<(), StoreError> {
        self.inner.modify(obj, name, change)?;
        self.note(obj, false, Some(&name.to_ascii_lowercase()));
        Ok(())
    }

    fn delete(&self, obj: &VmdbRef) -> Result<bool, StoreError> {
        let gone = self.inner.delete(obj)?;
        if gone {
            self.note(obj, false, None);
            if let Ok(mut t) = self.touched.lock() {
                if let Some(o) = t
                    .list
                    .iter_mut()
                    .find(|o| o.id == obj.id && *o.class == *obj.class)
                {
                    o.deleted = true;
                }
            }
        }
        Ok(gone)
    }

    fn find_by(
        &self,
        class: &str,
        attr: &str,
        value: &AttrValue,
    ) -> Result<Vec<VmdbRef>, StoreError> {
        self.inner.find_by(class, attr, value)
    }

    fn find_by_ems_ref(
        &self,
        class: &str,
        ems_id: i64,
        ems_ref: &str,
    ) -> Result<Option<VmdbRef>, StoreError> {
        self.inner.find_by_ems_ref(class, ems_id, ems_ref)
    }

    fn read_ahead(&self, wants: &ReadAhead) -> Result<(), StoreError> {
        self.inner.read_ahead(wants)
    }

    fn query(&self, q: &automate_vmdb::query::Query) -> Result<Vec<VmdbRef>, StoreError> {
        self.inner.query(q)
    }

    fn count(&self, q: &automate_vmdb::query::Query) -> Result<usize, StoreError> {
        self.inner.count(q)
    }

    fn savepoint(&self) -> Option<Savepoint> {
        let sp = self.inner.savepoint()?;
        if let Ok(mut t) = self.touched.lock() {
            let n = t.list.len();
            t.marks.push((sp, n));
        }
        Some(sp)
    }

    fn rollback_to(&self, sp: Savepoint) {
        self.inner.rollback_to(sp);
        if let Ok(mut t) = self.touched.lock() {
            if let Some(pos) = t.marks.iter().rposition(|(s, _)| *s == sp) {
                let n = t.marks[pos].1;
                t.marks.truncate(pos);
                // Attributes added to objects noted before the savepoint
                // stay listed: cheap, and an update taken back is rare.
                t.list.truncate(n);
            }
        }
    }

    fn release_savepoint(&self, sp: Savepoint) {
        self.inner.release_savepoint(sp);
        if let Ok(mut t) = self.touched.lock() {
            if let Some(pos) = t.marks.iter().rposition(|(s, _)| *s == sp) {
                t.marks.truncate(pos);
            }
        }
    }
}

/// A handled event as the live stream shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveEvent {
    /// The `EmsEvent`'s id (a string, as the API's ids).
    pub id: String,
    /// The provider event's type.
    pub event_type: String,
    /// The provider's name.
    pub provider: String,
    /// The provider's type (the event's `source`).
    pub source: String,
    /// The event's time (ISO 8601).
    pub timestamp: String,
    /// The VM's provider reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_ems_ref: Option<String>,
    /// The VM's name, when the event gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    /// The VM's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// The generic events its delivery raised.
    pub generic_events: Vec<String>,
    /// The policies whose condition held.
    pub policies: Vec<String>,
    /// The alerts that fired.
    pub alerts: Vec<String>,
    /// The error its delivery ended with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which live events a client wants (`GET /api/events/stream`'s query).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFilter {
    /// Only this provider (by name).
    pub provider: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this VM: its name, provider reference or id.
    pub vm: Option<String>,
    /// Only events whose time is at or after this (ms since the epoch).
    pub since_ms: Option<i64>,
}

impl LiveFilter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &LiveEvent) -> bool {
        if self.provider.as_ref().is_some_and(|p| *p != e.provider) {
            return false;
        }
        if self.event_type.as_ref().is_some_and(|t| *t != e.event_type) {
            return false;
        }
        if let Some(vm) = &self.vm {
            let hit = [&e.vm_name, &e.vm_ems_ref, &e.vm_id]
                .iter()
                .any(|v| v.as_deref() == Some(vm.as_str()));
            if !hit {
                return false;
            }
        }
        if let Some(since) = self.since_ms {
            if automate_core::time::parse_time(&e.timestamp).is_none_or(|t| t < since) {
                return false;
            }
        }
        true
    }
}

/// The handled events, to whoever listens (the API's live stream): a
/// broadcast channel; a listener that falls behind by more than its
/// capacity loses the oldest (and is told how many). Publishing with no
/// listener costs a check of the receiver count. Cloning shares it.
#[derive(Debug, Clone)]
pub struct LiveEvents {
    tx: tokio::sync::broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for LiveEvents {
    fn default() -> Self {
        LiveEvents::new(8192)
    }
}

impl LiveEvents {
    /// A stream keeping up to `capacity` events per listener.
    pub fn new(capacity: usize) -> LiveEvents {
        LiveEvents {
            tx: tokio::sync::broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Whether anyone listens (else the caller need not build the event).
    pub fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Hands `e` to every listener.
    pub fn publish(&self, e: LiveEvent) {
        let _ = self.tx.send(Arc::new(e));
    }

    /// A new listener, from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

/// What one pruning pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Records cleared.
    pub cleared: usize,
    /// Records left.
    pub kept: usize,
}

/// Clears the delivery records beyond `events.trace.keep_days` and
/// `keep_max`, oldest first: the event rows stay, only their
/// [`TRACE_ATTR`] is set to nil, in units of work of up to 256 rows. Rows
/// of the event stream are only ever added, so a pruner remembers where
/// the records start (the oldest-first position of the first one left),
/// how far it has counted and how many records there are: a pass reads the
/// rows added since the last one, what it clears, and one page more. In a
/// cluster, ids come in per-node blocks, so a row may land before rows
/// already counted: every [`RESCAN_EVERY`] passes it counts from the start
/// again.
pub struct Pruner {
    store: Arc<dyn ServedStore>,
    config: TraceConfig,
    /// Rows before this position (oldest first) hold no record.
    start: usize,
    /// Rows before this position are counted in `records`.
    end: usize,
    /// Records in the rows before `end`.
    records: u64,
    passes: u64,
}

const PRUNE_PAGE: usize = 256;
/// Passes between two counts from the start.
pub const RESCAN_EVERY: u64 = 60;

fn has_record(obj: &StoredObject) -> Option<&str> {
    match obj.attrs.get(TRACE_ATTR) {
        Some(AttrValue::Str(s)) => Some(s),
        _ => None,
    }
}

impl Pruner {
    /// A pruner of `store`'s records.
    pub fn new(store: Arc<dyn ServedStore>, config: TraceConfig) -> Pruner {
        Pruner {
            store,
            config,
            start: 0,
            end: 0,
            records: 0,
            passes: 0,
        }
    }

    fn page(&self, offset: usize) -> Result<Vec<(i64, StoredObject)>, StoreError> {
        Ok(self
            .store
            .page(
                "EventStream",
                PageQuery {
                    offset,
                    limit: PRUNE_PAGE,
                    newest_first: false,
                },
                None,
            )?
            .rows)
    }

    /// One pass at `now_ms`: clears what is too old or too many.
    pub fn prune(&mut self, now_ms: i64) -> Result<Pruned, StoreError> {
        if self.passes % RESCAN_EVERY == 0 {
            (self.start, self.end, self.records) = (0, 0, 0);
        }
        self.passes += 1;
        // Count the records of the rows added since the last pass.
        loop {
            let rows = self.page(self.end)?;
            self.records += rows.iter().filter(|(_, o)| has_record(o).is_some()).count() as u64;
            self.end += rows.len();
            if rows.len() < PRUNE_PAGE {
                break;
            }
        }
        let cutoff = match self.config.keep_days {
            0 => None,
            d => Some(now_ms - i64::from(d) * 86_400_000),
        };
        let mut out = Pruned::default();
        'pages: while self.start < self.end {
            let rows = self.page(self.start)?;
            if rows.is_empty() {
                break;
            }
            let mut clear = Vec::new();
            let mut stop = false;
            let mut advanced = 0;
            for (id, obj) in &rows {
                if self.start + advanced >= self.end {
                    stop = true;
                    break;
                }
                let Some(text) = has_record(obj) else {
                    advanced += 1;
                    continue;
                };
                let too_many = self.config.keep_max > 0
                    && self.records - clear.len() as u64 > self.config.keep_max;
                let too_old = cutoff.is_some_and(|c| recorded_ms(text).is_some_and(|t| t < c));
                if !(too_many || too_old) {
                    stop = true;
                    break;
                }
                clear.push(VmdbRef {
                    class: Arc::from(obj.class.as_str()),
                    id: *id,
                });
                advanced += 1;
            }
            if !clear.is_empty() {
                let unit = self.store.clone().begin_unit();
                let objects = unit.objects();
                for r in &clear {
                    objects.update(r, TRACE_ATTR, AttrValue::Nil)?;
                }
                drop(objects);
                unit.commit()?;
                out.cleared += clear.len();
                self.records -= clear.len() as u64;
            }
            self.start += advanced;
            if stop || advanced < PRUNE_PAGE {
                break 'pages;
            }
        }
        out.kept = self.records as usize;
        Ok(out)
    }

    /// Prunes every `prune_every_secs` until `stop` is cancelled, on a
    /// thread of its own; a failed pass is logged and tried again later.
    pub fn spawn(
        mut self,
        stop: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("trace-pruner".into())
            .spawn(move || {
                let every = std::time::Duration::from_secs(self.config.prune_every_secs);
                loop {
                    match self.prune(automate_core::time::now_ms()) {
                        Ok(p) if p.cleared > 0 => tracing::info!(target: "evm", "MIQ(EventStream.purge_traces) {} delivery traces cleared, {} kept", p.cleared, p.kept),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(target: "evm", "MIQ(EventStream.purge_traces) pruning delivery traces failed (tried again in {} s): {e}", every.as_secs()),
                    }
                    let deadline = std::time::Instant::now() + every;
                    while std::time::Instant::now() < deadline {
                        if stop.is_cancelled() {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                }
            })
    }
}

/// When a stored record was made, read without decoding the rest.
fn recorded_ms(text: &str) -> Option<i64> {
    automate_core::time::parse_time(codec::recorded_on(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, level: Level) -> TraceLine {
        TraceLine {
            depth: 0,
            level,
            text: text.to_string(),
        }
    }

    #[test]
    fn the_outcome_is_read_from_the_trace() {
        let trace = [
            line("Invoking [builtin] method [/ManageIQ/System/Event/x] with inputs [{}]", Level::Info),
            line("MIQ(Event.raise_evm_event): Event Raised [vm_start]", Level::Info),
            line("MIQ(MiqPolicy.enforce_policy) Policy [Log VM start] condition true for event [vm_start]", Level::Info),
            line("MIQ(MiqPolicy.enforce_policy) Policy [Other] condition false for event [vm_start]", Level::Info),
            line("MIQ(MiqAlert.evaluate_alerts) Alert [Started] fired for event [vm_start]", Level::Info),
            line("Invoking [inline] method [/D/N/C/m] with inputs [{}]", Level::Info),
            line("Method exited with rc=MIQ_WARN", Level::Warn),
            line("Class [/x] not found", Level::Error),
        ];
        let o = outcome_of(&trace);
        assert_eq!(o.generic_events, ["vm_start"]);
        assert_eq!(
            o.policies,
            [
                PolicyFired {
                    policy: "Log VM start".into(),
                    event: "vm_start".into(),
                    condition: true
                },
                PolicyFired {
                    policy: "Other".into(),
                    event: "vm_start".into(),
                    condition: false
                },
            ]
        );
        assert_eq!(
            o.alerts,
            [AlertFired {
                alert: "Started".into(),
                event: "vm_start".into()
            }]
        );
        assert_eq!(o.methods.len(), 2);
        assert_eq!(o.methods[0].rc, None);
        assert_eq!(o.methods[1].rc.as_deref(), Some("MIQ_WARN"));
        assert_eq!(o.errors, ["Class [/x] not found"]);
    }

    #[test]
    fn normalizing_drops_ids_and_times_but_keeps_small_numbers() {
        let mut s = String::new();
        normalize(
            "Instantiating [/System/Process/Event?event_id=1000000003170&x=2] at 2026-12-06T16:22:26.123Z rc=4 took 0.0123",
            &mut s,
        );
        assert_eq!(
            s,
            "Instantiating [/System/Process/Event?event_id=#&x=2] at #Z rc=4 took #"
        );
        let mut u = String::new();
        normalize("é1234ü", &mut u);
        assert_eq!(u, "é#ü");
    }

    #[test]
    fn digests_ignore_ids_but_not_what_happened() {
        let a = [line("Delivering [EmsEvent.1000000000017]", Level::Info)];
        let b = [line("Delivering [EmsEvent.1000000000342]", Level::Info)];
        let c = [line("Delivering [MiqEvent.1000000000342]", Level::Info)];
        let o = Outcome::default();
        assert_eq!(digest(&o, &a), digest(&o, &b));
        assert_ne!(digest(&o, &a), digest(&o, &c));
        let raised = Outcome {
            generic_events: vec!["vm_start".into()],
            ..Outcome::default()
        };
        assert_ne!(digest(&o, &a), digest(&raised, &a));
        assert_eq!(digest(&o, &a).len(), 64);
    }

    #[test]
    fn a_long_trace_is_cut_with_a_marker() {
        let trace: Vec<TraceLine> = (0..100)
            .map(|i| line(&format!("line {i} {}", "x".repeat(50)), Level::Info))
            .collect();
        let (lines, shapes, cut) = bounded_trace(&trace, 1000);
        assert!(cut);
        assert_eq!(lines.last().map(String::as_str), Some(TRUNCATED_MARKER));
        assert_eq!(shapes.len(), lines.len());
        assert_eq!(shapes.last().map(|s| s.level), Some(Level::Warn));
        let bytes: usize = lines[..lines.len() - 1].iter().map(|l| l.len() + 1).sum();
        assert!(bytes <= 1000, "{bytes}");
        let (all, shapes, cut) = bounded_trace(&trace[..3], 1000);
        assert!(!cut);
        assert_eq!(all.len(), 3);
        assert_eq!(shapes, vec![LineShape::of(&trace[0]); 3]);
    }

    #[test]
    fn recorded_on_is_read_without_decoding() {
        let r = Record {
            recorded_on: "2026-12-01T00:00:00.000Z".into(),
            uri: "/x".into(),
            digest: "d".into(),
            outcome: Outcome::default(),
            trace: vec![],
            shapes: vec![],
            truncated: false,
        };
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(
            recorded_ms(&text),
            automate_core::time::parse_time("2026-12-01T00:00:00Z")
        );
    }

    #[test]
    fn live_filters_match_provider_type_vm_and_time() {
        let e = LiveEvent {
            id: "1".into(),
            event_type: "USER_RUN_VM".into(),
            provider: "rhevm01".into(),
            source: "RHEVM".into(),
            timestamp: "2026-12-01T00:00:00.000Z".into(),
            vm_ems_ref: Some("vm-1".into()),
            vm_name: Some("web01".into()),
            vm_id: Some("1000000000001".into()),
            generic_events: vec![],
            policies: vec![],
            alerts: vec![],
            error: None,
        };
        let all = LiveFilter::default();
        assert!(all.matches(&e));
        let f = |p: Option<&str>, t: Option<&str>, vm: Option<&str>| LiveFilter {
            provider: p.map(Into::into),
            event_type: t.map(Into::into),
            vm: vm.map(Into::into),
            since_ms: None,
        };
        assert!(f(Some("rhevm01"), Some("USER_RUN_VM"), Some("web01")).matches(&e));
        assert!(f(None, None, Some("vm-1")).matches(&e));
        assert!(!f(Some("vc"), None, None).matches(&e));
        assert!(!f(None, Some("VM_DOWN"), None).matches(&e));
        assert!(!f(None, None, Some("db01")).matches(&e));
        let later = LiveFilter {
            since_ms: automate_core::time::parse_time("2026-12-02T00:00:00Z"),
            ..LiveFilter::default()
        };
        assert!(!later.matches(&e));
    }
}
