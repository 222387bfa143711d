//! The EHR's SMART authorization server: discovery, the authorize page, the token endpoint (PKCE,
//! single-use codes, client authentication, Epic's launch context) and the signing keys.

use std::collections::BTreeMap;

use askama::Template;
use axum::{
    Json,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use chrono::Utc;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{Jwk, JwkSet},
};
use serde_json::{Map, Value, json};
use url::Url;

use super::{
    AccessToken, ClientCredential, ClientRegistration, EhrClients, EhrUserRef, IssuedCode, PRODUCT,
    PendingAuthorization, SandboxEhr,
};
use crate::{
    html::{self, Refusal, found, message},
    util::{self, form_map, s256, same_secret},
};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Epic's codes live about five minutes.
const CODE_LIFETIME_SECONDS: i64 = 300;
const TOKEN_LIFETIME_SECONDS: i64 = 3600;
const ID_TOKEN_LIFETIME_SECONDS: i64 = 300;
const ASSERTION_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
];

pub(crate) async fn smart_configuration(State(ehr): State<SandboxEhr>) -> Response {
    let base = &ehr.inner.base;
    Json(json!({
        "issuer": ehr.issuer(),
        "jwks_uri": format!("{base}/oauth2/jwks"),
        "authorization_endpoint": ehr.authorize_url(),
        "token_endpoint": ehr.token_url(),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "ES384"],
        "scopes_supported": ["fhirUser", "launch", "launch/patient", "openid", "profile"],
        "response_types_supported": ["code"],
        "capabilities": ["launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
            "client-confidential-asymmetric", "context-banner", "context-style", "context-ehr-patient",
            "context-ehr-encounter", "context-standalone-patient", "permission-patient", "permission-user",
            "permission-v1", "permission-v2", "sso-openid-connect", "authorize-post"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "code_challenge_methods_supported": ["S256"]
    }))
    .into_response()
}

pub(crate) async fn jwks(State(ehr): State<SandboxEhr>) -> Response {
    Json(ehr.inner.key.jwks()).into_response()
}

pub(crate) async fn style() -> Response {
    Json(json!({
        "color_background": "#f7f7f7",
        "color_error": "#9e2d2d",
        "color_highlight": "#69b5ce",
        "color_modal_backdrop": "",
        "color_success": "#498e49",
        "color_text": "#303030",
        "dim_border_radius": "6px",
        "dim_font_size": "13px",
        "dim_spacing_size": "20px",
        "font_family_body": "Segoe UI, sans-serif",
        "font_family_heading": "Segoe UI, sans-serif"
    }))
    .into_response()
}

/// The authorize page.
#[derive(Template)]
#[template(path = "ehr_authorize.html")]
struct AuthorizePage<'a> {
    product: &'a str,
    title: &'a str,
    client_id: &'a str,
    request: &'a str,
    /// EHR launch: who is signed in and for which visit.
    launch: Option<LaunchView>,
    /// Standalone launch: who may sign in.
    choices: Vec<UserChoice>,
}

struct LaunchView {
    user: String,
    visit: String,
}

struct UserChoice {
    value: String,
    label: String,
    kind: &'static str,
}

pub(crate) async fn authorize_get(
    State(ehr): State<SandboxEhr>,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(&ehr, form_map(query.unwrap_or_default().as_bytes()))
}

pub(crate) async fn authorize_post(State(ehr): State<SandboxEhr>, body: Bytes) -> Response {
    authorize(&ehr, form_map(&body))
}

fn refuse_page(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, PRODUCT, "Sign-in refused", text)
}

