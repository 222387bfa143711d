//! Checks the `validationTokens` Graph sends with change notifications that carry resource data:
//! JWTs signed by the Microsoft identity platform proving that Graph sent the batch to our app.
//!
//! The `clientState` only proves the sender knows a shared secret; a leaked one would let anyone
//! forge participant events that end up in the EHR. With encrypted content, Graph adds one
//! token per app and tenant in the batch, and we require at least one that verifies: RS256 with a
//! key from the identity platform's JWKS, `aud` = our app id, `azp` (or a v1 token's `appid`) =
//! Microsoft Graph Change Tracking, `iss` = our tenant's v1 or v2 issuer, not expired.
//!
//! Keys are cached by `kid`. An unknown `kid` refetches the JWKS once, at most every
//! [`ValidationTokenConfig::min_refetch_interval`], so forged tokens cannot make us hammer
//! Microsoft or slow the webhook (which must answer Graph within 3 seconds); keys older than
//! [`ValidationTokenConfig::max_key_age`] are refreshed on the next use, keeping the stale ones if
//! that fails.

use std::{
    collections::HashMap,
    fmt,
    sync::RwLock,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::error::GraphError;

/// The application id of "Microsoft Graph Change Tracking", the `azp` of validation tokens.
pub const GRAPH_CHANGE_TRACKING_APP_ID: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";

/// Most validation tokens looked at per batch: Graph sends one per app and tenant sharing the
/// notification URL, and a forged batch should not buy unbounded signature checks.
const MAX_TOKENS_PER_BATCH: usize = 16;

/// Whose tokens are accepted and where the signing keys are.
#[derive(Debug, Clone)]
pub struct ValidationTokenConfig {
    /// Our app registration's application (client) id: the tokens' `aud`.
    pub app_id: String,
    /// Our directory (tenant) id, part of the accepted issuers.
    pub tenant_id: String,
    /// The identity platform's JWKS,
    /// `https://login.microsoftonline.com/common/discovery/v2.0/keys`.
    pub jwks_url: Url,
    /// Accepted `iss` values: `https://sts.windows.net/{tenant}/` (v1 tokens) and
    /// `{login_base}/{tenant}/v2.0` (v2 tokens).
    pub issuers: Vec<String>,
    /// Least time between two JWKS fetches caused by an unknown `kid` (default 30 s).
    pub min_refetch_interval: Duration,
    /// Cached keys older than this are refreshed on the next use (default 24 h).
    pub max_key_age: Duration,
    /// Longest a JWKS fetch may take (default 2 s, inside Graph's 3 s answer budget).
    pub fetch_timeout: Duration,
}

impl ValidationTokenConfig {
    /// The public cloud's keys and issuers for our `tenant_id` and `app_id`.
    pub fn new(tenant_id: impl Into<String>, app_id: impl Into<String>) -> Self {
        let tenant_id = tenant_id.into();
        let mut config = Self {
            app_id: app_id.into(),
            issuers: Vec::new(),
            tenant_id,
            jwks_url: default_jwks_url(),
            min_refetch_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(24 * 3600),
            fetch_timeout: Duration::from_secs(2),
        };
        config.issuers = vec![
            format!("https://sts.windows.net/{}/", config.tenant_id),
            format!(
                "https://login.microsoftonline.com/{}/v2.0",
                config.tenant_id
            ),
        ];
        config
    }

    /// Takes the JWKS and the v2 issuer from another login host (a national cloud, or a fake in
    /// tests): `{login_base}/common/discovery/v2.0/keys` and `{login_base}/{tenant}/v2.0`.
    pub fn with_login_base(mut self, login_base: &Url) -> Result<Self, GraphError> {
        let base = login_base.as_str().trim_end_matches('/');
        self.jwks_url = Url::parse(&format!("{base}/common/discovery/v2.0/keys"))
            .map_err(|e| GraphError::Invalid(format!("login base url: {e}")))?;
        let v2 = format!("{base}/{}/v2.0", self.tenant_id);
        if !self.issuers.contains(&v2) {
            self.issuers.push(v2);
        }
        Ok(self)
    }

    /// Uses another JWKS URL.
    pub fn with_jwks_url(mut self, jwks_url: Url) -> Self {
        self.jwks_url = jwks_url;
        self
    }
}

fn default_jwks_url() -> Url {
    // A constant, valid URL: parsing cannot fail.
    Url::parse("https://login.microsoftonline.com/common/discovery/v2.0/keys")
        .unwrap_or_else(|_| unreachable!())
}

/// Verifies a batch's `validationTokens` against the identity platform's keys (cached).
pub struct ValidationTokenVerifier {
    http: reqwest::Client,
    config: ValidationTokenConfig,
    validation: Validation,
    keys: RwLock<KeyCache>,
    /// One JWKS fetch at a time; waiters then find the fresh keys.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl fmt::Debug for ValidationTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidationTokenVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why one token was not accepted (never logged with the token).
enum TokenFailure {
    /// The token is not ours or not genuine.
    Invalid,
    /// The keys could not be fetched.
    Keys(GraphError),
}

impl ValidationTokenVerifier {
    /// A verifier using `http` (a client from `visitbridge_http::build_client`) for the JWKS.
    pub fn new(http: reqwest::Client, config: ValidationTokenConfig) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[config.app_id.as_str()]);
        validation.set_issuer(&config.issuers);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Self {
            http,
            config,
            validation,
            keys: RwLock::new(KeyCache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ValidationTokenConfig {
        &self.config
    }

    /// `Ok` when at least one of `tokens` is a valid validation token for our app and tenant.
    ///
    /// Refused ([`GraphError::UnverifiedNotification`]) when none is; when the JWKS could not be
    /// fetched and no token verified, the fetch error (transient, so Graph is asked to retry).
    pub async fn verify_any(&self, tokens: &[String]) -> Result<(), GraphError> {
        if tokens.is_empty() {
            return Err(GraphError::UnverifiedNotification(
                "no validation token with encrypted content",
            ));
        }
        let mut fetch_error = None;
        for token in tokens.iter().take(MAX_TOKENS_PER_BATCH) {
            match self.verify_one(token).await {
                Ok(()) => return Ok(()),
                Err(TokenFailure::Invalid) => {}
                Err(TokenFailure::Keys(e)) => fetch_error = Some(e),
            }
        }
        Err(fetch_error.unwrap_or(GraphError::UnverifiedNotification(
            "no valid validation token",
        )))
    }

    async fn verify_one(&self, token: &str) -> Result<(), TokenFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenFailure::Invalid)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenFailure::Invalid);
        }
        let kid = header.kid.ok_or(TokenFailure::Invalid)?;
        let key = match self.cached_key(&kid) {
            Some(key) => key,
            None => self
                .refetch_for(&kid)
                .await
                .map_err(TokenFailure::Keys)?
                .ok_or(TokenFailure::Invalid)?,
        };
        let claims = jsonwebtoken::decode::<Value>(token, &key, &self.validation)
            .map_err(|_| TokenFailure::Invalid)?
            .claims;
        // v2 tokens name the calling app in `azp`, v1 tokens in `appid`.
        let caller = claims
            .get("azp")
            .or_else(|| claims.get("appid"))
            .and_then(Value::as_str);
        if caller != Some(GRAPH_CHANGE_TRACKING_APP_ID) {
            return Err(TokenFailure::Invalid);
        }
        Ok(())
    }

    /// The cached key for `kid`, unless the cache is too old to trust without a refresh.
    fn cached_key(&self, kid: &str) -> Option<DecodingKey> {
        let cache = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = cache
            .fetched_at
            .is_some_and(|t| t.elapsed() < self.config.max_key_age);
        fresh.then(|| cache.keys.get(kid).cloned()).flatten()
    }

    /// Fetches the JWKS (unless another caller just did, or the last attempt was too recent) and
    /// returns the key for `kid`. A failed fetch keeps the old keys.
    async fn refetch_for(&self, kid: &str) -> Result<Option<DecodingKey>, GraphError> {
        let _one_at_a_time = self.fetching.lock().await;
        let (stale, recently_attempted) = {
            let cache = self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let stale = cache
                .fetched_at
                .is_none_or(|t| t.elapsed() >= self.config.max_key_age);
            let recent = cache
                .attempted_at
                .is_some_and(|t| t.elapsed() < self.config.min_refetch_interval);
            if !stale && let Some(key) = cache.keys.get(kid) {
                // Someone fetched while we waited.
                return Ok(Some(key.clone()));
            }
            (stale, recent)
        };
        if recently_attempted {
            let cache = self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            return Ok(cache.keys.get(kid).cloned());
        }
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .attempted_at = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                Ok(cache.keys.get(kid).cloned())
            }
            Err(error) => {
                let cache = self
                    .keys
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match cache.keys.get(kid) {
                    // Stale keys beat none while Microsoft's endpoint is unreachable.
                    Some(key) if stale => {
                        tracing::warn!(error = %error, "could not refresh the identity platform keys; using cached ones");
                        Ok(Some(key.clone()))
                    }
                    _ => Err(error),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, GraphError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<Value>,
        }
        let request = self.http.get(self.config.jwks_url.clone()).send();
        let response = tokio::time::timeout(self.config.fetch_timeout, request)
            .await
            .map_err(|_| GraphError::Timeout {
                upstream: "entra id",
                attempts: 1,
            })?
            .map_err(|e| GraphError::from_reqwest("entra id", 1, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(GraphError::Api {
                status: status.as_u16(),
                code: "JwksUnavailable".into(),
                message: "the identity platform keys could not be fetched".into(),
                request_id: None,
            });
        }
        let body = tokio::time::timeout(self.config.fetch_timeout, response.bytes())
            .await
            .map_err(|_| GraphError::Timeout {
                upstream: "entra id",
                attempts: 1,
            })?
            .map_err(|e| GraphError::from_reqwest("entra id", 1, e))?;
        let jwks: Jwks = serde_json::from_slice(&body)
            .map_err(|e| GraphError::parse("the identity platform keys", &e))?;
        // Keys of other types or uses are skipped, not fatal: the set is Microsoft's to extend.
        let keys = jwks
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(&jwk).ok().map(|key| (kid, key))
            })
            .collect();
        Ok(keys)
    }
}
