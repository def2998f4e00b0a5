//! Secrets for MCP upstreams: API keys and database passwords the gateway injects into an
//! upstream's environment or headers, so the agent never sees them.
//!
//! Admins set (create or rotate), list, read the metadata of and delete secrets; the value goes
//! in once, sealed under the master key, and never comes back out through the API. Only the
//! gateway opens a secret, with [`Registry::reveal_secret`], when it starts an upstream session.
//! Every set and deletion is recorded write-ahead (`secret.set`, `secret.deleted`: the name, the
//! version and who; never the value or its ciphertext). A secret a system's `mcp` configuration
//! references cannot be deleted, and a system cannot reference a secret that does not exist.
//!
//! A system created while the secret it references is being deleted on another node may still
//! end up naming a missing secret; the gateway then fails closed: [`Registry::reveal_secret`]
//! answers not found and the upstream session is not started.

use std::collections::BTreeSet;

use rein_audit::{Event, EventType};
use rein_core::authz::Actor;
use rein_core::mcp::{McpUpstream, SecretName};
use rein_core::secret::{self, SecretMetadata, StoredSecret, FIRST_SECRET_VERSION};
use rein_keys::{MasterKey, SecretValue};

use crate::{audit, Error, Registry};

/// How often a set is retried when another writer creates or deletes the same secret in between.
const SET_ATTEMPTS: usize = 4;

/// What [`Registry::set_secret`] did.
#[derive(Debug, Clone)]
pub struct SecretSet {
    /// The secret as it now is.
    pub metadata: SecretMetadata,
    /// Whether it was created (`true`) or rotated (`false`).
    pub created: bool,
}

/// A secret's audit event: its name (the subject) and version, by `actor`.
fn secret_event(event_type: EventType, actor: &Actor, s: &StoredSecret) -> Event {
    let mut e = audit::change(event_type, actor, s.name.as_str());
    e.details.insert("version".into(), s.version.to_string());
    e
}

fn not_found(name: &SecretName) -> Error {
    Error::NotFound {
        kind: "secret",
        key: name.to_string(),
    }
}

impl Registry {
    /// Sets the secret `name` to `value` (admins): creates it at version 1, or rotates it to the
    /// next version. The value is sealed under `master`, bound to the name and the new version;
    /// it must be 1 byte to 64 KiB. Only its metadata is returned.
    pub async fn set_secret(
        &self,
        actor: &Actor,
        name: &SecretName,
        value: SecretValue,
        master: &MasterKey,
    ) -> Result<SecretSet, Error> {
        actor.require_admin("set secrets")?;
        secret::check_value_len(value.len())?;
        for _ in 0..SET_ATTEMPTS {
            let set = match self.store.secret(name).await? {
                None => self
                    .create_secret(actor, name, &value, master)
                    .await
                    .map(|metadata| SecretSet {
                        metadata,
                        created: true,
                    }),
                Some(_) => self
                    .rotate_secret(actor, name, &value, master)
                    .await
                    .map(|metadata| SecretSet {
                        metadata,
                        created: false,
                    }),
            };
            match set {
                // Created or deleted by another writer in between: set it over what is there now.
                Err(Error::AlreadyExists { .. } | Error::NotFound { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::Contended {
            kind: "secret",
            key: name.to_string(),
        })
    }

    async fn create_secret(
        &self,
        actor: &Actor,
        name: &SecretName,
        value: &SecretValue,
        master: &MasterKey,
    ) -> Result<SecretMetadata, Error> {
        let sealed = master.seal_secret(name.as_str(), FIRST_SECRET_VERSION, value)?;
        let stored = StoredSecret::new(name.clone(), sealed, actor.user.clone(), self.now());
        let event = secret_event(EventType::SecretSet, actor, &stored);
        self.create(
            "secret",
            name.as_str(),
            event,
            self.store.insert_secret(&stored),
        )
        .await?;
        Ok(stored.metadata())
    }

    async fn rotate_secret(
        &self,
        actor: &Actor,
        name: &SecretName,
        value: &SecretValue,
        master: &MasterKey,
    ) -> Result<SecretMetadata, Error> {
        let store = &self.store;
        let now = self.now();
        let written = self
            .modify(
                "secret",
                name.as_str(),
                || store.secret(name),
                |s, v| async move { store.update_secret(&s, v).await },
                |s| {
                    let sealed = master.seal_secret(name.as_str(), s.next_version()?, value)?;
                    Ok(s.rotate(sealed, actor.user.clone(), now)?)
                },
                |s| secret_event(EventType::SecretSet, actor, s),
            )
            .await?;
        Ok(written.value.metadata())
    }

    /// Every secret's metadata, by name (admins). Never a value or a ciphertext.
    pub async fn secrets(&self, actor: &Actor) -> Result<Vec<SecretMetadata>, Error> {
        actor.require_admin("read secrets")?;
        Ok(self
            .store
            .secrets()
            .await?
            .iter()
            .map(StoredSecret::metadata)
            .collect())
    }

    /// One secret's metadata (admins). Never its value or its ciphertext.
    pub async fn secret(&self, actor: &Actor, name: &SecretName) -> Result<SecretMetadata, Error> {
        actor.require_admin("read secrets")?;
        let stored = self
            .store
            .secret(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        Ok(stored.value.metadata())
    }

    /// Deletes a secret, ciphertext and all (admins). Refused (`in-use`) while a system's `mcp`
    /// configuration references it, naming those systems.
    pub async fn delete_secret(&self, actor: &Actor, name: &SecretName) -> Result<(), Error> {
        actor.require_admin("delete secrets")?;
        let stored = self
            .store
            .secret(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        secret::check_deletable(name, &self.store.systems().await?)?;
        let event = secret_event(EventType::SecretDeleted, actor, &stored.value);
        self.remove(
            "secret",
            name.as_str(),
            event,
            self.store.delete_secret(name, stored.version),
        )
        .await
    }

    /// Opens the secret `name` under `master` and returns its value.
    ///
    /// **For the gateway only**, when it starts an upstream session and injects the value into
    /// the upstream's environment or headers. It is never exposed over HTTP, takes no actor (the
    /// gateway has already decided the call), and must never be used to show a value to anyone.
    /// Fails closed: a missing secret is [`Error::NotFound`], a value that does not open (wrong
    /// master key, or a stored record that was altered) is [`Error::Secret`]; neither error
    /// carries any part of the value.
    pub async fn reveal_secret(
        &self,
        master: &MasterKey,
        name: &SecretName,
    ) -> Result<SecretValue, Error> {
        let stored = self
            .store
            .secret(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        Ok(master.open_secret(name.as_str(), stored.value.version, &stored.value.sealed)?)
    }

    /// Checks that every secret `mcp` references exists (invalid field `mcp` otherwise).
    pub(crate) async fn check_secret_references(
        &self,
        mcp: Option<&McpUpstream>,
    ) -> Result<(), Error> {
        let Some(mcp) = mcp else { return Ok(()) };
        let mut known = BTreeSet::new();
        for name in mcp.secrets() {
            if self.store.secret(name).await?.is_some() {
                known.insert(name.clone());
            }
        }
        Ok(secret::check_references(mcp, &known)?)
    }
}
