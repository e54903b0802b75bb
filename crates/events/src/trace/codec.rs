//! The stored form of a delivery's [`Record`] (the `automate_trace`
//! attribute's text), written and read by hand.
//!
//! Version 3, written since the event page draws its trace as a tree
//! (issue 21): `trace/3|` and then every field in a fixed order, strings
//! as `<byte length>:<bytes>` (no escapes, no scanning of the text), counts
//! and ids as `<decimal>,`, flags as `0`/`1`, an absent string as `~`. It
//! holds no JSON: the row codec, which writes the attribute as a JSON
//! string, escapes only the quotes, backslashes and control characters of
//! the trace lines themselves, once (version 1, the record as JSON text,
//! had every quote of the JSON escaped again, and cost a `serde_json` pass
//! each way).
//!
//! Trace lines repeat what an earlier line holds in brackets: `Updated
//! namespace [X  ns]` after `Instantiating [X]` or `Following Relationship
//! [X]`, `Followed  Relationship [X]` at the end of `Following Relationship
//! [X]`. A line whose bracketed part starts with the bracketed part of one
//! of the last [`SUBJECTS`] lines is stored as a reference to it:
//! `^<k>,<head><tail>` (k = 0 the latest; head and tail as strings) where
//! the line is head + that subject + tail. Every other line is a string.
//! This keeps ~40% of a typical trace's bytes out of the row.
//!
//! Each line's relationship depth and level ([`Record::shapes`], what the
//! UI's trace tree nests by) is written before the line only where it
//! differs from the line before's (the first line's "before" is depth 0,
//! `info`): `@<depth><level>`, the level one letter (`d`ebug, `i`nfo,
//! `w`arn, `e`rror). A typical delivery changes depth every few lines, so
//! this adds a few bytes per relationship. The digest (in the record,
//! [`super::digest`]) hashes the outcome and the trace's text only, as it
//! always has: a delivery digests the same whichever version stores it.
//!
//! Older records still read ([`decode`]), without depths and levels
//! ([`Record::shapes`] empty): version 2 (`trace/2|`, written from session
//! 14 until version 3: version 3 without the `@` shapes; [`encode`] still
//! writes it for a record whose shapes do not match its lines) and version
//! 1 (JSON text starting with `{`). The event page shows their traces with depths
//! inferred from the relationship lines and levels from the outcome's
//! errors ([`Record::trace_lines`]): relationships nest as recorded, except
//! that the lines after a relationship that failed (no `Followed`) stay
//! nested in it up to the end of the one around it, and warnings are not
//! marked.

use super::{AlertFired, LineShape, MethodRun, ObjectTouched, Outcome, PolicyFired, Record};
use automate_engine::Level;

/// What version 3's text starts with.
pub const MAGIC: &str = "trace/3|";

/// What version 2's text starts with (no line shapes).
pub const MAGIC_V2: &str = "trace/2|";

/// The shape lines start from.
const FIRST_SHAPE: LineShape = LineShape {
    depth: 0,
    level: Level::Info,
};

fn level_letter(level: Level) -> char {
    match level {
        Level::Debug => 'd',
        Level::Info => 'i',
        Level::Warn => 'w',
        Level::Error => 'e',
    }
}

/// How many earlier bracketed parts a trace line may refer to.
pub const SUBJECTS: usize = 8;

/// Appends the decimal `n` and `,`.
fn int(out: &mut String, n: i64) {
    out.push_str(itoa::Buffer::new().format(n));
    out.push(',');
}

fn count(out: &mut String, n: usize) {
    int(out, n as i64);
}

/// Appends `s` as `<len>:<s>`.
fn string(out: &mut String, s: &str) {
    out.push_str(itoa::Buffer::new().format(s.len()));
    out.push(':');
    out.push_str(s);
}

fn flag(out: &mut String, b: bool) {
    out.push(if b { '1' } else { '0' });
}

