//! A SMART App Launch authorization server on a [`MockServer`], laid out and shaped like Epic's.
//!
//! [`SmartFake::mount`] adds, under Epic's paths on the server you pass in:
//!
//! - `GET {fhir base}/.well-known/smart-configuration`: the `epic-smart-configuration.json`
//!   fixture with its URLs pointing at the mock server;
//! - `GET|POST {oauth}/authorize`: checks the authorization request (response type, client id,
//!   redirect URI, state, `aud` = FHIR base, PKCE `S256`) and answers `302` to the redirect URI
//!   with a fresh single-use `code` and the `state`, as the EHR does once the user has signed in;
//! - `POST {oauth}/token`: checks the grant (a known, unused code whose PKCE challenge matches
//!   `code_verifier`, the same redirect URI) and the client authentication you configured, and
//!   answers the `epic-token-response.json` shape with a real RS256 id_token signed with
//!   [`keys::EHR_SIGNING_RSA`] and carrying the nonce
//!   of the authorization request; client-credentials grants get a backend-services token;
//! - `GET {jwks path}`: the public signing key as a JWKS.
//!
//! Because the fake plays the authorization endpoint too, it learns the nonce and PKCE challenge
//! the way the real server does: drive it like a browser with [`SmartFake::browser_get`] or
//! [`SmartFake::browser_post`], which return the callback URL carrying `code` and `state`.
//!
//! Only exact paths are mounted (no catch-all), so the FHIR fake can share the server. The
//! `metadata` fallback is mounted only on request ([`SmartFake::mount_metadata_fallback`]), since
//! the FHIR fake may serve `{fhir base}/metadata` itself.
//!
//! Knobs (settable at any time, read per request) produce the error cases: OAuth error JSON,
//! PKCE methods without `S256`, one 429 with `Retry-After` before the real answer, delays for
//! timeouts, malformed JSON, and forged or wrong id_tokens ([`IdTokenFault`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::Jwk};
use serde_json::{Map, Value, json};
use url::Url;
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

use crate::fixtures::{self, keys};

/// Epic's FHIR R4 base path; the SMART `iss` is `{server}{FHIR_BASE_PATH}`.
pub const FHIR_BASE_PATH: &str = "/interconnect-fhir-oauth/api/FHIR/R4";
/// Epic's OAuth 2.0 base path (the id_token issuer is `{server}{OAUTH_PATH}`).
pub const OAUTH_PATH: &str = "/interconnect-fhir-oauth/oauth2";
/// Epic's path for the issuer's id_token signing keys.
pub const JWKS_PATH: &str =
    "/interconnect-fhir-oauth/api/epic/2019/Security/Open/PublicKeys/530027/OIDC";
/// The `kid` of the fake's signing key (until [`SmartFake::set_signing_kid`] rotates it).
pub const SIGNING_KID: &str = "ehr-signing-2026";
/// The FHIR id of the practitioner who "signs in" (the id_token's `sub`, as in the fixture).
pub const PRACTITIONER_ID: &str = "eM5CWtq15N0WJeuCet5bJlQ3";

/// How the token endpoint expects our client to authenticate.
#[derive(Debug, Clone)]
pub enum ExpectedClientAuth {
    /// Accept any (or no) client authentication.
    Any,
    /// `client_secret_basic` with these credentials.
    SecretBasic {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: String,
    },
    /// `client_secret_post` with these credentials.
    SecretPost {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: String,
    },
    /// `private_key_jwt`: the assertion must verify with `public_key_pem` (RS384 or ES384), name
    /// `client_id` as `iss` and `sub` and the token URL as `aud`, carry `kid`, expire within five
    /// minutes and use a `jti` not seen before.
    PrivateKeyJwt {
        /// The client id.
        client_id: String,
        /// The public key (PEM) the assertion must verify with.
        public_key_pem: String,
        /// The algorithm the assertion must use.
        algorithm: Algorithm,
        /// The `kid` the assertion header must carry.
        kid: String,
    },
}

/// Ways to spoil the id_token of the next code exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFault {
    /// Signed with [`keys::ATTACKER_RSA`] under the real `kid`.
    SignedByAttacker,
    /// `aud` is another client.
    WrongAudience,
    /// Expired ten minutes ago.
    Expired,
    /// A nonce other than the one of the authorization request.
    WrongNonce,
    /// Another issuer.
    WrongIssuer,
    /// Signed with the real key under a `kid` the JWKS does not list.
    UnknownKid,
    /// No id_token in the token response.
    Missing,
}

