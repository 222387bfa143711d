//! The serve loop over real sockets: slow request heads are cut off, one client cannot hold more
//! than its share of connections, and shutdown lets in-flight requests finish.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::oneshot,
};
use visitbridge_web::{ServerLimits, serve};

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "done"
        }),
    )
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: ServerLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app(), limits, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends a whole request on `stream` and reads the answer until the server closes.
async fn request(mut stream: TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    answer
}

/// How long until the server closes `stream` (end of file or reset), at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // A `408` before closing is fine; keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_head_is_closed() {
    let server = start(ServerLimits {
        header_read_timeout_seconds: 1,
        ..ServerLimits::default()
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: te").await.unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("closed by the server");
    assert!(
        closed >= Duration::from_millis(900),
        "closed too early: {closed:?}"
    );
    assert!(
        closed < Duration::from_secs(3),
        "closed too late: {closed:?}"
    );

    // A client that sends its request in time is served.
    let answer = request(TcpStream::connect(server.addr).await.unwrap(), "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn one_client_gets_no_more_than_its_cap_and_others_are_served() {
    let server = start(ServerLimits {
        header_read_timeout_seconds: 30,
        max_connections_per_ip: 2,
    })
    .await;
    // Two connections that hold their place with an unfinished request head.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from([127, 0, 0, 1], server.addr).await;
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The third from the same address is closed at once, without an answer.
    let mut third = connect_from([127, 0, 0, 1], server.addr).await;
    let _ = third
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    let closed = closed_within(&mut third, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "a connection over the cap is closed");

    // Another client address is served meanwhile.
    let answer = request(connect_from([127, 0, 0, 2], server.addr).await, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A place freed is a place for the same client again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = request(connect_from([127, 0, 0, 1], server.addr).await, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_returns() {
    let mut server = start(ServerLimits::default()).await;
    let addr = server.addr;
    let in_flight =
        tokio::spawn(
            async move { request(TcpStream::connect(addr).await.unwrap(), "/slow").await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = server.stop.take().unwrap().send(());
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connection after shutdown"
    );
}
