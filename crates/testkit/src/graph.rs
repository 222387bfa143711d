//! Fake of Microsoft Graph: online meetings, virtual appointment join URLs, subscriptions,
//! attendance reports, and encrypted change notifications made the way Graph makes them.
//!
//! Mounted on a [`MockServer`] under `/v1.0/` and `/beta/`, so a client with
//! `graph_base = server.uri()` talks to it as to `https://graph.microsoft.com`. It is stateful:
//!
//! - `POST /v1.0/users/{organizer}/onlineMeetings/createOrGet` is really idempotent by organiser +
//!   `externalId`: `201 Created` the first time, `200 OK` with the same meeting afterwards. The body
//!   is checked like Graph does (`externalId` required, no unknown properties, end after start).
//!   New meetings have Teams' defaults (chat enabled, everyone presents, entry announced).
//! - `PATCH /v1.0/users/{organizer}/onlineMeetings/{id}` merges and echoes the meeting (times
//!   checked: date-times, end after start). Every `createOrGet` and PATCH body is recorded
//!   ([`FakeGraph::create_or_get_bodies`], [`FakeGraph::patch_bodies`]).
//! - `GET …/{id}/getVirtualAppointmentJoinWebUrl` answers `{"value": "https://visit.teams…"}`.
//! - `GET …/{id}/attendanceReports` pages with `@odata.nextLink` (see [`FakeGraph::set_page_size`]);
//!   `GET …/attendanceReports/{reportId}?$expand=attendanceRecords` gives the records.
//! - `POST /beta/subscriptions` (checked: resource, URLs, encryption certificate when
//!   `includeResourceData`, lifetime), `PATCH`/`DELETE /beta/subscriptions/{id}`,
//!   `POST /beta/subscriptions/{id}/reauthorize`.
//! - Every answer carries `request-id`; errors have Graph's shape
//!   `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
//! - Knobs: a missing application access policy for an organiser (403 with Graph's message), a
//!   missing virtual appointment permission, 429 with `Retry-After` for the next N requests, any
//!   status for the next N requests. With [`FakeGraph::mount_with_entra`], only tokens issued (and
//!   not revoked) by the Entra fake are accepted (401 otherwise).
//!
//! [`encrypted_content`] and the notification builders produce what Graph POSTs to a webhook;
//! encrypted batches carry `validationTokens` ([`ValidationToken`], signed like the Microsoft
//! identity platform's with [`entra::ENTRA_SIGNING_RSA`]), whose keys [`ValidationJwks::mount`]
//! serves at `/common/discovery/v2.0/keys`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use aws_lc_rs::{
    cipher::{AES_256, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey},
    hmac,
    iv::FixedLength,
    rsa::{OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PublicEncryptingKey},
};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use url::Url;
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::{
    entra::{self, FakeEntra, pem_der},
    fixtures::keys,
};

/// The id our tests give the notification encryption certificate ([`keys::GRAPH_ENCRYPTION_CERT`]).
pub const ENCRYPTION_CERTIFICATE_ID: &str = "visitbridge-test-notifications";

/// A running fake Graph. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeGraph {
    base: String,
    state: Arc<Mutex<GraphState>>,
}

struct StoredMeeting {
    organizer: String,
    value: Value,
}

#[derive(Default)]
struct GraphState {
    base: String,
    entra: Option<FakeEntra>,
    meetings: Vec<StoredMeeting>,
    create_or_get_calls: usize,
    create_or_get_bodies: Vec<Value>,
    patch_bodies: Vec<Value>,
    denied_organizers: HashSet<String>,
    virtual_appointment_denied: bool,
    throttle: Option<(usize, u64)>,
    failures: Option<(usize, u16)>,
    subscriptions: HashMap<String, Value>,
    subscription_requests: Vec<Value>,
    reauthorized: Vec<String>,
    deleted: Vec<String>,
    attendance: HashMap<String, Vec<Value>>,
    page_size: usize,
    counter: u64,
    delay: Option<std::time::Duration>,
}

