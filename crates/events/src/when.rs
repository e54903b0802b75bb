//! Times users type (the command line's `events list --since` and
//! `event send --timestamp`, the REST API's `?since=`), parsed and validated with `jiff` (SPEC §1):
//! a span ago (`90s`, `30m`, `1h`, `2d`, `1w`, `1h30m`, `2 days`,
//! `2 days ago`), a number of seconds ago (`3600`), an RFC 3339 / ISO 8601 time
//! (`2026-12-01T00:00:00Z`, `2026-12-01T01:00:00+01:00`), a civil date and
//! time taken as UTC (`2026-12-01T10:00:00`, `2026-12-01 10:00:00`) or a
//! date (`2026-12-01`, midnight UTC). An impossible date (`2026-02-31`) is
//! refused with an error naming the flag. The product's own calendar and
//! the texts it stores stay in `automate_core::time`; this module only
//! turns what users type into milliseconds since the epoch.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

/// What every time flag accepts, for error messages and `--help`.
pub const FORMS: &str = "a span ago (90s, 30m, 1h, 2d, 1w, 1h30m), a number of seconds ago \
                         (3600), an RFC 3339 time (2026-12-01T00:00:00Z), a date and time in \
                         UTC (2026-12-01T10:00:00) or a date (2026-12-01)";

/// Why a typed time was refused: the flag, what was typed, and why.
#[derive(Debug)]
pub struct TimeArgError {
    /// The flag, e.g. `--since`.
    pub flag: String,
    /// What the user typed (at most 64 characters of it).
    pub text: String,
    /// Why it is not a time.
    pub reason: String,
}

impl std::fmt::Display for TimeArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}: {}; give {FORMS}",
            self.flag, self.text, self.reason
        )
    }
}

impl std::error::Error for TimeArgError {}

/// The earliest time accepted: the product's calendar covers years
/// 0..=9999 (`automate_core::time`).
const MIN: &str = "0000-01-01T00:00:00Z";

/// Parses `text`, typed after `flag`, to milliseconds since the epoch,
/// relative forms counted back from `now_ms`.
pub fn parse(flag: &str, text: &str, now_ms: i64) -> Result<i64, TimeArgError> {
    let err = |reason: String| TimeArgError {
        flag: flag.to_string(),
        text: text.chars().take(64).collect(),
        reason,
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(err("empty".into()));
    }
    let ts = if looks_absolute(t) {
        absolute(t).map_err(err)?
    } else {
        let now = Timestamp::from_millisecond(now_ms).map_err(|e| err(e.to_string()))?;
        ago(t, now).map_err(err)?
    };
    let min: Timestamp = MIN.parse().map_err(|e: jiff::Error| err(e.to_string()))?;
    if ts < min {
        return Err(err("before the year 0".into()));
    }
    Ok(ts.as_millisecond())
}

/// A date first (`YYYY-MM-DD...`): an absolute time.
fn looks_absolute(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

fn absolute(t: &str) -> Result<Timestamp, String> {
    // With a zone (`Z`, `+01:00`): an instant.
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    // Without one: a civil time in UTC (as oslo.messaging writes them).
    if t.len() > 10 {
        let dt: DateTime = t.parse().map_err(|e: jiff::Error| e.to_string())?;
        return dt
            .to_zoned(TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string());
    }
    let d: Date = t.parse().map_err(|e: jiff::Error| e.to_string())?;
    d.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

/// `3600` (seconds) or a span (`1h`, `2d`, `1h30m`, `2 days`) before `now`.
fn ago(t: &str, now: Timestamp) -> Result<Timestamp, String> {
    let span: Span = match t.parse::<u64>() {
        Ok(secs) => {
            let secs = i64::try_from(secs).map_err(|e| e.to_string())?;
            Span::new().try_seconds(secs).map_err(|e| e.to_string())?
        }
        Err(_) => t.parse().map_err(|e: jiff::Error| e.to_string())?,
    };
    // `2 days ago` parses as a negative span: it means what `2d` means.
    let span = if t.ends_with("ago") { span.abs() } else { span };
    if span.is_negative() {
        return Err("a span ago cannot be negative".into());
    }
    // Calendar units (days, weeks, months) count on the UTC calendar.
    now.to_zoned(TimeZone::UTC)
        .checked_sub(span)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06T07:00:00Z.
    const NOW: i64 = 1_796_540_400_000;

    #[test]
    fn accepted_forms() {
        let cases: &[(&str, i64)] = &[
            ("3600", NOW - 3_600_000),
            ("0", NOW),
            ("90s", NOW - 90_000),
            ("30m", NOW - 1_800_000),
            ("1h", NOW - 3_600_000),
            ("1h30m", NOW - 5_400_000),
            ("2d", NOW - 2 * 86_400_000),
            ("2 days", NOW - 2 * 86_400_000),
            ("2 days ago", NOW - 2 * 86_400_000),
            ("1h ago", NOW - 3_600_000),
            ("1w", NOW - 7 * 86_400_000),
            ("2026-12-01T00:00:00Z", 1_796_083_200_000),
            ("2026-12-01T01:00:00+01:00", 1_796_083_200_000),
            ("2026-12-01T00:00:00.250Z", 1_796_083_200_250),
            ("2026-12-01T00:00:00", 1_796_083_200_000),
            ("2026-12-01 00:00:00", 1_796_083_200_000),
            ("2026-12-01", 1_796_083_200_000),
            (" 2026-12-01 ", 1_796_083_200_000),
        ];
        for (text, want) in cases {
            let got = parse("--since", text, NOW).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn refused_forms_name_the_flag() {
        for text in [
            "2026-02-31",
            "2026-02-31T00:00:00Z",
            "2026-13-01",
            "2026-12-01T25:00:00Z",
            "yesterday",
            "1 fortnight",
            "-1h",
            "",
            "1e3",
        ] {
            let e = parse("--since", text, NOW).expect_err(text).to_string();
            assert!(e.starts_with("--since "), "{text}: {e}");
            assert!(e.contains("2026-12-01T00:00:00Z"), "{text}: {e}");
        }
        let e = parse("--timestamp", "2026-02-31", NOW).unwrap_err();
        assert_eq!(e.flag, "--timestamp");
    }
}