/// The part of a trace line after its first `[` (where a subject starts),
/// as a byte offset.
fn subject_start(line: &str) -> Option<usize> {
    line.find('[').map(|i| i + 1)
}

/// The bracketed part of a line, the subject later lines repeat: from
/// after its first `[` to before its last `]` when it ends with one (a URI
/// may hold brackets), else to before the next `]`. Short ones (`builtin`,
/// an event's name) are not worth a reference.
fn subject_of(line: &str) -> Option<&str> {
    let rest = &line[subject_start(line)?..];
    let end = match rest.strip_suffix(']') {
        Some(s) => s.len(),
        None => rest.find(']')?,
    };
    (end >= 24).then(|| &rest[..end])
}

/// The recent subjects, newest last, as byte ranges of the lines.
struct Subjects<'a> {
    recent: [&'a str; SUBJECTS],
    len: usize,
    next: usize,
}

impl<'a> Subjects<'a> {
    fn new() -> Self {
        Subjects {
            recent: [""; SUBJECTS],
            len: 0,
            next: 0,
        }
    }

    /// The newest subject `rest` starts with, as (k, length), k = 0 the
    /// newest.
    fn find(&self, rest: &str) -> Option<(usize, usize)> {
        (0..self.len).find_map(|k| {
            let s = self.get(k);
            rest.as_bytes()
                .starts_with(s.as_bytes())
                .then_some((k, s.len()))
        })
    }

    fn get(&self, k: usize) -> &'a str {
        self.recent[(self.next + SUBJECTS - 1 - k) % SUBJECTS]
    }

    fn push(&mut self, s: &'a str) {
        self.recent[self.next] = s;
        self.next = (self.next + 1) % SUBJECTS;
        self.len = (self.len + 1).min(SUBJECTS);
    }
}

/// Appends version 3's text of `r` to `out` (version 2's when its shapes
/// do not match its lines: a record read from version 2 or 1).
pub fn encode(out: &mut String, r: &Record) {
    encode_as(out, r, r.has_depths());
}

/// Appends `r`'s text to `out`: version 3 with `shapes`, else version 2.
fn encode_as(out: &mut String, r: &Record, shapes: bool) {
    let outcome = &r.outcome;
    out.push_str(if shapes { MAGIC } else { MAGIC_V2 });
    string(out, &r.recorded_on);
    string(out, &r.uri);
    string(out, &r.digest);
    flag(out, r.truncated);
    flag(out, outcome.discarded);
    flag(out, outcome.retry);
    count(out, outcome.generic_events.len());
    for e in &outcome.generic_events {
        string(out, e);
    }
    count(out, outcome.policies.len());
    for p in &outcome.policies {
        string(out, &p.policy);
        string(out, &p.event);
        flag(out, p.condition);
    }
    count(out, outcome.alerts.len());
    for a in &outcome.alerts {
        string(out, &a.alert);
        string(out, &a.event);
    }
    count(out, outcome.methods.len());
    for m in &outcome.methods {
        string(out, &m.method);
        string(out, &m.location);
        match &m.rc {
            Some(rc) => string(out, rc),
            None => out.push('~'),
        }
    }
    count(out, outcome.objects.len());
    for o in &outcome.objects {
        string(out, &o.class);
        int(out, o.id);
        flag(out, o.created);
        flag(out, o.deleted);
        count(out, o.attributes.len());
        for a in &o.attributes {
            string(out, a);
        }
    }
    count(out, outcome.errors.len());
    for e in &outcome.errors {
        string(out, e);
    }
    count(out, r.trace.len());
    let mut subjects = Subjects::new();
    let mut shape = FIRST_SHAPE;
    let mut line_shapes = if shapes { r.shapes.iter() } else { [].iter() };
    for line in &r.trace {
        if let Some(&s) = line_shapes.next() {
            if s != shape {
                out.push('@');
                match u8::try_from(s.depth) {
                    Ok(d @ 0..=9) => out.push(char::from(b'0' + d)),
                    _ => out.push_str(itoa::Buffer::new().format(s.depth)),
                }
                out.push(level_letter(s.level));
                shape = s;
            }
        }
        let found = subject_start(line).and_then(|start| {
            subjects
                .find(&line[start..])
                .map(|(k, len)| (start, k, len))
        });
        match found {
            Some((start, k, len)) => {
                out.push('^');
                count(out, k);
                string(out, &line[..start]);
                string(out, &line[start + len..]);
            }
            None => {
                string(out, line);
                // Only lines stored whole are referred to (a line that
                // refers repeats its subject).
                if let Some(s) = subject_of(line) {
                    subjects.push(s);
                }
            }
        }
    }
}

