//! What an admin enters for a configuration, as text (HTML form or JSON), and its checks: each
//! problem is reported against its field, in the approval crate's words where it has them.

use serde::{Deserialize, Serialize};
use visitbridge_approval::{
    ClientAuth, ClientId, ConfigurationSettings, EhrClientSettings, EhrVendor, Environment,
    FhirBaseUrl, ScopeStyle, SecretRef, UrlPolicy, Username,
};

/// The field names, as used by the HTML form, the JSON API and error reports.
pub(crate) mod field {
    pub(crate) const FHIR_BASE_URL: &str = "fhir_base_url";
    pub(crate) const ENVIRONMENT: &str = "environment";
    pub(crate) const EHR_VENDOR: &str = "ehr_vendor";
    pub(crate) const APPROVER: &str = "approver";
    pub(crate) const CLIENT_ID: &str = "client_id";
    pub(crate) const PATIENT_CLIENT_ID: &str = "patient_client_id";
    pub(crate) const CLIENT_AUTH: &str = "client_auth";
    pub(crate) const SECRET_REF: &str = "secret_ref";
    pub(crate) const SCOPE_STYLE: &str = "scope_style";
}

/// A configuration's settings as entered: plain text, checked by [`SettingsInput::parse`].
///
/// The JSON API reads and writes this flat shape, so that a client can `GET` a configuration,
/// change a field and `PUT` it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SettingsInput {
    /// The FHIR R4 base URL.
    #[serde(default)]
    pub(crate) fhir_base_url: String,
    /// `test` or `production`.
    #[serde(default)]
    pub(crate) environment: String,
    /// `epic` (the default) or `generic`: which integration records the EHR gets.
    #[serde(default = "default_vendor")]
    pub(crate) ehr_vendor: String,
    /// The approver's Microsoft username.
    #[serde(default)]
    pub(crate) approver: String,
    /// The client id of clinician launches.
    #[serde(default)]
    pub(crate) client_id: String,
    /// A separate client id for patient launches, if any.
    #[serde(default)]
    pub(crate) patient_client_id: Option<String>,
    /// `private_key_jwt`, `client_secret_basic` or `client_secret_post`.
    #[serde(default = "default_auth")]
    pub(crate) client_auth: String,
    /// Where the client secret is kept, for the `client_secret_*` methods.
    #[serde(default)]
    pub(crate) secret_ref: Option<String>,
    /// `v1` or `v2`.
    #[serde(default = "default_scope_style")]
    pub(crate) scope_style: String,
    /// Send `Epic-Client-ID` (default: yes, as Epic may vary endpoints per client).
    #[serde(default = "yes")]
    pub(crate) send_epic_client_id_header: bool,
}

fn yes() -> bool {
    true
}

fn default_vendor() -> String {
    EhrVendor::default().as_str().to_owned()
}

fn default_auth() -> String {
    "private_key_jwt".to_owned()
}

fn default_scope_style() -> String {
    "v2".to_owned()
}

impl Default for SettingsInput {
    fn default() -> Self {
        Self {
            fhir_base_url: String::new(),
            environment: String::new(),
            ehr_vendor: default_vendor(),
            approver: String::new(),
            client_id: String::new(),
            patient_client_id: None,
            client_auth: default_auth(),
            secret_ref: None,
            scope_style: default_scope_style(),
            send_epic_client_id_header: true,
        }
    }
}

/// Field problems, in form order.
pub(crate) type FieldErrors = Vec<(String, String)>;