/// A token request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedTokenRequest {
    /// The form fields.
    pub form: BTreeMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    state: String,
    used: bool,
}

struct State {
    uri: String,
    expected_auth: ExpectedClientAuth,
    code_challenge_methods: Vec<String>,
    well_known_available: bool,
    discovery_throttle: Option<u64>,
    discovery_delay: Option<Duration>,
    token_throttle: Option<u64>,
    token_error: Option<(u16, Value)>,
    token_delay: Option<Duration>,
    token_malformed: bool,
    id_token_fault: Option<IdTokenFault>,
    /// The id_token's `fhirUser`, relative to the FHIR base (`Some("Patient/x")`), when not the
    /// practitioner.
    fhir_user_override: Option<Option<String>>,
    signing_kid: String,
    context: Map<String, Value>,
    backend_expires_in: u64,
    codes: HashMap<String, Grant>,
    seen_jtis: HashSet<String>,
    token_requests: Vec<RecordedTokenRequest>,
    authorize_requests: Vec<BTreeMap<String, String>>,
    discovery_requests: usize,
    metadata_requests: usize,
    jwks_requests: usize,
}

impl State {
    fn fhir_base(&self) -> String {
        format!("{}{FHIR_BASE_PATH}", self.uri)
    }
    fn issuer(&self) -> String {
        format!("{}{OAUTH_PATH}", self.uri)
    }
    fn token_url(&self) -> String {
        format!("{}{OAUTH_PATH}/token", self.uri)
    }
}

