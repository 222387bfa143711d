//! Two launch-service processes on one PostgreSQL, behind a load balancer without session
//! affinity: what one replica starts, the other finishes; what one records, the other's panels
//! show; the write-back goes out once, and a killed replica's share within seconds; the upkeep
//! runs once, not once per replica.

use std::time::{Duration, Instant};

use serde_json::Value;
use visitbridge_testkit::graph::{acs_participant, plain_notification, roster_update};

use crate::{
    cluster::Route,
    events::{Panel, clinician, labels},
    harness::{Backend, CLIENT_STATE, Env, Options, guest_roster},
    provider::provider_launch,
};

async fn two_replicas() -> Env {
    two_replicas_with(Options::default()).await
}

async fn two_replicas_with(options: Options) -> Env {
    Env::start_with(Options {
        backend: Backend::Postgres,
        replicas: 2,
        ..options
    })
    .await
}

/// Posts a roster notification about `join_url` straight to one replica (as Graph's delivery,
/// balanced, may land anywhere); its status.
async fn notify_replica(base: &str, join_url: &str, payload: Value) -> u16 {
    let body = plain_notification("sub-test", CLIENT_STATE, join_url, payload);
    reqwest::Client::new()
        .post(format!("{base}/graph/notifications"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The replicas that served requests whose line contains `part`.
fn served_by(env: &Env, part: &str) -> Vec<usize> {
    env.balancer()
        .served()
        .into_iter()
        .filter(|(_, line)| line.contains(part))
        .map(|(replica, _)| replica)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_and_a_microsoft_sign_in_begun_on_one_replica_complete_on_the_other() {
    let env = two_replicas().await;
    // Strict alternation: each request of this one browser goes to the other replica.
    env.balancer().route(Route::RoundRobin);
    let browser = env.browser();
    let page = provider_launch(&env, &browser).await;
    assert!(page.url.contains("/visits/"), "{}", env.replica_logs());
    assert!(page.body.contains("Join the meeting"));

    let served = env.balancer().served();
    let at = |part: &str| {
        served
            .iter()
            .find(|(_, line)| line.contains(part))
            .map(|(replica, _)| *replica)
            .unwrap_or_else(|| panic!("no request to {part}: {served:?}"))
    };
    // The EHR's authorize redirect came from one replica, its callback went to the other; so did
    // the Microsoft sign-in's (its state, PKCE verifier and nonce are in the database).
    assert_ne!(
        at("GET /launch/provider"),
        at("GET /launch/callback"),
        "{served:?}"
    );
    assert_ne!(
        at("GET /launch/callback"),
        at("GET /launch/microsoft/callback"),
        "{served:?}"
    );
    // The visit page is served wherever it lands.
    let again = browser.get(&page.url).await;
    assert_eq!(again.status(), 200);
    let again = browser.get(&page.url).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        {
            let mut replicas = served_by(&env, "GET /visits/");
            replicas.sort_unstable();
            replicas.dedup();
            replicas
        },
        vec![0, 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_launches_of_one_visit_spread_over_both_replicas_make_one_visit_and_one_meeting()
{
    let env = two_replicas().await;
    env.balancer().route(Route::RoundRobin);
    let browsers: Vec<_> = (0..6).map(|_| env.browser()).collect();
    let pages = futures_util::future::join_all(
        browsers
            .iter()
            .map(|browser| provider_launch(&env, browser)),
    )
    .await;
    let visit_ids: std::collections::BTreeSet<String> =
        pages.iter().map(|page| page.visit_id()).collect();
    assert_eq!(visit_ids.len(), 1, "one visit row: {visit_ids:?}");
    assert_eq!(env.graph.meeting_count(), 1, "one meeting");
    // Every replica asked Graph for the same meeting: one externalId, the visit's.
    let external_ids: std::collections::BTreeSet<String> = env
        .graph
        .create_or_get_bodies()
        .iter()
        .map(|body| body["externalId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(external_ids.len(), 1, "{external_ids:?}");
    let mut callbacks = served_by(&env, "GET /launch/callback");
    callbacks.sort_unstable();
    callbacks.dedup();
    assert_eq!(callbacks, vec![0, 1], "both replicas took callbacks");
    // Every page offers the same meeting.
    let visit = env.visit(visit_ids.first().unwrap()).await;
    let join = visit.join_web_url.clone().unwrap();
    for page in &pages {
        assert!(page.body.contains(&join.replace('&', "&amp;")) || page.body.contains(&join));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panel_on_one_replica_shows_what_graph_delivered_to_the_other() {
    let env = two_replicas().await;
    env.balancer().route(Route::Only(0));
    let browser = env.browser();
    let page = provider_launch(&env, &browser).await;
    let visit = env.visit(&page.visit_id()).await;
    // The panel's stream is held by replica 0.
    let mut panel = Panel::open(&browser, &page.url).await;
    assert!(labels(&panel.next().await).is_empty());
    assert_eq!(served_by(&env, "/events").last(), Some(&0));

    // Graph delivers to replica 1.
    let join = visit.join_web_url.as_deref().unwrap();
    let sent = Instant::now();
    let joined = roster_update("2026-03-05T18:00:01Z", vec![clinician()], vec![]);
    assert_eq!(
        notify_replica(&env.replicas[1].base, join, joined).await,
        202
    );
    let state = panel.until(|p| !labels(p).is_empty()).await;
    let shown_after = sent.elapsed();
    assert_eq!(
        labels(&state),
        vec![("Clinician (you)".to_owned(), "connected".to_owned())]
    );
    // A bound, not a measurement (the bench measures): the live panel's budget is seconds.
    assert!(shown_after < Duration::from_secs(3), "{shown_after:?}");

    let mut guest = acs_participant("leg-guest", "8:acs:guest-1", "Camila Lopez");
    guest["isInLobby"] = true.into();
    let lobby = roster_update("2026-03-05T18:01:00Z", vec![guest], vec![]);
    assert_eq!(
        notify_replica(&env.replicas[1].base, join, lobby).await,
        202
    );
    let state = panel.until(|p| p["patient_waiting"] == true).await;
    assert_eq!(
        labels(&state)[1],
        ("Patient / guest 1".into(), "lobby".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_back_goes_out_once_from_both_replicas_and_a_killed_ones_rows_are_taken_over() {
    let mut env = two_replicas().await;
    env.balancer().route(Route::RoundRobin);
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    let join = visit.join_web_url.clone().unwrap();
    // A slow EHR, so that deliveries are in flight when a replica dies.
    env.epic.set_delay(Duration::from_millis(300));

    // 24 guests join and leave; the notifications alternate between the replicas.
    const GUESTS: usize = 24;
    for n in 0..GUESTS {
        let joined = guest_roster(n, true, 1);
        let left = guest_roster(n, false, 1200);
        let replica = &env.replicas[n % 2].base;
        assert_eq!(notify_replica(replica, &join, joined).await, 202);
        assert_eq!(notify_replica(replica, &join, left).await, 202);
    }
    // Replica 0 dies mid-delivery (SIGKILL): its leased rows are stranded until their lease.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let calls_before_kill = env.epic.calls().len();
    env.replicas[0].kill();
    let killed = Instant::now();
    let mut last_progress = Instant::now();
    let mut seen = calls_before_kill;
    loop {
        let depth = env.store.outbox_depth().await.unwrap();
        if depth.pending == 0 {
            break;
        }
        let now_seen = env.epic.calls().len();
        if now_seen > seen {
            seen = now_seen;
            last_progress = Instant::now();
        }
        assert!(
            last_progress.elapsed() < Duration::from_secs(15),
            "write-back stalled after the kill ({depth:?}):\n{}",
            env.replica_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_after = killed.elapsed();
    // Replica 0 did hold rows when it died: some were delivered on a second claim.
    assert!(
        calls_before_kill > 0,
        "deliveries were under way at the kill"
    );
    let outbox = env.store.outbox_for_visit(&visit.id).await.unwrap();
    assert!(
        outbox.iter().any(|row| row.attempts >= 2),
        "some of the killed replica's rows were taken over"
    );

    let calls = env.epic.accepted();
    // Per guest: connected, then disconnected — the last status the EHR has is the last sent.
    let mut distinct = std::collections::BTreeSet::new();
    for n in 0..GUESTS {
        let id = format!("8:acs:guest-{n}");
        let statuses: Vec<&str> = calls
            .iter()
            .filter(|c| c.external_id.as_deref() == Some(id.as_str()))
            .filter_map(|c| c.connection_status.as_deref())
            .collect();
        assert_eq!(
            statuses.last(),
            Some(&"TEST-DISCONNECTED"),
            "{id}: {statuses:?}"
        );
        let mut ordered = statuses.clone();
        ordered.dedup();
        assert!(
            ordered == ["TEST-CONNECTED", "TEST-DISCONNECTED"] || ordered == ["TEST-DISCONNECTED"],
            "{id}: in order, {statuses:?}"
        );
        distinct.extend(statuses.iter().map(|s| (id.clone(), s.to_string())));
    }
    // Repeats only of what was in flight at the kill: at most one worker's concurrent calls.
    let repeats = calls.len() - distinct.len();
    assert!(repeats <= 4, "{repeats} calls repeated: {calls:?}");
    // Nothing was given up on.
    let depth = env.store.outbox_depth().await.unwrap();
    assert_eq!(depth.dead, 0, "{depth:?}");
    // The survivor drained everything, the killed replica's leases included, in seconds.
    assert!(
        drained_after < Duration::from_secs(30),
        "drained {drained_after:?} after the kill"
    );
    // The killed replica comes back and serves (its migrations, lease and feed just work).
    env.restart_replica(0).await;
    let health = reqwest::get(format!("{}/healthz", env.replicas[0].base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_renewal_runs_on_one_replica_not_on_each() {
    let env = two_replicas().await;
    let (visit, stored) = env.subscribed_visit().await;
    let id = stored.subscription_id.as_str().to_owned();
    // The subscription comes close to its end; both replicas tick every 50 ms, and Graph takes
    // longer than a tick to answer a renewal (both would see it due).
    env.graph.set_delay(Duration::from_millis(400));
    env.subscription_ends_soon(&visit.id, &stored).await;
    env.wait_subscription_renewed(&visit.id).await;
    // Many ticks later, on both replicas: still one renewal.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        env.graph_requests("PATCH", &format!("/subscriptions/{id}"))
            .await,
        1,
        "{}",
        env.replica_logs()
    );
    // One subscription kept. Under load both replicas may have subscribed the new visit at
    // once (the launching one, and the other's sweep of unsubscribed visits): the loser of the
    // store's compare-and-set deletes its own, and the renewal made none.
    let created = env.graph.subscription_requests().len();
    let deleted = env.graph.deleted().len();
    assert_eq!(created - deleted, 1, "one subscription kept");
    assert!(created <= 2, "{created} subscriptions made");
    assert!(
        env.graph.subscription(&id).is_some(),
        "the renewed one is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_due_reconciliation_runs_on_one_replica_not_on_each() {
    let env = two_replicas().await;
    let (visit, _) = env.subscribed_visit().await;
    env.graph.add_attendance_report(
        visit.graph_meeting_id.as_deref().unwrap(),
        visitbridge_testkit::graph::attendance_report(
            "report-1",
            &visitbridge_testkit::entra::EntraUser::default().oid,
            "2026-03-05T18:00:00Z",
            "2026-03-05T18:30:00Z",
        ),
    );
    // Graph is slow to answer: both replicas tick (every 50 ms) while the report is read.
    env.graph.set_delay(Duration::from_millis(300));
    env.reconcile_now(&visit.id).await;
    env.wait_reconciled("reconciled", &visit.id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lists = env
        .ms
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path().ends_with("/attendanceReports"))
        .count();
    assert_eq!(
        lists,
        1,
        "the report list was read once:\n{}",
        env.replica_logs()
    );
}
