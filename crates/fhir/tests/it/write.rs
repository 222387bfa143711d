//! Writes: conditional create of AuditEvents, PUT with an event-derived id, Communication notes.

use chrono::{TimeZone, Utc};
use visitbridge_fhir::{
    AuditAgent, AuditEvent, AuditEventId, Communication, ConditionalCreate, EVENT_TAG_SYSTEM,
    EncounterId, ParticipantAction, PatientId, PractitionerId, UpdateOutcome,
};
use visitbridge_testkit::fhir::{self, FhirFake, fhir_json, operation_outcome};
use wiremock::{
    Mock,
    matchers::{method, path},
};

use crate::{client, participant_event};

fn connected(event_id: &str, participant: AuditAgent) -> AuditEvent {
    participant_event(event_id, ParticipantAction::Connected, participant)
}

fn practitioner() -> AuditAgent {
    AuditAgent::Practitioner(PractitionerId::new(fhir::PRACTITIONER_ID).unwrap())
}

#[tokio::test]
async fn conditional_create_stores_an_event_once() {
    let (server, fake) = FhirFake::start().await;
    let fhir = client(fake.base_url());
    let event = connected("evt-42", practitioner());
    let criteria = event.if_none_exist().unwrap();

    let first = fhir.create_if_none_exist(&event, &criteria).await.unwrap();
    let ConditionalCreate::Created(Some(id)) = first else {
        panic!("expected a creation with an id, got {first:?}");
    };
    let again = fhir.create_if_none_exist(&event, &criteria).await.unwrap();
    assert_eq!(again, ConditionalCreate::AlreadyExists(Some(id.clone())));

    let stored = fake.audit_events();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], id.as_str());
    assert_eq!(stored[0]["meta"]["tag"][0]["code"], "evt-42");

    let request = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/fhir+json"
    );
    let condition = request
        .headers
        .get("if-none-exist")
        .unwrap()
        .to_str()
        .unwrap();
    let decoded: Vec<(String, String)> = url::form_urlencoded::parse(condition.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        decoded,
        [("_tag".to_owned(), format!("{EVENT_TAG_SYSTEM}|evt-42"))]
    );
}

#[tokio::test]
async fn several_matches_are_reported_not_created() {
    let (server, fake) = FhirFake::start().await;
    Mock::given(method("POST"))
        .and(path(fake.path("AuditEvent")))
        .respond_with(fhir_json(
            412,
            operation_outcome("duplicate", None, "Multiple resources match the criteria"),
        ))
        .with_priority(1)
        .mount(&server)
        .await;
    let event = connected("evt-1", practitioner());
    let outcome = client(fake.base_url())
        .create_if_none_exist(&event, &event.if_none_exist().unwrap())
        .await
        .unwrap();
    assert_eq!(outcome, ConditionalCreate::MultipleMatches);
}

#[tokio::test]
async fn put_with_the_event_derived_id_creates_then_updates() {
    let (_server, fake) = FhirFake::start().await;
    let fhir = client(fake.base_url());
    let event = connected("evt-7", practitioner());
    let id = AuditEventId::for_event("evt-7");

    assert_eq!(
        fhir.update(&id, &event).await.unwrap(),
        UpdateOutcome::Created
    );
    assert_eq!(
        fhir.update(&id, &event).await.unwrap(),
        UpdateOutcome::Updated
    );
    let stored = fake.audit_events();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["id"],
        id.as_str(),
        "the body id must match the URL"
    );
}

#[tokio::test]
async fn a_visit_status_note_is_created_on_the_encounter() {
    let (_server, fake) = FhirFake::start().await;
    let note = Communication::visit_status_note(
        "evt-9",
        &EncounterId::new(fhir::ENCOUNTER_ID).unwrap(),
        Some(&PatientId::new(fhir::PATIENT_ID).unwrap()),
        "Video visit: clinician joined",
        Utc.with_ymd_and_hms(2026, 3, 5, 18, 1, 30).unwrap(),
    );
    let id = client(fake.base_url()).create(&note).await.unwrap();
    let stored = fake.communications();
    assert_eq!(stored.len(), 1);
    assert_eq!(id.unwrap().as_str(), stored[0]["id"].as_str().unwrap());
    assert_eq!(
        stored[0]["encounter"]["reference"],
        format!("Encounter/{}", fhir::ENCOUNTER_ID)
    );
    assert_eq!(stored[0]["status"], "completed");
    assert_eq!(
        stored[0]["payload"][0]["contentString"],
        "Video visit: clinician joined"
    );
}
