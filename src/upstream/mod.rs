//! Upstreams: the MCP servers behind the gateway. Each registered, enabled upstream gets one
//! supervised connection: started at serve, restarted with backoff when it drops, its manifest
//! re-read on `list_changed`. While it is down its tools fail with a clear error.

mod child;
pub mod client;
pub mod connect;
pub mod http_lane;
pub mod lane;
pub mod manifest;
pub mod pinning;
pub mod registry;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rmcp::model::{ProtocolVersion, ServerNotification, SubscriptionFilter};
use rmcp::service::{Peer, RoleClient};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::client::{Refresh, UpstreamClient};
use self::manifest::{Manifest, Offered};
use self::registry::UpstreamSpec;
use crate::config::{PinsConfig, UpstreamConfig};
use crate::decide::pins::{self, Lock, Verdict};
use crate::gateway::hub::{Hub, InFlight};
use crate::store::GateEvent;

/// State shared between an upstream's supervisor, its client handler and the request path.
#[derive(Debug)]
pub struct Shared {
    /// Registry name.
    pub name: String,
    /// Namespace prefix.
    pub prefix: String,
    /// Calls in flight, for routing logging and server→client requests.
    pub inflight: InFlight,
    /// The gateway's notification junction.
    pub hub: Arc<Hub>,
}

/// A connection's fast lane for `tools/call` (see `lane` and `http_lane`).
#[derive(Debug)]
pub enum Fast {
    /// On a stdio child's pipes.
    Stdio(Arc<lane::Lane>),
    /// POSTs to a 2026-07-28 HTTP upstream.
    Http(Arc<http_lane::HttpLane>),
}

/// Where an upstream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not yet tried.
    Starting,
    /// Connected.
    Up,
    /// Down, retrying; the reason of the last failure.
    Down(String),
    /// Disabled in the registry: never connected.
    Disabled,
}

/// One registered upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Its registry entry.
    pub spec: UpstreamSpec,
    /// Routing state shared with its client handler.
    pub shared: Arc<Shared>,
    conn: ArcSwapOption<Peer<RoleClient>>,
    /// The fast lane of the connection, if it has one (published with `conn`).
    lane: ArcSwapOption<Fast>,
    manifest: ArcSwapOption<Manifest>,
    lock: ArcSwapOption<Lock>,
    verdict: ArcSwapOption<Verdict>,
    shadow_reported: std::sync::atomic::AtomicBool,
    lock_error: Mutex<Option<String>>,
    watched: Mutex<HashSet<String>>,
    status: watch::Sender<Status>,
}

impl Upstream {
    /// An upstream for `spec`, not yet connected.
    pub fn new(spec: UpstreamSpec, hub: Arc<Hub>) -> Self {
        let status = if spec.enabled {
            Status::Starting
        } else {
            Status::Disabled
        };
        let shared = Arc::new(Shared {
            name: spec.name.clone(),
            prefix: spec.prefix.clone(),
            inflight: InFlight::default(),
            hub,
        });
        Self {
            spec,
            shared,
            conn: ArcSwapOption::empty(),
            lane: ArcSwapOption::empty(),
            manifest: ArcSwapOption::empty(),
            lock: ArcSwapOption::empty(),
            verdict: ArcSwapOption::empty(),
            shadow_reported: std::sync::atomic::AtomicBool::new(false),
            lock_error: Mutex::default(),
            watched: Mutex::default(),
            status: watch::Sender::new(status),
        }
    }

    /// The live connection, if any (lock-free).
    pub fn connection(&self) -> Option<Arc<Peer<RoleClient>>> {
        self.conn.load_full()
    }

    /// The live connection's fast lane for `tools/call`, if it has one.
    pub fn lane(&self) -> Option<Arc<Fast>> {
        self.lane.load_full()
    }

    /// The last manifest read (kept while the upstream is down, so its tools fail with a clear
    /// error rather than vanish).
    pub fn manifest(&self) -> Option<Arc<Manifest>> {
        self.manifest.load_full()
    }

