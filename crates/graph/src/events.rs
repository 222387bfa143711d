//! Our own participant event type, and the parsers that turn Graph's roster payloads into it.
//!
//! Graph's roster updates carry each participant's display name. For a patient that is PHI, so the
//! parsers here read identities field by field and never copy a display name into any type: it is
//! dropped at the parser and never leaves it.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    error::GraphError,
    ids::{MeetingId, UserObjectId},
};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// The meeting's call started (first participant in).
    CallStarted,
    /// A participant is waiting in the meeting's lobby (Graph's roster lists them with
    /// `isInLobby: true`): not connected yet. Admission later gives [`Self::ParticipantJoined`].
    ParticipantInLobby,
    /// A participant connected to the call (admitted from the lobby, or bypassed it).
    ParticipantJoined,
    /// A participant left the call.
    ParticipantLeft,
    /// The meeting's call ended (last participant out).
    CallEnded,
}

impl EventKind {
    /// A stable lower-case name (`participant-joined`, …) for storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallStarted => "call-started",
            Self::ParticipantInLobby => "participant-in-lobby",
            Self::ParticipantJoined => "participant-joined",
            Self::ParticipantLeft => "participant-left",
            Self::CallEnded => "call-ended",
        }
    }
}

/// Which meeting an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum MeetingRef {
    /// The join URL the subscription's resource filtered on (live notifications).
    JoinWebUrl(String),
    /// Graph's meeting id (attendance reports).
    MeetingId(MeetingId),
    /// A notification resource we could not read a join URL from, kept as sent.
    Resource(String),
}

impl MeetingRef {
    /// Whether this refers to the meeting with `join_web_url`.
    ///
    /// Graph may echo the join URL with or without its `?context=` query and with different
    /// percent-encoding (`%3a` / `%3A` / `:`), so the paths are compared after percent-decoding.
    pub fn matches_join_url(&self, join_web_url: &str) -> bool {
        match self {
            Self::JoinWebUrl(url) => join_url_key(url) == join_url_key(join_web_url),
            Self::MeetingId(_) | Self::Resource(_) => false,
        }
    }
}

/// The percent-decoded part of a join URL before its query.
fn join_url_key(url: &str) -> Vec<u8> {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/');
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Who a participant is, without their name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParticipantKind {
    /// A user of an Entra ID organisation (staff; `tenant_id` tells ours from a federated one).
    OrganizationUser {
        /// The user's object id.
        object_id: UserObjectId,
        /// The user's tenant, when Graph says.
        tenant_id: Option<String>,
    },
    /// Someone without an Entra account (a patient joining in the browser, a phone dial-in).
    Anonymous {
        /// An id that tells participants apart within the meeting and identifies no one.
        opaque_id: String,
    },
    /// An Azure Communication Services user (the virtual-appointment browser join).
    AcsGuest {
        /// The ACS identity (`8:acs:…`).
        opaque_id: String,
    },
    /// An app or bot (recording, transcription).
    Application {
        /// The app's id.
        app_id: String,
    },
}

/// A participant of a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Participant {
    /// Graph's participant (call leg) id, when known.
    pub participant_id: Option<String>,
    /// Who it is.
    pub kind: ParticipantKind,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// A live change notification.
    Notification,
    /// An attendance report fetched after the meeting (reconciliation).
    AttendanceReport,
}

/// A normalised meeting event: the one type the rest of VisitBridge sees.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParticipantEvent {
    /// What happened.
    pub kind: EventKind,
    /// When Graph says it happened.
    pub at: DateTime<Utc>,
    /// Which meeting.
    pub meeting: MeetingRef,
    /// Who (none for call start/end).
    pub participant: Option<Participant>,
    /// Live or reconciled.
    pub source: EventSource,
}

/// Namespace of [`ParticipantEvent::event_id`] (a fixed random UUID, never to change).
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_3c2e_9a4d_4e57_8c0b_d2a1_7f35_e960);

impl ParticipantEvent {
    /// A deterministic id (UUID v5) for outbox idempotency: the same event delivered twice by
    /// Graph gets the same id.
    pub fn event_id(&self) -> uuid::Uuid {
        let meeting = match &self.meeting {
            MeetingRef::JoinWebUrl(u) => format!("url:{u}"),
            MeetingRef::MeetingId(m) => format!("id:{m}"),
            MeetingRef::Resource(r) => format!("res:{r}"),
        };
        let who = match &self.participant {
            None => String::new(),
            Some(p) => {
                let kind = match &p.kind {
                    ParticipantKind::OrganizationUser { object_id, .. } => {
                        format!("user:{object_id}")
                    }
                    ParticipantKind::Anonymous { opaque_id } => format!("anon:{opaque_id}"),
                    ParticipantKind::AcsGuest { opaque_id } => format!("acs:{opaque_id}"),
                    ParticipantKind::Application { app_id } => format!("app:{app_id}"),
                };
                format!("{}|{kind}", p.participant_id.as_deref().unwrap_or(""))
            }
        };
        let name = format!(
            "{}\0{}\0{meeting}\0{who}",
            self.kind.as_str(),
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        );
        uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
    }
}

