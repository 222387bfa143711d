//! `visitbridge-demo`: starts the whole system on loopback and prints the URLs to open.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use visitbridge_demo::{DemoOptions, start};
use visitbridge_store::DatabaseLocation;

/// The whole VisitBridge system on this machine: a sandbox EHR and Microsoft 365, the
/// configuration portal and the launch service, with an embedded SQLite database.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The sandbox EHR's address.
    #[arg(long, env = "VISITBRIDGE_DEMO_EHR", default_value = "127.0.0.1:8081")]
    ehr: SocketAddr,
    /// The sandbox Microsoft 365's address.
    #[arg(
        long,
        env = "VISITBRIDGE_DEMO_MICROSOFT",
        default_value = "127.0.0.1:8082"
    )]
    microsoft: SocketAddr,
    /// The configuration portal's address.
    #[arg(
        long,
        env = "VISITBRIDGE_DEMO_PORTAL",
        default_value = "127.0.0.1:8090"
    )]
    portal: SocketAddr,
    /// The launch service's address.
    #[arg(
        long,
        env = "VISITBRIDGE_DEMO_LAUNCH",
        default_value = "127.0.0.1:8080"
    )]
    launch: SocketAddr,
    /// Keep the database in this folder (default: a temporary folder, removed at exit).
    #[arg(long, env = "VISITBRIDGE_DEMO_DATA")]
    data_dir: Option<PathBuf>,
    /// The database instead of the SQLite file: a `postgres://` URL (or a SQLite path).
    #[arg(long, env = "VISITBRIDGE_DEMO_DATABASE", hide_env_values = true)]
    database: Option<DatabaseLocation>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let options = DemoOptions {
        ehr: args.ehr,
        microsoft: args.microsoft,
        portal: args.portal,
        launch: args.launch,
        data_dir: args.data_dir,
        database: args.database,
    };
    let demo = match start(options).await {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("visitbridge-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let signal = visitbridge_web::shutdown_signal();
    println!("{}", demo.banner());
    signal.await;
    drop(demo);
    ExitCode::SUCCESS
}