/// A SMART authorization server mounted on a [`MockServer`]; clone-cheap handle to its knobs and
/// its record of requests.
#[derive(Clone)]
pub struct SmartFake {
    uri: String,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SmartFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartFake").field("uri", &self.uri).finish()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not hide the fake's state from the others.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SmartFake {
    /// Mounts discovery, authorize, token and JWKS on `server`, expecting `auth` at the token
    /// endpoint.
    pub async fn mount(server: &MockServer, auth: ExpectedClientAuth) -> Self {
        let fixture: Map<String, Value> =
            serde_json::from_str(fixtures::EPIC_TOKEN_RESPONSE).expect("token response fixture"); // allow-unwrap: test setup
        let context = fixture
            .into_iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "access_token" | "token_type" | "expires_in" | "scope" | "id_token" | "state"
                )
            })
            .collect();
        let fake = Self {
            uri: server.uri(),
            state: Arc::new(Mutex::new(State {
                uri: server.uri(),
                expected_auth: auth,
                code_challenge_methods: vec!["S256".to_owned()],
                well_known_available: true,
                discovery_throttle: None,
                discovery_delay: None,
                token_throttle: None,
                token_error: None,
                token_delay: None,
                token_malformed: false,
                id_token_fault: None,
                fhir_user_override: None,
                signing_kid: SIGNING_KID.to_owned(),
                context,
                backend_expires_in: 3600,
                codes: HashMap::new(),
                seen_jtis: HashSet::new(),
                token_requests: Vec::new(),
                authorize_requests: Vec::new(),
                discovery_requests: 0,
                metadata_requests: 0,
                jwks_requests: 0,
            })),
        };
        let well_known = format!("{FHIR_BASE_PATH}/.well-known/smart-configuration");
        Mock::given(method("GET"))
            .and(path(well_known))
            .respond_with(Responder(fake.state.clone(), Endpoint::Discovery))
            .mount(server)
            .await;
        for verb in ["GET", "POST"] {
            Mock::given(method(verb))
                .and(path(format!("{OAUTH_PATH}/authorize")))
                .respond_with(Responder(fake.state.clone(), Endpoint::Authorize))
                .mount(server)
                .await;
        }
        Mock::given(method("POST"))
            .and(path(format!("{OAUTH_PATH}/token")))
            .respond_with(Responder(fake.state.clone(), Endpoint::Token))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(Responder(fake.state.clone(), Endpoint::Jwks))
            .mount(server)
            .await;
        fake
    }

    /// Makes `smart-configuration` answer 404 and serves a CapabilityStatement with the
    /// `oauth-uris` extension at `{fhir base}/metadata` instead (a SMART 1.0 server).
    pub async fn mount_metadata_fallback(&self, server: &MockServer) {
        lock(&self.state).well_known_available = false;
        Mock::given(method("GET"))
            .and(path(format!("{FHIR_BASE_PATH}/metadata")))
            .respond_with(Responder(self.state.clone(), Endpoint::Metadata))
            .mount(server)
            .await;
    }

    /// The FHIR base URL: the `iss` of launches.
    pub fn fhir_base(&self) -> String {
        format!("{}{FHIR_BASE_PATH}", self.uri)
    }

    /// The OAuth server base, which is the id_token issuer.
    pub fn issuer(&self) -> String {
        format!("{}{OAUTH_PATH}", self.uri)
    }

    /// The authorization endpoint.
    pub fn authorize_url(&self) -> String {
        format!("{}{OAUTH_PATH}/authorize", self.uri)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}{OAUTH_PATH}/token", self.uri)
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.uri)
    }

    /// The `fhirUser` of the id_tokens: the practitioner's absolute URL.
    pub fn fhir_user(&self) -> String {
        format!("{}/Practitioner/{PRACTITIONER_ID}", self.fhir_base())
    }

    /// Sets the PKCE methods discovery advertises (default `["S256"]`).
    pub fn set_code_challenge_methods(&self, methods: &[&str]) {
        lock(&self.state).code_challenge_methods =
            methods.iter().map(|m| (*m).to_owned()).collect();
    }

    /// The next discovery request gets `429` with `Retry-After: {seconds}`; later ones succeed.
    pub fn throttle_discovery_once(&self, retry_after_seconds: u64) {
        lock(&self.state).discovery_throttle = Some(retry_after_seconds);
    }

    /// Delays every discovery answer (for timeouts).
    pub fn set_discovery_delay(&self, delay: Option<Duration>) {
        lock(&self.state).discovery_delay = delay;
    }

    /// The next token request gets `429` with `Retry-After: {seconds}`; later ones succeed.
    pub fn throttle_token_once(&self, retry_after_seconds: u64) {
        lock(&self.state).token_throttle = Some(retry_after_seconds);
    }

    /// Every token request gets `status` and
    /// `{"error": error, "error_description": description}`, until cleared with `None`.
    pub fn set_token_error(&self, error: Option<(u16, &str, &str)>) {
        lock(&self.state).token_error = error.map(|(status, error, description)| {
            (
                status,
                json!({ "error": error, "error_description": description }),
            )
        });
    }

    /// Delays every token answer (for timeouts).
    pub fn set_token_delay(&self, delay: Option<Duration>) {
        lock(&self.state).token_delay = delay;
    }

    /// Token answers are `200` with a body that is not JSON.
    pub fn set_token_malformed(&self, malformed: bool) {
        lock(&self.state).token_malformed = malformed;
    }

    /// Spoils the id_token of the following code exchanges (`None`: valid again).
    pub fn set_id_token_fault(&self, fault: Option<IdTokenFault>) {
        lock(&self.state).id_token_fault = fault;
    }

    /// The `fhirUser` of the following id_tokens: `Some(reference)` relative to the FHIR base
    /// (e.g. `"Patient/erXuFYUfucBZaryVksYEcMg3"`, a patient's login), `None` for no `fhirUser`
    /// claim at all. [`SmartFake::reset_fhir_user`] goes back to the practitioner.
    pub fn set_fhir_user(&self, reference: Option<&str>) {
        lock(&self.state).fhir_user_override = Some(reference.map(str::to_owned));
    }

    /// The following id_tokens name the practitioner again (the default).
    pub fn reset_fhir_user(&self) {
        lock(&self.state).fhir_user_override = None;
    }

    /// Rotates the signing key's `kid` (in the JWKS and in new id_tokens).
    pub fn set_signing_kid(&self, kid: &str) {
        lock(&self.state).signing_kid = kid.to_owned();
    }

    /// Replaces the launch context fields of the token response (default: the fixture's
    /// `patient`, `encounter`, `appointment`, `location`, `loginDepartment`, ...).
    pub fn set_launch_context(&self, context: Value) {
        if let Value::Object(map) = context {
            lock(&self.state).context = map;
        }
    }

    /// `expires_in` of backend-services tokens (default 3600).
    pub fn set_backend_expires_in(&self, seconds: u64) {
        lock(&self.state).backend_expires_in = seconds;
    }

    /// The token requests received, in order.
    pub fn token_requests(&self) -> Vec<RecordedTokenRequest> {
        lock(&self.state).token_requests.clone()
    }

    /// The parameters of the authorization requests received, in order.
    pub fn authorize_requests(&self) -> Vec<BTreeMap<String, String>> {
        lock(&self.state).authorize_requests.clone()
    }

    /// How many `smart-configuration` requests were received.
    pub fn discovery_requests(&self) -> usize {
        lock(&self.state).discovery_requests
    }

    /// How many `metadata` requests were received.
    pub fn metadata_requests(&self) -> usize {
        lock(&self.state).metadata_requests
    }

    /// How many JWKS requests were received.
    pub fn jwks_requests(&self) -> usize {
        lock(&self.state).jwks_requests
    }

    /// Plays the browser for a GET authorization request: returns the callback URL the fake
    /// redirected to (with `code` and `state`), or panics if it did not redirect.
    pub async fn browser_get(&self, authorize_url: &str) -> Url {
        let response = browser()
            .get(authorize_url)
            .send()
            .await
            .expect("authorize request"); // allow-unwrap: test setup
        redirect_target(response).await
    }

    /// Plays the browser for a POST authorization request (an auto-submitted form).
    pub async fn browser_post(&self, action: &str, fields: &[(String, String)]) -> Url {
        let response = browser()
            .post(action)
            .form(fields)
            .send()
            .await
            .expect("authorize request"); // allow-unwrap: test setup
        redirect_target(response).await
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser client") // allow-unwrap: test setup
}

