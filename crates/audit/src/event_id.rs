//! The deterministic id of a visit event: the key that makes recording and delivery idempotent.

use std::fmt;

use chrono::{DateTime, Utc};
use visitbridge_store::{EventId, EventParticipant, StoreError, VisitEventKind, VisitId};

/// Namespace of [`VisitEventId`] (a fixed random UUID). Changing it would give every event a new
/// id, and so deliver every event again.
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x3f0d_9c2a_71b4_4e8d_a6c1_9e2b_7d40_f813);

/// The id of a participant event: a UUID v5 over the visit, the kind, the participant and the
/// event time (milliseconds, as stored).
///
/// The visit stands for the meeting, so the same event is the same id whether Graph named the
/// meeting by its join URL (notifications) or its id (attendance reports). The participant is
/// identified by class and object/opaque id, not by Graph's call-leg id, which attendance reports
/// do not have. A notification Graph delivers twice therefore maps to the same id and is stored
/// and written back once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitEventId(uuid::Uuid);

impl VisitEventId {
    /// Derives the id.
    pub fn derive(
        visit: &VisitId,
        kind: VisitEventKind,
        participant: Option<&EventParticipant>,
        at: DateTime<Utc>,
    ) -> Self {
        let who = participant
            .map(|p| format!("{}:{}", p.class.as_str(), p.id))
            .unwrap_or_default();
        let name = format!(
            "visitbridge/visit-event/v1\0{visit}\0{}\0{who}\0{}",
            kind.as_str(),
            at.timestamp_millis()
        );
        Self(uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }

    /// The UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// The id as the store keeps it (the hyphenated UUID, which always passes its check).
    pub fn to_event_id(&self) -> Result<EventId, StoreError> {
        EventId::new(self.0.to_string())
    }
}

impl fmt::Display for VisitEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use visitbridge_store::ParticipantClass;

    #[test]
    fn ids_are_stable_and_tell_events_apart() {
        let visit = VisitId::new("v-1").unwrap();
        let guest = EventParticipant {
            class: ParticipantClass::AcsGuest,
            id: "8:acs:1".into(),
        };
        let at = Utc.with_ymd_and_hms(2026, 3, 5, 18, 2, 11).unwrap();
        let id = |visit: &VisitId, kind, p: Option<&EventParticipant>, at| {
            VisitEventId::derive(visit, kind, p, at)
        };
        let a = id(&visit, VisitEventKind::ParticipantJoined, Some(&guest), at);
        assert_eq!(
            a,
            id(&visit, VisitEventKind::ParticipantJoined, Some(&guest), at)
        );
        let others = [
            id(&visit, VisitEventKind::ParticipantLeft, Some(&guest), at),
            id(&visit, VisitEventKind::ParticipantJoined, None, at),
            id(
                &VisitId::new("v-2").unwrap(),
                VisitEventKind::ParticipantJoined,
                Some(&guest),
                at,
            ),
            id(
                &visit,
                VisitEventKind::ParticipantJoined,
                Some(&guest),
                at + chrono::Duration::milliseconds(1),
            ),
        ];
        for other in others {
            assert_ne!(a, other);
        }
        // Sub-millisecond differences are the same event (the store keeps milliseconds).
        assert_eq!(
            a,
            id(
                &visit,
                VisitEventKind::ParticipantJoined,
                Some(&guest),
                at + chrono::Duration::microseconds(300)
            )
        );
        assert_eq!(a.as_uuid().get_version_num(), 5);
    }
}
