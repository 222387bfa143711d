//! Two portal replicas on one PostgreSQL (nothing shared but the database): a session made on one
//! works on the other, and two admins saving one configuration at once on different replicas
//! leave a linear history — one change lands, the other is told it changed meanwhile.

use crate::harness::{Portal, admin, unescape};

fn revision_of(body: &str) -> String {
    let at = body
        .find("name=\"revision\" value=\"")
        .expect("the edit form carries the revision")
        + "name=\"revision\" value=\"".len();
    body[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_edits_on_two_replicas_keep_a_linear_history() {
    let portal = Portal::start_replicated().await;
    let replica = portal.replica.clone().expect("two replicas");
    let mut on_a = portal.signed_in(admin()).await;
    let id = portal.added_configuration(&mut on_a).await;

    // Signed in on replica A, the same browser is signed in on B.
    let mut on_b = portal.signed_in(admin()).await;
    on_b.switch_to(&replica);
    let listed = on_b.get("/configurations").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(listed.body.contains(&id));

    // Both open the edit form and see the same revision.
    let edit = format!("/configurations/{id}/edit");
    let seen_a = revision_of(&on_a.get(&edit).await.body);
    let seen_b = revision_of(&on_b.get(&edit).await.body);
    assert_eq!(seen_a, seen_b);

    // Both save a different client id at the same moment, each through its own replica.
    let form_a = portal.form_with(&[("client_id", "vb-client-from-a"), ("revision", &seen_a)]);
    let form_b = portal.form_with(&[("client_id", "vb-client-from-b"), ("revision", &seen_b)]);
    let fields_a: Vec<(&str, &str)> = form_a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fields_b: Vec<(&str, &str)> = form_b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (saved_a, saved_b) = tokio::join!(on_a.post(&edit, &fields_a), on_b.post(&edit, &fields_b));

    let outcomes = [saved_a.status, saved_b.status];
    assert!(
        outcomes == [303, 409] || outcomes == [409, 303],
        "one lands, one is refused: {outcomes:?}\nA: {}\nB: {}",
        saved_a.body,
        saved_b.body
    );
    let (winner, loser) = if saved_a.status == 303 {
        ("vb-client-from-a", &saved_b)
    } else {
        ("vb-client-from-b", &saved_a)
    };
    assert!(
        unescape(&loser.body).contains("changed by someone else"),
        "{}",
        loser.body
    );

    // One change in the history, the winner's, the same from either replica.
    for browser in [&mut on_a, &mut on_b] {
        let history = browser.get(&format!("/configurations/{id}/history")).await;
        let text = unescape(&history.body);
        assert_eq!(text.matches("Changed").count(), 1, "{text}");
        let page = browser.get(&format!("/configurations/{id}")).await;
        let text = unescape(&page.body);
        assert!(text.contains(winner), "{text}");
        assert!(!text.contains(if winner.ends_with('a') {
            "vb-client-from-b"
        } else {
            "vb-client-from-a"
        }));
    }
}
