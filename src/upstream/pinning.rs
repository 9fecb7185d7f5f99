//! The IO half of pinning: lock files on disk, the live fingerprint of a connected upstream,
//! and the live manifest as pinnable items. Judging lives in `decide::pins`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use rmcp::service::{Peer, RoleClient};
use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use super::registry::{Transport, UpstreamSpec};
use crate::decide::pins::{self, Fingerprint, Lock, PinnedItem};

/// Why a lock file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// It cannot be read.
    #[error("cannot read lock file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// It is not a valid lock.
    #[error("lock file {path} is not valid: {detail}")]
    Invalid { path: PathBuf, detail: String },
    /// It cannot be written.
    #[error("cannot write lock file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `registry/<name>.lock.json` beside the entry.
pub fn lock_path(spec: &UpstreamSpec) -> PathBuf {
    spec.source
        .with_file_name(format!("{}.lock.json", spec.name))
}

/// The upstream's lock, `None` when there is none. A lock for another upstream, or of another
/// format version, is invalid (fail closed).
pub fn read_lock(spec: &UpstreamSpec) -> Result<Option<Lock>, LockError> {
    let path = lock_path(spec);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LockError::Read { path, source }),
    };
    let lock: Lock = serde_json::from_str(&text).map_err(|e| LockError::Invalid {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if lock.lock_version != pins::LOCK_VERSION {
        return Err(LockError::Invalid {
            path,
            detail: format!("lock_version {} is not supported", lock.lock_version),
        });
    }
    if lock.upstream != spec.name {
        return Err(LockError::Invalid {
            path,
            detail: format!("it pins upstream {:?}", lock.upstream),
        });
    }
    let recomputed = pins::manifest_sha256(
        &lock.fingerprint,
        &lock.tools,
        &lock.prompts,
        &lock.resource_templates,
    );
    let items_ok = lock
        .tools
        .iter()
        .chain(&lock.prompts)
        .chain(&lock.resource_templates)
        .all(|i| crate::decide::canonical::sha256(&i.definition) == i.sha256);
    if recomputed != lock.manifest_sha256 || !items_ok {
        return Err(LockError::Invalid {
            path,
            detail: "its hashes do not match its content (edited by hand?)".to_owned(),
        });
    }
    Ok(Some(lock))
}

/// Write the lock (atomically: temp file, then rename).
pub fn write_lock(spec: &UpstreamSpec, lock: &Lock) -> Result<PathBuf, LockError> {
    let path = lock_path(spec);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, lock.to_text()).map_err(|source| LockError::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| LockError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn sha256_file(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n)?);
    }
    Some(hex::encode(hasher.finalize()))
}

fn which(program: &Path, cwd: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        let p = if program.is_absolute() {
            program.to_path_buf()
        } else {
            cwd.join(program)
        };
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The fingerprint of `spec` as connected now (`peer` gives the server's identity).
pub fn fingerprint(
    spec: &UpstreamSpec,
    peer: &Peer<RoleClient>,
    default_cwd: &Path,
) -> Fingerprint {
    let info = peer.peer_info();
    let (transport, files) = match &spec.transport {
        Transport::Stdio {
            program, args, cwd, ..
        } => {
            let cwd = cwd.as_deref().unwrap_or(default_cwd);
            let mut files = BTreeMap::new();
            if program == Path::new("mcp-warden") {
                // The gateway's own built-in fixtures: as trusted as the gateway binary itself.
                files.insert("mcp-warden".to_owned(), "builtin".to_owned());
            } else {
                match which(program, cwd) {
                    Some(p) => {
                        let real = std::fs::canonicalize(&p).unwrap_or(p);
                        let hash = sha256_file(&real).unwrap_or_else(|| "unreadable".to_owned());
                        files.insert(real.display().to_string(), hash);
                    }
                    None => {
                        files.insert(program.display().to_string(), "not found".to_owned());
                    }
                }
                for arg in args.iter().filter(|a| !a.starts_with('-')) {
                    let p = cwd.join(arg);
                    if p.is_file() {
                        let real = std::fs::canonicalize(&p).unwrap_or(p);
                        if let Some(hash) = sha256_file(&real) {
                            files.insert(real.display().to_string(), hash);
                        }
                    }
                }
            }
            ("stdio", files)
        }
        Transport::Http { .. } => ("http", BTreeMap::new()),
    };
    Fingerprint {
        transport: transport.to_owned(),
        target: spec.target(),
        files,
        server_name: info
            .as_ref()
            .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone())),
        server_version: info
            .as_ref()
            .and_then(|i| i.server_info.as_ref().map(|s| s.version.clone())),
        protocol_version: info.as_ref().map(|i| i.protocol_version.to_string()),
    }
}

/// The live manifest as pinnable items (hashed and scanned).
pub struct LiveItems {
    pub tools: Vec<PinnedItem>,
    pub prompts: Vec<PinnedItem>,
    pub templates: Vec<PinnedItem>,
}

impl LiveItems {
    /// Hash every definition of `m`, without scanning (the gateway scans only what drifted).
    pub fn of(m: &Manifest) -> Self {
        let to_value =
            |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or(serde_json::Value::Null);
        Self {
            tools: m
                .tools
                .iter()
                .map(|t| {
                    pins::hashed(
                        &t.name,
                        pins::tool_definition(&to_value(serde_json::to_value(t))),
                    )
                })
                .collect(),
            prompts: m
                .prompts
                .iter()
                .map(|p| {
                    pins::hashed(
                        &p.name,
                        pins::plain_definition(&to_value(serde_json::to_value(p))),
                    )
                })
                .collect(),
            templates: m
                .templates
                .iter()
                .map(|t| {
                    pins::hashed(
                        &t.uri_template,
                        pins::plain_definition(&to_value(serde_json::to_value(t))),
                    )
                })
                .collect(),
        }
    }

    /// Hash and scan every definition of `m` (for pinning).
    pub fn scanned(m: &Manifest) -> Self {
        let mut items = Self::of(m);
        for i in items
            .tools
            .iter_mut()
            .chain(&mut items.prompts)
            .chain(&mut items.templates)
        {
            i.findings = crate::decide::scan::scan_definition(&i.definition);
        }
        items
    }

    /// Scan the items named in `names` (those that drifted).
    pub fn scan(&mut self, names: &[&str]) {
        for i in self
            .tools
            .iter_mut()
            .chain(&mut self.prompts)
            .chain(&mut self.templates)
        {
            if names.contains(&i.name.as_str()) {
                i.findings = crate::decide::scan::scan_definition(&i.definition);
            }
        }
    }

    /// name → sha256 maps for [`pins::judge`].
    pub fn hashes(&self) -> [BTreeMap<String, String>; 3] {
        let h = |v: &[PinnedItem]| {
            v.iter()
                .map(|i| (i.name.clone(), i.sha256.clone()))
                .collect()
        };
        [h(&self.tools), h(&self.prompts), h(&self.templates)]
    }
}
