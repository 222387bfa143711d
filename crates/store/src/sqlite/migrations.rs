//! The schema, as versioned migrations (applied in order at start-up; never edit a released one,
//! add a new one).

use rusqlite_migration::{M, Migrations};

/// Version 1: tenants, configurations and their append-only history, user links, pending items,
/// sessions. STRICT tables; times are Unix milliseconds (UTC); JSON columns are checked valid.
const V1: &str = r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    microsoft_tenant_id TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE configurations (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    fhir_base_url TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('test', 'production')),
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    approved_fhir_base_url TEXT,
    approved_environment TEXT CHECK (approved_environment IN ('test', 'production')),
    document TEXT NOT NULL CHECK (json_valid(document)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (tenant_id, fhir_base_url, environment)
) STRICT;

-- One approved configuration per FHIR base URL and environment, across all tenants: a launch's
-- `iss` must lead to exactly one configuration.
CREATE UNIQUE INDEX configurations_approved_issuer
    ON configurations (approved_fhir_base_url, approved_environment)
    WHERE approved_fhir_base_url IS NOT NULL;

CREATE TABLE configuration_history (
    configuration_id TEXT NOT NULL REFERENCES configurations(id),
    revision INTEGER NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    entry TEXT NOT NULL CHECK (json_valid(entry)),
    PRIMARY KEY (configuration_id, revision)
) STRICT;

CREATE TRIGGER configuration_history_no_update
    BEFORE UPDATE ON configuration_history
BEGIN
    SELECT RAISE(ABORT, 'configuration history is append-only');
END;

CREATE TRIGGER configuration_history_no_delete
    BEFORE DELETE ON configuration_history
BEGIN
    SELECT RAISE(ABORT, 'configuration history is append-only');
END;

CREATE TABLE user_links (
    ehr_issuer TEXT NOT NULL,
    ehr_user_id TEXT NOT NULL,
    microsoft_tenant_id TEXT NOT NULL,
    microsoft_object_id TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (ehr_issuer, ehr_user_id)
) STRICT;

CREATE TABLE pending (
    key TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_expiry ON pending (expires_at);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data)),
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_expiry ON sessions (expires_at);
"#;

/// Version 2: the visit registry, participant events (as FHIR AuditEvents) and the write-back
/// outbox. No column holds a person's name.
const V2: &str = r#"
CREATE TABLE visits (
    id TEXT PRIMARY KEY NOT NULL,
    configuration_id TEXT NOT NULL REFERENCES configurations(id),
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
    created_at INTEGER NOT NULL,
    ended_at INTEGER,
    -- Two concurrent launches of one visit must give one row.
    UNIQUE (configuration_id, external_meeting_id)
) STRICT;
CREATE INDEX visits_by_meeting ON visits (graph_meeting_id) WHERE graph_meeting_id IS NOT NULL;
CREATE INDEX visits_by_join_url ON visits (join_url_key) WHERE join_url_key IS NOT NULL;
CREATE INDEX visits_by_configuration ON visits (configuration_id, created_at);

CREATE TABLE visit_events (
    event_id TEXT PRIMARY KEY NOT NULL,
    visit_id TEXT NOT NULL REFERENCES visits(id),
    kind TEXT NOT NULL
        CHECK (kind IN ('call-started', 'participant-in-lobby', 'participant-joined',
                        'participant-left', 'call-ended')),
    participant_class TEXT
        CHECK (participant_class IN ('organization-user', 'anonymous', 'acs-guest', 'application')),
    participant_id TEXT,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('notification', 'attendance-report')),
    audit_event TEXT NOT NULL CHECK (json_valid(audit_event)),
    CHECK ((participant_class IS NULL) = (participant_id IS NULL))
) STRICT;
CREATE INDEX visit_events_by_visit ON visit_events (visit_id, occurred_at);

-- An audit trail is not edited.
CREATE TRIGGER visit_events_no_update
    BEFORE UPDATE ON visit_events
BEGIN
    SELECT RAISE(ABORT, 'visit events are immutable');
END;

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL REFERENCES visit_events(event_id),
    -- Copied from the event: deliveries of one visit, sink and participant go out in event order.
    visit_id TEXT NOT NULL REFERENCES visits(id),
    participant_key TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    sink TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    UNIQUE (event_id, sink)
) STRICT;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_order ON outbox (visit_id, sink, participant_key, state, occurred_at);
"#;

/// Version 3: what the launch service must not lose across a restart, on the visit's row: the
/// patient's join URL (so a patient launch needs no Graph call), the visit's change-notification
/// subscription and its expiry (renewed, mapped and removed by any replica after any restart),
/// and when to reconcile the visit with its attendance report (with the attempts made so far).
const V3: &str = r#"
ALTER TABLE visits ADD COLUMN patient_join_url TEXT;
ALTER TABLE visits ADD COLUMN subscription_id TEXT;
ALTER TABLE visits ADD COLUMN subscription_expires_at INTEGER
    CHECK ((subscription_id IS NULL) = (subscription_expires_at IS NULL));
