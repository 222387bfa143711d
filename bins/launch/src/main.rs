//! `visitbridge-launch`: reads the configuration, builds the service, serves it, prints where.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use visitbridge_launch::{Cli, Command, LaunchService, app, metrics_app};

#[tokio::main]
async fn main() -> ExitCode {
    visitbridge_web::init_tracing(visitbridge_web::LogOutput::Stdout);
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
    if cli.command == Some(Command::Migrate) {
        let report = config
            .database
            .migrate(&config.database_options())
            .await
            .with_context(|| format!("migrating {}", config.database))?;
        println!("{}: {report}", config.database);
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} (metrics_listen)"))?,
        ),
        None => None,
    };
    let base = config.public_base(addr);
    let database = config.database.to_string();
    let metrics_token = !config.metrics_bearer_token.is_empty();
    let limits = config.server.clone();
    let service = LaunchService::build(config, base.clone())
        .await
        .context("starting the launch service")?;
    let base = base.as_str().trim_end_matches('/');
    println!("VisitBridge launch service is running:");
    println!("  Listening on:     http://{addr}/");
    println!("  Health:           {base}/healthz");
    println!("  Public keys JWKS: {base}/.well-known/jwks.json");
    if let Some(listener) = &metrics_listener {
        let at = listener
            .local_addr()
            .context("reading the metrics address")?;
        println!("  Metrics:          http://{at}/metrics");
    }
    if metrics_token {
        println!("  Metrics:          {base}/metrics (with the bearer token)");
    }
    if metrics_listener.is_none() && !metrics_token {
        println!("  Metrics:          not served (set metrics_listen or metrics_bearer_token)");
    }
    println!("  Provider launch:  {base}/launch/provider (opened by the EHR with iss and launch)");
    println!("  Database:         {database}");
    // Installed before the announcement: a SIGTERM right after it stops the service cleanly.
    let signal = visitbridge_web::shutdown_signal();
    println!("Press Ctrl+C to stop.");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let main = visitbridge_web::serve(listener, app(service.state()), limits.clone(), shutdown());
    let metrics = async {
        match metrics_listener {
            Some(listener) => {
                visitbridge_web::serve(listener, metrics_app(service.state()), limits, shutdown())
                    .await
            }
            None => Ok(()),
        }
    };
    tokio::spawn(async move {
        signal.await;
        let _ = stop.send(true);
    });
    let (main, metrics) = tokio::join!(main, metrics);
    main.context("serving")?;
    metrics.context("serving metrics")
}