async fn redirect_target(response: reqwest::Response) -> Url {
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(location) if status.is_redirection() => {
            Url::parse(&location).expect("callback url") // allow-unwrap: test setup
        }
        _ => {
            let body = response.text().await.unwrap_or_default();
            panic!("the authorization endpoint refused the request ({status}): {body}");
        }
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Discovery,
    Metadata,
    Authorize,
    Token,
    Jwks,
}

struct Responder(Arc<Mutex<State>>, Endpoint);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = lock(&self.0);
        match self.1 {
            Endpoint::Discovery => discovery(&mut state),
            Endpoint::Metadata => metadata(&mut state),
            Endpoint::Authorize => authorize(&mut state, request),
            Endpoint::Token => token(&mut state, request),
            Endpoint::Jwks => jwks(&mut state),
        }
    }
}

fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(
        body.to_string().into_bytes(),
        "application/json;charset=UTF-8",
    )
}

fn oauth_error(status: u16, error: &str, description: &str) -> ResponseTemplate {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn discovery(state: &mut State) -> ResponseTemplate {
    state.discovery_requests += 1;
    if let Some(seconds) = state.discovery_throttle.take() {
        return ResponseTemplate::new(429).insert_header("Retry-After", seconds.to_string());
    }
    if !state.well_known_available {
        return ResponseTemplate::new(404);
    }
    let mut config: Map<String, Value> = serde_json::from_str(fixtures::EPIC_SMART_CONFIGURATION)
        .expect("smart configuration fixture"); // allow-unwrap: test setup
    let issuer = state.issuer();
    config.insert("issuer".into(), json!(issuer));
    config.insert(
        "authorization_endpoint".into(),
        json!(format!("{issuer}/authorize")),
    );
    config.insert("token_endpoint".into(), json!(state.token_url()));
    config.insert(
        "jwks_uri".into(),
        json!(format!("{}{JWKS_PATH}", state.uri)),
    );
    if state.code_challenge_methods.is_empty() {
        config.remove("code_challenge_methods_supported");
    } else {
        config.insert(
            "code_challenge_methods_supported".into(),
            json!(state.code_challenge_methods),
        );
    }
    let mut response = json_response(200, &Value::Object(config));
    if let Some(delay) = state.discovery_delay {
        response = response.set_delay(delay);
    }
    response
}

fn metadata(state: &mut State) -> ResponseTemplate {
    state.metadata_requests += 1;
    let issuer = state.issuer();
    let statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        { "url": "authorize", "valueUri": format!("{issuer}/authorize") },
                        { "url": "token", "valueUri": state.token_url() }
                    ]
                }],
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"
                }]}]
            }
        }]
    });
    ResponseTemplate::new(200)
        .set_body_raw(statement.to_string().into_bytes(), "application/fhir+json")
}

