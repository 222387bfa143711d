//! The simulated Microsoft cloud: Entra ID sign-in and tokens, Graph online meetings and
//! subscriptions, and a meeting room page per meeting whose actions send change notifications.

mod delivery;
mod entra;
mod graph;
mod rooms;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError},
    time::Duration,
};

use axum::{
    Router,
    response::Redirect,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use url::Url;
use visitbridge_http::{HttpConfig, Secret, build_client};

use crate::{SandboxError, Seed, keys::SigningKey, util};

pub use rooms::RoomRole;

pub(crate) use delivery::Delivery;
pub(crate) use rooms::Meeting;

/// The product name on the Microsoft pages.
pub(crate) const PRODUCT: &str = "VisitBridge sandbox Microsoft 365";
/// The sandbox directory's tenant id.
pub const SANDBOX_TENANT_ID: &str = "5b0c7f0e-2d1a-4e8b-9c3f-6a7d8e9f0a11";

/// How the simulated Microsoft cloud is set up.
#[derive(Debug, Clone)]
pub struct MsConfig {
    /// Where the router is served (an origin). The login host is this origin (tenant paths as at
    /// `login.microsoftonline.com`), Graph is `{origin}/graph`, meeting rooms `{origin}/rooms`.
    pub public_base: Url,
    /// The directory's tenant id.
    pub tenant_id: String,
    /// The directory's users.
    pub users: Vec<MsUser>,
    /// Which applications may sign users in and get tokens.
    pub apps: MsApps,
    /// Sign in as this user (object id or UPN) without showing the picker.
    pub auto_sign_in: Option<String>,
    /// A PKCS#8 PEM RSA key to sign id_tokens with; a fresh key is generated when `None`.
    pub signing_key_pem: Option<String>,
}

impl MsConfig {
    /// A demo configuration: the seed's clinicians and staff as users, any application accepted.
    pub fn new(public_base: Url) -> Self {
        Self {
            public_base,
            tenant_id: SANDBOX_TENANT_ID.to_owned(),
            users: MsUser::from_seed(&Seed::generate(Utc::now())),
            apps: MsApps::AcceptAny,
            auto_sign_in: None,
            signing_key_pem: None,
        }
    }
}

/// A user of the sandbox directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsUser {
    /// Object id (`oid`).
    pub object_id: String,
    /// UPN (`preferred_username`).
    pub upn: String,
    /// Display name (`name`).
    pub display_name: String,
    /// Whether an application access policy lets apps create meetings on the user's behalf;
    /// without it `createOrGet` answers Graph's 403.
    pub access_policy_granted: bool,
}

impl MsUser {
    /// The seed's clinicians and staff.
    pub fn from_seed(seed: &Seed) -> Vec<Self> {
        seed.clinicians
            .iter()
            .map(|c| Self {
                object_id: c.ms_object_id.clone(),
                upn: c.upn.clone(),
                display_name: format!("{} {}", c.given, c.family),
                access_policy_granted: true,
            })
            .chain(seed.staff.iter().map(|s| Self {
                object_id: s.ms_object_id.clone(),
                upn: s.upn.clone(),
                display_name: s.display_name.clone(),
                access_policy_granted: true,
            }))
            .collect()
    }
}

/// The applications registered in the directory.
#[derive(Debug, Clone)]
pub enum MsApps {
    /// Demo mode: any client id, any redirect URI, any (or no) credential, any client assertion
    /// without checking its signature. PKCE and single-use codes are still enforced. It protects
    /// nothing.
    AcceptAny,
    /// Only these registrations.
    Registered(Vec<AppRegistration>),
}

/// An app registration.
#[derive(Debug, Clone)]
pub struct AppRegistration {
    /// Application (client) id.
    pub client_id: String,
    /// Redirect URIs for sign-in, compared exactly.
    pub redirect_uris: Vec<Url>,
    /// Credentials; a token request must present one of them.
    pub credentials: Vec<AppCredential>,
}

/// An application credential.
#[derive(Debug, Clone)]
pub enum AppCredential {
    /// A client secret.
    Secret(Secret),
    /// A certificate, given by its public key (PEM `PUBLIC KEY`): client assertions (RS256, `aud`
    /// the token URL, `iss` = `sub` = client id) must verify with it. The `x5t` is not checked.
    CertificatePublicKeyPem(String),
}

