//! The patient's paths: the portal launch, the signed link, the waiting page, the device test.
//! The decisions (which visit, when the meeting exists, whether to wait) are the launch
//! library's ([`visitbridge_launch_core::patient_launch`] and its siblings); this maps their
//! outcomes to the meeting, the waiting page or the device-test page.

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use visitbridge_approval::{FhirBaseUrl, UrlPolicy};
use visitbridge_launch_core::{PatientLaunch, PatientOutcome};
use visitbridge_store::VisitId;

use crate::{
    error::LaunchError,
    launch::{Completed, fhir_client, see_other, within_deadline},
    session::{self, Grant},
    state::AppState,
    views::{DeviceTestPage, WaitingPage, html},
};

/// The response to a patient's outcome: the meeting, or the waiting page (with the visit
/// granted to the browser's session).
async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    outcome: PatientOutcome,
) -> Result<Response, LaunchError> {
    match outcome {
        PatientOutcome::Meeting(url) => Ok(see_other(&url)),
        PatientOutcome::Wait {
            visit,
            practitioners,
            issuer,
        } => {
            wait_for_clinician(
                state,
                headers,
                &visit,
                practitioners,
                issuer.map(|i| i.as_str().to_owned()),
            )
            .await
        }
    }
}

/// Grants the browser's session the waiting patient's `visit` and sends them to the waiting page.
async fn wait_for_clinician(
    state: &AppState,
    headers: &HeaderMap,
    visit: &VisitId,
    practitioners: Vec<String>,
    ehr_issuer: Option<String>,
) -> Result<Response, LaunchError> {
    let cookie = session::grant(
        state.inner.store.as_ref(),
        &state.inner.cookies,
        headers,
        Grant::patient(visit.clone(), practitioners, ehr_issuer)?,
        state.inner.session_ttl,
    )
    .await?;
    let mut response = see_other("/join/wait");
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// A patient's launch from the portal, after the SMART callback.
pub(crate) async fn after_launch(
    state: &AppState,
    headers: &HeaderMap,
    done: Completed,
) -> Result<Response, LaunchError> {
    state.microsoft()?;
    let fhir = fhir_client(state, &done.configuration, &done.launch)?;
    let outcome = visitbridge_launch_core::patient_launch(
        state.ports(),
        PatientLaunch {
            configuration: done.configuration.id(),
            issuer: done.configuration.fhir_base(),
            record: &done.record,
            context: &done.launch.context,
            directory: &fhir,
        },
    )
    .await?;
    respond(state, headers, outcome).await
}

/// `GET /join/wait`: the waiting patient's page; goes to the meeting as soon as it can (within
/// the launch deadline).
pub(crate) async fn wait(state: &AppState, headers: &HeaderMap) -> Result<Response, LaunchError> {
    within_deadline(state, wait_step(state, headers)).await
}

async fn wait_step(state: &AppState, headers: &HeaderMap) -> Result<Response, LaunchError> {
    let session = session::load(state.inner.store.as_ref(), &state.inner.cookies, headers)
        .await?
        .and_then(|s| s.patient().cloned())
        .ok_or(LaunchError::SessionRequired)?;
    let issuer = session
        .ehr_issuer
        .as_deref()
        .and_then(|i| FhirBaseUrl::parse(i, UrlPolicy::DEVELOPMENT).ok());
    let url = visitbridge_launch_core::patient_waiting(
        state.ports(),
        &session.visit_id,
        &session.practitioners,
        issuer.as_ref(),
    )
    .await?;
    Ok(match url {
        Some(url) => see_other(&url),
        None => html(StatusCode::OK, &WaitingPage),
    })
}

/// `GET /join/{token}`: a signed, expiring patient link (within the launch deadline).
pub(crate) async fn join_link(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
) -> Result<Response, LaunchError> {
    within_deadline(state, join_link_step(state, headers, token)).await
}

async fn join_link_step(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
) -> Result<Response, LaunchError> {
    let outcome = visitbridge_launch_core::patient_link(state.ports(), token).await?;
    respond(state, headers, outcome).await
}

/// A device-test launch, after the SMART callback: the visit's lobby when its meeting exists and
/// is the attested patient's visit (Teams shows a camera and microphone preview there), else
/// instructions.
pub(crate) async fn device_test(
    state: &AppState,
    done: Completed,
) -> Result<Response, LaunchError> {
    let join_url = match state.microsoft() {
        Ok(_) => {
            visitbridge_launch_core::device_test(
                state.ports(),
                done.configuration.id(),
                &done.record,
                &done.launch.context,
            )
            .await?
        }
        Err(_) => None,
    };
    Ok(html(StatusCode::OK, &DeviceTestPage { join_url }))
}
