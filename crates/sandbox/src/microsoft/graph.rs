//! Microsoft Graph under `/graph/{v1.0|beta}`: online meetings (createOrGet idempotent by
//! organiser + `externalId`, PATCH, the virtual appointment join URL, attendance reports) and
//! change-notification subscriptions with the real validation handshake. Every call needs a
//! bearer token this sandbox's Entra issued; errors have Graph's shape and a `request-id`.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::{Map, Value, json};
use url::Url;
use visitbridge_http::Secret;

use super::{GraphToken, MsUser, SandboxMicrosoft, Subscription, rooms::Meeting};
use crate::{
    html::Refusal,
    util::{self, graph_time, parse_time},
};

/// Graph's longest lifetime for online meeting call-event subscriptions.
const MAX_SUBSCRIPTION_MINUTES: i64 = 4230;
const RESOURCE_PREFIX: &str = "communications/onlinemeetings/?$filter=joinweburl eq '";

/// Graph's error answer with a fresh `request-id` (also in the header).
pub(crate) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = util::uuid();
    let mut response = (
        status,
        Json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": request_id,
                    "client-request-id": request_id,
                }
            }
        })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

fn ok(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&util::uuid()) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

fn bad_request(message: &str) -> Response {
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

pub(crate) async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/graph/") {
        let segment = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
        return bad_request(&format!("Resource not found for the segment '{segment}'."));
    }
    (StatusCode::NOT_FOUND, "not found").into_response()
}

impl SandboxMicrosoft {
    /// The caller's token, if this sandbox issued it and it is still valid.
    fn graph_caller(&self, headers: &HeaderMap) -> Result<GraphToken, Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .unwrap_or_default();
        let found = self
            .lock()
            .tokens
            .get(token)
            .filter(|t| t.expires_at > Utc::now())
            .cloned();
        found.ok_or_else(|| {
            graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )
            .into()
        })
    }

    /// Checks the token and version, and finds the organiser (by object id or UPN).
    fn meeting_caller(
        &self,
        headers: &HeaderMap,
        version: &str,
        user: &str,
    ) -> Result<(GraphToken, MsUser), Refusal> {
        let token = self.graph_caller(headers)?;
        if !matches!(version, "v1.0" | "beta") {
            return Err(
                bad_request(&format!("Resource not found for the segment '{version}'.")).into(),
            );
        }
        let Some(user) = self.user(user).cloned() else {
            return Err(graph_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("The user {user} was not found in the tenant."),
            )
            .into());
        };
        if !user.access_policy_granted {
            return Err(graph_error(
                StatusCode::FORBIDDEN,
                "Unauthorized",
                &format!(
                    "App {} is not authorized to Create meeting on behalf of user {}",
                    token.client_id, user.object_id
                ),
            )
            .into());
        }
        Ok((token, user))
    }
}

/// The meeting as Graph answers this request's `Prefer` headers.
fn prefer(meeting: Value, headers: &HeaderMap) -> Value {
    crate::shapes::graph_meeting_as_preferred(
        meeting,
        headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad_request("Invalid request body.").into()),
    }
}

pub(crate) async fn create_or_get(
    State(ms): State<SandboxMicrosoft>,
    Path((version, user)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, organizer) = match ms.meeting_caller(&headers, &version, &user) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let body = match body_object(&body) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    const ALLOWED: [&str; 6] = [
        "chatInfo",
        "endDateTime",
        "externalId",
        "participants",
        "startDateTime",
        "subject",
    ];
    if let Some(unknown) = body.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return bad_request(&format!(
            "The property '{unknown}' does not exist on type 'microsoft.graph.onlineMeeting'."
        ));
    }
    let Some(external_id) = body
        .get("externalId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return bad_request("externalId is required.");
    };
    let now = Utc::now();
    let start = body
        .get("startDateTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .unwrap_or(now);
    let end = body
        .get("endDateTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .unwrap_or(start + chrono::Duration::hours(1));
    if end < start {
        return bad_request("The end time of the meeting must be after the start time.");
    }
    let mut st = ms.lock();
    // Identity of a meeting: tenant (this sandbox) + organiser + externalId.
    if let Some(existing) = st
        .meetings
        .iter()
        .find(|m| m.organizer.object_id == organizer.object_id && m.external_id == external_id)
    {
        return ok(StatusCode::OK, prefer(existing.value.clone(), &headers));
    }
    let meeting = match Meeting::new(
        &ms.inner.base,
        ms.tenant_id(),
        &organizer,
        external_id,
        (start, end),
        body.get("subject").cloned().unwrap_or(Value::Null),
    ) {
        Ok(m) => m,
        Err(_) => {
            return graph_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            );
        }
    };
    let value = meeting.value.clone();
    st.meetings.push(meeting);
    drop(st);
    tracing::info!(organizer = %organizer.object_id, "sandbox graph created a meeting");
    ok(StatusCode::CREATED, prefer(value, &headers))
}

