//! On-demand benchmark of the chain stage (not run in CI):
//!
//! ```text
//! cargo test --release --bin mcp-warden pipeline::bench -- --ignored --nocapture
//! ```
//!
//! What the chain stage adds to a call: finding the chain's state (a moka lookup by chain id),
//! the domain check and the budget count under its mutex — and, for a call-back, verifying the
//! gateway-minted credential it carries (an EdDSA signature check).

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::credentials::{Caller, Credentials, Identity};
use crate::config::MintingConfig;
use crate::decide::chain::{Budgets, ChainState};
use crate::pipeline::chain::Chains;
use crate::upstream::registry::{ActionClass, CredentialMode, UpstreamSpec};

const ROUNDS: usize = 15;
const N: usize = 20_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "benchmark: run on demand with --ignored --nocapture"]
async fn bench() {
    let chains: Chains = moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(Duration::from_secs(3600))
        .build();
    // Other live chains around, as on a busy gateway.
    for i in 0..1000 {
        chains.insert(
            format!("chain-{i}"),
            Arc::new(Mutex::new(ChainState::default())),
        );
    }
    let budgets = Budgets {
        max_depth: Some(4),
        max_calls: Some(u32::MAX),
        max_fanout: Some(u32::MAX),
        window_ms: 10_000,
    };
    let session = "chain-17".to_owned();
    let domain = "notes".to_owned();
    let mut warm = Vec::new();
    for round in 0..ROUNDS {
        let t = Instant::now();
        for i in 0..N {
            // locate (the session's chain), gate (state + domain), commit (budgets, bind).
            let id = session.clone();
            let state = chains.get_with(id, || Arc::new(Mutex::new(ChainState::default())));
            let mut s = state.lock().unwrap();
            let same = s.domain.as_deref().is_none_or(|d| d == domain);
            let now = u64::try_from(round * N + i).unwrap();
            black_box(s.admit(0, &budgets, now)).unwrap();
            if s.domain.is_none() {
                s.domain = Some(domain.clone());
            }
            black_box(same);
            // Keep the window short so the fan-out queue stays realistic.
            if s.recent.len() > 64 {
                s.recent.clear();
            }
        }
        warm.push(t.elapsed().as_secs_f64() * 1e6 / N as f64);
    }
    // A call-back: verify the gateway-minted credential that names the chain.
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(
        dir.path().to_path_buf(),
        MintingConfig {
            issuer: None,
            token_ttl: Duration::from_secs(300),
            refresh_before: Duration::from_secs(30),
            env_token_ttl: Duration::from_secs(3600),
            service_subject: "mcp-warden".to_owned(),
        },
        Identity {
            issuer: "https://warden.bench".to_owned(),
            resource: "https://warden.bench/mcp".to_owned(),
        },
        reqwest::Client::new(),
    )
    .unwrap();
    let mut spec = UpstreamSpec::for_tests("relay", CredentialMode::Minted);
    spec.domain = "lab".to_owned();
    let caller = Caller {
        sub: "alice",
        chain: "chain-17",
        depth: 1,
    };
    let token = creds
        .for_upstream(0, &spec, Some(caller), ActionClass::Write)
        .await
        .unwrap()
        .unwrap();
    let audiences = ["https://relay.internal"];
    let (mut callback, mut callback_warm) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..200 {
            black_box(creds.verify_own(&token, Some(&audiences)).unwrap());
        }
        callback.push(t.elapsed().as_secs_f64() * 1e6 / 200.0);
        let t = Instant::now();
        for _ in 0..N {
            black_box(creds.verify_own_cached(&token, &audiences).unwrap());
        }
        callback_warm.push(t.elapsed().as_secs_f64() * 1e6 / N as f64);
    }
    println!("chain stage, medians over {ROUNDS} rounds (µs per call):");
    println!(
        "  agent call (locate + domain check + budgets):   {:8.3}",
        median(warm)
    );
    println!(
        "  call-back, verifying its chain credential cold: {:8.2}",
        median(callback)
    );
    println!(
        "  call-back, chain credential verified before:    {:8.3}",
        median(callback_warm)
    );
}
