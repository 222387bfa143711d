//! Token endpoint calls through the `oauth2` crate: code exchange and client credentials, with
//! `client_secret_basic`, `client_secret_post` or `private_key_jwt` client authentication.

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
    basic::{
        BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
        BasicTokenType,
    },
};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::Value;
use url::Url;
use visitbridge_http::{ClientAssertionKey, OAuthHttpClient, RetryPolicy, Secret};

use crate::{
    SmartError,
    error::{endpoint_label, json_reason},
};

/// How we authenticate to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic`: the secret in an HTTP Basic `Authorization` header.
    SecretBasic(Secret),
    /// `client_secret_post`: the secret in the form body.
    SecretPost(Secret),
    /// `private_key_jwt`: a signed client assertion (RFC 7523), fresh for every request, with a
    /// unique `jti` and at most five minutes of validity.
    PrivateKeyJwt(ClientAssertionKey),
    /// A public client (`none`): only `client_id` in the body, protected by PKCE alone. For
    /// native and command-line apps such as the Epic sandbox example; the launch service itself
    /// is always a confidential client.
    Public,
}

impl ClientAuth {
    /// The `token_endpoint_auth_methods_supported` name of this method.
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::SecretBasic(_) => "client_secret_basic",
            Self::SecretPost(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
            Self::Public => "none",
        }
    }
}

/// The fields beyond RFC 6749's: SMART launch context, `id_token`, Epic's additions.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExtraFields {
    #[serde(flatten)]
    pub(crate) fields: BTreeMap<String, Value>,
}

impl fmt::Debug for ExtraFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fields.keys()).finish()
    }
}

impl ExtraTokenFields for ExtraFields {}

type TokenResponseBody = StandardTokenResponse<ExtraFields, BasicTokenType>;

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponseBody,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

type OAuthError = RequestTokenError<oauth2::HttpClientError<reqwest::Error>, BasicErrorResponse>;

/// A successful token answer, secrets wrapped.
pub(crate) struct TokenAnswer {
    pub(crate) access_token: Secret,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) scope: Vec<String>,
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) id_token: Option<Secret>,
    /// Every other field (launch context and vendor additions), `id_token` removed.
    pub(crate) extra: BTreeMap<String, Value>,
}

/// When the server omits `expires_in`: assume a short life rather than a long one.
const DEFAULT_EXPIRES_IN: u64 = 300;
/// A bound on absurd `expires_in` values (one day).
const MAX_EXPIRES_IN: u64 = 86_400;

/// What is being asked for.
pub(crate) enum Grant<'a> {
    AuthorizationCode {
        code: &'a Secret,
        redirect_uri: &'a Url,
        verifier: &'a Secret,
    },
    ClientCredentials {
        scope: &'a str,
    },
}

impl Grant<'_> {
    /// Which statuses may be retried. A code exchange is retried only when the server said it did
    /// not process the request (429, or 503 with `Retry-After`): after a 500 or a timeout the code
    /// may already be spent. Client credentials are safe to ask for again.
    fn may_retry(&self, status: StatusCode, has_retry_after: bool) -> bool {
        match self {
            Self::AuthorizationCode { .. } => {
                status == StatusCode::TOO_MANY_REQUESTS
                    || (status == StatusCode::SERVICE_UNAVAILABLE && has_retry_after)
            }
            Self::ClientCredentials { .. } => visitbridge_http::is_retryable_status(status),
        }
    }
}

/// One client registration at one token endpoint.
pub(crate) struct TokenEndpoint<'a> {
    pub(crate) http: &'a OAuthHttpClient,
    pub(crate) url: &'a Url,
    pub(crate) client_id: &'a str,
    pub(crate) auth: &'a ClientAuth,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) retry: &'a RetryPolicy,
}

#[derive(Clone, Copy)]
struct Seen {
    status: StatusCode,
    retry_after: Option<Duration>,
}

/// Passes requests to [`OAuthHttpClient`], adding our extra headers and remembering the status
/// and `Retry-After` of the answer (the `oauth2` crate's errors do not carry them).
struct Capturing<'a> {
    inner: &'a OAuthHttpClient,
    headers: &'a HeaderMap,
    seen: Arc<Mutex<Option<Seen>>>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Capturing<'_> {
    type Error = oauth2::HttpClientError<reqwest::Error>;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, mut request: oauth2::HttpRequest) -> Self::Future {
        for (name, value) in self.headers {
            request.headers_mut().insert(name, value.clone());
        }
        Box::pin(async move {
            let response = self.inner.call(request).await?;
            let seen = Seen {
                status: response.status(),
                retry_after: visitbridge_http::retry_after(response.headers()),
            };
            if let Ok(mut slot) = self.seen.lock() {
                *slot = Some(seen);
            }
            Ok(response)
        })
    }
}

