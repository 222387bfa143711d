//! `AuditRecorder`: turns participant events into stored AuditEvents with their outbox rows.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::Notify;
use visitbridge_fhir::Reference;
use visitbridge_graph::{
    MeetingRef, Notification, Participant, ParticipantEvent, ParticipantKind, UserObjectId,
};
use visitbridge_store::{
    AuditStore, EventId, EventParticipant, NewDelivery, ParticipantClass, RecordOutcome,
    StoredEvent, Visit, VisitId,
};

use crate::{
    AuditError, SinkResolver, VisitTimeline,
    record::{default_connector, kind_of, participant_of, stored_event},
};

/// What [`AuditRecorder::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The event's id.
    pub event_id: EventId,
    /// New, or a repeat of a stored event.
    pub outcome: RecordOutcome,
    /// Sinks it was enqueued for (0 for a duplicate).
    pub deliveries: usize,
}

/// Counts of a batch of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordSummary {
    /// New events stored and enqueued.
    pub recorded: usize,
    /// Events already stored (Graph delivered them again).
    pub duplicates: usize,
    /// Events of meetings that are not a known visit (dropped).
    pub unknown_meeting: usize,
    /// Reconciled events skipped because a live event already recorded them.
    pub already_seen: usize,
}

impl RecordSummary {
    fn add(&mut self, outcome: RecordOutcome) {
        match outcome {
            RecordOutcome::Recorded => self.recorded += 1,
            RecordOutcome::Duplicate => self.duplicates += 1,
        }
    }
}

/// Stores participant events as AuditEvents and enqueues them for the configuration's sinks, in
/// one transaction per event.
///
/// Cheap to clone. The launch service's webhook sink calls [`Self::accept_notifications`] (and
/// answers Graph only after it returned); a [`crate::DeliveryWorker`] does the rest.
#[derive(Clone)]
pub struct AuditRecorder {
    store: Arc<dyn AuditStore>,
    sinks: Arc<dyn SinkResolver>,
    connector: Reference,
    wake: Option<Arc<Notify>>,
}

impl std::fmt::Debug for AuditRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditRecorder").finish_non_exhaustive()
    }
}

impl AuditRecorder {
    /// A recorder on `store`, enqueuing for the sinks `sinks` gives per configuration.
    pub fn new(store: Arc<dyn AuditStore>, sinks: Arc<dyn SinkResolver>) -> Self {
        Self {
            store,
            sinks,
            connector: default_connector(),
            wake: None,
        }
    }

    /// Uses `connector` as the AuditEvents' observer and connector agent (default: a logical
    /// `Device` reference by identifier, see [`crate::default_connector`]).
    pub fn with_connector(mut self, connector: Reference) -> Self {
        self.connector = connector;
        self
    }

