//! `Patient`, `Practitioner`, `PractitionerRole`, `Location`: who and where, by id only.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    Extra, Identifier, LocationId, PatientId, PractitionerId, PractitionerRoleId, Reference,
    Resource, TypeTag,
};

/// An R4 Patient. We use the id only; names, birth date, identifiers stay in [`Self::extra`].
///
/// Its `Debug` prints the id alone, so a Patient in a log line or an error shows no PHI.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    /// Always `Patient`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<Patient>,
    /// The FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<PatientId>,
    /// Everything else (PHI: handle with care, never log or store).
    #[serde(flatten)]
    pub extra: Extra,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Resource for Patient {
    const TYPE: &'static str = "Patient";
}

/// An R4 Practitioner: id and identifiers (NPI, internal ids); the name stays in [`Self::extra`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Practitioner {
    /// Always `Practitioner`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<Practitioner>,
    /// The FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<PractitionerId>,
    /// Business identifiers (NPI, Epic internal ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    /// Everything else (name, telecom, …), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for Practitioner {
    const TYPE: &'static str = "Practitioner";
}

/// An R4 PractitionerRole: which practitioner works where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PractitionerRole {
    /// Always `PractitionerRole`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<PractitionerRole>,
    /// The FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<PractitionerRoleId>,
    /// The practitioner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<Reference>,
    /// Where they work in this role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub location: Vec<Reference>,
    /// Everything else, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for PractitionerRole {
    const TYPE: &'static str = "PractitionerRole";
}

/// An R4 Location: id only; name and address stay in [`Self::extra`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Always `Location`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<Location>,
    /// The FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<LocationId>,
    /// Everything else, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for Location {
    const TYPE: &'static str = "Location";
}
