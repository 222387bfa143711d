//! Tokens without a user: SMART backend services (client credentials + `private_key_jwt`), and
//! a launch's user token, both as FHIR `TokenSource`s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use tokio::sync::Mutex;
use url::Url;
use visitbridge_fhir::{TokenSource, TokenSourceError};
use visitbridge_http::{ClientAssertionKey, OAuthHttpClient, RetryPolicy, Secret};

use crate::{
    ClientAuth, SmartError,
    token::{Grant, TokenEndpoint},
};

struct Cached {
    token: Secret,
    refresh_at: DateTime<Utc>,
}

/// A SMART backend services client: `client_credentials` with a signed client assertion
/// (RS384 or ES384, `kid`, unique `jti`, five minutes at most), and a token cache.
///
/// The cached token is reused until shortly before it expires (a minute, or half its life if
/// shorter). One refresh at a time: concurrent callers wait for the refresh in flight instead of
/// each asking for a token.
pub struct BackendServicesClient {
    http: OAuthHttpClient,
    token_url: Url,
    client_id: String,
    auth: ClientAuth,
    scope: String,
    headers: HeaderMap,
    retry: RetryPolicy,
    refresh_margin: Duration,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for BackendServicesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendServicesClient")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl BackendServicesClient {
    /// A client for `token_url` (the `token_endpoint` of the server's SMART configuration)
    /// asking for `scope` (e.g. `system/Communication.c system/DocumentReference.cu`).
    pub fn new(
        http: reqwest::Client,
        token_url: Url,
        client_id: impl Into<String>,
        key: ClientAssertionKey,
        scope: impl Into<String>,
    ) -> Self {
        Self {
            http: OAuthHttpClient(http),
            token_url,
            client_id: client_id.into(),
            auth: ClientAuth::PrivateKeyJwt(key),
            scope: scope.into(),
            headers: HeaderMap::new(),
            retry: RetryPolicy::default(),
            refresh_margin: Duration::from_secs(60),
            cached: Mutex::new(None),
        }
    }

    /// Headers sent with each token request (e.g. Epic's `Epic-Client-ID`).
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Retries for token requests (429 and 5xx are retried; `Retry-After` honoured).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long before expiry a token is replaced (default one minute).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// A valid access token, from the cache or freshly requested.
    pub async fn token(&self) -> Result<Secret, SmartError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Utc::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let answer = TokenEndpoint {
            http: &self.http,
            url: &self.token_url,
            client_id: &self.client_id,
            auth: &self.auth,
            headers: &self.headers,
            retry: &self.retry,
        }
        .request(Grant::ClientCredentials { scope: &self.scope })
        .await?;
        let now = Utc::now();
        let life = answer.expires_at.signed_duration_since(now);
        let margin = chrono::Duration::from_std(self.refresh_margin)
            .unwrap_or_else(|_| chrono::Duration::seconds(60))
            .min(life / 2);
        let token = answer.access_token;
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: answer.expires_at - margin,
        });
        Ok(token)
    }

    /// Forgets the cached token (e.g. after the FHIR server answered 401 with it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

#[async_trait::async_trait]
impl TokenSource for BackendServicesClient {
    async fn access_token(&self) -> Result<Secret, TokenSourceError> {
        self.token().await.map_err(|e| {
            TokenSourceError::caused_by("the backend-services token request failed", e)
        })
    }
}

/// A user's access token from a launch, valid until `expires_at`.
#[derive(Debug, Clone)]
pub struct UserAccessToken {
    token: Secret,
    expires_at: DateTime<Utc>,
}

impl UserAccessToken {
    /// A token that expires at `expires_at`.
    pub fn new(token: Secret, expires_at: DateTime<Utc>) -> Self {
        Self { token, expires_at }
    }

    /// When it expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The token, or [`SmartError::TokenExpired`] once it expired (five seconds early, so it
    /// does not expire in flight).
    pub fn get(&self) -> Result<Secret, SmartError> {
        if Utc::now() + chrono::Duration::seconds(5) >= self.expires_at {
            Err(SmartError::TokenExpired)
        } else {
            Ok(self.token.clone())
        }
    }
}

#[async_trait::async_trait]
impl TokenSource for UserAccessToken {
    async fn access_token(&self) -> Result<Secret, TokenSourceError> {
        self.get()
            .map_err(|e| TokenSourceError::caused_by("the launch's access token", e))
    }
}
