//! Entra ID (identity platform v2) at `login.microsoftonline.com`'s paths: OpenID Connect
//! discovery, a one-click user picker for sign-in (PKCE S256 required), the token endpoint
//! (authorization code; client credentials with a secret or a certificate assertion), the keys,
//! and Entra's error shape (`AADSTS…` codes).

use std::collections::BTreeMap;

use askama::Template;
use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use url::Url;

use super::{
    AppCredential, AppRegistration, EntraCode, GraphToken, MsApps, MsUser, PRODUCT, PendingSignIn,
    SandboxMicrosoft,
};
use crate::{
    html::{self, Refusal, found, message},
    util::{self, form_map, s256, same_secret},
};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_LIFETIME_SECONDS: i64 = 3599;

/// An Entra error answer: the description starts with the code and carries trace lines.
pub(crate) fn entra_error(status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    let trace_id = util::uuid();
    let correlation_id = util::uuid();
    let timestamp = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}

/// Entra shows sign-in errors on its own page (it never redirects to an unverified URI).
fn error_page(code: u32, text: &str) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        PRODUCT,
        "Sign-in error",
        &format!("AADSTS{code}: {text}"),
    )
}

impl SandboxMicrosoft {
    fn tenant_ok(&self, tenant: &str) -> bool {
        tenant == self.tenant_id()
    }

    /// `Some(None)` in demo mode, `Some(Some(app))` for a registered app, `None` if unknown.
    fn app(&self, client_id: &str) -> Option<Option<&AppRegistration>> {
        match &self.inner.config.apps {
            MsApps::AcceptAny => Some(None),
            MsApps::Registered(list) => list.iter().find(|a| a.client_id == client_id).map(Some),
        }
    }
}

fn unknown_tenant(tenant: &str) -> Response {
    entra_error(
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        90002,
        &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
    )
}

pub(crate) async fn openid_configuration(
    State(ms): State<SandboxMicrosoft>,
    Path(tenant): Path<String>,
) -> Response {
    if !ms.tenant_ok(&tenant) {
        return unknown_tenant(&tenant);
    }
    let base = &ms.inner.base;
    let t = ms.tenant_id();
    Json(json!({
        "token_endpoint": ms.token_url(),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": ms.issuer(),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/graph/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{t}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "preferred_username", "name", "tid", "ver", "oid", "email"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "msgraph_host": "graph.microsoft.com"
    }))
    .into_response()
}

pub(crate) async fn keys(State(ms): State<SandboxMicrosoft>) -> Response {
    Json(ms.inner.key.jwks()).into_response()
}

#[derive(Template)]
#[template(path = "ms_sign_in.html")]
struct SignInPage<'a> {
    product: &'a str,
    title: &'a str,
    action: String,
    request: &'a str,
    client_id: &'a str,
    users: Vec<&'a MsUser>,
}

