//! Graph's change notifications, kept before Graph gets its answer: each event of a known visit
//! becomes an AuditEvent with its outbox rows (one transaction per event, through
//! [`AuditRecorder`]), a call end or a "missed" lifecycle schedules the visit's reconciliation
//! with its attendance report, and only then may the webhook answer `202`.
//!
//! An event's configuration gets its write-back sinks set first ([`WritebackSinks`]); if that
//! fails the batch fails and Graph delivers it again, so no event is ever stored without its
//! outbox rows. An event's visit is found by how Graph named the meeting (join URL or meeting
//! id) and, failing that, by the subscription it came through — both from the store, so a
//! restarted service maps notifications of subscriptions an earlier run made. A batch of one
//! meeting's events costs one lookup.
//!
//! Every call end of a visit's meeting (a meeting can hold several calls), and Graph's "missed"
//! lifecycle event, schedules its reconciliation the configured delay after the notification
//! came (replacing an earlier schedule), so the last call is reconciled too, and its report read
//! with all earlier ones.
//!
//! What to do afterwards — wake the live panels, act on lifecycle events, count — is returned in
//! [`KeptNotifications`] for the caller, which owns the panels and the subscriptions.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use visitbridge_approval::ConfigurationId;
use visitbridge_audit::{AuditError, AuditRecorder};
use visitbridge_graph::{LifecycleEvent, MeetingRef, Notification, SubscriptionId};
use visitbridge_store::{
    AuditStore, GraphSubscriptionId, RecordOutcome, StoreError, Visit, VisitId,
};
use visitbridge_visit::RosterChange;

use crate::ports::Clock;

/// Sets a configuration's write-back sinks before its first event is stored (the binary builds
/// them from the approved configuration and its secrets).
#[async_trait]
pub trait WritebackSinks: Send + Sync {
    /// Makes sure `configuration`'s sinks are set; `Ok` too when it has none to set (not
    /// approved, unknown: its events are recorded and not written back).
    async fn ensure(
        &self,
        configuration: &ConfigurationId,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// What keeping notifications needs.
pub struct NotificationPorts<'a> {
    /// Where visits are looked up and reconciliations scheduled.
    pub store: &'a dyn AuditStore,
    /// Stores an event with its outbox rows.
    pub recorder: &'a AuditRecorder,
    /// Sets a configuration's sinks before its events are stored.
    pub sinks: &'a dyn WritebackSinks,
    /// Now.
    pub clock: &'a dyn Clock,
    /// From a call's end (or a "missed" lifecycle event) to reading its attendance report.
    pub reconciliation_delay: Duration,
}

/// Why a batch could not be kept: Graph gets an error and delivers it again.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// A visit could not be looked up, or a reconciliation not scheduled.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// An event could not be stored with its outbox rows.
    #[error("an event could not be recorded: {0}")]
    Audit(#[from] AuditError),
    /// A configuration's write-back sinks could not be set.
    #[error("the write-back sinks could not be set: {0}")]
    Sinks(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What became of a batch once it is kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeptNotifications {
    /// Events stored now.
    pub recorded: usize,
    /// Events stored before (Graph delivers at least once).
    pub duplicates: usize,
    /// Events of meetings that are no known visit: dropped.
    pub unknown_meeting: usize,
    /// Notifications that could not be read (the webhook logged why).
    pub unreadable: usize,
    /// The roster changes to show on each visit's live panel, in order.
    pub changes: Vec<(VisitId, RosterChange)>,
    /// Visits whose reconciliation was scheduled (a call ended, or Graph missed notifications).
    pub reconciling: Vec<VisitId>,
    /// The lifecycle events for the subscriptions' upkeep, in order.
    pub lifecycle: Vec<(SubscriptionId, LifecycleEvent)>,
}

/// The visits found in one batch.
#[derive(Default)]
struct Found {
    by_meeting: HashMap<MeetingRef, Option<Visit>>,
    by_subscription: HashMap<SubscriptionId, Option<Visit>>,
}

impl Found {
    async fn by_subscription(
        &mut self,
        store: &dyn AuditStore,
        id: &SubscriptionId,
    ) -> Result<Option<Visit>, StoreError> {
        if let Some(found) = self.by_subscription.get(id) {
            return Ok(found.clone());
        }
        let visit = match GraphSubscriptionId::new(id.as_str()) {
            Ok(stored) => store.visit_by_subscription(&stored).await?,
            Err(_) => None,
        };
        self.by_subscription.insert(id.clone(), visit.clone());
        Ok(visit)
    }

    async fn visit_of(
        &mut self,
        store: &dyn AuditStore,
        meeting: &MeetingRef,
        subscription: &SubscriptionId,
    ) -> Result<Option<Visit>, StoreError> {
        if !self.by_meeting.contains_key(meeting) {
            let visit = match meeting {
                MeetingRef::JoinWebUrl(url) => store.visit_by_join_url(url).await?,
                MeetingRef::MeetingId(id) => store.visit_by_meeting(id.as_str()).await?,
                MeetingRef::Resource(_) => None,
            };
            self.by_meeting.insert(meeting.clone(), visit);
        }
        if let Some(Some(visit)) = self.by_meeting.get(meeting) {
            return Ok(Some(visit.clone()));
        }
        self.by_subscription(store, subscription).await
    }
}

/// Keeps a batch of notifications: see the [module](self). On `Err` nothing of what is not yet
/// stored may be acknowledged; what was stored stays (a redelivery finds it and counts it as a
/// duplicate).
pub async fn keep_notifications(
    ports: &NotificationPorts<'_>,
    notifications: &[Notification],
) -> Result<KeptNotifications, NotificationError> {
    let mut kept = KeptNotifications {
        unreadable: notifications
            .iter()
            .filter(|n| matches!(n, Notification::Unreadable(_)))
            .count(),
        ..KeptNotifications::default()
    };
    let mut found = Found::default();
    for notification in notifications {
        let Notification::Events {
            subscription_id,
            events,
            ..
        } = notification
        else {
            continue;
        };
        for event in events {
            let Some(visit) = found
                .visit_of(ports.store, &event.meeting, subscription_id)
                .await?
            else {
                kept.unknown_meeting += 1;
                continue;
            };
            ports
                .sinks
                .ensure(&visit.configuration_id)
                .await
                .map_err(NotificationError::Sinks)?;
            match ports.recorder.record(&visit, event).await?.outcome {
                RecordOutcome::Recorded => kept.recorded += 1,
                RecordOutcome::Duplicate => kept.duplicates += 1,
            }
            if let Some(change) = RosterChange::from_event(event) {
                if change == RosterChange::CallEnded && !kept.reconciling.contains(&visit.id) {
                    kept.reconciling.push(visit.id.clone());
                }
                kept.changes.push((visit.id, change));
            }
        }
    }
    for notification in notifications {
        let Notification::Lifecycle {
            subscription_id,
            event,
            ..
        } = notification
        else {
            continue;
        };
        // Maybe the call's end was among what was missed: reconcile from its report.
        if *event == LifecycleEvent::Missed
            && let Some(visit) = found.by_subscription(ports.store, subscription_id).await?
            && !kept.reconciling.contains(&visit.id)
        {
            kept.reconciling.push(visit.id);
        }
        kept.lifecycle
            .push((subscription_id.clone(), event.clone()));
    }
    // Graph redelivers until it gets its answer: a crash before this schedules on redelivery.
    let at = ports.clock.now()
        + chrono::Duration::from_std(ports.reconciliation_delay).unwrap_or_default();
    for visit in &kept.reconciling {
        ports.store.schedule_reconciliation(visit, at).await?;
    }
    Ok(kept)
}
