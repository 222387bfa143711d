//! Cookies: the browser binding of launches, and visit sessions (in the store, by random id),
//! each holding the grants of the visits its browser was launched into.
//!
//! The store keeps a session under the SHA-256 of its id ([`storage_key`], shared with the
//! portal), never the id itself: a copy of the database (or its WAL) opens no visit page. Sessions
//! stored raw by earlier releases no longer match, so their browsers simply launch again.
//!
//! Both cookies are `HttpOnly`, `Path=/`, with the configured `SameSite` (`None` for EHR-embedded
//! browsers) and `Secure` whenever the service is not plain http on loopback, in which case they
//! also get the `__Host-` prefix (no `Domain`, so no other host can set or read them).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_http::{random_token, storage_key};
use visitbridge_store::{SessionRepo, StoredSession, VisitId};

use crate::{config::SameSite, error::LaunchError};

/// How cookies are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookiePolicy {
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
}

impl CookiePolicy {
    /// `base`, with the `__Host-` prefix when cookies are secure.
    pub(crate) fn name(&self, base: &str) -> String {
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
        visitbridge_web::cookies::set_cookie(
            name,
            value,
            self.same_site.as_str(),
            self.secure,
            Some(max_age),
        )
    }
}

/// A cookie's value from the request (our ids are at most 128 characters).
pub(crate) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    visitbridge_web::cookies::cookie(headers, name)
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
}

/// What a launch stores to recognise the browser that started it: a hash of the browser cookie
/// (the cookie itself stays in the browser).
pub(crate) fn binding_of(browser_id: &str) -> String {
    visitbridge_http::domain_digest(b"visitbridge/browser-binding/v1\0", browser_id)
}

/// Whether `browser_id` is the browser whose binding is `binding` (constant time).
pub(crate) fn same_browser(browser_id: Option<&str>, binding: Option<&str>) -> bool {
    match (browser_id, binding) {
        (Some(id), Some(binding)) => visitbridge_http::constant_time_eq(&binding_of(id), binding),
        _ => false,
    }
}

/// A fresh random id (browser cookie, session id, CSRF token).
pub(crate) fn new_token() -> Result<String, LaunchError> {
    random_token(32).map_err(LaunchError::internal)
}

/// How many visits one browser's session remembers; beyond this the oldest grant is dropped.
/// A clinician working through a clinic day opens a visit page per patient from one browser.
pub(crate) const MAX_GRANTS: usize = 20;

/// Who a grant belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// The clinician who launched the visit (may see its panel, make patient links).
    Clinician,
    /// A patient waiting for the meeting to exist.
    Patient,
}

/// One visit this browser was launched into: which visit, who. No names, no tokens of upstreams.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) role: Role,
    pub(crate) visit_id: VisitId,
    /// The clinician's Entra object id ("Clinician (you)" in the panel).
    #[serde(default)]
    pub(crate) object_id: Option<String>,
    /// The token of this visit's forms: per grant, so a later launch in the same browser neither
    /// changes the token an open page holds nor learns an earlier one.
    pub(crate) csrf: String,
    /// For a waiting patient: the visit's practitioners (FHIR ids), to find one linked to
    /// Microsoft when the page refreshes.
    #[serde(default)]
    pub(crate) practitioners: Vec<String>,
    /// For a waiting patient: the EHR's FHIR base URL (user links are keyed on it).
    #[serde(default)]
    pub(crate) ehr_issuer: Option<String>,
    /// When this grant lapses (a later launch extends the session, not its older grants).
    pub(crate) expires_at: DateTime<Utc>,
}

impl Grant {
    /// A clinician's grant of `visit_id`, with a fresh form token; [`grant`] sets its lapse.
    pub(crate) fn clinician(visit_id: VisitId, object_id: &str) -> Result<Self, LaunchError> {
        Ok(Self {
            role: Role::Clinician,
            visit_id,
            object_id: Some(object_id.to_owned()),
            csrf: new_token()?,
            practitioners: Vec::new(),
            ehr_issuer: None,
            expires_at: Utc::now(),
        })
    }