ALTER TABLE visits ADD COLUMN reconcile_after INTEGER;
ALTER TABLE visits ADD COLUMN reconcile_attempts INTEGER NOT NULL DEFAULT 0
    CHECK (reconcile_attempts >= 0);
-- A notification names its subscription: it must lead to one visit.
CREATE UNIQUE INDEX visits_by_subscription ON visits (subscription_id)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX visits_subscription_expiry ON visits (subscription_expires_at)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX visits_reconcile_due ON visits (reconcile_after) WHERE reconcile_after IS NOT NULL;
"#;

/// Version 4: outbox rows of latest-state-only sinks (Epic's connection status) are flagged, and
/// a new final state `superseded` marks a row not sent because a newer event of the same visit,
/// sink and participant was already delivered. SQLite cannot change a CHECK constraint in place,
/// so the table is rebuilt with its ids (and so its AUTOINCREMENT sequence) kept.
const V4: &str = r#"
CREATE TABLE outbox_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL REFERENCES visit_events(event_id),
    visit_id TEXT NOT NULL REFERENCES visits(id),
    participant_key TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    sink TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'superseded')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    latest_only INTEGER NOT NULL DEFAULT 0 CHECK (latest_only IN (0, 1)),
    UNIQUE (event_id, sink)
) STRICT;
INSERT INTO outbox_v4 (id, event_id, visit_id, participant_key, occurred_at, sink,
                       idempotency_key, state, attempts, next_attempt_at, lease_until, last_error,
                       created_at, delivered_at)
    SELECT id, event_id, visit_id, participant_key, occurred_at, sink, idempotency_key, state,
           attempts, next_attempt_at, lease_until, last_error, created_at, delivered_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_order ON outbox (visit_id, sink, participant_key, state, occurred_at);
"#;

/// Version 5: named leases, for work that runs once across replicas.
const V5: &str = r#"
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
"#;

/// Version 6: an index of the outbox by state and latest-state-only flag, so that a claim's search
/// for pending latest-state-only rows to supersede reads those rows only, not every pending row
/// (without it each claim read the whole backlog: 100,000 rows drained at 1,369 a second).
const V6: &str = r#"
CREATE INDEX outbox_latest_only ON outbox (state, latest_only);
"#;

/// Version 7: what a visit keeps of its patient after the retention period — the keyed hashes of
/// the patient and appointment ids (filled in by the launch service, which holds the key) — and
/// the indexes that find what is still to purge: visits with clear ids, events with AuditEvents.
const V7: &str = r#"
ALTER TABLE visits ADD COLUMN patient_key TEXT;
ALTER TABLE visits ADD COLUMN appointment_key TEXT;
CREATE INDEX visits_with_references ON visits (created_at)
    WHERE patient_fhir_id IS NOT NULL OR appointment_fhir_id IS NOT NULL
        OR encounter_fhir_id IS NOT NULL OR conference_id IS NOT NULL;
CREATE INDEX visit_events_with_body ON visit_events (recorded_at) WHERE audit_event <> 'null';

-- An audit trail is not edited; the one change allowed is the retention purge of an AuditEvent.
DROP TRIGGER visit_events_no_update;
CREATE TRIGGER visit_events_no_update
    BEFORE UPDATE ON visit_events
    WHEN NOT (NEW.audit_event = 'null' AND NEW.event_id = OLD.event_id
        AND NEW.visit_id = OLD.visit_id AND NEW.kind = OLD.kind
        AND NEW.participant_class IS OLD.participant_class
        AND NEW.participant_id IS OLD.participant_id AND NEW.occurred_at = OLD.occurred_at
        AND NEW.recorded_at = OLD.recorded_at AND NEW.origin = OLD.origin)
BEGIN
    SELECT RAISE(ABORT, 'visit events are immutable');
END;
"#;

/// Version 8: the auditor's FHIR search by patient or appointment finds visits by their keys.
const V8: &str = r#"
CREATE INDEX visits_by_patient_key ON visits (patient_key) WHERE patient_key IS NOT NULL;
CREATE INDEX visits_by_appointment_key ON visits (appointment_key)
    WHERE appointment_key IS NOT NULL;
"#;

/// Version 9: what reports filter and sort on, on the visit's row — the department it was
/// launched from and its *outcome* (status, start, end, lobby wait, attendees) derived from its
/// events, with the events version it was derived from (each recorded event bumps
/// `events_version`; existing visits start with their event count, so their outcomes are stale
/// and derived at the next report).
const V9: &str = r#"
ALTER TABLE visits ADD COLUMN department TEXT;
ALTER TABLE visits ADD COLUMN status TEXT NOT NULL DEFAULT 'not-started'
    CHECK (status IN ('not-started', 'waiting', 'in-progress', 'completed', 'no-show'));
