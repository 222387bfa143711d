//! The launch record's context (what the EHR substituted into the launch URL) and the visit key.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use visitbridge_approval::{Environment, context_params};
use visitbridge_smart::LaunchContext;

/// Longest context value accepted (a CSN is about a dozen digits).
const MAX_VALUE_LEN: usize = 128;

/// A launch URL's context parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordContextError {
    /// The EHR sent the record's token text itself (`%CSN%`): the record was not entered as the
    /// portal shows it, or this EHR does not know the token.
    #[error(
        "the launch parameter {param} arrived as the literal token {value}: the EHR did not \
         substitute it, so the integration record was not entered exactly as the VisitBridge \
         portal shows it; copy the record again"
    )]
    NotSubstituted {
        /// The parameter.
        param: &'static str,
        /// The unsubstituted value (a token such as `%CSN%`, never patient data).
        value: String,
    },
    /// `environment` is neither `test` nor `production`.
    #[error(
        "the launch parameter environment must be test or production: copy the integration \
         record again from the VisitBridge portal"
    )]
    UnknownEnvironment,
    /// A value that is too long or has control characters.
    #[error("the launch parameter {param} is not a valid value")]
    Invalid {
        /// The parameter.
        param: &'static str,
    },
}

/// The context parameters of an integration record, as the EHR substituted them.
///
/// Only the parameters the records define are kept; anything else in the launch URL is ignored,
/// so a crafted URL cannot smuggle other keys into a pending launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordContext {
    /// The visit's contact serial number (Epic `%CSN%`).
    pub session_id: Option<String>,
    /// The department (Epic `%PERFDEPID…%`), kept for reports.
    pub department_id: Option<String>,
    /// The group visit's conference id (Epic `%CONFERENCEID%`), empty for one-to-one visits.
    pub conference_id: Option<String>,
    /// The environment of the configuration whose record launched us.
    pub environment: Option<Environment>,
}

fn clean(param: &'static str, value: &str) -> Result<Option<String>, RecordContextError> {
    let value = value.trim();
    // Epic writes an empty department as `NONE` (the record's `;;NONE;` default).
    if value.is_empty() || value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if value.len() > 2 && value.starts_with('%') && value.ends_with('%') {
        return Err(RecordContextError::NotSubstituted {
            param,
            value: value.chars().take(40).collect(),
        });
    }
    if value.len() > MAX_VALUE_LEN || value.chars().any(char::is_control) {
        return Err(RecordContextError::Invalid { param });
    }
    Ok(Some(value.to_owned()))
}

impl RecordContext {
    /// Reads the record's parameters from a launch URL's query pairs (others are ignored).
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RecordContextError> {
        let mut context = Self::default();
        for (name, value) in params {
            match name {
                context_params::SESSION_ID => {
                    context.session_id = clean(context_params::SESSION_ID, value)?;
                }
                context_params::DEPARTMENT_ID => {
                    context.department_id = clean(context_params::DEPARTMENT_ID, value)?;
                }
                context_params::CONFERENCE_ID => {
                    context.conference_id = clean(context_params::CONFERENCE_ID, value)?;
                }
                context_params::ENVIRONMENT => {
                    context.environment = match clean(context_params::ENVIRONMENT, value)? {
                        None => None,
                        Some(v) => Some(
                            Environment::from_name(&v.to_ascii_lowercase())
                                .ok_or(RecordContextError::UnknownEnvironment)?,
                        ),
                    };
                }
                _ => {}
            }
        }
        Ok(context)
    }

