//! What the token response tells us about the launch (patient, encounter, Epic's appointment...)
//! and who the EHR user is.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// SMART launch context from the token response, Epic's additions included.
///
/// Every field the server sent that is not named here is kept in [`Self::other`] (Epic adds
/// fields per integration, such as `__epic.dstu2.patient`). The token, scope and id_token are not
/// part of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaunchContext {
    /// The patient's FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The encounter's FHIR id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// SMART 2 `fhirContext` entries (e.g. `{"reference": "Appointment/123"}`).
    #[serde(default, rename = "fhirContext", skip_serializing_if = "Vec::is_empty")]
    pub fhir_context: Vec<FhirContextItem>,
    /// Whether the app must show a patient banner.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub need_patient_banner: Option<bool>,
    /// The EHR's style sheet for embedded apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
    /// The tenant, for multi-tenant servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Epic: the FHIR id of the Appointment the launch came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointment: Option<String>,
    /// Epic: the FHIR id of the Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Epic: the FHIR id of the department the user logged in to.
    #[serde(
        default,
        rename = "loginDepartment",
        skip_serializing_if = "Option::is_none"
    )]
    pub login_department: Option<String>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl LaunchContext {
    /// The context from a token response's extra fields; fields that do not have the expected
    /// shape are kept in [`Self::other`] rather than failing the launch.
    pub(crate) fn from_fields(mut fields: BTreeMap<String, Value>) -> Self {
        for name in [
            "access_token",
            "token_type",
            "expires_in",
            "scope",
            "refresh_token",
            "id_token",
            "state",
        ] {
            fields.remove(name);
        }
        let mut context = Self::default();
        let mut take_string = |name: &str| match fields.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                fields.insert(name.to_owned(), other);
                None
            }
            None => None,
        };
        context.patient = take_string("patient");
        context.encounter = take_string("encounter");
        context.smart_style_url = take_string("smart_style_url");
        context.tenant = take_string("tenant");
        context.appointment = take_string("appointment");
        context.location = take_string("location");
        context.login_department = take_string("loginDepartment");
        if let Some(v) = fields.remove("need_patient_banner") {
            match bool_of(&v) {
                Some(b) => context.need_patient_banner = Some(b),
                None => {
                    fields.insert("need_patient_banner".to_owned(), v);
                }
            }
        }
        if let Some(v) = fields.remove("fhirContext") {
            match serde_json::from_value::<Vec<FhirContextItem>>(v.clone()) {
                Ok(items) => context.fhir_context = items,
                Err(_) => {
                    fields.insert("fhirContext".to_owned(), v);
                }
            }
        }
        context.other = fields;
        context
    }

    /// The references in `fhirContext` of one resource type (e.g. `"Appointment"` gives the ids
    /// of `Appointment/{id}` references).
    pub fn context_ids(&self, resource_type: &str) -> Vec<&str> {
        self.fhir_context
            .iter()
            .filter_map(|item| item.reference.as_deref())
            .filter_map(|r| {
                let mut parts = r.rsplitn(3, '/');
                let id = parts.next()?;
                (parts.next()? == resource_type).then_some(id)
            })
            .collect()
    }
}

/// One `fhirContext` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FhirContextItem {
    /// A relative reference such as `Appointment/123`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The role of the resource in the launch, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Other members (`canonical`, `identifier`, `type`).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(bool_of))
}

/// The EHR user, from a validated id_token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhrUser {
    /// The id_token's issuer (the EHR's OAuth server).
    pub issuer: String,
    /// The id_token's `sub`.
    pub subject: String,
    /// SMART's `fhirUser` (e.g. `https://ehr/fhir/R4/Practitioner/abc`), when sent.
    pub fhir_user: Option<String>,
}

impl EhrUser {
    /// The id to key the user on: `fhirUser`, else `sub` (unique within [`Self::issuer`]).
    pub fn id(&self) -> &str {
        self.fhir_user.as_deref().unwrap_or(&self.subject)
    }

