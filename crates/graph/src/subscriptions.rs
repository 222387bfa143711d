//! Change-notification subscriptions to a meeting's call events: create, renew, reauthorize, delete.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;
use visitbridge_http::Secret;

use crate::{
    client::{Call, GraphClient, Retry},
    crypto::EncryptionCertificate,
    error::GraphError,
    events::parse_time,
    ids::SubscriptionId,
};

/// Graph's longest lifetime for online meeting call-event subscriptions (4230 minutes).
pub const MAX_SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(4230 * 60);

/// Where Graph delivers notifications, and how they are protected.
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    /// Our public HTTPS endpoint for notifications (the launch service mounts the webhook there).
    pub notification_url: Url,
    /// Our public HTTPS endpoint for lifecycle notifications (reauthorization, removal, missed).
    pub lifecycle_notification_url: Url,
    /// The shared secret Graph echoes in every notification (`clientState`, at most 128 chars).
    pub client_state: Secret,
    /// When set, Graph includes the roster (resource data) encrypted for this certificate; without
    /// it notifications carry the same fields unencrypted in `resourceData`.
    pub encryption_certificate: Option<EncryptionCertificate>,
    /// How long a subscription lives before it must be renewed (capped at
    /// [`MAX_SUBSCRIPTION_LIFETIME`]). Default: 12 hours, longer than any visit day.
    pub lifetime: Duration,
}

impl SubscriptionConfig {
    /// A configuration with the default lifetime and no encryption certificate.
    pub fn new(
        notification_url: Url,
        lifecycle_notification_url: Url,
        client_state: Secret,
    ) -> Self {
        Self {
            notification_url,
            lifecycle_notification_url,
            client_state,
            encryption_certificate: None,
            lifetime: Duration::from_secs(12 * 3600),
        }
    }

    fn expiry_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let lifetime = self.lifetime.min(MAX_SUBSCRIPTION_LIFETIME);
        now + chrono::Duration::from_std(lifetime).unwrap_or_else(|_| chrono::Duration::hours(12))
    }
}

/// A live subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Graph's subscription id (notifications carry it).
    pub id: SubscriptionId,
    /// When Graph stops delivering unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The subscribed resource (the meeting's join URL filter).
    pub resource: String,
}

impl Subscription {
    /// Whether it should be renewed now: less than `margin` left.
    pub fn renewal_due(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        let margin =
            chrono::Duration::from_std(margin).unwrap_or_else(|_| chrono::Duration::hours(1));
        self.expires_at - margin <= now
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSubscription {
    id: String,
    expiration_date_time: String,
    #[serde(default)]
    resource: String,
}

impl TryFrom<RawSubscription> for Subscription {
    type Error = GraphError;

    fn try_from(raw: RawSubscription) -> Result<Self, GraphError> {
        Ok(Self {
            id: SubscriptionId::new(raw.id),
            expires_at: parse_time(&raw.expiration_date_time).ok_or_else(|| GraphError::Parse {
                what: "a subscription",
                detail: "expirationDateTime is not a date-time".into(),
            })?,
            resource: raw.resource,
        })
    }
}

/// The subscription resource for a meeting's call events, with OData quoting of the URL.
pub fn meeting_resource(join_web_url: &str) -> String {
    format!(
        "/communications/onlineMeetings/?$filter=JoinWebUrl eq '{}'",
        join_web_url.replace('\'', "''")
    )
}

impl GraphClient {
    /// `POST /subscriptions` for the call events (start, end, roster) of the meeting at
    /// `join_web_url`. Graph validates `notification_url` with the handshake before answering.
    ///
    /// Not idempotent (a retry could leave two subscriptions), so only a 429 is retried.
    pub async fn subscribe_to_meeting(
        &self,
        config: &SubscriptionConfig,
        join_web_url: &str,
    ) -> Result<Subscription, GraphError> {
        let mut body = json!({
            "changeType": "updated",
            "notificationUrl": config.notification_url.as_str(),
            "lifecycleNotificationUrl": config.lifecycle_notification_url.as_str(),
            "resource": meeting_resource(join_web_url),
            "includeResourceData": config.encryption_certificate.is_some(),
            "expirationDateTime": graph_time(config.expiry_from(Utc::now())),
            "clientState": config.client_state.expose(),
        });
        if let Some(cert) = &config.encryption_certificate {
            body["encryptionCertificate"] = Value::String(cert.base64_der());
            body["encryptionCertificateId"] = Value::String(cert.id().to_owned());
        }
        let url = self.url(&[&self.config().subscriptions_version, "subscriptions"])?;
        let (_, raw): (_, RawSubscription) = self
            .send_json(
                Call {
                    method: Method::POST,
                    url,
                    body: Some(&body),
                    retry: Retry::ThrottledOnly,
                    organizer: None,
                },
                "a subscription",
            )
            .await?;
        raw.try_into()
    }

    /// `PATCH /subscriptions/{id}` with a new `expirationDateTime` one lifetime from now.
    pub async fn renew_subscription(
        &self,
        config: &SubscriptionConfig,
        id: &SubscriptionId,
    ) -> Result<Subscription, GraphError> {
        let body = json!({ "expirationDateTime": graph_time(config.expiry_from(Utc::now())) });
        let url = self.url(&[
            &self.config().subscriptions_version,
            "subscriptions",
            id.as_str(),
        ])?;
        let (_, raw): (_, RawSubscription) = self
            .send_json(
                Call {
                    method: Method::PATCH,
                    url,
                    body: Some(&body),
                    retry: Retry::Idempotent,
                    organizer: None,
                },
                "a subscription",
            )
            .await?;
        raw.try_into()
    }

    /// `POST /subscriptions/{id}/reauthorize`, the answer to a `reauthorizationRequired`
    /// lifecycle notification.
    pub async fn reauthorize_subscription(&self, id: &SubscriptionId) -> Result<(), GraphError> {
        let url = self.url(&[
            &self.config().subscriptions_version,
            "subscriptions",
            id.as_str(),
            "reauthorize",
        ])?;
        self.send(Call {
            method: Method::POST,
            url,
            body: None,
            retry: Retry::Idempotent,
            organizer: None,
        })
        .await?;
        Ok(())
    }

    /// `DELETE /subscriptions/{id}` when the visit ends; a subscription already gone is fine.
    pub async fn delete_subscription(&self, id: &SubscriptionId) -> Result<(), GraphError> {
        let url = self.url(&[
            &self.config().subscriptions_version,
            "subscriptions",
            id.as_str(),
        ])?;
        match self
            .send(Call {
                method: Method::DELETE,
                url,
                body: None,
                retry: Retry::Idempotent,
                organizer: None,
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn graph_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_quotes_the_url_for_odata() {
        assert_eq!(
            meeting_resource("https://x/a'b"),
            "/communications/onlineMeetings/?$filter=JoinWebUrl eq 'https://x/a''b'"
        );
    }

    #[test]
    fn renewal_is_due_inside_the_margin() {
        let now = Utc::now();
        let s = Subscription {
            id: SubscriptionId::new("s"),
            expires_at: now + chrono::Duration::minutes(30),
            resource: String::new(),
        };
        assert!(s.renewal_due(now, Duration::from_secs(3600)));
        assert!(!s.renewal_due(now, Duration::from_secs(600)));
    }
}
