//! Standard FHIR sinks: AuditEvent writes (three idempotency modes) and Communication notes.

use visitbridge_fhir::{
    AuditEvent, AuditEventId, Communication, ConditionalCreate, EVENT_TAG_SYSTEM, EncounterId,
    FhirClient, FhirError, PatientId, SearchQuery,
};
use visitbridge_store::{
    OutboxItem, ParticipantClass, SinkName, StoredEvent, Visit, VisitEventKind,
};

use crate::{AuditError, AuditEventMode, SinkError, sink::Sink};

/// A short, safe description of a FHIR failure for the outbox: the status without the server's
/// diagnostics (which may quote anything), the kind of failure otherwise. Retryable as
/// [`SinkError::from_status`] has it (a redirect too), and after a token failure.
fn sink_error(e: &FhirError) -> SinkError {
    let retryable = e.is_transient()
        || matches!(e, FhirError::Unauthorized | FhirError::TokenSource(_))
        || e.status().is_some_and(|s| s.is_redirection());
    let message = match e {
        FhirError::Status { status, .. } => {
            let codes = e.epic_codes();
            if codes.is_empty() {
                format!("fhir server answered {status}")
            } else {
                format!("fhir server answered {status} (codes {codes:?})")
            }
        }
        other => other.to_string(),
    };
    if retryable {
        SinkError::retryable(message)
    } else {
        SinkError::permanent(message)
    }
}

/// `_tag=<our event-id system>|<event id>`: the criteria that find an event's resource again.
fn event_tag(event: &StoredEvent) -> String {
    format!("{EVENT_TAG_SYSTEM}|{}", event.event_id)
}

/// Writes every event as an AuditEvent to the configuration's FHIR server.
#[derive(Debug)]
pub struct FhirAuditEventSink {
    name: SinkName,
    mode: AuditEventMode,
    fhir: FhirClient,
}

impl FhirAuditEventSink {
    /// The sink's name.
    pub const NAME: &'static str = "fhir-audit-event";

    /// A sink writing with `mode` through `fhir`.
    pub fn new(mode: AuditEventMode, fhir: FhirClient) -> Result<Self, AuditError> {
        if mode == AuditEventMode::Plain {
            tracing::warn!(
                fhir_base_url = %fhir.base_url(),
                "this fhir server offers neither client-assigned ids nor conditional create for \
                 AuditEvent: a retried write may record an event twice"
            );
        }
        Ok(Self {
            name: SinkName::new(Self::NAME)?,
            mode,
            fhir,
        })
    }
}

#[async_trait::async_trait]
impl Sink for FhirAuditEventSink {
    fn name(&self) -> &SinkName {
        &self.name
    }

    fn idempotency_key(&self, event: &StoredEvent) -> String {
        match self.mode {
            AuditEventMode::ClientAssignedId => {
                AuditEventId::for_event(event.event_id.as_str()).into_string()
            }
            AuditEventMode::ConditionalCreate => event_tag(event),
            AuditEventMode::Plain => event.event_id.to_string(),
        }
    }

    async fn deliver(
        &self,
        _item: &OutboxItem,
        event: &StoredEvent,
        _visit: &Visit,
    ) -> Result<(), SinkError> {
        let resource: AuditEvent = serde_json::from_value(event.audit_event.clone())
            .map_err(|_| SinkError::permanent("the stored audit event could not be read"))?;
        match self.mode {
            AuditEventMode::ClientAssignedId => {
                let id = AuditEventId::for_event(event.event_id.as_str());
                self.fhir
                    .update(&id, &resource)
                    .await
                    .map_err(|e| sink_error(&e))?;
            }
            AuditEventMode::ConditionalCreate => {
                let criteria = SearchQuery::new().param("_tag", event_tag(event));
                let outcome = self
                    .fhir
                    .create_if_none_exist(&resource, &criteria)
                    .await
                    .map_err(|e| sink_error(&e))?;
                if outcome == ConditionalCreate::MultipleMatches {
                    tracing::warn!(
                        event_id = %event.event_id,
                        "the fhir server already holds this audit event more than once"
                    );
                }
            }
            AuditEventMode::Plain => {
                self.fhir
                    .create(&resource)
                    .await
                    .map_err(|e| sink_error(&e))?;
            }
        }
        Ok(())
    }
}

/// Writes a `Communication` on the visit's Encounter for each join and leave of a person: a
/// status note a human reads in the chart ("Video visit: a clinician connected"), never a name.
/// Conditional create on our event-id tag makes a repeat harmless.
#[derive(Debug)]
pub struct FhirCommunicationSink {
    name: SinkName,
    fhir: FhirClient,
}

impl FhirCommunicationSink {
    /// The sink's name.
    pub const NAME: &'static str = "fhir-communication";

    /// A sink writing through `fhir`.
    pub fn new(fhir: FhirClient) -> Result<Self, AuditError> {
        Ok(Self {
            name: SinkName::new(Self::NAME)?,
            fhir,
        })
    }
}

/// The note's text: what happened, and to whom by role only.
fn note_text(event: &StoredEvent) -> Option<&'static str> {
    let staff = event
        .participant
        .as_ref()
        .map(|p| p.class == ParticipantClass::OrganizationUser)?;
    Some(match (event.kind, staff) {
        (VisitEventKind::ParticipantJoined, true) => "Video visit: a staff member connected",
        (VisitEventKind::ParticipantJoined, false) => {
            "Video visit: the patient or a guest connected"
        }
        (VisitEventKind::ParticipantLeft, true) => "Video visit: a staff member disconnected",
        (VisitEventKind::ParticipantLeft, false) => {
            "Video visit: the patient or a guest disconnected"
        }
        (
            VisitEventKind::CallStarted
            | VisitEventKind::CallEnded
            | VisitEventKind::ParticipantInLobby,
            _,
        ) => return None,
    })
}

#[async_trait::async_trait]
impl Sink for FhirCommunicationSink {
    fn name(&self) -> &SinkName {
        &self.name
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        note_text(event).is_some()
            && event
                .participant
                .as_ref()
                .is_some_and(|p| p.class != ParticipantClass::Application)
    }

    fn idempotency_key(&self, event: &StoredEvent) -> String {
        event_tag(event)
    }

    async fn deliver(
        &self,
        _item: &OutboxItem,
        event: &StoredEvent,
        visit: &Visit,
    ) -> Result<(), SinkError> {
        let Some(text) = note_text(event) else {
            return Ok(());
        };
        let Some(encounter) = visit
            .encounter_fhir_id
            .as_deref()
            .and_then(|id| id.parse::<EncounterId>().ok())
        else {
            // Re-drivable once the launch has stored the visit's encounter.
            return Err(SinkError::permanent(
                "the visit has no encounter to attach the note to",
            ));
        };
        let patient = visit
            .patient_fhir_id
            .as_deref()
            .and_then(|id| id.parse::<PatientId>().ok());
        let note = Communication::visit_status_note(
            event.event_id.as_str(),
            &encounter,
            patient.as_ref(),
            text,
            event.occurred_at,
        );
        let criteria = SearchQuery::new().param("_tag", event_tag(event));
        self.fhir
            .create_if_none_exist(&note, &criteria)
            .await
            .map_err(|e| sink_error(&e))?;
        Ok(())
    }
}
