//! The harness: a deployment folder (warden.toml, registry/notes.toml pinned by `mcp-warden pin`,
//! a permissive policies/allow-all.yaml, the SQLite store), the real `mcp-warden` process over stdio or HTTP, and real rmcp agents in
//! either protocol era.
//!
//! Synchronisation is by polling with deadlines ([`eventually`]), never by sleeping.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion, Tool};
use rmcp::service::{
    ClientCacheConfig, ClientLifecycleMode, ClientServiceExt as _, NotificationContext,
    RunningService,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Row as _};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// The gateway executable under test.
pub const WARDEN: &str = env!("CARGO_BIN_EXE_mcp-warden");

/// How long anything in these tests may take to happen (startup, a notification, an audit row).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The registry entry of the demo notes fixture (served by the gateway executable itself).
const NOTES_TOML: &str = r#"command = ["mcp-warden", "fixture", "notes"]
prefix = "notes"
domain = "notes"
audience = "https://notes.internal"
credential = "none"

[tools]
list_notes = "read"
get_note = "read"
echo = "read"
slow_count = "read"
add_note = "write"
toggle_extra_tool = "write"
delete_note = "destructive"
rug_pull = "write"
"#;

/// The deployment's policy: every call to every registered upstream is allowed (the gateway
/// reads `policies/` beside warden.toml, refuses to start without it, and denies every call no
/// rule matches).
const ALLOW_ALL_POLICY: &str = r#"version: v1
rules:
  - id: allow-all
    match: { labels: { mcp.server: "*" } }
    decision: ALLOW
"#;

/// How the agent reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `mcp-warden serve --stdio`, one gateway process per agent.
    Stdio,
    /// `mcp-warden serve --http 127.0.0.1:0`, one gateway process for every agent.
    Http,
}

/// The protocol era the agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// The `initialize` handshake, protocol 2025-11-25.
    Legacy,
    /// `server/discover`, protocol 2026-07-28 (no `initialize`).
    Modern,
}

impl Era {
    /// The protocol version the agent must end up with.
    pub fn version(self) -> ProtocolVersion {
        match self {
            Self::Legacy => ProtocolVersion::V_2025_11_25,
            Self::Modern => ProtocolVersion::V_2026_07_28,
        }
    }

    fn lifecycle(self) -> ClientLifecycleMode {
        match self {
            Self::Legacy => ClientLifecycleMode::Initialize,
            Self::Modern => ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        }
    }
}

/// Everything the gateway wrote to stderr, shared with the tasks draining its pipes.
type Log = Arc<Mutex<String>>;

/// One deployment and (over HTTP) its running gateway; the process is killed on drop.
pub struct Gateway {
    transport: Transport,
    dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
    url: Option<String>,
    http: Option<Child>,
    log: Log,
    env: Vec<(String, String)>,
}

impl Gateway {
    /// Write a deployment serving the notes fixture and pin it (`mcp-warden pin`, as an operator
    /// would: the gateway exposes only pinned upstreams); over HTTP also start the gateway and
    /// wait until it listens.
    pub async fn start(transport: Transport) -> anyhow::Result<Self> {
        Self::start_with(transport, "", &[]).await
    }

