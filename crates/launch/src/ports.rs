//! The ports the use cases take: repositories, Graph meetings, FHIR reads, time.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use visitbridge_fhir::PractitionerId;
use visitbridge_graph::{
    GraphError, MeetingChanges, MeetingId, MeetingInfo, MeetingOutcome, MeetingPolicy,
    PatientJoinUrl, UserObjectId, VisitMeetingRequest,
};
use visitbridge_http::Secret;
use visitbridge_smart::LaunchContext;
use visitbridge_store::{UserLinkRepo, Visit, VisitRepo};
use visitbridge_visit::{RecordContext, VisitDirectory};

use crate::LaunchCoreError;

/// The Teams meetings of visits: [`visitbridge_graph::GraphClient`] behind the launch service's
/// adapter in production, a fake in tests.
#[async_trait]
pub trait Meetings: Send + Sync {
    /// `createOrGet` under the request's organiser and `externalId`.
    async fn create_or_get(
        &self,
        request: &VisitMeetingRequest,
    ) -> Result<MeetingOutcome, GraphError>;
    /// One PATCH of the meeting: its policy, its times, or both.
    async fn update_meeting(
        &self,
        organizer: &UserObjectId,
        meeting: &MeetingId,
        changes: &MeetingChanges,
    ) -> Result<MeetingInfo, GraphError>;
    /// The URL a patient joins `meeting` with (never fails: the meeting's own URL is the
    /// fallback).
    async fn patient_join_url(
        &self,
        organizer: &UserObjectId,
        meeting: &MeetingInfo,
    ) -> PatientJoinUrl;
    /// The policy every visit's meeting must have before anyone receives a join URL.
    fn policy(&self) -> &MeetingPolicy;
    /// Whether `url`, from Graph, may be a redirect target.
    fn is_safe_join_url(&self, url: &str) -> bool;
    /// The visit's meeting is ready: keep its change notifications coming (in the background,
    /// never on the launch's path).
    fn meeting_ready(&self, visit: &Visit);
}

/// The time, so that tests can choose it.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Where the latency of each upstream call goes (the service's metrics).
pub trait UpstreamTimer: Send + Sync {
    /// `upstream` (e.g. `fhir`, `graph_create_or_get`) answered after `elapsed`.
    fn observe(&self, upstream: &'static str, elapsed: Duration);
}

/// A timer that keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimer;

impl UpstreamTimer for NoTimer {
    fn observe(&self, _: &'static str, _: Duration) {}
}

/// Runs `call`, recording its latency under `upstream`.
pub(crate) async fn timed<T>(
    timer: &dyn UpstreamTimer,
    upstream: &'static str,
    call: impl Future<Output = T>,
) -> T {
    let started = Instant::now();
    let out = call.await;
    timer.observe(upstream, started.elapsed());
    out
}

/// What the use cases work with. Cheap to copy: references only.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// Visit rows (the registry of one meeting per visit).
    pub visits: &'a dyn VisitRepo,
    /// Links of EHR users to Microsoft accounts.
    pub links: &'a dyn UserLinkRepo,
    /// Teams meetings; `None` when Microsoft 365 is not configured (a use case then stops with
    /// [`LaunchCoreError::MeetingsNotConfigured`] where it first needs a meeting).
    pub meetings: Option<&'a dyn Meetings>,
    /// The time.
    pub clock: &'a dyn Clock,
    /// Upstream latencies.
    pub timer: &'a dyn UpstreamTimer,
    /// The deployment secret meeting `externalId`s and patient links are keyed with.
    pub deployment_secret: &'a Secret,
    /// What stored patient and appointment ids are keyed with (see
    /// [`ReferenceKeys`](visitbridge_visit::ReferenceKeys)).
    pub reference_keys: &'a visitbridge_visit::ReferenceKeys,
}

impl<'a> Ports<'a> {
    /// The meetings port, or why there is none.
    pub(crate) fn meetings(&self) -> Result<&'a dyn Meetings, LaunchCoreError> {
        self.meetings.ok_or(LaunchCoreError::MeetingsNotConfigured)
    }
}

/// How a launch reads its visit from the EHR: the FHIR server with the launch's token, and what
/// the launch said.
#[derive(Clone, Copy)]
pub(crate) struct VisitRead<'a> {
    /// The EHR's FHIR server, with the launch's access token.
    pub(crate) directory: &'a dyn VisitDirectory,
    /// The launch URL's record context.
    pub(crate) record: &'a RecordContext,
    /// The token response's launch context.
    pub(crate) context: &'a LaunchContext,
    /// The launching practitioner, when the EHR named one.
    pub(crate) practitioner: Option<&'a PractitionerId>,
}
