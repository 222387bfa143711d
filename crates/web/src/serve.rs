//! The accept loop: a header read timeout, a cap on connections per client IP, graceful shutdown.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use serde::Deserialize;
use tokio::net::TcpListener;

/// The limits of [`serve`], read from a service's `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Seconds a connection may take to send a request's head (request line and headers); a
    /// slower one is closed. Also bounds how long a kept-alive connection may sit idle.
    pub header_read_timeout_seconds: u64,
    /// Open connections allowed from one client IP address; more are closed on accept.
    pub max_connections_per_ip: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            max_connections_per_ip: 64,
        }
    }
}

impl ServerLimits {
    /// The header read timeout (at least one second).
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds.max(1))
    }

    /// The connection cap per client IP (at least one).
    pub fn max_connections_per_ip(&self) -> usize {
        self.max_connections_per_ip.max(1)
    }
}

/// Open connections by client IP, and when a refusal was last logged.
#[derive(Default)]
struct Clients {
    open: HashMap<IpAddr, usize>,
    last_refusal_logged: Option<Instant>,
}

/// One open connection's place under its IP's cap; released when dropped.
struct Slot {
    clients: Arc<Mutex<Clients>>,
    ip: IpAddr,
}

impl Slot {
    fn take(clients: &Arc<Mutex<Clients>>, ip: IpAddr, cap: usize) -> Option<Self> {
        let mut c = clients.lock().unwrap_or_else(PoisonError::into_inner);
        let open = c.open.entry(ip).or_default();
        if *open >= cap {
            let now = Instant::now();
            if c.last_refusal_logged
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
            {
                c.last_refusal_logged = Some(now);
                // The address is the client's (or its proxy's), not a patient's.
                tracing::warn!(
                    client_ip = %ip,
                    cap,
                    "refused connections over the per-client cap (logged at most every 10 s)"
                );
            }
            return None;
        }
        *open += 1;
        Some(Self {
            clients: clients.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = c.open.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                c.open.remove(&self.ip);
            }
        }
    }
}

/// Whether an accept error concerns only the one connection (then accept the next at once).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish and returns.
///
/// Errors only when the listener fails in a way that is not about one connection for good
/// (running out of file descriptors is waited out, as `axum::serve` does).
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout());
    builder.http2().timer(TokioTimer::new());
    let cap = limits.max_connections_per_ip();
    let clients = Arc::new(Mutex::new(Clients::default()));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&clients, peer.ip(), cap) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                // Timeouts, resets and protocol errors of one client: not the service's fault.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Connections that never end (a live panel's event stream) must not hold the shutdown for
    // ever: they get a grace period, then the process goes.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "connections still open after the shutdown grace period: closing them"
        );
    }
    Ok(())
}

/// How long [`serve`] waits, after its shutdown future resolved, for open connections to finish.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// A future that resolves when the process is asked to stop: `SIGINT` (Ctrl+C) or, on Unix,
/// `SIGTERM` (what Docker, Kubernetes and systemd send). Pass it as [`serve`]'s shutdown future.
///
/// The handlers are installed when this function is called, not when the future is first
/// polled: call it before announcing that the service is ready, so that a signal sent right
/// after the announcement stops the service cleanly instead of killing it. Must be called within
/// a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (interrupt, terminate) => {
                    if let Some(e) = interrupt.as_ref().err().or(terminate.as_ref().err()) {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl+C only");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_ip_and_released() {
        let clients = Arc::new(Mutex::new(Clients::default()));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = Slot::take(&clients, a, 2).expect("first");
        let second = Slot::take(&clients, a, 2).expect("second");
        assert!(Slot::take(&clients, a, 2).is_none(), "over the cap");
        let other = Slot::take(&clients, b, 2).expect("another client");
        drop(first);
        let again = Slot::take(&clients, a, 2).expect("released");
        drop((second, other, again));
        assert!(clients.lock().unwrap().open.is_empty());
    }

    #[test]
    fn limits_read_from_configuration_with_defaults() {
        let limits: ServerLimits =
            serde_json::from_value(serde_json::json!({"max_connections_per_ip": 8})).unwrap();
        assert_eq!(limits.max_connections_per_ip(), 8);
        assert_eq!(limits.header_read_timeout(), Duration::from_secs(10));
        assert!(
            serde_json::from_value::<ServerLimits>(serde_json::json!({"max_conns": 1})).is_err()
        );
    }
}
