//! Round-trip benchmark: `tools/call echo {text}` through `mcp-warden serve` versus straight to
//! the same upstream (the built-in notes fixture), over stdio and Streamable HTTP, at
//! concurrency 1 and 32. Run on demand, not in CI:
//!
//! ```text
//! cargo build --release
//! cargo run --release --example bench_roundtrip -- [--rounds 3] [--json out.json]
//! ```
//!
//! Every case starts fresh processes (fixture, gateway), connects one rmcp client, warms up,
//! then times each call. The gateway's peak RSS is VmHWM from `/proc/<pid>/status`, read at the
//! end of each gateway case. See `examples/README.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use process_wrap::tokio::CommandWrap;
use rmcp::model::{CallToolRequestParams, CallToolResponse, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _, Peer, RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use serde_json::json;

/// Benchmark `tools/call echo` through the gateway and directly to the notes fixture.
#[derive(Debug, Parser)]
#[command(name = "bench_roundtrip")]
struct Args {
    /// The release `mcp-warden` binary (default: target/release/mcp-warden next to this example).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Timed calls at concurrency 1.
    #[arg(long, default_value_t = 2000)]
    calls_c1: usize,
    /// Timed calls in total at the high concurrency.
    #[arg(long, default_value_t = 10_000)]
    calls_cn: usize,
    /// The high concurrency (tasks sharing one client connection).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Untimed calls before each measurement.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Repeat every case this many times; the table shows the median of each figure.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only these transports (`stdio`, `http`); default both.
    #[arg(long, value_delimiter = ',')]
    transports: Vec<String>,
    /// The text sent to `echo`.
    #[arg(long, default_value = "hello, warden")]
    text: String,
    /// Use the legacy `initialize` handshake instead of probing `server/discover` (Auto).
    #[arg(long)]
    legacy: bool,
    /// Write every raw figure (all rounds) to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the scratch folder (configs, SQLite store, process logs) and print its path.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Stdio,
    Http,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Gateway,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
        }
    }
}

/// The figures of one timed run.
#[derive(Debug, Clone)]
struct Measured {
    calls: usize,
    wall: Duration,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    mean_us: f64,
    max_us: f64,
    calls_per_sec: f64,
    /// CPU time (user + system) the process the client talks to (fixture or gateway) spent per
    /// timed call, in µs; 10 ms tick resolution over the whole run.
    server_cpu_us_per_call: Option<f64>,
    /// Gateway peak RSS (VmHWM) in KiB; `None` for direct runs.
    peak_rss_kib: Option<u64>,
}

impl Measured {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "calls": self.calls,
            "wall_sec": self.wall.as_secs_f64(),
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "mean_us": self.mean_us,
            "max_us": self.max_us,
            "calls_per_sec": self.calls_per_sec,
            "server_cpu_us_per_call": self.server_cpu_us_per_call,
            "peak_rss_kib": self.peak_rss_kib,
        })
    }
}

