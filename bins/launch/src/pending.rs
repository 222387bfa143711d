//! Pending launches: each SMART launch sealed in a cookie of the browser that started it, a
//! single-use marker of each consumed `state` in the store, and our own pending Microsoft
//! sign-ins (in the store).
//!
//! Starting a launch needs no sign-in, so it writes nothing: the pending launch (issuer, PKCE
//! verifier, nonce, record context, the browser binding) travels in an `HttpOnly` cookie sealed
//! with AES-256-GCM under a key derived from the deployment secret ([`Sealer`]), bound to its
//! `state` and expiring with the launch. The cookie's name is derived from the `state`, so two
//! tabs can launch at once. Any replica can complete any launch. The store is written at the
//! callback only: a marker of the consumed state (a hash of it), so a replayed callback is still
//! refused while its cookie could open.

use std::{sync::Arc, time::Duration};

use axum::http::{HeaderMap, HeaderValue};
use chrono::Utc;
use serde::{Serialize, de::DeserializeOwned};
use visitbridge_http::{Sealer, Secret, storage_key};
use visitbridge_smart::{PendingLaunch, PendingLaunchStore, StoreError as PendingError};
use visitbridge_store::{PendingRepo, StoreError};

use crate::{error::LaunchError, session::CookiePolicy};

/// The kind of the consumed-state markers in the store.
const USED: &str = "launch/smart-used";
/// What the sealing key is for (a key derived for another purpose opens none of these).
const PURPOSE: &str = "visitbridge/launch-cookie/v1";
/// The base name of launch cookies (`vb-launch-<16 hex of the state's hash>`).
const COOKIE_BASE: &str = "vb-launch-";
/// Browsers keep cookies up to 4096 bytes, name included.
const MAX_COOKIE_VALUE: usize = 3800;
/// The cookie outlives the sealed launch a little, so a late callback is told the launch expired
/// rather than that it came to another browser.
const GRACE: Duration = Duration::from_secs(120);

/// Pending SMART launches in sealed cookies.
pub(crate) struct LaunchCookies {
    sealer: Sealer,
    policy: CookiePolicy,
    lifetime: Duration,
    store: Arc<dyn PendingRepo>,
}

impl LaunchCookies {
    /// Launches sealed under `secret` (the deployment secret), valid for `lifetime`.
    pub(crate) fn new(
        secret: &Secret,
        policy: CookiePolicy,
        lifetime: Duration,
        store: Arc<dyn PendingRepo>,
    ) -> Result<Self, visitbridge_http::SealError> {
        Ok(Self {
            sealer: Sealer::derive(secret, PURPOSE)?,
            policy,
            lifetime,
            store,
        })
    }

    /// The cookie of the launch with `state`.
    fn cookie_name(&self, state: &str) -> String {
        let id = storage_key(&format!("{PURPOSE}\0{state}"));
        self.policy.name(&format!("{COOKIE_BASE}{}", &id[..16]))
    }

    /// The `Set-Cookie` value that keeps `launch` (of `state`) in the browser.
    pub(crate) fn seal(
        &self,
        state: &str,
        launch: &PendingLaunch,
    ) -> Result<HeaderValue, LaunchError> {
        let json = serde_json::to_vec(launch).map_err(LaunchError::internal)?;
        let expires = launch.created_at + chrono_duration(self.lifetime);
        let sealed = self
            .sealer
            .seal(state.as_bytes(), &json, expires)
            .map_err(LaunchError::internal)?;
        if sealed.len() > MAX_COOKIE_VALUE {
            return Err(LaunchError::BadLaunch(
                "The launch URL carries more context than a browser can keep. Check that the \
                 integration record's launch URL is entered exactly as the VisitBridge portal \
                 shows it."
                    .to_owned(),
            ));
        }
        Ok(self
            .policy
            .set(&self.cookie_name(state), &sealed, self.lifetime + GRACE))
    }

