//! Sign-in with Microsoft (OpenID Connect authorization code + PKCE against Entra ID), sessions
//! and sign-out.

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_approval::{TenantId, Username};
use visitbridge_http::{Secret, random_token};
use visitbridge_smart::{Callback, PendingSignIn, SmartError};
use visitbridge_store::{MicrosoftObjectId, MicrosoftTenantId, StoreError, Tenant};

use crate::{
    AppState,
    error::PortalError,
    session::{CsrfForm, SESSION_LIFETIME, SessionData, User, cookie, storage_key},
    views::{HomePage, Layout, render},
};

/// The pending-item kind of Microsoft sign-ins.
const SIGN_IN_KIND: &str = "portal-microsoft-sign-in";
/// How long a sign-in may take.
const SIGN_IN_LIFETIME: Duration = Duration::minutes(10);

/// A sign-in between the redirect to Microsoft and its callback.
#[derive(Serialize, Deserialize)]
struct PendingMicrosoftSignIn {
    sign_in: PendingSignIn,
    /// The hash of the browser-binding cookie set when the sign-in started: a callback from
    /// another browser (a login CSRF) does not match it.
    binding: String,
}

/// Only a well-formed OAuth error code is echoed, never free text from another system.
pub(crate) fn error_code(code: &str) -> &str {
    if !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        code
    } else {
        "unrecognised"
    }
}

/// `GET /`: the configurations for a signed-in user, else the sign-in page.
pub(crate) async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PortalError> {
    if User::load(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/configurations").into_response());
    }
    Ok(render(
        StatusCode::OK,
        HomePage {
            layout: Layout::default(),
            problem: None,
        },
    ))
}

/// `GET /signin`: starts a Microsoft sign-in.
pub(crate) async fn sign_in(State(state): State<AppState>) -> Result<Response, PortalError> {
    let provider = state.entra().await?;
    let (request, pending) = provider
        .begin_sign_in(&[("prompt", "select_account")])
        .map_err(PortalError::internal)?;
    let binding = random_token(32).map_err(PortalError::internal)?;
    let payload = serde_json::to_value(PendingMicrosoftSignIn {
        sign_in: pending,
        binding: storage_key(&binding),
    })
    .map_err(PortalError::internal)?;
    state
        .store()
        .put_pending(
            request.state().expose(),
            SIGN_IN_KIND,
            &payload,
            Utc::now() + SIGN_IN_LIFETIME,
        )
        .await?;
    let cookies = state.cookies();
    let mut response = Redirect::to(request.url().as_str()).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies.set(
            cookies.sign_in,
            &binding,
            Some(SIGN_IN_LIFETIME.num_seconds()),
        ),
    );
    Ok(response)
}

fn sign_in_page(problem: String) -> Response {
    render(
        StatusCode::BAD_REQUEST,
        HomePage {
            layout: Layout::default(),
            problem: Some(problem),
        },
    )
}

