//! The schema on PostgreSQL: the same versioned history as SQLite's (version *n* here is version
//! *n* there, described alike), in PostgreSQL's dialect. Applied in one transaction under an
//! advisory lock: replicas starting together migrate once, the others wait and find nothing to do,
//! and a failed migration leaves the previous version intact (PostgreSQL's DDL is transactional).
//!
//! Differences from the SQLite text, all of representation only: `BIGINT` for integers and Unix
//! milliseconds (so both backends round times alike), `JSONB` for JSON documents, `BOOLEAN` for
//! flags, an identity column for the outbox ids, named constraints (errors are mapped by name),
//! and triggers written as PL/pgSQL.

use chrono::Utc;
use deadpool_postgres::Object;

use crate::StoreError;

/// Any number, the same for every VisitBridge process on this database: the advisory lock's key.
const MIGRATION_LOCK: i64 = 0x5669_7369_7442_7264; // "VisitBrd"

/// One migration: what it does and its SQL.
pub(crate) struct Migration {
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// All migrations, oldest first; the same versions as the SQLite backend's.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        description: "tenants, configurations and their append-only history, user links, \
                      pending items, sessions",
        sql: V1,
    },
    Migration {
        description: "visits, participant events and the write-back outbox",
        sql: V2,
    },
    Migration {
        description: "visit upkeep: patient join URL, subscription, reconciliation",
        sql: V3,
    },
    Migration {
        description: "outbox rows of latest-state-only sinks, and the superseded state",
        sql: V4,
    },
    Migration {
        description: "named leases, for work that runs once across replicas",
        sql: V5,
    },
    Migration {
        description: "an outbox index by state and latest-state-only flag",
        sql: V6,
    },
    Migration {
        description: "keyed hashes of a visit's patient and appointment ids, and the indexes of \
                      what the retention purge removes",
        sql: V7,
    },
    Migration {
        description: "indexes of visits by patient and appointment key, for the auditor's search",
        sql: V8,
    },
    Migration {
        description: "what reports filter and sort on: a visit's department and outcome, with \
                      the events version it was derived from",
        sql: V9,
    },
];

// Version 9: what reports filter and sort on, on the visit's row — the department it was
// launched from and its outcome derived from its events, with the events version it was
// derived from (each recorded event bumps `events_version`; existing visits start with their
// event count, so their outcomes are stale and derived by the next housekeeping). Unlike
// SQLite, no partial index of the stale rows (see below): they are found through
// `visits_by_configuration`.
const V9: &str = r#"
ALTER TABLE visits ADD COLUMN department TEXT;
ALTER TABLE visits ADD COLUMN status TEXT NOT NULL DEFAULT 'not-started'
    CONSTRAINT visits_status_check
    CHECK (status IN ('not-started', 'waiting', 'in-progress', 'completed', 'no-show'));
ALTER TABLE visits ADD COLUMN visit_start_at BIGINT;
ALTER TABLE visits ADD COLUMN visit_end_at BIGINT;
ALTER TABLE visits ADD COLUMN lobby_wait_ms BIGINT;
ALTER TABLE visits ADD COLUMN attendees BIGINT NOT NULL DEFAULT 0
    CONSTRAINT visits_attendees_check CHECK (attendees >= 0);
ALTER TABLE visits ADD COLUMN events_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE visits ADD COLUMN outcome_version BIGINT NOT NULL DEFAULT 0;
UPDATE visits SET events_version =
    (SELECT COUNT(*) FROM visit_events e WHERE e.visit_id = visits.id);
-- No index names `events_version` (not even in a predicate), and pages keep room: the bump of
-- every recorded event is then a heap-only (HOT) update, which writes no index page that a
-- concurrent launch's serializable read of the visits' indexes could conflict with.
ALTER TABLE visits SET (fillfactor = 85);
-- Every column a report filters, sorts or charts on, after the configuration and launch time: a
-- report's count, its page's order and its charts' points read this index only, and only the
-- page's rows are read from the table.
CREATE INDEX visits_report ON visits (configuration_id, created_at, status, department,
    visit_start_at, visit_end_at, lobby_wait_ms, attendees);
-- The departments offered, found one after another (a skip scan), not by reading every visit.
CREATE INDEX visits_by_department ON visits (configuration_id, department)
    WHERE department IS NOT NULL;
"#;

// Version 8: the auditor's FHIR search by patient or appointment finds visits by their keys.
const V8: &str = r#"
CREATE INDEX visits_by_patient_key ON visits (patient_key) WHERE patient_key IS NOT NULL;
CREATE INDEX visits_by_appointment_key ON visits (appointment_key)
    WHERE appointment_key IS NOT NULL;
"#;

const V7: &str = r#"
ALTER TABLE visits ADD COLUMN patient_key TEXT;
ALTER TABLE visits ADD COLUMN appointment_key TEXT;
CREATE INDEX visits_with_references ON visits (created_at)
    WHERE patient_fhir_id IS NOT NULL OR appointment_fhir_id IS NOT NULL
        OR encounter_fhir_id IS NOT NULL OR conference_id IS NOT NULL;