fn meeting_not_found() -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The meeting was not found.",
    )
}

pub(crate) async fn get_meeting(
    State(ms): State<SandboxMicrosoft>,
    Path((version, user, meeting)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (_, organizer) = match ms.meeting_caller(&headers, &version, &user) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let st = ms.lock();
    match st
        .meetings
        .iter()
        .find(|m| m.id == meeting && m.organizer.object_id == organizer.object_id)
    {
        Some(m) => ok(StatusCode::OK, prefer(m.value.clone(), &headers)),
        None => meeting_not_found(),
    }
}

const LOBBY_SCOPES: [&str; 6] = [
    "organizer",
    "organization",
    "organizationAndFederated",
    "everyone",
    "invited",
    "organizationExcludingGuests",
];

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

pub(crate) async fn patch_meeting(
    State(ms): State<SandboxMicrosoft>,
    Path((version, user, meeting)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, organizer) = match ms.meeting_caller(&headers, &version, &user) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let mut body = match body_object(&body) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(scope) = body
        .get("lobbyBypassSettings")
        .and_then(|l| l.get("scope"))
        .and_then(Value::as_str)
        && !LOBBY_SCOPES.contains(&scope)
    {
        return bad_request(&format!(
            "Requested value '{scope}' was not found for lobbyBypassSettings.scope."
        ));
    }
    for read_only in [
        "id",
        "joinWebUrl",
        "externalId",
        "chatInfo",
        "creationDateTime",
        "@odata.context",
    ] {
        body.remove(read_only);
    }
    // Times are checked like Graph does (date-times, end after start) and kept in its format,
    // so the room pages show the slot that was sent.
    for key in ["startDateTime", "endDateTime"] {
        if let Some(value) = body.get(key) {
            let Some(t) = value.as_str().and_then(parse_time) else {
                return bad_request(&format!(
                    "Cannot convert the literal to the expected type 'Edm.DateTimeOffset' ({key})."
                ));
            };
            body.insert(key.to_owned(), Value::String(graph_time(t)));
        }
    }
    let mut st = ms.lock();
    let Some(stored) = st
        .meetings
        .iter_mut()
        .find(|m| m.id == meeting && m.organizer.object_id == organizer.object_id)
    else {
        return meeting_not_found();
    };
    let time = |key: &str| {
        body.get(key)
            .or(stored.value.get(key))
            .and_then(Value::as_str)
            .and_then(parse_time)
    };
    if let (Some(start), Some(end)) = (time("startDateTime"), time("endDateTime"))
        && end < start
    {
        return bad_request("The end time of the meeting must be after the start time.");
    }
    merge(&mut stored.value, &Value::Object(body));
    ok(StatusCode::OK, prefer(stored.value.clone(), &headers))
}

pub(crate) async fn virtual_appointment_url(
    State(ms): State<SandboxMicrosoft>,
    Path((version, user, meeting)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (_, organizer) = match ms.meeting_caller(&headers, &version, &user) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let exists = ms
        .lock()
        .meetings
        .iter()
        .any(|m| m.id == meeting && m.organizer.object_id == organizer.object_id);
    if !exists {
        return meeting_not_found();
    }
    ok(
        StatusCode::OK,
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.String",
            "value": format!("{}?role=patient", ms.room_url(&meeting)),
        }),
    )
}

