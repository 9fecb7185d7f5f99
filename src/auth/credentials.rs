//! What the gateway sends each upstream instead of the agent's token: a credential issued for
//! that upstream alone, by the gateway (`minted`) or by the upstream's authorization server
//! (`oauth2_client_credentials`, `token_exchange`). Cached per (upstream, subject, action
//! class, chain) until shortly before expiry; a read and a write never share one. A revoked
//! audience drops every cached credential for it, and new ones carry a new epoch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, Header};
use serde::Deserialize;
use serde_json::json;

use super::keys::{self, KeyRing};
use crate::config::MintingConfig;
use crate::store::control::Revocation;
use crate::upstream::registry::{ActionClass, CredentialMode, OauthSpec, UpstreamSpec};

/// Who a credential is for: a principal in a chain, or the gateway itself.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The principal id (`sub`).
    pub sub: &'a str,
    /// The chain the call belongs to.
    pub chain: &'a str,
    /// How deep in the chain.
    pub depth: u32,
}

/// Why no credential could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Signing failed.
    #[error("minting failed: {0}")]
    Mint(String),
    /// The upstream's authorization server did not issue one.
    #[error("authorization server {url}: {detail}")]
    AuthServer { url: String, detail: String },
    /// The client secret's environment variable is not set.
    #[error("environment variable {0} (the OAuth client secret) is not set")]
    MissingSecret(String),
    /// The registry entry has no `[oauth]` table.
    #[error("no [oauth] settings")]
    NoOauth,
}

/// The issuer and resource identity of this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `iss` of minted tokens.
    pub issuer: String,
    /// This gateway's resource URI (the `aud` agents' tokens must carry).
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    upstream: u32,
    class: ActionClass,
    sub: Box<str>,
    chain: Box<str>,
    depth: u32,
}

#[derive(Debug)]
struct Cached {
    token: Arc<str>,
    /// Unix seconds after which it is replaced.
    refresh_at: u64,
    /// When it was issued (unix microseconds), against revocations.
    issued_us: i64,
    audience: Arc<str>,
}

/// The credential service.
pub struct Credentials {
    ring: ArcSwap<KeyRing>,
    identity: ArcSwap<Identity>,
    config: MintingConfig,
    state_dir: PathBuf,
    cache: moka::sync::Cache<CacheKey, Arc<Cached>>,
    /// Audience → credentials issued at or before this instant (unix µs) are dead.
    revoked: ArcSwap<HashMap<String, i64>>,
    /// Tokens this gateway signed and verified before (call-backs' chain credentials), with
    /// their claims, until they expire.
    verified: moka::sync::Cache<Arc<str>, Arc<serde_json::Map<String, serde_json::Value>>>,
    /// Bumped on every change of the revocations (supervisors of spawn-time tokens watch it).
    revision: tokio::sync::watch::Sender<u64>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.identity.load())
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

fn micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Now, in unix microseconds.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The name of the key of a per-call credential in a request's `_meta`.
pub const META_KEY: &str = "io.mcp-warden/credential";

impl Identity {
    /// As configured; `listen` stands in for an unset resource URI until the listener is bound.
    pub fn from_config(config: &crate::config::Config, listen: std::net::SocketAddr) -> Self {
        let resource = config
            .auth
            .resource
            .clone()
            .unwrap_or_else(|| format!("http://{listen}/mcp"));
        let issuer = config
            .minting
            .issuer
            .clone()
            .unwrap_or_else(|| origin(&resource));
        Self { issuer, resource }
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url.get(after_scheme..).and_then(|rest| rest.find('/')) {
        Some(slash) => url.get(..after_scheme + slash).unwrap_or(url).to_owned(),
        None => url.to_owned(),
    }
}

impl Credentials {
    /// From the configuration, with the identity it gives for `listen`.
    pub fn from_config(
        config: &crate::config::Config,
        listen: std::net::SocketAddr,
        http: reqwest::Client,
    ) -> Result<Self, keys::KeyError> {
        Self::new(
            config.state_dir.clone(),
            config.minting.clone(),
            Identity::from_config(config, listen),
            http,
        )
    }

