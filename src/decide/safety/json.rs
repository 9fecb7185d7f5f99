//! Structured content: every string of a JSON value, object keys included (keys reach the
//! model too), scanned and redacted in place. Redaction only ever replaces a string by another
//! string, so the value stays valid JSON and valid against any schema that constrains strings
//! by type only (a `pattern`, `format`, `enum` or length constraint on a redacted string may
//! no longer hold: the lead's stage can QUARANTINE instead when that matters).

use serde_json::{Map, Value};

use super::{Action, Classifier, Finding, redact};

/// `parent` extended by one reference token, escaped per RFC 6901.
fn child(parent: &str, token: &str) -> String {
    let mut out = String::with_capacity(parent.len() + token.len() + 1);
    out.push_str(parent);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

impl Classifier {
    /// Every finding in every string of `v` (values and object keys), each with the JSON
    /// pointer of its string (for a key: of its member, with `in_key` set); in document order.
    pub fn scan_json(&self, v: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        // an explicit stack: a value built in code may be nested deeper than the call stack
        let mut stack: Vec<(String, &Value)> = vec![(String::new(), v)];
        while let Some((pointer, value)) = stack.pop() {
            match value {
                Value::String(s) => self.scan_into(s, &pointer, false, &mut out),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((child(&pointer, &i.to_string()), item));
                    }
                }
                Value::Object(members) => {
                    let mut children = Vec::with_capacity(members.len());
                    for (key, item) in members {
                        let at = child(&pointer, key);
                        self.scan_into(key, &at, true, &mut out);
                        children.push((at, item));
                    }
                    stack.extend(children.into_iter().rev());
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        out
    }

    fn scan_into(&self, s: &str, pointer: &str, in_key: bool, out: &mut Vec<Finding>) {
        let found = self.scan(s);
        out.extend(found.into_iter().map(|f| Finding {
            pointer: pointer.to_owned(),
            in_key,
            ..f
        }));
    }

    /// Mask, in place, every finding of every string of `v` whose action is
    /// [`Action::Redact`] or stronger (see [`redact`]). A key whose mask equals another key of
    /// the same object gets ` (2)`, ` (3)` … appended, so no member is lost.
    pub fn redact_json(&self, v: &mut Value, act: impl Fn(&Finding) -> Action) {
        let mut stack: Vec<(String, &mut Value)> = vec![(String::new(), v)];
        while let Some((pointer, value)) = stack.pop() {
            match value {
                Value::String(s) => {
                    if let Some(masked) = self.masked(s, &pointer, false, &act) {
                        *s = masked;
                    }
                }
                Value::Array(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        stack.push((child(&pointer, &i.to_string()), item));
                    }
                }
                Value::Object(members) => {
                    self.redact_keys(members, &pointer, &act);
                    for (key, item) in members.iter_mut() {
                        stack.push((child(&pointer, key), item));
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }

    /// `s` redacted, or `None` when nothing in it is masked.
    fn masked(
        &self,
        s: &str,
        pointer: &str,
        in_key: bool,
        act: &impl Fn(&Finding) -> Action,
    ) -> Option<String> {
        let mut found = self.scan(s);
        if found.is_empty() {
            return None;
        }
        for f in &mut found {
            f.pointer = pointer.to_owned();
            f.in_key = in_key;
        }
        let out = redact(s, &found, act);
        (out != s).then_some(out)
    }

    fn redact_keys(
        &self,
        members: &mut Map<String, Value>,
        pointer: &str,
        act: &impl Fn(&Finding) -> Action,
    ) {
        let renames: Vec<(String, String)> = members
            .keys()
            .filter_map(|k| {
                self.masked(k, &child(pointer, k), true, act)
                    .map(|m| (k.clone(), m))
            })
            .collect();
        if renames.is_empty() {
            return;
        }
        let old = std::mem::take(members);
        for (key, item) in old {
            let new = renames
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(key, |(_, m)| m.clone());
            let mut unique = new.clone();
            let mut n = 2;
            while members.contains_key(&unique) {
                unique = format!("{new} ({n})");
                n += 1;
            }
            members.insert(unique, item);
        }
    }
}
