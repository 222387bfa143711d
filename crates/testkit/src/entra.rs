//! Fake of Entra ID (Microsoft identity platform v2): app-only tokens and OpenID Connect sign-in.
//!
//! Mounted on a [`MockServer`] at the paths of `login.microsoftonline.com`, so a client configured
//! with `login_base = server.uri()` talks to it exactly as to the real host:
//!
//! - `POST /{tenant}/oauth2/v2.0/token`
//!   - `grant_type=client_credentials` (app-only): checks `client_id`, `scope` (`….default`), and
//!     either `client_secret` or a `client_assertion` JWT (RS256, signed with
//!     [`fixtures::keys::CLIENT_RSA`], `x5t` of [`fixtures::keys::CLIENT_CERT`], `aud` = this
//!     token URL); answers `{"token_type":"Bearer","expires_in":3599,"access_token":…}`.
//!   - `grant_type=authorization_code` (user sign-in): checks the code, `redirect_uri`, PKCE
//!     `code_verifier` and the client's credential; answers with an RS256 `id_token` carrying
//!     `oid`, `tid`, `preferred_username`, `name`, `nonce`, `aud`, `iss`, `exp`.
//!   - errors have Entra's shape: `error`, `error_description` starting with the `AADSTS` code and
//!     followed by trace lines, `error_codes`, `timestamp`, `trace_id`, `correlation_id`,
//!     `error_uri`.
//! - `GET /{tenant}/oauth2/v2.0/authorize`: records `nonce`, `code_challenge` and `redirect_uri`,
//!   and answers `302` to `redirect_uri?code=…&state=…` as the signed-in [`EntraUser`].
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration` with issuer `{base}/{tenant}/v2.0`.
//! - `GET /{tenant}/discovery/v2.0/keys` and `/common/discovery/v2.0/keys`: the JWKS.
//!
//! The id_token key is [`ENTRA_SIGNING_RSA`], its own key (not the fake EHR's), so a service that
//! checks an Entra id_token against the wrong JWKS fails its tests.
//!
//! [`fixtures::keys::CLIENT_RSA`]: crate::fixtures::keys::CLIENT_RSA
//! [`fixtures::keys::CLIENT_CERT`]: crate::fixtures::keys::CLIENT_CERT

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use serde_json::{Value, json};
use url::Url;
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

use crate::fixtures::keys;

/// The fake directory's tenant id.
pub const TENANT_ID: &str = "0b7c1e0f-3a57-4c4e-9d0a-5f4f6c2b9e11";
/// Our app registration's client id.
pub const CLIENT_ID: &str = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346";
/// The app's client secret.
pub const CLIENT_SECRET: &str = "fake-entra-client-secret-value";
/// The scope app-only token requests for Graph must ask for.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The key id of the id_token signing key in the JWKS.
pub const SIGNING_KID: &str = "fake-entra-signing-1";
/// The fake Entra's id_token signing key (PKCS#8 PEM, test only).
pub const ENTRA_SIGNING_RSA: &str = include_str!("../fixtures/keys/entra-signing-rsa.pem");

/// The user who signs in through the authorization code flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraUser {
    /// Object id (`oid`).
    pub oid: String,
    /// UPN (`preferred_username`).
    pub upn: String,
    /// Display name (`name`).
    pub name: String,
    /// Tenant (`tid`); defaults to [`TENANT_ID`].
    pub tid: String,
}

impl Default for EntraUser {
    fn default() -> Self {
        Self {
            oid: "5810cedeb-b2c1-e9bd-5d6b-2b5d0ae9e5d5".to_owned(),
            upn: "dr.ross@contoso.example".to_owned(),
            name: "Dr. Ross".to_owned(),
            tid: TENANT_ID.to_owned(),
        }
    }
}

/// A running fake Entra ID. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct FakeEntra {
    base: String,
    state: Arc<Mutex<EntraState>>,
}

struct PendingCode {
    user: EntraUser,
    nonce: Option<String>,
    redirect_uri: String,
    code_challenge: Option<String>,
}

struct EntraState {
    base: String,
    client_secret: String,
    token_lifetime: u64,
    token_delay: Duration,
    app_token_requests: usize,
    issued: Vec<String>,
    user: EntraUser,
    codes: HashMap<String, PendingCode>,
    counter: u64,
    signing: EncodingKey,
    x5t: String,
}

fn lock(state: &Mutex<EntraState>) -> MutexGuard<'_, EntraState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeEntra {
    /// Mounts the fake on `server` (app [`CLIENT_ID`] with [`CLIENT_SECRET`] and the test client
    /// certificate, tenant [`TENANT_ID`], signed-in user [`EntraUser::default`]).
    pub async fn mount(server: &MockServer) -> Self {
        let base = server.uri();
        let cert_der = pem_der(keys::CLIENT_CERT, "CERTIFICATE");
        let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der)
                .as_ref(),
        );
        let state = Arc::new(Mutex::new(EntraState {
            base: base.clone(),
            client_secret: CLIENT_SECRET.to_owned(),
            token_lifetime: 3599,
            token_delay: Duration::ZERO,
            app_token_requests: 0,
            issued: Vec::new(),
            user: EntraUser::default(),
            codes: HashMap::new(),
            counter: 0,
            signing: EncodingKey::from_rsa_pem(ENTRA_SIGNING_RSA.as_bytes())
                .expect("entra signing key"), // allow-unwrap: test setup
            x5t,
        }));
        let tenant = TENANT_ID;
        Mock::given(method("POST"))
            .and(path(format!("/{tenant}/oauth2/v2.0/token")))
            .respond_with(TokenEndpoint(state.clone()))
            .named("entra token")
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/{tenant}/oauth2/v2.0/authorize")))
            .respond_with(AuthorizeEndpoint(state.clone()))
            .named("entra authorize")
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!(
                "/{tenant}/v2.0/.well-known/openid-configuration"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(openid_configuration(&base)))
            .named("entra discovery")
            .mount(server)
            .await;
        let jwks = jwks();
        for p in [
            format!("/{tenant}/discovery/v2.0/keys"),
            "/common/discovery/v2.0/keys".to_owned(),
            "/discovery/v2.0/keys".to_owned(),
        ] {
            Mock::given(method("GET"))
                .and(path(p))
                .respond_with(ResponseTemplate::new(200).set_body_json(&jwks))
                .named("entra jwks")
                .mount(server)
                .await;
        }
        Self { base, state }
    }

    /// The login host to configure clients with (the server's root).
    pub fn login_base(&self) -> Url {
        Url::parse(&format!("{}/", self.base)).expect("server uri") // allow-unwrap: test setup
    }

    /// `{base}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT_ID}/oauth2/v2.0/token", self.base)
    }

    /// The id_token issuer, `{base}/{tenant}/v2.0`.
    pub fn issuer(&self) -> String {
        format!("{}/{TENANT_ID}/v2.0", self.base)
    }

    /// Changes the client secret the token endpoint accepts.
    pub fn set_client_secret(&self, secret: &str) {
        lock(&self.state).client_secret = secret.to_owned();
    }

    /// Changes `expires_in` of new app tokens (default 3599).
    pub fn set_token_lifetime(&self, seconds: u64) {
        lock(&self.state).token_lifetime = seconds;
    }

    /// Delays token answers (to make concurrent callers overlap).
    pub fn set_token_delay(&self, delay: Duration) {
        lock(&self.state).token_delay = delay;
    }

    /// Sets who signs in next through the authorization endpoint.
    pub fn set_user(&self, user: EntraUser) {
        lock(&self.state).user = user;
    }

    /// Successful and failed app-only (`client_credentials`) token requests so far.
    pub fn app_token_requests(&self) -> usize {
        lock(&self.state).app_token_requests
    }

    /// Whether `token` is an access token this fake issued and has not revoked.
    pub fn is_valid_token(&self, token: &str) -> bool {
        lock(&self.state).issued.iter().any(|t| t == token)
    }

    /// Access tokens issued so far (to check they never show up in logs or errors).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state).issued.clone()
    }

    /// Revokes every issued access token: a Graph fake checking against this Entra answers 401.
    pub fn revoke_tokens(&self) {
        lock(&self.state).issued.clear();
    }

    /// Issues an authorization code as the authorize endpoint would, for tests that skip the
    /// browser redirect.
    pub fn issue_code(
        &self,
        redirect_uri: &str,
        nonce: Option<&str>,
        code_challenge: Option<&str>,
    ) -> String {
        let mut state = lock(&self.state);
        state.counter += 1;
        let code = format!("fake-entra-code-{}", state.counter);
        let user = state.user.clone();
        state.codes.insert(
            code.clone(),
            PendingCode {
                user,
                nonce: nonce.map(str::to_owned),
                redirect_uri: redirect_uri.to_owned(),
                code_challenge: code_challenge.map(str::to_owned),
            },
        );
        code
    }
}