/// A notification delivery attempt's outcome (for the room pages, logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// When delivery finished.
    pub at: DateTime<Utc>,
    /// The subscription notified.
    pub subscription_id: String,
    /// The meeting.
    pub meeting_id: String,
    /// `Microsoft.Communication.CallRosterUpdate`, `…CallStarted`, a lifecycle event, …
    pub event_type: String,
    /// The last HTTP status (none after a transport failure).
    pub status: Option<u16>,
    /// Tries made.
    pub attempts: u32,
    /// Whether it was accepted (2xx).
    pub delivered: bool,
}

/// A sign-in waiting for the user to pick who they are.
#[derive(Debug, Clone)]
pub(crate) struct PendingSignIn {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: Url,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) scope: String,
    pub(crate) code_challenge: String,
    pub(crate) login_hint: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
}

/// A sign-in code.
#[derive(Debug, Clone)]
pub(crate) struct EntraCode {
    pub(crate) sign_in: PendingSignIn,
    pub(crate) user: MsUser,
    pub(crate) created_at: DateTime<Utc>,
}

/// An access token for Graph.
#[derive(Debug, Clone)]
pub(crate) struct GraphToken {
    pub(crate) client_id: String,
    pub(crate) expires_at: DateTime<Utc>,
}

/// A Graph subscription.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) meeting_id: String,
    pub(crate) resource: String,
    pub(crate) notification_url: Url,
    pub(crate) lifecycle_url: Option<Url>,
    pub(crate) client_state: Option<Secret>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) value: Value,
}

/// No `Debug`: the maps are keyed by codes and tokens.
#[derive(Default)]
pub(crate) struct MsState {
    pub(crate) sign_ins: HashMap<String, PendingSignIn>,
    pub(crate) codes: HashMap<String, EntraCode>,
    pub(crate) tokens: HashMap<String, GraphToken>,
    pub(crate) meetings: Vec<Meeting>,
    pub(crate) subscriptions: Vec<Subscription>,
}

pub(crate) struct Ms {
    pub(crate) config: MsConfig,
    pub(crate) base: String,
    pub(crate) key: SigningKey,
    pub(crate) http: reqwest::Client,
    pub(crate) state: Mutex<MsState>,
    pub(crate) deliveries: Arc<Mutex<Vec<DeliveryRecord>>>,
    pub(crate) queue: OnceLock<UnboundedSender<Delivery>>,
}

/// The simulated Microsoft cloud. Cheap to clone; clones share state.
///
/// Serve [`SandboxMicrosoft::router`] at [`MsConfig::public_base`].
#[derive(Clone)]
pub struct SandboxMicrosoft {
    pub(crate) inner: Arc<Ms>,
}

