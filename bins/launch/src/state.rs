//! The service's shared state, built once from the configuration, and its background tasks.

use std::{sync::Arc, time::Duration};

use axum::Router;
use url::Url;
use visitbridge_audit::{
    AuditRecorder, DeliveryPolicy, DeliveryWorker, outcomes::refresh_outcomes,
};
use visitbridge_graph::{
    ClientStateSecret, DecryptionKeys, EncryptionCertificate, EntraAppTokens, EntraConfig,
    GraphClient, GraphConfig, NotificationEncryption, SubscriptionConfig, TokenCredential,
    ValidationTokenConfig, ValidationTokenVerifier, WebhookConfig, webhook_router,
};
use visitbridge_http::{ClientAssertionKey, Secret, build_client, random_token};
use visitbridge_launch_core::{
    ConfigurationSinks, LiveHub, Reconciler, Retention, Subscriptions, SystemClock, UpstreamTimer,
    WritebackSinks,
};
use visitbridge_store::{
    AuditStore, ConfigurationRepo, LeaseRepo, PendingRepo, Store, StoreError, TenantRepo,
};
use visitbridge_visit::{ReferenceKeys, StaffRule};

use crate::{
    clients::{ClientSettings, SmartClients},
    config::{ConfigError, LaunchConfig},
    error::LaunchError,
    microsoft::{GraphAttendance, GraphSubscriptions, Microsoft},
    observe::Metrics,
    pending::{LaunchCookies, SealedInCookies},
    reconcile::reconcile_policy,
    session::CookiePolicy,
    webhook::WebhookSink,
    writeback::{SinksFromConfig, describe},
};

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened.
    #[error("cannot open the database {path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A key, certificate or secret file could not be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    ReadFile {
        /// What the file holds ("backend private key").
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret or key could not be generated (no system randomness).
    #[error("cannot generate the {what}: {source}")]
    Generate {
        /// What was generated ("deployment_secret", "backend key").
        what: &'static str,
        /// Why.
        #[source]
        source: visitbridge_http::AssertionError,
    },
    /// The configured backend key is not a usable private key.
    #[error("backend_key: {0}")]
    BackendKey(#[source] visitbridge_http::AssertionError),
    /// No launch cookie sealer can be derived from the deployment secret.
    #[error("deployment_secret: {0}")]
    DeploymentSecret(#[source] visitbridge_http::SealError),
    /// A URL made from a configured base URL is not valid.
    #[error("{setting}: {source}")]
    Url {
        /// The setting whose URL it is ("public_base_url").
        setting: &'static str,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// A Microsoft 365 setting (login base, encryption certificate or key) is not usable.
    #[error("{setting}: {source}")]
    Microsoft {
        /// The setting ("microsoft.login_base").
        setting: &'static str,
        /// Why.
        #[source]
        source: Box<visitbridge_graph::GraphError>,
    },
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] visitbridge_http::HttpError),
}

/// What the routes share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

/// The lease of the replica that renews Graph subscriptions.
const RENEWAL_LEASE: &str = "graph-subscription-renewals";
/// Batches of stale visit outcomes (1,000 each) one housekeeping round derives at most.
const OUTCOME_BACKLOG_BATCHES: usize = 100;
/// The lease of the retention purge (one replica purges at a time).
const RETENTION_LEASE: &str = "patient-reference-retention";
/// How long the retention lease outlives its holder's last renewal: renewed while a purge runs,
/// so it only needs to outlast a renewal period; when the holder dies, another replica purges
/// from its next round after this.
const RETENTION_LEASE_TTL: Duration = Duration::from_secs(10);
/// The shortest renewal lease (it is three upkeep ticks, at least this): a replica that died
/// holding it delays renewals by at most that, well inside the renewal margin.
const RENEWAL_LEASE_MIN: Duration = Duration::from_secs(2);

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) public_base: Url,
    pub(crate) cookies: CookiePolicy,
    pub(crate) session_ttl: Duration,
    pub(crate) link_ttl_minutes: u64,
    pub(crate) launch_ttl: Duration,
    /// The most one launch step (start or callback) may take.
    pub(crate) launch_deadline: Duration,
    /// Who may launch as a clinician.
    pub(crate) staff: StaffRule,
    pub(crate) deployment_secret: Secret,
    /// What stored patient and appointment ids are keyed with.
    pub(crate) reference_keys: ReferenceKeys,
    pub(crate) signing_keys: Vec<ClientAssertionKey>,
    pub(crate) clients: SmartClients,
    pub(crate) pending: Arc<LaunchCookies>,
    pub(crate) microsoft: Option<Arc<Microsoft>>,
    pub(crate) live: LiveHub,
    pub(crate) writeback: Arc<ConfigurationSinks>,
    pub(crate) metrics: Arc<Metrics>,
    /// The bearer token of `/metrics` on the main listener (`None`: not served there).
    pub(crate) metrics_token: Option<Secret>,
    pub(crate) webhook: Option<Router>,
    pub(crate) http: visitbridge_http::HttpClient,
}

