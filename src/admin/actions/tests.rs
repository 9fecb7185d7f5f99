use std::time::Duration;

use super::*;
use crate::admin::testing::Deployment;

/// The nudge was rung (a permit is waiting).
async fn nudged(d: &Deployment) -> bool {
    tokio::time::timeout(Duration::from_secs(1), d.nudge.notified())
        .await
        .is_ok()
}

fn code(r: &Result<Done, AdminError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn labels_decide_who_may_run_what() {
    let d = Deployment::new().await;
    #[rustfmt::skip]
    let cases = [
        // principal, approvals_list, registry_disable
        ("operator", "ok", "ok"),
        ("bob", "ok", "forbidden"),
        ("carol", "forbidden", "ok"),
        ("alice", "forbidden", "forbidden"),
        ("local", "forbidden", "forbidden"),
    ];
    for (id, list, disable) in cases {
        let who = d.who(id);
        let listed = d.admin.approvals_list(&who, None, None).await;
        assert_eq!(code(&listed), list, "{id} approvals_list: {listed:?}");
        let disabled = d.admin.registry_disable(&who, "notes", None).await;
        assert_eq!(
            code(&disabled),
            disable,
            "{id} registry_disable: {disabled:?}"
        );
        if let Err(e) = disabled {
            assert_eq!(e.http_status(), http::StatusCode::FORBIDDEN);
            assert!(e.to_string().contains("needs the `admin` label"), "{e}");
        }
    }
    // Every attempt is audited, the refused ones as DENY.
    let rows = d.audit().await;
    assert_eq!(rows.len(), 10);
    let bob_disable = &rows[3];
    assert_eq!(
        (
            bob_disable.0.as_str(),
            bob_disable.1.as_str(),
            bob_disable.2.as_str(),
            bob_disable.3.as_str()
        ),
        ("bob", "admin.registry_disable", "DENY", "forbidden")
    );
    assert_eq!(rows[0].2, "ALLOW");
}

#[tokio::test]
async fn approving_and_denying() {
    let d = Deployment::new().await;
    let from_alice = d.pending("alice").await;
    let from_operator = d.pending("operator").await;
    let operator = d.who("operator");

    let done = d
        .admin
        .approve(&operator, &from_alice, Some("checked".into()))
        .await
        .unwrap();
    assert_eq!(done.data["approval"]["status"], "approved");
    assert_eq!(done.data["approval"]["decided_by"], "operator");
    assert_eq!(done.data["approval"]["reason"], "checked");
    assert!(
        done.text
            .contains("alice may now call notes__add_note once"),
        "{}",
        done.text
    );
    assert!(nudged(&d).await);

    let refused = d.admin.approve(&operator, &from_operator, None).await;
    assert_eq!(code(&refused), "approval_self");
    assert_eq!(
        refused.unwrap_err().http_status(),
        http::StatusCode::CONFLICT
    );
    let refused = d.admin.deny(&operator, &from_alice, None).await;
    assert_eq!(code(&refused), "approval_not_pending");
    let refused = d.admin.approve(&operator, "apr_nope", None).await;
    assert_eq!(code(&refused), "approval_unknown");
    assert_eq!(
        refused.unwrap_err().http_status(),
        http::StatusCode::NOT_FOUND
    );

    let done = d
        .admin
        .deny(&d.who("bob"), &from_operator, None)
        .await
        .unwrap();
    assert_eq!(done.data["approval"]["status"], "denied");

    let shown = d
        .admin
        .approval_show(&d.who("bob"), &from_alice)
        .await
        .unwrap();
    assert_eq!(shown.data["approval"]["id"], from_alice.as_str());

    let rows = d.audit().await;
    let summary: Vec<(&str, &str, &str, Option<&str>)> = rows
        .iter()
        .map(|(_, e, dec, c, id)| (e.as_str(), dec.as_str(), c.as_str(), id.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("admin.approve", "ALLOW", "ok", Some(from_alice.as_str())),
            (
                "admin.approve",
                "DENY",
                "approval_self",
                Some(from_operator.as_str())
            ),
            (
                "admin.deny",
                "DENY",
                "approval_not_pending",
                Some(from_alice.as_str())
            ),
            (
                "admin.approve",
                "DENY",
                "approval_unknown",
                Some("apr_nope")
            ),
            ("admin.deny", "ALLOW", "ok", Some(from_operator.as_str())),
            (
                "admin.approval_show",
                "ALLOW",
                "ok",
                Some(from_alice.as_str())
            ),
        ]
    );
}

#[tokio::test]
async fn listing_filters_and_limits() {
    let d = Deployment::new().await;
    let first = d.pending("alice").await;
    let second = d.pending("alice").await;
    let operator = d.who("operator");
    d.admin.approve(&operator, &first, None).await.unwrap();
    let ids = |done: Done| -> Vec<String> {
        done.data["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = d.admin.approvals_list(&operator, None, None).await.unwrap();
    assert_eq!(all.text.lines().count(), 2, "{}", all.text);
    assert_eq!(ids(all).len(), 2);
    let pending = d
        .admin
        .approvals_list(&operator, Some(Status::Pending), None)
        .await
        .unwrap();
    assert_eq!(ids(pending), [second]);
    let one = d
        .admin
        .approvals_list(&operator, None, Some(1))
        .await
        .unwrap();
    assert_eq!(ids(one).len(), 1);
    let none = d
        .admin
        .approvals_list(&operator, Some(Status::Used), None)
        .await
        .unwrap();
    assert_eq!(none.text, "no used approvals");
}

#[tokio::test]
async fn containment_actions_change_the_control_state() {
    let d = Deployment::new().await;
    let carol = d.who("carol");
    let store = d.admin.store();

    let unknown = d.admin.registry_disable(&carol, "nope", None).await;
    assert_eq!(code(&unknown), "unknown_server");
    assert_eq!(
        unknown.unwrap_err().http_status(),
        http::StatusCode::NOT_FOUND
    );

    let done = d
        .admin
        .registry_disable(&carol, "notes", Some("incident".into()))
        .await
        .unwrap();
    assert_eq!(done.data["already"], false);
    assert!(nudged(&d).await);
    let again = d
        .admin
        .registry_disable(&carol, "notes", None)
        .await
        .unwrap();
    assert_eq!(again.data["already"], true);
    assert!(store.control_state().await.unwrap().is_disabled("notes"));

    // A server name stands for its audience; the audience itself works too.
    let by_name = d.admin.tokens_revoke(&carol, "notes").await.unwrap();
    assert_eq!(by_name.data["audience"], "https://notes.internal");
    let by_audience = d
        .admin
        .tokens_revoke(&carol, "https://notes.internal")
        .await
        .unwrap();
    assert_eq!(by_audience.data["server"], "notes");
    assert_eq!(
        code(&d.admin.tokens_revoke(&carol, "https://other").await),
        "unknown_server"
    );
    assert_eq!(
        code(&d.admin.tokens_revoke(&carol, " ").await),
        "invalid_request"
    );
    assert_eq!(store.revocations().await.unwrap().len(), 1);

    let on = d
        .admin
        .emergency_write_approval(&carol, true)
        .await
        .unwrap();
    assert_eq!(on.data["was"], false);
    assert!(store.control_state().await.unwrap().emergency);
    let emergency = store.emergency().await.unwrap();
    assert_eq!(emergency.set_by.as_deref(), Some("carol"));
    let still = d
        .admin
        .emergency_write_approval(&carol, true)
        .await
        .unwrap();
    assert!(still.text.contains("already on"), "{}", still.text);
    d.admin
        .emergency_write_approval(&carol, false)
        .await
        .unwrap();
    assert!(!store.control_state().await.unwrap().emergency);

    // drift_accept refuses a contained upstream (it would have to connect to it).
    let refused = d.admin.drift_accept(&carol, "notes").await;
    assert_eq!(code(&refused), "conflict");
    assert_eq!(
        code(&d.admin.drift_accept(&carol, "nope").await),
        "unknown_server"
    );

    let enabled = d.admin.registry_enable(&carol, "notes").await.unwrap();
    assert_eq!(enabled.data["was_disabled"], true);
    assert!(!store.control_state().await.unwrap().is_disabled("notes"));
    let rows = d.audit().await;
    assert_eq!(rows.len(), 13);
    assert!(rows.iter().all(|r| r.0 == "carol"));
}

#[tokio::test]
async fn a_refusal_of_bad_input_is_audited_and_the_label_comes_first() {
    let d = Deployment::new().await;
    let bad = || AdminError::Invalid("`enabled` must be true or false".into());
    let e = d
        .admin
        .reject(
            &d.who("carol"),
            "emergency_write_approval",
            json!({}),
            bad(),
        )
        .await;
    assert_eq!(e.code(), "invalid_request");
    assert_eq!(e.http_status(), http::StatusCode::BAD_REQUEST);
    let e = d
        .admin
        .reject(&d.who("bob"), "emergency_write_approval", json!({}), bad())
        .await;
    assert_eq!(e.code(), "forbidden");
    let rows = d.audit().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].2.as_str(), rows[0].3.as_str()),
        ("DENY", "invalid_request")
    );
    assert_eq!(
        (rows[1].2.as_str(), rows[1].3.as_str()),
        ("DENY", "forbidden")
    );
}
