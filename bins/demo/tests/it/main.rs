//! The README's first command: the demo starts, prints its URLs, and they answer.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

#[tokio::test]
async fn the_demo_starts_on_free_ports_and_prints_urls_that_answer() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_visitbridge-demo"))
        .args([
            "--ehr",
            "127.0.0.1:0",
            "--microsoft",
            "127.0.0.1:0",
            "--portal",
            "127.0.0.1:0",
            "--launch",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((label, url)) = line.trim().split_once(": ")
            && url.trim().starts_with("http://")
        {
            urls.push((label.trim().to_owned(), url.trim().to_owned()));
        }
        if line.contains("Press Ctrl+C") {
            break;
        }
    }
    let labels: Vec<&str> = urls.iter().map(|(l, _)| l.as_str()).collect();
    for wanted in ["EHR schedule", "Portal", "Meeting rooms"] {
        assert!(labels.contains(&wanted), "{wanted} missing from {labels:?}");
    }
    let schedule = &urls.iter().find(|(l, _)| l == "EHR schedule").unwrap().1;
    let page = reqwest::get(schedule).await.unwrap();
    let status = page.status();
    let text = page.text().await.unwrap();
    let portal = &urls.iter().find(|(l, _)| l == "Portal").unwrap().1;
    let portal_status = reqwest::get(portal).await.unwrap().status();
    // Metrics answer on their own loopback listener, not on the launch service's.
    let metrics = &urls.iter().find(|(l, _)| l == "Metrics").unwrap().1;
    let metrics = reqwest::get(metrics).await.unwrap();
    let metrics_status = metrics.status();
    let metrics_text = metrics.text().await.unwrap();
    let launch = &urls.iter().find(|(l, _)| l == "Launch service").unwrap().1;
    let public_metrics = reqwest::get(format!("{}/metrics", launch.trim_end_matches('/')))
        .await
        .unwrap()
        .status();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert!(text.contains("Begin virtual visit"), "{text}");
    assert!(
        portal_status.is_success() || portal_status.is_redirection(),
        "{portal_status}"
    );
    assert_eq!(metrics_status, 200);
    assert!(
        metrics_text.contains("# TYPE visitbridge_launches_total counter"),
        "{metrics_text}"
    );
    assert_eq!(public_metrics, 404);
}

/// `--database postgres://…`: the demo runs on PostgreSQL, seeded there, and says so (without the
/// password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_on_postgresql_when_asked() {
    use visitbridge_store::{
        ConfigurationRepo as _, DatabaseLocation, PostgresOptions, PostgresStore,
    };

    let server = visitbridge_testpg::shared().unwrap_or_else(|e| panic!("{e}"));
    let url = server.create_database().await.unwrap();
    // The same URL with a password, which must never be printed.
    let with_password = url.replacen("@", ":not-printed-secret@", 1);
    let any = "127.0.0.1:0".parse().unwrap();
    let demo = visitbridge_demo::start(visitbridge_demo::DemoOptions {
        ehr: any,
        microsoft: any,
        portal: any,
        launch: any,
        data_dir: None,
        database: Some(DatabaseLocation::parse(&with_password).unwrap()),
    })
    .await
    .expect("the demo starts on PostgreSQL");
    let banner = demo.banner();
    assert!(banner.contains("Database: postgres://"), "{banner}");
    assert!(!banner.contains("not-printed-secret"), "{banner}");

    // The seeded, approved configuration is in PostgreSQL.
    let store = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .unwrap();
    let fhir = visitbridge_approval::FhirBaseUrl::parse(
        demo.fhir_base_url.as_str(),
        visitbridge_approval::UrlPolicy::DEVELOPMENT,
    )
    .unwrap();
    assert!(
        store
            .find_approved(&fhir, visitbridge_approval::Environment::Test)
            .await
            .unwrap()
            .is_some()
    );
    let schedule = reqwest::get(demo.schedule_url.as_str()).await.unwrap();
    assert_eq!(schedule.status(), 200);
}
