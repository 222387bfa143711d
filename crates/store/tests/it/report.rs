//! What reports read: outcomes that go stale with each event and are never overwritten by an
//! older one, and the report's query — period, configuration, department and status filters,
//! every sort with unknown values last, pages with their total, the charts' points and the
//! departments.

use chrono::Duration;
use serde_json::json;
use visitbridge_approval::{ConfigurationId, Environment};
use visitbridge_store::*;

use crate::fixtures::*;
use crate::visits::{store_with_configuration, visit};

async fn record(store: &AnyStore, visit: &str, event: &str, minute: i64) {
    let stored = StoredEvent {
        event_id: EventId::new(event).unwrap(),
        visit_id: VisitId::new(visit).unwrap(),
        kind: VisitEventKind::CallStarted,
        participant: None,
        occurred_at: at(minute),
        recorded_at: at(minute),
        origin: EventOrigin::Notification,
        audit_event: json!({ "resourceType": "AuditEvent" }),
    };
    store.record_event(&stored, &[]).await.unwrap();
}

fn outcome(status: VisitStatus, wait_seconds: Option<i64>, attendees: u32) -> VisitOutcome {
    VisitOutcome {
        status,
        start: Some(at(1)),
        end: Some(at(11)),
        lobby_wait: wait_seconds.map(Duration::seconds),
        attendees,
    }
}

async fn stale_ids(
    store: &AnyStore,
    configurations: Option<&[ConfigurationId]>,
) -> Vec<(String, i64)> {
    let mut stale: Vec<(String, i64)> = store
        .stale_outcomes(configurations, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.visit.as_str().to_owned(), s.events_version))
        .collect();
    stale.sort();
    stale
}

async fn outcomes_go_stale_with_each_event_and_never_go_back(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    store.upsert_visit(&visit("a", &cfg, "vb-a")).await.unwrap();
    store.upsert_visit(&visit("b", &cfg, "vb-b")).await.unwrap();
    // A visit without events has nothing to derive.
    assert!(stale_ids(&store, None).await.is_empty());
    record(&store, "a", "a-1", 1).await;
    record(&store, "a", "a-2", 2).await;
    // A repeated event changes nothing.
    record(&store, "a", "a-2", 2).await;
    record(&store, "b", "b-1", 1).await;
    assert_eq!(
        stale_ids(&store, None).await,
        [("a".to_owned(), 2), ("b".to_owned(), 1)]
    );
    assert_eq!(
        stale_ids(&store, Some(&[ConfigurationId::new("other").unwrap()])).await,
        []
    );
    assert_eq!(stale_ids(&store, Some(&[])).await, []);

    let stale = store.stale_outcomes(None, 100).await.unwrap();
    let a = stale
        .iter()
        .find(|s| s.visit.as_str() == "a")
        .unwrap()
        .clone();
    let completed = outcome(VisitStatus::Completed, Some(30), 2);
    assert_eq!(
        store
            .store_outcomes(&[(a.clone(), completed)])
            .await
            .unwrap(),
        1
    );
    // An outcome of fewer events (a slower writer) does not replace it.
    let older = StaleOutcome {
        events_version: 1,
        ..a.clone()
    };
    let in_progress = outcome(VisitStatus::InProgress, None, 1);
    assert_eq!(
        store.store_outcomes(&[(older, in_progress)]).await.unwrap(),
        0
    );
    assert_eq!(stale_ids(&store, None).await, [("b".to_owned(), 1)]);

    let query = ReportQuery {
        configurations: vec![cfg.clone()],
        launched_from: at(-60),
        launched_before: at(60),
        department: None,
        statuses: vec![VisitStatus::Completed],
        sort: ReportSort::Launched,
        descending: true,
    };
    let page = store.report_visits(&query, 0, 10).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.rows[0].0.id.as_str(), "a");
    assert_eq!(page.rows[0].1, completed);
    // A new event makes it stale again.
    record(&store, "a", "a-3", 3).await;
    assert_eq!(
        stale_ids(&store, None).await,
        [("a".to_owned(), 3), ("b".to_owned(), 1)]
    );
    // Not derived yet: a visit's outcome is what was stored, and a new one's is "not started".
    let b = store
        .report_visits(
            &ReportQuery {
                statuses: vec![VisitStatus::NotStarted],
                ..query.clone()
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(b.rows[0].1, VisitOutcome::NOTHING_YET);
}

/// Configuration, department, status, lobby wait (s), attendees.
type SeededVisit<'a> = (
    &'a ConfigurationId,
    Option<&'a str>,
    VisitStatus,
    Option<i64>,
    u32,
);

