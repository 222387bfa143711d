//! Write-back wiring: each approved configuration's sinks (from the configuration file), with a
//! backend-services token for its EHR, set on the audit crate's [`ConfiguredSinks`].
//!
//! Sinks live in this process's memory, but an event's outbox rows are chosen from them when it
//! is recorded: so before an event of a configuration is recorded, [`Writeback::ensure`] sets
//! that configuration's sinks from the store if this process has not yet (after a restart, an
//! approval since start-up, another replica's launch), and fails if it cannot, so that the event
//! is not stored without its deliveries.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;
use visitbridge_approval::ConfigurationId;
use visitbridge_audit::{ConfiguredSinks, SinkConfig, SinkContext};
use visitbridge_fhir::{FhirClient, FhirClientConfig, TokenSource, TokenSourceError};
use visitbridge_http::{ClientAssertionKey, Secret};
use visitbridge_smart::{ApprovedIssuer, BackendServicesClient, SmartDiscovery};
use visitbridge_store::Store;

use visitbridge_launch_core::ApprovedConfiguration;

use crate::config::WritebackConfig;

/// A backend-services token for one configuration, whose token endpoint is discovered on first
/// use (so that building a sink never waits for, or fails on, an EHR that is down).
struct LazyBackendToken {
    http: visitbridge_http::HttpClient,
    discovery: SmartDiscovery,
    issuer: ApprovedIssuer,
    client_id: String,
    key: ClientAssertionKey,
    scope: String,
    headers: HeaderMap,
    client: tokio::sync::OnceCell<BackendServicesClient>,
}

#[async_trait::async_trait]
impl TokenSource for LazyBackendToken {
    async fn access_token(&self) -> Result<Secret, TokenSourceError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let config = self.discovery.get(&self.issuer).await.map_err(|e| {
                    TokenSourceError::caused_by("cannot discover the token endpoint", e)
                })?;
                Ok::<_, TokenSourceError>(
                    BackendServicesClient::new(
                        self.http.clone(),
                        config.token_endpoint.clone(),
                        self.client_id.clone(),
                        self.key.clone(),
                        self.scope.clone(),
                    )
                    .with_headers(self.headers.clone()),
                )
            })
            .await?;
        client.token().await.map_err(|e| {
            TokenSourceError::caused_by("the backend-services token request failed", e)
        })
    }
}

/// Why a configuration's sinks could not be set on demand (the event waits: Graph retries).
#[derive(Debug, thiserror::Error)]
pub(crate) enum WritebackError {
    /// The store could not be read.
    #[error("cannot read the configuration for its write-back sinks: {0}")]
    Store(#[from] visitbridge_store::StoreError),
    /// The sinks could not be built from the configuration file.
    #[error("write-back sinks of configuration {configuration} cannot be built")]
    Build {
        /// The configuration's id.
        configuration: String,
        /// Why (a sink's settings, or the audit crate refusing them).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Sets each approved configuration's sinks once per approved version.
pub(crate) struct Writeback {
    pub(crate) sinks: Arc<ConfiguredSinks>,
    store: Arc<dyn Store>,
    config: WritebackConfig,
    http: visitbridge_http::HttpClient,
    key: ClientAssertionKey,
    done: Mutex<HashSet<(String, u32)>>,
}

/// A delivery worker meeting a row of a configuration this process has not set up (another
/// replica recorded it) sets it up here, rather than failing the attempt.
#[async_trait::async_trait]
impl visitbridge_audit::SinkLoader for Writeback {
    async fn load(&self, configuration: &ConfigurationId) {
        if let Err(e) = self.ensure(configuration).await {
            tracing::warn!(error = %e, configuration = configuration.as_str(), "cannot set a configuration's write-back sinks");
        }
    }
}

impl Writeback {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        config: WritebackConfig,
        http: visitbridge_http::HttpClient,
        key: ClientAssertionKey,
    ) -> Self {
        Self {
            sinks: Arc::new(ConfiguredSinks::new()),
            store,
            config,
            http,
            key,
            done: Mutex::new(HashSet::new()),
        }
    }

    fn sink_configs(&self, id: &ConfigurationId) -> &[SinkConfig] {
        self.config
            .configurations
            .get(id.as_str())
            .map(|c| c.sinks.as_slice())
            .unwrap_or(&self.config.sinks)
    }

    /// Makes sure `configuration`'s sinks are set (a no-op after the first time per version).
    pub(crate) fn configure(&self, configuration: &ApprovedConfiguration) {
        let _ = self.try_configure(configuration);
    }

    /// [`Self::configure`], saying whether the sinks are set.
    fn try_configure(&self, configuration: &ApprovedConfiguration) -> Result<(), WritebackError> {
        let approved = configuration.approved();
        let key = (configuration.id().as_str().to_owned(), approved.version);
        if self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(());
        }
        let built = self.build(configuration).and_then(|sinks| {
            self.sinks
                .set(configuration.id().clone(), sinks)
                .map_err(Into::into)
        });
        match built {
            Ok(()) => {
                self.done
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    configuration = configuration.id().as_str(),
                    "write-back sinks cannot be built: this configuration's events cannot be written back"
                );
                Err(WritebackError::Build {
                    configuration: configuration.id().as_str().to_owned(),
                    source: e,
                })
            }
        }
    }

