//! How many *sequential* upstream round trips a warm launch makes after the browser returns with
//! the code: two for an existing meeting (token exchange; FHIR reads and `createOrGet` together),
//! three for a new one (plus the policy PATCH before any join URL is given out).
//!
//! No clock is asserted on. Every upstream answer is delayed by `D`, and the fakes record when
//! each request *arrives*. A request the callback waited for completed before the callback's
//! answer (arrival + `D` ≤ end); among those, a request that depended on an earlier one arrived
//! at least `D` after it, while concurrent requests arrive together. The longest chain of requests
//! each arriving ≥ 0.8·`D` after the previous is the number of sequential round trips. Background
//! calls (subscription, patient join URL) are delayed too, so they fall outside the window unless
//! the callback waited for them — which would lengthen the chain and fail the test.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use visitbridge_testkit::{fhir::fhir_json, fixtures};
use wiremock::{
    Match, Mock, Request, Respond, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::{harness::Env, provider::provider_launch};

pub(crate) const D: Duration = Duration::from_millis(250);

/// Records each request's arrival; never matches.
#[derive(Clone, Default)]
pub(crate) struct Arrivals(Arc<Mutex<Vec<(String, Instant)>>>);

impl Match for Arrivals {
    fn matches(&self, request: &Request) -> bool {
        self.0.lock().unwrap().push((
            format!("{} {}", request.method, request.url.path()),
            Instant::now(),
        ));
        false
    }
}

impl Arrivals {
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    fn since(&self, start: Instant) -> Vec<(String, Instant)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at >= start)
            .cloned()
            .collect()
    }
}

/// The delay every slow mock applies now (0 while warming up).
#[derive(Clone, Default)]
pub(crate) struct Delay(Arc<AtomicU64>);

impl Delay {
    pub(crate) fn set(&self, d: Duration) {
        self.0.store(d.as_millis() as u64, Ordering::SeqCst);
    }
    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Graph's meeting calls, stateful and slow: `createOrGet` (201 then 200), PATCH (merged),
/// subscriptions and the virtual-appointment URL.
#[derive(Clone)]
pub(crate) struct SlowGraph {
    delay: Delay,
    meetings: Arc<Mutex<HashMap<String, Value>>>,
}

impl Respond for SlowGraph {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let p = request.url.path().to_owned();
        let template = if p.ends_with("/createOrGet") {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let external = body["externalId"].as_str().unwrap().to_owned();
            let mut meetings = self.meetings.lock().unwrap();
            match meetings.get(&external) {
                Some(m) => ResponseTemplate::new(200).set_body_json(m.clone()),
                None => {
                    let mut m: Value = serde_json::from_str(fixtures::GRAPH_CREATE_OR_GET).unwrap();
                    let n = meetings.len();
                    m["id"] = json!(format!("slow-meeting-{n}"));
                    m["externalId"] = json!(external);
                    m["joinWebUrl"] = json!(format!(
                        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_slow{n}%40thread.v2/0"
                    ));
                    meetings.insert(external, m.clone());
                    ResponseTemplate::new(201).set_body_json(m)
                }
            }
        } else if request.method.as_str() == "PATCH" {
            let id = p.rsplit('/').next().unwrap().to_owned();
            let patch: Value = serde_json::from_slice(&request.body).unwrap();
            let mut meetings = self.meetings.lock().unwrap();
            let meeting = meetings.values_mut().find(|m| m["id"] == id).unwrap();
            for (k, v) in patch.as_object().unwrap() {
                meeting[k] = v.clone();
            }
            ResponseTemplate::new(200).set_body_json(meeting.clone())
        } else if p.ends_with("/getVirtualAppointmentJoinWebUrl") {
            ResponseTemplate::new(200).set_body_json(json!({
                "value": "https://visit.teams.microsoft.com/webrtc-svc/api/route?tid=t&convId=slow"
            }))
        } else {
            // POST /beta/subscriptions
            ResponseTemplate::new(201).set_body_json(json!({
                "id": "slow-subscription",
                "resource": "/communications/onlineMeetings/?$filter=JoinWebUrl eq 'x'",
                "expirationDateTime": (chrono::Utc::now() + chrono::Duration::hours(12)).to_rfc3339(),
            }))
        };
        template.set_delay(self.delay.get())
    }
}

/// The longest chain of requests the callback waited for, each arriving ≥ 0.8·D after the last.
fn sequential_round_trips(requests: &[(String, Instant)], end: Instant) -> usize {
    let mut waited: Vec<Instant> = requests
        .iter()
        .filter(|(_, at)| *at + D <= end)
        .map(|(_, at)| *at)
        .collect();
    waited.sort();
    let step = D.mul_f64(0.8);
    let mut chain = vec![1usize; waited.len()];
    for i in 0..waited.len() {
        for j in 0..i {
            if waited[i] >= waited[j] + step {
                chain[i] = chain[i].max(chain[j] + 1);
            }
        }
    }
    chain.into_iter().max().unwrap_or(0)
}