impl AppState {
    /// Microsoft 365, or the error that says it is not configured.
    pub(crate) fn microsoft(&self) -> Result<&Arc<Microsoft>, LaunchError> {
        self.inner
            .microsoft
            .as_ref()
            .ok_or(LaunchError::MicrosoftNotConfigured)
    }

    /// A URL under the public base (`path` starts with `/`).
    pub(crate) fn public_url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.inner.public_base.as_str().trim_end_matches('/')
        )
    }

    /// The public keys we publish (`/.well-known/jwks.json`).
    pub fn signing_keys(&self) -> &[ClientAssertionKey] {
        &self.inner.signing_keys
    }
}

/// The built service: its state and its background tasks (stopped when this is dropped).
pub struct LaunchService {
    state: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LaunchService {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn read_file(path: &std::path::Path, what: &'static str) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|source| BuildError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

fn generated_secret(what: &'static str) -> Result<Secret, BuildError> {
    tracing::warn!(
        "no {what} is configured: a random one is used for this run only (set it for production)"
    );
    random_token(32)
        .map(Secret::new)
        .map_err(|source| BuildError::Generate { what, source })
}

impl LaunchService {
    /// Builds the service for `config`, whose public address is `public_base` (see
    /// [`LaunchConfig::public_base`]), and starts its background tasks (the write-back worker,
    /// Entra token refresh, subscription renewal, purges). Needs a Tokio runtime.
    pub async fn build(config: LaunchConfig, public_base: Url) -> Result<Self, BuildError> {
        config.validate(&public_base)?;
        let http = build_client(&config.http.http_config(crate::config::USER_AGENT))?;
        let store = config
            .database
            .open(&config.database_options())
            .await
            .map_err(|source| BuildError::Store {
                path: config.database.to_string(),
                source,
            })?;

        let key = match &config.backend_key {
            Some(k) => {
                let pem = read_file(&k.private_key_file, "backend private key")?;
                ClientAssertionKey::from_pem_with(k.algorithm, k.key_id.clone(), pem.as_bytes())
                    .map_err(BuildError::BackendKey)?
            }
            None => {
                tracing::warn!(
                    "no backend_key is configured: a fresh ES384 key is generated for this run \
                     (EHRs that cached the old JWKS must fetch it again)"
                );
                ClientAssertionKey::generate_es384("visitbridge-dev-1").map_err(|source| {
                    BuildError::Generate {
                        what: "backend key",
                        source,
                    }
                })?
            }
        };
        let deployment_secret = if config.deployment_secret.is_empty() {
            generated_secret("deployment_secret")?
        } else {
            config.deployment_secret.clone()
        };
        // Its own secret when configured (the portal shares it); else one only we can derive.
        let reference_keys = if config.reference_secret.is_empty() {
            ReferenceKeys::derived_from(&deployment_secret)
        } else {
            ReferenceKeys::new(&config.reference_secret)
        };
        let cookies = CookiePolicy {
            secure: config.cookie_secure(&public_base),
            same_site: config.cookies.same_site,
        };
        let launch_ttl = Duration::from_secs(config.launch_ttl_minutes.max(1) * 60);
        let pending = Arc::new(
            LaunchCookies::new(
                &deployment_secret,
                cookies,
                launch_ttl,
                store.clone() as Arc<dyn PendingRepo>,
            )
            .map_err(BuildError::DeploymentSecret)?,
        );
        let base_text = public_base.as_str().trim_end_matches('/').to_owned();
        let at = |path: &str| {
            Url::parse(&format!("{base_text}{path}")).map_err(|source| BuildError::Url {
                setting: "public_base_url",
                source,
            })
        };
        let clients = SmartClients::new(ClientSettings {
            http: http.clone(),
            store: store.clone() as Arc<dyn ConfigurationRepo>,
            pending: Arc::new(SealedInCookies),
            callback: at("/launch/callback")?,
            key: key.clone(),
            secrets: config.ehr_client_secrets.clone(),
            launch_lifetime: launch_ttl,
        });
        let metrics = Arc::new(Metrics::default());
        let live = LiveHub::new(store.clone());
        let writeback = Arc::new(ConfigurationSinks::new(
            Arc::clone(&store) as Arc<dyn TenantRepo>,
            Arc::clone(&store) as Arc<dyn ConfigurationRepo>,
            Arc::new(SinksFromConfig::new(
                config.writeback.clone(),
                http.clone(),
                key.clone(),
            )),
        ));
        tracing::info!(sinks = ?describe(&config.writeback), "write-back sinks");
        // Set before any event can be recorded (the upkeep task below reconciles at once); a
        // configuration missed here is set on demand when one of its events comes.
        writeback.configure_all().await;
        let worker = DeliveryWorker::new(
            store.clone(),
            writeback.sinks().clone(),
            DeliveryPolicy {
                max_attempts: config.writeback.max_attempts.max(1),
                base_delay: Duration::from_millis(config.writeback.retry_base_millis.max(1)),
                max_delay: Duration::from_secs(config.writeback.retry_max_seconds.max(1)),
                poll_interval: Duration::from_millis(config.writeback.poll_millis.max(10)),
                ..DeliveryPolicy::default()
            },
        )
        .with_loader(writeback.clone());
        let recorder = AuditRecorder::new(store.clone(), writeback.sinks().clone())
            .wake_on_record(worker.waker());

        let mut tasks = Vec::new();
        let (microsoft, webhook) = match &config.microsoft {
            None => {
                tracing::warn!(
                    "Microsoft 365 is not configured: launches will explain that no meeting can be created"
                );
                (None, None)
            }
            Some(ms) => {
                let tokens = Arc::new(
                    EntraAppTokens::new(
                        http.clone(),
                        EntraConfig::new(ms.tenant_id.clone(), ms.client_id.clone())
                            .with_login_base(ms.login_base.clone()),
                        TokenCredential::ClientSecret(ms.client_secret.clone()),
                    )
                    .map_err(|source| BuildError::Microsoft {
                        setting: "microsoft",
                        source: Box::new(source),
                    })?,
                );
                let graph = GraphClient::new(
                    http.clone(),
                    GraphConfig {
                        graph_base: ms.graph_base.clone(),
                        meeting_subject: ms.meeting_subject.clone(),
                        policy: ms.policy.clone(),
                        virtual_appointment_join_url: ms.virtual_appointment_join_url,
                        ..GraphConfig::default()
                    },
                    Arc::clone(&tokens),
                );
                let client_state = if ms.client_state.is_empty() {
                    generated_secret("microsoft.client_state")?
                } else {
                    ms.client_state.clone()
                };
                let notification_base = config
                    .notification_base_url
                    .clone()
                    .unwrap_or_else(|| public_base.clone());
                let notification_base = notification_base.as_str().trim_end_matches('/');
                let hook = |path: &str| {
                    Url::parse(&format!("{notification_base}{path}")).map_err(|source| {
                        BuildError::Url {
                            setting: "notification_base_url",
                            source,
                        }
                    })
                };
                let mut subscription = SubscriptionConfig::new(
                    hook("/graph/notifications")?,
                    hook("/graph/lifecycle")?,
                    client_state.clone(),
                );
                subscription.lifetime =
                    Duration::from_secs(ms.subscription_lifetime_hours.max(1) * 3600);
                let mut webhook_config = WebhookConfig::new(ClientStateSecret::new(client_state));
                if let (Some(cert_file), Some(key_file), Some(id)) = (
                    &ms.encryption_certificate_file,
                    &ms.encryption_key_file,
                    &ms.encryption_certificate_id,
                ) {
                    let cert_pem = read_file(cert_file, "encryption certificate")?;
                    let key_pem = read_file(key_file, "encryption key")?;
                    let cert = EncryptionCertificate::from_pem(id.clone(), &cert_pem).map_err(
                        |source| BuildError::Microsoft {
                            setting: "microsoft.encryption_certificate_file",
                            source: Box::new(source),
                        },
                    )?;
                    let keys = DecryptionKeys::new()
                        .with_key_pem(id.clone(), &key_pem, Some(&cert))
                        .map_err(|source| BuildError::Microsoft {
                            setting: "microsoft.encryption_key_file",
                            source: Box::new(source),
                        })?;
                    // Encrypted subscriptions make Graph sign each batch: with them, a leaked
                    // clientState alone must not be enough to forge participant events.
                    let mut validation =
                        ValidationTokenConfig::new(ms.tenant_id.clone(), ms.client_id.clone())
                            .with_login_base(&ms.login_base)
                            .map_err(|source| BuildError::Microsoft {
                                setting: "microsoft.login_base",
                                source: Box::new(source),
                            })?;
                    if let Some(jwks) = &ms.validation_jwks_url {
                        validation = validation.with_jwks_url(jwks.clone());
                    }
                    webhook_config.encryption = Some(NotificationEncryption::new(
                        keys,
                        ValidationTokenVerifier::new(http.clone(), validation),
                    ));
                    subscription.encryption_certificate = Some(cert);
                }
                let subscriptions = Arc::new(Subscriptions::new(
                    Arc::new(GraphSubscriptions {
                        graph: graph.clone(),
                        config: subscription,
                    }),
                    store.clone(),
                    Arc::clone(&metrics) as Arc<dyn UpstreamTimer>,
                    Arc::new(SystemClock),
                ));
                let reconciler = Arc::new(Reconciler::new(
                    store.clone(),
                    Arc::new(GraphAttendance(graph.clone())),
                    recorder.clone(),
                    Arc::clone(&writeback) as Arc<dyn WritebackSinks>,
                    reconcile_policy(&config.upkeep),
                    Arc::new(SystemClock),
                ));
                let login_base = ms.login_base.as_str().trim_end_matches('/');
                let issuer = Url::parse(&format!("{login_base}/{}/v2.0", ms.tenant_id)).map_err(
                    |source| BuildError::Url {
                        setting: "microsoft.login_base",
                        source,
                    },
                )?;
                let microsoft = Arc::new(Microsoft::new(
                    http.clone(),
                    ms.tenant_id.clone(),
                    graph,
                    ms.graph_base.clone(),
                    issuer,
                    ms.client_id.clone(),
                    ms.client_secret.clone(),
                    at("/launch/microsoft/callback")?,
                    Arc::clone(&subscriptions),
                ));
                let sink = Arc::new(WebhookSink {
                    recorder: recorder.clone(),
                    store: store.clone(),
                    live: live.clone(),
                    subscriptions: Arc::clone(&subscriptions),
                    reconciler: Arc::clone(&reconciler),
                    writeback: Arc::clone(&writeback),
                    metrics: Arc::clone(&metrics),
                });
                let webhook = webhook_router(webhook_config, sink);
                // Entra's sign-in metadata is read now, not at a clinician's first launch.
                let warm = Arc::clone(&microsoft);
                tasks.push(tokio::spawn(async move {
                    let _ = warm.oidc().await;
                }));
                // App tokens are refreshed here, off the launch path (a launch finds one cached).
                tasks.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(60));
                    loop {
                        tick.tick().await;
                        if let Err(e) = tokens.token().await {
                            tracing::warn!(error = %e, "cannot refresh the Graph app token");
                        }
                    }
                }));
                // Subscriptions and reconciliations live in the store: this picks up, after a
                // restart, whatever an earlier run left (the first tick is at once).
                // Renewals run on one replica at a time (the holder of a lease it renews each
                // tick; another takes over when it dies); reconciliations are claimed row by row.
                let upkeep = config.upkeep.clone();
                let leases = Arc::clone(&store);
                let instance = format!(
                    "launch-{}",
                    random_token(12).map_err(|source| BuildError::Generate {
                        what: "instance id",
                        source,
                    })?
                );
                tasks.push(tokio::spawn(async move {
                    let margin = Duration::from_secs(upkeep.renew_margin_minutes * 60);
                    let max_age = Duration::from_secs(upkeep.subscription_max_age_hours * 3600);
                    let poll = Duration::from_millis(upkeep.poll_millis.max(10));
                    let lease = (poll * 3).max(RENEWAL_LEASE_MIN);
                    let mut tick = tokio::time::interval(poll);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let renewals = subscriptions.keep_up(margin, max_age);
                        if let Err(e) =
                            while_leased(&*leases, RENEWAL_LEASE, &instance, lease, renewals).await
                        {
                            tracing::warn!(error = %e, "cannot take the renewal lease");
                        }
                        reconciler.run_due().await;
                    }
                }));
                (Some(microsoft), Some(webhook))
            }
        };

        let state = AppState {
            inner: Arc::new(Inner {
                store: Arc::clone(&store),
                public_base,
                cookies,
                session_ttl: Duration::from_secs(config.session_ttl_minutes * 60),
                link_ttl_minutes: config.patient_link_ttl_minutes,
                launch_ttl,
                launch_deadline: Duration::from_secs(config.launch_deadline_seconds.max(1)),
                staff: StaffRule {
                    extra_user_types: config.staff_user_types.clone(),
                },
                deployment_secret,
                reference_keys: reference_keys.clone(),
                signing_keys: vec![key],
                clients,
                pending,
                microsoft,
                live,
                writeback: Arc::clone(&writeback),
                metrics,
                metrics_token: (!config.metrics_bearer_token.is_empty())
                    .then(|| config.metrics_bearer_token.clone()),
                webhook,
                http,
            }),
        };
        tasks.push(tokio::spawn(async move {
            worker.run(std::future::pending()).await;
        }));
        // Events that other replicas record reach this one's open panels.
        if let Some(changes) = store.visit_changes() {
            tasks.push(tokio::spawn(state.inner.live.clone().follow(changes)));
        }
        let housekeeping = state.clone();
        let retention = Retention::new(
            Arc::clone(&store) as Arc<dyn AuditStore>,
            reference_keys,
            Duration::from_secs(u64::from(config.audit_retention_days) * 24 * 3600),
            // A meeting is watched this long (its subscription's age): a call may be rejoined.
            Duration::from_secs(config.upkeep.subscription_max_age_hours * 3600),
            Arc::new(SystemClock),
        );
        let every = Duration::from_secs(config.housekeeping_seconds.max(1));
        let housekeeper = format!(
            "launch-{}",
            random_token(12).map_err(|source| BuildError::Generate {
                what: "instance id",
                source,
            })?
        );
        let leases = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let inner = &housekeeping.inner;
                let now = chrono::Utc::now();
                if let Err(e) = inner.store.purge_expired_pending(now).await {
                    tracing::warn!(error = %e, "cannot purge expired launches");
                }
                if let Err(e) = inner.store.purge_expired_sessions(now).await {
                    tracing::warn!(error = %e, "cannot purge expired sessions");
                }
                // On one replica at a time: the purge's serializable batches would only conflict.
                let purge = async {
                    // Reports find the visits' outcomes as their events say (the portal also
                    // brings them up to date before it reads).
                    let audit: &dyn AuditStore = &*inner.store;
                    if let Err(e) = refresh_outcomes(audit, None, OUTCOME_BACKLOG_BATCHES).await {
                        tracing::warn!(error = %e, "cannot bring the visits' outcomes up to date");
                    }
                    match retention.run().await {
                        Ok(run) if run.keyed + run.purged.visits + run.purged.events > 0 => {
                            tracing::info!(
                                keyed = run.keyed,
                                visits = run.purged.visits,
                                events = run.purged.events,
                                "patient references past retention purged"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot purge patient references"),
                    }
                };
                if let Err(e) = while_leased(
                    &*leases,
                    RETENTION_LEASE,
                    &housekeeper,
                    RETENTION_LEASE_TTL,
                    purge,
                )
                .await
                {
                    tracing::warn!(error = %e, "cannot take the retention lease");
                }
                inner.writeback.configure_all().await;
                inner.live.evict_idle();
            }
        }));
        Ok(Self { state, tasks })
    }

    /// The shared state.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }
}

/// Runs `work` if `holder` takes (or still holds) the lease `name`, renewing it every third of
/// `ttl` while the work runs; stops the work if the lease is lost meanwhile (this process stalled
/// past it: another has taken over). Nothing runs, and `Ok`, when another holds it.
async fn while_leased(
    leases: &dyn LeaseRepo,
    name: &str,
    holder: &str,
    ttl: Duration,
    work: impl std::future::Future<Output = ()>,
) -> Result<(), StoreError> {
    let take = || leases.try_lease(name, holder, chrono::Utc::now(), ttl);
    if !take().await? {
        return Ok(());
    }
    let holding = async {
        loop {
            tokio::time::sleep(ttl / 3).await;
            if !matches!(take().await, Ok(true)) {
                return;
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = holding => tracing::warn!(lease = name, "lost a lease mid-way: another replica carries on"),
    }
    Ok(())
}
