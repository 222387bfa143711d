//! Error statuses, Epic OperationOutcomes, retries, timeouts, malformed answers, expired tokens.

use std::time::{Duration, Instant};

use visitbridge_fhir::{
    Appointment, AppointmentId, Communication, EncounterId, FhirError, PatientId, SearchQuery,
};
use visitbridge_testkit::fhir::{self, FhirFake, fhir_json, operation_outcome};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::{TOKEN, client, client_with, config, quick_retry};

fn appointment_id() -> AppointmentId {
    AppointmentId::new(fhir::APPOINTMENT_ID).unwrap()
}

#[tokio::test]
async fn an_operation_outcome_4xx_keeps_epic_codes_and_diagnostics() {
    let cases = [
        (
            400,
            "invalid",
            4100,
            "The resource request contained an invalid parameter.",
        ),
        (
            400,
            "required",
            4110,
            "Required search parameter missing from request.",
        ),
        (
            404,
            "not-found",
            4107,
            "The read resource request has been merged.",
        ),
    ];
    for (status, code, epic, diagnostics) in cases {
        let (server, fake) = FhirFake::start().await;
        Mock::given(method("GET"))
            .and(path(fake.path("Appointment")))
            .respond_with(fhir_json(
                status,
                operation_outcome(code, Some(epic), diagnostics),
            ))
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        let query = SearchQuery::<Appointment>::new().patient(&PatientId::new("x").unwrap());
        let err = client(fake.base_url()).search(&query).await.unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(err.epic_codes(), [epic]);
        assert!(!err.is_transient(), "a 4xx will not heal by itself");
        let shown = err.to_string();
        assert!(shown.contains(&format!("[epic {epic}]")), "{shown}");
        assert!(shown.contains(diagnostics), "{shown}");
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_for_then_retried() {
    let (server, fake) = FhirFake::start().await;
    Mock::given(method("GET"))
        .and(path(
            fake.path(&format!("Appointment/{}", fhir::APPOINTMENT_ID)),
        ))
        .respond_with(
            fhir_json(
                429,
                operation_outcome("throttled", None, "Too many requests"),
            )
            .insert_header("Retry-After", "1"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let appointment = client(fake.base_url())
        .read(&appointment_id())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert!(appointment.id.is_some());
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn reads_stop_retrying_5xx_at_the_bound() {
    let (server, fake) = FhirFake::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .expect(3)
        .mount(&server)
        .await;
    let err = client(fake.base_url())
        .read(&appointment_id())
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert!(err.outcome().is_none());
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_slow_server_times_out_after_bounded_tries() {
    let (server, fake) = FhirFake::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .with_priority(1)
        .mount(&server)
        .await;
    let mut config = config(fake.base_url());
    config.request_timeout = Some(Duration::from_millis(200));
    config.retry = quick_retry(2);
    let err = client_with(config)
        .read(&appointment_id())
        .await
        .unwrap_err();
    assert!(matches!(err, FhirError::Timeout { attempts: 2 }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_naming_type_and_path() {
    let cases: [(&str, &str); 3] = [
        (
            r#"{"resourceType":"Appointment","participant":[{"actor":{"reference":42}}]}"#,
            "participant[0].actor.reference",
        ),
        (
            r#"{"resourceType":"Appointment","participant":[{"actor":"#,
            "participant[0].actor",
        ),
        (
            r#"{"resourceType":"OperationOutcome","issue":[]}"#,
            "resourceType",
        ),
    ];
    for (body, expected_path) in cases {
        let (server, fake) = FhirFake::start().await;
        Mock::given(method("GET"))
            .respond_with(fhir_json(200, body))
            .with_priority(1)
            .mount(&server)
            .await;
        let err = client(fake.base_url())
            .read(&appointment_id())
            .await
            .unwrap_err();
        let FhirError::Decode {
            resource_type,
            path,
            ..
        } = &err
        else {
            panic!("expected a decode error, got {err:?}");
        };
        assert_eq!(resource_type, "Appointment");
        assert_eq!(path, expected_path, "{body}");
    }
}

#[tokio::test]
async fn an_expired_token_is_unauthorized_and_not_retried() {
    let (server, fake) = FhirFake::start().await;
    fake.expire_token(&server, TOKEN).await;
    let err = client(fake.base_url())
        .read(&appointment_id())
        .await
        .unwrap_err();
    assert!(matches!(err, FhirError::Unauthorized), "{err:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn a_failed_write_is_sent_once() {
    let (server, fake) = FhirFake::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    let note = Communication::visit_status_note(
        "evt-1",
        &EncounterId::new(fhir::ENCOUNTER_ID).unwrap(),
        None,
        "Video visit: clinician joined",
        chrono::Utc::now(),
    );
    let err = client(fake.base_url()).create(&note).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
}
