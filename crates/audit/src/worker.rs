//! `DeliveryWorker`: drains the outbox into the sinks with retries, backoff and dead letters.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::Notify;
use visitbridge_http::RetryPolicy;
use visitbridge_store::{AuditStore, ClaimedDelivery, OutboxId};

use crate::{AuditError, SinkError, SinkLoader, SinkResolver};

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How the worker retries and paces deliveries.
///
/// With the defaults a delivery is tried 10 times over roughly 45 to 90 minutes (waits of 15 s
/// doubling to a 30 min cap, each jittered between half and all of its step) before it becomes a
/// dead letter, which an operator can re-drive.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts in all before a retryable failure becomes a dead letter.
    pub max_attempts: u32,
    /// The first wait after a failure; each later one doubles.
    pub base_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// How long a claimed row stays with this worker without a renewal. The worker renews the
    /// leases of the rows it still holds every third of this while a round runs, so a live worker
    /// keeps its rows however slow the sink, and a worker that dies mid-delivery (a crash, a killed
    /// replica) leaves them to another worker within this.
    pub lease: Duration,
    /// The longest one delivery may take before it counts as a retryable failure.
    pub delivery_timeout: Duration,
    /// Rows claimed per round.
    pub batch_size: u32,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How often [`DeliveryWorker::run`] looks for due rows when nothing wakes it.
    pub poll_interval: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_delay: Duration::from_secs(15),
            max_delay: Duration::from_secs(30 * 60),
            lease: Duration::from_secs(4),
            delivery_timeout: Duration::from_secs(30),
            batch_size: 32,
            concurrency: 4,
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl DeliveryPolicy {
    /// The wait after failed attempt number `attempt` (from 1): exponential with jitter, capped;
    /// at least the upstream's `Retry-After` (itself capped at an hour).
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let steps = RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: self.base_delay,
            max_delay: self.max_delay,
            max_total: Duration::MAX,
        };
        let wait = steps.delay(attempt, None);
        match retry_after {
            Some(asked) => wait.max(asked.min(MAX_RETRY_AFTER)),
            None => wait,
        }
    }
}

/// What one [`DeliveryWorker::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Delivered.
    pub delivered: usize,
    /// Failed, to be retried later.
    pub retried: usize,
    /// Given up on (dead letters).
    pub dead: usize,
}

enum Outcome {
    Delivered,
    Retried,
    Dead,
}

