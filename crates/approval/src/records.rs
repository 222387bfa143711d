//! Integration records: what the EHR analyst enters in the EHR once a configuration is approved.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    ApprovedSnapshot, ClientId, Configuration, EhrVendor, Environment, FhirBaseUrl, ScopeStyle,
};

/// Names of the launch parameters the records make the EHR send, for the launch service to read.
pub mod context_params {
    /// The visit's contact serial number (Epic `%CSN%`).
    pub const SESSION_ID: &str = "sessionId";
    /// The visit's department (Epic `%PERFDEPID;;; ; ;;NONE;%`).
    pub const DEPARTMENT_ID: &str = "departmentId";
    /// The group visit's conference id (Epic `%CONFERENCEID%`).
    pub const CONFERENCE_ID: &str = "conferenceId";
    /// The environment of the configuration the record came from (`test` or `production`), so a
    /// launch through a record copied into the wrong environment is recognised and explained.
    pub const ENVIRONMENT: &str = "environment";
}

/// The visit context tokens (Epic syntax) the EHR substitutes when a visit is launched.
pub const VISIT_CONTEXT_TOKENS: &str =
    "sessionId=%CSN%&departmentId=%PERFDEPID;;; ; ;;NONE;%&conferenceId=%CONFERENCEID%";

/// Scopes of a provider launch: launch context, identity, and the reads the launch service makes.
pub fn provider_scopes(style: ScopeStyle) -> Vec<String> {
    scopes(
        "user",
        &["Appointment", "Encounter", "Patient", "Practitioner"],
        style,
    )
}

/// Scopes of a patient launch.
pub fn patient_scopes(style: ScopeStyle) -> Vec<String> {
    scopes("patient", &["Appointment", "Encounter"], style)
}

/// Scopes of a device-test launch: launch context only, since the test reads nothing.
pub fn device_test_scopes() -> Vec<String> {
    vec!["launch".to_owned()]
}

fn scopes(context: &str, resources: &[&str], style: ScopeStyle) -> Vec<String> {
    let suffix = style.read_suffix();
    ["launch", "openid", "fhirUser"]
        .into_iter()
        .map(str::to_owned)
        .chain(resources.iter().map(|r| format!("{context}/{r}.{suffix}")))
        .collect()
}

/// The launch service's public addresses, from its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchServiceUrls {
    base_url: Url,
    provider_launch: Url,
    patient_launch: Url,
    device_test: Url,
    callback: Url,
}

/// A launch service base URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid launch service URL: {0}")]
pub struct LaunchUrlError(&'static str);

impl LaunchServiceUrls {
    /// Paths are under `base_url` (which may have a path prefix): `/launch/provider`,
    /// `/launch/patient`, `/launch/device-test`, and the redirect URI `/launch/callback`.
    pub fn new(base_url: &str) -> Result<Self, LaunchUrlError> {
        let base = Url::parse(base_url.trim()).map_err(|_| LaunchUrlError("not a URL"))?;
        if !matches!(base.scheme(), "https" | "http") || base.host().is_none() {
            return Err(LaunchUrlError("it must be an http or https URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(LaunchUrlError("it must have no query or fragment"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(LaunchUrlError("it must have no credentials"));
        }
        let text = base.as_str().trim_end_matches('/').to_owned();
        let at = |path: &str| {
            Url::parse(&format!("{text}{path}")).map_err(|_| LaunchUrlError("not a URL"))
        };
        Ok(Self {
            provider_launch: at("/launch/provider")?,
            patient_launch: at("/launch/patient")?,
            device_test: at("/launch/device-test")?,
            callback: at("/launch/callback")?,
            base_url: base,
        })
    }

    /// The base URL as given.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// `{base}/launch/provider`.
    pub fn provider_launch(&self) -> &Url {
        &self.provider_launch
    }

    /// `{base}/launch/patient`.
    pub fn patient_launch(&self) -> &Url {
        &self.patient_launch
    }

    /// `{base}/launch/device-test`.
    pub fn device_test(&self) -> &Url {
        &self.device_test
    }

    /// `{base}/launch/callback`: the one redirect URI of every record.
    pub fn callback(&self) -> &Url {
        &self.callback
    }
}

/// Which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Clinician launch from the EHR workspace (Hyperspace, Haiku, Canto).
    ProviderLaunch,
    /// Patient launch from the patient portal (MyChart).
    PatientLaunch,
    /// Patient device test before the visit.
    DeviceTest,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ProviderLaunch => "provider launch",
            Self::PatientLaunch => "patient launch",
            Self::DeviceTest => "device test",
        })
    }
}

