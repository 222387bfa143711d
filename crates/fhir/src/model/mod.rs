//! Lean serde models of the FHIR R4 resources VisitBridge reads and writes.
//!
//! Each model declares only the elements we use; everything else lands in its flattened
//! [`Extra`] map and is written back unchanged, so a parse and a serialise lose nothing.

mod appointment;
mod audit;
mod bundle;
mod capability;
mod codes;
mod communication;
mod datatypes;
mod directory;
mod encounter;
mod id;
mod outcome;

pub use appointment::{Appointment, AppointmentParticipant};
pub use audit::{
    AuditAgent, AuditEvent, AuditEventAgent, AuditEventEntity, AuditEventSource, EVENT_TAG_SYSTEM,
    ParticipantAction, ParticipantAudit, VISIT_EVENT_SYSTEM,
};
pub use bundle::{Bundle, BundleEntry, BundleLink, EntryError};
pub use capability::{
    CapabilityResource, CapabilityRest, CapabilityStatement, OAUTH_URIS_EXTENSION, OAuthUris,
};
pub use codes::{
    AppointmentStatus, AuditEventAction, AuditEventOutcome, CommunicationStatus, EncounterStatus,
    IssueSeverity, ParticipationStatus,
};
pub use communication::{Communication, CommunicationPayload};
pub use datatypes::{
    CodeableConcept, Coding, Extra, FhirInstant, Identifier, Meta, Period, Reference,
    ReferenceTarget,
};
pub use directory::{Location, Patient, Practitioner, PractitionerRole};
pub use encounter::{Encounter, EncounterParticipant};
pub use id::{
    AppointmentId, AuditEventId, CommunicationId, EncounterId, Id, InvalidId, LocationId,
    PatientId, PractitionerId, PractitionerRoleId,
};
pub use outcome::{EPIC_ERROR_SYSTEM, OperationOutcome, OutcomeIssue};

use std::{fmt, marker::PhantomData};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

/// A FHIR resource type that this crate models.
pub trait Resource: Serialize + DeserializeOwned + Send + 'static {
    /// The `resourceType`, e.g. `"Appointment"`.
    const TYPE: &'static str;
}

/// The `resourceType` member of a resource: always `R::TYPE`.
///
/// It is a zero-sized field: serialising writes the type name, parsing refuses any other type
/// (so an OperationOutcome answered in place of an Appointment is a decode error, not an empty
/// Appointment).
pub struct TypeTag<R>(PhantomData<fn() -> R>);

impl<R> TypeTag<R> {
    /// The tag (there is only one value).
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<R> Default for TypeTag<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Clone for TypeTag<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for TypeTag<R> {}

impl<R> PartialEq for TypeTag<R> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<R: Resource> fmt::Debug for TypeTag<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(R::TYPE)
    }
}

impl<R: Resource> Serialize for TypeTag<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(R::TYPE)
    }
}

impl<'de, R: Resource> Deserialize<'de> for TypeTag<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = String::deserialize(deserializer)?;
        if found == R::TYPE {
            Ok(Self::new())
        } else {
            Err(serde::de::Error::custom(format_args!(
                "expected resourceType {}, found {}",
                R::TYPE,
                ResourceTypeName(&found)
            )))
        }
    }
}

/// Prints a resource type name found in a document, or `(invalid)` if it is not one: the value
/// could be anything a server sent, and errors must not echo arbitrary content.
pub(crate) struct ResourceTypeName<'a>(pub(crate) &'a str);

impl fmt::Display for ResourceTypeName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plausible = self.0.len() <= 64
            && self.0.starts_with(|c: char| c.is_ascii_uppercase())
            && self.0.chars().all(|c| c.is_ascii_alphanumeric());
        if plausible {
            f.write_str(self.0)
        } else {
            f.write_str("(invalid)")
        }
    }
}

/// Serde helpers for elements that real servers send in more than one shape.
pub(crate) mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }

    /// An unsigned integer sent as a JSON number or as a string of digits (`30` or `"30"`).
    pub(crate) fn u32_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let value = Option::<NumberOrText>::deserialize(d)?;
        let number = match value {
            None => return Ok(None),
            Some(NumberOrText::Number(n)) => n,
            Some(NumberOrText::Text(text)) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| serde::de::Error::custom("expected a whole number"))?,
        };
        u32::try_from(number)
            .map(Some)
            .map_err(|_| serde::de::Error::custom("number out of range"))
    }
}
