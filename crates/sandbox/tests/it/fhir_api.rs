//! The sandbox EHR's FHIR API and write-back endpoints, driven with `visitbridge_fhir` and a
//! SMART backend-services token from `visitbridge_smart`.

use std::sync::Arc;

use chrono::Utc;
use visitbridge_fhir::{
    Appointment, AppointmentId, AuditAgent, AuditEvent, Communication, ConditionalCreate,
    EncounterId, FhirBaseUrl, FhirClient, FhirClientConfig, FhirError, ParticipantAction,
    ParticipantAudit, PatientId, PractitionerId, Reference, SearchQuery, StaticToken, TokenSource,
    UpdateOutcome,
};
use visitbridge_http::{ClientAssertionKey, Secret};
use visitbridge_smart::BackendServicesClient;

use crate::common::{self, BACKEND_KID, CLIENT_ID, get_html, http, url};

const BACKEND_SCOPE: &str =
    "system/Appointment.read system/AuditEvent.c system/AuditEvent.u system/Communication.c";

fn fhir_with(env: &common::Env, token: Arc<dyn TokenSource>) -> FhirClient {
    FhirClient::new(
        FhirClientConfig::new(
            FhirBaseUrl::parse(env.sandbox.fhir_base_url.as_str()).expect("base"),
        ),
        http(),
        token,
    )
}

fn backend(env: &common::Env, key: ClientAssertionKey) -> Arc<BackendServicesClient> {
    Arc::new(BackendServicesClient::new(
        http(),
        url(&env.sandbox.ehr.token_url()),
        CLIENT_ID,
        key,
        BACKEND_SCOPE,
    ))
}

#[tokio::test]
async fn reads_need_a_token_and_errors_are_epic_operation_outcomes() {
    let env = common::start().await;
    let seed = env.sandbox.ehr.seed().clone();

    let anonymous = FhirClient::anonymous(
        FhirClientConfig::new(
            FhirBaseUrl::parse(env.sandbox.fhir_base_url.as_str()).expect("base"),
        ),
        http(),
    );
    let statement = anonymous.capability_statement().await.expect("metadata");
    let uris = statement.oauth_uris().expect("oauth-uris extension");
    assert_eq!(
        uris.token.as_ref().map(url::Url::as_str),
        Some(env.sandbox.ehr.token_url().as_str())
    );

    let forged = fhir_with(
        &env,
        Arc::new(StaticToken(Secret::new("not-a-sandbox-token"))),
    );
    let id: AppointmentId = seed.visits[0].appointment_id.parse().expect("id");
    assert!(matches!(
        forged.read(&id).await,
        Err(FhirError::Unauthorized)
    ));

    // An unregistered key gets no token.
    let stranger = ClientAssertionKey::generate_es384(BACKEND_KID).expect("key");
    let refused = fhir_with(&env, backend(&env, stranger)).read(&id).await;
    assert!(
        matches!(refused, Err(FhirError::TokenSource(_))),
        "{refused:?}"
    );

    let fhir = fhir_with(&env, backend(&env, env.backend_key.clone()));
    assert!(fhir.read(&id).await.is_ok());
    let missing: AppointmentId = "eVbAppt-does-not-exist".parse().expect("id");
    assert!(matches!(
        fhir.read(&missing).await,
        Err(FhirError::NotFound { .. })
    ));
    let nobody: PatientId = "eVbPat-Nobody".parse().expect("id");
    let empty = fhir
        .search(&SearchQuery::<Appointment>::new().patient(&nobody))
        .await
        .expect("search");
    assert_eq!(empty.resources().count(), 0);
    assert!(empty.outcomes.iter().any(|o| o.has_epic_code(4101)));
    let unbounded = fhir
        .search(&SearchQuery::<Appointment>::new().param("status", "booked"))
        .await
        .expect_err("needs patient, practitioner or identifier");
    assert_eq!(unbounded.status().map(|s| s.as_u16()), Some(400));
    assert_eq!(unbounded.epic_codes(), vec![4110]);
    let by_csn = fhir
        .search(&SearchQuery::<Appointment>::new().param("identifier", seed.visits[3].csn.clone()))
        .await
        .expect("search");
    let found: Vec<String> = by_csn
        .resources()
        .filter_map(|a| a.id.as_ref().map(|i| i.as_str().to_owned()))
        .collect();
    assert_eq!(found, vec![seed.visits[3].appointment_id.clone()]);
}

