//! Entra ID app-only tokens (client credentials), cached, with one refresh in flight at a time.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use url::Url;
use visitbridge_http::{ClientAssertionKey, RetryPolicy, Secret, send_idempotent};

use crate::{
    error::{GraphError, shorten},
    pem,
};

/// Where and as whom we ask Entra ID for tokens.
#[derive(Debug, Clone)]
pub struct EntraConfig {
    /// The login host, `https://login.microsoftonline.com/` (a loopback fake in tests; the
    /// national clouds have their own).
    pub login_base: Url,
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// Our app registration's application (client) id.
    pub client_id: String,
    /// The scope asked for: `https://graph.microsoft.com/.default`.
    pub scope: String,
}

impl EntraConfig {
    /// The public cloud's login host and Graph scope for `tenant_id` and `client_id`.
    pub fn new(tenant_id: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            login_base: default_login_base(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            scope: "https://graph.microsoft.com/.default".to_owned(),
        }
    }

    /// Points at another login host (a national cloud, or a fake in tests).
    pub fn with_login_base(mut self, login_base: Url) -> Self {
        self.login_base = login_base;
        self
    }

    /// `{login_base}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> Result<Url, GraphError> {
        if self.tenant_id.is_empty()
            || self.tenant_id.contains(['/', '?', '#'])
            || self.client_id.is_empty()
        {
            return Err(GraphError::Invalid(
                "tenant id and client id must be set (tenant id without '/', '?' or '#')".into(),
            ));
        }
        let mut url = self.login_base.clone();
        url.path_segments_mut()
            .map_err(|()| GraphError::Invalid("login base url cannot have a path".into()))?
            .pop_if_empty()
            .extend([self.tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        Ok(url)
    }
}

fn default_login_base() -> Url {
    // A constant, valid URL: parsing cannot fail.
    Url::parse("https://login.microsoftonline.com/").unwrap_or_else(|_| unreachable!())
}

/// How our app proves who it is to Entra ID.
#[derive(Debug, Clone)]
pub enum TokenCredential {
    /// A client secret (simplest; Microsoft recommends certificates for production).
    ClientSecret(Secret),
    /// A certificate: each token request carries a client assertion signed with the certificate's
    /// key (RS256, with the certificate's SHA-1 thumbprint in `x5t`).
    Certificate(ClientAssertionKey),
}

impl TokenCredential {
    /// The certificate credential from a PKCS#8 private key PEM and its certificate PEM (the one
    /// uploaded to the app registration).
    pub fn certificate_from_pem(
        private_key_pem: &str,
        certificate_pem: &str,
    ) -> Result<Self, GraphError> {
        let der = pem::certificate_der(certificate_pem)
            .ok_or_else(|| GraphError::Invalid("certificate is not a PEM certificate".into()))?;
        let thumbprint = pem::sha1_hex(&der);
        let key = ClientAssertionKey::from_pem(
            jsonwebtoken::Algorithm::RS256,
            thumbprint,
            private_key_pem.as_bytes(),
        )
        .map_err(|e| GraphError::Assertion {
            what: "certificate credential",
            source: Arc::new(e),
        })?
        .with_x5t(&der);
        Ok(Self::Certificate(key))
    }
}

/// A token that is refreshed when less than this is left of its life (or half its life, if
/// shorter), so that no call starts with a token about to expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// After a failed refresh, callers get the same error for this long instead of each one
/// queueing its own doomed request at Entra ID.
const FAILURE_HOLD: Duration = Duration::from_secs(2);

/// App-only access tokens for Graph, cached until shortly before they expire.
///
/// All callers share one cache behind an async mutex: when the token needs refreshing, the first
/// caller fetches it while the others wait for that one result, so N concurrent callers cause
/// exactly one token request. Share it with an `Arc`.
pub struct EntraAppTokens {
    http: reqwest::Client,
    config: EntraConfig,
    token_url: Url,
    credential: TokenCredential,
    retry: RetryPolicy,
    state: tokio::sync::Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    token: Option<CachedToken>,
    failure: Option<(Instant, GraphError)>,
}

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

impl fmt::Debug for EntraAppTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraAppTokens")
            .field("config", &self.config)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token_type: String,
    expires_in: NumberOrString,
    access_token: Secret,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    Text(String),
}

#[derive(Deserialize, Default)]
struct EntraErrorAnswer {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

impl EntraAppTokens {
    /// Tokens for `config`, fetched with `http` (see `visitbridge_http::build_client`).
    pub fn new(
        http: reqwest::Client,
        config: EntraConfig,
        credential: TokenCredential,
    ) -> Result<Self, GraphError> {
        let token_url = config.token_url()?;
        Ok(Self {
            http,
            config,
            token_url,
            credential,
            retry: RetryPolicy::default(),
            state: tokio::sync::Mutex::new(TokenState::default()),
        })
    }

    /// Replaces the retry policy of token requests (default: [`RetryPolicy::default`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The configuration (the app id is shown in access-policy instructions).
    pub fn config(&self) -> &EntraConfig {
        &self.config
    }

    /// A valid access token for Graph: the cached one, or a fresh one.
    pub async fn token(&self) -> Result<Secret, GraphError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(token) = &state.token
            && now < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        if let Some((at, error)) = &state.failure
            && now.duration_since(*at) < FAILURE_HOLD
        {
            return still_usable(&state.token).ok_or_else(|| error.clone());
        }
        match self.fetch().await {
            Ok(token) => {
                let value = token.value.clone();
                state.token = Some(token);
                state.failure = None;
                Ok(value)
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not refresh the graph access token");
                state.failure = Some((Instant::now(), error.clone()));
                // A token in its refresh margin is still good: better to use it than fail.
                still_usable(&state.token).ok_or(error)
            }
        }
    }

