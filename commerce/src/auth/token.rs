//! JWT access tokens, HS256.
//!
//! jsonwebtoken checks the header's algorithm (HS256 only, so `none` and
//! algorithm confusion are refused) and the signature; expiry is checked here
//! against the caller's clock, because the app runs on an injected clock and
//! jsonwebtoken would read the system time.
//!
//! The signing secret comes from configuration, or from the key file
//! `{data_dir}/jwt-hs256.key`, created on first start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{AuthError, Role, TokenError};

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "jwt-hs256.key";
/// Shortest accepted HS256 secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest accepted token, in bytes; longer ones are refused before parsing.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// The user's email at issue time.
    pub email: String,
    /// The user's role at issue time.
    pub role: Role,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch; valid while `exp > now`.
    pub exp: i64,
}

/// The HS256 key pair and validation rules. Cheap enough to clone per shard.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    header: Header,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("alg", &self.header.alg)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from a raw secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::Key(format!(
                "secret is {} bytes, at least {MIN_SECRET_LEN} required",
                secret.len()
            )));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is compared with the injected clock in `verify`; the `Claims`
        // type itself makes every claim, `exp` included, mandatory.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            header: Header::new(Algorithm::HS256),
        })
    }

    /// Keys from `configured` if set (its UTF-8 bytes are the secret, used
    /// verbatim), else from `{data_dir}/jwt-hs256.key`, creating that file
    /// with 32 random bytes on first use.
    ///
    /// The key file holds the secret as base64url text (no padding; at least
    /// 32 bytes once decoded); surrounding whitespace is ignored. It is
    /// created mode 0600 through a temporary file, fsync and rename, so a
    /// crash never leaves a partial key. An existing but invalid file is an
    /// error, never overwritten.
    pub fn load_or_create(data_dir: &Path, configured: Option<&str>) -> Result<Self, AuthError> {
        if let Some(secret) = configured {
            return Self::from_secret(secret.as_bytes())
                .map_err(|e| AuthError::Key(format!("configured secret: {e}")));
        }
        let path = data_dir.join(KEY_FILE);
        let secret = match fs::read(&path) {
            Ok(text) => decode_key_file(&path, &text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_key_file(data_dir)?,
            Err(e) => return Err(key_err("read", &path, e)),
        };
        Self::from_secret(&secret).map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))
    }

    /// Signs `claims` into a compact JWT.
    pub fn issue(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// Checks the token's algorithm and signature, then that `exp > now_secs`.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })?;
        if data.claims.exp <= now_secs {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

fn key_err(what: &str, path: &Path, e: io::Error) -> AuthError {
    AuthError::Key(format!("{what} {}: {e}", path.display()))
}

fn decode_key_file(path: &Path, text: &[u8]) -> Result<Vec<u8>, AuthError> {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "JWT key file is readable by others; chmod 600");
    }
    let text = std::str::from_utf8(text)
        .unwrap_or("\u{fffd}")
        .trim()
        .trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| AuthError::Key(format!("{}: not base64url text: {e}", path.display())))
}

fn create_key_file(dir: &Path) -> Result<Vec<u8>, AuthError> {
    let (path, tmp) = (dir.join(KEY_FILE), dir.join(format!("{KEY_FILE}.tmp")));
    let mut secret = vec![0u8; MIN_SECRET_LEN];
    rand::rng().fill_bytes(&mut secret);
    fs::create_dir_all(dir).map_err(|e| key_err("create dir", dir, e))?;
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(key_err("remove", &tmp, e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| key_err("create", &tmp, e))?;
    let text = format!("{}\n", URL_SAFE_NO_PAD.encode(&secret));
    file.write_all(text.as_bytes())
        .map_err(|e| key_err("write", &tmp, e))?;
    file.sync_all().map_err(|e| key_err("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| key_err("rename to", &path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| key_err("fsync dir", dir, e))?;
    tracing::info!(path = %path.display(), "created JWT signing key");
    Ok(secret)
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
