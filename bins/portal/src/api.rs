//! The JSON API (`/api/v1`): the portal's operations for automation, authenticated by per-tenant
//! API keys that act as an admin of their organisation. Errors are RFC 9457 problem documents.
//! Documented in `docs/portal-api.md`.

use axum::{
    Json, Router,
    extract::{FromRequestParts, RawQuery, State},
    http::{Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitbridge_approval::{
    Actor, Configuration, HistoryEntry, IntegrationRecords, Rejection, TenantId, Username,
    environment_warning,
};

use crate::{
    AppState,
    auth::tenant_for,
    error::{ApiError, PortalError},
    extract::{ApiJson, ApiPath},
    forms::SettingsInput,
    service,
};
use visitbridge_report::{
    self as report, EventView, Include, ParticipantView, Period, ReportFilter, VisitDetail,
    VisitSummary,
};

/// The routes under `/api/v1`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/configurations", get(list).post(create))
        .route("/configurations/{id}", get(show).put(edit))
        .route("/configurations/{id}/submit", post(submit))
        .route("/configurations/{id}/history", get(history))
        .route("/configurations/{id}/records", get(records))
        .route("/configurations/{id}/approve", post(interactive_only))
        .route("/configurations/{id}/reject", post(interactive_only))
        .route("/visits", get(visits))
        .route("/visits/{id}", get(visit))
        .fallback(|| async { ApiError(PortalError::NoSuchPage) })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError(PortalError::MethodNotAllowed(method.to_string()))
        })
}

/// The caller, authenticated by its API key: an admin of the key's organisation.
pub(crate) struct ApiClient {
    tenant: TenantId,
    actor: Actor,
    /// The key may read AuditEvents at `/fhir` (`audit = true`).
    audit: bool,
}

impl ApiClient {
    /// The client of a request's `Authorization: Bearer <API key>`; `None` without a bearer
    /// token, [`PortalError::SignInRequired`] for an unknown key.
    pub(crate) async fn of_bearer(
        parts: &Parts,
        state: &AppState,
    ) -> Result<Option<Self>, PortalError> {
        let Some(presented) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Ok(None);
        };
        // Every key is compared (in constant time), so the time taken does not tell which
        // key came close.
        let mut matched = None;
        for key in &state.config().api_keys {
            if key.key.constant_time_eq(presented) && matched.is_none() {
                matched = Some(key);
            }
        }
        let Some(key) = matched else {
            tracing::warn!("api request with an unknown key");
            return Err(PortalError::SignInRequired);
        };
        let username =
            Username::new(format!("api-key:{}", key.name)).map_err(PortalError::internal)?;
        let tenant = tenant_for(state, &key.microsoft_tenant_id, Some(&username)).await?;
        Ok(Some(Self {
            actor: Actor::admin(tenant.clone(), username),
            tenant,
            audit: key.audit,
        }))
    }

    /// The key's organisation.
    pub(crate) fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Whether the key may read AuditEvents (they name patients by id: not every automation
    /// that manages configurations needs them).
    pub(crate) fn may_audit(&self) -> bool {
        self.audit
    }
}

impl FromRequestParts<AppState> for ApiClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self::of_bearer(parts, state)
            .await?
            .ok_or(PortalError::SignInRequired)?)
    }
}

#[derive(Serialize)]
struct ValidationView {
    validated_by: String,
    validated_at: DateTime<Utc>,
    ehr_user_id: String,
}

#[derive(Serialize)]
struct ApprovedView {
    version: u32,
    approved_at: DateTime<Utc>,
    approved_by: String,
    settings: SettingsInput,
}

/// A configuration as the API shows it: `settings` has the same shape as the create and edit
/// bodies.
#[derive(Serialize)]
struct ConfigurationView<'a> {
    id: &'a str,
    state: &'static str,
    version: u32,
    revision: u64,
    settings: SettingsInput,
    ehr_validation: Option<ValidationView>,
    approved: Option<ApprovedView>,
    rejection: Option<&'a Rejection>,
    environment_warning: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    portal_url: String,
}

