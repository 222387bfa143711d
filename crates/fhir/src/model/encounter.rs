//! `Encounter`: the visit record the EHR keeps for an appointment.

use serde::{Deserialize, Serialize};

use super::{
    AppointmentId, CodeableConcept, EncounterId, EncounterStatus, Extra, Identifier, PatientId,
    Period, Reference, Resource, TypeTag,
};

/// An R4 Encounter, with the elements VisitBridge uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Encounter {
    /// Always `Encounter`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<Encounter>,
    /// The FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<EncounterId>,
    /// Business identifiers (Epic: the CSN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    /// Encounter status; unknown codes are kept in `Other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EncounterStatus>,
    /// The patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    /// Clinicians taking part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<EncounterParticipant>,
    /// The appointments this encounter fulfils.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub appointment: Vec<Reference>,
    /// When it takes place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// Everything else (class, type, location, serviceProvider, …), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `Encounter.participant`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EncounterParticipant {
    /// The role.
    #[serde(rename = "type", default, skip_serializing_if = "Vec::is_empty")]
    pub type_: Vec<CodeableConcept>,
    /// When they took part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// The practitioner (or related person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub individual: Option<Reference>,
    /// Other elements.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for Encounter {
    const TYPE: &'static str = "Encounter";
}

impl Encounter {
    /// The patient's id (from `subject`).
    pub fn patient_id(&self) -> Option<PatientId> {
        self.subject.as_ref().and_then(Reference::id_of)
    }

    /// The ids of the appointments this encounter belongs to.
    pub fn appointment_ids(&self) -> Vec<AppointmentId> {
        self.appointment
            .iter()
            .filter_map(Reference::id_of)
            .collect()
    }
}