    /// Its lock, if it has a valid one (without one it is never exposed).
    pub fn lock(&self) -> Option<Arc<Lock>> {
        self.lock.load_full()
    }

    /// The last judgement of its live manifest against the lock (`None` before the first).
    pub fn verdict(&self) -> Option<Arc<Verdict>> {
        self.verdict.load_full()
    }

    /// Read the lock file again; an unreadable or invalid lock counts as none (fail closed).
    /// Returns whether the lock changed.
    pub fn reload_lock(&self) -> bool {
        let read = pinning::read_lock(&self.spec);
        if let Ok(mut e) = self.lock_error.lock() {
            *e = read.as_ref().err().map(ToString::to_string);
        }
        let new = match read {
            Ok(lock) => lock.map(Arc::new),
            Err(error) => {
                tracing::error!(upstream = %self.spec.name, %error, "lock file unusable; the upstream is not exposed");
                None
            }
        };
        let old = self.lock.load_full();
        let changed = match (&old, &new) {
            (Some(a), Some(b)) => a.manifest_sha256 != b.manifest_sha256 || a.pinned != b.pinned,
            (None, None) => false,
            _ => true,
        };
        if changed {
            self.lock.store(new);
        }
        changed
    }

    /// Current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Watch status changes.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    fn set_status(&self, status: Status) {
        self.status.send_replace(status);
    }
}

/// Everything a supervisor needs besides its upstream.
#[derive(Debug, Clone)]
pub struct SupervisorEnv {
    pub config: UpstreamConfig,
    pub http: reqwest::Client,
    pub default_cwd: PathBuf,
    /// Told the index of an upstream whose manifest or availability changed.
    pub changed: mpsc::UnboundedSender<(usize, Refresh)>,
    /// Drift and registry events for the store and the log.
    pub events: mpsc::UnboundedSender<GateEvent>,
    /// Pinning settings.
    pub pins: PinsConfig,
    pub shutdown: CancellationToken,
    /// The credentials upstreams are given.
    pub credentials: Arc<crate::auth::credentials::Credentials>,
}

