//! The reports benchmark: `cargo bench -p visitbridge-report` (release build) seeds
//! 100,000 visits (`VISITBRIDGE_BENCH_VISITS`) over 90 days in two configurations and eight
//! departments, through the store's own writes (each visit launched, then 2 or 4 participant
//! events recorded), on a SQLite file and on a throwaway PostgreSQL, and prints one Markdown
//! table: the time to derive every visit's outcome once (what the launch service's housekeeping
//! does after the upgrade), then p50/p99 of the report as the portal asks for it — a page with its count, the
//! charts' points and the departments — for the default 30 days, each filter, a sort on a
//! derived column deep in the pages, 90 days, and the CSV export. docs/performance.md holds the
//! latest table.
//!
//! `VISITBRIDGE_BENCH_ONLY=sqlite` or `postgres` runs one backend; `VISITBRIDGE_BENCH_RUNS`
//! (default 30) sets the samples per row.

use std::{sync::Arc, time::Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use visitbridge_approval::{
    Actor, ClientAuth, ClientId, Configuration, ConfigurationId, ConfigurationSettings,
    EhrClientSettings, EhrVendor, Environment, FhirBaseUrl, ScopeStyle, TenantId, UrlPolicy,
    Username,
};
use visitbridge_audit::outcomes::refresh_outcomes;
use visitbridge_report::{Include, ReportFilter, csv_export, recent};
use visitbridge_store::{
    AuditStore, EventId, EventOrigin, EventParticipant, MicrosoftTenantId, ParticipantClass,
    PostgresOptions, PostgresStore, SqliteStore, Store, StoredEvent, Tenant, Visit, VisitEventKind,
    VisitId,
};

const DEPARTMENTS: [&str; 8] = [
    "Cardiology",
    "Dermatology",
    "Family medicine",
    "Neurology",
    "Oncology",
    "Paediatrics",
    "Psychiatry",
    "Urology",
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn settings(fhir: &str, environment: Environment) -> ConfigurationSettings {
    ConfigurationSettings {
        fhir_base_url: FhirBaseUrl::parse(fhir, UrlPolicy::STRICT).expect("a FHIR base URL"),
        environment,
        ehr_vendor: EhrVendor::Epic,
        approver: Username::new("analyst@example.org").expect("a username"),
        ehr_client: EhrClientSettings {
            client_id: ClientId::new("vb-client").expect("a client id"),
            patient_client_id: None,
            auth: ClientAuth::PrivateKeyJwt,
            scope_style: ScopeStyle::V1,
            send_epic_client_id_header: false,
        },
    }
}

/// The tenant and its two configurations.
async fn organisation(store: &dyn Store) -> (TenantId, Vec<ConfigurationId>) {
    let tenant = TenantId::new("bench").expect("a tenant id");
    store
        .insert_tenant(&Tenant {
            id: tenant.clone(),
            name: "Bench health".into(),
            microsoft_tenant_id: MicrosoftTenantId::new("bench-tid").expect("a tenant id"),
            created_at: now(),
        })
        .await
        .expect("the tenant is stored");
    let admin = Actor::admin(
        tenant.clone(),
        Username::new("admin@example.org").expect("a username"),
    );
    let mut ids = Vec::new();
    for (id, environment) in [
        ("prod", Environment::Production),
        ("test", Environment::Test),
    ] {
        let created = Configuration::create(
            &admin,
            ConfigurationId::new(id).expect("an id"),
            settings("https://fhir.bench.example/R4", environment),
            now(),
        )
        .expect("a configuration");
        store
            .insert_configuration(&created)
            .await
            .expect("the configuration is stored");
        ids.push(created.configuration.id().clone());
    }
    (tenant, ids)
}

/// Visit `n`: launched `n × 90 days / count` before now; every fifth a no-show (the patient
/// came and left), the others completed after a lobby wait of 0 to 10 minutes.
async fn seed_one(store: &dyn Store, configurations: &[ConfigurationId], n: usize, count: usize) {
    let span = Duration::days(90).num_seconds();
    let back = span * i64::try_from(n).unwrap_or(0) / i64::try_from(count.max(1)).unwrap_or(1);
    let launched = now() - Duration::seconds(back);
    let id = VisitId::new(format!("visit-{n:07}")).expect("an id");
    let visit = Visit {
        id: id.clone(),
        configuration_id: configurations[n % configurations.len()].clone(),
        external_meeting_id: format!("vb1-bench-{n}"),
        graph_meeting_id: Some(format!("meeting-{n}")),
        join_web_url: None,
        organizer_object_id: None,
        practitioner_fhir_id: None,
        appointment_fhir_id: None,
        encounter_fhir_id: None,
        patient_fhir_id: None,
        conference_id: None,
        patient_key: None,
        appointment_key: None,
        department: Some(DEPARTMENTS[n % DEPARTMENTS.len()].to_owned()),
        created_at: launched,
        ended_at: None,
    };
    store
        .upsert_visit(&visit)
        .await
        .expect("the visit is stored");
    let staff = EventParticipant {
        class: ParticipantClass::OrganizationUser,
        id: format!("staff-{}", n % 40),
    };
    let guest = EventParticipant {
        class: ParticipantClass::AcsGuest,
        id: format!("8:acs:guest-{n}"),
    };
    let wait = i64::try_from(n % 600).unwrap_or(0);
    let minute = |m: i64| launched + Duration::minutes(m);
    let events: Vec<(VisitEventKind, &EventParticipant, DateTime<Utc>)> = if n.is_multiple_of(5) {
        vec![
            (VisitEventKind::ParticipantJoined, &guest, minute(1)),
            (VisitEventKind::ParticipantLeft, &guest, minute(16)),
        ]
    } else {
        vec![
            (VisitEventKind::ParticipantJoined, &staff, minute(0)),
            (
                VisitEventKind::ParticipantJoined,
                &guest,
                minute(1) + Duration::seconds(wait),
            ),
            (VisitEventKind::ParticipantLeft, &guest, minute(25)),
            (VisitEventKind::ParticipantLeft, &staff, minute(26)),
        ]
    };
    for (k, (kind, who, at)) in events.into_iter().enumerate() {
        let event = StoredEvent {
            event_id: EventId::new(format!("{}-{k}", id.as_str())).expect("an id"),
            visit_id: id.clone(),
            kind,
            participant: Some(who.clone()),
            occurred_at: at,
            recorded_at: at,
            origin: EventOrigin::Notification,
            audit_event: json!({ "resourceType": "AuditEvent" }),
        };
        retried("the event is stored", || store.record_event(&event, &[])).await;
    }
}

/// `write` until it succeeds: seeding is set-up, not what is measured, and several writers at
/// once on PostgreSQL may exhaust the store's own retries of serialization failures. How many
/// writes had to be repeated is printed.
async fn retried<T, F, Fut>(what: &str, mut write: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, visitbridge_store::StoreError>>,
{
    for attempt in 1.. {
        match write().await {
            Ok(value) => return value,
            Err(_) if attempt < 20 => {
                REPEATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    unreachable!("the loop returns or panics")
}

static REPEATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn seed(
    store: Arc<dyn Store>,
    configurations: &[ConfigurationId],
    count: usize,
    writers: usize,
) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        let configurations = configurations.to_vec();
        tasks.push(tokio::spawn(async move {
            for n in (w..count).step_by(writers) {
                seed_one(&*store, &configurations, n, count).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a seeding task");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50 and p99 (nearest rank) of `runs` samples of `work`, in milliseconds, and what the last
/// run returned.
async fn sample<F, Fut>(runs: usize, mut work: F) -> (f64, f64, String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut times = Vec::with_capacity(runs);
    let mut what = String::new();
    for _ in 0..runs {
        let start = Instant::now();
        what = work().await;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 50.0), percentile(&times, 99.0), what)
}

async fn measure(
    backend: &str,
    store: Arc<dyn Store>,
    count: usize,
    runs: usize,
    rows: &mut Vec<String>,
) {
    let (tenant, configurations) = organisation(&*store).await;
    // One writer: several at once on PostgreSQL conflict as serializable transactions inserting
    // next to each other (retried), which is not what this measures.
    let writers = 1;
    REPEATED.store(0, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    seed(Arc::clone(&store), &configurations, count, writers).await;
    let seeded = started.elapsed();
    eprintln!(
        "{backend}: {count} visits seeded in {:.1} s",
        seeded.as_secs_f64()
    );

    // Every outcome derived once, as the launch service's housekeeping does after the upgrade
    // to schema 9 (a report derives at most two batches itself).
    let started = Instant::now();
    let audit: &dyn AuditStore = &*store;
    let refreshed = refresh_outcomes(audit, None, usize::MAX)
        .await
        .expect("the outcomes are derived");
    let derive = started.elapsed();
    rows.push(format!(
        "| {backend}: {} outcomes derived from their events (once, after the upgrade) | {:.1} s ({:.0} visits/s) | — |",
        refreshed.stored,
        derive.as_secs_f64(),
        refreshed.stored as f64 / derive.as_secs_f64().max(1e-9)
    ));
    let all = Include {
        charts: true,
        departments: true,
    };

    let cases: [(&str, &str); 7] = [
        (
            "last 30 days, page 1, with charts and departments",
            "days=30",
        ),
        ("last 30 days, status no-show", "days=30&status=no-show"),
        (
            "last 30 days, one department",
            "days=30&department=Neurology",
        ),
        (
            "last 30 days, one configuration",
            "days=30&configuration=test",
        ),
        (
            "last 30 days, by lobby wait, page 20",
            "days=30&sort=lobby-wait&page=20",
        ),
        ("last 90 days, page 1, with charts", "days=90"),
        (
            "2 Nov to 1 Dec, by duration, ascending",
            "from=2026-11-02&to=2026-12-01&sort=duration&order=asc",
        ),
    ];
    for (name, query) in cases {
        let filter = ReportFilter::from_query(Some(query)).expect("a filter");
        let (p50, p99, what) = sample(runs, || {
            let store = Arc::clone(&store);
            let tenant = tenant.clone();
            let filter = filter.clone();
            async move {
                let report = recent(&*store, &tenant, |_| true, &filter, now(), all)
                    .await
                    .expect("a report");
                format!("{} of {}", report.visits.len(), report.total)
            }
        })
        .await;
        rows.push(format!(
            "| {backend}: report, {name} ({what}) | p50 {p50:.1} ms / p99 {p99:.1} ms | p99 < 200 ms |"
        ));
    }
    for (name, query) in [("last 30 days", "days=30"), ("last 90 days", "days=90")] {
        let filter = ReportFilter::from_query(Some(query)).expect("a filter");
        let (p50, p99, what) = sample(runs.min(10), || {
            let store = Arc::clone(&store);
            let tenant = tenant.clone();
            let filter = filter.clone();
            async move {
                let (report, text) = csv_export(&*store, &tenant, |_| true, &filter, now())
                    .await
                    .expect("a CSV export");
                format!(
                    "{} rows, {:.1} MB",
                    report.visits.len(),
                    text.len() as f64 / 1e6
                )
            }
        })
        .await;
        rows.push(format!(
            "| {backend}: CSV export, {name} ({what}) | p50 {p50:.1} ms / p99 {p99:.1} ms | p99 < 200 ms |"
        ));
    }
    // As they come, should a later backend fail.
    for row in rows.iter() {
        eprintln!("{row}");
    }
}

fn main() {
    let count = env_number("VISITBRIDGE_BENCH_VISITS", 100_000);
    let runs = env_number("VISITBRIDGE_BENCH_RUNS", 30).max(1);
    let only = std::env::var("VISITBRIDGE_BENCH_ONLY").unwrap_or_default();
    let wants = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut rows = Vec::new();
    runtime.block_on(async {
        if wants("sqlite") {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("bench.sqlite");
            let store = SqliteStore::open(&path.display().to_string())
                .await
                .expect("the SQLite store");
            measure("SQLite", Arc::new(store), count, runs, &mut rows).await;
        }
        if wants("postgres") {
            let server = visitbridge_testpg::shared().expect("a throwaway PostgreSQL");
            let url = server.create_database().await.expect("a database");
            let store = PostgresStore::connect(&url, &PostgresOptions::default())
                .await
                .expect("the PostgreSQL store");
            measure("PostgreSQL", Arc::new(store), count, runs, &mut rows).await;
        }
    });
    println!("| measure | figure | target |");
    println!("|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
