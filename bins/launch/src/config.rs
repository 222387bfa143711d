//! The launch service's configuration: an optional TOML file, overridden by flags and environment
//! variables, with loopback defaults so that `cargo run -p visitbridge-launch` starts as it is.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use clap::Parser;
use serde::Deserialize;
use url::Url;
use visitbridge_approval::SecretRef;
use visitbridge_audit::SinkConfig;
use visitbridge_graph::MeetingPolicy;
pub use visitbridge_http::HttpTimeouts;
use visitbridge_http::{Secret, is_loopback_url};
use visitbridge_store::DatabaseLocation;
pub use visitbridge_web::{ServerLimits, config::ConfigError};

/// The `User-Agent` of the launch service's outbound calls.
pub(crate) const USER_AGENT: &str = concat!("VisitBridge-Launch/", env!("CARGO_PKG_VERSION"));

/// Everything the launch service needs. Every field has a default, so the service starts without
/// a file: on loopback, with a database under `visitbridge-data/`, generated development keys and
/// secrets, and without Microsoft 365 (launches then explain what is missing).
///
/// ```toml
/// listen = "0.0.0.0:8080"
/// public_base_url = "https://visits.example.org"
/// database = "/var/lib/visitbridge/visitbridge.sqlite"
/// patient_link_ttl_minutes = 1440
/// audit_retention_days = 30           # AuditEvents and clear patient ids, after last use
/// metrics_listen = "127.0.0.1:9464"   # /metrics only, for the scraper
/// # deployment_secret from VISITBRIDGE_LAUNCH_DEPLOYMENT_SECRET, and an optional
/// # metrics_bearer_token (for /metrics on the main listener) from
/// # VISITBRIDGE_LAUNCH_METRICS_BEARER_TOKEN
///
/// [cookies]
/// same_site = "none"   # the EHR shows us in an embedded browser
///
/// [backend_key]
/// private_key_file = "/etc/visitbridge/backend-rs384.pem"
/// key_id = "visitbridge-2026-1"
/// algorithm = "RS384"
///
/// [microsoft]
/// tenant_id = "0b7c1e0f-3a57-4c4e-9d0a-5f4f6c2b9e11"
/// client_id = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
/// # client_secret from VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET,
/// # client_state from VISITBRIDGE_LAUNCH_GRAPH_CLIENT_STATE
///
/// [ehr_client_secrets]
/// # a configuration with secret_ref = "EPIC_PROD" uses this, else the environment variable
/// # VISITBRIDGE_EHR_SECRET_EPIC_PROD
/// EPIC_PROD = "…"
///
/// [[writeback.sinks]]
/// kind = "fhir-audit-event"
/// mode = "conditional-create"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Address to listen on (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The service's public address as browsers and EHRs reach it (the integration records'
    /// launch URLs and redirect URI are under it). Default: `http://{listen address}`. Must be
    /// the root of its host (no path): redirects and page assets are addressed from `/`.
    #[serde(default)]
    pub public_base_url: Option<Url>,
    /// The public HTTPS address Graph delivers change notifications to (`/graph/...` under it).
    /// Default: `public_base_url`. Graph only calls https URLs.
    #[serde(default)]
    pub notification_base_url: Option<Url>,
    /// The database, shared with the portal: a SQLite file (a path, or `sqlite:///path`), or
    /// PostgreSQL (`postgres://user@host/db?sslmode=require`) for several replicas on one
    /// database.
    #[serde(default = "default_database")]
    pub database: DatabaseLocation,
    /// The most PostgreSQL connections this process keeps (ignored for SQLite).
    #[serde(default = "default_database_max_connections")]
    pub database_max_connections: usize,
    /// A second address serving only `/metrics`, without authentication (e.g. `127.0.0.1:9464`,
    /// reachable by the scraper but not from the internet). Default: none.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// With it, `/metrics` on the main listener answers only `Authorization: Bearer <token>`
    /// (at least 32 characters; better set through `VISITBRIDGE_LAUNCH_METRICS_BEARER_TOKEN`).
    /// Without it, `/metrics` on the main listener does not exist (404).
    #[serde(default)]
    pub metrics_bearer_token: Secret,
    /// Development mode: the deployment secret, backend key and Graph `clientState` may be left
    /// out and are then generated for the run (with a warning). Outside development mode they are
    /// required, since generated ones change at every restart. On when started without a file.
    #[serde(default)]
    pub dev_mode: bool,
    /// The deployment secret (at least 32 characters): keys meetings' `externalId`s and signs
    /// patient links. It must never change (a new one gives every visit a new meeting and voids
    /// every patient link).
    #[serde(default)]
    pub deployment_secret: Secret,
    /// What the keyed hashes of stored patient and appointment ids are made with: set the same
    /// value (≥ 32 random characters) in the portal's `reference_secret` for its auditor's
    /// FHIR search by patient or appointment. Without it one is derived from the deployment
    /// secret (which the portal must never hold). Set it before the first launch and never
    /// change it: visits keyed under another value no longer match their own patient.
    #[serde(default)]
    pub reference_secret: Secret,
    /// How long a patient link stays valid, in minutes.
    #[serde(default = "default_link_ttl")]
    pub patient_link_ttl_minutes: u64,
    /// How long the clinician's and patient's visit sessions last, in minutes.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_minutes: u64,
    /// Days a visit's AuditEvents and the clear FHIR ids of its patient, appointment and
    /// encounter are kept once nothing will build or deliver an AuditEvent of it any more (the
    /// auditor's AuditEvent endpoint serves them meanwhile); then they are purged, and only their
    /// keyed hashes stay. `0` purges them as soon as they are delivered.
    #[serde(default = "default_audit_retention")]
    pub audit_retention_days: u32,
    /// Seconds between two rounds of housekeeping: expired launches and sessions, the retention
    /// purge, sinks of newly approved configurations.
    #[serde(default = "default_housekeeping")]
    pub housekeeping_seconds: u64,
    /// How many minutes a launch may wait for the EHR's (or Microsoft's) callback.
    #[serde(default = "default_launch_ttl")]
    pub launch_ttl_minutes: u64,
    /// The most a launch step may take, in seconds, whatever upstream hangs: the start of a
    /// launch (discovery), and each callback (token exchange, FHIR reads, Teams meeting) ends by
    /// then, with its error page if need be. Calls inside it keep their own timeouts.
    #[serde(default = "default_launch_deadline")]
    pub launch_deadline_seconds: u64,
    /// `fhirUser` resource types counted as staff besides `Practitioner` and `PractitionerRole`
    /// (for an EHR that names its clinicians otherwise). A clinician launch by anyone else — a
    /// `Patient`, a `RelatedPerson` — is refused.
    #[serde(default)]
    pub staff_user_types: Vec<String>,
    /// Cookie settings.
    #[serde(default)]
    pub cookies: CookieConfig,
    /// Our backend-services key (published at `/.well-known/jwks.json`; also signs
    /// `private_key_jwt` client assertions at EHR token endpoints). Generated per run when absent.
    #[serde(default)]
    pub backend_key: Option<BackendKeyConfig>,
    /// EHR client secrets by the name a configuration's `secret_ref` gives (1 to 64 letters,
    /// digits or underscores); a name missing here is read from the environment variable
    /// `VISITBRIDGE_EHR_SECRET_<name>`, and no other variable is ever read for it.
    #[serde(default)]
    pub ehr_client_secrets: BTreeMap<String, Secret>,
    /// Microsoft 365: Entra ID (sign-in, app tokens) and Graph. Without it, launches explain that
    /// Microsoft 365 is not configured.
    #[serde(default)]
    pub microsoft: Option<MicrosoftConfig>,
    /// Write-back sinks.
    #[serde(default)]
    pub writeback: WritebackConfig,
    /// Background upkeep of visits: subscription renewal, reconciliation with attendance reports.
    #[serde(default)]
    pub upkeep: UpkeepConfig,
    /// Timeouts of outbound calls.
    #[serde(default)]
    pub http: HttpTimeouts,
    /// Limits of inbound connections: header read timeout, connections per client IP.
    #[serde(default)]
    pub server: ServerLimits,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_database() -> DatabaseLocation {
    DatabaseLocation::Sqlite(PathBuf::from("visitbridge-data").join("visitbridge.sqlite"))
}

