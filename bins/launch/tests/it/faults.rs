//! Upstream faults on a clinician's launch: for each upstream on the launch path — SMART
//! discovery, the EHR's token endpoint, the FHIR reads, Entra's token endpoint (the clinician's
//! Microsoft sign-in), Graph's `createOrGet` and the meeting PATCH that sets the lobby policy
//! before any join URL is given out — each fault a real server produces: 500, 503 with
//! `Retry-After`, 429 with `Retry-After`, a body that is not JSON, an HTML error page, a redirect
//! elsewhere, a connection dropped without an answer. The launch ends on a page that says what happened and to try again (never a 200
//! that pretends, never an internal address), within the launch deadline; and once the upstream
//! is well again the next launch works: nothing was left broken. The outcomes are tabled in
//! docs/reliability.md (printed with `--nocapture`). Hangs are in `honest_errors.rs`.

use std::time::{Duration, Instant};

use chrono::Utc;

use visitbridge_testkit::faults::{FAULT_INTERNALS, Switch, every_fault};
use wiremock::{
    Mock, MockServer,
    matchers::{method, path_regex},
};

use crate::harness::{Backend, Env, Options};

/// The upstreams, as (name, which server, method, path pattern).
fn upstreams(env: &Env) -> Vec<(&'static str, &MockServer, &'static str, &'static str)> {
    vec![
        (
            "SMART discovery",
            &env.ehr,
            "GET",
            r"/\.well-known/smart-configuration$",
        ),
        ("EHR token", &env.ehr, "POST", r"/oauth2/token$"),
        ("FHIR Appointment read", &env.ehr, "GET", r"/Appointment"),
        (
            "Entra token (Microsoft sign-in)",
            &env.ms,
            "POST",
            r"/oauth2/v2\.0/token$",
        ),
        (
            "Graph createOrGet",
            &env.ms,
            "POST",
            r"/onlineMeetings/createOrGet$",
        ),
        (
            "Graph meeting PATCH (lobby policy)",
            &env.ms,
            "PATCH",
            r"/onlineMeetings/[^/]+$",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_ends_the_launch_on_a_clear_page_and_leaves_nothing_broken() {
    let mut table = Vec::new();
    for upstream_index in 0..6 {
        for (fault, response) in every_fault() {
            // A fresh service per case: cold caches, so discovery and sign-in are on the path.
            let env = Env::start_with(Options {
                extra_config: "launch_deadline_seconds = 10".into(),
                ..Options::default()
            })
            .await;
            let (upstream, server, verb, pattern) = upstreams(&env)[upstream_index];
            let launch = env.launch_url("provider", &Env::visit_context());
            let browser = env.browser();
            if upstream.starts_with("Graph") {
                // Linked first: Graph is reached after the one-time Microsoft sign-in.
                let page = browser.navigate(&launch).await;
                assert_eq!(page.status, 200, "{}", page.body);
            }
            let fault_on = Switch::on();
            Mock::given(method(verb))
                .and(path_regex(pattern))
                .and(fault_on.clone())
                .respond_with(response)
                .with_priority(1)
                .mount(server)
                .await;
            let started = Instant::now();
            let page = env.browser().navigate(&launch).await;
            let took = started.elapsed();
            let case = format!("{upstream} / {fault}");
            assert!(
                page.status >= 400,
                "{case}: answered {} as if all was well:\n{}",
                page.status,
                page.body
            );
            assert!(
                page.status != 500,
                "{case}: a 500 is ours, not the upstream's: {}",
                page.body
            );
            let internals = FAULT_INTERNALS.iter().map(|s| (*s).to_owned());
            for internal in [env.ehr.uri(), env.ms.uri(), "panicked".to_owned()]
                .into_iter()
                .chain(internals)
            {
                assert!(
                    !page.body.contains(&internal),
                    "{case}: {internal} shown: {}",
                    page.body
                );
            }
            assert!(
                page.body.contains("Try again") || page.body.contains("try again"),
                "{case}: {}",
                page.body
            );
            assert!(took < Duration::from_secs(15), "{case}: took {took:?}");
            let headline = page
                .body
                .split("<h1>")
                .nth(1)
                .and_then(|rest| rest.split("</h1>").next())
                .unwrap_or("")
                .to_owned();
            table.push(format!(
                "| {upstream} | {fault} | {} \"{headline}\" | {:.1} s |",
                page.status,
                took.as_secs_f64()
            ));
            // Well again: the same launch works — at once, or after the two seconds for which
            // a failed Entra token refresh is held (callers then share that one failure rather
            // than each sending a doomed request; the app-token refresh may have met the fault).
            fault_on.turn_off();
            let recovered = Instant::now();
            loop {
                let page = env.browser().navigate(&launch).await;
                if page.status == 200 {
                    break;
                }
                if recovered.elapsed() > Duration::from_secs(5) {
                    let logs = crate::harness::logs();
                    let tail: String = logs.lines().rev().take(15).collect::<Vec<_>>().join("\n");
                    panic!("{case}: after the fault: {}\n{tail}", page.status);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    eprintln!(
        "| upstream | fault | page | time |\n|---|---|---|---|\n{}",
        table.join("\n")
    );
}

/// Waits (bounded) until Graph got at least two `verb` requests to a path containing `part`:
/// the upkeep tried again after a failure. How long that took.
async fn tried_again(env: &Env, what: &str, verb: &str, part: &str) -> Duration {
    let started = Instant::now();
    env.eventually(what, async || env.graph_requests(verb, part).await >= 2)
        .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_faults_on_sqlite() {
    a_subscription_graph_would_not_make_or_renew_is_tried_again_by_the_upkeep(Backend::Sqlite)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_faults_on_postgres() {
    a_subscription_graph_would_not_make_or_renew_is_tried_again_by_the_upkeep(Backend::Postgres)
        .await;
}

async fn a_subscription_graph_would_not_make_or_renew_is_tried_again_by_the_upkeep(
    backend: Backend,
) {
    let mut table = Vec::new();
    for (fault, response) in every_fault() {
        // Subscribing: Graph faults when the meeting is made. The clinician's launch does not
        // wait for the subscription; the upkeep tries again every tick until Graph takes it.
        let env = Env::start_with(Options {
            backend,
            ..Options::default()
        })
        .await;
        let fault_on = Switch::on();
        Mock::given(method("POST"))
            .and(path_regex(r"/subscriptions$"))
            .and(fault_on.clone())
            .respond_with(response.clone())
            .with_priority(1)
            .mount(&env.ms)
            .await;
        let page = crate::provider::provider_launch(&env, &env.browser()).await;
        let visit = env.visit(&page.visit_id()).await;
        let again = tried_again(&env, fault, "POST", "/subscriptions").await;
        assert!(
            env.store
                .subscription_of(&visit.id)
                .await
                .unwrap()
                .is_none()
        );
        fault_on.turn_off();
        let recovered = Instant::now();
        env.eventually(
            &format!("{fault}: subscribed after the fault"),
            async || {
                env.store
                    .subscription_of(&visit.id)
                    .await
                    .unwrap()
                    .is_some()
            },
        )
        .await;
        let took = recovered.elapsed();
        // One subscription at Graph, the stored one.
        assert_eq!(env.graph.subscription_requests().len(), 1, "{fault}");
        let stored = env.store.subscription_of(&visit.id).await.unwrap().unwrap();
        assert!(
            env.graph
                .subscription(stored.subscription_id.as_str())
                .is_some()
        );

        // Renewing: Graph faults when the subscription is due. It is kept as it was (not
        // dropped, not half-written) and renewed once Graph answers again.
        let fault_on = Switch::on();
        Mock::given(method("PATCH"))
            .and(path_regex(r"/subscriptions/[^/]+$"))
            .and(fault_on.clone())
            .respond_with(response)
            .with_priority(1)
            .mount(&env.ms)
            .await;
        env.subscription_ends_soon(&visit.id, &stored).await;
        let renewed_again = tried_again(&env, fault, "PATCH", "/subscriptions/").await;
        let kept = env.store.subscription_of(&visit.id).await.unwrap().unwrap();
        assert_eq!(kept.subscription_id, stored.subscription_id, "{fault}");
        assert!(kept.expires_at < Utc::now() + chrono::Duration::minutes(6));
        fault_on.turn_off();
        env.wait_subscription_renewed(&visit.id).await;
        let renewed = env.store.subscription_of(&visit.id).await.unwrap().unwrap();
        assert_eq!(renewed.subscription_id, stored.subscription_id, "{fault}");
        assert_eq!(env.graph.subscription_requests().len(), 1, "{fault}");
        assert!(env.graph.deleted().is_empty(), "{fault}");
        table.push(format!(
            "| Graph subscriptions (create, renew) on {backend:?} | {fault} | launch unaffected; tried again after {:.2} s (create), {:.2} s (renew); the stored one kept as it was | subscribed {:.2} s after the fault |",
            again.as_secs_f64(),
            renewed_again.as_secs_f64(),
            took.as_secs_f64()
        ));
    }
    eprintln!("{}", table.join("\n"));
}

/// Every fault of both write-back sinks (Epic's connection status, the FHIR AuditEvent write)
/// while four roster changes arrive: Graph gets its 202 at once, the outbox retries (nothing is
/// given up while the fault lasts), and once the EHR answers again each change reaches it once,
/// in order. A hang is a call past the (here 2 s) HTTP timeout. A `200` with a broken body is
/// not in the table: Epic's answer has no body the sink reads, so a `200` is its acceptance.
async fn every_write_back_fault_is_retried_and_each_change_reaches_the_ehr_once(backend: Backend) {
    use visitbridge_testkit::{
        epic::CONNECTION_STATUS_PATH, faults::hang, graph::plain_notification,
    };
    let mut table = Vec::new();
    let faults = every_fault()
        .into_iter()
        .filter(|(name, _)| *name != "malformed JSON")
        .chain([("hang past the timeout", hang(5))]);
    for (fault, response) in faults {
        let env = Env::start_with(Options {
            backend,
            max_attempts: 40,
            extra_config: "http = { total_timeout_secs = 2 }".into(),
            ..Options::default()
        })
        .await;
        let page = crate::provider::provider_launch(&env, &env.browser()).await;
        let visit = env.visit(&page.visit_id()).await;
        let join = visit.join_web_url.clone().unwrap();
        let fault_on = Switch::on();
        for pattern in [
            format!("{CONNECTION_STATUS_PATH}$"),
            r"/AuditEvent$".to_owned(),
        ] {
            Mock::given(path_regex(pattern))
                .and(fault_on.clone())
                .respond_with(response.clone())
                .with_priority(1)
                .mount(&env.ehr)
                .await;
        }
        // Guest 1 and 2 join, then leave.
        for (guest, joined, second) in [(1, true, 1), (2, true, 2), (1, false, 3), (2, false, 4)] {
            let body = plain_notification(
                "sub-test",
                crate::harness::CLIENT_STATE,
                &join,
                crate::harness::guest_roster(guest, joined, second),
            );
            assert_eq!(env.post_notification(&body).await, 202, "{fault}");
        }
        let attempts = async || {
            env.ehr
                .received_requests()
                .await
                .unwrap_or_default()
                .iter()
                .filter(|r| r.url.path().ends_with(CONNECTION_STATUS_PATH))
                .count()
        };
        env.eventually(&format!("{fault}: retried"), async || attempts().await >= 3)
            .await;
        let depth = env.store.outbox_depth().await.unwrap();
        assert_eq!(depth.dead, 0, "{fault}: given up during the fault");
        assert!(depth.pending > 0, "{fault}");
        let tried = attempts().await;
        fault_on.turn_off();
        let recovered = Instant::now();
        env.wait_nothing_pending(&format!("{fault}: drained")).await;
        let took = recovered.elapsed();
        let depth = env.store.outbox_depth().await.unwrap();
        assert_eq!(depth.dead, 0, "{fault}");
        // Each change once, in order per guest: connected, then disconnected.
        let accepted = env.epic.accepted();
        assert_eq!(accepted.len(), 4, "{fault}: {accepted:?}");
        for guest in ["8:acs:guest-1", "8:acs:guest-2"] {
            let statuses: Vec<_> = accepted
                .iter()
                .filter(|c| c.external_id.as_deref() == Some(guest))
                .map(|c| c.connection_status.clone().unwrap_or_default())
                .collect();
            assert_eq!(
                statuses,
                ["TEST-CONNECTED", "TEST-DISCONNECTED"],
                "{fault}: {guest}"
            );
        }
        assert_eq!(env.fhir.audit_events().len(), 4, "{fault}");
        table.push(format!(
            "| write-back (Epic status, FHIR AuditEvent) on {backend:?} | {fault} | 202 to Graph; retried ({tried} Epic calls), none given up | 4/4 changes once, in order, {:.2} s after the fault |",
            took.as_secs_f64()
        ));
    }
    eprintln!("{}", table.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_back_faults_on_sqlite() {
    every_write_back_fault_is_retried_and_each_change_reaches_the_ehr_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_back_faults_on_postgres() {
    every_write_back_fault_is_retried_and_each_change_reaches_the_ehr_once(Backend::Postgres).await;
}

/// Healthy launches' times, sorted: (p50, max).
fn p50_max(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

async fn launches_beside_thirty_hanging_ones_are_unaffected(backend: Backend) {
    use visitbridge_testkit::faults::{FirstN, hang};
    let env = Env::start_with(Options {
        backend,
        extra_config: "launch_deadline_seconds = 10".into(),
        ..Options::default()
    })
    .await;
    let launch = env.launch_url("provider", &Env::visit_context());
    let timed = async || {
        let started = Instant::now();
        let page = env.browser().navigate(&launch).await;
        assert_eq!(page.status, 200, "{}", page.body);
        started.elapsed()
    };
    // Linked and warm, then the healthy launch's time.
    timed().await;
    let mut before = Vec::new();
    for _ in 0..10 {
        before.push(timed().await);
    }
    // The next 30 FHIR reads hang past the deadline: 30 launches wait on the EHR.
    let hanging = FirstN::new(30);
    Mock::given(method("GET"))
        .and(path_regex(r"/Appointment"))
        .and(hanging.clone())
        .respond_with(hang(30))
        .with_priority(1)
        .mount(&env.ehr)
        .await;
    let stuck: Vec<_> = (0..30)
        .map(|_| {
            let browser = env.browser();
            let launch = launch.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let page = browser.navigate(&launch).await;
                (page.status, started.elapsed())
            })
        })
        .collect();
    env.eventually("30 launches waiting on the EHR", async || {
        hanging.left() == 0
    })
    .await;
    let mut during = Vec::new();
    for _ in 0..10 {
        during.push(timed().await);
    }
    for task in stuck {
        let (status, took) = task.await.unwrap();
        assert_eq!(status, 504, "a hanging launch ends on the deadline page");
        assert!(took < Duration::from_secs(13), "{took:?}");
    }
    let (before_p50, before_max) = p50_max(&mut before);
    let (during_p50, during_max) = p50_max(&mut during);
    // Unaffected: not waiting behind the stuck ones (which hold on for 10 s).
    assert!(during_max < Duration::from_secs(3), "{during:?}");
    eprintln!(
        "| 30 launches hanging on the EHR ({backend:?}) | healthy launches beside them | p50 {:.0} ms, max {:.0} ms (before: p50 {:.0} ms, max {:.0} ms); the 30 end on the deadline page (504) |",
        during_p50.as_secs_f64() * 1000.0,
        during_max.as_secs_f64() * 1000.0,
        before_p50.as_secs_f64() * 1000.0,
        before_max.as_secs_f64() * 1000.0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_hanging_launches_on_sqlite() {
    launches_beside_thirty_hanging_ones_are_unaffected(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_hanging_launches_on_postgres() {
    launches_beside_thirty_hanging_ones_are_unaffected(Backend::Postgres).await;
}
