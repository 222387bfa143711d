//! The simulated EHR: an Epic-shaped SMART on FHIR server with a schedule page.

mod fhir;
mod oauth;
mod pages;
mod resources;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    Router,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;
use url::Url;
use visitbridge_http::{HttpConfig, Secret, build_client};

use crate::{SandboxError, Seed, keys::SigningKey, util};

/// The product name on the EHR's pages.
pub(crate) const PRODUCT: &str = "VisitBridge sandbox EHR";
/// The FHIR base path, after the EHR's origin (the SMART `iss` is `{ehr}{FHIR_PATH}`).
pub const FHIR_PATH: &str = "/api/FHIR/R4";
/// Epic's Telehealth connection-status web service, after the EHR's origin.
pub const CONNECTION_STATUS_PATH: &str =
    "/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus";
/// How long a launch created by the schedule page stays usable.
const LAUNCH_LIFETIME: Duration = Duration::from_secs(600);

/// How the simulated EHR is set up.
#[derive(Debug, Clone)]
pub struct EhrConfig {
    /// Where the EHR's router is served (an origin such as `http://127.0.0.1:8081`); every URL it
    /// publishes is under it.
    pub public_base: Url,
    /// The launch service's base URL: the schedule's buttons open `{base}/launch/provider` and
    /// `{base}/launch/patient`.
    pub launch_service_base: Url,
    /// Which clients may use the authorization server.
    pub clients: EhrClients,
    /// Skip the "Signed in as … — Continue" page of EHR launches (automated end-to-end runs).
    pub auto_approve_launches: bool,
    /// Parameters added to every launch URL after the context tokens (default
    /// `environment=test`, as VisitBridge's integration records ask for).
    pub launch_params: Vec<(String, String)>,
    /// A PKCS#8 PEM RSA key to sign id_tokens with; a fresh key is generated when `None`.
    pub signing_key_pem: Option<String>,
}

impl EhrConfig {
    /// A demo configuration: any client is accepted (see [`EhrClients::AcceptAny`]).
    pub fn new(public_base: Url, launch_service_base: Url) -> Self {
        Self {
            public_base,
            launch_service_base,
            clients: EhrClients::AcceptAny,
            auto_approve_launches: false,
            launch_params: vec![("environment".to_owned(), "test".to_owned())],
            signing_key_pem: None,
        }
    }
}

/// The clients the authorization server knows.
#[derive(Debug, Clone)]
pub enum EhrClients {
    /// Demo mode: any `client_id`, any `redirect_uri`, and any (or no) client authentication,
    /// including any `client_assertion` without checking its signature. PKCE, single-use codes and
    /// the `redirect_uri` match between authorize and token are still enforced. Never point
    /// anything real at a sandbox in this mode: it protects nothing.
    AcceptAny,
    /// Only these registrations.
    Registered(Vec<ClientRegistration>),
}

/// A client registration, as an EHR analyst would enter it.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    /// The client id.
    pub client_id: String,
    /// The redirect URIs, compared exactly.
    pub redirect_uris: Vec<Url>,
    /// How the client may authenticate at the token endpoint; none means a public client.
    pub credentials: Vec<ClientCredential>,
}

impl ClientRegistration {
    /// A public client (no credential) with these redirect URIs.
    pub fn new(client_id: impl Into<String>, redirect_uris: Vec<Url>) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uris,
            credentials: Vec::new(),
        }
    }

    /// Adds a client secret (`client_secret_basic` or `client_secret_post`).
    pub fn with_secret(mut self, secret: Secret) -> Self {
        self.credentials.push(ClientCredential::Secret(secret));
        self
    }

    /// Adds a JWKS URL to verify `private_key_jwt` assertions with (fetched at each use).
    pub fn with_jwks_url(mut self, url: Url) -> Self {
        self.credentials.push(ClientCredential::JwksUrl(url));
        self
    }

    /// Adds public keys to verify `private_key_jwt` assertions with.
    pub fn with_jwks(mut self, jwks: JwkSet) -> Self {
        self.credentials.push(ClientCredential::Jwks(jwks));
        self
    }
}

/// One way a client may authenticate.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// A shared secret.
    Secret(Secret),
    /// `private_key_jwt`, keys at this JWKS URL (as Epic requires of backend apps).
    JwksUrl(Url),
    /// `private_key_jwt`, these keys.
    Jwks(JwkSet),
}

/// Who a schedule button launches as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchRole {
    /// The visit's clinician, from Hyperspace: `{launch service}/launch/provider`.
    Clinician,
    /// The visit's patient, from MyChart: `{launch service}/launch/patient`.
    Patient,
}

