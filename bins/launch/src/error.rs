//! The one error type of the launch service's handlers, rendered as a page that says what went
//! wrong and what to do — never with clinical data, tokens or internals. Internal errors say
//! "something went wrong" with a reference; the log gets the cause
//! under the same request id.

use askama::Template as _;
use axum::{
    Form,
    body::Body,
    extract::{
        FromRequest, FromRequestParts, Path, Request,
        rejection::{FormRejection, PathRejection},
    },
    http::{StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use visitbridge_approval::{Environment, FhirUrlProblem, OAuthGap, classify_oauth_error};
use visitbridge_fhir::FhirError;
use visitbridge_graph::GraphError;
use visitbridge_launch_core::{IssuerRefusal, LaunchCoreError, host_of};
use visitbridge_smart::SmartError;
use visitbridge_store::StoreError;
use visitbridge_visit::{LinkError, RecordContextError, VisitError};

use crate::views::{ErrorPage, html};

/// A cause kept for the log only.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a launch (or a page) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    /// The launch URL lacks `iss` or `launch`, or is otherwise malformed.
    #[error("{0}")]
    BadLaunch(String),
    /// No approved configuration serves this FHIR base URL.
    #[error(
        "This EHR ({host}) is not approved for virtual visits. Ask your administrator to approve \
         it in the VisitBridge portal."
    )]
    IssuerNotApproved {
        /// The EHR's host (as the launch named it).
        host: String,
    },
    /// The record says one environment, the approved configuration is the other.
    #[error(
        "This launch came from a {launched} record, but {host} is approved only as {approved}. \
         The {launched} EHR is using the {approved} integration record (or the reverse): enter the \
         {launched} configuration's records from the VisitBridge portal, or have the {launched} \
         configuration approved."
    )]
    EnvironmentMismatch {
        /// The EHR's host.
        host: String,
        /// What the record said.
        launched: Environment,
        /// What is approved.
        approved: Environment,
    },
    /// Both environments are approved for this URL and the record does not say which it is.
    #[error(
        "{host} is approved both as test and as production, and this launch does not say which: \
         copy the integration record again from the VisitBridge portal (it ends with \
         environment=test or environment=production)."
    )]
    EnvironmentAmbiguous {
        /// The EHR's host.
        host: String,
    },
    /// A context parameter of the record is wrong.
    #[error(transparent)]
    RecordContext(#[from] RecordContextError),
    /// The state is unknown, used, or expired, or the callback is malformed.
    #[error(
        "This sign-in link has already been used or has expired. Start the visit again from the \
         EHR."
    )]
    StateRejected,
    /// The callback came to another browser than the launch.
    #[error(
        "This sign-in was started in another browser (or cookies are blocked). Start the visit \
         again from the EHR, in one browser, with cookies allowed for this site."
    )]
    BrowserMismatch,
    /// The EHR or Microsoft refused the sign-in.
    #[error(
        "The sign-in was refused: {0}. Start the visit again; if it keeps failing, tell your administrator."
    )]
    SignInRefused(String),
    /// The EHR's SMART service answered something unusable (a setup problem, not an outage);
    /// the text names what, never an address.
    #[error(
        "The EHR's sign-in service could not be used ({0}). Try again in a minute; if it keeps \
         failing, tell your administrator."
    )]
    EhrUpstream(&'static str),
    /// The EHR is down, overloaded or not answering (5xx, throttling, timeouts, no connection).
    #[error(
        "The EHR is having trouble right now. Try again in a minute; if it keeps happening, tell \
         your administrator."
    )]
    EhrUnavailable,
    /// Microsoft 365 sign-in is down, overloaded or not answering.
    #[error(
        "Microsoft 365 sign-in is having trouble right now. Try again in a minute; if it keeps \
         happening, tell your administrator."
    )]
    MicrosoftUnavailable,
    /// The launch step took longer than the launch deadline.
    #[error(
        "The EHR or Microsoft 365 took too long to answer (more than {0} seconds), so the launch \
         was stopped. Try again in a minute; if it keeps happening, tell your administrator."
    )]
    DeadlineExceeded(u64),
    /// A clinician launch by someone the EHR did not sign in as staff (a patient's launch
    /// replayed at the clinician's address, say).
    #[error(
        "This launch is for clinicians, and the EHR did not sign you in as one ({0}). Patients \
         join from the patient portal's Begin virtual visit button or from their visit link. If \
         you are a clinician, start the visit from the EHR with your own account."
    )]
    NotStaff(#[from] visitbridge_visit::NotStaff),
    /// A configuration the launch needs is missing on this service.
    #[error("{0}")]
    Misconfigured(String),
    /// The visit could not be found, or the EHR's FHIR server failed while looking.
    #[error("{}", visit_message(.0))]
    Visit(Box<VisitError>),
    /// Microsoft 365 is not configured on this service.
    #[error(
        "Microsoft 365 is not configured on this VisitBridge launch service, so no Teams meeting \
         can be created. Tell your administrator (the [microsoft] settings)."
    )]
    MicrosoftNotConfigured,
    /// The clinician signed in with an account of another organisation.
    #[error(
        "You signed in to Microsoft 365 with an account of another organisation. Start the visit \
         again and sign in with your work account."
    )]
    WrongMicrosoftTenant,
    /// Teams refused for an organiser without an application access policy.
    #[error("{0}")]
    AccessPolicyMissing(String),
    /// Graph failed.
    #[error(
        "Microsoft Teams could not set up the meeting right now. Try again in a minute; if it \
         keeps failing, tell your administrator."
    )]
    Graph(#[source] Box<GraphError>),
    /// A visit page without a valid session.
    #[error("Open this visit from the EHR: this page needs the sign-in that launching it gives.")]
    SessionRequired,
    /// A form without a valid CSRF token.
    #[error("This form has expired. Reload the visit page and try again.")]
    CsrfRejected,
    /// A patient link that is not valid.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Nothing here.
    #[error("This page does not exist.")]
    NotFound,
    /// A form, an address or a body that could not be read (the text says which).
    #[error("{0}")]
    BadRequest(&'static str),
    /// A body over the size limit.
    #[error("This request is too large. Reload the page and try again.")]
    TooLarge,
    /// A known address asked with a method it does not answer (the `Allow` header lists those
    /// it does).
    #[error("This address does not accept {0} requests.")]
    MethodNotAllowed(String),
    /// A bug or an outage: logged, never shown.
    #[error("Something went wrong.")]
    Internal(#[source] Cause),
}

impl LaunchError {
    pub(crate) fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadLaunch(_) | Self::RecordContext(_) | Self::StateRejected => {
                StatusCode::BAD_REQUEST
            }
            Self::IssuerNotApproved { .. }
            | Self::EnvironmentMismatch { .. }
            | Self::EnvironmentAmbiguous { .. }
            | Self::BrowserMismatch
            | Self::SignInRefused(_)
            | Self::WrongMicrosoftTenant
            | Self::CsrfRejected
            | Self::NotStaff(_)
            | Self::Link(_) => StatusCode::FORBIDDEN,
            Self::SessionRequired => StatusCode::UNAUTHORIZED,
            Self::Visit(e) if !matches!(**e, VisitError::Fhir(_)) => StatusCode::NOT_FOUND,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Visit(_)
            | Self::EhrUpstream(_)
            | Self::EhrUnavailable
            | Self::MicrosoftUnavailable
            | Self::AccessPolicyMissing(_)
            | Self::Graph(_) => StatusCode::BAD_GATEWAY,
            Self::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Misconfigured(_) | Self::MicrosoftNotConfigured => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::IssuerNotApproved { .. } => "This EHR is not approved",
            Self::EnvironmentMismatch { .. } | Self::EnvironmentAmbiguous { .. } => {
                "Test and production records are mixed up"
            }
            Self::RecordContext(_) | Self::BadLaunch(_) => "The launch is incomplete",
            Self::StateRejected | Self::BrowserMismatch => "Start the visit again",
            Self::SignInRefused(_) | Self::WrongMicrosoftTenant => "Sign-in refused",
            Self::NotStaff(_) => "This launch is for clinicians",
            Self::EhrUnavailable => "The EHR is not answering",
            Self::MicrosoftUnavailable => "Microsoft 365 is not answering",
            Self::DeadlineExceeded(_) => "The visit cannot start yet",
            Self::Visit(e) if matches!(**e, VisitError::Fhir(_)) => "The visit cannot start yet",
            Self::Visit(_) => "Visit not found",
            Self::Link(_) => "Visit link not valid",
            Self::SessionRequired | Self::CsrfRejected => "Open the visit from the EHR",
            Self::NotFound => "Not found",
            Self::BadRequest(_) => "The request could not be read",
            Self::TooLarge => "The request is too large",
            Self::MethodNotAllowed(_) => "Not available this way",
            Self::EhrUpstream(_)
            | Self::Graph(_)
            | Self::AccessPolicyMissing(_)
            | Self::Misconfigured(_)
            | Self::MicrosoftNotConfigured => "The visit cannot start yet",
            Self::Internal(_) => "Something went wrong",
        }
    }

    /// A short stable name for metrics and logs.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::BadLaunch(_) | Self::RecordContext(_) => "bad_launch",
            Self::IssuerNotApproved { .. } => "issuer_not_approved",
            Self::EnvironmentMismatch { .. } | Self::EnvironmentAmbiguous { .. } => {
                "environment_mismatch"
            }
            Self::StateRejected => "state_rejected",
            Self::BrowserMismatch => "browser_mismatch",
            Self::SignInRefused(_) | Self::WrongMicrosoftTenant => "sign_in_refused",
            Self::NotStaff(_) => "not_staff",
            Self::EhrUpstream(_) => "ehr_upstream",
            Self::EhrUnavailable => "ehr_unavailable",
            Self::MicrosoftUnavailable => "microsoft_unavailable",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Misconfigured(_) | Self::MicrosoftNotConfigured => "misconfigured",
            Self::Visit(_) => "visit_not_found",
            Self::AccessPolicyMissing(_) | Self::Graph(_) => "graph_error",
            Self::SessionRequired | Self::CsrfRejected => "session_required",
            Self::Link(_) => "link_invalid",
            Self::NotFound => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge => "too_large",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Internal(_) => "internal",
        }
    }

    fn log(&self) {
        match self {
            Self::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            Self::Graph(cause) => tracing::warn!(error = %cause, "graph call failed"),
            Self::EhrUpstream(_) | Self::EhrUnavailable => {
                tracing::warn!(outcome = self.outcome(), "ehr call failed");
            }
            Self::MicrosoftUnavailable => {
                tracing::warn!(outcome = self.outcome(), "microsoft sign-in failed");
            }
            Self::DeadlineExceeded(seconds) => {
                tracing::warn!(deadline_seconds = seconds, "launch deadline exceeded");
            }
            Self::Visit(e) if matches!(**e, VisitError::Fhir(_)) => {
                tracing::warn!(error = %self, "ehr call failed");
            }
            other => tracing::info!(outcome = other.outcome(), "request refused"),
        }
    }
}