fn default_database_max_connections() -> usize {
    visitbridge_store::PostgresOptions::default().max_connections
}

fn default_link_ttl() -> u64 {
    24 * 60
}

fn default_session_ttl() -> u64 {
    12 * 60
}

fn default_audit_retention() -> u32 {
    30
}

fn default_housekeeping() -> u64 {
    300
}

fn default_launch_ttl() -> u64 {
    10
}

fn default_launch_deadline() -> u64 {
    10
}

/// `SameSite` of our cookies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    /// Sent on top-level navigations from other sites (the EHR's redirect back to us): the
    /// default, and what a loopback development setup needs.
    #[default]
    Lax,
    /// Sent in every context, including an EHR's embedded browser frame; needs `secure`.
    None,
    /// Only on same-site requests (breaks the EHR's redirect back; for special setups).
    Strict,
}

impl SameSite {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::None => "None",
            Self::Strict => "Strict",
        }
    }
}

/// Cookie settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    /// Mark cookies `Secure` (default: on, unless the public base URL is plain http on loopback).
    #[serde(default)]
    pub secure: Option<bool>,
    /// `SameSite` (default `lax`; `none` for EHR-embedded browsers).
    #[serde(default)]
    pub same_site: SameSite,
}

/// Our backend-services signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendKeyConfig {
    /// A PKCS#8 PEM private key (RSA for RS384, P-384 for ES384).
    pub private_key_file: PathBuf,
    /// The key id published in the JWKS.
    pub key_id: String,
    /// `RS384` (default) or `ES384`.
    #[serde(default)]
    pub algorithm: visitbridge_http::KeyAlgorithm,
}

