//! SMART discovery: `{iss}/.well-known/smart-configuration` (or `{iss}/metadata` on old servers),
//! validated and cached per issuer.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;
use visitbridge_http::{RetryPolicy, send_idempotent};

use crate::{
    ApprovedIssuer, NormalizedIssuer, SmartError,
    error::{endpoint_label, json_reason, send_error, transport_error},
};

/// Where a configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoverySource {
    /// `{iss}/.well-known/smart-configuration`.
    WellKnown,
    /// The `oauth-uris` extension of `{iss}/metadata` (SMART 1.0 servers).
    Metadata,
}

/// An issuer's SMART configuration (the fields we use; everything else in [`Self::other`]).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SmartConfiguration {
    /// The OpenID issuer (`iss` of its id_tokens), present with `sso-openid-connect`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Where the issuer's id_token signing keys are published.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// The authorization endpoint (needed for launches).
    #[serde(default)]
    pub authorization_endpoint: Option<Url>,
    /// The token endpoint.
    pub token_endpoint: Url,
    /// Client authentication methods the token endpoint accepts.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Grant types.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// SMART capabilities (`launch-ehr`, `authorize-post`, ...).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// PKCE methods; must contain `S256`.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Scopes the server advertises.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
    /// Where this configuration came from.
    #[serde(skip, default = "well_known")]
    pub source: DiscoverySource,
}

fn well_known() -> DiscoverySource {
    DiscoverySource::WellKnown
}

impl SmartConfiguration {
    /// Whether the server lists `capability`.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Whether PKCE `S256` is offered.
    pub fn supports_s256(&self) -> bool {
        self.code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
    }
}

/// What a `.well-known/smart-configuration` answer offers, read leniently: unlike
/// [`SmartConfiguration`], a document with missing or mistyped fields is still read, so that a
/// check of a FHIR base URL can name the gap rather than only refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmartConfigurationOffer {
    /// It has a non-empty `authorization_endpoint`.
    pub authorization_endpoint: bool,
    /// It has a non-empty `token_endpoint`.
    pub token_endpoint: bool,
    /// Its `code_challenge_methods_supported` includes `S256`.
    pub pkce_s256: bool,
}

impl SmartConfigurationOffer {
    /// The offer of the document `body`; `None` when it is not a JSON object.
    pub fn from_json(body: &[u8]) -> Option<Self> {
        let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let has_url = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        Some(Self {
            authorization_endpoint: has_url("authorization_endpoint"),
            token_endpoint: has_url("token_endpoint"),
            pkce_s256: document
                .get("code_challenge_methods_supported")
                .and_then(Value::as_array)
                .is_some_and(|methods| methods.iter().any(|m| m.as_str() == Some("S256"))),
        })
    }
}

/// `https://` is required of every endpoint, except on loopback hosts (local fakes and tests).
fn check_endpoint(name: &str, url: &Url) -> Result<(), String> {
    let loopback = visitbridge_http::is_loopback_url(url);
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(format!("its {name} is not an https url"))
    }
}

struct Entry {
    config: Arc<SmartConfiguration>,
    issuer: ApprovedIssuer,
    fetched_at: Instant,
}

/// Fetches and caches SMART configurations, per issuer, for `ttl` (one hour by default).
///
/// Cheap to clone (the cache is shared). It only accepts [`ApprovedIssuer`]s, so it is never
/// pointed at a URL taken from a launch request. Two concurrent misses for one issuer may both
/// fetch; the later answer wins, which is harmless.
#[derive(Clone)]
pub struct SmartDiscovery {
    http: reqwest::Client,
    headers: HeaderMap,
    retry: RetryPolicy,
    ttl: Duration,
    metadata_fallback_assumes_s256: bool,
    cache: Arc<RwLock<HashMap<NormalizedIssuer, Entry>>>,
}

