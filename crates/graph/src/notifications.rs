//! Graph's webhook protocol without a web framework: the validation handshake, the `clientState`
//! check, and notification parsing (plain or encrypted) into our events.
//!
//! Two entry points: [`parse_notifications`] (synchronous, no network) and
//! [`parse_verified_notifications`], which with [`NotificationEncryption`] configured also insists
//! on encrypted content and checks the batch's `validationTokens` — the one the webhook uses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use visitbridge_http::Secret;

use crate::{
    crypto::{DecryptionKeys, EncryptedContent, decrypt},
    error::GraphError,
    events::{MeetingRef, ParticipantEvent, from_roster_payload, parse_time},
    ids::SubscriptionId,
    validation::ValidationTokenVerifier,
};

/// The `clientState` our subscriptions were created with; notifications carrying another are
/// refused. A previous value can be accepted while subscriptions made with it are renewed away.
#[derive(Debug, Clone)]
pub struct ClientStateSecret {
    current: Secret,
    previous: Option<Secret>,
}

impl ClientStateSecret {
    /// The current secret.
    pub fn new(current: Secret) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// Also accepts `previous` (during a rotation).
    pub fn with_previous(mut self, previous: Secret) -> Self {
        self.previous = Some(previous);
        self
    }

    /// The value to put in new subscriptions.
    pub fn current(&self) -> &Secret {
        &self.current
    }

    /// Constant-time comparison with each accepted value.
    pub fn matches(&self, candidate: &str) -> bool {
        // Evaluate both comparisons so timing does not tell which one matched.
        let current = self.current.constant_time_eq(candidate);
        let previous = self
            .previous
            .as_ref()
            .is_some_and(|p| !p.is_empty() & p.constant_time_eq(candidate));
        (!self.current.is_empty() && current) | previous
    }
}

/// The answer to Graph's validation request: `200`, this content type, this body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationResponse {
    /// Always `text/plain; charset=utf-8`: the token is echoed, so it must never be served as
    /// HTML (send `X-Content-Type-Options: nosniff` too).
    pub content_type: &'static str,
    /// The decoded `validationToken`.
    pub body: String,
}

/// Longest validation token echoed; Graph's are far shorter, and an endpoint that echoes
/// arbitrary input should not echo a lot of it.
const MAX_VALIDATION_TOKEN: usize = 1024;

/// When the request's query string (without `?`) is Graph's validation handshake, the answer.
///
/// Graph sends `POST {notificationUrl}?validationToken=…` when a subscription is created and
/// expects the decoded token back as `text/plain` within 10 seconds.
pub fn validation_response(query: Option<&str>) -> Option<ValidationResponse> {
    let query = query?;
    let token = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v.into_owned())?;
    if token.is_empty() || token.len() > MAX_VALIDATION_TOKEN {
        return None;
    }
    Some(ValidationResponse {
        content_type: "text/plain; charset=utf-8",
        body: token,
    })
}

/// A lifecycle event Graph sends about a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleEvent {
    /// The subscription's authorization must be refreshed: call
    /// `GraphClient::reauthorize_subscription` (or renew it).
    ReauthorizationRequired,
    /// Graph removed the subscription: create it again if the visit is still on.
    SubscriptionRemoved,
    /// Graph could not deliver some notifications: reconcile from the attendance report.
    Missed,
    /// A kind Graph added after this code was written.
    Other(String),
}

/// One parsed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Call and roster events of a subscribed meeting.
    Events {
        /// The subscription it came through.
        subscription_id: SubscriptionId,
        /// The tenant it came from.
        tenant_id: Option<String>,
        /// The events, in payload order (may be empty for event types we ignore).
        events: Vec<ParticipantEvent>,
    },
    /// An item of the batch that carried our `clientState` but could not be read (no
    /// `eventDateTime`, content that does not decrypt, not a notification's shape). Its batch's
    /// other items are kept: Graph does not deliver a `4xx`-answered batch again, so refusing the
    /// batch would lose them all.
    Unreadable(UnreadableNotification),
    /// A lifecycle notification.
    Lifecycle {
        /// The subscription concerned.
        subscription_id: SubscriptionId,
        /// What happened.
        event: LifecycleEvent,
        /// When the subscription expires, as Graph says.
        subscription_expires_at: Option<DateTime<Utc>>,
    },
}

/// What is known of an unreadable item: ids and a reason, never its content (which may carry
/// display names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableNotification {
    /// The subscription it named, when it named one.
    pub subscription_id: Option<SubscriptionId>,
    /// Why it could not be read (no values of the payload).
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Batch {
    value: Vec<Value>,
    #[serde(default)]
    validation_tokens: Vec<String>,
}