fn openid_configuration(base: &str) -> Value {
    json!({
        "token_endpoint": format!("{base}/{TENANT_ID}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{TENANT_ID}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{TENANT_ID}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/{TENANT_ID}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{TENANT_ID}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{TENANT_ID}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{base}/{TENANT_ID}/kerberos"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net"
    })
}

fn jwks() -> JwkSet {
    let key = EncodingKey::from_rsa_pem(ENTRA_SIGNING_RSA.as_bytes()).expect("entra signing key"); // allow-unwrap: test setup
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).expect("entra jwk"); // allow-unwrap: test setup
    jwk.common.key_id = Some(SIGNING_KID.to_owned());
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    JwkSet { keys: vec![jwk] }
}

/// The DER of the first `label` block of a PEM.
pub(crate) fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).expect("pem begin") + begin.len(); // allow-unwrap: test setup
    let stop = start + pem[start..].find(&end).expect("pem end"); // allow-unwrap: test setup
    let body: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pem base64") // allow-unwrap: test setup
}

/// An Entra error answer: the description starts with the code and carries trace lines.
fn entra_error(status: u16, error: &str, code: u32, message: &str) -> ResponseTemplate {
    let trace_id = uuid_like(1);
    let correlation_id = uuid_like(2);
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    }))
}

