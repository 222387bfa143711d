//! The webhook router: handshake, clientState refusal, encrypted notifications, lifecycle flow.

use std::sync::{Arc, Mutex};

use axum::{
    body::{Body, to_bytes},
    http::{Request, StatusCode, header},
};
use serde_json::Value;
use tower::ServiceExt as _;
use visitbridge_graph::{
    ClientStateSecret, LifecycleEvent, Notification, NotificationSink, SinkError,
    SubscriptionConfig, WebhookConfig, webhook_router,
};
use visitbridge_http::Secret;
use visitbridge_testkit::graph::{
    acs_participant, encrypted_notification, lifecycle_notification, plain_notification,
    roster_update,
};

use crate::{validation::Microsoft, world};

pub(crate) const CLIENT_STATE: &str = "webhook-client-state";

#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) batches: Mutex<Vec<Vec<Notification>>>,
    fail: bool,
}

#[async_trait::async_trait]
impl NotificationSink for Recorder {
    async fn accept(&self, notifications: Vec<Notification>) -> Result<(), SinkError> {
        if self.fail {
            return Err(SinkError::new("database is read-only"));
        }
        self.batches.lock().unwrap().push(notifications);
        Ok(())
    }
}

/// The webhook without encryption: plain resource data is accepted on the clientState.
fn router(sink: Arc<Recorder>) -> axum::Router {
    let config = WebhookConfig::new(ClientStateSecret::new(Secret::new(CLIENT_STATE)));
    webhook_router(config, sink)
}

/// The webhook with decryption keys and validation tokens checked against `microsoft`'s JWKS.
pub(crate) fn encrypted_router(microsoft: &Microsoft, sink: Arc<Recorder>) -> axum::Router {
    let config = WebhookConfig {
        encryption: Some(microsoft.encryption()),
        ..WebhookConfig::new(ClientStateSecret::new(Secret::new(CLIENT_STATE)))
    };
    webhook_router(config, sink)
}

pub(crate) fn post(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

pub(crate) fn roster() -> Value {
    roster_update(
        "2026-03-05T18:02:11Z",
        vec![acs_participant("leg-1", "8:acs:patient", "Camila Lopez")],
        vec![],
    )
}

#[tokio::test]
async fn the_validation_handshake_echoes_the_token_as_plain_text() {
    let sink = Arc::new(Recorder::default());
    let token = "Validation: Testing client application reachability <script>alert(1)</script>";
    let uri = format!(
        "/notifications?validationToken={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let response = router(sink.clone())
        .oneshot(Request::post(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        response.headers()[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff"
    );
    let body = to_bytes(response.into_body(), 4096).await.unwrap();
    assert_eq!(&body[..], token.as_bytes());
    assert!(sink.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_state_mismatch_is_refused_without_details() {
    let sink = Arc::new(Recorder::default());
    let forged = plain_notification("sub-1", "guess", "https://t/x", roster());
    let response = router(sink.clone())
        .oneshot(post("/notifications", &forged))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = to_bytes(response.into_body(), 4096).await.unwrap();
    assert!(body.is_empty());
    assert!(sink.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_encrypted_notification_is_persisted_then_acknowledged() {
    let microsoft = Microsoft::start().await;
    let sink = Arc::new(Recorder::default());
    let n = encrypted_notification("sub-1", CLIENT_STATE, "https://t/x", &roster());
    let response = encrypted_router(&microsoft, sink.clone())
        .oneshot(post("/notifications", &n))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let batches = sink.batches.lock().unwrap();
    match &batches[..] {
        [batch] => match &batch[..] {
            [Notification::Events { events, .. }] => assert_eq!(events.len(), 1),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_sink_failure_makes_graph_retry() {
    let sink = Arc::new(Recorder {
        fail: true,
        ..Recorder::default()
    });
    let n = plain_notification("sub-1", CLIENT_STATE, "https://t/x", roster());
    let response = router(sink)
        .oneshot(post("/notifications", &n))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn garbage_is_a_bad_request() {
    let sink = Arc::new(Recorder::default());
    let response = router(sink)
        .oneshot(
            Request::post("/notifications")
                .body(Body::from("<html>"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_reauthorization_request_is_acknowledged_and_then_answered() {
    let w = world().await;
    let sub = w
        .client
        .subscribe_to_meeting(
            &SubscriptionConfig::new(
                "https://launch.example/graph/notifications"
                    .parse()
                    .unwrap(),
                "https://launch.example/graph/lifecycle".parse().unwrap(),
                Secret::new(CLIENT_STATE),
            ),
            "https://teams.microsoft.com/l/meetup-join/x",
        )
        .await
        .expect("subscribed");
    let sink = Arc::new(Recorder::default());
    // Lifecycle notifications carry no validation tokens, even with encryption configured.
    let microsoft = Microsoft::start().await;
    let n = lifecycle_notification(sub.id.as_str(), CLIENT_STATE, "reauthorizationRequired");
    let response = encrypted_router(&microsoft, sink.clone())
        .oneshot(post("/lifecycle", &n))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let batch = sink.batches.lock().unwrap().remove(0);
    let Notification::Lifecycle {
        subscription_id,
        event: LifecycleEvent::ReauthorizationRequired,
        ..
    } = &batch[0]
    else {
        panic!("{batch:?}");
    };
    w.client
        .reauthorize_subscription(subscription_id)
        .await
        .expect("reauthorized");
    assert_eq!(w.graph.reauthorized(), vec![sub.id.to_string()]);
}

#[tokio::test]
async fn a_batch_with_one_unreadable_item_is_kept_and_acknowledged() {
    let sink = Arc::new(Recorder::default());
    let item = |at: &str| {
        let payload = roster_update(
            at,
            vec![acs_participant("leg-1", "8:acs:patient", "Camila Lopez")],
            vec![],
        );
        plain_notification("sub-1", CLIENT_STATE, "https://t/x", payload)["value"][0].clone()
    };
    let mut no_time = item("2026-03-05T18:03:00Z");
    no_time["resourceData"]
        .as_object_mut()
        .unwrap()
        .remove("eventDateTime");
    let batch = serde_json::json!({"value": [
        item("2026-03-05T18:02:00Z"), no_time, item("2026-03-05T18:04:00Z"),
    ]});
    let response = router(sink.clone())
        .oneshot(post("/notifications", &batch))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let batches = sink.batches.lock().unwrap();
    let kinds: Vec<&str> = batches[0]
        .iter()
        .map(|n| match n {
            Notification::Events { events, .. } if events.len() == 1 => "events",
            Notification::Unreadable(_) => "unreadable",
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["events", "unreadable", "events"]);
}

#[tokio::test]
async fn a_forged_item_still_refuses_its_batch() {
    let sink = Arc::new(Recorder::default());
    let ours = plain_notification("sub-1", CLIENT_STATE, "https://t/x", roster());
    let forged = plain_notification("sub-1", "guess", "https://t/x", roster());
    let batch = serde_json::json!({"value": [ours["value"][0], forged["value"][0]]});
    let response = router(sink.clone())
        .oneshot(post("/notifications", &batch))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(sink.batches.lock().unwrap().is_empty());
}