/// Seven visits of two configurations, launched a minute apart (`v0` first).
async fn seeded(db: &TestDb) -> (AnyStore, ConfigurationId, ConfigurationId) {
    let (store, cfg) = store_with_configuration(db).await;
    let tenant = tenant_id("contoso");
    let other = create(
        &store,
        &tenant,
        "cfg-2",
        "https://fhir.example.org/test/R4",
        Environment::Test,
    )
    .await
    .id()
    .clone();
    use VisitStatus::*;
    let rows: [SeededVisit; 7] = [
        (&cfg, Some("Cardiology"), Completed, Some(30), 2),
        (&cfg, Some("Family medicine"), NoShow, None, 1),
        (&cfg, None, Completed, Some(300), 3),
        (&other, Some("Cardiology"), InProgress, Some(5), 2),
        (&cfg, Some("Cardiology"), Completed, Some(120), 2),
        (&other, None, NotStarted, None, 0),
        (&cfg, Some("Family medicine"), Completed, None, 2),
    ];
    for (n, (c, department, status, wait, attendees)) in rows.into_iter().enumerate() {
        let id = format!("v{n}");
        let minute = i64::try_from(n).unwrap();
        let v = Visit {
            created_at: at(minute),
            department: department.map(str::to_owned),
            ..visit(&id, c, &format!("vb-{id}"))
        };
        store.upsert_visit(&v).await.unwrap();
        record(&store, &id, &format!("{id}-1"), minute).await;
        let stale = StaleOutcome {
            visit: VisitId::new(&id).unwrap(),
            events_version: 1,
        };
        let o = VisitOutcome {
            status,
            start: (status != NotStarted && status != NoShow).then(|| at(minute + 1)),
            // Durations: 10, 20, 30… minutes; an in-progress visit has no end.
            end: matches!(status, Completed).then(|| at(minute + 1 + 10 * (minute + 1))),
            lobby_wait: wait.map(Duration::seconds),
            attendees,
        };
        store.store_outcomes(&[(stale, o)]).await.unwrap();
    }
    (store, cfg, other)
}

fn ids(page: &ReportPage) -> Vec<&str> {
    page.rows.iter().map(|(v, _)| v.id.as_str()).collect()
}