/// A call to the connection-status web service, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatusCall {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// The calling client (from its token and `Epic-Client-ID`).
    pub client_id: String,
    /// `ConferenceID` (the visit's CSN).
    pub conference_id: String,
    /// `ExternalID`.
    pub external_id: String,
    /// `ExternalIDType`.
    pub external_id_type: String,
    /// `VendorName`.
    pub vendor_name: String,
    /// `ConnectionStatus`.
    pub connection_status: String,
}

/// An EHR user: a clinician or a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EhrUserRef {
    Practitioner(String),
    Patient(String),
}

impl EhrUserRef {
    pub(crate) fn resource_type(&self) -> &'static str {
        match self {
            Self::Practitioner(_) => "Practitioner",
            Self::Patient(_) => "Patient",
        }
    }

    pub(crate) fn id(&self) -> &str {
        match self {
            Self::Practitioner(id) | Self::Patient(id) => id,
        }
    }
}

/// A launch made by the schedule page, waiting for the authorization request that names it.
#[derive(Debug, Clone)]
pub(crate) struct LaunchRecord {
    pub(crate) user: EhrUserRef,
    pub(crate) appointment_id: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) used: bool,
}

/// An authorization request that passed its checks and waits for the user's click.
#[derive(Debug, Clone)]
pub(crate) struct PendingAuthorization {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: Url,
    pub(crate) state: String,
    pub(crate) scope: String,
    pub(crate) code_challenge: String,
    pub(crate) nonce: Option<String>,
    /// The launch token of an EHR launch; `None` for a standalone launch.
    pub(crate) launch: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
}

/// An authorization code. No `Debug`: it lists the access tokens the code bought.
#[derive(Clone)]
pub(crate) struct IssuedCode {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: String,
    pub(crate) scope: String,
    pub(crate) code_challenge: String,
    pub(crate) nonce: Option<String>,
    pub(crate) user: EhrUserRef,
    pub(crate) appointment_id: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) used: bool,
    /// Access tokens issued for it (revoked if the code is replayed).
    pub(crate) tokens: Vec<String>,
}

/// An access token.
#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    /// Set for a patient's own token: reads are limited to that patient's records.
    pub(crate) patient_only: Option<String>,
    pub(crate) expires_at: DateTime<Utc>,
}

/// No `Debug`: the maps are keyed by codes and tokens.
#[derive(Default)]
pub(crate) struct EhrState {
    pub(crate) launches: HashMap<String, LaunchRecord>,
    pub(crate) authorizations: HashMap<String, PendingAuthorization>,
    pub(crate) codes: HashMap<String, IssuedCode>,
    pub(crate) tokens: HashMap<String, AccessToken>,
    pub(crate) seen_jtis: HashSet<String>,
    pub(crate) audit_events: Vec<Value>,
    pub(crate) communications: Vec<Value>,
    pub(crate) connection_statuses: Vec<ConnectionStatusCall>,
    pub(crate) next_id: u64,
}

pub(crate) struct Ehr {
    pub(crate) config: EhrConfig,
    pub(crate) base: String,
    pub(crate) seed: Seed,
    pub(crate) resources: resources::Resources,
    pub(crate) key: SigningKey,
    pub(crate) http: reqwest::Client,
    pub(crate) state: Mutex<EhrState>,
}

/// The simulated EHR. Cheap to clone; clones share state.
///
/// Serve [`SandboxEhr::router`] at [`EhrConfig::public_base`]. Everything lives in memory and is
/// lost when the last clone is dropped.
#[derive(Clone)]
pub struct SandboxEhr {
    pub(crate) inner: Arc<Ehr>,
}