    /// A waiting patient's grant of `visit_id`; [`grant`] sets its lapse.
    pub(crate) fn patient(
        visit_id: VisitId,
        practitioners: Vec<String>,
        ehr_issuer: Option<String>,
    ) -> Result<Self, LaunchError> {
        Ok(Self {
            role: Role::Patient,
            visit_id,
            object_id: None,
            csrf: new_token()?,
            practitioners,
            ehr_issuer,
            expires_at: Utc::now(),
        })
    }
}

/// A browser's visit session: the visits it was launched into, oldest first, at most
/// [`MAX_GRANTS`]. A launch adds to it instead of replacing it, so every visit page open in the
/// browser keeps its live panel and patient-link form.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct VisitSession {
    pub(crate) grants: Vec<Grant>,
}

impl VisitSession {
    /// The clinician's grant for visit `id`.
    pub(crate) fn clinician(&self, id: &str) -> Option<&Grant> {
        self.grants
            .iter()
            .rev()
            .find(|g| g.role == Role::Clinician && g.visit_id.as_str() == id)
    }

    /// The newest waiting patient's grant (`/join/wait` names no visit).
    pub(crate) fn patient(&self) -> Option<&Grant> {
        self.grants.iter().rev().find(|g| g.role == Role::Patient)
    }

    /// Adds `grant` as the newest: replaces the grant of the same visit and role (keeping its
    /// form token, which an open page of that visit holds), drops lapsed grants at `now` and the
    /// oldest beyond [`MAX_GRANTS`].
    fn add(&mut self, mut grant: Grant, now: DateTime<Utc>) {
        self.grants.retain(|g| g.expires_at > now);
        if let Some(at) = self
            .grants
            .iter()
            .position(|g| g.role == grant.role && g.visit_id == grant.visit_id)
        {
            grant.csrf = self.grants.remove(at).csrf;
        }
        self.grants.push(grant);
        let extra = self.grants.len().saturating_sub(MAX_GRANTS);
        self.grants.drain(..extra);
    }
}

/// The session stored before grants: one visit per session (read so that sessions open when the
/// service is upgraded keep working until they expire).
#[derive(Deserialize)]
struct SingleVisitSession {
    role: Role,
    visit_id: VisitId,
    #[serde(default)]
    object_id: Option<String>,
    csrf: String,
    #[serde(default)]
    practitioners: Vec<String>,
    #[serde(default)]
    ehr_issuer: Option<String>,
}

fn parse(stored: StoredSession) -> Option<VisitSession> {
    let data = stored.data;
    if data.get("grants").is_some() {
        return serde_json::from_value(data).ok();
    }
    let old: SingleVisitSession = serde_json::from_value(data).ok()?;
    Some(VisitSession {
        grants: vec![Grant {
            role: old.role,
            visit_id: old.visit_id,
            object_id: old.object_id,
            csrf: old.csrf,
            practitioners: old.practitioners,
            ehr_issuer: old.ehr_issuer,
            expires_at: stored.expires_at,
        }],
    })
}

/// Adds `grant` (valid for `ttl`) to the session named by the request's cookie, or to a new one,
/// and stores the result under a **new** random id, removing the old one: a session id planted
/// in the browser beforehand never gains the new visit. Returns the `Set-Cookie` value.
///
/// Two launches finishing at the same instant in one browser may each keep only their own grant
/// (the last cookie written wins); the other visit's page then asks for a launch again.
pub(crate) async fn grant(
    store: &dyn SessionRepo,
    policy: &CookiePolicy,
    headers: &HeaderMap,
    mut grant: Grant,
    ttl: Duration,
) -> Result<HeaderValue, LaunchError> {
    let now = Utc::now();
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    grant.expires_at = expires;
    let old_id = read_cookie(headers, &policy.session_cookie());
    let mut session = match &old_id {
        Some(id) => store
            .get_session(&storage_key(id), now)
            .await?
            .and_then(parse)
            .unwrap_or_default(),
        None => VisitSession::default(),
    };
    session.add(grant, now);
    let id = new_token()?;
    let data = serde_json::to_value(&session).map_err(LaunchError::internal)?;
    store.put_session(&storage_key(&id), &data, expires).await?;
    if let Some(old) = old_id {
        store.delete_session(&storage_key(&old)).await?;
    }
    Ok(policy.set(&policy.session_cookie(), &id, ttl))
}