fn lock(state: &Mutex<GraphState>) -> MutexGuard<'_, GraphState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeGraph {
    /// Mounts the fake on `server`; any non-empty bearer token is accepted.
    pub async fn mount(server: &MockServer) -> Self {
        Self::mount_inner(server, None).await
    }

    /// Mounts the fake on `server`, accepting only tokens issued by `entra`.
    pub async fn mount_with_entra(server: &MockServer, entra: &FakeEntra) -> Self {
        Self::mount_inner(server, Some(entra.clone())).await
    }

    async fn mount_inner(server: &MockServer, entra: Option<FakeEntra>) -> Self {
        let base = server.uri();
        let state = Arc::new(Mutex::new(GraphState {
            base: base.clone(),
            entra,
            page_size: 1,
            ..GraphState::default()
        }));
        Mock::given(path_regex("^/(v1\\.0|beta)/"))
            .respond_with(GraphResponder(state.clone()))
            .named("microsoft graph")
            .mount(server)
            .await;
        Self { base, state }
    }

    /// The Graph root to configure clients with.
    pub fn graph_base(&self) -> Url {
        Url::parse(&format!("{}/", self.base)).expect("server uri") // allow-unwrap: test setup
    }

    /// Makes Graph refuse meeting calls for `organizer` as without an application access policy.
    pub fn deny_access_policy(&self, organizer: &str) {
        lock(&self.state)
            .denied_organizers
            .insert(organizer.to_owned());
    }

    /// Makes `getVirtualAppointmentJoinWebUrl` answer 403 (permission not granted).
    pub fn deny_virtual_appointment(&self) {
        lock(&self.state).virtual_appointment_denied = true;
    }

    /// Answers the next `count` Graph requests with `429` and `Retry-After: {seconds}`.
    pub fn throttle_next(&self, count: usize, retry_after_seconds: u64) {
        lock(&self.state).throttle = Some((count, retry_after_seconds));
    }

    /// Answers the next `count` Graph requests with `status` (e.g. 503, 500) and Graph's error body.
    pub fn fail_next(&self, count: usize, status: u16) {
        lock(&self.state).failures = Some((count, status));
    }

    /// Answers every request after `delay` from now on (a slow Graph); its effect on the state is
    /// immediate.
    pub fn set_delay(&self, delay: std::time::Duration) {
        lock(&self.state).delay = Some(delay);
    }

    /// Attendance reports per listing page (default 1, so paging is always exercised).
    pub fn set_page_size(&self, size: usize) {
        lock(&self.state).page_size = size.max(1);
    }

    /// Adds an attendance report (a `meetingAttendanceReport` with its `attendanceRecords`) to the
    /// meeting `meeting_id`.
    pub fn add_attendance_report(&self, meeting_id: &str, report: Value) {
        lock(&self.state)
            .attendance
            .entry(meeting_id.to_owned())
            .or_default()
            .push(report);
    }

    /// `createOrGet` requests received (each try counts).
    pub fn create_or_get_calls(&self) -> usize {
        lock(&self.state).create_or_get_calls
    }

    /// Bodies of the `createOrGet` requests received (each try counts), e.g. to check the
    /// `startDateTime` and `endDateTime` sent.
    pub fn create_or_get_bodies(&self) -> Vec<Value> {
        lock(&self.state).create_or_get_bodies.clone()
    }

    /// Meetings that exist.
    pub fn meeting_count(&self) -> usize {
        lock(&self.state).meetings.len()
    }

    /// A meeting as stored, by id.
    pub fn meeting(&self, id: &str) -> Option<Value> {
        lock(&self.state)
            .meetings
            .iter()
            .find(|m| m.value["id"] == id)
            .map(|m| m.value.clone())
    }

    /// Bodies of the meeting PATCH requests received.
    pub fn patch_bodies(&self) -> Vec<Value> {
        lock(&self.state).patch_bodies.clone()
    }

    /// Bodies of the subscription creation requests received.
    pub fn subscription_requests(&self) -> Vec<Value> {
        lock(&self.state).subscription_requests.clone()
    }

    /// A live subscription by id.
    pub fn subscription(&self, id: &str) -> Option<Value> {
        lock(&self.state).subscriptions.get(id).cloned()
    }

    /// Subscription ids reauthorized.
    pub fn reauthorized(&self) -> Vec<String> {
        lock(&self.state).reauthorized.clone()
    }

    /// Subscription ids deleted.
    pub fn deleted(&self) -> Vec<String> {
        lock(&self.state).deleted.clone()
    }
}

/// Graph's error answer with a fresh `request-id` (also in the header).
fn graph_error(status: u16, code: &str, message: &str, request: &Request) -> ResponseTemplate {
    let request_id = random_uuid();
    let client_request_id = request
        .headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ResponseTemplate::new(status)
        .insert_header("request-id", request_id.as_str())
        .insert_header("client-request-id", client_request_id.as_str())
        .set_body_json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                }
            }
        }))
}

fn ok(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("request-id", random_uuid().as_str())
        .set_body_json(body)
}

fn no_content() -> ResponseTemplate {
    ResponseTemplate::new(204).insert_header("request-id", random_uuid().as_str())
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("random"); // allow-unwrap: test setup
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_time(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Graph's own format: seven fraction digits and `Z`.
fn graph_time(t: chrono::DateTime<chrono::Utc>) -> String {
    let nanos = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    format!("{}Z", &nanos[..nanos.len() - 2])
}

struct GraphResponder(Arc<Mutex<GraphState>>);

impl Respond for GraphResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let delay = lock(&self.0).delay;
        let response = self.answer(request);
        match delay {
            Some(delay) => response.set_delay(delay),
            None => response,
        }
    }
}

