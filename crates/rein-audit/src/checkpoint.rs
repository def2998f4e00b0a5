//! Signed checkpoints: "the chain had head `head_hash` at `seq`", Ed25519-signed.
//!
//! The signed message is `"rein.audit.checkpoint.v1" || 0x00 || seq (8 bytes, big-endian) ||
//! head_hash (32 bytes)`. Export checkpoints and keep them elsewhere: a verifier holding one
//! detects any later truncation or rewrite of the chain up to that point.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::record::Hash;

const CHECKPOINT_DOMAIN: &[u8] = b"rein.audit.checkpoint.v1\0";

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The sequence number of the head record.
    pub seq: u64,
    /// The head record's hash.
    #[schema(value_type = String)]
    pub head_hash: Hash,
    /// When the checkpoint was made.
    pub time: DateTime<Utc>,
    /// Which key signed it.
    pub key_id: String,
    /// Ed25519 signature, base64url without padding.
    pub signature: String,
}

fn message(seq: u64, head: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 40);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&head.0);
    m
}

impl Checkpoint {
    /// Checks the signature with `key`.
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(&message(self.seq, &self.head_hash), &sig)
            .is_ok()
    }
}

/// Signs checkpoints with one Ed25519 key.
#[derive(Clone)]
pub struct CheckpointSigner {
    key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer for `key`, published under `key_id`.
    pub fn new(key_id: impl Into<String>, key: SigningKey) -> Self {
        Self {
            key_id: key_id.into(),
            key,
        }
    }

    /// The key ID.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, for verifiers.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs a checkpoint for the head `(seq, head_hash)`.
    pub fn sign(&self, seq: u64, head_hash: Hash, time: DateTime<Utc>) -> Checkpoint {
        let sig = self.key.sign(&message(seq, &head_hash));
        Checkpoint {
            seq,
            head_hash,
            time,
            key_id: self.key_id.clone(),
            signature: URL_SAFE_NO_PAD.encode(sig.to_bytes()),
        }
    }
}