async fn the_report_filters_sorts_and_pages_in_the_database(db: TestDb) {
    let (store, cfg, other) = seeded(&db).await;
    let all = ReportQuery {
        configurations: vec![cfg.clone(), other.clone()],
        launched_from: at(0),
        launched_before: at(7),
        department: None,
        statuses: Vec::new(),
        sort: ReportSort::Launched,
        descending: true,
    };
    let q = |f: &dyn Fn(&mut ReportQuery)| {
        let mut q = all.clone();
        f(&mut q);
        q
    };
    let page = store.report_visits(&all, 0, 100).await.unwrap();
    assert_eq!(page.total, 7);
    assert_eq!(ids(&page), ["v6", "v5", "v4", "v3", "v2", "v1", "v0"]);
    // The period: launched at or after, before.
    let window = q(&|q| {
        q.launched_from = at(2);
        q.launched_before = at(4);
    });
    assert_eq!(
        ids(&store.report_visits(&window, 0, 100).await.unwrap()),
        ["v3", "v2"]
    );
    // One configuration; one department; some statuses; all together.
    let one = q(&|q| q.configurations = vec![other.clone()]);
    assert_eq!(
        ids(&store.report_visits(&one, 0, 100).await.unwrap()),
        ["v5", "v3"]
    );
    let cardiology = q(&|q| q.department = Some("Cardiology".into()));
    assert_eq!(
        ids(&store.report_visits(&cardiology, 0, 100).await.unwrap()),
        ["v4", "v3", "v0"]
    );
    let finished = q(&|q| q.statuses = vec![VisitStatus::NoShow, VisitStatus::InProgress]);
    assert_eq!(
        ids(&store.report_visits(&finished, 0, 100).await.unwrap()),
        ["v3", "v1"]
    );
    let narrow = q(&|q| {
        q.configurations = vec![cfg.clone()];
        q.department = Some("Cardiology".into());
        q.statuses = vec![VisitStatus::Completed];
    });
    assert_eq!(
        ids(&store.report_visits(&narrow, 0, 100).await.unwrap()),
        ["v4", "v0"]
    );
    assert_eq!(
        store
            .report_visits(&q(&|q| q.configurations.clear()), 0, 100)
            .await
            .unwrap()
            .total,
        0
    );

    // Sorts: unknown values last whichever the direction; ties by newest launch.
    for (sort, descending, expected) in [
        (
            ReportSort::Launched,
            false,
            vec!["v0", "v1", "v2", "v3", "v4", "v5", "v6"],
        ),
        (
            ReportSort::LobbyWait,
            true,
            vec!["v2", "v4", "v0", "v3", "v6", "v5", "v1"],
        ),
        (
            ReportSort::LobbyWait,
            false,
            vec!["v3", "v0", "v4", "v2", "v6", "v5", "v1"],
        ),
        (
            ReportSort::Duration,
            true,
            vec!["v6", "v4", "v2", "v0", "v5", "v3", "v1"],
        ),
        (
            ReportSort::Duration,
            false,
            vec!["v0", "v2", "v4", "v6", "v5", "v3", "v1"],
        ),
        (
            ReportSort::Attendees,
            true,
            vec!["v2", "v6", "v4", "v3", "v0", "v1", "v5"],
        ),
        (
            ReportSort::Start,
            false,
            vec!["v0", "v2", "v3", "v4", "v6", "v5", "v1"],
        ),
        (
            ReportSort::Department,
            false,
            vec!["v4", "v3", "v0", "v6", "v1", "v5", "v2"],
        ),
        (
            ReportSort::Status,
            false,
            vec!["v6", "v4", "v2", "v0", "v3", "v1", "v5"],
        ),
    ] {
        let sorted = q(&|q| {
            q.sort = sort;
            q.descending = descending;
        });
        assert_eq!(
            ids(&store.report_visits(&sorted, 0, 100).await.unwrap()),
            expected,
            "{sort:?} descending={descending}"
        );
    }

    // Pages: the same total on each, the rows in order, nothing after the last.
    let mut seen = Vec::new();
    for offset in [0, 3, 6] {
        let page = store.report_visits(&all, offset, 3).await.unwrap();
        assert_eq!(page.total, 7);
        seen.extend(ids(&page).into_iter().map(str::to_owned));
    }
    assert_eq!(seen, ["v6", "v5", "v4", "v3", "v2", "v1", "v0"]);
    assert!(
        store
            .report_visits(&all, 7, 3)
            .await
            .unwrap()
            .rows
            .is_empty()
    );

    // The charts' points: every matching visit, newest first, with status and wait.
    let points = store.report_points(&cardiology, 100).await.unwrap();
    assert_eq!(
        points
            .iter()
            .map(|p| (p.launched_at, p.status, p.lobby_wait))
            .collect::<Vec<_>>(),
        [
            (at(4), VisitStatus::Completed, Some(Duration::seconds(120))),
            (at(3), VisitStatus::InProgress, Some(Duration::seconds(5))),
            (at(0), VisitStatus::Completed, Some(Duration::seconds(30))),
        ]
    );
    assert_eq!(store.report_points(&all, 2).await.unwrap().len(), 2);

    // The departments, once each, in order; of these configurations only.
    assert_eq!(
        store
            .report_departments(&[cfg.clone(), other.clone()], 10)
            .await
            .unwrap(),
        ["Cardiology", "Family medicine"]
    );
    assert_eq!(
        store.report_departments(&[other], 10).await.unwrap(),
        ["Cardiology"]
    );
}

async fn a_department_is_filled_in_once_and_checked(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let first = store.upsert_visit(&visit("a", &cfg, "vb-a")).await.unwrap();
    assert_eq!(first.department, None);
    let named = Visit {
        department: Some("EMC FAMILY MEDICINE".into()),
        ..first.clone()
    };
    let stored = store.upsert_visit(&named).await.unwrap();
    assert_eq!(stored.department.as_deref(), Some("EMC FAMILY MEDICINE"));
    // Never overwritten.
    let renamed = Visit {
        department: Some("Elsewhere".into()),
        ..first.clone()
    };
    let kept = store.upsert_visit(&renamed).await.unwrap();
    assert_eq!(kept.department.as_deref(), Some("EMC FAMILY MEDICINE"));
    for bad in ["", "  ", "a\nb", &"x".repeat(201)] {
        let v = Visit {
            department: Some(bad.to_owned()),
            ..visit("b", &cfg, "vb-b")
        };
        assert!(
            matches!(
                store.upsert_visit(&v).await,
                Err(StoreError::InvalidRecord(_))
            ),
            "{bad:?}"
        );
    }
}

crate::on_both_backends!(
    outcomes_go_stale_with_each_event_and_never_go_back,
    the_report_filters_sorts_and_pages_in_the_database,
    a_department_is_filled_in_once_and_checked,
);
