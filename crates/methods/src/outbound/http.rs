//! `evm.http`: REST calls from a method to another system, allowed only to
//! the hosts of `methods.http.allow` in automate.yaml.
//!
//! ```rhai
//! let r = evm.http.post("https://cmdb.example.com/api/cis", #{name: vm.name},
//!                       #{auth: #{bearer: token}, headers: #{"X-Trace": "1"}});
//! if r.status == 201 { evm.log("info", `CI ${r.json.id}`) }
//! ```
//!
//! * `get(url)`, `get(url, opts)`, `delete(url)`, `delete(url, opts)`,
//!   `post(url, body)`, `post(url, body, opts)`, `put(...)` likewise. A map
//!   or array body is sent as JSON (`Content-Type: application/json`), a
//!   string as is, `()` as no body.
//! * `opts`: `headers` (a map), `auth` (`#{user: .., password: ..}` for
//!   basic, `#{bearer: token}`), `timeout` (seconds, at most the
//!   configured one).
//! * The answer: `#{status, headers, body, json}`: `headers` lower-cased,
//!   `body` the text, `json` the parsed body when it is JSON, else `()`. A
//!   4xx or 5xx status is an answer, not an error.
//!
//! Refused with an error naming the URL: a scheme other than `http` and
//! `https`, a host off the allow-list, no answer within the timeout (the
//! configured one, and never past the method's own deadline), an answer
//! larger than `max_response_bytes`, a certificate that does not verify
//! (rustls against the webpki roots; there is no way to turn verification
//! off). Redirects are not followed (a 3xx is returned as is), so a
//! redirect cannot lead off the allow-list.

use super::{log_sent, settings, text_of, OutboundError, RhaiResult};
use crate::evm::{from_dynamic, to_dynamic, with_frame, Evm};
use automate_engine::datatype::{from_json, to_json};
use rhai::{Dynamic, ImmutableString, Map};
use std::time::{Duration, Instant};

/// `methods.http`: where `evm.http` may go and how much it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `allow`: `host`, `host:port`, `*.domain` or `*.domain:port`; a host
    /// without a port may be reached on any port. Empty: every call is
    /// refused.
    pub allow: Vec<String>,
    /// `timeout_s`: the whole call (connect, send, answer).
    pub timeout: Duration,
    /// `max_response_bytes`: the largest answer body read.
    pub max_response_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            allow: Vec::new(),
            timeout: Duration::from_secs(30),
            max_response_bytes: 10 << 20,
        }
    }
}

/// The `evm.http` object.
#[derive(Debug, Clone, Copy)]
pub struct EvmHttp;

/// Whether `host:port` is on `allow`.
pub fn allowed(allow: &[String], host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allow.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        // `[::1]:8080`, `host:8080`, `host`, `*.domain`.
        let (pat, want_port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && p.parse::<u16>().is_ok() && !h.is_empty() => {
                (h.to_string(), p.parse::<u16>().ok())
            }
            _ => (entry.clone(), None),
        };
        let pat = pat.trim_start_matches('[').trim_end_matches(']');
        if want_port.is_some_and(|p| p != port) {
            return false;
        }
        match pat.strip_prefix("*.") {
            Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
            None => host == pat,
        }
    })
}

