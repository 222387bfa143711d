//! Subscriptions to a meeting's call events: create (with and without encryption), renew,
//! reauthorize, delete.

use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use url::Url;
use visitbridge_graph::{EncryptionCertificate, SubscriptionConfig};
use visitbridge_http::Secret;
use visitbridge_testkit::{fixtures::keys, graph::ENCRYPTION_CERTIFICATE_ID};

use crate::world;

const JOIN_URL: &str =
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NTg0%40thread.v2/0?context=%7b%7d";

fn config() -> SubscriptionConfig {
    SubscriptionConfig::new(
        Url::parse("https://launch.example/graph/notifications").unwrap(),
        Url::parse("https://launch.example/graph/lifecycle").unwrap(),
        Secret::new("client-state-secret"),
    )
}

#[tokio::test]
async fn a_subscription_with_a_certificate_asks_for_encrypted_resource_data() {
    let w = world().await;
    let cert =
        EncryptionCertificate::from_pem(ENCRYPTION_CERTIFICATE_ID, keys::GRAPH_ENCRYPTION_CERT)
            .expect("cert");
    let config = SubscriptionConfig {
        encryption_certificate: Some(cert.clone()),
        ..config()
    };
    let before = Utc::now();
    let sub = w
        .client
        .subscribe_to_meeting(&config, JOIN_URL)
        .await
        .expect("subscribed");
    let sent = &w.graph.subscription_requests()[0];
    assert_eq!(sent["changeType"], "updated");
    assert_eq!(
        sent["resource"],
        format!("/communications/onlineMeetings/?$filter=JoinWebUrl eq '{JOIN_URL}'")
    );
    assert_eq!(
        sent["notificationUrl"],
        "https://launch.example/graph/notifications"
    );
    assert_eq!(
        sent["lifecycleNotificationUrl"],
        "https://launch.example/graph/lifecycle"
    );
    assert_eq!(sent["clientState"], "client-state-secret");
    assert_eq!(sent["includeResourceData"], true);
    assert_eq!(sent["encryptionCertificateId"], ENCRYPTION_CERTIFICATE_ID);
    let der = base64::engine::general_purpose::STANDARD
        .decode(sent["encryptionCertificate"].as_str().unwrap())
        .expect("base64 DER");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(der),
        cert.base64_der()
    );
    assert!(sub.expires_at > before + chrono::Duration::hours(11));
    assert!(w.graph.subscription(sub.id.as_str()).is_some());
    assert!(!format!("{config:?}").contains("client-state-secret"));
}

#[tokio::test]
async fn without_a_certificate_no_resource_data_is_asked_for() {
    let w = world().await;
    w.client
        .subscribe_to_meeting(&config(), JOIN_URL)
        .await
        .expect("subscribed");
    let sent = &w.graph.subscription_requests()[0];
    assert_eq!(sent["includeResourceData"], false);
    assert!(sent.get("encryptionCertificate").is_none());
}

#[tokio::test]
async fn subscriptions_are_renewed_reauthorized_and_deleted() {
    let w = world().await;
    let short = SubscriptionConfig {
        lifetime: Duration::from_secs(3600),
        ..config()
    };
    let sub = w
        .client
        .subscribe_to_meeting(&short, JOIN_URL)
        .await
        .expect("subscribed");
    assert!(sub.renewal_due(Utc::now(), Duration::from_secs(2 * 3600)));
    let renewed = w
        .client
        .renew_subscription(&config(), &sub.id)
        .await
        .expect("renewed");
    assert_eq!(renewed.id, sub.id);
    assert!(renewed.expires_at > sub.expires_at + chrono::Duration::hours(10));
    assert!(!renewed.renewal_due(Utc::now(), Duration::from_secs(3600)));

    w.client
        .reauthorize_subscription(&sub.id)
        .await
        .expect("reauthorized");
    assert_eq!(w.graph.reauthorized(), vec![sub.id.to_string()]);

    w.client
        .delete_subscription(&sub.id)
        .await
        .expect("deleted");
    assert_eq!(w.graph.deleted(), vec![sub.id.to_string()]);
    assert!(w.graph.subscription(sub.id.as_str()).is_none());
    w.client
        .delete_subscription(&sub.id)
        .await
        .expect("deleting a subscription already gone is fine");
}
