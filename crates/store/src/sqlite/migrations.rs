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

const MIGRATIONS_SLICE: &[M<'static>] = &[M::up(V1)];

/// All migrations, oldest first.
pub(crate) const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATIONS_SLICE);

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::MIGRATIONS.validate().is_ok());
    }
}
