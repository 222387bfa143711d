//! The clinician's visit page: join links, the live participant panel (server-sent events) and
//! patient links. Every route needs a session holding the clinician's grant of that visit (one
//! browser's session holds the grants of every visit launched in it).

use std::{convert::Infallible, time::Duration};

use axum::{
    http::{HeaderMap, StatusCode},
    response::{
        Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::Stream;
use tokio_stream::{StreamExt as _, wrappers::BroadcastStream};
use url::Url;
use visitbridge_store::{Visit, VisitId};
use visitbridge_visit::PatientLink;

use crate::{
    error::LaunchError,
    session::{self, Grant},
    state::AppState,
    views::{PatientLinkPage, VisitPage, html, minutes_text},
};

/// The session's clinician grant for visit `id`, and the visit.
async fn clinician(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Grant, Visit), LaunchError> {
    let session = session::load(state.inner.store.as_ref(), &state.inner.cookies, headers)
        .await?
        .and_then(|s| s.clinician(id).cloned())
        .ok_or(LaunchError::SessionRequired)?;
    let visit_id = VisitId::new(id).map_err(|_| LaunchError::NotFound)?;
    let visit = state
        .inner
        .store
        .get_visit(&visit_id)
        .await?
        .ok_or(LaunchError::NotFound)?;
    Ok((session, visit))
}

/// The Teams app deep link of a Teams web join URL (`msteams:/l/meetup-join/…`).
fn teams_app_url(join_web_url: &str) -> Option<String> {
    let url = Url::parse(join_web_url).ok()?;
    (url.scheme() == "https" && url.host_str() == Some("teams.microsoft.com")).then(|| {
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        format!("msteams:{path}")
    })
}

/// `GET /visits/{id}`.
pub(crate) async fn page(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Response, LaunchError> {
    let (session, visit) = clinician(state, headers, id).await?;
    let join_web_url = visit
        .join_web_url
        .clone()
        .filter(|u| {
            state
                .inner
                .microsoft
                .as_ref()
                .is_some_and(|ms| ms.is_safe_join_url(u))
        })
        .ok_or_else(|| LaunchError::internal("the visit page was asked before its meeting"))?;
    let (panel, _) = state
        .inner
        .live
        .subscribe(&visit.id, session.object_id.as_deref())
        .await?;
    Ok(html(
        StatusCode::OK,
        &VisitPage {
            teams_app_url: teams_app_url(&join_web_url),
            join_web_url,
            panel,
            events_url: format!("/visits/{}/events", visit.id),
            link_action: format!("/visits/{}/patient-link", visit.id),
            csrf: session.csrf,
            link_ttl: minutes_text(state.inner.link_ttl_minutes),
        },
    ))
}

/// `GET /visits/{id}/events`: the panel as server-sent events (`event: panel`, JSON data), the
/// current state first, then on every change.
pub(crate) async fn events(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, LaunchError> {
    let (session, visit) = clinician(state, headers, id).await?;
    let viewer = session.object_id.clone();
    let (first, changes) = state
        .inner
        .live
        .subscribe(&visit.id, viewer.as_deref())
        .await?;
    let live = state.inner.live.clone();
    let visit_id = visit.id.clone();
    // A lagging receiver only missed wake-ups: the current panel is sent either way.
    let later = BroadcastStream::new(changes).map(move |_| live.view(&visit_id, viewer.as_deref()));
    let stream = tokio_stream::once(first).chain(later).map(|view| {
        Ok(Event::default()
            .event("panel")
            .json_data(&view)
            .unwrap_or_else(|_| Event::default().event("panel").data("{}")))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `POST /visits/{id}/patient-link` (form field `csrf`): a signed, expiring link for the patient.
pub(crate) async fn patient_link(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    csrf: &str,
) -> Result<Response, LaunchError> {
    let (session, visit) = clinician(state, headers, id).await?;
    if !visitbridge_http::Secret::new(session.csrf.clone()).constant_time_eq(csrf) {
        return Err(LaunchError::CsrfRejected);
    }
    let expires_at = chrono::Utc::now()
        + chrono::Duration::minutes(i64::try_from(state.inner.link_ttl_minutes).unwrap_or(24 * 60));
    let token = PatientLink {
        configuration_id: visit.configuration_id.as_str().to_owned(),
        external_meeting_id: visit.external_meeting_id.clone(),
        expires_at,
    }
    .sign(&state.inner.deployment_secret);
    Ok(html(
        StatusCode::OK,
        &PatientLinkPage {
            link: state.public_url(&format!("/join/{token}")),
            expires: expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            back: format!("/visits/{}", visit.id),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teams_links_get_an_app_deep_link() {
        assert_eq!(
            teams_app_url("https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0?context=%7b%7d")
                .as_deref(),
            Some("msteams:/l/meetup-join/19%3ameeting_X%40thread.v2/0?context=%7b%7d")
        );
        assert_eq!(teams_app_url("https://evil.example/l/meetup-join/x"), None);
        assert_eq!(teams_app_url("http://teams.microsoft.com/l/x"), None);
    }
}
