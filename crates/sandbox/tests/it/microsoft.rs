//! The sandbox Microsoft cloud driven with `visitbridge_smart` (Entra sign-in) and
//! `visitbridge_graph` (meetings, subscriptions, notification parsing), and its room pages.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Router,
    body::Bytes,
    extract::RawQuery,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::post,
};
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use url::Url;
use visitbridge_graph::{
    ClientStateSecret, EntraAppTokens, EntraConfig, EventKind, ExternalMeetingId, GraphClient,
    GraphConfig, Notification, ParticipantEvent, ParticipantKind, PatientJoinKind,
    SubscriptionConfig, TokenCredential, UserObjectId, VisitMeetingRequest, parse_notifications,
};
use visitbridge_http::Secret;
use visitbridge_sandbox::RoomRole;
use visitbridge_smart::{Callback, ClientAuth, OidcClientConfig, OidcProvider};

use crate::common::{
    self, MS_CLIENT_ID, MS_REDIRECT_URI, MS_SECRET, forms, get_html, http, location, submit, url,
};

const CLIENT_STATE: &str = "sandbox-test-client-state";

fn graph(env: &common::Env, secret: &str) -> GraphClient {
    let tokens = EntraAppTokens::new(
        http(),
        EntraConfig::new(&env.sandbox.tenant_id, MS_CLIENT_ID)
            .with_login_base(env.sandbox.ms_base_url.clone()),
        TokenCredential::ClientSecret(Secret::new(secret)),
    )
    .expect("tokens");
    GraphClient::new(
        http(),
        GraphConfig {
            graph_base: env.sandbox.graph_base_url.clone(),
            ..GraphConfig::default()
        },
        Arc::new(tokens),
    )
}

fn visit_request(env: &common::Env, visit: usize) -> VisitMeetingRequest {
    let seed = env.sandbox.ehr.seed();
    let v = &seed.visits[visit];
    let clinician = seed.clinician(&v.practitioner_id).expect("clinician");
    VisitMeetingRequest {
        organizer: UserObjectId::new(&clinician.ms_object_id),
        external_id: ExternalMeetingId::derive("sandbox-config", &v.csn),
        start: Some(v.start),
        end: Some(v.end),
    }
}

#[tokio::test]
async fn a_clinician_signs_in_with_the_one_click_picker() {
    let env = common::start().await;
    let clinician = env.sandbox.ehr.seed().clinicians[1].clone();
    let issuer = url(&env.sandbox.microsoft.issuer());
    let provider = OidcProvider::discover(
        http(),
        &issuer,
        OidcClientConfig::new(
            MS_CLIENT_ID,
            url(MS_REDIRECT_URI),
            ClientAuth::SecretPost(Secret::new(MS_SECRET)),
        ),
    )
    .await
    .expect("discovery");
    let (request, pending) = provider
        .begin_sign_in(&[("login_hint", clinician.upn.as_str())])
        .expect("begin");
    let http = http();
    let page = get_html(&http, &request.url()).await;
    let picks = forms(&page);
    assert_eq!(picks.len(), env.sandbox.microsoft.users().len());
    assert_eq!(
        picks[0].fields["user"], clinician.ms_object_id,
        "the hinted account comes first"
    );
    let back = submit(&http, &request.url(), &picks[0]).await;
    assert_eq!(back.status(), 302);
    let callback = location(&back);
    assert!(callback.as_str().starts_with(MS_REDIRECT_URI));
    let signed_in = provider
        .complete_sign_in(
            pending,
            &Callback::from_query(callback.query().unwrap_or_default()).expect("callback"),
        )
        .await
        .expect("signed in");
    assert_eq!(
        signed_in.claims.str_claim("oid"),
        Some(clinician.ms_object_id.as_str())
    );
    assert_eq!(
        signed_in.claims.str_claim("tid"),
        Some(env.sandbox.tenant_id.as_str())
    );
    assert_eq!(
        signed_in.claims.str_claim("preferred_username"),
        Some(clinician.upn.as_str())
    );

    // A redirect URI the app did not register is refused on Entra's page.
    let mut wrong = request.url();
    let pairs: Vec<(String, String)> = wrong
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            let v = if k == "redirect_uri" {
                "http://127.0.0.1:9/evil".to_owned()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    wrong.query_pairs_mut().clear().extend_pairs(&pairs);
    let refused = http.get(wrong).send().await.expect("authorize");
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.expect("page").contains("AADSTS50011"));
}