/// What the deployment requires when its subscriptions ask for encrypted resource data
/// (`includeResourceData` with an encryption certificate): the keys to decrypt it, and the check
/// of the `validationTokens` Graph sends along.
///
/// With it configured, a change notification carrying plain `resourceData` (or no content) is
/// refused, since Graph would have encrypted a genuine one, and a batch with encrypted content
/// needs at least one valid validation token. Lifecycle notifications carry neither content nor
/// tokens and are accepted on their `clientState` alone (what they trigger — reauthorizing,
/// reconciling — asks Graph, not the sender).
#[derive(Debug)]
pub struct NotificationEncryption {
    keys: DecryptionKeys,
    validation: ValidationTokenVerifier,
}

impl NotificationEncryption {
    /// Decrypts with `keys` and checks validation tokens with `validation`.
    pub fn new(keys: DecryptionKeys, validation: ValidationTokenVerifier) -> Self {
        Self { keys, validation }
    }

    /// The decryption keys.
    pub fn keys(&self) -> &DecryptionKeys {
        &self.keys
    }

    /// The validation token check.
    pub fn validation(&self) -> &ValidationTokenVerifier {
        &self.validation
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    subscription_id: String,
    tenant_id: Option<String>,
    #[serde(default)]
    resource: String,
    resource_data: Option<Value>,
    encrypted_content: Option<EncryptedContent>,
    lifecycle_event: Option<String>,
    subscription_expiration_date_time: Option<String>,
}

/// Parses a notification POST body, without checking `validationTokens` (see
/// [`parse_verified_notifications`], which the webhook uses).
///
/// Every item's `clientState` is checked (in constant time) **before** anything else is looked at;
/// one mismatch refuses the whole batch with [`GraphError::ClientStateMismatch`], since a batch
/// mixing ours and someone else's is not from Graph. Encrypted content needs `keys`; when `keys`
/// are given, a change notification without encrypted content is refused with
/// [`GraphError::UnverifiedNotification`]. A body that is not a batch is refused with
/// [`GraphError::Parse`]; an item of ours that cannot be read becomes
/// [`Notification::Unreadable`] and the other items are kept. Display names in the payload are
/// dropped here.
pub fn parse_notifications(
    body: &[u8],
    client_state: &ClientStateSecret,
    keys: Option<&DecryptionKeys>,
) -> Result<Vec<Notification>, GraphError> {
    let (items, _tokens) = read_batch(body, client_state)?;
    let keys = keys.filter(|k| !k.is_empty());
    if keys.is_some() {
        require_encrypted(&items)?;
    }
    Ok(items
        .into_iter()
        .map(|item| read_item(item, keys))
        .collect())
}

/// One item as read by [`read_batch`]: its shape, or why it has none (with the subscription it
/// named, if any).
type ReadItem = Result<Item, UnreadableNotification>;

fn read_item(item: ReadItem, keys: Option<&DecryptionKeys>) -> Notification {
    let item = match item {
        Ok(item) => item,
        Err(unreadable) => return Notification::Unreadable(unreadable),
    };
    let subscription_id = SubscriptionId::new(item.subscription_id.clone());
    parse_item(item, keys).unwrap_or_else(|error| {
        Notification::Unreadable(UnreadableNotification {
            subscription_id: Some(subscription_id),
            reason: error.to_string(),
        })
    })
}

/// Parses a notification POST body and, with `encryption` configured, proves it came from Graph.
///
/// Without `encryption` this is [`parse_notifications`] without keys. With it, in order: the
/// `clientState` of every item ([`GraphError::ClientStateMismatch`]); every change notification
/// must carry `encryptedContent`, and a batch with any needs at least one valid validation token
/// ([`GraphError::UnverifiedNotification`]); then decryption, HMAC first. A validation token check
/// that could not fetch Microsoft's keys fails with a transient error ([`GraphError::is_transient`])
/// so the caller can ask Graph to deliver again.
pub async fn parse_verified_notifications(
    body: &[u8],
    client_state: &ClientStateSecret,
    encryption: Option<&NotificationEncryption>,
) -> Result<Vec<Notification>, GraphError> {
    let Some(encryption) = encryption else {
        return parse_notifications(body, client_state, None);
    };
    let (items, tokens) = read_batch(body, client_state)?;
    require_encrypted(&items)?;
    if items
        .iter()
        .any(|i| i.as_ref().is_ok_and(|i| i.encrypted_content.is_some()))
    {
        encryption.validation.verify_any(&tokens).await?;
    }
    Ok(items
        .into_iter()
        .map(|item| read_item(item, Some(&encryption.keys)))
        .collect())
}

/// Reads the batch and checks every item's `clientState` — as sent, before the item's shape is
/// looked at, so that an item without ours refuses the batch however malformed it is; returns the
/// items (each read or not) and the batch's validation tokens.
fn read_batch(
    body: &[u8],
    client_state: &ClientStateSecret,
) -> Result<(Vec<ReadItem>, Vec<String>), GraphError> {
    let batch: Batch =
        serde_json::from_slice(body).map_err(|e| GraphError::parse("a notification batch", &e))?;
    if !batch.value.iter().all(|v| {
        v.get("clientState")
            .and_then(Value::as_str)
            .is_some_and(|s| client_state.matches(s))
    }) {
        return Err(GraphError::ClientStateMismatch);
    }
    let items = batch
        .value
        .into_iter()
        .map(|v| {
            let subscription_id = v
                .get("subscriptionId")
                .and_then(Value::as_str)
                .map(|id| SubscriptionId::new(crate::error::shorten(id, 100)));
            serde_json::from_value::<Item>(v).map_err(|e| UnreadableNotification {
                subscription_id,
                reason: GraphError::parse("a notification", &e).to_string(),
            })
        })
        .collect();
    Ok((items, batch.validation_tokens))
}

/// With encryption configured, Graph encrypts every change notification's resource data: plain
/// `resourceData` (or none) can only come from someone who learnt the `clientState`.
fn require_encrypted(items: &[ReadItem]) -> Result<(), GraphError> {
    if items
        .iter()
        .flatten()
        .any(|i| i.lifecycle_event.is_none() && i.encrypted_content.is_none())
    {
        return Err(GraphError::UnverifiedNotification(
            "change notification without encrypted content",
        ));
    }
    Ok(())
}

fn parse_item(item: Item, keys: Option<&DecryptionKeys>) -> Result<Notification, GraphError> {
    let subscription_id = SubscriptionId::new(item.subscription_id);
    if let Some(event) = item.lifecycle_event {
        let event = match event.as_str() {
            e if e.eq_ignore_ascii_case("reauthorizationRequired") => {
                LifecycleEvent::ReauthorizationRequired
            }
            e if e.eq_ignore_ascii_case("subscriptionRemoved") => {
                LifecycleEvent::SubscriptionRemoved
            }
            e if e.eq_ignore_ascii_case("missed") => LifecycleEvent::Missed,
            other => LifecycleEvent::Other(crate::error::shorten(other, 60)),
        };
        return Ok(Notification::Lifecycle {
            subscription_id,
            event,
            subscription_expires_at: item
                .subscription_expiration_date_time
                .as_deref()
                .and_then(parse_time),
        });
    }
    let meeting = meeting_from_resource(&item.resource);
    let payload = match (item.encrypted_content, item.resource_data) {
        (Some(content), _) => {
            let keys = keys.filter(|k| !k.is_empty()).ok_or(GraphError::Decrypt(
                "encrypted content but no decryption key configured",
            ))?;
            let plain = decrypt(keys, &content)?;
            serde_json::from_slice(&plain)
                .map_err(|e| GraphError::parse("decrypted notification content", &e))?
        }
        (None, Some(data)) => data,
        (None, None) => Value::Null,
    };
    Ok(Notification::Events {
        subscription_id,
        tenant_id: item.tenant_id,
        events: from_roster_payload(&payload, &meeting)?,
    })
}

/// Reads the join URL out of `…/onlineMeetings/?$filter=JoinWebUrl eq '<url>'`.
fn meeting_from_resource(resource: &str) -> MeetingRef {
    let lower = resource.to_ascii_lowercase();
    let found = lower
        .find("joinweburl eq '")
        .map(|i| i + "joinweburl eq '".len());
    match found {
        Some(start) if resource.ends_with('\'') && start < resource.len() => {
            MeetingRef::JoinWebUrl(resource[start..resource.len() - 1].replace("''", "'"))
        }
        _ => MeetingRef::Resource(resource.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_echoes_the_decoded_token_as_text() {
        let r = validation_response(Some("validationToken=Validation%3A+Testing+%3Cb%3E")).unwrap();
        assert_eq!(r.body, "Validation: Testing <b>");
        assert!(r.content_type.starts_with("text/plain"));
        assert_eq!(validation_response(Some("other=1")), None);
        assert_eq!(validation_response(None), None);
        let long = format!("validationToken={}", "a".repeat(2000));
        assert_eq!(validation_response(Some(&long)), None);
    }

    #[test]
    fn client_state_accepts_current_and_previous_only() {
        let s = ClientStateSecret::new(Secret::new("new")).with_previous(Secret::new("old"));
        assert!(s.matches("new"));
        assert!(s.matches("old"));
        assert!(!s.matches("other"));
        assert!(!ClientStateSecret::new(Secret::new("")).matches(""));
    }

    #[test]
    fn resource_gives_the_join_url() {
        assert_eq!(
            meeting_from_resource(
                "communications/onlineMeetings/?$filter=JoinWebUrl eq 'https://t/x''y'"
            ),
            MeetingRef::JoinWebUrl("https://t/x'y".into())
        );
        assert_eq!(
            meeting_from_resource("communications/calls/1"),
            MeetingRef::Resource("communications/calls/1".into())
        );
    }
}
