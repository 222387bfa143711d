//! Attendance reports after a meeting, turned into the same events as live notifications.
//!
//! Reports exist only after the meeting ends and a re-join can rewrite them, so they reconcile
//! missed notifications rather than replace them. Listing gives reports without records; each
//! report is then read with `$expand=attendanceRecords`. Both follow `@odata.nextLink` up to
//! `GraphConfig::max_pages`, and only on Graph's own origin (the link receives our token).

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::{
    client::{Call, GraphClient, Retry},
    error::GraphError,
    events::{
        EventKind, EventSource, MeetingRef, Participant, ParticipantEvent, ParticipantKind,
        get_str_ci, parse_time,
    },
    ids::{MeetingId, UserObjectId},
};

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReport {
    meeting_start_date_time: Option<String>,
    meeting_end_date_time: Option<String>,
    #[serde(default)]
    attendance_records: Vec<Value>,
    #[serde(rename = "attendanceRecords@odata.nextLink")]
    records_next_link: Option<String>,
}

impl GraphClient {
    /// The ids of a meeting's attendance reports (one per time the meeting ran).
    pub async fn attendance_report_ids(
        &self,
        organizer: &UserObjectId,
        meeting_id: &MeetingId,
    ) -> Result<Vec<String>, GraphError> {
        let first = self.url(&[
            "v1.0",
            "users",
            organizer.as_str(),
            "onlineMeetings",
            meeting_id.as_str(),
            "attendanceReports",
        ])?;
        let reports = self
            .all_pages(first, organizer, "an attendance report list")
            .await?;
        Ok(reports
            .iter()
            .filter_map(|r| get_str_ci(r, "id").map(str::to_owned))
            .collect())
    }

    /// Every attendance report of the meeting as events: call start/end per report, and a join
    /// and a leave per attendance interval, sorted by time.
    pub async fn attendance_events(
        &self,
        organizer: &UserObjectId,
        meeting_id: &MeetingId,
    ) -> Result<Vec<ParticipantEvent>, GraphError> {
        let mut events = Vec::new();
        for report_id in self.attendance_report_ids(organizer, meeting_id).await? {
            let mut url = self.url(&[
                "v1.0",
                "users",
                organizer.as_str(),
                "onlineMeetings",
                meeting_id.as_str(),
                "attendanceReports",
                &report_id,
            ])?;
            url.query_pairs_mut()
                .append_pair("$expand", "attendanceRecords");
            let (_, report): (_, RawReport) = self
                .send_json(self.get(url, organizer), "an attendance report")
                .await?;
            let mut records = report.attendance_records;
            if let Some(link) = &report.records_next_link {
                let more = self
                    .all_pages(self.next_link(link)?, organizer, "attendance records")
                    .await?;
                records.extend(more);
            }
            let meeting = MeetingRef::MeetingId(meeting_id.clone());
            let call_event = |kind, at: Option<&String>| {
                at.and_then(|t| parse_time(t)).map(|at| ParticipantEvent {
                    kind,
                    at,
                    meeting: meeting.clone(),
                    participant: None,
                    source: EventSource::AttendanceReport,
                })
            };
            events.extend(call_event(
                EventKind::CallStarted,
                report.meeting_start_date_time.as_ref(),
            ));
            events.extend(call_event(
                EventKind::CallEnded,
                report.meeting_end_date_time.as_ref(),
            ));
            for record in &records {
                events.extend(record_events(record, &meeting));
            }
        }
        events.sort_by_key(|e| (e.at, e.kind));
        Ok(events)
    }

    fn get<'a>(&self, url: Url, organizer: &'a UserObjectId) -> Call<'a> {
        Call {
            method: Method::GET,
            url,
            body: None,
            retry: Retry::Idempotent,
            organizer: Some(organizer),
        }
    }

    async fn all_pages(
        &self,
        first: Url,
        organizer: &UserObjectId,
        what: &'static str,
    ) -> Result<Vec<Value>, GraphError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0u32;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > self.config().max_pages {
                tracing::warn!(
                    what,
                    pages = pages - 1,
                    "stopped following @odata.nextLink at the page limit"
                );
                break;
            }
            let (_, page): (_, Page) = self.send_json(self.get(url, organizer), what).await?;
            items.extend(page.value);
            next = page
                .next_link
                .as_deref()
                .map(|l| self.next_link(l))
                .transpose()?;
        }
        Ok(items)
    }
}