/// `GET /signin/callback`: completes the sign-in and opens a session.
pub(crate) async fn sign_in_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PortalError> {
    let query = query.unwrap_or_default();
    let callback = match Callback::from_query(&query) {
        Ok(callback) => callback,
        Err(SmartError::AuthorizationDenied { error, .. }) => {
            if let Some((_, state_value)) =
                url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "state")
            {
                let _ = state
                    .store()
                    .take_pending(&state_value, SIGN_IN_KIND, Utc::now())
                    .await;
            }
            return Ok(sign_in_page(format!(
                "Microsoft sign-in did not complete ({}); sign in again",
                error_code(&error)
            )));
        }
        Err(_) => {
            return Ok(sign_in_page(
                "this sign-in link is incomplete; sign in again".to_owned(),
            ));
        }
    };
    let expired =
        || sign_in_page("this sign-in expired or was already used; sign in again".to_owned());
    let Some(payload) = state
        .store()
        .take_pending(&callback.state, SIGN_IN_KIND, Utc::now())
        .await?
    else {
        return Ok(expired());
    };
    let Ok(pending) = serde_json::from_value::<PendingMicrosoftSignIn>(payload) else {
        return Ok(expired());
    };
    let cookies = state.cookies();
    let bound = cookie(&headers, cookies.sign_in)
        .is_some_and(|value| Secret::new(storage_key(value)).constant_time_eq(&pending.binding));
    if !bound {
        tracing::warn!("sign-in callback from a browser that did not start it");
        return Ok(sign_in_page(
            "this sign-in was started in another browser or window; sign in again".to_owned(),
        ));
    }
    let provider = state.entra().await?;
    let signed_in = provider
        .complete_sign_in(pending.sign_in, &callback)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "Microsoft sign-in failed");
            PortalError::Upstream(
                "the Microsoft sign-in could not be completed; sign in again".to_owned(),
            )
        })?;
    let claims = &signed_in.claims;
    let who = || {
        PortalError::Upstream("the Microsoft sign-in did not say who you are (tid, oid and preferred_username are needed); sign in with a work account".to_owned())
    };
    let tid = claims
        .str_claim("tid")
        .and_then(|t| MicrosoftTenantId::new(t).ok())
        .ok_or_else(who)?;
    let object_id = claims
        .str_claim("oid")
        .and_then(|o| MicrosoftObjectId::new(o).ok())
        .ok_or_else(who)?;
    let username = claims
        .str_claim("preferred_username")
        .and_then(|u| Username::new(u).ok())
        .ok_or_else(who)?;
    let is_admin = state.config().is_admin(&tid, &username);
    let tenant = tenant_for(&state, &tid, is_admin.then_some(&username)).await?;

    let token = random_token(32).map_err(PortalError::internal)?;
    let data = SessionData {
        tenant,
        microsoft_tenant_id: tid,
        username,
        object_id,
        csrf: random_token(32).map_err(PortalError::internal)?,
    };
    state
        .store()
        .put_session(
            &storage_key(&token),
            &serde_json::to_value(&data).map_err(PortalError::internal)?,
            Utc::now() + SESSION_LIFETIME,
        )
        .await?;
    tracing::info!(tenant = %data.tenant, object_id = %data.object_id, is_admin, "signed in");
    let mut response = Redirect::to("/configurations").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookies.set(
            cookies.session,
            &token,
            Some(SESSION_LIFETIME.num_seconds()),
        ),
    );
    headers.append(header::SET_COOKIE, cookies.clear(cookies.sign_in));
    Ok(response)
}

/// Our tenant for an Entra tenant id. The first admin sign-in (`admin` is their username)
/// creates it; anyone else gets an id that no configuration has yet.
pub(crate) async fn tenant_for(
    state: &AppState,
    tid: &MicrosoftTenantId,
    admin: Option<&Username>,
) -> Result<TenantId, PortalError> {
    if let Some(tenant) = state.store().tenant_by_microsoft_id(tid).await? {
        return Ok(tenant.id);
    }
    let id = TenantId::new(tid.as_str()).map_err(PortalError::internal)?;
    if let Some(admin) = admin {
        let name = admin
            .as_str()
            .split_once('@')
            .map_or(tid.as_str(), |(_, domain)| domain)
            .to_owned();
        let tenant = Tenant {
            id: id.clone(),
            name,
            microsoft_tenant_id: tid.clone(),
            created_at: Utc::now(),
        };
        match state.store().insert_tenant(&tenant).await {
            Ok(()) => tracing::info!(tenant = %id, "organisation added on first admin sign-in"),
            // Another request created it meanwhile.
            Err(StoreError::AlreadyExists(_)) => {
                if let Some(tenant) = state.store().tenant_by_microsoft_id(tid).await? {
                    return Ok(tenant.id);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(id)
}

/// The sign-out form has no fields but the CSRF token.
#[derive(Deserialize)]
pub(crate) struct Empty {}

/// `POST /signout`.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    CsrfForm(user, Empty {}): CsrfForm<Empty>,
) -> Result<Response, PortalError> {
    state.store().delete_session(&user.key).await?;
    let cookies = state.cookies();
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookies.clear(cookies.session));
    Ok(response)
}