pub(crate) async fn list_reports(
    State(ms): State<SandboxMicrosoft>,
    Path((version, user, meeting)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (_, organizer) = match ms.meeting_caller(&headers, &version, &user) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let st = ms.lock();
    let Some(m) = st
        .meetings
        .iter()
        .find(|m| m.id == meeting && m.organizer.object_id == organizer.object_id)
    else {
        return meeting_not_found();
    };
    let reports: Vec<Value> = m
        .reports
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["attendanceRecords"] = json!([]);
            r
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{}')/onlineMeetings('{meeting}')/attendanceReports", organizer.object_id),
            "value": reports,
        }),
    )
}

pub(crate) async fn get_report(
    State(ms): State<SandboxMicrosoft>,
    Path((version, user, meeting, report)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (_, organizer) = match ms.meeting_caller(&headers, &version, &user) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let st = ms.lock();
    let Some(m) = st
        .meetings
        .iter()
        .find(|m| m.id == meeting && m.organizer.object_id == organizer.object_id)
    else {
        return meeting_not_found();
    };
    let Some(found) = m.reports.iter().find(|r| r["id"] == report.as_str()) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The attendance report was not found.",
        );
    };
    let expand = util::form_map(query.unwrap_or_default().as_bytes())
        .get("$expand")
        .is_some_and(|v| v == "attendanceRecords");
    let mut found = found.clone();
    if !expand {
        found["attendanceRecords"] = json!([]);
    }
    ok(StatusCode::OK, found)
}

/// The join URL in a subscription resource, or `None` if it is not a meeting call-event resource.
fn join_url_of(resource: &str) -> Option<String> {
    let resource = resource.trim_start_matches('/');
    let lower = resource.to_ascii_lowercase();
    if !lower.starts_with(RESOURCE_PREFIX) || !resource.ends_with('\'') {
        return None;
    }
    let inner = &resource[RESOURCE_PREFIX.len()..resource.len() - 1];
    Some(inner.replace("''", "'"))
}

/// A join URL without its query, for comparing.
fn url_key(url: &str) -> &str {
    url.split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/')
}

fn http_url(text: &str) -> Option<Url> {
    Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Graph's validation handshake: `POST {url}?validationToken=…` must answer 200, `text/plain`,
/// the decoded token, within 10 seconds.
async fn validate_endpoint(http: &reqwest::Client, url: &Url) -> Result<(), String> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        util::uuid()
    );
    let mut target = url.clone();
    target
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    let response = http
        .post(target)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| "the endpoint could not be reached within 10 seconds".to_owned())?;
    if response.status() != StatusCode::OK {
        return Err(format!(
            "the endpoint answered {}",
            response.status().as_u16()
        ));
    }
    let text_plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let body = response
        .text()
        .await
        .map_err(|_| "the answer could not be read".to_owned())?;
    if !text_plain || body != token {
        return Err("the answer is not the validation token as text/plain".into());
    }
    Ok(())
}

