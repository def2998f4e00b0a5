//! This replica's part in the shared housekeeping: a heartbeat, acknowledging each revocation
//! once it is in this node's index (so an operator can see when every replica applied it), and
//! pruning rows that no longer matter.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rein_core::authz::Actor;
use serde::Serialize;

use crate::{Error, Pdp};

/// How often a replica sends its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A replica silent for this long is no longer counted as running.
pub const ALIVE_WITHIN_SECS: i64 = 15;
/// How long after expiring (or becoming moot) a used assertion, a revocation or a silent
/// replica's row is deleted.
pub const PRUNE_AFTER_SECS: i64 = 3600;
/// Heartbeats between two prunes.
const PRUNE_EVERY_BEATS: u32 = 12;

/// The running housekeeping of this replica; [`Upkeep::stop`] ends it and removes the replica
/// from the list of running ones.
pub struct Upkeep {
    pdp: Arc<Pdp>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Upkeep {
    /// Stops the housekeeping and takes this replica off the list.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        let store = self.pdp.registry().store();
        if let Err(e) = store.leave(self.pdp.replica_id()).await {
            tracing::warn!(error = %e, "could not remove this replica from the list of running ones");
        }
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One replica's state for a revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReplicaState {
    /// The replica's ID.
    pub replica: String,
    /// Whether it is running (a heartbeat within the last 15 seconds).
    pub alive: bool,
    /// Its last heartbeat, if it is running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// When it applied the revocation; absent: not yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
}

/// How far a revocation has spread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Propagation {
    /// The revocation.
    pub revocation: String,
    /// Whether every running replica has applied it.
    pub complete: bool,
    /// The running replicas, and any others that applied it.
    pub replicas: Vec<ReplicaState>,
}

impl Pdp {
    /// Starts this replica's housekeeping: a heartbeat now and every [`HEARTBEAT`], an
    /// acknowledgement of every revocation as soon as it is in the index, and a prune of
    /// expired rows every minute.
    pub async fn start_upkeep(self: &Arc<Self>) -> Result<Upkeep, Error> {
        let acked = Arc::new(tokio::sync::Mutex::new(HashSet::new()));
        self.beat().await?;
        self.ack_new(&acked).await?;
        let beats = {
            let pdp = Arc::clone(self);
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(HEARTBEAT);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await;
                let mut beats = 0u32;
                loop {
                    ticker.tick().await;
                    beats = beats.wrapping_add(1);
                    if let Err(e) = pdp.beat().await {
                        tracing::warn!(error = %e, "heartbeat failed; retrying at the next one");
                    }
                    // Acknowledgements that failed when the revocation arrived are retried here.
                    if let Err(e) = pdp.ack_new(&acked).await {
                        tracing::warn!(error = %e, "acknowledging revocations failed; retrying");
                    }
                    if beats.is_multiple_of(PRUNE_EVERY_BEATS) {
                        pdp.prune().await;
                    }
                }
            })
        };
        let acks = {
            let pdp = Arc::clone(self);
            let mut applied = self.facts.watch();
            tokio::spawn(async move {
                while applied.changed().await.is_ok() {
                    if let Err(e) = pdp.ack_new(&acked).await {
                        tracing::warn!(error = %e, "acknowledging revocations failed; retrying at the next heartbeat");
                    }
                }
            })
        };
        Ok(Upkeep {
            pdp: Arc::clone(self),
            tasks: vec![beats, acks],
        })
    }

    /// How far revocation `id` has spread: which running replicas applied it and when.
    pub async fn revocation_propagation(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Propagation, Error> {
        // The same visibility as reading the revocation itself.
        let revocation = self.registry.revocation(actor, id).await?;
        let alive_since = self.registry.now() - chrono::Duration::seconds(ALIVE_WITHIN_SECS);
        let acks = self
            .registry
            .store()
            .revocation_acks(&revocation.id, alive_since)
            .await
            .map_err(|e| Error::Registry(e.into()))?;
        let replicas: Vec<ReplicaState> = acks
            .into_iter()
            .map(|a| ReplicaState {
                replica: a.replica,
                alive: a.alive,
                last_seen: a.last_seen,
                applied_at: a.applied_at,
            })
            .collect();
        Ok(Propagation {
            revocation: revocation.id,
            complete: replicas
                .iter()
                .filter(|r| r.alive)
                .all(|r| r.applied_at.is_some()),
            replicas,
        })
    }

    async fn beat(&self) -> Result<(), Error> {
        self.registry
            .store()
            .heartbeat(
                &self.replica.id,
                self.replica.started_at,
                self.registry.now(),
            )
            .await
            .map_err(|e| Error::Registry(e.into()))
    }

    /// Acknowledges the revocations in the index not acknowledged yet.
    async fn ack_new(&self, acked: &tokio::sync::Mutex<HashSet<String>>) -> Result<(), Error> {
        let mut acked = acked.lock().await;
        let new: Vec<String> = self
            .facts
            .revocation_ids()
            .into_iter()
            .filter(|id| !acked.contains(id))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        self.registry
            .store()
            .ack_revocations(&self.replica.id, &new, self.registry.now())
            .await
            .map_err(|e| Error::Registry(e.into()))?;
        acked.extend(new);
        Ok(())
    }

    async fn prune(&self) {
        let before = self.registry.now() - chrono::Duration::seconds(PRUNE_AFTER_SECS);
        match self.registry.store().prune_expired(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rows = n,
                "pruned expired assertions, moot revocations and silent replicas"
            ),
            Err(e) => tracing::warn!(error = %e, "pruning failed; retrying in a minute"),
        }
    }
}