    /// Forgets `rejected` if it is the cached token (Graph answered 401 to it), so the next call
    /// fetches a new one. A newer token fetched meanwhile by another caller is kept.
    pub async fn invalidate(&self, rejected: &Secret) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().is_some_and(|t| &t.value == rejected) {
            state.token = None;
        }
    }

    async fn fetch(&self) -> Result<CachedToken, GraphError> {
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", self.config.client_id.clone()),
            ("scope", self.config.scope.clone()),
            ("grant_type", "client_credentials".to_owned()),
        ];
        match &self.credential {
            TokenCredential::ClientSecret(secret) => {
                form.push(("client_secret", secret.expose().to_owned()));
            }
            TokenCredential::Certificate(key) => {
                let assertion = key
                    .sign(
                        &self.config.client_id,
                        self.token_url.as_str(),
                        Duration::from_secs(300),
                    )
                    .map_err(|e| GraphError::Assertion {
                        what: "client assertion",
                        source: Arc::new(e),
                    })?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let started = Instant::now();
        let response = send_idempotent(&self.retry, || {
            self.http
                .post(self.token_url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .form(&form)
        })
        .await
        .map_err(|e| GraphError::from_send("entra id", e))?;
        let status = response.status();
        let retry_after = visitbridge_http::retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| GraphError::from_reqwest("entra id", 1, e))?;
        if status.is_success() {
            let answer: TokenAnswer = serde_json::from_slice(&body)
                .map_err(|e| GraphError::parse("the entra id token answer", &e))?;
            if !answer.token_type.eq_ignore_ascii_case("bearer") {
                return Err(GraphError::Parse {
                    what: "the entra id token answer",
                    detail: "token_type is not Bearer".into(),
                });
            }
            let lifetime = Duration::from_secs(match answer.expires_in {
                NumberOrString::Number(n) => n,
                NumberOrString::Text(t) => t.trim().parse().unwrap_or(0),
            });
            let margin = REFRESH_MARGIN.min(lifetime / 2);
            return Ok(CachedToken {
                value: answer.access_token,
                refresh_at: started + lifetime - margin,
                expires_at: started + lifetime,
            });
        }
        if status.as_u16() == 429 || (status.as_u16() == 503 && retry_after.is_some()) {
            return Err(GraphError::Throttled {
                retry_after,
                request_id: None,
            });
        }
        let answer: EntraErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
        Err(entra_error(status.as_u16(), answer))
    }
}

fn still_usable(token: &Option<CachedToken>) -> Option<Secret> {
    token
        .as_ref()
        .filter(|t| Instant::now() + Duration::from_secs(30) < t.expires_at)
        .map(|t| t.value.clone())
}

fn entra_error(status: u16, answer: EntraErrorAnswer) -> GraphError {
    let first_line = answer
        .error_description
        .lines()
        .next()
        .unwrap_or_default()
        .trim();
    let (code_in_text, rest) = match first_line.split_once(':') {
        Some((code, rest)) if is_aadsts(code.trim()) => (Some(code.trim().to_owned()), rest),
        _ => (None, first_line),
    };
    let aadsts_code = answer
        .error_codes
        .first()
        .map(|n| format!("AADSTS{n}"))
        .or(code_in_text);
    GraphError::Entra {
        status,
        error: if answer.error.is_empty() {
            "unknown_error".to_owned()
        } else {
            shorten(&answer.error, 60)
        },
        aadsts_code,
        description: shorten(rest, 200),
        trace_id: answer.trace_id.map(|t| shorten(&t, 64)),
        correlation_id: answer.correlation_id.map(|t| shorten(&t, 64)),
    }
}

fn is_aadsts(code: &str) -> bool {
    code.strip_prefix("AADSTS")
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_certificate_key_keeps_its_cause() {
        let cert = include_str!("../../testkit/fixtures/keys/client-cert.pem");
        let error = TokenCredential::certificate_from_pem("not a key", cert).expect_err("no key");
        assert!(
            matches!(
                error,
                GraphError::Assertion {
                    what: "certificate credential",
                    ..
                }
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.starts_with("invalid graph configuration or request: certificate credential: "),
            "{text}"
        );
        let cause = std::error::Error::source(&error).expect("the key error is kept");
        assert!(text.ends_with(&cause.to_string()), "{text}");
    }

    #[test]
    fn token_url_is_built_under_the_login_base() {
        let c = EntraConfig::new("tenant-1", "client-1");
        assert_eq!(
            c.token_url().unwrap().as_str(),
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        let c = c.with_login_base(Url::parse("http://127.0.0.1:9/prefix/").unwrap());
        assert_eq!(
            c.token_url().unwrap().as_str(),
            "http://127.0.0.1:9/prefix/tenant-1/oauth2/v2.0/token"
        );
        assert!(EntraConfig::new("a/b", "c").token_url().is_err());
    }

    #[test]
    fn entra_errors_keep_code_and_trace_but_only_the_first_line() {
        let answer: EntraErrorAnswer = serde_json::from_str(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\nTimestamp: 2026-03-05 18:00:00Z","error_codes":[7000215],"trace_id":"t-1","correlation_id":"c-1"}"#,
        )
        .unwrap();
        let e = entra_error(401, answer);
        let text = e.to_string();
        assert!(
            text.contains("AADSTS7000215: Invalid client secret provided."),
            "{text}"
        );
        assert!(text.contains("trace id t-1"));
        assert!(!text.contains("Timestamp"));
        assert_eq!(e.request_id(), Some("t-1"));
    }
}
