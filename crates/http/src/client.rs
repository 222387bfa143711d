//! The one HTTP client configuration: timeouts on every call, no redirects, rustls.

use std::time::Duration;

/// Errors building the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TLS or client configuration was refused by reqwest.
    #[error("could not build the http client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Timeouts and identity for outbound calls.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time allowed to open a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// Time allowed for a whole call, body included.
    pub total_timeout: Duration,
    /// The `User-Agent` sent upstream.
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            user_agent: concat!("VisitBridge/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Builds the shared client: connect and total timeouts, no redirect following, rustls.
///
/// Redirects are off on purpose: a token endpoint or FHIR server that answers 302 to somewhere else
/// must not make us send a code, an assertion or a bearer token there.
pub fn build_client(config: &HttpConfig) -> Result<reqwest::Client, HttpError> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.total_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(config.user_agent.clone())
        .build()
        .map_err(HttpError::Build)
}