impl GraphResponder {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        let mut state = lock(&self.0);
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let token_ok = match &state.entra {
            Some(entra) => entra.is_valid_token(token),
            None => !token.is_empty(),
        };
        if !token_ok {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
                request,
            );
        }
        if let Some((left, seconds)) = state.throttle
            && left > 0
        {
            state.throttle = Some((left - 1, seconds));
            return graph_error(
                429,
                "TooManyRequests",
                "Too many requests from Identifier:app+user under category:MeetingServices. Please try again later.",
                request,
            )
            .insert_header("Retry-After", seconds.to_string().as_str());
        }
        if let Some((left, status)) = state.failures
            && left > 0
        {
            state.failures = Some((left - 1, status));
            let code = if status >= 500 {
                "ServiceUnavailable"
            } else {
                "BadRequest"
            };
            return graph_error(
                status,
                code,
                "The service is temporarily unavailable.",
                request,
            );
        }
        let segments: Vec<String> = request
            .url
            .path_segments()
            .map(|s| s.map(percent_decode).collect())
            .unwrap_or_default();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            ("POST", ["v1.0", "users", organizer, "onlineMeetings", "createOrGet"]) => {
                state.create_or_get_calls += 1;
                create_or_get(&mut state, organizer, request)
            }
            ("PATCH", ["v1.0", "users", organizer, "onlineMeetings", id]) => {
                patch_meeting(&mut state, organizer, id, request)
            }
            ("GET", ["v1.0", "users", organizer, "onlineMeetings", id]) => {
                with_meeting(&state, organizer, id, request, |m| {
                    ok(200, prefer(m.clone(), request))
                })
            }
            (
                "GET",
                [
                    "v1.0",
                    "users",
                    organizer,
                    "onlineMeetings",
                    id,
                    "getVirtualAppointmentJoinWebUrl",
                ],
            ) => virtual_appointment(&state, organizer, id, request),
            (
                "GET",
                [
                    "v1.0",
                    "users",
                    organizer,
                    "onlineMeetings",
                    id,
                    "attendanceReports",
                ],
            ) => list_reports(&state, organizer, id, request),
            (
                "GET",
                [
                    "v1.0",
                    "users",
                    organizer,
                    "onlineMeetings",
                    id,
                    "attendanceReports",
                    report,
                ],
            ) => get_report(&state, organizer, id, report, request),
            ("POST", [_, "subscriptions"]) => create_subscription(&mut state, request),
            ("PATCH", [_, "subscriptions", id]) => renew_subscription(&mut state, id, request),
            ("DELETE", [_, "subscriptions", id]) => {
                if state.subscriptions.remove(*id).is_some() {
                    state.deleted.push((*id).to_owned());
                    no_content()
                } else {
                    graph_error(
                        404,
                        "ResourceNotFound",
                        &format!("The object was not found. (subscription {id})"),
                        request,
                    )
                }
            }
            ("POST", [_, "subscriptions", id, "reauthorize"]) => {
                if state.subscriptions.contains_key(*id) {
                    state.reauthorized.push((*id).to_owned());
                    no_content()
                } else {
                    graph_error(
                        404,
                        "ResourceNotFound",
                        "The object was not found.",
                        request,
                    )
                }
            }
            _ => graph_error(
                400,
                "BadRequest",
                &format!(
                    "Resource not found for the segment '{}'.",
                    segments.last().unwrap_or(&"")
                ),
                request,
            ),
        }
    }
}

fn access_policy_error(organizer: &str, request: &Request) -> ResponseTemplate {
    graph_error(
        403,
        "Unauthorized",
        &format!(
            "App {} is not authorized to Create meeting on behalf of user {organizer}",
            entra::CLIENT_ID
        ),
        request,
    )
}

