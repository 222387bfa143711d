//! One SMART client per approved configuration version and record kind, built on first use and
//! kept, so that discovery documents and the EHR's signing keys stay cached between launches.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use url::Url;
use visitbridge_approval::{
    ClientAuth as ApprovalAuth, RecordKind, SecretRef, device_test_scopes, patient_scopes,
    provider_scopes,
};
use visitbridge_http::{ClientAssertionKey, Secret};
use visitbridge_launch_core::{ApprovedConfiguration, ConfigurationIssuer, resolve_secret};
use visitbridge_smart::{
    ClientAuth, PendingLaunchStore, SmartClient, SmartClientConfig, SmartDiscovery,
};
use visitbridge_store::ConfigurationRepo;

use crate::error::LaunchError;

/// How often cached discovery documents are refreshed in the background.
const DISCOVERY_REFRESH: Duration = Duration::from_secs(30 * 60);

struct Entry {
    client: Arc<SmartClient>,
    refresh: tokio::task::JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.refresh.abort();
    }
}

/// What every client shares.
pub(crate) struct ClientSettings {
    pub(crate) http: visitbridge_http::HttpClient,
    pub(crate) store: Arc<dyn ConfigurationRepo>,
    /// Never used: launches are sealed in cookies (see `pending::LaunchCookies`).
    pub(crate) pending: Arc<dyn PendingLaunchStore>,
    /// The one redirect URI of every record, `{public base}/launch/callback`.
    pub(crate) callback: Url,
    /// Our key, for configurations registered with `private_key_jwt`.
    pub(crate) key: ClientAssertionKey,
    /// EHR client secrets by `secret_ref` (else the environment variable
    /// `VISITBRIDGE_EHR_SECRET_<secret_ref>`).
    pub(crate) secrets: BTreeMap<String, Secret>,
    pub(crate) launch_lifetime: Duration,
}

/// The SMART clients.
pub(crate) struct SmartClients {
    settings: ClientSettings,
    clients: RwLock<HashMap<(String, u32, RecordKind), Arc<Entry>>>,
}

impl SmartClients {
    pub(crate) fn new(settings: ClientSettings) -> Self {
        Self {
            settings,
            clients: RwLock::new(HashMap::new()),
        }
    }

    fn secret(&self, name: &SecretRef) -> Result<Secret, LaunchError> {
        resolve_secret(&self.settings.secrets, name, |var| std::env::var(var).ok()).map_err(|e| {
            LaunchError::Misconfigured(format!(
                "The EHR client secret named {} is not set on the VisitBridge launch service. \
                 Tell your administrator: set it under [ehr_client_secrets] as {} or in the \
                 environment variable {}.",
                e.name, e.name, e.variable
            ))
        })
    }

    /// The client for `configuration`'s record `kind`.
    pub(crate) fn get(
        &self,
        configuration: &ApprovedConfiguration,
        kind: RecordKind,
    ) -> Result<Arc<SmartClient>, LaunchError> {
        let approved = configuration.approved();
        let key = (
            configuration.id().as_str().to_owned(),
            approved.version,
            kind,
        );
        if let Some(entry) = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(&entry.client));
        }
        let settings = &approved.settings;
        let client = &settings.ehr_client;
        let client_id = match kind {
            RecordKind::ProviderLaunch => &client.client_id,
            RecordKind::PatientLaunch | RecordKind::DeviceTest => client.patient_client_id(),
        };
        let auth = match &client.auth {
            ApprovalAuth::ClientSecretBasic { secret_ref } => {
                ClientAuth::SecretBasic(self.secret(secret_ref)?)
            }
            ApprovalAuth::ClientSecretPost { secret_ref } => {
                ClientAuth::SecretPost(self.secret(secret_ref)?)
            }
            ApprovalAuth::PrivateKeyJwt => ClientAuth::PrivateKeyJwt(self.settings.key.clone()),
        };
        let scopes = match kind {
            RecordKind::ProviderLaunch => provider_scopes(client.scope_style),
            RecordKind::PatientLaunch => patient_scopes(client.scope_style),
            RecordKind::DeviceTest => device_test_scopes(),
        }
        .join(" ");
        let mut config =
            SmartClientConfig::new(client_id.as_str(), self.settings.callback.clone(), auth)
                .with_scopes(scopes, "launch/patient openid fhirUser");
        if client.send_epic_client_id_header {
            config = config.with_epic_client_id_header()?;
        }
        let discovery =
            SmartDiscovery::new(self.settings.http.clone(), config.extra_headers.clone());
        let refresh = discovery.spawn_refresh(DISCOVERY_REFRESH);
        let policy = Arc::new(ConfigurationIssuer {
            store: Arc::clone(&self.settings.store),
            configuration_id: configuration.id().clone(),
            environment: settings.environment,
        });
        let smart = Arc::new(
            SmartClient::new(
                config,
                self.settings.http.clone(),
                policy,
                self.settings.pending.clone(),
            )
            .with_discovery(discovery)
            .with_launch_lifetime(self.settings.launch_lifetime),
        );
        let entry = Arc::new(Entry {
            client: Arc::clone(&smart),
            refresh,
        });
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        // Older versions of this configuration are no longer approved: drop their clients.
        clients.retain(|(id, version, _), _| id != &key.0 || *version == key.1);
        let entry = clients.entry(key).or_insert(entry);
        Ok(Arc::clone(&entry.client))
    }
}
