//! Rein's own key material.
//!
//! - [`MasterKey`]: 32 random bytes in a file readable only by its owner (mode 0600), created by
//!   `rein init`. It never leaves the machine and is never stored in the database.
//! - [`SealedKey`]: an Ed25519 signing key (token signing, audit checkpoints) as stored in the
//!   database: the public key in clear, the private key sealed with XChaCha20-Poly1305 under the
//!   master key, bound to its key ID and purpose as associated data, so a sealed key cannot be
//!   swapped into another record.
//! - [`SecretValue`]: an upstream credential's plaintext (zeroed on drop, never printed), sealed
//!   with [`MasterKey::seal_secret`] under the master key, bound to the secret's name and version
//!   as associated data, so a sealed value cannot be moved to another name or replayed as
//!   another version.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why key material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The master key file is missing or unreadable.
    #[error("cannot read master key file `{path}`: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The master key file is readable by others.
    #[error(
        "master key file `{path}` must be readable only by its owner (mode 0600), found {mode:o}"
    )]
    Permissions {
        /// The file.
        path: String,
        /// The mode found.
        mode: u32,
    },
    /// The master key file has the wrong size.
    #[error("master key file `{path}` must hold exactly 32 bytes")]
    Length {
        /// The file.
        path: String,
    },
    /// The master key file could not be written.
    #[error("cannot create master key file `{path}`: {reason}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A sealed key did not open: wrong master key, or the record was tampered with.
    #[error(
        "sealed key `{kid}` does not open under this master key (wrong key or tampered record)"
    )]
    Unseal {
        /// The key ID.
        kid: String,
    },
}

/// The master key. Its bytes are zeroed on drop and never printed.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Creates a new master key file with mode 0600; refuses to overwrite one.
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let err = |e: std::io::Error| KeyError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(err)?;
        file.write_all(bytes.as_ref()).map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(Self(bytes))
    }

    /// Loads the master key, refusing a file that others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let read_err = |e: std::io::Error| KeyError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(read_err)?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions { path: shown, mode });
            }
        }
        let data = Zeroizing::new(std::fs::read(path).map_err(read_err)?);
        let bytes: [u8; 32] = data.as_slice().try_into().map_err(|_| KeyError::Length {
            path: shown.clone(),
        })?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// A master key from raw bytes (tests and benches).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Encrypts `msg` bound to `aad` under a fresh random 24-byte nonce: the nonce followed by
    /// the ciphertext and its tag.
    fn seal(&self, aad: &[u8], msg: &[u8]) -> Result<Vec<u8>, chacha20poly1305::Error> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg, aad })?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ct.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ct);
        Ok(sealed)
    }

    /// Decrypts what [`MasterKey::seal`] produced for `aad`; `None` if it does not
    /// authenticate (wrong key, other associated data, or altered bytes).
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher()
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }

    /// Seals a secret's value under this key, bound to the secret's `name` and `version`: the
    /// 24-byte random nonce followed by the XChaCha20-Poly1305 ciphertext and tag.
    pub fn seal_secret(
        &self,
        name: &str,
        version: u32,
        value: &SecretValue,
    ) -> Result<Vec<u8>, SecretError> {
        self.seal(&secret_aad(name, version), value.as_bytes())
            .map_err(|_| SecretError::Seal {
                name: name.to_owned(),
            })
    }

    /// Opens a value sealed by [`MasterKey::seal_secret`] for `name` at `version`. Fails (never
    /// returning anything of the value) if the master key is wrong, or the sealed bytes, the name
    /// or the version were altered.
    pub fn open_secret(
        &self,
        name: &str,
        version: u32,
        sealed: &[u8],
    ) -> Result<SecretValue, SecretError> {
        self.open(&secret_aad(name, version), sealed)
            .map(SecretValue)
            .ok_or_else(|| SecretError::Open {
                name: name.to_owned(),
                version,
            })
    }
}

/// The length of an XChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 24;

