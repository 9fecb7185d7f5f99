//! The gateway's shared state and its start-up and shutdown.

pub mod catalog;
pub mod hub;
pub mod metrics;
pub mod policies;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::catalog::Catalog;
use self::hub::{AgentEvent, Hub};
use crate::auth::credentials::Credentials;
use crate::auth::inbound::Validator;
use crate::config::Config;
use crate::decide::policy::PolicySet;
use crate::error::GatewayError;
use crate::store::{AuditSink, AuditWriter, ControlState, Store};
use crate::upstream::client::Refresh;
use crate::upstream::{self, Status, SupervisorEnv, Upstream, registry};

/// Everything a request needs; shared by every agent session.
#[derive(Debug)]
pub struct Gateway {
    /// The resolved configuration.
    pub config: Config,
    /// Registered upstreams, sorted by name; catalog routes index into this.
    pub upstreams: Vec<Arc<Upstream>>,
    /// The exposed catalog, swapped whole on every manifest change.
    pub catalog: ArcSwap<Catalog>,
    /// Notification routing.
    pub hub: Arc<Hub>,
    /// The audit writer's queue.
    pub audit: AuditSink,
    /// Every known principal.
    pub principals: crate::pipeline::authenticate::Principals,
    /// The compiled policy, swapped whole when `policies_dir` changes.
    pub policy: Arc<ArcSwap<PolicySet>>,
    /// The shared control state (emergency mode, disabled upstreams, revocations), as last
    /// read from the store.
    pub control: ArcSwap<ControlState>,
    /// Nudged after an in-process admin action, so the control state is read again at once.
    pub control_changed: Arc<Notify>,
    /// The control reads started and applied, so that an in-process admin action returns
    /// only once a read begun after its change is in force here.
    pub control_refresh: Arc<ControlRefresh>,
    /// The store (approvals, control state; audit rows go through `audit`).
    pub store: Store,
    /// The credentials upstreams get (minted, or from their authorization servers).
    pub credentials: Arc<Credentials>,
    /// Inbound JWT validation.
    pub validator: Validator,
    /// Live chains (domain, calls, fan-out window), forgotten when idle.
    pub chains: crate::pipeline::chain::Chains,
    /// Gate events for the store and the log.
    pub events: mpsc::UnboundedSender<crate::store::GateEvent>,
}

impl Gateway {
    /// The upstream at `index` (an index from the catalog).
    pub fn upstream(&self, index: usize) -> Result<&Upstream, GatewayError> {
        self.upstreams
            .get(index)
            .map(AsRef::as_ref)
            .ok_or_else(|| GatewayError::UnknownTool(String::new()))
    }

    /// Ready once every enabled upstream has connected or failed at least once.
    pub fn ready(&self) -> bool {
        self.upstreams
            .iter()
            .all(|u| u.status() != Status::Starting)
    }

    /// Whether calls can be decided: the store accepts writes, or `audit.fail_open`.
    pub fn store_ok(&self) -> bool {
        self.config.audit.fail_open || self.audit.store_up()
    }
}

/// A started gateway; call [`Running::shutdown`] to stop it cleanly.
#[derive(Debug)]
pub struct Running {
    /// The shared state.
    pub gateway: Arc<Gateway>,
    shutdown: CancellationToken,
    audit_stop: CancellationToken,
    tasks: JoinSet<()>,
    writer: AuditWriter,
    store: Store,
}