#[tokio::test]
async fn one_meeting_per_visit_created_then_found() {
    let env = common::start().await;
    let graph = graph(&env, MS_SECRET);
    let first = graph
        .provision_meeting(&visit_request(&env, 0))
        .await
        .expect("provisioned");
    assert!(first.created && first.policy_applied);
    let room = env.sandbox.microsoft.room_url(first.meeting_id.as_str());
    assert_eq!(first.join_web_url, room);
    assert_eq!(
        first.patient_join_url.kind,
        PatientJoinKind::VirtualAppointment
    );
    assert_eq!(first.patient_join_url.url, format!("{room}?role=patient"));

    let second = graph
        .provision_meeting(&visit_request(&env, 0))
        .await
        .expect("found again");
    assert!(!second.created && !second.policy_applied);
    assert_eq!(second.meeting_id, first.meeting_id);
    let other = graph
        .provision_meeting(&visit_request(&env, 1))
        .await
        .expect("another visit");
    assert_ne!(other.meeting_id, first.meeting_id);
    let meetings = env.sandbox.microsoft.meetings();
    assert_eq!(meetings.len(), 2);
    assert_eq!(meetings[0]["lobbyBypassSettings"]["scope"], "organization");
    assert_eq!(meetings[0]["allowMeetingChat"], "limited");

    let rooms = get_html(&http(), &env.sandbox.rooms_url).await;
    assert!(rooms.contains(first.meeting_id.as_str()));

    let denied = graph_with_wrong_secret(&env)
        .provision_meeting(&visit_request(&env, 2))
        .await;
    assert!(denied.is_err());
    assert_eq!(env.sandbox.microsoft.meetings().len(), 2);
}

#[tokio::test]
async fn rooms_show_the_times_sent_and_follow_a_moved_visit() {
    let env = common::start().await;
    let graph = graph(&env, MS_SECRET);
    let request = visit_request(&env, 0);
    let slot = |start: chrono::DateTime<chrono::Utc>, end: chrono::DateTime<chrono::Utc>| {
        format!(
            "{}–{} UTC",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%H:%M")
        )
    };
    let (start, end) = (request.start.unwrap(), request.end.unwrap());
    graph
        .provision_meeting(&request)
        .await
        .expect("provisioned");
    let rooms = get_html(&http(), &env.sandbox.rooms_url).await;
    assert!(rooms.contains(&slot(start, end)), "{rooms}");

    let later = chrono::Duration::minutes(75);
    let moved = VisitMeetingRequest {
        start: Some(start + later),
        end: Some(end + later),
        ..visit_request(&env, 0)
    };
    graph.provision_meeting(&moved).await.expect("moved");
    let rooms = get_html(&http(), &env.sandbox.rooms_url).await;
    assert!(rooms.contains(&slot(start + later, end + later)), "{rooms}");
    assert!(!rooms.contains(&slot(start, end)), "{rooms}");
}

fn graph_with_wrong_secret(env: &common::Env) -> GraphClient {
    graph(env, "not-the-secret")
}

/// A notification endpoint: answers Graph's validation handshake (or refuses it) and hands over
/// every notification body.
struct Receiver {
    base: Url,
    bodies: UnboundedReceiver<Vec<u8>>,
    validations: Arc<AtomicUsize>,
}

async fn receiver(accept_validation: bool) -> Receiver {
    let (sender, bodies) = unbounded_channel();
    let validations = Arc::new(AtomicUsize::new(0));
    let counter = validations.clone();
    let handler = move |RawQuery(query): RawQuery, body: Bytes| {
        let sender = sender.clone();
        let counter = counter.clone();
        async move {
            let token = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .find(|(k, _)| k == "validationToken")
                .map(|(_, v)| v.into_owned());
            if let Some(token) = token {
                counter.fetch_add(1, Ordering::SeqCst);
                if !accept_validation {
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token)
                    .into_response();
            }
            let _ = sender.send(body.to_vec());
            StatusCode::ACCEPTED.into_response()
        }
    };
    let app: Router = Router::new()
        .route("/notifications", post(handler.clone()))
        .route("/lifecycle", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = url(&format!("http://{}/", listener.local_addr().expect("addr")));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        base,
        bodies,
        validations,
    }
}

