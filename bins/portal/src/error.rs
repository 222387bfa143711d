//! The one error type of the portal's handlers, rendered as an HTML page or as RFC 9457 problem
//! JSON: client errors keep their status and say what to do; internal errors say "something went
//! wrong" and only the log gets the cause.

use axum::{
    Json,
    extract::{
        Request,
        rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tower_http::csrf::ProtectionError;
use visitbridge_approval::TransitionError;
use visitbridge_store::StoreError;

use crate::views::{ErrorPage, Layout, render};

/// A cause kept for the log only.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PortalError {
    /// No (valid) session.
    #[error("sign in to continue")]
    SignInRequired,
    /// The form's CSRF token is missing or wrong (or the session it belonged to ended).
    #[error(
        "this form has expired or did not come from this portal: reload the page and try again"
    )]
    CsrfRejected,
    /// The signed-in person may not do this; the message says who may.
    #[error("{0}")]
    Forbidden(String),
    /// Not found, or another organisation's (which must look the same).
    #[error("this configuration does not exist, or belongs to another organisation")]
    NotFound,
    /// No such visit, or another organisation's (which must look the same).
    #[error("this visit does not exist, or belongs to another organisation")]
    VisitNotFound,
    /// No route at this address.
    #[error("there is nothing at this address")]
    NoSuchPage,
    /// A known address asked with a method it does not answer (the `Allow` header lists those
    /// it does).
    #[error("this address does not accept {0} requests")]
    MethodNotAllowed(String),
    /// A body over the size limit.
    #[error("the request is too large: forms and API bodies are limited to 64 KiB")]
    TooLarge,
    /// A browser sent a change from another site (tower-http's `CsrfLayer` refused it).
    #[error(
        "this request was sent from another site, so it was refused: make changes from the \
         portal's own pages"
    )]
    CrossSite,
    /// The request took longer than the portal waits.
    #[error("the portal took too long to answer: try again in a minute")]
    TimedOut,
    /// The action does not apply now (state, concurrent change, duplicate).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or out of place (e.g. an unknown sign-in callback).
    #[error("{0}")]
    BadRequest(String),
    /// Input that fails validation; `fields` says which field and why.
    #[error("{message}")]
    Invalid {
        /// A summary.
        message: String,
        /// `(field, message)` pairs.
        fields: Vec<(String, String)>,
    },
    /// An upstream (Entra, the EHR) failed in a way the user should know about.
    #[error("{0}")]
    Upstream(String),
    /// A bug or an outage: logged, never shown.
    #[error("something went wrong")]
    Internal(#[source] Cause),
}

impl PortalError {
    pub(crate) fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::SignInRequired => StatusCode::UNAUTHORIZED,
            Self::CsrfRejected | Self::CrossSite | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound | Self::VisitNotFound | Self::NoSuchPage => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable slug for the problem `type` (documented in `docs/portal-api.md`).
    pub(crate) fn slug(&self) -> &'static str {
        match self {
            Self::SignInRequired => "unauthenticated",
            Self::CsrfRejected | Self::CrossSite => "csrf",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound | Self::VisitNotFound | Self::NoSuchPage => "not-found",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::TooLarge => "too-large",
            Self::TimedOut => "timeout",
            Self::Conflict(_) => "conflict",
            Self::BadRequest(_) => "bad-request",
            Self::Invalid { .. } => "invalid",
            Self::Upstream(_) => "upstream",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::SignInRequired => "Sign-in required",
            Self::CsrfRejected => "The form has expired",
            Self::CrossSite => "Refused from another site",
            Self::Forbidden(_) => "Not allowed",
            Self::NotFound | Self::VisitNotFound | Self::NoSuchPage => "Not found",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::TooLarge => "Too large",
            Self::TimedOut => "Too slow",
            Self::Conflict(_) => "Cannot do that now",
            Self::BadRequest(_) => "Bad request",
            Self::Invalid { .. } => "Check what you entered",
            Self::Upstream(_) => "Another service failed",
            Self::Internal(_) => "Something went wrong",
        }
    }

    fn log(&self) {
        if let Self::Internal(cause) = self {
            tracing::error!(error = %cause, "request failed");
        }
    }
}

impl From<TransitionError> for PortalError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::WrongTenant => Self::NotFound,
            TransitionError::MissingRole { .. }
            | TransitionError::NotNamedApprover { .. }
            | TransitionError::SameAdminAndApprover { .. } => Self::Forbidden(e.to_string()),
            TransitionError::NothingChanged | TransitionError::InvalidReason => Self::Invalid {
                message: e.to_string(),
                fields: Vec::new(),
            },
            _ => Self::Conflict(e.to_string()),
        }
    }
}

// axum's own rejections answer in plain text; these keep every bad request an error page or a
// problem document. The rejection's text is not shown (it can quote the input), except for a
// JSON body's shape error, which names the field at fault.
impl From<PathRejection> for PortalError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_client_error() {
            Self::BadRequest("this address is not valid: check the link".to_owned())
        } else {
            Self::internal(rejection)
        }
    }
}

impl From<QueryRejection> for PortalError {
    fn from(rejection: QueryRejection) -> Self {
        if rejection.status().is_client_error() {
            Self::BadRequest("the query of this address is not valid: check the link".to_owned())
        } else {
            Self::internal(rejection)
        }
    }
}

impl From<FormRejection> for PortalError {
    fn from(rejection: FormRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge,
            status if status.is_client_error() => Self::BadRequest(
                "the form could not be read: reload the page and try again".to_owned(),
            ),
            _ => Self::internal(rejection),
        }
    }
}