/// The meeting as Graph answers this request's `Prefer` headers (the rule is the sandbox's).
fn prefer(meeting: Value, request: &Request) -> Value {
    visitbridge_sandbox::shapes::graph_meeting_as_preferred(
        meeting,
        request
            .headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn create_or_get(state: &mut GraphState, organizer: &str, request: &Request) -> ResponseTemplate {
    if state.denied_organizers.contains(organizer) {
        return access_policy_error(organizer, request);
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return graph_error(400, "BadRequest", "Invalid request body.", request);
    };
    state.create_or_get_bodies.push(Value::Object(body.clone()));
    const ALLOWED: [&str; 6] = [
        "chatInfo",
        "endDateTime",
        "externalId",
        "participants",
        "startDateTime",
        "subject",
    ];
    if let Some(unknown) = body.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return graph_error(
            400,
            "BadRequest",
            &format!(
                "The property '{unknown}' does not exist on type 'microsoft.graph.onlineMeeting'."
            ),
            request,
        );
    }
    let Some(external_id) = body
        .get("externalId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return graph_error(400, "BadRequest", "externalId is required.", request);
    };
    if let Some(existing) = state
        .meetings
        .iter()
        .find(|m| m.organizer == organizer && m.value["externalId"] == external_id)
    {
        return ok(200, prefer(existing.value.clone(), request));
    }
    let now = chrono::Utc::now();
    let start = body
        .get("startDateTime")
        .and_then(parse_time)
        .unwrap_or(now);
    let end = body
        .get("endDateTime")
        .and_then(parse_time)
        .unwrap_or(start + chrono::Duration::hours(1));
    if end < start {
        return graph_error(
            400,
            "BadRequest",
            "The end time of the meeting must be after the start time.",
            request,
        );
    }
    state.counter += 1;
    let n = state.counter;
    let thread = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("fake-meeting-{n}-{}", random_uuid()));
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("1*{organizer}*0**19:meeting_{thread}@thread.v2"));
    let tenant = entra::TENANT_ID;
    let meeting = json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{organizer}')/onlineMeetings/$entity"),
        "id": id,
        "creationDateTime": graph_time(now),
        "startDateTime": graph_time(start),
        "endDateTime": graph_time(end),
        "joinWebUrl": format!(
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_{thread}%40thread.v2/0?context=%7b%22Tid%22%3a%22{tenant}%22%2c%22Oid%22%3a%22{organizer}%22%7d"
        ),
        "subject": body.get("subject").cloned().unwrap_or(Value::Null),
        "isBroadcast": false,
        "autoAdmittedUsers": "EveryoneInCompany",
        "isEntryExitAnnounced": true,
        "allowedPresenters": "everyone",
        "allowMeetingChat": "enabled",
        "externalId": external_id,
        "participants": {
            "organizer": {
                "upn": "organizer@contoso.example",
                "role": "presenter",
                "identity": {"user": {"id": organizer, "displayName": null, "tenantId": tenant}}
            },
            "attendees": []
        },
        "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": false},
        "joinMeetingIdSettings": {"isPasscodeRequired": true, "joinMeetingId": format!("{:010}", 1_234_567_000 + n), "passcode": "abc123"},
        "audioConferencing": null,
        "chatInfo": {"threadId": format!("19:meeting_{thread}@thread.v2"), "messageId": "0", "replyChainMessageId": null}
    });
    state.meetings.push(StoredMeeting {
        organizer: organizer.to_owned(),
        value: meeting.clone(),
    });
    ok(201, prefer(meeting, request))
}

fn with_meeting(
    state: &GraphState,
    organizer: &str,
    id: &str,
    request: &Request,
    then: impl FnOnce(&Value) -> ResponseTemplate,
) -> ResponseTemplate {
    if state.denied_organizers.contains(organizer) {
        return access_policy_error(organizer, request);
    }
    match state
        .meetings
        .iter()
        .find(|m| m.organizer == organizer && m.value["id"] == id)
    {
        Some(m) => then(&m.value),
        None => graph_error(404, "NotFound", "The meeting was not found.", request),
    }
}

fn patch_meeting(
    state: &mut GraphState,
    organizer: &str,
    id: &str,
    request: &Request,
) -> ResponseTemplate {
    if state.denied_organizers.contains(organizer) {
        return access_policy_error(organizer, request);
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return graph_error(400, "BadRequest", "Invalid request body.", request);
    };
    state.patch_bodies.push(Value::Object(body.clone()));
    let Some(stored) = state
        .meetings
        .iter_mut()
        .find(|m| m.organizer == organizer && m.value["id"] == id)
    else {
        return graph_error(404, "NotFound", "The meeting was not found.", request);
    };
    let mut body = body;
    // Times are checked like Graph does (date-times, end after start) and kept in its format.
    for key in ["startDateTime", "endDateTime"] {
        if let Some(value) = body.get(key) {
            let Some(t) = parse_time(value) else {
                return graph_error(
                    400,
                    "BadRequest",
                    &format!(
                        "Cannot convert the literal to the expected type 'Edm.DateTimeOffset' ({key})."
                    ),
                    request,
                );
            };
            body.insert(key.to_owned(), Value::String(graph_time(t)));
        }
    }
    let time = |key: &str| body.get(key).or(stored.value.get(key)).and_then(parse_time);
    if let (Some(start), Some(end)) = (time("startDateTime"), time("endDateTime"))
        && end < start
    {
        return graph_error(
            400,
            "BadRequest",
            "The end time of the meeting must be after the start time.",
            request,
        );
    }
    merge(&mut stored.value, &Value::Object(body));
    ok(200, prefer(stored.value.clone(), request))
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn virtual_appointment(
    state: &GraphState,
    organizer: &str,
    id: &str,
    request: &Request,
) -> ResponseTemplate {
    if state.virtual_appointment_denied {
        return graph_error(
            403,
            "Forbidden",
            "Missing role permissions on the request. API requires one of 'VirtualAppointment.Read.All, VirtualAppointment.ReadWrite.All'. Roles on the request 'OnlineMeetings.ReadWrite.All'.",
            request,
        );
    }
    with_meeting(state, organizer, id, request, |m| {
        let thread = m["chatInfo"]["threadId"].as_str().unwrap_or_default();
        ok(
            200,
            json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.String",
                "value": format!(
                    "https://visit.teams.microsoft.com/webrtc-svc/api/route?tid={}&convId={thread}",
                    entra::TENANT_ID
                )
            }),
        )
    })
}

