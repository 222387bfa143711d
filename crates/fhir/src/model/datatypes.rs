//! FHIR data types shared by the resources: references, codings, identifiers, periods, instants.

use std::{
    fmt,
    ops::{Deref, DerefMut},
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{Id, Resource};

/// The elements of a JSON object that the model does not declare, kept for the round trip.
///
/// Its `Debug` lists the keys only: these elements may hold patient data (names, birth dates,
/// comments) and a model must be safe to put in a log line or an error.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extra(pub Map<String, Value>);

impl Deref for Extra {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Extra {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A FHIR `instant` or `dateTime` exactly as the server wrote it, plus its UTC value when the text
/// pins one down.
///
/// Servers send `2026-03-05T18:00:00Z`, but also `2026-03-05T18:00` (no seconds, no zone) or a
/// bare date. The text is kept and written back unchanged; [`Self::utc`] is `None` when the text
/// names no instant (no time zone, or a date only), because guessing a zone would move a visit.
#[derive(Clone, PartialEq, Eq)]
pub struct FhirInstant {
    text: String,
    utc: Option<DateTime<Utc>>,
}

impl FhirInstant {
    /// Keeps `text` and parses it if it is a full instant (seconds optional).
    pub fn parse(text: impl Into<String>) -> Self {
        let text = text.into();
        let utc = parse_instant(&text);
        Self { text, utc }
    }

    /// The text as sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The instant in UTC, when the text has a date, a time and a zone.
    pub fn utc(&self) -> Option<DateTime<Utc>> {
        self.utc
    }
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // `HH:MM` without seconds but with a zone: seconds default to zero.
    let zoned = match text.strip_suffix('Z') {
        Some(rest) => format!("{rest}+00:00"),
        None => text.to_owned(),
    };
    if let Ok(t) = DateTime::parse_from_str(&zoned, "%Y-%m-%dT%H:%M%:z") {
        return Some(t.with_timezone(&Utc));
    }
    // Zoneless or date-only text names no instant: the caller sees the text and decides.
    None
}

impl From<DateTime<Utc>> for FhirInstant {
    fn from(t: DateTime<Utc>) -> Self {
        Self {
            text: t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            utc: Some(t),
        }
    }
}

impl fmt::Debug for FhirInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FhirInstant({:?})", self.text)
    }
}

impl fmt::Display for FhirInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for FhirInstant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for FhirInstant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::parse)
    }
}

/// A code from a code system (`Coding`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coding {
    /// The code system URI (Epic uses `urn:oid:…` systems).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The code's display text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Other elements (version, userSelected, extensions).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Coding {
    /// A coding with system, code and display.
    pub fn new(system: &str, code: &str, display: &str) -> Self {
        Self {
            system: Some(system.to_owned()),
            code: Some(code.to_owned()),
            display: Some(display.to_owned()),
            extra: Extra::default(),
        }
    }

    /// Whether this is `code` in `system`.
    pub fn is(&self, system: &str, code: &str) -> bool {
        self.system.as_deref() == Some(system) && self.code.as_deref() == Some(code)
    }
}

/// Codings with a text (`CodeableConcept`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeableConcept {
    /// The codings, most specific first by convention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    /// Plain-text representation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Other elements (extensions).
    #[serde(flatten)]
    pub extra: Extra,
}

impl CodeableConcept {
    /// A concept with one coding.
    pub fn from_coding(coding: Coding) -> Self {
        Self {
            coding: vec![coding],
            ..Self::default()
        }
    }

    /// Whether one of the codings is `code` in `system`.
    pub fn has(&self, system: &str, code: &str) -> bool {
        self.coding.iter().any(|c| c.is(system, code))
    }
}

/// A business identifier (`Identifier`), e.g. Epic's CSN, an NPI, an Entra object id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identifier {
    /// `usual`, `official`, `secondary`, …
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The kind of identifier (Epic puts `MRN`, `NPI`, `INTERNAL` in its text).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    /// The namespace of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The value, unique within `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Other elements (period, assigner, extensions).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Identifier {
    /// An identifier with system and value.
    pub fn new(system: &str, value: &str) -> Self {
        Self {
            system: Some(system.to_owned()),
            value: Some(value.to_owned()),
            ..Self::default()
        }
    }
}

/// A time range (`Period`); either end may be open.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// Start, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<FhirInstant>,
    /// End, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<FhirInstant>,
    /// Other elements (extensions).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Resource metadata (`Meta`); we use its tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Tags, e.g. our event id on the AuditEvents we write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag: Vec<Coding>,
    /// Other elements (versionId, lastUpdated, profile, security).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A reference to another resource (`Reference`).
///
/// Its `Debug` hides `display`: EHRs put patient and participant names there.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Relative (`Patient/123`), absolute (`https://…/R4/Patient/123`) or contained (`#x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The target's resource type, when the server states it.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// A business identifier of the target, for references without a FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// Text for the target (often a person's name: never log it, never store it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Other elements (extensions).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The resource type and id a [`Reference`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceTarget<'a> {
    /// E.g. `Practitioner`.
    pub resource_type: &'a str,
    /// The logical id.
    pub id: &'a str,
}

