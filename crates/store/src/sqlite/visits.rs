//! The visit registry on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use visitbridge_approval::ConfigurationId;

use super::{SqliteStore, Violation, from_millis, to_millis, violation};
use crate::{
    MicrosoftObjectId, StoreError,
    visits::{Visit, VisitId, VisitRepo, check_id},
};

const WHAT: &str = "visit";

/// The columns of a visit, in the order [`RawVisit::from_row`] reads them.
pub(crate) const VISIT_COLUMNS: &str = "v.id, v.configuration_id, v.external_meeting_id, \
     v.graph_meeting_id, v.join_web_url, v.organizer_object_id, v.practitioner_fhir_id, \
     v.appointment_fhir_id, v.encounter_fhir_id, v.patient_fhir_id, v.conference_id, \
     v.created_at, v.ended_at";

/// A visit row as read, before its values are checked.
pub(crate) struct RawVisit {
    id: String,
    configuration_id: String,
    external_meeting_id: String,
    graph_meeting_id: Option<String>,
    join_web_url: Option<String>,
    organizer_object_id: Option<String>,
    practitioner_fhir_id: Option<String>,
    appointment_fhir_id: Option<String>,
    encounter_fhir_id: Option<String>,
    patient_fhir_id: Option<String>,
    conference_id: Option<String>,
    created_at: i64,
    ended_at: Option<i64>,
}