impl From<SmartError> for LaunchError {
    fn from(e: SmartError) -> Self {
        // Only what a person can act on reaches the page: never an endpoint (an internal
        // address), never the EHR's free text. The log gets the kind, under the request id.
        if let Some(log) = outage(&e) {
            tracing::warn!(cause = log, "ehr unavailable");
            return Self::EhrUnavailable;
        }
        match e {
            SmartError::IssuerNotApproved { iss } => Self::IssuerNotApproved {
                host: host_of(&iss),
            },
            SmartError::StateUnknownOrUsed
            | SmartError::LaunchExpired
            | SmartError::MalformedCallback { .. } => Self::StateRejected,
            // The EHR's `error` is free text from another system (and its description is never
            // used): only a recognised, well-formed OAuth error code reaches the page.
            SmartError::AuthorizationDenied { error, .. } => Self::SignInRefused(format!(
                "the sign-in service answered: {}",
                oauth_refusal(&error)
            )),
            SmartError::TokenEndpoint { error, .. } => Self::SignInRefused(format!(
                "the token service answered: {}",
                oauth_refusal(&error)
            )),
            SmartError::IdToken(reason) => {
                Self::SignInRefused(format!("the identity token was not valid ({reason})"))
            }
            SmartError::Store(cause) => Self::Internal(cause),
            SmartError::Assertion(cause) => Self::internal(cause),
            SmartError::Discovery { .. } => {
                Self::EhrUpstream("its SMART configuration could not be read")
            }
            SmartError::S256NotSupported { .. } => {
                Self::EhrUpstream("it does not offer PKCE S256, which VisitBridge requires")
            }
            SmartError::UpstreamStatus { .. } => {
                Self::EhrUpstream("it refused the request VisitBridge sent")
            }
            SmartError::MalformedResponse { .. } => {
                Self::EhrUpstream("it answered something that is not a valid OAuth response")
            }
            SmartError::TokenExpired => Self::StateRejected,
            other => Self::internal(other),
        }
    }
}

