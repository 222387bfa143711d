//! Where the bearer token for FHIR calls comes from.

use visitbridge_http::Secret;

/// Why a [`TokenSource`] could not provide a token: what was being done, and the error that
/// stopped it (kept as the [`source`](std::error::Error::source) and shown after the message).
///
/// Neither the message nor the cause may contain the token, a client secret or an assertion. The
/// cause's text is part of this error's own, so a log of the whole chain shows it twice.
#[derive(Debug, thiserror::Error)]
#[error(
    "no access token: {message}{}",
    .source.as_ref().map(|cause| format!(": {cause}")).unwrap_or_default()
)]
pub struct TokenSourceError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TokenSourceError {
    /// An error with `message` and no underlying cause.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with `message` caused by `source` (e.g. the token endpoint's refusal).
    pub fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// What went wrong (no secrets); the cause is the error's `source`.
    pub fn message(&self) -> &str {
        &self.message
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
