//! The one error type of FHIR calls, and decoding helpers that never echo response content.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::{auth::TokenSourceError, model::OperationOutcome};

/// Why a FHIR call failed.
///
/// Messages never contain a token or a response body; an [`OperationOutcome`]'s diagnostics (a
/// server's own message) may appear.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// The connection failed (refused, reset, TLS, body cut off).
    #[error("fhir server unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    /// The call (every try of it) exceeded its time limit.
    #[error("fhir call timed out after {attempts} attempt(s)")]
    Timeout {
        /// Tries made.
        attempts: u32,
    },
    /// 401: the access token is missing, expired or revoked. Get a new one; retrying as-is is
    /// pointless.
    #[error("the fhir server refused the access token (401)")]
    Unauthorized,
    /// 404 or 410 on a read.
    #[error("{resource_type}/{id} not found")]
    NotFound {
        /// The type read.
        resource_type: &'static str,
        /// The id read.
        id: String,
    },
    /// Any other unexpected status, with the server's OperationOutcome when it sent one.
    #[error("fhir server answered {status}{}", outcome_suffix(.outcome.as_ref()))]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The parsed OperationOutcome, if the body was one.
        outcome: Option<OperationOutcome>,
    },
    /// The answer was not the JSON we expected.
    #[error("could not decode {resource_type} at {path}: {message}")]
    Decode {
        /// The resource type being decoded.
        resource_type: String,
        /// The JSON path of the failure, e.g. `participant[0].actor.reference`.
        path: String,
        /// What was wrong (quoted values removed).
        message: String,
    },
    /// The answer was larger than the client accepts.
    #[error("fhir response larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The token source failed, or this client has none.
    #[error(transparent)]
    TokenSource(#[from] TokenSourceError),
    /// A URL was unusable: a bad base URL, or a paging link that leaves the server.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
}

fn outcome_suffix(outcome: Option<&OperationOutcome>) -> String {
    outcome.map(|o| format!(": {o}")).unwrap_or_default()
}

impl FhirError {
    /// The OperationOutcome the server sent with an error status.
    pub fn outcome(&self) -> Option<&OperationOutcome> {
        match self {
            Self::Status { outcome, .. } => outcome.as_ref(),
            _ => None,
        }
    }

    /// Epic's numeric codes from the OperationOutcome (e.g. `[4102]`), empty if none.
    pub fn epic_codes(&self) -> Vec<u32> {
        self.outcome()
            .map(OperationOutcome::epic_codes)
            .unwrap_or_default()
    }

    /// Whether trying again later may succeed (transport failures, timeouts, 429, 5xx): what an
    /// outbox needs to decide between "retry" and "give up and report".
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Timeout { .. } => true,
            Self::Status { status, .. } => visitbridge_http::is_retryable_status(*status),
            _ => false,
        }
    }

    /// The HTTP status, for status-based errors.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Unauthorized => Some(StatusCode::UNAUTHORIZED),
            Self::NotFound { .. } => Some(StatusCode::NOT_FOUND),
            _ => None,
        }
    }

    pub(crate) fn decode(
        resource_type: &str,
        error: &serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let (path, message) = decode_error_parts(error);
        Self::Decode {
            resource_type: resource_type.to_owned(),
            path,
            message,
        }
    }
}

/// Path and redacted message of a decode failure.
pub(crate) fn decode_error_parts(
    error: &serde_path_to_error::Error<serde_json::Error>,
) -> (String, String) {
    (error.path().to_string(), redact(&error.inner().to_string()))
}

/// Decodes `bytes` as `T`, reporting the JSON path of a failure.
pub(crate) fn decode_slice<T: DeserializeOwned>(
    bytes: &[u8],
    resource_type: &str,
) -> Result<T, FhirError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| FhirError::decode(resource_type, &e))?;
    de.end().map_err(|e| FhirError::Decode {
        resource_type: resource_type.to_owned(),
        path: ".".to_owned(),
        message: redact(&e.to_string()),
    })?;
    Ok(value)
}

/// Removes quoted values from a serde message: serde quotes the offending value (`invalid type:
/// string "Lopez, Camila", expected u32`), and that value may be patient data.
pub(crate) fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = &rest[start..=start];
        out.push_str(&rest[..=start]);
        out.push('…');
        let after = &rest[start + 1..];
        // The last matching quote, so escaped quotes inside a value cannot end the redaction.
        match after.rfind(quote) {
            Some(end) => {
                out.push_str(quote);
                rest = &after[end + 1..];
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_quoted_values() {
        let cases = [
            (
                r#"invalid type: string "Lopez, Camila", expected u32 at line 1 column 9"#,
                r#"invalid type: string "…", expected u32 at line 1 column 9"#,
            ),
            (
                "unknown variant `Camila`, expected `a`",
                "unknown variant `…`",
            ),
            (
                "expected value at line 1 column 1",
                "expected value at line 1 column 1",
            ),
            (r#"unterminated "Camila"#, r#"unterminated "…"#),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }
}
