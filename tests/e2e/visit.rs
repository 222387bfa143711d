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
            .get(8)
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
    admin.wait_for_text("Visits launched since").await.unwrap();
    let row = started_visit_row(&admin).await;
    let headers = [
        "Visit",
        "Launched (UTC)",
        "Start (UTC)",
        "Duration",
        "Organiser",
        "Configuration",
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
