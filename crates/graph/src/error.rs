//! The one error type of this crate: what went wrong with Entra ID, Graph or a notification.

use std::{fmt, sync::Arc, time::Duration};

use crate::ids::UserObjectId;

/// Everything that can go wrong talking to Entra ID and Graph, or reading a notification.
///
/// Variants keep the upstream's correlation ids (`request-id`, `trace_id`) so an operator can quote
/// them to Microsoft support. No variant ever holds an access token, a client secret, a
/// `clientState`, or a participant's display name: messages from parsers are reduced to a position
/// and a category so that a rejected payload never lands in a log.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Graph refused to act for the organiser because no application access policy grants our app
    /// the right to; the message tells the Teams administrator what to run.
    #[error("{}", AccessPolicyHelp { app_id, organizer, request_id: request_id.as_deref() })]
    AccessPolicyMissing {
        /// Our app (client) id in Entra ID.
        app_id: String,
        /// The organiser the meeting was for.
        organizer: UserObjectId,
        /// Graph's `request-id`.
        request_id: Option<String>,
    },
    /// Graph (or Entra ID) kept answering 429/503 within our retry budget.
    #[error(
        "throttled by microsoft graph{}{}",
        retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default(),
        RequestId(request_id.as_deref())
    )]
    Throttled {
        /// The last `Retry-After` Graph asked for.
        retry_after: Option<Duration>,
        /// Graph's `request-id` of the last answer.
        request_id: Option<String>,
    },
    /// Graph answered with an error.
    #[error("microsoft graph answered {status} {code}: {message}{}", RequestId(request_id.as_deref()))]
    Api {
        /// HTTP status.
        status: u16,
        /// Graph's `error.code` (e.g. `Forbidden`, `BadRequest`).
        code: String,
        /// Graph's `error.message`, shortened.
        message: String,
        /// Graph's `request-id`.
        request_id: Option<String>,
    },
    /// Entra ID refused to issue an app token.
    #[error(
        "entra id refused the token request ({status} {error}): {}{description} (trace id {}, correlation id {})",
        aadsts_code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(),
        trace_id.as_deref().unwrap_or("none"),
        correlation_id.as_deref().unwrap_or("none")
    )]
    Entra {
        /// HTTP status.
        status: u16,
        /// The OAuth `error` (e.g. `invalid_client`).
        error: String,
        /// The `AADSTS…` code, e.g. `AADSTS7000215` (invalid client secret).
        aadsts_code: Option<String>,
        /// The first line of `error_description`, without the code, shortened.
        description: String,
        /// Entra's `trace_id`.
        trace_id: Option<String>,
        /// Entra's `correlation_id`.
        correlation_id: Option<String>,
    },
    /// The connection failed (refused, reset, TLS) on every try.
    #[error("could not reach {upstream} after {attempts} attempt(s): {source}")]
    Transport {
        /// `entra id` or `microsoft graph`.
        upstream: &'static str,
        /// Tries made.
        attempts: u32,
        /// The last transport error (reqwest errors carry no headers, so no token).
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// Every try timed out.
    #[error("{upstream} did not answer in time after {attempts} attempt(s)")]
    Timeout {
        /// `entra id` or `microsoft graph`.
        upstream: &'static str,
        /// Tries made.
        attempts: u32,
    },
    /// Encrypted notification content could not be verified or decrypted.
    #[error("could not decrypt notification content: {0}")]
    Decrypt(&'static str),
    /// A notification carried a `clientState` other than ours: it did not come from our
    /// subscription.
    #[error("notification clientState does not match")]
    ClientStateMismatch,
    /// With encryption configured, a change notification could not be shown to come from
    /// Microsoft Graph: plain `resourceData` instead of `encryptedContent`, or no valid
    /// `validationTokens`. Treated like a forged `clientState`.
    #[error("notification is not verifiably from microsoft graph: {0}")]
    UnverifiedNotification(&'static str),
    /// A payload from Entra ID or Graph (or a notification) did not have the documented shape.
    #[error("could not read {what}: {detail}")]
    Parse {
        /// What was being read.
        what: &'static str,
        /// Where and why, without the offending values.
        detail: String,
    },
    /// The configuration or the request is not usable (a URL with a path, a PEM that is not
    /// one, end before start).
    #[error("invalid graph configuration or request: {0}")]
    Invalid(String),
    /// A URL of the configuration does not parse.
    #[error("invalid graph configuration or request: {what}: {source}")]
    InvalidUrl {
        /// Which URL.
        what: &'static str,
        /// The parse failure.
        #[source]
        source: url::ParseError,
    },
    /// The certificate credential's key could not be loaded, or a client assertion not signed.
    #[error("invalid graph configuration or request: {what}: {source}")]
    Assertion {
        /// `certificate credential` or `client assertion`.
        what: &'static str,
        /// The key or signing failure.
        #[source]
        source: Arc<visitbridge_http::AssertionError>,
    },
}

impl GraphError {
    /// Graph's (or Entra's) correlation id for this failure, when there is one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::AccessPolicyMissing { request_id, .. }
            | Self::Throttled { request_id, .. }
            | Self::Api { request_id, .. } => request_id.as_deref(),
            Self::Entra { trace_id, .. } => trace_id.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status Graph or Entra answered with, when the failure is such an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::AccessPolicyMissing { .. } => Some(403),
            Self::Api { status, .. } | Self::Entra { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (throttling, timeouts, transport, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Throttled { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Api { status, .. } | Self::Entra { status, .. } => *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn parse(what: &'static str, error: &serde_json::Error) -> Self {
        // serde_json's own message quotes the offending value (which may be a display name):
        // keep only the category and the position.
        Self::Parse {
            what,
            detail: format!(
                "{:?} error at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ),
        }
    }

    pub(crate) fn from_send(upstream: &'static str, error: visitbridge_http::SendError) -> Self {
        match error {
            visitbridge_http::SendError::Timeout { attempts } => {
                Self::Timeout { upstream, attempts }
            }
            visitbridge_http::SendError::Transport { attempts, source } => Self::Transport {
                upstream,
                attempts,
                source: Arc::new(source),
            },
        }
    }

    /// The identity platform's keys could not be fetched (for validation tokens).
    pub(crate) fn from_jwks(error: visitbridge_http::JwksError) -> Self {
        const UPSTREAM: &str = "entra id";
        match error {
            visitbridge_http::JwksError::Send { source, .. } => Self::from_send(UPSTREAM, source),
            visitbridge_http::JwksError::Timeout { .. } => Self::Timeout {
                upstream: UPSTREAM,
                attempts: 1,
            },
            visitbridge_http::JwksError::Status { status, .. } => Self::Api {
                status,
                code: "JwksUnavailable".into(),
                message: "the identity platform keys could not be fetched".into(),
                request_id: None,
            },
            visitbridge_http::JwksError::Body { source, .. } => {
                Self::from_reqwest(UPSTREAM, 1, source)
            }
            visitbridge_http::JwksError::Malformed { source, .. } => {
                Self::parse("the identity platform keys", source.inner())
            }
        }
    }

    pub(crate) fn from_reqwest(
        upstream: &'static str,
        attempts: u32,
        error: reqwest::Error,
    ) -> Self {
        if error.is_timeout() {
            Self::Timeout { upstream, attempts }
        } else {
            Self::Transport {
                upstream,
                attempts,
                source: Arc::new(error),
            }
        }
    }
}

struct RequestId<'a>(Option<&'a str>);

impl fmt::Display for RequestId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (request-id {id})"),
            None => Ok(()),
        }
    }
}

/// The operator's instructions for a missing application access policy.
struct AccessPolicyHelp<'a> {
    app_id: &'a str,
    organizer: &'a UserObjectId,
    request_id: Option<&'a str>,
}

impl fmt::Display for AccessPolicyHelp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            app_id,
            organizer,
            request_id,
        } = self;
        write!(
            f,
            "microsoft graph refused to manage meetings of organizer {organizer} for app {app_id} \
             because no application access policy allows it{}; a teams administrator must run in \
             powershell (MicrosoftTeams module): \
             New-CsApplicationAccessPolicy -Identity VisitBridge-Policy -AppIds \"{app_id}\" -Description \"VisitBridge\" \
             then Grant-CsApplicationAccessPolicy -PolicyName VisitBridge-Policy -Identity \"{organizer}\" \
             (or Grant-CsApplicationAccessPolicy -PolicyName VisitBridge-Policy -Global for every user); \
             the grant can take up to 30 minutes to take effect",
            RequestId(*request_id)
        )
    }
}

/// Shortens upstream text for an error message, on a character boundary.
pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_policy_error_tells_the_operator_what_to_run() {
        let e = GraphError::AccessPolicyMissing {
            app_id: "app-123".into(),
            organizer: UserObjectId::new("oid-9"),
            request_id: Some("req-1".into()),
        };
        let text = e.to_string();
        assert!(text.contains(
            "New-CsApplicationAccessPolicy -Identity VisitBridge-Policy -AppIds \"app-123\""
        ));
        assert!(text.contains(
            "Grant-CsApplicationAccessPolicy -PolicyName VisitBridge-Policy -Identity \"oid-9\""
        ));
        assert!(text.contains("-Global"));
        assert!(text.contains("30 minutes"));
        assert!(text.contains("req-1"));
        assert!(!text.ends_with('.'));
    }

    #[test]
    fn parse_errors_do_not_quote_the_payload() {
        let err = serde_json::from_str::<u32>("\"Camila Lopez\"").unwrap_err();
        let e = GraphError::parse("notification", &err);
        assert!(!e.to_string().contains("Camila"), "{e}");
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten(" ok ", 5), "ok");
    }
}
