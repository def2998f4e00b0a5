//! Following other replicas: records they change are re-read as soon as they announce it
//! (PostgreSQL `LISTEN`/`NOTIFY`), instead of at the next full reload.

use std::sync::Arc;

use rein_registry::Observer as _;
use rein_store::Change;

use crate::{Error, Pdp};

/// A running subscription to other replicas' changes; dropping it stops following.
pub struct Follow {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pdp {
    /// Subscribes to the changes other replicas announce and merges each changed record into
    /// the facts cache (by version, so an announcement of this node's own change, or a late
    /// one, changes nothing). `None` where there are no other replicas (SQLite).
    pub async fn follow_replicas(self: &Arc<Self>) -> Result<Option<Follow>, Error> {
        let store = Arc::clone(self.registry.store());
        let Some(mut changes) = store
            .listen()
            .await
            .map_err(|e| Error::Registry(e.into()))?
        else {
            return Ok(None);
        };
        let pdp = Arc::clone(self);
        let task = tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                if let Err(e) = pdp.reread(&change).await {
                    tracing::warn!(error = %e, kind = %change.kind, "could not re-read a record another replica changed; the next reload will");
                }
            }
        });
        Ok(Some(Follow { task }))
    }

    async fn reread(&self, change: &Change) -> Result<(), Error> {
        let store = self.registry.store();
        let facts = &self.facts;
        let failed = |e: rein_store::StoreError| Error::Registry(e.into());
        match change.kind.as_str() {
            "agent" => {
                if let Ok(id) = change.key.parse() {
                    if let Some(v) = store.agent(&id).await.map_err(failed)? {
                        facts.agent_written(&v.value, v.version);
                    }
                }
            }
            "system" => {
                if let Ok(name) = change.key.parse() {
                    if let Some(v) = store.system(&name).await.map_err(failed)? {
                        facts.system_written(&v.value, v.version);
                    }
                }
            }
            "grant" => {
                if let Ok(id) = change.key.parse() {
                    if let Some(v) = store.grant(&id).await.map_err(failed)? {
                        facts.grant_written(&v.value, v.version);
                    }
                }
            }
            "revocation" => {
                if let Some(v) = store.revocation(&change.key).await.map_err(failed)? {
                    facts.revocation_written(&v.value, v.version);
                }
            }
            // Waiters for a decision on this node re-read it.
            "approval" => facts.bump(),
            _ => {}
        }
        Ok(())
    }
}
