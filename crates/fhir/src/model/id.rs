//! Typed resource ids, so a patient id cannot be passed where a practitioner id is expected.

use std::{fmt, hash::Hash, marker::PhantomData};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    Appointment, AuditEvent, Communication, Encounter, Location, Patient, Practitioner,
    PractitionerRole,
};

/// The longest id we accept. FHIR says 64, but some EHRs hand out longer ones and an id is only
/// ever used as one URL path segment, so the limit is about sanity, not conformance.
const MAX_ID_LEN: usize = 256;

/// An id that is not usable as a FHIR resource id.
///
/// The offending value is not kept: it may be anything a caller or server supplied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fhir id: {reason}")]
pub struct InvalidId {
    reason: &'static str,
}

/// The logical id of a resource of type `R` (the `123` in `Patient/123`).
///
/// Checked on creation: 1 to 256 characters among `A-Z a-z 0-9 - . _`, and not `.` or `..`,
/// so an id is always exactly one safe URL path segment.
pub struct Id<R> {
    value: String,
    kind: PhantomData<fn() -> R>,
}

/// An Appointment's id.
pub type AppointmentId = Id<Appointment>;
/// An Encounter's id.
pub type EncounterId = Id<Encounter>;
/// A Patient's id.
pub type PatientId = Id<Patient>;
/// A Practitioner's id.
pub type PractitionerId = Id<Practitioner>;
/// A PractitionerRole's id.
pub type PractitionerRoleId = Id<PractitionerRole>;
/// A Location's id.
pub type LocationId = Id<Location>;
/// An AuditEvent's id.
pub type AuditEventId = Id<AuditEvent>;
/// A Communication's id.
pub type CommunicationId = Id<Communication>;

impl<R> Id<R> {
    /// Checks and wraps `value`.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        let reason = if value.is_empty() {
            Some("empty")
        } else if value.len() > MAX_ID_LEN {
            Some("longer than 256 characters")
        } else if value == "." || value == ".." {
            Some("a dot segment")
        } else if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            Some("characters outside A-Z a-z 0-9 - . _")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidId { reason }),
            None => Ok(Self {
                value,
                kind: PhantomData,
            }),
        }
    }

    /// The id as sent to and received from the server.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Unwraps the id.
    pub fn into_string(self) -> String {
        self.value
    }
}

impl Id<AuditEvent> {
    /// The AuditEvent id derived from our event id: a UUID v5, so every delivery of the same event
    /// `PUT`s the same resource and a repeat is a harmless update.
    pub fn for_event(event_id: &str) -> Self {
        // Fixed namespace for VisitBridge event ids; changing it would duplicate events.
        const NAMESPACE: uuid::Uuid =
            uuid::Uuid::from_u128(0x6b1f_2a7e_4d1c_5e9a_9b3f_0c2d_8e4a_1f60);
        Self {
            value: uuid::Uuid::new_v5(&NAMESPACE, event_id.as_bytes()).to_string(),
            kind: PhantomData,
        }
    }
}

impl<R> Clone for Id<R> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            kind: PhantomData,
        }
    }
}

impl<R> PartialEq for Id<R> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<R> Eq for Id<R> {}

impl<R> Hash for Id<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<R> fmt::Debug for Id<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({:?})", self.value)
    }
}

impl<R> fmt::Display for Id<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<R> std::str::FromStr for Id<R> {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<R> Serialize for Id<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de, R> Deserialize<'de> for Id<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_epic_ids_and_refuses_path_tricks() {
        for ok in [
            "eVa-Ad1SCIenVq8CYQVxfKwGtP-DfG3nIy9-5oPwTg2g3",
            "123",
            "a.b_c",
        ] {
            assert!(PatientId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a?b", "a b", "é", &"x".repeat(257)] {
            assert!(PatientId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_ids_map_to_stable_distinct_audit_event_ids() {
        let a = AuditEventId::for_event("evt-1");
        assert_eq!(a, AuditEventId::for_event("evt-1"));
        assert_ne!(a, AuditEventId::for_event("evt-2"));
        assert!(AuditEventId::new(a.as_str()).is_ok());
    }
}