/// Load the registry, open the store, connect every enabled upstream (waiting up to
/// `startup_wait` for each first attempt) and build the catalog. A name collision between
/// upstreams stops the start.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let specs = registry::load(&config.registry_dir)?;
    for t in &config.pins.change_tickets {
        if !specs.iter().any(|s| s.name == t.upstream) {
            anyhow::bail!(
                "invalid configuration{}: key `pins.change_tickets`: ticket {:?} names upstream {:?}, which is not in {}",
                config
                    .source
                    .as_ref()
                    .map(|f| format!(" in {}", f.display()))
                    .unwrap_or_default(),
                t.id,
                t.upstream,
                config.registry_dir.display()
            );
        }
    }
    if specs.is_empty() {
        tracing::warn!(dir = %config.registry_dir.display(), "the registry is empty: no upstream will be exposed");
    }
    let metrics = metrics::install();
    let shutdown = CancellationToken::new();
    let audit_stop = CancellationToken::new();
    let (audit, writer, store) =
        crate::store::open(&config.store, &config.state_dir, audit_stop.clone())
            .await
            .with_context(|| format!("opening the audit store {}", config.store))?;
    tracing::info!(store = %config.store, backend = store.backend(), "store open");
    for s in &specs {
        tracing::info!(
            upstream = %s.name, target = %s.target(), prefix = %s.prefix, domain = %s.domain,
            audience = %s.audience, credential = ?s.credential, enabled = s.enabled,
            file = %s.source.display(), "registered upstream"
        );
    }
    let policy = policies::read_dir(&config.policies_dir).with_context(|| {
        format!(
            "loading the policies in {} (`mcp-warden policy check` explains)",
            config.policies_dir.display()
        )
    })?;
    if policy.rule_count() == 0 {
        tracing::warn!(dir = %config.policies_dir.display(), "no policy rules: every call is denied (no rule matched = DENY)");
    }
    tracing::info!(
        rules = policy.rule_count(),
        files = policy.files().len(),
        "policy loaded"
    );
    let control = store
        .control_state()
        .await
        .context("reading the control state from the store")?;
    if control.emergency {
        tracing::warn!("emergency write-approval mode is ON: every write needs approval");
    }
    let hub = Arc::new(Hub::default());
    let upstreams: Vec<Arc<Upstream>> = specs
        .into_iter()
        .map(|s| Arc::new(Upstream::new(s, hub.clone())))
        .collect();
    let principals = crate::pipeline::authenticate::Principals::from_config(&config);
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64)
        .build()
        .context("building the HTTP client")?;
    let credentials = Arc::new(
        Credentials::from_config(&config, config.listen, http.clone()).with_context(|| {
            format!(
                "reading (or creating) the gateway's signing keys in {}",
                crate::auth::keys::dir(&config.state_dir).display()
            )
        })?,
    );
    credentials.set_revocations(&control.revocations);
    let validator = Validator::new(&config.auth, http.clone());
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let chains = moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(config.chain.idle)
        .build();
    let gateway = Arc::new(Gateway {
        chains,
        credentials,
        validator,
        events: events_tx.clone(),
        catalog: ArcSwap::from_pointee(Catalog::default()),
        config,
        upstreams,
        hub,
        audit,
        principals,
        policy: Arc::new(ArcSwap::from_pointee(policy)),
        control: ArcSwap::from_pointee(control),
        control_changed: Arc::new(Notify::new()),
        control_refresh: Arc::new(ControlRefresh::default()),
        store: store.clone(),
    });
    // Locks are read before any connection: an upstream without one is never exposed.
    for up in &gateway.upstreams {
        up.reload_lock();
        if let Some(lock) = up.lock() {
            let read = |t: &str| up.spec.action_class(t) == registry::ActionClass::Read;
            for conflict in crate::decide::pins::class_hint_conflicts(&lock, read) {
                tracing::warn!(upstream = %up.spec.name, "{conflict}: the registry's class stands (annotations are hints); review the classification");
            }
        }
        if up.spec.enabled && up.lock().is_none() {
            let path = crate::upstream::pinning::lock_path(&up.spec);
            tracing::warn!(
                upstream = %up.spec.name,
                lock = %path.display(),
                "no valid lock file: this upstream is NOT exposed (fail closed); review it and run `mcp-warden pin {}`",
                up.spec.name
            );
        }
    }
    let env = SupervisorEnv {
        credentials: gateway.credentials.clone(),
        config: gateway.config.upstream.clone(),
        http,
        default_cwd: gateway.config.base_dir(),
        changed: changed_tx,
        events: events_tx.clone(),
        pins: gateway.config.pins.clone(),
        shutdown: shutdown.clone(),
    };
    // Detection gates: one evaluator per process, evaluating only while it holds the lease.
    let pager = if gateway.config.gates.enabled {
        Some(
            crate::gates::paging::Pager::new(gateway.config.paging.clone())
                .context("building the paging HTTP client")?,
        )
    } else {
        None
    };
    let mut tasks = JoinSet::new();
    if let Some(handle) = metrics {
        tasks.spawn(metrics::upkeep(handle, shutdown.clone()));
    }
    tasks.spawn(catalog_task(gateway.clone(), changed_rx));
    tasks.spawn(event_task(store.clone(), events_rx, shutdown.clone()));
    tasks.spawn(control_task(gateway.clone(), shutdown.clone()));
    tasks.spawn(policy_task(
        gateway.clone(),
        events_tx.clone(),
        shutdown.clone(),
    ));
    if let Some(pager) = pager {
        tasks.spawn(crate::gates::evaluator::run(
            store.clone(),
            gateway.config.gates.clone(),
            pager,
            crate::gates::evaluator::holder_id(),
            shutdown.clone(),
        ));
    }
    for (i, up) in gateway.upstreams.iter().enumerate() {
        tasks.spawn(upstream::supervise(up.clone(), i, env.clone()));
    }
    drop(env);
    let running = Running {
        gateway,
        shutdown,
        audit_stop,
        tasks,
        writer,
        store,
    };
    running.wait_first_attempts().await;
    // Build once more now that every first attempt is in, then refuse colliding names.
    let catalog = Catalog::build(&running.gateway.upstreams);
    if let Some(first) = catalog.collisions.first() {
        let all = catalog.collisions.join("; ");
        running.shutdown().await;
        anyhow::bail!(
            "exposed names collide ({all}); give one of the upstreams a prefix (first: {first})"
        );
    }
    running.gateway.catalog.store(Arc::new(catalog));
    Ok(running)
}

