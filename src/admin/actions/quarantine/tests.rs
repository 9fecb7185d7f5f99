use super::*;
use crate::admin::testing::Deployment;

fn code(r: &Result<Done, AdminError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// The quarantine actions' audit rows: (actor, exposed name, decision, full reason,
/// quarantine id).
async fn audit(d: &Deployment) -> Vec<(String, String, String, String, Option<String>)> {
    let options =
        sqlx::sqlite::SqliteConnectOptions::new().filename(d.dir.path().join("warden.db"));
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT actor_id, exposed_name, decision, reason, quarantine_id FROM mcp_audit \
         WHERE stage = 'admin' AND tool_name LIKE 'quarantine_%' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn only_admins_review_quarantine() {
    let d = Deployment::new().await;
    let id = d.quarantined("alice").await;
    #[rustfmt::skip]
    let cases = [
        ("operator", "ok"),
        ("carol", "ok"),
        ("bob", "forbidden"),
        ("alice", "forbidden"),
        ("local", "forbidden"),
    ];
    for (who, expected) in cases {
        let who = d.who(who);
        assert_eq!(
            code(&d.admin.quarantine_list(&who, None, None).await),
            expected
        );
        assert_eq!(code(&d.admin.quarantine_show(&who, &id).await), expected);
    }
    // Neither bob nor alice (whose call it was) can release it.
    let refused = d
        .admin
        .quarantine_release(&d.who("bob"), &id, "looks fine")
        .await;
    assert_eq!(code(&refused), "forbidden");
    let refused = d
        .admin
        .quarantine_release(&d.who("alice"), &id, "it is mine")
        .await;
    assert_eq!(code(&refused), "forbidden");
    let q = d.admin.store().quarantine_get(&id).await.unwrap().unwrap();
    assert_eq!(q.status, QStatus::Held);
    assert_eq!(audit(&d).await.len(), 12);
}

#[tokio::test]
async fn a_reviewer_sees_the_content_and_releases_with_a_reason() {
    let d = Deployment::new().await;
    let id = d.quarantined("alice").await;
    let carol = d.who("carol");

    let listed = d.admin.quarantine_list(&carol, None, None).await.unwrap();
    assert_eq!(listed.data["items"][0]["id"], id.as_str());
    assert_eq!(listed.data["items"][0]["status"], "held");
    assert_eq!(
        listed.data["items"][0]["classes"],
        json!(["aws_access_key", "email"])
    );
    // A listing never carries the withheld content.
    assert!(listed.data["items"][0].get("content").is_none());
    assert!(!listed.text.contains("AKIA"), "{}", listed.text);
    assert!(
        listed.text.contains("call of alice") && listed.text.contains("aws_access_key,email"),
        "{}",
        listed.text
    );

    let shown = d.admin.quarantine_show(&carol, &id).await.unwrap();
    assert_eq!(
        shown.data["item"]["content"]["content"][0]["text"],
        "AKIAEXAMPLEEXAMPLE12 for jane@example.com"
    );
    assert!(
        shown.text.contains("AKIAEXAMPLEEXAMPLE12"),
        "{}",
        shown.text
    );

    #[rustfmt::skip]
    let refusals = [
        ("q_0000000000000000", "fine", "quarantine_unknown", 404),
        (id.as_str(), "", "quarantine_reason_required", 400),
        (id.as_str(), " ", "quarantine_reason_required", 400),
    ];
    for (qid, reason, expected, status) in refusals {
        let r = d.admin.quarantine_release(&carol, qid, reason).await;
        assert_eq!(code(&r), expected, "{qid} {reason:?}: {r:?}");
        assert_eq!(r.unwrap_err().http_status().as_u16(), status);
    }

    let done = d
        .admin
        .quarantine_release(&carol, &id, "documentation example key")
        .await
        .unwrap();
    assert_eq!(done.data["item"]["status"], "released");
    assert_eq!(done.data["item"]["released_by"], "carol");
    assert_eq!(
        done.data["item"]["release_reason"],
        "documentation example key"
    );
    assert!(
        done.text
            .contains("alice may now fetch the result of crm__lookup once"),
        "{}",
        done.text
    );
    let again = d.admin.quarantine_release(&carol, &id, "twice").await;
    assert_eq!(code(&again), "quarantine_not_held");
    assert_eq!(again.unwrap_err().http_status(), http::StatusCode::CONFLICT);

    // The releaser never receives the result: a result of carol's own call is not hers to free.
    let own = d.quarantined("carol").await;
    let refused = d
        .admin
        .quarantine_release(&carol, &own, "mine is fine")
        .await;
    assert_eq!(code(&refused), "quarantine_self_release");
    d.admin
        .quarantine_release(&d.who("operator"), &own, "checked by a second pair of eyes")
        .await
        .unwrap();
    let shown = d.admin.quarantine_show(&carol, "q_nope").await;
    assert_eq!(code(&shown), "quarantine_unknown");

    let rows: Vec<(String, String, String, Option<String>)> = audit(&d)
        .await
        .into_iter()
        .map(|(who, exposed, decision, reason, qid)| {
            // The code, and for a done release its why.
            let reason = if decision == "ALLOW" {
                reason
            } else {
                reason.split(':').next().unwrap_or_default().to_owned()
            };
            (format!("{who} {exposed}"), decision, reason, qid)
        })
        .collect();
    let s = |x: &str| x.to_owned();
    let q = |x: &str| Some(x.to_owned());
    assert_eq!(
        rows,
        [
            (s("carol admin.quarantine_list"), s("ALLOW"), s("ok"), None),
            (
                s("carol admin.quarantine_show"),
                s("ALLOW"),
                s("ok"),
                q(&id)
            ),
            (
                s("carol admin.quarantine_release"),
                s("DENY"),
                s("quarantine_unknown"),
                q("q_0000000000000000")
            ),
            (
                s("carol admin.quarantine_release"),
                s("DENY"),
                s("quarantine_reason_required"),
                q(&id)
            ),
            (
                s("carol admin.quarantine_release"),
                s("DENY"),
                s("quarantine_reason_required"),
                q(&id)
            ),
            (
                s("carol admin.quarantine_release"),
                s("ALLOW"),
                s("ok: released: documentation example key"),
                q(&id)
            ),
            (
                s("carol admin.quarantine_release"),
                s("DENY"),
                s("quarantine_not_held"),
                q(&id)
            ),
            (
                s("carol admin.quarantine_release"),
                s("DENY"),
                s("quarantine_self_release"),
                q(&own)
            ),
            (
                s("operator admin.quarantine_release"),
                s("ALLOW"),
                s("ok: released: checked by a second pair of eyes"),
                q(&own)
            ),
            (
                s("carol admin.quarantine_show"),
                s("DENY"),
                s("quarantine_unknown"),
                q("q_nope")
            ),
        ]
    );
}

#[tokio::test]
async fn listing_filters_and_says_when_there_is_nothing() {
    let d = Deployment::new().await;
    let carol = d.who("carol");
    let none = d.admin.quarantine_list(&carol, None, None).await.unwrap();
    assert_eq!(none.text, "no quarantined results");
    assert_eq!(none.data, json!({ "items": [] }));

    let first = d.quarantined("alice").await;
    let second = d.quarantined("alice").await;
    d.admin
        .quarantine_release(&carol, &first, "benign")
        .await
        .unwrap();
    d.admin
        .store()
        .quarantine_take(&first, "alice", OffsetDateTime::now_utc())
        .await
        .unwrap();
    let ids = |done: Done| -> Vec<String> {
        done.data["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let held = d
        .admin
        .quarantine_list(&carol, Some(QStatus::Held), None)
        .await
        .unwrap();
    assert_eq!(ids(held), [second]);
    let fetched = d
        .admin
        .quarantine_list(&carol, Some(QStatus::Fetched), None)
        .await
        .unwrap();
    assert!(fetched.text.contains("fetched at"), "{}", fetched.text);
    assert_eq!(ids(fetched), [first]);
    let released = d
        .admin
        .quarantine_list(&carol, Some(QStatus::Released), None)
        .await
        .unwrap();
    assert_eq!(released.text, "no released quarantined results");
    let one = d
        .admin
        .quarantine_list(&carol, None, Some(1))
        .await
        .unwrap();
    assert_eq!(ids(one).len(), 1);
}
