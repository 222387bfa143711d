//! `Communication`: a human-readable visit status note on the Encounter (Epic accepts creates).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Coding, CommunicationId, CommunicationStatus, EVENT_TAG_SYSTEM, EncounterId, Extra,
    FhirInstant, Meta, PatientId, Reference, Resource, TypeTag,
};

/// An R4 Communication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Communication {
    /// Always `Communication`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<Communication>,
    /// The FHIR id (assigned by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<CommunicationId>,
    /// Tags; ours carries the event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// Required.
    pub status: CommunicationStatus,
    /// The patient the note is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    /// The visit's Encounter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    /// When it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<FhirInstant>,
    /// The content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<CommunicationPayload>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `Communication.payload`; we write text only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommunicationPayload {
    /// The text.
    #[serde(
        rename = "contentString",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub content_string: Option<String>,
    /// Everything else (attachments, references).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for Communication {
    const TYPE: &'static str = "Communication";
}

impl Communication {
    /// A completed note `text` on `encounter` (and `patient`), tagged with our `event_id`.
    ///
    /// `text` is shown in the chart: say what happened ("Video visit: clinician joined"), never
    /// who by name.
    pub fn visit_status_note(
        event_id: &str,
        encounter: &EncounterId,
        patient: Option<&PatientId>,
        text: impl Into<String>,
        sent: DateTime<Utc>,
    ) -> Self {
        Self {
            resource_type: TypeTag::new(),
            id: None,
            meta: Some(Meta {
                tag: vec![Coding {
                    system: Some(EVENT_TAG_SYSTEM.to_owned()),
                    code: Some(event_id.to_owned()),
                    ..Coding::default()
                }],
                ..Meta::default()
            }),
            status: CommunicationStatus::Completed,
            subject: patient.map(Reference::to),
            encounter: Some(Reference::to(encounter)),
            sent: Some(sent.into()),
            payload: vec![CommunicationPayload {
                content_string: Some(text.into()),
                ..CommunicationPayload::default()
            }],
            extra: Extra::default(),
        }
    }
}
