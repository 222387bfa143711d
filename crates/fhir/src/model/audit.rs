//! `AuditEvent`: how a participant's connect or disconnect is recorded, and its builder.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    AppointmentId, AuditEventAction, AuditEventId, AuditEventOutcome, CodeableConcept, Coding,
    EncounterId, Extra, FhirInstant, Identifier, Meta, PatientId, Period, PractitionerId,
    Reference, Resource, TypeTag,
};
use crate::search::SearchQuery;

/// Our code system for visit events (the `subtype` binding is extensible).
pub const VISIT_EVENT_SYSTEM: &str = "https://visitbridge.dev/fhir/CodeSystem/visit-event";
/// The `meta.tag` system whose code is our event id: the idempotency key for conditional create
/// (R4 AuditEvent has no `identifier`).
pub const EVENT_TAG_SYSTEM: &str = "https://visitbridge.dev/fhir/CodeSystem/event-id";

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";

/// An R4 AuditEvent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Always `AuditEvent`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<AuditEvent>,
    /// The FHIR id (chosen by us for `PUT`, see [`AuditEventId::for_event`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AuditEventId>,
    /// Tags; ours carries the event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// The kind of event (required).
    #[serde(rename = "type")]
    pub type_: Coding,
    /// More specific kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtype: Vec<Coding>,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<AuditEventAction>,
    /// When the event happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// When it was recorded (required).
    pub recorded: FhirInstant,
    /// Whether it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AuditEventOutcome>,
    /// Who took part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<AuditEventAgent>,
    /// Who reported it (required).
    pub source: AuditEventSource,
    /// What it was about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity: Vec<AuditEventEntity>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `AuditEvent.agent`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEventAgent {
    /// The agent's kind of participation.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role: Vec<CodeableConcept>,
    /// The agent, by reference or identifier (never by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<Reference>,
    /// Whether this agent initiated the event (required).
    pub requestor: bool,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `AuditEvent.source`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEventSource {
    /// Logical site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The reporting system (required): for us, the connector as a Device.
    pub observer: Reference,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `AuditEvent.entity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEventEntity {
    /// The entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<Reference>,
    /// Its kind (`audit-entity-type`: 1 person, 2 system object).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<Coding>,
    /// Its role (`object-role`: 1 patient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Coding>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for AuditEvent {
    const TYPE: &'static str = "AuditEvent";
}

/// Whether a participant joined or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantAction {
    /// Joined the meeting (DICOM Login).
    Connected,
    /// Left the meeting (DICOM Logout).
    Disconnected,
}

/// Who a participant is, in a form that never carries a name.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditAgent {
    /// A clinician known to the EHR.
    Practitioner(PractitionerId),
    /// The patient.
    Patient(PatientId),
    /// Anyone else, by a business identifier (e.g. system = Entra tenant, value = object id).
    Identifier {
        /// The identifier's namespace.
        system: String,
        /// The identifier.
        value: String,
    },
}

impl AuditAgent {
    fn reference(&self) -> Reference {
        match self {
            Self::Practitioner(id) => Reference::to(id),
            Self::Patient(id) => Reference::to(id),
            Self::Identifier { system, value } => {
                Reference::by_identifier(Identifier::new(system, value))
            }
        }
    }
}

/// What [`AuditEvent::participant_event`] records.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantAudit {
    /// Our event id: goes into `meta.tag` (and, for `PUT`, into the resource id).
    pub event_id: String,
    /// Joined or left.
    pub action: ParticipantAction,
    /// When it happened (from the meeting service).
    pub occurred_at: DateTime<Utc>,
    /// When we stored it.
    pub recorded_at: DateTime<Utc>,
    /// The participant.
    pub participant: AuditAgent,
    /// The connector, as a reference (e.g. `Device/visitbridge`); observer and second agent.
    pub connector: Reference,
    /// The visit's Appointment.
    pub appointment: Option<AppointmentId>,
    /// The visit's Encounter.
    pub encounter: Option<EncounterId>,
    /// The patient of the visit (by reference only).
    pub patient: Option<PatientId>,
}

impl AuditEvent {
    /// A participant connect/disconnect as an R4 AuditEvent, shaped as `writeback.md` describes:
    /// type DCM 110114 User Authentication; subtype DCM 110122 Login / 110123 Logout plus our
    /// `participant-connected` / `participant-disconnected`; action `E`; outcome `0`;
    /// agent 0 the participant (requestor), agent 1 the connector (DCM 110153 Source Role ID);
    /// entities Appointment and Encounter (type 2) and the patient (type 1, role 1);
    /// `meta.tag` our event id.
    pub fn participant_event(audit: &ParticipantAudit) -> Self {
        let (dicom, ours) = match audit.action {
            ParticipantAction::Connected => (
                Coding::new(DCM, "110122", "Login"),
                Coding::new(
                    VISIT_EVENT_SYSTEM,
                    "participant-connected",
                    "Participant connected",
                ),
            ),
            ParticipantAction::Disconnected => (
                Coding::new(DCM, "110123", "Logout"),
                Coding::new(
                    VISIT_EVENT_SYSTEM,
                    "participant-disconnected",
                    "Participant disconnected",
                ),
            ),
        };
        let object = |what: Reference| AuditEventEntity {
            what: Some(what),
            type_: Some(Coding::new(ENTITY_TYPE, "2", "System Object")),
            ..AuditEventEntity::default()
        };
        let mut entity = Vec::new();
        entity.extend(
            audit
                .appointment
                .as_ref()
                .map(|id| object(Reference::to(id))),
        );
        entity.extend(audit.encounter.as_ref().map(|id| object(Reference::to(id))));
        entity.extend(audit.patient.as_ref().map(|id| AuditEventEntity {
            what: Some(Reference::to(id)),
            type_: Some(Coding::new(ENTITY_TYPE, "1", "Person")),
            role: Some(Coding::new(OBJECT_ROLE, "1", "Patient")),
            ..AuditEventEntity::default()
        }));
        Self {
            resource_type: TypeTag::new(),
            id: None,
            meta: Some(Meta {
                tag: vec![Coding {
                    system: Some(EVENT_TAG_SYSTEM.to_owned()),
                    code: Some(audit.event_id.clone()),
                    ..Coding::default()
                }],
                ..Meta::default()
            }),
            type_: Coding::new(DCM, "110114", "User Authentication"),
            subtype: vec![dicom, ours],
            action: Some(AuditEventAction::Execute),
            period: Some(Period {
                start: Some(audit.occurred_at.into()),
                ..Period::default()
            }),
            recorded: audit.recorded_at.into(),
            outcome: Some(AuditEventOutcome::Success),
            agent: vec![
                AuditEventAgent {
                    who: Some(audit.participant.reference()),
                    requestor: true,
                    ..AuditEventAgent::default()
                },
                AuditEventAgent {
                    type_: Some(CodeableConcept::from_coding(Coding::new(
                        DCM,
                        "110153",
                        "Source Role ID",
                    ))),
                    who: Some(audit.connector.clone()),
                    requestor: false,
                    ..AuditEventAgent::default()
                },
            ],
            source: AuditEventSource {
                observer: audit.connector.clone(),
                ..AuditEventSource::default()
            },
            entity,
            extra: Extra::default(),
        }
    }

    /// Our event id, from the `meta.tag` in [`EVENT_TAG_SYSTEM`].
    pub fn event_id(&self) -> Option<&str> {
        self.meta
            .as_ref()?
            .tag
            .iter()
            .find(|t| t.system.as_deref() == Some(EVENT_TAG_SYSTEM))?
            .code
            .as_deref()
    }

    /// The `If-None-Exist` criteria that find this event again: `_tag=<system>|<event id>`.
    /// `None` when the event carries no event-id tag.
    pub fn if_none_exist(&self) -> Option<SearchQuery<AuditEvent>> {
        let event_id = self.event_id()?;
        Some(SearchQuery::new().param("_tag", format!("{EVENT_TAG_SYSTEM}|{event_id}")))
    }
}
