//! A virtual visit from the EHR schedule: the clinician launches (one-time Microsoft sign-in),
//! the patient launches into the lobby, is admitted and leaves; the clinician's live panel
//! follows, the EHR receives the connection statuses, and the admin sees the visit in the
//! portal's visits report.

use fantoccini::Locator;
use visitbridge_e2e::{Browser, PATIENCE};

use crate::{artefacts, demo};

/// Switches `browser` to the newest window (the schedule's buttons open a new one, as the EHR
/// opens the video vendor in a new browser window).
async fn follow_new_window(browser: &Browser) {
    let windows = browser.client().windows().await.expect("windows");
    let newest = windows.last().expect("a window").clone();
    browser
        .client()
        .switch_to_window(newest)
        .await
        .expect("switch window");
}

/// The cells of the first row of the portal's visits table once the visit has started (staff and
/// patient were in together). The report is a plain page, not live: like a person, the test
/// reloads it until then, within the harness's patience.
async fn started_visit_row(browser: &Browser) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut cells = Vec::new();
        if let Ok(row) = browser
            .client()
            .find(Locator::Css("table.visits tbody tr"))
            .await
        {
            for cell in row.find_all(Locator::Css("th, td")).await.unwrap() {
                cells.push(cell.text().await.unwrap());
            }
        }
        let started = cells
            .get(9)
            .is_some_and(|status| status == "In progress" || status == "Completed");
        if started {
            return cells;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the portal never showed the visit as started: {cells:?}\n{}",
            browser.text().await.unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        browser.client().refresh().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinician_and_patient_meet_in_one_visit_and_the_ehr_hears_of_it() {
    let demo = demo().await;
    let dir = artefacts("visit");

    // The clinician, in Hyperspace: today's schedule, first visit.
    let clinician = Browser::start(dir.clone()).await.expect("browser");
    clinician.open(demo.schedule_url.as_str()).await.unwrap();
    clinician
        .wait_for_text("Begin virtual visit")
        .await
        .unwrap();
    clinician.screenshot("01-ehr-schedule").await.unwrap();
    clinician
        .click("Begin virtual visit (clinician")
        .await
        .unwrap();
    follow_new_window(&clinician).await;
    clinician.wait_for_text("Continue").await.unwrap();
    clinician.click("Continue").await.unwrap();

    // First launch: the one-time Microsoft sign-in links the EHR user to a Microsoft user.
    clinician.wait_for_text("Dana Demo").await.unwrap();
    clinician.screenshot("02-microsoft-sign-in").await.unwrap();
    clinician.click("Dana Demo").await.unwrap();
    let page = clinician.wait_for_text("Participants").await.unwrap();
    assert!(page.contains("Virtual visit"), "{page}");
    assert!(
        !page.contains("Test, Alex") && !page.contains("Alex Test"),
        "the visit page must not show the patient's name: {page}"
    );
    clinician.screenshot("03-visit-page").await.unwrap();
    let visit_window = clinician.client().window().await.unwrap();

    // The patient, in MyChart: same visit, no account.
    let patient = Browser::start(dir.clone()).await.expect("browser");
    patient.open(demo.schedule_url.as_str()).await.unwrap();
    patient.click("Begin virtual visit (patient").await.unwrap();
    follow_new_window(&patient).await;
    patient.wait_for_text("Continue").await.unwrap();
    patient.click("Continue").await.unwrap();
    patient.wait_for_text("Join as patient").await.unwrap();
    patient.click("Join as patient").await.unwrap();
    patient.wait_for_text("Lobby").await.unwrap();
    patient.screenshot("04-patient-in-lobby").await.unwrap();

    // The clinician's live panel shows the patient waiting.
    clinician
        .wait_for_text("The patient is waiting in the lobby")
        .await
        .unwrap();
    clinician
        .screenshot("05-panel-patient-waiting")
        .await
        .unwrap();

    // The clinician joins the meeting and admits the patient.
    clinician.click("Join the meeting").await.unwrap();
    follow_new_window(&clinician).await;
    clinician.click("Join as clinician").await.unwrap();
    clinician.wait_for_text("Admit").await.unwrap();
    clinician.click("Admit").await.unwrap();
    clinician.wait_for_text("In the meeting").await.unwrap();
    clinician.screenshot("06-meeting-room").await.unwrap();

    clinician
        .client()
        .switch_to_window(visit_window)
        .await
        .unwrap();
    clinician.wait_for_text("Patient connected").await.unwrap();
    clinician
        .screenshot("07-panel-patient-connected")
        .await
        .unwrap();

    // The patient leaves; the panel says so.
    patient.click("Leave").await.unwrap();
    clinician.wait_for_text("Disconnected").await.unwrap();
    clinician.screenshot("08-panel-patient-left").await.unwrap();

    // The EHR received the connection statuses through write-back.
    let ehr = Browser::start(dir.clone()).await.expect("browser");
    ehr.open(demo.ehr_audit_url.as_str()).await.unwrap();
    let mut audit = String::new();
    for _ in 0..40 {
        audit = ehr.text().await.unwrap();
        if audit.contains("sandbox-connected") && audit.contains("sandbox-disconnected") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        ehr.open(demo.ehr_audit_url.as_str()).await.unwrap();
    }
    ehr.screenshot("09-ehr-audit").await.unwrap();
    assert!(
        audit.contains("sandbox-connected") && audit.contains("sandbox-disconnected"),
        "the EHR never received both statuses: {audit}"
    );
    assert!(audit.contains("AuditEvent"), "{audit}");

    // The admin sees the visit in the portal: started, two attendees, the patient's lobby wait.
    let admin = Browser::start(dir.clone()).await.expect("browser");
    admin.open(demo.portal_url.as_str()).await.unwrap();
    admin.click("Sign in with Microsoft").await.unwrap();
    admin.click("Casey Admin").await.unwrap();
    admin.wait_for_text("Configurations").await.unwrap();
    admin.click("Visits").await.unwrap();
    admin
        .wait_for_text("launched in the last 30 days match")
        .await
        .unwrap();
    let row = started_visit_row(&admin).await;
    let headers = [
        "Visit",
        "Launched (UTC)",
        "Start (UTC)",
        "Duration",
        "Organiser",
        "Configuration",
        "Department",
        "Attendees",
        "Lobby wait",
        "Status",
    ];
    let column = |name: &str| {
        let at = headers.iter().position(|h| *h == name).unwrap();
        row[at].as_str()
    };
    assert_eq!(column("Attendees"), "2", "{row:?}");
    let wait = column("Lobby wait");
    assert!(
        wait.ends_with('s') && wait.starts_with(|c: char| c.is_ascii_digit()),
        "the patient's lobby wait, as a duration: {row:?}"
    );
    assert!(
        column("Configuration").contains(demo.fhir_base_url.as_str().trim_end_matches('/')),
        "{row:?}"
    );
    let page = admin.text().await.unwrap();
    assert!(
        !page.contains("Test, Alex") && !page.contains("Alex Test"),
        "the report must not show the patient's name: {page}"
    );
    admin.screenshot("10-portal-visits").await.unwrap();

    // The charts render in Chromium: three images with their titles, laid out with a size, a
    // bar for today's visit, and their numbers in a table beside them.
    let charts = admin
        .client()
        .find_all(Locator::Css("svg.chart[role=img]"))
        .await
        .unwrap();
    assert_eq!(charts.len(), 3, "three charts");
    for chart in &charts {
        let (_, _, width, height) = chart.rectangle().await.unwrap();
        assert!(
            width > 100.0 && height > 20.0,
            "a chart drawn {width}×{height}"
        );
    }
    let drawn = admin
        .client()
        .execute(
            "return [...document.querySelectorAll('#chart-visits rect')]
                 .filter(r => r.getBBox().height > 0).length;",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(drawn, serde_json::json!(1), "one day with a visit: one bar");
    let titles = admin
        .client()
        .execute(
            "return [...document.querySelectorAll('svg.chart title')].map(t => t.textContent);",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        titles,
        serde_json::json!([
            "Visits per day",
            "Lobby wait per day: median and 90th percentile",
            "No-show rate per week"
        ])
    );
    let visits_table = admin
        .client()
        .find(Locator::Id("chart-visits-data"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        visits_table.contains(&format!("{today} 1")),
        "{visits_table}"
    );

    // A write-back the EHR refused for good (made so in the database, as the worker would after
    // its last attempt), for the admin to send again.
    let href = admin
        .client()
        .find(Locator::Css("table.visits tbody tr th a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let visit_id = href.trim_start_matches("/visits/").to_owned();
    dead_letter(&demo, &visit_id).await;

    // Its page: the timeline by role and the write-back of each event.
    admin.click("visit details").await.unwrap();
    let detail = admin.wait_for_text("Patient / guest 1").await.unwrap();
    assert!(detail.contains("Clinician"), "{detail}");
    assert!(detail.contains("In the lobby"), "{detail}");
    assert!(detail.contains("delivered"), "{detail}");
    assert!(
        !detail.contains("Test, Alex") && !detail.contains("Alex Test"),
        "the visit page must not show the patient's name: {detail}"
    );
    admin.screenshot("11-portal-visit").await.unwrap();

    // The re-drive: the dead letter shows with its reason and a button; sent again, the worker
    // delivers it to the EHR.
    assert!(
        detail.contains("dead letter") && detail.contains("the EHR answered 400 (end-to-end test)"),
        "{detail}"
    );
    admin.click("Send again").await.unwrap();
    admin
        .wait_for_text("The write-back is on its way again")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let page = admin.text().await.unwrap();
        if !page.contains("dead letter") && !page.contains("pending") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the re-driven write-back was never delivered: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        admin.client().refresh().await.unwrap();
    }
    assert!(
        !admin.text().await.unwrap().contains("Send again"),
        "no button once delivered"
    );
    admin.screenshot("12-portal-redriven").await.unwrap();

    clinician.close().await;
    patient.close().await;
    ehr.close().await;
    admin.close().await;

    // After the whole visit, the database holds no patient data: no name, birth date or MRN of
    // any sandbox patient (the EHR had them all; VisitBridge must have kept none).
    let mut stored = Vec::new();
    for suffix in ["", "-wal"] {
        let database = demo
            .database
            .sqlite_path()
            .expect("the end-to-end demo runs on SQLite");
        let path = format!("{}{suffix}", database.display());
        if let Ok(bytes) = std::fs::read(&path) {
            stored.extend(bytes);
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("sandbox-ehr-test"),
        "the scan must read the real database"
    );
    for person in &demo.sandbox.ehr.seed().patients {
        for probe in [
            format!("{}, {}", person.family, person.given),
            format!("{} {}", person.given, person.family),
            person.birth_date.clone(),
            person.mrn.clone(),
        ] {
            assert!(
                !stored.contains(&probe),
                "the database holds patient data: {probe}"
            );
        }
    }
}

/// Makes a copy of the visit's last event whose write-back the EHR refused for good: recorded for
/// the same sink as its original, claimed and marked dead through a second store on the demo's
/// database. Recorded as if an hour ahead, so that the demo's own worker does not send it first.
async fn dead_letter(demo: &visitbridge_demo::RunningDemo, visit: &str) {
    use visitbridge_store::{AuditRepo, EventId, NewDelivery, OutboxRepo, SqliteStore, VisitId};
    let path = demo
        .database
        .sqlite_path()
        .expect("the demo runs on SQLite");
    let store = SqliteStore::open(&path.display().to_string())
        .await
        .expect("the demo's database");
    let id = VisitId::new(visit).unwrap();
    let original = store
        .events_for_visit(&id)
        .await
        .unwrap()
        .into_iter()
        .next_back()
        .expect("the visit has events");
    let sink = store
        .outbox_for_event(&original.event_id)
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("the event was written back")
        .sink;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let copy = visitbridge_store::StoredEvent {
        event_id: EventId::new(format!("{}-e2e-dead", original.event_id.as_str())).unwrap(),
        recorded_at: later,
        ..original
    };
    store
        .record_event(
            &copy,
            &[NewDelivery {
                sink,
                idempotency_key: format!("{}-e2e", copy.event_id.as_str()),
                latest_only: false,
            }],
        )
        .await
        .unwrap();
    let claimed = store
        .claim_due(
            later + chrono::Duration::seconds(1),
            std::time::Duration::from_secs(60),
            100,
        )
        .await
        .unwrap();
    let item = claimed
        .into_iter()
        .find(|c| c.event.event_id == copy.event_id)
        .expect("the copy is claimed")
        .item;
    assert!(
        store
            .mark_dead(
                item.id,
                item.attempts,
                "the EHR answered 400 (end-to-end test)"
            )
            .await
            .unwrap()
    );
}