/// Sends the browser back to the client with an OAuth error.
fn redirect_error(redirect: &Url, error: &str, description: &str, state: &str) -> Response {
    let mut target = redirect.clone();
    target
        .query_pairs_mut()
        .append_pair("error", error)
        .append_pair("error_description", description);
    if !state.is_empty() {
        target.query_pairs_mut().append_pair("state", state);
    }
    found(target.as_str())
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

impl SandboxEhr {
    fn registration(&self, client_id: &str) -> Option<Option<&ClientRegistration>> {
        match &self.inner.config.clients {
            EhrClients::AcceptAny => Some(None),
            EhrClients::Registered(list) => {
                list.iter().find(|r| r.client_id == client_id).map(Some)
            }
        }
    }
}

fn authorize(ehr: &SandboxEhr, p: BTreeMap<String, String>) -> Response {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    // Until the client and its redirect URI are known good, errors go to the page, never to a
    // redirect: otherwise the server would be an open redirector.
    let client_id = get("client_id");
    if client_id.is_empty() {
        return refuse_page("The request has no client_id.");
    }
    let Some(registration) = ehr.registration(client_id) else {
        return refuse_page(&format!(
            "No application is registered with client id {client_id}."
        ));
    };
    let Ok(redirect) = Url::parse(get("redirect_uri")) else {
        return refuse_page("The redirect_uri is missing or not a URL.");
    };
    if let Some(registration) = registration
        && !registration.redirect_uris.contains(&redirect)
    {
        return refuse_page(&format!(
            "The redirect_uri is not registered for client {client_id}."
        ));
    }
    let state = get("state");
    let fail =
        |error: &str, description: &str| redirect_error(&redirect, error, description, state);
    if get("response_type") != "code" {
        return fail("unsupported_response_type", "response_type must be code");
    }
    if state.is_empty() {
        return fail("invalid_request", "state is required");
    }
    let scope = get("scope");
    if scope.trim().is_empty() {
        return fail("invalid_scope", "scope is required");
    }
    if get("aud").trim_end_matches('/') != ehr.fhir_base_url() {
        return fail("invalid_request", "aud must be this server's FHIR base url");
    }
    let challenge = get("code_challenge");
    if get("code_challenge_method") != "S256" || !(43..=128).contains(&challenge.len()) {
        return fail(
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method S256",
        );
    }
    let launch = if has_scope(scope, "launch") {
        let token = get("launch");
        let live = ehr
            .lock()
            .launches
            .get(token)
            .is_some_and(SandboxEhr::is_launch_live);
        if !live {
            return fail(
                "invalid_request",
                "the launch parameter is missing, unknown, used or expired",
            );
        }
        Some(token.to_owned())
    } else {
        None
    };
    let Ok(request) = util::random_token(24) else {
        return refuse_page("The server could not create the sign-in request.");
    };
    let pending = PendingAuthorization {
        client_id: client_id.to_owned(),
        redirect_uri: redirect,
        state: state.to_owned(),
        scope: scope.to_owned(),
        code_challenge: challenge.to_owned(),
        nonce: p.get("nonce").filter(|n| !n.is_empty()).cloned(),
        launch,
        created_at: Utc::now(),
    };
    if pending.launch.is_some() && ehr.inner.config.auto_approve_launches {
        return approve(ehr, pending, None);
    }
    let page = authorize_page(ehr, &pending, &request);
    {
        let mut st = ehr.lock();
        let now = Utc::now();
        st.authorizations
            .retain(|_, a| now - a.created_at < chrono::Duration::hours(1));
        st.authorizations.insert(request, pending);
    }
    page
}

fn authorize_page(ehr: &SandboxEhr, pending: &PendingAuthorization, request: &str) -> Response {
    let seed = &ehr.inner.seed;
    let launch = pending.launch.as_ref().and_then(|token| {
        let record = ehr.lock().launches.get(token).cloned()?;
        let visit = seed.visit(&record.appointment_id)?;
        let user = match &record.user {
            EhrUserRef::Practitioner(id) => seed.clinician(id)?.display(),
            EhrUserRef::Patient(id) => seed.patient(id)?.display(),
        };
        let patient = seed.patient(&visit.patient_id)?.display();
        Some(LaunchView {
            user,
            visit: format!(
                "{} video visit at {} UTC (CSN {})",
                patient,
                visit.start.format("%H:%M"),
                visit.csn
            ),
        })
    });
    let choices = if launch.is_some() {
        Vec::new()
    } else {
        seed.clinicians
            .iter()
            .map(|c| UserChoice {
                value: format!("Practitioner/{}", c.practitioner_id),
                label: c.display(),
                kind: "clinician (Hyperspace user)",
            })
            .chain(seed.patients.iter().map(|p| UserChoice {
                value: format!("Patient/{}", p.patient_id),
                label: p.display(),
                kind: "patient (MyChart user)",
            }))
            .collect()
    };
    html::render(&AuthorizePage {
        product: PRODUCT,
        title: "Sign in",
        client_id: &pending.client_id,
        request,
        launch,
        choices,
    })
}

pub(crate) async fn authorize_continue(State(ehr): State<SandboxEhr>, body: Bytes) -> Response {
    let form = form_map(&body);
    let request = form.get("request").map(String::as_str).unwrap_or("");
    let Some(pending) = ehr.lock().authorizations.remove(request) else {
        return refuse_page("This sign-in request is unknown or was already answered.");
    };
    if form.get("decision").map(String::as_str) == Some("deny") {
        return redirect_error(
            &pending.redirect_uri,
            "access_denied",
            "the user declined",
            &pending.state,
        );
    }
    approve(&ehr, pending, form.get("user").map(String::as_str))
}

/// Issues a code for `pending` and redirects to the client.
fn approve(ehr: &SandboxEhr, pending: PendingAuthorization, chosen: Option<&str>) -> Response {
    let seed = &ehr.inner.seed;
    let fail = |description: &str| {
        redirect_error(
            &pending.redirect_uri,
            "invalid_request",
            description,
            &pending.state,
        )
    };
    let Ok(code) = util::random_token(32) else {
        return refuse_page("The server could not create an authorization code.");
    };
    let mut st = ehr.lock();
    let (user, appointment_id) = match &pending.launch {
        Some(token) => {
            let Some(launch) = st.launches.get_mut(token) else {
                return fail("the launch is unknown");
            };
            if !SandboxEhr::is_launch_live(launch) {
                return fail("the launch was already used or has expired");
            }
            launch.used = true;
            (launch.user.clone(), Some(launch.appointment_id.clone()))
        }
        None => {
            let user = match chosen.unwrap_or("").split_once('/') {
                Some(("Practitioner", id)) if seed.clinician(id).is_some() => {
                    EhrUserRef::Practitioner(id.to_owned())
                }
                Some(("Patient", id)) if seed.patient(id).is_some() => {
                    EhrUserRef::Patient(id.to_owned())
                }
                _ => {
                    drop(st);
                    return refuse_page("Choose one of the listed users.");
                }
            };
            (user, None)
        }
    };
    let now = Utc::now();
    st.codes
        .retain(|_, c| now.signed_duration_since(c.created_at).num_hours() < 1);
    st.codes.insert(
        code.clone(),
        IssuedCode {
            client_id: pending.client_id.clone(),
            redirect_uri: pending.redirect_uri.to_string(),
            state: pending.state.clone(),
            scope: pending.scope.clone(),
            code_challenge: pending.code_challenge.clone(),
            nonce: pending.nonce.clone(),
            user,
            appointment_id,
            created_at: now,
            used: false,
            tokens: Vec::new(),
        },
    );
    drop(st);
    tracing::info!(client_id = %pending.client_id, "sandbox ehr issued an authorization code");
    let mut target = pending.redirect_uri.clone();
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &pending.state);
    found(target.as_str())
}

