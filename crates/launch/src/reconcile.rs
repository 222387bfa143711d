//! Reconciliation with attendance reports: some minutes after a call ends, the meeting's
//! attendance report is read and the joins and leaves that live notifications missed are
//! recorded (and written back) once.
//!
//! The schedule is on the visit's row (`VisitRepo::schedule_reconciliation`), written before Graph
//! gets its answer to the call-ended notification ([`crate::keep_notifications`]), and an upkeep
//! tick claims what is due with a lease. So a restart, or a crash mid-way, delays a reconciliation but never loses it; and a
//! reconciliation that runs twice records nothing new (`AuditRecorder::reconcile` skips what is
//! stored, and event ids are deterministic).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use visitbridge_audit::{AuditError, AuditRecorder};
use visitbridge_graph::{GraphError, MeetingId, ParticipantEvent, UserObjectId};
use visitbridge_store::{ReconciliationClaim, VisitRepo};

use crate::{notifications::WritebackSinks, ports::Clock};

/// Graph's attendance reports of a meeting, as participant events.
#[async_trait]
pub trait AttendanceReports: Send + Sync {
    /// Every join and leave the meeting's attendance reports list (empty: no report yet).
    async fn attendance_events(
        &self,
        organizer: &UserObjectId,
        meeting: &MeetingId,
    ) -> Result<Vec<ParticipantEvent>, GraphError>;
}

/// How long a claimed reconciliation is held: longer than reading a report takes, short enough
/// that one whose process died is soon taken up again.
const LEASE: Duration = Duration::from_secs(5 * 60);
/// Reconciliations per upkeep tick.
const PER_TICK: u32 = 20;

/// When and how hard to reconcile.
#[derive(Debug, Clone, Copy)]
pub struct ReconcilePolicy {
    /// From the call's end to the first attempt.
    pub delay: Duration,
    /// Between attempts.
    pub retry: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// How far apart a reported and a stored event may be and still be one (see
    /// [`AuditRecorder::reconcile`]).
    pub tolerance: Duration,
}

/// How one attempt ended.
enum Attempt {
    /// Done, or nothing to do.
    Finished,
    /// Worth another try (the report is not there yet, Graph or the store failed for now).
    Retry(AttemptError),
    /// Will not succeed (no permission, no such meeting).
    GiveUp(AttemptError),
}

/// Why one attempt did not finish the job.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// Graph has no attendance report for the meeting yet.
    #[error("no attendance report yet")]
    NoReportYet,
    /// Graph could not be read.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The configuration's write-back sinks could not be set.
    #[error(transparent)]
    Writeback(Box<dyn std::error::Error + Send + Sync>),
    /// The events could not be recorded.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Schedules and runs reconciliations.
pub struct Reconciler {
    store: Arc<dyn VisitRepo>,
    graph: Arc<dyn AttendanceReports>,
    clock: Arc<dyn Clock>,
    recorder: AuditRecorder,
    writeback: Arc<dyn WritebackSinks>,
    policy: ReconcilePolicy,
}

impl Reconciler {
    /// Reconciliations claimed from `store`, reports read from `graph`, events recorded by
    /// `recorder` once `writeback` set the configuration's sinks.
    pub fn new(
        store: Arc<dyn VisitRepo>,
        graph: Arc<dyn AttendanceReports>,
        recorder: AuditRecorder,
        writeback: Arc<dyn WritebackSinks>,
        policy: ReconcilePolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            graph,
            clock,
            recorder,
            writeback,
            policy,
        }
    }

    /// From a call's end to its first attempt (the webhook schedules with it).
    pub fn delay(&self) -> Duration {
        self.policy.delay
    }

    /// Runs the reconciliations that are due; how many were attempted.
    pub async fn run_due(&self) -> usize {
        let claims = match self
            .store
            .claim_reconciliations(self.clock.now(), LEASE, PER_TICK)
            .await
        {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the reconciliations due");
                return 0;
            }
        };
        for claim in &claims {
            let outcome = self.attempt(claim).await;
            self.settle(claim, outcome).await;
        }
        claims.len()
    }

    async fn attempt(&self, claim: &ReconciliationClaim) -> Attempt {
        let visit = &claim.visit;
        let (Some(organizer), Some(meeting)) =
            (&visit.organizer_object_id, &visit.graph_meeting_id)
        else {
            return Attempt::Finished;
        };
        let events = match self
            .graph
            .attendance_events(
                &UserObjectId::new(organizer.as_str()),
                &MeetingId::new(meeting.as_str()),
            )
            .await
        {
            Ok(events) if events.is_empty() => {
                return Attempt::Retry(AttemptError::NoReportYet);
            }
            Ok(events) => events,
            Err(e) if e.is_transient() => return Attempt::Retry(e.into()),
            Err(e) => return Attempt::GiveUp(e.into()),
        };
        // What is recorded now gets its outbox rows only for sinks that are set.
        if let Err(e) = self.writeback.ensure(&visit.configuration_id).await {
            return Attempt::Retry(AttemptError::Writeback(e));
        }
        match self
            .recorder
            .reconcile(visit, &events, self.policy.tolerance)
            .await
        {
            Ok(summary) => {
                tracing::info!(
                    visit_id = %visit.id,
                    attempt = claim.attempt,
                    recorded = summary.recorded,
                    already_seen = summary.already_seen,
                    duplicates = summary.duplicates,
                    "reconciled the visit with its attendance report"
                );
                Attempt::Finished
            }
            Err(e) => Attempt::Retry(e.into()),
        }
    }

    async fn settle(&self, claim: &ReconciliationClaim, outcome: Attempt) {
        let visit = &claim.visit.id;
        let result = match outcome {
            Attempt::Finished => self.store.finish_reconciliation(visit, claim.attempt).await,
            Attempt::Retry(why) if claim.attempt < self.policy.max_attempts => {
                tracing::info!(visit_id = %visit, attempt = claim.attempt, reason = %why, "reconciliation to be tried again");
                let at = self.clock.now()
                    + chrono::Duration::from_std(self.policy.retry).unwrap_or_default();
                self.store
                    .retry_reconciliation(visit, claim.attempt, at)
                    .await
            }
            Attempt::Retry(why) | Attempt::GiveUp(why) => {
                tracing::warn!(visit_id = %visit, attempt = claim.attempt, reason = %why, "giving up reconciling the visit with its attendance report");
                self.store.finish_reconciliation(visit, claim.attempt).await
            }
        };
        if let Err(e) = result {
            // The claim runs out and the reconciliation comes back: nothing is lost.
            tracing::warn!(error = %e, visit_id = %visit, "cannot record a reconciliation's outcome");
        }
    }
}
