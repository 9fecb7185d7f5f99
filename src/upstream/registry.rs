//! The registry: one `registry/<name>.toml` per upstream; the file name is the upstream's name.
//! Nothing outside this folder is ever connected (registry-only, default deny).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;

use crate::decide::names;

/// Why the registry could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The folder cannot be read.
    #[error("cannot read registry folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key is unknown, missing or of the wrong type.
    #[error("registry file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<figment::Error>,
    },
    /// A value parsed but is not acceptable.
    #[error("registry file {path}: key `{key}`: {problem}")]
    Value {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
    /// Two upstreams would expose the same names.
    #[error("registry: upstreams `{first}` and `{second}` both use prefix {prefix:?}")]
    PrefixCollision {
        first: String,
        second: String,
        prefix: String,
    },
}

/// An action class: what a tool call does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionClass {
    /// Reads only.
    Read,
    /// Changes state.
    Write,
    /// Changes state irreversibly.
    Destructive,
}

impl ActionClass {
    /// The lowercase name used in policies and the audit store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Destructive => "destructive",
        }
    }
}

/// How the gateway obtains the credential it sends an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// A gateway-minted, audience-scoped token.
    Minted,
    /// No credential.
    None,
    /// OAuth 2.0 client credentials at the upstream's authorization server.
    Oauth2ClientCredentials,
    /// RFC 8693 token exchange at the upstream's authorization server.
    TokenExchange,
}

/// How a credential reaches the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// `Authorization: Bearer` on every HTTP request (HTTP upstreams; the default there).
    Header,
    /// `_meta["io.mcp-warden/credential"]` on every `tools/call` (stdio; the default there).
    Meta,
    /// One long-lived token in an environment variable at spawn (stdio).
    Env,
}

/// Where an upstream's OAuth 2.0 authorization server is and how the gateway authenticates
/// to it (`credential = "oauth2_client_credentials"` or `"token_exchange"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OauthSpec {
    /// The token endpoint.
    pub token_url: String,
    /// The gateway's client id there.
    pub client_id: String,
    /// The environment variable that holds the client secret (read when a token is needed).
    pub client_secret_env: String,
    /// Scopes asked for per action class (default: the class name).
    pub scopes: BTreeMap<ActionClass, Vec<String>>,
    /// The RFC 8707 `resource` parameter (default: the upstream's audience).
    pub resource: String,
    /// Client authentication: HTTP Basic (`client_secret_basic`, the default) or form fields.
    pub basic_auth: bool,
    /// Token exchange: the audience of the subject token the gateway mints for the
    /// authorization server (default: the token URL).
    pub subject_audience: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOauth {
    token_url: String,
    client_id: String,
    client_secret_env: String,
    #[serde(default)]
    scopes: BTreeMap<ActionClass, Vec<String>>,
    resource: Option<String>,
    #[serde(default = "default_auth_method")]
    auth_method: String,
    subject_audience: Option<String>,
}

fn default_auth_method() -> String {
    "client_secret_basic".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    command: Option<Vec<String>>,
    url: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    headers_from_env: BTreeMap<String, String>,
    prefix: Option<String>,
    domain: Option<String>,
    audience: Option<String>,
    #[serde(default = "default_credential")]
    credential: CredentialMode,
    credential_via: Option<Delivery>,
    credential_env: Option<String>,
    oauth: Option<RawOauth>,
    handoff_schema: Option<serde_json::Value>,
    #[serde(default = "default_enabled")]
    enabled: bool,
    #[serde(default)]
    tools: BTreeMap<String, ActionClass>,
}

fn default_credential() -> CredentialMode {
    CredentialMode::None
}

fn default_enabled() -> bool {
    true
}

/// How to reach an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// The program (absolute, or looked up on PATH; `mcp-warden` is this executable).
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
        /// Working directory.
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint URL.
        url: String,
        /// Header name → name of the environment variable holding its value.
        headers_from_env: BTreeMap<String, String>,
    },
}

/// One registered upstream, validated.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The file stem of its registry entry.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Namespace of its tools and prompts; may be empty.
    pub prefix: String,
    /// Its tool domain (chain isolation).
    pub domain: String,
    /// The audience of credentials minted for it.
    pub audience: String,
    /// How its credential is obtained.
    pub credential: CredentialMode,
    /// How the credential reaches it.
    pub credential_via: Delivery,
    /// The environment variable of a spawn-time credential (`credential_via = "env"`).
    pub credential_env: String,
    /// Its authorization server, for `oauth2_client_credentials` and `token_exchange`.
    pub oauth: Option<OauthSpec>,
    /// The JSON Schema of the payload a handoff into its domain must carry (none: its domain
    /// accepts no handoffs).
    pub handoff_schema: Option<serde_json::Value>,
    /// Disabled upstreams are neither connected nor exposed.
    pub enabled: bool,
    /// Declared action class per tool; undeclared tools are `write`.
    pub tools: BTreeMap<String, ActionClass>,
    /// The file it came from.
    pub source: PathBuf,
}

