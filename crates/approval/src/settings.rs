//! What an admin enters for a configuration: FHIR base URL, environment, approver, EHR client.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ClientId, FhirBaseUrl, SecretRef, Username};

/// Which EHR environment a configuration is for. Test and production are separate configurations,
/// with separate integration records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// A test (non-production) EHR environment.
    Test,
    /// The production EHR environment.
    Production,
}

impl Environment {
    /// `test` or `production`: the form used in storage and in integration records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Production => "production",
        }
    }

    /// The inverse of [`Environment::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "test" => Some(Self::Test),
            "production" => Some(Self::Production),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of EHR a configuration is for: it decides what the integration records ask the
/// EHR to send at launch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EhrVendor {
    /// Epic: records carry Epic's context tokens (`sessionId=%CSN%`, the department and the
    /// group visit's conference id), so the visit's meeting is named before FHIR is read. The
    /// default, and what configurations stored before this setting existed are.
    #[default]
    Epic,
    /// Any SMART on FHIR EHR: records carry only the environment, besides the `iss` and `launch`
    /// every EHR launch sends; the launch service finds the visit from the token response's
    /// context (`appointment`, `fhirContext`, `encounter`) and FHIR.
    Generic,
}

impl EhrVendor {
    /// Every vendor, for pickers.
    pub const ALL: [Self; 2] = [Self::Epic, Self::Generic];

    /// `epic` or `generic`: the form used in storage, forms and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epic => "epic",
            Self::Generic => "generic",
        }
    }

    /// The inverse of [`EhrVendor::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == name)
    }
}

impl fmt::Display for EhrVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Epic => "Epic",
            Self::Generic => "any SMART on FHIR EHR",
        })
    }
}

/// The settings an admin enters and changes; everything an approval covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationSettings {
    /// The EHR's FHIR R4 base URL (the SMART `iss`).
    pub fhir_base_url: FhirBaseUrl,
    /// Test or production.
    pub environment: Environment,
    /// Which kind of EHR, for the integration records. Absent in settings stored before it
    /// existed, which read as [`EhrVendor::Epic`] (what every record was until then), in the
    /// configuration and in its history alike.
    #[serde(default)]
    pub ehr_vendor: EhrVendor,
    /// The Microsoft username of the person who must sign in to the EHR and approve.
    pub approver: Username,
    /// How VisitBridge is registered at the EHR.
    pub ehr_client: EhrClientSettings,
}

/// How VisitBridge is registered as an OAuth client at the EHR. Holds no secret: only the name of
/// where one is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhrClientSettings {
    /// The client id for clinician (provider) launches.
    pub client_id: ClientId,
    /// A separate client id for patient-facing launches, for EHRs that register patient-facing
    /// apps separately (Epic's app audience); `None` uses `client_id`.
    pub patient_client_id: Option<ClientId>,
    /// How the client authenticates at the token endpoint.
    pub auth: ClientAuth,
    /// SMART scope syntax the EHR registration uses.
    pub scope_style: ScopeStyle,
    /// Send `Epic-Client-ID: <client id>` on discovery and FHIR calls (Epic can vary endpoints per
    /// client).
    pub send_epic_client_id_header: bool,
}

impl EhrClientSettings {
    /// The client id for patient-facing launches.
    pub fn patient_client_id(&self) -> &ClientId {
        self.patient_client_id.as_ref().unwrap_or(&self.client_id)
    }
}

/// Client authentication at the EHR's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with a client secret.
    ClientSecretBasic {
        /// Where the secret is kept.
        secret_ref: SecretRef,
    },
    /// Client secret in the form body.
    ClientSecretPost {
        /// Where the secret is kept.
        secret_ref: SecretRef,
    },
    /// A JWT signed with VisitBridge's own key, whose public half the EHR fetches from our JWKS.
    PrivateKeyJwt,
}

impl ClientAuth {
    /// The method's name in OAuth metadata (`token_endpoint_auth_methods_supported`).
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::ClientSecretBasic { .. } => "client_secret_basic",
            Self::ClientSecretPost { .. } => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// SMART scope syntax: v1 `user/Appointment.read`, v2 `user/Appointment.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeStyle {
    /// SMART v1 (`.read`).
    V1,
    /// SMART v2 (`.rs`).
    V2,
}

impl ScopeStyle {
    /// The suffix for read access: `read` or `rs`.
    pub fn read_suffix(self) -> &'static str {
        match self {
            Self::V1 => "read",
            Self::V2 => "rs",
        }
    }
}