fn uuid_like(seed: u8) -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("random"); // allow-unwrap: test setup
    b[0] = seed;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn form(request: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

struct TokenEndpoint(Arc<Mutex<EntraState>>);

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form = form(request);
        let mut state = lock(&self.0);
        let delay = state.token_delay;
        let answer = match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {
                state.app_token_requests += 1;
                client_credentials(&mut state, &form)
            }
            Some("authorization_code") => authorization_code(&mut state, &form),
            _ => entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            ),
        };
        answer.set_delay(delay)
    }
}

/// Checks the client's credential (secret or certificate assertion); `None` when it is good.
fn client_auth_error(
    state: &EntraState,
    form: &HashMap<String, String>,
) -> Option<ResponseTemplate> {
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return Some(entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory '{TENANT_ID}'.",
                form.get("client_id")
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(secret) = form.get("client_secret") {
        if *secret == state.client_secret {
            return None;
        }
        return Some(entra_error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT_ID}'."
            ),
        ));
    }
    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Some(entra_error(
                400,
                "invalid_request",
                50027,
                "Invalid JWT token. The client assertion type is missing or wrong.",
            ));
        }
        return check_assertion(state, assertion);
    }
    Some(entra_error(
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ))
}

fn check_assertion(state: &EntraState, assertion: &str) -> Option<ResponseTemplate> {
    let bad = |msg: &str| {
        Some(entra_error(
            401,
            "invalid_client",
            700027,
            &format!("Client assertion failed signature validation. {msg}"),
        ))
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return bad("The assertion is not a JWT.");
    };
    if header.x5t.as_deref() != Some(state.x5t.as_str()) {
        return bad("The x5t thumbprint does not match a registered certificate.");
    }
    let key =
        DecodingKey::from_rsa_pem(keys::CLIENT_RSA_PUB.as_bytes()).expect("client public key"); // allow-unwrap: test setup
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("{}/{TENANT_ID}/oauth2/v2.0/token", state.base)]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.sub = Some(CLIENT_ID.to_owned());
    match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(_) => None,
        Err(e) => bad(&format!("{:?}", e.kind())),
    }
}

