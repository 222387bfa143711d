//! The approver's EHR sign-in: a SMART standalone launch (`openid fhirUser`) against the
//! configuration's FHIR base URL. It only proves the URL is a working EHR endpoint of the
//! approver's organisation: the EHR user id is recorded, the tokens are dropped.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use visitbridge_approval::{
    ConfigurationId, EhrUserId, FhirBaseUrl, FhirUrlProblem, UrlPolicy, classify_oauth_error,
};
use visitbridge_http::Secret;
use visitbridge_smart::{
    ApprovedIssuer, Callback, ClientAuth, PendingLaunch, PendingLaunchStore, SmartClient,
    SmartClientConfig, SmartDiscovery, SmartError, StaticIssuers,
};

use crate::{
    AppState,
    auth::error_code,
    error::PortalError,
    extract::PagePath,
    pages::{Plain, detail_page},
    probe::probe_retry,
    service,
    session::{CsrfForm, User, storage_key},
    views::render,
};

/// Pending-item kinds: ours (which session, which configuration) and the SMART client's (PKCE
/// verifier, nonce), both found from the launch's `state`.
const APPROVAL_KIND: &str = "portal-ehr-approval";
const LAUNCH_KIND: &str = "portal-ehr-launch";
/// How long the approver may take at the EHR's sign-in page.
const LIFETIME: Duration = Duration::minutes(10);

/// The scopes of the approver's sign-in: who they are, nothing else.
const SCOPES: &str = "openid fhirUser";

/// The SMART client's pending launches, kept in the store (single use, expiring).
struct StorePendingLaunches(AppState);

#[async_trait::async_trait]
impl PendingLaunchStore for StorePendingLaunches {
    async fn put(
        &self,
        state: &str,
        launch: PendingLaunch,
    ) -> Result<(), visitbridge_smart::StoreError> {
        let payload = serde_json::to_value(&launch)?;
        self.0
            .store()
            .put_pending(state, LAUNCH_KIND, &payload, Utc::now() + LIFETIME)
            .await?;
        Ok(())
    }

    async fn take(
        &self,
        state: &str,
    ) -> Result<Option<PendingLaunch>, visitbridge_smart::StoreError> {
        let taken = self
            .0
            .store()
            .take_pending(state, LAUNCH_KIND, Utc::now())
            .await?;
        Ok(taken.map(serde_json::from_value).transpose()?)
    }
}

/// Our item's key: derived from the `state`, since the SMART client's item has the state itself as
/// its key (keys are unique across kinds).
fn approval_key(state: &str) -> String {
    format!("approval-{}", storage_key(state))
}

/// Which session started which configuration's sign-in.
#[derive(Serialize, Deserialize)]
struct PendingApproval {
    /// The session's storage key.
    session: String,
    configuration_id: String,
    fhir_base_url: String,
}

/// A SMART client that may talk to exactly `url`: the approval of that one URL is what is
/// being tested, so it is the only issuer this client allows.
fn smart_client(
    state: &AppState,
    url: &FhirBaseUrl,
    id: &ConfigurationId,
    epic_client_id_header: bool,
) -> Result<SmartClient, PortalError> {
    let iss = Url::parse(url.as_str()).map_err(PortalError::internal)?;
    let redirect = state
        .config()
        .public_url("/approvals/ehr-callback")
        .map_err(PortalError::internal)?;
    // The URL is not approved yet and its discovery names the token endpoint: a shared secret
    // sent there would go to whatever server the admin entered (the configuration refuses them;
    // this guards the one place a credential leaves).
    let auth = match state.ehr_auth() {
        auth @ (ClientAuth::Public | ClientAuth::PrivateKeyJwt(_)) => auth.clone(),
        ClientAuth::SecretBasic(_) | ClientAuth::SecretPost(_) => {
            return Err(PortalError::internal(
                "the EHR sign-in must not send a client secret",
            ));
        }
    };
    let mut config =
        SmartClientConfig::new(state.config().ehr_sign_in.client_id.clone(), redirect, auth)
            .with_scopes(format!("launch {SCOPES}"), SCOPES);
    if epic_client_id_header {
        config = config
            .with_epic_client_id_header()
            .map_err(PortalError::internal)?;
    }
    let discovery = SmartDiscovery::new(state.http().clone(), config.extra_headers.clone())
        .with_retry_policy(probe_retry());
    let issuers = StaticIssuers::new([ApprovedIssuer::new(iss, id.as_str())]);
    Ok(SmartClient::new(
        config,
        state.http().clone(),
        Arc::new(issuers),
        Arc::new(StorePendingLaunches(state.clone())),
    )
    .with_discovery(discovery)
    .with_retry_policy(probe_retry()))
}