/// Runs the launch of the visit with CSN `csn` (its Appointment is `eRt{csn}`, attested by the
/// token response) up to the EHR's redirect back, then times the callback alone.
pub(crate) async fn measured_callback(
    env: &Env,
    arrivals: &Arrivals,
    csn: &str,
) -> (Vec<(String, Instant)>, Instant, Instant) {
    env.attest_appointment(&format!("eRt{csn}"));
    let browser = env.browser();
    let response = browser
        .get(&env.launch_url("provider", &[("sessionId", csn), ("environment", "test")]))
        .await;
    let body = response.text().await.unwrap();
    let fields: Vec<(String, String)> = body
        .split("<input ")
        .skip(1)
        .map(|tag| {
            let attr = |name: &str| {
                let s = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[s..s + tag[s..].find('"').unwrap()]
                    .replace("&#x2F;", "/")
                    .replace("&amp;", "&")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    let callback = env
        .smart
        .browser_post(&env.smart.authorize_url(), &fields)
        .await
        .to_string();
    arrivals.clear();
    let start = Instant::now();
    let answer = browser.get(&callback).await;
    let end = Instant::now();
    assert_eq!(answer.status(), 303, "{}", answer.text().await.unwrap());
    (arrivals.since(start), start, end)
}

/// Every upstream of the launch path answers after the [`Delay`] (0 until set), and each
/// request's arrival is recorded: the Graph meeting calls and subscriptions, the FHIR reads;
/// the EHR's and Entra's token delays are the fakes' own (`set_token_delay`).
pub(crate) async fn slow_upstreams(env: &Env) -> (Arrivals, Delay) {
    let arrivals = Arrivals::default();
    let delay = Delay::default();
    for server in [&env.ehr, &env.ms] {
        Mock::given(arrivals.clone())
            .respond_with(ResponseTemplate::new(500))
            .with_priority(1)
            .mount(server)
            .await;
    }
    let graph = SlowGraph {
        delay: delay.clone(),
        meetings: Arc::default(),
    };
    Mock::given(path_regex(
        "^/v1\\.0/users/[^/]+/onlineMeetings/(createOrGet|[^/]+|[^/]+/getVirtualAppointmentJoinWebUrl)$",
    ))
    .respond_with(graph.clone())
    .with_priority(2)
    .mount(&env.ms)
    .await;
    Mock::given(method("POST"))
        .and(path("/beta/subscriptions"))
        .respond_with(graph)
        .with_priority(2)
        .mount(&env.ms)
        .await;
    let slow_fhir = SlowFhir(delay.clone());
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^{}[^/]+$",
            env.fhir.path("Appointment/")
        )))
        .respond_with(slow_fhir)
        .with_priority(2)
        .mount(&env.ehr)
        .await;

    (arrivals, delay)
}

#[tokio::test]
async fn a_warm_launch_makes_two_sequential_round_trips_three_for_a_new_meeting() {
    let env = Env::start().await;
    let (arrivals, delay) = slow_upstreams(&env).await;

    // Warm up: discovery, the EHR's keys, the Microsoft link, the Graph app token.
    provider_launch(&env, &env.browser()).await;
    delay.set(D);
    env.smart.set_token_delay(Some(D));
    env.entra.set_token_delay(D);

    // A new visit: token; FHIR + createOrGet together; the policy PATCH.
    let (requests, _, end) = measured_callback(&env, &arrivals, "60000001").await;
    assert_eq!(
        sequential_round_trips(&requests, end),
        3,
        "new meeting: {requests:?}"
    );
    let at = |what: &str| {
        requests
            .iter()
            .find(|(r, _)| r.contains(what))
            .unwrap_or_else(|| panic!("no {what} in {requests:?}"))
            .1
    };
    let (fhir, meeting) = (at("/Appointment/"), at("/createOrGet"));
    let apart = if fhir > meeting {
        fhir - meeting
    } else {
        meeting - fhir
    };
    assert!(
        apart < D / 2,
        "the FHIR read and createOrGet overlap: {requests:?}"
    );

    // The same visit again: the meeting exists with its policy: token; FHIR + createOrGet.
    let (requests, _, end) = measured_callback(&env, &arrivals, "60000001").await;
    assert_eq!(
        sequential_round_trips(&requests, end),
        2,
        "existing meeting: {requests:?}"
    );
    assert!(!requests.iter().any(|(r, _)| r.starts_with("PATCH")));
}

/// The fixture Appointment, slowly; an Appointment `eRt{csn}` is the fixture's shape with that
/// id and CSN.
pub(crate) struct SlowFhir(Delay);

impl Respond for SlowFhir {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        let mut appointment: Value = serde_json::from_str(fixtures::EPIC_APPOINTMENT).unwrap();
        if let Some(csn) = id.strip_prefix("eRt") {
            appointment["id"] = json!(id);
            appointment["identifier"][0]["value"] = json!(csn);
        }
        fhir_json(200, appointment.to_string()).set_delay(self.0.get())
    }
}

#[test]
fn the_chain_counts_dependent_requests_not_concurrent_ones() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let r = |ms| ("r".to_owned(), at(ms));
    // token at 0; two together at 260; one at 520; a background one at 780 (not waited for).
    let requests = vec![r(0), r(262), r(265), r(520), r(780)];
    assert_eq!(sequential_round_trips(&requests, at(800)), 3);
    assert_eq!(sequential_round_trips(&requests, at(1100)), 4);
    assert_eq!(sequential_round_trips(&requests[..3], at(600)), 2);
}
