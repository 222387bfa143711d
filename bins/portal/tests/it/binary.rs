//! The binary as an operator starts it: `--help`, and a configuration file.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

const BIN: &str = env!("CARGO_BIN_EXE_visitbridge-portal");

#[test]
fn help_lists_the_flags_and_their_environment_variables() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "--config",
        "VISITBRIDGE_PORTAL_CONFIG",
        "--listen",
        "VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET",
        "--dev-mode",
    ] {
        assert!(help.contains(expected), "--help lacks {expected}: {help}");
    }
}

#[test]
fn a_bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portal.toml");
    std::fs::write(
        &file,
        r#"
        public_base_url = "http://portal.example.org"
        database = "portal.sqlite"
        launch_base_url = "https://visits.example.org"
        [entra]
        client_id = "app"
        [ehr_sign_in]
        client_id = "ehr"
        "#,
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .env_remove("VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("public_base_url must use https"),
        "{stderr}"
    );
}

#[tokio::test]
async fn starts_from_a_file_and_environment_and_answers_health_probes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portal.toml");
    std::fs::write(
        &file,
        format!(
            r#"
            listen = "127.0.0.1:0"
            public_base_url = "http://localhost:8090"
            cookie_secure = false
            database = "{}"
            launch_base_url = "http://localhost:8080"
            [entra]
            client_id = "app"
            [ehr_sign_in]
            client_id = "ehr"
            "#,
            dir.path().join("portal.sqlite").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .env("VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET", "entra-secret")
        .env("VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET", "ehr-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let health = loop {
        let line = lines
            .next()
            .expect("the portal exited before printing its address")
            .unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.ends_with("/healthz")) {
            break url.to_owned();
        }
    };
    let health_answer = reqwest::get(&health).await;
    let ready_answer = reqwest::get(health.replace("/healthz", "/readyz")).await;
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(health_answer.unwrap().text().await.unwrap(), "ok");
    let ready = ready_answer.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(
        dir.path().join("portal.sqlite").exists(),
        "the database was created"
    );
}
