//! `mcp-warden assess [--json] [--fail-above SCORE]`: score the deployment against the seven
//! risks (see `crate::assess` for the model) and print the fixes in order. Exit 0 when every
//! risk scores at or below the threshold, 1 when one is above it, 2 when the deployment
//! cannot be read.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::admin::block_on;
use crate::assess::{self, Assessment};
use crate::config::Config;

/// Arguments of `mcp-warden assess`.
#[derive(Debug, clap::Args)]
pub struct AssessArgs {
    /// Print the assessment as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when any risk scores above this (0–10; default: `[assess] fail_above`, 7.0).
    #[arg(long)]
    pub fail_above: Option<f64>,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Run `assess`.
pub fn main(args: AssessArgs) -> ExitCode {
    block_on("assess", async move {
        let config = Config::load(args.config.as_deref())?;
        let fail_above = args.fail_above.unwrap_or(config.assess.fail_above);
        if !(fail_above.is_finite() && (0.0..=10.0).contains(&fail_above)) {
            bail!("--fail-above must be a score in [0, 10], got {fail_above}");
        }
        let deployment = assess::facts::gather(&config, time::OffsetDateTime::now_utc()).await?;
        let result = assess::assess(&deployment, fail_above);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            print!("{}", as_text(&result));
        }
        Ok(if result.failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn as_text(a: &Assessment) -> String {
    let mut s = String::new();
    for r in &a.risks {
        let mark = if r.score > a.fail_above {
            "  ABOVE THRESHOLD"
        } else {
            ""
        };
        let _ = writeln!(s, "{:>4.1}  {}{mark}", r.score, r.name);
        let f = &r.factors;
        let _ = writeln!(
            s,
            "      precondition {:.2} × blast {:.1}/3 × control {} × detection {}",
            f.precondition,
            f.blast,
            if f.control_on { "on (0.2)" } else { "off (1)" },
            if f.detection_covered {
                "covered (0.6)"
            } else {
                "not covered (1)"
            },
        );
        for fact in &r.facts {
            let factor = serde_json::to_value(fact.factor).unwrap_or_default();
            let _ = writeln!(
                s,
                "      - {}: {}",
                factor.as_str().unwrap_or(""),
                fact.text
            );
        }
    }
    let _ = writeln!(s, "\naudit: {}", a.audit);
    if a.fixes.is_empty() {
        let _ = writeln!(s, "\nno fixes: every control the model checks is on");
    } else {
        let _ = writeln!(s, "\nfixes, biggest score reduction first:");
        for (i, f) in a.fixes.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {:>2}. -{:.1} {}: {}\n      in {}",
                i + 1,
                f.reduction,
                f.risk,
                f.action,
                f.location
            );
        }
    }
    let worst = a.risks.iter().map(|r| r.score).fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "\n{}: highest score {worst:.1}, threshold {:.1}",
        if a.failed { "FAIL" } else { "ok" },
        a.fail_above
    );
    s
}
