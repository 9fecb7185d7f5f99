//! Pages: a webhook POST of either mcp-warden's generic JSON body or a PagerDuty Events API v2
//! event. A trigger when a gate starts firing, a resolve when it clears, both under the
//! episode's dedup key (so a receiver that sees a page twice merges it).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::eval::{Evaluation, PageKind, show, summary};
use crate::config::{GateConfig, PageFormat, PagingConfig};

/// Why a page was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No webhook is configured.
    #[error("no webhook is configured ([paging] webhook_url)")]
    NotConfigured,
    /// The request failed (connection, timeout).
    #[error("webhook request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The receiver answered with an error status.
    #[error("webhook answered {0}")]
    Status(u16),
}

/// One page to send.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    /// Trigger or resolve.
    pub kind: PageKind,
    /// The gate's settings.
    pub gate: &'a GateConfig,
    /// The evaluation that asks for the page.
    pub eval: &'a Evaluation,
    /// The episode's dedup key.
    pub dedup_key: &'a str,
    /// Now.
    pub at: OffsetDateTime,
}

/// Sends pages to the configured webhook.
#[derive(Debug, Clone)]
pub struct Pager {
    config: PagingConfig,
    http: reqwest::Client,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Pager {
    /// A pager for `config` (requests time out after `config.timeout`).
    pub fn new(config: PagingConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()?;
        Ok(Self { config, http })
    }

    /// The longest one round's pages may take (one per gate, each up to the timeout); zero
    /// without a webhook.
    pub fn round_budget(&self) -> std::time::Duration {
        if self.configured() {
            let gates = u32::try_from(crate::gates::GateKind::ALL.len()).unwrap_or(u32::MAX);
            self.config.timeout.saturating_mul(gates)
        } else {
            std::time::Duration::ZERO
        }
    }

    /// Whether pages go anywhere.
    pub fn configured(&self) -> bool {
        self.config.url.is_some()
    }

    /// The JSON body of `page` in the configured format.
    pub fn body(&self, page: &Page<'_>) -> Value {
        match self.config.format {
            PageFormat::Generic => generic(&self.config.source, page),
            PageFormat::PagerDuty => pagerduty(
                &self.config.source,
                self.config.routing_key.as_deref().unwrap_or_default(),
                page,
            ),
        }
    }

    /// POST `page`; `Ok` on a 2xx answer.
    pub async fn send(&self, page: &Page<'_>) -> Result<(), PageError> {
        let url = self.config.url.as_deref().ok_or(PageError::NotConfigured)?;
        let answer = self.http.post(url).json(&self.body(page)).send().await?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(PageError::Status(answer.status().as_u16()))
        }
    }
}

fn status(kind: PageKind) -> &'static str {
    match kind {
        PageKind::Trigger => "firing",
        PageKind::Resolve => "resolved",
    }
}

fn page_summary(page: &Page<'_>) -> String {
    let s = summary(page.gate, page.eval);
    match page.kind {
        PageKind::Trigger => format!("[{}] FIRING {s}", page.gate.owner),
        PageKind::Resolve => format!("[{}] RESOLVED {s}", page.gate.owner),
    }
}

/// `{gate, status, value, threshold, target, owner, window_sec, summary, dedup_key, gateway, at}`.
fn generic(source: &str, page: &Page<'_>) -> Value {
    let g = page.gate;
    json!({
        "gate": g.kind.name(),
        "status": status(page.kind),
        "value": page.eval.value,
        "threshold": g.threshold,
        "comparison": g.kind.compare().symbol(),
        "target": g.target,
        "owner": g.owner,
        "window_sec": g.window.as_secs(),
        "for_sec": g.hold.as_secs(),
        "hits": page.eval.sample.hits,
        "total": page.eval.sample.total,
        "summary": page_summary(page),
        "dedup_key": page.dedup_key,
        "firing_since": page.eval.memory.firing_since.map(rfc3339),
        "gateway": source,
        "at": rfc3339(page.at),
    })
}

/// A PagerDuty Events API v2 event; a resolve carries only the routing key, action and dedup
/// key (the API ignores a payload on resolve).
fn pagerduty(source: &str, routing_key: &str, page: &Page<'_>) -> Value {
    let g = page.gate;
    match page.kind {
        PageKind::Resolve => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": page.dedup_key,
        }),
        PageKind::Trigger => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": page.dedup_key,
            "payload": {
                // PagerDuty caps the summary at 1024 characters.
                "summary": page_summary(page).chars().take(1024).collect::<String>(),
                "source": source,
                "severity": "critical",
                "timestamp": rfc3339(page.at),
                "component": g.kind.name(),
                "group": g.owner,
                "class": "mcp-warden gate",
                "custom_details": {
                    "gate": g.kind.name(),
                    "value": show(g.kind, page.eval.value),
                    "threshold": format!("{} {}", g.kind.compare().symbol(), show(g.kind, g.threshold)),
                    "target": show(g.kind, g.target),
                    "owner": g.owner,
                    "window_sec": g.window.as_secs(),
                    "for_sec": g.hold.as_secs(),
                    "hits": page.eval.sample.hits,
                    "total": page.eval.sample.total,
                    "firing_since": page.eval.memory.firing_since.map(rfc3339),
                },
            },
        }),
    }
}