/// The scheme, host and port of `url`, checked against the settings.
fn check_url(s: &HttpSettings, method: &str, url: &str) -> Result<(), OutboundError> {
    let err = |message: String| OutboundError::Http {
        method: method.into(),
        url: url.into(),
        message,
    };
    let uri: ureq::http::Uri = url.parse().map_err(|e| err(format!("not a URL ({e})")))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(err("only http and https URLs are allowed".into())),
    };
    let host = uri
        .host()
        .ok_or_else(|| err("the URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(default_port);
    if !allowed(&s.allow, host, port) {
        return Err(OutboundError::NotAllowed {
            method: method.into(),
            url: url.into(),
            host: format!("{host}:{port}"),
        });
    }
    Ok(())
}

/// The options of one call.
#[derive(Default)]
struct Opts {
    headers: Vec<(String, String)>,
    basic: Option<(String, String)>,
    bearer: Option<String>,
    timeout: Option<Duration>,
}

fn opts_of(call: &str, opts: Option<Map>) -> Result<Opts, OutboundError> {
    let mut out = Opts::default();
    let Some(opts) = opts else {
        return Ok(out);
    };
    let bad = |message: String| OutboundError::Argument {
        call: call.into(),
        message,
    };
    for (k, v) in opts {
        match k.as_str() {
            "headers" => {
                let m = v
                    .try_cast::<Map>()
                    .ok_or_else(|| bad("headers must be a map".into()))?;
                for (name, value) in m {
                    out.headers.push((name.to_string(), text_of(&value)));
                }
            }
            "auth" => {
                let m = v.try_cast::<Map>().ok_or_else(|| {
                    bad("auth must be a map: #{user: .., password: ..} or #{bearer: ..}".into())
                })?;
                if let Some(t) = m.get("bearer") {
                    out.bearer = Some(text_of(t));
                } else if let Some(u) = m.get("user").or_else(|| m.get("userid")) {
                    let p = m.get("password").map(text_of).unwrap_or_default();
                    out.basic = Some((text_of(u), p));
                } else {
                    return Err(bad("auth must hold bearer, or user and password".into()));
                }
            }
            "timeout" => {
                let secs = v
                    .as_float()
                    .ok()
                    .or_else(|| v.as_int().ok().map(|i| i as f64))
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| bad("timeout must be a positive number of seconds".into()))?;
                out.timeout = Duration::try_from_secs_f64(secs).ok();
            }
            other => {
                return Err(bad(format!(
                    "unknown option {other} (headers, auth, timeout)"
                )))
            }
        }
    }
    Ok(out)
}

/// Base64 of `user:password` for basic auth.
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A body as bytes and its content type.
fn body_of(body: Dynamic) -> (Option<Vec<u8>>, Option<&'static str>) {
    if body.is_unit() {
        return (None, None);
    }
    if body.is_string() {
        return (
            Some(text_of(&body).into_bytes()),
            Some("text/plain; charset=utf-8"),
        );
    }
    let json = to_json(&from_dynamic(body));
    (
        Some(json.to_string().into_bytes()),
        Some("application/json"),
    )
}

/// One call: checked, sent, answered as a map.
pub(crate) fn call(
    method: &str,
    url: &str,
    body: Dynamic,
    opts: Option<Map>,
) -> RhaiResult<Dynamic> {
    let call = format!("evm.http.{}", method.to_ascii_lowercase());
    let s = settings()?;
    check_url(&s.http, method, url)?;
    let opts = opts_of(&call, opts)?;
    // The configured timeout, a shorter one asked for, and never past the
    // method's own deadline.
    let mut timeout = s.http.timeout;
    if let Some(t) = opts.timeout {
        timeout = timeout.min(t);
    }
    if let Some(Some(deadline)) = with_frame(|f| f.deadline) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OutboundError::Http {
                method: method.into(),
                url: url.into(),
                message: "the method's time is up".into(),
            }
            .into());
        }
        timeout = timeout.min(left);
    }
    let (bytes, content_type) = body_of(body);
    if let Some(sandbox) = super::sandbox()? {
        // A simulation: recorded, not sent; answered with status 0.
        let detail = format!(
            "{method} {url} ({} bytes)",
            bytes.as_ref().map_or(0, Vec::len)
        );
        log_sent(&format!("sandbox: HTTP {detail} not sent"))?;
        sandbox.suppress("evm.http", &detail);
        return Ok(Answer {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        }
        .into_dynamic());
    }
    log_sent(&format!(
        "HTTP {method} {url} ({} bytes)",
        bytes.as_ref().map_or(0, Vec::len)
    ))?;
    let answer = send(
        method,
        url,
        &opts,
        bytes,
        content_type,
        timeout,
        s.http.max_response_bytes,
    )
    .map_err(|message| OutboundError::Http {
        method: method.into(),
        url: url.into(),
        message,
    })?;
    log_sent(&format!(
        "HTTP {method} {url} answered {} ({} bytes)",
        answer.status,
        answer.body.len()
    ))?;
    Ok(answer.into_dynamic())
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn into_dynamic(self) -> Dynamic {
        let mut m = Map::new();
        m.insert("status".into(), Dynamic::from(i64::from(self.status)));
        let mut h = Map::new();
        for (k, v) in self.headers {
            h.insert(k.into(), Dynamic::from(v));
        }
        m.insert("headers".into(), Dynamic::from_map(h));
        let text = String::from_utf8_lossy(&self.body).into_owned();
        let json = serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| to_dynamic(&from_json(&v)))
            .unwrap_or(Dynamic::UNIT);
        m.insert("body".into(), Dynamic::from(text));
        m.insert("json".into(), json);
        Dynamic::from_map(m)
    }
}

