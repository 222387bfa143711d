//! The auditor's FHIR endpoint (`/fhir`): `GET /fhir/AuditEvent` (search), `GET
//! /fhir/AuditEvent/{id}` (read) and `GET /fhir/metadata` (the CapabilityStatement), for an admin
//! signed in to the portal or an API key sent as a bearer token, over their organisation's
//! configurations. What a search means is `visitbridge_audit::auditor`'s; this maps requests and
//! answers. Every answer is `application/fhir+json`; every refusal an OperationOutcome.

use axum::{
    Router,
    extract::{FromRequestParts, Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::Utc;
use visitbridge_approval::{ConfigurationId, TenantId};
use visitbridge_audit::auditor::{
    AuditEventSearch, capability_statement, read_audit_event, search_audit_events,
};
use visitbridge_fhir::server::{FHIR_JSON, RequestError};
use visitbridge_visit::ReferenceKeys;

use crate::{AppState, api::ApiClient, error::PortalError, session::User};

/// The routes under `/fhir`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/AuditEvent", get(search))
        .route("/AuditEvent/{id}", get(read))
        .fallback(|| async {
            Refusal(RequestError::NotFound(
                "this FHIR endpoint serves AuditEvent and metadata only".to_owned(),
            ))
        })
        .method_not_allowed_fallback(|| async {
            Refusal(RequestError::MethodNotAllowed(
                "this FHIR endpoint is read-only (GET)".to_owned(),
            ))
        })
}

/// A FHIR answer.
fn fhir_json(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// A refusal, as an OperationOutcome.
struct Refusal(RequestError);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = fhir_json(status, self.0.outcome().to_string());
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"visitbridge-fhir\""),
            );
        }
        response
    }
}

/// What a layer's refusal (a timeout, a body too large) is as an OperationOutcome.
pub(crate) fn refusal(error: PortalError) -> Response {
    Refusal::from(error).into_response()
}

impl From<PortalError> for Refusal {
    fn from(e: PortalError) -> Self {
        Self(match e {
            PortalError::BadRequest(why) => RequestError::invalid("request", why),
            PortalError::NoSuchPage => RequestError::NotFound("no such resource".to_owned()),
            PortalError::MethodNotAllowed(_) => {
                RequestError::MethodNotAllowed("this FHIR endpoint is read-only (GET)".to_owned())
            }
            PortalError::TooLarge => RequestError::TooLarge,
            PortalError::TimedOut => RequestError::Timeout,
            PortalError::SignInRequired => RequestError::Login(
                "sign in to the portal as an admin, or send an API key as a bearer token"
                    .to_owned(),
            ),
            PortalError::Forbidden(why) => RequestError::Forbidden(why),
            PortalError::CrossSite | PortalError::CsrfRejected => {
                RequestError::Forbidden("cross-site request refused".to_owned())
            }
            other => {
                tracing::warn!(error = %other, "the FHIR endpoint failed");
                RequestError::Exception
            }
        })
    }
}

/// Whose AuditEvents a request may read: an organisation, through an admin's session or an API
/// key.
struct Auditor {
    tenant: TenantId,
}

impl FromRequestParts<AppState> for Auditor {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        if let Some(client) = ApiClient::of_bearer(parts, state).await? {
            if !client.may_audit() {
                return Err(Refusal(RequestError::Forbidden(
                    "this API key may not read AuditEvents (give it audit = true in the portal's \
                     configuration)"
                        .to_owned(),
                )));
            }
            return Ok(Self {
                tenant: client.tenant().clone(),
            });
        }
        let user = User::load(state, &parts.headers)
            .await?
            .ok_or(PortalError::SignInRequired)?;
        if !user.is_admin {
            return Err(Refusal(RequestError::Forbidden(
                "only your organisation's VisitBridge admins may read its AuditEvents".to_owned(),
            )));
        }
        Ok(Self {
            tenant: user.data.tenant,
        })
    }
}

impl Auditor {
    /// The configurations whose events the auditor reads: all of the organisation's.
    async fn configurations(&self, state: &AppState) -> Result<Vec<ConfigurationId>, Refusal> {
        Ok(state
            .store()
            .list_configurations(&self.tenant)
            .await
            .map_err(PortalError::from)?
            .iter()
            .map(|c| c.id().clone())
            .collect())
    }
}

/// The endpoint's absolute URL.
fn base(state: &AppState) -> String {
    format!(
        "{}/fhir",
        state
            .config()
            .public_base_url
            .as_str()
            .trim_end_matches('/')
    )
}

/// Refuses a request whose `Accept` takes no JSON (FHIR's XML, say): this endpoint answers JSON
/// only. No `Accept`, `*/*`, `application/*` or any JSON type is fine.
fn accepts_json(headers: &HeaderMap) -> Result<(), Refusal> {
    let accept: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect();
    if accept.is_empty()
        || accept
            .iter()
            .any(|t| t == "*/*" || t == "application/*" || t.ends_with("json"))
    {
        Ok(())
    } else {
        Err(Refusal(RequestError::NotAcceptable(
            "this endpoint answers application/fhir+json only".to_owned(),
        )))
    }
}

/// `Prefer: handling=strict`.
fn strict(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("handling=strict"))
}

/// `GET /fhir/metadata`: open, as FHIR servers' are (it names no data).
async fn metadata(State(state): State<AppState>) -> Response {
    fhir_json(
        StatusCode::OK,
        capability_statement(&base(&state), env!("CARGO_PKG_VERSION"), Utc::now()).to_string(),
    )
}

/// `GET /fhir/AuditEvent?…`.
async fn search(
    State(state): State<AppState>,
    auditor: Auditor,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    accepts_json(&headers)?;
    let search = AuditEventSearch::parse(query.as_deref(), strict(&headers)).map_err(Refusal)?;
    let secret = &state.config().reference_secret;
    if secret.is_empty() && search.by_reference() {
        return Err(Refusal(RequestError::NotSupported(
            "searching by entity or patient needs the launch service's reference secret \
             (reference_secret in the portal's configuration): the store keeps those ids only \
             as keyed hashes"
                .to_owned(),
        )));
    }
    let configurations = auditor.configurations(&state).await?;
    let bundle = search_audit_events(
        state.store(),
        &ReferenceKeys::new(secret),
        &configurations,
        &search,
        &base(&state),
        Utc::now(),
    )
    .await
    .map_err(PortalError::from)?;
    Ok(fhir_json(StatusCode::OK, bundle.to_string()))
}

/// `GET /fhir/AuditEvent/{id}`.
async fn read(
    State(state): State<AppState>,
    auditor: Auditor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    accepts_json(&headers)?;
    let configurations = auditor.configurations(&state).await?;
    let resource = read_audit_event(state.store(), &configurations, &id)
        .await
        .map_err(Refusal)?;
    Ok(fhir_json(StatusCode::OK, resource.to_string()))
}
