//! Checks the `validationTokens` Graph sends with change notifications that carry resource data:
//! JWTs signed by the Microsoft identity platform proving that Graph sent the batch to our app.
//!
//! The `clientState` only proves the sender knows a shared secret; a leaked one would let anyone
//! forge participant events that end up in the EHR. With encrypted content, Graph adds one
//! token per app and tenant in the batch, and we require at least one that verifies: RS256 with a
//! key from the identity platform's JWKS, `aud` = our app id, `azp` (or a v1 token's `appid`) =
//! Microsoft Graph Change Tracking, `iss` = our tenant's v1 or v2 issuer, not expired.
//!
//! Keys are cached by `kid` in `visitbridge_http::JwksCache` (the one JWKS cache, shared with
//! the SMART client). An unknown `kid` refetches the JWKS once, at most every
//! [`ValidationTokenConfig::min_refetch_interval`], so forged tokens cannot make us hammer
//! Microsoft or slow the webhook (which must answer Graph within 3 seconds); keys older than
//! [`ValidationTokenConfig::max_key_age`] are refreshed on the next use, keeping the stale ones if
//! that fails.

use std::{fmt, time::Duration};

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use url::Url;
use visitbridge_http::{JwksCache, JwksPolicy, RetryPolicy};

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
        self.jwks_url =
            Url::parse(&format!("{base}/common/discovery/v2.0/keys")).map_err(|source| {
                GraphError::InvalidUrl {
                    what: "login base url",
                    source,
                }
            })?;
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
    config: ValidationTokenConfig,
    validation: Validation,
    keys: JwksCache,
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
        // Inside Graph's 3 s answer budget: one bounded try, and stale keys beat none while
        // Microsoft's endpoint is unreachable.
        let policy = JwksPolicy {
            max_age: config.max_key_age,
            min_refetch_interval: config.min_refetch_interval,
            algorithms: vec![Algorithm::RS256],
            require_kid: true,
            retry: RetryPolicy::none(),
            fetch_timeout: Some(config.fetch_timeout),
            keep_stale_keys: true,
        };
        Self {
            keys: JwksCache::new(http, policy),
            config,
            validation,
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
        // The cache hands out no key for another algorithm or a token without `kid`.
        let keys = self
            .keys
            .keys_for(&self.config.jwks_url, &header)
            .await
            .map_err(|e| TokenFailure::Keys(GraphError::from_jwks(e)))?;
        let key = keys.first().ok_or(TokenFailure::Invalid)?;
        let claims = jsonwebtoken::decode::<Value>(token, key, &self.validation)
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
}
