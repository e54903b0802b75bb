//! UTC calendar arithmetic and the timestamp texts the product writes and
//! reads: Ruby's `Time#to_s` (`2026-11-24 20:05:09 UTC`, what the engine
//! stores in `ae_state_started` and raised events' `timestamp`), ISO 8601
//! with milliseconds (`2026-01-01T00:00:01.250Z`: provider events, logs,
//! requests) and oslo.messaging's (`2026-01-01 00:00:01.250000`). One
//! calendar (Howard Hinnant's `civil_from_days` and its inverse) serves
//! them all; digits are written by hand, as `format!`'s padding costs ~2,600
//! instructions a call and these run for every event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest duration accepted from input (a retry interval, a state's
/// `max_time`, a config interval): ten years, far beyond any use, and far
/// inside what `SystemTime`/`Instant` arithmetic can hold.
pub const MAX_DURATION_SECS: f64 = 10.0 * 365.0 * 86_400.0;

/// The years a time parsed from input may have (what [`utc_text`] and
/// [`iso8601`] write for any moment the product meets).
pub const YEARS: std::ops::RangeInclusive<i64> = 0..=9999;

/// Why a duration from input was refused; each names the field it was
/// read from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// The text is neither a number of seconds nor `N.<unit>`.
    #[error(
        "{field}: [{text}] is not a duration (give seconds, e.g. 30 or 0.5, or N.minutes, \
         N.hours, N.days, N.weeks)"
    )]
    NotADuration {
        /// The field or setting the text was read from (`ae_retry_interval`, `max_time`).
        field: String,
        /// The text as given.
        text: String,
    },
    /// The number is NaN or infinite.
    #[error("{field}: [{text}] is not a finite number of seconds")]
    NotFinite {
        /// The field or setting the number was read from.
        field: String,
        /// The number as given.
        text: String,
    },
    /// The number of seconds is below zero.
    #[error("{field}: [{text}] is negative; give 0 or more seconds")]
    Negative {
        /// The field or setting the number was read from.
        field: String,
        /// The number as given.
        text: String,
    },
    /// The number of seconds is more than [`MAX_DURATION_SECS`] (ten years).
    #[error(
        "{field}: [{text}] seconds is more than the most allowed ({MAX_DURATION_SECS} seconds, \
         10 years)"
    )]
    TooLarge {
        /// The field or setting the number was read from.
        field: String,
        /// The number as given.
        text: String,
    },
}

/// ActiveSupport's `to_i_with_method`: `"1.hour"`, `"30.seconds"`, `600`,
/// `"1,000"`; returns seconds (fractions allowed), unchecked: callers use
/// [`parse_duration_secs`], which bounds it.
pub fn duration_seconds(s: &str) -> Option<f64> {
    let t: String = s.trim().chars().filter(|c| *c != ',').collect();
    if t.is_empty() {
        return None;
    }
    if let Ok(n) = t.parse::<f64>() {
        return Some(n);
    }
    let (num, unit) = t.rsplit_once('.')?;
    let n: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "second" | "seconds" => 1.0,
        "minute" | "minutes" => 60.0,
        "hour" | "hours" => 3600.0,
        "day" | "days" => 86400.0,
        "week" | "weeks" => 604800.0,
        _ => return None,
    };
    Some(n * mult)
}

/// Parses a duration from input (`30`, `0.5`, `"1.hour"`, `"1,000"`,
/// ActiveSupport's `to_i_with_method`) for `field`: NaN, infinities,
/// negatives and more than [`MAX_DURATION_SECS`] are refused, so the
/// result can be added to any `SystemTime` or `Instant` of this era.
pub fn parse_duration_secs(field: &str, text: &str) -> Result<Duration, DurationError> {
    match duration_seconds(text) {
        Some(secs) => duration_from_secs(field, text, secs),
        None => Err(DurationError::NotADuration {
            field: field.to_string(),
            text: text.to_string(),
        }),
    }
}

/// [`parse_duration_secs`] of a number already read (a config value);
/// `text` is how to show it in the error.
pub fn duration_from_secs(field: &str, text: &str, secs: f64) -> Result<Duration, DurationError> {
    let err = |make: fn(String, String) -> DurationError| Err(make(field.into(), text.into()));
    if !secs.is_finite() {
        return err(|field, text| DurationError::NotFinite { field, text });
    }
    if secs < 0.0 {
        return err(|field, text| DurationError::Negative { field, text });
    }
    if secs > MAX_DURATION_SECS {
        return err(|field, text| DurationError::TooLarge { field, text });
    }
    // Finite, 0 ≤ secs ≤ 10 years: cannot fail.
    Duration::try_from_secs_f64(secs)
        .or_else(|_| err(|field, text| DurationError::TooLarge { field, text }))
}

