//! The records both backends exchange with their rows: column lists, rows as read before their
//! values are checked, the checks on what is written, and the conversions between them. Only the
//! reading of one column is backend-specific ([`Columns`]).

use chrono::{DateTime, Utc};
use visitbridge_approval::{Configuration, ConfigurationId, Transitioned};

use crate::{
    MicrosoftObjectId, StoreError,
    visits::{
        EventId, EventOrigin, EventParticipant, EventSummary, MAX_ERROR_LEN, OutboxId, OutboxItem,
        OutboxState, ParticipantClass, SinkName, StoredEvent, Visit, VisitEventKind, VisitId,
        check_id,
    },
};

/// Reads the columns of a result row, as the backend's row type does: text and 64-bit integers,
/// maybe `NULL`. JSON columns are read as text.
pub(crate) trait Columns {
    /// The backend's error.
    type Error;
    fn text(&self, index: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, index: usize) -> Result<Option<String>, Self::Error>;
    fn int(&self, index: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error>;
}

pub(crate) const VISIT: &str = "visit";

pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(what: &'static str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or(StoreError::Corrupt {
        what,
        detail: "timestamp out of range".to_owned(),
    })
}

pub(crate) fn to_json<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(what, &e))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, &e))
}

/// How many columns [`VISIT_COLUMNS`] names (what follows them in a row starts here).
pub(crate) const VISIT_COLUMN_COUNT: usize = 16;

/// The columns of a visit, in the order [`RawVisit::from_row`] reads them.
pub(crate) const VISIT_COLUMNS: &str = "v.id, v.configuration_id, v.external_meeting_id, \
     v.graph_meeting_id, v.join_web_url, v.organizer_object_id, v.practitioner_fhir_id, \
     v.appointment_fhir_id, v.encounter_fhir_id, v.patient_fhir_id, v.conference_id, \
     v.created_at, v.ended_at, v.patient_key, v.appointment_key, v.department";

/// The retention purge's statements, with `{before}`, `{open_before}` and `{limit}` for each
/// backend's parameters and `{null}` for its JSON `null` (see [`crate::RetentionRepo`]).
pub(crate) mod retention {
    /// Visit `v` is past retention at `{before}`: nothing will build or send its AuditEvents.
    /// Its meeting is no longer watched (created before `{open_before}`: a call that ended may
    /// be joined again while it is), and its last call ended before `{before}`.
    const PAST: &str = "v.created_at < {open_before}
        AND (v.ended_at IS NULL OR v.ended_at < {before})
        AND v.reconcile_after IS NULL
        AND NOT EXISTS (SELECT 1 FROM visit_events n
                        WHERE n.visit_id = v.id AND n.recorded_at >= {before})
        AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.visit_id = v.id AND o.state = 'pending')";

    /// Visit `v` still has a clear id (the condition of the `visits_with_references` index).
    pub(crate) const HAS_REFERENCES: &str = "(v.patient_fhir_id IS NOT NULL \
        OR v.appointment_fhir_id IS NOT NULL OR v.encounter_fhir_id IS NOT NULL \
        OR v.conference_id IS NOT NULL)";

    /// The statement that replaces the AuditEvents of events past retention.
    pub(crate) fn purge_events(before: &str, open_before: &str, limit: &str, null: &str) -> String {
        format!(
            "UPDATE visit_events SET audit_event = {null}
             WHERE event_id IN (
                 SELECT e.event_id FROM visit_events e JOIN visits v ON v.id = e.visit_id
                 WHERE e.audit_event <> {null} AND e.recorded_at < {before} AND {PAST}
                 LIMIT {limit})"
        )
        .replace("{before}", before)
        .replace("{open_before}", open_before)
    }

    /// The statement that removes the clear ids of visits past retention (those keyed only).
    pub(crate) fn purge_visits(before: &str, open_before: &str, limit: &str) -> String {
        format!(
            "UPDATE visits SET patient_fhir_id = NULL, appointment_fhir_id = NULL,
                 encounter_fhir_id = NULL, conference_id = NULL
             WHERE id IN (
                 SELECT v.id FROM visits v
                 WHERE {HAS_REFERENCES} AND v.created_at < {before}
                     AND (v.patient_fhir_id IS NULL OR v.patient_key IS NOT NULL)
                     AND (v.appointment_fhir_id IS NULL OR v.appointment_key IS NOT NULL)
                     AND {PAST}
                 LIMIT {limit})"
        )
        .replace("{before}", before)
        .replace("{open_before}", open_before)
    }

    /// The condition of a visit with a clear patient or appointment id but no keyed hash of it.
    pub(crate) const WITHOUT_KEYS: &str =
        "((v.patient_fhir_id IS NOT NULL AND v.patient_key IS NULL)
        OR (v.appointment_fhir_id IS NOT NULL AND v.appointment_key IS NULL))";
}

