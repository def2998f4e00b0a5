//! Reading the audit log: filtered pages, single records, "why" (who owns, who approved, who can
//! revoke), checkpoints and their keys, and verification of the stored chain.
//!
//! Only admins and auditors read the audit log: it names everyone's approvals and revocations.

use std::collections::{BTreeSet, HashMap};

use rein_audit::{Checkpoint, Record, Report, Verifier};
use rein_core::authz::Actor;
use rein_core::grant::Approval;
use rein_core::id::{AgentId, GrantId, SystemName};
use rein_core::DomainError;
use rein_keys::KeyPurpose;
use rein_store::{AuditFilter, Store};
use serde::Serialize;

use crate::{keys, Error, Registry};

/// The most records one page may hold.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// How many rows verification reads per store round trip.
const VERIFY_PAGE: u32 = 4096;

/// One page of audit records.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The records, by ascending sequence number.
    pub records: Vec<Record>,
    /// The cursor for the next page (pass it as `after`), or `null` when this page reached the
    /// end of the log as it was when read.
    pub next: Option<u64>,
}

/// The accountability behind one audit record: who owns the agent, who approved the access
/// that allowed the action, and who can revoke it. "Recorded" values are those the record
/// itself names (as they were when it was written); the others are read from the agent, grants
/// and systems as they are now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Why {
    /// The record.
    pub record: Record,
    /// The agent concerned (SPIFFE ID), if any.
    pub agent: Option<String>,
    /// Who owns the agent.
    pub owner: Ownership,
    /// Who approved the access.
    pub approval: ApprovalTrail,
    /// Who can revoke it.
    pub revocation: Revokers,
}

/// Who owns the agent.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Ownership {
    /// The owner team (from the agent's SPIFFE ID).
    pub owner_team: Option<String>,
    /// The agent's business owner now.
    pub business_owner: Option<String>,
    /// The business owner the record names, if it names one.
    pub recorded_business_owner: Option<String>,
    /// The agent's status now (`null` if the agent is unknown).
    pub agent_status: Option<String>,
}

/// Who approved the access.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ApprovalTrail {
    /// The approvers the record names.
    pub recorded: Vec<String>,
    /// The grants the record is about or was decided by, with their approvals.
    pub grants: Vec<GrantApprovals>,
}

/// One grant's approvals.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GrantApprovals {
    /// The grant ID.
    pub id: String,
    /// Its stored status.
    pub status: String,
    /// Who requested it.
    pub requested_by: String,
    /// Who approved it, in which capacity, when.
    pub approvals: Vec<Approval>,
}

/// Who can revoke it. Admins may revoke anything, in addition to these.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Revokers {
    /// The revokers the record names.
    pub recorded: Vec<String>,
    /// The agent's revokers now.
    pub agent_revokers: Vec<String>,
    /// The approvers of the systems concerned, who may revoke grants on them.
    pub system_approvers: Vec<String>,
    /// All of the above, each once, in that order.
    pub all: Vec<String>,
}

fn check_limit(limit: u32) -> Result<(), Error> {
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(DomainError::invalid(
            "limit",
            format!("must be between 1 and {MAX_AUDIT_PAGE}"),
        )
        .into());
    }
    Ok(())
}

/// Appends the items of `from` not yet in `to`.
fn extend_unique(to: &mut Vec<String>, seen: &mut BTreeSet<String>, from: &[String]) {
    for item in from {
        if seen.insert(item.clone()) {
            to.push(item.clone());
        }
    }
}

