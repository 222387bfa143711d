//! The VisitBridge launch service: EHR launches into Teams meetings, Graph's change
//! notifications, the clinician's live visit page and write-back to the EHR.
//!
//! This crate is wiring: routes, configuration, error pages and the order of calls. The
//! decisions live in library crates — which visit a launch is for and the live panel in
//! `visitbridge-visit`, SMART in `visitbridge-smart`, FHIR in `visitbridge-fhir`, Teams in
//! `visitbridge-graph`, AuditEvents and the outbox in `visitbridge-audit`, persistence in
//! `visitbridge-store`.
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `GET /launch/provider`, `/launch/patient`, `/launch/device-test` | the integration records' launch URLs (`iss`, `launch`, record context) |
//! | `GET /launch/callback` | the SMART redirect URI of every record |
//! | `GET /launch/microsoft/callback` | the clinician's one-time Microsoft sign-in |
//! | `GET /visits/{id}`, `GET /visits/{id}/events`, `POST /visits/{id}/patient-link` | the clinician's visit page, its live panel (server-sent events), patient links |
//! | `GET /join/{token}`, `GET /join/wait` | signed patient links, the patient's waiting page |
//! | `POST /graph/notifications`, `POST /graph/lifecycle` | Graph's change and lifecycle notifications |
//! | `GET /.well-known/jwks.json`, `/healthz`, `/readyz` | our public keys, probes |
//! | `GET /metrics` | Prometheus text: on the main listener only with `metrics_bearer_token` (else 404); always on the separate `metrics_listen` ([`metrics_app`]) |
//!
//! # Design choices
//!
//! - **Approved issuers only.** A launch's `iss` is looked up among the *approved* snapshots of
//!   configurations (in the environment its record names) before anything is sent anywhere; a
//!   test/production mix-up gets a page that names it. Each configuration version and record kind
//!   gets one long-lived SMART client, so discovery and the EHR's keys stay cached (and discovery
//!   is refreshed in the background).
//! - **Browser-bound, single-use launches, nothing stored before the callback.** A pending
//!   launch is sealed (AES-256-GCM, key derived from the deployment secret) in an `HttpOnly`
//!   cookie named after its `state`, so an unauthenticated launch start writes no row and any
//!   replica can complete it; the callback marks the state used in the store (a replay is
//!   refused). Each launch carries a hash of an `HttpOnly` browser cookie and the callback must
//!   come from that browser. Sessions (visit page, waiting patient) are random ids in an
//!   `HttpOnly` cookie, stored only as their SHA-256, with a CSRF token for the one form.
//! - **Two round trips for a warm launch**: after the browser returns with the code, the token
//!   exchange, then the FHIR reads and `createOrGet` concurrently (the meeting's key comes from
//!   the launch context); a new meeting adds the policy PATCH, made before any join URL is given
//!   out. Discovery, the EHR's keys and the Graph app token are cached and refreshed off the
//!   request path; the patient's join URL is fetched after the clinician's page is answered and
//!   kept on the visit's row, so a patient (even after a restart) costs no Graph call.
//! - **One meeting per visit**: the store's unique (configuration, `externalId`) row is claimed
//!   first and keeps the first organiser, and Graph's `createOrGet` is idempotent per organiser
//!   and `externalId`.
//! - **Persist, then acknowledge.** Graph's notifications are stored as AuditEvents with their
//!   outbox rows (and a call end's reconciliation is scheduled) before the webhook answers `202`;
//!   the live panel and subscription upkeep follow. An unreadable item of a batch is counted
//!   (`visitbridge_notifications_total{result="unreadable"}`) and logged without its content; the
//!   rest of the batch is kept, since Graph never delivers a `4xx`-answered batch again.
//! - **Meeting times.** The meeting is planned at the Appointment's start and end (or start +
//!   `minutesDuration`), sent with `createOrGet` when read before it, else set by the PATCH that
//!   follows (with the policy, for a new meeting); a moved appointment is patched at the next
//!   launch. The times only go to the customer's tenant: they are in no row and no pending
//!   sign-in, so the launch that continues the first Microsoft sign-in leaves them to Graph.
//! - **Bounded connections.** Served by `visitbridge_web::serve` (`[server]`): a header read
//!   timeout and a cap on connections per client IP. The rest of the edge is the portal's too,
//!   from `visitbridge-web`: the security headers of every answer, request ids (an internal
//!   error's page shows its own) with one log line per request, the configuration loader.
//! - **Metrics** in a `prometheus-client` registry of the service's own (not a process-wide
//!   recorder), rendered as Prometheus text at each scrape.
//! - **Nothing lost across a restart.** Each visit's subscription and its expiry, and when to
//!   reconcile it with its attendance report, are on the visit's row: notifications map to their
//!   visit by subscription id from the store, and one upkeep tick (`[upkeep]`) renews the
//!   subscriptions due, removes those of old visits, and reads the attendance reports of ended
//!   calls (after a delay, with bounded retries) to record what notifications missed, once.
//! - **No PHI.** Patient resources are never read; Appointment references are kept as ids; Graph's
//!   parser drops display names; logs name routes, not URLs (which carry codes and tokens).
//!
//! # Example
//!
//! ```no_run
//! use visitbridge_launch::{LaunchConfig, LaunchService, app};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Development defaults: loopback, generated keys and secrets (see `LaunchConfig`).
//! let config = LaunchConfig {
//!     dev_mode: true,
//!     ..LaunchConfig::default()
//! };
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! let base = config.public_base(listener.local_addr()?);
//! let limits = config.server.clone();
//! let service = LaunchService::build(config, base).await?;
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! visitbridge_web::serve(listener, app(service.state()), limits, shutdown).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod clients;
mod config;
mod error;
mod launch;
mod meeting;
mod microsoft;
mod observe;
mod patient;
mod pending;
mod reconcile;
mod session;
mod state;
mod views;
mod visits;
mod webhook;
mod writeback;

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use visitbridge_approval::RecordKind;
use visitbridge_web::SecurityHeaders;

