//! Browser sessions and CSRF tokens: a random id in an HttpOnly, SameSite=Lax cookie (Secure and
//! `__Host-` prefixed unless in loopback development), the session itself in the store under a
//! hash of that id, and a per-session token that every POST form must carry.

use axum::{
    body::{Body, Bytes},
    extract::{Form, FromRequest, FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, StatusCode, request::Parts},
};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use visitbridge_approval::{Actor, Role, TenantId, Username};
use visitbridge_http::Secret;
use visitbridge_store::{MicrosoftObjectId, MicrosoftTenantId};

use crate::{AppState, error::PortalError, views::Layout};

/// How long a session lasts (absolute, from sign-in).
pub(crate) const SESSION_LIFETIME: Duration = Duration::hours(8);
/// The largest form body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The cookie names and attributes of this deployment.
#[derive(Debug, Clone)]
pub(crate) struct Cookies {
    secure: bool,
    pub(crate) session: &'static str,
    pub(crate) sign_in: &'static str,
}

impl Cookies {
    pub(crate) fn new(secure: bool) -> Self {
        // `__Host-` makes browsers refuse the cookie unless it is Secure, host-only and for `/`,
        // so a sibling domain cannot plant a session.
        if secure {
            Self {
                secure,
                session: "__Host-vb_portal",
                sign_in: "__Host-vb_portal_signin",
            }
        } else {
            Self {
                secure,
                session: "vb_portal",
                sign_in: "vb_portal_signin",
            }
        }
    }

    /// A `Set-Cookie` value; `max_age` in seconds, `None` for a browser-session cookie.
    pub(crate) fn set(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let max_age = max_age.map(|age| std::time::Duration::from_secs(age.max(0).unsigned_abs()));
        visitbridge_web::cookies::set_cookie(name, value, "Lax", self.secure, max_age)
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub(crate) fn clear(&self, name: &str) -> HeaderValue {
        self.set(name, "", Some(0))
    }
}

pub(crate) use visitbridge_web::cookies::cookie;

/// The key a cookie value is stored under: its SHA-256, so that a copy of the database does not
/// hand out live sessions.
pub(crate) fn storage_key(value: &str) -> String {
    visitbridge_http::storage_key(value)
}

/// What a session holds: who, for which organisation, and its CSRF token. Nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionData {
    /// Our id of the user's organisation.
    pub(crate) tenant: TenantId,
    /// Its Entra tenant id (the `tid` the user signed in with).
    pub(crate) microsoft_tenant_id: MicrosoftTenantId,
    /// The Microsoft username (`preferred_username`).
    pub(crate) username: Username,
    /// The Microsoft object id (`oid`).
    pub(crate) object_id: MicrosoftObjectId,
    /// The token every POST form of this session carries.
    pub(crate) csrf: String,
}

/// The signed-in person of a request.
#[derive(Debug, Clone)]
pub(crate) struct User {
    /// The session's storage key.
    pub(crate) key: String,
    /// The session.
    pub(crate) data: SessionData,
    /// Whether the configuration lists them as an admin of their organisation (checked on every
    /// request, so removing an admin takes effect at once).
    pub(crate) is_admin: bool,
}

impl User {
    /// Loads the session named by the request's cookie, if it is still valid.
    pub(crate) async fn load(
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<Option<Self>, PortalError> {
        let Some(value) = cookie(headers, state.cookies().session) else {
            return Ok(None);
        };
        let key = storage_key(value);
        let Some(stored) = state.store().get_session(&key, Utc::now()).await? else {
            return Ok(None);
        };
        let Ok(data) = serde_json::from_value::<SessionData>(stored.data) else {
            // A session from an older release: sign in again.
            return Ok(None);
        };
        let is_admin = state
            .config()
            .is_admin(&data.microsoft_tenant_id, &data.username);
        Ok(Some(Self {
            key,
            data,
            is_admin,
        }))
    }

    /// The person as the approval state machine sees them. Everyone may act as an approver: the
    /// state machine lets only a configuration's *named* approver do approver things.
    pub(crate) fn actor(&self) -> Actor {
        let roles: &[Role] = if self.is_admin {
            &[Role::Admin, Role::Approver]
        } else {
            &[Role::Approver]
        };
        Actor::new(self.data.tenant.clone(), self.data.username.clone(), roles)
    }

    /// The page frame for this user.
    pub(crate) fn layout(&self) -> Layout {
        Layout {
            username: Some(self.data.username.to_string()),
            csrf: self.data.csrf.clone(),
            is_admin: self.is_admin,
        }
    }

    /// Whether `token` is this session's CSRF token (constant-time).
    pub(crate) fn csrf_matches(&self, token: &str) -> bool {
        Secret::new(self.data.csrf.clone()).constant_time_eq(token)
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        Self::load(state, &parts.headers)
            .await?
            .ok_or(PortalError::SignInRequired)
    }
}

/// A POST form of a signed-in user whose `csrf` field matched their session's token; the rest of
/// the form is deserialised into `T` only after that check.
pub(crate) struct CsrfForm<T>(pub(crate) User, pub(crate) T);

impl<T> FromRequest<AppState> for CsrfForm<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = PortalError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PortalError> {
        let (parts, body) = req.into_parts();
        let user = User::load(state, &parts.headers)
            .await?
            .ok_or(PortalError::SignInRequired)?;
        // Through `Bytes` rather than `to_bytes`: its rejection tells an oversized body (`413`,
        // from the body limit layer) from one that could not be read.
        let bytes = Bytes::from_request(Request::new(body), state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => PortalError::TooLarge,
                _ => PortalError::BadRequest("the form could not be read".to_owned()),
            })?;
        if bytes.len() > MAX_FORM_BYTES {
            return Err(PortalError::TooLarge);
        }
        let token = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        match token {
            Some(token) if user.csrf_matches(&token) => {}
            _ => {
                tracing::warn!("form refused: missing or wrong csrf token");
                return Err(PortalError::CsrfRejected);
            }
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        let Form(value) = Form::<T>::from_request(req, state).await?;
        Ok(Self(user, value))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_secure_with_host_prefix() {
        let secure = Cookies::new(true);
        let set = secure.set(secure.session, "abc", None);
        let attributes = |v: &axum::http::HeaderValue| {
            let mut parts: Vec<String> =
                v.to_str().unwrap().split("; ").map(str::to_owned).collect();
            parts[1..].sort();
            parts
        };
        assert_eq!(
            attributes(&set),
            [
                "__Host-vb_portal=abc",
                "HttpOnly",
                "Path=/",
                "SameSite=Lax",
                "Secure"
            ]
        );
        let dev = Cookies::new(false);
        let set = dev.set(dev.session, "abc", Some(60));
        assert_eq!(
            attributes(&set),
            [
                "vb_portal=abc",
                "HttpOnly",
                "Max-Age=60",
                "Path=/",
                "SameSite=Lax"
            ]
        );
    }

    #[test]
    fn reads_one_cookie_among_many() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vb_portal=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, "vb_portal"), Some("xyz"));
        assert_eq!(cookie(&headers, "vb"), None);
    }

    #[test]
    fn storage_key_is_a_hash_not_the_value() {
        let key = storage_key("session-value");
        assert_eq!(key.len(), 64);
        assert!(!key.contains("session-value"));
        assert_eq!(key, storage_key("session-value"));
    }
}
