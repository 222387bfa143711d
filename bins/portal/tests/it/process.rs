//! The portal binary as a child process on a database of the test's choice, with one fake EHR
//! per configuration it will hold, for the crash and soak runs.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use serde_json::{Value, json};
use tempfile::TempDir;
use visitbridge_testkit::{
    entra::TENANT_ID,
    fhir::{EPIC_BASE_PATH, FhirFake},
    smart::{ExpectedClientAuth, SmartFake},
};
use wiremock::MockServer;

use crate::harness::API_KEY;

const BIN: &str = env!("CARGO_BIN_EXE_visitbridge-portal");

/// A portal process: killed (SIGKILL) when dropped.
pub(crate) struct Process {
    pub(crate) child: Child,
    /// `http://127.0.0.1:{port}`.
    pub(crate) base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the portal started from `config` writes its log (appended to by each restart).
pub(crate) fn log_of(config: &std::path::Path) -> std::path::PathBuf {
    config.with_extension("log")
}

/// The last `n` lines of the log of the portal started from `config`, for a failing test to show.
pub(crate) fn log_tail(config: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(log_of(config)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Starts the portal from `config`; returns once it listens. Its log goes to [`log_of`].
pub(crate) fn start(config: &std::path::Path) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_of(config))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .env("VISITBRIDGE_PORTAL_ENTRA_CLIENT_SECRET", "entra-secret")
        .env_remove("VISITBRIDGE_PORTAL_EHR_CLIENT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let health = loop {
        let line = lines
            .next()
            .expect("the portal exited before printing its address")
            .unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.ends_with("/healthz")) {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Process {
        child,
        base: health.trim_end_matches("/healthz").to_owned(),
    }
}

/// A portal configuration file on `database` with the API key [`API_KEY`], and the fake EHRs.
pub(crate) struct World {
    /// The configuration file.
    pub(crate) config: PathBuf,
    /// One FHIR base per fake EHR (an organisation has one configuration per base and
    /// environment).
    pub(crate) fhir_bases: Vec<String>,
    _ehrs: Vec<MockServer>,
    _dir: TempDir,
}

impl World {
    pub(crate) async fn new(database: &str, ehrs: usize) -> Self {
        let mut servers = Vec::new();
        let mut fhir_bases = Vec::new();
        for _ in 0..ehrs {
            let ehr = MockServer::start().await;
            SmartFake::mount(&ehr, ExpectedClientAuth::Any).await;
            let fhir = FhirFake::mount_on(&ehr, EPIC_BASE_PATH).await;
            fhir_bases.push(fhir.base_url().to_owned());
            servers.push(ehr);
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portal.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                listen = "127.0.0.1:0"
                public_base_url = "http://localhost:8090"
                cookie_secure = false
                dev_mode = true
                database = "{database}"
                launch_base_url = "http://localhost:8080"
                [entra]
                client_id = "app"
                [ehr_sign_in]
                client_id = "ehr"
                [[admins]]
                microsoft_tenant_id = "{TENANT_ID}"
                usernames = ["admin@contoso.example"]
                [[api_keys]]
                name = "ci"
                microsoft_tenant_id = "{TENANT_ID}"
                key = "{API_KEY}"
                "#
            ),
        )
        .unwrap();
        Self {
            config,
            fhir_bases,
            _ehrs: servers,
            _dir: dir,
        }
    }

    /// Creates a configuration for each fake EHR through the API; their ids.
    pub(crate) async fn create_configurations(
        &self,
        http: &reqwest::Client,
        base: &str,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for fhir_base in &self.fhir_bases {
            let created = http
                .post(format!("{base}/api/v1/configurations"))
                .bearer_auth(API_KEY)
                .json(&settings(fhir_base, "vb-edit-0"))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            let created: Value = created.json().await.unwrap();
            ids.push(created["id"].as_str().expect("an id").to_owned());
        }
        ids
    }
}

/// The settings of a configuration for `fhir_base` with the EHR client id `client`.
pub(crate) fn settings(fhir_base: &str, client: &str) -> Value {
    json!({
        "fhir_base_url": fhir_base,
        "environment": "test",
        "approver": "analyst@contoso.example",
        "client_id": client,
    })
}
