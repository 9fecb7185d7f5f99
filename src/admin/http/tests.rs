use serde_json::Value;

use super::*;
use crate::admin::testing::Deployment;

/// The router on a loopback port; returns its base URL.
async fn serve(d: &Deployment) -> String {
    let app = router(d.admin.clone(), d.authn());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// POST (or GET when `body` is `None` and `get`), as `who`; returns status and JSON.
async fn send(
    base: &str,
    get: bool,
    path: &str,
    who: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut req = if get {
        client.get(url)
    } else {
        client.post(url)
    };
    if let Some(who) = who {
        req = req.header("x-principal", who);
    }
    if let Some(body) = body {
        // What `curl -d` sends: the JSON is read whatever the content type says.
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let json = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, json)
}

/// GET?, path, as whom, body, status, error code.
type Case<'a> = (bool, String, Option<&'a str>, Option<&'a str>, u16, &'a str);

/// Send each case in order; each answers with its status and (unless 200) its error code and
/// a message.
async fn check<const N: usize>(base: &str, cases: [Case<'_>; N]) {
    for (get, path, who, body, status, error) in cases {
        let (s, j) = send(base, get, &path, who, body).await;
        assert_eq!(s, status, "{path} as {who:?}: {j}");
        if status == 200 {
            assert!(j.get("error").is_none(), "{path}: {j}");
        } else {
            assert_eq!(j["error"], error, "{path} as {who:?}: {j}");
            assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
        }
    }
}

#[tokio::test]
async fn the_containment_script_works_as_written() {
    let d = Deployment::new().await;
    let base = serve(&d).await;
    let op = Some("operator");
    let (s, j) = send(&base, false, "/registry/notes/disable", op, None).await;
    assert_eq!((s, &j["server"]), (200, &Value::from("notes")), "{j}");
    assert!(
        j["message"].as_str().unwrap().contains("disabled notes"),
        "{j}"
    );
    let (s, j) = send(
        &base,
        false,
        "/tokens/revoke",
        op,
        Some(r#"{"audience":"notes"}"#),
    )
    .await;
    assert_eq!(
        (s, &j["audience"]),
        (200, &Value::from("https://notes.internal")),
        "{j}"
    );
    let (s, j) = send(&base, false, "/policy/emergency-write-approval", op, None).await;
    assert_eq!(
        (s, &j["emergency_write_approval"]),
        (200, &Value::Bool(true)),
        "{j}"
    );

    let state = d.admin.store().control_state().await.unwrap();
    assert!(state.emergency && state.is_disabled("notes") && state.revocations.len() == 1);

    let off = Some(r#"{"enabled": false}"#);
    let (s, j) = send(&base, false, "/policy/emergency-write-approval", op, off).await;
    assert_eq!(
        (s, &j["emergency_write_approval"]),
        (200, &Value::Bool(false)),
        "{j}"
    );
    let (s, _) = send(&base, false, "/registry/notes/enable", op, None).await;
    assert_eq!(s, 200);
    let state = d.admin.store().control_state().await.unwrap();
    assert!(!state.emergency && state.disabled.is_empty());
}

#[tokio::test]
async fn statuses_say_what_went_wrong() {
    let d = Deployment::new().await;
    let base = serve(&d).await;
    let id = d.pending("alice").await;
    #[rustfmt::skip]
    let cases: [Case; 14] = [
        (false, "/registry/notes/disable".into(), None, None, 401, "unauthenticated"),
        (false, "/registry/notes/disable".into(), Some("mallory"), None, 401, "unauthenticated"),
        (false, "/registry/notes/disable".into(), Some("bob"), None, 403, "forbidden"),
        (false, "/registry/nope/disable".into(), Some("operator"), None, 404, "unknown_server"),
        (false, "/tokens/revoke".into(), Some("operator"), None, 400, "invalid_request"),
        (false, "/tokens/revoke".into(), Some("operator"), Some(r#"{"aud": 1}"#), 400, "invalid_request"),
        (false, "/tokens/revoke".into(), Some("operator"), Some(r#"{"audience":"jira"}"#), 404, "unknown_server"),
        (true, "/approvals?status=bogus".into(), Some("operator"), None, 400, "invalid_request"),
        (true, "/approvals".into(), Some("carol"), None, 403, "forbidden"),
        (false, format!("/approvals/{id}/approve"), Some("alice"), None, 403, "forbidden"),
        (false, format!("/approvals/{id}/approve"), Some("operator"), Some(r#"{"reason":"ok"}"#), 200, ""),
        (false, format!("/approvals/{id}/deny"), Some("bob"), None, 409, "approval_not_pending"),
        (false, "/approvals/apr_nope/approve".into(), Some("bob"), None, 404, "approval_unknown"),
        (true, format!("/approvals/{id}"), Some("bob"), None, 200, ""),
    ];
    check(&base, cases).await;
    let (s, j) = send(
        &base,
        true,
        "/approvals?status=approved&limit=5",
        Some("bob"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(j["approvals"][0]["id"], id.as_str(), "{j}");
    let (s, _) = send(
        &base,
        false,
        &format!("/approvals/{id}/frobnicate"),
        Some("bob"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    // Everything but the unauthenticated requests (and the route that does not exist) is audited.
    assert_eq!(d.audit().await.len(), 13);
}

#[tokio::test]
async fn quarantine_is_reviewed_over_http() {
    let d = Deployment::new().await;
    let base = serve(&d).await;
    let id = d.quarantined("alice").await;
    let release = format!("/quarantine/{id}/release");
    #[rustfmt::skip]
    let cases: [Case; 11] = [
        (true, "/quarantine".into(), None, None, 401, "unauthenticated"),
        (true, "/quarantine".into(), Some("bob"), None, 403, "forbidden"),
        (true, "/quarantine?status=bogus".into(), Some("carol"), None, 400, "invalid_request"),
        (true, "/quarantine/q_nope".into(), Some("carol"), None, 404, "quarantine_unknown"),
        (false, release.clone(), Some("alice"), Some(r#"{"reason":"mine"}"#), 403, "forbidden"),
        (false, release.clone(), Some("carol"), None, 400, "quarantine_reason_required"),
        (false, release.clone(), Some("carol"), Some(r#"{"why":"x"}"#), 400, "invalid_request"),
        (false, "/quarantine/q_nope/release".into(), Some("carol"), Some(r#"{"reason":"x"}"#), 404, "quarantine_unknown"),
        (false, release.clone(), Some("carol"), Some(r#"{"reason":"false positive"}"#), 200, ""),
        (false, release.clone(), Some("operator"), Some(r#"{"reason":"again"}"#), 409, "quarantine_not_held"),
        (true, format!("/quarantine/{id}"), Some("carol"), None, 200, ""),
    ];
    check(&base, cases).await;
    let (s, j) = send(
        &base,
        true,
        &format!("/quarantine/{id}"),
        Some("carol"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(j["item"]["status"], "released", "{j}");
    assert_eq!(j["item"]["released_by"], "carol", "{j}");
    assert_eq!(j["item"]["release_reason"], "false positive", "{j}");
    assert!(j["item"]["content"]["content"].is_array(), "{j}");
    let (s, j) = send(
        &base,
        true,
        "/quarantine?status=released&limit=5",
        Some("operator"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(j["items"][0]["id"], id.as_str(), "{j}");
    assert!(j["items"][0].get("content").is_none(), "{j}");
    assert!(
        j["message"].as_str().is_some_and(|m| m.contains(&id)),
        "{j}"
    );
    // Everything but the unauthenticated request is audited.
    assert_eq!(d.audit().await.len(), 12);
}