impl RawVisit {
    /// Reads the [`VISIT_COLUMNS`] starting at column `at`.
    pub(crate) fn from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(at)?,
            configuration_id: row.get(at + 1)?,
            external_meeting_id: row.get(at + 2)?,
            graph_meeting_id: row.get(at + 3)?,
            join_web_url: row.get(at + 4)?,
            organizer_object_id: row.get(at + 5)?,
            practitioner_fhir_id: row.get(at + 6)?,
            appointment_fhir_id: row.get(at + 7)?,
            encounter_fhir_id: row.get(at + 8)?,
            patient_fhir_id: row.get(at + 9)?,
            conference_id: row.get(at + 10)?,
            created_at: row.get(at + 11)?,
            ended_at: row.get(at + 12)?,
        })
    }

    pub(crate) fn into_visit(self) -> Result<Visit, StoreError> {
        Ok(Visit {
            id: VisitId::new(self.id)?,
            configuration_id: ConfigurationId::new(self.configuration_id).map_err(|_| {
                StoreError::Corrupt {
                    what: WHAT,
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
            created_at: from_millis(WHAT, self.created_at)?,
            ended_at: self.ended_at.map(|t| from_millis(WHAT, t)).transpose()?,
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

fn check_visit(v: &Visit) -> Result<(), StoreError> {
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
    ];
    for (value, what) in ids {
        if let Some(value) = value {
            check_id(value, what)?;
        }
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

fn map_upsert_error(e: rusqlite::Error) -> StoreError {
    match violation(&e) {
        Some((Violation::ForeignKey, _)) => StoreError::NotFound {
            what: "configuration",
        },
        Some((Violation::Unique, _)) => {
            StoreError::AlreadyExists("a visit with this id already exists for another meeting")
        }
        None => StoreError::Sqlite(e),
    }
}

impl SqliteStore {
    async fn one_visit(
        &self,
        condition: &'static str,
        value: String,
    ) -> Result<Option<Visit>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v WHERE {condition}
                 ORDER BY v.created_at DESC, v.id LIMIT 1"
            );
            let raw = conn
                .prepare_cached(&sql)?
                .query_row(params![value], |row| RawVisit::from_row(row, 0))
                .optional()?;
            raw.map(RawVisit::into_visit).transpose()
        })
        .await
    }
}

#[async_trait]
impl VisitRepo for SqliteStore {
    async fn upsert_visit(&self, visit: &Visit) -> Result<Visit, StoreError> {
        check_visit(visit)?;
        let v = visit.clone();
        self.write(move |tx| {
            // RETURNING cannot use the table alias.
            let returning = VISIT_COLUMNS.replace("v.", "");
            let sql = format!(
                "INSERT INTO visits AS v
                     (id, configuration_id, external_meeting_id, graph_meeting_id, join_web_url,
                      join_url_key, organizer_object_id, practitioner_fhir_id, appointment_fhir_id,
                      encounter_fhir_id, patient_fhir_id, conference_id, created_at, ended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (configuration_id, external_meeting_id) DO UPDATE SET
                     graph_meeting_id = COALESCE(v.graph_meeting_id, excluded.graph_meeting_id),
                     join_web_url = COALESCE(v.join_web_url, excluded.join_web_url),
                     join_url_key = COALESCE(v.join_url_key, excluded.join_url_key),
                     organizer_object_id =
                         COALESCE(v.organizer_object_id, excluded.organizer_object_id),
                     practitioner_fhir_id =
                         COALESCE(v.practitioner_fhir_id, excluded.practitioner_fhir_id),
                     appointment_fhir_id =
                         COALESCE(v.appointment_fhir_id, excluded.appointment_fhir_id),
                     encounter_fhir_id = COALESCE(v.encounter_fhir_id, excluded.encounter_fhir_id),
                     patient_fhir_id = COALESCE(v.patient_fhir_id, excluded.patient_fhir_id),
                     conference_id = COALESCE(v.conference_id, excluded.conference_id)
                 RETURNING {returning}"
            );
            let raw = tx
                .query_row(
                    &sql,
                    params![
                        v.id.as_str(),
                        v.configuration_id.as_str(),
                        v.external_meeting_id,
                        v.graph_meeting_id,
                        v.join_web_url,
                        v.join_web_url.as_deref().map(join_url_key),
                        v.organizer_object_id
                            .as_ref()
                            .map(MicrosoftObjectId::as_str),
                        v.practitioner_fhir_id,
                        v.appointment_fhir_id,
                        v.encounter_fhir_id,
                        v.patient_fhir_id,
                        v.conference_id,
                        to_millis(v.created_at),
                        v.ended_at.map(to_millis),
                    ],
                    |row| RawVisit::from_row(row, 0),
                )
                .map_err(map_upsert_error)?;
            raw.into_visit()
        })
        .await
    }

    async fn get_visit(&self, id: &VisitId) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.id = ?1", id.as_str().to_owned()).await
    }

    async fn visit_by_key(
        &self,
        configuration: &ConfigurationId,
        external_meeting_id: &str,
    ) -> Result<Option<Visit>, StoreError> {
        let (configuration, key) = (
            configuration.as_str().to_owned(),
            external_meeting_id.to_owned(),
        );
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE v.configuration_id = ?1 AND v.external_meeting_id = ?2"
            );
            let raw = conn
                .prepare_cached(&sql)?
                .query_row(params![configuration, key], |row| {
                    RawVisit::from_row(row, 0)
                })
                .optional()?;
            raw.map(RawVisit::into_visit).transpose()
        })
        .await
    }

    async fn visit_by_meeting(&self, graph_meeting_id: &str) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.graph_meeting_id = ?1", graph_meeting_id.to_owned())
            .await
    }

    async fn visit_by_join_url(&self, join_web_url: &str) -> Result<Option<Visit>, StoreError> {
        self.one_visit("v.join_url_key = ?1", join_url_key(join_web_url))
            .await
    }

    async fn visits_since(
        &self,
        configuration: &ConfigurationId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Visit>, StoreError> {
        let configuration = configuration.as_str().to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits v
                 WHERE v.configuration_id = ?1 AND v.created_at >= ?2
                 ORDER BY v.created_at DESC, v.id LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![configuration, to_millis(since), i64::from(limit)],
                |row| RawVisit::from_row(row, 0),
            )?;
            rows.map(|raw| raw?.into_visit()).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::join_url_key;

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
}
