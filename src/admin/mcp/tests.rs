use std::collections::HashMap;

use rmcp::ServiceExt as _;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::*;
use crate::admin::testing::Deployment;

/// The admin MCP endpoint on a loopback port; returns its URL.
async fn serve(d: &Deployment) -> (String, CancellationToken) {
    let stop = CancellationToken::new();
    let service = http_service(d.admin.clone(), d.authn(), stop.child_token());
    let app = axum::Router::new().nest_service("/admin/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/admin/mcp"), stop)
}

async fn client(
    url: &str,
    who: &str,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ()>, rmcp::service::ClientInitializeError>
{
    let headers = HashMap::from([(
        http::HeaderName::from_static("x-principal"),
        http::HeaderValue::from_str(who).unwrap(),
    )]);
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
}

fn names(tools: &[Tool]) -> Vec<&str> {
    let mut n: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    n.sort_unstable();
    n
}

#[tokio::test]
async fn over_http_each_request_is_authenticated_and_sees_what_its_labels_allow() {
    let d = Deployment::new().await;
    let (url, stop) = serve(&d).await;
    let id = d.pending("alice").await;

    let bob = client(&url, "bob").await.unwrap();
    let tools = bob.list_all_tools().await.unwrap();
    assert_eq!(
        names(&tools),
        ["approval_show", "approvals_list", "approve", "deny"]
    );
    for t in &tools {
        assert_eq!(
            t.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            t.name
        );
    }
    let mut call = CallToolRequestParams::new("approve");
    call = call.with_arguments(json!({ "id": id }).as_object().unwrap().clone());
    let done = bob.call_tool(call).await.unwrap();
    assert_eq!(done.is_error, Some(false), "{done:?}");
    assert_eq!(
        done.structured_content.unwrap()["approval"]["decided_by"],
        "bob"
    );
    bob.cancel().await.unwrap();

    let carol = client(&url, "carol").await.unwrap();
    let tools = carol.list_all_tools().await.unwrap();
    assert_eq!(
        names(&tools),
        [
            "drift_accept",
            "emergency_write_approval",
            "quarantine_list",
            "quarantine_release",
            "quarantine_show",
            "registry_disable",
            "registry_enable",
            "tokens_revoke"
        ]
    );
    let call = CallToolRequestParams::new("approvals_list");
    let refused = carol.call_tool(call).await.unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert_eq!(refused.structured_content.unwrap()["error"], "forbidden");
    let unknown = carol
        .call_tool(CallToolRequestParams::new("shutdown"))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");
    carol.cancel().await.unwrap();

    // Unknown principal: nothing is listed, nothing runs.
    match client(&url, "mallory").await {
        Err(_) => {}
        Ok(mallory) => {
            assert!(mallory.list_all_tools().await.is_err());
            mallory.cancel().await.unwrap();
        }
    }
    stop.cancel();
    let rows = d.audit().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("bob", "admin.approve")
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].3.as_str()),
        ("carol", "forbidden")
    );
}
