//! Visits, their participant events and the write-back outbox: records and repository traits.
//!
//! A visit is one Teams meeting of one EHR visit. Its participant events are kept as FHIR
//! AuditEvents (opaque JSON to the store) and enqueued for delivery to the EHR in the same
//! transaction, so that an event is never stored without being scheduled for write-back, nor sent
//! without being stored. None of these records has a field for a person's name: participants are
//! kept by object id or an opaque meeting id only.

use std::{collections::HashMap, fmt};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use visitbridge_approval::ConfigurationId;

use crate::{MicrosoftObjectId, ReportRepo, StoreError, ids::check_bounded_id};

/// Longest identifier kept in these records.
const MAX_ID_LEN: usize = 512;

/// Checks an identifier-like value: non-empty, bounded, no whitespace or control characters.
pub(crate) fn check_id(value: &str, what: &'static str) -> Result<(), StoreError> {
    check_bounded_id(value, MAX_ID_LEN, what)
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        visitbridge_approval::string_newtype! {
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
            pub struct $name;
            error: StoreError,
            check: |value: &str| {
                check_id(value, concat!($what, " must be 1 to 512 characters without spaces"))
            },
            new_doc: "Checks and wraps the id: 1 to 512 characters without spaces.",
            as_str_doc: "The id as text.",
        }
    };
}

text_id!(
    /// Our id of a visit (chosen by the caller, typically a random UUID).
    VisitId,
    "a visit id"
);
text_id!(
    /// The deterministic id of a participant event: the idempotency key of its recording and of
    /// every delivery of it.
    EventId,
    "an event id"
);
text_id!(
    /// The name of a write-back sink within a configuration (e.g. `fhir-audit-event`).
    SinkName,
    "a sink name"
);
text_id!(
    /// Graph's id of a visit's change-notification subscription (notifications carry it).
    GraphSubscriptionId,
    "a subscription id"
);

/// The id of one outbox row (one event for one sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutboxId(pub i64);

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A visit: one EHR visit and its one Teams meeting.
///
/// The patient's, appointment's and encounter's FHIR ids and the conference id are kept as the EHR
/// gave them only while the visit's AuditEvents need them: [`RetentionRepo::purge_references`]
/// removes them after the retention period, leaving the keyed hashes of the patient and
/// appointment ids. Optional fields are filled in as the launch learns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// Our id.
    pub id: VisitId,
    /// The configuration (EHR endpoint) the visit was launched through.
    pub configuration_id: ConfigurationId,
    /// The hashed visit key sent to Graph as the meeting's `externalId`: unique per configuration,
    /// so concurrent launches of one visit share one row.
    pub external_meeting_id: String,
    /// Graph's `onlineMeeting` id.
    pub graph_meeting_id: Option<String>,
    /// The meeting's `joinWebUrl` (staff join link; live notifications name the meeting by it).
    pub join_web_url: Option<String>,
    /// The meeting organiser's Entra object id (the launching clinician).
    pub organizer_object_id: Option<MicrosoftObjectId>,
    /// The launching clinician's FHIR Practitioner id, so their AuditEvents point at them.
    pub practitioner_fhir_id: Option<String>,
    /// The visit's FHIR Appointment id.
    pub appointment_fhir_id: Option<String>,
    /// The visit's FHIR Encounter id.
    pub encounter_fhir_id: Option<String>,
    /// The visit's patient's FHIR id (a reference only, for AuditEvent entities).
    pub patient_fhir_id: Option<String>,
    /// Epic's conference id / CSN from the launch context, for the connection-status service.
    pub conference_id: Option<String>,
    /// The keyed hash of the patient's FHIR id (`visitbridge_visit::ReferenceKeys`): what a
    /// later launch's attested patient is compared with, kept after the clear ids are purged.
    #[serde(default)]
    pub patient_key: Option<String>,
    /// The keyed hash of the Appointment's FHIR id, likewise.
    #[serde(default)]
    pub appointment_key: Option<String>,
    /// The department the visit was launched from, as the EHR names it (the Appointment's
    /// Location, or the integration record's department id): what reports filter on. Not
    /// patient data.
    #[serde(default)]
    pub department: Option<String>,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// When the meeting's call last ended, if it did.
    pub ended_at: Option<DateTime<Utc>>,
}

