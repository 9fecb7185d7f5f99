use rmcp::model::ContentBlock;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::*;
use crate::wire;

/// A ready lane whose frames can be read back, as the upstream would.
fn lane() -> (
    Arc<Lane>,
    tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
) {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (_rmcp, frames, _task) = wire::writer(near, false);
    let lane = Lane::new(frames);
    let mut base = RequestMetaObject::new();
    base.set_protocol_version(rmcp::model::ProtocolVersion::V_2026_07_28);
    lane.base_meta.set(base).unwrap();
    (lane, BufReader::new(far).lines())
}

fn text(response: &CallToolResponse) -> String {
    let CallToolResponse::Complete(r) = response else {
        panic!("not complete: {response:?}")
    };
    match r.content.first().unwrap() {
        ContentBlock::Text(t) => t.text.clone(),
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn answers_decode_into_the_type_their_result_type_names() {
    let complete = decode(
        br#"{"jsonrpc":"2.0","id":"mcpw-1","result":{"content":[{"type":"text","text":"hi"}]}}"#,
    )
    .unwrap();
    assert_eq!(text(&complete), "hi");
    let tagged = decode(br#"{"jsonrpc":"2.0","id":"mcpw-1","result":{"resultType":"complete","content":[{"type":"text","text":"yo"}],"isError":true}}"#).unwrap();
    let CallToolResponse::Complete(r) = &tagged else {
        panic!()
    };
    assert_eq!(r.is_error, Some(true));
    let input = decode(br#"{"jsonrpc":"2.0","id":"mcpw-1","result":{"resultType":"input_required","inputRequests":{"a":{"method":"roots/list"}},"requestState":"s"}}"#).unwrap();
    assert!(
        matches!(input, CallToolResponse::InputRequired(ref r) if r.request_state.as_deref() == Some("s")),
        "{input:?}"
    );
    let refused =
        decode(br#"{"jsonrpc":"2.0","id":"mcpw-1","error":{"code":-32602,"message":"bad"}}"#)
            .unwrap_err();
    assert!(
        matches!(refused, LaneError::Refused(ref e) if e.message == "bad"),
        "{refused:?}"
    );
    for malformed in [
        &b"{\"jsonrpc\":\"2.0\",\"id\":\"mcpw-1\"}"[..],
        b"{\"jsonrpc\":\"2.0\",\"id\":\"mcpw-1\",\"result\":{\"content\":\"nope\"}}",
        b"not json",
    ] {
        assert!(matches!(decode(malformed), Err(LaneError::Malformed(_))));
    }
}

#[tokio::test]
async fn only_answers_to_lane_ids_are_taken() {
    let (lane, _far) = lane();
    for (line, taken) in [
        (&br#"{"jsonrpc":"2.0","id":3,"result":{}}"#[..], false),
        // Progress under a lane token nobody waits for is dropped; under rmcp's tokens it is rmcp's.
        (br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"mcpw-1","progress":1}}"#, true),
        (br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#, false),
        (br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"mcpw-1"}}"#, false),
        // The upstream's own request, whatever its id looks like, is rmcp's.
        (br#"{"jsonrpc":"2.0","id":"mcpw-1","method":"roots/list"}"#, false),
        (br#"{"jsonrpc":"2.0","id":"mcpw-x","result":{}}"#, false),
        // An answer to a lane id nobody waits for (cancelled) is dropped, not given to rmcp.
        (br#"{"jsonrpc":"2.0","id":"mcpw-99","result":{}}"#, true),
    ] {
        assert_eq!(lane.take(line), taken, "{}", String::from_utf8_lossy(line));
    }
}

#[tokio::test]
async fn a_call_is_written_with_the_connection_meta_and_gets_its_answer() {
    let (lane, mut far) = lane();
    let mut params = CallToolRequestParams::new("echo");
    params.arguments = Some(
        serde_json::json!({"text": "hi"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let mut meta = RequestMetaObject::new();
    meta.0
        .0
        .insert("io.mcp-warden/credential".into(), "tok".into());
    params.meta = Some(meta);
    let mut call = lane.call(params, true).unwrap();
    call.send().unwrap();
    let sent: serde_json::Value =
        serde_json::from_str(&far.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(sent["method"], "tools/call");
    assert_eq!(sent["params"]["name"], "echo");
    assert_eq!(sent["params"]["arguments"]["text"], "hi");
    assert_eq!(
        sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert_eq!(sent["params"]["_meta"]["io.mcp-warden/credential"], "tok");
    assert_eq!(sent["params"]["_meta"]["progressToken"], sent["id"]);
    let id = sent["id"].as_str().unwrap().to_owned();
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":"{id}","result":{{"content":[{{"type":"text","text":"hi"}}]}}}}"#
    );
    // Progress under the call's token comes first, in order; then the answer.
    let progress = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"{id}","progress":1}}}}"#
    );
    assert!(lane.take(progress.as_bytes()));
    assert!(lane.take(answer.as_bytes()));
    let LaneEvent::Progress(p) = call.next().await.unwrap() else {
        panic!("progress first")
    };
    assert_eq!(p.progress, 1.0);
    let LaneEvent::Answer(answer) = call.next().await.unwrap() else {
        panic!("then the answer")
    };
    assert_eq!(text(&answer), "hi");
}

#[tokio::test]
async fn a_call_dropped_before_its_answer_is_cancelled_upstream() {
    let (lane, mut far) = lane();
    let mut call = lane
        .call(CallToolRequestParams::new("slow"), false)
        .unwrap();
    call.send().unwrap();
    let sent: serde_json::Value =
        serde_json::from_str(&far.next_line().await.unwrap().unwrap()).unwrap();
    // Waiting for the answer and giving up (a time limit) counts as dropping it unanswered.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(10), call.next())
            .await
            .is_err()
    );
    drop(call);
    let cancel: serde_json::Value =
        serde_json::from_str(&far.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(cancel["params"]["requestId"], sent["id"]);
    assert!(lane.pending.lock().unwrap().is_empty());
}

#[tokio::test]
async fn calls_waiting_when_the_pipe_closes_fail_at_once() {
    let (lane, _far) = lane();
    let mut call = lane
        .call(CallToolRequestParams::new("echo"), false)
        .unwrap();
    call.send().unwrap();
    lane.closed();
    assert!(matches!(call.next().await, Err(LaneError::Closed)));
    assert!(!lane.usable());
    let mut late = lane
        .call(CallToolRequestParams::new("echo"), false)
        .unwrap();
    assert!(matches!(late.send(), Err(LaneError::Closed)));
}

#[tokio::test]
async fn calls_waiting_when_the_connection_closes_its_writer_fail_at_once() {
    let (near, _far) = tokio::io::duplex(64 * 1024);
    let (mut rmcp, frames, task) = wire::writer(near, true);
    let lane = Lane::new(frames);
    lane.base_meta.set(RequestMetaObject::new()).unwrap();
    let mut call = lane
        .call(CallToolRequestParams::new("echo"), false)
        .unwrap();
    call.send().unwrap();
    // rmcp closing the transport (a cancelled connection) stops the writer; nobody reads.
    tokio::io::AsyncWriteExt::shutdown(&mut rmcp).await.unwrap();
    task.await.unwrap();
    assert!(matches!(call.next().await, Err(LaneError::Closed)));
    assert!(!lane.usable());
}