    /// The parameters as a map (for a pending launch's record context).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                map.insert(k.to_owned(), v.to_owned());
            }
        };
        put(context_params::SESSION_ID, self.session_id.as_deref());
        put(context_params::DEPARTMENT_ID, self.department_id.as_deref());
        put(context_params::CONFERENCE_ID, self.conference_id.as_deref());
        put(
            context_params::ENVIRONMENT,
            self.environment.map(Environment::as_str),
        );
        map
    }

    /// Reads back what [`Self::to_map`] wrote (other keys are ignored).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, RecordContextError> {
        Self::from_params(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// What identifies a visit's one meeting within a configuration.
///
/// `conf:` a group visit's conference id, `csn:` the visit's CSN from the record context, or
/// `appt:` the FHIR Appointment id. Provider and patient records carry the same context tokens,
/// so both sides of a visit derive the same key. It is hashed (with the configuration id) into the
/// meeting's `externalId` before it leaves us.
///
/// A key from the launch URL is not attested (the EHR signs only `launch`): a visit found under
/// it is used once it agrees with the token response ([`crate::Attested`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VisitKey(String);

impl VisitKey {
    /// The key of a visit known by its FHIR Appointment id.
    pub fn appointment(id: &str) -> Self {
        Self(format!("appt:{}", id.trim()))
    }

    /// The key of a visit known by its CSN: rows of earlier versions only ([`visit_key`] never
    /// derives it now; one appointment must have one key).
    pub fn csn(csn: &str) -> Self {
        Self(format!("csn:{}", csn.trim()))
    }

    /// The key of a group visit's conference.
    pub fn conference(id: &str) -> Self {
        Self(format!("conf:{}", id.trim()))
    }

    /// Whether this is a group visit's key (one meeting for several appointments).
    pub fn is_conference(&self) -> bool {
        self.0.starts_with("conf:")
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VisitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Appointment id the token response names: Epic's `appointment`, else the first
/// `Appointment/…` of SMART 2's `fhirContext`.
pub fn context_appointment(context: &LaunchContext) -> Option<(String, crate::FoundBy)> {
    if let Some(id) = context
        .appointment
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        return Some((id.trim().to_owned(), crate::FoundBy::EpicAppointment));
    }
    context
        .context_ids("Appointment")
        .into_iter()
        .find(|s| !s.trim().is_empty())
        .map(|id| (id.trim().to_owned(), crate::FoundBy::FhirContext))
}

/// The visit key known from the launch alone, before any FHIR read: a group visit's conference
/// id, else the Appointment the token response names (attested by the EHR).
///
/// The record's CSN (`sessionId`) is deliberately not a key: the same appointment launched with
/// its CSN, without it, or from a record that substitutes another context token must reach one
/// visit row and one meeting. The CSN only picks among the patient's appointments and must be an
/// identifier of the attested Appointment or Encounter ([`crate::Attested::check_resolved`]).
///
/// `None` means the visit must be found through FHIR first ([`crate::resolve_visit`]), whose key
/// is then the Appointment's.
pub fn visit_key(record: &RecordContext, context: &LaunchContext) -> Option<VisitKey> {
    if let Some(conference) = &record.conference_id {
        return Some(VisitKey::conference(conference));
    }
    context_appointment(context).map(|(id, _)| VisitKey::appointment(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(params: &[(&str, &str)]) -> Result<RecordContext, RecordContextError> {
        RecordContext::from_params(params.iter().copied())
    }

    #[test]
    fn record_parameters_are_read_and_others_ignored() {
        let r = record(&[
            ("sessionId", " 123456 "),
            ("departmentId", "NONE"),
            ("conferenceId", ""),
            ("environment", "Production"),
            ("iss", "https://ehr.example/fhir"),
            ("vb.binding", "forged"),
        ])
        .unwrap();
        assert_eq!(r.session_id.as_deref(), Some("123456"));
        assert_eq!(r.department_id, None);
        assert_eq!(r.conference_id, None);
        assert_eq!(r.environment, Some(Environment::Production));
        assert_eq!(RecordContext::from_map(&r.to_map()).unwrap(), r);
        assert!(!r.to_map().contains_key("vb.binding"));
    }

    #[test]
    fn unsubstituted_tokens_and_bad_values_are_explained() {
        let e = record(&[("sessionId", "%CSN%")]).unwrap_err();
        assert!(e.to_string().contains("%CSN%"), "{e}");
        assert!(e.to_string().contains("copy the record again"), "{e}");
        assert_eq!(
            record(&[("environment", "staging")]).unwrap_err(),
            RecordContextError::UnknownEnvironment
        );
        assert!(matches!(
            record(&[("sessionId", &"9".repeat(200))]),
            Err(RecordContextError::Invalid { .. })
        ));
    }

    #[test]
    fn the_key_is_the_conference_else_the_attested_appointment_never_the_csn() {
        let epic: LaunchContext = serde_json::from_value(serde_json::json!({
            "appointment": "appt-1",
            "fhirContext": [{"reference": "Appointment/appt-2"}]
        }))
        .unwrap();
        let v2: LaunchContext = serde_json::from_value(serde_json::json!({
            "fhirContext": [{"reference": "Encounter/e"}, {"reference": "Appointment/appt-2"}]
        }))
        .unwrap();
        let none = LaunchContext::default();
        let csn = record(&[("sessionId", "42")]).unwrap();
        let group = record(&[("sessionId", "42"), ("conferenceId", "g-7")]).unwrap();
        let empty = RecordContext::default();
        let check = |r: &RecordContext, c: &LaunchContext, expected: Option<&str>| {
            assert_eq!(
                visit_key(r, c).as_ref().map(VisitKey::as_str),
                expected,
                "{r:?} {c:?}"
            );
        };
        check(&group, &epic, Some("conf:g-7"));
        check(&csn, &epic, Some("appt:appt-1"));
        check(&csn, &none, None);
        check(&empty, &epic, Some("appt:appt-1"));
        check(&empty, &v2, Some("appt:appt-2"));
        check(&empty, &none, None);
    }
}
