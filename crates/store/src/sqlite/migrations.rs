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

const MIGRATIONS_SLICE: &[M<'static>] = &[M::up(V1), M::up(V2)];

/// All migrations, oldest first.
pub(crate) const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATIONS_SLICE);

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::MIGRATIONS.validate().is_ok());
    }
}
