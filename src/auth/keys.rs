//! The gateway's own signing keys (Ed25519), kept in `<state_dir>/keys/`: one PKCS#8 DER file
//! per key (`<kid>.der`, mode 0600) and `current` naming the key that signs. Created on first
//! run; `mcp-warden keys rotate` makes a new current key and keeps the previous one published
//! (tokens it signed stay verifiable until they expire); older keys are removed.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::EncodingKey;

/// Why the keys could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("signing keys in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file is not an Ed25519 PKCS#8 key.
    #[error("signing key {path} is not an Ed25519 PKCS#8 DER key")]
    Bad { path: PathBuf },
    /// No randomness.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// A public key, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Its key id.
    pub kid: String,
    /// The raw Ed25519 public key, base64url.
    pub x: String,
}

/// The key that signs, and every key that is published.
pub struct KeyRing {
    /// Key id of the signing key.
    pub kid: String,
    /// The signing key, ready for `jsonwebtoken`.
    pub encoding: EncodingKey,
    /// Published keys: the current one first.
    pub published: Vec<PublicKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("kid", &self.kid)
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The JWKS document (RFC 7517) of the published keys.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .published
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": k.x, "kid": k.kid,
                    "alg": "EdDSA", "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder of the keys.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("keys")
}

/// What `current` says now (to notice a rotation by another process).
pub fn current_kid(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir(state_dir).join("current"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Every `<kid>.der` in `d`, with its key id.
fn key_files(d: &Path) -> Result<Vec<(String, PathBuf)>, KeyError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(d).map_err(io(d))? {
        let path = entry.map_err(io(d))?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".der"))
            .map(str::to_owned);
        if let Some(id) = id {
            out.push((id, path));
        }
    }
    Ok(out)
}

/// Read the keys, creating the first one when there is none.
pub fn load_or_create(state_dir: &Path) -> Result<KeyRing, KeyError> {
    let d = dir(state_dir);
    if current_kid(state_dir).is_none() {
        rotate(state_dir)?;
    }
    let kid = current_kid(state_dir).unwrap_or_default();
    let mut published = Vec::new();
    let mut encoding = None;
    let mut others: Vec<(std::time::SystemTime, PublicKey)> = Vec::new();
    for (id, path) in key_files(&d)? {
        let id = id.as_str();
        let der = std::fs::read(&path).map_err(io(&path))?;
        let key =
            SigningKey::from_pkcs8_der(&der).map_err(|_| KeyError::Bad { path: path.clone() })?;
        let public = PublicKey {
            kid: id.to_owned(),
            x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        };
        if id == kid {
            encoding = Some(EncodingKey::from_ed_der(&der));
            published.insert(0, public);
        } else {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            others.push((modified, public));
        }
    }
    let encoding = encoding.ok_or_else(|| KeyError::Bad {
        path: d.join(format!("{kid}.der")),
    })?;
    others.sort_by_key(|o| std::cmp::Reverse(o.0));
    published.extend(others.into_iter().map(|(_, k)| k));
    Ok(KeyRing {
        kid,
        encoding,
        published,
    })
}

/// Make a new signing key current; keep the previous one (published), delete older ones.
/// Returns the new key id.
pub fn rotate(state_dir: &Path) -> Result<String, KeyError> {
    let d = dir(state_dir);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let mut id = [0u8; 9];
    getrandom::fill(&mut id).map_err(|e| KeyError::Random(e.to_string()))?;
    let kid = format!("warden-{}", URL_SAFE_NO_PAD.encode(id));
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Random(format!("encoding the key: {e}")))?;
    let path = d.join(format!("{kid}.der"));
    write_private(&path, der.as_bytes())?;
    let previous = current_kid(state_dir);
    // Everything but the previous key goes: tokens live minutes, a rotation is rarer.
    for (id, p) in key_files(&d)? {
        if id != kid && Some(&id) != previous.as_ref() {
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    let current = d.join("current");
    let tmp = d.join("current.tmp");
    std::fs::write(&tmp, format!("{kid}\n")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &current).map_err(io(&current))?;
    Ok(kid)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    std::fs::write(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_rotated_with_the_previous_key_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first.published.len(), 1);
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(again.kid, first.kid, "a restart keeps the key");
        let second = rotate(dir.path()).unwrap();
        let third = rotate(dir.path()).unwrap();
        let ring = load_or_create(dir.path()).unwrap();
        assert_eq!(ring.kid, third);
        let kids: Vec<&str> = ring.published.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, vec![third.as_str(), second.as_str()]);
        let jwks = ring.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["kid"], third.as_str());
    }
}