pub(crate) async fn authorize(
    State(ms): State<SandboxMicrosoft>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !ms.tenant_ok(&tenant) {
        return error_page(90002, &format!("Tenant '{tenant}' not found."));
    }
    let p = form_map(query.unwrap_or_default().as_bytes());
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let client_id = get("client_id");
    let Some(app) = ms.app(client_id) else {
        return error_page(
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let Ok(redirect_uri) = Url::parse(get("redirect_uri")) else {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    };
    if let Some(app) = app
        && !app.redirect_uris.contains(&redirect_uri)
    {
        return error_page(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        );
    }
    if get("response_type") != "code" {
        return error_page(700054, "response_type 'code' is expected.");
    }
    if get("code_challenge_method") != "S256" || !(43..=128).contains(&get("code_challenge").len())
    {
        return error_page(
            9002325,
            "Proof Key for Code Exchange (S256) is required for this sign-in.",
        );
    }
    let Ok(request) = util::random_token(24) else {
        return error_page(90033, "A transient error has occurred. Please try again.");
    };
    let sign_in = PendingSignIn {
        client_id: client_id.to_owned(),
        redirect_uri,
        state: p.get("state").cloned(),
        nonce: p.get("nonce").cloned(),
        scope: get("scope").to_owned(),
        code_challenge: get("code_challenge").to_owned(),
        login_hint: p.get("login_hint").cloned(),
        created_at: Utc::now(),
    };
    if let Some(auto) = &ms.inner.config.auto_sign_in
        && let Some(user) = ms.user(auto).cloned()
    {
        return issue_code(&ms, sign_in, user);
    }
    let mut users: Vec<&MsUser> = ms.inner.config.users.iter().collect();
    if let Some(hint) = &sign_in.login_hint {
        // The hinted account first, as Entra's account picker does.
        users.sort_by_key(|u| !u.upn.eq_ignore_ascii_case(hint));
    }
    let page = html::render(&SignInPage {
        product: PRODUCT,
        title: "Pick an account",
        action: format!("/{}/oauth2/v2.0/authorize/continue", ms.tenant_id()),
        request: &request,
        client_id,
        users,
    });
    {
        let mut st = ms.lock();
        let now = Utc::now();
        st.sign_ins
            .retain(|_, s| now - s.created_at < chrono::Duration::hours(1));
        st.sign_ins.insert(request, sign_in);
    }
    page
}

pub(crate) async fn authorize_continue(
    State(ms): State<SandboxMicrosoft>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    if !ms.tenant_ok(&tenant) {
        return error_page(90002, &format!("Tenant '{tenant}' not found."));
    }
    let form = form_map(&body);
    let request = form.get("request").map(String::as_str).unwrap_or("");
    let Some(sign_in) = ms.lock().sign_ins.remove(request) else {
        return error_page(
            50058,
            "The sign-in request is unknown or was already answered. Start again.",
        );
    };
    let Some(user) = form.get("user").and_then(|u| ms.user(u)).cloned() else {
        return error_page(50034, "The user account does not exist in the directory.");
    };
    issue_code(&ms, sign_in, user)
}

fn issue_code(ms: &SandboxMicrosoft, sign_in: PendingSignIn, user: MsUser) -> Response {
    let Ok(code) = util::random_token(32) else {
        return error_page(90033, "A transient error has occurred. Please try again.");
    };
    let mut target = sign_in.redirect_uri.clone();
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = &sign_in.state {
        target.query_pairs_mut().append_pair("state", state);
    }
    {
        let mut st = ms.lock();
        let now = Utc::now();
        st.codes
            .retain(|_, c| now - c.created_at < chrono::Duration::minutes(10));
        st.codes.insert(
            code,
            EntraCode {
                sign_in,
                user,
                created_at: now,
            },
        );
    }
    found(target.as_str())
}

/// Checks the client's credential; `Err` is the answer to send.
fn authenticate(ms: &SandboxMicrosoft, form: &BTreeMap<String, String>) -> Result<String, Refusal> {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let client_id = get("client_id");
    let tenant = ms.tenant_id();
    let Some(app) = ms.app(client_id).filter(|_| !client_id.is_empty()) else {
        return Err(entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        ).into());
    };
    let assertion = form.get("client_assertion").filter(|a| !a.is_empty());
    if assertion.is_some() && get("client_assertion_type") != ASSERTION_TYPE {
        return Err(entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "Invalid JWT token. The client assertion type is missing or wrong.",
        )
        .into());
    }
    let Some(app) = app else {
        return Ok(client_id.to_owned());
    };
    if let Some(secret) = form.get("client_secret") {
        let good = app.credentials.iter().any(|c| match c {
            AppCredential::Secret(s) => same_secret(s.expose(), secret),
            AppCredential::CertificatePublicKeyPem(_) => false,
        });
        if good {
            return Ok(client_id.to_owned());
        }
        return Err(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ).into());
    }
    if let Some(assertion) = assertion {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[ms.token_url()]);
        validation.set_issuer(&[client_id]);
        validation.sub = Some(client_id.to_owned());
        validation.leeway = 30;
        let verified = app.credentials.iter().any(|c| match c {
            AppCredential::CertificatePublicKeyPem(pem) => {
                DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok_and(|key| {
                    jsonwebtoken::decode::<Value>(assertion, &key, &validation).is_ok()
                })
            }
            AppCredential::Secret(_) => false,
        });
        if verified {
            return Ok(client_id.to_owned());
        }
        return Err(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        )
        .into());
    }
    Err(entra_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ).into())
}

