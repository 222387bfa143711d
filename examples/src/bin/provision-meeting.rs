//! Provisions the Teams meeting of one visit in a real Microsoft 365 tenant and prints its join URLs.
//!
//! ```text
//! export VISITBRIDGE_TENANT_ID=<directory (tenant) id>
//! export VISITBRIDGE_CLIENT_ID=<application (client) id>
//! export VISITBRIDGE_CLIENT_SECRET=<client secret value>
//! export VISITBRIDGE_ORGANIZER_ID=<object id of the Entra user who organises the meeting>
//! # optional: VISITBRIDGE_CONFIGURATION_ID (default "example"), VISITBRIDGE_GRAPH_BASE,
//! #           VISITBRIDGE_LOGIN_BASE (national clouds)
//! cargo run -p visitbridge-examples --bin provision-meeting -- <visit key, e.g. a CSN>
//! ```
//!
//! The app registration needs the application permission `OnlineMeetings.ReadWrite.All` (admin
//! consent) and, for the patients' browser join URL, `VirtualAppointment.Read.All` (without it the
//! patient URL falls back to `joinWebUrl`). A Teams administrator must also grant an application
//! access policy to the organiser; if it is missing, the error printed says which PowerShell
//! commands to run. Running it twice with the same visit key prints the same meeting
//! ("existing"), which is the point: one meeting per visit.
//!
//! The visit key is hashed into the meeting's `externalId`; it is not sent to Microsoft, and this
//! program does not print it.

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context as _, bail};
use url::Url;
use visitbridge_graph::{
    EntraAppTokens, EntraConfig, ExternalMeetingId, GraphClient, GraphConfig, PatientJoinKind,
    TokenCredential, UserObjectId, VisitMeetingRequest,
};
use visitbridge_http::{HttpConfig, Secret, build_client};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("set the environment variable {name}"))
}

fn optional_url(name: &str) -> anyhow::Result<Option<Url>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(
            Url::parse(v.trim()).with_context(|| format!("{name} is not a url"))?,
        )),
        _ => Ok(None),
    }
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(visit_key) = args.next() else {
        bail!("usage: provision-meeting <visit key>");
    };
    let tenant_id = env("VISITBRIDGE_TENANT_ID")?;
    let client_id = env("VISITBRIDGE_CLIENT_ID")?;
    let client_secret = Secret::new(env("VISITBRIDGE_CLIENT_SECRET")?);
    let organizer = UserObjectId::new(env("VISITBRIDGE_ORGANIZER_ID")?);
    let configuration_id =
        std::env::var("VISITBRIDGE_CONFIGURATION_ID").unwrap_or_else(|_| "example".to_owned());

    let http = build_client(&HttpConfig::default())?;
    let mut entra = EntraConfig::new(tenant_id, client_id);
    if let Some(login_base) = optional_url("VISITBRIDGE_LOGIN_BASE")? {
        entra = entra.with_login_base(login_base);
    }
    let tokens = Arc::new(EntraAppTokens::new(
        http.clone(),
        entra,
        TokenCredential::ClientSecret(client_secret),
    )?);
    let mut config = GraphConfig::default();
    if let Some(graph_base) = optional_url("VISITBRIDGE_GRAPH_BASE")? {
        config.graph_base = graph_base;
    }
    let graph = GraphClient::new(http, config, tokens);

    let meeting = graph
        .provision_meeting(&VisitMeetingRequest {
            organizer,
            external_id: ExternalMeetingId::derive(&configuration_id, &visit_key),
            start: None,
            end: None,
        })
        .await?;

    println!("meeting id:        {}", meeting.meeting_id);
    println!(
        "meeting:           {}{}",
        if meeting.created {
            "created"
        } else {
            "existing"
        },
        if meeting.policy_applied {
            ", policy applied"
        } else {
            ", policy already in place"
        }
    );
    println!("clinician joins:   {}", meeting.join_web_url);
    let kind = match meeting.patient_join_url.kind {
        PatientJoinKind::VirtualAppointment => "virtual appointment",
        PatientJoinKind::JoinWebUrl => "joinWebUrl fallback",
    };
    println!(
        "patient joins:     {} ({kind})",
        meeting.patient_join_url.url
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
