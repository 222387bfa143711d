//! `visitbridge-launch`: parses flags, builds the router, serves it, prints where.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use visitbridge_http::ClientAssertionKey;
use visitbridge_launch::{AppState, app};

/// The VisitBridge launch service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "VISITBRIDGE_LAUNCH_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visitbridge-launch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Until key provisioning lands (issue 5), a fresh key per run keeps the JWKS endpoint honest.
    let key = ClientAssertionKey::generate_es384("visitbridge-dev-1")
        .context("generating the backend-services key")?;
    let state = AppState {
        signing_keys: Arc::new(vec![key]),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("VisitBridge launch service is running:");
    println!("  Health:           http://{addr}/healthz");
    println!("  Public keys JWKS: http://{addr}/.well-known/jwks.json");
    println!("Press Ctrl+C to stop.");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}