/// A visit row as read, before its values are checked.
pub(crate) struct RawVisit {
    pub(crate) id: String,
    pub(crate) configuration_id: String,
    pub(crate) external_meeting_id: String,
    pub(crate) graph_meeting_id: Option<String>,
    pub(crate) join_web_url: Option<String>,
    pub(crate) organizer_object_id: Option<String>,
    pub(crate) practitioner_fhir_id: Option<String>,
    pub(crate) appointment_fhir_id: Option<String>,
    pub(crate) encounter_fhir_id: Option<String>,
    pub(crate) patient_fhir_id: Option<String>,
    pub(crate) conference_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) ended_at: Option<i64>,
    pub(crate) patient_key: Option<String>,
    pub(crate) appointment_key: Option<String>,
    pub(crate) department: Option<String>,
}

impl RawVisit {
    /// Reads the [`VISIT_COLUMNS`] starting at column `at`.
    pub(crate) fn from_row<C: Columns>(row: &C, at: usize) -> Result<Self, C::Error> {
        Ok(Self {
            id: row.text(at)?,
            configuration_id: row.text(at + 1)?,
            external_meeting_id: row.text(at + 2)?,
            graph_meeting_id: row.opt_text(at + 3)?,
            join_web_url: row.opt_text(at + 4)?,
            organizer_object_id: row.opt_text(at + 5)?,
            practitioner_fhir_id: row.opt_text(at + 6)?,
            appointment_fhir_id: row.opt_text(at + 7)?,
            encounter_fhir_id: row.opt_text(at + 8)?,
            patient_fhir_id: row.opt_text(at + 9)?,
            conference_id: row.opt_text(at + 10)?,
            created_at: row.int(at + 11)?,
            ended_at: row.opt_int(at + 12)?,
            patient_key: row.opt_text(at + 13)?,
            appointment_key: row.opt_text(at + 14)?,
            department: row.opt_text(at + 15)?,
        })
    }

    pub(crate) fn into_visit(self) -> Result<Visit, StoreError> {
        Ok(Visit {
            id: VisitId::new(self.id)?,
            configuration_id: ConfigurationId::new(self.configuration_id).map_err(|_| {
                StoreError::Corrupt {
                    what: VISIT,
                    detail: "invalid configuration id".to_owned(),
                }
            })?,
            external_meeting_id: self.external_meeting_id,
            graph_meeting_id: self.graph_meeting_id,
            join_web_url: self.join_web_url,
            organizer_object_id: self
                .organizer_object_id
                .map(MicrosoftObjectId::new)
                .transpose()?,
            practitioner_fhir_id: self.practitioner_fhir_id,
            appointment_fhir_id: self.appointment_fhir_id,
            encounter_fhir_id: self.encounter_fhir_id,
            patient_fhir_id: self.patient_fhir_id,
            conference_id: self.conference_id,
            created_at: from_millis(VISIT, self.created_at)?,
            ended_at: self.ended_at.map(|t| from_millis(VISIT, t)).transpose()?,
            patient_key: self.patient_key,
            appointment_key: self.appointment_key,
            department: self.department,
        })
    }
}