    /// Makes sure the sinks of `configuration` are set before one of its events is recorded:
    /// read from the store when this process has not set them yet. A configuration that is
    /// (no longer) approved has nothing to write back to. An error means the event must not be
    /// recorded now (its outbox rows would be missing): the caller answers so that it comes again.
    pub(crate) async fn ensure(
        &self,
        configuration: &ConfigurationId,
    ) -> Result<(), WritebackError> {
        if self.sinks.is_configured(configuration) {
            return Ok(());
        }
        // Few tenants; the configuration's tenant is not on the visit.
        for tenant in self.store.list_tenants().await? {
            if let Some(found) = self
                .store
                .get_configuration(&tenant.id, configuration)
                .await?
            {
                let Some(found) = ApprovedConfiguration::new(found) else {
                    tracing::warn!(
                        configuration = configuration.as_str(),
                        "an event of a configuration that is not approved: recorded, not written back"
                    );
                    return Ok(());
                };
                return self.try_configure(&found);
            }
        }
        tracing::warn!(
            configuration = configuration.as_str(),
            "an event of an unknown configuration: recorded, not written back"
        );
        Ok(())
    }

    fn build(
        &self,
        configuration: &ApprovedConfiguration,
    ) -> Result<Vec<Arc<dyn visitbridge_audit::Sink>>, Box<dyn std::error::Error + Send + Sync>>
    {
        let approved = configuration.approved();
        let settings = &approved.settings;
        let client_id = settings.ehr_client.client_id.as_str().to_owned();
        let mut headers = HeaderMap::new();
        let mut fhir_headers = Vec::new();
        if settings.ehr_client.send_epic_client_id_header {
            let value = HeaderValue::from_str(&client_id)?;
            headers.insert(HeaderName::from_static("epic-client-id"), value.clone());
            fhir_headers.push((HeaderName::from_static("epic-client-id"), value));
        }
        let base = settings.fhir_base_url.as_str();
        let issuer = ApprovedIssuer::new(Url::parse(base)?, configuration.id().as_str());
        let token: Arc<dyn TokenSource> = Arc::new(LazyBackendToken {
            http: self.http.clone(),
            discovery: SmartDiscovery::new(self.http.clone(), headers.clone()),
            issuer,
            client_id,
            key: self.key.clone(),
            scope: self.config.backend_scope.clone(),
            headers,
            client: tokio::sync::OnceCell::new(),
        });
        let mut fhir_config = FhirClientConfig::new(visitbridge_fhir::FhirBaseUrl::parse(base)?);
        fhir_config.extra_headers = fhir_headers;
        let context = SinkContext {
            http: self.http.clone(),
            token: Arc::clone(&token),
            fhir: FhirClient::new(fhir_config, self.http.clone(), token),
        };
        let mut sinks = Vec::new();
        for config in self.sink_configs(configuration.id()) {
            sinks.push(config.build(&context)?);
        }
        Ok(sinks)
    }
}

/// Sink names per configuration, for logs.
pub(crate) fn describe(config: &WritebackConfig) -> BTreeMap<String, Vec<&'static str>> {
    let mut out = BTreeMap::new();
    out.insert(
        "*".to_owned(),
        config.sinks.iter().map(SinkConfig::name).collect(),
    );
    for (id, c) in &config.configurations {
        out.insert(id.clone(), c.sinks.iter().map(SinkConfig::name).collect());
    }
    out
}
