//! The patient's paths: the portal launch, the signed link, the waiting page, the device test.
//!
//! The patient is sent only to the join URL Graph returned for the visit's meeting, after the
//! meeting policy (lobby) is in place. When the clinician has not launched yet, the meeting is
//! created under the visit's practitioner if they are linked to Microsoft; otherwise the patient
//! waits on a page that checks again every 15 seconds.
//!
//! The launch URL's `sessionId` is the patient's to edit (the EHR signs only `launch`), so the
//! visit it names is used only when it is the one the EHR attested in the token response: a
//! stored visit of the token's `patient` (and `appointment`, when named), else — after the FHIR
//! reads the launch makes anyway — a CSN that is an identifier of the attested Appointment or
//! Encounter, under a key no other appointment or patient holds.

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use chrono::Utc;
use visitbridge_approval::{ConfigurationId, FhirBaseUrl, UrlPolicy};
use visitbridge_graph::{ExternalMeetingId, MeetingInfo};
use visitbridge_store::{UserLinkRepo, Visit, VisitRepo};
use visitbridge_visit::{Attested, Fit, LinkError, PatientLink, visit_key};

use crate::{
    error::LaunchError,
    launch::{
        Completed, fhir_client, key_external, practitioner_user_id, resolve, see_other, stored_ids,
        within_deadline,
    },
    meeting::{self, VisitFacts},
    microsoft::Microsoft,
    session::{self, Grant},
    state::AppState,
    views::{DeviceTestPage, WaitingPage, html},
};

/// The first of `practitioners` linked to a Microsoft account at `issuer`.
async fn first_linked(
    state: &AppState,
    issuer: &FhirBaseUrl,
    practitioners: &[String],
) -> Result<Option<String>, LaunchError> {
    for id in practitioners {
        let Some(user) = practitioner_user_id(id) else {
            continue;
        };
        if let Some(link) = state.inner.store.get_user_link(issuer, &user).await? {
            return Ok(Some(link.microsoft_object_id.as_str().to_owned()));
        }
    }
    Ok(None)
}

/// Sends the patient to the meeting of `visit` (creating it under the visit's organiser first
/// when it does not exist yet).
async fn to_meeting(
    state: &AppState,
    ms: &Microsoft,
    visit: Visit,
    facts: &VisitFacts,
) -> Result<Response, LaunchError> {
    let (visit, meeting): (Visit, Option<MeetingInfo>) = if visit.join_web_url.is_none() {
        let outcome = meeting::create_or_get(state, ms, &visit, facts).await?;
        let (visit, info) = meeting::settle(state, ms, visit, outcome, facts).await?;
        (visit, Some(info))
    } else {
        (visit, None)
    };
    let url = meeting::patient_url(state, ms, &visit, meeting).await?;
    Ok(see_other(&url))
}

