//! JSON Web Key Sets: the issuer's keys we verify id_tokens with (cached, refetched on rotation),
//! and our own public keys rendered for publication.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use url::Url;
use visitbridge_http::{ClientAssertionKey, RetryPolicy, send_idempotent};

use crate::{
    SmartError,
    error::{endpoint_label, json_reason, send_error},
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

struct Entry {
    keys: Arc<Vec<Jwk>>,
    fetched_at: Instant,
}

/// The issuers' signing keys, by `jwks_uri`.
///
/// Keys are kept for `ttl`; a token whose `kid` is unknown triggers one refetch (the issuer may
/// have rotated its keys), but not more often than `min_refetch`, so forged tokens with random
/// `kid`s cannot make us hammer the issuer.
pub(crate) struct JwksCache {
    http: reqwest::Client,
    retry: RetryPolicy,
    ttl: Duration,
    min_refetch: Duration,
    entries: RwLock<HashMap<String, Entry>>,
}

impl JwksCache {
    pub(crate) fn new(http: reqwest::Client, retry: RetryPolicy) -> Self {
        Self {
            http,
            retry,
            ttl: Duration::from_secs(24 * 3600),
            min_refetch: Duration::from_secs(60),
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn set_min_refetch(&mut self, interval: Duration) {
        self.min_refetch = interval;
    }

    fn cached(&self, uri: &Url) -> Option<(Arc<Vec<Jwk>>, Duration)> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(uri.as_str())?;
        Some((entry.keys.clone(), entry.fetched_at.elapsed()))
    }

    /// The keys that may have signed a token with header `kid` (all keys when there is none).
    pub(crate) async fn candidates(
        &self,
        uri: &Url,
        kid: Option<&str>,
    ) -> Result<Vec<Jwk>, SmartError> {
        let matching = |keys: &[Jwk]| -> Vec<Jwk> {
            keys.iter()
                .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
                .cloned()
                .collect()
        };
        let keys = match self.cached(uri) {
            Some((keys, age)) if age < self.ttl => {
                let found = matching(&keys);
                if !found.is_empty() || age < self.min_refetch {
                    return Ok(found);
                }
                tracing::debug!(jwks = %endpoint_label(uri), "unknown kid: refetching the issuer's keys");
                self.fetch(uri).await?
            }
            _ => self.fetch(uri).await?,
        };
        Ok(matching(&keys))
    }

    async fn fetch(&self, uri: &Url) -> Result<Arc<Vec<Jwk>>, SmartError> {
        let response = send_idempotent(&self.retry, || {
            self.http
                .get(uri.clone())
                .header(reqwest::header::ACCEPT, "application/json")
        })
        .await
        .map_err(|e| send_error(uri, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SmartError::UpstreamStatus {
                endpoint: endpoint_label(uri),
                status: status.as_u16(),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| crate::error::transport_error(uri, e))?;
        #[derive(serde::Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let set: Set =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
                .map_err(|e| SmartError::MalformedResponse {
                    endpoint: endpoint_label(uri),
                    reason: json_reason(&e),
                })?;
        // One key of a type we do not know must not hide the others.
        let keys: Vec<Jwk> = set
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect();
        let keys = Arc::new(keys);
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(
                uri.as_str().to_owned(),
                Entry {
                    keys: keys.clone(),
                    fetched_at: Instant::now(),
                },
            );
        }
        Ok(keys)
    }
}
