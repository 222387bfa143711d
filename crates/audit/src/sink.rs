//! Where events are delivered: the [`Sink`] trait, per-configuration sink sets and their
//! configuration.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use visitbridge_approval::ConfigurationId;
use visitbridge_fhir::{CapabilityStatement, FhirClient, TokenSource};
use visitbridge_store::{OutboxItem, SinkName, StoredEvent, Visit};

use crate::{
    AuditError,
    sinks::{
        epic::{EpicConnectionStatusConfig, EpicConnectionStatusSink},
        fhir::{FhirAuditEventSink, FhirCommunicationSink},
    },
};

/// Why a delivery failed, and whether trying again later may help.
///
/// The message is short and names the upstream and status; it never holds a token, a URL with
/// its query (which carries the conference id) or PHI. It is stored as the outbox row's
/// `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    retryable: bool,
    retry_after: Option<Duration>,
    message: String,
}

impl SinkError {
    /// A failure worth retrying (upstream down, throttled, timed out).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            retry_after: None,
            message: message.into(),
        }
    }

    /// A failure that will repeat (the request itself is refused): dead-lettered at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            retry_after: None,
            message: message.into(),
        }
    }

    /// With the wait the upstream asked for (`Retry-After`).
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The error for an HTTP status from `upstream`: 401 (a new token may fix it), 408, 429 and
    /// 5xx are retryable, and so is a redirect (not followed: a proxy's maintenance or sign-in
    /// page passes, a moved endpoint becomes a dead letter after the attempts); any other 4xx
    /// means the request itself is refused and is permanent.
    pub fn from_status(upstream: &str, status: StatusCode, retry_after: Option<Duration>) -> Self {
        let retryable = matches!(status.as_u16(), 401 | 408 | 429)
            || status.is_server_error()
            || status.is_redirection();
        Self {
            retryable,
            retry_after,
            message: format!("{upstream} answered {status}"),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The wait the upstream asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// One destination of visit events (an EHR web service, a FHIR server).
///
/// Implementations must make a repeated delivery of the same event harmless (the outbox delivers
/// at least once), using the idempotency key they chose in [`Sink::idempotency_key`].
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// The sink's name, unique within a configuration and stable over time: outbox rows refer to
    /// it.
    fn name(&self) -> &SinkName;

    /// Whether this sink takes `event` at all (decided when the event is recorded).
    fn wants(&self, event: &StoredEvent) -> bool {
        let _ = event;
        true
    }

    /// Whether the sink keeps only the latest state per participant (a connection status), so an
    /// event older than one it already received must not be sent (it would undo the newer
    /// state); such a row ends `superseded`. `false` (the default) delivers every event, as an
    /// audit trail wants. Decided when the event is recorded, and kept with its outbox row.
    fn latest_only(&self) -> bool {
        false
    }

    /// The key under which the sink recognises a repeat of `event` (stored with the outbox row).
    fn idempotency_key(&self, event: &StoredEvent) -> String {
        event.event_id.to_string()
    }

    /// Delivers the event of `item`.
    async fn deliver(
        &self,
        item: &OutboxItem,
        event: &StoredEvent,
        visit: &Visit,
    ) -> Result<(), SinkError>;
}

/// Gives the sinks of a configuration: consulted when an event is recorded (which sinks to
/// enqueue) and when it is delivered (the sink an outbox row names).
pub trait SinkResolver: Send + Sync {
    /// The configuration's sinks; empty if it has none.
    fn sinks_for(&self, configuration: &ConfigurationId) -> Vec<Arc<dyn Sink>>;
}

/// Sets a configuration's sinks on demand: for a [`crate::DeliveryWorker`] that meets an outbox
/// row of a configuration this process has not set up yet (another replica recorded the event,
/// or the configuration was approved since this process last looked).
#[async_trait::async_trait]
pub trait SinkLoader: Send + Sync {
    /// Sets the sinks of `configuration`, if it is approved and has any. Failures are the
    /// loader's to report; the row is retried as usual.
    async fn load(&self, configuration: &ConfigurationId);
}

/// Sinks per configuration, replaceable at run time (e.g. when a configuration changes).
#[derive(Default)]
pub struct ConfiguredSinks {
    by_configuration: RwLock<HashMap<ConfigurationId, Vec<Arc<dyn Sink>>>>,
}

impl std::fmt::Debug for ConfiguredSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self
            .by_configuration
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut d = f.debug_map();
        for (configuration, sinks) in map.iter() {
            let names: Vec<&str> = sinks.iter().map(|s| s.name().as_str()).collect();
            d.entry(&configuration.as_str(), &names);
        }
        d.finish()
    }
}

