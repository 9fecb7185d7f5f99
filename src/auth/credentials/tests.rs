use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::*;

fn spec(name: &str, credential: CredentialMode) -> UpstreamSpec {
    UpstreamSpec::for_tests(name, credential)
}

fn service(dir: &std::path::Path) -> Credentials {
    Credentials::new(
        dir.to_path_buf(),
        MintingConfig {
            issuer: None,
            token_ttl: Duration::from_secs(300),
            refresh_before: Duration::from_secs(30),
            env_token_ttl: Duration::from_secs(3600),
            service_subject: "mcp-warden".to_owned(),
        },
        Identity {
            issuer: "http://127.0.0.1:8080".to_owned(),
            resource: "http://127.0.0.1:8080/mcp".to_owned(),
        },
        reqwest::Client::new(),
    )
    .unwrap()
}

/// Verify a minted token the way an upstream does: against the published JWKS.
fn verify(c: &Credentials, token: &str, audience: &str) -> Map<String, Value> {
    let set: JwkSet = serde_json::from_value(c.jwks()).unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&[audience]);
    v.set_issuer(&["http://127.0.0.1:8080"]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .unwrap()
        .claims
}

fn alice() -> Caller<'static> {
    Caller {
        sub: "alice",
        chain: "chain-1",
        depth: 0,
    }
}

#[tokio::test]
async fn minted_per_audience_and_class_cached_and_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let c = service(dir.path());
    let notes = spec("notes", CredentialMode::Minted);
    let read = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    let write = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Write)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(read, write, "a read and a write never share a token");
    let again = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, again, "cached until shortly before expiry");
    let claims = verify(&c, &read, "https://notes.internal");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["act"]["sub"], "http://127.0.0.1:8080");
    assert_eq!(claims["act"]["chain_id"], "chain-1");
    assert_eq!(claims["act"]["depth"], 0);
    assert_eq!(claims["epoch"], 0);
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() == 300);
    assert_eq!(
        verify(&c, &write, "https://notes.internal")["scope"],
        "write"
    );
    // Another upstream gets a token for its own audience only.
    let crm = spec("crm", CredentialMode::Minted);
    let other = c
        .for_upstream(1, &crm, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        verify(&c, &other, "https://crm.internal")["aud"],
        "https://crm.internal"
    );
    // The gateway's own traffic has its own subject.
    let own = c
        .for_upstream(0, &notes, None, ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        verify(&c, &own, "https://notes.internal")["sub"],
        "mcp-warden"
    );
    // No credential for an upstream that takes none.
    let none = spec("plain", CredentialMode::None);
    assert!(
        c.for_upstream(2, &none, Some(alice()), ActionClass::Read)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn revocation_drops_cached_credentials_and_bumps_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let c = service(dir.path());
    let notes = spec("notes", CredentialMode::Minted);
    let crm = spec("crm", CredentialMode::Minted);
    let before = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    let crm_before = c
        .for_upstream(1, &crm, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    let rx = c.subscribe();
    let at = OffsetDateTime::now_utc();
    c.set_revocations(&[Revocation {
        audience: "https://notes.internal".to_owned(),
        revoked_before: at,
        revoked_by: "carol".to_owned(),
    }]);
    assert!(rx.has_changed().unwrap(), "supervisors are told");
    let after = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(before, after, "a revoked audience gets a fresh credential");
    let epoch = verify(&c, &after, "https://notes.internal")["epoch"]
        .as_i64()
        .unwrap();
    assert_eq!(i128::from(epoch), at.unix_timestamp_nanos() / 1000);
    let crm_after = c
        .for_upstream(1, &crm, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(crm_before, crm_after, "other audiences are untouched");
}

#[tokio::test]
async fn rotation_by_another_process_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = service(dir.path());
    let notes = spec("notes", CredentialMode::Minted);
    let first = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    let old_kid = jsonwebtoken::decode_header(&*first).unwrap().kid.unwrap();
    let new_kid = keys::rotate(dir.path()).unwrap();
    c.reload_keys_if_rotated();
    let second = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&*second).unwrap().kid.unwrap(),
        new_kid
    );
    // Both keys are published: tokens signed before the rotation still verify.
    verify(&c, &first, "https://notes.internal");
    verify(&c, &second, "https://notes.internal");
    let jwks = std::fs::read_to_string(dir.path().join("jwks.json")).unwrap();
    assert!(jwks.contains(&old_kid) && jwks.contains(&new_kid));
}

#[test]
fn origin_of_urls() {
    assert_eq!(origin("http://127.0.0.1:8080/mcp"), "http://127.0.0.1:8080");
    assert_eq!(origin("https://gw.example"), "https://gw.example");
    assert_eq!(origin("https://gw.example/a/b"), "https://gw.example");
}

#[tokio::test]
async fn an_in_process_revocation_applies_at_once_and_a_stale_poll_does_not_undo_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = service(dir.path());
    let notes = spec("notes", CredentialMode::Minted);
    let before = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    c.revoke_now("https://notes.internal", OffsetDateTime::now_utc());
    // A control poll that read the store before the revocation was written.
    c.set_revocations(&[]);
    let after = c
        .for_upstream(0, &notes, Some(alice()), ActionClass::Read)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(before, after);
    assert!(
        verify(&c, &after, "https://notes.internal")["epoch"]
            .as_i64()
            .unwrap()
            > 0
    );
}