    /// Wakes a worker (see [`crate::DeliveryWorker::waker`]) whenever something was enqueued, so
    /// delivery starts at once rather than at its next poll.
    pub fn wake_on_record(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Records one event of `visit`: its AuditEvent, and one outbox row per sink of the visit's
    /// configuration that wants it. A repeat of a stored event changes nothing.
    pub async fn record(
        &self,
        visit: &Visit,
        event: &ParticipantEvent,
    ) -> Result<Recorded, AuditError> {
        let stored = stored_event(visit, event, Utc::now(), &self.connector)?;
        let deliveries: Vec<NewDelivery> = self
            .sinks
            .sinks_for(&visit.configuration_id)
            .iter()
            .filter(|sink| sink.wants(&stored))
            .map(|sink| NewDelivery {
                sink: sink.name().clone(),
                idempotency_key: sink.idempotency_key(&stored),
                latest_only: sink.latest_only(),
            })
            .collect();
        let outcome = self.store.record_event(&stored, &deliveries).await?;
        let enqueued = match outcome {
            RecordOutcome::Recorded => deliveries.len(),
            RecordOutcome::Duplicate => 0,
        };
        if enqueued > 0
            && let Some(wake) = &self.wake
        {
            wake.notify_one();
        }
        tracing::debug!(
            event_id = %stored.event_id,
            visit_id = %visit.id,
            kind = stored.kind.as_str(),
            duplicate = outcome == RecordOutcome::Duplicate,
            deliveries = enqueued,
            "visit event recorded"
        );
        Ok(Recorded {
            event_id: stored.event_id,
            outcome,
            deliveries: enqueued,
        })
    }

    /// Records events, finding each one's visit from how Graph named the meeting (join URL or
    /// meeting id). Events of unknown meetings are counted and dropped.
    pub async fn record_events(
        &self,
        events: &[ParticipantEvent],
    ) -> Result<RecordSummary, AuditError> {
        let mut summary = RecordSummary::default();
        let mut visits: HashMap<MeetingRef, Option<Visit>> = HashMap::new();
        for event in events {
            if !visits.contains_key(&event.meeting) {
                let visit = self.find_visit(&event.meeting).await?;
                visits.insert(event.meeting.clone(), visit);
            }
            match visits.get(&event.meeting).and_then(Option::as_ref) {
                Some(visit) => summary.add(self.record(visit, event).await?.outcome),
                None => summary.unknown_meeting += 1,
            }
        }
        if summary.unknown_meeting > 0 {
            // The join URL is a way into the meeting: not logged.
            tracing::warn!(
                events = summary.unknown_meeting,
                "dropped events of meetings that are not a known visit"
            );
        }
        Ok(summary)
    }

    /// Records the events of a batch of Graph notifications (lifecycle notifications are left
    /// to the caller). Returns once every event is stored: the webhook may then answer Graph.
    pub async fn accept_notifications(
        &self,
        notifications: &[Notification],
    ) -> Result<RecordSummary, AuditError> {
        let mut summary = RecordSummary::default();
        for notification in notifications {
            if let Notification::Events { events, .. } = notification {
                let part = self.record_events(events).await?;
                summary.recorded += part.recorded;
                summary.duplicates += part.duplicates;
                summary.unknown_meeting += part.unknown_meeting;
            }
        }
        Ok(summary)
    }

    /// Records events from the visit's attendance report that live notifications missed.
    ///
    /// Reports and notifications time the same join differently, and may name a guest
    /// differently, so each reported participant is first tied to one participant of the stored
    /// events: the same identity (staff object id, ACS id) where the
    /// report has it, else — guests only — the stored guest whose events lie closest in time to
    /// its own, each stored guest tied to at most one reported one. A reported event then counts
    /// as already seen when an unused stored event of the same kind, about the participant it is
    /// tied to (or both about the call), lies within `tolerance`; each stored event accounts for
    /// at most one reported event. What is missing is recorded under the identity it is tied to,
    /// so that the EHR hears "disconnected" about the person it heard "connected" about.
    pub async fn reconcile(
        &self,
        visit: &Visit,
        reported: &[ParticipantEvent],
        tolerance: Duration,
    ) -> Result<RecordSummary, AuditError> {
        let tolerance = chrono::Duration::from_std(tolerance).unwrap_or(chrono::Duration::MAX);
        let stored = self.store.events_for_visit(&visit.id).await?;
        let bindings = bind_participants(&stored, reported, tolerance);
        let mut used = vec![false; stored.len()];
        let mut summary = RecordSummary::default();
        for event in reported {
            let kind = kind_of(event.kind);
            let as_reported = event.participant.as_ref().map(|p| participant_of(&p.kind));
            let who = as_reported
                .as_ref()
                .map(|p| bindings.get(p).cloned().unwrap_or_else(|| p.clone()));
            let seen = stored.iter().enumerate().position(|(i, s)| {
                !used[i]
                    && s.kind == kind
                    && (s.occurred_at - event.at).abs() <= tolerance
                    && same_identity(s.participant.as_ref(), who.as_ref())
            });
            match seen {
                Some(i) => {
                    used[i] = true;
                    summary.already_seen += 1;
                }
                None => {
                    let event = match (&who, &as_reported) {
                        (Some(tied), Some(reported)) if tied != reported => {
                            as_participant(event, tied)
                        }
                        _ => event.clone(),
                    };
                    summary.add(self.record(visit, &event).await?.outcome);
                }
            }
        }
        Ok(summary)
    }

    /// The visit's timeline from its stored events.
    pub async fn timeline(&self, visit: &VisitId) -> Result<VisitTimeline, AuditError> {
        let events: Vec<StoredEvent> = self.store.events_for_visit(visit).await?;
        Ok(VisitTimeline::from_events(&events))
    }

    async fn find_visit(&self, meeting: &MeetingRef) -> Result<Option<Visit>, AuditError> {
        Ok(match meeting {
            MeetingRef::JoinWebUrl(url) => self.store.visit_by_join_url(url).await?,
            MeetingRef::MeetingId(id) => self.store.visit_by_meeting(id.as_str()).await?,
            MeetingRef::Resource(_) => None,
        })
    }
}

fn is_guest(class: ParticipantClass) -> bool {
    matches!(
        class,
        ParticipantClass::Anonymous | ParticipantClass::AcsGuest
    )
}

/// Whether two participants are the same identity (class and id; ids compared without case, as
/// Graph's GUIDs come in either).
fn same_identity(a: Option<&EventParticipant>, b: Option<&EventParticipant>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.class == b.class && a.id.eq_ignore_ascii_case(&b.id),
        _ => false,
    }
}

