//! Where the bearer token for FHIR calls comes from.

use visitbridge_http::Secret;

/// Why a [`TokenSource`] could not provide a token.
///
/// The message must describe the failure without the token, a client secret or an assertion.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no access token: {message}")]
pub struct TokenSourceError {
    /// What went wrong (no secrets).
    pub message: String,
}

impl TokenSourceError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Provides the access token sent as `Authorization: Bearer …` on every FHIR call.
///
/// A SMART user token, a backend-services token (fetched and cached by the SMART crate) and a
/// static token all plug in here. The client asks once per call (not per retry), so an
/// implementation may refresh a token that is about to expire.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid access token.
    async fn access_token(&self) -> Result<Secret, TokenSourceError>;
}

/// A fixed token: for tests, and for callers that manage expiry themselves.
#[derive(Debug, Clone)]
pub struct StaticToken(pub Secret);

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn access_token(&self) -> Result<Secret, TokenSourceError> {
        Ok(self.0.clone())
    }
}
