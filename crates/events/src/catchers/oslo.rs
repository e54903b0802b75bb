//! OpenStack `oslo.messaging` notifications (what Nova, Cinder, Neutron ...
//! publish on the `notifications.info` topic) as provider events.
//!
//! Two wire formats: messaging 2.0 wraps the notification as a JSON string,
//! `{"oslo.version": "2.0", "oslo.message": "{\"event_type\": ...}"}`;
//! 1.0 sends the notification object itself. The notification has
//! `event_type`, `payload`, `publisher_id` (`compute.<host>`), `timestamp`
//! (`2026-01-01 00:00:01.250000`, UTC), `message_id` and `priority`.
//!
//! Mapping (ManageIQ's OpenStack event parser): `event_type` as is,
//! `payload.instance_id` → `vm_ems_ref`, `payload.display_name` →
//! `vm_name`, `payload.host` (else the host part of `publisher_id`) →
//! `host_ems_ref` and `host_name`, `timestamp` → ISO 8601 UTC (epoch
//! seconds accepted; a text that is not a time refuses the notification,
//! never stored as written); the whole
//! notification (unwrapped) is `full_data`, so `full_data.message_id` stays
//! available ([`message_id`]).

use crate::ProviderEvent;
use automate_core::time;
use serde_json::Value;

/// Why a message is not an oslo notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsloError {
    /// The bytes are not JSON (serde_json's message).
    #[error("not JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("not a JSON object")]
    NotObject,
    /// `oslo.message` is not a string, or its text is not a JSON object.
    #[error("oslo.message is not a JSON string holding a JSON object: {0}")]
    Envelope(String),
    /// `oslo.version` is given and is not 2.x (the version as written).
    #[error("unsupported oslo.version {0}")]
    Version(String),
    /// The notification has no `event_type`, or a blank one.
    #[error("missing or empty event_type")]
    NoEventType,
    /// `timestamp` is neither a time nor epoch seconds (as written).
    #[error("field timestamp: {0:?} is not a time (use ISO 8601, e.g. 2026-01-01T00:00:01Z, or epoch seconds)")]
    Timestamp(String),
}

/// Parses raw message bytes (a 2.0 envelope or a 1.0 notification).
pub fn parse_bytes(data: &[u8]) -> Result<ProviderEvent, OsloError> {
    let v: Value = serde_json::from_slice(data).map_err(|e| OsloError::Json(e.to_string()))?;
    parse_value(v)
}

/// Whether a JSON object looks like an oslo message rather than a plain
/// `ProviderEvent`: it has an `oslo.message` envelope or a `payload`.
pub fn looks_like_oslo(v: &Value) -> bool {
    v.get("oslo.message").is_some() || v.get("payload").is_some()
}

/// Parses a decoded message (a 2.0 envelope or a 1.0 notification).
pub fn parse_value(v: Value) -> Result<ProviderEvent, OsloError> {
    let Value::Object(map) = v else {
        return Err(OsloError::NotObject);
    };
    let note = match map.get("oslo.message") {
        Some(msg) => {
            if let Some(ver) = map.get("oslo.version") {
                let ver = ver.as_str().map_or_else(|| ver.to_string(), str::to_string);
                if !ver.starts_with("2.") {
                    return Err(OsloError::Version(ver));
                }
            }
            let text = msg
                .as_str()
                .ok_or_else(|| OsloError::Envelope("not a string".into()))?;
            let inner: Value =
                serde_json::from_str(text).map_err(|e| OsloError::Envelope(e.to_string()))?;
            if !inner.is_object() {
                return Err(OsloError::Envelope("not an object".into()));
            }
            inner
        }
        None => Value::Object(map),
    };
    from_notification(note)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Maps an unwrapped notification object.
pub fn from_notification(note: Value) -> Result<ProviderEvent, OsloError> {
    let event_type = str_at(&note, "event_type")
        .ok_or(OsloError::NoEventType)?
        .to_string();
    let timestamp = match note.get("timestamp") {
        None | Some(Value::Null) => time::iso8601(time::now_ms()),
        // Never stored as given: a text that is not a time refuses the
        // notification (the event stream has one timestamp format).
        Some(Value::String(s)) => time::parse_time(s)
            .map(time::iso8601)
            .ok_or_else(|| OsloError::Timestamp(s.clone()))?,
        // Seconds since the epoch.
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if secs.is_finite() => time::iso8601((secs * 1000.0).round() as i64),
            _ => return Err(OsloError::Timestamp(n.to_string())),
        },
        Some(other) => return Err(OsloError::Timestamp(other.to_string())),
    };
    let payload = note.get("payload").cloned().unwrap_or(Value::Null);
    let host = str_at(&payload, "host").map(str::to_string).or_else(|| {
        str_at(&note, "publisher_id")
            .and_then(|p| p.split_once('.'))
            .map(|(_, h)| h.to_string())
            .filter(|h| !h.is_empty())
    });
    Ok(ProviderEvent {
        event_type,
        timestamp,
        chain_id: None,
        vm_ems_ref: str_at(&payload, "instance_id").map(str::to_string),
        vm_name: str_at(&payload, "display_name").map(str::to_string),
        host_ems_ref: host.clone(),
        host_name: host,
        full_data: note,
    })
}

