//! Raw-socket abuse of an HTTP/1 server: what a scanner or a broken client sends before any
//! framework sees a request. Each case must end in a 4xx answer or a closed connection — never a
//! 5xx, never a hang — and the server must keep answering `/healthz` in between, with its memory
//! bounded. Both VisitBridge services run it against their real binaries.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The server answered with this status (the first response's).
    Status(u16),
    /// The server closed the connection without an answer.
    Closed,
    /// Neither an answer nor a close within 5 s.
    Hung,
    /// The connection was refused: the server is not there (any more).
    Refused,
}

/// One abusive request, as bytes on the wire.
#[derive(Debug, Clone)]
pub struct Case {
    /// What it is.
    pub name: &'static str,
    /// What is sent.
    pub bytes: Vec<u8>,
}

/// The cases: malformed request lines, huge and many headers, request smuggling shapes, bad
/// encodings, pipelining.
pub fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: "garbage request line",
            bytes: b"GARBAGE\r\n\r\n".to_vec(),
        },
        Case {
            name: "binary noise",
            bytes: (0u8..=255).cycle().take(4096).collect(),
        },
        Case {
            name: "HTTP/0.9",
            bytes: b"GET /healthz\r\n\r\n".to_vec(),
        },
        Case {
            name: "unknown version",
            bytes: b"GET /healthz HTTP/7.3\r\nHost: x\r\n\r\n".to_vec(),
        },
        Case {
            name: "absurd method",
            bytes: format!("{} /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "X".repeat(5000)).into_bytes(),
        },
        Case {
            name: "100 KB request target",
            bytes: format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        },
        Case {
            name: "100 KB header value",
            bytes: format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(100_000))
                .into_bytes(),
        },
        Case {
            name: "10,000 headers",
            bytes: {
                let mut r = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
                for i in 0..10_000 {
                    r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r
            },
        },
        Case {
            name: "header without a colon",
            bytes: b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec(),
        },
        Case {
            name: "obsolete line folding",
            bytes: b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n".to_vec(),
        },
        Case {
            name: "negative Content-Length",
            bytes: b"POST /graph/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
                .to_vec(),
        },
        Case {
            name: "two different Content-Lengths",
            bytes: b"POST /graph/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello"
                .to_vec(),
        },
        Case {
            name: "Content-Length and chunked (smuggling shape)",
            bytes: b"POST /graph/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
                .to_vec(),
        },
        Case {
            name: "bad chunk size",
            bytes: b"POST /graph/notifications HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        },
        Case {
            name: "a 1 TB Content-Length announced",
            bytes: b"POST /graph/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\nabc"
                .to_vec(),
        },
        Case {
            name: "invalid UTF-8 and NUL in the path",
            bytes: b"GET /launch/provider?iss=\xff\xfe%00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        },
        Case {
            name: "NUL in a header value",
            bytes: b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(),
        },
        Case {
            name: "absolute-form target to another host",
            bytes: b"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        },
        Case {
            name: "CONNECT",
            bytes: b"CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n".to_vec(),
        },
        Case {
            name: "path traversal",
            bytes: b"GET /static/..%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        },
    ];
    cases.push(Case {
        name: "50 pipelined requests",
        bytes: b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50),
    });
    cases
}

/// Sends `bytes` on a new connection and reads until the server closes or 5 s pass; how it ended
/// and everything it answered.
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> (Ending, String) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (Ending::Refused, String::new());
    };
    // The server may close before reading everything: a failed write is an ending too. The
    // write side stays open (a half-closed request is dropped by the server, as it should be).
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    loop {
        // Once something came, 300 ms of silence ends the answer (a kept-alive connection).
        let until = if answer.is_empty() {
            deadline
        } else {
            Instant::now() + Duration::from_millis(300)
        };
        match tokio::time::timeout_at(until.into(), stream.read(&mut buf)).await {
            Err(_) if answer.is_empty() => return (Ending::Hung, String::new()),
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let ending = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .map_or(Ending::Closed, Ending::Status);
    (ending, text)
}

/// `GET /healthz` on a new connection: whether it answered `ok`.
pub async fn healthy(addr: SocketAddr) -> bool {
    let (ending, text) = send(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    ending == Ending::Status(200) && text.ends_with("ok")
}

/// The resident memory of process `pid`, in KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs every case against the server at `addr` (process `pid`) twice over and asserts
/// what a user of the service would: every case ends in a 4xx, a closed connection, or — for a
/// case that is a valid request after all — a non-5xx answer; pipelined requests are all
/// answered; `/healthz` answers after each; and resident memory grows by less than 64 MiB.
/// Returns the endings, by case name.
pub async fn assert_survives_abuse(addr: SocketAddr, pid: u32) -> Vec<(&'static str, Ending)> {
    assert!(healthy(addr).await, "healthy before");
    let before = rss_kib(pid);
    let mut endings = Vec::new();
    for round in 0..2 {
        for case in cases() {
            let (ending, text) = send(addr, &case.bytes).await;
            assert!(
                !matches!(ending, Ending::Refused),
                "{}: the server is gone",
                case.name
            );
            assert_ne!(
                ending,
                Ending::Hung,
                "{}: neither answered nor closed within 5 s",
                case.name
            );
            if let Ending::Status(status) = ending {
                assert!(status < 500, "{}: answered {status}:\n{text}", case.name);
                assert!(
                    !text.contains("panicked") && !text.contains("127.0.0.1"),
                    "{}: {text}",
                    case.name
                );
            }
            if case.name == "50 pipelined requests" {
                assert_eq!(
                    text.matches("HTTP/1.1 200").count(),
                    50,
                    "every pipelined request answered"
                );
            }
            assert!(healthy(addr).await, "healthy after {}", case.name);
            if round == 0 {
                endings.push((case.name, ending));
            }
        }
    }
    if let (Some(before), Some(after)) = (before, rss_kib(pid)) {
        assert!(
            after < before + 64 * 1024,
            "memory grew from {before} KiB to {after} KiB"
        );
    }
    endings
}
