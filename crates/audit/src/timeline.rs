//! A visit's timeline from its events: who was connected when, when the visit really started,
//! how long the patient waited, how long it lasted. Pure: no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
pub use visitbridge_store::VisitStatus;
use visitbridge_store::{
    EventParticipant, EventSummary, ParticipantClass, StoredEvent, VisitEventKind, VisitOutcome,
};

/// What a timeline reads of an event: a stored event, or its summary without the AuditEvent
/// (what a report reads).
pub trait TimelineEvent {
    /// What happened.
    fn kind(&self) -> VisitEventKind;
    /// Who (none for call start and end).
    fn participant(&self) -> Option<&EventParticipant>;
    /// When it happened.
    fn occurred_at(&self) -> DateTime<Utc>;
}

impl TimelineEvent for StoredEvent {
    fn kind(&self) -> VisitEventKind {
        self.kind
    }
    fn participant(&self) -> Option<&EventParticipant> {
        self.participant.as_ref()
    }
    fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }
}

impl TimelineEvent for EventSummary {
    fn kind(&self) -> VisitEventKind {
        self.kind
    }
    fn participant(&self) -> Option<&EventParticipant> {
        self.participant.as_ref()
    }
    fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }
}

/// What a participant is to the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParticipantRole {
    /// A user of an Entra organisation: a clinician or other staff (an interpreter from a
    /// federated organisation counts here too).
    Staff,
    /// Someone without an account: the patient, a proxy, a family member.
    PatientOrGuest,
    /// A bot (recording, transcription): not an attendee.
    Application,
}

impl ParticipantRole {
    fn of(class: ParticipantClass) -> Self {
        match class {
            ParticipantClass::OrganizationUser => Self::Staff,
            ParticipantClass::Anonymous | ParticipantClass::AcsGuest => Self::PatientOrGuest,
            ParticipantClass::Application => Self::Application,
        }
    }
}

/// A stretch of time a participant was connected; `to` is `None` while they still are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnectedInterval {
    /// Connected from.
    pub from: DateTime<Utc>,
    /// Disconnected at.
    pub to: Option<DateTime<Utc>>,
}

impl ConnectedInterval {
    fn overlap_start(&self, other: &Self) -> Option<DateTime<Utc>> {
        let start = self.from.max(other.from);
        let end = match (self.to, other.to) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        end.is_none_or(|end| start < end).then_some(start)
    }
}

/// A stretch of time a participant waited in the lobby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LobbyWait {
    /// Waiting from.
    pub from: DateTime<Utc>,
    /// Admitted, or gave up, at; `None` while still waiting.
    pub until: Option<DateTime<Utc>>,
    /// Whether the wait ended with admission (else they left, or the call ended).
    pub admitted: bool,
}

/// One participant's connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantTimeline {
    /// Who (class and id, never a name).
    pub participant: EventParticipant,
    /// Their role.
    pub role: ParticipantRole,
    /// Their connections, in time order.
    pub intervals: Vec<ConnectedInterval>,
    /// Their waits in the lobby, in time order (only where Graph reported the lobby).
    pub lobby: Vec<LobbyWait>,
}

impl ParticipantTimeline {
    /// Whether they are waiting in the lobby now.
    pub fn is_waiting(&self) -> bool {
        self.lobby.last().is_some_and(|w| w.until.is_none())
    }

    /// Whether they are connected now (their last interval is open).
    pub fn is_connected(&self) -> bool {
        self.intervals.last().is_some_and(|i| i.to.is_none())
    }

    /// Their total connected time, counting an open interval up to `now`.
    pub fn connected_time(&self, now: DateTime<Utc>) -> Duration {
        self.intervals
            .iter()
            .map(|i| i.to.unwrap_or(now) - i.from)
            .fold(Duration::zero(), |a, b| a + b)
    }
}

