//! `visitbridge-portal`: reads the configuration, opens the store, serves the portal, prints where.

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use visitbridge_portal::{AppState, Cli, Command, app};

#[tokio::main]
async fn main() -> ExitCode {
    visitbridge_web::init_tracing(visitbridge_web::LogOutput::Stderr);
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visitbridge-portal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.load()?;
    if cli.command == Some(Command::Migrate) {
        let report = config
            .database
            .migrate(&config.database_options())
            .await
            .with_context(|| format!("migrating {}", config.database))?;
        println!("{}: {report}", config.database);
        return Ok(());
    }
    let store = config
        .database
        .open(&config.database_options())
        .await
        .with_context(|| format!("cannot open the database {}", config.database))?;
    let listen = config.listen;
    let public = config.public_base_url.clone();
    let limits = config.server.clone();
    let state = AppState::new(config, store)?;
    let _housekeeping = state.spawn_housekeeping(Duration::from_secs(600));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("VisitBridge portal is running:");
    println!("  Listening on: http://{addr}/");
    println!("  Health:       http://{addr}/healthz");
    println!("  Public URL:   {public}");
    // Installed before the announcement: a SIGTERM right after it stops the service cleanly.
    let signal = visitbridge_web::shutdown_signal();
    println!("Press Ctrl+C to stop.");
    visitbridge_web::serve(listener, app(state), limits, signal)
        .await
        .context("serving")
}