/// Keep `up` connected until shutdown. `index` identifies it in change notices.
pub async fn supervise(up: Arc<Upstream>, index: usize, env: SupervisorEnv) {
    if !up.spec.enabled {
        return;
    }
    let mut backoff = env.config.restart_backoff;
    let mut failed_last = false;
    loop {
        if env.shutdown.is_cancelled() {
            break;
        }
        let (refresh_tx, mut refresh_rx) = mpsc::unbounded_channel();
        // Connect in the era the lock says the upstream speaks; after a failed attempt, probe.
        let era = if failed_last {
            None
        } else {
            up.lock()
                .and_then(|l| l.fingerprint.protocol_version.clone())
        };
        let handler = UpstreamClient::new(
            up.shared.clone(),
            refresh_tx.clone(),
            era.as_deref().and_then(client::era_of),
        );
        let attempt = async {
            let (running, lane) = connect::connect(
                &up.spec,
                handler,
                &env.http,
                &env.default_cwd,
                (&env.credentials, index),
            )
            .await
            .map_err(|e| e.to_string())?;
            let offered = offered(running.peer());
            let mut m = manifest::fetch(running.peer(), offered)
                .await
                .map_err(|e| format!("reading the manifest: {e}"))?;
            if let Some(info) = running.peer().peer_info() {
                m.server_info = info.server_info.clone();
                m.protocol_version = Some(info.protocol_version.to_string());
            }
            Ok::<_, String>((running, lane, m, offered))
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(env.config.connect_timeout, attempt) => r.unwrap_or_else(|_| Err(format!("no answer within {:?}", env.config.connect_timeout))),
            () = env.shutdown.cancelled() => break,
        };
        match outcome {
            Ok((running, lane, manifest, offered)) => {
                failed_last = false;
                tracing::info!(
                    upstream = %up.spec.name,
                    protocol = manifest.protocol_version.as_deref().unwrap_or("?"),
                    tools = manifest.tools.len(),
                    "upstream connected"
                );
                let peer = running.peer().clone();
                // Judge the live manifest against the lock before anything can reach it.
                up.manifest.store(Some(Arc::new(manifest)));
                judge(&up, &peer, &env).await;
                if speaks_2026(&peer) {
                    listen_for_changes(&up, &peer, refresh_tx.clone()).await;
                }
                if let Ok(mut w) = up.watched.lock() {
                    w.clear();
                }
                up.lane.store(lane.map(Arc::new));
                up.conn.store(Some(Arc::new(peer.clone())));
                up.set_status(Status::Up);
                let _ = env.changed.send((index, Refresh::Tools));
                let started = tokio::time::Instant::now();
                let spawned_us = crate::auth::credentials::now_us();
                let mut revocations = env.credentials.subscribe();
                let env_token = up.spec.credential_via == registry::Delivery::Env
                    && up.spec.credential == registry::CredentialMode::Minted;
                let ct = running.cancellation_token();
                let mut waiting = std::pin::pin!(running.waiting());
                let mut recheck = tokio::time::interval_at(
                    tokio::time::Instant::now() + env.pins.recheck,
                    env.pins.recheck,
                );
                recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let reason = loop {
                    tokio::select! {
                        r = &mut waiting => break format!("connection closed ({r:?})"),
                        () = env.shutdown.cancelled() => {
                            ct.cancel();
                            let _ = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
                            break "gateway shutting down".to_owned();
                        }
                        Some(kind) = refresh_rx.recv() => refresh(&up, &peer, offered, kind, index, &env).await,
                        _ = recheck.tick() => refresh(&up, &peer, offered, Refresh::All, index, &env).await,
                        Ok(()) = revocations.changed(), if env_token => {
                            // Its spawn-time token was revoked: a new process gets a new one.
                            if env.credentials.revoked_since(&up.spec.audience, spawned_us) {
                                ct.cancel();
                                let _ = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
                                break "its credential was revoked".to_owned();
                            }
                        }
                    }
                };
                up.conn.store(None);
                up.lane.store(None);
                up.set_status(Status::Down(reason.clone()));
                let _ = env.changed.send((index, Refresh::Tools));
                if env.shutdown.is_cancelled() {
                    break;
                }
                tracing::warn!(upstream = %up.spec.name, %reason, "upstream down; restarting");
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = env.config.restart_backoff;
                }
            }
            Err(reason) => {
                failed_last = true;
                tracing::warn!(upstream = %up.spec.name, %reason, retry_in = ?backoff, "upstream unavailable");
                up.set_status(Status::Down(reason));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = env.shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(env.config.restart_backoff_max);
    }
}

/// Which lists the connected server offers.
pub fn offered(peer: &Peer<RoleClient>) -> Offered {
    let Some(info) = peer.peer_info() else {
        return Offered {
            tools: true,
            resources: true,
            prompts: true,
        };
    };
    let caps = &info.capabilities;
    Offered {
        tools: caps.tools.is_some(),
        resources: caps.resources.is_some(),
        prompts: caps.prompts.is_some(),
    }
}

/// Re-read one list after the upstream said it changed, and publish the new manifest.
async fn refresh(
    up: &Upstream,
    peer: &Peer<RoleClient>,
    offered: Offered,
    kind: Refresh,
    index: usize,
    env: &SupervisorEnv,
) {
    let Some(current) = up.manifest() else { return };
    let mut m = Manifest::clone(&current);
    let read = async {
        match kind {
            Refresh::Tools if offered.tools => {
                m.tools = peer.list_all_tools().await?;
                m.tools.iter_mut().for_each(manifest::normalise_tool);
            }
            Refresh::Resources if offered.resources => {
                m.resources = peer.list_all_resources().await?;
                m.templates = peer.list_all_resource_templates().await.unwrap_or_default();
            }
            Refresh::Prompts if offered.prompts => m.prompts = peer.list_all_prompts().await?,
            Refresh::All => m = manifest::fetch(peer, offered).await?,
            _ => {}
        }
        Ok::<_, rmcp::service::ServiceError>(())
    };
    match tokio::time::timeout(env.config.call_timeout, read).await {
        Ok(Ok(())) => {
            up.manifest.store(Some(Arc::new(m)));
            judge(up, peer, env).await;
            let _ = env.changed.send((index, kind));
        }
        Ok(Err(error)) => {
            tracing::warn!(upstream = %up.spec.name, %error, "re-reading the manifest failed")
        }
        Err(_) => tracing::warn!(upstream = %up.spec.name, "re-reading the manifest timed out"),
    }
}

/// Re-read the lock and judge the live manifest and fingerprint against it; report drift that
/// is new since the last judgement.
async fn judge(up: &Upstream, peer: &Peer<RoleClient>, env: &SupervisorEnv) {
    up.reload_lock();
    let Some(manifest) = up.manifest() else {
        return;
    };
    let spec = up.spec.clone();
    let p = peer.clone();
    let cwd = env.default_cwd.clone();
    // Hashing the program and script files is blocking IO.
    let live = tokio::task::spawn_blocking(move || {
        let fp = pinning::fingerprint(&spec, &p, &cwd);
        (fp, pinning::LiveItems::of(&manifest))
    })
    .await;
    let Ok((fp, mut items)) = live else { return };
    let Some(lock) = up.lock() else {
        up.verdict.store(None);
        if !up
            .shadow_reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let why = up
                .lock_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "it has no lock file".to_owned());
            let detail = format!(
                "connected, but {why}: not exposed (review it and run `mcp-warden pin {}`)",
                up.spec.name
            );
            report(env, up, "registry_drift", detail, None);
        }
        return;
    };
    up.shadow_reported
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let [tools, prompts, templates] = items.hashes();
    let verdict = pins::judge(&lock, &fp, &tools, &prompts, &templates);
    let previous = up.verdict.swap(Some(Arc::new(verdict.clone())));
    let was = previous.as_deref().cloned().unwrap_or_default();
    if !verdict.upstream_drift.is_empty() && verdict.upstream_drift != was.upstream_drift {
        report(
            env,
            up,
            "registry_drift",
            format!("fingerprint changed: {}", verdict.upstream_drift.join("; ")),
            None,
        );
    }
    let before = was.drifted_names();
    let newly: Vec<&str> = verdict
        .drifted_names()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    if !newly.is_empty() {
        // The poisoning scan runs on every drift: say what the new definitions contain.
        items.scan(&newly);
        let findings: Vec<String> = items
            .tools
            .iter()
            .chain(&items.prompts)
            .chain(&items.templates)
            .filter(|i| newly.contains(&i.name.as_str()))
            .flat_map(|i| {
                i.findings
                    .iter()
                    .map(move |f| format!("{} {} at {}", i.name, f.kind.as_str(), f.location))
            })
            .collect();
        let mut detail = format!("live definition differs from the pin: {}", newly.join(", "));
        if !findings.is_empty() {
            detail.push_str(&format!("; poisoning scan: {}", findings.join(", ")));
        }
        let now = time::OffsetDateTime::now_utc();
        match pins::drift_cover(
            now,
            &up.spec.name,
            &env.pins.deploy_windows,
            &env.pins.change_tickets,
        ) {
            Ok(ticket) => report(env, up, "manifest_drift", detail, ticket.map(str::to_owned)),
            Err(()) => report(env, up, "manifest_drift_outside_window", detail, None),
        }
    }
    if !verdict.unpinned.is_empty() && verdict.unpinned != was.unpinned {
        let names: Vec<&str> = verdict.unpinned.iter().map(String::as_str).collect();
        tracing::warn!(upstream = %up.spec.name, items = %names.join(", "), "live items not in the lock are not exposed until pinned");
    }
}