fn list_reports(
    state: &GraphState,
    organizer: &str,
    id: &str,
    request: &Request,
) -> ResponseTemplate {
    with_meeting(state, organizer, id, request, |_| {
        let reports = state.attendance.get(id).cloned().unwrap_or_default();
        let skip: usize = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "$skiptoken")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let page: Vec<Value> = reports
            .iter()
            .skip(skip)
            .take(state.page_size)
            .map(|r| {
                let mut r = r.clone();
                if let Some(obj) = r.as_object_mut() {
                    obj.insert("attendanceRecords".to_owned(), json!([]));
                }
                r
            })
            .collect();
        let mut body = json!({
            "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{organizer}')/onlineMeetings('{id}')/attendanceReports"),
            "value": page,
        });
        if skip + state.page_size < reports.len() {
            // Graph's links are absolute, on its own host (the server's address, not the Host
            // header the client happened to send).
            body["@odata.nextLink"] = Value::String(format!(
                "{}{}?$skiptoken={}",
                state.base,
                request.url.path(),
                skip + state.page_size
            ));
        }
        ok(200, body)
    })
}

fn get_report(
    state: &GraphState,
    organizer: &str,
    id: &str,
    report_id: &str,
    request: &Request,
) -> ResponseTemplate {
    with_meeting(state, organizer, id, request, |_| {
        let Some(report) = state
            .attendance
            .get(id)
            .and_then(|rs| rs.iter().find(|r| r["id"] == report_id))
        else {
            return graph_error(
                404,
                "NotFound",
                "The attendance report was not found.",
                request,
            );
        };
        let expand = request
            .url
            .query_pairs()
            .any(|(k, v)| k == "$expand" && v == "attendanceRecords");
        let mut report = report.clone();
        if !expand && let Some(obj) = report.as_object_mut() {
            obj.insert("attendanceRecords".to_owned(), json!([]));
        }
        ok(200, report)
    })
}

fn create_subscription(state: &mut GraphState, request: &Request) -> ResponseTemplate {
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return graph_error(400, "InvalidRequest", "Invalid request body.", request);
    };
    state.subscription_requests.push(body.clone());
    let bad = |msg: &str| graph_error(400, "InvalidRequest", msg, request);
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    if text("changeType") != "updated" {
        return bad("changeType must be 'updated' for onlineMeeting call events.");
    }
    if !text("resource").starts_with("/communications/onlineMeetings/?$filter=JoinWebUrl eq '")
        || !text("resource").ends_with('\'')
    {
        return bad("Resource is not a supported onlineMeeting call event resource.");
    }
    for key in ["notificationUrl", "lifecycleNotificationUrl"] {
        if !text(key).starts_with("https://") {
            return bad(&format!("Subscription {key} must be an https URL."));
        }
    }
    let client_state = text("clientState");
    if client_state.is_empty() || client_state.len() > 128 {
        return bad("clientState must be set and at most 128 characters.");
    }
    let Some(expiry) = body.get("expirationDateTime").and_then(parse_time) else {
        return bad("expirationDateTime is required.");
    };
    let now = chrono::Utc::now();
    if expiry <= now || expiry > now + chrono::Duration::minutes(4230) {
        return bad("Subscription expiration can only be 4230 minutes in the future.");
    }
    let include = body
        .get("includeResourceData")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if include {
        let cert = text("encryptionCertificate");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(cert)
            .unwrap_or_default();
        if decoded.is_empty() || text("encryptionCertificateId").is_empty() {
            return bad(
                "encryptionCertificate and encryptionCertificateId are required when includeResourceData is true.",
            );
        }
    }
    let id = random_uuid();
    let mut sub = Map::new();
    sub.insert(
        "@odata.context".into(),
        json!("https://graph.microsoft.com/beta/$metadata#subscriptions/$entity"),
    );
    sub.insert("id".into(), json!(id));
    for key in [
        "resource",
        "changeType",
        "clientState",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "includeResourceData",
        "encryptionCertificateId",
    ] {
        sub.insert(key.into(), body.get(key).cloned().unwrap_or(Value::Null));
    }
    sub.insert("applicationId".into(), json!(entra::CLIENT_ID));
    sub.insert("expirationDateTime".into(), json!(graph_time(expiry)));
    sub.insert("creatorId".into(), json!(random_uuid()));
    sub.insert("latestSupportedTlsVersion".into(), json!("v1_2"));
    let sub = Value::Object(sub);
    state.subscriptions.insert(id, sub.clone());
    ok(201, sub)
}