/// `POST /configurations/{id}/ehr-sign-in`: sends the approver to their EHR's sign-in.
pub(crate) async fn begin(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    CsrfForm(user, Plain {}): CsrfForm<Plain>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    let url = c.settings().fhir_base_url.clone();
    // The state machine decides before anyone is sent to the EHR, with the same check the
    // callback will make: a wrong approver or a wrong state is refused here.
    let placeholder = EhrUserId::new("not-yet-signed-in").map_err(PortalError::internal)?;
    c.record_ehr_validation(&user.actor(), &url, placeholder, Utc::now())?;
    // Nobody signs in to the EHR for an approval the operator's policy would refuse them.
    c.check_distinct_approver(&user.actor(), &state.config().approval.policy())?;

    let settings = c.settings();
    let client = smart_client(
        &state,
        &url,
        c.id(),
        settings.ehr_client.send_epic_client_id_header,
    )?;
    let request = match client
        .begin_standalone_launch(url.as_str(), BTreeMap::new())
        .await
    {
        Ok(request) => request,
        Err(e) => {
            tracing::info!(error = %e, configuration = %c.id(), "EHR sign-in could not start");
            // Say what is wrong with the URL in the approval crate's words when the probe can
            // tell; otherwise what discovery found.
            let problem = match service::check_url(&state, settings).await {
                Err(problem) => problem.to_string(),
                Ok(()) => format!("the EHR sign-in could not start: {e}"),
            };
            return Ok(render(
                StatusCode::OK,
                detail_page(&state, &user, &c, None, Some(problem), None),
            ));
        }
    };
    let pending = PendingApproval {
        session: user.key.clone(),
        configuration_id: c.id().to_string(),
        fhir_base_url: url.to_string(),
    };
    state
        .store()
        .put_pending(
            &approval_key(request.state().expose()),
            APPROVAL_KIND,
            &serde_json::to_value(&pending).map_err(PortalError::internal)?,
            Utc::now() + LIFETIME,
        )
        .await?;
    tracing::info!(configuration = %c.id(), "approver sent to the EHR sign-in");
    Ok(Redirect::to(request.url().as_str()).into_response())
}

fn unknown_sign_in() -> PortalError {
    PortalError::BadRequest(
        "this EHR sign-in is unknown, expired or was already used; start it again from the configuration page"
            .to_owned(),
    )
}

/// What to tell the approver about a failed EHR sign-in. The EHR's `error_description` is never
/// shown or logged: it is free text from another system.
fn explain(e: &SmartError) -> String {
    match e {
        SmartError::AuthorizationDenied { error, .. } | SmartError::TokenEndpoint { error, .. } => {
            tracing::warn!(error = error_code(error), "EHR sign-in refused");
            classify_oauth_error(error).to_string()
        }
        SmartError::StateUnknownOrUsed | SmartError::LaunchExpired => {
            tracing::warn!(error = %e, "EHR sign-in callback out of place");
            "this EHR sign-in expired or was already used; sign in to your EHR again".to_owned()
        }
        other => {
            tracing::warn!(error = %other, "EHR sign-in failed");
            format!("the EHR sign-in could not be completed: {other}")
        }
    }
}

