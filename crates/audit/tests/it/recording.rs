//! Roster notifications → stored AuditEvents → the right calls at every sink.

use serde_json::Value;
use visitbridge_audit::{
    AuditEventMode, ENTRA_OBJECT_ID_SYSTEM, MEETING_PARTICIPANT_SYSTEM, RecordSummary, VisitStatus,
};
use visitbridge_fhir::{
    AuditEvent, AuditEventAction, AuditEventId, AuditEventOutcome, CapabilityStatement,
    EVENT_TAG_SYSTEM, VISIT_EVENT_SYSTEM,
};
use visitbridge_graph::{EventKind, EventSource, MeetingRef, ParticipantEvent};
use visitbridge_store::{
    AuditRepo, OutboxRepo, OutboxState, RecordOutcome, StoredEvent, VisitEventKind, VisitRepo,
};
use visitbridge_testkit::fhir;

use crate::*;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

fn parse(event: &StoredEvent) -> AuditEvent {
    serde_json::from_value(event.audit_event.clone()).unwrap()
}

fn codes(audit: &AuditEvent) -> Vec<(String, String)> {
    audit
        .subtype
        .iter()
        .map(|c| (c.system.clone().unwrap(), c.code.clone().unwrap()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn references(audit: &AuditEvent) -> Vec<String> {
    audit
        .entity
        .iter()
        .filter_map(|e| e.what.as_ref()?.reference.clone())
        .collect()
}

#[tokio::test]
async fn roster_notification_becomes_audit_events_and_sink_calls() {
    let env = Env::new(Sinks::All).await;
    let summary = env
        .recorder()
        .accept_notifications(&fixture_notifications())
        .await
        .unwrap();
    assert_eq!(
        summary,
        RecordSummary {
            recorded: 2,
            ..RecordSummary::default()
        }
    );

    // Stored: one AuditEvent per roster change, shaped as writeback.md says.
    let events = env.store.events_for_visit(&env.visit.id).await.unwrap();
    assert_eq!(events.len(), 2);
    let joined = events
        .iter()
        .find(|e| e.kind == VisitEventKind::ParticipantJoined)
        .unwrap();
    let left = events
        .iter()
        .find(|e| e.kind == VisitEventKind::ParticipantLeft)
        .unwrap();

    let audit = parse(joined);
    assert!(audit.type_.is(DCM, "110114"));
    assert_eq!(
        codes(&audit),
        pairs(&[
            (DCM, "110122"),
            (VISIT_EVENT_SYSTEM, "participant-connected")
        ])
    );
    assert_eq!(audit.action, Some(AuditEventAction::Execute));
    assert_eq!(audit.outcome, Some(AuditEventOutcome::Success));
    assert_eq!(
        audit
            .period
            .as_ref()
            .and_then(|p| p.start.as_ref())
            .map(|s| s.as_str()),
        Some("2026-03-05T18:02:11.512Z")
    );
    assert_eq!(audit.event_id(), Some(joined.event_id.as_str()));
    // The guest by their opaque meeting id, the connector as the second agent and observer.
    let who = audit.agent[0].who.as_ref().unwrap();
    assert!(audit.agent[0].requestor);
    let id = who.identifier.as_ref().unwrap();
    assert_eq!(id.system.as_deref(), Some(MEETING_PARTICIPANT_SYSTEM));
    assert_eq!(id.value.as_deref(), Some(GUEST));
    assert_eq!(who.reference, None);
    assert_eq!(audit.agent.len(), 2);
    assert_eq!(audit.source.observer.type_.as_deref(), Some("Device"));
    assert_eq!(
        references(&audit),
        [
            format!("Appointment/{}", fhir::APPOINTMENT_ID),
            format!("Encounter/{}", fhir::ENCOUNTER_ID),
            format!("Patient/{}", fhir::PATIENT_ID),
        ]
    );

    // The organiser is the visit's linked clinician: a Practitioner reference.
    let audit = parse(left);
    assert_eq!(
        codes(&audit),
        pairs(&[
            (DCM, "110123"),
            (VISIT_EVENT_SYSTEM, "participant-disconnected")
        ])
    );
    assert_eq!(
        audit.agent[0].who.as_ref().unwrap().reference.as_deref(),
        Some(format!("Practitioner/{}", fhir::PRACTITIONER_ID).as_str())
    );

    // Delivered: every sink, every event.
    let report = env.worker().run_once(Utc::now()).await.unwrap();
    assert_eq!((report.claimed, report.delivered), (6, 6));

    let calls = env.epic.accepted();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(env.epic.calls().len(), 2, "nothing refused");
    let call_for = |id: &str| {
        calls
            .iter()
            .find(|c| c.external_id.as_deref() == Some(id))
            .unwrap()
    };
    let guest_call = call_for(GUEST);
    assert_eq!(guest_call.conference_id.as_deref(), Some(CONFERENCE_ID));
    assert_eq!(
        guest_call.connection_status.as_deref(),
        Some("TEST-CONNECTED")
    );
    assert_eq!(
        guest_call.external_id_type.as_deref(),
        Some("TEST-EXTERNAL-ID-TYPE")
    );
    assert_eq!(guest_call.vendor_name.as_deref(), Some("VisitBridge"));
    assert_eq!(guest_call.client_id.as_deref(), Some(EPIC_CLIENT_ID));
    assert_eq!(
        call_for(ORGANIZER).connection_status.as_deref(),
        Some("TEST-DISCONNECTED")
    );

    // FHIR: PUT with the id derived from the event id, the stored resource as body.
    let stored = env.fhir.audit_events();
    assert_eq!(stored.len(), 2);
    for event in &events {
        let id = AuditEventId::for_event(event.event_id.as_str());
        let body = stored.iter().find(|b| b["id"] == id.as_str()).unwrap();
        let mut expected = event.audit_event.clone();
        expected["id"] = Value::from(id.as_str());
        assert_eq!(body, &expected);
        assert_eq!(body["meta"]["tag"][0]["system"], EVENT_TAG_SYSTEM);
    }

    // Communication notes on the Encounter, tagged, by role only.
    let notes = env.fhir.communications();
    assert_eq!(notes.len(), 2);
    let texts: Vec<&str> = notes
        .iter()
        .map(|n| n["payload"][0]["contentString"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&"Video visit: the patient or a guest connected"),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"Video visit: a staff member disconnected"),
        "{texts:?}"
    );
    for note in &notes {
        assert_eq!(
            note["encounter"]["reference"],
            format!("Encounter/{}", fhir::ENCOUNTER_ID)
        );
        assert_eq!(
            note["subject"]["reference"],
            format!("Patient/{}", fhir::PATIENT_ID)
        );
    }
    // Sent as conditional creates on the event tag.
    let requests = env.fhir_server.received_requests().await.unwrap();
    let criteria: Vec<String> = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/Communication"))
        .map(|r| r.headers["if-none-exist"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(criteria.len(), 2);
    assert!(
        criteria
            .iter()
            .all(|c| c.starts_with("_tag=https%3A%2F%2Fvisitbridge.dev"))
    );

    // Everything delivered, nothing left.
    for event in &events {
        let items = env.store.outbox_for_event(&event.event_id).await.unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            items
                .iter()
                .all(|i| i.state == OutboxState::Delivered && i.attempts == 1)
        );
    }
    assert_eq!(env.store.outbox_depth().await.unwrap().pending, 0);
    assert_eq!(env.worker().run_once(Utc::now()).await.unwrap().claimed, 0);
}

#[tokio::test]
async fn the_same_event_twice_is_stored_and_delivered_once() {
    let env = Env::new(Sinks::All).await;
    let recorder = env.recorder();
    // Graph delivers the same notification twice.
    let first = recorder
        .accept_notifications(&fixture_notifications())
        .await
        .unwrap();
    let again = recorder
        .accept_notifications(&fixture_notifications())
        .await
        .unwrap();
    assert_eq!((first.recorded, first.duplicates), (2, 0));
    assert_eq!((again.recorded, again.duplicates), (0, 2));
    // The same event through `record` directly is the same id.
    let event = person(EventKind::ParticipantJoined, 60, guest("8:acs:other"));
    let a = recorder.record(&env.visit, &event).await.unwrap();
    let b = recorder.record(&env.visit, &event).await.unwrap();
    assert_eq!(a.event_id, b.event_id);
    assert_eq!((a.outcome, a.deliveries), (RecordOutcome::Recorded, 3));
    assert_eq!((b.outcome, b.deliveries), (RecordOutcome::Duplicate, 0));

    assert_eq!(
        env.store
            .events_for_visit(&env.visit.id)
            .await
            .unwrap()
            .len(),
        3
    );
    let report = drain(&env.worker()).await;
    assert_eq!((report.claimed, report.delivered), (9, 9));
    assert_eq!(env.epic.accepted().len(), 3);
    assert_eq!(env.fhir.audit_events().len(), 3);
    assert_eq!(env.fhir.communications().len(), 3);
}

#[tokio::test]
async fn events_of_unknown_meetings_are_dropped_and_counted() {
    let env = Env::new(Sinks::All).await;
    let mut event = person(EventKind::ParticipantJoined, 5, guest("g"));
    event.meeting = MeetingRef::JoinWebUrl(
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_unknown%40thread.v2/0".into(),
    );
    let mut by_resource = event.clone();
    by_resource.meeting = MeetingRef::Resource("communications/calls/1".into());
    // The same meeting named by Graph's meeting id (attendance reports) is found.
    let mut by_id = person(EventKind::ParticipantJoined, 6, guest("g"));
    by_id.meeting = MeetingRef::MeetingId(env.visit.graph_meeting_id.as_deref().unwrap().into());
    let summary = env
        .recorder()
        .record_events(&[event, by_resource, by_id])
        .await
        .unwrap();
    assert_eq!((summary.recorded, summary.unknown_meeting), (1, 2));
    assert_eq!(env.store.outbox_depth().await.unwrap().pending, 3);
}

#[tokio::test]
async fn call_start_and_end_are_recorded_and_end_the_visit() {
    let env = Env::new(Sinks::All).await;
    let recorder = env.recorder();
    let call = |kind, seconds| ParticipantEvent {
        kind,
        at: at(seconds),
        meeting: MeetingRef::JoinWebUrl(JOIN_URL.into()),
        participant: None,
        source: EventSource::Notification,
    };
    let events = [
        call(EventKind::CallStarted, 0),
        person(EventKind::ParticipantInLobby, 10, guest("patient")),
        person(EventKind::ParticipantJoined, 40, staff(ORGANIZER)),
        person(EventKind::ParticipantJoined, 70, guest("patient")),
        person(EventKind::ParticipantLeft, 900, guest("patient")),
        person(EventKind::ParticipantLeft, 910, staff(ORGANIZER)),
        call(EventKind::CallEnded, 911),
    ];
    let summary = recorder.record_events(&events).await.unwrap();
    assert_eq!(summary.recorded, 7);

    let stored = env.store.events_for_visit(&env.visit.id).await.unwrap();
    let started = parse(&stored[0]);
    assert!(started.type_.is(DCM, "110100"));
    assert_eq!(
        codes(&started),
        pairs(&[(DCM, "110120"), (VISIT_EVENT_SYSTEM, "call-started")])
    );
    assert_eq!(started.agent.len(), 1, "the connector only");
    let ended = parse(&stored[6]);
    assert_eq!(
        codes(&ended),
        pairs(&[(DCM, "110121"), (VISIT_EVENT_SYSTEM, "call-ended")])
    );
    let lobby = parse(&stored[1]);
    assert_eq!(
        codes(&lobby),
        pairs(&[(VISIT_EVENT_SYSTEM, "participant-in-lobby")])
    );
    let visit = env.store.get_visit(&env.visit.id).await.unwrap().unwrap();
    assert_eq!(visit.ended_at, Some(at(911)));

    // Call events and the lobby go to the FHIR AuditEvent sink only (Epic has no lobby code
    // configured; notes are for joins and leaves).
    let report = drain(&env.worker()).await;
    assert_eq!((report.claimed, report.delivered), (7 + 4 + 4, 7 + 4 + 4));
    assert_eq!(env.epic.accepted().len(), 4);

    // The timeline the reports use.
    let timeline = recorder.timeline(&env.visit.id).await.unwrap();
    assert_eq!(timeline.status, VisitStatus::Completed);
    assert_eq!(timeline.start, Some(at(70)));
    assert_eq!(timeline.end, Some(at(910)));
    assert_eq!(timeline.lobby_wait, Some(chrono::Duration::seconds(60)));
    assert_eq!(timeline.duration(), Some(chrono::Duration::seconds(840)));
    assert_eq!(timeline.attendee_count(), 2);
    assert_eq!(timeline.call_ended_at, Some(at(911)));
}

#[tokio::test]
async fn other_staff_are_agents_by_entra_object_id() {
    let env = Env::new(Sinks::All).await;
    let event = person(
        EventKind::ParticipantJoined,
        5,
        staff("another-staff-member"),
    );
    let recorded = env.recorder().record(&env.visit, &event).await.unwrap();
    let stored = env
        .store
        .get_event(&recorded.event_id)
        .await
        .unwrap()
        .unwrap();
    let audit = parse(&stored);
    let id = audit.agent[0]
        .who
        .as_ref()
        .unwrap()
        .identifier
        .clone()
        .unwrap();
    assert_eq!(id.system.as_deref(), Some(ENTRA_OBJECT_ID_SYSTEM));
    assert_eq!(id.value.as_deref(), Some("another-staff-member"));
}

#[test]
fn audit_event_mode_follows_the_capability_statement() {
    let statement: CapabilityStatement = serde_json::from_str(&fhir::capability_statement(
        "https://ehr/authorize",
        "https://ehr/token",
    ))
    .unwrap();
    assert_eq!(
        AuditEventMode::from_capability(&statement),
        Some(AuditEventMode::ClientAssignedId)
    );
    let mut conditional = statement.clone();
    for rest in &mut conditional.rest {
        for resource in &mut rest.resource {
            resource.update_create = None;
        }
    }
    assert_eq!(
        AuditEventMode::from_capability(&conditional),
        Some(AuditEventMode::ConditionalCreate)
    );
    let mut none = statement;
    for rest in &mut none.rest {
        rest.resource
            .retain(|r| r.type_.as_deref() != Some("AuditEvent"));
    }
    assert_eq!(AuditEventMode::from_capability(&none), None);
}