fn renew_subscription(state: &mut GraphState, id: &str, request: &Request) -> ResponseTemplate {
    let expiry = serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|b| b.get("expirationDateTime").and_then(parse_time));
    let Some(expiry) = expiry else {
        return graph_error(
            400,
            "InvalidRequest",
            "expirationDateTime is required.",
            request,
        );
    };
    let now = chrono::Utc::now();
    if expiry <= now || expiry > now + chrono::Duration::minutes(4230) {
        return graph_error(
            400,
            "InvalidRequest",
            "Subscription expiration can only be 4230 minutes in the future.",
            request,
        );
    }
    match state.subscriptions.get_mut(id) {
        Some(sub) => {
            sub["expirationDateTime"] = json!(graph_time(expiry));
            ok(200, sub.clone())
        }
        None => graph_error(
            404,
            "ResourceNotFound",
            "The object was not found.",
            request,
        ),
    }
}

/// Encrypts `plaintext` the way Graph encrypts notification content for
/// [`keys::GRAPH_ENCRYPTION_CERT`]: a random AES-256 key, AES-CBC with PKCS#7 and IV = key[..16],
/// HMAC-SHA256 of the ciphertext with the key, and the key wrapped with RSA-OAEP (SHA-1) for the
/// certificate's public key. Returns the `encryptedContent` object.
pub fn encrypted_content(plaintext: &[u8]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("random"); // allow-unwrap: test setup
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&key[..16]);
    let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(
        UnboundCipherKey::new(&AES_256, &key).expect("aes key"), // allow-unwrap: test setup
    )
    .expect("aes-cbc"); // allow-unwrap: test setup
    let mut data = plaintext.to_vec();
    cipher
        .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .expect("encrypt"); // allow-unwrap: test setup
    let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &data);
    let public =
        PublicEncryptingKey::from_der(&pem_der(keys::GRAPH_ENCRYPTION_RSA_PUB, "PUBLIC KEY"))
            .expect("graph encryption public key"); // allow-unwrap: test setup
    let public = OaepPublicEncryptingKey::new(public).expect("oaep key"); // allow-unwrap: test setup
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let wrapped = public
        .encrypt(&OAEP_SHA1_MGF1SHA1, &key, &mut wrapped, None)
        .expect("wrap key") // allow-unwrap: test setup
        .to_vec();
    let cert_der = pem_der(keys::GRAPH_ENCRYPTION_CERT, "CERTIFICATE");
    let thumbprint: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
    json!({
        "data": b64.encode(&data),
        "dataSignature": b64.encode(signature.as_ref()),
        "dataKey": b64.encode(wrapped),
        "encryptionCertificateId": ENCRYPTION_CERTIFICATE_ID,
        "encryptionCertificateThumbprint": thumbprint,
    })
}

/// The application id of "Microsoft Graph Change Tracking", the `azp` of validation tokens.
pub const GRAPH_CHANGE_TRACKING_APP_ID: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";

/// A `validationTokens` entry as Graph sends with encrypted notifications: a JWT from the
/// Microsoft identity platform. [`Default`] is a genuine one for [`entra::CLIENT_ID`] in
/// [`entra::TENANT_ID`]; change a field to forge a wrong one.
#[derive(Debug, Clone)]
pub struct ValidationToken {
    /// `aud`: the subscribing app's id.
    pub aud: String,
    /// `azp` (v2 tokens' calling app); `None` leaves it out.
    pub azp: Option<String>,
    /// `appid` (v1 tokens' calling app); `None` leaves it out.
    pub appid: Option<String>,
    /// `iss`: `https://sts.windows.net/{tenant}/`.
    pub iss: String,
    /// `tid`.
    pub tid: String,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in: i64,
    /// The signing key (PKCS#8 PEM).
    pub signing_key_pem: &'static str,
    /// The header's `kid`.
    pub kid: String,
}

impl Default for ValidationToken {
    fn default() -> Self {
        Self {
            aud: entra::CLIENT_ID.to_owned(),
            azp: Some(GRAPH_CHANGE_TRACKING_APP_ID.to_owned()),
            appid: Some(GRAPH_CHANGE_TRACKING_APP_ID.to_owned()),
            iss: format!("https://sts.windows.net/{}/", entra::TENANT_ID),
            tid: entra::TENANT_ID.to_owned(),
            expires_in: 3600,
            signing_key_pem: entra::ENTRA_SIGNING_RSA,
            kid: entra::SIGNING_KID.to_owned(),
        }
    }
}