impl Running {
    async fn wait_first_attempts(&self) {
        let wait = self.gateway.config.upstream.startup_wait;
        let all = futures::future::join_all(self.gateway.upstreams.iter().map(|u| {
            let mut rx = u.watch_status();
            async move {
                let _ = rx.wait_for(|s| *s != Status::Starting).await;
            }
        }));
        if tokio::time::timeout(wait, all).await.is_err() {
            for u in self
                .gateway
                .upstreams
                .iter()
                .filter(|u| u.status() == Status::Starting)
            {
                tracing::warn!(upstream = %u.spec.name, "not connected after {wait:?}; serving without it for now");
            }
        }
    }

    /// Stop supervising (closing every upstream connection and killing child processes), then
    /// flush the audit store.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
        // Agents are gone by now: what is queued is all there will be.
        self.audit_stop.cancel();
        self.writer.close(Duration::from_secs(5)).await;
        self.store.close().await;
    }
}

/// Write drift, registry and authentication events to the store and the log (the gates issue
/// pages on them). At shutdown, what is queued is written before the task ends.
async fn event_task(
    store: Store,
    mut events: mpsc::UnboundedReceiver<crate::store::GateEvent>,
    stop: CancellationToken,
) {
    async fn write(store: &Store, e: crate::store::GateEvent) {
        tracing::warn!(gate = e.gate, upstream = %e.upstream, ticket = ?e.ticket, "{}", e.detail);
        if let Err(error) = store.record_event(&e).await {
            tracing::error!(%error, gate = e.gate, "gate event not stored");
        }
    }
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Some(e) => write(&store, e).await,
                None => return,
            },
            () = stop.cancelled() => {
                while let Ok(e) = events.try_recv() {
                    write(&store, e).await;
                }
                return;
            }
        }
    }
}

/// Counts the control-state reads `control_task` starts and applies (one at a time, in
/// order), so that an in-process admin action can wait for a read that began after its change.
#[derive(Debug)]
pub struct ControlRefresh {
    started: AtomicU64,
    applied: watch::Sender<u64>,
}

impl Default for ControlRefresh {
    fn default() -> Self {
        Self {
            started: AtomicU64::new(0),
            applied: watch::channel(0).0,
        }
    }
}

