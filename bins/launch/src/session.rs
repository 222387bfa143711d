//! Cookies: the browser binding of launches, and visit sessions (in the store, by random id).
//!
//! Both cookies are `HttpOnly`, `Path=/`, with the configured `SameSite` (`None` for EHR-embedded
//! browsers) and `Secure` whenever the service is not plain http on loopback, in which case they
//! also get the `__Host-` prefix (no `Domain`, so no other host can set or read them).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_http::random_token;
use visitbridge_store::{SessionRepo, VisitId};

use crate::{config::SameSite, error::LaunchError};

/// How cookies are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookiePolicy {
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
}

impl CookiePolicy {
    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// The browser cookie's name.
    pub(crate) fn browser_cookie(&self) -> String {
        self.name("vb-browser")
    }

    /// The session cookie's name.
    pub(crate) fn session_cookie(&self) -> String {
        self.name("vb-session")
    }

    /// A `Set-Cookie` value.
    pub(crate) fn set(&self, name: &str, value: &str, max_age: Duration) -> HeaderValue {
        let mut cookie = format!(
            "{name}={value}; Path=/; HttpOnly; SameSite={}; Max-Age={}",
            self.same_site.as_str(),
            max_age.as_secs()
        );
        if self.secure {
            cookie.push_str("; Secure");
        }
        // Names and values are our own URL-safe tokens: always a valid header value.
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A cookie's value from the request.
pub(crate) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// What a launch stores to recognise the browser that started it: a hash of the browser cookie
/// (the cookie itself stays in the browser).
pub(crate) fn binding_of(browser_id: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"visitbridge/browser-binding/v1\0");
    ctx.update(browser_id.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `browser_id` is the browser whose binding is `binding` (constant time).
pub(crate) fn same_browser(browser_id: Option<&str>, binding: Option<&str>) -> bool {
    match (browser_id, binding) {
        (Some(id), Some(binding)) => aws_lc_rs::constant_time::verify_slices_are_equal(
            binding_of(id).as_bytes(),
            binding.as_bytes(),
        )
        .is_ok(),
        _ => false,
    }
}

/// A fresh random id (browser cookie, session id, CSRF token).
pub(crate) fn new_token() -> Result<String, LaunchError> {
    random_token(32).map_err(LaunchError::internal)
}

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// The clinician who launched the visit (may see its panel, make patient links).
    Clinician,
    /// A patient waiting for the meeting to exist.
    Patient,
}

/// A visit session: which visit, who. No names, no tokens of upstreams.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VisitSession {
    pub(crate) role: Role,
    pub(crate) visit_id: VisitId,
    /// The clinician's Entra object id ("Clinician (you)" in the panel).
    #[serde(default)]
    pub(crate) object_id: Option<String>,
    /// The token of the session's forms.
    pub(crate) csrf: String,
    /// For a waiting patient: the visit's practitioners (FHIR ids), to find one linked to
    /// Microsoft when the page refreshes.
    #[serde(default)]
    pub(crate) practitioners: Vec<String>,
    /// For a waiting patient: the EHR's FHIR base URL (user links are keyed on it).
    #[serde(default)]
    pub(crate) ehr_issuer: Option<String>,
}

/// Stores `session` under a new random id until `now + ttl`; returns the id.
pub(crate) async fn create(
    store: &dyn SessionRepo,
    session: &VisitSession,
    ttl: Duration,
) -> Result<String, LaunchError> {
    let id = new_token()?;
    let expires: DateTime<Utc> =
        Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    let data = serde_json::to_value(session).map_err(LaunchError::internal)?;
    store.put_session(&id, &data, expires).await?;
    Ok(id)
}

/// The valid session named by the request's cookie, if any.
pub(crate) async fn load(
    store: &dyn SessionRepo,
    policy: &CookiePolicy,
    headers: &HeaderMap,
) -> Result<Option<VisitSession>, LaunchError> {
    let Some(id) = read_cookie(headers, &policy.session_cookie()) else {
        return Ok(None);
    };
    let Some(stored) = store.get_session(&id, Utc::now()).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(stored.data).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_and_secure_when_asked() {
        let secure = CookiePolicy {
            secure: true,
            same_site: SameSite::None,
        };
        assert_eq!(secure.session_cookie(), "__Host-vb-session");
        let v = secure.set("__Host-vb-session", "abc", Duration::from_secs(60));
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-vb-session=abc; Path=/; HttpOnly; SameSite=None; Max-Age=60; Secure"
        );
        let dev = CookiePolicy {
            secure: false,
            same_site: SameSite::Lax,
        };
        assert_eq!(dev.browser_cookie(), "vb-browser");
        assert!(
            !dev.set("vb-browser", "x", Duration::from_secs(1))
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("xvb-browser=no; vb-browser=yes; other=1"),
        );
        assert_eq!(read_cookie(&headers, "vb-browser").as_deref(), Some("yes"));
        assert_eq!(read_cookie(&headers, "vb-session"), None);
    }

    #[test]
    fn bindings_match_only_their_browser() {
        let binding = binding_of("browser-1");
        assert!(same_browser(Some("browser-1"), Some(&binding)));
        assert!(!same_browser(Some("browser-2"), Some(&binding)));
        assert!(!same_browser(None, Some(&binding)));
        assert!(!same_browser(Some("browser-1"), None));
    }
}