/// The form of a join URL that lookups compare: without query, fragment and trailing slash, and
/// percent-decoded, because Graph echoes a meeting's join URL with `%3a` or `%3A` or `:` and with
/// or without its `?context=…`. Case is kept: Graph's thread ids are case-sensitive.
pub(crate) fn join_url_key(url: &str) -> String {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim()
        .trim_end_matches('/');
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
            && let Ok(byte) = u8::try_from(h * 16 + l)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Longest department name kept.
pub(crate) const MAX_DEPARTMENT_LEN: usize = 200;

pub(crate) fn check_visit(v: &Visit) -> Result<(), StoreError> {
    if v.external_meeting_id.is_empty() || v.external_meeting_id.len() > 512 {
        return Err(StoreError::InvalidRecord(
            "a visit needs an external meeting id of at most 512 characters",
        ));
    }
    let ids = [
        (
            &v.graph_meeting_id,
            "the graph meeting id is not a valid id",
        ),
        (
            &v.practitioner_fhir_id,
            "the practitioner id is not a valid id",
        ),
        (
            &v.appointment_fhir_id,
            "the appointment id is not a valid id",
        ),
        (&v.encounter_fhir_id, "the encounter id is not a valid id"),
        (&v.patient_fhir_id, "the patient id is not a valid id"),
        (&v.conference_id, "the conference id is not a valid id"),
        (&v.patient_key, "the patient key is not a valid id"),
        (&v.appointment_key, "the appointment key is not a valid id"),
    ];
    for (value, what) in ids {
        if let Some(value) = value {
            check_id(value, what)?;
        }
    }
    if let Some(department) = &v.department
        && (department.trim().is_empty()
            || department.len() > MAX_DEPARTMENT_LEN
            || department.chars().any(char::is_control))
    {
        return Err(StoreError::InvalidRecord(
            "a department must be 1 to 200 bytes without control characters",
        ));
    }
    if let Some(url) = &v.join_web_url
        && (url.is_empty() || url.len() > 2048)
    {
        return Err(StoreError::InvalidRecord(
            "a join url must be 1 to 2048 characters",
        ));
    }
    Ok(())
}

pub(crate) const EVENT: &str = "visit event";
pub(crate) const ITEM: &str = "outbox item";

pub(crate) const EVENT_COLUMNS: &str = "e.event_id, e.visit_id, e.kind, e.participant_class, \
     e.participant_id, e.occurred_at, e.recorded_at, e.origin, e.audit_event";
pub(crate) const EVENT_COLUMN_COUNT: usize = 9;
/// [`EVENT_COLUMNS`] without the AuditEvent.
pub(crate) const EVENT_SUMMARY_COLUMNS: &str = "e.event_id, e.visit_id, e.kind, \
     e.participant_class, e.participant_id, e.occurred_at, e.recorded_at, e.origin";

pub(crate) const ITEM_COLUMNS: &str = "o.id, o.event_id, o.visit_id, o.sink, o.idempotency_key, o.state, \
     o.attempts, o.next_attempt_at, o.lease_until, o.last_error, o.created_at, o.delivered_at";
pub(crate) const ITEM_COLUMN_COUNT: usize = 12;

pub(crate) struct RawEvent {
    pub(crate) event_id: String,
    pub(crate) visit_id: String,
    pub(crate) kind: String,
    pub(crate) participant_class: Option<String>,
    pub(crate) participant_id: Option<String>,
    pub(crate) occurred_at: i64,
    pub(crate) recorded_at: i64,
    pub(crate) origin: String,
    pub(crate) audit_event: String,
}

impl RawEvent {
    pub(crate) fn from_row<C: Columns>(row: &C, at: usize) -> Result<Self, C::Error> {
        Ok(Self {
            audit_event: row.text(at + 8)?,
            ..Self::summary_from_row(row, at)?
        })
    }

    /// Reads the [`EVENT_SUMMARY_COLUMNS`] starting at column `at` (no AuditEvent).
    pub(crate) fn summary_from_row<C: Columns>(row: &C, at: usize) -> Result<Self, C::Error> {
        Ok(Self {
            event_id: row.text(at)?,
            visit_id: row.text(at + 1)?,
            kind: row.text(at + 2)?,
            participant_class: row.opt_text(at + 3)?,
            participant_id: row.opt_text(at + 4)?,
            occurred_at: row.int(at + 5)?,
            recorded_at: row.int(at + 6)?,
            origin: row.text(at + 7)?,
            audit_event: String::new(),
        })
    }

    /// The event without its AuditEvent (read by [`Self::summary_from_row`]).
    pub(crate) fn into_summary(mut self) -> Result<EventSummary, StoreError> {
        let corrupt = |detail: &str| StoreError::Corrupt {
            what: EVENT,
            detail: detail.to_owned(),
        };
        let participant = self.participant()?;
        Ok(EventSummary {
            event_id: EventId::new(self.event_id)?,
            visit_id: VisitId::new(self.visit_id)?,
            kind: VisitEventKind::parse(&self.kind).ok_or_else(|| corrupt("unknown kind"))?,
            participant,
            occurred_at: from_millis(EVENT, self.occurred_at)?,
            origin: EventOrigin::parse(&self.origin).ok_or_else(|| corrupt("unknown origin"))?,
        })
    }

    fn participant(&mut self) -> Result<Option<EventParticipant>, StoreError> {
        match (self.participant_class.take(), self.participant_id.take()) {
            (Some(class), Some(id)) => Ok(Some(EventParticipant {
                class: ParticipantClass::parse(&class).ok_or_else(|| StoreError::Corrupt {
                    what: EVENT,
                    detail: "unknown participant class".to_owned(),
                })?,
                id,
            })),
            _ => Ok(None),
        }
    }

    pub(crate) fn into_event(mut self) -> Result<StoredEvent, StoreError> {
        let corrupt = |detail: &str| StoreError::Corrupt {
            what: EVENT,
            detail: detail.to_owned(),
        };
        let participant = self.participant()?;
        Ok(StoredEvent {
            event_id: EventId::new(self.event_id)?,
            visit_id: VisitId::new(self.visit_id)?,
            kind: VisitEventKind::parse(&self.kind).ok_or_else(|| corrupt("unknown kind"))?,
            participant,
            occurred_at: from_millis(EVENT, self.occurred_at)?,
            recorded_at: from_millis(EVENT, self.recorded_at)?,
            origin: EventOrigin::parse(&self.origin).ok_or_else(|| corrupt("unknown origin"))?,
            audit_event: from_json(EVENT, &self.audit_event)?,
        })
    }
}

pub(crate) struct RawItem {
    pub(crate) id: i64,
    pub(crate) event_id: String,
    pub(crate) visit_id: String,
    pub(crate) sink: String,
    pub(crate) idempotency_key: String,
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: i64,
    pub(crate) lease_until: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) delivered_at: Option<i64>,
}