/// Delivers outbox rows to their sinks.
///
/// Each round claims due rows with a lease, delivers up to `concurrency` at once and marks each
/// result: delivered; failed with a retryable error (5xx, 408, 429, 401, timeouts, connection
/// failures, a sink this process has not set for the configuration) → due again after
/// [`DeliveryPolicy::backoff`], until `max_attempts`; failed with a permanent error (any other
/// 4xx, a visit missing what the sink needs) → dead at once, since repeating the same request
/// cannot help. Rows of a latest-only sink older than what it already received end `superseded`
/// when claimed (see `OutboxRepo::claim_due`). Dead letters stay visible (`OutboxRepo::list_dead`) and are re-driven with `OutboxRepo::redrive` after the cause
/// is fixed. Several workers (or processes) may run on one store: claims never overlap.
pub struct DeliveryWorker {
    store: Arc<dyn AuditStore>,
    sinks: Arc<dyn SinkResolver>,
    loader: Option<Arc<dyn SinkLoader>>,
    policy: DeliveryPolicy,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl DeliveryWorker {
    /// A worker on `store`, delivering to the sinks `sinks` gives, paced by `policy`.
    pub fn new(
        store: Arc<dyn AuditStore>,
        sinks: Arc<dyn SinkResolver>,
        policy: DeliveryPolicy,
    ) -> Self {
        Self {
            store,
            sinks,
            loader: None,
            policy,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Asks `loader` for a configuration's sinks when a row names one this process has not set
    /// (instead of failing the attempt).
    pub fn with_loader(mut self, loader: Arc<dyn SinkLoader>) -> Self {
        self.loader = Some(loader);
        self
    }

    /// Notifying this wakes [`Self::run`] at once (see `AuditRecorder::wake_on_record`).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// The policy.
    pub fn policy(&self) -> &DeliveryPolicy {
        &self.policy
    }

    /// One round at time `now`: claims due rows, delivers them, marks the results.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<DeliveryReport, AuditError> {
        // The lease runs from before the claim: time the claim took is not taken off it.
        let started = tokio::time::Instant::now();
        let claimed = self
            .store
            .claim_due(now, self.policy.lease, self.policy.batch_size.max(1))
            .await?;
        let mut report = DeliveryReport {
            claimed: claimed.len(),
            ..DeliveryReport::default()
        };
        // The rows this round still holds, whose leases the renewal below keeps.
        let held: std::sync::Mutex<HashMap<OutboxId, u32>> = std::sync::Mutex::new(
            claimed
                .iter()
                .map(|c| (c.item.id, c.item.attempts))
                .collect(),
        );
        let deliveries = futures_util::stream::iter(claimed)
            .map(|claim| async {
                let id = claim.item.id;
                let outcome = self.deliver_one(claim, now).await;
                held.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                outcome
            })
            .buffer_unordered(self.policy.concurrency.max(1))
            .collect::<Vec<Outcome>>();
        let outcomes = tokio::select! {
            outcomes = deliveries => outcomes,
            never = self.renew_leases(&held, now, started) => match never {},
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Delivered => report.delivered += 1,
                Outcome::Retried => report.retried += 1,
                Outcome::Dead => report.dead += 1,
            }
        }
        Ok(report)
    }

    /// Runs rounds until `shutdown` completes: at once when woken, when a round was full or
    /// when it delivered anything (a delivered row may free the next one of its participant,
    /// which waits for it: so a participant's backlog drains at the sink's pace, not one row per
    /// `poll_interval`), otherwise every `poll_interval`. Store errors are logged and the loop
    /// goes on.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let again = match self.run_once(Utc::now()).await {
                Ok(report) => {
                    report.claimed >= self.policy.batch_size.max(1) as usize || report.delivered > 0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "write-back round failed");
                    false
                }
            };
            let pause = if again {
                Duration::ZERO
            } else {
                self.policy.poll_interval
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Renews the leases of the `held` rows every third of the lease, on the clock `run_once`
    /// was given; runs until dropped. A failed renewal is logged: the rows may then go to another
    /// worker after their lease (at-least-once, as after a crash).
    async fn renew_leases(
        &self,
        held: &std::sync::Mutex<HashMap<OutboxId, u32>>,
        now: DateTime<Utc>,
        started: tokio::time::Instant,
    ) -> std::convert::Infallible {
        let every = (self.policy.lease / 3).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval_at(started + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let claims: Vec<(OutboxId, u32)> = held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(id, attempt)| (*id, *attempt))
                .collect();
            // On the clock `run_once` was given, or the wall clock if that is later.
            let on_given_clock = now
                + chrono::Duration::from_std(started.elapsed()).unwrap_or(chrono::Duration::MAX);
            let until = on_given_clock.max(Utc::now())
                + chrono::Duration::from_std(self.policy.lease).unwrap_or(chrono::Duration::MAX);
            match tokio::time::timeout(every, self.store.extend_leases(&claims, until)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew write-back leases"),
                Err(_) => tracing::warn!("renewing write-back leases took too long"),
            }
        }
    }

    async fn deliver_one(&self, claim: ClaimedDelivery, now: DateTime<Utc>) -> Outcome {
        let ClaimedDelivery { item, event, visit } = &claim;
        let find = || {
            self.sinks
                .sinks_for(&visit.configuration_id)
                .into_iter()
                .find(|s| s.name() == &item.sink)
        };
        let sink = match (find(), &self.loader) {
            (None, Some(loader)) => {
                loader.load(&visit.configuration_id).await;
                find()
            }
            (sink, _) => sink,
        };
        let result = match sink {
            // Sinks are set per process (at start-up, a launch, a tick): this process may not have
            // set them yet, or a change is rolling out. Retried with backoff; dead after the
            // attempts, and re-drivable, if the sink is really gone.
            None => Err(SinkError::retryable(
                "this sink is not configured for the visit's configuration in this process",
            )),
            Some(sink) => {
                let limit = self.policy.delivery_timeout;
                match tokio::time::timeout(limit, sink.deliver(item, event, visit)).await {
                    Ok(result) => result,
                    Err(_) => Err(SinkError::retryable("delivery timed out")),
                }
            }
        };
        let (outcome, marked) = match result {
            Ok(()) => (
                Outcome::Delivered,
                self.store
                    .mark_delivered(item.id, item.attempts, Utc::now().max(now))
                    .await,
            ),
            Err(e) if e.is_retryable() && item.attempts < self.policy.max_attempts => {
                let wait = self.policy.backoff(item.attempts, e.retry_after());
                let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                tracing::info!(
                    outbox_id = %item.id,
                    sink = %item.sink,
                    attempt = item.attempts,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    error = %e,
                    "write-back failed; will retry"
                );
                (
                    Outcome::Retried,
                    self.store
                        .mark_failed(item.id, item.attempts, next, e.message())
                        .await,
                )
            }
            Err(e) => {
                tracing::warn!(
                    outbox_id = %item.id,
                    sink = %item.sink,
                    attempt = item.attempts,
                    retryable = e.is_retryable(),
                    error = %e,
                    "write-back gave up: dead letter"
                );
                (
                    Outcome::Dead,
                    self.store
                        .mark_dead(item.id, item.attempts, e.message())
                        .await,
                )
            }
        };
        match marked {
            Ok(true) => {}
            // The lease ran out and another worker holds the row now: its result counts.
            Ok(false) => tracing::info!(
                outbox_id = %item.id,
                "outbox row was claimed again meanwhile; result not recorded"
            ),
            // The row stays leased and comes back when the lease runs out (at-least-once).
            Err(e) => tracing::warn!(
                outbox_id = %item.id,
                error = %e,
                "could not record a write-back result"
            ),
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap_and_honours_retry_after() {
        let p = DeliveryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            ..DeliveryPolicy::default()
        };
        for (attempt, step) in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)] {
            let wait = p.backoff(attempt, None);
            let step = Duration::from_secs(step);
            assert!(wait >= step / 2 && wait <= step, "{attempt}: {wait:?}");
        }
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
    }
}
