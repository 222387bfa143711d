//! Generic OpenID Connect sign-in (authorization code + PKCE + state + nonce), for Microsoft
//! Entra ID and any other provider; SMART launches use the same pieces.

use std::{collections::BTreeMap, fmt, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use url::Url;
use visitbridge_http::{JwksCache, OAuthHttpClient, RetryPolicy, Secret, send_idempotent};

use crate::{
    AuthorizationRequest, Callback, ClientAuth, IdTokenClaims, SmartError,
    authorize::{Pkce, new_nonce, new_state},
    error::{endpoint_label, json_reason, send_error, transport_error},
    idtoken::{self, Expectations},
    jwks::issuer_keys,
    token::{Grant, TokenEndpoint},
};

/// A provider's OpenID configuration (`{issuer}/.well-known/openid-configuration`).
#[derive(Debug, Clone, Deserialize)]
pub struct OidcMetadata {
    /// The issuer. Entra's multi-tenant endpoints (`common`, `organizations`) say
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`; the placeholder is filled from each
    /// token's `tid`.
    pub issuer: String,
    /// The authorization endpoint.
    pub authorization_endpoint: Url,
    /// The token endpoint.
    pub token_endpoint: Url,
    /// The signing keys.
    pub jwks_uri: Url,
    /// PKCE methods, when advertised (Entra does not list them but supports `S256`).
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Our registration at the provider.
#[derive(Debug, Clone)]
pub struct OidcClientConfig {
    /// Our client (application) id.
    pub client_id: String,
    /// Our redirect URI, exactly as registered.
    pub redirect_uri: Url,
    /// How we authenticate at the token endpoint (Entra: a secret, or a certificate key with
    /// `x5t` as [`ClientAuth::PrivateKeyJwt`]).
    pub auth: ClientAuth,
    /// The scopes (space-separated); `openid` is added if missing.
    pub scope: String,
}

impl OidcClientConfig {
    /// A registration asking for `openid profile`.
    pub fn new(client_id: impl Into<String>, redirect_uri: Url, auth: ClientAuth) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uri,
            auth,
            scope: "openid profile".to_owned(),
        }
    }
}

/// A sign-in waiting for its callback. Keep it server-side or in an encrypted cookie; it holds
/// the PKCE verifier. Serializable; `Debug` hides the secrets.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    #[serde(serialize_with = "expose")]
    state: Secret,
    #[serde(serialize_with = "expose")]
    code_verifier: Secret,
    nonce: String,
    /// When the sign-in started.
    pub created_at: DateTime<Utc>,
}

fn expose<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

impl fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A completed sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The validated id_token claims (read `oid`, `tid`, `preferred_username` with
    /// [`IdTokenClaims::str_claim`]).
    pub claims: IdTokenClaims,
    /// The access token issued with it.
    pub access_token: Secret,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// The scopes granted.
    pub scope: Vec<String>,
}

/// An OpenID Connect provider and our registration there.
pub struct OidcProvider {
    metadata: OidcMetadata,
    config: OidcClientConfig,
    http: OAuthHttpClient,
    jwks: JwksCache,
    retry: RetryPolicy,
    headers: HeaderMap,
    sign_in_lifetime: Duration,
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.metadata.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// Reads `{issuer}/.well-known/openid-configuration` and checks that it names `issuer`
    /// (or is Entra's multi-tenant template).
    pub async fn discover(
        http: reqwest::Client,
        issuer: &Url,
        config: OidcClientConfig,
    ) -> Result<Self, SmartError> {
        let base = issuer.as_str().trim_end_matches('/');
        let url =
            Url::parse(&format!("{base}/.well-known/openid-configuration")).map_err(|source| {
                SmartError::ConfigUrl {
                    what: "bad issuer url".to_owned(),
                    source,
                }
            })?;
        let discovery_error = |reason: String| SmartError::Discovery {
            issuer: endpoint_label(issuer),
            reason,
        };
        let retry = RetryPolicy::default();
        let response = send_idempotent(&retry, || {
            http.get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
        })
        .await
        .map_err(|e| send_error(&url, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(discovery_error(format!(
                "openid-configuration answered http {}",
                status.as_u16()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&url, e))?;
        let metadata: OidcMetadata =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
                .map_err(|e| {
                    discovery_error(format!("openid-configuration: {}", json_reason(&e)))
                })?;
        if !metadata.issuer.contains("{tenantid}") && metadata.issuer.trim_end_matches('/') != base
        {
            return Err(discovery_error(
                "its openid-configuration names another issuer".to_owned(),
            ));
        }
        Self::new(http, metadata, config)
    }

    /// A provider from known metadata.
    ///
    /// Refuses a provider that advertises PKCE methods without `S256`.
    pub fn new(
        http: reqwest::Client,
        metadata: OidcMetadata,
        config: OidcClientConfig,
    ) -> Result<Self, SmartError> {
        let advertised = &metadata.code_challenge_methods_supported;
        if !advertised.is_empty() && !advertised.iter().any(|m| m == "S256") {
            return Err(SmartError::S256NotSupported {
                issuer: metadata.issuer.clone(),
            });
        }
        let retry = RetryPolicy::default();
        Ok(Self {
            jwks: issuer_keys(http.clone(), retry.clone(), None),
            http: OAuthHttpClient(http),
            metadata,
            config,
            retry,
            headers: HeaderMap::new(),
            sign_in_lifetime: crate::DEFAULT_LAUNCH_LIFETIME,
        })
    }

    /// Retries for token and JWKS requests.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.jwks = issuer_keys(self.http.0.clone(), retry.clone(), None);
        self.retry = retry;
        self
    }

    /// How long a sign-in may wait for its callback (default ten minutes).
    pub fn with_sign_in_lifetime(mut self, lifetime: Duration) -> Self {
        self.sign_in_lifetime = lifetime;
        self
    }

    /// The provider's metadata.
    pub fn metadata(&self) -> &OidcMetadata {
        &self.metadata
    }

    fn scope(&self) -> String {
        if self.config.scope.split_whitespace().any(|s| s == "openid") {
            self.config.scope.clone()
        } else {
            format!("openid {}", self.config.scope).trim().to_owned()
        }
    }

    /// Starts a sign-in; `extra` adds parameters such as `prompt=select_account` or
    /// `domain_hint`. Redirect the browser to the request and keep the [`PendingSignIn`].
    pub fn begin_sign_in(
        &self,
        extra: &[(&str, &str)],
    ) -> Result<(AuthorizationRequest, PendingSignIn), SmartError> {
        let pkce = Pkce::new()?;
        let state = new_state()?;
        let nonce = new_nonce()?;
        let mut params: Vec<(String, String)> = vec![
            ("response_type".into(), "code".into()),
            ("client_id".into(), self.config.client_id.clone()),
            ("redirect_uri".into(), self.config.redirect_uri.to_string()),
            ("scope".into(), self.scope()),
            ("state".into(), state.expose().to_owned()),
            ("nonce".into(), nonce.clone()),
            ("code_challenge".into(), pkce.challenge.clone()),
            ("code_challenge_method".into(), "S256".into()),
        ];
        params.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let request = AuthorizationRequest::new(
            self.metadata.authorization_endpoint.clone(),
            params,
            state.clone(),
            false,
        );
        let pending = PendingSignIn {
            state,
            code_verifier: pkce.verifier,
            nonce,
            created_at: Utc::now(),
        };
        Ok((request, pending))
    }

    /// Completes a sign-in: checks the callback's state against `pending`, exchanges the code
    /// and validates the id_token (signature, issuer, audience, expiry, nonce).
    pub async fn complete_sign_in(
        &self,
        pending: PendingSignIn,
        callback: &Callback,
    ) -> Result<SignedIn, SmartError> {
        if !pending.state.constant_time_eq(&callback.state) {
            return Err(SmartError::StateUnknownOrUsed);
        }
        let age = Utc::now().signed_duration_since(pending.created_at);
        if age.to_std().is_ok_and(|age| age > self.sign_in_lifetime) {
            return Err(SmartError::LaunchExpired);
        }
        let token = TokenEndpoint {
            http: &self.http,
            url: &self.metadata.token_endpoint,
            client_id: &self.config.client_id,
            auth: &self.config.auth,
            headers: &self.headers,
            retry: &self.retry,
        }
        .request(Grant::AuthorizationCode {
            code: &callback.code,
            redirect_uri: &self.config.redirect_uri,
            verifier: &pending.code_verifier,
        })
        .await?;
        let id_token = token
            .id_token
            .ok_or_else(|| SmartError::IdToken("the token response has none".into()))?;
        let claims = idtoken::validate(
            &self.jwks,
            id_token.expose(),
            &Expectations {
                issuer: &self.metadata.issuer,
                audience: &self.config.client_id,
                nonce: Some(&pending.nonce),
                jwks_uri: &self.metadata.jwks_uri,
            },
        )
        .await?;
        Ok(SignedIn {
            claims,
            access_token: token.access_token,
            expires_at: token.expires_at,
            scope: token.scope,
        })
    }
}
