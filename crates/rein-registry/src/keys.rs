//! Rein's own signing keys, opened from the store under the master key.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use rein_audit::{AuditLog, CheckpointSigner, LogConfig};
use rein_keys::{KeyPurpose, MasterKey, SealedKey};
use rein_store::{Store, StoreError};

use crate::Error;

/// The newest active key for `purpose`, generated and stored (sealed) when there is none.
pub async fn signing_key(
    store: &dyn Store,
    master: &MasterKey,
    purpose: KeyPurpose,
) -> Result<(String, ed25519_dalek::SigningKey), Error> {
    let keys = store.signing_keys(purpose).await?;
    let sealed = match keys.into_iter().rev().find(|k| k.retired_at.is_none()) {
        Some(k) => k,
        None => {
            let k = SealedKey::generate(master, purpose, Utc::now());
            match store.insert_signing_key(&k).await {
                Ok(()) | Err(StoreError::AlreadyExists { .. }) => k,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let key = sealed
        .open(master)
        .map_err(|e| Error::Keys(e.to_string()))?;
    Ok((sealed.kid, key))
}

/// Replaces the active key for `purpose` (admins): the new key is generated and stored sealed
/// under `master`, the old one marked retired now (verifiers keep accepting it until whatever
/// it signed has expired), recorded in the audit log first. Returns the new key ID and the
/// retired one, if there was one.
pub async fn rotate(
    registry: &crate::Registry,
    actor: &rein_core::authz::Actor,
    master: &MasterKey,
    purpose: KeyPurpose,
) -> Result<(String, Option<String>), Error> {
    actor.require_admin("rotate signing keys")?;
    let store = registry.store();
    let now = registry.now();
    let old = store
        .signing_keys(purpose)
        .await?
        .into_iter()
        .rev()
        .find(|k| k.retired_at.is_none());
    let new = SealedKey::generate(master, purpose, now);
    let mut event = crate::audit::change(rein_audit::EventType::KeyRotated, actor, &new.kid);
    event
        .details
        .insert("purpose".into(), purpose.as_str().to_owned());
    if let Some(old) = &old {
        event.details.insert("retired_kid".into(), old.kid.clone());
    }
    registry.record(event).await?;
    store.insert_signing_key(&new).await?;
    if let Some(mut old) = old {
        old.retired_at = Some(now);
        store.update_signing_key(&old).await?;
        return Ok((new.kid, Some(old.kid)));
    }
    Ok((new.kid, None))
}

/// Every public key ever used for `purpose`, by key ID (for verifiers).
pub async fn verifying_keys(
    store: &dyn Store,
    purpose: KeyPurpose,
) -> Result<HashMap<String, ed25519_dalek::VerifyingKey>, Error> {
    Ok(store
        .signing_keys(purpose)
        .await?
        .into_iter()
        .filter_map(|k| Some((k.kid.clone(), k.verifying_key()?)))
        .collect())
}

/// Opens the audit log over the store, signing checkpoints with the audit key.
pub async fn open_audit_log(
    store: Arc<dyn Store>,
    master: &MasterKey,
    config: LogConfig,
) -> Result<AuditLog, Error> {
    let (kid, key) = signing_key(store.as_ref(), master, KeyPurpose::AuditCheckpoint).await?;
    let sink: Arc<dyn rein_audit::AuditSink> = store;
    AuditLog::open(sink, CheckpointSigner::new(kid, key), config)
        .await
        .map_err(|e| Error::AuditUnavailable(e.to_string()))
}
