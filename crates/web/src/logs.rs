//! The services' log output: `tracing` events formatted as text, filtered by `RUST_LOG`.

/// Where the log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard output (the launch service: its start-up lines and its logs in one stream).
    Stdout,
    /// Standard error (the portal: standard output keeps only its start-up lines).
    Stderr,
}

/// Installs the process's `tracing` subscriber: text lines on `output`, at the levels `RUST_LOG`
/// asks for (`info` when it is unset or unreadable). Call it once, first thing in `main`; a
/// second call (or another subscriber already installed) leaves the first one in place.
pub fn init_tracing(output: LogOutput) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match output {
        LogOutput::Stdout => builder.with_writer(std::io::stdout).try_init(),
        LogOutput::Stderr => builder.with_writer(std::io::stderr).try_init(),
    };
    if let Err(e) = installed {
        tracing::debug!(error = %e, "a tracing subscriber is already installed");
    }
}
