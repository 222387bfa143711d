//! Graph's notifications: kept by [`keep_notifications`] (AuditEvent + outbox rows, one
//! transaction per event, reconciliations scheduled) before Graph gets its `202`, then shown on
//! the visit's live panel; lifecycle notifications drive the subscriptions in the background.
//!
//! A call end keeps the meeting's subscription: a meeting can hold several calls (the patient
//! left the lobby before being admitted, everyone dropped and came back), and the later ones must
//! be heard too. Subscriptions end with the upkeep's age rule (`Subscriptions::renew_due`).

use std::sync::Arc;

use visitbridge_audit::AuditRecorder;
use visitbridge_graph::{Notification, NotificationSink, SinkError};
use visitbridge_launch_core::{
    ConfigurationSinks, LiveHub, NotificationPorts, Reconciler, Subscriptions, SystemClock,
    keep_notifications,
};
use visitbridge_store::AuditStore;

use crate::observe::Metrics;

/// The launch service's [`NotificationSink`].
pub(crate) struct WebhookSink {
    pub(crate) recorder: AuditRecorder,
    pub(crate) store: Arc<dyn AuditStore>,
    pub(crate) live: LiveHub,
    pub(crate) subscriptions: Arc<Subscriptions>,
    pub(crate) reconciler: Arc<Reconciler>,
    pub(crate) writeback: Arc<ConfigurationSinks>,
    pub(crate) metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl NotificationSink for WebhookSink {
    async fn accept(&self, notifications: Vec<Notification>) -> Result<(), SinkError> {
        let ports = NotificationPorts {
            store: self.store.as_ref(),
            recorder: &self.recorder,
            sinks: self.writeback.as_ref(),
            clock: &SystemClock,
            reconciliation_delay: self.reconciler.delay(),
        };
        let kept = keep_notifications(&ports, &notifications)
            .await
            .map_err(SinkError::new)?;
        if kept.unknown_meeting > 0 {
            // The join URL is a way into the meeting: not logged.
            tracing::warn!(
                events = kept.unknown_meeting,
                "dropped events of meetings that are not a known visit"
            );
        }
        self.metrics.notifications("recorded", kept.recorded);
        self.metrics.notifications("duplicate", kept.duplicates);
        self.metrics
            .notifications("unknown_meeting", kept.unknown_meeting);
        // Logged by the webhook (ids and reason only); counted here.
        self.metrics.notifications("unreadable", kept.unreadable);
        for (visit, change) in &kept.changes {
            self.live.publish(visit, change).await;
        }
        for (subscription, event) in &kept.lifecycle {
            self.subscriptions.lifecycle(subscription, event);
        }
        Ok(())
    }
}