impl UpstreamSpec {
    /// An HTTP upstream for unit tests and benchmarks: `name` is its name, prefix and domain,
    /// `https://<name>.internal` its audience.
    #[cfg(test)]
    pub fn for_tests(name: &str, credential: CredentialMode) -> Self {
        Self {
            name: name.to_owned(),
            transport: Transport::Http {
                url: "http://127.0.0.1:1/mcp".to_owned(),
                headers_from_env: BTreeMap::new(),
            },
            prefix: name.to_owned(),
            domain: name.to_owned(),
            audience: format!("https://{name}.internal"),
            credential,
            credential_via: Delivery::Header,
            credential_env: "WARDEN_UPSTREAM_TOKEN".to_owned(),
            oauth: None,
            handoff_schema: None,
            enabled: true,
            tools: BTreeMap::new(),
            source: PathBuf::from(format!("registry/{name}.toml")),
        }
    }

    /// The action class of a tool: as declared, else `write` (fail closed).
    pub fn action_class(&self, tool: &str) -> ActionClass {
        self.tools.get(tool).copied().unwrap_or(ActionClass::Write)
    }

    /// A short description of where it lives, for logs and fingerprints.
    pub fn target(&self) -> String {
        match &self.transport {
            Transport::Stdio { program, args, .. } => {
                let mut s = program.display().to_string();
                for a in args {
                    s.push(' ');
                    s.push_str(a);
                }
                s
            }
            Transport::Http { url, .. } => url.clone(),
        }
    }
}

/// Load every `*.toml` in `dir` (sorted by name). `lock.json` and other files are ignored.
pub fn load(dir: &Path) -> Result<Vec<UpstreamSpec>, RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Folder {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RegistryError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    let base = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let specs = files
        .iter()
        .map(|f| load_file(f, base))
        .collect::<Result<Vec<_>, _>>()?;
    check_prefixes(&specs)?;
    Ok(specs)
}

/// Two enabled upstreams may not share a non-empty prefix (their names would collide).
fn check_prefixes(specs: &[UpstreamSpec]) -> Result<(), RegistryError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for s in specs.iter().filter(|s| s.enabled && !s.prefix.is_empty()) {
        if let Some(first) = seen.insert(&s.prefix, &s.name) {
            return Err(RegistryError::PrefixCollision {
                first: first.to_owned(),
                second: s.name.clone(),
                prefix: s.prefix.clone(),
            });
        }
    }
    Ok(())
}