/// What happened in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisitEventKind {
    /// The meeting's call started.
    CallStarted,
    /// A participant is waiting in the lobby (not connected yet).
    ParticipantInLobby,
    /// A participant connected (admitted from the lobby, or bypassed it).
    ParticipantJoined,
    /// A participant disconnected.
    ParticipantLeft,
    /// The meeting's call ended.
    CallEnded,
}

impl VisitEventKind {
    /// The stored name (`call-started`, `participant-in-lobby`, `participant-joined`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallStarted => "call-started",
            Self::ParticipantInLobby => "participant-in-lobby",
            Self::ParticipantJoined => "participant-joined",
            Self::ParticipantLeft => "participant-left",
            Self::CallEnded => "call-ended",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [
            Self::CallStarted,
            Self::ParticipantInLobby,
            Self::ParticipantJoined,
            Self::ParticipantLeft,
            Self::CallEnded,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// What kind of participant an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParticipantClass {
    /// A user of an Entra ID organisation (staff); the id is their object id.
    OrganizationUser,
    /// Someone without an account (browser or phone guest); the id is opaque.
    Anonymous,
    /// An Azure Communication Services guest (virtual-appointment browser join); the id is opaque.
    AcsGuest,
    /// An app or bot; the id is the app id.
    Application,
}

impl ParticipantClass {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganizationUser => "organization-user",
            Self::Anonymous => "anonymous",
            Self::AcsGuest => "acs-guest",
            Self::Application => "application",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [
            Self::OrganizationUser,
            Self::Anonymous,
            Self::AcsGuest,
            Self::Application,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A participant as stored: a class and an id, never a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventParticipant {
    /// What kind of participant.
    pub class: ParticipantClass,
    /// Object id, opaque id or app id (see [`ParticipantClass`]).
    pub id: String,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventOrigin {
    /// A live change notification.
    Notification,
    /// An attendance report, read after the meeting (reconciliation).
    AttendanceReport,
}

impl EventOrigin {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::AttendanceReport => "attendance-report",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [Self::Notification, Self::AttendanceReport]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A participant event of a visit with its AuditEvent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The deterministic event id (primary key).
    pub event_id: EventId,
    /// The visit.
    pub visit_id: VisitId,
    /// What happened.
    pub kind: VisitEventKind,
    /// Who (none for call start and end).
    pub participant: Option<EventParticipant>,
    /// When it happened (millisecond precision).
    pub occurred_at: DateTime<Utc>,
    /// When we stored it.
    pub recorded_at: DateTime<Utc>,
    /// Live or reconciled.
    pub origin: EventOrigin,
    /// The FHIR R4 AuditEvent, as JSON (the store does not look inside).
    pub audit_event: Value,
}

/// A participant event without its AuditEvent: what a report or a timeline reads (the bodies
/// are the write-back's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    /// The deterministic event id.
    pub event_id: EventId,
    /// The visit.
    pub visit_id: VisitId,
    /// What happened.
    pub kind: VisitEventKind,
    /// Who (none for call start and end).
    pub participant: Option<EventParticipant>,
    /// When it happened (millisecond precision).
    pub occurred_at: DateTime<Utc>,
    /// Live or reconciled.
    pub origin: EventOrigin,
}

/// One sink an event must be delivered to, with the key that makes a repeat harmless there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// The sink.
    pub sink: SinkName,
    /// The sink's idempotency key for this event.
    pub idempotency_key: String,
    /// The sink keeps only the latest state per participant (e.g. a connection status): a row
    /// whose event is older than one already delivered to the sink for the same visit and
    /// participant is [`OutboxState::Superseded`] instead of sent (it would undo a newer status).
    /// `false` for sinks that want every event (an audit trail).
    #[serde(default)]
    pub latest_only: bool,
}

/// Whether [`AuditRepo::record_event`] stored the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// New: stored and enqueued for every sink.
    Recorded,
    /// An event with this id was already stored; nothing changed.
    Duplicate,
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboxState {
    /// To be delivered (possibly leased by a worker right now, or waiting for its next attempt).
    Pending,
    /// Delivered.
    Delivered,
    /// Gave up (too many attempts, or a permanent refusal); see `last_error`, re-drivable.
    Dead,
    /// Not sent, and never will be: a newer event of the same visit and participant was already
    /// delivered to this latest-state-only sink (see [`NewDelivery::latest_only`]). Final, and
    /// not an error.
    Superseded,
}

impl OutboxState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Superseded => "superseded",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead, Self::Superseded]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// One event to deliver to one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Row id.
    pub id: OutboxId,
    /// The event.
    pub event_id: EventId,
    /// The event's visit.
    pub visit_id: VisitId,
    /// The sink.
    pub sink: SinkName,
    /// The sink's idempotency key for the event.
    pub idempotency_key: String,
    /// Where it stands.
    pub state: OutboxState,
    /// Deliveries started so far (a claim counts as one, so a worker that crashes mid-delivery
    /// still uses up an attempt). Also the fencing token of the current claim.
    pub attempts: u32,
    /// Not to be tried before this time.
    pub next_attempt_at: DateTime<Utc>,
    /// A worker holds the row until this time; after it, the row is due again.
    pub lease_until: Option<DateTime<Utc>>,
    /// A short reason for the last failure (no tokens, no PHI).
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A claimed outbox row with everything needed to deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    /// The row, as claimed (`attempts` already counts this attempt).
    pub item: OutboxItem,
    /// Its event.
    pub event: StoredEvent,
    /// The event's visit.
    pub visit: Visit,
}

