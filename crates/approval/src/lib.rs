//! The approval state machine for VisitBridge configurations: who may do what to a configuration,
//! in which order, and what is kept of it.
//!
//! A *configuration* is one tenant's FHIR base URL in one environment (test or production), the
//! Microsoft username of its named approver, and how VisitBridge is registered as a client at the
//! EHR ([`ConfigurationSettings`]). Launches are refused for any FHIR base URL (`iss`) that has no
//! approved configuration, so approval is what stands between an arbitrary URL and VisitBridge
//! talking to it.
//!
//! # Design choices
//!
//! - **No I/O.** This crate depends on no HTTP, database or runtime crate (only `serde`,
//!   `thiserror`, `chrono`, `url`); time is passed in. The portal does the sign-ins and probes, the
//!   store persists, and both speak through the types here. A test checks the dependency list.
//! - **Typed transitions.** Each transition is a method ([`Configuration::create`],
//!   [`edit`](Configuration::edit), [`submit`](Configuration::submit),
//!   [`record_ehr_validation`](Configuration::record_ehr_validation),
//!   [`approve`](Configuration::approve), [`reject`](Configuration::reject)) that checks the
//!   actor's tenant and role, the approver's identity and the preconditions, and returns either a
//!   [`TransitionError`] (nothing changes) or a [`Transitioned`]: the new configuration plus the
//!   [`HistoryEntry`] recording it. Callers store both atomically; the history is append-only.
//!
//! | action                  | who                  | from                            | to                 |
//! |-------------------------|----------------------|---------------------------------|--------------------|
//! | `create`                | admin                | –                               | Draft              |
//! | `edit`                  | admin                | Draft                           | Draft              |
//! | `edit`                  | admin                | any other                       | AwaitingApproval   |
//! | `submit`                | admin                | Draft, Rejected                 | AwaitingApproval   |
//! | `record_ehr_validation` | named approver       | AwaitingApproval, EhrValidated  | EhrValidated       |
//! | `approve`               | named approver       | EhrValidated                    | Approved           |
//! | `reject`                | named approver       | AwaitingApproval, EhrValidated  | Rejected           |
//!
//! - **No approval without the EHR sign-in.** Approving needs a recorded EHR sign-in by the named
//!   approver against *exactly* the configuration's (normalised) FHIR base URL, with its time and
//!   EHR user id. Any edit drops that sign-in, because it vouched for the old settings. The
//!   approver may be the admin too, and must still sign in to the EHR. Usernames compare
//!   case-insensitively, as Entra's do.
//! - **Two people, where the operator wants them.** An [`ApprovalPolicy`] (by default: for
//!   production) refuses approval by the admin who last created, edited or submitted the
//!   configuration ([`Configuration::last_changed_by`]), so one person cannot change a production
//!   configuration and approve it alone. The portal passes the operator's setting to
//!   [`Configuration::approve_under`]; a replay judges past approvals as they were made.
//!   That the EHR sign-in was a staff user (not a patient's login) is checked by the portal with
//!   `visitbridge_smart::EhrUser::is_staff` before it records the sign-in.
//! - **The approved version keeps serving.** A configuration keeps its last [`ApprovedSnapshot`]
//!   when an admin edits it (state back to AwaitingApproval) or when the approver rejects the
//!   edit: launches use [`Configuration::approved`], never the pending settings, so a change in
//!   progress never breaks live visits and never takes effect unapproved. The alternative, taking
//!   the configuration out of service until re-approval, would stop clinics' visits for a typo fix.
//! - **History replays.** [`Configuration::replay`] rebuilds a configuration from its history by
//!   re-running every transition; property tests check that it always gives the current value.
//! - **URL checks in two halves.** [`FhirBaseUrl::parse`] does the syntactic checks on entry
//!   (https, loopback only under [`UrlPolicy::DEVELOPMENT`], no query or fragment, known suffix
//!   mistakes such as Epic's missing `/R4`) and normalises. The network checks (SMART
//!   configuration, CapabilityStatement `fhirVersion`) are made by the caller, which passes what it
//!   saw to [`classify_probe`]; [`classify_oauth_error`] explains a failed EHR sign-in;
//!   [`environment_warning`] flags a likely test/production mix-up. All return messages meant for
//!   the person who entered the URL.
//! - **No secrets, no PHI.** Settings name where a client secret is kept ([`SecretRef`]), never
//!   the secret, because configurations are shown in the portal. The only EHR user data is the EHR
//!   user id of the approver's sign-in.
//! - **Integration records** ([`IntegrationRecords`]) are derived from an approved snapshot and
//!   the launch service's URLs, so they always match what launches accept. Their form follows the
//!   configuration's [`EhrVendor`]: Epic's context tokens, or only `iss`, `launch` and the
//!   environment for any other SMART on FHIR EHR.
//!
//! # Example
//!
//! ```
//! use chrono::Utc;
//! use visitbridge_approval::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tenant = TenantId::new("contoso")?;
//! let admin = Actor::admin(tenant.clone(), Username::new("admin@contoso.org")?);
//! let approver = Actor::approver(tenant.clone(), Username::new("analyst@contoso.org")?);
//! let url = FhirBaseUrl::parse("https://ehr.contoso.org/api/FHIR/R4", UrlPolicy::STRICT)?;
//! let settings = ConfigurationSettings {
//!     fhir_base_url: url.clone(),
//!     environment: Environment::Production,
//!     ehr_vendor: EhrVendor::Epic,
//!     approver: Username::new("Analyst@Contoso.org")?,
//!     ehr_client: EhrClientSettings {
//!         client_id: ClientId::new("visitbridge-client")?,
//!         patient_client_id: None,
//!         auth: ClientAuth::PrivateKeyJwt,
//!         scope_style: ScopeStyle::V2,
//!         send_epic_client_id_header: true,
//!     },
//! };
//!
//! let created = Configuration::create(&admin, ConfigurationId::new("cfg-1")?, settings, Utc::now())?;
//! let submitted = created.configuration.submit(&admin, Utc::now())?;
//! // Approving before the approver's EHR sign-in is refused.
//! assert!(submitted.configuration.approve(&approver, Utc::now()).is_err());
//! let validated = submitted.configuration.record_ehr_validation(
//!     &approver,
//!     &url,
//!     EhrUserId::new("Practitioner/abc")?,
//!     Utc::now(),
//! )?;
//! let approved = validated.configuration.approve(&approver, Utc::now())?;
//! assert_eq!(approved.configuration.state(), ApprovalState::Approved);
//!
//! let urls = LaunchServiceUrls::new("https://visits.contoso.org")?;
//! let records = approved.configuration.integration_records(&urls).ok_or("not approved")?;
//! assert_eq!(records.provider_launch.launch_url.as_str(), "https://visits.contoso.org/launch/provider");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod fhir_url;
mod ids;
mod machine;
mod newtype;
mod probe;
mod records;
mod settings;

pub use fhir_url::{FhirBaseUrl, FhirUrlProblem, OAuthGap, UrlPolicy};
pub use ids::{ClientId, ConfigurationId, EhrUserId, InvalidId, SecretRef, TenantId, Username};
pub use machine::{
    ActionKind, Actor, ActorRecord, ApprovalPolicy, ApprovalState, ApprovedSnapshot, Configuration,
    EhrValidation, HistoryAction, HistoryEntry, MAX_REASON_CHARS, Rejection, ReplayError, Role,
    TransitionError, Transitioned,
};
pub use probe::{
    EnvironmentWarning, MetadataProbe, ProbeOutcome, SmartConfigurationProbe, classify_oauth_error,
    classify_probe, environment_warning,
};
pub use records::{
    IntegrationRecord, IntegrationRecords, LaunchServiceUrls, LaunchUrlError, RecordKind,
    VISIT_CONTEXT_TOKENS, context_params, device_test_scopes, patient_scopes, provider_scopes,
};
pub use settings::{
    ClientAuth, ConfigurationSettings, EhrClientSettings, EhrVendor, Environment, ScopeStyle,
};
