//! Which approved configuration a launch's `iss` belongs to: approved snapshots only, with the
//! test/production mix-up explained.

use std::sync::Arc;

use url::Url;
use visitbridge_approval::{
    ApprovedSnapshot, Configuration, ConfigurationId, Environment, FhirBaseUrl, UrlPolicy,
};
use visitbridge_smart::{ApprovedIssuer, IssuerPolicy, NormalizedIssuer};
use visitbridge_store::ConfigurationRepo;

use crate::error::{LaunchError, host_of};

/// The approved-issuer key of a launch's `iss`, or `None` when it can never be one.
///
/// Lookups use the development URL rules (loopback accepted): they only find what the portal
/// already approved under its own, stricter rules.
fn lookup_key(iss: &str) -> Option<FhirBaseUrl> {
    let normalized = NormalizedIssuer::parse(iss)?;
    FhirBaseUrl::parse(normalized.as_str(), UrlPolicy::DEVELOPMENT).ok()
}

/// A configuration that may serve a launch: its approved settings.
#[derive(Debug, Clone)]
pub(crate) struct ApprovedConfiguration {
    pub(crate) configuration: Configuration,
}

impl ApprovedConfiguration {
    pub(crate) fn id(&self) -> &ConfigurationId {
        self.configuration.id()
    }

    /// The approved snapshot (always present: only approved configurations are found).
    pub(crate) fn approved(&self) -> Result<&ApprovedSnapshot, LaunchError> {
        self.configuration
            .approved()
            .ok_or_else(|| LaunchError::internal("an approved configuration has no snapshot"))
    }

    /// The approved FHIR base URL.
    pub(crate) fn fhir_base(&self) -> Result<&FhirBaseUrl, LaunchError> {
        Ok(&self.approved()?.settings.fhir_base_url)
    }
}

/// Finds the approved configuration for a launch from `iss`, in the environment the record says.
///
/// No request of any kind is made before this returns `Ok`.
pub(crate) async fn find_configuration(
    store: &dyn ConfigurationRepo,
    iss: &str,
    environment: Option<Environment>,
) -> Result<ApprovedConfiguration, LaunchError> {
    let host = host_of(iss);
    let key =
        lookup_key(iss).ok_or_else(|| LaunchError::IssuerNotApproved { host: host.clone() })?;
    let candidates = store.find_approved_by_issuer(&key).await?;
    let env_of = |c: &Configuration| c.approved().map(|a| a.settings.environment);
    let found = match environment {
        Some(wanted) => match candidates.iter().find(|c| env_of(c) == Some(wanted)) {
            Some(c) => c.clone(),
            None => {
                return Err(match candidates.first().and_then(env_of) {
                    Some(approved) => LaunchError::EnvironmentMismatch {
                        host,
                        launched: wanted,
                        approved,
                    },
                    None => LaunchError::IssuerNotApproved { host },
                });
            }
        },
        None => match candidates.as_slice() {
            [] => return Err(LaunchError::IssuerNotApproved { host }),
            [only] => only.clone(),
            _ => return Err(LaunchError::EnvironmentAmbiguous { host }),
        },
    };
    Ok(ApprovedConfiguration {
        configuration: found,
    })
}

/// The [`IssuerPolicy`] of one configuration's SMART clients: approves an `iss` only while that
/// configuration's approved snapshot serves it (checked against the store at every launch and
/// callback, so a withdrawn approval stops launches at once).
pub(crate) struct ConfigurationIssuer {
    pub(crate) store: Arc<dyn ConfigurationRepo>,
    pub(crate) configuration_id: ConfigurationId,
    pub(crate) environment: Environment,
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
        let url = Url::parse(approved.settings.fhir_base_url.as_str()).ok()?;
        Some(ApprovedIssuer::new(url, self.configuration_id.as_str()))
    }
}
