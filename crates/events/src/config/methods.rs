//! `methods:` of automate.yaml: what a method's outbound actions may do
//! (`docs/configuration.md`, "methods"): the SMTP relay of `send_email`
//! and the hosts, timeout and answer size of `evm.http`. The settings are
//! handed to the Rhai runner as `automate_methods::outbound::Outbound` by
//! the command that composes the service (this crate does not name the
//! methods crate).
//!
//! ```yaml
//! methods:
//!   smtp: {host: mail.example.com, port: 25, from: cfme@example.com}
//!   http:
//!     allow: [cmdb.example.com, "*.corp.example", "127.0.0.1:8080"]
//!     timeout_s: 10
//!     max_response_bytes: 1MiB
//! ```

use super::parse_size;
use serde::{Deserialize, Serialize};

/// `methods:`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MethodsConfig {
    /// `smtp`: the relay of `send_email`; absent: `send_email` is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
    /// `http`: where `evm.http` may go.
    pub http: HttpConfig,
}

/// `methods.smtp`: ManageIQ's `smtp:` settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `host`: the relay.
    pub host: String,
    /// `port`: 25 unless given.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `domain`: the name said in `EHLO` (the host's name unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `from`: the sender when a method gives none (ManageIQ's
    /// `smtp.from`).
    pub from: String,
    /// `user_name`, for relays that want a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// `password`, with `user_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `authentication`: `plain`, `login` or `none` (what the relay
    /// offers when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<String>,
    /// `security`: `starttls_auto` (default: STARTTLS when offered),
    /// `starttls` (required), `tls` (from the first byte) or `none`.
    #[serde(default = "default_security")]
    pub security: String,
    /// `timeout_s`: each step of the conversation with the relay.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_s: u64,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("user_name", &self.user_name)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

fn default_smtp_port() -> u16 {
    25
}

fn default_security() -> String {
    "starttls_auto".into()
}

fn default_smtp_timeout() -> u64 {
    30
}

/// `methods.http`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `allow`: `host`, `host:port`, `*.domain`; empty (the default):
    /// `evm.http` reaches nothing.
    pub allow: Vec<String>,
    /// `timeout_s`: a whole call, 1 to 600.
    pub timeout_s: u64,
    /// `max_response_bytes`: the largest answer read (`1MiB`, or bytes).
    #[serde(with = "size_text")]
    pub max_response_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow: Vec::new(),
            timeout_s: 30,
            max_response_bytes: 10 << 20,
        }
    }
}

/// A size as a number of bytes or a text such as `10MiB`.
mod size_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        T(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::T(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl MethodsConfig {
    /// `methods.KEY: message` texts of what is wrong.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = &self.smtp {
            if s.host.trim().is_empty() {
                out.push("methods.smtp.host: must not be empty".into());
            }
            if s.port == 0 {
                out.push("methods.smtp.port: must be 1 to 65535".into());
            }
            if !s.from.contains('@') {
                out.push(format!("methods.smtp.from: {:?} is not an address", s.from));
            }
            if !matches!(
                s.security.as_str(),
                "starttls_auto" | "starttls" | "tls" | "none"
            ) {
                out.push(format!(
                    "methods.smtp.security: {:?} is not one of starttls_auto, starttls, tls, none",
                    s.security
                ));
            }
            if let Some(a) = &s.authentication {
                if !matches!(a.as_str(), "plain" | "login" | "none") {
                    out.push(format!(
                        "methods.smtp.authentication: {a:?} is not one of plain, login, none"
                    ));
                }
            }
            if s.password.is_some() && s.user_name.is_none() {
                out.push("methods.smtp.password: given without user_name".into());
            }
            if !(1..=600).contains(&s.timeout_s) {
                out.push("methods.smtp.timeout_s: must be 1 to 600".into());
            }
        }
        for (i, a) in self.http.allow.iter().enumerate() {
            let t = a.trim();
            if t.is_empty() || t.contains('/') || t.contains(char::is_whitespace) || t == "*" {
                out.push(format!(
                    "methods.http.allow[{i}]: {a:?} is not a host, host:port or *.domain"
                ));
            }
        }
        if !(1..=600).contains(&self.http.timeout_s) {
            out.push("methods.http.timeout_s: must be 1 to 600".into());
        }
        if self.http.max_response_bytes == 0 {
            out.push("methods.http.max_response_bytes: must be more than 0".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_settings_are_read_and_checked() {
        let yaml = "smtp: {host: mail.example.com, from: cfme@example.com}\nhttp: {allow: [api.example.com, \"127.0.0.1:8080\"], timeout_s: 5, max_response_bytes: 1MiB}\n";
        let m: MethodsConfig = serde_saphyr::from_str(yaml).unwrap_or_default();
        assert_eq!(m.smtp.as_ref().map(|s| s.port), Some(25));
        assert_eq!(m.http.max_response_bytes, 1 << 20);
        assert_eq!(m.http.timeout_s, 5);
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        let bad = MethodsConfig {
            smtp: Some(SmtpConfig {
                host: String::new(),
                port: 25,
                domain: None,
                from: "nobody".into(),
                user_name: None,
                password: Some("x".into()),
                authentication: None,
                security: "maybe".into(),
                timeout_s: 30,
            }),
            http: HttpConfig {
                allow: vec!["http://x/".into()],
                timeout_s: 0,
                max_response_bytes: 0,
            },
        };
        let p = bad.problems().join("; ");
        for field in [
            "methods.smtp.host",
            "methods.smtp.from",
            "methods.smtp.password",
            "methods.smtp.security",
            "methods.http.allow[0]",
            "methods.http.timeout_s",
            "methods.http.max_response_bytes",
        ] {
            assert!(p.contains(field), "{field} in {p}");
        }
    }
}
