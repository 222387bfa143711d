//! The network half of the FHIR base URL check: fetch the SMART configuration and the
//! CapabilityStatement and report what was seen, for `visitbridge_approval::classify_probe` to
//! judge.

use std::time::Duration;

use axum::http::header::{ACCEPT, HeaderName, HeaderValue};
use visitbridge_approval::{FhirBaseUrl, MetadataProbe, ProbeOutcome, SmartConfigurationProbe};
use visitbridge_fhir::{FhirClient, FhirClientConfig, FhirError};
use visitbridge_http::{RetryPolicy, send_idempotent};
use visitbridge_smart::SmartConfigurationOffer;

/// A person waits for the answer, so the checks retry once at most and give up within the budget.
pub(crate) fn probe_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        max_total: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

/// Probes `url`, sending `Epic-Client-ID: {client_id}` when given. Both requests run at once;
/// neither carries a token.
pub(crate) async fn probe(
    http: &visitbridge_http::HttpClient,
    url: &FhirBaseUrl,
    epic_client_id: Option<&str>,
) -> ProbeOutcome {
    let header = epic_client_id.and_then(|id| HeaderValue::from_str(id).ok());
    let (smart_configuration, metadata) = tokio::join!(
        smart_configuration(http, url, header.clone()),
        metadata(http, url, header),
    );
    ProbeOutcome {
        smart_configuration,
        metadata,
    }
}

/// Fetched directly rather than through `SmartDiscovery`, which falls back to the
/// CapabilityStatement and refuses servers without PKCE: the probe must report what the server
/// answered at this address, so that the message names the actual gap.
async fn smart_configuration(
    http: &visitbridge_http::HttpClient,
    url: &FhirBaseUrl,
    epic_client_id: Option<HeaderValue>,
) -> SmartConfigurationProbe {
    let address = url.smart_configuration_url();
    let sent = send_idempotent(&probe_retry(), || {
        let mut request = http.get(&address).header(ACCEPT, "application/json");
        if let Some(id) = &epic_client_id {
            request = request.header(HeaderName::from_static("epic-client-id"), id.clone());
        }
        request
    })
    .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(error = %e, "smart configuration probe: no answer");
            return SmartConfigurationProbe::Unreachable;
        }
    };
    let status = response.status();
    if !status.is_success() {
        return SmartConfigurationProbe::HttpStatus(status.as_u16());
    }
    let Ok(body) = response.bytes().await else {
        return SmartConfigurationProbe::Unreachable;
    };
    match SmartConfigurationOffer::from_json(&body) {
        Some(offer) => SmartConfigurationProbe::Found {
            authorization_endpoint: offer.authorization_endpoint,
            token_endpoint: offer.token_endpoint,
            pkce_s256: offer.pkce_s256,
        },
        None => SmartConfigurationProbe::NotSmartJson,
    }
}

async fn metadata(
    http: &visitbridge_http::HttpClient,
    url: &FhirBaseUrl,
    epic_client_id: Option<HeaderValue>,
) -> MetadataProbe {
    let Ok(base) = visitbridge_fhir::FhirBaseUrl::parse(url.as_str()) else {
        return MetadataProbe::Unreachable;
    };
    let mut config = FhirClientConfig::new(base);
    config.retry = probe_retry();
    if let Some(id) = epic_client_id {
        config
            .extra_headers
            .push((HeaderName::from_static("epic-client-id"), id));
    }
    match FhirClient::anonymous(config, http.clone())
        .capability_statement()
        .await
    {
        Ok(statement) => match statement.fhir_version {
            Some(version) if !version.is_empty() => MetadataProbe::FhirVersion(version),
            _ => MetadataProbe::NotCapabilityStatement,
        },
        Err(FhirError::Transport(_) | FhirError::Timeout { .. }) => MetadataProbe::Unreachable,
        Err(e) => match e.status() {
            Some(status) => MetadataProbe::HttpStatus(status.as_u16()),
            None => MetadataProbe::NotCapabilityStatement,
        },
    }
}