impl ConfiguredSinks {
    /// No sinks for anyone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the sinks of `configuration`, replacing any before; refuses two sinks with one name.
    pub fn set(
        &self,
        configuration: ConfigurationId,
        sinks: Vec<Arc<dyn Sink>>,
    ) -> Result<(), AuditError> {
        for (i, sink) in sinks.iter().enumerate() {
            if sinks[..i].iter().any(|s| s.name() == sink.name()) {
                return Err(AuditError::DuplicateSink(sink.name().clone()));
            }
        }
        self.by_configuration
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(configuration, sinks);
        Ok(())
    }

    /// Whether `configuration`'s sinks were set (possibly to none), as opposed to never: events of
    /// an unset configuration would be recorded without outbox rows, so callers set it first.
    pub fn is_configured(&self, configuration: &ConfigurationId) -> bool {
        self.by_configuration
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(configuration)
    }

    /// Removes a configuration's sinks (its pending rows wait, retried with backoff, until the
    /// sinks are set again or they become dead letters after their attempts).
    pub fn remove(&self, configuration: &ConfigurationId) {
        self.by_configuration
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(configuration);
    }
}

impl SinkResolver for ConfiguredSinks {
    fn sinks_for(&self, configuration: &ConfigurationId) -> Vec<Arc<dyn Sink>> {
        self.by_configuration
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(configuration)
            .cloned()
            .unwrap_or_default()
    }
}

/// How AuditEvents are written to a FHIR server, which decides what makes a repeat harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditEventMode {
    /// `PUT AuditEvent/{uuid v5 of the event id}`: a repeat is an update of the same resource.
    /// Needs `updateCreate` (client-assigned ids).
    ClientAssignedId,
    /// `POST AuditEvent` with `If-None-Exist: _tag=<system>|<event id>`: the server creates at
    /// most one. Needs `conditionalCreate`.
    ConditionalCreate,
    /// `POST AuditEvent` alone: at-least-once is the best such a server allows (a retry after a
    /// lost answer stores the event twice). Logged once when the sink is built.
    Plain,
}

impl AuditEventMode {
    /// The safest mode the server's CapabilityStatement declares for AuditEvent, or `None` if it
    /// declares no way to write one.
    pub fn from_capability(statement: &CapabilityStatement) -> Option<Self> {
        let resource = statement.resource("AuditEvent")?;
        if resource.update_create == Some(true) && resource.supports("update") {
            Some(Self::ClientAssignedId)
        } else if resource.conditional_create == Some(true) && resource.supports("create") {
            Some(Self::ConditionalCreate)
        } else if resource.supports("create") {
            Some(Self::Plain)
        } else {
            None
        }
    }
}

/// One sink of a configuration, as written in the deployment's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SinkConfig {
    /// Epic's Telehealth `SetExternalConnectionStatus` web service (joins and leaves only).
    EpicConnectionStatus(Box<EpicConnectionStatusConfig>),
    /// FHIR `AuditEvent` writes to the configuration's FHIR server (every event).
    FhirAuditEvent {
        /// How repeats are made harmless.
        mode: AuditEventMode,
    },
    /// A FHIR `Communication` on the visit's Encounter per join and leave: a human-readable
    /// status note in the chart (optional).
    FhirCommunication,
}

