//! The binary as an operator starts it: `--help`, and a configuration file.

use std::process::Command;

use crate::process::Process;

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

#[test]
fn an_ehr_sign_in_client_secret_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portal.toml");
    let write = |ehr_sign_in: &str| {
        std::fs::write(
            &file,
            format!(
                r#"
                public_base_url = "http://localhost:8090"
                cookie_secure = false
                database = "{}"
                launch_base_url = "http://localhost:8080"
                [entra]
                client_id = "app"
                [ehr_sign_in]
                client_id = "ehr"
                {ehr_sign_in}
                "#,
                dir.path().join("portal.sqlite").display()
            ),
        )
        .unwrap();
    };
    let run = |ehr_secret: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args(["--config", file.to_str().unwrap()])
            .env("VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET", "entra-secret")
            .env_remove("VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET");
        if let Some(secret) = ehr_secret {
            command.env("VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET", secret);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "the portal started");
        String::from_utf8(output.stderr).unwrap()
    };

    // The method of an older configuration file.
    write("client_auth = \"client_secret_basic\"");
    let stderr = run(Some("ehr-secret-value"));
    assert!(
        stderr.contains("client_auth = \"client_secret_basic\" is not allowed"),
        "{stderr}"
    );
    assert!(stderr.contains("before it is approved"), "{stderr}");
    assert!(stderr.contains("client_auth = \"public\""), "{stderr}");
    assert!(!stderr.contains("ehr-secret-value"), "{stderr}");

    // The secret of an older deployment's environment, with the default (public) method.
    write("");
    let stderr = run(Some("ehr-secret-value"));
    assert!(
        stderr.contains("VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET"),
        "{stderr}"
    );
    assert!(stderr.contains("never uses a client secret"), "{stderr}");
    assert!(!stderr.contains("ehr-secret-value"), "{stderr}");
}

/// The portal binary started from a configuration file in `dir` (ending with `extra`), on a free
/// loopback port; killed when dropped.
fn start_portal(dir: &std::path::Path, extra: &str) -> Process {
    let file = dir.join("portal.toml");
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
            {extra}
            "#,
            dir.join("portal.sqlite").display()
        ),
    )
    .unwrap();
    crate::process::start(&file)
}

#[tokio::test]
async fn starts_from_a_file_and_environment_and_answers_health_probes() {
    let dir = tempfile::tempdir().unwrap();
    let portal = start_portal(dir.path(), "");
    let health_answer = reqwest::get(format!("{}/healthz", portal.base)).await;
    let ready_answer = reqwest::get(format!("{}/readyz", portal.base)).await;
    drop(portal);
    assert_eq!(health_answer.unwrap().text().await.unwrap(), "ok");
    let ready = ready_answer.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(
        dir.path().join("portal.sqlite").exists(),
        "the database was created"
    );
}

/// The same raw-socket abuse as the launch service's, against the portal binary.
#[tokio::test]
async fn the_binary_survives_raw_socket_abuse() {
    let dir = tempfile::tempdir().unwrap();
    let portal = start_portal(dir.path(), "[server]\nheader_read_timeout_seconds = 2");
    let addr = url::Url::parse(&portal.base)
        .unwrap()
        .socket_addrs(|| None)
        .unwrap()[0];
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        visitbridge_testkit::abuse::assert_survives_abuse(addr, portal.child.id()),
    )
    .await
    .expect("the abuse run ended in time");
}