CREATE INDEX visit_events_with_body ON visit_events (recorded_at)
    WHERE audit_event <> 'null'::jsonb;

-- An audit trail is not edited; the one change allowed is the retention purge of an AuditEvent.
DROP TRIGGER visit_events_immutable ON visit_events;
CREATE TRIGGER visit_events_immutable
    BEFORE UPDATE ON visit_events
    FOR EACH ROW
    WHEN (NOT (NEW.audit_event = 'null'::jsonb
        AND (NEW.event_id, NEW.visit_id, NEW.kind, NEW.occurred_at, NEW.recorded_at, NEW.origin)
            = (OLD.event_id, OLD.visit_id, OLD.kind, OLD.occurred_at, OLD.recorded_at, OLD.origin)
        AND NEW.participant_class IS NOT DISTINCT FROM OLD.participant_class
        AND NEW.participant_id IS NOT DISTINCT FROM OLD.participant_id))
    EXECUTE FUNCTION visitbridge_refuse_change('visit events are immutable');
"#;

const V1: &str = r#"
CREATE FUNCTION visitbridge_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TABLE tenants (
    id TEXT NOT NULL CONSTRAINT tenants_pkey PRIMARY KEY,
    name TEXT NOT NULL,
    microsoft_tenant_id TEXT NOT NULL CONSTRAINT tenants_microsoft_tenant_id_key UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE configurations (
    id TEXT NOT NULL CONSTRAINT configurations_pkey PRIMARY KEY,
    tenant_id TEXT NOT NULL CONSTRAINT configurations_tenant_fkey REFERENCES tenants(id),
    fhir_base_url TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('test', 'production')),
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    approved_fhir_base_url TEXT,
    approved_environment TEXT CHECK (approved_environment IN ('test', 'production')),
    document JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT configurations_tenant_issuer_key UNIQUE (tenant_id, fhir_base_url, environment)
);

-- One approved configuration per FHIR base URL and environment, across all tenants: a launch's
-- `iss` must lead to exactly one configuration.
CREATE UNIQUE INDEX configurations_approved_issuer
    ON configurations (approved_fhir_base_url, approved_environment)
    WHERE approved_fhir_base_url IS NOT NULL;

CREATE TABLE configuration_history (
    configuration_id TEXT NOT NULL
        CONSTRAINT configuration_history_configuration_fkey REFERENCES configurations(id),
    revision BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    entry JSONB NOT NULL,
    CONSTRAINT configuration_history_pkey PRIMARY KEY (configuration_id, revision)
);

CREATE TRIGGER configuration_history_append_only
    BEFORE UPDATE OR DELETE ON configuration_history
    FOR EACH ROW EXECUTE FUNCTION visitbridge_refuse_change('configuration history is append-only');
CREATE TRIGGER configuration_history_no_truncate
    BEFORE TRUNCATE ON configuration_history
    FOR EACH STATEMENT EXECUTE FUNCTION visitbridge_refuse_change('configuration history is append-only');

CREATE TABLE user_links (
    ehr_issuer TEXT NOT NULL,
    ehr_user_id TEXT NOT NULL,
    microsoft_tenant_id TEXT NOT NULL,
    microsoft_object_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    CONSTRAINT user_links_pkey PRIMARY KEY (ehr_issuer, ehr_user_id)
);