    /// [`Gateway::start`], with `toml` appended to warden.toml and `env` set for every gateway
    /// process (API keys named by `api_key_env`), before anything starts.
    pub async fn start_with(
        transport: Transport,
        toml: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let db = root.join("warden.db");
        let config = root.join("warden.toml");
        std::fs::create_dir(root.join("registry"))?;
        std::fs::write(root.join("registry/notes.toml"), NOTES_TOML)?;
        std::fs::create_dir(root.join("policies"))?;
        std::fs::write(root.join("policies/allow-all.yaml"), ALLOW_ALL_POLICY)?;
        std::fs::write(
            &config,
            format!(
                "registry_dir = \"registry\"\nstore = \"sqlite://{}\"\n\n[upstream]\ncall_timeout_sec = 60\n{toml}",
                db.display()
            ),
        )?;
        let mut gw = Self {
            transport,
            dir,
            config,
            db,
            url: None,
            http: None,
            log: Log::default(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        gw.pin().await?;
        if transport == Transport::Http {
            gw.spawn_http().await?;
        }
        Ok(gw)
    }

    /// The agent endpoint (HTTP only).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The SQLite audit store.
    pub fn db_path(&self) -> &Path {
        &self.db
    }

    /// `mcp-warden ARGS… --config warden.toml` in the deployment folder (a CLI subcommand).
    pub fn cli(&self, args: &[&str]) -> Command {
        self.warden(args)
    }

    /// Append `toml` to the deployment's warden.toml (before the gateway that should read it
    /// starts).
    pub fn configure(&self, toml: &str) -> anyhow::Result<()> {
        let mut text = std::fs::read_to_string(&self.config)?;
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    /// `mcp-warden pin --config warden.toml --by gateway-tests`; an error unless it exits 0.
    async fn pin(&self) -> anyhow::Result<()> {
        let out = self
            .warden(&["pin", "--by", "gateway-tests"])
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
        Ok(())
    }

    fn command(&self, mode: &[&str]) -> Command {
        let mut cmd = self.warden(&["serve"]);
        cmd.args(mode);
        cmd
    }

    /// `mcp-warden SUBCOMMAND … --config warden.toml` in the deployment folder, with nothing
    /// from the environment reconfiguring it.
    fn warden(&self, subcommand: &[&str]) -> Command {
        let mut cmd = Command::new(WARDEN);
        cmd.args(subcommand)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .kill_on_drop(true);
        // Nothing from the environment may reconfigure the gateway under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WARDEN_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // GATEWAY_TEST_LOG=debug turns up the gateway's logging (shown when a test fails).
        if let Some(filter) = std::env::var_os("GATEWAY_TEST_LOG") {
            cmd.env("WARDEN_LOG", filter);
        }
        cmd
    }

    async fn spawn_http(&mut self) -> anyhow::Result<()> {
        let mut cmd = self.command(&["--http", "127.0.0.1:0"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning mcp-warden serve --http")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (port_tx, port_rx) = oneshot::channel();
        drain(stderr, self.log.clone(), Some(port_tx));
        self.http = Some(child);
        let port = match tokio::time::timeout(DEADLINE, port_rx).await {
            Ok(Ok(port)) => port,
            Ok(Err(_)) => bail!(
                "the gateway closed stderr before listening:\n{}",
                self.log()
            ),
            Err(_) => bail!(
                "the gateway did not listen within {DEADLINE:?}:\n{}",
                self.log()
            ),
        };
        self.url = Some(format!("http://127.0.0.1:{port}/mcp"));
        Ok(())
    }

    /// Everything the gateway process(es) wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Connect a new rmcp agent in `era` (over stdio this starts a gateway process for it).
    pub async fn connect(&self, era: Era) -> anyhow::Result<Agent> {
        let (tx, tools_changed) = mpsc::unbounded_channel();
        let handler = Handler {
            info: ClientConfig::default().with_protocol_version(era.version()),
            tools_changed: tx,
        };
        let service = match self.transport {
            Transport::Stdio => {
                let (child, stderr) = TokioChildProcess::builder(self.command(&["--stdio"]))
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("spawning mcp-warden serve --stdio")?;
                if let Some(stderr) = stderr {
                    drain(stderr, self.log.clone(), None);
                }
                handler.serve_with_lifecycle(child, era.lifecycle()).await
            }
            Transport::Http => {
                let url = self.url().context("the HTTP gateway has no URL")?;
                let transport = StreamableHttpClientTransport::from_uri(url);
                handler
                    .serve_with_lifecycle(transport, era.lifecycle())
                    .await
            }
        }
        .with_context(|| {
            format!(
                "{era:?} handshake over {:?}:\n{}",
                self.transport,
                self.log()
            )
        })?;
        // Every listing goes to the gateway: the tests check its catalog, not rmcp's cache.
        service
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        Ok(Agent {
            service,
            tools_changed,
        })
    }

    /// Every row of `mcp_audit`, oldest first (an error while the store or table is not there).
    pub async fn audit_rows(&self) -> anyhow::Result<Vec<AuditRow>> {
        let options = SqliteConnectOptions::new()
            .filename(self.db_path())
            .busy_timeout(Duration::from_secs(5));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let rows = sqlx::query(
            "SELECT actor_id, server_name, tool_name, exposed_name, action_class, decision, \
             stage, reason, outcome, args_digest FROM mcp_audit ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await;
        conn.close().await?;
        rows?
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    actor_id: r.try_get("actor_id")?,
                    server_name: r.try_get("server_name")?,
                    tool_name: r.try_get("tool_name")?,
                    exposed_name: r.try_get("exposed_name")?,
                    action_class: r.try_get("action_class")?,
                    decision: r.try_get("decision")?,
                    stage: r.try_get("stage")?,
                    reason: r.try_get("reason")?,
                    outcome: r.try_get("outcome")?,
                    args_digest: r.try_get("args_digest")?,
                })
            })
            .collect()
    }

    /// The audit rows of `exposed` tool calls once there are at least `n` (rows are written
    /// asynchronously).
    pub async fn wait_audit(&self, exposed: &str, n: usize) -> anyhow::Result<Vec<AuditRow>> {
        eventually(&format!("{n} audit rows for {exposed}"), || async move {
            let rows: Vec<_> = self
                .audit_rows()
                .await?
                .into_iter()
                .filter(|r| r.exposed_name == exposed)
                .collect();
            Ok((rows.len() >= n).then_some(rows))
        })
        .await
        .with_context(|| format!("gateway stderr:\n{}", self.log()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(child) = &mut self.http {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!("--- gateway stderr ---\n{}", self.log());
        }
    }
}

/// Forward the lines of a gateway's stderr into `log`; report the port of the
/// `mcp-warden: listening on http://127.0.0.1:PORT/mcp` line through `port`.
fn drain(
    stderr: impl AsyncRead + Unpin + Send + 'static,
    log: Log,
    port: Option<oneshot::Sender<u16>>,
) {
    tokio::spawn(async move {
        let mut port = port;
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(p) = listening_port(&line)
                && let Some(tx) = port.take()
            {
                let _ = tx.send(p);
            }
            if let Ok(mut log) = log.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
}

fn listening_port(line: &str) -> Option<u16> {
    line.split_once("mcp-warden: listening on http://127.0.0.1:")?
        .1
        .strip_suffix("/mcp")?
        .parse()
        .ok()
}

/// One row of `mcp_audit`.
#[derive(Debug, Clone)]
#[expect(dead_code, reason = "every column is shown when an assertion fails")]
pub struct AuditRow {
    pub actor_id: String,
    pub server_name: String,
    pub tool_name: String,
    pub exposed_name: String,
    pub action_class: String,
    pub decision: String,
    pub stage: String,
    pub reason: String,
    pub outcome: String,
    pub args_digest: String,
}

/// The agent's handler: records legacy `notifications/tools/list_changed`.
pub struct Handler {
    info: ClientConfig,
    tools_changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.tools_changed.send(());
    }
}

/// A connected rmcp agent.
pub struct Agent {
    pub service: RunningService<RoleClient, Handler>,
    /// One message per `notifications/tools/list_changed` that reached `on_tool_list_changed`.
    pub tools_changed: mpsc::UnboundedReceiver<()>,
}

impl Agent {
    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.service.peer_info().map(|i| i.protocol_version.clone())
    }

    /// The names of every listed tool.
    pub async fn tool_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .service
            .list_all_tools()
            .await?
            .into_iter()
            .map(|t| t.name.into_owned())
            .collect())
    }

    /// The full tool list, once it includes `name` (upstreams connect in the background).
    pub async fn tools_once_listed(&self, name: &str) -> anyhow::Result<Vec<Tool>> {
        eventually(&format!("{name} to be listed"), || async move {
            let tools = self.service.list_all_tools().await?;
            Ok(tools.iter().any(|t| t.name == name).then_some(tools))
        })
        .await
    }

    /// Call `name` with `args` (a JSON object).
    pub async fn call(
        &self,
        name: &str,
        args: serde_json::Value,
    ) -> Result<CallToolResult, rmcp::ServiceError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        if let serde_json::Value::Object(args) = args {
            params = params.with_arguments(args);
        }
        self.service.call_tool(params).await
    }
}

/// The text blocks of a tool result, concatenated.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.as_str())
        .collect()
}

/// Run `probe` until it yields `Some`, every 50 ms; fail after [`DEADLINE`] with the last error.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "not yet".to_owned(),
            Err(error) => format!("{error:#}"),
        };
        if start.elapsed() > DEADLINE {
            bail!("timed out after {DEADLINE:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
