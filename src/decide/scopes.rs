//! Scope segmentation: what a principal may do, per upstream and action class. A scope is
//! written `<upstream>:<class>`, each side a name or `*` (`notes:read`, `*:read`, `notes:*`).
//! Pure: parsed once at load, checked per call without allocating.

/// The action classes a scope may name.
const CLASSES: &[&str] = &["read", "write", "destructive"];

/// One parsed scope.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    /// An upstream name, or `None` for `*`.
    server: Option<String>,
    /// An action class, or `None` for `*`.
    class: Option<&'static str>,
}

/// The scopes of a principal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parse `<upstream>:<class>` strings; the error names the bad scope and what was expected.
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(scopes.len());
        for s in scopes {
            let s = s.as_ref();
            let Some((server, class)) = s.split_once(':') else {
                return Err(format!(
                    "scope {s:?}: expected `<upstream>:<class>` such as `notes:read` or `*:read`"
                ));
            };
            let server = match server {
                "*" => None,
                "" => {
                    return Err(format!(
                        "scope {s:?}: the upstream is empty (use `*` for any)"
                    ));
                }
                name if name.contains('*') => {
                    return Err(format!(
                        "scope {s:?}: the upstream is a name or `*`, not a pattern"
                    ));
                }
                name => Some(name.to_owned()),
            };
            let class = match class {
                "*" => None,
                c => Some(CLASSES.iter().copied().find(|k| *k == c).ok_or_else(|| {
                    format!("scope {s:?}: the class must be read, write, destructive or `*`")
                })?),
            };
            out.push(Scope { server, class });
        }
        Ok(Self(out))
    }

    /// Whether some scope covers `class` calls on `server`.
    pub fn covers(&self, server: &str, class: &str) -> bool {
        self.0.iter().any(|s| {
            s.server.as_deref().is_none_or(|n| n == server) && s.class.is_none_or(|c| c == class)
        })
    }

    /// The scopes as written (`*` for a wildcard side).
    pub fn render(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|s| {
                format!(
                    "{}:{}",
                    s.server.as_deref().unwrap_or("*"),
                    s.class.unwrap_or("*")
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scopes: &[&str], server: &str, class: &str, expected: bool) {
        let s = Scopes::parse(scopes).unwrap();
        assert_eq!(
            s.covers(server, class),
            expected,
            "{scopes:?} covers {server}:{class}"
        );
    }

    #[test]
    fn coverage() {
        check(&["notes:read"], "notes", "read", true);
        check(&["notes:read"], "notes", "write", false);
        check(&["notes:read"], "jira", "read", false);
        check(&["*:read"], "jira", "read", true);
        check(&["*:read"], "jira", "destructive", false);
        check(&["notes:*"], "notes", "destructive", true);
        check(&["*:*"], "x", "write", true);
        check(&[], "notes", "read", false);
        check(&["jira:write", "notes:read"], "notes", "read", true);
    }

    #[test]
    fn bad_scopes_are_named() {
        for (bad, needle) in [
            ("notes", "expected `<upstream>:<class>`"),
            (":read", "upstream is empty"),
            ("no*tes:read", "not a pattern"),
            ("notes:admin", "class must be"),
        ] {
            let e = Scopes::parse(&[bad]).unwrap_err();
            assert!(e.contains(needle) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn renders_as_written() {
        let s = Scopes::parse(&["notes:read", "*:*"]).unwrap();
        assert_eq!(s.render(), ["notes:read", "*:*"]);
    }
}