fn client_credentials(state: &mut EntraState, form: &HashMap<String, String>) -> ResponseTemplate {
    if let Some(error) = client_auth_error(state, form) {
        return error;
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    if scope != GRAPH_SCOPE {
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    state.counter += 1;
    let token = format!(
        "eyJ0eXAiOiJKV1QiLCJub25jZSI6ImZha2UifQ.fake-graph-app-token-{}.{}",
        state.counter,
        uuid_like(3)
    );
    state.issued.push(token.clone());
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": state.token_lifetime,
        "ext_expires_in": state.token_lifetime,
        "access_token": token,
    }))
}

fn authorization_code(state: &mut EntraState, form: &HashMap<String, String>) -> ResponseTemplate {
    if let Some(error) = client_auth_error(state, form) {
        return error;
    }
    let invalid_grant = |code: u32, msg: &str| entra_error(400, "invalid_grant", code, msg);
    let Some(pending) = form.get("code").and_then(|c| state.codes.remove(c)) else {
        return invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        );
    };
    if form.get("redirect_uri") != Some(&pending.redirect_uri) {
        return invalid_grant(
            50148,
            "The redirect_uri does not match the one used in the authorization request.",
        );
    }
    if let Some(challenge) = &pending.code_challenge {
        let verifier = form
            .get("code_verifier")
            .map(String::as_str)
            .unwrap_or_default();
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
        );
        if computed != *challenge {
            return invalid_grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            );
        }
    }
    let now = chrono::Utc::now().timestamp();
    let user = &pending.user;
    let mut claims = json!({
        "aud": CLIENT_ID,
        "iss": format!("{}/{}/v2.0", state.base, user.tid),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "sub": format!("pairwise-{}", user.oid),
        "oid": user.oid,
        "tid": user.tid,
        "preferred_username": user.upn,
        "name": user.name,
        "ver": "2.0",
    });
    if let Some(nonce) = &pending.nonce {
        claims["nonce"] = Value::String(nonce.clone());
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(SIGNING_KID.to_owned());
    header.typ = Some("JWT".to_owned());
    let id_token = jsonwebtoken::encode(&header, &claims, &state.signing).expect("sign id_token"); // allow-unwrap: test setup
    state.counter += 1;
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "scope": "openid profile email",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": format!("fake-user-token-{}", state.counter),
        "id_token": id_token,
    }))
}

struct AuthorizeEndpoint(Arc<Mutex<EntraState>>);