/// An OAuth error answer from the token endpoint.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn token_answer(body: Value) -> Response {
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response()
}

/// How the client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthMethod {
    None,
    Secret,
    Assertion,
}

struct Client {
    id: String,
    method: AuthMethod,
}

/// `Authorization: Basic` as RFC 6749 writes it (form-encoded id and secret).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

pub(crate) async fn token(
    State(ehr): State<SandboxEhr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let client = match authenticate(&ehr, &headers, &form).await {
        Ok(client) => client,
        Err(refusal) => return refusal.into_response(),
    };
    match form.get("grant_type").map(String::as_str).unwrap_or("") {
        "authorization_code" => exchange_code(&ehr, &client, &form),
        "client_credentials" => backend_token(&ehr, &client, &form),
        "" => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        ),
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or client_credentials",
        ),
    }
}

async fn authenticate(
    ehr: &SandboxEhr,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> Result<Client, Refusal> {
    let invalid = |description: &str| {
        Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description).into())
    };
    let basic = basic_credentials(headers);
    let assertion = form.get("client_assertion").filter(|a| !a.is_empty());
    if assertion.is_some()
        && form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE)
    {
        return invalid("client_assertion_type must be jwt-bearer");
    }
    let form_id = form.get("client_id").filter(|c| !c.is_empty()).cloned();
    let assertion_iss = assertion.and_then(|a| {
        jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(a)
            .ok()
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
    });
    if let (Some((basic_id, _)), Some(form_id)) = (&basic, &form_id)
        && basic_id != form_id
    {
        return invalid("client_id differs between the header and the body");
    }
    let Some(client_id) = basic
        .as_ref()
        .map(|(id, _)| id.clone())
        .or(form_id)
        .or(assertion_iss)
    else {
        return invalid("client authentication is missing");
    };
    let presented = if assertion.is_some() {
        AuthMethod::Assertion
    } else if basic.is_some() || form.contains_key("client_secret") {
        AuthMethod::Secret
    } else {
        AuthMethod::None
    };
    let registration = match &ehr.inner.config.clients {
        EhrClients::AcceptAny => {
            return Ok(Client {
                id: client_id,
                method: presented,
            });
        }
        EhrClients::Registered(list) => list.iter().find(|r| r.client_id == client_id),
    };
    let Some(registration) = registration else {
        return invalid("the client is not registered");
    };
    let secret = basic
        .map(|(_, s)| s)
        .or_else(|| form.get("client_secret").cloned());
    match (secret, assertion) {
        (Some(secret), _) => {
            let good = registration.credentials.iter().any(|c| match c {
                ClientCredential::Secret(s) => same_secret(s.expose(), &secret),
                _ => false,
            });
            if !good {
                return invalid("the client secret is wrong");
            }
        }
        (None, Some(assertion)) => {
            if let Err(reason) = verify_assertion(ehr, registration, assertion).await {
                return invalid(&reason);
            }
        }
        (None, None) if registration.credentials.is_empty() => {}
        (None, None) => return invalid("this client must authenticate"),
    }
    Ok(Client {
        id: client_id,
        method: presented,
    })
}

