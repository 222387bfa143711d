//! Durable state for VisitBridge: organisations, configurations with their full approval history,
//! EHR-user ↔ Microsoft-user links, pending launches, sessions, and visits with their participant
//! events and write-back outbox. Never PHI: only ids, URLs and settings.
//!
//! # Design choices
//!
//! - **Repository traits, two backends.** Callers program against the async traits
//!   ([`ConfigurationRepo`], [`TenantRepo`], [`UserLinkRepo`], [`PendingRepo`],
//!   [`SessionRepo`], [`VisitRepo`], [`AuditRepo`], [`OutboxRepo`], bundled as [`Store`] for
//!   `Arc<dyn Store>`, the last three also as [`AuditStore`]). [`SqliteStore`] (the embedded
//!   default) and [`PostgresStore`] (many replicas on one database) implement them all, with the
//!   same guarantees: one test suite runs on both. Only this crate knows SQL.
//! - **PostgreSQL**: tokio-postgres with a deadpool pool, TLS through rustls on aws-lc-rs (the
//!   certificate always verified; `sslrootcert` names a managed service's CA bundle), the same
//!   versioned schema history as SQLite's applied under an advisory lock. Writes run
//!   `SERIALIZABLE` and are retried on serialization failures, so they behave as SQLite's single
//!   writer does; claims of due work use `FOR UPDATE SKIP LOCKED`, so replicas claim disjoint rows.
//!   [`DatabaseLocation`] picks the backend from the configured database URL.
//! - **SQLite, carefully set up.** `rusqlite` with the bundled library. Pragmas in this order:
//!   `busy_timeout` (first, so that even switching the journal mode waits for another process),
//!   `journal_mode=WAL`, `synchronous=NORMAL`, `foreign_keys=ON`. STRICT tables. Versioned
//!   migrations (`rusqlite_migration`, tracked in `user_version`) run at start-up.
//! - **One writer, a few readers, never on the runtime.** One writer connection behind a mutex;
//!   every write is one `BEGIN IMMEDIATE` transaction, which takes the write lock up front and so
//!   cannot fail half-way on a lock upgrade. A small pool of read connections reads concurrently
//!   thanks to WAL. All blocking work runs on `tokio::task::spawn_blocking`.
//! - **Configurations** are stored as a few indexed columns (tenant, current URL and environment,
//!   state, revision, and the *approved* URL and environment that launches look up) plus the whole
//!   [`visitbridge_approval::Configuration`] as a JSON document. Writes take a
//!   [`visitbridge_approval::Transitioned`] and store the configuration and its history entry in
//!   one transaction, with an optimistic check that the stored revision is the one the transition
//!   started from. Every read takes the tenant, so one organisation never sees another's.
//! - **History is append-only**, enforced by the database: triggers refuse `UPDATE` and `DELETE`
//!   on it, and a configuration with history cannot be deleted (foreign key).
//! - **One approved configuration per FHIR base URL and environment**, across tenants (a unique
//!   index on the approved columns), so a launch's `iss` leads to exactly one configuration.
//! - **Pending items are single-use**: taking one deletes it in the same statement
//!   (`DELETE … RETURNING`), so two concurrent takes cannot both succeed; expired items are never
//!   returned. Times are passed in, for tests.
//! - **Visits and write-back.** One visit row per (configuration, hashed visit key): concurrent
//!   launches of one visit upsert the same row. A participant event is stored (keyed by its
//!   deterministic id, so a repeat is a no-op) together with one outbox row per write-back sink, in
//!   one transaction: an event is never kept without being scheduled, nor scheduled without being
//!   kept. Workers claim due rows with a lease (a crashed worker's rows come back when it runs out;
//!   the attempt count fences stale workers), deliveries about one participant of a visit to one
//!   sink go out in event order, and rows that keep failing become visible, re-drivable dead
//!   letters. No column holds a participant's name.
//! - **Visit upkeep survives restarts.** The visit's row also keeps the patient's join URL, its
//!   Graph subscription (set by compare-and-set, one visit per subscription, listed by expiry for
//!   renewal) and when to reconcile it with its attendance report (claimed with a lease and
//!   fenced by the attempt count, like outbox rows).
//!
//! # Example
//!
//! ```
//! use chrono::{Duration, Utc};
//! use visitbridge_store::{PendingRepo, SqliteStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("visitbridge.sqlite")).await?;
//!
//! let now = Utc::now();
//! let payload = serde_json::json!({ "iss": "https://ehr.example.org/api/FHIR/R4" });
//! store.put_pending("random-state", "launch", &payload, now + Duration::minutes(10)).await?;
//! assert_eq!(store.take_pending("random-state", "launch", now).await?, Some(payload));
//! // Single use.
//! assert_eq!(store.take_pending("random-state", "launch", now).await?, None);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod error;
mod ids;
mod open;
mod postgres;
mod records;
mod repo;
mod report;
mod sqlite;
mod visits;

pub use error::StoreError;
pub use ids::{MicrosoftObjectId, MicrosoftTenantId};
pub use open::DatabaseLocation;
pub use postgres::{MigrationReport, PostgresOptions, PostgresStore};
pub use repo::{
    ConfigurationRepo, LeaseRepo, PendingRepo, SessionRepo, Store, StoredSession, Tenant,
    TenantRepo, UserLink, UserLinkRepo,
};
pub use report::{
    ReportPage, ReportPoint, ReportQuery, ReportRepo, ReportSort, StaleOutcome, VisitOutcome,
    VisitStatus,
};
pub use sqlite::SqliteStore;
pub use visits::{
    AuditEventFilter, AuditRepo, AuditStore, ClaimedDelivery, EventId, EventOrigin,
    EventParticipant, EventSummary, GraphSubscriptionId, MAX_ERROR_LEN, NewDelivery, OutboxDepth,
    OutboxId, OutboxItem, OutboxRepo, OutboxState, ParticipantClass, PurgedReferences,
    Reconciliation, ReconciliationClaim, RecordOutcome, RetentionRepo, SinkName, StoredEvent,
    Visit, VisitChange, VisitEventKind, VisitId, VisitRepo, VisitSubscription,
};