/// Why a secret could not be sealed, opened or used. Never carries any part of the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Encryption failed (a value far beyond any limit Rein accepts).
    #[error("secret `{name}` could not be sealed")]
    Seal {
        /// The secret's name.
        name: String,
    },
    /// The sealed value does not open: wrong master key, or the stored record was altered.
    #[error("secret `{name}` (version {version}) does not open under this master key (wrong key or tampered record)")]
    Open {
        /// The secret's name.
        name: String,
        /// The version it was stored as.
        version: u32,
    },
    /// The value is not UTF-8 text, as an environment variable or a header needs.
    #[error("the secret's value is not UTF-8 text")]
    NotUtf8,
}

/// A secret's plaintext value: an upstream's API key or database password. Zeroed when dropped;
/// its `Debug` prints `SecretValue(<redacted>)`; it has no `Display` and is not serializable, so
/// it cannot end up in a log line or a response by accident.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// The value as text (what environment variables and headers need); an error if it is not
    /// UTF-8.
    pub fn as_str(&self) -> Result<&str, SecretError> {
        std::str::from_utf8(self.as_bytes()).map_err(|_| SecretError::NotUtf8)
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretValue {
    /// Takes ownership of `bytes` without copying them.
    fn from(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

impl From<String> for SecretValue {
    /// Takes ownership of `text`'s buffer without copying it.
    fn from(text: String) -> Self {
        Self::from(text.into_bytes())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// The associated data binding a sealed secret to its name and version. The version is last and
/// all digits, so the encoding is unambiguous.
fn secret_aad(name: &str, version: u32) -> Vec<u8> {
    format!("rein.secret.v1\0{name}\0{version}").into_bytes()
}

/// What a signing key is for. Part of the sealed key's associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPurpose {
    /// Signs access tokens (JWKS-published).
    Token,
    /// Signs audit checkpoints.
    AuditCheckpoint,
}

impl KeyPurpose {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::AuditCheckpoint => "audit_checkpoint",
        }
    }
}

/// An Ed25519 signing key as stored: public key in clear, private key sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    /// Key ID: base64url SHA-256 of the public key, truncated to 16 bytes.
    pub kid: String,
    /// What it signs.
    pub purpose: KeyPurpose,
    /// Ed25519 public key, base64url.
    pub public_key: String,
    /// 24-byte nonce followed by the XChaCha20-Poly1305 ciphertext of the 32-byte seed, base64url.
    pub sealed_private_key: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stopped signing (rotated out); verifiers keep it until its last token expired.
    pub retired_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("kid", &self.kid)
            .field("purpose", &self.purpose)
            .field("public_key", &self.public_key)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

fn aad(kid: &str, purpose: KeyPurpose) -> Vec<u8> {
    format!("rein.sealed-key.v1\0{kid}\0{}", purpose.as_str()).into_bytes()
}

/// The key ID of an Ed25519 public key.
pub fn key_id(public: &ed25519_dalek::VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or_default())
}

impl SealedKey {
    /// Generates a new Ed25519 key for `purpose` and seals it under `master`.
    pub fn generate(master: &MasterKey, purpose: KeyPurpose, now: DateTime<Utc>) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        let signing = SigningKey::from_bytes(&seed);
        let kid = key_id(&signing.verifying_key());
        // Encryption with a fresh random nonce cannot fail for a 32-byte message.
        let sealed = master
            .seal(&aad(&kid, purpose), seed.as_ref())
            .unwrap_or_default();
        Self {
            kid,
            purpose,
            public_key: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
            sealed_private_key: URL_SAFE_NO_PAD.encode(sealed),
            created_at: now,
            retired_at: None,
        }
    }

    /// Opens the private key. Fails if the master key is wrong or any of kid, purpose, public
    /// key or ciphertext was altered.
    pub fn open(&self, master: &MasterKey) -> Result<SigningKey, KeyError> {
        let fail = || KeyError::Unseal {
            kid: self.kid.clone(),
        };
        let sealed = URL_SAFE_NO_PAD
            .decode(&self.sealed_private_key)
            .map_err(|_| fail())?;
        let seed = master
            .open(&aad(&self.kid, self.purpose), &sealed)
            .ok_or_else(fail)?;
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| fail())?;
        let signing = SigningKey::from_bytes(&seed);
        if URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()) != self.public_key
            || key_id(&signing.verifying_key()) != self.kid
        {
            return Err(fail());
        }
        Ok(signing)
    }

    /// The public key.
    pub fn verifying_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&self.public_key)
            .ok()?
            .try_into()
            .ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_under_their_master_key_and_binding() -> Result<(), KeyError> {
        let master = MasterKey::from_bytes([1; 32]);
        let sealed = SealedKey::generate(&master, KeyPurpose::Token, Utc::now());
        let key = sealed.open(&master)?;
        assert_eq!(Some(key.verifying_key()), sealed.verifying_key());
        assert!(!sealed
            .sealed_private_key
            .contains(&URL_SAFE_NO_PAD.encode(key.to_bytes())));

        assert!(sealed.open(&MasterKey::from_bytes([2; 32])).is_err());
        let repurposed = SealedKey {
            purpose: KeyPurpose::AuditCheckpoint,
            ..sealed.clone()
        };
        assert!(repurposed.open(&master).is_err());
        let other = SealedKey::generate(&master, KeyPurpose::Token, Utc::now());
        let swapped = SealedKey {
            sealed_private_key: other.sealed_private_key.clone(),
            ..sealed.clone()
        };
        assert!(swapped.open(&master).is_err());
        Ok(())
    }

    #[test]
    fn secrets_open_only_under_their_master_key_name_and_version() -> Result<(), SecretError> {
        let master = MasterKey::from_bytes([7; 32]);
        let value = SecretValue::from("hunter2-api-key".to_owned());
        let sealed = master.seal_secret("billing-token", 1, &value)?;
        assert_eq!(sealed.len(), NONCE_LEN + value.len() + 16);
        assert!(!sealed.windows(value.len()).any(|w| w == value.as_bytes()));
        let opened = master.open_secret("billing-token", 1, &sealed)?;
        assert_eq!(opened.as_str()?, "hunter2-api-key");
        // A fresh nonce each time: sealing twice never gives the same bytes.
        assert_ne!(master.seal_secret("billing-token", 1, &value)?, sealed);

        let refused = [
            MasterKey::from_bytes([8; 32]).open_secret("billing-token", 1, &sealed),
            master.open_secret("other-token", 1, &sealed),
            master.open_secret("billing-token", 2, &sealed),
            master.open_secret("billing-token", 1, &sealed[..NONCE_LEN]),
            master.open_secret("billing-token", 1, &[]),
        ];
        let mut flipped = sealed.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        for result in refused
            .into_iter()
            .chain([master.open_secret("billing-token", 1, &flipped)])
        {
            assert!(
                matches!(&result, Err(SecretError::Open { .. })),
                "{:?}",
                result.as_ref().map(|_| ())
            );
            if let Err(e) = result {
                let e = e.to_string();
                assert!(e.contains("does not open") && !e.contains("hunter2"), "{e}");
            }
        }
        Ok(())
    }

    #[test]
    fn secret_values_never_print_and_must_be_text_for_use() {
        let value = SecretValue::from(b"\xffhunter2".to_vec());
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
        assert!(matches!(value.as_str(), Err(SecretError::NotUtf8)));
        assert_eq!(value.as_bytes().len(), 8);
        assert!(!value.is_empty());
    }

    #[test]
    fn master_key_file_is_private_and_never_overwritten() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("master.key");
        let created = MasterKey::create(&path)?;
        let loaded = MasterKey::load(&path)?;
        assert_eq!(created.0.as_ref(), loaded.0.as_ref());
        assert!(MasterKey::create(&path).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            assert!(matches!(
                MasterKey::load(&path),
                Err(KeyError::Permissions { .. })
            ));
        }
        assert!(!format!("{created:?}").contains('1'));
        Ok(())
    }
}