impl ControlRefresh {
    /// A read starts: its number.
    fn begin(&self) -> u64 {
        self.started
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1)
    }

    /// Read `n` is in force.
    fn applied(&self, n: u64) {
        self.applied.send_replace(n);
    }

    /// The number of the last read started: every later one sees what the store holds now.
    pub fn mark(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Wait, at most `limit`, until a read numbered after `mark` is in force; whether it is.
    pub async fn wait_past(&self, mark: u64, limit: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        matches!(
            tokio::time::timeout(limit, applied.wait_for(|n| *n > mark)).await,
            Ok(Ok(_))
        )
    }
}

/// Keep the control state current: read it every `control.poll_sec` (another process or
/// replica may have changed it) and at once when an in-process admin action nudges. A change
/// of disabled upstreams changes what agents are shown.
async fn control_task(gw: Arc<Gateway>, stop: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(gw.config.control_poll) => {}
            () = gw.control_changed.notified() => {}
        }
        let read = gw.control_refresh.begin();
        let state = gw.store.control_state().await;
        // Down on a failed read; up again only when the writer commits (it is the one that
        // must succeed for a call to be recorded).
        if state.is_err() {
            gw.audit.set_store_up(false);
        }
        match state {
            Ok(new) => {
                gw.credentials.set_revocations(&new.revocations);
                gw.credentials.reload_keys_if_rotated();
                if failing {
                    tracing::info!("control state readable again");
                    failing = false;
                }
                let old = gw.control.load();
                if old.emergency != new.emergency {
                    tracing::warn!(on = new.emergency, "emergency write-approval mode changed");
                }
                let listing = old.disabled != new.disabled;
                if old.emergency != new.emergency || listing || old.revocations != new.revocations {
                    gw.control.store(Arc::new(new));
                }
                if listing {
                    gw.hub.publish(AgentEvent::ToolsChanged);
                }
                gw.control_refresh.applied(read);
            }
            // The last known state stays in force; it is never relaxed because the store is down.
            Err(error) if !failing => {
                failing = true;
                tracing::error!(%error, "control state unreadable; keeping the last known one");
            }
            Err(_) => {}
        }
    }
}

/// Reload the policy when `policies_dir` changes; a broken file keeps the running policy.
async fn policy_task(
    gw: Arc<Gateway>,
    events: mpsc::UnboundedSender<crate::store::GateEvent>,
    stop: CancellationToken,
) {
    let hub = gw.hub.clone();
    let dir = gw.config.policies_dir.clone();
    policies::watch(
        dir.clone(),
        gw.policy.clone(),
        gw.config.policy_reload,
        stop,
        move |result| match result {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "policy reloaded");
                hub.publish(AgentEvent::ToolsChanged);
            }
            Err(error) => {
                tracing::error!(%error, "new policy rejected; the previous policy stays in force");
                // Reported where operators look: the gate events of the store.
                let _ = events.send(crate::store::GateEvent {
                    event_time: time::OffsetDateTime::now_utc(),
                    gate: "policy_reload_failed",
                    upstream: String::new(),
                    detail: error.to_string(),
                    ticket: None,
                });
            }
        },
    )
    .await;
}

/// Rebuild the catalog whenever an upstream's manifest or availability changes, and tell the
/// agents what changed.
async fn catalog_task(gw: Arc<Gateway>, mut changed: mpsc::UnboundedReceiver<(usize, Refresh)>) {
    while changed.recv().await.is_some() {
        // Coalesce a burst of changes into one rebuild.
        while changed.try_recv().is_ok() {}
        let new = Catalog::build(&gw.upstreams);
        for c in &new.collisions {
            tracing::error!("name collision, later item withheld: {c}");
        }
        let old = gw.catalog.swap(Arc::new(new));
        let new = gw.catalog.load();
        if old.listed != new.listed {
            gw.hub.publish(AgentEvent::ToolsChanged);
        }
        if old.prompts != new.prompts {
            gw.hub.publish(AgentEvent::PromptsChanged);
        }
        if old.resources != new.resources || old.templates != new.templates {
            gw.hub.publish(AgentEvent::ResourcesChanged);
        }
    }
}
