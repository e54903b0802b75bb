//! `evm.execute("send_email", to, from, subject, body)`: ManageIQ's
//! `MiqAeServiceMethods.send_email`, through the SMTP relay of
//! `methods.smtp` in automate.yaml (`lettre`'s blocking SMTP client).
//!
//! As in ManageIQ, `from` nil or empty is the configured sender
//! (`methods.smtp.from`, ManageIQ's `smtp.from`); `to` is one address, a
//! comma-separated list or an array; a fifth argument may be a map with
//! ManageIQ's keywords `cc`, `bcc` and `content_type` (`text/html` for an
//! HTML body; plain text otherwise). It answers `true` once the relay has
//! accepted the mail; a relay that refuses it, or cannot be reached within
//! `timeout_s`, is an error naming the relay.

use super::{log_sent, settings, text_of, OutboundError, RhaiResult};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};
use rhai::{Dynamic, Map};
use std::time::Duration;

/// How the connection to the relay is protected (`methods.smtp.security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpSecurity {
    /// `starttls_auto`: STARTTLS when the relay offers it (ManageIQ's
    /// `enable_starttls_auto: true`), the certificate verified.
    #[default]
    StarttlsAuto,
    /// `starttls`: STARTTLS required.
    Starttls,
    /// `tls`: TLS from the first byte (port 465).
    Tls,
    /// `none`: plain text (a relay on the same host).
    None,
}

/// `methods.smtp`: the relay mail goes through.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// `host`.
    pub host: String,
    /// `port` (25).
    pub port: u16,
    /// `domain`: the name given in `EHLO` (the local host name when
    /// `None`).
    pub domain: Option<String>,
    /// `from`: the sender when a method gives none.
    pub from: String,
    /// `user_name` and `password`, for relays that want them.
    pub credentials: Option<(String, String)>,
    /// `authentication`: `plain` or `login` (`None`: what the relay offers).
    pub authentication: Option<String>,
    /// `security`.
    pub security: SmtpSecurity,
    /// `timeout_s`: each step of the SMTP conversation.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("domain", &self.domain)
            .field("from", &self.from)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "********")),
            )
            .field("authentication", &self.authentication)
            .field("security", &self.security)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SmtpSettings {
    /// A plain relay at `host:port` sending as `from`.
    pub fn new(host: impl Into<String>, port: u16, from: impl Into<String>) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port,
            domain: None,
            from: from.into(),
            credentials: None,
            authentication: None,
            security: SmtpSecurity::StarttlsAuto,
            timeout: Duration::from_secs(30),
        }
    }

    fn transport(&self) -> Result<SmtpTransport, OutboundError> {
        let tls = || {
            TlsParameters::new(self.host.clone())
                .map_err(|e| OutboundError::Email(format!("TLS for {}: {e}", self.host)))
        };
        let tls = match self.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::StarttlsAuto => Tls::Opportunistic(tls()?),
            SmtpSecurity::Starttls => Tls::Required(tls()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls()?),
        };
        let mut b = SmtpTransport::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(d) = &self.domain {
            b = b.hello_name(ClientId::Domain(d.clone()));
        }
        if let Some((u, p)) = &self.credentials {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        match self.authentication.as_deref() {
            Some("plain") => b = b.authentication(vec![Mechanism::Plain]),
            Some("login") => b = b.authentication(vec![Mechanism::Login]),
            _ => {}
        }
        Ok(b.build())
    }
}

/// Addresses from a string (comma-separated) or an array.
fn addresses(field: &str, d: Option<&Dynamic>) -> Result<Vec<Mailbox>, OutboundError> {
    let texts: Vec<String> = match d {
        None => Vec::new(),
        Some(d) if d.is_array() => d
            .clone()
            .into_array()
            .unwrap_or_default()
            .iter()
            .map(text_of)
            .collect(),
        Some(d) => text_of(d).split(',').map(str::to_string).collect(),
    };
    texts
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<Mailbox>().map_err(|e| {
                OutboundError::Email(format!("{field}: {t:?} is not an address ({e})"))
            })
        })
        .collect()
}