pub(crate) async fn create_subscription(
    State(ms): State<SandboxMicrosoft>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match ms.graph_caller(&headers) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    if !matches!(version.as_str(), "v1.0" | "beta") {
        return bad_request(&format!("Resource not found for the segment '{version}'."));
    }
    let body = match body_object(&body) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    let invalid = |message: &str| graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", message);
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    if text("changeType") != "updated" {
        return invalid("changeType must be 'updated' for onlineMeeting call events.");
    }
    let resource = text("resource").to_owned();
    let Some(join_url) = join_url_of(&resource) else {
        return invalid("Resource is not a supported onlineMeeting call event resource.");
    };
    if body
        .get("includeResourceData")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return invalid(
            "The sandbox sends call events unencrypted in resourceData: subscribe with includeResourceData false.",
        );
    }
    let Some(notification_url) = http_url(text("notificationUrl")) else {
        return invalid("Subscription notificationUrl must be an http(s) URL.");
    };
    let lifecycle_url = match body.get("lifecycleNotificationUrl") {
        None | Some(Value::Null) => None,
        Some(_) => match http_url(text("lifecycleNotificationUrl")) {
            Some(url) => Some(url),
            None => {
                return invalid("Subscription lifecycleNotificationUrl must be an http(s) URL.");
            }
        },
    };
    let client_state = text("clientState");
    if client_state.len() > 128 {
        return invalid("clientState must be at most 128 characters.");
    }
    let Some(expires_at) = body
        .get("expirationDateTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
    else {
        return invalid("expirationDateTime is required.");
    };
    let now = Utc::now();
    if expires_at <= now || expires_at > now + chrono::Duration::minutes(MAX_SUBSCRIPTION_MINUTES) {
        return invalid("Subscription expiration can only be 4230 minutes in the future.");
    }
    let meeting_id = ms
        .lock()
        .meetings
        .iter()
        .find(|m| url_key(m.join_web_url()) == url_key(&join_url))
        .map(|m| m.id.clone());
    let Some(meeting_id) = meeting_id else {
        return invalid("No online meeting has the JoinWebUrl of the resource.");
    };
    for url in std::iter::once(&notification_url).chain(lifecycle_url.as_ref()) {
        if let Err(reason) = validate_endpoint(&ms.inner.http, url).await {
            tracing::warn!(reason = %reason, "sandbox graph: a subscription failed validation");
            return invalid(&format!(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request: {reason}."
            ));
        }
    }
    let id = util::uuid();
    let value = json!({
        "@odata.context": format!("https://graph.microsoft.com/{version}/$metadata#subscriptions/$entity"),
        "id": id,
        "resource": resource,
        "applicationId": token.client_id,
        "changeType": "updated",
        "clientState": if client_state.is_empty() { Value::Null } else { json!(client_state) },
        "notificationUrl": notification_url.as_str(),
        "lifecycleNotificationUrl": lifecycle_url.as_ref().map(Url::as_str),
        "expirationDateTime": graph_time(expires_at),
        "creatorId": util::uuid(),
        "includeResourceData": false,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    });
    ms.lock().subscriptions.push(Subscription {
        id: id.clone(),
        meeting_id,
        resource,
        notification_url,
        lifecycle_url,
        client_state: (!client_state.is_empty()).then(|| Secret::new(client_state)),
        expires_at,
        value: value.clone(),
    });
    tracing::info!(subscription_id = %id, "sandbox graph created a subscription");
    ok(StatusCode::CREATED, value)
}

fn subscription_not_found(id: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The object was not found. (subscription {id})"),
    )
}

pub(crate) async fn get_subscription(
    State(ms): State<SandboxMicrosoft>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = ms.graph_caller(&headers) {
        return refusal.into_response();
    }
    let found = ms
        .lock()
        .subscriptions
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.value.clone());
    match found {
        Some(value) => ok(StatusCode::OK, value),
        None => subscription_not_found(&id),
    }
}

pub(crate) async fn renew_subscription(
    State(ms): State<SandboxMicrosoft>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = ms.graph_caller(&headers) {
        return refusal.into_response();
    }
    let body = match body_object(&body) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(expires_at) = body
        .get("expirationDateTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
    else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "expirationDateTime is required.",
        );
    };
    let now = Utc::now();
    if expires_at <= now || expires_at > now + chrono::Duration::minutes(MAX_SUBSCRIPTION_MINUTES) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Subscription expiration can only be 4230 minutes in the future.",
        );
    }
    let mut st = ms.lock();
    let Some(sub) = st.subscriptions.iter_mut().find(|s| s.id == id) else {
        return subscription_not_found(&id);
    };
    sub.expires_at = expires_at;
    sub.value["expirationDateTime"] = json!(graph_time(expires_at));
    ok(StatusCode::OK, sub.value.clone())
}

pub(crate) async fn delete_subscription(
    State(ms): State<SandboxMicrosoft>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = ms.graph_caller(&headers) {
        return refusal.into_response();
    }
    let mut st = ms.lock();
    let before = st.subscriptions.len();
    st.subscriptions.retain(|s| s.id != id);
    if st.subscriptions.len() == before {
        return subscription_not_found(&id);
    }
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) async fn reauthorize_subscription(
    State(ms): State<SandboxMicrosoft>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = ms.graph_caller(&headers) {
        return refusal.into_response();
    }
    if ms.lock().subscriptions.iter().any(|s| s.id == id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        subscription_not_found(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_url_is_read_from_the_resource() {
        assert_eq!(
            join_url_of(
                "/communications/onlineMeetings/?$filter=JoinWebUrl eq 'http://x/rooms/a''b'"
            ),
            Some("http://x/rooms/a'b".to_owned())
        );
        assert_eq!(join_url_of("/communications/calls"), None);
        assert_eq!(url_key("http://x/rooms/m?role=patient"), "http://x/rooms/m");
    }
}