impl RawItem {
    pub(crate) fn from_row<C: Columns>(row: &C, at: usize) -> Result<Self, C::Error> {
        Ok(Self {
            id: row.int(at)?,
            event_id: row.text(at + 1)?,
            visit_id: row.text(at + 2)?,
            sink: row.text(at + 3)?,
            idempotency_key: row.text(at + 4)?,
            state: row.text(at + 5)?,
            attempts: row.int(at + 6)?,
            next_attempt_at: row.int(at + 7)?,
            lease_until: row.opt_int(at + 8)?,
            last_error: row.opt_text(at + 9)?,
            created_at: row.int(at + 10)?,
            delivered_at: row.opt_int(at + 11)?,
        })
    }

    pub(crate) fn into_item(self) -> Result<OutboxItem, StoreError> {
        let corrupt = |detail: &str| StoreError::Corrupt {
            what: ITEM,
            detail: detail.to_owned(),
        };
        Ok(OutboxItem {
            id: OutboxId(self.id),
            event_id: EventId::new(self.event_id)?,
            visit_id: VisitId::new(self.visit_id)?,
            sink: SinkName::new(self.sink)?,
            idempotency_key: self.idempotency_key,
            state: OutboxState::parse(&self.state).ok_or_else(|| corrupt("unknown state"))?,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("attempts out of range"))?,
            next_attempt_at: from_millis(ITEM, self.next_attempt_at)?,
            lease_until: self.lease_until.map(|t| from_millis(ITEM, t)).transpose()?,
            last_error: self.last_error,
            created_at: from_millis(ITEM, self.created_at)?,
            delivered_at: self
                .delivered_at
                .map(|t| from_millis(ITEM, t))
                .transpose()?,
        })
    }
}

/// Cuts `error` to [`MAX_ERROR_LEN`] bytes on a character boundary and drops control characters,
/// so one odd upstream message cannot bloat the table or a log line.
pub(crate) fn short_error(error: &str) -> String {
    let mut out = String::with_capacity(error.len().min(MAX_ERROR_LEN));
    for c in error.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_ERROR_LEN {
            break;
        }
        out.push(c);
    }
    out
}

pub(crate) fn check_event(event: &StoredEvent) -> Result<(), StoreError> {
    if let Some(p) = &event.participant {
        check_id(
            &p.id,
            "a participant id must be 1 to 512 characters without spaces",
        )?;
    }
    if !event.audit_event.is_object() {
        return Err(StoreError::InvalidRecord(
            "an event's audit event must be a JSON object",
        ));
    }
    Ok(())
}

pub(crate) fn millis_of(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) const CONFIGURATION: &str = "configuration";