/// One attendance record: `identity` (a derived `identity` type), `attendanceIntervals`.
/// `emailAddress` and `displayName` are not read.
fn record_events(record: &Value, meeting: &MeetingRef) -> Vec<ParticipantEvent> {
    let record_id = get_str_ci(record, "id").map(str::to_owned);
    let identity = crate::events::get_ci(record, "identity").unwrap_or(&Value::Null);
    let kind = record_kind(identity, record_id.as_deref());
    let participant = Participant {
        participant_id: record_id,
        kind,
    };
    let mut events = Vec::new();
    let intervals = crate::events::get_ci(record, "attendanceIntervals")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for interval in intervals {
        for (key, kind) in [
            ("joinDateTime", EventKind::ParticipantJoined),
            ("leaveDateTime", EventKind::ParticipantLeft),
        ] {
            if let Some(at) = get_str_ci(interval, key).and_then(parse_time) {
                events.push(ParticipantEvent {
                    kind,
                    at,
                    meeting: meeting.clone(),
                    participant: Some(participant.clone()),
                    source: EventSource::AttendanceReport,
                });
            }
        }
    }
    events
}

fn record_kind(identity: &Value, record_id: Option<&str>) -> ParticipantKind {
    let odata_type = get_str_ci(identity, "@odata.type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let id = get_str_ci(identity, "id");
    let tenant_id = get_str_ci(identity, "tenantId").map(str::to_owned);
    let opaque = || record_id.or(id).unwrap_or("unknown").to_owned();
    if odata_type.contains("azurecommunicationservices") {
        return ParticipantKind::AcsGuest {
            opaque_id: id.map(str::to_owned).unwrap_or_else(opaque),
        };
    }
    if odata_type.contains("application") {
        return ParticipantKind::Application {
            app_id: id.map(str::to_owned).unwrap_or_else(opaque),
        };
    }
    let is_user = odata_type.contains("communicationsuseridentity")
        || odata_type.contains("teamworkuseridentity")
        || (odata_type.is_empty() && tenant_id.is_some());
    match (is_user, id) {
        (true, Some(id)) => ParticipantKind::OrganizationUser {
            object_id: UserObjectId::new(id),
            tenant_id,
        },
        _ => ParticipantKind::Anonymous {
            opaque_id: opaque(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_become_joins_and_leaves_without_names_or_emails() {
        let record = json!({
            "id": "rec-1",
            "emailAddress": "patient@example.com",
            "role": "Attendee",
            "identity": {"id": "anon-1", "displayName": "Camila Lopez", "tenantId": null},
            "attendanceIntervals": [
                {"joinDateTime": "2026-03-05T18:01:00Z", "leaveDateTime": "2026-03-05T18:20:00Z", "durationInSeconds": 1140}
            ]
        });
        let events = record_events(&record, &MeetingRef::MeetingId(MeetingId::new("m")));
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, EventKind::ParticipantJoined);
        assert_eq!(events[1].kind, EventKind::ParticipantLeft);
        let shown = format!("{events:?}");
        assert!(
            !shown.contains("Camila") && !shown.contains("patient@"),
            "{shown}"
        );
        assert_eq!(
            events[0].participant.as_ref().map(|p| &p.kind),
            Some(&ParticipantKind::Anonymous {
                opaque_id: "rec-1".into()
            })
        );
    }

    #[test]
    fn user_records_keep_the_object_id() {
        let kind = record_kind(
            &json!({"@odata.type": "#microsoft.graph.communicationsUserIdentity", "id": "oid-1", "tenantId": "t"}),
            Some("r"),
        );
        assert_eq!(
            kind,
            ParticipantKind::OrganizationUser {
                object_id: UserObjectId::new("oid-1"),
                tenant_id: Some("t".into())
            }
        );
    }
}