fn non_blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl SettingsInput {
    /// The text form of stored settings.
    pub(crate) fn from_settings(settings: &ConfigurationSettings) -> Self {
        let client = &settings.ehr_client;
        let secret_ref = match &client.auth {
            ClientAuth::ClientSecretBasic { secret_ref }
            | ClientAuth::ClientSecretPost { secret_ref } => Some(secret_ref.to_string()),
            ClientAuth::PrivateKeyJwt => None,
        };
        Self {
            fhir_base_url: settings.fhir_base_url.to_string(),
            environment: settings.environment.as_str().to_owned(),
            ehr_vendor: settings.ehr_vendor.as_str().to_owned(),
            approver: settings.approver.to_string(),
            client_id: client.client_id.to_string(),
            patient_client_id: client.patient_client_id.as_ref().map(ToString::to_string),
            client_auth: client.auth.method_name().to_owned(),
            secret_ref,
            scope_style: match client.scope_style {
                ScopeStyle::V1 => "v1",
                ScopeStyle::V2 => "v2",
            }
            .to_owned(),
            send_epic_client_id_header: client.send_epic_client_id_header,
        }
    }

    /// Checks every field, reporting all problems at once.
    pub(crate) fn parse(&self, policy: UrlPolicy) -> Result<ConfigurationSettings, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut fail = |field: &str, message: String| errors.push((field.to_owned(), message));

        let url = FhirBaseUrl::parse(&self.fhir_base_url, policy)
            .map_err(|p| fail(field::FHIR_BASE_URL, p.to_string()))
            .ok();
        let environment = Environment::from_name(self.environment.trim());
        if environment.is_none() {
            fail(
                field::ENVIRONMENT,
                "choose test or production: they are separate configurations".to_owned(),
            );
        }
        let ehr_vendor = EhrVendor::from_name(self.ehr_vendor.trim());
        if ehr_vendor.is_none() {
            fail(
                field::EHR_VENDOR,
                "choose epic (Epic's context tokens) or generic (any SMART on FHIR EHR)".to_owned(),
            );
        }
        let approver_text = self.approver.trim();
        let approver = match Username::new(approver_text) {
            Ok(u) if approver_text.contains('@') => Some(u),
            _ => {
                fail(
                    field::APPROVER,
                    "enter the approver's Microsoft username, e.g. analyst@contoso.org".to_owned(),
                );
                None
            }
        };
        let client_id = match ClientId::new(self.client_id.trim()) {
            Ok(id) => Some(id),
            Err(e) => {
                let message = if self.client_id.trim().is_empty() {
                    "enter the client id the EHR registered for VisitBridge".to_owned()
                } else {
                    e.to_string()
                };
                fail(field::CLIENT_ID, message);
                None
            }
        };
        let patient_client_id = match non_blank(&self.patient_client_id).map(ClientId::new) {
            None => Some(None),
            Some(Ok(id)) => Some(Some(id)),
            Some(Err(e)) => {
                fail(field::PATIENT_CLIENT_ID, e.to_string());
                None
            }
        };
        let secret_ref = || match non_blank(&self.secret_ref).map(SecretRef::new) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(format!(
                "{e}: the launch service reads the secret from its [ehr_client_secrets] entry of \
                 this name or from the environment variable VISITBRIDGE_EHR_SECRET_<name>"
            )),
            None => Err(
                "name the client secret is kept under at the launch service (its \
                 [ehr_client_secrets] entry, or the environment variable \
                 VISITBRIDGE_EHR_SECRET_<name>), never the secret itself"
                    .to_owned(),
            ),
        };
        let auth = match self.client_auth.trim() {
            "private_key_jwt" => Some(ClientAuth::PrivateKeyJwt),
            "client_secret_basic" => secret_ref()
                .map(|secret_ref| ClientAuth::ClientSecretBasic { secret_ref })
                .map_err(|m| fail(field::SECRET_REF, m))
                .ok(),
            "client_secret_post" => secret_ref()
                .map(|secret_ref| ClientAuth::ClientSecretPost { secret_ref })
                .map_err(|m| fail(field::SECRET_REF, m))
                .ok(),
            _ => {
                fail(
                    field::CLIENT_AUTH,
                    "choose private_key_jwt, client_secret_basic or client_secret_post".to_owned(),
                );
                None
            }
        };
        let scope_style = match self.scope_style.trim() {
            "v1" => Some(ScopeStyle::V1),
            "v2" => Some(ScopeStyle::V2),
            _ => {
                fail(field::SCOPE_STYLE, "choose v1 or v2".to_owned());
                None
            }
        };
        match (
            (url, environment, ehr_vendor),
            approver,
            client_id,
            patient_client_id,
            auth,
            scope_style,
        ) {
            (
                (Some(fhir_base_url), Some(environment), Some(ehr_vendor)),
                Some(approver),
                Some(client_id),
                Some(patient_client_id),
                Some(auth),
                Some(scope_style),
            ) if errors.is_empty() => Ok(ConfigurationSettings {
                fhir_base_url,
                environment,
                ehr_vendor,
                approver,
                ehr_client: EhrClientSettings {
                    client_id,
                    patient_client_id,
                    auth,
                    scope_style,
                    send_epic_client_id_header: self.send_epic_client_id_header,
                },
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SettingsInput {
        SettingsInput {
            fhir_base_url: "https://ehr.example.org/api/FHIR/R4".into(),
            environment: "production".into(),
            approver: "analyst@example.org".into(),
            client_id: "vb-client".into(),
            ..SettingsInput::default()
        }
    }

    #[test]
    fn good_input_round_trips() {
        let settings = input().parse(UrlPolicy::STRICT).unwrap();
        assert_eq!(settings.ehr_client.auth, ClientAuth::PrivateKeyJwt);
        assert_eq!(SettingsInput::from_settings(&settings), input());
    }

    #[test]
    fn every_problem_is_reported_against_its_field() {
        let bad = SettingsInput {
            fhir_base_url: "https://ehr.example.org/api/FHIR".into(),
            environment: "staging".into(),
            approver: "analyst".into(),
            client_id: " ".into(),
            client_auth: "client_secret_basic".into(),
            scope_style: "v3".into(),
            ..SettingsInput::default()
        };
        let errors = bad.parse(UrlPolicy::STRICT).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "fhir_base_url",
                "environment",
                "approver",
                "client_id",
                "secret_ref",
                "scope_style"
            ]
        );
        assert!(
            errors[0]
                .1
                .contains("did you mean https://ehr.example.org/api/FHIR/R4?")
        );
    }

    #[test]
    fn the_ehr_vendor_is_epic_unless_generic_is_chosen() {
        assert_eq!(
            input().parse(UrlPolicy::STRICT).unwrap().ehr_vendor,
            EhrVendor::Epic
        );
        let generic = SettingsInput {
            ehr_vendor: " generic ".into(),
            ..input()
        };
        let settings = generic.parse(UrlPolicy::STRICT).unwrap();
        assert_eq!(settings.ehr_vendor, EhrVendor::Generic);
        assert_eq!(
            SettingsInput::from_settings(&settings).ehr_vendor,
            "generic"
        );
        let errors = SettingsInput {
            ehr_vendor: "cerner".into(),
            ..input()
        }
        .parse(UrlPolicy::STRICT)
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "ehr_vendor");
    }

    #[test]
    fn a_secret_ref_must_be_a_plain_name() {
        for bad in [
            "VISITBRIDGE-LAUNCH",
            "a.b",
            "x y",
            "../etc",
            &"A".repeat(65),
        ] {
            let errors = SettingsInput {
                client_auth: "client_secret_post".into(),
                secret_ref: Some(bad.to_owned()),
                ..input()
            }
            .parse(UrlPolicy::STRICT)
            .unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].0, "secret_ref");
            assert!(
                errors[0]
                    .1
                    .contains("must be 1 to 64 ASCII letters, digits or underscores"),
                "{}",
                errors[0].1
            );
            assert!(errors[0].1.contains("VISITBRIDGE_EHR_SECRET_<name>"));
        }
        let good = SettingsInput {
            client_auth: "client_secret_post".into(),
            secret_ref: Some("EPIC_PROD".into()),
            ..input()
        }
        .parse(UrlPolicy::STRICT)
        .unwrap();
        assert_eq!(
            good.ehr_client.auth,
            ClientAuth::ClientSecretPost {
                secret_ref: SecretRef::new("EPIC_PROD").unwrap()
            }
        );
    }

    #[test]
    fn loopback_urls_only_under_development_policy() {
        let local = SettingsInput {
            fhir_base_url: "http://127.0.0.1:9999/fhir/R4".into(),
            ..input()
        };
        assert!(local.parse(UrlPolicy::STRICT).is_err());
        assert!(local.parse(UrlPolicy::DEVELOPMENT).is_ok());
    }
}
