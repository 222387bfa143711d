//! Write-back wiring: what each approved configuration's sinks are made of (from the
//! configuration file), with a backend-services token for its EHR. When they are set is the
//! launch library's `ConfigurationSinks`.

use std::{collections::BTreeMap, sync::Arc};

use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;
use visitbridge_approval::ConfigurationId;
use visitbridge_audit::{SinkConfig, SinkContext};
use visitbridge_fhir::{FhirClient, FhirClientConfig, TokenSource, TokenSourceError};
use visitbridge_http::{ClientAssertionKey, Secret};
use visitbridge_launch_core::{ApprovedConfiguration, SinkBuilder};
use visitbridge_smart::{ApprovedIssuer, BackendServicesClient, SmartDiscovery};

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

/// Builds a configuration's sinks from the configuration file's `[writeback]`: the launch
/// library's [`SinkBuilder`].
pub(crate) struct SinksFromConfig {
    config: WritebackConfig,
    http: visitbridge_http::HttpClient,
    key: ClientAssertionKey,
}

impl SinksFromConfig {
    pub(crate) fn new(
        config: WritebackConfig,
        http: visitbridge_http::HttpClient,
        key: ClientAssertionKey,
    ) -> Self {
        Self { config, http, key }
    }

    fn sink_configs(&self, id: &ConfigurationId) -> &[SinkConfig] {
        self.config
            .configurations
            .get(id.as_str())
            .map(|c| c.sinks.as_slice())
            .unwrap_or(&self.config.sinks)
    }
}

impl SinkBuilder for SinksFromConfig {
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
