//! Epic's Telehealth connection-status web service (`SetExternalConnectionStatus`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;
use visitbridge_fhir::TokenSource;
use visitbridge_http::retry_after;
use visitbridge_store::{
    OutboxItem, ParticipantClass, SinkName, StoredEvent, Visit, VisitEventKind,
};

use crate::{AuditError, SinkError, sink::Sink};

/// The service's path under the Interconnect base.
const PATH: &str = "api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus";

/// Settings of the Epic connection-status sink.
///
/// **The numeric codes are not known here.** `ConnectionStatus` and `ExternalIDType` values are
/// defined in Epic's Telehealth vendor guide, which is not public, and differ between
/// integrations; the customer's Epic analyst supplies them. There are no defaults: a value still
/// holding a placeholder such as `<connected-code-from-epic-guide>` (anything starting with `<`)
/// is refused when the sink is built. Example (TOML, placeholders to replace):
///
/// ```toml
/// [[sinks]]
/// kind = "epic-connection-status"
/// interconnect_base = "https://epic.example.org/interconnect-prd-oauth"
/// client_id = "<epic-client-id>"
/// vendor_name = "<vendor-name-registered-with-epic>"
/// external_id_type = "<external-id-type-code-from-epic-guide>"
/// connected_status = "<connected-code-from-epic-guide>"
/// disconnected_status = "<disconnected-code-from-epic-guide>"
/// # optional: lobby_status = "<waiting-code-from-epic-guide>"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpicConnectionStatusConfig {
    /// The Interconnect instance, e.g. `https://epic.example.org/interconnect-prd-oauth` (the
    /// service path is appended). `https`, or `http` on a loopback host for tests.
    pub interconnect_base: Url,
    /// Our client id at Epic, sent as `Epic-Client-ID`.
    pub client_id: String,
    /// `VendorName`, as registered with Epic.
    pub vendor_name: String,
    /// `ExternalIDType`: the code Epic's guide gives for the kind of id sent as `ExternalID` (the
    /// participant's Entra object id or opaque meeting id).
    pub external_id_type: String,
    /// `ConnectionStatus` for a participant who connected (from Epic's guide).
    pub connected_status: String,
    /// `ConnectionStatus` for a participant who disconnected (from Epic's guide).
    pub disconnected_status: String,
    /// `ConnectionStatus` for a participant waiting in the lobby, if Epic's guide has one for the
    /// integration; without it, lobby arrivals are not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lobby_status: Option<String>,
}

impl EpicConnectionStatusConfig {
    /// Refuses empty values, unreplaced placeholders and plain-http URLs off loopback.
    pub fn validate(&self) -> Result<(), AuditError> {
        let fields = [
            ("client_id", &self.client_id),
            ("vendor_name", &self.vendor_name),
            ("external_id_type", &self.external_id_type),
            ("connected_status", &self.connected_status),
            ("disconnected_status", &self.disconnected_status),
        ];
        let lobby = self.lobby_status.iter().map(|v| ("lobby_status", v));
        for (name, value) in fields.into_iter().chain(lobby) {
            let value = value.trim();
            if value.is_empty() {
                return Err(AuditError::InvalidSinkConfig(format!(
                    "epic connection status: {name} is empty"
                )));
            }
            if value.starts_with('<') {
                return Err(AuditError::InvalidSinkConfig(format!(
                    "epic connection status: {name} still holds a placeholder; \
                     take the value from Epic's telehealth vendor guide"
                )));
            }
        }
        let mut codes = vec![
            self.connected_status.trim(),
            self.disconnected_status.trim(),
        ];
        codes.extend(self.lobby_status.as_deref().map(str::trim));
        if (1..codes.len()).any(|i| codes[..i].contains(&codes[i])) {
            return Err(AuditError::InvalidSinkConfig(
                "epic connection status: two statuses have the same code".to_owned(),
            ));
        }
        let loopback = visitbridge_http::is_loopback_url(&self.interconnect_base);
        let scheme_ok = match self.interconnect_base.scheme() {
            "https" => true,
            "http" => loopback,
            _ => false,
        };
        if !scheme_ok || self.interconnect_base.cannot_be_a_base() {
            return Err(AuditError::InvalidSinkConfig(
                "epic connection status: interconnect_base must be an https url".to_owned(),
            ));
        }
        Ok(())
    }

    fn endpoint(&self) -> Url {
        let mut base = self.interconnect_base.clone();
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        // A relative join below a base ending in `/` keeps the base path.
        base.join(PATH).unwrap_or(base)
    }
}

/// Sets a participant's connection status on the visit in Epic.
///
/// Only joins and leaves of people are sent (not call start/end, not bots), and lobby arrivals
/// when a lobby code is configured. The call sets a status, so repeating it for the same event
/// sets the same status again: idempotent by nature, with the event id as the outbox's key.
/// Because a late repeat of an old status could overwrite a newer one, the outbox sends each
/// participant's events of a visit to this sink in event order.
pub struct EpicConnectionStatusSink {
    name: SinkName,
    config: EpicConnectionStatusConfig,
    endpoint: Url,
    http: reqwest::Client,
    token: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for EpicConnectionStatusSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpicConnectionStatusSink")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl EpicConnectionStatusSink {
    /// The sink's name.
    pub const NAME: &'static str = "epic-connection-status";