impl ValidationToken {
    /// The signed JWT (RS256).
    pub fn sign(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "aud": self.aud,
            "iss": self.iss,
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + self.expires_in,
            "aio": "42FgYKhZ+uOZrHa7p+7tfruauq1HAA==",
            "app_displayname": "Microsoft Graph Change Tracking",
            "appidacr": "2",
            "idp": format!("https://sts.windows.net/{}/", self.tid),
            "tid": self.tid,
            "uti": random_uuid(),
            "ver": "1.0",
        });
        if let Some(azp) = &self.azp {
            claims["azp"] = json!(azp);
        }
        if let Some(appid) = &self.appid {
            claims["appid"] = json!(appid);
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_rsa_pem(self.signing_key_pem.as_bytes())
            .expect("validation token signing key"); // allow-unwrap: test setup
        jsonwebtoken::encode(&header, &claims, &key).expect("sign validation token") // allow-unwrap: test setup
    }
}

/// A genuine validation token ([`ValidationToken::default`]).
pub fn validation_token() -> String {
    ValidationToken::default().sign()
}

/// The identity platform's JWKS (`/common/discovery/v2.0/keys`) with the key validation tokens
/// are signed with, counting fetches. Takes precedence over [`FakeEntra`]'s copy on one server.
#[derive(Clone)]
pub struct ValidationJwks {
    base: String,
    fetches: Arc<Mutex<usize>>,
}

struct JwksResponder {
    body: Value,
    fetches: Arc<Mutex<usize>>,
}

impl Respond for JwksResponder {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        *self
            .fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        ResponseTemplate::new(200).set_body_json(&self.body)
    }
}

impl ValidationJwks {
    /// Mounts the JWKS on `server`.
    pub async fn mount(server: &MockServer) -> Self {
        let key = EncodingKey::from_rsa_pem(entra::ENTRA_SIGNING_RSA.as_bytes())
            .expect("entra signing key"); // allow-unwrap: test setup
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).expect("entra jwk"); // allow-unwrap: test setup
        jwk.common.key_id = Some(entra::SIGNING_KID.to_owned());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let mut body =
            serde_json::to_value(jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }).expect("jwks json"); // allow-unwrap: test setup
        // Microsoft's set also lists keys of kinds a verifier must skip.
        if let Some(keys) = body["keys"].as_array_mut() {
            keys.push(json!({"kty": "oct", "kid": "not-a-signing-key", "k": "c2VjcmV0"}));
        }
        let fetches = Arc::new(Mutex::new(0));
        Mock::given(method("GET"))
            .and(path("/common/discovery/v2.0/keys"))
            .respond_with(JwksResponder {
                body,
                fetches: fetches.clone(),
            })
            .with_priority(1)
            .named("identity platform jwks")
            .mount(server)
            .await;
        Self {
            base: server.uri(),
            fetches,
        }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> Url {
        Url::parse(&format!("{}/common/discovery/v2.0/keys", self.base)).expect("jwks url") // allow-unwrap: test setup
    }

    /// The login host serving it (for configurations derived from a login base).
    pub fn login_base(&self) -> Url {
        Url::parse(&format!("{}/", self.base)).expect("server uri") // allow-unwrap: test setup
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        *self
            .fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The subscription resource Graph echoes in notifications for the meeting at `join_web_url`.
pub fn notification_resource(join_web_url: &str) -> String {
    format!("communications/onlineMeetings/?$filter=JoinWebUrl eq '{join_web_url}'")
}

/// A roster update payload (the resource data of a notification): `joined` and `exited` are
/// `activeParticipants` entries such as [`user_participant`] and [`acs_participant`].
pub fn roster_update(event_date_time: &str, joined: Vec<Value>, exited: Vec<Value>) -> Value {
    json!({
        "@odata.type": "#Microsoft.Graph.onlineMeeting",
        "@odata.id": "communications/onlineMeetings?$filter=joinWebUrl+eq+'…'",
        "id": "communications/onlineMeetings?$filter=joinWebUrl+eq+'…'",
        "eventType": "Microsoft.Communication.CallRosterUpdate",
        "eventDateTime": event_date_time,
        "state": "active",
        "activeParticipants@joined": joined,
        "activeParticipants@exited": exited,
    })
}

/// A call started/ended payload (`event` is `CallStarted` or `CallEnded`).
pub fn call_event(event: &str, event_date_time: &str) -> Value {
    json!({
        "@odata.type": "#Microsoft.Graph.onlineMeeting",
        "eventType": format!("Microsoft.Communication.{event}"),
        "eventDateTime": event_date_time,
        "state": if event == "CallEnded" { "inactive" } else { "active" },
    })
}

/// An organisation user in a roster, with a display name (which parsers must drop).
pub fn user_participant(participant_id: &str, object_id: &str, display_name: &str) -> Value {
    json!({
        "Id": participant_id,
        "Identity": {"User": {"Id": object_id, "DisplayName": display_name, "TenantId": entra::TENANT_ID}}
    })
}

/// An ACS (virtual appointment browser) guest in a roster, with a display name.
pub fn acs_participant(participant_id: &str, acs_id: &str, display_name: &str) -> Value {
    json!({
        "id": participant_id,
        "identity": {"azureCommunicationServicesUser": {
            "azureCommunicationServicesResourceId": "534c244d-49f8-47a1-9e8e-70d115a2ef4d",
            "id": acs_id,
            "displayName": display_name
        }}
    })
}

/// A notification batch with `payload` unencrypted in `resourceData`.
pub fn plain_notification(
    subscription_id: &str,
    client_state: &str,
    join_web_url: &str,
    payload: Value,
) -> Value {
    json!({"value": [{
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": graph_time(chrono::Utc::now() + chrono::Duration::hours(12)),
        "changeType": "updated",
        "clientState": client_state,
        "tenantId": entra::TENANT_ID,
        "resource": notification_resource(join_web_url),
        "resourceData": payload,
    }]})
}

/// A notification batch with `payload` encrypted in `encryptedContent` (see [`encrypted_content`])
/// and a genuine [`validation_token`] in `validationTokens`, as Graph sends it.
pub fn encrypted_notification(
    subscription_id: &str,
    client_state: &str,
    join_web_url: &str,
    payload: &Value,
) -> Value {
    encrypted_notification_with_tokens(
        subscription_id,
        client_state,
        join_web_url,
        payload,
        vec![validation_token()],
    )
}

/// [`encrypted_notification`] with the given `validationTokens` (none: the key is left out).
pub fn encrypted_notification_with_tokens(
    subscription_id: &str,
    client_state: &str,
    join_web_url: &str,
    payload: &Value,
    validation_tokens: Vec<String>,
) -> Value {
    let mut batch = encrypted_batch(subscription_id, client_state, join_web_url, payload);
    if !validation_tokens.is_empty() {
        batch["validationTokens"] = json!(validation_tokens);
    }
    batch
}

fn encrypted_batch(
    subscription_id: &str,
    client_state: &str,
    join_web_url: &str,
    payload: &Value,
) -> Value {
    let plaintext = serde_json::to_vec(payload).expect("payload json"); // allow-unwrap: test setup
    json!({"value": [{
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": graph_time(chrono::Utc::now() + chrono::Duration::hours(12)),
        "changeType": "updated",
        "clientState": client_state,
        "tenantId": entra::TENANT_ID,
        "resource": notification_resource(join_web_url),
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.onlineMeeting",
            "@odata.id": notification_resource(join_web_url),
            "id": notification_resource(join_web_url)
        },
        "encryptedContent": encrypted_content(&plaintext),
    }]})
}

