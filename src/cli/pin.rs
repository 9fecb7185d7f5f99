//! `mcp-warden pin`: read each upstream's live manifest and write (or compare with) its lock.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::decide::pins::{self, Lock, PinRecord, PinnedItem};
use crate::gateway::hub::{Hub, InFlight};
use crate::upstream::client::UpstreamClient;
use crate::upstream::manifest;
use crate::upstream::pinning::{self, LiveItems};
use crate::upstream::registry::{self, UpstreamSpec};
use crate::upstream::{Shared, connect};

/// Arguments of `mcp-warden pin`.
#[derive(Debug, clap::Args)]
pub struct PinArgs {
    /// Upstreams to pin (registry names); all enabled ones when none is named.
    pub names: Vec<String>,
    /// Show what drifted from the lock instead of writing it (exit status 1 when something did).
    #[arg(long)]
    pub diff: bool,
    /// The change ticket this pin is made under (recorded in the lock).
    #[arg(long)]
    pub ticket: Option<String>,
    /// Who pins (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Pin even when the poisoning scan reports findings (they are recorded in the lock).
    #[arg(long)]
    pub accept_findings: bool,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Run `pin`; the exit code is 0 when every upstream was pinned (or, with `--diff`, none drifted).
pub fn main(args: PinArgs) -> std::process::ExitCode {
    super::admin::block_on("pin", async move {
        Ok(if run(args).await? {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        })
    })
}

/// The live state of one upstream, read for pinning.
struct Live {
    fingerprint: pins::Fingerprint,
    items: LiveItems,
}

async fn read_live(
    spec: &UpstreamSpec,
    config: &Config,
    era: Option<rmcp::model::ProtocolVersion>,
) -> anyhow::Result<Live> {
    let hub = Arc::new(Hub::default());
    let shared = Arc::new(Shared {
        name: spec.name.clone(),
        prefix: spec.prefix.clone(),
        inflight: InFlight::default(),
        hub,
    });
    let (refresh, _refresh_rx) = mpsc::unbounded_channel();
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()?;
    let cwd = config.base_dir();
    let credentials = Arc::new(
        crate::auth::credentials::Credentials::from_config(config, config.listen, http.clone())
            .context("reading the gateway's signing keys")?,
    );
    let attempt = async {
        let (running, _lane) = connect::connect(
            spec,
            UpstreamClient::new(shared, refresh, era),
            &http,
            &cwd,
            (&credentials, 0),
        )
        .await?;
        let offered = crate::upstream::offered(running.peer());
        let m = manifest::fetch(running.peer(), offered)
            .await
            .context("reading the manifest")?;
        let fingerprint = pinning::fingerprint(spec, running.peer(), &cwd);
        let _ = running.cancel().await;
        anyhow::Ok(Live {
            fingerprint,
            items: LiveItems::scanned(&m),
        })
    };
    tokio::time::timeout(config.upstream.connect_timeout, attempt)
        .await
        .with_context(|| format!("no answer within {:?}", config.upstream.connect_timeout))?
}

/// The era an upstream's lock records, to reach it in that era without probing.
fn era_of_lock(lock: Option<&Lock>) -> Option<rmcp::model::ProtocolVersion> {
    lock.and_then(|l| l.fingerprint.protocol_version.as_deref())
        .and_then(crate::upstream::client::era_of)
}

/// What pinning one upstream did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// The lock already pinned exactly the live manifest; nothing was written.
    Unchanged {
        /// Pinned tools.
        tools: usize,
        /// The manifest hash.
        manifest: String,
    },
    /// A new lock was written.
    Written {
        /// Pinned tools, prompts and resource templates.
        tools: usize,
        /// Pinned prompts.
        prompts: usize,
        /// Pinned resource templates.
        templates: usize,
        /// The manifest hash.
        manifest: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The poisoning scan reported findings that were not accepted: nothing was written.
    Refused,
}

impl Pinned {
    /// One line saying what happened.
    pub fn describe(&self) -> String {
        match self {
            Self::Unchanged { tools, manifest } => {
                format!("unchanged ({tools} tools, manifest {})", short(manifest))
            }
            Self::Written {
                tools,
                prompts,
                templates,
                manifest,
                path,
            } => format!(
                "pinned {tools} tools, {prompts} prompts, {templates} templates (manifest {}) -> {}",
                short(manifest),
                path.display()
            ),
            Self::Refused => "not pinned: the poisoning scan reports findings".to_owned(),
        }
    }
}

/// The result of [`pin_one`].
#[derive(Debug, Clone)]
pub struct PinReport {
    /// What was done.
    pub outcome: Pinned,
    /// The poisoning scan's findings, one readable line each.
    pub findings: Vec<String>,
    /// Why the lock that was there could not be read (it was replaced).
    pub replaced_invalid: Option<String>,
}

/// Pin one (enabled) upstream: read its live manifest and write its lock, unless the lock
/// already pins exactly that or the poisoning scan reports findings that are not accepted.
/// Used by `mcp-warden pin` and by the admin action `drift_accept`; a serving gateway picks
/// the new lock up on its next recheck.
pub async fn pin_one(
    spec: &UpstreamSpec,
    config: &Config,
    by: &str,
    ticket: Option<String>,
    accept_findings: bool,
) -> anyhow::Result<PinReport> {
    // Registry-only: nothing disabled is ever connected, not even to pin it.
    if !spec.enabled {
        anyhow::bail!(
            "upstream {:?} is disabled in {}",
            spec.name,
            spec.source.display()
        );
    }
    let (existing, replaced_invalid) = match pinning::read_lock(spec) {
        Ok(l) => (l, None),
        Err(error) => (None, Some(error.to_string())),
    };
    let live = read_live(spec, config, era_of_lock(existing.as_ref()))
        .await
        .context("cannot read the live manifest")?;
    let findings: Vec<String> = live
        .items
        .tools
        .iter()
        .chain(&live.items.prompts)
        .chain(&live.items.templates)
        .flat_map(|i| {
            i.findings.iter().map(move |f| {
                format!(
                    "  {}: {} at {}: {}",
                    i.name,
                    f.kind.as_str(),
                    f.location,
                    f.excerpt
                )
            })
        })
        .collect();
    let report = |outcome| PinReport {
        outcome,
        findings: findings.clone(),
        replaced_invalid: replaced_invalid.clone(),
    };
    if !findings.is_empty() && !accept_findings {
        return Ok(report(Pinned::Refused));
    }
    let record = PinRecord {
        at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        by: by.to_owned(),
        ticket,
    };
    let lock = Lock::new(
        &spec.name,
        live.fingerprint,
        live.items.tools,
        live.items.prompts,
        live.items.templates,
        record,
    );
    if existing.as_ref().is_some_and(|e| e.same_content(&lock)) {
        return Ok(report(Pinned::Unchanged {
            tools: lock.tools.len(),
            manifest: lock.manifest_sha256,
        }));
    }
    let path = pinning::write_lock(spec, &lock)?;
    Ok(report(Pinned::Written {
        tools: lock.tools.len(),
        prompts: lock.prompts.len(),
        templates: lock.resource_templates.len(),
        manifest: lock.manifest_sha256,
        path,
    }))
}

async fn run(args: PinArgs) -> anyhow::Result<bool> {
    let config = Config::load(args.config.as_deref())?;
    let specs = registry::load(&config.registry_dir)?;
    for name in &args.names {
        match specs.iter().find(|s| &s.name == name) {
            None => anyhow::bail!(
                "no upstream named {name:?} in {}",
                config.registry_dir.display()
            ),
            // Registry-only: nothing disabled is ever connected, not even to pin it.
            Some(s) if !s.enabled => {
                anyhow::bail!("upstream {name:?} is disabled in {}", s.source.display())
            }
            Some(_) => {}
        }
    }
    let selected: Vec<&UpstreamSpec> = specs
        .iter()
        .filter(|s| {
            if args.names.is_empty() {
                s.enabled
            } else {
                args.names.contains(&s.name)
            }
        })
        .collect();
    let by = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let mut all_ok = true;
    for spec in selected {
        if args.diff {
            // Reach the server in the era it was pinned in (a probe can wait 10 s on old servers).
            let existing = pinning::read_lock(spec)?;
            let live = match read_live(spec, &config, era_of_lock(existing.as_ref())).await {
                Ok(l) => l,
                Err(error) => {
                    eprintln!("{}: cannot read the live manifest: {error:#}", spec.name);
                    all_ok = false;
                    continue;
                }
            };
            all_ok &= print_diff(spec, existing.as_ref(), &live);
            continue;
        }
        let report = match pin_one(
            spec,
            &config,
            &by,
            args.ticket.clone(),
            args.accept_findings,
        )
        .await
        {
            Ok(r) => r,
            Err(error) => {
                eprintln!("{}: {error:#}", spec.name);
                all_ok = false;
                continue;
            }
        };
        if let Some(problem) = &report.replaced_invalid {
            eprintln!("{}: {problem}; it will be replaced", spec.name);
        }
        if !report.findings.is_empty() {
            let verb = if args.accept_findings {
                "accepted (recorded in the lock)"
            } else {
                "refusing to pin"
            };
            eprintln!(
                "{}: the poisoning scan reports {} finding(s), {verb}:",
                spec.name,
                report.findings.len()
            );
            for f in &report.findings {
                eprintln!("{f}");
            }
        }
        match report.outcome {
            Pinned::Refused => {
                eprintln!(
                    "{}: review them; pin with --accept-findings only if they are benign",
                    spec.name
                );
                all_ok = false;
            }
            outcome => println!("{}: {}", spec.name, outcome.describe()),
        }
    }
    Ok(all_ok)
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// Print what differs between the lock and the live manifest; true when nothing does.
fn print_diff(spec: &UpstreamSpec, lock: Option<&Lock>, live: &Live) -> bool {
    let Some(lock) = lock else {
        println!(
            "{}: no lock file: nothing is pinned, nothing is exposed (run `mcp-warden pin {}`)",
            spec.name, spec.name
        );
        return false;
    };
    let mut clean = true;
    for d in lock.fingerprint.differences(&live.fingerprint) {
        println!("{}: fingerprint {d}", spec.name);
        clean = false;
    }
    for (kind, pinned, now) in [
        ("tool", &lock.tools, &live.items.tools),
        ("prompt", &lock.prompts, &live.items.prompts),
        (
            "resource template",
            &lock.resource_templates,
            &live.items.templates,
        ),
    ] {
        clean &= diff_items(&spec.name, kind, pinned, now);
    }
    if clean {
        println!(
            "{}: no drift (manifest {})",
            spec.name,
            short(&lock.manifest_sha256)
        );
    }
    clean
}

fn diff_items(upstream: &str, kind: &str, pinned: &[PinnedItem], live: &[PinnedItem]) -> bool {
    let mut clean = true;
    for p in pinned {
        match live.iter().find(|l| l.name == p.name) {
            None => {
                println!("{upstream}: {kind} `{}` removed", p.name);
                clean = false;
            }
            Some(l) if l.sha256 != p.sha256 => {
                println!("{upstream}: {kind} `{}` changed:", p.name);
                let mut lines = Vec::new();
                json_diff(&p.definition, &l.definition, "", &mut lines);
                for line in lines {
                    println!("    {line}");
                }
                for f in &l.findings {
                    println!(
                        "    scan: {} at {}: {}",
                        f.kind.as_str(),
                        f.location,
                        f.excerpt
                    );
                }
                clean = false;
            }
            Some(_) => {}
        }
    }
    for l in live
        .iter()
        .filter(|l| !pinned.iter().any(|p| p.name == l.name))
    {
        println!(
            "{upstream}: {kind} `{}` is new (not exposed until pinned)",
            l.name
        );
        clean = false;
    }
    clean
}

/// Readable differences between two definitions: text diffs of strings, added/removed/changed
/// values by JSON pointer.
fn json_diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => json_diff(va, vb, &p, out),
                    (Some(va), None) => out.push(format!("- {p}: {va}")),
                    (None, Some(vb)) => out.push(format!("+ {p}: {vb}")),
                    (None, None) => {}
                }
            }
        }
        (Value::String(sa), Value::String(sb)) if sa != sb => {
            out.push(format!("~ {path}:"));
            let diff = similar::TextDiff::from_words(sa.as_str(), sb.as_str());
            let mut line = String::new();
            let mut open: Option<similar::ChangeTag> = None;
            let close = |tag: Option<similar::ChangeTag>, line: &mut String| match tag {
                Some(similar::ChangeTag::Delete) => line.push_str("-]"),
                Some(similar::ChangeTag::Insert) => line.push_str("+}"),
                _ => {}
            };
            for change in diff.iter_all_changes() {
                let tag = change.tag();
                if open != Some(tag) {
                    close(open, &mut line);
                    match tag {
                        similar::ChangeTag::Delete => line.push_str("[-"),
                        similar::ChangeTag::Insert => line.push_str("{+"),
                        similar::ChangeTag::Equal => {}
                    }
                    open = Some(tag);
                }
                line.push_str(change.value());
            }
            close(open, &mut line);
            out.push(format!("    {}", line.escape_debug()));
        }
        _ if a != b => out.push(format!("~ {path}: {a} -> {b}")),
        _ => {}
    }
}