fn subscription_config(receiver: &Receiver) -> SubscriptionConfig {
    SubscriptionConfig::new(
        receiver.base.join("notifications").expect("url"),
        receiver.base.join("lifecycle").expect("url"),
        Secret::new(CLIENT_STATE),
    )
}

async fn next_body(receiver: &mut Receiver) -> Vec<u8> {
    tokio::time::timeout(std::time::Duration::from_secs(10), receiver.bodies.recv())
        .await
        .expect("a notification in time")
        .expect("receiver open")
}

/// Tells whether an event is about the expected participant.
type Who<'a> = dyn Fn(&ParticipantEvent) -> bool + 'a;

fn events_of(body: &[u8]) -> Vec<ParticipantEvent> {
    parse_notifications(
        body,
        &ClientStateSecret::new(Secret::new(CLIENT_STATE)),
        None,
    )
    .expect("parses with our clientState")
    .into_iter()
    .flat_map(|n| match n {
        Notification::Events { events, .. } => events,
        Notification::Lifecycle { .. } => Vec::new(),
        Notification::Unreadable(u) => panic!("unreadable: {u:?}"),
    })
    .collect()
}

async fn post_form(page: &Url, form: &common::Form) {
    let response = submit(&http(), page, form).await;
    assert_eq!(response.status(), 303, "room action {}", form.action);
}

