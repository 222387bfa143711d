//! The reconciliation policy from the configuration's `[upkeep]` (the reconciliation itself is
//! the launch library's `Reconciler`).

use std::time::Duration;

use visitbridge_launch_core::ReconcilePolicy;

use crate::config::UpkeepConfig;

/// The policy the configuration asks for.
pub(crate) fn reconcile_policy(config: &UpkeepConfig) -> ReconcilePolicy {
    ReconcilePolicy {
        delay: Duration::from_secs(config.reconcile_delay_seconds),
        retry: Duration::from_secs(config.reconcile_retry_seconds),
        max_attempts: config.reconcile_max_attempts.max(1),
        tolerance: Duration::from_secs(config.reconcile_tolerance_seconds),
    }
}