/// The timeline of one visit, derived from its stored events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisitTimeline {
    /// Every participant with their connections (bots included, with their role).
    pub participants: Vec<ParticipantTimeline>,
    /// When Graph said the call started (first).
    pub call_started_at: Option<DateTime<Utc>>,
    /// When Graph said the call ended (last).
    pub call_ended_at: Option<DateTime<Utc>>,
    /// When the first patient or guest connected.
    pub first_patient_joined_at: Option<DateTime<Utc>>,
    /// The visit's start: the first moment a staff member and a patient or guest were both
    /// connected.
    pub start: Option<DateTime<Utc>>,
    /// When the last person left, once nobody is connected or waiting.
    pub end: Option<DateTime<Utc>>,
    /// How long the first patient waited. Where Graph reported the lobby: from the first patient
    /// or guest's arrival in the lobby to their admission (`None` if they were never admitted).
    /// Otherwise from their first connection to [`Self::start`] (zero when staff was already
    /// there): the wait in the call.
    pub lobby_wait: Option<Duration>,
    /// Where the visit stands.
    pub status: VisitStatus,
}

/// Order within one instant: a leave before a join (a reconnect stays connected), the lobby
/// before admission, call start first and call end last.
fn rank(kind: VisitEventKind) -> u8 {
    match kind {
        VisitEventKind::CallStarted => 0,
        VisitEventKind::ParticipantLeft => 1,
        VisitEventKind::ParticipantInLobby => 2,
        VisitEventKind::ParticipantJoined => 3,
        VisitEventKind::CallEnded => 4,
    }
}

/// A participant's state while the events are replayed.
#[derive(Default)]
struct Replay {
    intervals: Vec<ConnectedInterval>,
    lobby: Vec<LobbyWait>,
}

impl Replay {
    fn connected(&self) -> bool {
        self.intervals.last().is_some_and(|i| i.to.is_none())
    }

    fn end_wait(&mut self, at: DateTime<Utc>, admitted: bool) {
        if let Some(wait) = self.lobby.last_mut().filter(|w| w.until.is_none()) {
            wait.until = Some(at);
            wait.admitted = admitted;
        }
    }
}

impl VisitTimeline {
    /// Builds the timeline from a visit's events, in any order.
    ///
    /// A join while already connected (a repeated or reconciled event) and a leave while not
    /// connected are ignored; a join ends a wait in the lobby (admission), a leave ends it too
    /// (gave up); the call's end closes every open connection and wait.
    pub fn from_events<E: TimelineEvent>(events: &[E]) -> Self {
        let mut sorted: Vec<&E> = events.iter().collect();
        sorted.sort_by_key(|e| (e.occurred_at(), rank(e.kind())));

        let mut people: BTreeMap<&EventParticipant, Replay> = BTreeMap::new();
        let mut call_started_at = None;
        let mut call_ended_at = None;
        for event in sorted {
            let at = event.occurred_at();
            match (event.kind(), event.participant()) {
                (VisitEventKind::CallStarted, _) => {
                    call_started_at = call_started_at.or(Some(at));
                }
                (VisitEventKind::CallEnded, _) => {
                    call_ended_at = Some(at);
                    for person in people.values_mut() {
                        person.end_wait(at, false);
                        if let Some(open) = person.intervals.last_mut().filter(|i| i.to.is_none()) {
                            open.to = Some(at);
                        }
                    }
                }
                (VisitEventKind::ParticipantInLobby, Some(p)) => {
                    let person = people.entry(p).or_default();
                    let waiting = person.lobby.last().is_some_and(|w| w.until.is_none());
                    if !person.connected() && !waiting {
                        person.lobby.push(LobbyWait {
                            from: at,
                            until: None,
                            admitted: false,
                        });
                    }
                }
                (VisitEventKind::ParticipantJoined, Some(p)) => {
                    let person = people.entry(p).or_default();
                    person.end_wait(at, true);
                    if !person.connected() {
                        person
                            .intervals
                            .push(ConnectedInterval { from: at, to: None });
                    }
                }
                (VisitEventKind::ParticipantLeft, Some(p)) => {
                    if let Some(person) = people.get_mut(p) {
                        person.end_wait(at, false);
                        if let Some(open) = person.intervals.last_mut().filter(|i| i.to.is_none()) {
                            open.to = Some(at);
                        }
                    }
                }
                (
                    VisitEventKind::ParticipantInLobby
                    | VisitEventKind::ParticipantJoined
                    | VisitEventKind::ParticipantLeft,
                    None,
                ) => {}
            }
        }

        let participants: Vec<ParticipantTimeline> = people
            .into_iter()
            .map(|(participant, replay)| ParticipantTimeline {
                role: ParticipantRole::of(participant.class),
                participant: participant.clone(),
                intervals: replay.intervals,
                lobby: replay.lobby,
            })
            .collect();
        let intervals_of = |role: ParticipantRole| {
            participants
                .iter()
                .filter(move |p| p.role == role)
                .flat_map(|p| p.intervals.iter())
        };

        let start = intervals_of(ParticipantRole::Staff)
            .flat_map(|s| {
                intervals_of(ParticipantRole::PatientOrGuest).filter_map(|p| s.overlap_start(p))
            })
            .min();
        let first_patient_joined_at = intervals_of(ParticipantRole::PatientOrGuest)
            .map(|i| i.from)
            .min();
        let first_lobby_wait = participants
            .iter()
            .filter(|p| p.role == ParticipantRole::PatientOrGuest)
            .flat_map(|p| p.lobby.iter())
            .min_by_key(|w| w.from);
        let lobby_wait = match (first_lobby_wait, start, first_patient_joined_at) {
            (Some(wait), _, _) => wait
                .until
                .filter(|_| wait.admitted)
                .map(|until| until - wait.from),
            (None, Some(start), Some(first)) => Some((start - first).max(Duration::zero())),
            (None, _, _) => None,
        };

        let humans = || {
            participants
                .iter()
                .filter(|p| p.role != ParticipantRole::Application)
        };
        let anyone_connected = humans().any(|p| p.is_connected() || p.is_waiting());
        let anyone_came = humans().any(|p| !p.intervals.is_empty() || !p.lobby.is_empty());
        let end = if anyone_connected {
            None
        } else {
            humans()
                .flat_map(|p| p.intervals.iter().filter_map(|i| i.to))
                .max()
        };
        let status = match (start.is_some(), anyone_connected) {
            (true, true) => VisitStatus::InProgress,
            (true, false) => VisitStatus::Completed,
            (false, true) => VisitStatus::Waiting,
            (false, false) if anyone_came || call_ended_at.is_some() => VisitStatus::NoShow,
            (false, false) => VisitStatus::NotStarted,
        };

        Self {
            participants,
            call_started_at,
            call_ended_at,
            first_patient_joined_at,
            start,
            end,
            lobby_wait,
            status,
        }
    }

