//! Microsoft Graph for VisitBridge: Entra ID app tokens, one Teams meeting per visit, and live
//! participant events.
//!
//! This is the only crate that knows Graph's JSON. It gives the rest of VisitBridge a meeting per
//! visit and a stream of [`ParticipantEvent`]s, and nothing of Graph's shapes leaks out.
//!
//! # Design
//! - **Tokens** ([`EntraAppTokens`]): client credentials with a client secret or a certificate
//!   (a signed client assertion with `x5t`). One cache behind an async mutex: a refresh happens when
//!   less than five minutes are left, exactly one refresh is in flight, and concurrent callers wait
//!   for its result. A refresh that fails is not repeated by every waiter (the error is held for
//!   two seconds). Entra's errors keep their `AADSTS…` code and `trace_id`.
//! - **One meeting per visit** ([`GraphClient::provision_meeting`]): `createOrGet` with an
//!   [`ExternalMeetingId`] hashed from (configuration id, visit key), so the EHR's CSN never
//!   reaches Microsoft and a retried or repeated launch finds the same meeting (201 created / 200
//!   existing); it carries the appointment's `startDateTime`/`endDateTime` when known
//!   ([`MeetingTimes`]). Then one PATCH ([`MeetingChanges`]) applies the [`MeetingPolicy`] (lobby
//!   for patients, chat limited to the call, organiser presents) and sets the appointment's times
//!   when the meeting's differ (a moved appointment) — skipped when there is nothing to change —
//!   and the
//!   patient's join URL is fetched (virtual-appointment browser join, falling back to `joinWebUrl`
//!   with a single log line per process). Each step is also public ([`GraphClient::create_or_get`],
//!   [`GraphClient::apply_policy`], [`GraphClient::patient_join_url`]) so the launch service can
//!   schedule its two or three round trips itself.
//! - **Faults**: idempotent calls (and `createOrGet`, idempotent by `externalId`) are retried on
//!   429/5xx/timeouts with jittered backoff, honouring `Retry-After`, within
//!   `visitbridge_http::RetryPolicy`'s bounds; creating a subscription is retried only on 429. A
//!   401 refreshes the token once. Every [`GraphError`] keeps Graph's `request-id`; a 403 for a
//!   missing application access policy becomes [`GraphError::AccessPolicyMissing`], whose message
//!   is the PowerShell the Teams administrator must run. Tokens live in
//!   `visitbridge_http::Secret` and never appear in errors, logs or `Debug`.
//! - **Live events**: [`GraphClient::subscribe_to_meeting`] and friends manage subscriptions;
//!   [`notifications`] implements the webhook protocol as plain functions (handshake,
//!   constant-time `clientState`, plain and encrypted content), and [`webhook_router`] wraps it in
//!   a small axum router for the launch service to nest. Decryption ([`DecryptionKeys`]) verifies
//!   the HMAC **before** decrypting. When encryption is configured ([`NotificationEncryption`]),
//!   plain `resourceData` is refused and each batch with encrypted content needs a valid
//!   `validationTokens` JWT ([`ValidationTokenVerifier`]: Microsoft identity platform keys, cached
//!   by `kid`, `aud` = our app, `azp` = Graph Change Tracking, our tenant's issuer), so a leaked
//!   `clientState` is not enough to forge participant events. Roster payloads become [`ParticipantEvent`]s; display names are
//!   dropped in the parser and exist in no type of this crate.
//! - **Reconciliation**: [`GraphClient::attendance_events`] turns attendance reports into the same
//!   event type, for events a notification outage made us miss.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use visitbridge_graph::{
//!     EntraAppTokens, EntraConfig, ExternalMeetingId, GraphClient, GraphConfig, TokenCredential,
//!     UserObjectId, VisitMeetingRequest,
//! };
//! use visitbridge_http::{HttpConfig, Secret, build_client};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let http = build_client(&HttpConfig::default())?;
//! let tokens = Arc::new(EntraAppTokens::new(
//!     http.clone(),
//!     EntraConfig::new("tenant-id", "client-id"),
//!     TokenCredential::ClientSecret(Secret::new("client-secret")),
//! )?);
//! let graph = GraphClient::new(http, GraphConfig::default(), tokens);
//! let meeting = graph
//!     .provision_meeting(&VisitMeetingRequest {
//!         organizer: UserObjectId::new("organizer-object-id"),
//!         external_id: ExternalMeetingId::derive("configuration-id", "csn-123456"),
//!         start: None,
//!         end: None,
//!     })
//!     .await?;
//! println!("staff: {}\npatient: {}", meeting.join_web_url, meeting.patient_join_url.url);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod attendance;
mod client;
mod crypto;
mod error;
mod events;
mod ids;
mod meetings;
pub mod notifications;
mod pem;
mod subscriptions;
mod token;
mod validation;
mod webhook;

pub use client::{GraphClient, GraphConfig};
pub use crypto::{DecryptionKeys, EncryptionCertificate};
pub use error::GraphError;
pub use events::{
    EventKind, EventSource, MeetingRef, Participant, ParticipantEvent, ParticipantKind,
};
pub use ids::{ExternalMeetingId, MeetingId, SubscriptionId, UserObjectId};
pub use meetings::{
    AllowedPresenters, LobbyScope, MeetingChanges, MeetingChatMode, MeetingInfo, MeetingOutcome,
    MeetingPolicy, MeetingTimes, PatientJoinKind, PatientJoinUrl, ProvisionedMeeting,
    VisitMeetingRequest,
};
pub use notifications::{
    ClientStateSecret, LifecycleEvent, Notification, NotificationEncryption,
    UnreadableNotification, ValidationResponse, parse_notifications, parse_verified_notifications,
    validation_response,
};
pub use subscriptions::{
    MAX_SUBSCRIPTION_LIFETIME, Subscription, SubscriptionConfig, meeting_resource,
};
pub use token::{EntraAppTokens, EntraConfig, TokenCredential};
pub use validation::{
    GRAPH_CHANGE_TRACKING_APP_ID, ValidationTokenConfig, ValidationTokenVerifier,
};
pub use webhook::{NotificationSink, SinkError, WebhookConfig, webhook_router};