/// One record to enter in the EHR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationRecord {
    /// Which record.
    pub kind: RecordKind,
    /// The URL the EHR opens, adding `iss` and `launch`.
    pub launch_url: Url,
    /// The redirect URI to register for the client.
    pub redirect_uri: Url,
    /// The client id to use.
    pub client_id: ClientId,
    /// The scopes to register (and that the launch requests).
    pub scopes: Vec<String>,
    /// The parameters the EHR appends at launch, with its context tokens, to paste as they are.
    pub context_parameters: String,
}

impl IntegrationRecord {
    /// The scopes as one space-separated string, as OAuth writes them.
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}

/// The records of an approved configuration version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationRecords {
    /// The FHIR base URL they are for.
    pub fhir_base_url: FhirBaseUrl,
    /// The environment they are for.
    pub environment: Environment,
    /// The kind of EHR they are for, which decides their context parameters.
    pub ehr_vendor: EhrVendor,
    /// The approved configuration version they come from.
    pub configuration_version: u32,
    /// Clinician launch.
    pub provider_launch: IntegrationRecord,
    /// Patient launch.
    pub patient_launch: IntegrationRecord,
    /// Device test.
    pub device_test: IntegrationRecord,
}

impl IntegrationRecords {
    /// The records for an approved version. Records only exist for approved settings, which the
    /// argument type guarantees.
    pub fn generate(approved: &ApprovedSnapshot, urls: &LaunchServiceUrls) -> Self {
        let settings = &approved.settings;
        let client = &settings.ehr_client;
        let environment = format!(
            "{}={}",
            context_params::ENVIRONMENT,
            settings.environment.as_str()
        );
        // Epic substitutes its tokens; any other SMART EHR sends `iss` and `launch` and the
        // visit comes from the token response's context, so the records ask for nothing else.
        let visit_context = match settings.ehr_vendor {
            EhrVendor::Epic => format!("{VISIT_CONTEXT_TOKENS}&{environment}"),
            EhrVendor::Generic => environment.clone(),
        };
        let record = |kind, launch_url: &Url, client_id: &ClientId, scopes, context: &str| {
            IntegrationRecord {
                kind,
                launch_url: launch_url.clone(),
                redirect_uri: urls.callback().clone(),
                client_id: client_id.clone(),
                scopes,
                context_parameters: context.to_owned(),
            }
        };
        Self {
            fhir_base_url: settings.fhir_base_url.clone(),
            environment: settings.environment,
            ehr_vendor: settings.ehr_vendor,
            configuration_version: approved.version,
            provider_launch: record(
                RecordKind::ProviderLaunch,
                urls.provider_launch(),
                &client.client_id,
                provider_scopes(client.scope_style),
                &visit_context,
            ),
            patient_launch: record(
                RecordKind::PatientLaunch,
                urls.patient_launch(),
                client.patient_client_id(),
                patient_scopes(client.scope_style),
                &visit_context,
            ),
            device_test: record(
                RecordKind::DeviceTest,
                urls.device_test(),
                client.patient_client_id(),
                device_test_scopes(),
                &environment,
            ),
        }
    }

    /// The three records, in display order.
    pub fn all(&self) -> [&IntegrationRecord; 3] {
        [
            &self.provider_launch,
            &self.patient_launch,
            &self.device_test,
        ]
    }
}

impl Configuration {
    /// The records of the approved version, if any version is approved.
    pub fn integration_records(&self, urls: &LaunchServiceUrls) -> Option<IntegrationRecords> {
        self.approved()
            .map(|approved| IntegrationRecords::generate(approved, urls))
    }
}
