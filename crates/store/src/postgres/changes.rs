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

/// The notification channel of visits with new events (the payload is the visit id).
pub(crate) const CHANNEL: &str = "visitbridge_visit_events";

/// How many changes a slow subscriber may fall behind before it is told [`VisitChange::Unknown`].
const BUFFER: usize = 1024;

/// How long the listener waits before reconnecting after the connection dropped.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The process's listening connection, started at the first subscription.
pub(crate) struct ChangeFeed {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    sender: OnceLock<broadcast::Sender<VisitChange>>,
}

impl ChangeFeed {
    pub(crate) fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect) -> Arc<Self> {
        Arc::new(Self {
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

/// Listens until the feed is dropped, reconnecting after a pause when the connection drops; after
/// each reconnection subscribers hear [`VisitChange::Unknown`] (notices sent meanwhile are lost).
async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    sender: broadcast::WeakSender<VisitChange>,
) {
    let mut connected_before = false;
    loop {
        let ended = match listen_once(&config, &tls, &sender, &mut connected_before).await {
            Ok(ended) => ended,
            Err(e) => Ended::Connection(Some(e)),
        };
        match ended {
            Ended::FeedDropped => return,
            Ended::Connection(Some(e)) => {
                tracing::warn!(error = %e, "the database change feed failed; reconnecting");
            }
            Ended::Connection(None) => {
                tracing::warn!("the database change feed closed; reconnecting");
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
        if sender.upgrade().is_none() {
            return;
        }
    }
}

/// One connection's life.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    sender: &broadcast::WeakSender<VisitChange>,
    connected_before: &mut bool,
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
    if std::mem::replace(connected_before, true) {
        let Some(sender) = sender.upgrade() else {
            return Ok(Ended::FeedDropped);
        };
        let _ = sender.send(VisitChange::Unknown);
    }
    while let Some(message) = messages.recv().await {
        let Some(sender) = sender.upgrade() else {
            return Ok(Ended::FeedDropped);
        };
        if let AsyncMessage::Notification(notice) = message?
            && notice.channel() == CHANNEL
        {
            let change = match VisitId::new(notice.payload()) {
                Ok(visit) => VisitChange::Visit(visit),
                Err(_) => VisitChange::Unknown,
            };
            // No subscriber is not an error.
            let _ = sender.send(change);
        }
    }
    Ok(Ended::Connection(None))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
