//! The Graph client: configuration, authenticated calls, retries, and Graph's error shape.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde::{Deserialize, de::DeserializeOwned};
use url::Url;
use visitbridge_http::{RetryPolicy, Secret, send_idempotent};

use crate::{
    error::{GraphError, shorten},
    ids::UserObjectId,
    meetings::MeetingPolicy,
    token::EntraAppTokens,
};

/// How we use Graph. Every field has a safe default; tests and the sandbox change `graph_base`.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Graph's root, `https://graph.microsoft.com/` (a loopback fake in tests).
    pub graph_base: Url,
    /// Retries of idempotent calls (and of throttled writes).
    pub retry: RetryPolicy,
    /// The meeting subject. It is visible to everyone in the meeting and kept by Microsoft, so it
    /// must never carry PHI: no patient name, no appointment reason.
    pub meeting_subject: String,
    /// The policy applied to every visit's meeting.
    pub policy: MeetingPolicy,
    /// Ask Graph for the virtual-appointment browser join URL for patients (needs
    /// `VirtualAppointment.Read.All`); when off or refused, patients get `joinWebUrl`.
    pub virtual_appointment_join_url: bool,
    /// Graph version for subscriptions: `beta`, the only one with online meeting call events.
    pub subscriptions_version: String,
    /// The most pages followed through `@odata.nextLink` in one listing.
    pub max_pages: u32,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            // A constant, valid URL: parsing cannot fail.
            graph_base: Url::parse("https://graph.microsoft.com/")
                .unwrap_or_else(|_| unreachable!()),
            retry: RetryPolicy::default(),
            meeting_subject: "Virtual visit".to_owned(),
            policy: MeetingPolicy::default(),
            virtual_appointment_join_url: true,
            subscriptions_version: "beta".to_owned(),
            max_pages: 20,
        }
    }
}

/// A Microsoft Graph client acting as our app (app-only tokens). Cheap to clone.
#[derive(Debug, Clone)]
pub struct GraphClient {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) config: GraphConfig,
    pub(crate) tokens: Arc<EntraAppTokens>,
}

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Idempotent: retried on 429, 5xx and timeouts, honouring `Retry-After`.
    Idempotent,
    /// Not idempotent: retried only on 429, which Graph sends before doing anything.
    ThrottledOnly,
}

/// One Graph call.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<&'a serde_json::Value>,
    pub(crate) retry: Retry,
    /// Set on calls made for an organiser, where a 403 can mean a missing access policy.
    pub(crate) organizer: Option<&'a UserObjectId>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(rename = "innerError", alias = "innererror", alias = "InnerError")]
    inner_error: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(rename = "request-id")]
    request_id: Option<String>,
}

impl GraphClient {
    /// A client over `http` (from `visitbridge_http::build_client`) with tokens from `tokens`.
    pub fn new(http: reqwest::Client, config: GraphConfig, tokens: Arc<EntraAppTokens>) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                config,
                tokens,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GraphConfig {
        &self.inner.config
    }

    /// `{graph_base}/{segments…}`, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, GraphError> {
        let mut url = self.inner.config.graph_base.clone();
        url.path_segments_mut()
            .map_err(|()| GraphError::Invalid("graph base url cannot have a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Checks that a `@odata.nextLink` stays on Graph's origin before we send our token there.
    pub(crate) fn next_link(&self, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|_| GraphError::Parse {
            what: "an @odata.nextLink",
            detail: "not an absolute url".into(),
        })?;
        if url.origin() != self.inner.config.graph_base.origin() {
            return Err(GraphError::Parse {
                what: "an @odata.nextLink",
                detail: "it points away from the graph base url".into(),
            });
        }
        Ok(url)
    }

    /// Sends `call` with a token; on a 401 refreshes the token once and tries again. Returns the
    /// successful response, or Graph's error as a [`GraphError`].
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<reqwest::Response, GraphError> {
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut refreshed = false;
        loop {
            let token = self.inner.tokens.token().await?;
            let response = self
                .send_with_token(&call, &token, &client_request_id)
                .await?;
            if response.status() == StatusCode::UNAUTHORIZED && !refreshed {
                // The token may have been revoked or the signing keys rolled: one fresh try.
                self.inner.tokens.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            if response.status().is_success() {
                return Ok(response);
            }
            return Err(self.error_from(response, call.organizer).await);
        }
    }

    /// Sends and reads a JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        what: &'static str,
    ) -> Result<(StatusCode, T), GraphError> {
        let response = self.send(call).await?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| GraphError::from_reqwest("microsoft graph", 1, e))?;
        let value = serde_json::from_slice(&body).map_err(|e| GraphError::parse(what, &e))?;
        Ok((status, value))
    }