impl From<JsonRejection> for PortalError {
    fn from(rejection: JsonRejection) -> Self {
        let because = |prefix: &str| match std::error::Error::source(&rejection) {
            Some(cause) => format!("{prefix}: {cause}"),
            None => prefix.to_owned(),
        };
        match &rejection {
            JsonRejection::JsonDataError(_) => {
                Self::BadRequest(because("the body is not JSON of the expected shape"))
            }
            JsonRejection::JsonSyntaxError(_) => Self::BadRequest(because("the body is not JSON")),
            JsonRejection::MissingJsonContentType(_) => Self::BadRequest(
                "send the body as JSON, with `Content-Type: application/json`".to_owned(),
            ),
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge,
            _ if rejection.status().is_client_error() => {
                Self::BadRequest("the body could not be read".to_owned())
            }
            _ => Self::internal(rejection),
        }
    }
}

impl From<StoreError> for PortalError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. }
            | StoreError::AlreadyExists(_)
            | StoreError::HeldByAnotherTenant => Self::Conflict(e.to_string()),
            StoreError::NotFound { .. } => Self::NotFound,
            other => Self::internal(other),
        }
    }
}

impl From<visitbridge_report::ReportError> for PortalError {
    fn from(e: visitbridge_report::ReportError) -> Self {
        use visitbridge_report::ReportError;
        match e {
            ReportError::InvalidFilter(_) => Self::BadRequest(e.to_string()),
            ReportError::VisitNotFound => Self::VisitNotFound,
            ReportError::Store(source) => source.into(),
            ReportError::Csv(_) | ReportError::Outcomes(_) => Self::internal(e),
        }
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let page = ErrorPage {
            layout: Layout::default(),
            title: self.title().to_owned(),
            message: self.to_string(),
            sign_in: matches!(self, Self::SignInRequired),
        };
        let mut response = render(status, page);
        response.extensions_mut().insert(Rendered);
        if status == StatusCode::UNAUTHORIZED {
            // A browser page, not an HTTP authentication challenge.
            response.headers_mut().remove(header::WWW_AUTHENTICATE);
        }
        response
    }
}

/// Base of the problem `type` URIs: the API document's anchors.
pub(crate) const PROBLEM_BASE: &str =
    "https://github.com/visitbridge/visitbridge/blob/main/docs/portal-api.md#problem-";

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldProblem<'a>>,
}

#[derive(Serialize)]
struct FieldProblem<'a> {
    field: &'a str,
    detail: &'a str,
}

/// A [`PortalError`] rendered as `application/problem+json` (RFC 9457), for the JSON API.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) PortalError);

impl<E: Into<PortalError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let status = e.status();
        let detail = match &e {
            PortalError::SignInRequired => {
                "send a valid API key as `Authorization: Bearer <key>`".to_owned()
            }
            PortalError::CrossSite => {
                "this request was sent by a browser from another site, so it was refused: the API \
                 accepts changes from its clients, not from other sites' pages"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let errors = match &e {
            PortalError::Invalid { fields, .. } => fields
                .iter()
                .map(|(field, detail)| FieldProblem { field, detail })
                .collect(),
            _ => Vec::new(),
        };
        let body = Problem {
            kind: format!("{PROBLEM_BASE}{}", e.slug()),
            title: e.title(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(Rendered);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"visitbridge-portal\""),
            );
        }
        response
    }
}

/// Marks a response rendered from a [`PortalError`] (page or problem), so
/// [`render_layer_rejections`] leaves it alone.
#[derive(Debug, Clone, Copy)]
struct Rendered;

/// Whether `path` is under the JSON API, whose every error is a problem document.
fn is_api(path: &str) -> bool {
    path == "/api/v1" || path.starts_with("/api/v1/")
}

/// Renders the error responses that did not come from a handler — the `CsrfLayer`'s refusal,
/// the body limit's `413`, the timeout's `504`, and any plain-text rejection of axum an
/// extractor let through — as the portal's error page, or as problem JSON under `/api/v1`.
/// Everything else (successes, redirects, pages and documents the handlers rendered, the
/// probes' plain-text `503`) passes unchanged.
pub(crate) async fn render_layer_rejections(request: Request, next: Next) -> Response {
    let api = is_api(request.uri().path());
    let fhir = request.uri().path().starts_with("/fhir/");
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    // Pages that handlers render themselves (a form with its errors, a sign-in's refusal) are
    // HTML; what the layers and axum answer on their own is empty or plain text.
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|t| t.as_bytes().starts_with(b"text/plain"));
    if response.extensions().get::<Rendered>().is_some()
        || !plain
        || !(status.is_client_error() || status.is_server_error())
    {
        return response;
    }
    let error = if response.extensions().get::<ProtectionError>().is_some() {
        tracing::warn!("cross-site request refused");
        PortalError::CrossSite
    } else {
        match status {
            StatusCode::BAD_REQUEST
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY => {
                PortalError::BadRequest("the request could not be read".to_owned())
            }
            StatusCode::NOT_FOUND => PortalError::NoSuchPage,
            StatusCode::METHOD_NOT_ALLOWED => PortalError::MethodNotAllowed(method.to_string()),
            StatusCode::PAYLOAD_TOO_LARGE => PortalError::TooLarge,
            StatusCode::GATEWAY_TIMEOUT => PortalError::TimedOut,
            _ => return response,
        }
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut rendered = if fhir {
        crate::fhir::refusal(error)
    } else if api {
        ApiError(error).into_response()
    } else {
        error.into_response()
    };
    if let Some(allow) = allow {
        rendered.headers_mut().insert(header::ALLOW, allow);
    }
    rendered
}