fn params_of(request: &Request) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if request.method.as_str() == "POST" {
        params.extend(
            url::form_urlencoded::parse(&request.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    params
}

fn random_code() -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).expect("random"); // allow-unwrap: test setup
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn authorize(state: &mut State, request: &Request) -> ResponseTemplate {
    let params = params_of(request);
    state.authorize_requests.push(params.clone());
    let get = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
    let refuse =
        |why: &str| ResponseTemplate::new(400).set_body_string(format!("authorize refused: {why}"));
    if get("response_type") != "code" {
        return refuse("response_type must be code");
    }
    if get("client_id").is_empty() || get("state").is_empty() || get("scope").is_empty() {
        return refuse("client_id, state and scope are required");
    }
    let Ok(redirect) = Url::parse(get("redirect_uri")) else {
        return refuse("redirect_uri is not a url");
    };
    // Epic refuses an `aud` that is not its FHIR base.
    if get("aud").trim_end_matches('/') != state.fhir_base() {
        return refuse("aud is not this server's fhir base");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
        return refuse("pkce s256 is required");
    }
    let code = random_code();
    state.codes.insert(
        code.clone(),
        Grant {
            client_id: get("client_id").to_owned(),
            redirect_uri: get("redirect_uri").to_owned(),
            code_challenge: get("code_challenge").to_owned(),
            nonce: params.get("nonce").cloned(),
            state: get("state").to_owned(),
            used: false,
        },
    );
    let mut target = redirect;
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", get("state"));
    ResponseTemplate::new(302).insert_header("Location", target.as_str())
}

fn token(state: &mut State, request: &Request) -> ResponseTemplate {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let authorization = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.token_requests.push(RecordedTokenRequest {
        form: form.clone(),
        authorization: authorization.clone(),
    });
    let mut response = token_answer(state, &form, authorization.as_deref());
    if let Some(delay) = state.token_delay {
        response = response.set_delay(delay);
    }
    response
}

fn token_answer(
    state: &mut State,
    form: &BTreeMap<String, String>,
    authorization: Option<&str>,
) -> ResponseTemplate {
    if let Some(seconds) = state.token_throttle.take() {
        return ResponseTemplate::new(429).insert_header("Retry-After", seconds.to_string());
    }
    if let Some((status, body)) = &state.token_error {
        return json_response(*status, body);
    }
    if state.token_malformed {
        return ResponseTemplate::new(200)
            .set_body_raw(b"{\"access_token\": ".to_vec(), "application/json");
    }
    let client_id = match check_client(state, form, authorization) {
        Ok(client_id) => client_id,
        Err(why) => return oauth_error(401, "invalid_client", &why),
    };
    let get = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    match get("grant_type") {
        "authorization_code" => {
            let Some(grant) = state.codes.get_mut(get("code")) else {
                return oauth_error(400, "invalid_grant", "the authorization code is not valid");
            };
            if grant.used {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "the authorization code was already used",
                );
            }
            grant.used = true;
            let grant = grant.clone();
            if client_id.as_deref().is_some_and(|c| c != grant.client_id) {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "the code was issued to another client",
                );
            }
            if get("redirect_uri") != grant.redirect_uri {
                return oauth_error(400, "invalid_grant", "redirect_uri does not match");
            }
            if s256(get("code_verifier")) != grant.code_challenge {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "code_verifier does not match the challenge",
                );
            }
            launch_token(state, &grant)
        }
        "client_credentials" => {
            if get("client_assertion").is_empty() {
                return oauth_error(
                    400,
                    "invalid_client",
                    "backend services need private_key_jwt",
                );
            }
            json_response(
                200,
                &json!({
                    "access_token": random_code(),
                    "token_type": "bearer",
                    "expires_in": state.backend_expires_in,
                    "scope": get("scope"),
                }),
            )
        }
        _ => oauth_error(400, "unsupported_grant_type", "unsupported grant_type"),
    }
}