/// Ties each participant of an attendance report to a participant of the stored (live) events.
///
/// First by identity: a reported participant whose class and id a stored event has is that
/// participant (staff by object id, ACS guests by their `8:acs:` id, which both sources give).
/// Then, for reported guests whose id the live events never used (an anonymous join that the
/// report names by its record id), by time: each pair of a reported guest and a stored guest not
/// yet tied is scored by the closest pair of their events of the same kind within `tolerance`,
/// and pairs are tied closest first, each side at most once. Never by role alone: a reported
/// guest near no stored guest's events stays untied (its events are new), and staff are only
/// ever tied by identity.
pub(crate) fn bind_participants(
    stored: &[StoredEvent],
    reported: &[ParticipantEvent],
    tolerance: chrono::Duration,
) -> HashMap<EventParticipant, EventParticipant> {
    let mut stored_people: Vec<&EventParticipant> = Vec::new();
    for who in stored.iter().filter_map(|s| s.participant.as_ref()) {
        if !stored_people
            .iter()
            .any(|p| same_identity(Some(p), Some(who)))
        {
            stored_people.push(who);
        }
    }
    let mut reported_people: Vec<EventParticipant> = Vec::new();
    for who in reported
        .iter()
        .filter_map(|e| e.participant.as_ref())
        .map(|p| participant_of(&p.kind))
    {
        if !reported_people.contains(&who) {
            reported_people.push(who);
        }
    }
    let mut tied: HashMap<EventParticipant, EventParticipant> = HashMap::new();
    let mut taken: Vec<&EventParticipant> = Vec::new();
    for who in &reported_people {
        if let Some(same) = stored_people
            .iter()
            .find(|s| same_identity(Some(s), Some(who)))
        {
            tied.insert(who.clone(), (*same).clone());
            taken.push(same);
        }
    }
    // Guests by time, closest pair first.
    let mut pairs: Vec<(chrono::Duration, usize, usize)> = Vec::new();
    for (r, who) in reported_people.iter().enumerate() {
        if tied.contains_key(who) || !is_guest(who.class) {
            continue;
        }
        for (s, candidate) in stored_people.iter().enumerate() {
            if !is_guest(candidate.class) || taken.iter().any(|t| t == candidate) {
                continue;
            }
            let closest = reported
                .iter()
                .filter(|e| {
                    e.participant
                        .as_ref()
                        .is_some_and(|p| participant_of(&p.kind) == *who)
                })
                .flat_map(|e| {
                    stored
                        .iter()
                        .filter(|st| {
                            st.kind == kind_of(e.kind)
                                && same_identity(st.participant.as_ref(), Some(candidate))
                        })
                        .map(move |st| (st.occurred_at - e.at).abs())
                })
                .filter(|gap| *gap <= tolerance)
                .min();
            if let Some(gap) = closest {
                pairs.push((gap, r, s));
            }
        }
    }
    pairs.sort();
    for (_, r, s) in pairs {
        let (who, candidate) = (&reported_people[r], stored_people[s]);
        if tied.contains_key(who) || taken.contains(&candidate) {
            continue;
        }
        tied.insert(who.clone(), candidate.clone());
        taken.push(candidate);
    }
    tied
}

/// `event` about `who` instead of the participant the report named.
fn as_participant(event: &ParticipantEvent, who: &EventParticipant) -> ParticipantEvent {
    let kind = match who.class {
        ParticipantClass::OrganizationUser => ParticipantKind::OrganizationUser {
            object_id: UserObjectId::new(who.id.as_str()),
            tenant_id: None,
        },
        ParticipantClass::Anonymous => ParticipantKind::Anonymous {
            opaque_id: who.id.clone(),
        },
        ParticipantClass::AcsGuest => ParticipantKind::AcsGuest {
            opaque_id: who.id.clone(),
        },
        ParticipantClass::Application => ParticipantKind::Application {
            app_id: who.id.clone(),
        },
    };
    ParticipantEvent {
        participant: Some(Participant {
            participant_id: None,
            kind,
        }),
        ..event.clone()
    }
}
