use std::collections::BTreeMap;

use serde_json::json;
use time::macros::datetime;

use super::*;

fn fp() -> Fingerprint {
    Fingerprint {
        transport: "stdio".into(),
        target: "python3 server.py".into(),
        files: BTreeMap::from([("/srv/server.py".to_owned(), "ab".repeat(32))]),
        server_name: Some("notes".into()),
        server_version: Some("1.0.0".into()),
        protocol_version: Some("2026-07-28".into()),
    }
}

fn tool(name: &str, description: &str) -> PinnedItem {
    hashed(
        name,
        tool_definition(
            &json!({"name": name, "description": description, "inputSchema": {"type": "object"}, "_meta": {"x": 1}}),
        ),
    )
}

fn record() -> PinRecord {
    PinRecord {
        at: "2026-11-21T00:00:00Z".into(),
        by: "ops".into(),
        ticket: Some("CHG-1".into()),
    }
}

fn lock() -> Lock {
    Lock::new(
        "notes",
        fp(),
        vec![tool("b", "Second."), tool("a", "First.")],
        vec![],
        vec![],
        record(),
    )
}

fn live(items: &[PinnedItem]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|i| (i.name.clone(), i.sha256.clone()))
        .collect()
}

#[test]
fn definitions_keep_only_pinned_keys_and_sort_items() {
    let l = lock();
    assert_eq!(
        l.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let def = &l.tools.first().unwrap().definition;
    assert!(def.get("_meta").is_none());
    assert_eq!(def.get("description"), Some(&json!("First.")));
    // The text form is stable: pinning the same content twice gives the same bytes.
    let again = Lock::new(
        "notes",
        fp(),
        vec![tool("a", "First."), tool("b", "Second.")],
        vec![],
        vec![],
        record(),
    );
    assert_eq!(l.to_text(), again.to_text());
    assert!(l.same_content(&again));
}

#[test]
fn manifest_hash_covers_definitions_and_fingerprint() {
    let base = lock();
    let changed_tool = Lock::new(
        "notes",
        fp(),
        vec![tool("a", "First!"), tool("b", "Second.")],
        vec![],
        vec![],
        record(),
    );
    assert_ne!(base.manifest_sha256, changed_tool.manifest_sha256);
    let mut other_fp = fp();
    other_fp.server_version = Some("1.0.1".into());
    let changed_fp = Lock::new(
        "notes",
        other_fp,
        vec![tool("a", "First."), tool("b", "Second.")],
        vec![],
        vec![],
        record(),
    );
    assert_ne!(base.manifest_sha256, changed_fp.manifest_sha256);
    assert!(!base.same_content(&changed_fp));
}

fn check(
    live_tools: &[PinnedItem],
    live_fp: Fingerprint,
    expected: &[(&str, ItemState)],
    whole: bool,
    unpinned: &[&str],
) {
    let v = judge(
        &lock(),
        &live_fp,
        &live(live_tools),
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    let got: Vec<(&str, ItemState)> = v
        .tools
        .iter()
        .map(|(n, s)| (n.as_str(), s.clone()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        !v.upstream_drift.is_empty(),
        whole,
        "{:?}",
        v.upstream_drift
    );
    assert_eq!(
        v.unpinned.iter().map(String::as_str).collect::<Vec<_>>(),
        unpinned
    );
}

#[test]
fn judging_live_manifests() {
    use ItemState::*;
    // unchanged
    check(
        &[tool("a", "First."), tool("b", "Second.")],
        fp(),
        &[("a", Pinned), ("b", Pinned)],
        false,
        &[],
    );
    // a rug pull on b
    check(
        &[tool("a", "First."), tool("b", "Second. <IMPORTANT>")],
        fp(),
        &[("a", Pinned), ("b", Drifted)],
        false,
        &[],
    );
    // b removed, c added (not exposed until pinned)
    check(
        &[tool("a", "First."), tool("c", "New.")],
        fp(),
        &[("a", Pinned), ("b", Removed)],
        false,
        &["tool c"],
    );
    // another binary: the whole upstream drifted
    let mut other = fp();
    other.files.insert("/srv/server.py".into(), "cd".repeat(32));
    check(
        &[tool("a", "First."), tool("b", "Second.")],
        other,
        &[("a", Pinned), ("b", Pinned)],
        true,
        &[],
    );
}

#[test]
fn drifted_names_lists_items_only() {
    let v = judge(
        &lock(),
        &fp(),
        &live(&[tool("a", "x"), tool("b", "Second.")]),
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    assert_eq!(v.drifted_names(), ["a"]);
}

#[test]
fn windows_parse_and_contain() {
    let w = Window::parse("Mon-Fri 09:00-17:00").unwrap();
    assert!(w.contains(datetime!(2026-11-23 09:00 UTC))); // a Monday
    assert!(!w.contains(datetime!(2026-11-23 17:00 UTC)));
    assert!(!w.contains(datetime!(2026-11-22 10:00 UTC))); // a Sunday
    let wrap = Window::parse("Sat-Mon 00:00-24:00").unwrap();
    assert!(wrap.contains(datetime!(2026-11-22 23:59 UTC)));
    assert!(wrap.contains(datetime!(2026-11-23 00:01 UTC)));
    assert!(!wrap.contains(datetime!(2026-11-24 12:00 UTC)));
    for bad in [
        "",
        "Mon",
        "Funday 09:00-10:00",
        "Mon 10:00-09:00",
        "Mon 25:00-26:00",
        "Mon 09:00",
    ] {
        assert!(Window::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn drift_is_covered_by_a_window_or_a_live_ticket() {
    let windows = [Window::parse("Tue 22:00-23:00").unwrap()];
    let tickets = [Ticket {
        upstream: "notes".into(),
        id: "CHG-7".into(),
        until: datetime!(2026-12-01 00:00 UTC),
    }];
    let monday = datetime!(2026-11-23 03:00 UTC);
    assert_eq!(
        drift_cover(monday, "notes", &windows, &tickets),
        Ok(Some("CHG-7"))
    );
    assert_eq!(drift_cover(monday, "other", &windows, &tickets), Err(()));
    assert_eq!(
        drift_cover(datetime!(2026-11-24 22:30 UTC), "other", &windows, &tickets),
        Ok(None)
    );
    assert_eq!(
        drift_cover(datetime!(2026-12-02 03:00 UTC), "notes", &windows, &tickets),
        Err(())
    );
}

#[test]
fn annotations_that_contradict_a_read_class_are_flagged() {
    let annotated = |name: &str, annotations: serde_json::Value| {
        hashed(
            name,
            tool_definition(
                &json!({"name": name, "inputSchema": {"type": "object"}, "annotations": annotations}),
            ),
        )
    };
    let l = Lock::new(
        "notes",
        fp(),
        vec![
            annotated("honest", json!({"readOnlyHint": true})),
            annotated("writes", json!({"readOnlyHint": false})),
            annotated("wipes", json!({"destructiveHint": true})),
            annotated("declared_write", json!({"readOnlyHint": false})),
            tool("silent", "No hints."),
        ],
        vec![],
        vec![],
        record(),
    );
    let flagged = class_hint_conflicts(&l, |t| t != "declared_write");
    assert_eq!(flagged.len(), 2, "{flagged:?}");
    assert!(flagged[0].contains("`wipes`") && flagged[0].contains("destructiveHint: true"));
    assert!(flagged[1].contains("`writes`") && flagged[1].contains("readOnlyHint: false"));
}