fn view<'a>(state: &AppState, c: &'a Configuration) -> ConfigurationView<'a> {
    let base = state
        .config()
        .public_base_url
        .as_str()
        .trim_end_matches('/');
    ConfigurationView {
        id: c.id().as_str(),
        state: c.state().as_str(),
        version: c.version(),
        revision: c.revision(),
        settings: SettingsInput::from_settings(c.settings()),
        ehr_validation: c.ehr_validation().map(|v| ValidationView {
            validated_by: v.validated_by.to_string(),
            validated_at: v.validated_at,
            ehr_user_id: v.ehr_user_id.to_string(),
        }),
        approved: c.approved().map(|a| ApprovedView {
            version: a.version,
            approved_at: a.approved_at,
            approved_by: a.approved_by.to_string(),
            settings: SettingsInput::from_settings(&a.settings),
        }),
        rejection: c.rejection(),
        environment_warning: environment_warning(
            &c.settings().fhir_base_url,
            c.settings().environment,
        )
        .map(|w| w.to_string()),
        created_at: c.created_at(),
        updated_at: c.updated_at(),
        portal_url: format!("{base}/configurations/{}", c.id()),
    }
}

fn json_of(state: &AppState, status: StatusCode, c: &Configuration) -> Response {
    (status, Json(view(state, c))).into_response()
}

#[derive(Serialize)]
struct List<'a> {
    configurations: Vec<ConfigurationView<'a>>,
}

async fn list(State(state): State<AppState>, client: ApiClient) -> Result<Response, ApiError> {
    let all = state.store().list_configurations(&client.tenant).await?;
    let configurations = all.iter().map(|c| view(&state, c)).collect();
    Ok(Json(List { configurations }).into_response())
}

async fn create(
    State(state): State<AppState>,
    client: ApiClient,
    ApiJson(input): ApiJson<SettingsInput>,
) -> Result<Response, ApiError> {
    let c = service::create(&state, &client.actor, &input)
        .await
        .map_err(PortalError::from)?;
    let mut response = json_of(&state, StatusCode::CREATED, &c);
    if let Ok(location) = format!("/api/v1/configurations/{}", c.id()).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn show(
    State(state): State<AppState>,
    client: ApiClient,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let c = service::load(&state, &client.tenant, &id).await?;
    Ok(json_of(&state, StatusCode::OK, &c))
}

/// The edit body: the settings, and optionally the revision the change is based on.
#[derive(Deserialize)]
struct EditBody {
    #[serde(flatten)]
    settings: SettingsInput,
    #[serde(default)]
    revision: Option<u64>,
}

async fn edit(
    State(state): State<AppState>,
    client: ApiClient,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EditBody>,
) -> Result<Response, ApiError> {
    let c = service::load(&state, &client.tenant, &id).await?;
    let c = service::edit(&state, &client.actor, &c, &body.settings, body.revision)
        .await
        .map_err(PortalError::from)?;
    Ok(json_of(&state, StatusCode::OK, &c))
}

async fn submit(
    State(state): State<AppState>,
    client: ApiClient,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let c = service::load(&state, &client.tenant, &id).await?;
    let c = service::save(&state, c.submit(&client.actor, Utc::now())).await?;
    Ok(json_of(&state, StatusCode::OK, &c))
}

#[derive(Serialize)]
struct History {
    history: Vec<HistoryEntry>,
}

async fn history(
    State(state): State<AppState>,
    client: ApiClient,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let c = service::load(&state, &client.tenant, &id).await?;
    let history = state
        .store()
        .configuration_history(&client.tenant, c.id())
        .await?;
    Ok(Json(History { history }).into_response())
}

async fn records(
    State(state): State<AppState>,
    client: ApiClient,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<IntegrationRecords>, ApiError> {
    let c = service::load(&state, &client.tenant, &id).await?;
    c.integration_records(state.launch_urls())
        .map(Json)
        .ok_or_else(|| {
            PortalError::Conflict(
                "there are no integration records yet: they are made when the configuration is approved"
                    .to_owned(),
            )
            .into()
        })
}

async fn interactive_only(
    State(state): State<AppState>,
    client: ApiClient,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let c = service::load(&state, &client.tenant, &id).await?;
    let base = state
        .config()
        .public_base_url
        .as_str()
        .trim_end_matches('/');
    // A 403 names nobody; the configuration page shows the approver to those who may see it.
    Err(PortalError::Forbidden(format!(
        "approving or rejecting needs the configuration's named approver to sign in to Microsoft and to the EHR interactively: open {base}/configurations/{} in a browser",
        c.id()
    ))
    .into())
}

fn public_url(state: &AppState, path: &str) -> String {
    let base = state
        .config()
        .public_base_url
        .as_str()
        .trim_end_matches('/');
    format!("{base}{path}")
}

/// A visit as the API lists it: the report's columns and the address of its page.
#[derive(Serialize)]
struct VisitView<'a> {
    #[serde(flatten)]
    visit: &'a VisitSummary,
    portal_url: String,
}

fn visit_view<'a>(state: &AppState, visit: &'a VisitSummary) -> VisitView<'a> {
    VisitView {
        portal_url: public_url(state, &format!("/visits/{}", visit.id)),
        visit,
    }
}