impl std::fmt::Debug for SmartDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartDiscovery")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SmartDiscovery {
    /// Discovery over `http` (see `visitbridge_http::build_client`), sending `headers` on each
    /// request (Epic: `Epic-Client-ID`, since Epic may serve per-client endpoints).
    pub fn new(http: reqwest::Client, headers: HeaderMap) -> Self {
        Self {
            http,
            headers,
            retry: RetryPolicy::default(),
            ttl: Duration::from_secs(3600),
            metadata_fallback_assumes_s256: false,
            cache: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// How long a configuration is reused before it is fetched again.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries for discovery requests (429, 5xx, timeouts; `Retry-After` honoured).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Accept a configuration found only through `{iss}/metadata`, which cannot advertise PKCE
    /// methods, as supporting `S256`. Off by default: such servers are refused with
    /// [`SmartError::S256NotSupported`] unless you know they honour PKCE.
    pub fn with_metadata_fallback_assumes_s256(mut self, assume: bool) -> Self {
        self.metadata_fallback_assumes_s256 = assume;
        self
    }

    /// The issuer's configuration, from the cache when fresh.
    ///
    /// Fails with [`SmartError::S256NotSupported`] when the server does not offer PKCE S256.
    pub async fn get(
        &self,
        issuer: &ApprovedIssuer,
    ) -> Result<Arc<SmartConfiguration>, SmartError> {
        let key = issuer
            .normalized()
            .ok_or_else(|| SmartError::Config(format!("{} cannot be an issuer url", issuer.iss)))?;
        if let Ok(cache) = self.cache.read()
            && let Some(entry) = cache.get(&key)
            && entry.fetched_at.elapsed() < self.ttl
        {
            return Ok(entry.config.clone());
        }
        self.refresh(issuer, key).await
    }

    /// Forgets every cached configuration.
    pub fn clear(&self) {
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
        }
    }

    /// Refreshes every cached issuer every `interval` in a background task, so launches rarely
    /// wait for discovery. A failed refresh keeps the previous configuration until its TTL ends.
    /// Abort the returned handle to stop.
    pub fn spawn_refresh(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let issuers: Vec<(NormalizedIssuer, ApprovedIssuer)> = match this.cache.read() {
                    Ok(cache) => cache
                        .iter()
                        .map(|(k, e)| (k.clone(), e.issuer.clone()))
                        .collect(),
                    Err(_) => Vec::new(),
                };
                for (key, issuer) in issuers {
                    if let Err(e) = this.refresh(&issuer, key).await {
                        tracing::warn!(error = %e, "background smart discovery refresh failed");
                    }
                }
            }
        })
    }

    async fn refresh(
        &self,
        issuer: &ApprovedIssuer,
        key: NormalizedIssuer,
    ) -> Result<Arc<SmartConfiguration>, SmartError> {
        let config = Arc::new(self.fetch(issuer).await?);
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(
                key,
                Entry {
                    config: config.clone(),
                    issuer: issuer.clone(),
                    fetched_at: Instant::now(),
                },
            );
        }
        Ok(config)
    }

    async fn fetch(&self, issuer: &ApprovedIssuer) -> Result<SmartConfiguration, SmartError> {
        let base = issuer.iss.as_str().trim_end_matches('/');
        let well_known = parse_url(&format!("{base}/.well-known/smart-configuration"))?;
        let issuer_label = endpoint_label(&issuer.iss);
        let discovery_error = |reason: String| SmartError::Discovery {
            issuer: issuer_label.clone(),
            reason,
        };
        let (status, body) = self.get_json(&well_known, "application/json").await?;
        let config = if status.is_success() {
            serde_path_to_error::deserialize::<_, SmartConfiguration>(
                &mut serde_json::Deserializer::from_slice(&body),
            )
            .map_err(|e| discovery_error(format!("smart-configuration: {}", json_reason(&e))))?
        } else if status.is_client_error() && status.as_u16() != 429 {
            tracing::debug!(
                status = status.as_u16(),
                "no smart-configuration: trying the capability statement"
            );
            let mut config =
                crate::metadata::from_metadata(&self.http, &self.headers, &self.retry, issuer)
                    .await?;
            if self.metadata_fallback_assumes_s256 {
                config.code_challenge_methods_supported = vec!["S256".to_owned()];
            }
            config
        } else {
            return Err(SmartError::UpstreamStatus {
                endpoint: endpoint_label(&well_known),
                status: status.as_u16(),
            });
        };
        self.check(issuer, config)
    }

    fn check(
        &self,
        issuer: &ApprovedIssuer,
        config: SmartConfiguration,
    ) -> Result<SmartConfiguration, SmartError> {
        let discovery_error = |reason: String| SmartError::Discovery {
            issuer: endpoint_label(&issuer.iss),
            reason,
        };
        check_endpoint("token_endpoint", &config.token_endpoint).map_err(discovery_error)?;
        if let Some(url) = &config.authorization_endpoint {
            check_endpoint("authorization_endpoint", url).map_err(discovery_error)?;
        }
        if let Some(url) = &config.jwks_uri {
            check_endpoint("jwks_uri", url).map_err(discovery_error)?;
        }
        if !config.supports_s256() {
            return Err(SmartError::S256NotSupported {
                issuer: endpoint_label(&issuer.iss),
            });
        }
        if config
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "plain")
        {
            // We only ever send S256, so this is the server's problem, not a downgrade of ours.
            tracing::warn!(issuer = %endpoint_label(&issuer.iss), "authorization server also offers pkce plain");
        }
        Ok(config)
    }

    async fn get_json(
        &self,
        url: &Url,
        accept: &'static str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), SmartError> {
        let response = send_idempotent(&self.retry, || {
            self.http
                .get(url.clone())
                .headers(self.headers.clone())
                .header(reqwest::header::ACCEPT, accept)
        })
        .await
        .map_err(|e| send_error(url, e))?;
        let status = response.status();
        if status.as_u16() == 429 {
            return Err(SmartError::Throttled {
                endpoint: endpoint_label(url),
                retry_after: visitbridge_http::retry_after(response.headers()),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(url, e))?;
        Ok((status, body.to_vec()))
    }
}

fn parse_url(s: &str) -> Result<Url, SmartError> {
    Url::parse(s).map_err(|source| SmartError::ConfigUrl {
        what: format!("bad url {s}"),
        source,
    })
}