/// The mail of `send_email(to, from, subject, body[, opts])`, with the
/// configured sender for an empty `from`.
pub fn build_message(args: &[Dynamic], default_from: &str) -> Result<Message, OutboundError> {
    let to = addresses("to", args.first())?;
    if to.is_empty() {
        return Err(OutboundError::Email("no recipient (to)".into()));
    }
    let mut from = addresses("from", args.get(1))?;
    if from.is_empty() {
        from = addresses(
            "methods.smtp.from",
            Some(&Dynamic::from(default_from.to_string())),
        )?;
    }
    let from = from.into_iter().next().ok_or_else(|| {
        OutboundError::Email("no sender: give from, or set methods.smtp.from".into())
    })?;
    let subject = args.get(2).map(text_of).unwrap_or_default();
    let body = args.get(3).map(text_of).unwrap_or_default();
    let opts: Map = match args.get(4) {
        None => Map::new(),
        Some(d) if d.is_unit() => Map::new(),
        Some(d) => d.clone().try_cast::<Map>().ok_or_else(|| {
            OutboundError::Email("the fifth argument must be a map (cc, bcc, content_type)".into())
        })?,
    };
    let mut b = Message::builder().from(from).subject(subject);
    for m in to {
        b = b.to(m);
    }
    let mut html = false;
    for (k, v) in &opts {
        match k.as_str() {
            "cc" => {
                for m in addresses("cc", Some(v))? {
                    b = b.cc(m);
                }
            }
            "bcc" => {
                for m in addresses("bcc", Some(v))? {
                    b = b.bcc(m);
                }
            }
            "content_type" => html = text_of(v).to_ascii_lowercase().contains("html"),
            other => {
                return Err(OutboundError::Email(format!(
                    "unknown option {other} (cc, bcc, content_type)"
                )))
            }
        }
    }
    let ct = if html {
        ContentType::TEXT_HTML
    } else {
        ContentType::TEXT_PLAIN
    };
    b.header(ct)
        .body(body)
        .map_err(|e| OutboundError::Email(e.to_string()))
}

/// `send_email(to, from, subject, body[, opts])`.
pub(super) fn send_email(args: &[Dynamic]) -> RhaiResult<Dynamic> {
    let s = settings()?;
    if let Some(sandbox) = super::sandbox()? {
        // A simulation: the mail is built (its errors are the real run's)
        // and recorded, not sent.
        let default_from = s.smtp.as_ref().map_or("", |m| m.from.as_str());
        let msg = build_message(args, default_from)?;
        let env = msg.envelope();
        let to: Vec<String> = env.to().iter().map(ToString::to_string).collect();
        let from = env.from().map(ToString::to_string).unwrap_or_default();
        let subject = args.get(2).map(text_of).unwrap_or_default();
        let detail = format!("to [{}] from [{from}] subject [{subject}]", to.join(", "));
        log_sent(&format!("sandbox: send_email {detail} not sent"))?;
        sandbox.suppress("send_email", &detail);
        return Ok(Dynamic::from(true));
    }
    let smtp = s.smtp.as_ref().ok_or(OutboundError::NotConfigured {
        call: "send_email".into(),
        key: "methods.smtp (host, port, from)",
    })?;
    let msg = build_message(args, &smtp.from)?;
    let env = msg.envelope();
    let to: Vec<String> = env.to().iter().map(ToString::to_string).collect();
    let from = env.from().map(ToString::to_string).unwrap_or_default();
    let subject = args.get(2).map(text_of).unwrap_or_default();
    log_sent(&format!(
        "send_email to [{}] from [{from}] subject [{subject}] via {}:{}",
        to.join(", "),
        smtp.host,
        smtp.port
    ))?;
    smtp.transport()?.send(&msg).map_err(|e| {
        OutboundError::Email(format!(
            "the relay {}:{} did not take the mail: {e}",
            smtp.host, smtp.port
        ))
    })?;
    Ok(Dynamic::from(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Dynamic {
        Dynamic::from(t.to_string())
    }

    #[test]
    fn an_empty_from_is_the_configured_sender() {
        let m = build_message(
            &[
                s("a@example.com, b@example.com"),
                Dynamic::UNIT,
                s("Hi"),
                s("Body"),
            ],
            "cfme@example.com",
        )
        .map_err(|e| e.to_string());
        let m = m
            .as_ref()
            .map(|m| String::from_utf8_lossy(&m.formatted()).into_owned());
        let text = m.unwrap_or_else(|e| e.clone());
        assert!(text.contains("From: cfme@example.com"), "{text}");
        assert!(text.contains("To: a@example.com, b@example.com"), "{text}");
        assert!(text.contains("Subject: Hi"), "{text}");
    }

    #[test]
    fn bad_addresses_and_options_are_errors() {
        let e = build_message(&[s("not an address"), s(""), s(""), s("")], "x@example.com");
        assert!(
            e.as_ref()
                .is_err_and(|e| e.to_string().contains("to: \"not an address\"")),
            "{:?}",
            e.map(|_| ())
        );
        let e = build_message(&[s("")], "x@example.com").map(|_| ());
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("send_email: no recipient (to)".into())
        );
        let mut o = Map::new();
        o.insert("reply".into(), s("x"));
        let e = build_message(
            &[
                s("a@example.com"),
                s(""),
                s(""),
                s(""),
                Dynamic::from_map(o),
            ],
            "x@example.com",
        )
        .map(|_| ());
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("send_email: unknown option reply (cc, bcc, content_type)".into())
        );
    }
}