#[derive(Serialize)]
struct VisitList<'a> {
    /// The last so many days, when the period is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    days: Option<u16>,
    since: DateTime<Utc>,
    before: DateTime<Utc>,
    total: u64,
    page: u32,
    per_page: u32,
    pages: u32,
    /// The next page's URL, while there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    visits: Vec<VisitView<'a>>,
}

/// `GET /api/v1/visits?days=30&per_page=500&page=2…`: the visits of the key's organisation
/// that the filter picks (the same parameters as the portal's report), a page at a time.
async fn visits(
    State(state): State<AppState>,
    client: ApiClient,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let filter = ReportFilter::from_query(query.as_deref())?;
    let report = report::recent(
        state.store(),
        &client.tenant,
        |_| true,
        &filter,
        Utc::now(),
        Include::default(),
    )
    .await?;
    let next = (filter.page < report.pages).then(|| {
        public_url(
            &state,
            &format!(
                "/api/v1/visits?{}",
                filter.on_page(filter.page + 1).to_query()
            ),
        )
    });
    Ok(Json(VisitList {
        days: match filter.period {
            Period::LastDays(days) => Some(days),
            Period::Dates { .. } => None,
        },
        since: report.since,
        before: report.before,
        total: report.total,
        page: filter.page,
        per_page: filter.per_page,
        pages: report.pages,
        next,
        visits: report
            .visits
            .iter()
            .map(|v| visit_view(&state, v))
            .collect(),
    })
    .into_response())
}

#[derive(Serialize)]
struct VisitDetailView<'a> {
    visit: VisitView<'a>,
    call_started_at: Option<DateTime<Utc>>,
    call_ended_at: Option<DateTime<Utc>>,
    participants: &'a [ParticipantView],
    events: &'a [EventView],
}

/// `GET /api/v1/visits/{id}`: one visit with its timeline and write-back.
async fn visit(
    State(state): State<AppState>,
    client: ApiClient,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let VisitDetail {
        visit,
        call_started_at,
        call_ended_at,
        participants,
        events,
    } = report::detail(state.store(), &client.tenant, &id, |_| {
        Ok::<(), PortalError>(())
    })
    .await?;
    Ok(Json(VisitDetailView {
        visit: visit_view(&state, &visit),
        call_started_at,
        call_ended_at,
        participants: &participants,
        events: &events,
    })
    .into_response())
}
