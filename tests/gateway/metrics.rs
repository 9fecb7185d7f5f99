//! `GET /metrics` on the HTTP listener: calls counted by decision, stage and reason code, output
//! verdicts, latency histograms, upstream status; open on a loopback gateway without
//! authentication, and for `admin` or `metrics` principals only when authentication is on (the
//! refused requests counted by reason).

use rmcp::ServiceError;
use serde_json::json;

use crate::harness::{Era, Gateway, Transport};

/// The value of the sample `name{labels…}` in a text exposition (labels in any order).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let found: Vec<&str> = rest.split(',').filter(|l| !l.is_empty()).collect();
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        (metric == name
            && found.len() == wanted.len()
            && wanted.iter().all(|w| found.contains(&w.as_str())))
        .then(|| value.parse().ok())
        .flatten()
    })
}

/// `GET /metrics` with an optional bearer key: the status and the body.
async fn scrape(gw: &Gateway, key: Option<&str>) -> anyhow::Result<(u16, String)> {
    let url = gw
        .url()
        .and_then(|u| u.strip_suffix("/mcp"))
        .map(|base| format!("{base}/metrics"))
        .ok_or_else(|| anyhow::anyhow!("the HTTP gateway has no URL"))?;
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[tokio::test]
async fn calls_are_counted_by_decision_stage_and_reason() -> anyhow::Result<()> {
    let gw = Gateway::start(Transport::Http).await?;
    let agent = gw.connect(Era::Modern).await?;
    agent.tools_once_listed("notes__echo").await?;
    agent
        .call("notes__echo", json!({ "text": "hello" }))
        .await?;
    agent
        .call("notes__echo", json!({ "text": "again" }))
        .await?;
    match agent.call("notes__no_such_tool", json!({})).await {
        Err(ServiceError::McpError(_)) => {}
        other => anyhow::bail!("expected the unknown tool to be refused, got {other:?}"),
    }
    let (status, text) = scrape(&gw, None).await?;
    assert_eq!(status, 200, "{text}");
    let expect = |name: &str, labels: &[(&str, &str)], value: f64| {
        assert_eq!(
            sample(&text, name, labels),
            Some(value),
            "{name}{labels:?} in:\n{text}"
        );
    };
    let calls = "mcp_warden_calls_total";
    let allowed = [
        ("decision", "ALLOW"),
        ("stage", "dispatch"),
        ("reason", "ok"),
    ];
    expect(calls, &allowed, 2.0);
    let unknown = [
        ("decision", "DENY"),
        ("stage", "resolve"),
        ("reason", "unknown_tool"),
    ];
    expect(calls, &unknown, 1.0);
    expect("mcp_warden_output_total", &[("decision", "PASS")], 2.0);
    expect("mcp_warden_call_duration_seconds_count", &[], 3.0);
    let stage = "mcp_warden_stage_duration_seconds_count";
    // The refused call stopped at resolve: it reached neither the policy nor dispatch.
    for name in ["gates", "policy", "credential", "dispatch", "output"] {
        expect(stage, &[("stage", name)], 2.0);
    }
    expect(stage, &[("stage", "audit")], 3.0);
    assert_eq!(
        sample(&text, stage, &[("stage", "approval")]),
        None,
        "{text}"
    );
    assert!(
        text.contains("mcp_warden_call_duration_seconds_bucket{le=\"0.005\"}"),
        "a histogram, not a summary:\n{text}"
    );
    expect("mcp_warden_upstream_up", &[("upstream", "notes")], 1.0);
    agent.service.cancel().await?;
    Ok(())
}

const KEYED: &str = r#"
[[principals]]
id = "local"
scopes = ["*:*"]
api_key_env = "METRICS_TEST_AGENT_KEY"

[[principals]]
id = "operator"
labels = ["approver", "admin"]

[[principals]]
id = "prometheus"
labels = ["metrics"]
api_key_env = "METRICS_TEST_SCRAPER_KEY"
"#;

#[tokio::test]
async fn with_authentication_only_admin_or_metrics_principals_may_scrape() -> anyhow::Result<()> {
    let gw = Gateway::start_with(
        Transport::Http,
        KEYED,
        &[
            ("METRICS_TEST_AGENT_KEY", "agent-key-0123456789abcdef"),
            ("METRICS_TEST_SCRAPER_KEY", "scraper-key-0123456789abcdef"),
        ],
    )
    .await?;
    let (status, body) = scrape(&gw, None).await?;
    assert_eq!(status, 401, "no credential: {body}");
    let (status, body) = scrape(&gw, Some("not-a-key")).await?;
    assert_eq!(status, 401, "unknown key: {body}");
    let (status, body) = scrape(&gw, Some("agent-key-0123456789abcdef")).await?;
    assert_eq!(status, 403, "a principal without the label: {body}");
    assert!(!body.contains("mcp_warden_"), "{body}");
    let (status, text) = scrape(&gw, Some("scraper-key-0123456789abcdef")).await?;
    assert_eq!(status, 200, "{text}");
    let refused = "mcp_warden_auth_refused_total";
    assert_eq!(
        sample(&text, refused, &[("reason", "missing")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, refused, &[("reason", "invalid_token")]),
        Some(1.0),
        "{text}"
    );
    Ok(())
}

#[test]
fn samples_are_found_whatever_the_label_order() {
    let text = "# TYPE x counter\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\"} 4\ny 5\n";
    assert_eq!(sample(text, "x", &[("b", "2"), ("a", "1")]), Some(3.0));
    assert_eq!(sample(text, "x", &[("a", "1")]), Some(4.0));
    assert_eq!(sample(text, "y", &[]), Some(5.0));
    assert_eq!(sample(text, "x", &[("a", "2")]), None);
}
