//! How long the store keeps what names a visit's patient: the clear FHIR ids of the visit's
//! patient, appointment and encounter, its conference id (CSN), and its AuditEvents (which must
//! name the patient for the EHR). Kept while the visit can still produce or deliver an AuditEvent,
//! then for the configured retention (the auditor's AuditEvent endpoint serves them meanwhile),
//! then purged; what stays is the keyed hash of the patient and appointment ids, which is all a
//! later launch's attestation compares.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use visitbridge_store::{AuditStore, PurgedReferences, StoreError};
use visitbridge_visit::ReferenceKeys;

use crate::{Clock, meetings::with_keys};

/// Rows keyed or purged in one statement: a purge holds the database's write lock this long.
const BATCH: u32 = 500;

/// At most this many batches in one [`Retention::run`] (the rest waits for the next run).
const MAX_BATCHES: u32 = 40;

/// What one [`Retention::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionRun {
    /// Visits from before the keyed hashes existed that got theirs.
    pub keyed: u64,
    /// What was purged.
    pub purged: PurgedReferences,
}

/// The retention of patient references, run periodically by the launch service (every replica
/// may run it: each statement is idempotent).
pub struct Retention {
    store: Arc<dyn AuditStore>,
    keys: ReferenceKeys,
    period: Duration,
    open_visit_lifetime: Duration,
    clock: Arc<dyn Clock>,
}

impl Retention {
    /// Purges what names a visit's patient `period` after the visit's last use
    /// (`audit_retention_days`): its call's last end, or, if later, `open_visit_lifetime` after
    /// its creation, when its meeting stops being watched (until then a call may be rejoined). `keys` are the deployment's
    /// (see [`ReferenceKeys`]).
    pub fn new(
        store: Arc<dyn AuditStore>,
        keys: ReferenceKeys,
        period: Duration,
        open_visit_lifetime: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            keys,
            period,
            open_visit_lifetime,
            clock,
        }
    }

    /// Keys the rows that still lack their keyed hashes (so that purging their clear ids keeps
    /// what attestation compares), then purges what is past retention, in batches.
    pub async fn run(&self) -> Result<RetentionRun, StoreError> {
        let mut run = RetentionRun::default();
        for _ in 0..MAX_BATCHES {
            let unkeyed = self.store.visits_without_keys(BATCH).await?;
            if unkeyed.is_empty() {
                break;
            }
            let batch = unkeyed.len();
            let mut failed = 0;
            for visit in unkeyed {
                // One row that cannot be keyed (a corrupt one) must not hold every other back.
                match self.store.upsert_visit(&with_keys(&self.keys, visit)).await {
                    Ok(_) => run.keyed += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(error = %e, "cannot key a visit's patient references");
                    }
                }
            }
            if failed == batch {
                break;
            }
        }
        let now = self.clock.now();
        let before = earlier(now, self.period);
        let open_before = earlier(before, self.open_visit_lifetime);
        for _ in 0..MAX_BATCHES {
            let purged = self
                .store
                .purge_references(before, open_before, BATCH)
                .await?;
            run.purged.visits += purged.visits;
            run.purged.events += purged.events;
            if purged.visits < u64::from(BATCH) && purged.events < u64::from(BATCH) {
                break;
            }
        }
        Ok(run)
    }
}

/// `at` less `by`, or the earliest time there is.
fn earlier(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|by| at.checked_sub_signed(by))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
