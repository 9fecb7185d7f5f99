use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::{AuthConfig, IssuerConfig, JwksSource};

const RESOURCE: &str = "https://gw.example/mcp";
const ISS: &str = "https://idp.example";

struct Key {
    kid: String,
    signing: SigningKey,
}

impl Key {
    fn new(kid: &str, seed: u8) -> Self {
        Self {
            kid: kid.to_owned(),
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": self.kid,
               "x": URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes())})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        let der = self.signing.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }
}

fn write_jwks(path: &Path, keys: &[&Key]) {
    let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

fn validator(jwks: &Path, required: &[&str]) -> Validator {
    let config = AuthConfig {
        resource: Some(RESOURCE.to_owned()),
        allow_anonymous_loopback: false,
        required_scopes: required.iter().map(|s| (*s).to_owned()).collect(),
        leeway: Duration::from_secs(5),
        cache_max: Duration::from_secs(300),
        issuers: vec![IssuerConfig {
            issuer: ISS.to_owned(),
            jwks: JwksSource::File(jwks.to_path_buf()),
            audience: None,
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256],
            principal_claim: "sub".to_owned(),
            principal_prefix: "idp:".to_owned(),
            labels_claim: Some("groups".to_owned()),
            scopes_claim: "scope".to_owned(),
            labels: vec!["agent".to_owned()],
            jwks_refresh: Duration::from_secs(300),
        }],
    };
    Validator::new(&config, reqwest::Client::new())
}

fn claims(extra: Value) -> Value {
    let now = now_secs();
    let mut c = json!({"iss": ISS, "aud": RESOURCE, "sub": "alice", "iat": now,
                       "exp": now + 600, "scope": "openid notes:read notes:write",
                       "groups": ["approver"]});
    if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
        for (k, v) in e {
            c.insert(k, v);
        }
    }
    c
}

#[tokio::test]
async fn a_good_token_maps_to_a_principal_and_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = Key::new("k1", 7);
    write_jwks(&jwks, &[&key]);
    let v = validator(&jwks, &[]);
    let token = key.sign(&claims(json!({})));
    assert!(v.cached(&token).is_none());
    let p = v.validate(&token, RESOURCE).await.unwrap();
    assert_eq!(p.id, "idp:alice");
    assert_eq!(p.labels, vec!["agent".to_owned(), "approver".to_owned()]);
    assert!(p.scopes.covers("notes", "read") && p.scopes.covers("notes", "write"));
    assert!(!p.scopes.covers("notes", "destructive") && !p.scopes.covers("crm", "read"));
    // The warm path: no signature check, the same principal.
    assert_eq!(v.cached(&token).unwrap().id, "idp:alice");
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = Key::new("k1", 7);
    write_jwks(&jwks, &[&key]);
    let v = validator(&jwks, &[]);
    let now = now_secs();
    let cases: Vec<(&str, String, TokenError)> = vec![
        (
            "expired",
            key.sign(&claims(json!({"exp": now - 60}))),
            TokenError::Invalid("expired".into()),
        ),
        (
            "not yet valid",
            key.sign(&claims(json!({"nbf": now + 600}))),
            TokenError::Invalid("not valid yet (nbf)".into()),
        ),
        (
            "wrong issuer",
            key.sign(&claims(json!({"iss": "https://evil.example"}))),
            TokenError::UnknownIssuer,
        ),
        (
            "wrong audience",
            key.sign(&claims(json!({"aud": "https://notes.internal"}))),
            TokenError::WrongAudience,
        ),
        (
            "unknown kid",
            Key::new("k9", 9).sign(&claims(json!({}))),
            TokenError::UnknownKey,
        ),
        (
            "other key, same kid",
            Key::new("k1", 9).sign(&claims(json!({}))),
            TokenError::Invalid("bad signature".into()),
        ),
        (
            "not a JWT",
            "eyJhbGciOi.x.y".to_owned(),
            TokenError::Malformed,
        ),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            v.validate(&token, RESOURCE).await.unwrap_err(),
            expected,
            "{what}"
        );
    }
    assert_eq!(
        v.wrong_audience.load(Ordering::Relaxed),
        1,
        "wrong audiences are counted"
    );
    // alg: none, with the claims of a good token.
    let good = key.sign(&claims(json!({})));
    let payload = good.split('.').nth(1).unwrap();
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    assert!(v.validate(&none, RESOURCE).await.is_err(), "alg none");
    // HS256 signed with the public key as the secret (the classic confusion attack).
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(key.signing.verifying_key().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        v.validate(&hs, RESOURCE).await.unwrap_err(),
        TokenError::Algorithm
    );
    // A tampered payload (scope widened) under the original signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let widened = claims(json!({"scope": "*:*"}));
    parts[1] = URL_SAFE_NO_PAD.encode(widened.to_string());
    let tampered = parts.join(".");
    assert_eq!(
        v.validate(&tampered, RESOURCE).await.unwrap_err(),
        TokenError::Invalid("bad signature".into())
    );
    // Nothing refused was cached.
    assert!(v.cached(&tampered).is_none());
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let old = Key::new("k1", 7);
    write_jwks(&jwks, &[&old]);
    let v = validator(&jwks, &[]);
    v.validate(&old.sign(&claims(json!({}))), RESOURCE)
        .await
        .unwrap();
    // The issuer rotates: the new key is published, the old one retired.
    let new = Key::new("k2", 8);
    write_jwks(&jwks, &[&new]);
    let token = new.sign(&claims(json!({"sub": "bob"})));
    assert_eq!(v.validate(&token, RESOURCE).await.unwrap().id, "idp:bob");
    let stale = old.sign(&claims(json!({"sub": "carol"})));
    assert_eq!(
        v.validate(&stale, RESOURCE).await.unwrap_err(),
        TokenError::UnknownKey
    );
}

#[tokio::test]
async fn a_required_scope_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = Key::new("k1", 7);
    write_jwks(&jwks, &[&key]);
    let v = validator(&jwks, &["mcp:tools"]);
    let without = key.sign(&claims(json!({})));
    assert_eq!(
        v.validate(&without, RESOURCE).await.unwrap_err(),
        TokenError::InsufficientScope
    );
    let with = key.sign(&claims(json!({"scope": "mcp:tools notes:read"})));
    assert!(v.validate(&with, RESOURCE).await.is_ok());
}
