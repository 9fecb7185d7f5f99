//! The evaluator task: every `gates.interval_sec`, the replica holding the `gates` lease reads
//! each gate's sample and memory from the store, evaluates it, sends the page it asks for and
//! stores the result; every replica exports the stored gate states as metrics. Evaluated once,
//! not once per replica: the lease (`store::gates`) lasts three intervals plus one round's page
//! timeouts and is renewed every interval; a replica that shuts down releases it, one that dies
//! is replaced when it expires.

use std::collections::HashMap;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::eval::{Evaluation, Sample, State, evaluate, summary};
use super::paging::{Page, Pager};
use crate::config::{GateConfig, GatesConfig};
use crate::gateway::metrics;
use crate::store::gates::GateRecord;
use crate::store::{Store, StoreError};

/// The lease the evaluating replica holds.
pub const LEASE: &str = "gates";

/// One gate evaluated now, beside its stored record.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// The gate's settings.
    pub gate: GateConfig,
    /// The evaluation.
    pub eval: Evaluation,
    /// What the store held before (`None`: never evaluated).
    pub stored: Option<GateRecord>,
}

fn window_start(gate: &GateConfig, now: OffsetDateTime) -> OffsetDateTime {
    now - time::Duration::try_from(gate.window).unwrap_or(time::Duration::WEEK)
}

/// Evaluate every gate from the store at `now`, writing nothing (`mcp-warden gates`, and the
/// first half of a round).
pub async fn evaluate_all(
    store: &Store,
    gates: &GatesConfig,
    now: OffsetDateTime,
) -> Result<Vec<Evaluated>, StoreError> {
    let mut stored: HashMap<String, GateRecord> = store
        .gate_records()
        .await?
        .into_iter()
        .map(|r| (r.gate.clone(), r))
        .collect();
    let mut out = Vec::with_capacity(gates.gates.len());
    for gate in &gates.gates {
        let sample = if gate.enabled {
            store
                .gate_sample(gate.kind, window_start(gate, now), now)
                .await?
        } else {
            Sample::default()
        };
        let before = stored.remove(gate.kind.name());
        let memory = before
            .as_ref()
            .map(|r| r.memory.clone())
            .unwrap_or_default();
        out.push(Evaluated {
            gate: gate.clone(),
            eval: evaluate(gate, sample, &memory, now),
            stored: before,
        });
    }
    Ok(out)
}

/// One round as the lease holder: evaluate, page, store, export.
pub async fn round(
    store: &Store,
    gates: &GatesConfig,
    pager: &Pager,
    holder: &str,
    now: OffsetDateTime,
) -> Result<Vec<Evaluated>, StoreError> {
    let mut all = evaluate_all(store, gates, now).await?;
    for ev in &mut all {
        let was = ev.stored.as_ref().map_or(State::Ok, |r| r.state);
        log_transition(&ev.gate, &ev.eval, was);
        if let (Some(kind), Some(key)) = (ev.eval.page, ev.eval.memory.dedup_key.clone())
            && pager.configured()
        {
            let page = Page {
                kind,
                gate: &ev.gate,
                eval: &ev.eval,
                dedup_key: &key,
                at: now,
            };
            match pager.send(&page).await {
                Ok(()) => {
                    tracing::info!(gate = ev.gate.kind.name(), page = kind.as_str(), dedup_key = %key, "page delivered");
                    metrics::page(ev.gate.kind.name(), kind.as_str(), true);
                    ev.eval.memory.delivered(kind, now);
                }
                Err(error) => {
                    // The memory still says "not delivered": the next round sends it again.
                    tracing::error!(gate = ev.gate.kind.name(), page = kind.as_str(), %error, "page not delivered; retrying at the next evaluation");
                    metrics::page(ev.gate.kind.name(), kind.as_str(), false);
                }
            }
        }
        store
            .save_gate(&GateRecord {
                gate: ev.gate.kind.name().to_owned(),
                state: ev.eval.state,
                value: ev.eval.value,
                sample: ev.eval.sample,
                evaluated_at: now,
                evaluated_by: holder.to_owned(),
                memory: ev.eval.memory.clone(),
            })
            .await?;
        metrics::gate(
            ev.gate.kind.name(),
            ev.eval.state == State::Firing,
            ev.eval.value,
        );
    }
    Ok(all)
}

fn log_transition(gate: &GateConfig, e: &Evaluation, was: State) {
    let name = gate.kind.name();
    match (was, e.state) {
        (State::Firing, State::Firing) => {}
        (_, State::Firing) => {
            tracing::warn!(gate = name, owner = %gate.owner, "gate FIRING: {}", summary(gate, e));
        }
        (State::Firing, _) => {
            tracing::info!(gate = name, "gate cleared: {}", summary(gate, e));
        }
        (State::Ok | State::Disabled, State::Breaching) => {
            tracing::warn!(
                gate = name,
                "gate breaching (pages after {} s): {}",
                gate.hold.as_secs(),
                summary(gate, e)
            );
        }
        _ => {}
    }
}

/// Export the stored gate states (a replica that does not evaluate still shows them).
async fn export_stored(store: &Store) -> Result<(), StoreError> {
    for r in store.gate_records().await? {
        if let Some(kind) = crate::gates::GateKind::from_name(&r.gate) {
            metrics::gate(kind.name(), r.state == State::Firing, r.value);
        }
    }
    Ok(())
}

/// A lease holder id unique to this gateway start (process id and a random part).
pub fn holder_id() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::new_v4())
}

/// Evaluate the gates every `gates.interval` while `holder` holds the lease, until `stop`;
/// then give the lease up.
pub async fn run(
    store: Store,
    gates: GatesConfig,
    pager: Pager,
    holder: String,
    stop: CancellationToken,
) {
    // Three intervals, plus the longest a round's pages may take: a holder that is still
    // paging must not lose the lease to a replica that would page the same episode again.
    let ttl = gates
        .interval
        .saturating_mul(3)
        .saturating_add(pager.round_budget());
    if !pager.configured() {
        tracing::info!(
            "gates are evaluated, but no [paging] webhook is configured: nobody is paged"
        );
    }
    let mut holding = false;
    let mut failing = false;
    loop {
        let now = OffsetDateTime::now_utc();
        let result = match store.acquire_lease(LEASE, &holder, now, ttl).await {
            Ok(true) => {
                if !holding {
                    tracing::info!(holder = %holder, "this gateway evaluates the detection gates (lease taken)");
                    holding = true;
                }
                round(&store, &gates, &pager, &holder, now)
                    .await
                    .map(|_| ())
            }
            Ok(false) => {
                if holding {
                    tracing::info!("another gateway evaluates the detection gates now");
                    holding = false;
                }
                export_stored(&store).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if failing => {
                tracing::info!("detection gates evaluated again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::error!(%error, "detection gates not evaluated; retrying");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(gates.interval) => {}
        }
    }
    if holding && let Err(error) = store.release_lease(LEASE, &holder).await {
        tracing::warn!(%error, "the gates lease was not released; it expires by itself");
    }
}

#[cfg(test)]
mod tests;
