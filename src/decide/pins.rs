//! Pinned manifests: what a lock file holds, how a definition is hashed, and how a live
//! manifest is judged against its lock. Pure: the caller reads files, servers and the clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::canonical;
use super::scan::Finding;

/// The lock format's version.
pub const LOCK_VERSION: u32 = 1;

/// Keys of a tool definition that are pinned (everything an agent or model reads).
const TOOL_KEYS: &[&str] = &[
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// Who the server is and how it is reached; any change is drift of the whole upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// `stdio` or `http`.
    pub transport: String,
    /// The command line as registered, or the URL.
    pub target: String,
    /// For a stdio upstream: sha256 of the resolved program and of every argument that names a
    /// file, by path (`builtin` for the gateway's own fixtures).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// `serverInfo.name`.
    pub server_name: Option<String>,
    /// `serverInfo.version`.
    pub server_version: Option<String>,
    /// The negotiated protocol version.
    pub protocol_version: Option<String>,
}

impl Fingerprint {
    /// A readable list of what differs from `other`.
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let mut field =
            |name: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug, same: bool| {
                if !same {
                    out.push(format!("{name}: pinned {a:?}, live {b:?}"));
                }
            };
        field(
            "transport",
            &self.transport,
            &other.transport,
            self.transport == other.transport,
        );
        field(
            "target",
            &self.target,
            &other.target,
            self.target == other.target,
        );
        field(
            "files",
            &self.files,
            &other.files,
            self.files == other.files,
        );
        field(
            "server name",
            &self.server_name,
            &other.server_name,
            self.server_name == other.server_name,
        );
        field(
            "server version",
            &self.server_version,
            &other.server_version,
            self.server_version == other.server_version,
        );
        field(
            "protocol version",
            &self.protocol_version,
            &other.protocol_version,
            self.protocol_version == other.protocol_version,
        );
        out
    }
}

/// One pinned tool, prompt or resource template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedItem {
    /// Tool or prompt name, or the template's URI template.
    pub name: String,
    /// sha256 of the canonical JSON of `definition`.
    pub sha256: String,
    /// The definition agents are shown (keys sorted).
    pub definition: Value,
    /// Poisoning-scan findings accepted at pin time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// When, by whom and under which change ticket a lock was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRecord {
    /// RFC 3339 UTC.
    pub at: String,
    /// Who pinned.
    pub by: String,
    /// The change ticket, if any.
    pub ticket: Option<String>,
}

/// The content of `registry/<name>.lock.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// [`LOCK_VERSION`].
    pub lock_version: u32,
    /// The upstream's registry name.
    pub upstream: String,
    /// The server's fingerprint.
    pub fingerprint: Fingerprint,
    /// sha256 over the fingerprint and every item hash.
    pub manifest_sha256: String,
    /// Who pinned, when, why.
    pub pinned: PinRecord,
    /// Tools by name.
    pub tools: Vec<PinnedItem>,
    /// Prompts by name.
    pub prompts: Vec<PinnedItem>,
    /// Resource templates by URI template.
    pub resource_templates: Vec<PinnedItem>,
}