#[tokio::test]
async fn write_back_is_stored_idempotently_and_shown_in_the_ehr() {
    let env = common::start().await;
    let seed = env.sandbox.ehr.seed().clone();
    let visit = &seed.visits[0];
    let token = backend(&env, env.backend_key.clone());
    let fhir = fhir_with(&env, token.clone());

    let event = AuditEvent::participant_event(&ParticipantAudit {
        event_id: "4f1c0b9e-0000-4000-8000-000000000001".to_owned(),
        action: ParticipantAction::Connected,
        occurred_at: Utc::now(),
        recorded_at: Utc::now(),
        participant: AuditAgent::Practitioner(
            visit.practitioner_id.parse::<PractitionerId>().expect("id"),
        ),
        connector: Reference {
            reference: Some("Device/visitbridge".to_owned()),
            ..Reference::default()
        },
        appointment: Some(visit.appointment_id.parse().expect("id")),
        encounter: Some(visit.encounter_id.parse().expect("id")),
        patient: Some(visit.patient_id.parse().expect("id")),
    });
    let criteria = event.if_none_exist().expect("tagged");
    let first = fhir
        .create_if_none_exist(&event, &criteria)
        .await
        .expect("create");
    let ConditionalCreate::Created(Some(id)) = first else {
        panic!("expected a creation with an id, got {first:?}");
    };
    let again = fhir
        .create_if_none_exist(&event, &criteria)
        .await
        .expect("repeat");
    assert_eq!(again, ConditionalCreate::AlreadyExists(Some(id.clone())));
    let put_id = visitbridge_fhir::AuditEventId::for_event("event-2");
    assert_eq!(
        fhir.update(&put_id, &event).await.expect("put"),
        UpdateOutcome::Created
    );
    assert_eq!(
        fhir.update(&put_id, &event).await.expect("put again"),
        UpdateOutcome::Updated
    );
    assert_eq!(env.sandbox.ehr.audit_events().len(), 2);
    let encounter: EncounterId = visit.encounter_id.parse().expect("id");
    let note = Communication::visit_status_note(
        "event-3",
        &encounter,
        None,
        "Video visit: clinician joined",
        Utc::now(),
    );
    assert!(fhir.create(&note).await.expect("communication").is_some());

    // Epic's connection-status service wants the backend token and Epic-Client-ID.
    let bearer = token.access_token().await.expect("token");
    let status_url = url(&env.sandbox.ehr.connection_status_url());
    let call = |client_id: Option<&'static str>| {
        let mut request = http()
            .get(status_url.clone())
            .bearer_auth(bearer.expose())
            .query(&[
                ("ConferenceID", visit.csn.as_str()),
                ("ExternalID", "participant-1"),
                ("ExternalIDType", "PLACEHOLDER-TYPE"),
                ("VendorName", "VisitBridge"),
                ("ConnectionStatus", "PLACEHOLDER-CONNECTED"),
            ]);
        if let Some(id) = client_id {
            request = request.header("Epic-Client-ID", id);
        }
        request.send()
    };
    assert_eq!(call(None).await.expect("call").status(), 403);
    assert_eq!(call(Some(CLIENT_ID)).await.expect("call").status(), 200);
    let statuses = env.sandbox.ehr.connection_statuses();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].conference_id, visit.csn);
    assert_eq!(statuses[0].client_id, CLIENT_ID);

    let audit = get_html(&http(), &env.sandbox.audit_url).await;
    assert!(audit.contains(id.as_str()), "the AuditEvent is listed");
    assert!(audit.contains("PLACEHOLDER-CONNECTED"));
    assert!(audit.contains("Video visit: clinician joined"));
    let schedule = get_html(&http(), &env.sandbox.schedule_url).await;
    assert!(schedule.contains("PLACEHOLDER-CONNECTED (PLACEHOLDER-TYPE participant-1)"));
    assert!(schedule.contains("2 AuditEvent(s)"));
}