    /// A sink with `config` (validated), sending through `http` with tokens from `token`.
    pub fn new(
        config: EpicConnectionStatusConfig,
        http: reqwest::Client,
        token: Arc<dyn TokenSource>,
    ) -> Result<Self, AuditError> {
        config.validate()?;
        Ok(Self {
            name: SinkName::new(Self::NAME)?,
            endpoint: config.endpoint(),
            config,
            http,
            token,
        })
    }
}

#[async_trait::async_trait]
impl Sink for EpicConnectionStatusSink {
    fn name(&self) -> &SinkName {
        &self.name
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        let kind_sent = match event.kind {
            VisitEventKind::ParticipantJoined | VisitEventKind::ParticipantLeft => true,
            VisitEventKind::ParticipantInLobby => self.config.lobby_status.is_some(),
            VisitEventKind::CallStarted | VisitEventKind::CallEnded => false,
        };
        kind_sent
            && event
                .participant
                .as_ref()
                .is_some_and(|p| p.class != ParticipantClass::Application)
    }

    /// Epic shows the participant's current status: an old join that arrives after the leave
    /// was sent must not turn "disconnected" back into "connected".
    fn latest_only(&self) -> bool {
        true
    }

    async fn deliver(
        &self,
        _item: &OutboxItem,
        event: &StoredEvent,
        visit: &Visit,
    ) -> Result<(), SinkError> {
        let status = match event.kind {
            VisitEventKind::ParticipantJoined => &self.config.connected_status,
            VisitEventKind::ParticipantLeft => &self.config.disconnected_status,
            // Not enqueued by `wants` (or the lobby code was removed since): nothing to set.
            VisitEventKind::ParticipantInLobby => match &self.config.lobby_status {
                Some(code) => code,
                None => return Ok(()),
            },
            VisitEventKind::CallStarted | VisitEventKind::CallEnded => return Ok(()),
        };
        let Some(participant) = &event.participant else {
            return Err(SinkError::permanent("the event has no participant"));
        };
        let Some(conference_id) = &visit.conference_id else {
            // Re-drivable once the launch has stored the visit's conference id.
            return Err(SinkError::permanent(
                "the visit has no epic conference id (csn) to report against",
            ));
        };
        let token = self
            .token
            .access_token()
            .await
            .map_err(|e| SinkError::retryable(e.to_string()))?;
        let response = self
            .http
            .get(self.endpoint.clone())
            .query(&[
                ("ConferenceID", conference_id.as_str()),
                ("ExternalID", participant.id.as_str()),
                ("ExternalIDType", self.config.external_id_type.as_str()),
                ("VendorName", self.config.vendor_name.as_str()),
                ("ConnectionStatus", status.as_str()),
            ])
            .header("Epic-Client-ID", &self.config.client_id)
            .bearer_auth(token.expose())
            .send()
            .await
            // The URL carries the conference id: never in an error.
            .map_err(|e| {
                SinkError::retryable(format!(
                    "epic connection status unreachable: {}",
                    e.without_url()
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(SinkError::from_status(
            "epic connection status",
            status,
            retry_after(response.headers()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base: &str) -> EpicConnectionStatusConfig {
        EpicConnectionStatusConfig {
            interconnect_base: Url::parse(base).unwrap(),
            client_id: "client".into(),
            vendor_name: "VisitBridge".into(),
            external_id_type: "TEST-TYPE".into(),
            connected_status: "TEST-CONNECTED".into(),
            disconnected_status: "TEST-DISCONNECTED".into(),
            lobby_status: None,
        }
    }

    #[test]
    fn the_endpoint_keeps_the_interconnect_path() {
        for base in [
            "https://epic.example.org/interconnect-prd-oauth",
            "https://epic.example.org/interconnect-prd-oauth/",
            "https://epic.example.org/interconnect-prd-oauth?x=1",
        ] {
            assert_eq!(
                config(base).endpoint().as_str(),
                "https://epic.example.org/interconnect-prd-oauth/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus",
                "{base}"
            );
        }
    }

    #[test]
    fn placeholders_plain_http_and_equal_codes_are_refused() {
        assert!(config("https://epic.example.org/ic").validate().is_ok());
        assert!(config("http://127.0.0.1:8080/ic").validate().is_ok());
        assert!(config("http://epic.example.org/ic").validate().is_err());
        let mut c = config("https://epic.example.org/ic");
        c.connected_status = "<connected-code-from-epic-guide>".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("connected_status") && err.contains("placeholder"),
            "{err}"
        );
        let mut c = config("https://epic.example.org/ic");
        c.disconnected_status = c.connected_status.clone();
        assert!(c.validate().is_err());
        let mut c = config("https://epic.example.org/ic");
        c.lobby_status = Some("TEST-CONNECTED".into());
        assert!(c.validate().is_err());
        c.lobby_status = Some("<lobby-code>".into());
        assert!(c.validate().is_err());
        c.lobby_status = Some("TEST-LOBBY".into());
        assert!(c.validate().is_ok());
        let mut c = config("https://epic.example.org/ic");
        c.vendor_name = " ".into();
        assert!(c.validate().is_err());
    }
}
