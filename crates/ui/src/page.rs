//! What every page shares: the layout (title, navigation, the logout
//! form with the session's CSRF token, the assets' URLs), the error
//! pages, and turning a template into an HTML answer.

use crate::session::SessionInfo;
use askama::Template;
use axum::extract::Extension;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One entry of the main navigation.
#[derive(Debug, Clone, Copy)]
pub struct NavItem {
    /// What the link says.
    pub label: &'static str,
    /// Where it goes; a page is "current" when its path starts with it.
    pub href: &'static str,
}

/// The main navigation: only pages that exist. A new page adds its entry.
pub const NAV: &[NavItem] = &[
    NavItem {
        label: "Explorer",
        href: "/ui/explorer",
    },
    NavItem {
        label: "Simulation",
        href: "/ui/simulation",
    },
    NavItem {
        label: "Events",
        href: "/ui/events",
    },
    NavItem {
        label: "Requests",
        href: "/ui/requests",
    },
    NavItem {
        label: "Retries",
        href: "/ui/retries",
    },
    NavItem {
        label: "Domains",
        href: "/ui/domains",
    },
];

/// A navigation link as the layout shows it.
pub(crate) struct NavLink {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

/// The layout's values (`templates/base.html`).
pub(crate) struct Layout {
    pub title: String,
    pub nav: Vec<NavLink>,
    pub csrf: String,
    pub signed_in: bool,
    pub css: String,
    pub htmx: String,
    pub version: &'static str,
    /// The message a form's answer left for this page.
    pub flash: Option<crate::session::Flash>,
}

impl Layout {
    /// The layout of a page titled `title` at `path`, for `session`
    /// (`None`: the login page, no navigation).
    pub fn new(title: impl Into<String>, session: Option<&SessionInfo>, path: &str) -> Layout {
        Layout {
            title: title.into(),
            nav: if session.is_some() {
                NAV.iter()
                    .map(|n| NavLink {
                        label: n.label,
                        href: n.href,
                        current: path.starts_with(n.href),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            csrf: session.map(|s| s.csrf.to_string()).unwrap_or_default(),
            signed_in: session.is_some(),
            css: crate::assets::css_url(),
            htmx: crate::assets::htmx_url(),
            version: env!("CARGO_PKG_VERSION"),
            flash: None,
        }
    }

    /// The layout with the message a form's answer left for `session`
    /// (taken: it shows once).
    pub fn flashed(
        title: impl Into<String>,
        state: &crate::UiState,
        session: &SessionInfo,
        path: &str,
    ) -> Layout {
        let mut l = Layout::new(title, Some(session), path);
        l.flash = state.sessions().take_flash(&session.id);
        l
    }
}

/// `template` rendered as an HTML answer with `status`.
pub(crate) fn html<T: Template>(template: &T, status: StatusCode) -> Response {
    match template.render() {
        Ok(body) => {
            let mut res = (status, body).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res
        }
        Err(e) => crate::render_failed(e),
    }
}

/// An error page (`templates/error.html`).
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
}

/// An error page answer: `status`, a heading and what to do.
pub(crate) fn error_page(
    status: StatusCode,
    session: Option<&SessionInfo>,
    heading: impl Into<String>,
    message: impl Into<String>,
) -> Response {
    let heading = heading.into();
    html(
        &ErrorPage {
            layout: Layout::new(heading.clone(), session, ""),
            heading,
            message: message.into(),
        },
        status,
    )
}

/// Any other `/ui/...` path: a 404 page.
pub(crate) async fn not_found(
    Extension(session): Extension<SessionInfo>,
    uri: axum::http::Uri,
) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        Some(&session),
        "Page not found",
        format!("There is no page {}.", uri.path()),
    )
}

/// A 303 to `location` (a form's answer).
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// A 303 to `location` leaving `flash` for the page it shows.
pub(crate) fn back_with(
    state: &crate::UiState,
    session: &SessionInfo,
    location: &str,
    flash: crate::session::Flash,
) -> Response {
    state.sessions().set_flash(&session.id, flash);
    see_other(location)
}

/// `t` as ISO 8601 UTC to the second (`2026-12-06T19:30:00Z`).
pub(crate) fn iso_time(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    automate_core::time::iso8601_secs(ms)
}

/// `s` escaped for HTML, appended to `out`.
pub fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `s` percent-encoded for a URL query value or path segment (everything
/// but unreserved characters; `/` kept when `keep_slash`).
pub fn url_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(s: &str) -> String {
        let mut out = String::new();
        escape_into(s, &mut out);
        out
    }

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_encode("/A b/.missing?", true), "/A%20b/.missing%3F");
        assert_eq!(url_encode("/a", false), "%2Fa");
    }
}