impl TokenEndpoint<'_> {
    fn client(&self) -> OAuthClient {
        let client = oauth2::Client::new(ClientId::new(self.client_id.to_owned()))
            .set_token_uri(TokenUrl::from_url(self.url.clone()));
        match self.auth {
            ClientAuth::SecretBasic(secret) => client
                .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
                .set_auth_type(AuthType::BasicAuth),
            ClientAuth::SecretPost(secret) => client
                .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
                .set_auth_type(AuthType::RequestBody),
            ClientAuth::PrivateKeyJwt(_) | ClientAuth::Public => {
                client.set_auth_type(AuthType::RequestBody)
            }
        }
    }

    fn assertion(&self) -> Result<Option<String>, SmartError> {
        match self.auth {
            ClientAuth::PrivateKeyJwt(key) => Ok(Some(key.sign(
                self.client_id,
                self.url.as_str(),
                Duration::from_secs(300),
            )?)),
            _ => Ok(None),
        }
    }

    async fn once(
        &self,
        grant: &Grant<'_>,
        http: &Capturing<'_>,
    ) -> Result<Result<TokenResponseBody, OAuthError>, SmartError> {
        let client = self.client();
        // A new assertion for every try: a server may remember the `jti` of a refused one.
        let assertion = self.assertion()?;
        let result = match grant {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                verifier,
            } => {
                let mut request = client
                    .exchange_code(AuthorizationCode::new(code.expose().to_owned()))
                    .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()))
                    .set_redirect_uri(std::borrow::Cow::Owned(RedirectUrl::from_url(
                        (*redirect_uri).clone(),
                    )));
                if let Some(assertion) = &assertion {
                    request = request
                        .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                        .add_extra_param("client_assertion", assertion.clone());
                }
                request.request_async(http).await
            }
            Grant::ClientCredentials { scope } => {
                let mut request = client.exchange_client_credentials();
                if !scope.is_empty() {
                    request = request.add_scope(Scope::new((*scope).to_owned()));
                }
                if let Some(assertion) = &assertion {
                    request = request
                        .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                        .add_extra_param("client_assertion", assertion.clone());
                }
                request.request_async(http).await
            }
        };
        Ok(result)
    }

    /// Asks for a token, retrying within the policy when the server says it is overloaded.
    pub(crate) async fn request(&self, grant: Grant<'_>) -> Result<TokenAnswer, SmartError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let seen = Arc::new(Mutex::new(None));
            let http = Capturing {
                inner: self.http,
                headers: self.headers,
                seen: seen.clone(),
            };
            let outcome = self.once(&grant, &http).await?;
            let seen: Option<Seen> = seen.lock().ok().and_then(|s| *s);
            let error = match outcome {
                Ok(body) => return Ok(answer(body)),
                Err(error) => error,
            };
            if let Some(seen) = seen
                && seen.status != StatusCode::OK
                && grant.may_retry(seen.status, seen.retry_after.is_some())
            {
                let wait = self.retry.delay(attempt, seen.retry_after);
                let out_of_budget = started.elapsed() + wait > self.retry.max_total;
                if attempt >= self.retry.max_attempts || out_of_budget {
                    return Err(self.give_up(error, seen));
                }
                tracing::debug!(
                    attempt,
                    status = seen.status.as_u16(),
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "token endpoint asked us to wait"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(self.map_error(error, seen));
        }
    }

    fn give_up(&self, error: OAuthError, seen: Seen) -> SmartError {
        if seen.status == StatusCode::TOO_MANY_REQUESTS
            || seen.status == StatusCode::SERVICE_UNAVAILABLE
        {
            SmartError::Throttled {
                endpoint: endpoint_label(self.url),
                retry_after: seen.retry_after,
            }
        } else {
            self.map_error(error, Some(seen))
        }
    }

    fn map_error(&self, error: OAuthError, seen: Option<Seen>) -> SmartError {
        let endpoint = endpoint_label(self.url);
        match error {
            RequestTokenError::ServerResponse(e) => SmartError::TokenEndpoint {
                error: e.error().as_ref().chars().take(100).collect(),
                description: e.error_description().map(|d| d.chars().take(300).collect()),
            },
            RequestTokenError::Request(oauth2::HttpClientError::Reqwest(e)) => {
                crate::error::transport_error(self.url, *e)
            }
            RequestTokenError::Request(other) => SmartError::Transport {
                endpoint,
                reason: other.to_string(),
                source: Some(Box::new(other)),
            },
            RequestTokenError::Parse(e, _body) => match seen {
                Some(s) if s.status != StatusCode::OK => SmartError::UpstreamStatus {
                    endpoint,
                    status: s.status.as_u16(),
                },
                _ => SmartError::MalformedResponse {
                    endpoint,
                    reason: json_reason(&e),
                },
            },
            RequestTokenError::Other(reason) => match seen {
                Some(s) if s.status != StatusCode::OK => SmartError::UpstreamStatus {
                    endpoint,
                    status: s.status.as_u16(),
                },
                // The crate's own messages (wrong content type, empty body) carry no secrets.
                _ => SmartError::MalformedResponse { endpoint, reason },
            },
        }
    }
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn answer(body: TokenResponseBody) -> TokenAnswer {
    let expires_in = body
        .expires_in()
        .map_or(DEFAULT_EXPIRES_IN, |d| d.as_secs())
        .min(MAX_EXPIRES_IN);
    let expires_at = Utc::now() + chrono::Duration::seconds(i64::try_from(expires_in).unwrap_or(0));
    let mut extra = body.extra_fields().fields.clone();
    let id_token = match extra.remove("id_token") {
        Some(Value::String(s)) => Some(Secret::new(s)),
        _ => None,
    };
    TokenAnswer {
        access_token: Secret::new(body.access_token().secret().clone()),
        expires_at,
        scope: body
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        refresh_token: body
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone())),
        id_token,
        extra,
    }
}