/// Checks client authentication; returns the authenticated client id (`None` with `Any`).
fn check_client(
    state: &mut State,
    form: &BTreeMap<String, String>,
    authorization: Option<&str>,
) -> Result<Option<String>, String> {
    let get = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    match state.expected_auth.clone() {
        ExpectedClientAuth::Any => Ok(None),
        ExpectedClientAuth::SecretBasic { client_id, secret } => {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    encode(&client_id),
                    encode(&secret)
                ))
            );
            if authorization == Some(expected.as_str()) && get("client_secret").is_empty() {
                Ok(Some(client_id))
            } else {
                Err("client_secret_basic credentials are missing or wrong".into())
            }
        }
        ExpectedClientAuth::SecretPost { client_id, secret } => {
            if get("client_id") == client_id
                && get("client_secret") == secret
                && authorization.is_none()
            {
                Ok(Some(client_id))
            } else {
                Err("client_secret_post credentials are missing or wrong".into())
            }
        }
        ExpectedClientAuth::PrivateKeyJwt {
            client_id,
            public_key_pem,
            algorithm,
            kid,
        } => {
            if get("client_assertion_type")
                != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            {
                return Err("client_assertion_type is missing or wrong".into());
            }
            let assertion = get("client_assertion");
            let header =
                jsonwebtoken::decode_header(assertion).map_err(|_| "the assertion is not a jwt")?;
            if header.alg != algorithm || header.kid.as_deref() != Some(kid.as_str()) {
                return Err("the assertion's alg or kid is wrong".into());
            }
            let key = match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => {
                    DecodingKey::from_ec_pem(public_key_pem.as_bytes())
                }
                _ => DecodingKey::from_rsa_pem(public_key_pem.as_bytes()),
            }
            .expect("client public key"); // allow-unwrap: test setup
            let mut validation = Validation::new(algorithm);
            validation.set_audience(&[state.token_url()]);
            validation.set_issuer(&[client_id.as_str()]);
            validation.sub = Some(client_id.clone());
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 0;
            let claims = jsonwebtoken::decode::<Map<String, Value>>(assertion, &key, &validation)
                .map_err(|e| format!("the assertion does not verify: {e}"))?
                .claims;
            let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
            if exp > chrono::Utc::now().timestamp() + 305 {
                return Err("the assertion lives longer than five minutes".into());
            }
            let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
            if jti.is_empty() || !state.seen_jtis.insert(jti.to_owned()) {
                return Err("the assertion's jti is missing or was used before".into());
            }
            Ok(Some(client_id))
        }
    }
}

fn launch_token(state: &State, grant: &Grant) -> ResponseTemplate {
    let mut body: Map<String, Value> =
        serde_json::from_str(fixtures::EPIC_TOKEN_RESPONSE).expect("token response fixture"); // allow-unwrap: test setup
    body.retain(|k, _| matches!(k.as_str(), "token_type" | "expires_in" | "scope"));
    body.extend(state.context.clone());
    body.insert("access_token".into(), json!(random_code()));
    body.insert("state".into(), json!(grant.state));
    if state.id_token_fault != Some(IdTokenFault::Missing) {
        body.insert("id_token".into(), json!(id_token(state, grant)));
    }
    json_response(200, &Value::Object(body))
}

fn id_token(state: &State, grant: &Grant) -> String {
    let now = chrono::Utc::now().timestamp();
    let fault = state.id_token_fault;
    let mut claims = json!({
        "iss": state.issuer(),
        "sub": PRACTITIONER_ID,
        "aud": grant.client_id,
        "iat": now,
        "exp": now + 300,
        "fhirUser": format!("{}/Practitioner/{PRACTITIONER_ID}", state.fhir_base()),
        "preferred_username": "FHIR",
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    match &state.fhir_user_override {
        None => {}
        Some(None) => {
            if let Some(map) = claims.as_object_mut() {
                map.remove("fhirUser");
            }
        }
        Some(Some(reference)) => {
            claims["fhirUser"] = json!(format!("{}/{reference}", state.fhir_base()));
        }
    }
    match fault {
        Some(IdTokenFault::WrongAudience) => claims["aud"] = json!("another-client"),
        Some(IdTokenFault::Expired) => {
            claims["iat"] = json!(now - 900);
            claims["exp"] = json!(now - 600);
        }
        Some(IdTokenFault::WrongNonce) => claims["nonce"] = json!("not-the-nonce-we-were-sent"),
        Some(IdTokenFault::WrongIssuer) => claims["iss"] = json!("https://evil.example/oauth2"),
        _ => {}
    }
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(match fault {
        Some(IdTokenFault::UnknownKid) => "a-kid-nobody-published".to_owned(),
        _ => state.signing_kid.clone(),
    });
    let pem = match fault {
        Some(IdTokenFault::SignedByAttacker) => keys::ATTACKER_RSA,
        _ => keys::EHR_SIGNING_RSA,
    };
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("signing key"); // allow-unwrap: test setup
    jsonwebtoken::encode(&header, &claims, &key).expect("sign id_token") // allow-unwrap: test setup
}

fn jwks(state: &mut State) -> ResponseTemplate {
    state.jwks_requests += 1;
    let key = EncodingKey::from_rsa_pem(keys::EHR_SIGNING_RSA.as_bytes()).expect("signing key"); // allow-unwrap: test setup
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk"); // allow-unwrap: test setup
    jwk.common.key_id = Some(state.signing_kid.clone());
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    json_response(200, &json!({ "keys": [jwk] }))
}