/// `now + d`, or `None` past what `SystemTime` holds.
pub fn after_now(d: Duration) -> Option<SystemTime> {
    SystemTime::now().checked_add(d)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date; `None` when the year is outside
/// [`YEARS`], the month outside 1..=12 or the day outside 1..=31 (the only
/// dates input may name, so the arithmetic below cannot overflow).
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !YEARS.contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Seconds since the epoch of a civil date and time of day, all checked
/// (`None` outside [`days_from_civil`]'s dates or a time of day beyond
/// 23:59:60).
fn civil_secs(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> Option<i64> {
    if !(0..=23).contains(&hh) || !(0..=59).contains(&mm) || !(0..=60).contains(&ss) {
        return None;
    }
    Some(days_from_civil(y, m, d)? * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// A moment split into its calendar fields (UTC).
struct Parts {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
}

impl Parts {
    fn of_ms(ms: i64) -> Parts {
        let secs = ms.div_euclid(1000);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        Parts {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod % 3600 / 60,
            second: sod % 60,
            milli: ms.rem_euclid(1000),
        }
    }

    /// `YYYY-MM-DD<sep>HH:MM:SS`, appended to `out`. Years outside
    /// 0..=9999 are written as `format!("{y:04}")` would.
    fn push_date_time(&self, out: &mut String, sep: char) {
        if (0..=9999).contains(&self.year) {
            push_digits(out, self.year, 4);
        } else {
            out.push_str(&format!("{:04}", self.year));
        }
        for (sep, n) in [
            ('-', self.month),
            ('-', self.day),
            (sep, self.hour),
            (':', self.minute),
            (':', self.second),
        ] {
            out.push(sep);
            push_digits(out, n, 2);
        }
    }
}

/// `n` (0 ≤ n < 10^width) as `width` digits, zero-padded.
fn push_digits(out: &mut String, n: i64, width: u32) {
    for k in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10_i64.pow(k) % 10) as u8));
    }
}

/// `Time.now.utc.to_s`: `2026-11-24 20:05:09 UTC`.
pub fn now_utc_text() -> String {
    utc_text(now_ms().div_euclid(1000))
}

/// `Time#to_s` of a UTC time: `2026-11-24 20:05:09 UTC`.
pub fn utc_text(secs: i64) -> String {
    let mut out = String::with_capacity(23);
    Parts::of_ms(secs.saturating_mul(1000)).push_date_time(&mut out, ' ');
    out.push_str(" UTC");
    out
}

/// Parses [`utc_text`] output back to seconds since the epoch.
pub fn parse_utc_text(s: &str) -> Option<f64> {
    let s = s.trim().strip_suffix("UTC")?.trim();
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    Some(civil_secs(y, m, dd, hh, mm, ss)? as f64)
}

/// ISO 8601 in UTC with milliseconds: `2026-01-01T00:00:01.250Z`.
pub fn iso8601(ms: i64) -> String {
    let p = Parts::of_ms(ms);
    let mut out = String::with_capacity(24);
    p.push_date_time(&mut out, 'T');
    out.push('.');
    push_digits(&mut out, p.milli, 3);
    out.push('Z');
    out
}

/// ISO 8601 in UTC in whole seconds: `2026-11-24T10:00:00Z` ([`iso8601`]
/// without the milliseconds).
pub fn iso8601_secs(ms: i64) -> String {
    let mut out = String::with_capacity(20);
    Parts::of_ms(ms).push_date_time(&mut out, 'T');
    out.push('Z');
    out
}

/// Now in whole seconds, as the API shows a request's times
/// ([`iso8601_secs`]).
pub fn iso8601_secs_now() -> String {
    iso8601_secs(now_ms())
}

/// Now as an event-stream row's `timestamp`: ISO 8601 with milliseconds,
/// the form the catchers normalise provider events to. Every row of the
/// stream (EmsEvent, MiqEvent, RequestEvent) is written in it.
pub fn event_time_now() -> String {
    iso8601(now_ms())
}

