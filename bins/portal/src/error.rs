//! The one error type of the portal's handlers, rendered as an HTML page or as RFC 9457 problem
//! JSON: client errors keep their status and say what to do; internal errors say "something went
//! wrong" and only the log gets the cause.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
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
            Self::CsrfRejected | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound | Self::VisitNotFound | Self::NoSuchPage => StatusCode::NOT_FOUND,
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
            Self::CsrfRejected => "csrf",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound | Self::VisitNotFound | Self::NoSuchPage => "not-found",
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
            Self::Forbidden(_) => "Not allowed",
            Self::NotFound | Self::VisitNotFound | Self::NoSuchPage => "Not found",
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
            TransitionError::MissingRole { .. } | TransitionError::NotNamedApprover { .. } => {
                Self::Forbidden(e.to_string())
            }
            TransitionError::NothingChanged | TransitionError::InvalidReason => Self::Invalid {
                message: e.to_string(),
                fields: Vec::new(),
            },
            _ => Self::Conflict(e.to_string()),
        }
    }
}

impl From<StoreError> for PortalError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::AlreadyExists(_) => {
                Self::Conflict(e.to_string())
            }
            StoreError::NotFound { .. } => Self::NotFound,
            other => Self::internal(other),
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