/// Verifies a `private_key_jwt` assertion against the registration's keys; the reason on failure
/// is safe to show (it never contains the assertion).
async fn verify_assertion(
    ehr: &SandboxEhr,
    registration: &ClientRegistration,
    assertion: &str,
) -> Result<(), String> {
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| "client_assertion is not a jwt")?;
    if !ASSERTION_ALGORITHMS.contains(&header.alg) {
        return Err(format!(
            "assertion algorithm {:?} is not accepted",
            header.alg
        ));
    }
    let mut keys: Vec<Jwk> = Vec::new();
    for credential in &registration.credentials {
        match credential {
            ClientCredential::Jwks(set) => keys.extend(set.keys.iter().cloned()),
            ClientCredential::JwksUrl(url) => {
                let set: JwkSet = async {
                    ehr.inner
                        .http
                        .get(url.clone())
                        .header(header::ACCEPT, "application/json")
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await
                }
                .await
                .map_err(|_| "the client's jwks url could not be read".to_owned())?;
                keys.extend(set.keys);
            }
            ClientCredential::Secret(_) => {}
        }
    }
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err("no registered key matches the assertion's kid".into());
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[ehr.token_url()]);
    validation.set_issuer(&[registration.client_id.as_str()]);
    validation.sub = Some(registration.client_id.clone());
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 30;
    let claims = candidates
        .iter()
        .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
        .find_map(|key| {
            jsonwebtoken::decode::<Map<String, Value>>(assertion, &key, &validation).ok()
        })
        .ok_or("the assertion does not verify (signature, iss, sub, aud or exp)")?
        .claims;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp > Utc::now().timestamp() + 300 + 30 {
        return Err("the assertion must expire within five minutes".into());
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or("the assertion has no jti")?;
    if !ehr
        .lock()
        .seen_jtis
        .insert(format!("{}\0{jti}", registration.client_id))
    {
        return Err("the assertion's jti was used before".into());
    }
    Ok(())
}

fn exchange_code(ehr: &SandboxEhr, client: &Client, form: &BTreeMap<String, String>) -> Response {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let invalid_grant =
        |description: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
    let mut st = ehr.lock();
    let Some(issued) = st.codes.get_mut(get("code")) else {
        return invalid_grant("the authorization code is unknown");
    };
    if issued.used {
        // A replayed code may be stolen: what it bought is revoked too (RFC 6749 §4.1.2).
        let revoke = std::mem::take(&mut issued.tokens);
        for token in revoke {
            st.tokens.remove(&token);
        }
        tracing::warn!(client_id = %client.id, "sandbox ehr refused a replayed authorization code");
        return invalid_grant("the authorization code was already used");
    }
    // Spent whatever happens next, so a wrong verifier cannot be retried.
    issued.used = true;
    let issued_copy = issued.clone();
    if Utc::now()
        .signed_duration_since(issued_copy.created_at)
        .num_seconds()
        > CODE_LIFETIME_SECONDS
    {
        return invalid_grant("the authorization code has expired");
    }
    if issued_copy.client_id != client.id {
        return invalid_grant("the authorization code was issued to another client");
    }
    if get("redirect_uri") != issued_copy.redirect_uri {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    if s256(get("code_verifier")) != issued_copy.code_challenge {
        return invalid_grant("code_verifier does not match the code_challenge");
    }
    let Ok(access_token) = util::random_token(32) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        );
    };
    let now = Utc::now();
    let patient_only = match &issued_copy.user {
        EhrUserRef::Patient(id) => Some(id.clone()),
        EhrUserRef::Practitioner(_) => None,
    };
    st.tokens.retain(|_, t| t.expires_at > now);
    st.tokens.insert(
        access_token.clone(),
        AccessToken {
            client_id: client.id.clone(),
            scopes: issued_copy
                .scope
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            patient_only,
            expires_at: now + chrono::Duration::seconds(TOKEN_LIFETIME_SECONDS),
        },
    );
    if let Some(code) = st.codes.get_mut(get("code")) {
        code.tokens.push(access_token.clone());
    }
    drop(st);

    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS,
        "scope": issued_copy.scope,
        "state": issued_copy.state,
    });
    let scope = &issued_copy.scope;
    if has_scope(scope, "openid") {
        match id_token(ehr, &issued_copy) {
            Ok(token) => body["id_token"] = Value::String(token),
            Err(e) => {
                tracing::error!(error = %e, "sandbox ehr could not sign an id_token");
                return oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "could not sign the id_token",
                );
            }
        }
    }
    if has_scope(scope, "launch") || has_scope(scope, "launch/patient") {
        add_context(ehr, &issued_copy, &mut body);
    }
    tracing::info!(client_id = %client.id, "sandbox ehr issued an access token");
    token_answer(body)
}

