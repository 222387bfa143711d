//! Notification parsing: plain and encrypted roster updates, clientState, lifecycle, bad input.

use serde_json::{Value, json};
use visitbridge_graph::{
    ClientStateSecret, DecryptionKeys, EncryptionCertificate, EventKind, GraphError,
    LifecycleEvent, MeetingRef, Notification, ParticipantEvent, ParticipantKind, UserObjectId,
    parse_notifications,
};
use visitbridge_http::Secret;
use visitbridge_testkit::{
    fixtures::{GRAPH_ROSTER_NOTIFICATION, PHI_PROBES, keys},
    graph::{
        ENCRYPTION_CERTIFICATE_ID, acs_participant, call_event, encrypted_notification,
        lifecycle_notification, plain_notification, roster_update, user_participant,
    },
};

const CLIENT_STATE: &str = "the-secret-client-state";
const JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NTg0%40thread.v2/0";

fn client_state() -> ClientStateSecret {
    ClientStateSecret::new(Secret::new(CLIENT_STATE))
}

pub(crate) fn decryption_keys() -> DecryptionKeys {
    let cert =
        EncryptionCertificate::from_pem(ENCRYPTION_CERTIFICATE_ID, keys::GRAPH_ENCRYPTION_CERT)
            .expect("cert");
    DecryptionKeys::new()
        .with_key_pem(
            ENCRYPTION_CERTIFICATE_ID,
            keys::GRAPH_ENCRYPTION_RSA,
            Some(&cert),
        )
        .expect("key")
}

fn events(notifications: Vec<Notification>) -> Vec<ParticipantEvent> {
    notifications
        .into_iter()
        .flat_map(|n| match n {
            Notification::Events { events, .. } => events,
            Notification::Lifecycle { .. } => Vec::new(),
            Notification::Unreadable(u) => panic!("unreadable: {u:?}"),
        })
        .collect()
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn assert_no_phi(shown: &str) {
    for probe in PHI_PROBES.iter().chain(["Camila Lopez"].iter()) {
        assert!(!shown.contains(probe), "{probe} leaked: {shown}");
    }
}

#[test]
fn the_documented_roster_notification_becomes_events_without_names() {
    let parsed = parse_notifications(GRAPH_ROSTER_NOTIFICATION.as_bytes(), &client_state(), None)
        .expect("parsed");
    let Notification::Events {
        subscription_id,
        tenant_id,
        ..
    } = &parsed[0]
    else {
        panic!("expected events");
    };
    assert_eq!(
        subscription_id.as_str(),
        "4d0a1e5c-8a1e-4a3e-9d8c-2b0f3c6e7a11"
    );
    assert_eq!(
        tenant_id.as_deref(),
        Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
    );
    let events = events(parsed.clone());
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, EventKind::ParticipantJoined);
    assert_eq!(
        events[0].participant.as_ref().map(|p| &p.kind),
        Some(&ParticipantKind::AcsGuest {
            opaque_id: "8:acs:2f1c...".into()
        })
    );
    assert_eq!(events[1].kind, EventKind::ParticipantLeft);
    assert_eq!(
        events[1].participant.as_ref().map(|p| &p.kind),
        Some(&ParticipantKind::OrganizationUser {
            object_id: UserObjectId::new("5810cedeb-b2c1-e9bd-5d6b-2b5d0ae9e5d5"),
            tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
        })
    );
    assert_eq!(events[0].at.to_rfc3339(), "2026-03-05T18:02:11.512+00:00");
    assert!(events[0].meeting.matches_join_url(
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NTg0NjhhNTUtNWQ3ZS00MjE0LWE3ZDEtNDMwMDBlNTViYjY0%40thread.v2/0?context=%7b%22Tid%22%7d"
    ));
    let shown = format!("{parsed:?} {}", serde_json::to_string(&events).unwrap());
    assert_no_phi(&shown);
}

fn sample_roster() -> Value {
    roster_update(
        "2026-03-05T18:02:11.5120000Z",
        vec![acs_participant("leg-1", "8:acs:patient-1", "Camila Lopez")],
        vec![user_participant("leg-2", "oid-staff", "Dr. Ross")],
    )
}

