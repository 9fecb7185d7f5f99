//! `mcp-warden gates [--json]`: evaluate the five detection gates from the store, as the
//! running gateway does (no gateway needed), and print each gate's state, value against its
//! threshold, window, owner, firing episode and last page. Writes nothing; exits 0 (2 when the
//! store cannot be read).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::admin::block_on;
use crate::config::Config;
use crate::gates::eval::show;
use crate::gates::evaluator::{Evaluated, evaluate_all};
use crate::store::Store;

/// Arguments of `mcp-warden gates`.
#[derive(Debug, clap::Args)]
pub struct GatesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
}

/// Run `mcp-warden gates`.
pub fn main(args: GatesArgs) -> ExitCode {
    block_on("gates", async move {
        let config = Config::load(args.config.as_deref())?;
        let store = Store::connect(&config.store)
            .await
            .with_context(|| format!("opening the store {}", config.store))?;
        let now = OffsetDateTime::now_utc();
        let all = evaluate_all(&store, &config.gates, now).await;
        store.close().await;
        let all = all.context("reading the store")?;
        if args.json {
            println!("{}", as_json(&all, now));
        } else {
            print!("{}", as_text(&all));
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn as_json(all: &[Evaluated], now: OffsetDateTime) -> Value {
    let gates: Vec<Value> = all
        .iter()
        .map(|e| {
            let g = &e.gate;
            let m = &e.eval.memory;
            json!({
                "gate": g.kind.name(),
                "state": e.eval.state.as_str(),
                "enabled": g.enabled,
                "value": e.eval.value,
                "hits": e.eval.sample.hits,
                "total": e.eval.sample.total,
                "enough_calls": e.eval.enough_calls,
                "threshold": g.threshold,
                "comparison": g.kind.compare().symbol(),
                "target": g.target,
                "above_target": e.eval.above_target,
                "window_sec": g.window.as_secs_f64(),
                "for_sec": g.hold.as_secs_f64(),
                "min_calls": g.min_calls,
                "owner": g.owner,
                "breaching_since": m.breaching_since.map(rfc3339),
                "firing_since": m.firing_since.map(rfc3339),
                "dedup_key": m.dedup_key,
                "page_owed": e.eval.page.map(|p| p.as_str()),
                "last_page": m.last_page.map(|(k, at)| json!({"action": k.as_str(), "at": rfc3339(at)})),
                "last_evaluated": e.stored.as_ref().map(|r| json!({
                    "at": rfc3339(r.evaluated_at),
                    "by": r.evaluated_by,
                    "state": r.state.as_str(),
                })),
            })
        })
        .collect();
    json!({ "at": rfc3339(now), "gates": gates })
}

fn as_text(all: &[Evaluated]) -> String {
    let mut out = format!(
        "{:<18} {:<9} {:>9} {:>10} {:>8} {:>7} {:<20} {:<22} {}\n",
        "GATE",
        "STATE",
        "VALUE",
        "PAGE WHEN",
        "WINDOW",
        "FOR",
        "OWNER",
        "FIRING SINCE",
        "LAST PAGE"
    );
    for e in all {
        let g = &e.gate;
        let m = &e.eval.memory;
        let mut state = e.eval.state.as_str().to_owned();
        if !e.eval.enough_calls {
            state.push('*');
        }
        let when = |t: Option<OffsetDateTime>| {
            t.map(|t| rfc3339(t.replace_nanosecond(0).unwrap_or(t)))
                .unwrap_or_else(|| "-".to_owned())
        };
        let last = m
            .last_page
            .map(|(k, at)| format!("{} {}", k.as_str(), when(Some(at))))
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "{:<18} {:<9} {:>9} {:>10} {:>7}s {:>6}s {:<20} {:<22} {}",
            g.kind.name(),
            state,
            show(g.kind, e.eval.value),
            format!(
                "{} {}",
                g.kind.compare().symbol(),
                show(g.kind, g.threshold)
            ),
            g.window.as_secs(),
            g.hold.as_secs(),
            g.owner,
            when(m.firing_since),
            last,
        );
    }
    if all.iter().any(|e| !e.eval.enough_calls) {
        out.push_str("* fewer calls in the window than min_calls: the ratio cannot page\n");
    }
    out
}

#[cfg(test)]
mod tests;
