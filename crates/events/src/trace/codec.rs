//! The stored form of a delivery's [`Record`] (the `automate_trace`
//! attribute's text), written and read by hand.
//!
//! Version 2, written since session 14: `trace/2|` and then every field in
//! a fixed order, strings as `<byte length>:<bytes>` (no escapes, no
//! scanning of the text), counts and ids as `<decimal>,`, flags as `0`/`1`,
//! an absent string as `~`. It holds no JSON: the row codec, which writes
//! the attribute as a JSON string, escapes only the quotes, backslashes and
//! control characters of the trace lines themselves, once (version 1, the
//! record as JSON text, had every quote of the JSON escaped again, and
//! cost a `serde_json` pass each way).
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
//! Version 1 (JSON text starting with `{`) still reads ([`decode`]).

use super::{AlertFired, MethodRun, ObjectTouched, Outcome, PolicyFired, Record};

/// What version 2's text starts with.
pub const MAGIC: &str = "trace/2|";

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

/// Appends version 2's text of `r` to `out`.
pub fn encode(out: &mut String, r: &Record) {
    let outcome = &r.outcome;
    out.push_str(MAGIC);
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
    for line in &r.trace {
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

/// Reads a stored record: version 2's text, or version 1's JSON.
pub fn decode(text: &str) -> Result<Record, String> {
    let Some(body) = text.strip_prefix(MAGIC) else {
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
    // Subjects as indexes of `trace` and byte ranges in them.
    let mut subjects: Vec<(usize, usize, usize)> = Vec::with_capacity(SUBJECTS);
    for _ in 0..n {
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
        truncated,
    })
}

/// When a stored record was made, read without decoding the rest (either
/// version).
pub fn recorded_on(text: &str) -> Option<&str> {
    match text.strip_prefix(MAGIC) {
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

/// A cursor over version 2's text.
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
}
