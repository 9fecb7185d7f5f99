//! Every validation error, with its message.

use super::*;

#[test]
fn validation_errors() {
    let head = "version: v1\nrules:\n";
    for (fixture, expected) in [
        // the file
        (
            "",
            "a.yaml: expected a mapping with `version: v1` and `rules`, found nothing (null)",
        ),
        (
            "[1]",
            "a.yaml: expected a mapping with `version: v1` and `rules`, found a list",
        ),
        (
            "rules: []",
            "a.yaml: key `version`: missing (expected `version: v1`)",
        ),
        (
            "version: v2\nrules: []",
            r#"a.yaml: key `version`: unsupported version "v2" (expected v1)"#,
        ),
        (
            "version: 1\nrules: []",
            "a.yaml: key `version`: unsupported version 1 (expected v1)",
        ),
        (
            "version: v1",
            "a.yaml: key `rules`: missing (expected a list of rules)",
        ),
        (
            "version: v1\nrules: {}",
            "a.yaml: key `rules`: expected a list of rules, found a mapping",
        ),
        (
            "version: v1\nrules: []\nextra: 1",
            "a.yaml: key `extra`: unknown key (expected one of `version`, `rules`, `output`)",
        ),
        (
            "version: v1\nrules:\n  - id: [",
            "a.yaml: invalid YAML: did not find expected node content at line 4 column 1, while parsing a flow node",
        ),
        (
            "version: v1\nversion: v1\nrules: []",
            "a.yaml: invalid YAML: duplicate entry with key \"version\"",
        ),
        // the rule and its id
        (
            "version: v1\nrules: [x]",
            "a.yaml: key `rules[0]`: expected a rule (a mapping), found a string",
        ),
        (
            "version: v1\nrules: [{ decision: DENY }]",
            "a.yaml: key `rules[0].id`: missing (every rule needs an id)",
        ),
        (
            "version: v1\nrules: [{ id: 3, decision: DENY }]",
            "a.yaml: key `rules[0].id`: expected a string, found a number",
        ),
        (
            "version: v1\nrules: [{ id: a b, decision: DENY }]",
            r#"a.yaml: key `rules[0].id`: invalid id "a b" (1 to 128 characters, no spaces)"#,
        ),
        (
            "version: v1\nrules: [{ id: '', decision: DENY }]",
            r#"a.yaml: key `rules[0].id`: invalid id "" (1 to 128 characters, no spaces)"#,
        ),
        // unknown keys, anywhere
        (
            "  - id: r\n    decision: DENY\n    matches: {}",
            "a.yaml: rule `r` (line 3): key `matches`: unknown key (expected one of `id`, `description`, `match`, `mcp`, `auth`, `decision`, `constraints`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { lables: {} }",
            "a.yaml: rule `r` (line 3): key `match.lables`: unknown key (expected one of `labels`, `auth`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { auth: { require_scope: true } }",
            "a.yaml: rule `r` (line 3): key `match.auth.require_scope`: unknown key (expected one of `require_scope_match`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    auth: { scope: true }",
            "a.yaml: rule `r` (line 3): key `auth.scope`: unknown key (expected one of `require_scope_match`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { deny_servers: [a] }",
            "a.yaml: rule `r` (line 3): key `mcp.deny_servers`: unknown key (expected one of `deny_servers_not_in`, `args`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, equals: 1, equal: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].equal`: unknown key (expected one of `pointer`, `equals`, `in`, `regex`, `min`, `max`, `not`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { timeout: 1 }",
            "a.yaml: rule `r` (line 3): key `constraints.timeout`: unknown key (expected one of `max_runtime_sec`, `max_retries`, `max_chain_depth`, `max_chain_calls`, `max_fanout`)",
        ),
        // unknown label key
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.verb: x } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.verb`: unknown label key (expected one of `mcp.server`, `mcp.tool`, `mcp.action`, `mcp.domain`, `principal.id`, `principal.label`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: 1 } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool`: expected a glob or a list of globs, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: [] } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool`: empty list (expected at least one glob)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: [a, 2] } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool[1]`: expected a string, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: '' } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool`: empty glob (use \"*\" to match anything)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: [] }",
            "a.yaml: rule `r` (line 3): key `match.labels`: expected a mapping, found a list",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { auth: { require_scope_match: yes } }",
            r#"a.yaml: rule `r` (line 3): key `match.auth.require_scope_match`: expected true or false, found "yes""#,
        ),
        // decisions
        (
            "  - id: r\n    decision: allow",
            r#"a.yaml: rule `r` (line 3): key `decision`: unknown decision "allow" (expected ALLOW, REQUIRE_APPROVAL or DENY)"#,
        ),
        (
            "  - id: r\n    decision: APPROVE",
            r#"a.yaml: rule `r` (line 3): key `decision`: unknown decision "APPROVE" (expected ALLOW, REQUIRE_APPROVAL or DENY)"#,
        ),
        (
            "  - id: r\n    match: {}",
            "a.yaml: rule `r` (line 3): key `decision`: missing (expected ALLOW, REQUIRE_APPROVAL or DENY)",
        ),
        // argument matchers
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, regex: '(' }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].regex`: invalid regex: regex parse error:\n    (\n    ^\nerror: unclosed group",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: a, equals: 1 }] }",
            r#"a.yaml: rule `r` (line 3): key `mcp.args[0].pointer`: JSON pointer "a" must start with `/` (e.g. `/path`)"#,
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a~2, equals: 1 }] }",
            r#"a.yaml: rule `r` (line 3): key `mcp.args[0].pointer`: JSON pointer "/a~2": `~` must be `~0` or `~1`"#,
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ equals: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].pointer`: missing (a JSON pointer such as `/path`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0]`: needs exactly one of `equals`, `in`, `regex` or `min`/`max`, found 0",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, equals: 1, regex: x }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0]`: needs exactly one of `equals`, `in`, `regex` or `min`/`max`, found 2",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, in: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].in`: expected a list of values, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, in: [] }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].in`: empty list (expected at least one value)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, min: x }] }",
            r#"a.yaml: rule `r` (line 3): key `mcp.args[0].min`: expected a number, found "x""#,
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, min: 2, max: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0]`: min 2 is greater than max 1",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, min: 2, not: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].not`: expected true or false, found 1",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: { pointer: /a } }",
            "a.yaml: rule `r` (line 3): key `mcp.args`: expected a list of argument matchers, found a mapping",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { deny_servers_not_in: [] }",
            "a.yaml: rule `r` (line 3): key `mcp.deny_servers_not_in`: empty list (expected at least one glob)",
        ),
        // constraints
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_runtime_sec: 0 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_runtime_sec`: expected a number of seconds greater than 0, found 0",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_runtime_sec: -5 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_runtime_sec`: expected a number of seconds greater than 0, found -5",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_runtime_sec: ten }",
            r#"a.yaml: rule `r` (line 3): key `constraints.max_runtime_sec`: expected a number, found "ten""#,
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_retries: -1 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_retries`: expected a whole number >= 0, found -1",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_retries: 1.5 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_retries`: expected a whole number >= 0, found 1.5",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_retries: 5000000000 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_retries`: expected a whole number >= 0, found 5000000000",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: 5",
            "a.yaml: rule `r` (line 3): key `constraints`: expected a mapping, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    description: 5",
            "a.yaml: rule `r` (line 3): key `description`: expected a string, found a number",
        ),
        // the line is found in flow style too
        (
            "  - { id: \"r\", decision: NO }",
            r#"a.yaml: rule `r` (line 3): key `decision`: unknown decision "NO" (expected ALLOW, REQUIRE_APPROVAL or DENY)"#,
        ),
    ] {
        let fixture = if fixture.starts_with("  - ") {
            format!("{head}{fixture}")
        } else {
            fixture.to_owned()
        };
        check(&fixture, req(), &format!("error: {expected}"));
    }
    // duplicate ids, within a file and across files
    check(
        &format!("{head}  - {{ id: r, decision: DENY }}\n  - {{ id: r, decision: ALLOW }}"),
        req(),
        "error: a.yaml: rule `r` (line 3): duplicate id (also defined in a.yaml)",
    );
    check(
        &format!(
            "{head}  - {{ id: r, decision: DENY }}\n#- b.yaml\n{head}  - id: s\n    decision: DENY\n  - id: r\n    decision: ALLOW"
        ),
        req(),
        "error: b.yaml: rule `r` (line 5): duplicate id (also defined in a.yaml)",
    );
}
