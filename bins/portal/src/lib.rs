//! The VisitBridge configuration portal: wiring of the approval state machine, the store, the
//! SMART client and Microsoft sign-in into web pages and a JSON API.
//!
//! Admins sign in with Microsoft and register their EHR's FHIR base URLs (one configuration per URL
//! and environment); the named approver signs in with Microsoft, then signs in to the EHR (a SMART
//! standalone launch against that URL) and approves; the portal then shows the integration records
//! to enter in the EHR. Every change is kept in the configuration's history.
//!
//! # Design choices
//!
//! - **Wiring only.** Who may do what, in which state, is decided by
//!   [`visitbridge_approval`]'s transitions; the portal calls them and stores what they return
//!   with [`visitbridge_store`]. Even which buttons a page shows is found by trying the
//!   transitions without keeping them. URL problems, EHR sign-in failures and the test/production
//!   warning are the approval crate's messages, shown next to the field they concern.
//! - **Checked URLs.** On add and on a change of URL or client, the FHIR base URL is parsed
//!   (loopback only in development mode), then probed: its SMART configuration and
//!   CapabilityStatement are fetched without a token, with short retries within the shared
//!   timeouts, and [`visitbridge_approval::classify_probe`] judges what was seen.
//! - **Sign-in with Microsoft** is OpenID Connect (code + PKCE + nonce) through
//!   [`visitbridge_smart::OidcProvider`], discovered lazily so the portal starts without Entra.
//!   The organisation is the validated id_token's `tid`; the first admin sign-in creates it.
//!   Admins are listed per Entra tenant in the configuration; anyone can be the *named approver*
//!   of a configuration, which the state machine checks per configuration.
//! - **Sessions** are a random id in an `HttpOnly`, `SameSite=Lax` cookie, `Secure` and
//!   `__Host-`-prefixed unless `cookie_secure = false` (allowed only on a loopback address). The
//!   store keeps the session under the id's SHA-256, for eight hours, with only the tenant, the
//!   username, the object id and a CSRF token. A sign-in is bound to the browser that started it
//!   by a short-lived cookie, so a callback replayed in another browser fails (login CSRF).
//! - **CSRF**: every POST form carries the session's token, compared in constant time before the
//!   rest of the form is read; a missing or wrong token gets 403 "the form has expired". Behind
//!   it, tower-http's `CsrfLayer` refuses cross-site POSTs by `Sec-Fetch-Site`/`Origin`.
//! - **Tenant isolation** is the store's: every read takes the signed-in user's tenant, so another
//!   organisation's configuration is "not found", never "forbidden".
//! - **The EHR sign-in proves the URL, nothing more**: scopes `openid fhirUser`, a SMART client
//!   that allows exactly the configuration's URL as issuer, pending state single-use in the store
//!   and bound to the session. Only the EHR user id is kept; tokens are dropped.
//! - **Server-rendered, accessible HTML**: askama templates (auto-escaped), labels on every
//!   field, errors next to fields and summarised at the top, no JavaScript needed except for the
//!   optional copy buttons (served as a file, so the CSP allows no inline script).
//! - **Errors** keep their status and say what to do; internal errors say "something went wrong"
//!   and are logged. axum's own rejections (a malformed address, query, form or JSON body, a
//!   wrong method) and the layers' refusals (cross-site, body limit, timeout) get the same error
//!   page, or problem JSON under `/api/v1`, never plain text. Logs carry route templates and
//!   request ids (`visitbridge_web::with_request_ids`), never query strings (the OAuth callbacks
//!   carry codes), and never tokens.
//! - **Visits report**: the recent visits (7, 30 or 90 days) of the configurations a person may
//!   see, each with its start, duration, organiser's object id, attendee count, lobby wait and
//!   status as [`visitbridge_audit::VisitTimeline`] derives them from the stored events, live
//!   rather than a day late; a page per visit with its timeline and the write-back state of each
//!   event per sink; the same as CSV and JSON. Only what the store holds is shown: participants
//!   are "Clinician", "Patient / guest 1" and so on, never names.
//! - **A JSON API** under `/api/v1` does what the pages do, for automation, with per-tenant API
//!   keys acting as admins and RFC 9457 problem documents (see `docs/portal-api.md`). Approving
//!   stays interactive: it needs the approver's EHR sign-in.
//!
//! # Example
//!
//! ```no_run
//! use visitbridge_portal::{AppState, PortalConfig, app};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PortalConfig::from_toml(&std::fs::read_to_string("portal.toml")?)?;
//! let store = config.database.open(&config.database_options()).await?;
//! let listen = config.listen;
//! let state = AppState::new(config, store)?;
//! let listener = tokio::net::TcpListener::bind(listen).await?;
//! axum::serve(listener, app(state)).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod api;
mod auth;
mod config;
mod ehr;
mod error;
mod extract;
mod fhir;
mod forms;
mod pages;
mod probe;
mod service;
mod session;
mod state;
mod views;
mod visit_pages;

