//! Write-back across crashes: the launch service runs as a child process, roster notifications
//! stream at it through the webhook (with the real `clientState`), and it is SIGKILLed at moments
//! spread over the run and restarted. Afterwards: every acknowledged event reached the EHR's
//! AuditEvent endpoint once (distinct AuditEvents = events sent), each participant's last status
//! at the EHR is the last one sent, the connection-status calls repeated are at most those in
//! flight at the kills, and after each restart delivery resumed within seconds.
//!
//! The short runs are in the suite, on both backends; the long one (10,000 events, 10 kills) is
//! `cargo test -p visitbridge-launch --test it -- --ignored crash::long` (see docs/reliability.md).

use std::time::{Duration, Instant};

use visitbridge_testkit::graph::plain_notification;

use crate::{
    harness::{Backend, CLIENT_STATE, Env, Options, guest_roster},
    provider::provider_launch,
};

/// What a crash run measured.
#[derive(Debug)]
struct CrashReport {
    events: usize,
    kills: usize,
    /// Connection-status calls made more than once.
    repeated_calls: usize,
    /// The most calls that were in flight at one kill (each worker delivers at most 4 at once).
    in_flight_bound: usize,
    /// The longest wait, after a restart, for the first delivery (while work was pending).
    slowest_resume: Duration,
    elapsed: Duration,
}

/// Posts one notification until the service acknowledges it (as Graph redelivers); how many
/// attempts it took.
async fn deliver_until_acknowledged(client: &reqwest::Client, url: &str, body: &serde_json::Value) {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.post(url).json(body).send().await
            && response.status() == 202
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a notification was never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn crash_run(backend: Backend, events: usize, kills: usize) -> CrashReport {
    let mut env = Env::start_with(Options {
        backend,
        replicas: 1,
        ..Options::default()
    })
    .await;
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    let join = visit.join_web_url.clone().unwrap();
    // A slow EHR: deliveries are in flight when the service dies.
    env.epic.set_delay(Duration::from_millis(30));
    let started = Instant::now();

    // Each guest joins, then leaves: events 2k and 2k+1 are guest k's.
    let guests = events / 2;
    let notification = |n: usize| {
        let payload = guest_roster(n / 2, n.is_multiple_of(2), n);
        plain_notification("sub-test", CLIENT_STATE, &join, payload)
    };
    let url = format!("{}/graph/notifications", env.base);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let kill_every = events / (kills + 1);
    let mut slowest_resume = Duration::ZERO;
    let mut done_kills = 0;
    for n in 0..events {
        deliver_until_acknowledged(&client, &url, &notification(n)).await;
        if n > 0 && n.is_multiple_of(kill_every) && done_kills < kills {
            // Let deliveries get under way, then kill the service mid-delivery.
            tokio::time::sleep(Duration::from_millis(50)).await;
            env.replicas[0].kill();
            done_kills += 1;
            env.restart_replica(0).await;
            let ready = Instant::now();
            let before = env.epic.calls().len();
            let pending = env.store.outbox_depth().await.unwrap().pending;
            if pending > 0 {
                while env.epic.calls().len() == before {
                    assert!(
                        ready.elapsed() < Duration::from_secs(30),
                        "delivery never resumed after restart {done_kills}:\n{}",
                        env.replica_logs()
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                slowest_resume = slowest_resume.max(ready.elapsed());
            }
        }
    }
    // Everything acknowledged is delivered, the stranded leases included.
    let mut last_progress = (Instant::now(), env.epic.calls().len());
    loop {
        let depth = env.store.outbox_depth().await.unwrap();
        if depth.pending == 0 {
            assert_eq!(depth.dead, 0, "{depth:?}");
            break;
        }
        let seen = env.epic.calls().len();
        if seen > last_progress.1 {
            last_progress = (Instant::now(), seen);
        }
        assert!(
            last_progress.0.elapsed() < Duration::from_secs(20),
            "write-back stalled: {depth:?}\n{}",
            env.replica_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every event reached the AuditEvent endpoint exactly once (conditional create absorbs
    // repeats: distinct AuditEvents = events sent).
    let audit_events = env.fhir.audit_events();
    assert_eq!(audit_events.len(), events, "one AuditEvent per event sent");

    // Per guest, the EHR's last status is the last one sent; no call is made for someone else.
    let calls = env.epic.accepted();
    let mut distinct = std::collections::BTreeSet::new();
    for call in &calls {
        distinct.insert((call.external_id.clone(), call.connection_status.clone()));
    }
    let mut last = std::collections::HashMap::new();
    for call in &calls {
        last.insert(call.external_id.clone(), call.connection_status.clone());
    }
    for k in 0..guests {
        let id = Some(format!("8:acs:guest-{k}"));
        assert_eq!(
            last.get(&id).cloned().flatten().as_deref(),
            Some("TEST-DISCONNECTED"),
            "guest {k}"
        );
    }
    let repeated_calls = calls.len() - distinct.len();
    let in_flight_bound = 4 * kills;
    assert!(
        repeated_calls <= in_flight_bound,
        "{repeated_calls} connection-status calls repeated, more than the {in_flight_bound} that can be in flight at {kills} kills"
    );
    CrashReport {
        events,
        kills,
        repeated_calls,
        in_flight_bound,
        slowest_resume,
        elapsed: started.elapsed(),
    }
}

fn report(what: &str, report: &CrashReport) {
    // The figures docs/reliability.md reports (shown with --nocapture).
    eprintln!(
        "crash run ({what}): {} events, {} SIGKILLs, {} connection-status calls repeated \
         (bound {}), slowest resume after a restart {:?}, {:?} in all",
        report.events,
        report.kills,
        report.repeated_calls,
        report.in_flight_bound,
        report.slowest_resume,
        report.elapsed
    );
    // After a restart, the dead process's leases (4 s, renewed every 1.3 s while alive) run out
    // and delivery resumes: within 5 s.
    assert!(
        report.slowest_resume < Duration::from_secs(5),
        "{what}: delivery resumed only after {:?}",
        report.slowest_resume
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_write_back_survives_five_sigkills_losing_nothing() {
    let run = crash_run(Backend::Sqlite, 300, 5).await;
    report("sqlite", &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_write_back_survives_five_sigkills_losing_nothing() {
    let run = crash_run(Backend::Postgres, 300, 5).await;
    report("postgres", &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: 10,000 events and 10 kills per backend; run with --ignored"]
async fn long_write_back_crash_runs_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let run = crash_run(backend, 10_000, 10).await;
        report(&format!("{backend:?}, long"), &run);
    }
}
