//! The discovery fallback of SMART 1.0 servers: the `oauth-uris` extension of the
//! CapabilityStatement at `{iss}/metadata`, read through the `fhir` crate (only it knows FHIR
//! JSON).

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use visitbridge_fhir::{FhirBaseUrl, FhirClient, FhirClientConfig, FhirError};
use visitbridge_http::RetryPolicy;

use crate::{
    ApprovedIssuer, DiscoverySource, SmartConfiguration, SmartError, error::endpoint_label,
};

/// A configuration from `{iss}/metadata`. It never lists PKCE methods or capabilities (the
/// format has no place for them).
pub(crate) async fn from_metadata(
    http: &reqwest::Client,
    headers: &HeaderMap,
    retry: &RetryPolicy,
    issuer: &ApprovedIssuer,
) -> Result<SmartConfiguration, SmartError> {
    let label = endpoint_label(&issuer.iss);
    let discovery_error = |reason: String| SmartError::Discovery {
        issuer: label.clone(),
        reason,
    };
    let base = FhirBaseUrl::parse(issuer.iss.as_str())
        .map_err(|source| SmartError::FhirBase { source })?;
    let mut config = FhirClientConfig::new(base);
    config.retry = retry.clone();
    config.extra_headers = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let statement = FhirClient::anonymous(config, http.clone())
        .capability_statement()
        .await
        .map_err(|e| match e {
            FhirError::Timeout { .. } => SmartError::Timeout {
                endpoint: format!("{label}/metadata"),
            },
            FhirError::Status { status, .. } => discovery_error(format!(
                "no smart-configuration, and metadata answered http {}",
                status.as_u16()
            )),
            other => discovery_error(format!("no smart-configuration, and metadata: {other}")),
        })?;
    let uris = statement.oauth_uris().ok_or_else(|| {
        discovery_error("no smart-configuration and no oauth-uris extension in metadata".into())
    })?;
    let token_endpoint = uris
        .token
        .ok_or_else(|| discovery_error("metadata's oauth-uris has no token uri".into()))?;
    Ok(SmartConfiguration {
        issuer: None,
        jwks_uri: None,
        authorization_endpoint: uris.authorize,
        token_endpoint,
        token_endpoint_auth_methods_supported: Vec::new(),
        grant_types_supported: Vec::new(),
        capabilities: Vec::new(),
        code_challenge_methods_supported: Vec::new(),
        scopes_supported: Vec::new(),
        other: BTreeMap::new(),
        source: DiscoverySource::Metadata,
    })
}
