//! Reconciliation with attendance reports against a Graph fake: what live notifications missed
//! is recorded once with its outbox rows; no report yet or a passing fault is tried again after
//! the retry interval, within the attempts; a refusal is given up at once.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use visitbridge_audit::{AuditRecorder, Sink};
use visitbridge_graph::{
    EventKind, EventSource, GraphError, MeetingId, MeetingRef, Participant, ParticipantEvent,
    ParticipantKind, UserObjectId,
};
use visitbridge_launch_core::{
    ApprovedConfiguration, AttendanceReports, Clock, ConfigurationSinks, ReconcilePolicy,
    Reconciler, SinkBuilder,
};
use visitbridge_store::{AuditRepo, ConfigurationRepo, OutboxRepo, TenantRepo, Visit, VisitRepo};

use crate::{
    clinician::clinician_opens_visit,
    fakes::{CLINICIAN_OID, FixedClock, MovingClock, World, status_sink},
};

const RETRY: Duration = Duration::from_secs(60);
const POLICY: ReconcilePolicy = ReconcilePolicy {
    delay: Duration::ZERO,
    retry: RETRY,
    max_attempts: 3,
    tolerance: Duration::from_secs(60),
};

/// What Graph answers for the meeting's attendance reports, and how often it was asked.
enum Report {
    NotYet,
    Failing(u16),
    Listing(Vec<ParticipantEvent>),
}

struct FakeReports {
    answer: Mutex<Report>,
    asked: Mutex<u32>,
}

impl FakeReports {
    fn answer(&self, report: Report) {
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = report;
    }

    fn asked(&self) -> u32 {
        *self.asked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl AttendanceReports for FakeReports {
    async fn attendance_events(
        &self,
        _: &UserObjectId,
        _: &MeetingId,
    ) -> Result<Vec<ParticipantEvent>, GraphError> {
        *self.asked.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        match &*self.answer.lock().unwrap_or_else(PoisonError::into_inner) {
            Report::NotYet => Ok(Vec::new()),
            Report::Failing(status) => Err(GraphError::Api {
                status: *status,
                code: "Failing".into(),
                message: "failing".into(),
                request_id: None,
            }),
            Report::Listing(events) => Ok(events.clone()),
        }
    }
}

struct StatusSinks;

impl SinkBuilder for StatusSinks {
    fn build(
        &self,
        _: &ApprovedConfiguration,
    ) -> Result<Vec<Arc<dyn Sink>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(vec![status_sink()])
    }
}

struct Reconciling {
    world: World,
    visit: Visit,
    clock: Arc<MovingClock>,
    reports: Arc<FakeReports>,
    reconciler: Reconciler,
}

impl Reconciling {
    async fn new(report: Report) -> Self {
        let world = World::new().await;
        world.approve().await;
        world.link("doc-1", CLINICIAN_OID).await;
        let visit = clinician_opens_visit(&world).await.visit;
        let clock = Arc::new(MovingClock::at(FixedClock.now()));
        let reports = Arc::new(FakeReports {
            answer: Mutex::new(report),
            asked: Mutex::new(0),
        });
        let sinks = Arc::new(ConfigurationSinks::new(
            world.store.clone() as Arc<dyn TenantRepo>,
            world.store.clone() as Arc<dyn ConfigurationRepo>,
            Arc::new(StatusSinks),
        ));
        let recorder = AuditRecorder::new(world.store.clone(), sinks.sinks().clone());
        let reconciler = Reconciler::new(
            world.store.clone(),
            Arc::clone(&reports) as Arc<dyn AttendanceReports>,
            recorder,
            sinks,
            POLICY,
            Arc::clone(&clock) as Arc<dyn Clock>,
        );
        world
            .store
            .schedule_reconciliation(&visit.id, clock.now())
            .await
            .unwrap();
        Self {
            world,
            visit,
            clock,
            reports,
            reconciler,
        }
    }

    async fn scheduled(&self) -> Option<(chrono::DateTime<chrono::Utc>, u32)> {
        self.world
            .store
            .reconciliation_of(&self.visit.id)
            .await
            .unwrap()
            .map(|r| (r.due_at, r.attempts))
    }
}

fn guest(kind: EventKind, visit: &Visit, minute: i64) -> ParticipantEvent {
    ParticipantEvent {
        kind,
        at: FixedClock.now() - chrono::Duration::minutes(60 - minute),
        meeting: MeetingRef::MeetingId(MeetingId::new(
            visit.graph_meeting_id.clone().unwrap().as_str(),
        )),
        participant: Some(Participant {
            participant_id: None,
            kind: ParticipantKind::AcsGuest {
                opaque_id: "8:acs:guest-a".into(),
            },
        }),
        source: EventSource::AttendanceReport,
    }
}

#[tokio::test]
async fn what_notifications_missed_is_recorded_once_with_its_outbox_rows() {
    let reconciling = Reconciling::new(Report::NotYet).await;
    let visit = reconciling.visit.clone();
    reconciling.reports.answer(Report::Listing(vec![
        guest(EventKind::ParticipantJoined, &visit, 0),
        guest(EventKind::ParticipantLeft, &visit, 30),
    ]));
    assert_eq!(reconciling.reconciler.run_due().await, 1);
    assert_eq!(reconciling.scheduled().await, None, "finished");
    let stored = reconciling
        .world
        .store
        .events_for_visit(&visit.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    let outbox = reconciling
        .world
        .store
        .outbox_for_visit(&visit.id)
        .await
        .unwrap();
    assert_eq!(outbox.len(), 2, "written back like live events");

    // A later call end reconciles again: nothing new from the same report.
    reconciling
        .world
        .store
        .schedule_reconciliation(&visit.id, reconciling.clock.now())
        .await
        .unwrap();
    assert_eq!(reconciling.reconciler.run_due().await, 1);
    assert_eq!(
        reconciling
            .world
            .store
            .events_for_visit(&visit.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn no_report_yet_is_tried_again_after_the_interval_and_given_up_after_the_attempts() {
    let reconciling = Reconciling::new(Report::NotYet).await;
    assert_eq!(reconciling.reconciler.run_due().await, 1);
    let now = reconciling.clock.now();
    assert_eq!(
        reconciling.scheduled().await,
        Some((now + chrono::Duration::from_std(RETRY).unwrap(), 1))
    );
    assert_eq!(reconciling.reconciler.run_due().await, 0, "not due yet");

    reconciling.clock.advance(RETRY);
    assert_eq!(reconciling.reconciler.run_due().await, 1);
    assert_eq!(reconciling.scheduled().await.map(|(_, n)| n), Some(2));
    reconciling.clock.advance(RETRY);
    assert_eq!(reconciling.reconciler.run_due().await, 1);
    assert_eq!(
        reconciling.scheduled().await,
        None,
        "given up after 3 attempts"
    );
    assert_eq!(reconciling.reports.asked(), 3);
}

#[tokio::test]
async fn a_passing_fault_is_retried_and_a_refusal_given_up_at_once() {
    let reconciling = Reconciling::new(Report::Failing(503)).await;
    reconciling.reconciler.run_due().await;
    assert_eq!(reconciling.scheduled().await.map(|(_, n)| n), Some(1));

    reconciling.reports.answer(Report::Failing(403));
    reconciling.clock.advance(RETRY);
    reconciling.reconciler.run_due().await;
    assert_eq!(reconciling.scheduled().await, None);
    assert_eq!(reconciling.reports.asked(), 2);
}
