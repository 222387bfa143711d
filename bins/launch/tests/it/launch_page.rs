//! The EHR sign-in's auto-posting page may be redirected on to another host by the EHR, and the
//! Microsoft sign-in a launch waits for keeps ids only.

use crate::harness::Env;

#[tokio::test]
async fn the_authorize_page_lets_the_ehr_redirect_its_post_anywhere() {
    let env = Env::start().await;
    let answer = env
        .browser()
        .get(&env.launch_url("patient", &Env::visit_context()))
        .await;
    assert_eq!(answer.status(), 200);
    let csp = answer.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    // Chromium checks `form-action` on every redirect after the POST, and the EHR's authorize
    // endpoint redirects to its sign-in host (MyChart, SSO): the directive would block the launch.
    assert!(!csp.contains("form-action"), "{csp}");
    for kept in ["default-src 'none'", "script-src 'self'", "base-uri 'none'"] {
        assert!(csp.contains(kept), "{kept} missing from {csp}");
    }
    let body = answer.text().await.unwrap();
    assert!(body.contains(&env.smart.authorize_url()), "{body}");
}

#[tokio::test]
async fn a_launch_waiting_for_the_microsoft_sign_in_keeps_no_appointment_times() {
    let env = Env::start().await;
    let browser = env.browser();
    let body = browser
        .get(&env.launch_url("provider", &Env::visit_context()))
        .await
        .text()
        .await
        .unwrap();
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
    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/oauth2/v2.0/authorize"), "{location}");

    // The stash is in the database now: the visit's ids are there, its times are not (the
    // fixture Appointment is 18:00–18:30 UTC on 2026-03-05).
    let mut stored = String::new();
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("visitbridge.sqlite")
        {
            stored.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    assert!(
        stored.contains("launch/microsoft"),
        "the pending sign-in is stored"
    );
    assert!(
        stored.contains(visitbridge_testkit::fhir::APPOINTMENT_ID),
        "ids are kept"
    );
    for time in ["2026-03-05T18:00:00", "2026-03-05T18:30:00"] {
        assert!(!stored.contains(time), "{time} stored");
    }
}