use std::time::Duration;

use axum::{
    Router,
    extract::State,
    http::{Method, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use tower_http::{
    csrf::CsrfLayer, limit::RequestBodyLimitLayer,
    sensitive_headers::SetSensitiveRequestHeadersLayer, timeout::TimeoutLayer,
};
use visitbridge_web::SecurityHeaders;

pub use config::{
    ApiKeyConfig, ApprovalConfig, Cli, Command, ConfigError, EhrClientAuthMethod, EhrSignInConfig,
    EntraConfig, HttpTimeouts, PortalConfig, ServerLimits, TenantAdmins,
};
pub use state::AppState;

use crate::error::PortalError;

/// Pages wait at most this long (probes and sign-ins have their own, shorter budgets).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Forms and API bodies are small.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// No inline script or style, no framing, nothing loaded from elsewhere. `form-action` is left
/// out on purpose: the EHR sign-in form redirects to the EHR, which browsers check against it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

const CSS: &str = include_str!("../static/portal.css");
const JS: &str = include_str!("../static/portal.js");

/// The portal's router (separate from `main` so tests drive it without a socket).
pub fn app(state: AppState) -> Router {
    let origin = state
        .config()
        .public_base_url
        .origin()
        .ascii_serialization();
    // Its refusal is rendered by `render_layer_rejections`, which knows a page from the API.
    let csrf = CsrfLayer::new();
    let csrf = csrf.clone().add_trusted_origin(&origin).unwrap_or(csrf);
    let router = Router::new()
        .route("/", get(auth::home))
        .route("/signin", get(auth::sign_in))
        .route("/signin/callback", get(auth::sign_in_callback))
        .route("/signout", post(auth::sign_out))
        .route("/configurations", get(pages::list).post(pages::create))
        .route("/configurations/new", get(pages::new_form))
        .route("/configurations/{id}", get(pages::detail))
        .route(
            "/configurations/{id}/edit",
            get(pages::edit_form).post(pages::edit),
        )
        .route("/configurations/{id}/submit", post(pages::submit))
        .route("/configurations/{id}/ehr-sign-in", post(ehr::begin))
        .route("/configurations/{id}/approve", post(pages::approve))
        .route("/configurations/{id}/reject", post(pages::reject))
        .route("/configurations/{id}/history", get(pages::history))
        .route("/configurations/{id}/records", get(pages::records))
        .route("/approvals/ehr-callback", get(ehr::callback))
        .route("/visits", get(visit_pages::list))
        .route("/visits.csv", get(visit_pages::csv))
        .route("/visits/{id}", get(visit_pages::detail))
        .route("/visits/{id}/redrive", post(visit_pages::redrive))
        .route("/static/portal.css", get(css))
        .route("/static/portal.js", get(js))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .nest("/api/v1", api::router())
        .nest("/fhir", fhir::router())
        .fallback(|| async { PortalError::NoSuchPage })
        // After the nest: the API's routes keep their own (problem JSON) fallback.
        .method_not_allowed_fallback(|method: Method| async move {
            PortalError::MethodNotAllowed(method.to_string())
        })
        .layer(csrf)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Outside the layers whose refusals it renders, inside those that add headers to it.
        .layer(middleware::from_fn(error::render_layer_rejections))
        // nosniff, no-store, no framing, and no Referer (the OAuth callbacks carry codes in
        // their query: never pass them on).
        .layer(SecurityHeaders::new(CONTENT_SECURITY_POLICY).deny_framing());
    // Request ids and one log line per request, naming the route template only (the callbacks'
    // queries carry authorization codes and states).
    visitbridge_web::with_request_ids(router)
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .with_state(state)
}

async fn css() -> Response {
    static_file("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    static_file("text/javascript; charset=utf-8", JS)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Ready when the database answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state
        .store()
        .get_session("readiness-probe", Utc::now())
        .await
    {
        Ok(_) => "ready".into_response(),
        Err(e) => {
            tracing::error!(error = %e, "not ready: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer",
            )
                .into_response()
        }
    }
}
