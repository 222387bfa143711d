//! Reads of the fixture resources, the anonymous metadata call, and what Debug output hides.

use visitbridge_fhir::{
    AppointmentId, AppointmentStatus, EncounterId, EncounterStatus, FhirClient, FhirError,
    LocationId, PatientId, PractitionerId, PractitionerRoleId,
};
use visitbridge_http::{HttpConfig, build_client};
use visitbridge_testkit::{
    fhir::{self, FhirFake},
    fixtures::PHI_PROBES,
};

use crate::{TOKEN, client, config};

#[tokio::test]
async fn reads_every_fixture_resource_with_epic_headers() {
    let (server, fake) = FhirFake::start().await;
    let fhir = client(fake.base_url());

    let appointment = fhir
        .read(&AppointmentId::new(fhir::APPOINTMENT_ID).unwrap())
        .await
        .unwrap();
    assert_eq!(appointment.status, Some(AppointmentStatus::Booked));
    assert_eq!(appointment.minutes_duration, Some(30));
    assert_eq!(
        appointment
            .start
            .as_ref()
            .and_then(|s| s.utc())
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Some("2026-03-05T18:00:00+00:00")
    );
    assert_eq!(appointment.patient_id().unwrap().as_str(), fhir::PATIENT_ID);
    let practitioners: Vec<String> = appointment
        .practitioner_ids()
        .into_iter()
        .map(|id| id.into_string())
        .collect();
    assert_eq!(practitioners, [fhir::PRACTITIONER_ID]);
    assert_eq!(
        appointment.location_id().unwrap().as_str(),
        fhir::LOCATION_ID
    );

    let encounter = fhir
        .read(&EncounterId::new(fhir::ENCOUNTER_ID).unwrap())
        .await
        .unwrap();
    assert_eq!(encounter.status, Some(EncounterStatus::Planned));
    assert_eq!(
        encounter.appointment_ids()[0].as_str(),
        fhir::APPOINTMENT_ID
    );
    assert_eq!(encounter.patient_id().unwrap().as_str(), fhir::PATIENT_ID);

    let patient = fhir
        .read(&PatientId::new(fhir::PATIENT_ID).unwrap())
        .await
        .unwrap();
    assert_eq!(patient.id.unwrap().as_str(), fhir::PATIENT_ID);

    let practitioner = fhir
        .read(&PractitionerId::new(fhir::PRACTITIONER_ID).unwrap())
        .await
        .unwrap();
    let npi = practitioner
        .identifier
        .iter()
        .find(|i| i.system.as_deref() == Some("http://hl7.org/fhir/sid/us-npi"));
    assert_eq!(npi.and_then(|i| i.value.as_deref()), Some("1627363736"));

    let role = fhir
        .read(&PractitionerRoleId::new(fhir::PRACTITIONER_ROLE_ID).unwrap())
        .await
        .unwrap();
    let role_practitioner = role
        .practitioner
        .as_ref()
        .and_then(|r| r.id_of::<visitbridge_fhir::Practitioner>());
    assert_eq!(role_practitioner.unwrap().as_str(), fhir::PRACTITIONER_ID);

    let location = fhir
        .read(&LocationId::new(fhir::LOCATION_ID).unwrap())
        .await
        .unwrap();
    assert_eq!(location.id.unwrap().as_str(), fhir::LOCATION_ID);

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 6);
    for request in requests {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("accept").as_deref(), Some("application/fhir+json"));
        assert_eq!(header("authorization"), Some(format!("Bearer {TOKEN}")));
        assert_eq!(header("epic-client-id").as_deref(), Some("test-client-id"));
    }
}

#[tokio::test]
async fn an_unknown_id_is_not_found() {
    let (_server, fake) = FhirFake::start().await;
    let err = client(fake.base_url())
        .read(&PatientId::new("does-not-exist").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FhirError::NotFound { resource_type: "Patient", id } if id == "does-not-exist"),
        "{err:?}"
    );
}

#[tokio::test]
async fn debug_output_of_read_resources_carries_no_phi() {
    let (_server, fake) = FhirFake::start().await;
    let fhir = client(fake.base_url());
    let patient = fhir
        .read(&PatientId::new(fhir::PATIENT_ID).unwrap())
        .await
        .unwrap();
    let appointment = fhir
        .read(&AppointmentId::new(fhir::APPOINTMENT_ID).unwrap())
        .await
        .unwrap();
    let encounter = fhir
        .read(&EncounterId::new(fhir::ENCOUNTER_ID).unwrap())
        .await
        .unwrap();
    let shown = format!("{patient:?} {appointment:?} {encounter:?}");
    for probe in PHI_PROBES
        .iter()
        .chain(&["Camila Maria", "morning reminder"])
    {
        assert!(!shown.contains(probe), "{probe} in Debug output: {shown}");
    }
    // The data is still there for a round trip, just not in Debug.
    assert!(serde_json::to_string(&patient).unwrap().contains("Camila"));
}

#[tokio::test]
async fn metadata_needs_no_token_and_names_the_oauth_endpoints() {
    let (server, fake) = FhirFake::start().await;
    let http = build_client(&HttpConfig::default()).unwrap();
    let anonymous = FhirClient::anonymous(config(fake.base_url()), http);

    let capabilities = anonymous.capability_statement().await.unwrap();
    assert_eq!(capabilities.fhir_version.as_deref(), Some("4.0.1"));
    let oauth = capabilities.oauth_uris().unwrap();
    assert_eq!(
        oauth.token.unwrap().as_str(),
        format!("{}/interconnect-fhir-oauth/oauth2/token", server.uri())
    );
    assert_eq!(
        oauth.authorize.unwrap().as_str(),
        format!("{}/interconnect-fhir-oauth/oauth2/authorize", server.uri())
    );
    let audit = capabilities.resource("AuditEvent").unwrap();
    assert_eq!(audit.update_create, Some(true));
    assert!(audit.supports("create"));
    assert!(
        !capabilities
            .resource("Communication")
            .unwrap()
            .supports("update")
    );

    // An anonymous client cannot read, and does not even try.
    let err = anonymous
        .read(&PatientId::new(fhir::PATIENT_ID).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, FhirError::TokenSource(_)), "{err:?}");

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].headers.get("authorization").is_none());
    assert_eq!(
        requests[0].headers.get("epic-client-id").unwrap(),
        "test-client-id"
    );

    // An authenticated client keeps its token to itself on metadata too.
    client(fake.base_url())
        .capability_statement()
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert!(requests[1].headers.get("authorization").is_none());
}