/// Entra ID and Graph.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrosoftConfig {
    /// The login host (a loopback fake in tests).
    #[serde(default = "default_login_base")]
    pub login_base: Url,
    /// The organisation's Entra tenant (clinicians sign in there; meetings are created there).
    pub tenant_id: String,
    /// The app registration's client id.
    pub client_id: String,
    /// Its client secret; better set through `VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET`.
    #[serde(default)]
    pub client_secret: Secret,
    /// Graph's root (a loopback fake in tests).
    #[serde(default = "default_graph_base")]
    pub graph_base: Url,
    /// The secret Graph echoes in every notification (`clientState`); better set through
    /// `VISITBRIDGE_LAUNCH_GRAPH_CLIENT_STATE`. Generated per run when absent.
    #[serde(default)]
    pub client_state: Secret,
    /// Patients get the virtual-appointment browser join URL (needs
    /// `VirtualAppointment.Read.All`); off: the meeting's `joinWebUrl`.
    #[serde(default = "default_true")]
    pub virtual_appointment_join_url: bool,
    /// The meeting subject: visible to everyone, kept by Microsoft, so never PHI.
    #[serde(default = "default_subject")]
    pub meeting_subject: String,
    /// The meeting policy (lobby, chat, presenters).
    #[serde(default)]
    pub policy: MeetingPolicy,
    /// Lifetime of notification subscriptions, in hours (renewed before they end).
    #[serde(default = "default_subscription_hours")]
    pub subscription_lifetime_hours: u64,
    /// Encrypted notifications: the certificate Graph encrypts for (PEM) ...
    #[serde(default)]
    pub encryption_certificate_file: Option<PathBuf>,
    /// ... its private key (PKCS#8 PEM) ...
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
    /// ... and the id we give it.
    #[serde(default)]
    pub encryption_certificate_id: Option<String>,
    /// With encryption configured, where the identity platform's keys for checking Graph's
    /// `validationTokens` are; default `{login_base}/common/discovery/v2.0/keys`.
    #[serde(default)]
    pub validation_jwks_url: Option<Url>,
}

fn default_login_base() -> Url {
    Url::parse("https://login.microsoftonline.com/").unwrap_or_else(|_| unreachable!())
}

fn default_graph_base() -> Url {
    Url::parse("https://graph.microsoft.com/").unwrap_or_else(|_| unreachable!())
}

fn default_true() -> bool {
    true
}

fn default_subject() -> String {
    "Virtual visit".to_owned()
}

fn default_subscription_hours() -> u64 {
    12
}