/// The notification's `message_id` (kept in `full_data`).
pub fn message_id(ev: &ProviderEvent) -> Option<&str> {
    ev.full_data.get("message_id").and_then(Value::as_str)
}

/// Wraps a notification in a messaging 2.0 envelope (what the simulator and
/// tests publish).
pub fn envelope(note: &Value) -> Value {
    serde_json::json!({
        "oslo.version": "2.0",
        "oslo.message": note.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn note() -> Value {
        json!({
            "event_type": "compute.instance.power_off.end",
            "payload": {"instance_id": "abc", "display_name": "db-01", "state": "stopped", "host": "compute-1"},
            "publisher_id": "compute.compute-1",
            "timestamp": "2026-01-01 00:00:01.250000",
            "message_id": "m-1",
            "priority": "INFO"
        })
    }

    #[test]
    fn parses_both_versions() {
        let a = parse_value(note()).unwrap();
        let b = parse_bytes(envelope(&note()).to_string().as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.event_type, "compute.instance.power_off.end");
        assert_eq!(a.timestamp, "2026-01-01T00:00:01.250Z");
        assert_eq!(a.vm_ems_ref.as_deref(), Some("abc"));
        assert_eq!(a.vm_name.as_deref(), Some("db-01"));
        assert_eq!(a.host_ems_ref.as_deref(), Some("compute-1"));
        assert_eq!(message_id(&a), Some("m-1"));
    }

    #[test]
    fn host_falls_back_to_publisher() {
        let mut n = note();
        n["payload"].as_object_mut().unwrap().remove("host");
        let e = parse_value(n).unwrap();
        assert_eq!(e.host_ems_ref.as_deref(), Some("compute-1"));
    }

    #[test]
    fn timestamps_are_normalised_or_refused() {
        let mut n = note();
        n["timestamp"] = json!(1_767_225_601.25);
        assert_eq!(
            parse_value(n.clone()).unwrap().timestamp,
            "2026-01-01T00:00:01.250Z"
        );
        n["timestamp"] = json!("yesterday");
        assert!(parse_value(n.clone()).is_err(), "never stored as given");
        n["timestamp"] = json!(true);
        assert!(matches!(parse_value(n), Err(OsloError::Timestamp(_))));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse_bytes(b"{"), Err(OsloError::Json(_))));
        assert_eq!(parse_bytes(b"[]"), Err(OsloError::NotObject));
        assert!(matches!(
            parse_value(json!({"oslo.message": 5})),
            Err(OsloError::Envelope(_))
        ));
        assert!(matches!(
            parse_value(json!({"oslo.version": "3.0", "oslo.message": "{}"})),
            Err(OsloError::Version(_))
        ));
        assert_eq!(
            parse_value(json!({"payload": {}})),
            Err(OsloError::NoEventType)
        );
    }
}
