//! The one cache of issuers' signing keys (JWKS) that JWTs are verified against, with a policy
//! for what its users differ in.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, Header,
    jwk::{Jwk, KeyAlgorithm as JwkAlgorithm},
};
use url::Url;

use crate::{RetryPolicy, SendError, send_idempotent};

/// The asymmetric signature algorithms a JWT may be verified with: symmetric ones and `none`
/// are never accepted (the key would be a client secret, or nothing).
pub const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// What a [`JwksCache`]'s users differ in.
///
/// The SMART client keeps [`JwksPolicy::default`]: a person waits for a launch, so a failed
/// fetch is reported and the next launch tries again. The Graph webhook must answer within
/// 3 seconds and must not let forged batches buy fetches, so it bounds each fetch, does not
/// retry, and keeps using expired keys while Microsoft's endpoint is unreachable.
#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// Keys fetched longer ago than this are fetched again before their next use.
    pub max_age: Duration,
    /// Least time between two fetches of one set caused by an unknown `kid`, counted from the
    /// previous attempt, successful or not: a forged `kid` cannot make us hammer the endpoint.
    pub min_refetch_interval: Duration,
    /// The algorithms a token may name; keys are never handed out for any other.
    pub algorithms: Vec<Algorithm>,
    /// Whether a token without `kid` is refused (otherwise every key is a candidate).
    pub require_kid: bool,
    /// Retries of one fetch.
    pub retry: RetryPolicy,
    /// Longest one fetch may take, retries and body included (`None`: the client's timeouts).
    pub fetch_timeout: Option<Duration>,
    /// When a fetch of expired keys fails: keep using them, and wait
    /// [`Self::min_refetch_interval`] before trying again (`true`), or return the error and try
    /// again on the next use (`false`).
    pub keep_stale_keys: bool,
}

impl Default for JwksPolicy {
    /// Keys kept a day, an unknown `kid` refetches at most once a minute, any asymmetric
    /// algorithm, `kid` optional, default retries, no own timeout, no stale keys.
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            min_refetch_interval: Duration::from_secs(60),
            algorithms: ASYMMETRIC_ALGORITHMS.to_vec(),
            require_kid: false,
            retry: RetryPolicy::default(),
            fetch_timeout: None,
            keep_stale_keys: false,
        }
    }
}

impl JwksPolicy {
    /// Whether a token signed with `algorithm` may be verified at all.
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }
}

/// Why a JWKS could not be fetched. Each variant names the endpoint without its query string.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// No answer: every try failed to connect or timed out.
    #[error("could not fetch the keys from {endpoint}")]
    Send {
        /// The JWKS endpoint.
        endpoint: Url,
        /// What the last try ran into.
        #[source]
        source: SendError,
    },
    /// The fetch took longer than [`JwksPolicy::fetch_timeout`].
    #[error("{endpoint} did not answer within {}ms", .timeout.as_millis())]
    Timeout {
        /// The JWKS endpoint.
        endpoint: Url,
        /// The bound that was reached.
        timeout: Duration,
    },
    /// The endpoint answered with a status other than success.
    #[error("{endpoint} answered http {status}")]
    Status {
        /// The JWKS endpoint.
        endpoint: Url,
        /// The HTTP status.
        status: u16,
    },
    /// The answer's body could not be read.
    #[error("could not read the keys from {endpoint}")]
    Body {
        /// The JWKS endpoint.
        endpoint: Url,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not a JWKS document (`{"keys": [...]}`).
    #[error("{endpoint} answered something that is not a key set")]
    Malformed {
        /// The JWKS endpoint.
        endpoint: Url,
        /// Where and why the JSON did not fit.
        #[source]
        source: serde_path_to_error::Error<serde_json::Error>,
    },
}

/// One usable key of a set.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Option<JwkAlgorithm>,
    key: DecodingKey,
}

