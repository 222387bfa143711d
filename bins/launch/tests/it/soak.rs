//! Soak: the launch service (the real binary) under a steady mixed load — clinician launches,
//! roster notifications and their write-back, open live panels — with its resident memory
//! sampled every second. Afterwards: no error answers, every panel kept streaming, the outbox
//! drained, and memory after warm-up grew by less than 10 %.
//!
//! The suite runs 30 s per backend; `VISITBRIDGE_SOAK_SECONDS=600 cargo test -p
//! visitbridge-launch --test it -- --ignored soak::long --nocapture` runs ten minutes per backend.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use visitbridge_testkit::{abuse::rss_kib, graph::plain_notification};

use crate::{
    events::Panel,
    harness::{Backend, CLIENT_STATE, Env, Options, guest_roster},
    provider::provider_launch,
};

/// What a soak run saw.
#[derive(Debug, Default)]
struct SoakReport {
    launches: usize,
    notifications: usize,
    panel_events: usize,
    rss_after_warm_up_kib: u64,
    rss_peak_late_kib: u64,
}

async fn soak(backend: Backend, duration: Duration) -> SoakReport {
    let env = Arc::new(
        Env::start_with(Options {
            backend,
            replicas: 1,
            ..Options::default()
        })
        .await,
    );
    let first = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&first.visit_id()).await;
    let join = visit.join_web_url.clone().unwrap();
    let pid = env.replicas[0].pid();
    let stop = Arc::new(AtomicBool::new(false));
    let launches = Arc::new(AtomicUsize::new(0));
    let notifications = Arc::new(AtomicUsize::new(0));
    let panel_events = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();

    // Two clinicians' browsers launching over and over (each launch a new browser: a new
    // session, the EHR sign-in, the visit page).
    for _ in 0..2 {
        let (env, stop, launches) = (env.clone(), stop.clone(), launches.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let page = provider_launch(&env, &env.browser()).await;
                assert!(page.url.contains("/visits/"), "{}", page.url);
                launches.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Graph: guests joining and leaving, acknowledged with 202 every time.
    {
        let (env, stop, count, join) = (
            env.clone(),
            stop.clone(),
            notifications.clone(),
            join.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let payload = guest_roster(n % 50, n.is_multiple_of(2), n);
                let body = plain_notification("sub-test", CLIENT_STATE, &join, payload);
                let status = client
                    .post(format!("{}/graph/notifications", env.base))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 202);
                count.fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Five open live panels, reading what the notifications change.
    for _ in 0..5 {
        let browser = env.browser();
        let page = provider_launch(&env, &browser).await;
        let mut panel = Panel::open(&browser, &page.url).await;
        let (stop, count) = (stop.clone(), panel_events.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = panel.next().await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Memory, every second; the first fifth is warm-up.
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((started.elapsed(), rss_kib(pid).unwrap_or(0)));
        for task in &tasks {
            assert!(
                !task.is_finished(),
                "a load task stopped (failed):\n{}",
                env.replica_logs()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        // Panels block on their next event: they are stopped, not awaited.
        task.abort();
    }
    env.eventually("the outbox drained", async || {
        env.store.outbox_depth().await.unwrap().pending == 0
    })
    .await;
    eprintln!(
        "RSS samples (s, KiB): {:?}",
        samples
            .iter()
            .step_by(5)
            .map(|(at, rss)| (at.as_secs(), *rss))
            .collect::<Vec<_>>()
    );
    let warm = duration / 5;
    let after_warm_up = samples
        .iter()
        .find(|(at, _)| *at >= warm)
        .map(|(_, rss)| *rss)
        .unwrap_or(0);
    let late_peak = samples
        .iter()
        .filter(|(at, _)| *at >= duration * 4 / 5)
        .map(|(_, rss)| *rss)
        .max()
        .unwrap_or(0);
    let report = SoakReport {
        launches: launches.load(Ordering::Relaxed),
        notifications: notifications.load(Ordering::Relaxed),
        panel_events: panel_events.load(Ordering::Relaxed),
        rss_after_warm_up_kib: after_warm_up,
        rss_peak_late_kib: late_peak,
    };
    eprintln!(
        "soak ({backend:?}, {duration:?}): {} launches, {} notifications, {} panel events, \
         RSS {} KiB after warm-up, {} KiB peak in the last fifth",
        report.launches,
        report.notifications,
        report.panel_events,
        report.rss_after_warm_up_kib,
        report.rss_peak_late_kib
    );
    assert!(report.launches > 0 && report.notifications > 0 && report.panel_events > 0);
    assert!(
        report.rss_peak_late_kib * 10 < report.rss_after_warm_up_kib * 11,
        "memory grew more than 10 % after warm-up: {report:?}"
    );
    report
}

fn seconds_or(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("VISITBRIDGE_SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_30_second_mixed_load_on_sqlite_leaves_memory_flat() {
    soak(Backend::Sqlite, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_30_second_mixed_load_on_postgres_leaves_memory_flat() {
    soak(Backend::Postgres, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: ten minutes per backend (VISITBRIDGE_SOAK_SECONDS); run with --ignored"]
async fn long() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        soak(backend, seconds_or(600)).await;
    }
}
