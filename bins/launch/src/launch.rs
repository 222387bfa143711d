//! The launch flows: starting a SMART EHR launch, its callback, and the clinician's path to the
//! meeting (with the one-time Microsoft sign-in).
//!
//! # Round trips of a warm provider launch
//!
//! Discovery, the EHR's signing keys and the Graph app token are cached (and refreshed off the
//! request path), so after the browser returns with the code a launch of a linked clinician makes:
//! 1. the token exchange;
//! 2. the FHIR reads (visit resolution) **and** `createOrGet`, concurrently: the meeting's key
//!    comes from the launch context, so the meeting does not wait for FHIR;
//! 3. only for a new (or drifted) meeting: the policy PATCH, which must be done before anyone
//!    receives a join URL, so that no patient can bypass the lobby.
//!
//! The patient's join URL (another Graph call) is fetched after the clinician's page is answered.
//!
//! # The visit key is not attested, the token response is
//!
//! The key comes from the launch URL's `sessionId`/`conferenceId`, which the EHR substitutes but
//! does not sign. `createOrGet` may run under it (a meeting's existence reveals nothing), but no
//! one is sent to a visit before it agrees with the token response's attested context
//! ([`Attested`]): for a clinician, a stored visit must be the attested appointment's; for a
//! patient (see `patient.rs`), the stored visit must be their attested patient and appointment,
//! or the URL's CSN an identifier of the attested Appointment/Encounter that the FHIR reads
//! return. Those reads already run, so the check adds no round trip.

use std::collections::BTreeMap;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use visitbridge_approval::{EhrUserId, FhirBaseUrl, RecordKind, UrlPolicy};
use visitbridge_fhir::{FhirClient, FhirClientConfig};
use visitbridge_launch_core::{
    ApprovedConfiguration, ClinicianLaunch, ClinicianOutcome, KeptFacts, OpenedVisit,
    SignInToContinue, VisitFacts, after_microsoft_sign_in, clinician_launch, find_configuration,
};
use visitbridge_smart::{AuthorizationRequest, Callback, CompletedLaunch, PendingSignIn};
use visitbridge_store::{MicrosoftObjectId, MicrosoftTenantId, UserLink};
use visitbridge_visit::{RecordContext, VisitKey};

use crate::{
    error::LaunchError,
    meeting, pending,
    session::{self, Grant, binding_of, new_token, read_cookie, same_browser},
    state::AppState,
    views::{AuthorizePost, html, page_headers},
};

/// Record-context keys of our own (the EHR's parameters are filtered to the record's).
pub(crate) const KIND_KEY: &str = "vb.record";
const BINDING_KEY: &str = "vb.binding";
/// Pending Microsoft sign-ins in the store.
const MICROSOFT_SIGN_IN: &str = "launch/microsoft";

fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::ProviderLaunch => "provider",
        RecordKind::PatientLaunch => "patient",
        RecordKind::DeviceTest => "device_test",
    }
}

pub(crate) fn kind_of(name: &str) -> Option<RecordKind> {
    [
        RecordKind::ProviderLaunch,
        RecordKind::PatientLaunch,
        RecordKind::DeviceTest,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == name)
}

/// The browser's id from its cookie, or a new one (the response then sets it).
pub(crate) fn browser_id(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, bool), LaunchError> {
    match read_cookie(headers, &state.inner.cookies.browser_cookie()) {
        Some(id) => Ok((id, false)),
        None => Ok((new_token()?, true)),
    }
}

/// Runs a launch step under the launch deadline: whatever upstream hangs, the step ends by then,
/// with [`LaunchError::DeadlineExceeded`]'s page. Dropping the step cancels its calls; what it
/// stored before is consistent on its own (a claimed visit row without meeting is completed by
/// the next launch).
pub(crate) async fn within_deadline<T>(
    state: &AppState,
    step: impl Future<Output = Result<T, LaunchError>>,
) -> Result<T, LaunchError> {
    let deadline = state.inner.launch_deadline;
    tokio::time::timeout(deadline, step)
        .await
        .unwrap_or(Err(LaunchError::DeadlineExceeded(deadline.as_secs())))
}