fn send(
    method: &str,
    url: &str,
    opts: &Opts,
    body: Option<Vec<u8>>,
    content_type: Option<&str>,
    timeout: Duration,
    max_bytes: u64,
) -> Result<Answer, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Accept", "application/json");
    let mut has_type = false;
    for (k, v) in &opts.headers {
        has_type |= k.eq_ignore_ascii_case("content-type");
        req = req.header(k.as_str(), v.as_str());
    }
    if let (false, Some(ct)) = (has_type, content_type) {
        req = req.header("Content-Type", ct);
    }
    if let Some(t) = &opts.bearer {
        req = req.header("Authorization", format!("Bearer {t}"));
    } else if let Some((u, p)) = &opts.basic {
        req = req.header(
            "Authorization",
            format!("Basic {}", base64(format!("{u}:{p}").as_bytes())),
        );
    }
    let req = req
        .body(body.unwrap_or_default())
        .map_err(|e| format!("bad request ({e})"))?;
    let mut resp = agent.run(req).map_err(|e| describe(&e, timeout))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(max_bytes)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => format!(
                "the answer is larger than methods.http.max_response_bytes ({max_bytes} bytes): refused"
            ),
            e => describe(&e, timeout),
        })?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn describe(e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!(
            "no answer within {:.1}s (methods.http.timeout_s, or the method's own time left): timed out",
            timeout.as_secs_f64()
        ),
        ureq::Error::BodyExceedsLimit(n) => format!("the answer is larger than {n} bytes: refused"),
        e => e.to_string(),
    }
}

pub(super) fn register(engine: &mut rhai::Engine) {
    engine.register_type_with_name::<EvmHttp>("EvmHttp");
    engine.register_get("http", |_: &mut Evm| EvmHttp);
    for method in ["GET", "DELETE"] {
        let name = method.to_ascii_lowercase();
        engine.register_fn(&name, move |_: &mut EvmHttp, url: ImmutableString| {
            call(method, &url, Dynamic::UNIT, None)
        });
        engine.register_fn(
            &name,
            move |_: &mut EvmHttp, url: ImmutableString, opts: Map| {
                call(method, &url, Dynamic::UNIT, Some(opts))
            },
        );
    }
    for method in ["POST", "PUT", "PATCH"] {
        let name = method.to_ascii_lowercase();
        engine.register_fn(
            &name,
            move |_: &mut EvmHttp, url: ImmutableString, body: Dynamic| {
                call(method, &url, body, None)
            },
        );
        engine.register_fn(
            &name,
            move |_: &mut EvmHttp, url: ImmutableString, body: Dynamic, opts: Map| {
                call(method, &url, body, Some(opts))
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_allow_list_matches_hosts_ports_and_domains() {
        let a = allow(&[
            "api.example.com",
            "127.0.0.1:8080",
            "*.corp.example",
            "[::1]:9",
        ]);
        assert!(allowed(&a, "api.example.com", 443));
        assert!(allowed(&a, "API.example.com.", 8443));
        assert!(allowed(&a, "127.0.0.1", 8080));
        assert!(!allowed(&a, "127.0.0.1", 8081));
        assert!(allowed(&a, "cmdb.corp.example", 443));
        assert!(!allowed(&a, "corp.example", 443));
        assert!(!allowed(&a, "evilcorp.example", 443));
        assert!(allowed(&a, "::1", 9));
        assert!(!allowed(&a, "example.com", 443));
        assert!(!allowed(&[], "api.example.com", 443));
    }

    #[test]
    fn urls_are_checked_before_anything_is_sent() {
        let s = HttpSettings {
            allow: allow(&["ok.example"]),
            ..HttpSettings::default()
        };
        assert!(check_url(&s, "GET", "https://ok.example/x").is_ok());
        let off = check_url(&s, "GET", "https://user@evil.example/x").unwrap_err();
        assert_eq!(
            off.to_string(),
            "evm.http: evil.example:443 is not on methods.http.allow in automate.yaml: refused GET https://user@evil.example/x"
        );
        let scheme = check_url(&s, "GET", "ftp://ok.example/x").unwrap_err();
        assert!(
            scheme.to_string().contains("only http and https"),
            "{scheme}"
        );
        assert!(check_url(&s, "GET", "not a url").is_err());
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn options_are_checked() {
        let mut m = Map::new();
        m.insert("colour".into(), Dynamic::from(1_i64));
        let e = opts_of("evm.http.get", Some(m))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("evm.http.get: unknown option colour (headers, auth, timeout)")
        );
    }
}
