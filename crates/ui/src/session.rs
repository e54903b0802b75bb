//! The UI's server-side sessions: a table from a random session id (the
//! cookie's value, 256 bits from the OS) to the session's CSRF token and
//! times. A session ends at logout, after [`SessionLimits::idle`] without
//! a request, or [`SessionLimits::max_age`] after sign-in; the table holds
//! at most [`SessionLimits::max_sessions`] (the oldest goes first). Sessions
//! live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "automate_session";

/// How long sessions live and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session not used for this long ends (ManageIQ's `session_timeout`
    /// default: one hour).
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub max_age: Duration,
    /// The most sessions held; signing in past it ends the oldest.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::from_secs(3600),
            max_age: Duration::from_secs(12 * 3600),
            max_sessions: 1024,
        }
    }
}

/// A live session as a request sees it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session id (the cookie's value).
    pub id: Arc<str>,
    /// The token every state-changing request of this session carries.
    pub csrf: Arc<str>,
}

#[derive(Debug)]
struct Session {
    csrf: Arc<str>,
    created: Instant,
    last_seen: Instant,
    /// The message the next page shows once (after a form's 303).
    flash: Option<Flash>,
}

/// A message shown once, on the page a form's answer leads to: what an
/// action did, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Whether it reports a failure (shown as an alert).
    pub error: bool,
    /// What happened.
    pub text: String,
}

impl Flash {
    /// What an action did.
    pub fn done(text: impl Into<String>) -> Flash {
        Flash {
            error: false,
            text: text.into(),
        }
    }

    /// Why an action did nothing.
    pub fn failed(text: impl Into<String>) -> Flash {
        Flash {
            error: true,
            text: text.into(),
        }
    }
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    limits: SessionLimits,
    map: Mutex<HashMap<Arc<str>, Session>>,
}

/// The OS random source failed (no session can be made).
#[derive(Debug, thiserror::Error)]
#[error("the OS random source failed: {0}")]
pub struct RandomError(String);

/// `bytes` random bytes from the OS, as lower-case hex.
pub fn random_hex(bytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    /// An empty table with these limits.
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The limits it was made with.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.limits.idle
            && now.duration_since(s.created) < self.limits.max_age
    }

    /// Opens a session: a new random id and CSRF token. Expired sessions
    /// are dropped first; a full table drops its oldest session.
    pub fn create(&self) -> Result<SessionInfo, RandomError> {
        let id: Arc<str> = Arc::from(random_hex(32)?);
        let csrf: Arc<str> = Arc::from(random_hex(32)?);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| self.live(s, now));
        while map.len() >= self.limits.max_sessions.max(1) {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    map.remove(&k);
                }
                None => break,
            }
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
                flash: None,
            },
        );
        Ok(SessionInfo { id, csrf })
    }

    /// The live session `id` names (its idle time restarted), or `None`
    /// (unknown or expired: an expired one is removed).
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let live = map.get(id).map(|s| self.live(s, now))?;
        if !live {
            map.remove(id);
            return None;
        }
        let (key, s) = map.get_key_value(id)?;
        let info = SessionInfo {
            id: key.clone(),
            csrf: s.csrf.clone(),
        };
        if let Some(s) = map.get_mut(id) {
            s.last_seen = now;
        }
        Some(info)
    }

    /// Leaves `flash` for the session's next page.
    pub fn set_flash(&self, id: &str, flash: Flash) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(id) {
            s.flash = Some(flash);
        }
    }

    /// The message left for this page, taken (shown once).
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get_mut(id).and_then(|s| s.flash.take())
    }

    /// Ends the session `id` (logout).
    pub fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }

    /// How many sessions are held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in the request's `Cookie` headers, if any.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

/// The `Set-Cookie` value opening `id`'s session: HttpOnly,
/// SameSite=Strict, Path=/ui, `Secure` when `secure`; no Max-Age (it ends
/// with the browser, or earlier on the server).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_until_removed_or_expired() {
        let s = Sessions::new(SessionLimits::default());
        let a = s.create().unwrap();
        assert_eq!(a.id.len(), 64);
        assert_ne!(a.id, a.csrf);
        assert_eq!(s.get(&a.id).map(|i| i.csrf), Some(a.csrf.clone()));
        assert!(s.get("nope").is_none());
        s.remove(&a.id);
        assert!(s.get(&a.id).is_none());

        let short = Sessions::new(SessionLimits {
            idle: Duration::ZERO,
            ..SessionLimits::default()
        });
        let b = short.create().unwrap();
        assert!(
            short.get(&b.id).is_none(),
            "an idle-expired session is gone"
        );
        assert!(short.is_empty());
    }

    #[test]
    fn a_full_table_drops_its_oldest_session() {
        let s = Sessions::new(SessionLimits {
            max_sessions: 2,
            ..SessionLimits::default()
        });
        let a = s.create().unwrap();
        let b = s.create().unwrap();
        let c = s.create().unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.get(&a.id).is_none());
        assert!(s.get(&b.id).is_some() && s.get(&c.id).is_some());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_strict() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; automate_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        let set = set_cookie("abc", true);
        for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