/// oslo.messaging's timestamp format: `2026-01-01 00:00:01.250000`.
pub fn oslo_time(ms: i64) -> String {
    let p = Parts::of_ms(ms);
    let mut out = String::with_capacity(26);
    p.push_date_time(&mut out, ' ');
    out.push('.');
    push_digits(&mut out, p.milli * 1000, 6);
    out
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fff][Z|±HH:MM|±HHMM| UTC]` (no zone =
/// UTC, as oslo writes it; ` UTC` is [`utc_text`]'s, which MiqEvent rows
/// were stored with before every event row was written in ISO 8601) to
/// milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut milli = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return None;
        }
        let first3: String = digits.chars().chain("000".chars()).take(3).collect();
        milli = first3.parse::<i64>().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" | " UTC" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = rest[1..].replace(':', "");
            if hm.len() != 4 || !hm.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (oh, om) = (hm[..2].parse::<i64>().ok()?, hm[2..].parse::<i64>().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some((civil_secs(y, mo, d, h, mi, sec)? - offset_s) * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_second_text_is_iso8601_less_the_millis() {
        for ms in [
            0,
            999,
            1_767_225_601_250,
            951_782_400_000,
            4_102_444_799_999,
        ] {
            let full = iso8601(ms);
            let (secs, _) = full.split_once('.').expect("millis");
            assert_eq!(iso8601_secs(ms), format!("{secs}Z"));
        }
        assert_eq!(iso8601_secs(1_767_225_601_250), "2026-01-01T00:00:01Z");
    }

    #[test]
    fn time_round_trips() {
        for ms in [0, 1_767_225_601_250, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_time(&iso8601(ms)), Some(ms), "{}", iso8601(ms));
            assert_eq!(parse_time(&oslo_time(ms)), Some(ms));
        }
        assert_eq!(iso8601(1_767_225_601_250), "2026-01-01T00:00:01.250Z");
        assert_eq!(oslo_time(1_767_225_601_250), "2026-01-01 00:00:01.250000");
        assert_eq!(
            parse_time("2026-01-01T02:00:01+02:00"),
            parse_time("2026-01-01T00:00:01Z")
        );
        assert_eq!(
            parse_time("2025-12-31T23:00:01-0100"),
            parse_time("2026-01-01T00:00:01Z")
        );
        assert_eq!(parse_time("2026-01-01T00:00:01+2"), None);
        assert_eq!(parse_time("2026-01-01T00x00y01Z"), None);
        assert_eq!(parse_time("nope"), None);
        assert_eq!(
            parse_time("2026-11-18 11:06:40 UTC"),
            Some(1_795_000_000_000)
        );
        assert_eq!(parse_time("2026-11-18 11:06:40 CET"), None);
    }

    #[test]
    fn utc_text_round_trips() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(
            parse_utc_text("2026-11-18 11:06:40 UTC"),
            Some(1_795_000_000.0)
        );
    }

    /// Times from input never overflow the calendar: years outside
    /// 0..=9999 and fields out of range are refused, not wrapped or
    /// panicked on (`ae_state_started` comes from a URI).
    #[test]
    fn times_out_of_range_are_refused() {
        for text in [
            "9223372036854775807-01-01 00:00:00 UTC",
            "-9223372036854775808-01-01 00:00:00 UTC",
            "10000-01-01 00:00:00 UTC",
            "2026-13-01 00:00:00 UTC",
            "2026-01-32 00:00:00 UTC",
            "2026-01-01 24:00:00 UTC",
            "2026-01-01 00:00:9223372036854775807 UTC",
            "2026-01-01 -1:00:00 UTC",
            "2026-01-01-01 00:00:00 UTC",
        ] {
            assert_eq!(parse_utc_text(text), None, "{text}");
        }
        assert_eq!(
            parse_utc_text("9999-12-31 23:59:59 UTC"),
            Some(253_402_300_799.0)
        );
        assert_eq!(parse_time("-999-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_time("9999-12-31T23:59:59.999Z"),
            Some(253_402_300_799_999)
        );
    }

    #[test]
    fn durations_are_bounded() {
        let secs = |t: &str| parse_duration_secs("ae_retry_interval", t);
        assert_eq!(secs("1.hour"), Ok(Duration::from_secs(3600)));
        assert_eq!(secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert_eq!(secs("315360000"), Ok(Duration::from_secs(315_360_000)));
        for (text, kind) in [
            ("inf", "finite"),
            ("-inf", "finite"),
            ("NaN", "finite"),
            ("1e300", "most allowed"),
            ("15000000000000000000", "most allowed"),
            ("315360001", "most allowed"),
            ("1e308.weeks", "finite"),
            ("-1", "negative"),
            ("soon", "not a duration"),
            ("", "not a duration"),
        ] {
            let e = secs(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.starts_with("ae_retry_interval: ") && e.contains(kind),
                "{text}: {e}"
            );
        }
        assert!(after_now(Duration::from_secs_f64(MAX_DURATION_SECS)).is_some());
    }

    /// The hand-written digits agree with `format!`'s padding at every
    /// width's edges, across years and before the epoch.
    #[test]
    fn texts_match_format() {
        for secs in [
            -1_i64,
            0,
            59,
            3_599,
            86_399,
            951_782_400,     // 2000-02-29
            4_102_444_799,   // 2099-12-31 23:59:59
            253_402_300_799, // 9999-12-31 23:59:59
            253_402_300_800, // 10000-01-01
            -62_167_219_201, // -0001-12-31 23:59:59
        ] {
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let r = secs.rem_euclid(86_400);
            let (hh, mm, ss) = (r / 3600, r % 3600 / 60, r % 60);
            let text = utc_text(secs);
            assert_eq!(
                text,
                format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
            );
            if YEARS.contains(&y) {
                assert_eq!(parse_utc_text(&text), Some(secs as f64), "{text}");
            }
            for milli in [0, 7, 250, 999] {
                let ms = secs * 1000 + milli;
                assert_eq!(
                    iso8601(ms),
                    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{milli:03}Z")
                );
                assert_eq!(
                    oslo_time(ms),
                    format!(
                        "{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{:06}",
                        milli * 1000
                    )
                );
            }
        }
        // Every day of a leap century and a plain one: the calendar and its
        // inverse agree.
        for day in -719_528..800_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), Some(day));
        }
    }
}