fn id_token(ehr: &SandboxEhr, code: &IssuedCode) -> Result<String, jsonwebtoken::errors::Error> {
    let now = Utc::now().timestamp();
    let seed = &ehr.inner.seed;
    let mut claims = json!({
        "iss": ehr.issuer(),
        "sub": code.user.id(),
        "aud": code.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME_SECONDS,
        "fhirUser": format!("{}/{}/{}", ehr.fhir_base_url(), code.user.resource_type(), code.user.id()),
    });
    let username = match &code.user {
        EhrUserRef::Practitioner(id) => seed.clinician(id).map(|c| c.ehr_login.clone()),
        EhrUserRef::Patient(id) => seed
            .patient(id)
            .map(|p| format!("{}.{}", p.given, p.family).to_lowercase()),
    };
    if let Some(username) = username {
        claims["preferred_username"] = Value::String(username);
    }
    if let Some(nonce) = &code.nonce {
        claims["nonce"] = Value::String(nonce.clone());
    }
    ehr.inner.key.sign(&claims)
}

/// Epic's launch context fields.
fn add_context(ehr: &SandboxEhr, code: &IssuedCode, body: &mut Value) {
    let seed = &ehr.inner.seed;
    let style = format!("{}/api/epic/2019/smart/style.json", ehr.inner.base);
    let visit = code.appointment_id.as_deref().and_then(|a| seed.visit(a));
    let patient_id = match (visit, &code.user) {
        (Some(v), _) => Some(v.patient_id.clone()),
        (None, EhrUserRef::Patient(id)) => Some(id.clone()),
        (None, EhrUserRef::Practitioner(_)) => None,
    };
    let is_clinician = matches!(code.user, EhrUserRef::Practitioner(_));
    if let Some(patient_id) = &patient_id {
        body["patient"] = json!(patient_id);
        if let Some(p) = seed.patient(patient_id) {
            body["__epic.dstu2.patient"] = json!(p.dstu2_id);
        }
    }
    if let Some(v) = visit {
        body["encounter"] = json!(v.encounter_id);
        body["appointment"] = json!(v.appointment_id);
        body["location"] = json!(seed.department.location_id);
        body["fhirContext"] = json!([
            { "reference": format!("Appointment/{}", v.appointment_id) },
            { "reference": format!("Encounter/{}", v.encounter_id) }
        ]);
    }
    if is_clinician {
        body["loginDepartment"] = json!(seed.department.location_id);
    }
    // Hyperspace shows its own patient banner around the app; MyChart and standalone apps do not.
    body["need_patient_banner"] = json!(!(is_clinician && visit.is_some()));
    body["smart_style_url"] = json!(style);
}

fn backend_token(ehr: &SandboxEhr, client: &Client, form: &BTreeMap<String, String>) -> Response {
    let accept_any = matches!(ehr.inner.config.clients, EhrClients::AcceptAny);
    if client.method != AuthMethod::Assertion && !accept_any {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "backend services must authenticate with private_key_jwt",
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    let Ok(access_token) = util::random_token(32) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        );
    };
    let now = Utc::now();
    {
        let mut st = ehr.lock();
        st.tokens.retain(|_, t| t.expires_at > now);
        st.tokens.insert(
            access_token.clone(),
            AccessToken {
                client_id: client.id.clone(),
                scopes: scope.split_whitespace().map(str::to_owned).collect(),
                patient_only: None,
                expires_at: now + chrono::Duration::seconds(TOKEN_LIFETIME_SECONDS),
            },
        );
    }
    tracing::info!(client_id = %client.id, "sandbox ehr issued a backend services token");
    token_answer(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS,
        "scope": scope,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%20client:s%3Acret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().expect("header"),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("my client".to_owned(), "s:cret".to_owned()))
        );
    }
}
