//! Graph's notifications: stored (AuditEvent + outbox rows, one transaction per event) before
//! Graph gets its `202`, then shown on the visit's live panel; lifecycle notifications and call
//! ends drive the subscriptions in the background.

use std::{collections::HashMap, sync::Arc};

use visitbridge_audit::AuditRecorder;
use visitbridge_graph::{MeetingRef, Notification, NotificationSink, SinkError};
use visitbridge_store::{AuditStore, Visit, VisitId};
use visitbridge_visit::RosterChange;

use crate::{live::LiveHub, microsoft::Subscriptions, observe::Metrics};

/// The launch service's [`NotificationSink`].
pub(crate) struct WebhookSink {
    pub(crate) recorder: AuditRecorder,
    pub(crate) store: Arc<dyn AuditStore>,
    pub(crate) live: LiveHub,
    pub(crate) subscriptions: Arc<Subscriptions>,
    pub(crate) metrics: Arc<Metrics>,
}

impl WebhookSink {
    async fn visit_of(&self, meeting: &MeetingRef) -> Option<Visit> {
        let found = match meeting {
            MeetingRef::JoinWebUrl(url) => self.store.visit_by_join_url(url).await,
            MeetingRef::MeetingId(id) => self.store.visit_by_meeting(id.as_str()).await,
            MeetingRef::Resource(_) => Ok(None),
        };
        found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot look up a notification's visit");
            None
        })
    }
}

#[async_trait::async_trait]
impl NotificationSink for WebhookSink {
    async fn accept(&self, notifications: Vec<Notification>) -> Result<(), SinkError> {
        // Persist first: Graph gets its 202 only once every event is in the store and outbox.
        let summary = self
            .recorder
            .accept_notifications(&notifications)
            .await
            .map_err(|e| SinkError(e.to_string()))?;
        self.metrics.notifications("recorded", summary.recorded);
        self.metrics.notifications("duplicate", summary.duplicates);
        self.metrics
            .notifications("unknown_meeting", summary.unknown_meeting);

        let mut visits: HashMap<MeetingRef, Option<VisitId>> = HashMap::new();
        for notification in &notifications {
            match notification {
                Notification::Events {
                    subscription_id,
                    events,
                    ..
                } => {
                    for event in events {
                        if !visits.contains_key(&event.meeting) {
                            let visit = match self.visit_of(&event.meeting).await {
                                Some(v) => Some(v.id),
                                None => self.subscriptions.visit_of(subscription_id),
                            };
                            visits.insert(event.meeting.clone(), visit);
                        }
                        let Some(Some(visit)) = visits.get(&event.meeting) else {
                            continue;
                        };
                        if let Some(change) = RosterChange::from_event(event) {
                            if change == RosterChange::CallEnded {
                                self.subscriptions.call_ended(visit);
                            }
                            self.live.publish(visit, &change).await;
                        }
                    }
                }
                Notification::Lifecycle {
                    subscription_id,
                    event,
                    ..
                } => self.subscriptions.lifecycle(subscription_id, event),
            }
        }
        Ok(())
    }
}