impl Respond for AuthorizeEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                "Application was not found in the directory.",
            );
        }
        let Some(redirect_uri) = query.get("redirect_uri") else {
            return entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'redirect_uri'.",
            );
        };
        if query.get("response_type").map(String::as_str) != Some("code") {
            return entra_error(
                400,
                "unsupported_response_type",
                700054,
                "response_type 'code' is expected.",
            );
        }
        if query.contains_key("code_challenge")
            && query.get("code_challenge_method").map(String::as_str) != Some("S256")
        {
            return entra_error(
                400,
                "invalid_request",
                50146,
                "code_challenge_method must be S256.",
            );
        }
        let code = {
            let mut state = lock(&self.0);
            state.counter += 1;
            let code = format!("fake-entra-code-{}", state.counter);
            let user = state.user.clone();
            state.codes.insert(
                code.clone(),
                PendingCode {
                    user,
                    nonce: query.get("nonce").cloned(),
                    redirect_uri: redirect_uri.clone(),
                    code_challenge: query.get("code_challenge").cloned(),
                },
            );
            code
        };
        let Ok(mut location) = Url::parse(redirect_uri) else {
            return entra_error(
                400,
                "invalid_request",
                50011,
                "The redirect URI is not a valid URL.",
            );
        };
        location.query_pairs_mut().append_pair("code", &code);
        if let Some(state) = query.get("state") {
            location.query_pairs_mut().append_pair("state", state);
        }
        ResponseTemplate::new(302).insert_header("Location", location.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_redirects() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client") // allow-unwrap: test setup
    }

    #[tokio::test]
    async fn a_user_signs_in_with_pkce_and_gets_a_verifiable_id_token() {
        let server = MockServer::start().await;
        let entra = FakeEntra::mount(&server).await;
        entra.set_user(EntraUser {
            oid: "oid-approver".into(),
            upn: "approver@contoso.example".into(),
            ..EntraUser::default()
        });
        let http = no_redirects();
        let discovery: Value = http
            .get(format!(
                "{}/v2.0/.well-known/openid-configuration",
                entra.login_base().join(TENANT_ID).unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(discovery["issuer"], entra.issuer());
        let verifier = "a-code-verifier-of-enough-length-0123456789abcdef";
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
        );
        let mut authorize =
            Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", CLIENT_ID)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", "https://portal.example/callback")
            .append_pair("scope", "openid profile")
            .append_pair("state", "st-1")
            .append_pair("nonce", "n-1")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let redirect = http.get(authorize).send().await.unwrap();
        assert_eq!(redirect.status(), 302);
        let location = Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
        assert!(
            location
                .as_str()
                .starts_with("https://portal.example/callback?")
        );
        let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
        assert_eq!(query["state"], "st-1");

        let token = |verifier: &'static str, code: String| {
            let http = http.clone();
            let url = discovery["token_endpoint"].as_str().unwrap().to_owned();
            async move {
                http.post(url)
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("client_id", CLIENT_ID),
                        ("client_secret", CLIENT_SECRET),
                        ("code", code.as_str()),
                        ("redirect_uri", "https://portal.example/callback"),
                        ("code_verifier", verifier),
                    ])
                    .send()
                    .await
                    .unwrap()
            }
        };
        let answer = token(verifier, query["code"].clone()).await;
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        let jwks: JwkSet = http
            .get(discovery["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id_token = answer["id_token"].as_str().unwrap();
        let kid = jsonwebtoken::decode_header(id_token).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).expect("kid in jwks");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[CLIENT_ID]);
        validation.set_issuer(&[entra.issuer()]);
        let claims = jsonwebtoken::decode::<Value>(
            id_token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .expect("valid id_token")
        .claims;
        assert_eq!(claims["oid"], "oid-approver");
        assert_eq!(claims["preferred_username"], "approver@contoso.example");
        assert_eq!(claims["tid"], TENANT_ID);
        assert_eq!(claims["nonce"], "n-1");

        // Codes are single use, and the PKCE verifier must match.
        let reused = token(verifier, query["code"].clone()).await;
        assert_eq!(reused.status(), 400);
        let code = entra.issue_code("https://portal.example/callback", None, Some(&challenge));
        let wrong: Value = token("another-verifier", code).await.json().await.unwrap();
        assert_eq!(wrong["error"], "invalid_grant");
        assert_eq!(wrong["error_codes"][0], 501481);
    }

    #[tokio::test]
    async fn a_token_request_for_the_wrong_scope_is_refused_the_way_entra_does() {
        let server = MockServer::start().await;
        let entra = FakeEntra::mount(&server).await;
        let answer: Value = no_redirects()
            .post(entra.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "https://graph.microsoft.com/User.Read"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["error"], "invalid_scope");
        assert!(
            answer["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS1002012: ")
        );
        assert!(answer["trace_id"].is_string() && answer["correlation_id"].is_string());
    }
}
