//! The launch-path benchmark (`cargo bench -p visitbridge-launch`, see docs/performance.md):
//! the launch service's release binary in its own process against the test fakes, measured from
//! this process, printed as one Markdown table. Compiled into the bench target only (this file
//! is a module of the test tree so that it drives the same fakes and flows as the tests).
//!
//! `VISITBRIDGE_BENCH_SECONDS` sets each load phase (default 10 s); `VISITBRIDGE_BENCH_DELAY_MS`
//! the upstream delay of the round-trip phase (default 50 ms); `VISITBRIDGE_BENCH_ONLY` a
//! comma-separated choice of phases (`round-trips`, `footprint`, `ceiling`, `sqlite`,
//! `postgres`, `postgres-2`, `write-back`); `VISITBRIDGE_BENCH_BACKLOG` the write-back backlog
//! (default 100,000 events).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use visitbridge_audit::{EpicConnectionStatusSink, FhirAuditEventSink};
use visitbridge_store::{EventId, NewDelivery};
use visitbridge_testkit::{abuse::rss_kib, graph::plain_notification};

use crate::{
    harness::{Backend, CLIENT_STATE, Env, Options, authorize_form, guest_roster},
    provider::provider_launch,
    round_trips::{measured_callback, slow_upstreams},
};

/// Clients at once in the load phases.
const CLIENTS: usize = 64;

/// A number from the environment variable `name`, else `default`.
fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The rows of the table: (measure, figure, target).
#[derive(Default)]
struct Table(Vec<(String, String, String)>);

impl Table {
    fn row(&mut self, what: impl Into<String>, figure: impl Into<String>, target: &str) {
        let (what, figure) = (what.into(), figure.into());
        eprintln!("  {what}: {figure}");
        self.0.push((what, figure, target.to_owned()));
    }

    fn print(&self) {
        println!("| measure | figure | target |\n|---|---|---|");
        for (what, figure, target) in &self.0 {
            println!("| {what} | {figure} | {target} |");
        }
    }
}