impl std::fmt::Debug for SandboxMicrosoft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxMicrosoft")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl SandboxMicrosoft {
    /// A Microsoft cloud with no meetings yet.
    pub fn new(config: MsConfig) -> Result<Self, SandboxError> {
        if config.public_base.cannot_be_a_base() {
            return Err(SandboxError::Config(
                "the microsoft public base must be an http(s) url".into(),
            ));
        }
        if config.tenant_id.is_empty() || config.tenant_id.contains(['/', '?', '#']) {
            return Err(SandboxError::Config("invalid tenant id".into()));
        }
        let key = SigningKey::new("sandbox-entra", config.signing_key_pem.as_deref())?;
        // Graph gives a notification endpoint 10 seconds to answer its validation request.
        let http = build_client(&HttpConfig {
            total_timeout: Duration::from_secs(10),
            ..HttpConfig::default()
        })
        .map_err(|e| SandboxError::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Ms {
                base: util::trimmed(&config.public_base),
                config,
                key,
                http,
                state: Mutex::new(MsState::default()),
                deliveries: Arc::new(Mutex::new(Vec::new())),
                queue: OnceLock::new(),
            }),
        })
    }

    /// The routes: Entra ID under `/{tenant}/…`, Graph under `/graph/{v1.0|beta}/…`, meeting rooms
    /// under `/rooms` (see the crate docs).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/rooms") }))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(entra::openid_configuration),
            )
            .route("/{tenant}/oauth2/v2.0/authorize", get(entra::authorize))
            .route(
                "/{tenant}/oauth2/v2.0/authorize/continue",
                post(entra::authorize_continue),
            )
            .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
            .route("/{tenant}/discovery/v2.0/keys", get(entra::keys))
            .route("/discovery/v2.0/keys", get(entra::keys))
            .route(
                "/graph/{version}/users/{user}/onlineMeetings/createOrGet",
                post(graph::create_or_get),
            )
            .route(
                "/graph/{version}/users/{user}/onlineMeetings/{meeting}",
                get(graph::get_meeting).patch(graph::patch_meeting),
            )
            .route(
                "/graph/{version}/users/{user}/onlineMeetings/{meeting}/getVirtualAppointmentJoinWebUrl",
                get(graph::virtual_appointment_url),
            )
            .route(
                "/graph/{version}/users/{user}/onlineMeetings/{meeting}/attendanceReports",
                get(graph::list_reports),
            )
            .route(
                "/graph/{version}/users/{user}/onlineMeetings/{meeting}/attendanceReports/{report}",
                get(graph::get_report),
            )
            .route(
                "/graph/{version}/subscriptions",
                post(graph::create_subscription),
            )
            .route(
                "/graph/{version}/subscriptions/{id}",
                get(graph::get_subscription)
                    .patch(graph::renew_subscription)
                    .delete(graph::delete_subscription),
            )
            .route(
                "/graph/{version}/subscriptions/{id}/reauthorize",
                post(graph::reauthorize_subscription),
            )
            .route("/rooms", get(rooms::index))
            .route("/rooms/{meeting}", get(rooms::page))
            .route("/rooms/{meeting}/join", post(rooms::join_form))
            .route("/rooms/{meeting}/admit", post(rooms::admit_form))
            .route("/rooms/{meeting}/leave", post(rooms::leave_form))
            .fallback(graph::not_found)
            .with_state(self.clone())
    }

    /// The directory's tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.inner.config.tenant_id
    }

    /// The login host (`login_base` of `visitbridge_graph::EntraConfig`): the origin, with a
    /// trailing slash.
    pub fn login_base(&self) -> String {
        format!("{}/", self.inner.base)
    }

    /// `{ms}/{tenant}/v2.0`: the OpenID Connect issuer.
    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.inner.base, self.tenant_id())
    }

    /// `{ms}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.inner.base, self.tenant_id())
    }

    /// `{ms}/graph/`: the Graph root (`graph_base` of `visitbridge_graph::GraphConfig`).
    pub fn graph_base(&self) -> String {
        format!("{}/graph/", self.inner.base)
    }

    /// `{ms}/rooms`: the meeting room index.
    pub fn rooms_url(&self) -> String {
        format!("{}/rooms", self.inner.base)
    }

    /// `{ms}/rooms/{meeting id}`: a meeting's room (its `joinWebUrl`).
    pub fn room_url(&self, meeting_id: &str) -> String {
        format!("{}/rooms/{meeting_id}", self.inner.base)
    }

    /// The directory's users.
    pub fn users(&self) -> &[MsUser] {
        &self.inner.config.users
    }

    /// The meetings, as Graph would return them, oldest first.
    pub fn meetings(&self) -> Vec<Value> {
        self.lock()
            .meetings
            .iter()
            .map(|m| m.value.clone())
            .collect()
    }

    /// The live subscriptions, as Graph returned them (with their `clientState`).
    pub fn subscriptions(&self) -> Vec<Value> {
        self.lock()
            .subscriptions
            .iter()
            .map(|s| s.value.clone())
            .collect()
    }

    /// Notification deliveries so far, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, MsState> {
        // The state stays consistent per operation, so a panic elsewhere must not lock it away.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn user(&self, id_or_upn: &str) -> Option<&MsUser> {
        self.inner
            .config
            .users
            .iter()
            .find(|u| u.object_id == id_or_upn || u.upn.eq_ignore_ascii_case(id_or_upn))
    }

    /// Queues deliveries for the background worker (started on first use), in order.
    pub(crate) fn enqueue(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let queue = self.inner.queue.get_or_init(|| {
            delivery::spawn_worker(self.inner.http.clone(), self.inner.deliveries.clone())
        });
        for d in deliveries {
            if queue.send(d).is_err() {
                tracing::warn!(
                    "sandbox notification worker has stopped; a notification was dropped"
                );
            }
        }
    }
}
