//! `visitbridge-launch`: reads the configuration, builds the service, serves it, prints where.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use visitbridge_launch::{Cli, LaunchService, app};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visitbridge-launch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.load()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let base = config.public_base(addr);
    let database = config.database.display().to_string();
    let limits = config.server.clone();
    let service = LaunchService::build(config, base.clone())
        .await
        .context("starting the launch service")?;
    let base = base.as_str().trim_end_matches('/');
    println!("VisitBridge launch service is running:");
    println!("  Health:           {base}/healthz");
    println!("  Public keys JWKS: {base}/.well-known/jwks.json");
    println!("  Metrics:          {base}/metrics");
    println!("  Provider launch:  {base}/launch/provider (opened by the EHR with iss and launch)");
    println!("  Database:         {database}");
    println!("Press Ctrl+C to stop.");
    visitbridge_web::serve(listener, app(service.state()), limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving")
}