    /// `fhirUser` split into resource type and id (`("Practitioner", "abc")`).
    pub fn fhir_user_reference(&self) -> Option<(&str, &str)> {
        let reference = self.fhir_user.as_deref()?;
        let mut parts = reference.trim_end_matches('/').rsplitn(3, '/');
        let id = parts.next().filter(|s| !s.is_empty())?;
        let resource_type = parts.next().filter(|s| !s.is_empty())?;
        Some((resource_type, id))
    }

    /// Whether the user signed in as staff: their `fhirUser` is a `Practitioner` or a
    /// `PractitionerRole`. A patient, a related person (a proxy), a device, a `fhirUser` that is
    /// not a reference, or none at all is not staff.
    ///
    /// Staff-only actions (a clinician's launch, an approver's EHR sign-in) ask this, so that a
    /// patient portal login cannot stand in for an EHR user of the organisation. The resource
    /// type is compared exactly, as FHIR spells it.
    /// Other resource types an operator counts as staff are added by the caller (see
    /// `visitbridge_visit::StaffRule`).
    pub fn is_staff(&self) -> bool {
        matches!(
            self.fhir_user_reference(),
            Some(("Practitioner" | "PractitionerRole", _))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_wrong_shape_are_kept_not_fatal() {
        let fields: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "patient": 42,
            "need_patient_banner": "true",
            "fhirContext": [{"reference": "Appointment/a1"}, {"reference": "Encounter/e1"}],
            "id_token": "x.y.z",
            "custom": {"a": 1}
        }))
        .expect("json");
        let c = LaunchContext::from_fields(fields);
        assert_eq!(c.patient, None);
        assert_eq!(c.other.get("patient"), Some(&serde_json::json!(42)));
        assert_eq!(c.need_patient_banner, Some(true));
        assert_eq!(c.context_ids("Appointment"), vec!["a1"]);
        assert!(c.other.contains_key("custom"));
        assert!(!c.other.contains_key("id_token"));
    }

    #[test]
    fn ehr_user_prefers_fhir_user_and_splits_it() {
        let user = EhrUser {
            issuer: "https://ehr/oauth2".into(),
            subject: "s1".into(),
            fhir_user: Some("https://ehr/api/FHIR/R4/Practitioner/abc".into()),
        };
        assert_eq!(user.id(), "https://ehr/api/FHIR/R4/Practitioner/abc");
        assert_eq!(user.fhir_user_reference(), Some(("Practitioner", "abc")));
        let bare = EhrUser {
            fhir_user: None,
            ..user
        };
        assert_eq!(bare.id(), "s1");
        assert_eq!(bare.fhir_user_reference(), None);
    }

    #[test]
    fn only_practitioners_and_practitioner_roles_are_staff() {
        fn check(fhir_user: Option<&str>, staff: bool) {
            let user = EhrUser {
                issuer: "https://ehr/oauth2".into(),
                subject: "s1".into(),
                fhir_user: fhir_user.map(str::to_owned),
            };
            assert_eq!(user.is_staff(), staff, "{fhir_user:?}");
        }
        check(Some("https://ehr/api/FHIR/R4/Practitioner/abc"), true);
        check(Some("Practitioner/abc"), true);
        check(Some("https://ehr/api/FHIR/R4/PractitionerRole/r1"), true);
        check(Some("https://ehr/api/FHIR/R4/Practitioner/abc/"), true);
        check(
            Some("https://ehr/api/FHIR/R4/Patient/erXuFYUfucBZaryVksYEcMg3"),
            false,
        );
        check(Some("https://ehr/api/FHIR/R4/RelatedPerson/proxy1"), false);
        check(Some("https://ehr/api/FHIR/R4/Person/p1"), false);
        check(Some("https://ehr/api/FHIR/R4/Device/d1"), false);
        check(Some("https://ehr/api/FHIR/R4/practitioner/abc"), false);
        check(Some("Practitioner"), false);
        check(Some("Practitioner/"), false);
        check(Some(""), false);
        check(None, false);
    }
}