/// Shared settings of every case.
struct Bench {
    bin: PathBuf,
    scratch: PathBuf,
    text: String,
    warmup: usize,
    legacy: bool,
    http: reqwest::Client,
    case_no: AtomicUsize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => default_bin()?,
    };
    let bin = std::fs::canonicalize(&bin).with_context(|| {
        format!(
            "{} not found: run `cargo build --release` or pass --bin",
            bin.display()
        )
    })?;
    let transports = parse_transports(&args.transports)?;
    if args.concurrency == 0 || args.rounds == 0 {
        bail!("--concurrency and --rounds must be at least 1");
    }
    let scratch = std::env::temp_dir().join(format!("warden-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .context("building the HTTP client")?;
    let bench = Bench {
        bin,
        scratch: scratch.clone(),
        text: args.text.clone(),
        warmup: args.warmup,
        legacy: args.legacy,
        http,
        case_no: AtomicUsize::new(0),
    };
    eprintln!("binary: {}", bench.bin.display());
    eprintln!("scratch: {}", scratch.display());

    let concurrencies = [(1usize, args.calls_c1), (args.concurrency, args.calls_cn)];
    // results[(transport, concurrency)] = (direct rounds, gateway rounds)
    let mut rows: Vec<Row> = Vec::new();
    for &transport in &transports {
        for &(conc, calls) in &concurrencies {
            let mut row = Row {
                transport,
                concurrency: conc,
                direct: Vec::new(),
                gateway: Vec::new(),
            };
            for round in 0..args.rounds {
                // Alternate the order so that drift (thermal, other load) hits both routes alike.
                let order = if round % 2 == 0 {
                    [Route::Direct, Route::Gateway]
                } else {
                    [Route::Gateway, Route::Direct]
                };
                for route in order {
                    let m = bench
                        .case(transport, route, conc, calls)
                        .await
                        .with_context(|| {
                            format!(
                                "{} {} c={conc} round {}",
                                transport.name(),
                                route.name(),
                                round + 1
                            )
                        })?;
                    eprintln!(
                        "{:>5} {:>7} c={:<3} round {}: p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0} calls/s{}",
                        transport.name(),
                        route.name(),
                        conc,
                        round + 1,
                        m.p50_us,
                        m.p99_us,
                        m.calls_per_sec,
                        m.peak_rss_kib
                            .map(|k| format!("  peak RSS {:.1} MiB", kib_to_mib(k)))
                            .unwrap_or_default()
                    );
                    match route {
                        Route::Direct => row.direct.push(m),
                        Route::Gateway => row.gateway.push(m),
                    }
                }
            }
            rows.push(row);
        }
    }

    println!("{}", table(&rows, args.rounds));
    if let Some(path) = &args.json {
        let doc = json!({
            "binary": bench.bin.display().to_string(),
            "text": args.text,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "lifecycle": if args.legacy { "initialize" } else { "auto" },
            "cases": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if args.keep {
        eprintln!("kept {}", scratch.display());
    } else if let Err(error) = std::fs::remove_dir_all(&scratch) {
        eprintln!("could not remove {}: {error}", scratch.display());
    }
    Ok(())
}

/// target/release/examples/bench_roundtrip → target/release/mcp-warden.
fn default_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("this executable has no grandparent folder; pass --bin")?;
    Ok(release.join("mcp-warden"))
}

fn parse_transports(names: &[String]) -> anyhow::Result<Vec<Transport>> {
    if names.is_empty() {
        return Ok(vec![Transport::Stdio, Transport::Http]);
    }
    names
        .iter()
        .map(|n| match n.as_str() {
            "stdio" => Ok(Transport::Stdio),
            "http" => Ok(Transport::Http),
            other => bail!("unknown transport {other:?}: expected stdio or http"),
        })
        .collect()
}

/// A process we started ourselves (HTTP fixture or HTTP gateway); killed when dropped.
struct Spawned {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Spawned {
    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has already exited")
    }

    async fn stop(mut self) {
        if let Err(error) = self.child.start_kill() {
            eprintln!("could not kill {}: {error}", self.log.display());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

impl Bench {
    fn lifecycle(&self) -> ClientLifecycleMode {
        if self.legacy {
            ClientLifecycleMode::Initialize
        } else {
            ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
            }
        }
    }

    /// A fresh folder for one case.
    fn case_dir(&self, label: &str) -> anyhow::Result<PathBuf> {
        let n = self.case_no.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.join(format!("{n:02}-{label}"));
        std::fs::create_dir_all(dir.join("registry"))
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn command(&self, args: &[&str], dir: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).current_dir(dir).kill_on_drop(true);
        // The gateway must see only the configuration we wrote.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WARDEN_") {
                cmd.env_remove(&key);
            }
        }
        cmd
    }

    /// Write warden.toml, registry/notes.toml for `upstream` (its `command` or `url` line) and a
    /// permissive policies/allow-all.yaml, then pin it as an operator would: the gateway exposes
    /// only pinned upstreams.
    async fn write_gateway_config(&self, dir: &Path, upstream: &str) -> anyhow::Result<PathBuf> {
        let config = dir.join("warden.toml");
        let store = dir.join("warden.db");
        std::fs::write(
            &config,
            format!(
                // Every stage on, chain budgets included, with a fan-out limit above what
                // the benchmark itself sends (the default, 600 per 10 s, is for agents).
                "store = {}\nregistry_dir = \"registry\"\n\n[chain]\nmax_fanout = 10000000\n",
                toml_str(&format!("sqlite://{}", store.display()))
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let entry = format!(
            "{upstream}\nprefix = \"notes\"\ndomain = \"notes\"\ncredential = \"minted\"\nenabled = true\n\n[tools]\necho = \"read\"\n"
        );
        std::fs::write(dir.join("registry").join("notes.toml"), entry)
            .context("writing registry/notes.toml")?;
        // The gateway reads policies/ beside warden.toml and denies what no rule allows.
        std::fs::create_dir_all(dir.join("policies")).context("creating policies/")?;
        std::fs::write(
            dir.join("policies").join("allow-all.yaml"),
            "version: v1\nrules:\n  - id: allow-all\n    match: { labels: { mcp.server: \"*\" } }\n    decision: ALLOW\n",
        )
        .context("writing policies/allow-all.yaml")?;
        let config_arg = config.display().to_string();
        let out = self
            .command(&["pin", "--by", "bench", "--config", &config_arg], dir)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running mcp-warden pin")?;
        if !out.status.success() {
            bail!(
                "mcp-warden pin exited with {}:\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(config)
    }

    /// Start `<bin> ARGS` with stderr to a log file and wait for its `listening on URL` line.
    async fn spawn_http(
        &self,
        args: &[&str],
        dir: &Path,
        label: &str,
    ) -> anyhow::Result<(Spawned, String)> {
        let log = dir.join(format!("{label}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = self.command(args, dir);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} {}", self.bin.display(), args.join(" ")))?;
        let mut spawned = Spawned { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&spawned.log).unwrap_or_default();
            if let Some(url) = text.lines().find_map(|l| l.split("listening on ").nth(1)) {
                return Ok((spawned, url.trim().to_owned()));
            }
            if let Ok(Some(status)) = spawned.child.try_wait() {
                bail!(
                    "`{label}` exited ({status}) before listening:\n{}",
                    tail(&text)
                );
            }
            if Instant::now() > deadline {
                spawned.stop().await;
                bail!(
                    "`{label}` did not print `listening on` within 30 s:\n{}",
                    tail(&text)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An rmcp client on a child process speaking stdio; stderr goes to `log`.
    async fn connect_stdio(
        &self,
        args: &[&str],
        dir: &Path,
        log: &Path,
    ) -> anyhow::Result<(RunningService<RoleClient, ()>, u32)> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let cmd = self.command(args, dir);
        let (transport, _) = TokioChildProcess::builder(CommandWrap::from(cmd))
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {} {}", self.bin.display(), args.join(" ")))?;
        let pid = transport.id().context("the child has no pid")?;
        let client =
            ().serve_with_lifecycle(transport, self.lifecycle())
                .await
                .with_context(|| {
                    format!(
                        "MCP handshake over stdio failed; log:\n{}",
                        tail(&std::fs::read_to_string(log).unwrap_or_default())
                    )
                })?;
        Ok((client, pid))
    }

    async fn connect_http(&self, url: &str) -> anyhow::Result<RunningService<RoleClient, ()>> {
        let config =
            StreamableHttpClientTransportConfig::with_uri(url).max_concurrent_requests(256);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        ().serve_with_lifecycle(transport, self.lifecycle())
            .await
            .with_context(|| format!("MCP handshake with {url} failed"))
    }

    /// One case: fresh processes, connect, warm up, time, read the gateway's VmHWM, tear down.
    async fn case(
        &self,
        transport: Transport,
        route: Route,
        conc: usize,
        calls: usize,
    ) -> anyhow::Result<Measured> {
        let dir = self.case_dir(&format!("{}-{}-c{conc}", transport.name(), route.name()))?;
        let tool = match route {
            Route::Direct => "echo",
            Route::Gateway => "notes__echo",
        };
        let bin = self.bin.display().to_string();
        match (transport, route) {
            (Transport::Stdio, Route::Direct) => {
                let (client, pid) = self
                    .connect_stdio(&["fixture", "notes"], &dir, &dir.join("fixture.log"))
                    .await?;
                let m = self.measure(&client, pid, tool, conc, calls).await;
                let _ = client.cancel().await;
                m
            }
            (Transport::Stdio, Route::Gateway) => {
                let upstream = format!("command = [{}, \"fixture\", \"notes\"]", toml_str(&bin));
                let config = self.write_gateway_config(&dir, &upstream).await?;
                let config = config.display().to_string();
                let (client, pid) = self
                    .connect_stdio(
                        &["serve", "--stdio", "--config", &config],
                        &dir,
                        &dir.join("gateway.log"),
                    )
                    .await?;
                let m = self.measure(&client, pid, tool, conc, calls).await;
                let rss = peak_rss_kib(pid);
                let _ = client.cancel().await;
                Ok(Measured {
                    peak_rss_kib: Some(rss?),
                    ..m?
                })
            }
            (Transport::Http, Route::Direct) => {
                let (fixture, url) = self
                    .spawn_http(
                        &["fixture", "notes", "--http", "127.0.0.1:0"],
                        &dir,
                        "fixture",
                    )
                    .await?;
                let result = async {
                    let client = self.connect_http(&url).await?;
                    let m = self
                        .measure(&client, fixture.pid()?, tool, conc, calls)
                        .await;
                    let _ = client.cancel().await;
                    m
                }
                .await;
                fixture.stop().await;
                result
            }
            (Transport::Http, Route::Gateway) => {
                let (fixture, upstream_url) = self
                    .spawn_http(
                        &["fixture", "notes", "--http", "127.0.0.1:0"],
                        &dir,
                        "fixture",
                    )
                    .await?;
                let result = async {
                    // after the fixture listens: its URL (port 0) is part of the pin
                    let config = self
                        .write_gateway_config(&dir, &format!("url = {}", toml_str(&upstream_url)))
                        .await?;
                    let config = config.display().to_string();
                    let (gateway, url) = self
                        .spawn_http(
                            &["serve", "--http", "127.0.0.1:0", "--config", &config],
                            &dir,
                            "gateway",
                        )
                        .await?;
                    let result = async {
                        let client = self.connect_http(&url).await?;
                        let m = self
                            .measure(&client, gateway.pid()?, tool, conc, calls)
                            .await;
                        let rss = peak_rss_kib(gateway.pid()?);
                        let _ = client.cancel().await;
                        Ok(Measured {
                            peak_rss_kib: Some(rss?),
                            ..m?
                        })
                    }
                    .await;
                    gateway.stop().await;
                    result
                }
                .await;
                fixture.stop().await;
                result
            }
        }
    }

    /// Wait for `tool` to be listed, warm up, then time `calls` calls from `conc` tasks.
    async fn measure(
        &self,
        client: &RunningService<RoleClient, ()>,
        server_pid: u32,
        tool: &str,
        conc: usize,
        calls: usize,
    ) -> anyhow::Result<Measured> {
        let peer = client.peer().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let tools = peer.list_all_tools().await.context("tools/list")?;
            if tools.iter().any(|t| t.name == tool) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "tool {tool} not listed within 30 s (got {:?})",
                    tools.iter().map(|t| &t.name).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let params = {
            let mut args = serde_json::Map::new();
            args.insert(
                "text".to_owned(),
                serde_json::Value::String(self.text.clone()),
            );
            CallToolRequestParams::new(tool.to_owned()).with_arguments(args)
        };
        // The first answer must echo the text back.
        let first = call(&peer, &params).await?;
        if first != self.text {
            bail!("{tool} answered {first:?}, expected {:?}", self.text);
        }
        run_calls(&peer, &params, conc, self.warmup).await?;
        let cpu_before = cpu_ticks(server_pid);
        let (mut latencies, wall) = run_calls(&peer, &params, conc, calls).await?;
        let cpu_after = cpu_ticks(server_pid);
        latencies.sort_unstable();
        let n = latencies.len().max(1);
        let to_us = |d: Duration| d.as_secs_f64() * 1e6;
        let mean = latencies.iter().map(|d| to_us(*d)).sum::<f64>() / n as f64;
        Ok(Measured {
            calls: latencies.len(),
            wall,
            p50_us: to_us(percentile(&latencies, 0.50)),
            p90_us: to_us(percentile(&latencies, 0.90)),
            p99_us: to_us(percentile(&latencies, 0.99)),
            mean_us: mean,
            max_us: to_us(latencies.last().copied().unwrap_or_default()),
            calls_per_sec: latencies.len() as f64 / wall.as_secs_f64().max(1e-9),
            server_cpu_us_per_call: match (cpu_before, cpu_after) {
                (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 * 1e6 / USER_HZ / n as f64),
                _ => None,
            },
            peak_rss_kib: None,
        })
    }
}

/// One `tools/call`; returns the text of the answer.
async fn call(peer: &Peer<RoleClient>, params: &CallToolRequestParams) -> anyhow::Result<String> {
    match peer
        .call_tool_once(params.clone())
        .await
        .context("tools/call")?
    {
        CallToolResponse::Complete(result) => {
            if result.is_error == Some(true) {
                bail!("the tool reported an error: {:?}", result.content);
            }
            let text = result
                .content
                .first()
                .and_then(|c| c.as_text())
                .map(|t| t.text.clone())
                .unwrap_or_default();
            Ok(text)
        }
        other => bail!("unexpected answer to tools/call: {other:?}"),
    }
}

/// `total` calls spread over `conc` tasks sharing `peer`; per-call latencies and wall time.
async fn run_calls(
    peer: &Peer<RoleClient>,
    params: &CallToolRequestParams,
    conc: usize,
    total: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc.min(total.max(1)) {
        let peer = peer.clone();
        let params = params.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(total / conc + 1);
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t0 = Instant::now();
                call(&peer, &params).await?;
                latencies.push(t0.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a call task panicked")??);
    }
    Ok((all, start.elapsed()))
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v.get(rank - 1).copied().unwrap_or_default()
}

/// VmHWM (peak resident set) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM in {path}"))
}

/// Linux reports process CPU times in USER_HZ ticks, 100 per second on every mainstream arch.
const USER_HZ: f64 = 100.0;

/// utime + stime of `pid` (all threads), in USER_HZ ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: field 3 (state) first, utime is 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .skip(lines.len().saturating_sub(20))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// All rounds of one transport × concurrency.
struct Row {
    transport: Transport,
    concurrency: usize,
    direct: Vec<Measured>,
    gateway: Vec<Measured>,
}

impl Row {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "transport": self.transport.name(),
            "concurrency": self.concurrency,
            "direct": self.direct.iter().map(Measured::to_json).collect::<Vec<_>>(),
            "gateway": self.gateway.iter().map(Measured::to_json).collect::<Vec<_>>(),
            "median": {
                "direct_p50_us": median(self.direct.iter().map(|m| m.p50_us)),
                "direct_p99_us": median(self.direct.iter().map(|m| m.p99_us)),
                "direct_calls_per_sec": median(self.direct.iter().map(|m| m.calls_per_sec)),
                "gateway_p50_us": median(self.gateway.iter().map(|m| m.p50_us)),
                "gateway_p99_us": median(self.gateway.iter().map(|m| m.p99_us)),
                "gateway_calls_per_sec": median(self.gateway.iter().map(|m| m.calls_per_sec)),
                "direct_server_cpu_us_per_call": median(self.direct.iter().filter_map(|m| m.server_cpu_us_per_call)),
                "gateway_server_cpu_us_per_call": median(self.gateway.iter().filter_map(|m| m.server_cpu_us_per_call)),
                "gateway_peak_rss_kib": self.gateway.iter().filter_map(|m| m.peak_rss_kib).max(),
            },
        })
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(f64::NAN),
        _ => {
            (v.get(n / 2 - 1).copied().unwrap_or(f64::NAN)
                + v.get(n / 2).copied().unwrap_or(f64::NAN))
                / 2.0
        }
    }
}

fn table(rows: &[Row], rounds: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "`tools/call echo` round trip, median of {rounds} round(s); latencies in µs; server CPU/call = user+system CPU of the process the client talks to (fixture or gateway, not the gateway's upstream) per timed call; peak RSS = max VmHWM of the gateway process.\n"
    );
    let _ = writeln!(
        out,
        "| transport | conc | direct p50 | direct p99 | direct calls/s | gateway p50 | gateway p99 | gateway calls/s | added p50 | throughput gw/direct | server CPU/call direct → gw | gateway peak RSS |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        let d50 = median(r.direct.iter().map(|m| m.p50_us));
        let d99 = median(r.direct.iter().map(|m| m.p99_us));
        let dtp = median(r.direct.iter().map(|m| m.calls_per_sec));
        let g50 = median(r.gateway.iter().map(|m| m.p50_us));
        let g99 = median(r.gateway.iter().map(|m| m.p99_us));
        let gtp = median(r.gateway.iter().map(|m| m.calls_per_sec));
        let dcpu = median(r.direct.iter().filter_map(|m| m.server_cpu_us_per_call));
        let gcpu = median(r.gateway.iter().filter_map(|m| m.server_cpu_us_per_call));
        let rss = r
            .gateway
            .iter()
            .filter_map(|m| m.peak_rss_kib)
            .max()
            .map(kib_to_mib)
            .unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "| {} | {} | {d50:.0} | {d99:.0} | {dtp:.0} | {g50:.0} | {g99:.0} | {gtp:.0} | {:+.0} | {:.2} | {dcpu:.0} → {gcpu:.0} µs | {rss:.1} MiB |",
            r.transport.name(),
            r.concurrency,
            g50 - d50,
            gtp / dtp,
        );
    }
    out
}