/// What building a sink needs: the shared HTTP client, the configuration's backend-services
/// token and its FHIR client.
#[derive(Clone)]
pub struct SinkContext {
    /// Built with `visitbridge_http::build_client` (timeouts, no redirects).
    pub http: reqwest::Client,
    /// The configuration's backend-services access tokens.
    pub token: Arc<dyn TokenSource>,
    /// The configuration's FHIR server (with its token and any `Epic-Client-ID` header).
    pub fhir: FhirClient,
}

impl std::fmt::Debug for SinkContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkContext")
            .field("fhir", &self.fhir)
            .finish_non_exhaustive()
    }
}

impl SinkConfig {
    /// The name its outbox rows carry: `epic-connection-status`, `fhir-audit-event` or
    /// `fhir-communication` (one sink of each kind per configuration).
    pub fn name(&self) -> &'static str {
        match self {
            Self::EpicConnectionStatus(_) => EpicConnectionStatusSink::NAME,
            Self::FhirAuditEvent { .. } => FhirAuditEventSink::NAME,
            Self::FhirCommunication => FhirCommunicationSink::NAME,
        }
    }

    /// Builds the sink; [`AuditError::InvalidSinkConfig`] for unusable settings (an Epic code
    /// still holding its placeholder, a plain-http Interconnect URL off loopback, …).
    pub fn build(&self, context: &SinkContext) -> Result<Arc<dyn Sink>, AuditError> {
        Ok(match self {
            Self::EpicConnectionStatus(config) => Arc::new(EpicConnectionStatusSink::new(
                (**config).clone(),
                context.http.clone(),
                Arc::clone(&context.token),
            )?),
            Self::FhirAuditEvent { mode } => {
                Arc::new(FhirAuditEventSink::new(*mode, context.fhir.clone())?)
            }
            Self::FhirCommunication => Arc::new(FhirCommunicationSink::new(context.fhir.clone())?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_a_later_attempt_may_fix_are_retried_and_refusals_are_not() {
        for (status, retryable) in [
            (401, true),
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            // Not followed; a maintenance or sign-in redirect passes, a moved endpoint runs out
            // of attempts.
            (302, true),
            (307, true),
            (400, false),
            (403, false),
            (404, false),
            (422, false),
        ] {
            let error = SinkError::from_status("sink", StatusCode::from_u16(status).unwrap(), None);
            assert_eq!(error.is_retryable(), retryable, "{status}");
        }
    }

    #[test]
    fn sink_configs_read_from_configuration_files() {
        let configs: Vec<SinkConfig> = serde_json::from_value(serde_json::json!([
            {
                "kind": "epic-connection-status",
                "interconnect_base": "https://epic.example.org/interconnect-prd-oauth",
                "client_id": "client",
                "vendor_name": "VisitBridge",
                "external_id_type": "TYPE",
                "connected_status": "C",
                "disconnected_status": "D"
            },
            { "kind": "fhir-audit-event", "mode": "conditional-create" },
            { "kind": "fhir-communication" }
        ]))
        .unwrap();
        let names: Vec<&str> = configs.iter().map(SinkConfig::name).collect();
        assert_eq!(
            names,
            [
                "epic-connection-status",
                "fhir-audit-event",
                "fhir-communication"
            ]
        );
        assert_eq!(
            configs[1],
            SinkConfig::FhirAuditEvent {
                mode: AuditEventMode::ConditionalCreate
            }
        );
        let SinkConfig::EpicConnectionStatus(epic) = &configs[0] else {
            panic!("not epic");
        };
        assert_eq!(epic.lobby_status, None);
        assert!(epic.validate().is_ok());
        // A field missing is an error, not a silent default: Epic's codes have none.
        let missing = serde_json::from_value::<SinkConfig>(serde_json::json!({
            "kind": "epic-connection-status",
            "interconnect_base": "https://epic.example.org/ic",
            "client_id": "client",
            "vendor_name": "VisitBridge",
            "external_id_type": "TYPE",
            "connected_status": "C"
        }));
        assert!(missing.is_err());
    }
}