/// The outbox's size, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutboxDepth {
    /// Rows still to deliver.
    pub pending: u64,
    /// Rows given up on (dead letters).
    pub dead: u64,
    /// When the oldest pending row was enqueued.
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

/// Longest `last_error` kept; longer ones are cut (on a character boundary).
pub const MAX_ERROR_LEN: usize = 300;

/// A visit's change-notification subscription, as stored so that it is renewed, mapped back to
/// its visit and removed after any restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitSubscription {
    /// The visit.
    pub visit_id: VisitId,
    /// Graph's subscription id.
    pub subscription_id: GraphSubscriptionId,
    /// When Graph stops delivering unless it is renewed.
    pub expires_at: DateTime<Utc>,
}

/// A visit's scheduled reconciliation with its attendance report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Not to be tried before this time (while claimed: when the claim runs out).
    pub due_at: DateTime<Utc>,
    /// Attempts started so far (a claim counts as one).
    pub attempts: u32,
}

/// A claimed reconciliation: the visit, and the attempt this claim is (its fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationClaim {
    /// The visit to reconcile.
    pub visit: Visit,
    /// This attempt's number, from 1 (see [`VisitRepo::finish_reconciliation`]).
    pub attempt: u32,
}

/// The visit registry.
#[async_trait]
pub trait VisitRepo: Send + Sync {
    /// Inserts the visit, or, if the configuration already has a visit with the same
    /// `external_meeting_id`, returns that one — with its empty optional fields filled in from
    /// `visit` (existing values are never overwritten). Of two concurrent launches of one visit,
    /// both get the same row.
    ///
    /// [`StoreError::NotFound`] if the configuration does not exist.
    async fn upsert_visit(&self, visit: &Visit) -> Result<Visit, StoreError>;
    /// A visit by our id.
    async fn get_visit(&self, id: &VisitId) -> Result<Option<Visit>, StoreError>;
    /// The visit of a configuration with this hashed visit key.
    async fn visit_by_key(
        &self,
        configuration: &ConfigurationId,
        external_meeting_id: &str,
    ) -> Result<Option<Visit>, StoreError>;
    /// The visit of a Graph meeting id (the newest, should there be several).
    async fn visit_by_meeting(&self, graph_meeting_id: &str) -> Result<Option<Visit>, StoreError>;
    /// The visit whose join URL is `join_web_url`, compared the way Graph echoes it: without the
    /// query and fragment, without a trailing slash, after percent-decoding (`%3a` = `%3A` = `:`).
    async fn visit_by_join_url(&self, join_web_url: &str) -> Result<Option<Visit>, StoreError>;
    /// A configuration's visits created at or after `since`, newest first, at most `limit`.
    async fn visits_since(
        &self,
        configuration: &ConfigurationId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError>;
    /// The visits of any of `configurations` created at or after `since`, newest first (then by
    /// id), at most `limit`, in one read.
    async fn visits_since_in(
        &self,
        configurations: &[ConfigurationId],
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError>;

    /// Stores `subscription` (expiring at `expires_at`) as the visit's subscription if the
    /// visit's current one is `replacing` (`None`: it has none) — a compare-and-set, so that of
    /// two replicas that subscribed at once only one subscription is kept (the loser deletes its
    /// own), and a renewal that finishes after the subscription was removed does not bring it
    /// back. Renewing is `replacing` the subscription by itself. Whether it was stored.
    ///
    /// [`StoreError::NotFound`] if the visit does not exist; [`StoreError::AlreadyExists`] if
    /// another visit has this subscription.
    async fn set_subscription(
        &self,
        visit: &VisitId,
        subscription: &GraphSubscriptionId,
        expires_at: DateTime<Utc>,
        replacing: Option<&GraphSubscriptionId>,
    ) -> Result<bool, StoreError>;
    /// Removes the visit's subscription — only if it is `only`, when given — and returns what
    /// was removed. Of two concurrent calls, one gets it: that one deletes it at Graph.
    async fn clear_subscription(
        &self,
        visit: &VisitId,
        only: Option<&GraphSubscriptionId>,
    ) -> Result<Option<VisitSubscription>, StoreError>;
    /// The visit's subscription.
    async fn subscription_of(
        &self,
        visit: &VisitId,
    ) -> Result<Option<VisitSubscription>, StoreError>;
    /// Subscriptions that expire at or before `before`, soonest first, at most `limit`: those to
    /// renew.
    async fn subscriptions_due(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<VisitSubscription>, StoreError>;
    /// Visits with a meeting (a join URL) that has not ended but no subscription, created at or
    /// after `since`, newest first, at most `limit`: those whose subscription could not be made
    /// when their meeting was (Graph down or refusing), to subscribe again.
    async fn unsubscribed_visits(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError>;
    /// The visit whose subscription is `subscription`.
    async fn visit_by_subscription(
        &self,
        subscription: &GraphSubscriptionId,
    ) -> Result<Option<Visit>, StoreError>;
    /// Keeps the patient's join URL of the visit's meeting (replacing an earlier one).
    ///
    /// [`StoreError::NotFound`] if the visit does not exist.
    async fn set_patient_join_url(&self, visit: &VisitId, url: &str) -> Result<(), StoreError>;
    /// The patient's join URL of the visit's meeting, if one was kept.
    async fn patient_join_url(&self, visit: &VisitId) -> Result<Option<String>, StoreError>;
    /// Schedules the visit's reconciliation with its attendance report at `at`, with no attempts
    /// made yet (replacing any schedule: a later call end starts over).
    ///
    /// [`StoreError::NotFound`] if the visit does not exist.
    async fn schedule_reconciliation(
        &self,
        visit: &VisitId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The visit's scheduled reconciliation, if any.
    async fn reconciliation_of(
        &self,
        visit: &VisitId,
    ) -> Result<Option<Reconciliation>, StoreError>;
    /// Claims up to `limit` reconciliations due at `now`, soonest first: each gets one more
    /// attempt and is held until `now + lease` (when a claimant dies, it is due again then).
    async fn claim_reconciliations(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ReconciliationClaim>, StoreError>;
    /// Ends the visit's reconciliation (done, or given up), if it is still in the claim numbered
    /// `attempt` (a new schedule since then is kept). Whether it was.
    async fn finish_reconciliation(
        &self,
        visit: &VisitId,
        attempt: u32,
    ) -> Result<bool, StoreError>;
    /// Releases the claim numbered `attempt`, due again at `at`. Whether it was still that claim.
    async fn retry_reconciliation(
        &self,
        visit: &VisitId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Participant events.
#[async_trait]
pub trait AuditRepo: Send + Sync {
    /// Stores `event` and enqueues one outbox row per entry of `deliveries`, in one transaction,
    /// unless an event with the same id is already stored ([`RecordOutcome::Duplicate`]: nothing
    /// changes, no new outbox rows). New rows are due at once (at `event.recorded_at`).
    /// A new call-ended event also sets the visit's `ended_at`.
    ///
    /// [`StoreError::NotFound`] if the visit does not exist.
    async fn record_event(
        &self,
        event: &StoredEvent,
        deliveries: &[NewDelivery],
    ) -> Result<RecordOutcome, StoreError>;
    /// A visit's events, by time.
    async fn events_for_visit(&self, visit: &VisitId) -> Result<Vec<StoredEvent>, StoreError>;
    /// The events of each of `visits` without their AuditEvents, by time, in one read (a visit
    /// without events has none in the map; an unknown id is ignored): a report's read, which
    /// never needs the bodies.
    async fn event_summaries_for_visits(
        &self,
        visits: &[VisitId],
    ) -> Result<HashMap<VisitId, Vec<EventSummary>>, StoreError>;
    /// One event.
    async fn get_event(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError>;
    /// What an auditor's search finds: the events that still have their AuditEvent (not purged
    /// after retention) and match `filter`, by recorded time then id, at most `limit`. One read.
    async fn search_audit_events(
        &self,
        filter: &AuditEventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Visits that got new events from other processes on this database, as they commit: how a
    /// replica's live panels learn of events another replica recorded (its own recordings it
    /// has already shown, so they are not announced to it). `None` where one process
    /// is all there is (SQLite): its own recordings are all the news.
    ///
    /// Best effort, never the record: a [`VisitChange::Unknown`] (the feed was interrupted or
    /// fell behind) means any visit may have changed; the events themselves are in the store.
    fn visit_changes(&self) -> Option<tokio::sync::broadcast::Receiver<VisitChange>> {
        None
    }
}

/// Which events an auditor's search asks for ([`AuditRepo::search_audit_events`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEventFilter {
    /// Events of visits of these configurations only (none: nothing matches).
    pub configurations: Vec<ConfigurationId>,
    /// When not empty: only of visits whose patient key ([`Visit::patient_key`]) is one of these.
    pub patient_keys: Vec<String>,
    /// When not empty: only of visits whose appointment key is one of these.
    pub appointment_keys: Vec<String>,
    /// Recorded at or after this.
    pub recorded_from: Option<DateTime<Utc>>,
    /// Recorded before this.
    pub recorded_before: Option<DateTime<Utc>>,
    /// Only events after this one in the search's order (recorded time, then id): a page's
    /// cursor.
    pub after: Option<(DateTime<Utc>, EventId)>,
}

impl AuditEventFilter {
    /// The filter's time bounds as both backends bind them: recorded from, recorded before, and
    /// the cursor's time and event id (unbounded ends as the widest values).
    pub(crate) fn bounds(&self) -> (i64, i64, i64, String) {
        let (after_at, after_id) = self
            .after
            .as_ref()
            .map_or((i64::MIN, String::new()), |(at, id)| {
                (crate::records::to_millis(*at), id.as_str().to_owned())
            });
        (
            self.recorded_from
                .map_or(i64::MIN, crate::records::to_millis),
            self.recorded_before
                .map_or(i64::MAX, crate::records::to_millis),
            after_at,
            after_id,
        )
    }
}

/// An item of [`AuditRepo::visit_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisitChange {
    /// This visit has new events.
    Visit(VisitId),
    /// Changes may have been missed (the feed reconnected): any visit may have new events.
    Unknown,
}

/// The write-back outbox.
///
/// Delivery is at-least-once: a worker claims due rows with a lease; if it dies before marking a
/// row, the row becomes due again when the lease runs out. The `attempts` value returned by the
/// claim is its fencing token: [`Self::mark_failed`] and [`Self::mark_dead`] only apply while the
/// row is still in that claim, so a worker whose lease ran out cannot undo a newer claim.
#[async_trait]
pub trait OutboxRepo: Send + Sync {
    /// Claims up to `limit` rows that are pending, due at `now` and not leased, oldest due first;
    /// each gets `lease_until = now + lease` and one more attempt.
    ///
    /// Rows of one visit, one sink and one participant are delivered in event order (so a late
    /// retry of an old status never overwrites a newer one): a row is not claimed while an
    /// earlier such row is still pending (waiting or leased). Dead rows do not hold later ones
    /// back. Call events (no participant) are ordered among themselves.
    ///
    /// In the same transaction, a pending, unleased row of a latest-only delivery
    /// ([`NewDelivery::latest_only`]) whose event is older than a row already delivered for the
    /// same visit, sink and participant becomes [`OutboxState::Superseded`] and is not claimed
    /// (an event that arrives late must not overwrite a newer status).
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Marks a row delivered, only while it is still pending in the claim numbered `attempt`;
    /// whether it was. A worker whose lease ran out (another holds the row now) cannot mark it:
    /// the row's successor must not go out before the current holder's repeat of it, or a
    /// latest-only sink would end with the older state. Its delivery then counts only as the
    /// at-least-once repeat the current holder makes.
    async fn mark_delivered(
        &self,
        id: OutboxId,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records a failed attempt: the row stays pending, is released, and is due again at
    /// `next_attempt_at`. Only while the row is still in the claim numbered `attempt`; whether it
    /// was.
    async fn mark_failed(
        &self,
        id: OutboxId,
        attempt: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Keeps rows with their worker until `until`: a worker renews the leases of the rows it still
    /// holds while it delivers, so that a short lease (handed to another worker within seconds of
    /// a crash) does not run out under a worker that is alive. Each `(id, attempt)` only while the
    /// row is still pending in the claim numbered `attempt`; how many rows were renewed.
    async fn extend_leases(
        &self,
        claims: &[(OutboxId, u32)],
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Gives up on a row (dead letter), under the same condition as [`Self::mark_failed`].
    async fn mark_dead(&self, id: OutboxId, attempt: u32, error: &str) -> Result<bool, StoreError>;
    /// Dead letters, oldest first, at most `limit`.
    async fn list_dead(&self, limit: u32) -> Result<Vec<OutboxItem>, StoreError>;
    /// Puts a dead row back to pending with its attempts reset, due at `now`. Whether it was dead
    /// (and its event still has its AuditEvent: one purged after retention has nothing to send).
    async fn redrive(&self, id: OutboxId, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// The outbox rows of one event (one per sink).
    async fn outbox_for_event(&self, event: &EventId) -> Result<Vec<OutboxItem>, StoreError>;
    /// The outbox rows of every event of one visit, in the order they were enqueued (for a
    /// visit's write-back report: one read instead of one per event).
    async fn outbox_for_visit(&self, visit: &VisitId) -> Result<Vec<OutboxItem>, StoreError>;
    /// Pending and dead counts.
    async fn outbox_depth(&self) -> Result<OutboxDepth, StoreError>;
    /// Removes delivered rows delivered before `before`; how many.
    async fn purge_delivered(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// What one [`RetentionRepo::purge_references`] call removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgedReferences {
    /// Visits whose clear patient, appointment, encounter and conference ids were removed.
    pub visits: u64,
    /// Events whose AuditEvent was removed (the event itself stays, for reports).
    pub events: u64,
}

/// What the store keeps about a visit's patient, and for how long.
///
/// A visit is *past retention* when it was created before `open_created_before` (its meeting is
/// no longer watched: a call that ended may be joined again while it is), its last call ended
/// (if an end was heard) before `ended_before`, nothing was recorded for it since
/// `ended_before`, none of its outbox rows is still pending and no reconciliation is scheduled:
/// nothing will build or send an AuditEvent of it any more. Its AuditEvents (which name the patient for the EHR) and clear ids are then
/// purged; the event summaries, the outbox rows and the keyed hashes stay.
#[async_trait]
pub trait RetentionRepo: Send + Sync {
    /// Visits that keep a clear patient or appointment id without its keyed hash (rows from
    /// before the hashes existed), at most `limit`: to key (with [`VisitRepo::upsert_visit`])
    /// before [`Self::purge_references`] can remove the clear ids.
    async fn visits_without_keys(&self, limit: u32) -> Result<Vec<Visit>, StoreError>;
    /// For up to `limit` visits past retention: replaces their events' AuditEvents
    /// by JSON `null`, and removes their clear patient, appointment, encounter and conference
    /// ids when the patient and appointment ids have their keyed hashes. On SQLite deleted
    /// content does not linger in free space (`secure_delete`) or the write-ahead log (each call
    /// checkpoints it while one is owed). On PostgreSQL old row versions stay in the table's
    /// pages until vacuum reuses them, and in its WAL archives and backups for as long as those
    /// are kept: an operator keeps those no longer than the retention.
    async fn purge_references(
        &self,
        ended_before: DateTime<Utc>,
        open_created_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<PurgedReferences, StoreError>;
}

/// The visit, event, outbox and retention repositories together, for `Arc<dyn AuditStore>`.
pub trait AuditStore: VisitRepo + AuditRepo + OutboxRepo + RetentionRepo + ReportRepo {}

impl<T> AuditStore for T where
    T: VisitRepo + AuditRepo + OutboxRepo + RetentionRepo + ReportRepo + ?Sized
{
}
