//! Delivering change notifications: one background worker per Microsoft sandbox, in order, with a
//! few retries, the outcome of each kept for the room pages and tests.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use url::Url;

use super::DeliveryRecord;

/// One notification batch to POST. No `Debug`: the body carries the `clientState`.
#[derive(Clone)]
pub(crate) struct Delivery {
    pub(crate) url: Url,
    pub(crate) body: Value,
    pub(crate) subscription_id: String,
    pub(crate) meeting_id: String,
    pub(crate) event_type: String,
}

/// Tries per notification, and the waits between them.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];
/// Graph expects an answer within three seconds; a little more is allowed here.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the worker; it ends when the sender is dropped (with the sandbox).
pub(crate) fn spawn_worker(
    http: reqwest::Client,
    log: Arc<Mutex<Vec<DeliveryRecord>>>,
) -> UnboundedSender<Delivery> {
    let (sender, mut receiver) = unbounded_channel::<Delivery>();
    tokio::spawn(async move {
        // One at a time, so a meeting's notifications arrive in the order they happened.
        while let Some(delivery) = receiver.recv().await {
            let record = deliver(&http, &delivery).await;
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(record);
        }
    });
    sender
}

async fn deliver(http: &reqwest::Client, d: &Delivery) -> DeliveryRecord {
    let mut attempts = 0;
    let (status, delivered) = loop {
        attempts += 1;
        let result = http
            .post(d.url.clone())
            .timeout(ANSWER_TIMEOUT)
            .json(&d.body)
            .send()
            .await;
        let (status, retry) = match result {
            // Graph retries server errors and throttling, not refusals.
            Ok(response) => {
                let code = response.status();
                (
                    Some(code.as_u16()),
                    code.is_server_error() || code.as_u16() == 429,
                )
            }
            Err(e) => {
                tracing::debug!(error = %e.without_url(), "notification delivery failed");
                (None, true)
            }
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        match (retry, BACKOFF.get(attempts as usize - 1)) {
            (true, Some(wait)) => tokio::time::sleep(*wait).await,
            _ => break (status, delivered),
        }
    };
    if delivered {
        tracing::info!(
            subscription_id = %d.subscription_id,
            event_type = %d.event_type,
            attempts,
            "sandbox graph delivered a notification"
        );
    } else {
        tracing::warn!(
            subscription_id = %d.subscription_id,
            event_type = %d.event_type,
            status = ?status,
            attempts,
            "sandbox graph could not deliver a notification"
        );
    }
    DeliveryRecord {
        at: Utc::now(),
        subscription_id: d.subscription_id.clone(),
        meeting_id: d.meeting_id.clone(),
        event_type: d.event_type.clone(),
        status,
        attempts,
        delivered,
    }
}