/// Sorted durations' percentile.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Every client's times, once the clients have stopped.
async fn gathered(clients: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Vec<Duration> {
    let mut times = Vec::new();
    for client in clients {
        times.extend(client.await.expect("a client"));
    }
    times
}

/// One browser of the load phases: a kept-alive connection and our cookies.
struct LeanBrowser {
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl LeanBrowser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            cookies: Mutex::default(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, String, Option<String>) {
        let cookie = {
            let jar = self.cookies.lock().expect("jar");
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie)
        };
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            if let Some((name, value)) = text.split(';').next().and_then(|p| p.split_once('=')) {
                let mut jar = self.cookies.lock().expect("jar");
                if value.is_empty() || text.contains("Max-Age=0") {
                    jar.remove(name);
                } else {
                    jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        (status, body, location)
    }

    /// A warm clinician launch of the fixture visit: the launch (our authorize form), the EHR's
    /// authorize (the fake signs in at once), the callback — timed — and the visit page.
    async fn launch(&self, env: &Env, launch_url: &str) -> Duration {
        self.cookies.lock().expect("jar").clear();
        let (status, body, _) = self.send(self.http.get(launch_url)).await;
        assert_eq!(status, 200, "launch: {body}");
        let (action, fields) = authorize_form(&body).expect("the authorize form");
        let (status, _, location) = self.send(self.http.post(&action).form(&fields)).await;
        assert_eq!(status, 302, "authorize");
        let callback = location.expect("the callback");
        let started = Instant::now();
        let (status, body, location) = self.send(self.http.get(&callback)).await;
        let took = started.elapsed();
        assert_eq!(status, 303, "callback: {body}");
        let page = format!("{}{}", env.base, location.expect("the visit page"));
        let (status, body, _) = self.send(self.http.get(&page)).await;
        assert_eq!(status, 200, "visit page: {body}");
        took
    }
}

/// Round trips on the critical path: every upstream answers after `d`; the callback's time / d.
async fn round_trips(table: &mut Table, d: Duration) {
    let env = Env::start_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (arrivals, delay) = slow_upstreams(&env).await;
    // Linked, discovery and keys fetched, the Graph app token held: then everything slow.
    provider_launch(&env, &env.browser()).await;
    let slow = |env: &Env| {
        delay.set(d);
        env.smart.set_token_delay(Some(d));
        env.entra.set_token_delay(d);
    };
    slow(&env);
    let ratio = |took: Duration| took.as_secs_f64() / d.as_secs_f64();
    let new_visit = callback_time(&env, &arrivals, "70000003").await;
    let warm = callback_time(&env, &arrivals, "70000003").await;
    table.row(
        format!(
            "clinician callback, warm, meeting exists (d = {} ms)",
            d.as_millis()
        ),
        format!("{:.2} × d ({})", ratio(warm), ms(warm)),
        "≤ 2.3",
    );
    table.row(
        "clinician callback, first launch of a visit",
        format!("{:.2} × d ({})", ratio(new_visit), ms(new_visit)),
        "≤ 3.3",
    );
    // Cold: a restarted process (the clinician's Microsoft link is in the database).
    let mut env = env;
    delay.set(Duration::ZERO);
    env.restart_replica(0).await;
    slow(&env);
    let cold = callback_time(&env, &arrivals, "70000004").await;
    table.row(
        "clinician callback, cold (first after start, new visit)",
        format!("{:.2} × d ({})", ratio(cold), ms(cold)),
        "≤ 5.3",
    );
}

/// The callback's time, from the request to its answer.
async fn callback_time(env: &Env, arrivals: &crate::round_trips::Arrivals, csn: &str) -> Duration {
    let (_, start, end) = measured_callback(env, arrivals, csn).await;
    end.duration_since(start)
}

/// Launches at once for `secs`: launches per second and the callback step's p50/p99.
async fn launch_load(table: &mut Table, label: &str, options: Options, secs: u64) {
    let env = Arc::new(Env::start_with(options).await);
    provider_launch(&env, &env.browser()).await;
    let launch_url = env.launch_url("provider", &Env::visit_context());
    let stop = Arc::new(AtomicBool::new(false));
    let pid = env.replicas.first().map(|r| r.pid());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (env, stop, launch_url) = (Arc::clone(&env), Arc::clone(&stop), launch_url.clone());
            tokio::spawn(async move {
                let browser = LeanBrowser::new();
                let mut times = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let launched = std::panic::AssertUnwindSafe(browser.launch(&env, &launch_url));
                    match futures_util::FutureExt::catch_unwind(launched).await {
                        Ok(took) => times.push(took),
                        Err(_) => {
                            let logs = env.replica_logs();
                            let trouble: Vec<&str> = logs
                                .lines()
                                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                                .take(20)
                                .collect();
                            panic!("a launch failed; the service said:\n{}", trouble.join("\n"));
                        }
                    }
                }
                times
            })
        })
        .collect();
    let started = Instant::now();
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(pid) = pid {
            peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut times = gathered(clients).await;
    let elapsed = started.elapsed();
    times.sort();
    table.row(
        format!("{label}: full launches/s ({CLIENTS} clients)"),
        format!("{:.0}", times.len() as f64 / elapsed.as_secs_f64()),
        "≥ 1,000 (SQLite)",
    );
    table.row(
        format!("{label}: callback p50 / p99"),
        format!(
            "{} / {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        ),
        "p99 < 5 ms",
    );
    if pid.is_some() {
        table.row(
            format!("{label}: RSS under load (peak)"),
            format!("{:.1} MB", peak_rss as f64 / 1024.0),
            "< 150 MB",
        );
    }
}

/// Roster notifications at once for `secs`: acknowledged per second and the p99 of the 202.
async fn webhook_load(table: &mut Table, label: &str, options: Options, secs: u64) {
    let env = Arc::new(Env::start_with(options).await);
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    let join = visit.join_web_url.clone().expect("a meeting");
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (env, stop, join) = (Arc::clone(&env), Arc::clone(&stop), join.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let url = format!("{}/graph/notifications", env.base);
                let mut times = Vec::new();
                let mut n = client;
                while !stop.load(Ordering::Relaxed) {
                    let payload = guest_roster(n % 500, n.is_multiple_of(2), n);
                    let body = plain_notification("sub-bench", CLIENT_STATE, &join, payload);
                    let started = Instant::now();
                    let status = http
                        .post(&url)
                        .json(&body)
                        .send()
                        .await
                        .expect("an answer")
                        .status();
                    times.push(started.elapsed());
                    assert_eq!(status, 202);
                    n += CLIENTS;
                }
                times
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut times = gathered(clients).await;
    let elapsed = started.elapsed();
    times.sort();
    table.row(
        format!("{label}: notifications acknowledged/s"),
        format!("{:.0}", times.len() as f64 / elapsed.as_secs_f64()),
        "≥ 5,000",
    );
    table.row(
        format!("{label}: acknowledgement p99"),
        ms(percentile(&times, 0.99)),
        "< 50 ms",
    );
}

/// The ceiling: a minimal hyper server (axum, one route) answering a 302, under the same load.
async fn ceiling(table: &mut Table, secs: u64) {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Redirect::to("/elsewhere") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, url) = (Arc::clone(&stop), url.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("a client");
                let mut times = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = http.get(&url).send().await.expect("an answer").status();
                    times.push(started.elapsed());
                    assert_eq!(status, 303);
                }
                times
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut times = gathered(clients).await;
    times.sort();
    table.row(
        "ceiling: minimal hyper server answering a redirect, requests/s",
        format!(
            "{:.0} (p50 {}, p99 {})",
            times.len() as f64 / started.elapsed().as_secs_f64(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        ),
        "—",
    );
}

/// Footprint: start-up to ready and idle memory of a fresh process.
async fn footprint(table: &mut Table) {
    let started = Instant::now();
    let env = Env::start_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let world = started.elapsed();
    let mut env = env;
    let started = Instant::now();
    env.restart_replica(0).await;
    let ready = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = env.replicas[0].pid();
    table.row(
        "start-up to ready (spawn → listening, SQLite, migrated)",
        ms(ready),
        "< 300 ms",
    );
    table.row(
        "RSS idle",
        format!("{:.1} MB", rss_kib(pid).unwrap_or(0) as f64 / 1024.0),
        "< 30 MB",
    );
    let _ = world;
}

/// The write-back outbox: `backlog` events stored while the service is down (as after an EHR
/// outage), then drained by one restarted process to its sinks — the FHIR AuditEvent sink, and
/// with `epic` Epic's connection status too (latest-state-only rows); the fakes answer at once:
/// events delivered per second, and resident memory over the drain.
async fn writeback_drain(table: &mut Table, backlog: usize, epic: bool) {
    let mut env = Env::start_with(Options {
        replicas: 1,
        epic_sink: epic,
        ..Options::default()
    })
    .await;
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    let join = visit.join_web_url.clone().expect("a meeting");
    let first = plain_notification("sub-bench", CLIENT_STATE, &join, guest_roster(0, true, 0));
    assert_eq!(env.post_notification(&first).await, 202);
    env.wait_nothing_pending("the first event delivered").await;
    // The backlog's events are copies of a real one, each with its own id (in its AuditEvent
    // too, so each is a new AuditEvent at the server), its own outbox row and its own moment,
    // spread over 1,000 participants as an outage of some minutes leaves them (each
    // participant's rows go out in order, one after the other).
    let template = env
        .store
        .events_for_visit(&visit.id)
        .await
        .expect("the visit's events")
        .pop()
        .expect("the first event");
    let rows = env
        .store
        .outbox_for_event(&template.event_id)
        .await
        .expect("its rows");
    let sinks: Vec<&str> = rows.iter().map(|row| row.sink.as_str()).collect();
    let wanted = if epic {
        vec![FhirAuditEventSink::NAME, EpicConnectionStatusSink::NAME]
    } else {
        vec![FhirAuditEventSink::NAME]
    };
    assert_eq!(sinks, wanted, "the first event's rows");
    env.replicas[0].kill();
    let body = template.audit_event.to_string();
    let seeding = Instant::now();
    for n in 0..backlog {
        let id = format!("bench-backlog-{n:06}");
        let mut event = template.clone();
        event.audit_event = serde_json::from_str(&body.replace(template.event_id.as_str(), &id))
            .expect("the same AuditEvent");
        event.event_id = EventId::new(id.clone()).expect("an event id");
        event.occurred_at = template.occurred_at
            + chrono::Duration::milliseconds(i64::try_from(n).unwrap_or(i64::MAX));
        if let Some(participant) = event.participant.as_mut() {
            participant.id = format!("8:acs:backlog-guest-{}", n % 1000);
        }
        // Each sink's row as the recorder makes it: the key the sink chose, with this event's id;
        // Epic's connection status keeps only the latest state.
        let deliveries: Vec<NewDelivery> = rows
            .iter()
            .map(|row| NewDelivery {
                sink: row.sink.clone(),
                idempotency_key: row.idempotency_key.replace(template.event_id.as_str(), &id),
                latest_only: row.sink.as_str() == EpicConnectionStatusSink::NAME,
            })
            .collect();
        env.store
            .record_event(&event, &deliveries)
            .await
            .expect("stored");
    }
    eprintln!("  {backlog} events stored in {:?}", seeding.elapsed());

    env.restart_replica(0).await;
    let pid = env.replicas[0].pid();
    let started = Instant::now();
    let mut rss = Vec::new();
    let depth = loop {
        rss.push(rss_kib(pid).unwrap_or(0));
        let depth = env.store.outbox_depth().await.expect("the outbox");
        if depth.pending == 0 {
            break depth;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the backlog did not drain: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drained = started.elapsed();
    assert_eq!(depth.dead, 0, "nothing given up");
    assert_eq!(
        env.fhir.audit_events().len(),
        backlog + 1,
        "every event an AuditEvent at the server"
    );
    let mb = |kib: u64| kib as f64 / 1024.0;
    let label = if epic {
        "FHIR AuditEvent + Epic status"
    } else {
        "FHIR AuditEvent"
    };
    let tenth = rss.len().div_ceil(10);
    let early = rss.iter().take(tenth).copied().max().unwrap_or(0);
    let late = rss.iter().rev().take(tenth).copied().max().unwrap_or(0);
    let peak = rss.iter().copied().max().unwrap_or(0);
    table.row(
        format!("write-back ({label}): a backlog of {backlog} events drained (SQLite, 1 process)"),
        format!(
            "{:.0} events/s ({:.1} s)",
            backlog as f64 / drained.as_secs_f64(),
            drained.as_secs_f64()
        ),
        "≥ 2,000/s",
    );
    table.row(
        format!("write-back ({label}): RSS while draining (first tenth → last tenth, peak)"),
        format!(
            "{:.1} → {:.1} MB, peak {:.1} MB",
            mb(early),
            mb(late),
            mb(peak)
        ),
        "flat",
    );
}

/// The bench program.
pub(crate) fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let secs = env_number("VISITBRIDGE_BENCH_SECONDS", 10);
    let d = Duration::from_millis(env_number("VISITBRIDGE_BENCH_DELAY_MS", 50));
    runtime.block_on(async {
        let mut table = Table::default();
        let only = std::env::var("VISITBRIDGE_BENCH_ONLY").unwrap_or_default();
        let wanted = |phase: &str| only.is_empty() || only.split(',').any(|p| p == phase);
        if wanted("round-trips") {
            eprintln!("round trips …");
            round_trips(&mut table, d).await;
        }
        if wanted("footprint") {
            eprintln!("footprint …");
            footprint(&mut table).await;
        }
        if wanted("ceiling") {
            eprintln!("ceiling …");
            ceiling(&mut table, secs).await;
        }
        for (phase, label, backend, replicas) in [
            ("sqlite", "SQLite, 1 process", Backend::Sqlite, 1),
            ("postgres", "PostgreSQL, 1 process", Backend::Postgres, 1),
            (
                "postgres-2",
                "PostgreSQL, 2 processes",
                Backend::Postgres,
                2,
            ),
        ] {
            if !wanted(phase) {
                continue;
            }
            eprintln!("{label} …");
            let options = Options {
                backend,
                replicas,
                ..Options::default()
            };
            launch_load(&mut table, label, options.clone(), secs).await;
            webhook_load(&mut table, label, options, secs).await;
        }
        if wanted("write-back") {
            eprintln!("write-back …");
            let backlog = env_number("VISITBRIDGE_BENCH_BACKLOG", 100_000);
            let backlog = usize::try_from(backlog).unwrap_or(usize::MAX);
            writeback_drain(&mut table, backlog, false).await;
            // A fifth as many with Epic's rows: each claim still reads every pending
            // latest-state-only row (docs/performance.md), so the full backlog would take long.
            writeback_drain(&mut table, backlog / 5, true).await;
        }
        table.print();
    });
}