pub use config::{
    BackendKeyConfig, Cli, Command, ConfigError, ConfigurationSinks, CookieConfig, HttpTimeouts,
    LaunchConfig, MicrosoftConfig, SameSite, ServerLimits, UpkeepConfig, WritebackConfig,
};
pub use state::{AppState, BuildError, LaunchService};

use crate::{
    error::{LaunchError, PageForm, PagePath},
    observe::{MetricsAccess, launch_outcome},
    views::IndexPage,
};

/// The service's router (separate from `main` so tests drive it without a socket).
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(guarded_metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/static/{name}", get(static_file))
        .route(
            "/launch/provider",
            launch_get(RecordKind::ProviderLaunch, "provider"),
        )
        .route(
            "/launch/patient",
            launch_get(RecordKind::PatientLaunch, "patient"),
        )
        .route(
            "/launch/device-test",
            launch_get(RecordKind::DeviceTest, "device_test"),
        )
        .route("/launch/callback", get(callback))
        .route("/launch/microsoft/callback", get(microsoft_callback))
        .route("/visits/{id}", get(visit_page))
        .route("/visits/{id}/events", get(visit_events))
        .route("/visits/{id}/patient-link", post(patient_link))
        .route("/join/wait", get(join_wait))
        .route("/join/{token}", get(join_link))
        .fallback(not_found)
        .with_state(state.clone());
    if let Some(webhook) = &state.inner.webhook {
        router = router.nest(
            "/graph",
            webhook
                .clone()
                .layer(middleware::map_response(webhook_rejection)),
        );
    }
    // Last, so it reaches every route above, the webhook's included.
    edge(router.method_not_allowed_fallback(method_not_allowed))
}

/// The router of the separate metrics listener (`metrics_listen`): `/metrics`, unauthenticated,
/// and nothing else. Bind it to an address only the scraper reaches.
pub fn metrics_app(state: AppState) -> Router {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
        .method_not_allowed_fallback(method_not_allowed);
    edge(router)
}

/// The layers of every answer: the security headers, request ids (an internal error's page shows
/// its request's), one log line per request.
fn edge(router: Router) -> Router {
    visitbridge_web::with_request_ids(
        router
            .layer(SecurityHeaders::new(views::DEFAULT_CSP))
            .layer(middleware::from_fn(error::reference_pages)),
    )
}

/// Where the launch service's problem types live.
const PROBLEM_BASE: &str = "urn:visitbridge:problem:launch:";

/// The webhook's own refusals have no body (no hint for a prober); axum's rejections before it
/// (a body over the limit, a body that could not be read) are plain text: those become problem
/// JSON, the format of the service's machine-facing routes.
async fn webhook_rejection(response: Response) -> Response {
    let plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let status = response.status();
    if !plain_text || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (slug, title, detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too-large",
            "Too large",
            "the notification body is over the size this service accepts",
        ),
        s if s.is_client_error() => (
            "bad-request",
            "Bad request",
            "the notification body could not be read",
        ),
        _ => (
            "unavailable",
            "Unavailable",
            "the notification could not be handled now; deliver it again later",
        ),
    };
    visitbridge_web::problem(status, PROBLEM_BASE, slug, title, detail)
}

