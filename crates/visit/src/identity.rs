//! Who may act as staff: a clinician's launch (and the portal's approver sign-in) must be a staff
//! identity the EHR vouched for, never a patient's.
//!
//! A patient-portal launch yields a token whose `fhirUser` is a `Patient` or `RelatedPerson` and
//! whose scopes are patient-context (`patient/…`). Replayed at the provider endpoint, it would
//! link the patient to whatever Microsoft account signs in next and hand them the clinician's
//! visit page (and, launched first, make that account the meeting's organiser). So the provider
//! path decides [`StaffRule::check`] before any user link, visit row or Graph call.

use visitbridge_smart::EhrUser;

/// Why an EHR sign-in is not a staff identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotStaff {
    /// The id_token did not say who signed in (no `openid`/`fhirUser`).
    #[error("the EHR did not say who signed in")]
    Unidentified,
    /// `fhirUser` names a patient, a related person, or another non-staff resource.
    #[error("the EHR user is not a member of staff ({resource_type})")]
    NotStaffUser {
        /// The resource type `fhirUser` names (`Patient`, `RelatedPerson`, …; `none` when absent).
        resource_type: String,
    },
    /// Every scope granted is patient-context (`patient/…`): a patient's launch.
    #[error("the EHR granted patient-context scopes only")]
    PatientScopes,
}

/// The rule of what counts as a staff identity: `fhirUser` a `Practitioner` or
/// `PractitionerRole` ([`EhrUser::is_staff`]), or one of the extra resource types an operator
/// names; and not a token whose scopes are all patient-context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaffRule {
    /// Further `fhirUser` resource types that count as staff (e.g. an EHR that names its users
    /// `Person`): exact, case-sensitive FHIR type names.
    pub extra_user_types: Vec<String>,
}

impl StaffRule {
    /// Checks that `user`, granted `scopes`, is staff.
    pub fn check<'a>(
        &self,
        user: Option<&'a EhrUser>,
        scopes: &[String],
    ) -> Result<&'a EhrUser, NotStaff> {
        let user = user.ok_or(NotStaff::Unidentified)?;
        if !user.is_staff() {
            let resource_type = user
                .fhir_user_reference()
                .map_or("none", |(resource_type, _)| resource_type);
            if !self.extra_user_types.iter().any(|t| t == resource_type) {
                return Err(NotStaff::NotStaffUser {
                    resource_type: short_type(resource_type),
                });
            }
        }
        let data_scopes = || {
            scopes
                .iter()
                .filter(|s| s.starts_with("patient/") || s.starts_with("user/"))
        };
        if data_scopes().next().is_some() && data_scopes().all(|s| s.starts_with("patient/")) {
            return Err(NotStaff::PatientScopes);
        }
        Ok(user)
    }
}

/// A resource type as shown in a message: a FHIR type name is ASCII letters, anything else is
/// not echoed.
fn short_type(resource_type: &str) -> String {
    if !resource_type.is_empty()
        && resource_type.len() <= 40
        && resource_type.bytes().all(|b| b.is_ascii_alphabetic())
    {
        resource_type.to_owned()
    } else {
        "unrecognised".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(fhir_user: Option<&str>) -> EhrUser {
        EhrUser {
            issuer: "https://ehr.example/oauth2".into(),
            subject: "s1".into(),
            fhir_user: fhir_user.map(|u| format!("https://ehr.example/fhir/{u}")),
        }
    }

    fn scopes(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn staff_is_a_practitioner_or_role_with_user_scopes() {
        let rule = StaffRule::default();
        let staff = "launch openid fhirUser user/Appointment.read";
        let check = |fhir_user: Option<&str>, granted: &str| {
            rule.check(Some(&user(fhir_user)), &scopes(granted))
                .map(|_| ())
        };
        assert_eq!(check(Some("Practitioner/p1"), staff), Ok(()));
        assert_eq!(check(Some("PractitionerRole/r1"), staff), Ok(()));
        // No data scopes at all says nothing either way.
        assert_eq!(check(Some("Practitioner/p1"), "openid fhirUser"), Ok(()));
        for (fhir_user, shown) in [
            (Some("Patient/pat-1"), "Patient"),
            (Some("RelatedPerson/rp-1"), "RelatedPerson"),
            (Some("Person/x"), "Person"),
            (None, "none"),
            (Some("Pati<b>ent/x"), "unrecognised"),
        ] {
            assert_eq!(
                check(fhir_user, staff),
                Err(NotStaff::NotStaffUser {
                    resource_type: shown.into()
                }),
                "{fhir_user:?}"
            );
        }
        assert_eq!(
            check(
                Some("Practitioner/p1"),
                "launch openid fhirUser patient/Appointment.read"
            ),
            Err(NotStaff::PatientScopes)
        );
        assert_eq!(
            check(
                Some("Practitioner/p1"),
                "patient/Patient.read user/Appointment.read"
            ),
            Ok(())
        );
        assert_eq!(
            rule.check(None, &scopes(staff)).map(|_| ()),
            Err(NotStaff::Unidentified)
        );
    }

    #[test]
    fn an_operator_can_name_more_staff_types() {
        let rule = StaffRule {
            extra_user_types: vec!["Person".into()],
        };
        let granted = scopes("openid fhirUser user/Appointment.read");
        assert!(rule.check(Some(&user(Some("Person/x"))), &granted).is_ok());
        assert!(
            rule.check(Some(&user(Some("Patient/x"))), &granted)
                .is_err()
        );
    }
}
