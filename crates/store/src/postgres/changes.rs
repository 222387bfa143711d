//! The feed of visits with new events, over PostgreSQL's `LISTEN`/`NOTIFY`: recording an event
//! notifies [`CHANNEL`] with the visit id in the same transaction (so the notice goes out at
//! commit, and only then), and one listening connection per process turns notices into
//! [`VisitChange`]s for whoever subscribed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{VisitChange, VisitId};

/// The notification channel of visits with new events (the payload is the visit id, a space, and
/// the recording store's origin token).
pub(crate) const CHANNEL: &str = "visitbridge_visit_events";

/// How many changes a slow subscriber may fall behind before it is told [`VisitChange::Unknown`].
const BUFFER: usize = 1024;

/// How long the listener first waits before reconnecting after the connection dropped; it
/// doubles after each failed attempt, up to [`RECONNECT_PAUSE_MAX`].
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(30);

/// How often the listening connection is checked with a query: a connection that a NAT, a load
/// balancer or a failover dropped without a word would otherwise look alive for hours.
const PING_EVERY: Duration = Duration::from_secs(15);
/// How long that check may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's listening connection, started at the first subscription.
pub(crate) struct ChangeFeed {
    /// This store's token in the notices it sends: its own recordings are not news to it (the
    /// process that recorded an event has already shown it).
    pub(crate) origin: String,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    sender: OnceLock<broadcast::Sender<VisitChange>>,
}

impl ChangeFeed {
    pub(crate) fn new(
        mut config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        origin: String,
    ) -> Arc<Self> {
        // TCP keepalives as a second line, besides the pings.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        Arc::new(Self {
            origin,
            config,
            tls,
            sender: OnceLock::new(),
        })
    }

    /// A new subscription; the first one starts the listener (on the current Tokio runtime).
    pub(crate) fn subscribe(self: &Arc<Self>) -> broadcast::Receiver<VisitChange> {
        self.sender
            .get_or_init(|| {
                let (sender, _) = broadcast::channel(BUFFER);
                tokio::spawn(listen(
                    self.config.clone(),
                    self.tls.clone(),
                    self.origin.clone(),
                    sender.downgrade(),
                ));
                sender
            })
            .subscribe()
    }
}

/// Why a listening connection ended.
enum Ended {
    /// Nobody holds the feed any more: stop.
    FeedDropped,
    /// The connection closed or failed: reconnect.
    Connection(Option<tokio_postgres::Error>),
}

/// Listens until the feed is dropped, reconnecting with a growing pause when the connection
/// drops. Each time `LISTEN` is in place, the first time included, subscribers hear
/// [`VisitChange::Unknown`]: whatever was committed before it (or while reconnecting) was not
/// heard, so they read again what they hold.
async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    origin: String,
    sender: broadcast::WeakSender<VisitChange>,
) {
    let mut pause = RECONNECT_PAUSE;
    loop {
        let mut listened = false;
        let ended = match listen_once(&config, &tls, &origin, &sender, &mut listened).await {
            Ok(ended) => ended,
            Err(e) => Ended::Connection(Some(e)),
        };
        if listened {
            pause = RECONNECT_PAUSE;
        }
        match ended {
            Ended::FeedDropped => return,
            Ended::Connection(Some(e)) => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "the database change feed failed; reconnecting");
            }
            Ended::Connection(None) => {
                tracing::warn!(
                    retry_in_ms = pause.as_millis() as u64,
                    "the database change feed closed; reconnecting"
                );
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_PAUSE_MAX);
        if sender.upgrade().is_none() {
            return;
        }
    }
}

/// One connection's life.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    origin: &str,
    sender: &broadcast::WeakSender<VisitChange>,
    listened: &mut bool,
) -> Result<Ended, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (messages_in, mut messages) = mpsc::unbounded_channel();
    // The connection does its work only while polled: a task drives it and hands over what the
    // server sent on its own (notices).
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            let failed = message.is_err();
            if messages_in.send(message).is_err() || failed {
                break;
            }
        }
    });
    let _stop_driver = AbortOnDrop(driver);
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    *listened = true;
    match sender.upgrade() {
        Some(sender) => {
            let _ = sender.send(VisitChange::Unknown);
        }
        None => return Ok(Ended::FeedDropped),
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        let message = tokio::select! {
            message = messages.recv() => message,
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        tracing::warn!("the database change feed's connection stopped answering");
                        return Ok(Ended::Connection(None));
                    }
                }
            }
        };
        let Some(message) = message else {
            return Ok(Ended::Connection(None));
        };
        let Some(sender) = sender.upgrade() else {
            return Ok(Ended::FeedDropped);
        };
        if let AsyncMessage::Notification(notice) = message?
            && notice.channel() == CHANNEL
        {
            let (visit, from) = notice
                .payload()
                .split_once(' ')
                .unwrap_or((notice.payload(), ""));
            if from == origin {
                continue;
            }
            let change = match VisitId::new(visit) {
                Ok(visit) => VisitChange::Visit(visit),
                Err(_) => VisitChange::Unknown,
            };
            // No subscriber is not an error.
            let _ = sender.send(change);
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
