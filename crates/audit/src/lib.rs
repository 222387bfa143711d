//! Visit events for VisitBridge: every participant connect and disconnect kept as a FHIR R4
//! AuditEvent and written back to the EHR, at least once and never twice.
//!
//! # Design choices
//!
//! - **Store first, deliver later, in one transaction.** [`AuditRecorder::record`] builds the
//!   event's AuditEvent and stores it together with one outbox row per sink of the visit's
//!   configuration (`visitbridge_store::AuditRepo::record_event`, one `BEGIN IMMEDIATE`
//!   transaction). The webhook answers Graph only after that, so a crash at any point loses
//!   nothing: either Graph re-sends the notification, or the row is in the outbox.
//! - **Deterministic event ids.** [`VisitEventId`] is a UUID v5 over the visit, the kind, the
//!   participant (class and object/opaque id) and the event time in milliseconds. A notification
//!   Graph delivers twice is the same id: stored once, delivered once.
//! - **At-least-once delivery, idempotent sinks.** [`DeliveryWorker`] claims due rows with a
//!   lease (a worker that dies mid-delivery leaves them to another after the lease), delivers a
//!   few at once, and marks each result. Retryable failures (5xx, 408, 429, 401, timeouts) back
//!   off exponentially with jitter up to a cap; after `max_attempts`, or at once for a permanent
//!   refusal (any other 4xx), the row becomes a visible, re-drivable dead letter. Every sink makes
//!   a repeat harmless: FHIR AuditEvents by `PUT AuditEvent/{uuid v5 of the event id}` or by
//!   conditional create on our `meta.tag` (`If-None-Exist: _tag=<system>|<event id>`); FHIR
//!   Communications by conditional create on the same tag; Epic's `SetExternalConnectionStatus`
//!   sets a status, so a repeat sets the same status, and one participant's events reach it in
//!   event order so an old status never overwrites a newer one.
//! - **AuditEvents per `writeback.md`.** Joins and leaves: DICOM User Authentication (110114),
//!   Login/Logout subtypes plus our `participant-connected`/`participant-disconnected`, action
//!   `E`, outcome `0`; the participant as agent 0, by Practitioner reference when it is the
//!   visit's linked clinician (the meeting organiser), else by identifier ([`ENTRA_OBJECT_ID_SYSTEM`],
//!   [`MEETING_PARTICIPANT_SYSTEM`]); the connector as agent 1 and observer; Appointment and
//!   Encounter (type 2) and Patient (type 1, role 1) by reference; our event id in `meta.tag`.
//!   Call start and end are Application Activity (`DCM#110100`) with Application Start/Stop
//!   (110120/110121) and our `call-started`/`call-ended`. No name ever: Graph's parser drops
//!   display names and no type here has a field for one.
//! - **Epic codes are configuration.** The `ConnectionStatus` and `ExternalIDType` values are in
//!   Epic's vendor guide only; [`EpicConnectionStatusConfig`] has no defaults and refuses
//!   unreplaced placeholders.
//! - **Timelines are pure.** [`VisitTimeline::from_events`] derives connected intervals, the
//!   visit's start (staff and patient both in), the patient's wait, duration and status from the
//!   stored events: what live views and reports show.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use visitbridge_audit::{
//!     AuditEventMode, AuditRecorder, ConfiguredSinks, DeliveryPolicy, DeliveryWorker,
//!     SinkConfig, SinkContext,
//! };
//! use visitbridge_fhir::{FhirBaseUrl, FhirClient, FhirClientConfig, StaticToken};
//! use visitbridge_graph::ParticipantEvent;
//! use visitbridge_http::{HttpConfig, Secret, build_client};
//! use visitbridge_store::{AuditStore, SqliteStore, Visit};
//!
//! # async fn run(visit: Visit, event: ParticipantEvent) -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::open("visitbridge.sqlite").await?);
//! let http = build_client(&HttpConfig::default())?;
//! let token = Arc::new(StaticToken(Secret::new("backend-services-token")));
//! let fhir = FhirClient::new(
//!     FhirClientConfig::new(FhirBaseUrl::parse("https://ehr.example.org/api/FHIR/R4")?),
//!     http.clone(),
//!     token.clone(),
//! );
//! let context = SinkContext { http, token, fhir };
//!
//! // The configuration's sinks, from the deployment's configuration file.
//! let sinks = Arc::new(ConfiguredSinks::new());
//! let config = SinkConfig::FhirAuditEvent { mode: AuditEventMode::ConditionalCreate };
//! sinks.set(visit.configuration_id.clone(), vec![config.build(&context)?])?;
//!
//! let worker = DeliveryWorker::new(store.clone(), sinks.clone(), DeliveryPolicy::default());
//! let recorder = AuditRecorder::new(store, sinks).wake_on_record(worker.waker());
//! tokio::spawn(async move { worker.run(std::future::pending()).await });
//!
//! // From the Graph webhook: stored and enqueued before Graph gets its answer.
//! recorder.record(&visit, &event).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod auditor;
mod error;
mod event_id;
pub mod outcomes;
mod record;
mod recorder;
mod sink;
pub mod sinks;
pub mod stats;
mod timeline;
mod worker;

pub use error::AuditError;
pub use event_id::VisitEventId;
pub use record::{
    CONNECTOR_SYSTEM, ENTRA_APPLICATION_SYSTEM, ENTRA_OBJECT_ID_SYSTEM, MEETING_PARTICIPANT_SYSTEM,
    default_connector,
};
pub use recorder::{AuditRecorder, RecordSummary, Recorded};
pub use sink::{
    AuditEventMode, ConfiguredSinks, Sink, SinkConfig, SinkContext, SinkError, SinkLoader,
    SinkResolver,
};
pub use sinks::{
    epic::{EpicConnectionStatusConfig, EpicConnectionStatusSink},
    fhir::{FhirAuditEventSink, FhirCommunicationSink},
};
pub use timeline::{
    ConnectedInterval, LobbyWait, ParticipantRole, ParticipantTimeline, TimelineEvent, VisitStatus,
    VisitTimeline, participant_labels,
};
pub use worker::{DeliveryPolicy, DeliveryReport, DeliveryWorker};
