use super::*;

/// The headers of a request the lane takes, with `changes` applied (`None` removes).
fn headers(changes: &[(&str, Option<&str>)]) -> HeaderMap {
    let mut base: Vec<(&str, Option<&str>)> = vec![
        ("host", Some("127.0.0.1:8080")),
        ("accept", Some("application/json, text/event-stream")),
        ("content-type", Some("application/json")),
        ("content-length", Some("120")),
        ("mcp-protocol-version", Some("2026-07-28")),
        ("mcp-method", Some("tools/call")),
        ("mcp-name", Some("notes__echo")),
    ];
    for (name, value) in changes {
        base.retain(|(n, _)| n != name);
        base.push((name, *value));
    }
    let mut map = HeaderMap::new();
    for (name, value) in base {
        if let Some(value) = value {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
    }
    map
}

#[test]
fn only_requests_judged_exactly_as_rmcp_would_are_taken() {
    let check = |changes: &[(&str, Option<&str>)], fits: bool| {
        assert_eq!(headers_fit(&headers(changes)), fits, "{changes:?}");
    };
    check(&[], true);
    check(&[("host", Some("localhost"))], true);
    check(&[("host", Some("[::1]:9"))], true);
    check(
        &[("accept", Some("text/event-stream;q=0.9, application/json"))],
        true,
    );
    check(
        &[("content-type", Some("application/json; charset=utf-8"))],
        true,
    );
    // rmcp's DNS-rebinding rules: another host, any Origin.
    check(&[("host", Some("gateway.example:8080"))], false);
    check(&[("host", None)], false);
    check(&[("origin", Some("http://127.0.0.1:8080"))], false);
    // Sessions, other eras, other methods, missing or doubled SEP-2243 headers.
    check(&[("mcp-session-id", Some("abc"))], false);
    check(&[("mcp-protocol-version", Some("2025-11-25"))], false);
    check(&[("mcp-protocol-version", None)], false);
    check(&[("mcp-method", Some("tools/list"))], false);
    check(&[("mcp-method", None)], false);
    check(&[("accept", Some("application/json"))], false);
    check(&[("content-type", Some("text/plain"))], false);
    // A body of unknown or excessive length is rmcp's to refuse.
    check(&[("content-length", None)], false);
    check(&[("content-length", Some("99999999"))], false);
    let mut doubled = headers(&[]);
    doubled.append("mcp-method", "tools/call".parse().unwrap());
    assert!(!headers_fit(&doubled));
}

#[test]
fn hosts_lose_their_port() {
    for (host, name) in [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("LOCALHOST", "localhost"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("example.com", "example.com"),
    ] {
        assert_eq!(host_name(host), name);
    }
}
