//! Launches between the redirect to the authorization server and the callback: keyed by `state`,
//! single use, short-lived.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Mutex,
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;
use visitbridge_http::Secret;

/// Which SMART flow a launch uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchKind {
    /// Launched from inside the EHR, with a `launch` parameter.
    Ehr,
    /// Started by us (portal approver, links outside the EHR).
    Standalone,
}

/// A launch waiting for its callback.
///
/// Serializable so that any store can keep it as opaque JSON. The PKCE verifier and the nonce
/// are in the JSON (the callback needs them) but never in `Debug`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLaunch {
    /// The approved issuer (FHIR base) the launch is for.
    pub issuer: Url,
    /// The approved configuration's id (see [`crate::ApprovedIssuer`]).
    pub configuration_id: String,
    /// The client the launch was started for (a state is only good for the same client).
    pub client_id: String,
    /// EHR or standalone.
    pub kind: LaunchKind,
    /// Context the launch URL carried besides `iss` and `launch` (e.g. Epic's `sessionId`).
    pub record_context: BTreeMap<String, String>,
    /// When the launch started; the callback is refused after the launch lifetime (10 minutes).
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "expose")]
    code_verifier: Secret,
    #[serde(default)]
    nonce: Option<String>,
}

fn expose<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

impl fmt::Debug for PendingLaunch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLaunch")
            .field("issuer", &self.issuer.as_str())
            .field("configuration_id", &self.configuration_id)
            .field("client_id", &self.client_id)
            .field("kind", &self.kind)
            .field(
                "record_context",
                &self.record_context.keys().collect::<Vec<_>>(),
            )
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl PendingLaunch {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        issuer: Url,
        configuration_id: String,
        client_id: String,
        kind: LaunchKind,
        record_context: BTreeMap<String, String>,
        code_verifier: Secret,
        nonce: Option<String>,
    ) -> Self {
        Self {
            issuer,
            configuration_id,
            client_id,
            kind,
            record_context,
            created_at: Utc::now(),
            code_verifier,
            nonce,
        }
    }

    pub(crate) fn code_verifier(&self) -> &Secret {
        &self.code_verifier
    }

    pub(crate) fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// Whether the launch is older than `lifetime`.
    pub fn is_expired(&self, lifetime: Duration) -> bool {
        let age = Utc::now().signed_duration_since(self.created_at);
        age.to_std().is_ok_and(|age| age > lifetime)
    }
}

/// Errors of a [`PendingLaunchStore`] implementation.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Where pending launches wait for their callback.
///
/// `take` must be atomic: of two concurrent callbacks with one state, at most one gets the
/// launch. Expiry is enforced by [`crate::SmartClient::complete`] from
/// [`PendingLaunch::created_at`], so a store need not expire entries itself (but should purge old
/// ones eventually).
#[async_trait::async_trait]
pub trait PendingLaunchStore: Send + Sync {
    /// Keeps `launch` under `state`.
    async fn put(&self, state: &str, launch: PendingLaunch) -> Result<(), StoreError>;
    /// Removes and returns the launch under `state`, if any.
    async fn take(&self, state: &str) -> Result<Option<PendingLaunch>, StoreError>;
}

/// An in-process [`PendingLaunchStore`] (one instance of the launch service, tests).
///
/// Entries older than `purge_after` (one hour by default) are dropped on each `put`, so abandoned
/// launches do not accumulate.
#[derive(Debug)]
pub struct InMemoryPendingLaunches {
    launches: Mutex<HashMap<String, PendingLaunch>>,
    purge_after: Duration,
}

impl Default for InMemoryPendingLaunches {
    fn default() -> Self {
        Self {
            launches: Mutex::new(HashMap::new()),
            purge_after: Duration::from_secs(3600),
        }
    }
}

impl InMemoryPendingLaunches {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many launches are pending.
    pub fn len(&self) -> usize {
        self.launches.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Whether no launch is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> StoreError {
    "the pending launch store lock is poisoned".into()
}

#[async_trait::async_trait]
impl PendingLaunchStore for InMemoryPendingLaunches {
    async fn put(&self, state: &str, launch: PendingLaunch) -> Result<(), StoreError> {
        let mut launches = self.launches.lock().map_err(|_| poisoned())?;
        launches.retain(|_, l| !l.is_expired(self.purge_after));
        launches.insert(state.to_owned(), launch);
        Ok(())
    }

    async fn take(&self, state: &str) -> Result<Option<PendingLaunch>, StoreError> {
        let mut launches = self.launches.lock().map_err(|_| poisoned())?;
        Ok(launches.remove(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> PendingLaunch {
        PendingLaunch::new(
            Url::parse("https://ehr.example/fhir").expect("url"),
            "cfg".into(),
            "client".into(),
            LaunchKind::Ehr,
            BTreeMap::from([("sessionId".to_owned(), "csn-1".to_owned())]),
            Secret::new("the-verifier-value"),
            Some("the-nonce".into()),
        )
    }

    #[test]
    fn json_round_trip_keeps_the_verifier_and_debug_hides_it() {
        let l = launch();
        let json = serde_json::to_string(&l).expect("json");
        let back: PendingLaunch = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.code_verifier().expose(), "the-verifier-value");
        assert_eq!(back.nonce(), Some("the-nonce"));
        assert_eq!(back.record_context["sessionId"], "csn-1");
        let shown = format!("{back:?}");
        assert!(!shown.contains("the-verifier-value"), "{shown}");
        assert!(!shown.contains("the-nonce"), "{shown}");
        assert!(!shown.contains("csn-1"), "{shown}");
    }

    #[tokio::test]
    async fn take_is_single_use() {
        let store = InMemoryPendingLaunches::new();
        store.put("s1", launch()).await.expect("put");
        assert!(store.take("s1").await.expect("take").is_some());
        assert!(store.take("s1").await.expect("take").is_none());
        assert!(store.take("other").await.expect("take").is_none());
    }

    #[test]
    fn expiry_is_measured_from_created_at() {
        let mut l = launch();
        assert!(!l.is_expired(Duration::from_secs(600)));
        l.created_at = Utc::now() - chrono::Duration::seconds(601);
        assert!(l.is_expired(Duration::from_secs(600)));
    }
}