/// A lifecycle notification batch (`event`: `reauthorizationRequired`, `subscriptionRemoved`,
/// `missed`).
pub fn lifecycle_notification(subscription_id: &str, client_state: &str, event: &str) -> Value {
    json!({"value": [{
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": graph_time(chrono::Utc::now() + chrono::Duration::hours(1)),
        "tenantId": entra::TENANT_ID,
        "clientState": client_state,
        "lifecycleEvent": event,
    }]})
}

/// An attendance report as Graph returns it with `$expand=attendanceRecords`: one staff user and
/// one anonymous patient (with name and email, which parsers must drop).
pub fn attendance_report(report_id: &str, staff_object_id: &str, start: &str, end: &str) -> Value {
    json!({
        "id": report_id,
        "totalParticipantCount": 2,
        "meetingStartDateTime": start,
        "meetingEndDateTime": end,
        "externalEventInformation": [],
        "attendanceRecords": [
            {
                "id": staff_object_id,
                "emailAddress": "dr.ross@contoso.example",
                "totalAttendanceInSeconds": 1200,
                "role": "Organizer",
                "registrationId": null,
                "identity": {
                    "@odata.type": "#microsoft.graph.communicationsUserIdentity",
                    "id": staff_object_id,
                    "displayName": "Dr. Ross",
                    "tenantId": entra::TENANT_ID
                },
                "attendanceIntervals": [
                    {"joinDateTime": start, "leaveDateTime": end, "durationInSeconds": 1200}
                ]
            },
            {
                "id": format!("{report_id}-guest"),
                "emailAddress": "knixontestemail@epic.com",
                "totalAttendanceInSeconds": 600,
                "role": "Attendee",
                "registrationId": null,
                "identity": {
                    "id": "",
                    "displayName": "Camila Lopez",
                    "tenantId": null
                },
                "attendanceIntervals": [
                    {"joinDateTime": start, "leaveDateTime": end, "durationInSeconds": 600}
                ]
            }
        ]
    })
}