impl std::fmt::Debug for SandboxEhr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEhr")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl SandboxEhr {
    /// An EHR seeded with today's visits (as of now).
    pub fn new(config: EhrConfig) -> Result<Self, SandboxError> {
        Self::with_seed(config, Seed::generate(Utc::now()))
    }

    /// An EHR with the given world.
    pub fn with_seed(config: EhrConfig, seed: Seed) -> Result<Self, SandboxError> {
        if config.public_base.cannot_be_a_base() {
            return Err(SandboxError::Config(
                "the ehr public base must be an http(s) url".into(),
            ));
        }
        let key = SigningKey::new("sandbox-ehr", config.signing_key_pem.as_deref())?;
        let http = build_client(&HttpConfig {
            total_timeout: Duration::from_secs(10),
            ..HttpConfig::default()
        })
        .map_err(|e| SandboxError::Config(e.to_string()))?;
        let base = util::trimmed(&config.public_base);
        let resources = resources::Resources::build(&seed);
        Ok(Self {
            inner: Arc::new(Ehr {
                base,
                config,
                seed,
                resources,
                key,
                http,
                state: Mutex::new(EhrState::default()),
            }),
        })
    }

    /// The routes: pages, SMART, FHIR and the connection-status service (see the crate docs).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(pages::schedule))
            .route("/schedule/launch", post(pages::launch))
            .route("/audit", get(pages::audit))
            .route(
                "/oauth2/authorize",
                get(oauth::authorize_get).post(oauth::authorize_post),
            )
            .route(
                "/oauth2/authorize/continue",
                post(oauth::authorize_continue),
            )
            .route("/oauth2/token", post(oauth::token))
            .route("/oauth2/jwks", get(oauth::jwks))
            .route(
                "/api/FHIR/R4/.well-known/smart-configuration",
                get(oauth::smart_configuration),
            )
            .route("/api/FHIR/R4/metadata", get(fhir::metadata))
            .route(
                "/api/FHIR/R4/{resource_type}",
                get(fhir::search).post(fhir::create),
            )
            .route(
                "/api/FHIR/R4/{resource_type}/{id}",
                get(fhir::read).put(fhir::update),
            )
            .route(
                CONNECTION_STATUS_PATH,
                get(fhir::connection_status).post(fhir::connection_status),
            )
            .route("/api/epic/2019/smart/style.json", get(oauth::style))
            .with_state(self.clone())
    }

    /// The world the EHR serves.
    pub fn seed(&self) -> &Seed {
        &self.inner.seed
    }

    /// `{ehr}/api/FHIR/R4`: the FHIR base URL and SMART `iss`.
    pub fn fhir_base_url(&self) -> String {
        format!("{}{FHIR_PATH}", self.inner.base)
    }

    /// `{ehr}/oauth2`: the id_token issuer.
    pub fn issuer(&self) -> String {
        format!("{}/oauth2", self.inner.base)
    }

    /// `{ehr}/oauth2/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.inner.base)
    }

    /// `{ehr}/oauth2/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth2/authorize", self.inner.base)
    }

    /// `{ehr}/` : the schedule page.
    pub fn schedule_url(&self) -> String {
        format!("{}/", self.inner.base)
    }

    /// `{ehr}/audit`: what write-back delivered.
    pub fn audit_url(&self) -> String {
        format!("{}/audit", self.inner.base)
    }

    /// `{ehr}/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus`.
    pub fn connection_status_url(&self) -> String {
        format!("{}{CONNECTION_STATUS_PATH}", self.inner.base)
    }

    /// Creates a one-time launch for a visit, as the schedule's buttons do, and returns the URL
    /// the EHR would open: `{launch service}/launch/provider` (or `/launch/patient`) with `iss`,
    /// `launch`, `sessionId` (the CSN), `departmentId` and [`EhrConfig::launch_params`].
    pub fn create_launch(
        &self,
        appointment_id: &str,
        role: LaunchRole,
    ) -> Result<Url, SandboxError> {
        let visit = self
            .inner
            .seed
            .visit(appointment_id)
            .ok_or_else(|| SandboxError::UnknownVisit(appointment_id.to_owned()))?;
        let (user, path) = match role {
            LaunchRole::Clinician => (
                EhrUserRef::Practitioner(visit.practitioner_id.clone()),
                "/launch/provider",
            ),
            LaunchRole::Patient => (
                EhrUserRef::Patient(visit.patient_id.clone()),
                "/launch/patient",
            ),
        };
        let token = util::random_token(24)?;
        let now = Utc::now();
        {
            let mut state = self.lock();
            state
                .launches
                .retain(|_, l| now - l.created_at < chrono::Duration::hours(1));
            state.launches.insert(
                token.clone(),
                LaunchRecord {
                    user,
                    appointment_id: visit.appointment_id.clone(),
                    created_at: now,
                    used: false,
                },
            );
        }
        let base = util::trimmed(&self.inner.config.launch_service_base);
        let mut url = Url::parse(&format!("{base}{path}"))
            .map_err(|e| SandboxError::Config(format!("launch service base: {e}")))?;
        url.query_pairs_mut()
            .append_pair("iss", &self.fhir_base_url())
            .append_pair("launch", &token)
            .append_pair("sessionId", &visit.csn)
            .append_pair("departmentId", &self.inner.seed.department.department_id)
            .extend_pairs(&self.inner.config.launch_params);
        Ok(url)
    }

    /// The AuditEvents received (created or put), oldest first, each with its id.
    pub fn audit_events(&self) -> Vec<Value> {
        self.lock().audit_events.clone()
    }

    /// The Communications received, oldest first.
    pub fn communications(&self) -> Vec<Value> {
        self.lock().communications.clone()
    }

    /// The connection-status calls received, oldest first.
    pub fn connection_statuses(&self) -> Vec<ConnectionStatusCall> {
        self.lock().connection_statuses.clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, EhrState> {
        // The state stays consistent per operation, so a panic elsewhere must not lock it away.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_launch_live(launch: &LaunchRecord) -> bool {
        !launch.used
            && Utc::now() - launch.created_at
                < chrono::Duration::from_std(LAUNCH_LIFETIME).unwrap_or_default()
    }
}