/// Whether a SMART failure is the upstream being down, overloaded or unreachable (5xx, 429,
/// a timeout, no connection, or OAuth's `server_error`/`temporarily_unavailable`), and what to
/// log of it (no address).
fn outage(e: &SmartError) -> Option<&'static str> {
    match e {
        SmartError::Throttled { .. } => Some("throttled"),
        SmartError::Timeout { .. } => Some("timeout"),
        SmartError::Transport { .. } => Some("transport"),
        SmartError::UpstreamStatus { status, .. } if *status >= 500 => Some("server error"),
        SmartError::AuthorizationDenied { error, .. } | SmartError::TokenEndpoint { error, .. }
            if matches!(error.as_str(), "server_error" | "temporarily_unavailable") =>
        {
            Some("oauth server_error")
        }
        _ => None,
    }
}

impl LaunchError {
    /// A failure of the Microsoft 365 sign-in (Entra ID): outages say Microsoft, not the EHR.
    pub(crate) fn microsoft(e: SmartError) -> Self {
        if let Some(log) = outage(&e) {
            tracing::warn!(cause = log, "microsoft sign-in unavailable");
            return Self::MicrosoftUnavailable;
        }
        match Self::from(e) {
            Self::EhrUpstream(_) => Self::MicrosoftUnavailable,
            other => other,
        }
    }
}

