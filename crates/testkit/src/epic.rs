//! A fake of Epic's Telehealth connection-status web service (`SetExternalConnectionStatus`).
//!
//! Video vendors call it when a participant connects or disconnects, so that the visit's status
//! shows in the clinician's schedule:
//!
//! `GET {interconnect-base}/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus`
//! with query parameters `ConferenceID`, `ExternalID`, `ExternalIDType`, `VendorName` and
//! `ConnectionStatus`, the header `Epic-Client-ID`, and a backend-services bearer token.
//!
//! The numeric codes and the answer body are in Epic's vendor guide only, so the fake checks that
//! every parameter is present and non-empty but not its value, and answers `200` with an empty JSON
//! object (a client must not depend on the body). Refusals: no bearer token (or not the one set
//! with [`EpicConnectionStatusFake::require_token`]) is `401` with a `WWW-Authenticate`
//! challenge, as Epic answers; a missing or wrong `Epic-Client-ID` is `403`; a missing parameter
//! is `400`. Knobs make it fail on purpose ([`EpicConnectionStatusFake::fail_next`],
//! [`EpicConnectionStatusFake::always_fail`]) or slow
//! ([`EpicConnectionStatusFake::set_delay`]). Every call is recorded with the status it got.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

use serde_json::json;
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

/// The service's path under the Interconnect base.
pub const CONNECTION_STATUS_PATH: &str =
    "/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus";
/// The Interconnect instance path [`EpicConnectionStatusFake::start`] mounts under (the shape of
/// Epic's sandbox, `https://fhir.epic.com/interconnect-fhir-oauth`).
pub const INTERCONNECT_PREFIX: &str = "/interconnect-fhir-oauth";
/// The query parameters the service needs.
pub const PARAMETERS: [&str; 5] = [
    "ConferenceID",
    "ExternalID",
    "ExternalIDType",
    "VendorName",
    "ConnectionStatus",
];

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatusCall {
    /// `ConferenceID`.
    pub conference_id: Option<String>,
    /// `ExternalID`.
    pub external_id: Option<String>,
    /// `ExternalIDType`.
    pub external_id_type: Option<String>,
    /// `VendorName`.
    pub vendor_name: Option<String>,
    /// `ConnectionStatus`.
    pub connection_status: Option<String>,
    /// The `Epic-Client-ID` header.
    pub client_id: Option<String>,
    /// The status the fake answered.
    pub status: u16,
}

impl ConnectionStatusCall {
    /// Whether the fake accepted the call (answered 200).
    pub fn accepted(&self) -> bool {
        self.status == 200
    }
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<ConnectionStatusCall>,
    fail_next: VecDeque<u16>,
    always_fail: Option<u16>,
    token: Option<String>,
    delay: Option<std::time::Duration>,
}

/// The connection-status service mounted on a server.
#[derive(Debug, Clone)]
pub struct EpicConnectionStatusFake {
    interconnect_base: String,
    client_id: String,
    state: Arc<Mutex<State>>,
}

impl EpicConnectionStatusFake {
    /// Starts a server of its own with the service under [`INTERCONNECT_PREFIX`], expecting
    /// `client_id` in `Epic-Client-ID`.
    pub async fn start(client_id: &str) -> (MockServer, EpicConnectionStatusFake) {
        let server = MockServer::start().await;
        let fake = Self::mount_on(&server, INTERCONNECT_PREFIX, client_id).await;
        (server, fake)
    }

    /// Mounts the service under `prefix` (the Interconnect instance path, e.g.
    /// [`INTERCONNECT_PREFIX`], or `""`) on `server`, expecting `client_id` in `Epic-Client-ID`.
    pub async fn mount_on(
        server: &MockServer,
        prefix: &str,
        client_id: &str,
    ) -> EpicConnectionStatusFake {
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("/{p}"),
        };
        let fake = EpicConnectionStatusFake {
            interconnect_base: format!("{}{prefix}", server.uri()),
            client_id: client_id.to_owned(),
            state: Arc::default(),
        };
        Mock::given(method("GET"))
            .and(path(format!("{prefix}{CONNECTION_STATUS_PATH}")))
            .respond_with(fake.clone())
            .mount(server)
            .await;
        fake
    }

    /// The Interconnect base URL to configure (no trailing slash).
    pub fn interconnect_base(&self) -> &str {
        &self.interconnect_base
    }

    /// Accepts only `token` as the bearer token from now on (by default any bearer token).
    pub fn require_token(&self, token: &str) {
        self.lock().token = Some(token.to_owned());
    }

    /// Answers the next `count` calls with `status` (e.g. 503, 500), then works again.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.lock()
            .fail_next
            .extend(std::iter::repeat_n(status, count));
    }

    /// Answers every call with `status` until [`Self::recover`].
    pub fn always_fail(&self, status: u16) {
        self.lock().always_fail = Some(status);
    }

    /// Answers every call after `delay` from now on (a slow EHR); the call is recorded when it
    /// arrives.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.lock().delay = Some(delay);
    }

    /// Stops failing on purpose.
    pub fn recover(&self) {
        let mut state = self.lock();
        state.always_fail = None;
        state.fail_next.clear();
    }

    /// Every call received, oldest first.
    pub fn calls(&self) -> Vec<ConnectionStatusCall> {
        self.lock().calls.clone()
    }

    /// The calls the fake accepted: what Epic would have recorded.
    pub fn accepted(&self) -> Vec<ConnectionStatusCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.accepted())
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn error_body(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "Message": message }))
}

impl Respond for EpicConnectionStatusFake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let bearer = header("authorization").and_then(|v| {
            (v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")).then(|| v[7..].to_owned())
        });
        let client_id = header("epic-client-id");
        let mut state = self.lock();
        let token_ok = match (&bearer, &state.token) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(got), Some(want)) => got == want,
        };
        let missing = PARAMETERS
            .iter()
            .find(|p| query(p).is_none_or(|v| v.is_empty()));
        let (status, response) = if !token_ok {
            (
                401,
                ResponseTemplate::new(401).insert_header(
                    "WWW-Authenticate",
                    r#"Bearer error="invalid_token", error_description="The access token provided is expired, revoked, malformed, or invalid for other reasons.""#,
                ),
            )
        } else if client_id.as_deref() != Some(self.client_id.as_str()) {
            (
                403,
                error_body(403, "Epic-Client-ID is missing or not authorized"),
            )
        } else if let Some(name) = missing {
            (400, error_body(400, &format!("{name} is required")))
        } else if let Some(status) = state.always_fail.or_else(|| state.fail_next.pop_front()) {
            (status, error_body(status, "the service is unavailable"))
        } else {
            (200, ResponseTemplate::new(200).set_body_json(json!({})))
        };
        state.calls.push(ConnectionStatusCall {
            conference_id: query("ConferenceID"),
            external_id: query("ExternalID"),
            external_id_type: query("ExternalIDType"),
            vendor_name: query("VendorName"),
            connection_status: query("ConnectionStatus"),
            client_id,
            status,
        });
        match state.delay {
            Some(delay) => response.set_delay(delay),
            None => response,
        }
    }
}