/// What to tell an approver whose EHR sign-in was not a staff user's (`kind`: their `fhirUser`
/// resource type, if any). Names no id: a patient's FHIR id would be patient data.
fn not_staff(kind: Option<&str>) -> String {
    let who = match kind {
        Some("Patient") => "a patient's account (for example a MyChart login)".to_owned(),
        Some("RelatedPerson") => "a patient proxy's account".to_owned(),
        Some(other) if other.len() <= 40 && other.chars().all(|c| c.is_ascii_alphanumeric()) => {
            format!("an account of type {other}")
        }
        Some(_) => "an account of an unknown type".to_owned(),
        None => "an account the EHR did not identify as a user (no fhirUser)".to_owned(),
    };
    format!(
        "the EHR sign-in was made with {who}, not with a staff account: sign in to the EHR again \
         with your own clinician or analyst account (a Practitioner or PractitionerRole); \
         nothing was recorded"
    )
}

/// `GET /approvals/ehr-callback`: completes the launch and records the EHR sign-in.
pub(crate) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PortalError> {
    let user = User::load(&state, &headers)
        .await?
        .ok_or(PortalError::SignInRequired)?;
    let query = query.unwrap_or_default();
    // The state checked against this session must be the one the launch is completed with, so
    // it comes from the same parse; a query that repeats `state` (or `code`) is refused there.
    let launch_state = match Callback::from_query(&query) {
        Ok(callback) => callback.state,
        // An OAuth error names its sign-in too (no parameter repeats, or it would be malformed):
        // check the session before telling the approver why the EHR refused.
        Err(SmartError::AuthorizationDenied { .. }) => {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
                .ok_or_else(unknown_sign_in)?
        }
        Err(e) => {
            tracing::warn!(error = %e, "EHR sign-in callback refused");
            return Err(unknown_sign_in());
        }
    };
    let pending: PendingApproval = state
        .store()
        .take_pending(&approval_key(&launch_state), APPROVAL_KIND, Utc::now())
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(unknown_sign_in)?;
    if !Secret::new(pending.session).constant_time_eq(&user.key) {
        tracing::warn!("EHR sign-in callback in another session than the one that started it");
        let _ = state
            .store()
            .take_pending(&launch_state, LAUNCH_KIND, Utc::now())
            .await;
        return Err(unknown_sign_in());
    }
    let c = service::load(&state, &user.data.tenant, &pending.configuration_id).await?;
    // Stored from a parsed URL, so this parses; development rules only relax loopback, which
    // was already allowed or refused when the configuration was saved.
    let url = FhirBaseUrl::parse(&pending.fhir_base_url, UrlPolicy::DEVELOPMENT)
        .map_err(|e: FhirUrlProblem| PortalError::internal(e))?;
    let client = smart_client(
        &state,
        &url,
        c.id(),
        c.settings().ehr_client.send_epic_client_id_header,
    )?;
    let ehr_user = match client.complete_callback(&query).await {
        // Only an EHR user of the organisation can vouch for the URL: a patient portal login
        // (which anyone can have) proves nothing about who is approving.
        Ok(done) => match done.ehr_user {
            Some(u) if !u.is_staff() => {
                let kind = u.fhir_user_reference().map(|(kind, _)| kind.to_owned());
                tracing::warn!(
                    configuration = %c.id(),
                    fhir_user_type = kind.as_deref().unwrap_or("none"),
                    "EHR sign-in refused: not a staff user"
                );
                return Ok(render(
                    StatusCode::FORBIDDEN,
                    detail_page(
                        &state,
                        &user,
                        &c,
                        None,
                        Some(not_staff(kind.as_deref())),
                        None,
                    ),
                ));
            }
            other => other.map(|u| u.id().to_owned()),
        },
        Err(e) => {
            let problem = explain(&e);
            return Ok(render(
                StatusCode::OK,
                detail_page(&state, &user, &c, None, Some(problem), None),
            ));
        }
    };
    let Some(ehr_user_id) = ehr_user.and_then(|id| EhrUserId::new(id).ok()) else {
        return Ok(render(
            StatusCode::OK,
            detail_page(
                &state,
                &user,
                &c,
                None,
                Some("the EHR sign-in did not say who signed in (no usable id_token); check that the app may use the openid and fhirUser scopes".to_owned()),
                None,
            ),
        ));
    };
    let c = service::save(
        &state,
        c.record_ehr_validation(&user.actor(), &url, ehr_user_id, Utc::now()),
    )
    .await?;
    Ok(Redirect::to(&format!("/configurations/{}?notice=ehr_validated", c.id())).into_response())
}
