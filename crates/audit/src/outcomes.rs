//! Keeps the visits' stored outcomes ([`visitbridge_store::VisitOutcome`]) as their events say:
//! what reports filter, sort and page on. Each recorded event makes its visit's outcome stale
//! (the store counts the events); [`refresh_outcomes`] derives the stale ones again from their
//! events, in batches of a bounded number of reads.

use visitbridge_approval::ConfigurationId;
use visitbridge_store::{AuditStore, StaleOutcome, VisitId, VisitOutcome};

use crate::{AuditError, VisitTimeline};

/// Visits derived per batch: one read of the stale visits, one of their events, one write.
pub const OUTCOME_BATCH: u32 = 1_000;

/// What [`refresh_outcomes`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeRefresh {
    /// Outcomes stored.
    pub stored: u64,
    /// No outcome was left stale (else `max_batches` ran out first).
    pub complete: bool,
}

/// Derives again the outcomes of the visits (of `configurations`, or of all when `None`) whose
/// events changed since theirs was stored, until none is stale or `max_batches` batches were
/// done. Safe to run anywhere at any time, by several processes at
/// once: an outcome is stored with the events version it was derived from, and never over a
/// newer one.
pub async fn refresh_outcomes(
    store: &dyn AuditStore,
    configurations: Option<&[ConfigurationId]>,
    max_batches: usize,
) -> Result<OutcomeRefresh, AuditError> {
    let mut stored = 0;
    for _ in 0..max_batches {
        let stale = store.stale_outcomes(configurations, OUTCOME_BATCH).await?;
        if stale.is_empty() {
            return Ok(OutcomeRefresh {
                stored,
                complete: true,
            });
        }
        let done = stale.len() < OUTCOME_BATCH as usize;
        // The versions were read before the events: an event recorded in between is in the
        // events read but not in the version stored, so the visit stays stale and is derived
        // again next time (never the other way round).
        let ids: Vec<VisitId> = stale.iter().map(|s| s.visit.clone()).collect();
        let mut events = store.event_summaries_for_visits(&ids).await?;
        let outcomes: Vec<(StaleOutcome, VisitOutcome)> = stale
            .into_iter()
            .map(|s| {
                let outcome = events
                    .remove(&s.visit)
                    .map_or(VisitOutcome::NOTHING_YET, |e| {
                        VisitTimeline::from_events(&e).outcome()
                    });
                (s, outcome)
            })
            .collect();
        let written = store.store_outcomes(&outcomes).await?;
        stored += written;
        if done {
            return Ok(OutcomeRefresh {
                stored,
                complete: true,
            });
        }
        // Nothing could be stored (another process is storing the same ones): stop rather
        // than spin.
        if written == 0 {
            break;
        }
    }
    Ok(OutcomeRefresh {
        stored,
        complete: false,
    })
}
