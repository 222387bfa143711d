//! From a Graph [`ParticipantEvent`] of a visit to the stored event and its FHIR AuditEvent.

use chrono::{DateTime, Utc};
use visitbridge_fhir::{
    AppointmentId, AuditAgent, AuditEvent, AuditEventAgent, Coding, EncounterId, Identifier,
    ParticipantAction, ParticipantAudit, PatientId, PractitionerId, Reference, VISIT_EVENT_SYSTEM,
};
use visitbridge_graph::{EventKind, EventSource, ParticipantEvent, ParticipantKind};
use visitbridge_store::{
    EventOrigin, EventParticipant, ParticipantClass, StoredEvent, Visit, VisitEventKind,
};

use crate::{AuditError, VisitEventId};

/// The identifier system of Entra ID object ids in AuditEvent agents (staff who are not the
/// visit's linked clinician).
pub const ENTRA_OBJECT_ID_SYSTEM: &str =
    "https://visitbridge.dev/fhir/NamingSystem/entra-object-id";
/// The identifier system of the opaque per-meeting ids of guests (patients joining in the
/// browser, phone dial-ins): they tell participants apart and identify no one.
pub const MEETING_PARTICIPANT_SYSTEM: &str =
    "https://visitbridge.dev/fhir/NamingSystem/meeting-participant";
/// The identifier system of Entra application ids (bots) in AuditEvent agents.
pub const ENTRA_APPLICATION_SYSTEM: &str =
    "https://visitbridge.dev/fhir/NamingSystem/entra-application-id";
/// The identifier system of the connector itself (the AuditEvent's observer).
pub const CONNECTOR_SYSTEM: &str = "https://visitbridge.dev/fhir/NamingSystem/connector";

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// The connector as the AuditEvent's observer and second agent: a logical Device reference (by
/// identifier, so a server that checks references does not look for a Device resource we never
/// created).
pub fn default_connector() -> Reference {
    Reference {
        type_: Some("Device".to_owned()),
        display: Some("VisitBridge".to_owned()),
        ..Reference::by_identifier(Identifier::new(CONNECTOR_SYSTEM, "visitbridge"))
    }
}

pub(crate) fn kind_of(kind: EventKind) -> VisitEventKind {
    match kind {
        EventKind::CallStarted => VisitEventKind::CallStarted,
        EventKind::ParticipantInLobby => VisitEventKind::ParticipantInLobby,
        EventKind::ParticipantJoined => VisitEventKind::ParticipantJoined,
        EventKind::ParticipantLeft => VisitEventKind::ParticipantLeft,
        EventKind::CallEnded => VisitEventKind::CallEnded,
    }
}

/// The stored form of a participant: class and id. An id the store cannot keep as it is (spaces,
/// over-long) is replaced by a UUID v5 of it, which still tells participants apart.
pub(crate) fn participant_of(kind: &ParticipantKind) -> EventParticipant {
    let (class, id) = match kind {
        ParticipantKind::OrganizationUser { object_id, .. } => {
            (ParticipantClass::OrganizationUser, object_id.as_str())
        }
        ParticipantKind::Anonymous { opaque_id } => {
            (ParticipantClass::Anonymous, opaque_id.as_str())
        }
        ParticipantKind::AcsGuest { opaque_id } => (ParticipantClass::AcsGuest, opaque_id.as_str()),
        ParticipantKind::Application { app_id } => (ParticipantClass::Application, app_id.as_str()),
    };
    let usable = !id.is_empty()
        && id.len() <= 256
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    let id = if usable {
        id.to_owned()
    } else {
        const OPAQUE: uuid::Uuid = uuid::Uuid::from_u128(0x9d2e_41f7_0c3b_4a65_b8e1_52a7_c90d_3e14);
        format!("h-{}", uuid::Uuid::new_v5(&OPAQUE, id.as_bytes()))
    };
    EventParticipant { class, id }
}

/// Milliseconds, as the store keeps times: the id and the stored row agree.
fn to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// The event as stored, with its AuditEvent, for `visit`.
pub(crate) fn stored_event(
    visit: &Visit,
    event: &ParticipantEvent,
    recorded_at: DateTime<Utc>,
    connector: &Reference,
) -> Result<StoredEvent, AuditError> {
    let kind = kind_of(event.kind);
    let participant = event.participant.as_ref().map(|p| participant_of(&p.kind));
    let occurred_at = to_millis(event.at);
    let id = VisitEventId::derive(&visit.id, kind, participant.as_ref(), occurred_at);
    let event_id = id.to_event_id()?;
    let audit = audit_event(
        visit,
        &event_id.to_string(),
        kind,
        participant.as_ref(),
        event.at,
        recorded_at,
        connector,
    );
    Ok(StoredEvent {
        event_id,
        visit_id: visit.id.clone(),
        kind,
        participant,
        occurred_at,
        recorded_at,
        origin: match event.source {
            EventSource::Notification => EventOrigin::Notification,
            EventSource::AttendanceReport => EventOrigin::AttendanceReport,
        },
        audit_event: serde_json::to_value(&audit).map_err(|_| AuditError::Encode)?,
    })
}

