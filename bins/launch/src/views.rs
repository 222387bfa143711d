//! The HTML pages (askama templates in `templates/`, auto-escaped), their security headers, and
//! the static files they use.

use askama::Template;
use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use visitbridge_visit::{PanelView, Presence};

/// The policy of every page: our own scripts and styles only, forms post to us only.
pub(crate) const DEFAULT_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'";

/// Renders `page` with `status`. The headers every page carries — no caching (pages hold
/// session-bound links), no referrer (launch URLs carry one-time values), no sniffing, and
/// [`DEFAULT_CSP`] — are added by the router's [`visitbridge_web::SecurityHeaders`] layer.
pub(crate) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response()
        }
    }
}

/// Gives a page the content security policy `csp` in place of [`DEFAULT_CSP`] (the router's
/// layer adds the other page headers).
pub(crate) fn page_headers(headers: &mut HeaderMap, csp: &str) {
    visitbridge_web::set_csp(headers, csp);
}

/// An error page.
#[derive(Clone, Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) title: String,
    pub(crate) message: String,
    /// The request id, for internal errors.
    pub(crate) reference: Option<String>,
}

/// An auto-submitting form that POSTs the authorization request to the EHR (Epic's preference).
#[derive(Template)]
#[template(path = "authorize.html")]
pub(crate) struct AuthorizePost {
    pub(crate) action: String,
    pub(crate) fields: Vec<(String, String)>,
}

/// The clinician's visit page.
#[derive(Template)]
#[template(path = "visit.html")]
pub(crate) struct VisitPage {
    pub(crate) join_web_url: String,
    pub(crate) teams_app_url: Option<String>,
    pub(crate) panel: PanelView,
    pub(crate) events_url: String,
    pub(crate) link_action: String,
    pub(crate) csrf: String,
    pub(crate) link_ttl: String,
}

impl VisitPage {
    fn presence_class(&self, presence: &Presence) -> &'static str {
        match presence {
            Presence::Lobby => "lobby",
            Presence::Connected => "connected",
            Presence::Disconnected => "disconnected",
        }
    }

    fn presence_label(&self, presence: &Presence) -> &'static str {
        match presence {
            Presence::Lobby => "In the lobby",
            Presence::Connected => "Connected",
            Presence::Disconnected => "Disconnected",
        }
    }
}

/// A patient link, made on the clinician's request.
#[derive(Template)]
#[template(path = "patient_link.html")]
pub(crate) struct PatientLinkPage {
    pub(crate) link: String,
    pub(crate) expires: String,
    pub(crate) back: String,
}

/// The patient's "your clinician will start the visit shortly" page; refreshes itself.
#[derive(Template)]
#[template(path = "waiting.html")]
pub(crate) struct WaitingPage;

/// The device-test page.
#[derive(Template)]
#[template(path = "device_test.html")]
pub(crate) struct DeviceTestPage {
    /// The visit's patient join URL (its lobby has the device preview), when a visit is known.
    pub(crate) join_url: Option<String>,
}

/// The service's root page.
#[derive(Template)]
#[template(path = "index.html")]
pub(crate) struct IndexPage;

/// A duration in minutes, for people ("24 hours", "30 minutes").
pub(crate) fn minutes_text(minutes: u64) -> String {
    match minutes {
        m if m % (24 * 60) == 0 && m >= 24 * 60 => plural(m / (24 * 60), "day"),
        m if m % 60 == 0 && m >= 60 => plural(m / 60, "hour"),
        m => plural(m, "minute"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The static files, compiled in.
pub(crate) fn static_file(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "launch.css" => (
            include_str!("../static/launch.css"),
            "text/css; charset=utf-8",
        ),
        "visit.js" => (
            include_str!("../static/visit.js"),
            "text/javascript; charset=utf-8",
        ),
        "autosubmit.js" => (
            include_str!("../static/autosubmit.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(minutes_text(1440), "1 day");
        assert_eq!(minutes_text(2880), "2 days");
        assert_eq!(minutes_text(120), "2 hours");
        assert_eq!(minutes_text(90), "90 minutes");
        assert_eq!(minutes_text(1), "1 minute");
    }

    #[test]
    fn pages_escape_what_they_show() {
        let page = ErrorPage {
            title: "t".into(),
            message: "<script>alert(1)</script>".into(),
            reference: None,
        };
        let body = page.render().unwrap();
        assert!(!body.contains("<script>alert"), "{body}");
    }
}
