//! Standalone patient launch against Epic's public sandbox: sign in as a test patient, then list
//! that patient's upcoming appointments.
//!
//! What it shows: the issuer allowlist, SMART discovery, a standalone launch with PKCE S256, the
//! token exchange, id_token validation against Epic's keys, and FHIR searches with the resulting
//! token — the same code paths the launch service uses.
//!
//! Run (see the README for registering the app on fhir.epic.com):
//!
//! ```sh
//! EPIC_CLIENT_ID=<non-production client id> \
//!   cargo run -p visitbridge-examples --bin epic-patient-appointments
//! ```
//!
//! Environment:
//! - `EPIC_CLIENT_ID` (required): the app's non-production client id.
//! - `EPIC_CLIENT_SECRET` (optional): for an app registered as a confidential client
//!   (`client_secret_basic`); without it the app is a public client protected by PKCE.
//! - `EPIC_FHIR_BASE` (optional): another SMART on FHIR R4 base URL; default Epic's sandbox.
//! - `EPIC_REDIRECT_PORT` (optional, default 8765): the loopback port of the registered redirect
//!   URI `http://127.0.0.1:<port>/callback`.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use url::Url;
use visitbridge_fhir::{
    Appointment, DatePrefix, FhirBaseUrl, FhirClient, FhirClientConfig, PatientId, SearchQuery,
};
use visitbridge_http::{HttpConfig, Secret, build_client};
use visitbridge_smart::{
    ApprovedIssuer, ClientAuth, InMemoryPendingLaunches, SmartClient, SmartClientConfig,
    StaticIssuers,
};

const EPIC_SANDBOX_R4: &str = "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4";
const SCOPES: &str = "openid fhirUser launch/patient patient/Appointment.read";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client_id = std::env::var("EPIC_CLIENT_ID")
        .context("set EPIC_CLIENT_ID to your app's non-production client id from fhir.epic.com")?;
    let fhir_base = std::env::var("EPIC_FHIR_BASE").unwrap_or_else(|_| EPIC_SANDBOX_R4.to_owned());
    let port: u16 = std::env::var("EPIC_REDIRECT_PORT")
        .ok()
        .map(|p| p.parse())
        .transpose()
        .context("EPIC_REDIRECT_PORT must be a port number")?
        .unwrap_or(8765);
    let auth = match std::env::var("EPIC_CLIENT_SECRET") {
        Ok(secret) if !secret.is_empty() => ClientAuth::SecretBasic(Secret::new(secret)),
        _ => ClientAuth::Public,
    };

    let redirect_uri = Url::parse(&format!("http://127.0.0.1:{port}/callback"))?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;

    let http = build_client(&HttpConfig::default())?;
    // The only issuer this program will ever talk to: the allowlist is the first check.
    let issuers = StaticIssuers::new([ApprovedIssuer::new(Url::parse(&fhir_base)?, "example")]);
    let config = SmartClientConfig::new(client_id, redirect_uri, auth)
        .with_scopes(SCOPES, SCOPES)
        .with_epic_client_id_header()?;
    let smart = SmartClient::new(
        config,
        http.clone(),
        Arc::new(issuers),
        Arc::new(InMemoryPendingLaunches::new()),
    );

    let request = smart
        .begin_standalone_launch(&fhir_base, BTreeMap::new())
        .await
        .context("starting the launch")?;
    println!(
        "Open this URL in a browser and sign in (Epic sandbox patient: fhircamila / epicepic1):\n"
    );
    println!("  {}\n", request.url());
    println!("Waiting for the redirect on http://127.0.0.1:{port}/callback ...");

    let query = wait_for_callback(&listener).await?;
    let launch = smart
        .complete_callback(&query)
        .await
        .context("completing the launch")?;
    let Some(patient) = launch.context.patient.clone() else {
        bail!("the server did not return a patient in the launch context");
    };
    if let Some(user) = &launch.ehr_user {
        println!("Signed in; validated id_token for EHR user {}", user.id());
    }

    let fhir = FhirClient::new(
        FhirClientConfig::new(FhirBaseUrl::parse(&fhir_base)?),
        http,
        Arc::new(launch.token_source()),
    );
    let today = chrono::Utc::now().date_naive();
    let query = SearchQuery::<Appointment>::new()
        .patient(&PatientId::new(patient)?)
        .date(DatePrefix::Ge, today);
    let bundle = fhir
        .search_all(&query, 5)
        .await
        .context("searching appointments")?;

    let mut count = 0;
    for appointment in bundle.resources() {
        count += 1;
        let when = appointment
            .start
            .as_ref()
            .map_or("(no start)", |s| s.as_str());
        let status = appointment.status.as_ref().map_or("?", |s| s.as_str());
        let what = appointment
            .service_type
            .first()
            .and_then(|c| c.text.as_deref())
            .unwrap_or("appointment");
        println!("  {when}  {status:<10}  {what}");
    }
    for problem in bundle.errors() {
        println!("  (one entry could not be read: {problem})");
    }
    if count == 0 {
        println!("No upcoming appointments.");
    }
    Ok(())
}

/// Accepts connections until one is the OAuth redirect, answers it, and returns its query.
async fn wait_for_callback(listener: &TcpListener) -> anyhow::Result<String> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        let mut buf = vec![0u8; 16 * 1024];
        let n = socket.read(&mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or("");
        let Some(query) = target.strip_prefix("/callback?") else {
            socket
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await?;
            continue;
        };
        let body = "VisitBridge example: you can close this window.";
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await?;
        return Ok(query.to_owned());
    }
}
