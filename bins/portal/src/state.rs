//! What every request shares: configuration, store, the one HTTP client, the Entra provider.

use std::{sync::Arc, time::Duration};

use chrono::Utc;

use tokio::sync::OnceCell;
use visitbridge_approval::LaunchServiceUrls;
use visitbridge_http::{ClientAssertionKey, KeyAlgorithm, build_client};
use visitbridge_smart::{ClientAuth, OidcClientConfig, OidcProvider};
use visitbridge_store::Store;

use crate::{
    config::{ConfigError, EhrClientAuthMethod, PortalConfig, secret_auth_refused},
    error::PortalError,
    session::Cookies,
};

/// The portal's shared state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: PortalConfig,
    store: Arc<dyn Store>,
    http: visitbridge_http::HttpClient,
    /// Discovered on first use, so the portal starts (and answers `/healthz`) while Entra is
    /// unreachable; a failed discovery is retried by the next sign-in.
    entra: OnceCell<OidcProvider>,
    /// The approver's EHR sign-in credential: public or `private_key_jwt`, never a secret.
    ehr_auth: ClientAuth,
    launch_urls: LaunchServiceUrls,
    cookies: Cookies,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field(
                "public_base_url",
                &self.inner.config.public_base_url.as_str(),
            )
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Checks `config`, builds the HTTP client and loads the EHR sign-in credential.
    pub fn new(config: PortalConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = build_client(&config.http.http_config(crate::config::USER_AGENT))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let ehr = &config.ehr_sign_in;
        let ehr_auth = match ehr.client_auth {
            // Refused by `validate` already; never turned into a credential.
            EhrClientAuthMethod::ClientSecretBasic => {
                return Err(secret_auth_refused("client_secret_basic"));
            }
            EhrClientAuthMethod::ClientSecretPost => {
                return Err(secret_auth_refused("client_secret_post"));
            }
            EhrClientAuthMethod::Public => ClientAuth::Public,
            EhrClientAuthMethod::PrivateKeyJwt => {
                let (Some(path), Some(kid)) = (&ehr.private_key_file, &ehr.key_id) else {
                    return Err(ConfigError::Invalid(
                        "ehr_sign_in.private_key_file and key_id are required".to_owned(),
                    ));
                };
                let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let key = ClientAssertionKey::from_pem_with(KeyAlgorithm::RS384, kid.clone(), &pem)
                    .or_else(|_| {
                        ClientAssertionKey::from_pem_with(KeyAlgorithm::ES384, kid.clone(), &pem)
                    })
                    .map_err(|e| {
                        ConfigError::Invalid(format!("ehr_sign_in.private_key_file: {e}"))
                    })?;
                ClientAuth::PrivateKeyJwt(key)
            }
        };
        let launch_urls = LaunchServiceUrls::new(&config.launch_base_url)
            .map_err(|e| ConfigError::Invalid(format!("launch_base_url: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cookies: Cookies::new(config.cookie_secure),
                config,
                store,
                http,
                entra: OnceCell::new(),
                ehr_auth,
                launch_urls,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PortalConfig {
        &self.inner.config
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(crate) fn http(&self) -> &visitbridge_http::HttpClient {
        &self.inner.http
    }

    pub(crate) fn cookies(&self) -> &Cookies {
        &self.inner.cookies
    }

    pub(crate) fn ehr_auth(&self) -> &ClientAuth {
        &self.inner.ehr_auth
    }

    pub(crate) fn launch_urls(&self) -> &LaunchServiceUrls {
        &self.inner.launch_urls
    }

    /// Removes expired sessions and pending sign-ins every `interval`, in the background (the
    /// store never returns expired ones; this only reclaims their space). Abort the handle to stop.
    pub fn spawn_housekeeping(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let now = Utc::now();
                let sessions = state.store().purge_expired_sessions(now).await;
                let pending = state.store().purge_expired_pending(now).await;
                match (sessions, pending) {
                    (Ok(sessions), Ok(pending)) => {
                        tracing::debug!(sessions, pending, "expired sessions and sign-ins removed");
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "removing expired sessions failed");
                    }
                }
            }
        })
    }

    /// The Entra OpenID provider, discovered on first use.
    pub(crate) async fn entra(&self) -> Result<&OidcProvider, PortalError> {
        self.inner
            .entra
            .get_or_try_init(|| async {
                let config = self.config();
                let issuer = config.entra.issuer().map_err(PortalError::internal)?;
                let redirect = config
                    .public_url("/signin/callback")
                    .map_err(PortalError::internal)?;
                let client = OidcClientConfig::new(
                    config.entra.client_id.clone(),
                    redirect,
                    ClientAuth::SecretPost(config.entra.client_secret.clone()),
                );
                OidcProvider::discover(self.http().clone(), &issuer, client)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "Entra discovery failed");
                        PortalError::Upstream(
                            "sign-in with Microsoft is not available right now; try again in a few minutes"
                                .to_owned(),
                        )
                    })
            })
            .await
    }
}