ALTER TABLE visits ADD COLUMN visit_start_at INTEGER;
ALTER TABLE visits ADD COLUMN visit_end_at INTEGER;
ALTER TABLE visits ADD COLUMN lobby_wait_ms INTEGER;
ALTER TABLE visits ADD COLUMN attendees INTEGER NOT NULL DEFAULT 0 CHECK (attendees >= 0);
ALTER TABLE visits ADD COLUMN events_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE visits ADD COLUMN outcome_version INTEGER NOT NULL DEFAULT 0;
UPDATE visits SET events_version =
    (SELECT COUNT(*) FROM visit_events e WHERE e.visit_id = visits.id);
CREATE INDEX visits_outcome_stale ON visits (configuration_id)
    WHERE events_version > outcome_version;
-- Every column a report filters, sorts or charts on, after the configuration and launch time: a
-- report's count, its page's order and its charts' points read this index only, and only the
-- page's rows are read from the table.
CREATE INDEX visits_report ON visits (configuration_id, created_at, status, department,
    visit_start_at, visit_end_at, lobby_wait_ms, attendees);
-- The departments offered, found one after another (a skip scan), not by reading every visit.
CREATE INDEX visits_by_department ON visits (configuration_id, department)
    WHERE department IS NOT NULL;
"#;

const MIGRATIONS_SLICE: &[M<'static>] = &[
    M::up(V1),
    M::up(V2),
    M::up(V3),
    M::up(V4),
    M::up(V5),
    M::up(V6),
    M::up(V7),
    M::up(V8),
    M::up(V9),
];

/// All migrations, oldest first.
pub(crate) const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATIONS_SLICE);

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::MIGRATIONS.validate().is_ok());
    }

    #[test]
    fn visits_of_version_2_gain_empty_upkeep_columns() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::MIGRATIONS.to_version(&mut conn, 2).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants VALUES ('t', 'T', 'tid', 0);
             INSERT INTO configurations (id, tenant_id, fhir_base_url, environment, state, version,
                 revision, document, created_at, updated_at)
             VALUES ('c', 't', 'https://x', 'test', 'draft', 1, 1, '{}', 0, 0);
             INSERT INTO visits (id, configuration_id, external_meeting_id, created_at)
             VALUES ('v', 'c', 'vb-1', 0);",
        )
        .unwrap();
        super::MIGRATIONS.to_latest(&mut conn).unwrap();
        let row: (
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            i64,
        ) = conn
            .query_row(
                "SELECT patient_join_url, subscription_id, subscription_expires_at,
                        reconcile_after, reconcile_attempts FROM visits WHERE id = 'v'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(row, (None, None, None, None, 0));
        // A subscription id without its expiry is refused by the schema itself.
        assert!(
            conn.execute("UPDATE visits SET subscription_id = 's' WHERE id = 'v'", [])
                .is_err()
        );
    }

    #[test]
    fn outbox_rows_of_version_3_keep_their_ids_and_states_and_may_be_superseded() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::MIGRATIONS.to_version(&mut conn, 3).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants VALUES ('t', 'T', 'tid', 0);
             INSERT INTO configurations (id, tenant_id, fhir_base_url, environment, state, version,
                 revision, document, created_at, updated_at)
             VALUES ('c', 't', 'https://x', 'test', 'draft', 1, 1, '{}', 0, 0);
             INSERT INTO visits (id, configuration_id, external_meeting_id, created_at)
             VALUES ('v', 'c', 'vb-1', 0);
             INSERT INTO visit_events (event_id, visit_id, kind, occurred_at, recorded_at, origin,
                 audit_event)
             VALUES ('e', 'v', 'call-started', 0, 0, 'notification', '{}');
             INSERT INTO outbox (id, event_id, visit_id, participant_key, occurred_at, sink,
                 idempotency_key, state, attempts, next_attempt_at, created_at)
             VALUES (7, 'e', 'v', '', 0, 'epic', 'k', 'dead', 3, 0, 0);",
        )
        .unwrap();
        super::MIGRATIONS.to_latest(&mut conn).unwrap();
        let row: (i64, String, i64, i64) = conn
            .query_row(
                "SELECT id, state, attempts, latest_only FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(row, (7, "dead".to_owned(), 3, 0));
        conn.execute("UPDATE outbox SET state = 'superseded'", [])
            .unwrap();
        assert!(
            conn.execute("UPDATE outbox SET state = 'gone'", [])
                .is_err()
        );
        // New rows continue after the kept ids.
        conn.execute(
            "INSERT INTO outbox (event_id, visit_id, participant_key, occurred_at, sink,
                 idempotency_key, state, next_attempt_at, created_at)
             VALUES ('e', 'v', '', 0, 'fhir', 'k', 'pending', 0, 0)",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 8);
    }
}