fn load_file(path: &Path, base: &Path) -> Result<UpstreamSpec, RegistryError> {
    let value_err = |key: &'static str, problem: String| RegistryError::Value {
        path: path.to_path_buf(),
        key,
        problem,
    };
    let raw: RawEntry = Figment::from(Toml::file_exact(path))
        .extract()
        .map_err(|e| RegistryError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    if !names::is_valid_prefix(&name) {
        return Err(value_err(
            "(file name)",
            format!(
                "upstream name {name:?} must be 1-32 of [A-Za-z0-9_-], start with a letter or digit, without `__`"
            ),
        ));
    }
    let transport = match (raw.command, raw.url) {
        (Some(cmd), None) => {
            let mut it = cmd.into_iter();
            let Some(program) = it.next().filter(|p| !p.trim().is_empty()) else {
                return Err(value_err(
                    "command",
                    "expected [program, args…] with a non-empty program".to_owned(),
                ));
            };
            if !raw.headers_from_env.is_empty() {
                return Err(value_err(
                    "headers_from_env",
                    "only for `url` upstreams".to_owned(),
                ));
            }
            Transport::Stdio {
                program: PathBuf::from(program),
                args: it.collect(),
                env: raw.env,
                cwd: raw
                    .cwd
                    .map(|c| if c.is_relative() { base.join(c) } else { c }),
            }
        }
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(value_err(
                    "url",
                    format!("expected an http:// or https:// URL, got {url:?}"),
                ));
            }
            if !raw.env.is_empty() || raw.cwd.is_some() {
                return Err(value_err(
                    "env",
                    "`env` and `cwd` are only for `command` upstreams".to_owned(),
                ));
            }
            for (header, var) in &raw.headers_from_env {
                if http::HeaderName::try_from(header.as_str()).is_err() || var.is_empty() {
                    return Err(value_err(
                        "headers_from_env",
                        format!("bad header {header:?} = {var:?}"),
                    ));
                }
            }
            Transport::Http {
                url,
                headers_from_env: raw.headers_from_env,
            }
        }
        (Some(_), Some(_)) => {
            return Err(value_err(
                "command",
                "give either `command` or `url`, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(value_err(
                "command",
                "missing: give `command` (stdio) or `url` (HTTP)".to_owned(),
            ));
        }
    };
    let prefix = raw.prefix.unwrap_or_else(|| name.clone());
    if prefix == names::BUILTIN_PREFIX {
        return Err(value_err(
            "prefix",
            format!(
                "{prefix:?} is reserved for the gateway's own tools; give this upstream another prefix"
            ),
        ));
    }
    if !prefix.is_empty() && !names::is_valid_prefix(&prefix) {
        return Err(value_err(
            "prefix",
            format!(
                "{prefix:?} must be empty or 1-32 of [A-Za-z0-9_-], start with a letter or digit, without `__` or a trailing `_`"
            ),
        ));
    }
    let is_http = matches!(transport, Transport::Http { .. });
    let credential_via = match (raw.credential_via, is_http) {
        (None, true) => Delivery::Header,
        (None, false) => Delivery::Meta,
        (Some(Delivery::Header), false) => {
            return Err(value_err(
                "credential_via",
                "\"header\" is for `url` upstreams; a `command` upstream takes \"meta\" or \"env\""
                    .to_owned(),
            ));
        }
        (Some(Delivery::Meta | Delivery::Env), true) => {
            return Err(value_err(
                "credential_via",
                "an HTTP upstream receives its credential as `Authorization: Bearer` (\"header\")"
                    .to_owned(),
            ));
        }
        (Some(d), _) => d,
    };
    if credential_via == Delivery::Env && raw.credential != CredentialMode::Minted {
        return Err(value_err(
            "credential_via",
            "\"env\" hands over one gateway-minted token at spawn: it needs credential = \"minted\"".to_owned(),
        ));
    }
    if let Transport::Http {
        headers_from_env, ..
    } = &transport
        && raw.credential != CredentialMode::None
        && headers_from_env
            .keys()
            .any(|h| h.eq_ignore_ascii_case("authorization"))
    {
        return Err(value_err(
            "headers_from_env",
            "`Authorization` is the gateway's credential for this upstream (credential is not \"none\"); do not set it from the environment".to_owned(),
        ));
    }
    let credential_env = raw
        .credential_env
        .unwrap_or_else(|| "WARDEN_UPSTREAM_TOKEN".to_owned());
    if credential_env.is_empty()
        || !credential_env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(value_err(
            "credential_env",
            format!("{credential_env:?} is not an environment variable name ([A-Za-z0-9_]+)"),
        ));
    }
    let audience = raw
        .audience
        .unwrap_or_else(|| format!("mcp-warden:upstream:{name}"));
    let needs_oauth = matches!(
        raw.credential,
        CredentialMode::Oauth2ClientCredentials | CredentialMode::TokenExchange
    );
    let oauth = match (raw.oauth, needs_oauth) {
        (None, true) => {
            return Err(value_err(
                "oauth",
                format!(
                    "credential = {:?} needs an [oauth] table (token_url, client_id, client_secret_env)",
                    raw.credential
                ),
            ));
        }
        (Some(_), false) => {
            return Err(value_err(
                "oauth",
                "only for credential = \"oauth2_client_credentials\" or \"token_exchange\""
                    .to_owned(),
            ));
        }
        (None, false) => None,
        (Some(o), true) => {
            if !(o.token_url.starts_with("http://") || o.token_url.starts_with("https://")) {
                return Err(value_err(
                    "oauth.token_url",
                    format!("expected an http:// or https:// URL, got {:?}", o.token_url),
                ));
            }
            if o.client_id.is_empty() || o.client_secret_env.is_empty() {
                return Err(value_err(
                    "oauth.client_id",
                    "client_id and client_secret_env must not be empty".to_owned(),
                ));
            }
            let basic_auth = match o.auth_method.as_str() {
                "client_secret_basic" => true,
                "client_secret_post" => false,
                other => {
                    return Err(value_err(
                        "oauth.auth_method",
                        format!(
                            "expected \"client_secret_basic\" or \"client_secret_post\", got {other:?}"
                        ),
                    ));
                }
            };
            let mut scopes = o.scopes;
            for class in [
                ActionClass::Read,
                ActionClass::Write,
                ActionClass::Destructive,
            ] {
                scopes
                    .entry(class)
                    .or_insert_with(|| vec![class.as_str().to_owned()]);
            }
            Some(OauthSpec {
                subject_audience: o.subject_audience.unwrap_or_else(|| o.token_url.clone()),
                token_url: o.token_url,
                client_id: o.client_id,
                client_secret_env: o.client_secret_env,
                scopes,
                resource: o.resource.unwrap_or_else(|| audience.clone()),
                basic_auth,
            })
        }
    };
    if let Some(schema) = &raw.handoff_schema
        && let Err(e) = jsonschema::validator_for(schema)
    {
        return Err(value_err(
            "handoff_schema",
            format!("not a valid JSON Schema: {e}"),
        ));
    }
    Ok(UpstreamSpec {
        handoff_schema: raw.handoff_schema,
        credential_via,
        credential_env,
        oauth,
        domain: raw.domain.unwrap_or_else(|| name.clone()),
        audience,
        name,
        transport,
        prefix,
        credential: raw.credential,
        enabled: raw.enabled,
        tools: raw.tools,
        source: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests;