    /// The launch of `state` sealed in this request's cookie, if it opens (nothing is consumed).
    pub(crate) fn peek(&self, state: &str, headers: &HeaderMap) -> Option<PendingLaunch> {
        let sealed = cookie(headers, &self.cookie_name(state))?;
        let json = self
            .sealer
            .open(state.as_bytes(), sealed, Utc::now())
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// Takes the launch of `state` from this request's cookie, once: the first callback marks
    /// the state used in the store, and a later one is refused even with the cookie.
    ///
    /// Refusals: a state already used, a cookie that does not open (altered, expired, of another
    /// state) → [`LaunchError::StateRejected`]; none of our cookies at all → the launch was
    /// started in another browser (or cookies are blocked): [`LaunchError::BrowserMismatch`].
    pub(crate) async fn claim(
        &self,
        state: &str,
        headers: &HeaderMap,
    ) -> Result<PendingLaunch, LaunchError> {
        let marker = format!("smart-used/{}", storage_key(state));
        let Some(launch) = self.peek(state, headers) else {
            if self.store.has_pending(&marker, USED, Utc::now()).await? {
                return Err(LaunchError::StateRejected);
            }
            // A browser with none of our launch cookies (and no browser cookie) never started a
            // launch here, or blocks cookies; any other is told the link is used or expired.
            let ours = has_cookie_with_prefix(headers, &self.policy.name(COOKIE_BASE))
                || cookie(headers, &self.policy.browser_cookie()).is_some();
            return Err(if ours {
                LaunchError::StateRejected
            } else {
                LaunchError::BrowserMismatch
            });
        };
        // Kept as long as the cookie could still open, then purged with other expired items.
        let expires = launch.created_at + chrono_duration(self.lifetime + GRACE);
        match self
            .store
            .put_pending(&marker, USED, &serde_json::json!({}), expires)
            .await
        {
            Ok(()) => Ok(launch),
            Err(StoreError::AlreadyExists(_)) => Err(LaunchError::StateRejected),
            Err(e) => Err(e.into()),
        }
    }

    /// The `Set-Cookie` value removing the launch cookie of the callback `query`'s state, if the
    /// request carries it (whatever the callback's outcome, its launch is over).
    pub(crate) fn clear(&self, query: &str, headers: &HeaderMap) -> Option<HeaderValue> {
        let state = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())?;
        let name = self.cookie_name(&state);
        cookie(headers, &name)?;
        Some(self.policy.set(&name, "", Duration::ZERO))
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::minutes(10))
}

/// A launch cookie's value (longer than the other cookies, so not `session::read_cookie`).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    visitbridge_web::cookies::cookie(headers, name).filter(|v| v.len() <= MAX_COOKIE_VALUE)
}

fn has_cookie_with_prefix(headers: &HeaderMap, prefix: &str) -> bool {
    visitbridge_web::cookies::cookie_pairs(headers).any(|(k, _)| k.starts_with(prefix))
}

/// The SMART clients' own store of pending launches, which the launch service never uses: its
/// launches are sealed in cookies ([`LaunchCookies`]). Refusing makes a stray use fail loudly
/// instead of keeping launches in memory or writing a row per unauthenticated start.
pub(crate) struct SealedInCookies;

#[async_trait::async_trait]
impl PendingLaunchStore for SealedInCookies {
    async fn put(&self, _state: &str, _launch: PendingLaunch) -> Result<(), PendingError> {
        Err("pending launches are sealed in cookies, not stored".into())
    }

    async fn take(&self, _state: &str) -> Result<Option<PendingLaunch>, PendingError> {
        Err("pending launches are sealed in cookies, not stored".into())
    }
}

/// Stores `value` under a random key of `kind`, single use, for `lifetime`.
pub(crate) async fn put<T: Serialize>(
    store: &dyn PendingRepo,
    key: &str,
    kind: &str,
    value: &T,
    lifetime: Duration,
) -> Result<(), PendingError> {
    let expires = Utc::now() + chrono_duration(lifetime);
    store
        .put_pending(key, kind, &serde_json::to_value(value)?, expires)
        .await?;
    Ok(())
}

/// Takes (once) what [`put`] stored.
pub(crate) async fn take<T: DeserializeOwned>(
    store: &dyn PendingRepo,
    key: &str,
    kind: &str,
) -> Result<Option<T>, PendingError> {
    let json = store.take_pending(key, kind, Utc::now()).await?;
    Ok(json.map(serde_json::from_value).transpose()?)
}
