//! On-demand benchmark of the credential stages (not run in CI):
//!
//! ```text
//! cargo test --release --bin mcp-warden auth::bench -- --ignored --nocapture
//! ```
//!
//! Inbound validation of an agent's JWT, cold (signature and claims checked, then cached) and
//! warm (a cache hit); minting an upstream credential, cold (signed) and warm (a cache hit).
//! Each figure is the median over rounds of the mean time per operation in a round.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::credentials::{Caller, Credentials, Identity};
use super::inbound::Validator;
use crate::config::{AuthConfig, IssuerConfig, JwksSource, MintingConfig};
use crate::upstream::registry::{ActionClass, CredentialMode, UpstreamSpec};

const ROUNDS: usize = 15;
const N: usize = 400;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn per_op(start: Instant, n: usize) -> f64 {
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "benchmark: run on demand with --ignored --nocapture"]
async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    // The gateway itself is the issuer agents' tokens come from here: its JWKS file is what
    // the validator trusts, its keys sign the agents' tokens.
    let identity = Identity {
        issuer: "https://warden.bench".to_owned(),
        resource: "https://warden.bench/mcp".to_owned(),
    };
    let minting = MintingConfig {
        issuer: None,
        token_ttl: Duration::from_secs(300),
        refresh_before: Duration::from_secs(30),
        env_token_ttl: Duration::from_secs(3600),
        service_subject: "mcp-warden".to_owned(),
    };
    let creds = Credentials::new(
        dir.path().to_path_buf(),
        minting,
        identity.clone(),
        reqwest::Client::new(),
    )
    .unwrap();
    let mut spec = UpstreamSpec::for_tests("notes", CredentialMode::Minted);
    spec.audience = identity.resource.clone();
    let validator = Validator::new(
        &AuthConfig {
            resource: Some(identity.resource.clone()),
            allow_anonymous_loopback: false,
            required_scopes: Vec::new(),
            leeway: Duration::from_secs(5),
            cache_max: Duration::from_secs(300),
            issuers: vec![IssuerConfig {
                issuer: identity.issuer.clone(),
                jwks: JwksSource::File(dir.path().join("jwks.json")),
                audience: None,
                algorithms: vec![jsonwebtoken::Algorithm::EdDSA],
                principal_claim: "sub".to_owned(),
                principal_prefix: String::new(),
                labels_claim: None,
                scopes_claim: "scope".to_owned(),
                labels: Vec::new(),
                jwks_refresh: Duration::from_secs(300),
            }],
        },
        reqwest::Client::new(),
    );
    // Agents' tokens: minted for the resource itself, one per distinct chain.
    let mut tokens = Vec::new();
    for i in 0..ROUNDS * N + 1 {
        let chain = format!("c{i}");
        let caller = Caller {
            sub: "alice",
            chain: &chain,
            depth: 0,
        };
        let t = creds
            .for_upstream(0, &spec, Some(caller), ActionClass::Read)
            .await
            .unwrap()
            .unwrap();
        tokens.push(t);
    }
    let warm = tokens.pop().unwrap();
    validator.validate(&warm, &identity.resource).await.unwrap();
    let (mut cold_v, mut warm_v, mut cold_m, mut warm_m) = (vec![], vec![], vec![], vec![]);
    spec.audience = "https://notes.internal".to_owned();
    let caller = Caller {
        sub: "alice",
        chain: "warm",
        depth: 0,
    };
    creds
        .for_upstream(1, &spec, Some(caller), ActionClass::Write)
        .await
        .unwrap();
    let chains: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    for round in 0..ROUNDS {
        let batch = tokens.get(round * N..(round + 1) * N).unwrap();
        let t = Instant::now();
        for token in batch {
            black_box(validator.validate(token, &identity.resource).await.unwrap());
        }
        cold_v.push(per_op(t, N));
        let t = Instant::now();
        for _ in 0..N * 10 {
            black_box(validator.validate(&warm, &identity.resource).await.unwrap());
        }
        warm_v.push(per_op(t, N * 10));
        // Cold minting: a cache miss every time (each round its own upstream index).
        let t = Instant::now();
        for chain in &chains {
            let caller = Caller {
                sub: "alice",
                chain,
                depth: 0,
            };
            black_box(
                creds
                    .for_upstream(2 + round, &spec, Some(caller), ActionClass::Write)
                    .await
                    .unwrap(),
            );
        }
        cold_m.push(per_op(t, N));
        let t = Instant::now();
        for _ in 0..N * 10 {
            black_box(
                creds
                    .for_upstream(1, &spec, Some(caller), ActionClass::Write)
                    .await
                    .unwrap(),
            );
        }
        warm_m.push(per_op(t, N * 10));
    }
    println!("credential stages, medians over {ROUNDS} rounds (µs per operation):");
    println!(
        "  inbound JWT validation, cold (EdDSA verify + claims): {:8.2}",
        median(cold_v)
    );
    println!(
        "  inbound JWT validation, warm (cache hit):             {:8.2}",
        median(warm_v)
    );
    println!(
        "  upstream credential, cold (mint + sign):              {:8.2}",
        median(cold_m)
    );
    println!(
        "  upstream credential, warm (cache hit):                {:8.2}",
        median(warm_m)
    );
}