impl From<LaunchCoreError> for LaunchError {
    fn from(e: LaunchCoreError) -> Self {
        match e {
            LaunchCoreError::Store(e) => e.into(),
            LaunchCoreError::Graph(e) => (*e).into(),
            LaunchCoreError::Visit(e) => e.into(),
            LaunchCoreError::NotStaff(e) => Self::NotStaff(e),
            LaunchCoreError::Link(e) => Self::Link(e),
            LaunchCoreError::UnusableUserId => {
                Self::SignInRefused("the EHR sent a user id VisitBridge cannot keep".to_owned())
            }
            LaunchCoreError::VisitNotFound => Self::NotFound,
            LaunchCoreError::MeetingsNotConfigured => Self::MicrosoftNotConfigured,
            e @ (LaunchCoreError::NoOrganizer | LaunchCoreError::UnsafeJoinUrl) => {
                Self::internal(e)
            }
        }
    }
}

impl From<IssuerRefusal> for LaunchError {
    fn from(e: IssuerRefusal) -> Self {
        match e {
            IssuerRefusal::NotApproved { host } => Self::IssuerNotApproved { host },
            IssuerRefusal::EnvironmentMismatch {
                host,
                launched,
                approved,
            } => Self::EnvironmentMismatch {
                host,
                launched,
                approved,
            },
            IssuerRefusal::EnvironmentAmbiguous { host } => Self::EnvironmentAmbiguous { host },
            IssuerRefusal::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for LaunchError {
    fn from(e: StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<GraphError> for LaunchError {
    fn from(e: GraphError) -> Self {
        match e {
            GraphError::AccessPolicyMissing { .. } => Self::AccessPolicyMissing(format!(
                "Teams does not allow VisitBridge to create meetings for your account yet. \
                 Your Teams administrator must grant the application access policy: {e}"
            )),
            other => Self::Graph(Box::new(other)),
        }
    }
}

impl From<VisitError> for LaunchError {
    fn from(e: VisitError) -> Self {
        let outage = match &e {
            VisitError::Fhir(fhir @ (FhirError::Timeout { .. } | FhirError::Transport(_))) => {
                Some(fhir)
            }
            // Down, or throttling us (429): the same to the person waiting — try again shortly.
            VisitError::Fhir(fhir @ FhirError::Status { status, .. })
                if status.is_server_error() || status.as_u16() == 429 =>
            {
                Some(fhir)
            }
            _ => None,
        };
        if let Some(fhir) = outage {
            tracing::warn!(error = %fhir_summary(fhir), "fhir server unavailable");
            return Self::EhrUnavailable;
        }
        Self::Visit(Box::new(e))
    }
}

// axum's own rejections answer in plain text; these keep every bad request on the service's
// error page. The rejection's text is not shown: it can quote the input.
impl From<PathRejection> for LaunchError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_client_error() {
            Self::BadRequest(
                "This address is not valid. Check the link, or open the visit from the EHR again.",
            )
        } else {
            Self::internal(rejection)
        }
    }
}

impl From<FormRejection> for LaunchError {
    fn from(rejection: FormRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge,
            status if status.is_client_error() => {
                Self::BadRequest("This form could not be read. Reload the page and try again.")
            }
            _ => Self::internal(rejection),
        }
    }
}

/// [`Path`] whose rejection is the service's error page.
pub(crate) struct PagePath<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for PagePath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = LaunchError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, LaunchError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// [`Form`] whose rejection (including a body over the limit) is the service's error page.
pub(crate) struct PageForm<T>(pub(crate) T);

impl<T, S> FromRequest<S> for PageForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = LaunchError;

    async fn from_request(req: Request, state: &S) -> Result<Self, LaunchError> {
        let Form(value) = Form::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// What to say about an OAuth `error` code from the EHR, by the portal's rule
/// ([`classify_oauth_error`]): known codes explained, other well-formed codes echoed, anything
/// else "(unrecognised)".
fn oauth_refusal(error: &str) -> String {
    match classify_oauth_error(error) {
        FhirUrlProblem::EhrSignInRefused => {
            "the sign-in was cancelled or refused (access_denied)".to_owned()
        }
        FhirUrlProblem::OAuthSetupIncomplete(OAuthGap::Other(code)) => code,
        other => other.to_string(),
    }
}

/// A visit error as shown and logged. A FHIR failure is reduced to its status and Epic's numeric
/// codes (as the write-back sinks record it): the server's diagnostics are free text that may
/// quote the patient, and a transport error's text carries the request URL and its search.
fn visit_message(e: &VisitError) -> String {
    match e {
        VisitError::Fhir(fhir) => {
            format!(
                "the EHR's FHIR server could not be read: {}. Try again in a minute; if it keeps \
                 failing, tell your administrator.",
                fhir_summary(fhir)
            )
        }
        other => other.to_string(),
    }
}

fn fhir_summary(e: &FhirError) -> String {
    match e {
        FhirError::Status { status, .. } => {
            let codes = e.epic_codes();
            if codes.is_empty() {
                format!("fhir server answered {status}")
            } else {
                format!("fhir server answered {status} (epic codes {codes:?})")
            }
        }
        FhirError::Transport(_) => "fhir server unreachable".to_owned(),
        FhirError::NotFound { resource_type, .. } => format!("{resource_type} not found"),
        FhirError::InvalidUrl(_) => "the fhir server sent an unusable url".to_owned(),
        // The parser's words (a field path, a line and column) are for the log, not the page.
        FhirError::Decode { .. } => "its answer was not a FHIR resource".to_owned(),
        FhirError::Timeout { .. }
        | FhirError::Unauthorized
        | FhirError::TooLarge { .. }
        | FhirError::TokenSource(_) => e.to_string(),
    }
}

impl IntoResponse for LaunchError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let page = ErrorPage {
            title: self.title().to_owned(),
            message: self.to_string(),
            reference: None,
        };
        let mut response = html(status, &page);
        response.extensions_mut().insert(Outcome(self.outcome()));
        if matches!(self, Self::Internal(_) | Self::Graph(_)) {
            response.extensions_mut().insert(NeedsReference(page));
        }
        response
    }
}

/// An internal error's page, to be shown again with the request id as its reference (by
/// [`reference_pages`], which has the request).
#[derive(Clone)]
struct NeedsReference(ErrorPage);

/// Gives an internal error's page the request's id (from the request's extensions, see
/// [`visitbridge_web::request_id`]) as the reference for the administrator, the id the log of
/// its cause carries. Inside [`visitbridge_web::with_request_ids`].
pub(crate) async fn reference_pages(request: Request, next: Next) -> Response {
    let id = visitbridge_web::request_id(&request).map(str::to_owned);
    let mut response = next.run(request).await;
    let (Some(id), Some(NeedsReference(mut page))) =
        (id, response.extensions_mut().remove::<NeedsReference>())
    else {
        return response;
    };
    page.reference = Some(id);
    match page.render() {
        Ok(body) => {
            response.headers_mut().remove(header::CONTENT_LENGTH);
            *response.body_mut() = Body::from(body);
        }
        Err(e) => tracing::error!(error = %e, "an error page could not be rendered"),
    }
    response
}

/// The outcome name of a failed request, for the launch counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome(pub(crate) &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_failures_show_status_and_epic_codes_only() {
        let outcome = serde_json::from_value(serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "fatal",
                "code": "forbidden",
                "diagnostics": "restricted record of Camila Lopez",
                "details": {
                    "coding": [{
                        "system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369",
                        "code": "4118",
                    }],
                    "text": "restricted record of Camila Lopez",
                },
            }],
        }))
        .unwrap();
        let e = LaunchError::from(VisitError::Fhir(FhirError::Status {
            status: axum::http::StatusCode::FORBIDDEN,
            outcome: Some(outcome),
        }));
        assert_eq!(
            e.to_string(),
            "the EHR's FHIR server could not be read: fhir server answered 403 Forbidden \
             (epic codes [4118]). Try again in a minute; if it keeps failing, tell your \
             administrator."
        );
        assert_eq!(e.title(), "The visit cannot start yet");
        let e = LaunchError::from(VisitError::Fhir(FhirError::NotFound {
            resource_type: "Appointment",
            id: "e123".into(),
        }));
        assert!(!e.to_string().contains("e123"), "{e}");
    }

    #[test]
    fn only_recognised_oauth_error_codes_are_shown() {
        let shown = |error: &str| {
            LaunchError::from(SmartError::AuthorizationDenied {
                error: error.into(),
                description: Some("Camila Lopez".into()),
            })
            .to_string()
        };
        assert!(shown("access_denied").contains("cancelled or refused (access_denied)"));
        assert!(shown("interaction_required").contains("answered: interaction_required."));
        // An outage code is an outage, not a refusal.
        assert!(shown("temporarily_unavailable").contains("having trouble right now"));
        let free_text = shown("Camila <b>Lopez</b>");
        assert!(free_text.contains("(unrecognised)"), "{free_text}");
        assert!(!free_text.contains("Camila"), "{free_text}");
        let token = LaunchError::from(SmartError::TokenEndpoint {
            error: "invalid_client".into(),
            description: None,
        });
        assert!(token.to_string().contains("(invalid_client)"), "{token}");
    }

    #[test]
    fn messages_name_the_problem_and_the_fix() {
        let e = LaunchError::IssuerNotApproved {
            host: host_of("https://ehr.example.org/api/FHIR/R4?x=secret"),
        };
        assert_eq!(
            e.to_string(),
            "This EHR (ehr.example.org) is not approved for virtual visits. Ask your administrator \
             to approve it in the VisitBridge portal."
        );
        let e = LaunchError::EnvironmentMismatch {
            host: "ehr.example.org".into(),
            launched: Environment::Production,
            approved: Environment::Test,
        };
        assert!(
            e.to_string()
                .starts_with("This launch came from a production record, but ehr.example.org"),
            "{e}"
        );
        assert!(e.to_string().contains("approved only as test"), "{e}");
        assert_eq!(
            LaunchError::internal("db down").to_string(),
            "Something went wrong."
        );
    }

    async fn page(path: &str, request_id: &str) -> (StatusCode, String) {
        use tower::ServiceExt as _;
        let router = visitbridge_web::with_request_ids(
            axum::Router::new()
                .route(
                    "/internal",
                    axum::routing::get(|| async { LaunchError::internal("db down") }),
                )
                .route(
                    "/missing",
                    axum::routing::get(|| async { LaunchError::NotFound }),
                )
                .layer(axum::middleware::from_fn(reference_pages)),
        );
        let request = Request::get(path)
            .header("x-request-id", request_id)
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn an_internal_error_page_shows_its_request_id_and_no_other_does() {
        let (status, body) = page("/internal", "req-42").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("Something went wrong."), "{body}");
        assert!(body.contains("<code>req-42</code>"), "{body}");
        let (status, body) = page("/missing", "req-43").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!body.contains("req-43"), "{body}");
    }
}