/// `obj[key]` with the key compared case-insensitively (Graph sends `User` and `user`).
pub(crate) fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

pub(crate) fn get_str_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    get_ci(obj, key)?.as_str().filter(|s| !s.is_empty())
}

/// Reads Graph's date-times: RFC 3339, or without an offset (then UTC), up to 7+ fraction digits.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// Turns one roster payload (decrypted content or `resourceData`) into events.
///
/// Unknown event types give no events (Graph adds types over time); a payload without an
/// `eventDateTime` is an error, since an event without a time cannot be written back.
pub(crate) fn from_roster_payload(
    payload: &Value,
    meeting: &MeetingRef,
) -> Result<Vec<ParticipantEvent>, GraphError> {
    let Some(event_type) = get_str_ci(payload, "eventType") else {
        return Ok(Vec::new());
    };
    let at = get_str_ci(payload, "eventDateTime")
        .and_then(parse_time)
        .ok_or_else(|| GraphError::Parse {
            what: "a roster notification",
            detail: "eventDateTime is missing or not a date-time".into(),
        })?;
    let event = |kind, participant| ParticipantEvent {
        kind,
        at,
        meeting: meeting.clone(),
        participant,
        source: EventSource::Notification,
    };
    let short = event_type.rsplit('.').next().unwrap_or(event_type);
    let mut events = Vec::new();
    if short.eq_ignore_ascii_case("CallStarted") {
        events.push(event(EventKind::CallStarted, None));
    } else if short.eq_ignore_ascii_case("CallEnded") {
        events.push(event(EventKind::CallEnded, None));
    } else if short.eq_ignore_ascii_case("CallRosterUpdate") {
        // A participant shows up in `@joined` (or `@updated`) once while waiting in the lobby
        // (`isInLobby: true`) and again when admitted (`isInLobby` false or absent).
        for (key, kind) in [
            ("activeParticipants@joined", EventKind::ParticipantJoined),
            ("activeParticipants@updated", EventKind::ParticipantJoined),
            ("activeParticipants@exited", EventKind::ParticipantLeft),
        ] {
            let Some(list) = get_ci(payload, key).and_then(Value::as_array) else {
                continue;
            };
            for entry in list {
                let kind = if kind == EventKind::ParticipantJoined && is_in_lobby(entry) {
                    EventKind::ParticipantInLobby
                } else {
                    kind
                };
                events.push(event(kind, Some(roster_participant(entry))));
            }
        }
    } else {
        tracing::debug!(
            event_type = short,
            "ignoring an unknown online meeting event type"
        );
    }
    Ok(events)
}