/// Write-back: the sinks every approved configuration's events go to, and exceptions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritebackConfig {
    /// Sinks of every configuration without its own entry (default: FHIR AuditEvent, the mode
    /// chosen per server would need its CapabilityStatement, so conditional create).
    #[serde(default = "default_sinks")]
    pub sinks: Vec<SinkConfig>,
    /// Sinks per configuration id, replacing `sinks` for that configuration.
    #[serde(default)]
    pub configurations: BTreeMap<String, ConfigurationSinks>,
    /// Backend-services scopes asked for write-back tokens.
    #[serde(default = "default_backend_scope")]
    pub backend_scope: String,
    /// Deliveries given up after this many attempts (dead letters).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The first wait after a failed delivery, in milliseconds (doubling, jittered).
    #[serde(default = "default_retry_base")]
    pub retry_base_millis: u64,
    /// The longest wait between two delivery attempts, in seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
    /// Milliseconds between polls of the outbox when nothing woke the worker.
    #[serde(default = "default_poll")]
    pub poll_millis: u64,
}

fn default_sinks() -> Vec<SinkConfig> {
    vec![SinkConfig::FhirAuditEvent {
        mode: visitbridge_audit::AuditEventMode::ConditionalCreate,
    }]
}

fn default_backend_scope() -> String {
    "system/AuditEvent.c system/Communication.c".to_owned()
}

fn default_max_attempts() -> u32 {
    10
}

fn default_retry_base() -> u64 {
    15_000
}

fn default_retry_max() -> u64 {
    30 * 60
}

fn default_poll() -> u64 {
    2_000
}

impl Default for WritebackConfig {
    fn default() -> Self {
        Self {
            sinks: default_sinks(),
            configurations: BTreeMap::new(),
            backend_scope: default_backend_scope(),
            max_attempts: default_max_attempts(),
            retry_base_millis: default_retry_base(),
            retry_max_seconds: default_retry_max(),
            poll_millis: default_poll(),
        }
    }
}

/// Background upkeep of visits, driven from the database so that a restart loses none of it:
/// renewing Graph subscriptions before they lapse (and removing those of old visits), and reading
/// each ended call's attendance report to record what live notifications missed.
///
/// ```toml
/// [upkeep]
/// poll_millis = 60000
/// renew_margin_minutes = 60
/// subscription_max_age_hours = 72
/// reconcile_delay_seconds = 600
/// reconcile_retry_seconds = 300
/// reconcile_max_attempts = 6
/// reconcile_tolerance_seconds = 120
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpkeepConfig {
    /// Milliseconds between two looks at subscriptions to renew and reconciliations due.
    #[serde(default = "default_upkeep_poll")]
    pub poll_millis: u64,
    /// A subscription is renewed when fewer minutes than this remain (at most half its lifetime).
    #[serde(default = "default_renew_margin")]
    pub renew_margin_minutes: u64,
    /// Subscriptions of visits created longer ago than this are removed instead of renewed (a
    /// call that never ended, or whose end was missed, must not be watched forever).
    #[serde(default = "default_subscription_max_age")]
    pub subscription_max_age_hours: u64,
    /// Seconds after a call ends before its attendance report is read (Graph publishes reports
    /// some minutes after the meeting ends).
    #[serde(default = "default_reconcile_delay")]
    pub reconcile_delay_seconds: u64,
    /// Seconds before trying again when the report is not there yet or Graph failed.
    #[serde(default = "default_reconcile_retry")]
    pub reconcile_retry_seconds: u64,
    /// Attempts at reading a visit's report before giving up.
    #[serde(default = "default_reconcile_attempts")]
    pub reconcile_max_attempts: u32,
    /// A reported event within this many seconds of a stored one of the same kind and person is
    /// the same event (reports and notifications time things differently).
    #[serde(default = "default_reconcile_tolerance")]
    pub reconcile_tolerance_seconds: u64,
}

fn default_upkeep_poll() -> u64 {
    60_000
}

fn default_renew_margin() -> u64 {
    60
}

fn default_subscription_max_age() -> u64 {
    72
}

fn default_reconcile_delay() -> u64 {
    600
}

fn default_reconcile_retry() -> u64 {
    300
}

fn default_reconcile_attempts() -> u32 {
    6
}

fn default_reconcile_tolerance() -> u64 {
    120
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        Self {
            poll_millis: default_upkeep_poll(),
            renew_margin_minutes: default_renew_margin(),
            subscription_max_age_hours: default_subscription_max_age(),
            reconcile_delay_seconds: default_reconcile_delay(),
            reconcile_retry_seconds: default_reconcile_retry(),
            reconcile_max_attempts: default_reconcile_attempts(),
            reconcile_tolerance_seconds: default_reconcile_tolerance(),
        }
    }
}

