//! Each approved configuration's write-back sinks, set on the audit crate's
//! [`ConfiguredSinks`] once per approved version.
//!
//! Sinks live in a process's memory, but an event's outbox rows are chosen from them when it is
//! recorded: so before an event of a configuration is recorded, [`ConfigurationSinks::ensure`]
//! sets that configuration's sinks from the store if this process has not yet (after a restart,
//! an approval since start-up, another replica's launch), and fails if it cannot, so that the
//! event is not stored without its deliveries. A configuration that is not (or no longer)
//! approved, or not known, has nothing to write back to: its events are recorded without rows.
//!
//! What a sink is made of (endpoints, the EHR's backend-services token) is the binary's:
//! [`SinkBuilder`].

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use async_trait::async_trait;
use visitbridge_approval::ConfigurationId;
use visitbridge_audit::{ConfiguredSinks, Sink, SinkLoader};
use visitbridge_store::{ConfigurationRepo, StoreError, TenantRepo};

use crate::{ApprovedConfiguration, notifications::WritebackSinks};

/// Builds an approved configuration's sinks.
pub trait SinkBuilder: Send + Sync {
    /// The sinks of `configuration` as approved (its FHIR base URL, its EHR client).
    fn build(
        &self,
        configuration: &ApprovedConfiguration,
    ) -> Result<Vec<Arc<dyn Sink>>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Why a configuration's sinks could not be set (an event waits: Graph delivers it again).
#[derive(Debug, thiserror::Error)]
pub enum SinkSetupError {
    /// The store could not be read.
    #[error("cannot read the configuration for its write-back sinks: {0}")]
    Store(#[from] StoreError),
    /// The sinks could not be built from the configuration.
    #[error("write-back sinks of configuration {configuration} cannot be built")]
    Build {
        /// The configuration's id.
        configuration: String,
        /// Why (a sink's settings, or the audit crate refusing them).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Sets each approved configuration's sinks once per approved version.
pub struct ConfigurationSinks {
    sinks: Arc<ConfiguredSinks>,
    tenants: Arc<dyn TenantRepo>,
    configurations: Arc<dyn ConfigurationRepo>,
    builder: Arc<dyn SinkBuilder>,
    done: Mutex<HashSet<(ConfigurationId, u32)>>,
}

impl ConfigurationSinks {
    /// Sinks set on a fresh [`ConfiguredSinks`], built by `builder`, for the configurations of
    /// `tenants` read from `configurations`.
    pub fn new(
        tenants: Arc<dyn TenantRepo>,
        configurations: Arc<dyn ConfigurationRepo>,
        builder: Arc<dyn SinkBuilder>,
    ) -> Self {
        Self {
            sinks: Arc::new(ConfiguredSinks::new()),
            tenants,
            configurations,
            builder,
            done: Mutex::default(),
        }
    }

    /// The sinks as set: what the recorder enqueues for and the delivery worker delivers to.
    pub fn sinks(&self) -> &Arc<ConfiguredSinks> {
        &self.sinks
    }

    /// Sets `configuration`'s sinks unless they were set for its approved version; a failure is
    /// logged (and its events wait in [`Self::ensure`]).
    pub fn configure(&self, configuration: &ApprovedConfiguration) {
        let _ = self.try_configure(configuration);
    }

    fn try_configure(&self, configuration: &ApprovedConfiguration) -> Result<(), SinkSetupError> {
        let key = (configuration.id().clone(), configuration.approved().version);
        if self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(());
        }
        let built = self.builder.build(configuration).and_then(|sinks| {
            self.sinks
                .set(configuration.id().clone(), sinks)
                .map_err(Into::into)
        });
        match built {
            Ok(()) => {
                self.done
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key);
                Ok(())
            }
            Err(source) => {
                tracing::error!(
                    error = %source,
                    configuration = configuration.id().as_str(),
                    "write-back sinks cannot be built: this configuration's events cannot be written back"
                );
                Err(SinkSetupError::Build {
                    configuration: configuration.id().as_str().to_owned(),
                    source,
                })
            }
        }
    }

    /// Sets the sinks of every approved configuration (at start-up and when configurations
    /// change; one approved since is set at its first launch or event: [`Self::ensure`]).
    pub async fn configure_all(&self) {
        let tenants = match self.tenants.list_tenants().await {
            Ok(tenants) => tenants,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list tenants for write-back sinks");
                return;
            }
        };
        for tenant in tenants {
            match self.configurations.list_configurations(&tenant.id).await {
                Ok(configurations) => {
                    for configuration in configurations {
                        if let Some(configuration) = ApprovedConfiguration::new(configuration) {
                            self.configure(&configuration);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list configurations"),
            }
        }
    }

    /// Makes sure the sinks of `configuration` are set before one of its events is recorded:
    /// read from the store when this process has not set them yet. An error means the event
    /// must not be recorded now (its outbox rows would be missing).
    pub async fn ensure(&self, configuration: &ConfigurationId) -> Result<(), SinkSetupError> {
        if self.sinks.is_configured(configuration) {
            return Ok(());
        }
        // Few tenants; the configuration's tenant is not on the visit.
        for tenant in self.tenants.list_tenants().await? {
            if let Some(found) = self
                .configurations
                .get_configuration(&tenant.id, configuration)
                .await?
            {
                let Some(found) = ApprovedConfiguration::new(found) else {
                    tracing::warn!(
                        configuration = configuration.as_str(),
                        "an event of a configuration that is not approved: recorded, not written back"
                    );
                    return Ok(());
                };
                return self.try_configure(&found);
            }
        }
        tracing::warn!(
            configuration = configuration.as_str(),
            "an event of an unknown configuration: recorded, not written back"
        );
        Ok(())
    }
}

#[async_trait]
impl WritebackSinks for ConfigurationSinks {
    async fn ensure(
        &self,
        configuration: &ConfigurationId,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(ConfigurationSinks::ensure(self, configuration).await?)
    }
}

/// A delivery worker meeting a row of a configuration this process has not set up (another
/// replica recorded it) sets it up here, rather than failing the attempt.
#[async_trait]
impl SinkLoader for ConfigurationSinks {
    async fn load(&self, configuration: &ConfigurationId) {
        if let Err(e) = ConfigurationSinks::ensure(self, configuration).await {
            tracing::warn!(error = %e, configuration = configuration.as_str(), "cannot set a configuration's write-back sinks");
        }
    }
}