/// `GET /launch/{provider,patient,device-test}?iss=…&launch=…&<record context>`.
pub(crate) async fn begin(
    state: &AppState,
    kind: RecordKind,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, LaunchError> {
    within_deadline(state, begin_launch(state, kind, query, headers)).await
}

async fn begin_launch(
    state: &AppState,
    kind: RecordKind,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, LaunchError> {
    let mut iss = None;
    let mut launch = None;
    let mut params = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "iss" => iss = Some(v.into_owned()),
            "launch" => launch = Some(v.into_owned()),
            _ => params.push((k.into_owned(), v.into_owned())),
        }
    }
    let (Some(iss), Some(launch)) = (
        iss.filter(|s| !s.trim().is_empty()),
        launch.filter(|s| !s.trim().is_empty()),
    ) else {
        return Err(LaunchError::BadLaunch(
            "This page opens from the EHR: the launch is missing its iss or launch parameter. \
             Start the visit from the EHR; if it keeps happening, check that the integration \
             record's launch URL is entered exactly as the VisitBridge portal shows it."
                .to_owned(),
        ));
    };
    let record = RecordContext::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    // Nothing is sent anywhere before the issuer is found among approved configurations.
    let configuration =
        find_configuration(state.inner.store.as_ref(), &iss, record.environment).await?;
    state.inner.writeback.configure(&configuration);
    let client = state.inner.clients.get(&configuration, kind)?;
    let (browser, new_browser) = browser_id(state, headers)?;
    let mut context: BTreeMap<String, String> = record.to_map();
    context.insert(KIND_KEY.to_owned(), kind_name(kind).to_owned());
    context.insert(BINDING_KEY.to_owned(), binding_of(&browser));
    let (request, pending) = client.prepare_ehr_launch(&iss, &launch, context).await?;
    let sealed = state
        .inner
        .pending
        .seal(request.state().expose(), &pending)?;
    let mut response = authorization_response(&request);
    response.headers_mut().append(header::SET_COOKIE, sealed);
    if new_browser {
        let cookie = state.inner.cookies.set(
            &state.inner.cookies.browser_cookie(),
            &browser,
            std::time::Duration::from_secs(24 * 3600),
        );
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// A redirect to the authorization endpoint, or the auto-submitting POST form Epic prefers.
fn authorization_response(request: &AuthorizationRequest) -> Response {
    if request.prefers_post() {
        let action = request.form_action();
        let mut response = html(
            StatusCode::OK,
            &AuthorizePost {
                action: action.to_string(),
                fields: request.form_fields().to_vec(),
            },
        );
        // No `form-action`: Chromium applies it to every redirect after the submission, and the
        // authorize endpoint redirects on to the EHR's sign-in host (MyChart, SSO), which would
        // block the launch. The action is the approved EHR's discovered endpoint.
        page_headers(
            response.headers_mut(),
            "default-src 'none'; script-src 'self'; style-src 'self'; base-uri 'none'",
        );
        response
    } else {
        see_other(request.url().as_str())
    }
}

/// A `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A completed SMART launch and what it was for.
pub(crate) struct Completed {
    pub(crate) configuration: ApprovedConfiguration,
    pub(crate) launch: CompletedLaunch,
    pub(crate) record: RecordContext,
    pub(crate) browser: String,
}

/// `GET /launch/callback?code=…&state=…`: checks the state (single use, this browser), exchanges
/// the code, validates the id_token; then continues by record kind — all within the launch
/// deadline.
pub(crate) async fn callback(
    state: &AppState,
    query: &str,
    headers: &HeaderMap,
) -> Result<(RecordKind, Response), LaunchError> {
    within_deadline(state, complete_launch(state, query, headers)).await
}

/// The EHR's OAuth error of a callback that came back without `state` (some servers drop it on
/// POSTed authorize requests): the launch it ends cannot be named, but the EHR's error code says
/// what to fix, by the same rule as a refusal with `state`.
fn stateless_error(query: &str) -> Option<LaunchError> {
    let error = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned())?;
    Some(LaunchError::from(
        visitbridge_smart::SmartError::AuthorizationDenied {
            error,
            description: None,
        },
    ))
}

async fn complete_launch(
    state: &AppState,
    query: &str,
    headers: &HeaderMap,
) -> Result<(RecordKind, Response), LaunchError> {
    let parsed = Callback::from_query(query);
    // A repeated `state`/`code` is refused before any pending launch is claimed, so the browser
    // binding and the completion always concern the same `state`.
    if matches!(
        parsed,
        Err(visitbridge_smart::SmartError::MalformedCallback { .. })
    ) {
        return Err(LaunchError::StateRejected);
    }
    let Some(state_param) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
    else {
        return Err(stateless_error(query).unwrap_or(LaunchError::StateRejected));
    };
    let pending = state.inner.pending.claim(&state_param, headers).await?;
    // An OAuth error from the EHR: the pending launch is gone (claimed and dropped).
    let callback = parsed?;
    let browser = read_cookie(headers, &state.inner.cookies.browser_cookie());
    if !same_browser(
        browser.as_deref(),
        pending.record_context.get(BINDING_KEY).map(String::as_str),
    ) {
        return Err(LaunchError::BrowserMismatch);
    }
    let kind = pending
        .record_context
        .get(KIND_KEY)
        .and_then(|k| kind_of(k))
        .ok_or(LaunchError::StateRejected)?;
    let record = RecordContext::from_map(&pending.record_context)?;
    let configuration = find_configuration(
        state.inner.store.as_ref(),
        pending.issuer.as_str(),
        record.environment,
    )
    .await?;
    if configuration.id().as_str() != pending.configuration_id {
        // The approval changed while the user signed in: start again under the new one.
        return Err(LaunchError::StateRejected);
    }
    let client = state.inner.clients.get(&configuration, kind)?;
    let launch = state
        .inner
        .metrics
        .time(
            "ehr_token",
            client.complete_pending(pending, &callback.code),
        )
        .await?;
    let completed = Completed {
        configuration,
        launch,
        record,
        browser: browser.unwrap_or_default(),
    };
    let response = match kind {
        RecordKind::ProviderLaunch => provider(state, headers, completed).await?,
        RecordKind::PatientLaunch => {
            crate::patient::after_launch(state, headers, completed).await?
        }
        RecordKind::DeviceTest => crate::patient::device_test(state, completed).await?,
    };
    Ok((kind, response))
}

/// A FHIR client for the configuration's server with the launch's access token.
pub(crate) fn fhir_client(
    state: &AppState,
    configuration: &ApprovedConfiguration,
    launch: &CompletedLaunch,
) -> Result<FhirClient, LaunchError> {
    let approved = configuration.approved();
    let base = visitbridge_fhir::FhirBaseUrl::parse(approved.settings.fhir_base_url.as_str())
        .map_err(LaunchError::internal)?;
    let mut config = FhirClientConfig::new(base);
    if approved.settings.ehr_client.send_epic_client_id_header {
        let client_id = launch.pending.client_id.as_str();
        let value = HeaderValue::from_str(client_id).map_err(LaunchError::internal)?;
        config
            .extra_headers
            .push((header::HeaderName::from_static("epic-client-id"), value));
    }
    Ok(FhirClient::new(
        config,
        state.inner.http.clone(),
        std::sync::Arc::new(launch.token_source()),
    ))
}

/// A clinician's launch after the SMART callback: the decision is
/// [`visitbridge_launch_core::clinician_launch`]; this maps its outcome to the visit's page or
/// the one-time Microsoft sign-in.
async fn provider(
    state: &AppState,
    headers: &HeaderMap,
    done: Completed,
) -> Result<Response, LaunchError> {
    let issuer = done.configuration.fhir_base().clone();
    let fhir = fhir_client(state, &done.configuration, &done.launch)?;
    let outcome = clinician_launch(
        state.ports(),
        ClinicianLaunch {
            configuration: done.configuration.id(),
            issuer: &issuer,
            staff: &state.inner.staff,
            user: done.launch.ehr_user.as_ref(),
            scopes: &done.launch.scope,
            record: &done.record,
            context: &done.launch.context,
            directory: &fhir,
        },
    )
    .await?;
    match outcome {
        ClinicianOutcome::Meeting(opened) => open_page(state, headers, *opened).await,
        ClinicianOutcome::MicrosoftSignIn(pending) => {
            microsoft_sign_in(state, &done, issuer, *pending).await
        }
    }
}

/// Sends the clinician to the page of their opened visit (and fetches the patient's join URL
/// in the background).
async fn open_page(
    state: &AppState,
    headers: &HeaderMap,
    opened: OpenedVisit,
) -> Result<Response, LaunchError> {
    meeting::prefetch_patient_url(state, &opened);
    clinician_page(state, headers, &opened.visit, &opened.clinician).await
}

/// Grants the browser's session the clinician's `visit` and sends them to its page.
async fn clinician_page(
    state: &AppState,
    headers: &HeaderMap,
    visit: &visitbridge_store::Visit,
    object_id: &str,
) -> Result<Response, LaunchError> {
    let cookie = session::grant(
        state.inner.store.as_ref(),
        &state.inner.cookies,
        headers,
        Grant::clinician(visit.id.clone(), object_id)?,
        state.inner.session_ttl,
    )
    .await?;
    let mut response = see_other(&format!("/visits/{}", visit.id));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// A launch waiting for the clinician's Microsoft sign-in: ids only — no EHR token, and nothing
/// about the appointment beyond its ids (not its times).
#[derive(Serialize, Deserialize)]
struct MicrosoftPending {
    sign_in: PendingSignIn,
    configuration_id: String,
    ehr_issuer: String,
    ehr_user_id: EhrUserId,
    record: RecordContext,
    key: VisitKey,
    facts: KeptFacts,
    binding: String,
}

async fn microsoft_sign_in(
    state: &AppState,
    done: &Completed,
    issuer: FhirBaseUrl,
    pending: SignInToContinue,
) -> Result<Response, LaunchError> {
    let ms = state.microsoft()?;
    let oidc = ms.oidc().await?;
    let (request, sign_in) = oidc
        .begin_sign_in(&[("prompt", "select_account")])
        .map_err(LaunchError::microsoft)?;
    let stash = MicrosoftPending {
        sign_in,
        configuration_id: done.configuration.id().as_str().to_owned(),
        ehr_issuer: issuer.as_str().to_owned(),
        ehr_user_id: pending.ehr_user_id,
        record: done.record.clone(),
        key: pending.key,
        facts: KeptFacts::from(&pending.facts),
        binding: binding_of(&done.browser),
    };
    pending::put(
        state.inner.store.as_ref(),
        request.state().expose(),
        MICROSOFT_SIGN_IN,
        &stash,
        state.inner.launch_ttl,
    )
    .await
    .map_err(LaunchError::Internal)?;
    Ok(see_other(request.url().as_str()))
}

/// `GET /launch/microsoft/callback?code=…&state=…`: links the EHR user to the Microsoft account,
/// then continues the launch that asked for it, within the launch deadline.
pub(crate) async fn microsoft_callback(
    state: &AppState,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, LaunchError> {
    within_deadline(state, complete_microsoft_sign_in(state, query, headers)).await
}

async fn complete_microsoft_sign_in(
    state: &AppState,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, LaunchError> {
    let ms = state.microsoft()?;
    let state_param = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .ok_or(LaunchError::StateRejected)?;
    let stash: Option<MicrosoftPending> =
        pending::take(state.inner.store.as_ref(), &state_param, MICROSOFT_SIGN_IN)
            .await
            .map_err(LaunchError::Internal)?;
    let stash = stash.ok_or(LaunchError::StateRejected)?;
    let callback = Callback::from_query(query).map_err(LaunchError::microsoft)?;
    let browser = read_cookie(headers, &state.inner.cookies.browser_cookie());
    if !same_browser(browser.as_deref(), Some(&stash.binding)) {
        return Err(LaunchError::BrowserMismatch);
    }
    let oidc = ms.oidc().await?;
    let signed_in = state
        .inner
        .metrics
        .time(
            "entra_sign_in",
            oidc.complete_sign_in(stash.sign_in, &callback),
        )
        .await
        .map_err(LaunchError::microsoft)?;
    let (Some(oid), Some(tid)) = (
        signed_in.claims.str_claim("oid"),
        signed_in.claims.str_claim("tid"),
    ) else {
        return Err(LaunchError::SignInRefused(
            "Microsoft did not say which account signed in".to_owned(),
        ));
    };
    if !tid.eq_ignore_ascii_case(&ms.tenant_id) {
        return Err(LaunchError::WrongMicrosoftTenant);
    }
    let ehr_issuer = FhirBaseUrl::parse(&stash.ehr_issuer, UrlPolicy::DEVELOPMENT)
        .map_err(LaunchError::internal)?;
    // The configuration must still be approved.
    let configuration = find_configuration(
        state.inner.store.as_ref(),
        ehr_issuer.as_str(),
        stash.record.environment,
    )
    .await?;
    if configuration.id().as_str() != stash.configuration_id {
        return Err(LaunchError::StateRejected);
    }
    state
        .inner
        .store
        .upsert_user_link(&UserLink {
            ehr_issuer,
            ehr_user_id: stash.ehr_user_id,
            microsoft_tenant_id: MicrosoftTenantId::new(tid).map_err(LaunchError::internal)?,
            microsoft_object_id: MicrosoftObjectId::new(oid).map_err(LaunchError::internal)?,
            linked_at: Utc::now(),
        })
        .await?;
    tracing::info!("linked an EHR user to their Microsoft account");
    let opened = after_microsoft_sign_in(
        state.ports(),
        configuration.id(),
        &stash.key,
        VisitFacts::from(stash.facts),
        oid,
    )
    .await?;
    open_page(state, headers, opened).await
}
