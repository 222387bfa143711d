//! The one error type of the crate: what went wrong in a launch, a sign-in or a token request.

use std::time::Duration;

use visitbridge_http::AssertionError;

/// An error from discovery, a launch, a token request or id_token validation.
///
/// Messages never contain an access token, an authorization code, a PKCE verifier, a client secret
/// or an assertion: only endpoints (which carry no secrets), OAuth error codes and short reasons.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmartError {
    /// The launch's `iss` is not an approved configuration; nothing was sent to it.
    #[error("the issuer {iss} is not approved: approve its configuration before launching from it")]
    IssuerNotApproved {
        /// The issuer as the launch gave it (truncated).
        iss: String,
    },
    /// The issuer's SMART (or OpenID) configuration could not be read or is unusable.
    #[error("discovery failed for {issuer}: {reason}")]
    Discovery {
        /// The issuer whose configuration was requested.
        issuer: String,
        /// Why it failed.
        reason: String,
    },
    /// The authorization server does not advertise PKCE `S256`, so it is refused.
    #[error(
        "the authorization server of {issuer} does not advertise pkce s256: it cannot be used for launches"
    )]
    S256NotSupported {
        /// The issuer that was refused.
        issuer: String,
    },
    /// The callback's `state` matches no pending launch (forged, mixed up, or already used).
    #[error("the launch state is unknown or was already used: start the launch again from the ehr")]
    StateUnknownOrUsed,
    /// The callback's query repeats `code`, `state`, `error` or `error_description`: which one
    /// is meant is ambiguous (one part of a service may read the first, another the last), so it
    /// is refused outright.
    #[error("the callback is malformed: it repeats the {parameter} parameter")]
    MalformedCallback {
        /// The repeated parameter's name.
        parameter: &'static str,
    },
    /// The pending launch is older than the allowed time.
    #[error("the launch expired before the callback arrived: start the launch again from the ehr")]
    LaunchExpired,
    /// The authorization server sent the browser back with an OAuth error instead of a code.
    #[error("the authorization server refused the authorization: {error}{}", describe(.description))]
    AuthorizationDenied {
        /// The OAuth `error` code (e.g. `access_denied`).
        error: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// The token endpoint answered with an OAuth error JSON.
    #[error("the token endpoint refused the request: {error}{}", describe(.description))]
    TokenEndpoint {
        /// The OAuth `error` code (e.g. `invalid_grant`).
        error: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// The id_token failed validation; nothing from it was trusted.
    #[error("the id_token was rejected: {0}")]
    IdToken(String),
    /// The upstream kept answering 429 (or 503) past our retry budget.
    #[error("{endpoint} is throttling requests: try again later")]
    Throttled {
        /// The endpoint (no query string).
        endpoint: String,
        /// The wait the server asked for, if it said.
        retry_after: Option<Duration>,
    },
    /// The upstream answered an unexpected HTTP status without a usable body.
    #[error("{endpoint} answered http {status}")]
    UpstreamStatus {
        /// The endpoint (no query string).
        endpoint: String,
        /// The HTTP status.
        status: u16,
    },
    /// The upstream answered something that is not the JSON we expect.
    #[error("malformed answer from {endpoint}: {reason}")]
    MalformedResponse {
        /// The endpoint (no query string).
        endpoint: String,
        /// What was wrong (never the body itself).
        reason: String,
    },
    /// The upstream did not answer in time.
    #[error("{endpoint} did not answer in time")]
    Timeout {
        /// The endpoint (no query string).
        endpoint: String,
    },
    /// The connection to the upstream failed.
    #[error("could not reach {endpoint}: {reason}")]
    Transport {
        /// The endpoint (no query string).
        endpoint: String,
        /// The transport failure, in short.
        reason: String,
        /// The failure itself (its URL removed), for the logs.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The client configuration is unusable (missing endpoint, bad header value).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A URL of the configuration, or one an issuer published, does not parse.
    #[error("invalid client configuration: {what}: {source}")]
    ConfigUrl {
        /// Which URL (and, for one from the configuration, its text).
        what: String,
        /// The parse failure.
        #[source]
        source: url::ParseError,
    },
    /// An approved issuer is not usable as a FHIR base URL.
    #[error("invalid client configuration: {source}")]
    FhirBase {
        /// Why it is not.
        #[source]
        source: visitbridge_fhir::FhirError,
    },
    /// Signing a client assertion or drawing randomness failed.
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    /// The pending-launch store failed.
    #[error("the pending launch store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A user access token was asked for after it expired.
    #[error("the access token has expired: launch again to get a new one")]
    TokenExpired,
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(d) if !d.is_empty() => format!(" ({d})"),
        _ => String::new(),
    }
}

/// The endpoint as shown in errors: scheme, host, port and path only.
pub(crate) fn endpoint_label(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Maps a reqwest failure (no response) to our error.
pub(crate) fn transport_error(endpoint: &url::Url, error: reqwest::Error) -> SmartError {
    let endpoint = endpoint_label(endpoint);
    if error.is_timeout() {
        SmartError::Timeout { endpoint }
    } else {
        let error = error.without_url();
        let reason = if error.is_connect() {
            "connection failed".to_owned()
        } else {
            error.to_string()
        };
        SmartError::Transport {
            endpoint,
            reason,
            source: Some(Box::new(error)),
        }
    }
}

/// Maps a JSON parse failure to a reason that names the place, never the content.
pub(crate) fn json_reason(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let kind = match error.inner().classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not valid json",
        serde_json::error::Category::Data => "unexpected field type or missing field",
        serde_json::error::Category::Eof => "truncated json",
    };
    let path = error.path().to_string();
    if path == "." {
        kind.to_owned()
    } else {
        format!("{kind} at `{path}`")
    }
}

/// Maps a failed idempotent send (after its retries) to our error.
pub(crate) fn send_error(endpoint: &url::Url, error: visitbridge_http::SendError) -> SmartError {
    match error {
        visitbridge_http::SendError::Timeout { .. } => SmartError::Timeout {
            endpoint: endpoint_label(endpoint),
        },
        visitbridge_http::SendError::Transport { source, .. } => transport_error(endpoint, source),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn configuration_errors_keep_their_cause_and_their_message() {
        let cause = url::Url::parse("not a url").expect_err("not a url");
        let error = SmartError::ConfigUrl {
            what: "bad issuer url".to_owned(),
            source: cause,
        };
        assert_eq!(
            error.to_string(),
            format!("invalid client configuration: bad issuer url: {cause}")
        );
        assert!(error.source().is_some());

        let cause = visitbridge_fhir::FhirBaseUrl::parse("ftp://ehr.example/").expect_err("ftp");
        let shown = cause.to_string();
        let error = SmartError::FhirBase { source: cause };
        assert_eq!(
            error.to_string(),
            format!("invalid client configuration: {shown}")
        );
        assert!(error.source().is_some());
    }
}