pub(crate) async fn token(
    State(ms): State<SandboxMicrosoft>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    if !ms.tenant_ok(&tenant) {
        return unknown_tenant(&tenant);
    }
    let form = form_map(&body);
    let client_id = match authenticate(&ms, &form) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => app_token(&ms, &client_id, &form),
        Some("authorization_code") => user_token(&ms, &client_id, &form),
        _ => entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ),
    }
}

fn new_access_token(ms: &SandboxMicrosoft, client_id: &str) -> Option<String> {
    // Opaque to clients, like Graph's (they must not parse Microsoft's tokens).
    let token = format!("sbx-graph.{}", util::random_token(32).ok()?);
    let now = Utc::now();
    let mut st = ms.lock();
    st.tokens.retain(|_, t| t.expires_at > now);
    st.tokens.insert(
        token.clone(),
        GraphToken {
            client_id: client_id.to_owned(),
            expires_at: now + chrono::Duration::seconds(TOKEN_LIFETIME_SECONDS),
        },
    );
    Some(token)
}

fn transient() -> Response {
    entra_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily_unavailable",
        90033,
        "A transient error has occurred. Please try again.",
    )
}

fn app_token(ms: &SandboxMicrosoft, client_id: &str, form: &BTreeMap<String, String>) -> Response {
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    if !scope.ends_with("/.default") || scope.contains(' ') {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    let Some(token) = new_access_token(ms, client_id) else {
        return transient();
    };
    tracing::info!(client_id, "sandbox entra issued an app token");
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": token,
        })),
    )
        .into_response()
}

fn user_token(ms: &SandboxMicrosoft, client_id: &str, form: &BTreeMap<String, String>) -> Response {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let invalid_grant =
        |code: u32, text: &str| entra_error(StatusCode::BAD_REQUEST, "invalid_grant", code, text);
    // Removed at first use: a code is good once, whatever the outcome.
    let Some(code) = ms.lock().codes.remove(get("code")) else {
        return invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        );
    };
    if code.sign_in.client_id != client_id {
        return invalid_grant(
            70002,
            "The authorization code was issued to another application.",
        );
    }
    if get("redirect_uri") != code.sign_in.redirect_uri.as_str() {
        return invalid_grant(
            50148,
            "The redirect_uri does not match the one used in the authorization request.",
        );
    }
    if s256(get("code_verifier")) != code.sign_in.code_challenge {
        return invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        );
    }
    let now = Utc::now().timestamp();
    let user = &code.user;
    let tenant = ms.tenant_id();
    let mut claims = json!({
        "aud": client_id,
        "iss": ms.issuer(),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "sub": format!("sbx-pairwise-{}", user.object_id),
        "oid": user.object_id,
        "tid": tenant,
        "preferred_username": user.upn,
        "name": user.display_name,
        "ver": "2.0",
    });
    if let Some(nonce) = &code.sign_in.nonce {
        claims["nonce"] = Value::String(nonce.clone());
    }
    let Ok(id_token) = ms.inner.key.sign(&claims) else {
        return transient();
    };
    let Some(access_token) = new_access_token(ms, client_id) else {
        return transient();
    };
    tracing::info!(client_id, "sandbox entra signed a user in");
    let scope = if code.sign_in.scope.is_empty() {
        "openid profile".to_owned()
    } else {
        code.sign_in.scope.clone()
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": access_token,
            "id_token": id_token,
        })),
    )
        .into_response()
}