#[tokio::test]
async fn room_actions_deliver_roster_notifications_in_order() {
    let env = common::start().await;
    let graph = graph(&env, MS_SECRET);
    let request = visit_request(&env, 0);
    let meeting = graph.provision_meeting(&request).await.expect("meeting");

    // A subscription is only made once both endpoints answer the validation handshake.
    let mut refusing = receiver(false).await;
    assert!(
        graph
            .subscribe_to_meeting(&subscription_config(&refusing), &meeting.join_web_url)
            .await
            .is_err()
    );
    assert_eq!(refusing.validations.load(Ordering::SeqCst), 1);
    assert!(refusing.bodies.try_recv().is_err());
    let mut receiver = receiver(true).await;
    let subscription = graph
        .subscribe_to_meeting(&subscription_config(&receiver), &meeting.join_web_url)
        .await
        .expect("subscribed");
    assert_eq!(receiver.validations.load(Ordering::SeqCst), 2);
    assert_eq!(env.sandbox.microsoft.subscriptions().len(), 1);

    // The patient opens the virtual appointment link and joins: the lobby.
    let patient_page = url(&meeting.patient_join_url.url);
    let html = get_html(&http(), &patient_page).await;
    let join_as = |html: &str, role: &str| {
        forms(html)
            .into_iter()
            .find(|f| f.fields.get("role").map(String::as_str) == Some(role))
            .expect("join button")
    };
    post_form(&patient_page, &join_as(&html, "patient")).await;
    // The clinician opens the join URL and joins: straight in, as organiser.
    let room = url(&meeting.join_web_url);
    let html = get_html(&http(), &room).await;
    post_form(&room, &join_as(&html, "clinician")).await;
    let html = get_html(&http(), &room).await;
    let admit = forms(&html)
        .into_iter()
        .find(|f| f.button == "Admit")
        .expect("the patient waits in the lobby");
    let patient_id = admit.fields["participant"].clone();
    post_form(&room, &admit).await;
    let html = get_html(&http(), &room).await;
    let leaves: Vec<common::Form> = forms(&html)
        .into_iter()
        .filter(|f| f.button == "Leave")
        .collect();
    assert_eq!(leaves.len(), 2, "both are in the meeting");
    let patient_leaves = leaves
        .iter()
        .find(|f| f.fields["participant"] == patient_id)
        .expect("patient's leave");
    let clinician_leaves = leaves
        .iter()
        .find(|f| f.fields["participant"] != patient_id)
        .expect("clinician's leave");
    post_form(&room, patient_leaves).await;
    post_form(&room, clinician_leaves).await;

    let mut bodies = Vec::new();
    for _ in 0..7 {
        bodies.push(next_body(&mut receiver).await);
    }
    let raw: Vec<Value> = bodies
        .iter()
        .map(|b| serde_json::from_slice(b).expect("json"))
        .collect();
    assert!(
        raw.iter()
            .all(|b| b["value"][0]["subscriptionId"] == subscription.id.as_str())
    );
    let lobby_flag =
        |n: usize, key: &str| raw[n]["value"][0]["resourceData"][key][0]["isInLobby"].clone();
    assert_eq!(
        lobby_flag(1, "activeParticipants@joined"),
        Value::Bool(true)
    );
    assert_eq!(
        lobby_flag(2, "activeParticipants@joined"),
        Value::Bool(false)
    );
    assert_eq!(
        lobby_flag(3, "activeParticipants@joined"),
        Value::Bool(false)
    );

    let events: Vec<ParticipantEvent> = bodies.iter().flat_map(|b| events_of(b)).collect();
    assert!(
        events
            .iter()
            .all(|e| e.meeting.matches_join_url(&meeting.join_web_url))
    );
    let acs = |e: &ParticipantEvent| {
        matches!(
            e.participant.as_ref().map(|p| &p.kind),
            Some(ParticipantKind::AcsGuest { .. })
        )
    };
    let organizer = |e: &ParticipantEvent| {
        matches!(
            e.participant.as_ref().map(|p| &p.kind),
            Some(ParticipantKind::OrganizationUser { object_id, .. }) if *object_id == request.organizer
        )
    };
    let expected: [(EventKind, &Who<'_>); 7] = [
        (EventKind::CallStarted, &|e| e.participant.is_none()),
        (EventKind::ParticipantInLobby, &acs),
        (EventKind::ParticipantJoined, &organizer),
        (EventKind::ParticipantJoined, &acs),
        (EventKind::ParticipantLeft, &acs),
        (EventKind::ParticipantLeft, &organizer),
        (EventKind::CallEnded, &|e| e.participant.is_none()),
    ];
    assert_eq!(events.len(), expected.len(), "{events:?}");
    for (n, (event, (kind, who))) in events.iter().zip(expected.iter()).enumerate() {
        assert_eq!(event.kind, *kind, "event {n}");
        assert!(who(event), "event {n}: {event:?}");
    }
    // Only our clientState opens them.
    assert!(
        parse_notifications(
            &bodies[0],
            &ClientStateSecret::new(Secret::new("someone-else")),
            None
        )
        .is_err()
    );
    assert!(
        env.sandbox
            .microsoft
            .deliveries()
            .iter()
            .all(|d| d.delivered && d.attempts == 1)
    );

    // Renewed, reauthorized, then removed: later actions notify nobody.
    let config = subscription_config(&receiver);
    let renewed = graph
        .renew_subscription(&config, &subscription.id)
        .await
        .expect("renewed");
    assert!(renewed.expires_at > subscription.expires_at - chrono::Duration::minutes(1));
    graph
        .reauthorize_subscription(&subscription.id)
        .await
        .expect("reauthorized");
    graph
        .delete_subscription(&subscription.id)
        .await
        .expect("deleted");
    assert!(env.sandbox.microsoft.subscriptions().is_empty());
    let participant = env
        .sandbox
        .microsoft
        .join_room(meeting.meeting_id.as_str(), RoomRole::Clinician)
        .await
        .expect("joins");
    env.sandbox
        .microsoft
        .leave(meeting.meeting_id.as_str(), &participant)
        .await
        .expect("leaves");

    // The finished calls have attendance reports.
    let attendance = graph
        .attendance_events(&request.organizer, &meeting.meeting_id)
        .await
        .expect("attendance");
    assert!(
        attendance
            .iter()
            .any(|e| e.kind == EventKind::ParticipantJoined && organizer(e))
    );
    assert!(
        attendance
            .iter()
            .any(|e| e.kind == EventKind::ParticipantLeft && acs(e))
    );
    assert_eq!(
        attendance
            .iter()
            .filter(|e| e.kind == EventKind::CallEnded)
            .count(),
        2
    );
    assert!(
        receiver.bodies.try_recv().is_err(),
        "nothing after the delete"
    );
}