impl Lock {
    /// Assemble a lock; items are sorted by name and hashed.
    pub fn new(
        upstream: &str,
        fingerprint: Fingerprint,
        tools: Vec<PinnedItem>,
        prompts: Vec<PinnedItem>,
        resource_templates: Vec<PinnedItem>,
        pinned: PinRecord,
    ) -> Self {
        let sort = |mut v: Vec<PinnedItem>| {
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        let (tools, prompts, resource_templates) =
            (sort(tools), sort(prompts), sort(resource_templates));
        let manifest_sha256 = manifest_sha256(&fingerprint, &tools, &prompts, &resource_templates);
        Self {
            lock_version: LOCK_VERSION,
            upstream: upstream.to_owned(),
            fingerprint,
            manifest_sha256,
            pinned,
            tools,
            prompts,
            resource_templates,
        }
    }

    /// Whether `other` pins the same thing (everything but the pin record).
    pub fn same_content(&self, other: &Self) -> bool {
        self.manifest_sha256 == other.manifest_sha256
            && self.upstream == other.upstream
            && self.tools == other.tools
            && self.prompts == other.prompts
            && self.resource_templates == other.resource_templates
    }

    /// The file text: pretty JSON, keys in a fixed order, trailing newline.
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// sha256 over the fingerprint and the item hashes.
pub fn manifest_sha256(
    fp: &Fingerprint,
    tools: &[PinnedItem],
    prompts: &[PinnedItem],
    templates: &[PinnedItem],
) -> String {
    let hashes = |items: &[PinnedItem]| -> Value {
        Value::Object(
            items
                .iter()
                .map(|i| (i.name.clone(), Value::String(i.sha256.clone())))
                .collect(),
        )
    };
    let v = serde_json::json!({
        "fingerprint": serde_json::to_value(fp).unwrap_or(Value::Null),
        "tools": hashes(tools),
        "prompts": hashes(prompts),
        "resource_templates": hashes(templates),
    });
    canonical::sha256(&v)
}

/// The pinned part of a tool definition (JSON of an MCP tool), keys sorted.
pub fn tool_definition(tool: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(map) = tool {
        for key in TOOL_KEYS {
            if let Some(v) = map.get(*key) {
                out.insert((*key).to_owned(), v.clone());
            }
        }
    }
    canonical::sorted(&Value::Object(out))
}

/// A whole definition (prompts, templates), keys sorted, without `_meta`.
pub fn plain_definition(def: &Value) -> Value {
    let mut v = def.clone();
    if let Value::Object(map) = &mut v {
        map.remove("_meta");
    }
    canonical::sorted(&v)
}

/// Hash one definition, without scanning it.
pub fn hashed(name: &str, definition: Value) -> PinnedItem {
    PinnedItem {
        name: name.to_owned(),
        sha256: canonical::sha256(&definition),
        findings: Vec::new(),
        definition,
    }
}

/// Where one pinned item stands against the live manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemState {
    /// The live definition is the pinned one.
    Pinned,
    /// The live definition differs from the pin: withheld.
    Drifted,
    /// The live manifest no longer has it.
    Removed,
}

/// The judgement of a live manifest against its lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the whole upstream is withheld (fingerprint changed), if it is.
    pub upstream_drift: Vec<String>,
    /// Pinned tools by name.
    pub tools: BTreeMap<String, ItemState>,
    /// Pinned prompts by name.
    pub prompts: BTreeMap<String, ItemState>,
    /// Pinned templates by URI template.
    pub templates: BTreeMap<String, ItemState>,
    /// Live items that are not pinned (not exposed until pinned).
    pub unpinned: BTreeSet<String>,
}

impl Verdict {
    /// Names of drifted items, for logs and events.
    pub fn drifted_names(&self) -> Vec<&str> {
        [&self.tools, &self.prompts, &self.templates]
            .into_iter()
            .flat_map(|m| {
                m.iter()
                    .filter(|(_, s)| **s == ItemState::Drifted)
                    .map(|(n, _)| n.as_str())
            })
            .collect()
    }
}

/// Judge live definitions (name → sha256) against `lock`.
pub fn judge(
    lock: &Lock,
    live_fp: &Fingerprint,
    live_tools: &BTreeMap<String, String>,
    live_prompts: &BTreeMap<String, String>,
    live_templates: &BTreeMap<String, String>,
) -> Verdict {
    let state =
        |pinned: &[PinnedItem], live: &BTreeMap<String, String>| -> BTreeMap<String, ItemState> {
            pinned
                .iter()
                .map(|p| {
                    let s = match live.get(&p.name) {
                        Some(h) if *h == p.sha256 => ItemState::Pinned,
                        Some(_) => ItemState::Drifted,
                        None => ItemState::Removed,
                    };
                    (p.name.clone(), s)
                })
                .collect()
        };
    let mut unpinned = BTreeSet::new();
    for (pinned, live, kind) in [
        (&lock.tools, live_tools, "tool"),
        (&lock.prompts, live_prompts, "prompt"),
        (
            &lock.resource_templates,
            live_templates,
            "resource template",
        ),
    ] {
        for name in live.keys() {
            if !pinned.iter().any(|p| &p.name == name) {
                unpinned.insert(format!("{kind} {name}"));
            }
        }
    }
    Verdict {
        upstream_drift: lock.fingerprint.differences(live_fp),
        tools: state(&lock.tools, live_tools),
        prompts: state(&lock.prompts, live_prompts),
        templates: state(&lock.resource_templates, live_templates),
        unpinned,
    }
}

