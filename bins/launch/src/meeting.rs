//! The launch library's ports, as this service fills them: the store, Graph (through
//! [`Microsoft`]), the metrics, the system clock and the deployment secret. The decisions —
//! which visit, which meeting, the policy before any join URL — are in
//! [`visitbridge_launch_core`].

use std::time::Duration;

use async_trait::async_trait;
use visitbridge_graph::{
    GraphError, MeetingChanges, MeetingId, MeetingInfo, MeetingOutcome, MeetingPolicy,
    PatientJoinUrl, UserObjectId, VisitMeetingRequest,
};
use visitbridge_launch_core::{Meetings, OpenedVisit, Ports, SystemClock, UpstreamTimer};
use visitbridge_store::Visit;

use crate::{microsoft::Microsoft, observe::Metrics, state::AppState};

#[async_trait]
impl Meetings for Microsoft {
    async fn create_or_get(
        &self,
        request: &VisitMeetingRequest,
    ) -> Result<MeetingOutcome, GraphError> {
        self.graph.create_or_get(request).await
    }

    async fn update_meeting(
        &self,
        organizer: &UserObjectId,
        meeting: &MeetingId,
        changes: &MeetingChanges,
    ) -> Result<MeetingInfo, GraphError> {
        self.graph.update_meeting(organizer, meeting, changes).await
    }

    async fn patient_join_url(
        &self,
        organizer: &UserObjectId,
        meeting: &MeetingInfo,
    ) -> PatientJoinUrl {
        self.graph.patient_join_url(organizer, meeting).await
    }

    fn policy(&self) -> &MeetingPolicy {
        Microsoft::policy(self)
    }

    fn is_safe_join_url(&self, url: &str) -> bool {
        Microsoft::is_safe_join_url(self, url)
    }

    fn meeting_ready(&self, visit: &Visit) {
        self.subscriptions.ensure(visit);
    }
}

impl UpstreamTimer for Metrics {
    fn observe(&self, upstream: &'static str, elapsed: Duration) {
        Metrics::observe(self, upstream, elapsed);
    }
}

static CLOCK: SystemClock = SystemClock;

impl AppState {
    /// The launch library's ports, with Graph through [`Microsoft`] when it is configured.
    pub(crate) fn ports(&self) -> Ports<'_> {
        Ports {
            visits: self.inner.store.as_ref(),
            links: self.inner.store.as_ref(),
            meetings: self
                .inner
                .microsoft
                .as_deref()
                .map(|ms| ms as &dyn Meetings),
            clock: &CLOCK,
            timer: self.inner.metrics.as_ref(),
            deployment_secret: &self.inner.deployment_secret,
            reference_keys: &self.inner.reference_keys,
        }
    }
}

/// After the clinician's page is answered: fetches the patient's join URL of the opened visit
/// in the background and keeps it on the visit's row, so that the patient's launch needs no
/// Graph call.
pub(crate) fn prefetch_patient_url(state: &AppState, opened: &OpenedVisit) {
    let state = state.clone();
    let opened = opened.clone();
    tokio::spawn(async move {
        if let Err(e) = state.ports().prefetch_patient_url(&opened).await {
            tracing::warn!(error = %e, visit_id = %opened.visit.id, "cannot fetch the patient's join url");
        }
    });
}
