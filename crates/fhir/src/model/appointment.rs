//! `Appointment`: the scheduled visit a clinician launches from.

use serde::{Deserialize, Serialize};

use super::{
    AppointmentId, AppointmentStatus, CodeableConcept, Extra, FhirInstant, Identifier, LocationId,
    ParticipationStatus, PatientId, PractitionerId, Reference, Resource, TypeTag, lenient,
};

/// An R4 Appointment, with the elements VisitBridge uses.
///
/// Epic sends much more (service category, appointment type, comments, extensions): it is kept in
/// [`Self::extra`] and never interpreted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Appointment {
    /// Always `Appointment`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<Appointment>,
    /// The FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AppointmentId>,
    /// Business identifiers (Epic: the CSN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    /// Booking status; unknown codes are kept in `Other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AppointmentStatus>,
    /// What kind of visit (Epic: `VIDEO VISIT`).
    #[serde(rename = "serviceType", default, skip_serializing_if = "Vec::is_empty")]
    pub service_type: Vec<CodeableConcept>,
    /// Planned start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<FhirInstant>,
    /// Planned end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<FhirInstant>,
    /// Planned length in minutes (accepted as a number or a string of digits).
    #[serde(
        rename = "minutesDuration",
        default,
        deserialize_with = "lenient::u32_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub minutes_duration: Option<u32>,
    /// Patient, practitioners, location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<AppointmentParticipant>,
    /// Everything else, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `Appointment.participant`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppointmentParticipant {
    /// The role (e.g. `PPRF` primary performer).
    #[serde(rename = "type", default, skip_serializing_if = "Vec::is_empty")]
    pub type_: Vec<CodeableConcept>,
    /// Who or where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Reference>,
    /// Whether they accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ParticipationStatus>,
    /// Other elements (`required`, `period`, extensions).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for Appointment {
    const TYPE: &'static str = "Appointment";
}

impl Appointment {
    /// The patient participant's id.
    pub fn patient_id(&self) -> Option<PatientId> {
        self.actors().find_map(Reference::id_of)
    }

    /// The practitioners taking part, in document order.
    pub fn practitioner_ids(&self) -> Vec<PractitionerId> {
        self.actors().filter_map(Reference::id_of).collect()
    }

    /// The location participant's id.
    pub fn location_id(&self) -> Option<LocationId> {
        self.actors().find_map(Reference::id_of)
    }

    /// The location participant's display name (an Epic department's name), when it has one.
    pub fn location_name(&self) -> Option<&str> {
        self.actors()
            .find(|r| Reference::id_of::<super::Location>(r).is_some())
            .and_then(|r| r.display.as_deref())
            .map(str::trim)
            .filter(|d| !d.is_empty())
    }

    fn actors(&self) -> impl Iterator<Item = &Reference> {
        self.participant.iter().filter_map(|p| p.actor.as_ref())
    }
}