    async fn send_with_token(
        &self,
        call: &Call<'_>,
        token: &Secret,
        client_request_id: &str,
    ) -> Result<reqwest::Response, GraphError> {
        let make = || {
            let mut request = self
                .inner
                .http
                .request(call.method.clone(), call.url.clone())
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .header("client-request-id", client_request_id)
                // Without it Graph reports `invited` and `organizationExcludingGuests` lobby scopes
                // as `unknownFutureValue`, and we would re-apply the policy on every launch.
                .header("Prefer", "include-unknown-enum-members");
            if let Some(body) = call.body {
                request = request.json(body);
            }
            request
        };
        let policy = &self.inner.config.retry;
        match call.retry {
            Retry::Idempotent => send_idempotent(policy, make)
                .await
                .map_err(|e| GraphError::from_send("microsoft graph", e)),
            Retry::ThrottledOnly => send_throttled_only(policy, make).await,
        }
    }

    async fn error_from(
        &self,
        response: reqwest::Response,
        organizer: Option<&UserObjectId>,
    ) -> GraphError {
        let status = response.status().as_u16();
        let retry_after = visitbridge_http::retry_after(response.headers());
        let header_request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| shorten(v, 64));
        let body = response.bytes().await.unwrap_or_default();
        let answer: Option<ErrorAnswer> = serde_json::from_slice(&body).ok();
        let (code, message, body_request_id) = match answer {
            Some(a) => (
                a.error.code,
                a.error.message,
                a.error.inner_error.and_then(|i| i.request_id),
            ),
            None => (String::new(), String::new(), None),
        };
        let request_id = header_request_id.or(body_request_id.map(|r| shorten(&r, 64)));
        if status == 429 || (status == 503 && retry_after.is_some()) {
            return GraphError::Throttled {
                retry_after,
                request_id,
            };
        }
        if status == 403
            && let Some(organizer) = organizer
            && is_access_policy_message(&message)
        {
            return GraphError::AccessPolicyMissing {
                app_id: self.inner.tokens.config().client_id.clone(),
                organizer: organizer.clone(),
                request_id,
            };
        }
        tracing::debug!(status, code = %code, request_id = ?request_id, "graph call failed");
        GraphError::Api {
            status,
            code: if code.is_empty() {
                StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error")
                    .to_owned()
            } else {
                shorten(&code, 60)
            },
            message: shorten(&message, 300),
            request_id,
        }
    }
}

/// Graph's two known wordings: "App <id> is not authorized to Create meeting on behalf of user
/// <id>" and "No application access policy found for this app".
fn is_access_policy_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("application access policy")
        || (m.contains("not authorized") && m.contains("on behalf of user"))
}

/// Sends a non-idempotent request; only a 429 (nothing was done) is waited out and retried.
async fn send_throttled_only<F>(
    policy: &RetryPolicy,
    mut make: F,
) -> Result<reqwest::Response, GraphError>
where
    F: FnMut() -> reqwest::RequestBuilder,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let response = make()
            .send()
            .await
            .map_err(|e| GraphError::from_reqwest("microsoft graph", attempt, e))?;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        let wait = policy.delay(attempt, visitbridge_http::retry_after(response.headers()));
        if attempt >= policy.max_attempts || started.elapsed() + wait > policy.max_total {
            return Ok(response);
        }
        tracing::debug!(
            attempt,
            wait_ms = wait.as_millis() as u64,
            "graph throttled a write"
        );
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_access_policy_wordings_are_recognised() {
        assert!(is_access_policy_message(
            "App 1 is not authorized to Create meeting on behalf of user 2"
        ));
        assert!(is_access_policy_message(
            "No Application Access Policy found for this app."
        ));
        assert!(!is_access_policy_message("Insufficient privileges"));
    }
}