/// A deploy window: days of the week and a time range, UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    days: [bool; 7],
    start: u16,
    end: u16,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Option<usize> {
    DAYS.iter().position(|d| d.eq_ignore_ascii_case(s))
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl Window {
    /// Parse `"Mon-Fri 09:00-17:00"`, `"Sat,Sun 00:00-24:00"` or `"Tue 22:00-23:30"` (UTC).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a window such as \"Mon-Fri 09:00-17:00\" (UTC), got {s:?}");
        let (days_s, times) = s.trim().split_once(' ').ok_or_else(bad)?;
        let mut days = [false; 7];
        for part in days_s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?);
                    let mut d = a;
                    loop {
                        if let Some(slot) = days.get_mut(d) {
                            *slot = true;
                        }
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => {
                    if let Some(slot) = days.get_mut(day_index(part).ok_or_else(bad)?) {
                        *slot = true;
                    }
                }
            }
        }
        let (a, b) = times.trim().split_once('-').ok_or_else(bad)?;
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start >= end {
            return Err(bad());
        }
        Ok(Self { days, start, end })
    }

    /// Whether `now` falls inside.
    pub fn contains(&self, now: time::OffsetDateTime) -> bool {
        let now = now.to_offset(time::UtcOffset::UTC);
        let day = usize::from(now.weekday().number_days_from_monday());
        let minute = u16::from(now.hour()) * 60 + u16::from(now.minute());
        self.days.get(day).copied().unwrap_or(false) && self.start <= minute && minute < self.end
    }
}

/// A change ticket that covers drift of one upstream until a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The upstream's registry name.
    pub upstream: String,
    /// The ticket id.
    pub id: String,
    /// Until when it covers drift.
    pub until: time::OffsetDateTime,
}

/// How a drift observed at `now` is to be reported: `Ok(ticket)` when a deploy window or a live
/// change ticket covers it (the ticket id, if one), `Err(())` when it is outside every window
/// with no ticket: a `manifest_drift_outside_window` gate event.
pub fn drift_cover<'a>(
    now: time::OffsetDateTime,
    upstream: &str,
    windows: &[Window],
    tickets: &'a [Ticket],
) -> Result<Option<&'a str>, ()> {
    if let Some(t) = tickets
        .iter()
        .find(|t| t.upstream == upstream && now < t.until)
    {
        return Ok(Some(&t.id));
    }
    if windows.iter().any(|w| w.contains(now)) {
        return Ok(None);
    }
    Err(())
}

#[cfg(test)]
mod tests;

/// Where the registry's classification and a pinned tool's annotations disagree: a tool the
/// registry declares `read` whose annotations say `readOnlyHint: false` or
/// `destructiveHint: true`. Annotations are the upstream's untrusted hints, never the
/// classification; a disagreement is flagged for an operator to review. `declared_read` says
/// whether the registry declares a tool `read`.
pub fn class_hint_conflicts(lock: &Lock, declared_read: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for item in &lock.tools {
        if !declared_read(&item.name) {
            continue;
        }
        let hints = item.definition.get("annotations");
        let flag = |key: &str| hints.and_then(|a| a.get(key)).and_then(Value::as_bool);
        if flag("readOnlyHint") == Some(false) {
            out.push(format!(
                "tool `{}` of `{}` is declared read but its annotations say readOnlyHint: false",
                item.name, lock.upstream
            ));
        }
        if flag("destructiveHint") == Some(true) {
            out.push(format!(
                "tool `{}` of `{}` is declared read but its annotations say destructiveHint: true",
                item.name, lock.upstream
            ));
        }
    }
    out
}
