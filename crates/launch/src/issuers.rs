//! Which approved configuration a launch's `iss` belongs to: approved snapshots only, with the
//! test/production mix-up explained. No request of any kind goes to an issuer before it matched
//! here.

use std::sync::Arc;

use visitbridge_approval::{
    ApprovedSnapshot, Configuration, ConfigurationId, Environment, FhirBaseUrl, UrlPolicy,
};
use visitbridge_smart::{ApprovedIssuer, IssuerPolicy, NormalizedIssuer};
use visitbridge_store::{ConfigurationRepo, StoreError};

/// Why a launch's `iss` found no configuration to serve it.
#[derive(Debug, thiserror::Error)]
pub enum IssuerRefusal {
    /// No approved configuration has this FHIR base URL.
    #[error("{host} is not an approved EHR")]
    NotApproved {
        /// The EHR's host, as the launch named it (never its path or query).
        host: String,
    },
    /// The record says one environment, the approved configuration is the other.
    #[error("a {launched} launch from {host}, which is approved only as {approved}")]
    EnvironmentMismatch {
        /// The EHR's host.
        host: String,
        /// What the record said.
        launched: Environment,
        /// What is approved.
        approved: Environment,
    },
    /// Both environments are approved for this URL and the record does not say which it is.
    #[error("{host} is approved as both test and production and the record does not say which")]
    EnvironmentAmbiguous {
        /// The EHR's host.
        host: String,
    },
    /// The store failed.
    #[error("cannot read approved configurations")]
    Store(#[from] StoreError),
}

/// The host of a URL-ish text, for messages (never the path or query).
pub fn host_of(iss: &str) -> String {
    url::Url::parse(iss.trim())
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| "the EHR that sent this launch".to_owned())
}

/// The approved-issuer key of a launch's `iss`, or `None` when it can never be one.
///
/// Lookups use the development URL rules (loopback accepted): they only find what the portal
/// already approved under its own, stricter rules.
fn lookup_key(iss: &str) -> Option<FhirBaseUrl> {
    let normalized = NormalizedIssuer::parse(iss)?;
    FhirBaseUrl::parse(normalized.as_str(), UrlPolicy::DEVELOPMENT).ok()
}

/// A configuration that may serve a launch: it has an approved snapshot.
#[derive(Debug, Clone)]
pub struct ApprovedConfiguration {
    configuration: Configuration,
    approved: ApprovedSnapshot,
}

impl ApprovedConfiguration {
    /// `configuration`, when it has an approved snapshot.
    pub fn new(configuration: Configuration) -> Option<Self> {
        let approved = configuration.approved()?.clone();
        Some(Self {
            configuration,
            approved,
        })
    }

    /// The configuration's id.
    pub fn id(&self) -> &ConfigurationId {
        self.configuration.id()
    }

    /// The whole configuration (its draft may differ from what is approved).
    pub fn configuration(&self) -> &Configuration {
        &self.configuration
    }

    /// The approved snapshot launches use.
    pub fn approved(&self) -> &ApprovedSnapshot {
        &self.approved
    }

    /// The approved FHIR base URL.
    pub fn fhir_base(&self) -> &FhirBaseUrl {
        &self.approved.settings.fhir_base_url
    }
}

/// Finds the approved configuration for a launch from `iss`, in the environment the record says.
pub async fn find_configuration(
    store: &dyn ConfigurationRepo,
    iss: &str,
    environment: Option<Environment>,
) -> Result<ApprovedConfiguration, IssuerRefusal> {
    let host = host_of(iss);
    let key = lookup_key(iss).ok_or_else(|| IssuerRefusal::NotApproved { host: host.clone() })?;
    let candidates: Vec<ApprovedConfiguration> = store
        .find_approved_by_issuer(&key)
        .await?
        .into_iter()
        .filter_map(ApprovedConfiguration::new)
        .collect();
    let env_of = |c: &ApprovedConfiguration| c.approved().settings.environment;
    match environment {
        Some(wanted) => match candidates.iter().find(|c| env_of(c) == wanted) {
            Some(c) => Ok(c.clone()),
            None => Err(match candidates.first().map(env_of) {
                Some(approved) => IssuerRefusal::EnvironmentMismatch {
                    host,
                    launched: wanted,
                    approved,
                },
                None => IssuerRefusal::NotApproved { host },
            }),
        },
        None => match <[_; 1]>::try_from(candidates) {
            Ok([only]) => Ok(only),
            Err(candidates) if candidates.is_empty() => Err(IssuerRefusal::NotApproved { host }),
            Err(_) => Err(IssuerRefusal::EnvironmentAmbiguous { host }),
        },
    }
}

/// The [`IssuerPolicy`] of one configuration's SMART clients: approves an `iss` only while that
/// configuration's approved snapshot serves it (checked against the store at every launch and
/// callback, so a withdrawn approval stops launches at once).
pub struct ConfigurationIssuer {
    /// The configurations.
    pub store: Arc<dyn ConfigurationRepo>,
    /// The configuration whose clients this policy guards.
    pub configuration_id: ConfigurationId,
    /// Its environment.
    pub environment: Environment,
}

#[async_trait::async_trait]
impl IssuerPolicy for ConfigurationIssuer {
    async fn is_approved(&self, iss: &NormalizedIssuer) -> Option<ApprovedIssuer> {
        let key = lookup_key(iss.as_str())?;
        let found = match self.store.find_approved(&key, self.environment).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::error!(error = %e, "cannot read approved configurations");
                return None;
            }
        };
        if found.id() != &self.configuration_id {
            return None;
        }
        let approved = found.approved()?;
        let url = url::Url::parse(approved.settings.fhir_base_url.as_str()).ok()?;
        Some(ApprovedIssuer::new(url, self.configuration_id.as_str()))
    }
}