impl Registry {
    /// Up to `limit` records matching `filter` with a sequence number above `after`.
    pub async fn audit_records(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<AuditPage, Error> {
        actor.require_audit_reader()?;
        check_limit(limit)?;
        let mut records = self.store.audit_records(filter, after, limit + 1).await?;
        let more = records.len() > limit as usize;
        records.truncate(limit as usize);
        let next = if more {
            records.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(AuditPage { records, next })
    }

    /// The last `limit` records matching `filter`, by ascending sequence number.
    pub async fn audit_latest(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<Record>, Error> {
        actor.require_audit_reader()?;
        check_limit(limit)?;
        Ok(self.store.audit_latest(filter, limit).await?)
    }

    /// The record at `seq`.
    pub async fn audit_record(&self, actor: &Actor, seq: u64) -> Result<Record, Error> {
        actor.require_audit_reader()?;
        self.store
            .audit_record(seq)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "audit record",
                key: seq.to_string(),
            })
    }

    /// Who owns the agent of the record at `seq`, who approved the access that allowed it, and
    /// who can revoke it.
    pub async fn audit_why(&self, actor: &Actor, seq: u64) -> Result<Why, Error> {
        let record = self.audit_record(actor, seq).await?;
        let event = &record.event;
        let mut owner = Ownership {
            recorded_business_owner: event.details.get("business_owner").cloned(),
            ..Ownership::default()
        };
        let mut revocation = Revokers {
            recorded: event.revokers.clone(),
            ..Revokers::default()
        };
        let mut systems: BTreeSet<SystemName> = BTreeSet::new();
        if let Some(s) = event.system.as_deref().and_then(|s| s.parse().ok()) {
            systems.insert(s);
        }

        // The grants the record is about (its subject) or was decided by.
        let mut grants = Vec::new();
        let mut agent_id: Option<AgentId> = event.agent.as_deref().and_then(|a| a.parse().ok());
        let grant_ids: BTreeSet<GrantId> = event
            .subject
            .iter()
            .chain(&event.determined_by)
            .filter_map(|s| s.parse().ok())
            .collect();
        for id in grant_ids {
            let Some(grant) = self.store.grant(&id).await? else {
                continue;
            };
            let grant = grant.value;
            systems.insert(grant.system.clone());
            agent_id.get_or_insert_with(|| grant.agent.clone());
            grants.push(GrantApprovals {
                id: grant.id.to_string(),
                status: grant.status.as_str().to_owned(),
                requested_by: grant.requested_by.to_string(),
                approvals: grant.approvals,
            });
        }

        if let Some(id) = &agent_id {
            owner.owner_team = Some(id.team().to_string());
            if let Some(agent) = self.store.agent(id).await? {
                let agent = agent.value;
                owner.business_owner = agent.roles.business_owner.as_ref().map(|u| u.to_string());
                owner.agent_status = Some(agent.status.as_str().to_owned());
                revocation.agent_revokers =
                    agent.roles.revokers.iter().map(|p| p.to_string()).collect();
            }
        }
        let mut system_approvers = Vec::new();
        let mut seen = BTreeSet::new();
        for name in &systems {
            if let Some(system) = self.store.system(name).await? {
                let approvers: Vec<String> = system
                    .value
                    .approvers
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                extend_unique(&mut system_approvers, &mut seen, &approvers);
            }
        }
        revocation.system_approvers = system_approvers;
        let mut all = Vec::new();
        let mut seen = BTreeSet::new();
        extend_unique(&mut all, &mut seen, &revocation.recorded);
        extend_unique(&mut all, &mut seen, &revocation.agent_revokers);
        extend_unique(&mut all, &mut seen, &revocation.system_approvers);
        revocation.all = all;

        Ok(Why {
            agent: agent_id.map(|a| a.to_string()),
            owner,
            approval: ApprovalTrail {
                recorded: event.approvers.clone(),
                grants,
            },
            revocation,
            record,
        })
    }

    /// Every stored checkpoint, by ascending sequence number.
    pub async fn audit_checkpoints(&self, actor: &Actor) -> Result<Vec<Checkpoint>, Error> {
        actor.require_audit_reader()?;
        Ok(self.store.audit_checkpoints().await?)
    }

    /// Every public key that signed or signs checkpoints, by key ID.
    pub async fn audit_keys(
        &self,
        actor: &Actor,
    ) -> Result<Vec<(String, ed25519_dalek::VerifyingKey)>, Error> {
        actor.require_audit_reader()?;
        let mut keys: Vec<_> =
            keys::verifying_keys(self.store.as_ref(), KeyPurpose::AuditCheckpoint)
                .await?
                .into_iter()
                .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keys)
    }

    /// Verifies the stored chain against the stored checkpoints and keys.
    pub async fn verify_audit(&self, actor: &Actor) -> Result<Report, Error> {
        actor.require_audit_reader()?;
        verify_audit_chain(self.store.as_ref(), &mut |_| {}).await
    }
}

/// Verifies the chain stored in `store` from its first record, against the checkpoints and
/// checkpoint keys stored beside it, reading it in pages. `progress` is called after each page
/// with the sequence number of the last row read. A row that does not decode is reported as
/// malformed at its sequence number; nothing is skipped.
pub async fn verify_audit_chain(
    store: &dyn Store,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Report, Error> {
    let keys: HashMap<String, ed25519_dalek::VerifyingKey> =
        keys::verifying_keys(store, KeyPurpose::AuditCheckpoint).await?;
    let checkpoints = store.audit_checkpoints().await?;
    let mut verifier = Verifier::new(&keys, &checkpoints);
    let mut after = 0;
    while !verifier.failed() {
        let rows = store.audit_scan(after, VERIFY_PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        // Consecutive decodable rows are verified together (hashes recomputed on every core);
        // an undecodable row is reported where it stands.
        let mut run = Vec::with_capacity(rows.len());
        for row in rows {
            match row.record {
                Ok(record) => run.push(record),
                Err(reason) => {
                    if verifier.push_all(&run) {
                        verifier.malformed(row.seq, reason);
                    }
                    run.clear();
                    break;
                }
            }
        }
        verifier.push_all(&run);
        progress(after);
    }
    Ok(verifier.finish())
}