/// What is known of one JWKS endpoint.
#[derive(Default)]
struct Entry {
    keys: Arc<Vec<Key>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

/// Signing keys by JWKS URL, fetched on first use, kept for [`JwksPolicy::max_age`] and refetched
/// (within [`JwksPolicy::min_refetch_interval`]) when a token names a `kid` the set lacks, as after
/// a key rotation.
///
/// One fetch per URL runs at a time; callers that waited for it use its keys.
pub struct JwksCache {
    http: reqwest::Client,
    policy: JwksPolicy,
    entries: RwLock<HashMap<String, Entry>>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache fetching with `http` (a client from [`crate::build_client`]) under `policy`.
    pub fn new(http: reqwest::Client, policy: JwksPolicy) -> Self {
        Self {
            http,
            policy,
            entries: RwLock::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &JwksPolicy {
        &self.policy
    }

    /// The keys of the set at `uri` that may have signed a token with `header`: those with its
    /// `kid` (all when it has none and the policy allows that) whose declared algorithm, if any,
    /// is the token's, and whose type fits it. Empty when the token's algorithm is not accepted.
    ///
    /// An error only when the set had to be fetched and could not be (and no stale keys may be
    /// used instead).
    pub async fn keys_for(
        &self,
        uri: &Url,
        header: &Header,
    ) -> Result<Vec<DecodingKey>, JwksError> {
        if !self.policy.accepts(header.alg) || (self.policy.require_kid && header.kid.is_none()) {
            return Ok(Vec::new());
        }
        let kid = header.kid.as_deref();
        let usable = |keys: &[Key]| -> Vec<DecodingKey> {
            keys.iter()
                .filter(|k| {
                    k.algorithm
                        .is_none_or(|a| a == JwkAlgorithm::from(header.alg))
                })
                .map(|k| k.key.clone())
                .filter(|key| key.family() == header.alg.family())
                .collect()
        };
        // Whether the set is known to name the token's key decides on a fetch; the algorithm
        // filter comes after (a key under the right kid but for another algorithm is not a
        // rotation).
        let matching = |keys: &[Key]| -> Vec<Key> {
            keys.iter()
                .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                .cloned()
                .collect()
        };
        let (keys, fresh, _) = self.snapshot(uri);
        let found = matching(&keys);
        if fresh && !found.is_empty() {
            return Ok(usable(&found));
        }

        let lock = self.fetch_lock(uri);
        let _one_at_a_time = lock.lock().await;
        let (keys, fresh, attempted_at) = self.snapshot(uri);
        let found = matching(&keys);
        if fresh && !found.is_empty() {
            // Someone fetched while we waited.
            return Ok(usable(&found));
        }
        let recently_attempted =
            attempted_at.is_some_and(|t| t.elapsed() < self.policy.min_refetch_interval);
        if recently_attempted && (fresh || self.policy.keep_stale_keys) {
            return Ok(usable(&found));
        }
        if fresh {
            tracing::debug!(jwks = %label(uri), "unknown kid: refetching the keys");
        }
        self.write_entry(uri, |entry| entry.attempted_at = Some(Instant::now()));
        match self.fetch(uri).await {
            Ok(fetched) => {
                let found = usable(&matching(&fetched));
                self.write_entry(uri, |entry| {
                    entry.keys = Arc::new(fetched);
                    entry.fetched_at = Some(Instant::now());
                });
                Ok(found)
            }
            Err(error) if self.policy.keep_stale_keys && !found.is_empty() => {
                tracing::warn!(jwks = %label(uri), error = %error, "could not refresh the keys; using the cached ones");
                Ok(usable(&found))
            }
            Err(error) => Err(error),
        }
    }

    /// The cached keys, whether they are within their age, and the last attempt to fetch them.
    fn snapshot(&self, uri: &Url) -> (Arc<Vec<Key>>, bool, Option<Instant>) {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match entries.get(uri.as_str()) {
            Some(entry) => (
                entry.keys.clone(),
                entry
                    .fetched_at
                    .is_some_and(|t| t.elapsed() < self.policy.max_age),
                entry.attempted_at,
            ),
            None => (Arc::default(), false, None),
        }
    }

    fn write_entry(&self, uri: &Url, change: impl FnOnce(&mut Entry)) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        change(entries.entry(uri.as_str().to_owned()).or_default());
    }

    fn fetch_lock(&self, uri: &Url) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.fetching.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(uri.as_str().to_owned()).or_default().clone()
    }

    async fn fetch(&self, uri: &Url) -> Result<Vec<Key>, JwksError> {
        match self.policy.fetch_timeout {
            Some(timeout) => tokio::time::timeout(timeout, self.fetch_unbounded(uri))
                .await
                .map_err(|_| JwksError::Timeout {
                    endpoint: label(uri),
                    timeout,
                })?,
            None => self.fetch_unbounded(uri).await,
        }
    }

    async fn fetch_unbounded(&self, uri: &Url) -> Result<Vec<Key>, JwksError> {
        let response = send_idempotent(&self.policy.retry, || {
            self.http
                .get(uri.clone())
                .header(reqwest::header::ACCEPT, "application/json")
        })
        .await
        .map_err(|source| JwksError::Send {
            endpoint: label(uri),
            source,
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status {
                endpoint: label(uri),
                status: status.as_u16(),
            });
        }
        let body = response.bytes().await.map_err(|source| JwksError::Body {
            endpoint: label(uri),
            source,
        })?;
        #[derive(serde::Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
                .map_err(|source| JwksError::Malformed {
                    endpoint: label(uri),
                    source,
                })?;
        // A key of a type we do not know must not hide the others: the set is the issuer's to
        // extend. Symmetric keys are dropped.
        Ok(set
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                // A symmetric key in a published set is public: it could verify anything.
                if key.family() == AlgorithmFamily::Hmac {
                    return None;
                }
                Some(Key {
                    kid: jwk.common.key_id,
                    algorithm: jwk.common.key_algorithm,
                    key,
                })
            })
            .collect())
    }
}

/// The endpoint as errors and logs show it: without query, fragment or credentials.
fn label(uri: &Url) -> Url {
    let mut shown = uri.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}
