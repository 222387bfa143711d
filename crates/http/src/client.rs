//! The one HTTP client configuration: timeouts on every call, no redirects, rustls.

use std::time::Duration;

use serde::Deserialize;

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

/// Timeouts of outbound calls as an operator writes them in a service's configuration file
/// (`[http]`, whole seconds); [`HttpTimeouts::http_config`] turns them into an [`HttpConfig`].
///
/// ```
/// use visitbridge_http::HttpTimeouts;
///
/// let config = HttpTimeouts::default().http_config("VisitBridge-Example/1");
/// assert_eq!(config.connect_timeout.as_secs(), 5);
/// assert_eq!(config.total_timeout.as_secs(), 15);
/// ```
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTimeouts {
    /// Seconds to open a connection.
    #[serde(default = "default_connect")]
    pub connect_timeout_secs: u64,
    /// Seconds for a whole call.
    #[serde(default = "default_total")]
    pub total_timeout_secs: u64,
}

fn default_connect() -> u64 {
    5
}

fn default_total() -> u64 {
    15
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect_timeout_secs: default_connect(),
            total_timeout_secs: default_total(),
        }
    }
}

impl HttpTimeouts {
    /// The shared client configuration with these timeouts, sending `user_agent` (each service
    /// names itself).
    pub fn http_config(&self, user_agent: impl Into<String>) -> HttpConfig {
        HttpConfig {
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            total_timeout: Duration::from_secs(self.total_timeout_secs),
            user_agent: user_agent.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_default_per_field_and_refuse_unknown_keys() {
        let all: HttpTimeouts = serde_json::from_str("{}").unwrap();
        assert_eq!((all.connect_timeout_secs, all.total_timeout_secs), (5, 15));
        let default = HttpTimeouts::default();
        assert_eq!(
            (default.connect_timeout_secs, default.total_timeout_secs),
            (5, 15)
        );
        let some: HttpTimeouts = serde_json::from_str(r#"{"total_timeout_secs": 40}"#).unwrap();
        assert_eq!(
            (some.connect_timeout_secs, some.total_timeout_secs),
            (5, 40)
        );
        let err = serde_json::from_str::<HttpTimeouts>(r#"{"read_timeout_secs": 1}"#).unwrap_err();
        assert!(err.to_string().contains("read_timeout_secs"), "{err}");
    }

    #[test]
    fn timeouts_become_a_client_configuration_with_the_given_user_agent() {
        let timeouts = HttpTimeouts {
            connect_timeout_secs: 2,
            total_timeout_secs: 9,
        };
        let config = timeouts.http_config("VisitBridge-Test/0.1");
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.total_timeout, Duration::from_secs(9));
        assert_eq!(config.user_agent, "VisitBridge-Test/0.1");
        build_client(&config).unwrap();
    }
}
