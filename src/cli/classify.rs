//! `mcp-warden classify [FILE|-]`: what the output safety stage finds in a text (kinds,
//! categories, spans, actions; never a secret in full), and `mcp-warden classify --eval`:
//! precision and recall per kind and category over the labelled corpus.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::decide::policy::PolicySet;
use crate::decide::safety::eval::{self, Report, Score};
use crate::decide::safety::{Category, Classifier, Finding, OutputPolicy};
use crate::gateway::policies;

/// Arguments of `mcp-warden classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// The text to classify: a file, or `-` (the default) for standard input.
    pub input: Option<PathBuf>,
    /// Score the classifier on the labelled corpus instead: precision and recall per kind and
    /// per category, and the samples it gets wrong.
    #[arg(long)]
    pub eval: bool,
    /// The corpus: a folder of `*.yaml` files (or one file).
    #[arg(long, default_value = "fixtures/safety")]
    pub corpus: PathBuf,
    /// Use the custom patterns and actions of the policy files in this folder.
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// The upstream whose output this is (for actions and shadow mode).
    #[arg(long, default_value = "")]
    pub server: String,
    /// The upstream's own name of the tool (for actions).
    #[arg(long, default_value = "")]
    pub tool: String,
}

/// Run it: 0 when done, 1 when `--eval` finds a secret or PII precision or recall below 0.95,
/// 2 when the input, corpus or policy cannot be read.
pub fn main(args: ClassifyArgs) -> ExitCode {
    let result = if args.eval {
        run_eval(&args)
    } else {
        run_one(&args)
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mcp-warden classify: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn policy(args: &ClassifyArgs) -> anyhow::Result<PolicySet> {
    match &args.policies {
        Some(dir) => {
            policies::read_dir(dir).with_context(|| format!("policies in {}", dir.display()))
        }
        None => Ok(PolicySet::default()),
    }
}

fn run_one(args: &ClassifyArgs) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    match args.input.as_deref() {
        None => std::io::stdin().read_to_string(&mut text).map(drop),
        Some(p) if p == Path::new("-") => std::io::stdin().read_to_string(&mut text).map(drop),
        Some(p) => std::fs::read_to_string(p).map(|t| text = t),
    }
    .context("reading the input")?;
    let set = policy(args)?;
    let findings = set.classifier().scan(&text);
    print!(
        "{}",
        describe(&text, &findings, set.output(), &args.server, &args.tool)
    );
    Ok(ExitCode::SUCCESS)
}

/// The findings as a table, then the verdict.
fn describe(
    text: &str,
    findings: &[Finding],
    output: &OutputPolicy,
    server: &str,
    tool: &str,
) -> String {
    let verdict = output.verdict(server, tool, findings);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:<14} {:<10} shown as",
        "kind", "category", "bytes", "action"
    );
    for (f, action) in findings.iter().zip(&verdict.actions) {
        let span = format!("{}..{}", f.start, f.end);
        let _ = writeln!(
            out,
            "{:<20} {:<10} {span:<14} {:<10} {}",
            f.kind,
            f.category,
            action,
            excerpt(text.get(f.start..f.end).unwrap_or_default(), f.category)
        );
    }
    let classes = if verdict.classes.is_empty() {
        "none".to_owned()
    } else {
        verdict.classes.join(", ")
    };
    let _ = writeln!(
        out,
        "verdict: {}{} ({} findings; classes: {classes})",
        verdict.action,
        if verdict.shadow {
            " (shadow: not acted on)"
        } else {
            ""
        },
        findings.len()
    );
    out
}

/// What a finding shows: secrets and personal data never in full (two characters and the
/// length), injected text cut to 60 characters, hidden characters as code points.
fn excerpt(found: &str, category: Category) -> String {
    let n = found.chars().count();
    match category {
        Category::Secret | Category::Pii => {
            let head: String = found.chars().take(if n > 8 { 2 } else { 0 }).collect();
            format!("{head}… ({n} chars)")
        }
        Category::Injection => {
            let cut: String = found
                .chars()
                .take(60)
                .flat_map(char::escape_debug)
                .collect();
            if n > 60 {
                format!("\"{cut}…\"")
            } else {
                format!("\"{cut}\"")
            }
        }
        Category::Hidden => {
            found
                .chars()
                .take(8)
                .map(|c| format!("U+{:04X}", u32::from(c)))
                .collect::<Vec<_>>()
                .join(" ")
                + if n > 8 { " …" } else { "" }
        }
    }
}

fn run_eval(args: &ClassifyArgs) -> anyhow::Result<ExitCode> {
    let files = corpus_files(&args.corpus)?;
    let mut samples = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        samples.extend(
            eval::parse_corpus(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
        );
    }
    if samples.is_empty() {
        bail!("no samples in {}", args.corpus.display());
    }
    let classifier = Classifier::default();
    let report = eval::evaluate(&classifier, &samples);
    print!("{}", table(&report));
    let ok = report
        .categories
        .iter()
        .filter(|s| s.class == "secret" || s.class == "pii")
        .all(|s| s.precision().unwrap_or(1.0) >= 0.95 && s.recall().unwrap_or(1.0) >= 0.95);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn corpus_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

fn row(out: &mut String, s: &Score) {
    let _ = writeln!(
        out,
        "| {:<20} | {:>7} | {:>4} | {:>4} | {:>4} | {:>9} | {:>6} |",
        s.class,
        s.labelled,
        s.tp,
        s.fp,
        s.fn_,
        ratio(s.precision()),
        ratio(s.recall())
    );
}

/// The report as a markdown table: kinds, then categories, then the samples missed.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} samples\n", report.samples);
    let _ = writeln!(
        out,
        "| {:<20} | labelled |   tp |   fp |   fn | precision | recall |",
        "class"
    );
    let _ = writeln!(
        out,
        "|{}|---------:|-----:|-----:|-----:|----------:|-------:|",
        "-".repeat(22)
    );
    for s in &report.kinds {
        row(&mut out, s);
    }
    let _ = writeln!(
        out,
        "|{}|---------:|-----:|-----:|-----:|----------:|-------:|",
        "-".repeat(22)
    );
    for s in &report.categories {
        row(&mut out, s);
    }
    if !report.misses.is_empty() {
        let _ = writeln!(out, "\nmisclassified:");
        for m in &report.misses {
            let _ = writeln!(
                out,
                "  {}: missed [{}], extra [{}]",
                m.id,
                m.missed.join(", "),
                m.extra.join(", ")
            );
        }
    }
    out
}