fn report(
    env: &SupervisorEnv,
    up: &Upstream,
    gate: &'static str,
    detail: String,
    ticket: Option<String>,
) {
    let event = GateEvent {
        event_time: time::OffsetDateTime::now_utc(),
        gate,
        upstream: up.spec.name.clone(),
        detail,
        ticket,
    };
    let _ = env.events.send(event);
}

/// Whether the connection negotiated the stateless 2026-07-28 era (notifications then arrive
/// only on `subscriptions/listen` streams).
fn speaks_2026(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info()
        .is_some_and(|i| i.protocol_version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// A 2026-07-28 upstream sends `list_changed` only on a `subscriptions/listen` stream: open one
/// for the life of the connection and turn its notices into manifest refreshes.
async fn listen_for_changes(
    up: &Upstream,
    peer: &Peer<RoleClient>,
    refresh: mpsc::UnboundedSender<Refresh>,
) {
    let filter = SubscriptionFilter::builder()
        .tools_list_changed()
        .prompts_list_changed()
        .resources_list_changed()
        .build();
    match tokio::time::timeout(Duration::from_secs(10), peer.listen(filter)).await {
        Ok(Ok(mut sub)) => {
            tokio::spawn(async move {
                while let Ok(Some(n)) = sub.next().await {
                    let kind = match n {
                        ServerNotification::ToolListChangedNotification(_) => Refresh::Tools,
                        ServerNotification::PromptListChangedNotification(_) => Refresh::Prompts,
                        ServerNotification::ResourceListChangedNotification(_) => {
                            Refresh::Resources
                        }
                        _ => continue,
                    };
                    if refresh.send(kind).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Err(error)) => {
            tracing::debug!(upstream = %up.spec.name, %error, "no list_changed subscription")
        }
        Err(_) => {
            tracing::warn!(upstream = %up.spec.name, "subscriptions/listen not acknowledged in 10 s")
        }
    }
}

/// Ask the upstream to report updates of `uri` (its own URI) to the hub, once per connection:
/// `resources/subscribe` for a 2025-era upstream, a `subscriptions/listen` stream for a
/// 2026-07-28 one.
pub async fn watch_resource(
    up: &Upstream,
    uri: &str,
    limit: Duration,
    ct: &CancellationToken,
) -> Result<(), crate::error::GatewayError> {
    use crate::error::GatewayError;
    let peer = crate::pipeline::dispatch::connected(up)?;
    let fresh = up
        .watched
        .lock()
        .map(|mut w| w.insert(uri.to_owned()))
        .unwrap_or(false);
    if !fresh {
        return Ok(());
    }
    let name = up.spec.name.clone();
    let forget = || {
        if let Ok(mut w) = up.watched.lock() {
            w.remove(uri);
        }
    };
    let request = async {
        if speaks_2026(&peer) {
            let filter = SubscriptionFilter::builder()
                .resource_subscription(uri)
                .build();
            let mut sub = peer
                .listen(filter)
                .await
                .map_err(|e| GatewayError::from_service(&name, e))?;
            let shared = up.shared.clone();
            tokio::spawn(async move {
                while let Ok(Some(n)) = sub.next().await {
                    if let ServerNotification::ResourceUpdatedNotification(u) = n {
                        let exposed =
                            crate::decide::names::expose_uri(&shared.prefix, &u.params.uri);
                        shared
                            .hub
                            .publish(crate::gateway::hub::AgentEvent::ResourceUpdated(exposed));
                    }
                }
            });
            Ok(())
        } else {
            #[expect(
                deprecated,
                reason = "resources/subscribe is how 2025-era upstreams report updates"
            )]
            let r = peer
                .subscribe(rmcp::model::SubscribeRequestParams::new(uri))
                .await;
            r.map_err(|e| GatewayError::from_service(&name, e))
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(limit, request) => r.unwrap_or_else(|_| Err(GatewayError::Timeout { name: name.clone(), after: limit })),
        () = ct.cancelled() => Err(GatewayError::Cancelled),
    };
    if outcome.is_err() {
        forget();
    }
    outcome
}
