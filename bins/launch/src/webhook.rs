//! Graph's notifications: stored (AuditEvent + outbox rows, one transaction per event) before
//! Graph gets its `202`, then shown on the visit's live panel; lifecycle notifications drive the
//! subscriptions in the background.
//!
//! An event's configuration gets its write-back sinks set first (from the store, if this process
//! has not yet); if that fails, Graph gets a `503` and delivers again later, so no event is ever
//! stored without its outbox rows.
//!
//! A call end keeps the meeting's subscription: a meeting can hold several calls (the patient
//! left the lobby before being admitted, everyone dropped and came back), and the later ones must
//! be heard too. Subscriptions end with the upkeep's age rule (`Subscriptions::renew_due`).
//!
//! An event's visit is found by how Graph named the meeting (join URL or meeting id) and, failing
//! that, by the subscription it came through — both from the store, so a restarted service maps
//! notifications of subscriptions an earlier run made. A call end also schedules the visit's
//! reconciliation with its attendance report, durably, before Graph gets its answer.

use std::{collections::HashMap, sync::Arc};

use visitbridge_audit::AuditRecorder;
use visitbridge_graph::{
    LifecycleEvent, MeetingRef, Notification, NotificationSink, SinkError, SubscriptionId,
};
use visitbridge_launch_core::LiveHub;
use visitbridge_store::{AuditStore, GraphSubscriptionId, RecordOutcome, Visit, VisitId};
use visitbridge_visit::RosterChange;

use crate::{
    microsoft::Subscriptions, observe::Metrics, reconcile::Reconciler, writeback::Writeback,
};

/// The launch service's [`NotificationSink`].
pub(crate) struct WebhookSink {
    pub(crate) recorder: AuditRecorder,
    pub(crate) store: Arc<dyn AuditStore>,
    pub(crate) live: LiveHub,
    pub(crate) subscriptions: Arc<Subscriptions>,
    pub(crate) reconciler: Arc<Reconciler>,
    pub(crate) writeback: Arc<Writeback>,
    pub(crate) metrics: Arc<Metrics>,
}

/// The visits found in one batch, so a batch of one meeting's events costs one lookup.
#[derive(Default)]
struct Found {
    by_meeting: HashMap<MeetingRef, Option<Visit>>,
    by_subscription: HashMap<SubscriptionId, Option<Visit>>,
}

impl WebhookSink {
    async fn by_meeting(&self, meeting: &MeetingRef) -> Result<Option<Visit>, SinkError> {
        match meeting {
            MeetingRef::JoinWebUrl(url) => self.store.visit_by_join_url(url).await,
            MeetingRef::MeetingId(id) => self.store.visit_by_meeting(id.as_str()).await,
            MeetingRef::Resource(_) => Ok(None),
        }
        .map_err(SinkError::new)
    }

    async fn by_subscription(&self, id: &SubscriptionId) -> Result<Option<Visit>, SinkError> {
        let Ok(id) = GraphSubscriptionId::new(id.as_str()) else {
            return Ok(None);
        };
        self.store
            .visit_by_subscription(&id)
            .await
            .map_err(SinkError::new)
    }

    async fn visit_of(
        &self,
        found: &mut Found,
        meeting: &MeetingRef,
        subscription: &SubscriptionId,
    ) -> Result<Option<Visit>, SinkError> {
        if !found.by_meeting.contains_key(meeting) {
            let visit = self.by_meeting(meeting).await?;
            found.by_meeting.insert(meeting.clone(), visit);
        }
        if let Some(Some(visit)) = found.by_meeting.get(meeting) {
            return Ok(Some(visit.clone()));
        }
        if !found.by_subscription.contains_key(subscription) {
            let visit = self.by_subscription(subscription).await?;
            found.by_subscription.insert(subscription.clone(), visit);
        }
        Ok(found.by_subscription.get(subscription).cloned().flatten())
    }
}

#[async_trait::async_trait]
impl NotificationSink for WebhookSink {
    async fn accept(&self, notifications: Vec<Notification>) -> Result<(), SinkError> {
        // Persist first: Graph gets its 202 only once every event is in the store and outbox.
        let mut found = Found::default();
        let (mut recorded, mut duplicates, mut unknown) = (0, 0, 0);
        // Logged by the webhook (ids and reason only); counted here.
        let unreadable = notifications
            .iter()
            .filter(|n| matches!(n, Notification::Unreadable(_)))
            .count();
        let mut changes: Vec<(VisitId, RosterChange)> = Vec::new();
        let mut ended: Vec<VisitId> = Vec::new();
        for notification in &notifications {
            let Notification::Events {
                subscription_id,
                events,
                ..
            } = notification
            else {
                continue;
            };
            for event in events {
                let Some(visit) = self
                    .visit_of(&mut found, &event.meeting, subscription_id)
                    .await?
                else {
                    unknown += 1;
                    continue;
                };
                self.writeback
                    .ensure(&visit.configuration_id)
                    .await
                    .map_err(SinkError::new)?;
                match self
                    .recorder
                    .record(&visit, event)
                    .await
                    .map_err(SinkError::new)?
                    .outcome
                {
                    RecordOutcome::Recorded => recorded += 1,
                    RecordOutcome::Duplicate => duplicates += 1,
                }
                if let Some(change) = RosterChange::from_event(event) {
                    if change == RosterChange::CallEnded && !ended.contains(&visit.id) {
                        ended.push(visit.id.clone());
                    }
                    changes.push((visit.id, change));
                }
            }
        }
        if unknown > 0 {
            // The join URL is a way into the meeting: not logged.
            tracing::warn!(
                events = unknown,
                "dropped events of meetings that are not a known visit"
            );
        }
        // Graph redelivers a call end until it gets its answer: so a crash here schedules later.
        for visit in &ended {
            self.reconciler
                .schedule(visit)
                .await
                .map_err(SinkError::new)?;
        }
        self.metrics.notifications("recorded", recorded);
        self.metrics.notifications("duplicate", duplicates);
        self.metrics.notifications("unknown_meeting", unknown);
        self.metrics.notifications("unreadable", unreadable);

        for (visit, change) in &changes {
            self.live.publish(visit, change).await;
        }
        for notification in &notifications {
            let Notification::Lifecycle {
                subscription_id,
                event,
                ..
            } = notification
            else {
                continue;
            };
            if *event == LifecycleEvent::Missed
                && let Some(visit) = self.by_subscription(subscription_id).await?
            {
                // Maybe the call's end was among what was missed: reconcile from its report.
                self.reconciler
                    .schedule(&visit.id)
                    .await
                    .map_err(SinkError::new)?;
            }
            self.subscriptions.lifecycle(subscription_id, event);
        }
        Ok(())
    }
}