    /// From [`Self::start`] to [`Self::end`], once both are known.
    pub fn duration(&self) -> Option<Duration> {
        Some(self.end? - self.start?)
    }

    /// People who connected at least once (bots not counted).
    pub fn attendee_count(&self) -> usize {
        self.participants
            .iter()
            .filter(|p| p.role != ParticipantRole::Application && !p.intervals.is_empty())
            .count()
    }

    /// What reports filter and sort on (stored on the visit's row).
    pub fn outcome(&self) -> VisitOutcome {
        VisitOutcome {
            status: self.status,
            start: self.start,
            end: self.end,
            lobby_wait: self.lobby_wait,
            attendees: u32::try_from(self.attendee_count()).unwrap_or(u32::MAX),
        }
    }

    /// People connected now.
    pub fn connected_now(&self) -> impl Iterator<Item = &ParticipantTimeline> {
        self.participants
            .iter()
            .filter(|p| p.role != ParticipantRole::Application && p.is_connected())
    }

    /// People waiting in the lobby now.
    pub fn waiting_now(&self) -> impl Iterator<Item = &ParticipantTimeline> {
        self.participants.iter().filter(|p| p.is_waiting())
    }
}

/// Names a visit's participants by role, never by who they are, in order of their first event:
/// the organiser (`organizer`, an Entra object id) is "Clinician", other staff "Staff member N",
/// people without an account "Patient / guest N", bots "App N".
pub fn participant_labels<'a, E: TimelineEvent>(
    events: &'a [E],
    organizer: Option<&str>,
) -> Vec<(&'a EventParticipant, String)> {
    let mut sorted: Vec<&E> = events.iter().collect();
    sorted.sort_by_key(|e| e.occurred_at());
    let mut labels: Vec<(&EventParticipant, String)> = Vec::new();
    let (mut staff, mut guests, mut apps) = (0, 0, 0);
    for p in sorted.iter().filter_map(|e| e.participant()) {
        if labels.iter().any(|(known, _)| *known == p) {
            continue;
        }
        let label = match p.class {
            ParticipantClass::OrganizationUser
                if organizer.is_some_and(|o| o.eq_ignore_ascii_case(&p.id)) =>
            {
                "Clinician".to_owned()
            }
            ParticipantClass::OrganizationUser => {
                staff += 1;
                format!("Staff member {staff}")
            }
            ParticipantClass::Anonymous | ParticipantClass::AcsGuest => {
                guests += 1;
                format!("Patient / guest {guests}")
            }
            ParticipantClass::Application => {
                apps += 1;
                format!("App {apps}")
            }
        };
        labels.push((p, label));
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use visitbridge_store::{EventId, EventOrigin, VisitId};

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 5, 18, 0, 0).unwrap() + Duration::minutes(minute)
    }

    /// `+dr@0` joins staff `dr` at minute 0, `-pt@20` makes guest `pt` leave, `~pt@0` puts them in
    /// the lobby, `start@0` / `end@30`
    /// are the call. Names starting with `dr` are staff, `bot` applications, anything else guests.
    fn events(script: &str) -> Vec<StoredEvent> {
        script
            .split_whitespace()
            .enumerate()
            .map(|(n, step)| {
                let (what, minute) = step.split_once('@').unwrap();
                let minute: i64 = minute.parse().unwrap();
                let (kind, who) = match what {
                    "start" => (VisitEventKind::CallStarted, None),
                    "end" => (VisitEventKind::CallEnded, None),
                    w if w.starts_with('~') => (VisitEventKind::ParticipantInLobby, Some(&w[1..])),
                    w if w.starts_with('+') => (VisitEventKind::ParticipantJoined, Some(&w[1..])),
                    w => (VisitEventKind::ParticipantLeft, Some(&w[1..])),
                };
                StoredEvent {
                    event_id: EventId::new(format!("e-{n}")).unwrap(),
                    visit_id: VisitId::new("v").unwrap(),
                    kind,
                    participant: who.map(|who| EventParticipant {
                        class: if who.starts_with("dr") {
                            ParticipantClass::OrganizationUser
                        } else if who.starts_with("bot") {
                            ParticipantClass::Application
                        } else {
                            ParticipantClass::AcsGuest
                        },
                        id: who.to_owned(),
                    }),
                    occurred_at: at(minute),
                    recorded_at: at(minute),
                    origin: EventOrigin::Notification,
                    audit_event: serde_json::json!({}),
                }
            })
            .collect()
    }

    /// Status, start, end, lobby wait and duration (minutes), and attendees.
    type Expected = (
        VisitStatus,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        usize,
    );

    fn check(script: &str, expected: Expected) {
        let t = VisitTimeline::from_events(&events(script));
        let minutes = |d: Option<Duration>| d.map(|d| d.num_minutes());
        let offset = |t: Option<DateTime<Utc>>| t.map(|t| (t - at(0)).num_minutes());
        let got = (
            t.status,
            offset(t.start),
            offset(t.end),
            minutes(t.lobby_wait),
            minutes(t.duration()),
            t.attendee_count(),
        );
        assert_eq!(got, expected, "{script}");
        // The same events in reverse order give the same timeline.
        let mut reversed = events(script);
        reversed.reverse();
        assert_eq!(
            VisitTimeline::from_events(&reversed),
            t,
            "{script} (reversed)"
        );
    }

    #[test]
    fn timelines() {
        use VisitStatus::*;
        check("", (NotStarted, None, None, None, None, 0));
        // The patient waits 5 minutes for the clinician; the visit runs 15 minutes.
        check(
            "start@0 +pt@0 +dr@5 -dr@19 -pt@20 end@20",
            (Completed, Some(5), Some(20), Some(5), Some(15), 2),
        );
        // The clinician was there first: no wait.
        check(
            "+dr@0 +pt@3 -pt@10 -dr@12",
            (Completed, Some(3), Some(12), Some(0), Some(9), 2),
        );
        // Still going, then the call end closes everyone.
        check("+pt@0 +dr@2", (InProgress, Some(2), None, Some(2), None, 2));
        check(
            "+pt@0 +dr@2 end@30",
            (Completed, Some(2), Some(30), Some(2), Some(28), 2),
        );
        // Waiting for the clinician, then nobody came: a no-show.
        check("+pt@0", (Waiting, None, None, None, None, 1));
        check("+pt@0 -pt@15", (NoShow, None, Some(15), None, None, 1));
        check(
            "+dr@0 -dr@10 +pt@11 -pt@12",
            (NoShow, None, Some(12), None, None, 2),
        );
        check("start@0 end@1", (NoShow, None, None, None, None, 0));
        // Repeated joins, a leave without a join, a reconnect at one instant and a bot.
        check(
            "+pt@0 +pt@1 -dr@2 +bot@2 +dr@4 -pt@6 +pt@6 -dr@9 -pt@10 -bot@11",
            (Completed, Some(4), Some(10), Some(4), Some(6), 2),
        );
        // Staff alone with a bot is not a visit.
        check(
            "+dr@0 +bot@1 -bot@2 -dr@3",
            (NoShow, None, Some(3), None, None, 1),
        );
        // With the lobby reported: the wait is lobby arrival to admission.
        check(
            "+dr@0 ~pt@2 +pt@9 -pt@20 -dr@21",
            (Completed, Some(9), Some(21), Some(7), Some(12), 2),
        );
        check("~pt@0", (Waiting, None, None, None, None, 0));
        check("~pt@0 ~pt@1 -pt@15", (NoShow, None, None, None, None, 0));
        check(
            "~pt@0 +dr@3 end@10",
            (NoShow, None, Some(10), None, None, 1),
        );
        // Admitted before staff arrived: the lobby wait ends at admission.
        check(
            "~pt@0 +pt@2 +dr@6 -dr@10 -pt@10",
            (Completed, Some(6), Some(10), Some(2), Some(4), 2),
        );
    }

    #[test]
    fn per_participant_intervals_and_who_is_connected() {
        let t = VisitTimeline::from_events(&events("+pt@0 +dr@5 -pt@7 +pt@8 -dr@20"));
        let pt = t
            .participants
            .iter()
            .find(|p| p.participant.id == "pt")
            .unwrap();
        assert_eq!(pt.role, ParticipantRole::PatientOrGuest);
        assert_eq!(
            pt.intervals,
            vec![
                ConnectedInterval {
                    from: at(0),
                    to: Some(at(7))
                },
                ConnectedInterval {
                    from: at(8),
                    to: None
                }
            ]
        );
        assert_eq!(pt.connected_time(at(10)), Duration::minutes(9));
        let now: Vec<&str> = t
            .connected_now()
            .map(|p| p.participant.id.as_str())
            .collect();
        assert_eq!(now, ["pt"]);
        assert_eq!(t.status, VisitStatus::InProgress);

        let t = VisitTimeline::from_events(&events("+dr@0 ~pt@1 ~guest@2 +guest@3"));
        let waiting: Vec<&str> = t.waiting_now().map(|p| p.participant.id.as_str()).collect();
        assert_eq!(waiting, ["pt"]);
        let guest = t
            .participants
            .iter()
            .find(|p| p.participant.id == "guest")
            .unwrap();
        assert_eq!(
            guest.lobby,
            vec![LobbyWait {
                from: at(2),
                until: Some(at(3)),
                admitted: true
            }]
        );
    }

    #[test]
    fn participants_are_labelled_by_role_in_order_of_arrival() {
        let events = events("+pt@3 +dr2@2 +dr1@1 +bot@4 +pt2@5 -pt@6 +dr3@7");
        let labels: Vec<(String, String)> = participant_labels(&events, Some("DR1"))
            .into_iter()
            .map(|(p, label)| (p.id.clone(), label))
            .collect();
        let expected = [
            ("dr1", "Clinician"),
            ("dr2", "Staff member 1"),
            ("pt", "Patient / guest 1"),
            ("bot", "App 1"),
            ("pt2", "Patient / guest 2"),
            ("dr3", "Staff member 2"),
        ];
        assert_eq!(
            labels,
            expected.map(|(id, label)| (id.to_owned(), label.to_owned()))
        );
        // The organiser is matched without regard to case; without one, all staff are numbered.
        assert_eq!(participant_labels(&events, None)[0].1, "Staff member 1");
    }
}