/// Reads a stored record: version 3's or 2's text, or version 1's JSON.
pub fn decode(text: &str) -> Result<Record, String> {
    let (body, v3) = if let Some(body) = text.strip_prefix(MAGIC) {
        (body, true)
    } else if let Some(body) = text.strip_prefix(MAGIC_V2) {
        (body, false)
    } else {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    };
    let mut r = Reader {
        text: body,
        at: 0,
        base: MAGIC.len(),
    };
    let recorded_on = r.string()?.to_string();
    let uri = r.string()?.to_string();
    let digest = r.string()?.to_string();
    let truncated = r.flag()?;
    let mut outcome = Outcome {
        discarded: r.flag()?,
        retry: r.flag()?,
        ..Outcome::default()
    };
    for _ in 0..r.count()? {
        outcome.generic_events.push(r.string()?.to_string());
    }
    for _ in 0..r.count()? {
        outcome.policies.push(PolicyFired {
            policy: r.string()?.to_string(),
            event: r.string()?.to_string(),
            condition: r.flag()?,
        });
    }
    for _ in 0..r.count()? {
        outcome.alerts.push(AlertFired {
            alert: r.string()?.to_string(),
            event: r.string()?.to_string(),
        });
    }
    for _ in 0..r.count()? {
        let method = r.string()?.to_string();
        let location = r.string()?.to_string();
        let rc = if r.eat('~') {
            None
        } else {
            Some(r.string()?.to_string())
        };
        outcome.methods.push(MethodRun {
            method,
            location,
            rc,
        });
    }
    for _ in 0..r.count()? {
        let class = r.string()?.to_string();
        let id = r.int()?;
        let created = r.flag()?;
        let deleted = r.flag()?;
        let mut attributes = Vec::new();
        for _ in 0..r.count()? {
            attributes.push(r.string()?.to_string());
        }
        outcome.objects.push(ObjectTouched {
            class,
            id,
            created,
            attributes,
            deleted,
        });
    }
    for _ in 0..r.count()? {
        outcome.errors.push(r.string()?.to_string());
    }
    let n = r.count()?;
    let mut trace: Vec<String> = Vec::with_capacity(n.min(4096));
    let mut shapes: Vec<LineShape> = Vec::with_capacity(if v3 { n.min(4096) } else { 0 });
    let mut shape = FIRST_SHAPE;
    // Subjects as indexes of `trace` and byte ranges in them.
    let mut subjects: Vec<(usize, usize, usize)> = Vec::with_capacity(SUBJECTS);
    for _ in 0..n {
        if v3 {
            if r.eat('@') {
                shape = r.shape()?;
            }
            shapes.push(shape);
        }
        let referred = r.eat('^');
        let line = if referred {
            let k = r.count()?;
            let head = r.string()?;
            let tail = r.string()?;
            let Some(&(i, s, e)) = subjects
                .len()
                .checked_sub(k + 1)
                .and_then(|p| subjects.get(p))
            else {
                return Err(r.bad("a reference to a trace line that is not there"));
            };
            let subject = &trace[i][s..e];
            let mut line = String::with_capacity(head.len() + subject.len() + tail.len());
            line.push_str(head);
            line.push_str(subject);
            line.push_str(tail);
            line
        } else {
            r.string()?.to_string()
        };
        if let Some(s) = subject_of(&line).filter(|_| !referred) {
            let start = s.as_ptr() as usize - line.as_ptr() as usize;
            if subjects.len() == SUBJECTS {
                subjects.remove(0);
            }
            subjects.push((trace.len(), start, start + s.len()));
        }
        trace.push(line);
    }
    if r.at != r.text.len() {
        return Err(r.bad("text after the trace"));
    }
    Ok(Record {
        recorded_on,
        uri,
        digest,
        outcome,
        trace,
        shapes,
        truncated,
    })
}

