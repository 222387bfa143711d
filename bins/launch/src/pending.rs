//! Pending launches in the store: the SMART crate's [`PendingLaunchStore`] over the store's
//! single-use [`PendingRepo`], and our own pending Microsoft sign-ins.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::Utc;
use serde::{Serialize, de::DeserializeOwned};
use visitbridge_smart::{PendingLaunch, PendingLaunchStore, StoreError as PendingError};
use visitbridge_store::PendingRepo;

/// The kind of SMART launches in the store (a state of one flow cannot be taken by another).
const SMART_LAUNCH: &str = "launch/smart";

/// Pending SMART launches, keyed by `state`.
///
/// The callback must know which configuration (and so which SMART client) a state belongs to
/// before completing it, so [`Self::claim`] takes the launch from the store (atomically, once)
/// and keeps it in memory for the [`PendingLaunchStore::take`] the client then makes. A claim
/// that is not completed is dropped with [`Claim`]'s guard.
pub(crate) struct StorePendingLaunches {
    store: Arc<dyn PendingRepo>,
    lifetime: Duration,
    claimed: Mutex<HashMap<String, PendingLaunch>>,
}

impl StorePendingLaunches {
    pub(crate) fn new(store: Arc<dyn PendingRepo>, lifetime: Duration) -> Self {
        Self {
            store,
            lifetime,
            claimed: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the launch of `state` out of the store (once) and holds it for completion.
    pub(crate) async fn claim(
        self: &Arc<Self>,
        state: &str,
    ) -> Result<Option<(PendingLaunch, Claim)>, PendingError> {
        let Some(json) = self
            .store
            .take_pending(state, SMART_LAUNCH, Utc::now())
            .await?
        else {
            return Ok(None);
        };
        let launch: PendingLaunch = serde_json::from_value(json)?;
        self.claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(state.to_owned(), launch.clone());
        Ok(Some((
            launch,
            Claim {
                owner: Arc::clone(self),
                state: state.to_owned(),
            },
        )))
    }
}

/// Drops a claimed launch that was not completed.
pub(crate) struct Claim {
    owner: Arc<StorePendingLaunches>,
    state: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.owner
            .claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.state);
    }
}

#[async_trait::async_trait]
impl PendingLaunchStore for StorePendingLaunches {
    async fn put(&self, state: &str, launch: PendingLaunch) -> Result<(), PendingError> {
        let expires = launch.created_at
            + chrono::Duration::from_std(self.lifetime).unwrap_or(chrono::Duration::minutes(10));
        let json = serde_json::to_value(&launch)?;
        self.store
            .put_pending(state, SMART_LAUNCH, &json, expires)
            .await?;
        Ok(())
    }

    async fn take(&self, state: &str) -> Result<Option<PendingLaunch>, PendingError> {
        let claimed = self
            .claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state);
        match claimed {
            Some(launch) => Ok(Some(launch)),
            None => {
                let json = self
                    .store
                    .take_pending(state, SMART_LAUNCH, Utc::now())
                    .await?;
                Ok(json.map(serde_json::from_value).transpose()?)
            }
        }
    }
}

/// Stores `value` under a random key of `kind`, single use, for `lifetime`.
pub(crate) async fn put<T: Serialize>(
    store: &dyn PendingRepo,
    key: &str,
    kind: &str,
    value: &T,
    lifetime: Duration,
) -> Result<(), PendingError> {
    let expires =
        Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::minutes(10));
    store
        .put_pending(key, kind, &serde_json::to_value(value)?, expires)
        .await?;
    Ok(())
}

/// Takes (once) what [`put`] stored.
pub(crate) async fn take<T: DeserializeOwned>(
    store: &dyn PendingRepo,
    key: &str,
    kind: &str,
) -> Result<Option<T>, PendingError> {
    let json = store.take_pending(key, kind, Utc::now()).await?;
    Ok(json.map(serde_json::from_value).transpose()?)
}
