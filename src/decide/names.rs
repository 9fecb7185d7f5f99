//! Namespacing: how upstream names become the names agents see, and back.
//!
//! Rule (documented in the README):
//! - a tool or prompt `t` of an upstream with prefix `p` is exposed as `p__t` (as `t` when the
//!   prefix is empty);
//! - every exposed name matches `^[A-Za-z0-9_-]{1,64}$`. When `p__t` would not, the characters
//!   of `t` outside that set become `_`, and `t` is cut so that `-` and the first 8 hex digits of
//!   sha256(`t`) fit within 64 characters. The hash keeps distinct originals distinct;
//! - a resource URI `u` of an upstream with prefix `p` is exposed as `warden://p/u` (unchanged
//!   when the prefix is empty), which is reversible by stripping `warden://p/`.

use sha2::{Digest, Sha256};

/// Longest exposed name every mainstream client accepts.
pub const MAX_NAME: usize = 64;
/// Longest prefix, so that a tool name keeps at least 29 characters.
pub const MAX_PREFIX: usize = 32;
/// Scheme of namespaced resource URIs.
pub const URI_SCHEME: &str = "warden://";

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The prefix of the gateway's own tools (`warden__quarantine_fetch`); no upstream may use it.
pub const BUILTIN_PREFIX: &str = "warden";

/// Whether `exposed` names one of the gateway's own tools (`warden__…`).
pub fn is_builtin(exposed: &str) -> bool {
    exposed
        .strip_prefix(BUILTIN_PREFIX)
        .is_some_and(|rest| rest.starts_with("__"))
}

/// Whether `name` is acceptable to every client as it is.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.chars().all(allowed)
}

/// Whether `prefix` may namespace an upstream: 1–32 of `[A-Za-z0-9_-]`, starting with a letter or
/// digit, without `__` and not ending in `_` (so `p__t` splits unambiguously).
pub fn is_valid_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_PREFIX
        && prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && prefix.chars().all(allowed)
        && !prefix.contains("__")
        && !prefix.ends_with('_')
}

/// The exposed name of upstream item `name` under `prefix`.
pub fn expose(prefix: &str, name: &str) -> String {
    let head = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}__")
    };
    let plain = format!("{head}{name}");
    if is_valid_name(&plain) {
        return plain;
    }
    let digest = Sha256::digest(name.as_bytes());
    let suffix = format!("-{}", hex::encode(digest.get(..4).unwrap_or_default()));
    let budget = MAX_NAME.saturating_sub(head.len() + suffix.len());
    let body: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(budget)
        .collect();
    format!("{head}{body}{suffix}")
}

/// The exposed form of resource URI `uri` under `prefix`.
pub fn expose_uri(prefix: &str, uri: &str) -> String {
    if prefix.is_empty() {
        uri.to_owned()
    } else {
        format!("{URI_SCHEME}{prefix}/{uri}")
    }
}

/// Split an exposed `warden://p/u` into `(p, u)`; `None` for any other URI.
pub fn split_uri(exposed: &str) -> Option<(&str, &str)> {
    exposed.strip_prefix(URI_SCHEME)?.split_once('/')
}

/// Whether `uri` matches an RFC 6570 template of simple `{var}` expressions (each expression
/// matches one or more characters other than `/`; `{+var}` and `{#var}` match anything).
pub fn matches_template(template: &str, uri: &str) -> bool {
    let mut pattern = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (lit, tail) = rest.split_at(open);
        pattern.push_str(&regex::escape(lit));
        let Some(close) = tail.find('}') else {
            return false;
        };
        let expr = tail.get(1..close).unwrap_or_default();
        pattern.push_str(if expr.starts_with('+') || expr.starts_with('#') {
            ".+"
        } else {
            "[^/]+"
        });
        rest = tail.get(close + 1..).unwrap_or_default();
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    regex::Regex::new(&pattern).is_ok_and(|re| re.is_match(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(prefix: &str, name: &str, expected: &str) {
        let got = expose(prefix, name);
        assert_eq!(got, expected, "expose({prefix:?}, {name:?})");
        assert!(is_valid_name(&got), "{got:?} is not a valid name");
    }

    #[test]
    fn exposed_names() {
        check("notes", "list_notes", "notes__list_notes");
        check("", "test_simple_text", "test_simple_text");
        check("gh", "repo.list", "gh__repo_list-f51676bc");
        check("gh", "repo_list", "gh__repo_list");
        check("", "a b", "a_b-c8687a08");
        let long = "x".repeat(80);
        let got = expose("srv", &long);
        assert_eq!(got.len(), 64);
        assert!(got.starts_with("srv__xxxx"));
        // distinct originals that sanitise alike stay distinct
        assert_ne!(expose("p", "a.b"), expose("p", "a:b"));
        assert_ne!(expose("p", "a.b"), expose("p", "a_b"));
        // unicode never leaks into a name
        check("p", "héllo", "p__h_llo-3c48591d");
    }

    #[test]
    fn prefixes() {
        for ok in ["notes", "a", "gh-1", "my_srv", "0x"] {
            assert!(is_valid_prefix(ok), "{ok}");
        }
        for bad in ["", "_x", "a__b", "x_", "a.b", &"p".repeat(33)] {
            assert!(!is_valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn builtin_names() {
        assert!(is_builtin("warden__quarantine_fetch"));
        for other in ["warden", "wardens__x", "notes__warden__x", "warden_x"] {
            assert!(!is_builtin(other), "{other}");
        }
    }

    #[test]
    fn uris_round_trip() {
        let e = expose_uri("notes", "note://1?x=y#z");
        assert_eq!(e, "warden://notes/note://1?x=y#z");
        assert_eq!(split_uri(&e), Some(("notes", "note://1?x=y#z")));
        assert_eq!(expose_uri("", "test://static-text"), "test://static-text");
        assert_eq!(split_uri("test://static-text"), None);
    }

    #[test]
    fn templates() {
        assert!(matches_template(
            "test://template/{id}/data",
            "test://template/123/data"
        ));
        assert!(!matches_template(
            "test://template/{id}/data",
            "test://template/1/2/data"
        ));
        assert!(matches_template("file:///{+path}", "file:///a/b/c"));
        assert!(!matches_template("note://{id}", "other://1"));
    }
}