/// Whether a roster entry is waiting in the lobby (`isInLobby`, a boolean or `"true"`).
fn is_in_lobby(entry: &Value) -> bool {
    match get_ci(entry, "isInLobby") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// One `activeParticipants@…` entry: `{"id", "identity": {"<kind>": {"id", "displayName", …}}}`.
fn roster_participant(entry: &Value) -> Participant {
    let participant_id = get_str_ci(entry, "id").map(str::to_owned);
    let identity = get_ci(entry, "identity").unwrap_or(&Value::Null);
    let kind = identity_set_kind(identity, participant_id.as_deref());
    Participant {
        participant_id,
        kind,
    }
}

/// Reads an identitySet (`user`, `guest`, `azureCommunicationServicesUser`/`acsUser`, `phone`,
/// `application`, …); everything but the ids is dropped.
pub(crate) fn identity_set_kind(identity: &Value, participant_id: Option<&str>) -> ParticipantKind {
    let opaque_fallback = || participant_id.unwrap_or("unknown").to_owned();
    let field = |key: &str| get_ci(identity, key).filter(|v| v.is_object());
    if let Some(user) = field("user")
        && let Some(id) = get_str_ci(user, "id")
    {
        return ParticipantKind::OrganizationUser {
            object_id: UserObjectId::new(id),
            tenant_id: get_str_ci(user, "tenantId").map(str::to_owned),
        };
    }
    for key in ["azureCommunicationServicesUser", "acsUser"] {
        if let Some(acs) = field(key) {
            return ParticipantKind::AcsGuest {
                opaque_id: get_str_ci(acs, "id")
                    .map(str::to_owned)
                    .unwrap_or_else(opaque_fallback),
            };
        }
    }
    for key in ["application", "applicationInstance"] {
        if let Some(app) = field(key)
            && let Some(id) = get_str_ci(app, "id")
        {
            return ParticipantKind::Application {
                app_id: id.to_owned(),
            };
        }
    }
    if let Some(guest) = field("guest")
        && let Some(id) = get_str_ci(guest, "id")
    {
        return ParticipantKind::Anonymous {
            opaque_id: id.to_owned(),
        };
    }
    // Phone identities carry the caller's number as their id, and unknown kinds may carry anything:
    // only the call leg id is kept.
    ParticipantKind::Anonymous {
        opaque_id: opaque_fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(identity: Value, expected: ParticipantKind) {
        assert_eq!(
            identity_set_kind(&identity, Some("leg-1")),
            expected,
            "{identity}"
        );
    }

    #[test]
    fn identities_are_read_case_insensitively_without_names() {
        check(
            json!({"User": {"Id": "oid-1", "DisplayName": "Dr. Ross", "TenantId": "t"}}),
            ParticipantKind::OrganizationUser {
                object_id: UserObjectId::new("oid-1"),
                tenant_id: Some("t".into()),
            },
        );
        check(
            json!({"user": {"id": "oid-2", "displayName": null}}),
            ParticipantKind::OrganizationUser {
                object_id: UserObjectId::new("oid-2"),
                tenant_id: None,
            },
        );
        check(
            json!({"AzureCommunicationServicesUser": {"Id": "8:acs:x", "DisplayName": "Guest"}}),
            ParticipantKind::AcsGuest {
                opaque_id: "8:acs:x".into(),
            },
        );
        check(
            json!({"acsUser": {"id": "8:acs:y"}}),
            ParticipantKind::AcsGuest {
                opaque_id: "8:acs:y".into(),
            },
        );
        check(
            json!({"guest": {"id": "g-1", "displayName": "Camila Lopez"}}),
            ParticipantKind::Anonymous {
                opaque_id: "g-1".into(),
            },
        );
        check(
            json!({"phone": {"id": "+14695555555"}}),
            ParticipantKind::Anonymous {
                opaque_id: "leg-1".into(),
            },
        );
        check(
            json!({"application": {"id": "app-1", "displayName": "Recorder"}}),
            ParticipantKind::Application {
                app_id: "app-1".into(),
            },
        );
        check(
            json!({}),
            ParticipantKind::Anonymous {
                opaque_id: "leg-1".into(),
            },
        );
    }

    #[test]
    fn lobby_entries_are_not_connections_until_admitted() {
        let meeting = MeetingRef::JoinWebUrl("https://teams.example/l/meetup-join/x".into());
        let guest = |in_lobby: Value| {
            json!({"id": "leg-9", "isInLobby": in_lobby,
                   "identity": {"acsUser": {"id": "8:acs:g", "displayName": "Camila Lopez"}}})
        };
        let roster = |key: &str, entry: Value| {
            json!({"eventType": "Microsoft.Communication.CallRosterUpdate",
                   "eventDateTime": "2026-03-05T18:02:11Z", key: [entry]})
        };
        let kinds = |payload: Value| -> Vec<EventKind> {
            from_roster_payload(&payload, &meeting)
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .collect()
        };
        assert_eq!(
            kinds(roster("activeParticipants@joined", guest(json!(true)))),
            vec![EventKind::ParticipantInLobby]
        );
        assert_eq!(
            kinds(roster("activeParticipants@joined", guest(json!("True")))),
            vec![EventKind::ParticipantInLobby]
        );
        assert_eq!(
            kinds(roster("activeParticipants@joined", guest(json!(false)))),
            vec![EventKind::ParticipantJoined]
        );
        assert_eq!(
            kinds(roster("activeParticipants@updated", guest(json!(false)))),
            vec![EventKind::ParticipantJoined]
        );
        // Leaving from the lobby is still leaving.
        assert_eq!(
            kinds(roster("activeParticipants@exited", guest(json!(true)))),
            vec![EventKind::ParticipantLeft]
        );
        let lobby = &from_roster_payload(
            &roster("activeParticipants@joined", guest(json!(true))),
            &meeting,
        )
        .unwrap()[0];
        assert!(!format!("{lobby:?}").contains("Camila"));
        let mut joined = lobby.clone();
        joined.kind = EventKind::ParticipantJoined;
        assert_ne!(lobby.event_id(), joined.event_id());
    }

    #[test]
    fn graph_times_with_seven_digits_or_no_offset_parse() {
        assert!(parse_time("2026-03-05T18:02:11.5120000Z").is_some());
        assert!(parse_time("2026-03-05T18:02:11.5120000").is_some());
        assert!(parse_time("2026-03-05T18:02:11+01:00").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn join_urls_match_without_query_and_case() {
        let r = MeetingRef::JoinWebUrl(
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0".into(),
        );
        assert!(r.matches_join_url(
            "https://teams.microsoft.com/l/meetup-join/19%3Ameeting_X%40thread.v2/0?context=%7b%7d"
        ));
        assert!(!r.matches_join_url(
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_Y%40thread.v2/0"
        ));
        assert!(!r.matches_join_url(
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0"
        ));
    }

    #[test]
    fn event_ids_are_deterministic() {
        let e = ParticipantEvent {
            kind: EventKind::ParticipantJoined,
            at: parse_time("2026-03-05T18:02:11Z").unwrap(),
            meeting: MeetingRef::MeetingId(MeetingId::new("m")),
            participant: None,
            source: EventSource::Notification,
        };
        let mut other = e.clone();
        assert_eq!(e.event_id(), other.event_id());
        other.kind = EventKind::ParticipantLeft;
        assert_ne!(e.event_id(), other.event_id());
    }
}
