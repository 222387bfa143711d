//! Integration tests of the FHIR client against the Epic-shaped fake in `visitbridge-testkit`.

mod conformance;
mod errors;
mod read;
mod search;
mod write;

use std::{sync::Arc, time::Duration};

use chrono::{TimeZone, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use visitbridge_fhir::{
    AuditAgent, AuditEvent, FhirBaseUrl, FhirClient, FhirClientConfig, ParticipantAction,
    ParticipantAudit, Reference, StaticToken,
};
use visitbridge_http::{HttpConfig, RetryPolicy, Secret, build_client};
use visitbridge_testkit::fhir;

/// The token every test client sends.
const TOKEN: &str = "test-access-token";

/// Short waits so retry tests stay fast; Retry-After still wins over them.
fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_total: Duration::from_secs(5),
    }
}

fn config(base_url: &str) -> FhirClientConfig {
    let mut config = FhirClientConfig::new(FhirBaseUrl::parse(base_url).unwrap());
    config.extra_headers.push((
        HeaderName::from_static("epic-client-id"),
        HeaderValue::from_static("test-client-id"),
    ));
    config.retry = quick_retry(3);
    config
}

fn client_with(config: FhirClientConfig) -> FhirClient {
    let http = build_client(&HttpConfig::default()).unwrap();
    FhirClient::new(config, http, Arc::new(StaticToken(Secret::new(TOKEN))))
}

fn client(base_url: &str) -> FhirClient {
    client_with(config(base_url))
}

/// A participant event for the fixture visit, as the audit crate would build it.
fn participant_event(
    event_id: &str,
    action: ParticipantAction,
    participant: AuditAgent,
) -> AuditEvent {
    AuditEvent::participant_event(&ParticipantAudit {
        event_id: event_id.to_owned(),
        action,
        occurred_at: Utc.with_ymd_and_hms(2026, 3, 5, 18, 1, 30).unwrap(),
        recorded_at: Utc.with_ymd_and_hms(2026, 3, 5, 18, 1, 32).unwrap(),
        participant,
        connector: Reference {
            reference: Some("Device/visitbridge".to_owned()),
            ..Reference::default()
        },
        appointment: Some(fhir::APPOINTMENT_ID.parse().unwrap()),
        encounter: Some(fhir::ENCOUNTER_ID.parse().unwrap()),
        patient: Some(fhir::PATIENT_ID.parse().unwrap()),
    })
}