/// When a stored record was made, read without decoding the rest (any
/// version).
pub fn recorded_on(text: &str) -> Option<&str> {
    match text
        .strip_prefix(MAGIC)
        .or_else(|| text.strip_prefix(MAGIC_V2))
    {
        Some(body) => Reader {
            text: body,
            at: 0,
            base: MAGIC.len(),
        }
        .string()
        .ok(),
        None => {
            let rest = text.split_once("\"recorded_on\":\"")?.1;
            Some(rest.split_once('"')?.0)
        }
    }
}

/// A cursor over version 3's (and 2's) text.
struct Reader<'a> {
    text: &'a str,
    at: usize,
    /// Where `text` starts in the attribute (for messages).
    base: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, what: &str) -> String {
        format!("malformed record at byte {}: {what}", self.base + self.at)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.text[self.at..].starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Decimal digits up to `end`.
    fn number(&mut self, end: u8) -> Result<i64, String> {
        let rest = &self.text.as_bytes()[self.at..];
        let Some(stop) = rest.iter().position(|&b| b == end) else {
            return Err(self.bad(&format!("a number ending with `{}`", end as char)));
        };
        let digits = &self.text[self.at..self.at + stop];
        let n = digits
            .parse::<i64>()
            .map_err(|_| self.bad(&format!("`{digits}` is not a number")))?;
        self.at += stop + 1;
        Ok(n)
    }

    /// A line's shape after its `@`: the depth's digits, the level's
    /// letter.
    fn shape(&mut self) -> Result<LineShape, String> {
        let rest = &self.text.as_bytes()[self.at..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let depth = self.text[self.at..self.at + digits]
            .parse::<u32>()
            .map_err(|_| self.bad("a line's depth"))?;
        let level = match rest.get(digits) {
            Some(b'd') => Level::Debug,
            Some(b'i') => Level::Info,
            Some(b'w') => Level::Warn,
            Some(b'e') => Level::Error,
            _ => return Err(self.bad("a line's level (d, i, w or e)")),
        };
        self.at += digits + 1;
        Ok(LineShape { depth, level })
    }

    fn int(&mut self) -> Result<i64, String> {
        self.number(b',')
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = self.int()?;
        usize::try_from(n).map_err(|_| self.bad(&format!("{n} is not a count")))
    }

    fn flag(&mut self) -> Result<bool, String> {
        if self.eat('1') {
            Ok(true)
        } else if self.eat('0') {
            Ok(false)
        } else {
            Err(self.bad("a flag (0 or 1)"))
        }
    }

    fn string(&mut self) -> Result<&'a str, String> {
        let len = self.number(b':')?;
        let len = usize::try_from(len).map_err(|_| self.bad("a negative length"))?;
        let end = self.at.saturating_add(len);
        let Some(s) = self.text.get(self.at..end) else {
            return Err(self.bad(&format!("a string of {len} bytes")));
        };
        self.at = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(trace: &[&str]) -> Record {
        Record {
            recorded_on: "2026-12-06T19:00:00.000Z".into(),
            uri: "/System/Process/Event?event_id=1".into(),
            digest: "ab".repeat(32),
            outcome: Outcome {
                generic_events: vec!["vm_start".into()],
                policies: vec![PolicyFired {
                    policy: "p:1".into(),
                    event: "vm_start".into(),
                    condition: true,
                }],
                alerts: vec![AlertFired {
                    alert: "a,2".into(),
                    event: "vm_start".into(),
                }],
                methods: vec![
                    MethodRun {
                        method: "/D/N/C/m".into(),
                        location: "inline".into(),
                        rc: Some("MIQ_OK".into()),
                    },
                    MethodRun {
                        method: "/D/N/C/b".into(),
                        location: "builtin".into(),
                        rc: None,
                    },
                ],
                objects: vec![ObjectTouched {
                    class: "VmOrTemplate".into(),
                    id: -1_000_000_000_001,
                    created: false,
                    attributes: vec!["control_tag".into(), "x".into()],
                    deleted: true,
                }],
                discarded: true,
                errors: vec!["Class [/x] not found: \"y\"".into()],
                retry: true,
            },
            trace: trace.iter().map(|s| s.to_string()).collect(),
            // Depths up and down, every level.
            shapes: (0..trace.len())
                .map(|i| LineShape {
                    depth: [0, 0, 1, 12, 1][i % 5],
                    level: [Level::Info, Level::Debug, Level::Warn, Level::Error][i / 3 % 4],
                })
                .collect(),
            truncated: false,
        }
    }

    fn text(r: &Record) -> String {
        let mut out = String::new();
        encode(&mut out, r);
        out
    }

    #[test]
    fn records_round_trip_with_repeated_subjects_referred_to() {
        let uri = "/System/Process/Event?EventStream%3A%3Aevent_stream=1000000000001&x=[1]";
        let rel = "miqaedb:/System/Event/EmsEvent/RHEVM/USER_STOP_VM#create";
        let inner = "miqaedb:/System/event_handlers/event_action_refresh?target=src_vm#create";
        let lines = [
            format!("Instantiating [{uri}]"),
            format!("Updated namespace [{uri}  ManageIQ/System/Process]"),
            format!("Following Relationship [{rel}]"),
            format!("Updated namespace [{rel}  ManageIQ/System/Event/EmsEvent]"),
            format!("Following Relationship [{inner}]"),
            "Invoking [builtin] method [/ManageIQ/System/x] with inputs [{\"target\"=>\"src_vm\"}]"
                .into(),
            "é ünïcode [ä]".into(),
            String::new(),
            "line\nwith a newline and 12: numbers, ~ ^ |".into(),
            format!("Followed  Relationship [{inner}]"),
            format!("Followed  Relationship [{rel}]"),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let r = record(&lines);
        let t = text(&r);
        assert!(t.starts_with(MAGIC));
        assert!(t.contains("@12w"), "{t}");
        assert_eq!(decode(&t), Ok(r.clone()));
        // The trace's part of the text is smaller than the trace.
        let plain: usize = lines.iter().map(|l| l.len()).sum();
        let stored = t.len() - text(&record(&[])).len();
        assert!(
            stored < plain * 4 / 5,
            "{stored} bytes stored for {plain} of trace"
        );
        assert_eq!(recorded_on(&t), Some("2026-12-06T19:00:00.000Z"));
        // An empty record too.
        let mut empty = record(&[]);
        empty.outcome = Outcome::default();
        empty.truncated = true;
        assert_eq!(decode(&text(&empty)), Ok(empty));
    }

    #[test]
    fn version_1_json_still_reads() {
        let r = record(&["Instantiating [/x]"]);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(decode(&json), Ok(r));
        assert_eq!(recorded_on(&json), Some("2026-12-06T19:00:00.000Z"));
    }

    #[test]
    fn malformed_text_is_an_error_naming_the_byte() {
        let r = record(&["Instantiating [/x]"]);
        let t = text(&r);
        for cut in [MAGIC.len() + 3, t.len() - 2] {
            let e = decode(&t[..cut]).unwrap_err();
            assert!(e.starts_with("malformed record at byte"), "{e}");
        }
        let e = decode(&format!("{MAGIC}5:abc")).unwrap_err();
        assert_eq!(e, "malformed record at byte 10: a string of 5 bytes");
        let e = decode(&format!("{t}x")).unwrap_err();
        assert!(e.contains("text after the trace"), "{e}");
        let bad_ref = t.replacen("1,18:", "1,^5,0:18:", 1);
        assert!(decode(&bad_ref).is_err());
    }

    /// A typical delivery's trace (a provider event whose policy raises a
    /// `MiqEvent`, delivered in the same sandbox), with its depths.
    fn typical_trace() -> Vec<automate_engine::TraceLine> {
        use automate_engine::{Level, TraceLine};
        let uri = "/System/Process/Event?EventStream%3A%3Aevent_stream=1000000000042&MiqServer%3A%3Amiq_server=1000000000001&User%3A%3Auser=1000000000001&VmOrTemplate%3A%3Avm=1000000000007&event_id=1000000000042&event_stream_id=1000000000042&event_type=USER_RUN_VM&object_name=Event&vm_id=1000000000007&vmdb_object_type=event_stream";
        let miq = "/System/Process/Event?EventStream%3A%3Aevent_stream=1000000000043&MiqEvent%3A%3Amiq_event=1000000000043&VmOrTemplate%3A%3Avm=1000000000007&event_type=vm_start&object_name=Event&vmdb_object_type=miq_event";
        let ems = "miqaedb:/System/Event/EmsEvent/RHEVM/USER_RUN_VM#create";
        let pol = "miqaedb:/System/event_handlers/event_action_policy?target=src_vm&policy_event=vm_start&param=#create";
        let refresh = "miqaedb:/System/event_handlers/event_action_refresh?target=src_vm#create";
        let pev = "miqaedb:/System/Event/MiqEvent/POLICY/vm_start#create";
        let enf = "miqaedb:/System/event_handlers/event_enforce_policy#create";
        let lines: Vec<(usize, Level, String)> = vec![
            (0, Level::Info, format!("Instantiating [{uri}]")),
            (0, Level::Info, format!("Updated namespace [{uri}  ManageIQ/System]")),
            (0, Level::Info, format!("Following Relationship [{ems}]")),
            (0, Level::Info, format!("Updated namespace [{ems}  ManageIQ/System/Event/EmsEvent]")),
            (1, Level::Info, format!("Following Relationship [{refresh}]")),
            (1, Level::Info, format!("Updated namespace [{refresh}  ManageIQ/System]")),
            (2, Level::Info, "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_refresh] with inputs [{\"target\"=>\"src_vm\"}]".into()),
            (2, Level::Info, "Refresh requested for VmOrTemplate [1000000000007]".into()),
            (1, Level::Info, format!("Followed  Relationship [{refresh}]")),
            (1, Level::Info, format!("Following Relationship [{pol}]")),
            (1, Level::Info, format!("Updated namespace [{pol}  ManageIQ/System]")),
            (2, Level::Info, "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_policy] with inputs [{\"target\"=>\"src_vm\", \"policy_event\"=>\"vm_start\", \"param\"=>\"\"}]".into()),
            (2, Level::Info, "MIQ(MiqPolicy.enforce_policy) Policy [tag_prod] condition true for event [vm_start]".into()),
            (2, Level::Info, "MIQ(MiqAlert.evaluate_alerts) Alert [started] condition false for event [vm_start]".into()),
            (2, Level::Info, "MIQ(Event.raise_evm_event): Event Raised [vm_start]".into()),
            (0, Level::Info, format!("Instantiating [{miq}]")),
            (0, Level::Info, format!("Updated namespace [{miq}  ManageIQ/System]")),
            (0, Level::Info, format!("Following Relationship [{pev}]")),
            (0, Level::Info, format!("Updated namespace [{pev}  ManageIQ/System/Event/MiqEvent]")),
            (0, Level::Warn, "Instance [/ManageIQ/System/Event/MiqEvent/POLICY/vm_start] not found in MiqAeDatastore - trying [.missing]".into()),
            (1, Level::Info, format!("Following Relationship [{enf}]")),
            (1, Level::Info, format!("Updated namespace [{enf}  ManageIQ/System]")),
            (2, Level::Info, "Invoking [builtin] method [/ManageIQ/System/event_handlers/event_enforce_policy] with inputs [{}]".into()),
            (2, Level::Info, "Event [vm_start] MiqEvent.1000000000043: policies and alerts ran when it was raised".into()),
            (1, Level::Info, format!("Followed  Relationship [{enf}]")),
            (0, Level::Info, format!("Followed  Relationship [{pev}]")),
            (1, Level::Info, format!("Followed  Relationship [{pol}]")),
            (0, Level::Info, format!("Followed  Relationship [{ems}]")),
        ];
        lines
            .into_iter()
            .map(|(depth, level, text)| TraceLine { depth, level, text })
            .collect()
    }

    /// A record of `trace` as the handler makes it.
    fn recorded(trace: &[automate_engine::TraceLine], max_bytes: usize) -> Record {
        let outcome = crate::trace::outcome_of(trace);
        let digest = crate::trace::digest(&outcome, trace);
        let (lines, shapes, truncated) = crate::trace::bounded_trace(trace, max_bytes);
        Record {
            recorded_on: "2026-12-06T23:00:00.000Z".into(),
            uri: "/System/Process/Event?event_id=1000000000042".into(),
            digest,
            outcome,
            trace: lines,
            shapes,
            truncated,
        }
    }

    #[test]
    fn versions_2_and_3_of_one_delivery_digest_the_same() {
        let trace = typical_trace();
        for max_bytes in [64 * 1024, 1500] {
            let r = recorded(&trace, max_bytes);
            assert_eq!(r.truncated, max_bytes < 4096);
            let v3 = text(&r);
            let mut v2 = String::new();
            encode_as(&mut v2, &r, false);
            assert!(v3.starts_with(MAGIC) && v2.starts_with(MAGIC_V2));
            let (a, b) = (decode(&v3).unwrap(), decode(&v2).unwrap());
            // Version 3 keeps every line's depth and level.
            assert_eq!(a, r);
            assert!(a.has_depths() && !b.has_depths() && b.shapes.is_empty());
            assert_eq!(a.trace, b.trace);
            // One digest, and it is the digest of the text alone: the
            // lines as either version gives them back digest as recorded.
            assert_eq!(a.digest, b.digest);
            let whole = crate::trace::digest(&r.outcome, &trace);
            assert_eq!(a.digest, whole);
            if !r.truncated {
                for back in [&a, &b] {
                    assert_eq!(crate::trace::digest(&r.outcome, &back.trace_lines()), whole);
                }
                let depths: Vec<usize> = a.trace_lines().iter().map(|l| l.depth).collect();
                let engine: Vec<usize> = trace.iter().map(|l| l.depth).collect();
                assert_eq!(depths, engine);
            }
            // The shapes cost a few bytes.
            println!(
                "{max_bytes}: version 3 {} bytes, version 2 {}",
                v3.len(),
                v2.len()
            );
            assert!(v3.len() > v2.len() && v3.len() < v2.len() + 4 * r.trace.len());
        }
    }

    #[test]
    fn old_records_read_with_depths_inferred() {
        let mut r = recorded(&typical_trace(), 64 * 1024);
        r.shapes.clear();
        r.outcome
            .errors
            .push("Refresh requested for VmOrTemplate [1000000000007]".into());
        // Version 2 text and version 1 JSON (no `shapes`).
        let mut v2 = String::new();
        encode(&mut v2, &r);
        assert!(v2.starts_with(MAGIC_V2), "no shapes: version 2");
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("shapes"));
        for stored in [v2, json] {
            let back = decode(&stored).unwrap();
            assert_eq!(back, r);
            let lines = back.trace_lines();
            let at = |needle: &str| {
                lines
                    .iter()
                    .find(|l| l.text.starts_with(needle))
                    .map(|l| (l.depth, l.level))
            };
            let info = automate_engine::Level::Info;
            assert_eq!(
                at("Instantiating [/System/Process/Event?EventStream"),
                Some((0, info))
            );
            assert_eq!(
                at("Following Relationship [miqaedb:/System/Event/Ems"),
                Some((0, info))
            );
            // Inside it: one deeper (the engine writes `Updated namespace`
            // at the relationship's own depth; the tree keeps both in it).
            assert_eq!(
                at("Updated namespace [miqaedb:/System/Event/Ems"),
                Some((1, info))
            );
            assert_eq!(
                at("Following Relationship [miqaedb:/System/event_handlers/event_action_refresh"),
                Some((1, info))
            );
            assert_eq!(at("Invoking [builtin] method [/ManageIQ/System/event_handlers/event_action_refresh]"), Some((2, info)));
            assert_eq!(
                at("Refresh requested"),
                Some((2, automate_engine::Level::Error))
            );
            assert_eq!(
                at("Followed  Relationship [miqaedb:/System/event_handlers/event_action_refresh"),
                Some((1, info))
            );
            // The MiqEvent's instantiation starts again at 0.
            assert_eq!(at("Instantiating [/System/Process/Event?EventStream%3A%3Aevent_stream=1000000000043"), Some((0, info)));
            assert_eq!(
                at("Followed  Relationship [miqaedb:/System/Event/MiqEvent"),
                Some((0, info))
            );
        }
    }

    #[test]
    fn malformed_shapes_are_errors() {
        let r = record(&["a", "b", "c", "d", "e", "f"]);
        let t = text(&r);
        assert!(t.contains("@0d"), "{t}");
        for (bad, says) in [
            (t.replacen("@0d", "@d", 1), "a line's depth"),
            (t.replacen("@0d", "@0x", 1), "a line's level"),
            (t.replacen("@0d", "@99999999999d", 1), "a line's depth"),
        ] {
            let e = decode(&bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    /// What encoding a typical record costs, version 3 against version 2
    /// (printed, not asserted: `cargo test -p automate-events --lib
    /// encode_cost -- --ignored --nocapture`; the best of 7 rounds).
    #[test]
    #[ignore]
    fn encode_cost_of_a_typical_record() {
        use std::hint::black_box;
        let trace = typical_trace();
        let r = recorded(&trace, 64 * 1024);
        let bytes: usize = r.trace.iter().map(|l| l.len() + 1).sum();
        let n = 5_000u32;
        let mut out = String::with_capacity(16 << 10);
        let time = |f: &mut dyn FnMut()| {
            let t = std::time::Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        };
        let (mut v3, mut v2, mut bound, mut attr) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..7 {
            v3 = v3.min(time(&mut || {
                out.clear();
                encode_as(&mut out, black_box(&r), true);
                black_box(&out);
            }));
            v2 = v2.min(time(&mut || {
                out.clear();
                encode_as(&mut out, black_box(&r), false);
                black_box(&out);
            }));
            bound = bound.min(time(&mut || {
                black_box(crate::trace::bounded_trace(black_box(&trace), 64 * 1024));
            }));
            attr = attr.min(time(&mut || {
                black_box(black_box(&r).to_attr());
            }));
        }
        let (mut t3, mut t2) = (String::new(), String::new());
        encode_as(&mut t3, &r, true);
        encode_as(&mut t2, &r, false);
        println!(
            "typical record: {} lines, {bytes} bytes of trace; version 3 {} bytes, encode {v3:.0} ns; version 2 {} bytes, encode {v2:.0} ns; bounded_trace {bound:.0} ns; to_attr (version 3) {attr:.0} ns",
            r.trace.len(),
            t3.len(),
            t2.len(),
        );
    }
}