    /// Read (or create) the signing keys under `state_dir`.
    pub fn new(
        state_dir: PathBuf,
        config: MintingConfig,
        identity: Identity,
        http: reqwest::Client,
    ) -> Result<Self, keys::KeyError> {
        let ring = keys::load_or_create(&state_dir)?;
        let credentials = Self {
            ring: ArcSwap::from_pointee(ring),
            identity: ArcSwap::from_pointee(identity),
            config,
            state_dir,
            cache: moka::sync::Cache::builder().max_capacity(100_000).build(),
            revoked: ArcSwap::from_pointee(HashMap::new()),
            revision: tokio::sync::watch::Sender::new(0),
            verified: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            http,
        };
        credentials.write_jwks_file();
        Ok(credentials)
    }

    /// The gateway's identity.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity.load_full()
    }

    /// The published keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        self.ring.load().jwks()
    }

    /// Read the keys again if another process rotated them (checked on every control poll).
    pub fn reload_keys_if_rotated(&self) {
        let current = keys::current_kid(&self.state_dir);
        if current.is_none() || current.as_deref() == Some(self.ring.load().kid.as_str()) {
            return;
        }
        match keys::load_or_create(&self.state_dir) {
            Ok(ring) => {
                tracing::info!(kid = %ring.kid, "signing key rotated; minting with the new key");
                self.ring.store(Arc::new(ring));
                self.cache.invalidate_all();
                self.write_jwks_file();
            }
            Err(error) => {
                tracing::error!(%error, "signing keys unreadable; keeping the current key")
            }
        }
    }

    /// The JWKS also goes to `<state_dir>/jwks.json`, for stdio upstreams that verify offline.
    fn write_jwks_file(&self) {
        let path = self.state_dir.join("jwks.json");
        let tmp = self.state_dir.join("jwks.json.tmp");
        let body = self.jwks().to_string();
        if let Err(error) = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!(%error, path = %path.display(), "could not write the JWKS file");
        }
    }

    /// Apply the store's revocations: drop every cached credential of a newly revoked audience.
    pub fn set_revocations(&self, revocations: &[Revocation]) {
        let mut map: HashMap<String, i64> = revocations
            .iter()
            .map(|r| (r.audience.clone(), micros(r.revoked_before)))
            .collect();
        // A revocation applied in-process (`revoke_now`) is never undone by a poll that read
        // the store just before it was written.
        for (aud, t) in self.revoked.load().iter() {
            let e = map.entry(aud.clone()).or_insert(*t);
            *e = (*e).max(*t);
        }
        self.apply(map);
    }

    /// Apply one revocation at once (the admin action in this process), before the next
    /// control poll brings it from the store.
    pub fn revoke_now(&self, audience: &str, revoked_before: time::OffsetDateTime) {
        let mut map = HashMap::clone(&self.revoked.load());
        let t = micros(revoked_before);
        let e = map.entry(audience.to_owned()).or_insert(t);
        *e = (*e).max(t);
        self.apply(map);
    }

    fn apply(&self, map: HashMap<String, i64>) {
        if **self.revoked.load() == map {
            return;
        }
        let old = self.revoked.swap(Arc::new(map));
        let now = self.revoked.load();
        let changed: Vec<&String> = now
            .iter()
            .filter(|(aud, t)| old.get(*aud) != Some(*t))
            .map(|(aud, _)| aud)
            .collect();
        for (key, value) in &self.cache {
            if changed.iter().any(|a| a.as_str() == &*value.audience) {
                self.cache.invalidate(&*key);
            }
        }
        for aud in changed {
            tracing::warn!(audience = %aud, "audience revoked: cached credentials dropped");
        }
        self.revision.send_modify(|r| *r += 1);
    }

    /// Told of every change of the revocations.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// The epoch of an audience: the instant of its last revocation (0: never revoked).
    fn epoch(&self, audience: &str) -> i64 {
        self.revoked.load().get(audience).copied().unwrap_or(0)
    }

    /// The credential for a call on upstream `index` (`None`: the upstream takes none).
    /// `caller = None` is the gateway's own traffic (handshake, lists).
    pub async fn for_upstream(
        &self,
        index: usize,
        spec: &UpstreamSpec,
        caller: Option<Caller<'_>>,
        class: ActionClass,
    ) -> Result<Option<Arc<str>>, CredentialError> {
        let service = Caller {
            sub: &self.config.service_subject,
            chain: "",
            depth: 0,
        };
        let caller = caller.unwrap_or(service);
        let key = |sub: &str, chain: &str, depth: u32| CacheKey {
            upstream: u32::try_from(index).unwrap_or(u32::MAX),
            class,
            sub: sub.into(),
            chain: chain.into(),
            depth,
        };
        match spec.credential {
            CredentialMode::None => Ok(None),
            CredentialMode::Minted => {
                let key = key(caller.sub, caller.chain, caller.depth);
                if let Some(hit) = self.fresh(&key) {
                    return Ok(Some(hit));
                }
                let ttl = self.config.token_ttl;
                let issued = now_us();
                let (token, _) = self.mint(&spec.audience, caller, class.as_str(), ttl)?;
                Ok(Some(self.keep(key, token, issued, ttl, &spec.audience)))
            }
            CredentialMode::Oauth2ClientCredentials => {
                // The gateway's own client: one credential per class, whoever calls.
                let key = key("", "", 0);
                if let Some(hit) = self.fresh(&key) {
                    return Ok(Some(hit));
                }
                let oauth = spec.oauth.as_ref().ok_or(CredentialError::NoOauth)?;
                let issued = now_us();
                let (token, ttl) = self.client_credentials(oauth, class).await?;
                Ok(Some(self.keep(key, token, issued, ttl, &spec.audience)))
            }
            CredentialMode::TokenExchange => {
                let key = key(caller.sub, caller.chain, caller.depth);
                if let Some(hit) = self.fresh(&key) {
                    return Ok(Some(hit));
                }
                let oauth = spec.oauth.as_ref().ok_or(CredentialError::NoOauth)?;
                let issued = now_us();
                let (subject, _) = self.mint(
                    &oauth.subject_audience,
                    caller,
                    class.as_str(),
                    Duration::from_secs(60),
                )?;
                let (token, ttl) = self.exchange(oauth, &subject, class).await?;
                Ok(Some(self.keep(key, token, issued, ttl, &spec.audience)))
            }
        }
    }

    /// A long-lived credential handed to a stdio upstream at spawn (`credential_via = "env"`):
    /// the gateway's own subject, every class the entry declares.
    pub fn spawn_token(&self, spec: &UpstreamSpec) -> Result<Option<String>, CredentialError> {
        if spec.credential != CredentialMode::Minted {
            return Ok(None);
        }
        let mut classes: Vec<&str> = spec.tools.values().map(|c| c.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        let scope = if classes.is_empty() {
            "read".to_owned()
        } else {
            classes.join(" ")
        };
        let caller = Caller {
            sub: &self.config.service_subject,
            chain: "",
            depth: 0,
        };
        let (token, _) = self.mint(&spec.audience, caller, &scope, self.config.env_token_ttl)?;
        Ok(Some(token))
    }

    /// Whether a credential issued at `issued_us` for `audience` was revoked since.
    pub fn revoked_since(&self, audience: &str, issued_us: i64) -> bool {
        issued_us <= self.epoch(audience)
    }

    fn fresh(&self, key: &CacheKey) -> Option<Arc<str>> {
        let hit = self.cache.get(key)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(u64::MAX, |d| d.as_secs());
        (now < hit.refresh_at && hit.issued_us > self.epoch(&hit.audience))
            .then(|| hit.token.clone())
    }

    fn keep(
        &self,
        key: CacheKey,
        token: String,
        issued_us: i64,
        ttl: Duration,
        audience: &str,
    ) -> Arc<str> {
        let token: Arc<str> = token.into();
        let life = ttl.saturating_sub(self.config.refresh_before);
        let refresh_at = u64::try_from(issued_us / 1_000_000).unwrap_or(0) + life.as_secs();
        self.cache.insert(
            key,
            Arc::new(Cached {
                token: token.clone(),
                refresh_at,
                issued_us,
                audience: audience.into(),
            }),
        );
        token
    }

    /// Sign a token for `audience`; returns it and its `iat`.
    fn mint(
        &self,
        audience: &str,
        caller: Caller<'_>,
        scope: &str,
        ttl: Duration,
    ) -> Result<(String, i64), CredentialError> {
        let ring = self.ring.load();
        let identity = self.identity.load();
        let iat = now_us() / 1_000_000;
        let exp = iat + i64::try_from(ttl.as_secs()).unwrap_or(300);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        let claims = json!({
            "iss": identity.issuer,
            "aud": audience,
            "sub": caller.sub,
            "scope": scope,
            "act": { "sub": identity.issuer, "chain_id": caller.chain, "depth": caller.depth },
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "epoch": self.epoch(audience),
        });
        let token = jsonwebtoken::encode(&header, &claims, &ring.encoding)
            .map_err(|e| CredentialError::Mint(e.to_string()))?;
        Ok((token, iat))
    }

    /// Sign `claims` (with `iss` set to this gateway) as a compact JWS with the current key.
    pub fn sign(
        &self,
        mut claims: serde_json::Map<String, serde_json::Value>,
        typ: &str,
    ) -> Result<String, CredentialError> {
        let ring = self.ring.load();
        claims.insert(
            "iss".to_owned(),
            serde_json::Value::String(self.identity.load().issuer.clone()),
        );
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, &claims, &ring.encoding)
            .map_err(|e| CredentialError::Mint(e.to_string()))
    }

    /// [`Self::verify_own`] for `audience`, remembering a verified token until it expires
    /// (a call-back presents the same credential for every call it makes).
    pub fn verify_own_cached(
        &self,
        token: &str,
        audience: &[&str],
    ) -> Result<Arc<serde_json::Map<String, serde_json::Value>>, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let live = |c: &serde_json::Map<String, serde_json::Value>| {
            c.get("exp")
                .and_then(serde_json::Value::as_u64)
                .is_some_and(|e| e > now)
        };
        if let Some(hit) = self.verified.get(token) {
            let aud_ok = hit
                .get("aud")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|a| audience.contains(&a));
            if aud_ok && live(&hit) {
                return Ok(hit);
            }
        }
        let claims = Arc::new(self.verify_own(token, Some(audience))?);
        self.verified.insert(token.into(), claims.clone());
        Ok(claims)
    }

    /// Verify a token this gateway signed (any published key): signature, `iss`, `exp`, and
    /// `aud` when `audience` is given. Returns its claims, or why not.
    pub fn verify_own(
        &self,
        token: &str,
        audience: Option<&[&str]>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "not a JWT".to_owned())?;
        if header.alg != Algorithm::EdDSA {
            return Err("not signed by this gateway".to_owned());
        }
        let kid = header.kid.ok_or("no key id")?;
        let ring = self.ring.load();
        let public = ring
            .published
            .iter()
            .find(|k| k.kid == kid)
            .ok_or("signed by a key this gateway does not publish")?;
        let key = jsonwebtoken::DecodingKey::from_ed_components(&public.x)
            .map_err(|_| "bad key".to_owned())?;
        let mut v = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[self.identity.load().issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss"]);
        v.leeway = 0;
        match audience {
            Some(a) => v.set_audience(a),
            None => v.validate_aud = false,
        }
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad signature".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong audience".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
                other => format!("{other:?}"),
            })
    }

    fn secret(oauth: &OauthSpec) -> Result<String, CredentialError> {
        std::env::var(&oauth.client_secret_env)
            .map_err(|_| CredentialError::MissingSecret(oauth.client_secret_env.clone()))
    }

    /// OAuth 2.0 client credentials (RFC 6749 §4.4) with the RFC 8707 `resource`.
    async fn client_credentials(
        &self,
        oauth: &OauthSpec,
        class: ActionClass,
    ) -> Result<(String, Duration), CredentialError> {
        use oauth2::TokenResponse as _;
        let fail = |detail: String| CredentialError::AuthServer {
            url: oauth.token_url.clone(),
            detail,
        };
        let token_url =
            oauth2::TokenUrl::new(oauth.token_url.clone()).map_err(|e| fail(e.to_string()))?;
        let client =
            oauth2::basic::BasicClient::new(oauth2::ClientId::new(oauth.client_id.clone()))
                .set_client_secret(oauth2::ClientSecret::new(Self::secret(oauth)?))
                .set_token_uri(token_url)
                .set_auth_type(if oauth.basic_auth {
                    oauth2::AuthType::BasicAuth
                } else {
                    oauth2::AuthType::RequestBody
                });
        let scopes = oauth
            .scopes
            .get(&class)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(oauth2::Scope::new);
        let http = self.http.clone();
        let send = move |request: oauth2::HttpRequest| {
            let http = http.clone();
            async move { send_oauth(&http, request).await }
        };
        let response = client
            .exchange_client_credentials()
            .add_scopes(scopes)
            .add_extra_param("resource", oauth.resource.clone())
            .request_async(&send)
            .await
            .map_err(|e| fail(oauth_error(&e)))?;
        let ttl = response.expires_in().unwrap_or(Duration::from_secs(300));
        Ok((response.access_token().secret().clone(), ttl))
    }

    /// RFC 8693 token exchange: a gateway-minted subject token for the principal, exchanged
    /// at the upstream's authorization server for a token for the upstream.
    async fn exchange(
        &self,
        oauth: &OauthSpec,
        subject: &str,
        class: ActionClass,
    ) -> Result<(String, Duration), CredentialError> {
        let fail = |detail: String| CredentialError::AuthServer {
            url: oauth.token_url.clone(),
            detail,
        };
        let secret = Self::secret(oauth)?;
        let scope = oauth
            .scopes
            .get(&class)
            .cloned()
            .unwrap_or_default()
            .join(" ");
        let mut form: Vec<(&str, &str)> = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("resource", &oauth.resource),
            ("scope", &scope),
        ];
        let mut request = self.http.post(&oauth.token_url);
        if oauth.basic_auth {
            request = request.basic_auth(&oauth.client_id, Some(&secret));
        } else {
            form.push(("client_id", &oauth.client_id));
            form.push(("client_secret", &secret));
        }
        let response = request
            .form(&form)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("HTTP {status}, not a token response: {e}")))?;
        match answer {
            Answer {
                access_token: Some(token),
                expires_in,
                ..
            } if status.is_success() => Ok((token, Duration::from_secs(expires_in.unwrap_or(300)))),
            Answer {
                error,
                error_description,
                ..
            } => Err(fail(format!(
                "HTTP {status}: {} {}",
                error.unwrap_or_default(),
                error_description.unwrap_or_default()
            ))),
        }
    }
}

/// An HTTP failure talking to an authorization server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFail(String);

async fn send_oauth(
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpFail> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| HttpFail(e.to_string()))?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpFail(e.to_string()))?;
    builder
        .body(body.to_vec())
        .map_err(|e| HttpFail(e.to_string()))
}

fn oauth_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: &oauth2::RequestTokenError<RE, T>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => format!("refused: {r}"),
        oauth2::RequestTokenError::Request(r) => format!("request failed: {r}"),
        oauth2::RequestTokenError::Parse(p, _) => format!("unreadable answer: {p}"),
        oauth2::RequestTokenError::Other(o) => o.clone(),
    }
}

#[cfg(test)]
mod tests;