impl Reference {
    /// A relative reference `Type/id`, with no display text.
    pub fn to<R: Resource>(id: &Id<R>) -> Self {
        Self {
            reference: Some(format!("{}/{id}", R::TYPE)),
            ..Self::default()
        }
    }

    /// A reference by business identifier only (e.g. an Entra object id for a guest).
    pub fn by_identifier(identifier: Identifier) -> Self {
        Self {
            identifier: Some(identifier),
            ..Self::default()
        }
    }

    /// The type and id this reference points at, for relative references (`Patient/123`,
    /// `Patient/123/_history/2`) and absolute ones (`https://ehr/R4/Practitioner/abc`).
    /// `None` for contained (`#x`), `urn:` and malformed references.
    pub fn target(&self) -> Option<ReferenceTarget<'_>> {
        let text = self.reference.as_deref()?;
        let path = match text.find("://") {
            // Absolute URL: drop scheme and authority, then query and fragment.
            Some(at) => {
                let after = &text[at + 3..];
                let path = &after[after.find('/')?..];
                path.split(['?', '#']).next()?
            }
            None if text.starts_with('#') || text.starts_with("urn:") => return None,
            None => text,
        };
        let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
            segments.truncate(segments.len() - 2);
        }
        let [.., resource_type, id] = segments.as_slice() else {
            return None;
        };
        let is_type = resource_type.starts_with(|c: char| c.is_ascii_uppercase())
            && resource_type.chars().all(|c| c.is_ascii_alphabetic());
        (is_type && !id.is_empty()).then_some(ReferenceTarget { resource_type, id })
    }

    /// The target's id when it is a resource of type `R`.
    pub fn id_of<R: Resource>(&self) -> Option<Id<R>> {
        let target = self.target()?;
        if target.resource_type != R::TYPE {
            return None;
        }
        Id::new(target.id).ok()
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reference")
            .field("reference", &self.reference)
            .field("type_", &self.type_)
            .field("identifier", &self.identifier)
            .field("display", &self.display.as_ref().map(|_| "[redacted]"))
            .field("extra", &self.extra)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Patient, Practitioner};

    fn target(reference: &str) -> Option<(String, String)> {
        let r = Reference {
            reference: Some(reference.to_owned()),
            ..Reference::default()
        };
        r.target()
            .map(|t| (t.resource_type.to_owned(), t.id.to_owned()))
    }

    #[test]
    fn reference_targets() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("Patient/123", Some(("Patient", "123"))),
            ("Patient/123/_history/2", Some(("Patient", "123"))),
            (
                "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4/Practitioner/abc",
                Some(("Practitioner", "abc")),
            ),
            (
                "https://ehr/R4/Practitioner/abc/_history/1?x=1",
                Some(("Practitioner", "abc")),
            ),
            ("#contained1", None),
            ("urn:uuid:0d0c7f0e-1a2b-4c3d-8e9f-001122334455", None),
            ("Patient", None),
            ("patient/123", None),
            ("https://ehr", None),
        ];
        for (input, expected) in cases {
            let expected = expected.map(|(t, i)| (t.to_owned(), i.to_owned()));
            assert_eq!(target(input), expected, "{input}");
        }
    }

    #[test]
    fn typed_ids_only_come_from_matching_references() {
        let r = Reference {
            reference: Some("Practitioner/eM5CWtq15N0WJeuCet5bJlQ3".to_owned()),
            display: Some("Physician Family Medicine, MD".to_owned()),
            ..Reference::default()
        };
        assert_eq!(
            r.id_of::<Practitioner>().unwrap().as_str(),
            "eM5CWtq15N0WJeuCet5bJlQ3"
        );
        assert!(r.id_of::<Patient>().is_none());
        assert!(
            !format!("{r:?}").contains("Physician"),
            "display leaked into Debug"
        );
    }

    #[test]
    fn instants_keep_their_text_and_parse_when_zoned() {
        let cases: &[(&str, Option<&str>)] = &[
            ("2026-03-05T18:00:00Z", Some("2026-03-05T18:00:00+00:00")),
            (
                "2026-03-05T12:00:00.250-06:00",
                Some("2026-03-05T18:00:00.250+00:00"),
            ),
            ("2026-03-05T18:00Z", Some("2026-03-05T18:00:00+00:00")),
            ("2026-03-05T12:00-06:00", Some("2026-03-05T18:00:00+00:00")),
            ("2026-03-05T18:00", None),
            ("2026-03-05", None),
            ("soon", None),
        ];
        for (text, utc) in cases {
            let i = FhirInstant::parse(*text);
            assert_eq!(i.as_str(), *text);
            assert_eq!(i.utc().map(|t| t.to_rfc3339()).as_deref(), *utc, "{text}");
        }
    }
}
