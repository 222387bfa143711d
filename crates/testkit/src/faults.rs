//! Upstream faults a wiremock fake can play: a switch to turn a fault mock on and off, and a
//! connection dropped without an answer.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use wiremock::{Match, Request, Respond, ResponseTemplate};

/// A matcher that matches while its switch is on: mount a fault with it (and a priority) and
/// turn the fault off by the switch.
///
/// Not a scoped mock: wiremock 0.6.5 sorts its mocks by priority in place and then deactivates
/// a dropped scoped mock by its old index, so dropping one with a priority can switch off
/// another mock instead.
#[derive(Debug, Clone)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    /// A switch, on.
    pub fn on() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// Turns the fault off (its mock matches nothing from now on).
    pub fn turn_off(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Turns the fault on again.
    pub fn turn_on(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Match for Switch {
    fn matches(&self, _: &Request) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A matcher that matches the first `n` requests it is asked about, then none: with the
/// method and path matchers before it, "the next `n` calls of this endpoint fault".
#[derive(Debug, Clone)]
pub struct FirstN(Arc<std::sync::atomic::AtomicUsize>);

impl FirstN {
    /// Matches `n` times.
    pub fn new(n: usize) -> Self {
        Self(Arc::new(std::sync::atomic::AtomicUsize::new(n)))
    }

    /// How many matches are left.
    pub fn left(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Match for FirstN {
    fn matches(&self, _: &Request) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Closes the connection without answering, after the request was read: what a client sees of
/// a reset connection or a proxy that died mid-request ("connection closed before message
/// completed").
///
/// wiremock serves each connection in its own task; this responder unwinds that task (without
/// the panic hook, so nothing is printed), which drops the socket. The server and its other
/// connections carry on.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

impl Respond for DropConnection {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        std::panic::resume_unwind(Box::new("the fake drops this connection"))
    }
}

/// A response or a dropped connection, as one type for a table of faults.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this response (a status, a broken body, a redirect, a delay).
    Answer(ResponseTemplate),
    /// Close the connection without an answer.
    Drop,
}

impl Respond for Fault {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match self {
            Self::Answer(response) => response.clone(),
            Self::Drop => DropConnection.respond(request),
        }
    }
}

/// The faults a real upstream produces, by name: 500, 503 and 429 with `Retry-After`, a body
/// that is not JSON, an HTML error page from a proxy, a redirect elsewhere, and a dropped
/// connection. (A hang is a delay past the caller's timeout: see [`hang`].)
pub fn every_fault() -> Vec<(&'static str, Fault)> {
    vec![
        ("500", Fault::Answer(ResponseTemplate::new(500))),
        (
            "503 Retry-After: 1",
            Fault::Answer(ResponseTemplate::new(503).insert_header("retry-after", "1")),
        ),
        (
            "429 Retry-After: 1",
            Fault::Answer(ResponseTemplate::new(429).insert_header("retry-after", "1")),
        ),
        (
            "malformed JSON",
            Fault::Answer(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/json")
                    .set_body_string("{\"access_token\": \"abc\", \"expires_in\": "),
            ),
        ),
        (
            "HTML error page",
            Fault::Answer(
                ResponseTemplate::new(502)
                    .insert_header("content-type", "text/html")
                    .set_body_string(
                        "<html><body><h1>502 Bad Gateway</h1>nginx at 10.0.3.7</body></html>",
                    ),
            ),
        ),
        (
            "redirect elsewhere",
            Fault::Answer(
                ResponseTemplate::new(302).insert_header("location", "https://evil.example/steal"),
            ),
        ),
        ("connection dropped", Fault::Drop),
    ]
}

/// An upstream that does not answer for `seconds` (past any caller's timeout).
pub fn hang(seconds: u64) -> Fault {
    Fault::Answer(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(seconds)))
}

/// Texts of [`every_fault`]'s answers that must never reach a page, a log line or an error.
pub const FAULT_INTERNALS: &[&str] = &["evil.example", "10.0.3.7", "nginx"];