/// The sinks of one configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationSinks {
    /// Its sinks (empty: no write-back).
    pub sinks: Vec<SinkConfig>,
}

impl Default for LaunchConfig {
    fn default() -> Self {
        // An empty document takes every default.
        toml::from_str("").unwrap_or_else(|_| unreachable!())
    }
}

impl LaunchConfig {
    /// Parses a TOML document (not yet validated).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        visitbridge_web::config::from_toml(text)
    }

    /// The public base URL, given the address actually bound (for the `http://{listen}` default).
    pub fn public_base(&self, bound: SocketAddr) -> Url {
        self.public_base_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{bound}/")).unwrap_or_else(|_| unreachable!())
        })
    }

    /// Whether cookies are `Secure` for this public base URL.
    pub fn cookie_secure(&self, public_base: &Url) -> bool {
        self.cookies
            .secure
            .unwrap_or(!(public_base.scheme() == "http" && is_loopback_url(public_base)))
    }

    /// Checks what types alone cannot, for the public base URL `public_base`.
    pub fn validate(&self, public_base: &Url) -> Result<(), ConfigError> {
        if public_base.host().is_none()
            || public_base.query().is_some()
            || public_base.fragment().is_some()
            || !public_base.username().is_empty()
        {
            return Err(ConfigError::invalid(
                "public_base_url must be an http(s) address without query, fragment or credentials",
            ));
        }
        if public_base.path() != "/" {
            return Err(ConfigError::invalid(
                "public_base_url must be the root of its host (e.g. https://visits.example.org), \
                 without a path: redirects and page assets are addressed from /",
            ));
        }
        match public_base.scheme() {
            "https" => {}
            "http" if is_loopback_url(public_base) => {}
            _ => {
                return Err(ConfigError::invalid(
                    "public_base_url must use https (plain http only on a loopback address)",
                ));
            }
        }
        let secure = self.cookie_secure(public_base);
        if !secure && !is_loopback_url(public_base) {
            return Err(ConfigError::invalid(
                "cookies.secure = false is only allowed on a loopback public_base_url",
            ));
        }
        if self.cookies.same_site == SameSite::None && !secure {
            return Err(ConfigError::invalid(
                "cookies.same_site = \"none\" needs secure cookies (browsers drop them otherwise)",
            ));
        }
        if self.patient_link_ttl_minutes == 0 || self.session_ttl_minutes == 0 {
            return Err(ConfigError::invalid(
                "patient_link_ttl_minutes and session_ttl_minutes must be at least 1",
            ));
        }
        if let Some(name) = self
            .ehr_client_secrets
            .keys()
            .find(|name| SecretRef::new(name.as_str()).is_err())
        {
            return Err(ConfigError::invalid(format!(
                "[ehr_client_secrets] name {name:?} can never match a configuration's secret_ref: \
                 use 1 to 64 ASCII letters, digits or underscores"
            )));
        }
        if let Some(ms) = &self.microsoft {
            if ms.tenant_id.trim().is_empty() || ms.client_id.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "microsoft.tenant_id and microsoft.client_id are required",
                ));
            }
            if ms.client_secret.is_empty() {
                return Err(ConfigError::invalid(
                    "the Entra client secret is missing: set VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET",
                ));
            }
            let encryption = [
                ms.encryption_certificate_file.is_some(),
                ms.encryption_key_file.is_some(),
                ms.encryption_certificate_id.is_some(),
            ];
            if encryption.iter().any(|x| *x) && !encryption.iter().all(|x| *x) {
                return Err(ConfigError::invalid(
                    "microsoft.encryption_certificate_file, encryption_key_file and \
                     encryption_certificate_id go together",
                ));
            }
        }
        if !self.metrics_bearer_token.is_empty() && self.metrics_bearer_token.expose().len() < 32 {
            return Err(ConfigError::invalid(
                "the metrics bearer token must be at least 32 characters",
            ));
        }
        if self
            .metrics_listen
            .is_some_and(|m| m.port() != 0 && m == self.listen)
        {
            return Err(ConfigError::invalid(
                "metrics_listen must be another address than listen (it serves only /metrics, \
                 without authentication)",
            ));
        }
        if !self.deployment_secret.is_empty() && self.deployment_secret.expose().len() < 32 {
            return Err(ConfigError::invalid(
                "the deployment secret must be at least 32 characters",
            ));
        }
        if !self.reference_secret.is_empty() && self.reference_secret.expose().len() < 32 {
            return Err(ConfigError::invalid(
                "the reference secret must be at least 32 characters",
            ));
        }
        if !self.reference_secret.is_empty() && self.reference_secret == self.deployment_secret {
            return Err(ConfigError::invalid(
                "the reference secret must not be the deployment secret (the portal holds it)",
            ));
        }
        if !self.dev_mode {
            if self.deployment_secret.is_empty() {
                return Err(ConfigError::invalid(
                    "the deployment secret is missing: set VISITBRIDGE_LAUNCH_DEPLOYMENT_SECRET \
                     (or dev_mode = true to generate one per run)",
                ));
            }
            if self.backend_key.is_none() {
                return Err(ConfigError::invalid(
                    "[backend_key] is missing: EHRs must find the same key in our JWKS after a \
                     restart (or dev_mode = true to generate one per run)",
                ));
            }
            if self
                .microsoft
                .as_ref()
                .is_some_and(|ms| ms.client_state.is_empty())
            {
                return Err(ConfigError::invalid(
                    "the Graph client state is missing: set VISITBRIDGE_LAUNCH_GRAPH_CLIENT_STATE \
                     (or dev_mode = true to generate one per run)",
                ));
            }
        }
        Ok(())
    }
}

