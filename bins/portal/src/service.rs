//! The operations both faces of the portal (HTML and JSON) share: check, probe, transition,
//! persist. The rules are the approval crate's; this module only strings the calls together.

use chrono::Utc;
use visitbridge_approval::{
    Actor, Configuration, ConfigurationId, ConfigurationSettings, FhirUrlProblem, TenantId,
    TransitionError, Transitioned, classify_probe,
};
use visitbridge_store::StoreError;

use crate::{
    AppState,
    error::PortalError,
    forms::{FieldErrors, SettingsInput, field},
    probe,
};

/// Why a create or edit did not happen.
#[derive(Debug)]
pub(crate) enum ChangeError {
    /// Problems to show next to fields (and an optional summary for the whole form).
    Fields {
        /// `(field, message)`.
        fields: FieldErrors,
        /// A problem with the form as a whole.
        summary: Option<String>,
    },
    /// The FHIR base URL and environment belong to another organisation: shown next to the URL
    /// field on the form, `409` through the API.
    Held(String),
    /// Anything else.
    Other(PortalError),
}

impl From<PortalError> for ChangeError {
    fn from(e: PortalError) -> Self {
        Self::Other(e)
    }
}

impl From<ChangeError> for PortalError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Fields { fields, summary } => PortalError::Invalid {
                message: summary.unwrap_or_else(|| {
                    fields
                        .first()
                        .map(|(_, m)| m.clone())
                        .unwrap_or_else(|| "check the settings".to_owned())
                }),
                fields,
            },
            ChangeError::Held(message) => PortalError::Conflict(message),
            ChangeError::Other(e) => e,
        }
    }
}

fn url_field(message: String) -> ChangeError {
    ChangeError::Fields {
        fields: vec![(field::FHIR_BASE_URL.to_owned(), message)],
        summary: None,
    }
}

/// Maps a refused transition: a "nothing changed" belongs on the form, the rest is an error.
fn transition_error(e: TransitionError) -> ChangeError {
    match e {
        TransitionError::NothingChanged => ChangeError::Fields {
            fields: Vec::new(),
            summary: Some("nothing changed: the settings are the same as before".to_owned()),
        },
        other => ChangeError::Other(other.into()),
    }
}

/// Maps a failed write: a duplicate URL belongs next to the URL field.
fn write_error(e: StoreError) -> ChangeError {
    match e {
        StoreError::AlreadyExists(message) => url_field(message.to_owned()),
        e @ StoreError::HeldByAnotherTenant => ChangeError::Held(e.to_string()),
        other => ChangeError::Other(other.into()),
    }
}

/// Refuses, before any probe, settings whose FHIR base URL and environment another organisation
/// holds (the store checks again as it writes).
async fn check_not_held(
    state: &AppState,
    actor: &Actor,
    settings: &ConfigurationSettings,
) -> Result<(), ChangeError> {
    if state
        .store()
        .held_by_another_tenant(&actor.tenant, &settings.fhir_base_url, settings.environment)
        .await
        .map_err(write_error)?
    {
        tracing::info!(tenant = %actor.tenant, "FHIR base URL refused: another organisation holds it");
        return Err(write_error(StoreError::HeldByAnotherTenant));
    }
    Ok(())
}

/// Probes the settings' URL and judges the result with the approval crate's rules.
pub(crate) async fn check_url(
    state: &AppState,
    settings: &ConfigurationSettings,
) -> Result<(), FhirUrlProblem> {
    let client = &settings.ehr_client;
    let epic = client
        .send_epic_client_id_header
        .then(|| client.client_id.as_str());
    let outcome = probe::probe(state.http(), &settings.fhir_base_url, epic).await;
    let verdict = classify_probe(&settings.fhir_base_url, &outcome);
    if let Err(problem) = &verdict {
        tracing::info!(url = %settings.fhir_base_url, ?outcome, %problem, "FHIR base URL check failed");
    }
    verdict
}

/// Creates a configuration after checking and probing its URL.
pub(crate) async fn create(
    state: &AppState,
    actor: &Actor,
    input: &SettingsInput,
) -> Result<Configuration, ChangeError> {
    let settings =
        input
            .parse(state.config().url_policy())
            .map_err(|fields| ChangeError::Fields {
                fields,
                summary: None,
            })?;
    check_not_held(state, actor, &settings).await?;
    check_url(state, &settings)
        .await
        .map_err(|p| url_field(p.to_string()))?;
    let id = ConfigurationId::new(uuid::Uuid::new_v4().to_string())
        .map_err(|e| ChangeError::Other(PortalError::internal(e)))?;
    let created =
        Configuration::create(actor, id, settings, Utc::now()).map_err(transition_error)?;
    state
        .store()
        .insert_configuration(&created)
        .await
        .map_err(write_error)?;
    tracing::info!(configuration = %created.configuration.id(), tenant = %actor.tenant, "configuration created");
    Ok(created.configuration)
}

/// Changes a configuration; the URL is probed again when it changed. `expected_revision` is the
/// revision the editor saw, so that a change made meanwhile is not silently overwritten.
pub(crate) async fn edit(
    state: &AppState,
    actor: &Actor,
    current: &Configuration,
    input: &SettingsInput,
    expected_revision: Option<u64>,
) -> Result<Configuration, ChangeError> {
    if expected_revision.is_some_and(|r| r != current.revision()) {
        return Err(ChangeError::Other(PortalError::Conflict(
            "this configuration was changed by someone else since you opened it; reload it and make your change again"
                .to_owned(),
        )));
    }
    let settings =
        input
            .parse(state.config().url_policy())
            .map_err(|fields| ChangeError::Fields {
                fields,
                summary: None,
            })?;
    // Check the transition first: no probe for a refused or empty change.
    let edited = current
        .edit(actor, settings, Utc::now())
        .map_err(transition_error)?;
    let new = edited.configuration.settings();
    let old = current.settings();
    if new.fhir_base_url != old.fhir_base_url || new.environment != old.environment {
        check_not_held(state, actor, new).await?;
    }
    if new.fhir_base_url != old.fhir_base_url || new.ehr_client != old.ehr_client {
        check_url(state, new)
            .await
            .map_err(|p| url_field(p.to_string()))?;
    }
    state
        .store()
        .update_configuration(&edited)
        .await
        .map_err(write_error)?;
    tracing::info!(configuration = %current.id(), version = edited.configuration.version(), "configuration changed");
    Ok(edited.configuration)
}

/// Stores a transition the approval crate allowed.
pub(crate) async fn save(
    state: &AppState,
    transition: Result<Transitioned, TransitionError>,
) -> Result<Configuration, PortalError> {
    let transitioned = transition?;
    state.store().update_configuration(&transitioned).await?;
    tracing::info!(
        configuration = %transitioned.configuration.id(),
        action = transitioned.entry.action.kind().as_str(),
        state = transitioned.configuration.state().as_str(),
        "configuration transition"
    );
    Ok(transitioned.configuration)
}

/// One configuration of a tenant; not found for a malformed id or another tenant's.
pub(crate) async fn load(
    state: &AppState,
    tenant: &TenantId,
    id: &str,
) -> Result<Configuration, PortalError> {
    let id = ConfigurationId::new(id).map_err(|_| PortalError::NotFound)?;
    state
        .store()
        .get_configuration(tenant, &id)
        .await?
        .ok_or(PortalError::NotFound)
}