/// Who the participant is in the AuditEvent: the visit's clinician as their Practitioner, anyone
/// else by identifier. Never a name.
fn agent_of(visit: &Visit, participant: &EventParticipant) -> AuditAgent {
    let system = match participant.class {
        ParticipantClass::OrganizationUser => {
            let is_organizer = visit
                .organizer_object_id
                .as_ref()
                .is_some_and(|o| o.as_str().eq_ignore_ascii_case(&participant.id));
            let practitioner = visit
                .practitioner_fhir_id
                .as_deref()
                .and_then(|id| PractitionerId::new(id).ok());
            if let (true, Some(practitioner)) = (is_organizer, practitioner) {
                return AuditAgent::Practitioner(practitioner);
            }
            ENTRA_OBJECT_ID_SYSTEM
        }
        ParticipantClass::Anonymous | ParticipantClass::AcsGuest => MEETING_PARTICIPANT_SYSTEM,
        ParticipantClass::Application => ENTRA_APPLICATION_SYSTEM,
    };
    AuditAgent::Identifier {
        system: system.to_owned(),
        value: participant.id.clone(),
    }
}

/// The R4 AuditEvent of an event, shaped as `writeback.md` says.
///
/// Joins and leaves are DICOM User Authentication (110114) with Login/Logout subtypes, built by
/// `visitbridge_fhir::AuditEvent::participant_event`. Waiting in the lobby is Application
/// Activity (`DCM#110100`) with our `participant-in-lobby` code only (it is not a login yet).
/// Call start and end have no participant:
/// they are Application Activity (`DCM#110100`) with Application Start/Stop (110120/110121) and
/// our `call-started`/`call-ended` codes, and the connector as the only agent.
fn audit_event(
    visit: &Visit,
    event_id: &str,
    kind: VisitEventKind,
    participant: Option<&EventParticipant>,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    connector: &Reference,
) -> AuditEvent {
    let audit = ParticipantAudit {
        event_id: event_id.to_owned(),
        action: match kind {
            VisitEventKind::ParticipantLeft | VisitEventKind::CallEnded => {
                ParticipantAction::Disconnected
            }
            VisitEventKind::ParticipantJoined
            | VisitEventKind::ParticipantInLobby
            | VisitEventKind::CallStarted => ParticipantAction::Connected,
        },
        occurred_at,
        recorded_at,
        participant: participant.map_or_else(
            || AuditAgent::Identifier {
                system: CONNECTOR_SYSTEM.to_owned(),
                value: "visitbridge".to_owned(),
            },
            |p| agent_of(visit, p),
        ),
        connector: connector.clone(),
        appointment: fhir_id::<AppointmentId>(visit.appointment_fhir_id.as_deref()),
        encounter: fhir_id::<EncounterId>(visit.encounter_fhir_id.as_deref()),
        patient: fhir_id::<PatientId>(visit.patient_fhir_id.as_deref()),
    };
    let mut resource = AuditEvent::participant_event(&audit);
    let application_activity = || Coding::new(DCM, "110100", "Application Activity");
    match kind {
        VisitEventKind::ParticipantJoined | VisitEventKind::ParticipantLeft => {}
        VisitEventKind::ParticipantInLobby => {
            // Waiting to be admitted is not a login yet: no DICOM Login subtype.
            resource.type_ = application_activity();
            resource.subtype = vec![Coding::new(
                VISIT_EVENT_SYSTEM,
                "participant-in-lobby",
                "Participant waiting in the lobby",
            )];
        }
        VisitEventKind::CallStarted | VisitEventKind::CallEnded => {
            let (dicom, dicom_display, ours, ours_display) = if kind == VisitEventKind::CallStarted
            {
                (
                    "110120",
                    "Application Start",
                    "call-started",
                    "Call started",
                )
            } else {
                ("110121", "Application Stop", "call-ended", "Call ended")
            };
            resource.type_ = application_activity();
            resource.subtype = vec![
                Coding::new(DCM, dicom, dicom_display),
                Coding::new(VISIT_EVENT_SYSTEM, ours, ours_display),
            ];
            // The participant agent was a placeholder: keep only the connector.
            let connector_agent: Vec<AuditEventAgent> = resource.agent.drain(..).skip(1).collect();
            resource.agent = connector_agent;
        }
    }
    resource
}

fn fhir_id<T: std::str::FromStr>(value: Option<&str>) -> Option<T> {
    value.and_then(|v| v.parse().ok())
}