/// Grants the browser's session the waiting patient's `visit` and sends them to the waiting page.
async fn wait_for_clinician(
    state: &AppState,
    headers: &HeaderMap,
    visit: &Visit,
    practitioners: Vec<String>,
    ehr_issuer: Option<String>,
) -> Result<Response, LaunchError> {
    let cookie = session::grant(
        state.inner.store.as_ref(),
        &state.inner.cookies,
        headers,
        Grant::patient(visit.id.clone(), practitioners, ehr_issuer)?,
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
    let ms = state.microsoft()?;
    let configuration = &done.configuration;
    let attested = Attested::from_context(&done.launch.context);
    // The clinician usually launched first: the meeting is found by the visit key, and taken
    // without a FHIR read when its stored ids are the attested patient's and appointment's.
    let mut existing = None;
    if let Some(key) = visit_key(&done.record, &done.launch.context) {
        let external = key_external(state, configuration, &key);
        if let Some(visit) = state
            .inner
            .store
            .visit_by_key(configuration.id(), external.as_str())
            .await?
        {
            if visit.organizer_object_id.is_some()
                && attested.stored_fit(stored_ids(&visit)) == Fit::Same
            {
                return to_meeting(state, ms, visit, &VisitFacts::default()).await;
            }
            existing = Some(visit);
        }
    }
    let fhir = fhir_client(state, configuration, &done.launch)?;
    let resolved = resolve(state, &fhir, &done.record, &done.launch, None).await?;
    attested.check_resolved(&done.record, &resolved)?;
    if let Some(existing) = &existing {
        // Checked before the claim, which would fill the row's empty fields.
        attested.check_claimed(&resolved.key, &resolved, stored_ids(existing))?;
    }
    let mut facts = VisitFacts::from_launch(&done.record, &done.launch.context, None);
    facts.add(&resolved);
    let external = key_external(state, configuration, &resolved.key);
    let issuer = configuration.fhir_base()?;
    let practitioners: Vec<String> = resolved
        .practitioners
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    let performer = first_linked(state, issuer, &practitioners).await?;
    let visit = meeting::claim(
        state,
        configuration.id(),
        &external,
        &facts,
        performer.as_deref(),
    )
    .await?;
    attested.check_claimed(&resolved.key, &resolved, stored_ids(&visit))?;
    if visit.organizer_object_id.is_some() {
        return to_meeting(state, ms, visit, &facts).await;
    }
    wait_for_clinician(
        state,
        headers,
        &visit,
        practitioners,
        Some(issuer.as_str().to_owned()),
    )
    .await
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
    let visit = state
        .inner
        .store
        .get_visit(&session.visit_id)
        .await?
        .ok_or(LaunchError::NotFound)?;
    let ms = state.microsoft()?;
    if visit.organizer_object_id.is_some() {
        return to_meeting(state, ms, visit, &VisitFacts::default()).await;
    }
    let issuer = session
        .ehr_issuer
        .as_deref()
        .and_then(|i| FhirBaseUrl::parse(i, UrlPolicy::DEVELOPMENT).ok());
    let performer = match &issuer {
        Some(issuer) => first_linked(state, issuer, &session.practitioners).await?,
        None => None,
    };
    if let Some(performer) = performer {
        let external = ExternalMeetingId::from_stored(visit.external_meeting_id.clone());
        let visit = meeting::claim(
            state,
            &visit.configuration_id,
            &external,
            &VisitFacts::default(),
            Some(&performer),
        )
        .await?;
        return to_meeting(state, ms, visit, &VisitFacts::default()).await;
    }
    Ok(html(StatusCode::OK, &WaitingPage))
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
    let link = PatientLink::verify(token, &state.inner.deployment_secret, Utc::now())?;
    let configuration = ConfigurationId::new(link.configuration_id)
        .map_err(|_| LaunchError::Link(LinkError::Invalid))?;
    let visit = state
        .inner
        .store
        .visit_by_key(&configuration, &link.external_meeting_id)
        .await?
        .ok_or(LaunchError::Link(LinkError::Invalid))?;
    if visit.organizer_object_id.is_some() {
        let ms = state.microsoft()?;
        return to_meeting(state, ms, visit, &VisitFacts::default()).await;
    }
    wait_for_clinician(state, headers, &visit, Vec::new(), None).await
}

/// A device-test launch, after the SMART callback: the visit's lobby when its meeting exists and
/// is the attested patient's visit (Teams shows a camera and microphone preview there), else
/// instructions.
pub(crate) async fn device_test(
    state: &AppState,
    done: Completed,
) -> Result<Response, LaunchError> {
    let mut join_url = None;
    if let (Some(key), Ok(ms)) = (
        visit_key(&done.record, &done.launch.context),
        state.microsoft(),
    ) {
        let external = key_external(state, &done.configuration, &key);
        if let Some(visit) = state
            .inner
            .store
            .visit_by_key(done.configuration.id(), external.as_str())
            .await?
            && visit.join_web_url.is_some()
            && visit.organizer_object_id.is_some()
            && Attested::from_context(&done.launch.context).stored_fit(stored_ids(&visit))
                == Fit::Same
        {
            match meeting::patient_url(state, ms, &visit, None).await {
                Ok(url) => join_url = Some(url),
                Err(e) => tracing::warn!(error = %e, "device test without the visit's lobby"),
            }
        }
    }
    Ok(html(StatusCode::OK, &DeviceTestPage { join_url }))
}