CREATE TABLE pending (
    key TEXT NOT NULL CONSTRAINT pending_pkey PRIMARY KEY,
    kind TEXT NOT NULL,
    payload JSONB NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX pending_expiry ON pending (expires_at);

CREATE TABLE sessions (
    id TEXT NOT NULL CONSTRAINT sessions_pkey PRIMARY KEY,
    data JSONB NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
"#;

const V2: &str = r#"
CREATE TABLE visits (
    id TEXT NOT NULL CONSTRAINT visits_pkey PRIMARY KEY,
    configuration_id TEXT NOT NULL CONSTRAINT visits_configuration_fkey REFERENCES configurations(id),
    external_meeting_id TEXT NOT NULL,
    graph_meeting_id TEXT,
    join_web_url TEXT,
    -- The join URL as compared: no query or fragment, percent-decoded (Graph echoes it variously).
    join_url_key TEXT,
    organizer_object_id TEXT,
    practitioner_fhir_id TEXT,
    appointment_fhir_id TEXT,
    encounter_fhir_id TEXT,
    patient_fhir_id TEXT,
    conference_id TEXT,
    created_at BIGINT NOT NULL,
    ended_at BIGINT,
    -- Two concurrent launches of one visit must give one row.
    CONSTRAINT visits_meeting_key UNIQUE (configuration_id, external_meeting_id)
);
CREATE INDEX visits_by_meeting ON visits (graph_meeting_id) WHERE graph_meeting_id IS NOT NULL;
CREATE INDEX visits_by_join_url ON visits (join_url_key) WHERE join_url_key IS NOT NULL;
CREATE INDEX visits_by_configuration ON visits (configuration_id, created_at);

CREATE TABLE visit_events (
    event_id TEXT NOT NULL CONSTRAINT visit_events_pkey PRIMARY KEY,
    visit_id TEXT NOT NULL CONSTRAINT visit_events_visit_fkey REFERENCES visits(id),
    kind TEXT NOT NULL
        CHECK (kind IN ('call-started', 'participant-in-lobby', 'participant-joined',
                        'participant-left', 'call-ended')),
    participant_class TEXT
        CHECK (participant_class IN ('organization-user', 'anonymous', 'acs-guest', 'application')),
    participant_id TEXT,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('notification', 'attendance-report')),
    audit_event JSONB NOT NULL,
    CHECK ((participant_class IS NULL) = (participant_id IS NULL))
);
CREATE INDEX visit_events_by_visit ON visit_events (visit_id, occurred_at);

-- An audit trail is not edited.
CREATE TRIGGER visit_events_immutable
    BEFORE UPDATE ON visit_events
    FOR EACH ROW EXECUTE FUNCTION visitbridge_refuse_change('visit events are immutable');

CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY CONSTRAINT outbox_pkey PRIMARY KEY,
    event_id TEXT NOT NULL CONSTRAINT outbox_event_fkey REFERENCES visit_events(event_id),
    -- Copied from the event: deliveries of one visit, sink and participant go out in event order.
    visit_id TEXT NOT NULL CONSTRAINT outbox_visit_fkey REFERENCES visits(id),
    participant_key TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    sink TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL CONSTRAINT outbox_state_check CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    CONSTRAINT outbox_event_sink_key UNIQUE (event_id, sink)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_order ON outbox (visit_id, sink, participant_key, state, occurred_at);
"#;

const V3: &str = r#"
ALTER TABLE visits ADD COLUMN patient_join_url TEXT;
ALTER TABLE visits ADD COLUMN subscription_id TEXT;
ALTER TABLE visits ADD COLUMN subscription_expires_at BIGINT;
ALTER TABLE visits ADD CONSTRAINT visits_subscription_expiry_check
    CHECK ((subscription_id IS NULL) = (subscription_expires_at IS NULL));
ALTER TABLE visits ADD COLUMN reconcile_after BIGINT;
ALTER TABLE visits ADD COLUMN reconcile_attempts BIGINT NOT NULL DEFAULT 0
    CHECK (reconcile_attempts >= 0);
-- A notification names its subscription: it must lead to one visit.
CREATE UNIQUE INDEX visits_by_subscription ON visits (subscription_id)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX visits_subscription_expiry ON visits (subscription_expires_at)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX visits_reconcile_due ON visits (reconcile_after) WHERE reconcile_after IS NOT NULL;
"#;

const V4: &str = r#"
ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check
    CHECK (state IN ('pending', 'delivered', 'dead', 'superseded'));
ALTER TABLE outbox ADD COLUMN latest_only BOOLEAN NOT NULL DEFAULT FALSE;
"#;

/// See the SQLite backend's version 6.
const V6: &str = r#"
CREATE INDEX outbox_latest_only ON outbox (state, latest_only);
"#;

const V5: &str = r#"
CREATE TABLE leases (
    name TEXT NOT NULL CONSTRAINT leases_pkey PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
"#;

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// The schema version before.
    pub from: u32,
    /// The schema version after.
    pub to: u32,
}

/// `schema at version 5 (was 4)`: what the `migrate` commands print.
impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schema at version {} (was {})", self.to, self.from)
    }
}

/// The newest version this program knows.
fn known_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// Brings the schema up to date, in one transaction holding the migration lock.
pub(crate) async fn migrate(client: &mut Object) -> Result<MigrationReport, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT NOT NULL PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at BIGINT NOT NULL
         )",
    )
    .await?;
    let from = version_in(&tx).await?;
    let known = known_version();
    if from > known {
        return Err(StoreError::SchemaTooNew { found: from, known });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.batch_execute(migration.sql).await?;
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at)
             VALUES ($1, $2, $3)",
            &[
                &version,
                &migration.description,
                &Utc::now().timestamp_millis(),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    if known != from {
        tracing::info!(from, to = known, "database schema migrated");
    }
    Ok(MigrationReport { from, to: known })
}

/// The schema version (0 for an empty database).
pub(crate) async fn current_version(client: &Object) -> Result<u32, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let version: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    u32::try_from(version).map_err(|_| StoreError::Corrupt {
        what: "schema version",
        detail: "out of range".to_owned(),
    })
}

async fn version_in(tx: &deadpool_postgres::Transaction<'_>) -> Result<u32, StoreError> {
    let version: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    u32::try_from(version).map_err(|_| StoreError::Corrupt {
        what: "schema version",
        detail: "out of range".to_owned(),
    })
}
