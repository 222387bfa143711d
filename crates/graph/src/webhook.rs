//! A small axum router for Graph's notification and lifecycle URLs, for the launch service to nest.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};

use crate::{
    error::GraphError,
    notifications::{
        ClientStateSecret, Notification, NotificationEncryption, parse_verified_notifications,
        validation_response,
    },
};

/// Why a sink could not keep a batch (Graph will deliver it again).
#[derive(Debug, thiserror::Error)]
#[error("could not persist notifications: {source}")]
pub struct SinkError {
    /// What failed (the store, the audit recorder).
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl SinkError {
    /// The batch could not be kept because of `source`.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// Where accepted notifications go. The webhook answers `202` only after `accept` returned `Ok`,
/// so the sink must persist durably (an outbox row) and quickly: Graph wants an answer within 3
/// seconds and throttles slow endpoints. Work that takes longer (write-back, reauthorizing a
/// subscription) belongs after the answer, driven from what was stored.
#[async_trait::async_trait]
pub trait NotificationSink: Send + Sync + 'static {
    /// Persists the batch.
    async fn accept(&self, notifications: Vec<Notification>) -> Result<(), SinkError>;
}

/// What the webhook checks notifications with.
#[derive(Debug)]
pub struct WebhookConfig {
    /// The subscriptions' `clientState`.
    pub client_state: ClientStateSecret,
    /// Keys for encrypted content and the validation token check (subscriptions with an
    /// encryption certificate). When set, change notifications must be encrypted and carry a
    /// valid validation token; when not, plain `resourceData` is accepted on the `clientState`.
    pub encryption: Option<NotificationEncryption>,
    /// The largest body accepted (default 1 MiB; a roster batch is a few KiB).
    pub max_body_bytes: usize,
}

impl WebhookConfig {
    /// A configuration without decryption keys and with the default body limit.
    pub fn new(client_state: ClientStateSecret) -> Self {
        Self {
            client_state,
            encryption: None,
            max_body_bytes: 1024 * 1024,
        }
    }
}

struct WebhookState {
    config: WebhookConfig,
    sink: Arc<dyn NotificationSink>,
}

/// `POST /notifications` and `POST /lifecycle` (nest it, e.g. under `/graph`).
///
/// - `?validationToken=…`: `200`, `text/plain`, `X-Content-Type-Options: nosniff`, the token.
/// - a `clientState` mismatch, or (with [`WebhookConfig::encryption`]) a change notification
///   without encrypted content or a batch without a valid validation token: `403` with an empty
///   body (no hint for a prober). Both mean "not from Graph", so they get the same answer.
/// - a body that is not a notification batch: `400` (Graph does not retry 4xx, and retrying
///   would not help).
/// - a batch with items of ours that cannot be read (no `eventDateTime`, content that does not
///   decrypt): each is logged (subscription id and reason, never its content) and handed to the
///   sink as [`Notification::Unreadable`] with the readable ones, and the batch gets its `202` —
///   so one bad item does not lose its batch.
/// - Microsoft's token signing keys could not be fetched, or the sink failed: `503`, so Graph
///   delivers again later (for up to 4 hours).
/// - otherwise: `202`.
pub fn webhook_router(config: WebhookConfig, sink: Arc<dyn NotificationSink>) -> Router {
    let limit = config.max_body_bytes;
    let state = Arc::new(WebhookState { config, sink });
    Router::new()
        .route("/notifications", post(handle))
        .route("/lifecycle", post(handle))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn handle(
    State(state): State<Arc<WebhookState>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(validation) = validation_response(query.as_deref()) {
        return (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(validation.content_type),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            validation.body,
        )
            .into_response();
    }
    let parsed = parse_verified_notifications(
        &body,
        &state.config.client_state,
        state.config.encryption.as_ref(),
    )
    .await;
    let notifications = match parsed {
        Ok(n) => n,
        Err(GraphError::ClientStateMismatch) => {
            tracing::warn!("refused a notification with a foreign clientState");
            return StatusCode::FORBIDDEN.into_response();
        }
        Err(error @ GraphError::UnverifiedNotification(_)) => {
            tracing::warn!(error = %error, "refused an unverified notification");
            return StatusCode::FORBIDDEN.into_response();
        }
        Err(error) if error.is_transient() => {
            tracing::warn!(error = %error, "could not verify a notification now; graph will retry");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Err(error) => {
            tracing::warn!(error = %error, "refused an unreadable notification");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    for notification in &notifications {
        if let Notification::Unreadable(unreadable) = notification {
            tracing::warn!(
                subscription_id = unreadable
                    .subscription_id
                    .as_ref()
                    .map(|id| id.as_str())
                    .unwrap_or("none"),
                reason = %unreadable.reason,
                "dropped an unreadable notification; the rest of its batch is kept"
            );
        }
    }
    match state.sink.accept(notifications).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(error) => {
            tracing::error!(error = %error, "could not persist graph notifications");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