/// The command line (each flag also read from its environment variable), over the TOML file.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "visitbridge-launch",
    version,
    about = "The VisitBridge launch service: EHR launches into Teams meetings, Graph webhooks, write-back to the EHR",
    after_help = "Without --config the service starts on loopback with development defaults. Secrets \
                  belong in the environment (VISITBRIDGE_LAUNCH_DEPLOYMENT_SECRET, \
                  VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET, VISITBRIDGE_LAUNCH_GRAPH_CLIENT_STATE, \
                  and each EHR client secret in VISITBRIDGE_EHR_SECRET_<secret_ref>)."
)]
pub struct Cli {
    /// The TOML configuration file (optional).
    #[arg(long, short = 'c', env = "VISITBRIDGE_LAUNCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, over the file's `listen` (port 0 picks a free port).
    #[arg(long, env = "VISITBRIDGE_LAUNCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The public base URL, over the file's `public_base_url`.
    #[arg(long, env = "VISITBRIDGE_LAUNCH_PUBLIC_BASE_URL")]
    pub public_base_url: Option<Url>,
    /// The database (a SQLite path or a postgres:// URL), over the file's `database`.
    #[arg(long, env = "VISITBRIDGE_LAUNCH_DATABASE", hide_env_values = true)]
    pub database: Option<DatabaseLocation>,
    /// The deployment secret, over the file's `deployment_secret`.
    #[arg(
        long,
        env = "VISITBRIDGE_LAUNCH_DEPLOYMENT_SECRET",
        hide_env_values = true
    )]
    pub deployment_secret: Option<String>,
    /// The reference secret, over the file's `reference_secret`.
    #[arg(
        long,
        env = "VISITBRIDGE_LAUNCH_REFERENCE_SECRET",
        hide_env_values = true
    )]
    pub reference_secret: Option<String>,
    /// The address serving only `/metrics`, over the file's `metrics_listen`.
    #[arg(long, env = "VISITBRIDGE_LAUNCH_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The bearer token of `/metrics` on the main listener, over the file's
    /// `metrics_bearer_token`.
    #[arg(
        long,
        env = "VISITBRIDGE_LAUNCH_METRICS_BEARER_TOKEN",
        hide_env_values = true
    )]
    pub metrics_bearer_token: Option<String>,
    /// The Entra client secret, over the file's `microsoft.client_secret`.
    #[arg(
        long,
        env = "VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub entra_client_secret: Option<String>,
    /// The Graph notification `clientState`, over the file's `microsoft.client_state`.
    #[arg(
        long,
        env = "VISITBRIDGE_LAUNCH_GRAPH_CLIENT_STATE",
        hide_env_values = true
    )]
    pub graph_client_state: Option<String>,
    /// Development mode.
    #[arg(long, env = "VISITBRIDGE_LAUNCH_DEV_MODE")]
    pub dev_mode: bool,
    /// What to do; without one, serve.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A command other than serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Brings the database schema up to date and exits (for operators who migrate before rolling
    /// out; the service also migrates at start-up, under a lock, so replicas migrate once).
    Migrate,
}