#[test]
fn encrypted_content_decrypts_to_the_same_events_as_plain_content() {
    let plain = plain_notification("sub-1", CLIENT_STATE, JOIN_URL, sample_roster());
    let encrypted = encrypted_notification("sub-1", CLIENT_STATE, JOIN_URL, &sample_roster());
    assert!(encrypted["value"][0]["encryptedContent"]["data"].is_string());
    assert!(
        !encrypted.to_string().contains("Camila"),
        "the fake really encrypts"
    );
    let keys = decryption_keys();
    let from_plain =
        events(parse_notifications(&bytes(&plain), &client_state(), None).expect("plain"));
    let from_encrypted = events(
        parse_notifications(&bytes(&encrypted), &client_state(), Some(&keys)).expect("encrypted"),
    );
    assert_eq!(from_plain, from_encrypted);
    assert_eq!(from_plain.len(), 2);
    assert_eq!(
        from_plain[0].meeting,
        MeetingRef::JoinWebUrl(JOIN_URL.into())
    );
    assert_no_phi(&format!("{from_encrypted:?}"));
}

#[test]
fn altered_ciphertext_fails_the_signature_check() {
    let mut encrypted = encrypted_notification("sub-1", CLIENT_STATE, JOIN_URL, &sample_roster());
    let data = encrypted["value"][0]["encryptedContent"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    // Flip one base64 character in the middle of the ciphertext.
    let mut chars: Vec<char> = data.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    encrypted["value"][0]["encryptedContent"]["data"] =
        json!(chars.into_iter().collect::<String>());
    let parsed = parse_notifications(
        &bytes(&encrypted),
        &client_state(),
        Some(&decryption_keys()),
    )
    .expect("the batch is read");
    // The item is dropped as unreadable (nothing of it is used); its batch is not refused.
    assert_eq!(
        only_unreadable(&parsed),
        GraphError::Decrypt("dataSignature does not match").to_string()
    );
}

/// The reason of the one item of `parsed`, which must be unreadable.
fn only_unreadable(parsed: &[Notification]) -> String {
    match parsed {
        [Notification::Unreadable(u)] => u.reason.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_for_another_key_or_without_keys_is_refused() {
    let encrypted = encrypted_notification("sub-1", CLIENT_STATE, JOIN_URL, &sample_roster());
    let parsed = parse_notifications(&bytes(&encrypted), &client_state(), None).expect("read");
    assert!(
        only_unreadable(&parsed).starts_with("could not decrypt notification content"),
        "{parsed:?}"
    );
    let wrong = DecryptionKeys::new()
        .with_key_pem(ENCRYPTION_CERTIFICATE_ID, keys::ATTACKER_RSA, None)
        .expect("key");
    let parsed =
        parse_notifications(&bytes(&encrypted), &client_state(), Some(&wrong)).expect("read");
    assert_eq!(
        only_unreadable(&parsed),
        GraphError::Decrypt("could not unwrap dataKey").to_string()
    );
}

#[test]
fn a_foreign_or_missing_client_state_refuses_the_batch() {
    let forged = plain_notification("sub-1", "guessed", JOIN_URL, sample_roster());
    let error = parse_notifications(&bytes(&forged), &client_state(), None).expect_err("refused");
    assert!(matches!(error, GraphError::ClientStateMismatch));
    assert!(!error.to_string().contains(CLIENT_STATE));

    let mut missing = plain_notification("sub-1", CLIENT_STATE, JOIN_URL, sample_roster());
    missing["value"][0]
        .as_object_mut()
        .unwrap()
        .remove("clientState");
    let error = parse_notifications(&bytes(&missing), &client_state(), None).expect_err("refused");
    assert!(matches!(error, GraphError::ClientStateMismatch));

    // One foreign item spoils the batch.
    let mut mixed = plain_notification("sub-1", CLIENT_STATE, JOIN_URL, sample_roster());
    let foreign = forged["value"][0].clone();
    mixed["value"].as_array_mut().unwrap().push(foreign);
    let error = parse_notifications(&bytes(&mixed), &client_state(), None).expect_err("refused");
    assert!(matches!(error, GraphError::ClientStateMismatch));
}

#[test]
fn a_rotated_client_state_is_still_accepted() {
    let old = plain_notification("sub-1", "old-state", JOIN_URL, sample_roster());
    let rotating = client_state().with_previous(Secret::new("old-state"));
    assert!(parse_notifications(&bytes(&old), &rotating, None).is_ok());
}

#[test]
fn call_start_and_end_become_events() {
    for (name, kind) in [
        ("CallStarted", EventKind::CallStarted),
        ("CallEnded", EventKind::CallEnded),
    ] {
        let n = plain_notification(
            "sub-1",
            CLIENT_STATE,
            JOIN_URL,
            call_event(name, "2026-03-05T18:00:00Z"),
        );
        let events =
            events(parse_notifications(&bytes(&n), &client_state(), None).expect("parsed"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, kind);
        assert!(events[0].participant.is_none());
    }
}

#[test]
fn lifecycle_notifications_are_recognised() {
    let n = lifecycle_notification("sub-9", CLIENT_STATE, "reauthorizationRequired");
    let parsed = parse_notifications(&bytes(&n), &client_state(), None).expect("parsed");
    match &parsed[..] {
        [
            Notification::Lifecycle {
                subscription_id,
                event,
                subscription_expires_at,
            },
        ] => {
            assert_eq!(subscription_id.as_str(), "sub-9");
            assert_eq!(event, &LifecycleEvent::ReauthorizationRequired);
            assert!(subscription_expires_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    let n = lifecycle_notification("sub-9", CLIENT_STATE, "missed");
    let parsed = parse_notifications(&bytes(&n), &client_state(), None).expect("parsed");
    assert!(matches!(
        &parsed[0],
        Notification::Lifecycle {
            event: LifecycleEvent::Missed,
            ..
        }
    ));
}

#[test]
fn a_body_that_is_not_a_batch_is_an_error_that_quotes_nothing() {
    for body in [
        "not json".as_bytes().to_vec(),
        br#"{"value": "Camila Lopez"}"#.to_vec(),
    ] {
        let error = parse_notifications(&body, &client_state(), None).expect_err("refused");
        assert!(matches!(error, GraphError::Parse { .. }), "{error:?}");
        assert_no_phi(&format!("{error} {error:?}"));
    }
}

fn unreadable(notifications: &[Notification]) -> Vec<&visitbridge_graph::UnreadableNotification> {
    notifications
        .iter()
        .filter_map(|n| match n {
            Notification::Unreadable(u) => Some(u),
            _ => None,
        })
        .collect()
}

#[test]
fn one_unreadable_item_keeps_the_rest_of_its_batch() {
    let good = |at: &str| {
        plain_notification(
            "sub-1",
            CLIENT_STATE,
            JOIN_URL,
            roster_update(
                at,
                vec![acs_participant("leg-1", "8:acs:p", "Camila Lopez")],
                vec![],
            ),
        )["value"][0]
            .clone()
    };
    let mut no_time = good("2026-03-05T18:03:00Z");
    no_time["subscriptionId"] = json!("sub-2");
    no_time["resourceData"]
        .as_object_mut()
        .unwrap()
        .remove("eventDateTime");
    let not_an_item =
        json!({"subscriptionId": 42, "clientState": CLIENT_STATE, "resource": "Camila Lopez"});
    let batch = json!({"value": [
        good("2026-03-05T18:02:00Z"), no_time, not_an_item, good("2026-03-05T18:04:00Z"),
    ]});
    let parsed = parse_notifications(&bytes(&batch), &client_state(), None).expect("kept");
    assert_eq!(parsed.len(), 4);
    let bad = unreadable(&parsed);
    assert_eq!(bad.len(), 2, "{parsed:?}");
    assert_eq!(
        bad[0].subscription_id.as_ref().map(|s| s.as_str()),
        Some("sub-2")
    );
    assert!(bad[0].reason.contains("eventDateTime"), "{}", bad[0].reason);
    assert_eq!(bad[1].subscription_id, None);
    for b in &bad {
        assert_no_phi(&format!("{b:?}"));
    }
    let times: Vec<String> = events(
        parsed
            .into_iter()
            .filter(|n| !matches!(n, Notification::Unreadable(_)))
            .collect(),
    )
    .iter()
    .map(|e| e.at.to_rfc3339())
    .collect();
    assert_eq!(
        times,
        ["2026-03-05T18:02:00+00:00", "2026-03-05T18:04:00+00:00"]
    );
}

#[test]
fn one_foreign_item_still_refuses_the_whole_batch() {
    let ours =
        plain_notification("sub-1", CLIENT_STATE, JOIN_URL, sample_roster())["value"][0].clone();
    for foreign in [
        plain_notification("sub-1", "guess", JOIN_URL, sample_roster())["value"][0].clone(),
        json!({"subscriptionId": "sub-1"}),
        json!({"clientState": 7}),
    ] {
        let batch = json!({"value": [ours.clone(), foreign]});
        let error =
            parse_notifications(&bytes(&batch), &client_state(), None).expect_err("refused");
        assert!(
            matches!(error, GraphError::ClientStateMismatch),
            "{error:?}"
        );
    }
}
