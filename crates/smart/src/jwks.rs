//! JSON Web Key Sets: the policy of the issuer keys we verify id_tokens with (the cache itself is
//! `visitbridge_http::JwksCache`), and our own public keys rendered for publication.

use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use visitbridge_http::{ClientAssertionKey, JwksCache, JwksError, JwksPolicy, RetryPolicy};

use crate::{
    SmartError,
    error::{endpoint_label, json_reason, send_error, transport_error},
};

/// Our public keys as a JWKS document (`{"keys": [...]}`), for the URL the EHR fetches them from.
///
/// Epic requires a hosted JWKS URL for backend services in customer environments; serve
/// [`Jwks::to_json`] there (the launch service does). Only public parameters are included.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// The public halves of `keys`, each with its `kid`, `alg` and `use: sig`.
    pub fn from_keys(keys: &[ClientAssertionKey]) -> Result<Self, SmartError> {
        let keys = keys
            .iter()
            .map(ClientAssertionKey::public_jwk)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "keys": self.keys })
    }

    /// The keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

/// The issuers' signing keys (`visitbridge_http::JwksCache`) with the SMART client's policy: a
/// day's cache, `retry` on each fetch, any asymmetric algorithm, and an unknown `kid` refetching
/// at most every `min_refetch` (default one minute) so forged tokens cannot make us hammer the
/// issuer. A failed fetch is reported; the next launch tries again.
pub(crate) fn issuer_keys(
    http: reqwest::Client,
    retry: RetryPolicy,
    min_refetch: Option<Duration>,
) -> JwksCache {
    let defaults = JwksPolicy::default();
    JwksCache::new(
        http,
        JwksPolicy {
            retry,
            min_refetch_interval: min_refetch.unwrap_or(defaults.min_refetch_interval),
            ..defaults
        },
    )
}

/// A failed fetch of an issuer's keys, as the crate reports upstream failures.
pub(crate) fn fetch_error(error: JwksError) -> SmartError {
    match error {
        JwksError::Send { endpoint, source } => send_error(&endpoint, source),
        JwksError::Timeout { endpoint, .. } => SmartError::Timeout {
            endpoint: endpoint_label(&endpoint),
        },
        JwksError::Status { endpoint, status } => SmartError::UpstreamStatus {
            endpoint: endpoint_label(&endpoint),
            status,
        },
        JwksError::Body { endpoint, source } => transport_error(&endpoint, source),
        JwksError::Malformed { endpoint, source } => SmartError::MalformedResponse {
            endpoint: endpoint_label(&endpoint),
            reason: json_reason(&source),
        },
    }
}