impl LaunchConfig {
    /// The PostgreSQL pool settings from this configuration (unused for SQLite).
    pub fn database_options(&self) -> visitbridge_store::PostgresOptions {
        visitbridge_store::PostgresOptions {
            max_connections: self.database_max_connections,
            ..visitbridge_store::PostgresOptions::default()
        }
    }
}

impl Cli {
    /// Reads the file (if any) and applies the overrides (validation needs the bound address:
    /// see [`LaunchConfig::validate`]).
    pub fn load(&self) -> Result<LaunchConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => visitbridge_web::config::read_toml(path)?,
            None => LaunchConfig {
                dev_mode: true,
                ..LaunchConfig::default()
            },
        };
        self.apply(&mut config);
        Ok(config)
    }

    /// Applies the flags and environment variables that were given.
    pub fn apply(&self, config: &mut LaunchConfig) {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.public_base_url {
            config.public_base_url = Some(url.clone());
        }
        if let Some(database) = &self.database {
            config.database = database.clone();
        }
        if let Some(secret) = &self.reference_secret {
            config.reference_secret = Secret::new(secret.clone());
        }
        if let Some(secret) = &self.deployment_secret {
            config.deployment_secret = Secret::new(secret.clone());
        }
        if let Some(addr) = self.metrics_listen {
            config.metrics_listen = Some(addr);
        }
        if let Some(token) = &self.metrics_bearer_token {
            config.metrics_bearer_token = Secret::new(token.clone());
        }
        if let Some(ms) = &mut config.microsoft {
            if let Some(secret) = &self.entra_client_secret {
                ms.client_secret = Secret::new(secret.clone());
            }
            if let Some(state) = &self.graph_client_state {
                ms.client_state = Secret::new(state.clone());
            }
        }
        if self.dev_mode {
            config.dev_mode = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTION: &str = r#"
        deployment_secret = "0123456789abcdef0123456789abcdef"
        [backend_key]
        private_key_file = "/etc/visitbridge/backend.pem"
        key_id = "k1"
    "#;

    fn local() -> Url {
        Url::parse("http://127.0.0.1:8080/").unwrap()
    }

    fn https() -> Url {
        Url::parse("https://visits.example.org/").unwrap()
    }

    fn production(extra: &str) -> LaunchConfig {
        LaunchConfig::from_toml(&format!("{PRODUCTION}\n{extra}")).unwrap()
    }

    fn refusal(config: &LaunchConfig, base: &Url) -> String {
        config.validate(base).unwrap_err().to_string()
    }

    #[test]
    fn no_file_gives_loopback_defaults() {
        let config = LaunchConfig {
            dev_mode: true,
            ..LaunchConfig::default()
        };
        assert_eq!(config.listen, default_listen());
        assert_eq!(
            config.public_base(config.listen).as_str(),
            "http://127.0.0.1:8080/"
        );
        assert!(!config.cookie_secure(&local()));
        assert_eq!(config.cookies.same_site, SameSite::Lax);
        assert_eq!(config.patient_link_ttl_minutes, 24 * 60);
        assert!(config.microsoft.is_none());
        assert_eq!(config.writeback.sinks.len(), 1);
        config.validate(&local()).unwrap();
    }

    #[test]
    fn production_needs_its_secrets_and_keys() {
        let err = refusal(&LaunchConfig::default(), &https());
        assert!(
            err.contains("VISITBRIDGE_LAUNCH_DEPLOYMENT_SECRET"),
            "{err}"
        );
        let short =
            LaunchConfig::from_toml("dev_mode = true\ndeployment_secret = \"short\"").unwrap();
        assert!(refusal(&short, &https()).contains("32 characters"));
        let no_key =
            LaunchConfig::from_toml("deployment_secret = \"0123456789abcdef0123456789abcdef\"")
                .unwrap();
        assert!(refusal(&no_key, &https()).contains("[backend_key]"));
        let ms =
            production("[microsoft]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"x\"");
        assert!(refusal(&ms, &https()).contains("VISITBRIDGE_LAUNCH_GRAPH_CLIENT_STATE"));
        production("").validate(&https()).unwrap();
    }

    #[test]
    fn public_deployments_need_https_and_secure_cookies() {
        let config = production("");
        let public = Url::parse("http://visits.example.org/").unwrap();
        assert!(refusal(&config, &public).contains("https"));
        assert!(config.cookie_secure(&https()));
        config.validate(&https()).unwrap();
        assert!(
            production("[cookies]\nsecure = false")
                .validate(&https())
                .is_err()
        );
        let none = production("[cookies]\nsame_site = \"none\"");
        none.validate(&https()).unwrap();
        let mut dev_none = none.clone();
        dev_none.dev_mode = true;
        assert!(refusal(&dev_none, &local()).contains("secure"));
    }

    #[test]
    fn a_full_file_reads_and_unknown_keys_are_refused() {
        let config = LaunchConfig::from_toml(
            r#"
            public_base_url = "https://visits.example.org"
            dev_mode = true
            patient_link_ttl_minutes = 60
            [ehr_client_secrets]
            EPIC_PROD = "s3cret"
            [microsoft]
            tenant_id = "t"
            client_id = "c"
            client_secret = "x"
            [microsoft.policy]
            lobby_scope = "organizer"
            [[writeback.sinks]]
            kind = "fhir-audit-event"
            mode = "client-assigned-id"
            [writeback.configurations.cfg-1]
            sinks = []
            "#,
        )
        .unwrap();
        let base = config.public_base(config.listen);
        config.validate(&base).unwrap();
        assert_eq!(config.patient_link_ttl_minutes, 60);
        assert_eq!(config.ehr_client_secrets["EPIC_PROD"].expose(), "s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(config.writeback.configurations["cfg-1"].sinks.is_empty());
        let err = LaunchConfig::from_toml("colour = \"blue\"").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn a_missing_entra_secret_names_the_variable() {
        let config = LaunchConfig::from_toml(
            "dev_mode = true\n[microsoft]\ntenant_id = \"t\"\nclient_id = \"c\"",
        )
        .unwrap();
        let err = refusal(&config, &local());
        assert!(
            err.contains("VISITBRIDGE_LAUNCH_ENTRA_CLIENT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn the_public_base_url_must_be_a_host_root() {
        let config = production("");
        for base in [
            "https://example.org/visits",
            "https://example.org/visits/",
            "https://example.org/a/b",
        ] {
            let err = refusal(&config, &Url::parse(base).unwrap());
            assert!(
                err.contains("must be the root of its host"),
                "{base}: {err}"
            );
        }
        for base in ["https://visits.example.org", "https://visits.example.org/"] {
            config.validate(&Url::parse(base).unwrap()).unwrap();
        }
        let from_file = LaunchConfig::from_toml(&format!(
            "public_base_url = \"https://example.org/visits\"\n{PRODUCTION}"
        ))
        .unwrap();
        let base = from_file.public_base(from_file.listen);
        assert!(refusal(&from_file, &base).contains("without a path"));
    }

    #[test]
    fn metrics_settings_are_checked() {
        // Top-level keys go before the file's sections.
        let top = |extra: &str| LaunchConfig::from_toml(&format!("{extra}\n{PRODUCTION}")).unwrap();
        let config = top(
            "metrics_listen = \"127.0.0.1:9464\"\nmetrics_bearer_token = \"0123456789abcdef0123456789abcdef\"",
        );
        config.validate(&https()).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert!(!format!("{config:?}").contains("0123456789abcdef0123456789abcdef"));
        let short = top("metrics_bearer_token = \"short\"");
        assert!(refusal(&short, &https()).contains("at least 32 characters"));
        let same = top("listen = \"0.0.0.0:8080\"\nmetrics_listen = \"0.0.0.0:8080\"");
        assert!(refusal(&same, &https()).contains("another address"));
        assert!(LaunchConfig::default().metrics_listen.is_none());
        assert!(LaunchConfig::default().metrics_bearer_token.is_empty());
    }

    #[test]
    fn ehr_client_secret_names_must_be_secret_refs() {
        let config = production("[ehr_client_secrets]\nepic-prod = \"s3cret\"");
        let err = refusal(&config, &https());
        assert!(err.contains("\"epic-prod\""), "{err}");
        assert!(err.contains("letters, digits or underscores"), "{err}");
        assert!(!err.contains("s3cret"));
        production("[ehr_client_secrets]\nEPIC_PROD = \"s3cret\"")
            .validate(&https())
            .unwrap();
    }
}