/// The column values of a configuration row.
pub(crate) struct ConfigurationRow {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) fhir_base_url: String,
    pub(crate) environment: &'static str,
    pub(crate) state: &'static str,
    pub(crate) version: i64,
    pub(crate) revision: i64,
    pub(crate) approved_fhir_base_url: Option<String>,
    pub(crate) approved_environment: Option<&'static str>,
    pub(crate) document: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl ConfigurationRow {
    pub(crate) fn of(c: &Configuration) -> Result<Self, StoreError> {
        let approved = c.approved().map(|a| &a.settings);
        Ok(Self {
            id: c.id().as_str().to_owned(),
            tenant_id: c.tenant().as_str().to_owned(),
            fhir_base_url: c.settings().fhir_base_url.as_str().to_owned(),
            environment: c.settings().environment.as_str(),
            state: c.state().as_str(),
            version: i64::from(c.version()),
            revision: to_i64(c.revision())?,
            approved_fhir_base_url: approved.map(|s| s.fhir_base_url.as_str().to_owned()),
            approved_environment: approved.map(|s| s.environment.as_str()),
            document: to_json(CONFIGURATION, c)?,
            created_at: to_millis(c.created_at()),
            updated_at: to_millis(c.updated_at()),
        })
    }
}

pub(crate) fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidRecord("revision out of range"))
}

/// The checks that make a `Transitioned` storable: its entry must be the one that produced it.
pub(crate) fn check_consistent(t: &Transitioned) -> Result<(), StoreError> {
    if t.entry.revision != t.configuration.revision() || t.entry.to != t.configuration.state() {
        return Err(StoreError::InvalidRecord(
            "the history entry does not belong to this configuration revision",
        ));
    }
    Ok(())
}

/// A lease needs a name and a holder.
pub(crate) fn check_lease(name: &str, holder: &str) -> Result<(), StoreError> {
    if name.is_empty() || holder.is_empty() {
        return Err(StoreError::InvalidRecord(
            "a lease needs a name and a holder",
        ));
    }
    Ok(())
}

/// Whether upserting `new` would fill in an empty optional field of `existing`.
pub(crate) fn fills_in(existing: &Visit, new: &Visit) -> bool {
    [
        (
            existing.graph_meeting_id.is_some(),
            new.graph_meeting_id.is_some(),
        ),
        (existing.join_web_url.is_some(), new.join_web_url.is_some()),
        (
            existing.organizer_object_id.is_some(),
            new.organizer_object_id.is_some(),
        ),
        (
            existing.practitioner_fhir_id.is_some(),
            new.practitioner_fhir_id.is_some(),
        ),
        (
            existing.appointment_fhir_id.is_some(),
            new.appointment_fhir_id.is_some(),
        ),
        (
            existing.encounter_fhir_id.is_some(),
            new.encounter_fhir_id.is_some(),
        ),
        (existing.patient_key.is_some(), new.patient_key.is_some()),
        (
            existing.appointment_key.is_some(),
            new.appointment_key.is_some(),
        ),
        (
            existing.patient_fhir_id.is_some(),
            new.patient_fhir_id.is_some(),
        ),
        (
            existing.conference_id.is_some(),
            new.conference_id.is_some(),
        ),
        (existing.department.is_some(), new.department.is_some()),
    ]
    .into_iter()
    .any(|(had, brings)| !had && brings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_url_keys_ignore_query_encoding_and_trailing_slash() {
        let base = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0";
        let same = [
            "https://teams.microsoft.com/l/meetup-join/19%3Ameeting_X%40thread.v2/0?context=%7b%7d",
            "https://teams.microsoft.com/l/meetup-join/19:meeting_X@thread.v2/0/",
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0#x",
        ];
        for other in same {
            assert_eq!(join_url_key(base), join_url_key(other), "{other}");
        }
        assert_ne!(
            join_url_key(base),
            join_url_key("https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0")
        );
        // A stray percent sign is kept, not mangled.
        assert_eq!(join_url_key("https://t/a%zz"), "https://t/a%zz");
    }

    #[test]
    fn errors_are_shortened_on_char_boundaries_without_control_characters() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let short = short_error(&long);
        assert!(short.len() <= MAX_ERROR_LEN);
        assert!(short.chars().all(|c| c == 'é'));
        assert_eq!(short_error("a\nb\tc"), "a b c");
    }
}