/// The valid session named by the request's cookie, if any, without its lapsed grants.
pub(crate) async fn load(
    store: &dyn SessionRepo,
    policy: &CookiePolicy,
    headers: &HeaderMap,
) -> Result<Option<VisitSession>, LaunchError> {
    let Some(id) = read_cookie(headers, &policy.session_cookie()) else {
        return Ok(None);
    };
    let now = Utc::now();
    let Some(stored) = store.get_session(&storage_key(&id), now).await? else {
        return Ok(None);
    };
    Ok(parse(stored).map(|mut session| {
        session.grants.retain(|g| g.expires_at > now);
        session
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    #[test]
    fn cookies_are_http_only_and_secure_when_asked() {
        let secure = CookiePolicy {
            secure: true,
            same_site: SameSite::None,
        };
        assert_eq!(secure.session_cookie(), "__Host-vb-session");
        let v = secure.set("__Host-vb-session", "abc", Duration::from_secs(60));
        let v = v.to_str().unwrap();
        assert!(v.starts_with("__Host-vb-session=abc;"), "{v}");
        for attribute in [
            "Path=/",
            "HttpOnly",
            "SameSite=None",
            "Max-Age=60",
            "Secure",
        ] {
            assert!(v.split("; ").any(|a| a == attribute), "{attribute} in {v}");
        }
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

    fn clinician_grant(visit: &str, csrf: &str, expires_at: DateTime<Utc>) -> Grant {
        Grant {
            role: Role::Clinician,
            visit_id: VisitId::new(visit).unwrap(),
            object_id: Some("oid".to_owned()),
            csrf: csrf.to_owned(),
            practitioners: Vec::new(),
            ehr_issuer: None,
            expires_at,
        }
    }

    #[test]
    fn grants_accumulate_newest_kept_and_lapsed_ones_dropped() {
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        let mut session = VisitSession::default();
        session.add(clinician_grant("lapsed", "c0", now), now);
        for i in 0..MAX_GRANTS + 3 {
            session.add(
                clinician_grant(&format!("visit-{i}"), &format!("c{i}"), later),
                now,
            );
        }
        assert_eq!(session.grants.len(), MAX_GRANTS);
        assert!(session.clinician("lapsed").is_none());
        assert!(session.clinician("visit-0").is_none(), "the oldest went");
        assert!(session.clinician("visit-2").is_none());
        assert_eq!(session.clinician("visit-3").unwrap().csrf, "c3");
        let newest = format!("visit-{}", MAX_GRANTS + 2);
        assert!(session.clinician(&newest).is_some());
        assert!(
            session.patient().is_none(),
            "a clinician grant is not a patient's"
        );

        // A second launch of an open visit keeps the form token its page holds.
        session.add(clinician_grant("visit-3", "fresh", later), now);
        assert_eq!(session.grants.len(), MAX_GRANTS);
        assert_eq!(session.clinician("visit-3").unwrap().csrf, "c3");
        assert_eq!(session.grants.last().unwrap().visit_id.as_str(), "visit-3");
    }

    #[test]
    fn a_session_stored_before_grants_is_still_read() {
        let expires_at = Utc::now() + chrono::Duration::hours(1);
        let stored = StoredSession {
            data: serde_json::json!({
                "role": "clinician",
                "visit_id": "v1",
                "object_id": "oid",
                "csrf": "c1",
            }),
            expires_at,
        };
        let session = parse(stored).unwrap();
        let grant = session.clinician("v1").unwrap();
        assert_eq!(grant.csrf, "c1");
        assert_eq!(grant.expires_at, expires_at);
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