fn respond(result: Result<Response, LaunchError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn index() -> Response {
    views::html(StatusCode::OK, &IndexPage)
}

async fn not_found() -> Response {
    LaunchError::NotFound.into_response()
}

/// A known route asked with another method; axum adds the `Allow` header.
async fn method_not_allowed(method: Method) -> Response {
    LaunchError::MethodNotAllowed(method.to_string()).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.inner.store.outbox_depth().await {
        Ok(_) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer",
            )
                .into_response()
        }
    }
}

/// `/metrics` on the main listener: only with the configured bearer token, else not there.
async fn guarded_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match observe::metrics_access(state.inner.metrics_token.as_ref(), &headers) {
        MetricsAccess::Allowed => metrics(State(state)).await,
        MetricsAccess::Hidden => LaunchError::NotFound.into_response(),
        MetricsAccess::Denied => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required",
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let depth = state.inner.store.outbox_depth().await.ok();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.inner.metrics.render(depth),
    )
        .into_response()
}

async fn jwks(State(state): State<AppState>) -> Response {
    match visitbridge_smart::Jwks::from_keys(state.signing_keys()) {
        Ok(jwks) => (
            [(header::CACHE_CONTROL, "public, max-age=300")],
            Json(jwks.to_json()),
        )
            .into_response(),
        Err(e) => LaunchError::internal(e).into_response(),
    }
}

async fn static_file(PagePath(name): PagePath<String>) -> Response {
    match views::static_file(&name) {
        Some((body, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
            .into_response(),
        None => LaunchError::NotFound.into_response(),
    }
}

/// The `GET` route of one kind of launch: begins it and counts its outcome under `name`.
fn launch_get(kind: RecordKind, name: &'static str) -> MethodRouter<AppState> {
    get(
        move |State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap| async move {
            let response = respond(
                launch::begin(&state, kind, query.as_deref().unwrap_or(""), &headers).await,
            );
            state.inner.metrics.launch(name, launch_outcome(&response));
            response
        },
    )
}

/// The name a callback is counted under: its launch's kind, `callback` when the launch is unknown.
fn callback_name(kind: Option<RecordKind>) -> &'static str {
    match kind {
        Some(RecordKind::ProviderLaunch) => "provider_callback",
        Some(RecordKind::PatientLaunch) => "patient_callback",
        Some(RecordKind::DeviceTest) => "device_test_callback",
        None => "callback",
    }
}

async fn callback(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.as_deref().unwrap_or("");
    let (kind, mut response) = match launch::callback(&state, query, &headers).await {
        Ok((kind, response)) => (Some(kind), response),
        // A failure of a launch whose cookie opens is counted under that launch's kind.
        Err(e) => (pending_kind(&state, query, &headers), e.into_response()),
    };
    state
        .inner
        .metrics
        .launch(callback_name(kind), launch_outcome(&response));
    // Whatever the outcome, this launch is over: its cookie goes.
    if let Some(clear) = state.inner.pending.clear(query, &headers) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// The kind of the launch the callback `query` names, if its sealed cookie opens.
fn pending_kind(state: &AppState, query: &str, headers: &HeaderMap) -> Option<RecordKind> {
    let state_param = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())?;
    let pending = state.inner.pending.peek(&state_param, headers)?;
    let kind = pending.record_context.get(launch::KIND_KEY)?;
    launch::kind_of(kind)
}

async fn microsoft_callback(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let response =
        respond(launch::microsoft_callback(&state, query.as_deref().unwrap_or(""), &headers).await);
    state
        .inner
        .metrics
        .launch("microsoft_callback", launch_outcome(&response));
    response
}

async fn visit_page(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    headers: HeaderMap,
) -> Response {
    respond(visits::page(&state, &headers, &id).await)
}

async fn visit_events(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    headers: HeaderMap,
) -> Response {
    match visits::events(&state, &headers, &id).await {
        Ok(sse) => sse.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
}

async fn patient_link(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    headers: HeaderMap,
    PageForm(form): PageForm<LinkForm>,
) -> Response {
    respond(visits::patient_link(&state, &headers, &id, &form.csrf).await)
}

async fn join_wait(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let response = respond(patient::wait(&state, &headers).await);
    state
        .inner
        .metrics
        .launch("patient_wait", launch_outcome(&response));
    response
}

async fn join_link(
    State(state): State<AppState>,
    PagePath(token): PagePath<String>,
    headers: HeaderMap,
) -> Response {
    let response = respond(patient::join_link(&state, &headers, &token).await);
    state
        .inner
        .metrics
        .launch("patient_link", launch_outcome(&response));
    response
}
