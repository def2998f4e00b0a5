//! How registry changes reach the audit log: write-ahead, then the change.
//!
//! A change is recorded durably *before* it is written to the store, so nothing changes without
//! its record: if the audit log cannot take the record, the operation is refused
//! ([`Error::AuditUnavailable`]). Writers of one record are serialised within this node (striped
//! locks), so the compare-and-swap that follows normally succeeds. If it does not — another
//! replica won the race, or the store failed — a second record with outcome `failure` says the
//! first was not applied (`details.supersedes` names its sequence number), and the change is
//! retried or refused.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash as _, Hasher as _};

use rein_audit::{ActorKind, Event, EventType, Receipt};
use rein_core::agent::Agent;
use rein_core::authz::Actor;
use rein_core::grant::Grant;
use rein_core::id::{AgentId, GrantId, SystemName};
use rein_core::system::System;
use rein_store::{StoreError, Version, Versioned};

use crate::{Error, Registry};

/// How often a compare-and-swap write is retried against concurrent writers before giving up.
const CAS_ATTEMPTS: usize = 16;

/// Striped per-record locks: writers of one record on this node take turns.
pub(crate) struct Locks(Vec<tokio::sync::Mutex<()>>);

impl Locks {
    pub(crate) fn new() -> Self {
        Self((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    async fn lock(&self, kind: &str, key: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let mut h = DefaultHasher::new();
        (kind, key).hash(&mut h);
        let stripe = (h.finish() % self.0.len() as u64) as usize;
        Some(self.0.get(stripe)?.lock().await)
    }
}

/// The audit actor for a user.
pub fn user(actor: &Actor) -> rein_audit::Actor {
    user_named(&actor.user)
}

/// The audit actor for the user named `name`.
pub(crate) fn user_named(name: &rein_core::id::UserName) -> rein_audit::Actor {
    rein_audit::Actor {
        kind: ActorKind::User,
        id: name.to_string(),
    }
}

/// The audit actor for an agent acting on its own (with its key or its access token).
pub fn agent(id: &AgentId) -> rein_audit::Actor {
    rein_audit::Actor {
        kind: ActorKind::Agent,
        id: id.to_string(),
    }
}

/// A successful change by `actor` about `subject`.
pub(crate) fn change(event_type: EventType, actor: &Actor, subject: &str) -> Event {
    change_by(event_type, user(actor), subject)
}

fn change_by(event_type: EventType, by: rein_audit::Actor, subject: &str) -> Event {
    let mut e = Event::new(event_type, by, "success");
    e.subject = Some(subject.to_owned());
    e
}

impl Registry {
    /// Appends `event` durably, or refuses.
    pub(crate) async fn record(&self, event: Event) -> Result<Receipt, Error> {
        self.audit
            .append(event)
            .await
            .map_err(|e| Error::AuditUnavailable(e.to_string()))
    }

    /// Records that the change recorded as `receipt` was not applied. Best effort: the caller is
    /// already failing, and a failure here is logged.
    pub(crate) async fn supersede(&self, receipt: Receipt, mut event: Event, why: &str) {
        event.outcome = "failure".into();
        event.reason = Some(why.to_owned());
        event
            .details
            .insert("supersedes".into(), receipt.seq.to_string());
        if let Err(e) = self.audit.append(event).await {
            tracing::error!(error = %e, seq = receipt.seq, "could not record that an audited change was not applied");
        }
    }

    /// Records `event`, then runs `insert`; records the failure if the insert fails.
    pub(crate) async fn create<Fut>(
        &self,
        kind: &'static str,
        key: &str,
        event: Event,
        insert: Fut,
    ) -> Result<(), Error>
    where
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let _turn = self.locks.lock(kind, key).await;
        let receipt = self.record(event.clone()).await?;
        let inserted = insert.await;
        self.forget_identities(kind);
        if let Err(e) = inserted {
            let why = match &e {
                StoreError::AlreadyExists { .. } => "not applied: it exists already",
                StoreError::Conflict { .. } => {
                    "not applied: another writer changed the record first"
                }
                StoreError::NotFound { .. } => "not applied: it no longer exists",
                _ => "not applied: the store failed",
            };
            self.supersede(receipt, event, why).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Records `event`, then runs `delete` (a compare-and-swap deletion; only secrets are
    /// deleted); records the failure if the deletion fails, as [`Registry::create`] does.
    pub(crate) async fn remove<Fut>(
        &self,
        kind: &'static str,
        key: &str,
        event: Event,
        delete: Fut,
    ) -> Result<(), Error>
    where
        Fut: Future<Output = Result<(), StoreError>>,
    {
        self.create(kind, key, event, delete).await
    }

    /// Reads a record, applies `change` to a copy, records the change described by `describe`,
    /// and writes it back if nobody else wrote in between; after a lost race, re-reads and
    /// re-applies `change` to the new state.
    pub(crate) async fn modify<T, Read, ReadFut, Write, WriteFut, Change, Describe>(
        &self,
        kind: &'static str,
        key: &str,
        read: Read,
        write: Write,
        mut change: Change,
        describe: Describe,
    ) -> Result<Versioned<T>, Error>
    where
        T: Clone,
        Read: Fn() -> ReadFut,
        ReadFut: Future<Output = Result<Option<Versioned<T>>, StoreError>>,
        Write: Fn(T, Version) -> WriteFut,
        WriteFut: Future<Output = Result<Version, StoreError>>,
        Change: FnMut(&mut T) -> Result<(), Error>,
        Describe: Fn(&T) -> Event,
    {
        let _turn = self.locks.lock(kind, key).await;
        for _ in 0..CAS_ATTEMPTS {
            let Versioned { mut value, version } =
                read().await?.ok_or_else(|| Error::NotFound {
                    kind,
                    key: key.to_owned(),
                })?;
            change(&mut value)?;
            let event = describe(&value);
            let receipt = self.record(event.clone()).await?;
            let written = write(value.clone(), version).await;
            self.forget_identities(kind);
            match written {
                Ok(version) => return Ok(Versioned { value, version }),
                Err(StoreError::Conflict { .. }) => {
                    self.supersede(
                        receipt,
                        event,
                        "not applied: another writer changed the record first; retried",
                    )
                    .await;
                }
                Err(e) => {
                    self.supersede(receipt, event, "not applied: the store failed")
                        .await;
                    return Err(e.into());
                }
            }
        }
        Err(Error::Contended {
            kind,
            key: key.to_owned(),
        })
    }

    /// [`Registry::modify`] for an agent; tells the observers.
    pub(crate) async fn modify_agent<Change, Describe>(
        &self,
        id: &AgentId,
        change: Change,
        describe: Describe,
    ) -> Result<Agent, Error>
    where
        Change: FnMut(&mut Agent) -> Result<(), Error>,
        Describe: Fn(&Agent) -> Event,
    {
        let store = &self.store;
        let written = self
            .modify(
                "agent",
                id.as_str(),
                || store.agent(id),
                |a, v| async move { store.update_agent(&a, v).await },
                change,
                describe,
            )
            .await?;
        self.agent_written(&written.value, written.version);
        Ok(written.value)
    }

    /// [`Registry::modify`] for a grant; tells the observers.
    pub(crate) async fn modify_grant<Change, Describe>(
        &self,
        id: &GrantId,
        change: Change,
        describe: Describe,
    ) -> Result<Grant, Error>
    where
        Change: FnMut(&mut Grant) -> Result<(), Error>,
        Describe: Fn(&Grant) -> Event,
    {
        let store = &self.store;
        let written = self
            .modify(
                "grant",
                id.as_str(),
                || store.grant(id),
                |g, v| async move { store.update_grant(&g, v).await },
                change,
                describe,
            )
            .await?;
        self.grant_written(&written.value, written.version);
        Ok(written.value)
    }

    /// [`Registry::modify`] for a system; tells the observers.
    pub(crate) async fn modify_system<Change, Describe>(
        &self,
        name: &SystemName,
        change: Change,
        describe: Describe,
    ) -> Result<System, Error>
    where
        Change: FnMut(&mut System) -> Result<(), Error>,
        Describe: Fn(&System) -> Event,
    {
        let store = &self.store;
        let written = self
            .modify(
                "system",
                name.as_str(),
                || store.system(name),
                |s, v| async move { store.update_system(&s, v).await },
                change,
                describe,
            )
            .await?;
        self.system_written(&written.value, written.version);
        Ok(written.value)
    }

    /// Empties the token cache after a write to users, teams or tokens (whether it landed or
    /// not: an unknown outcome must not leave a stale identity behind).
    fn forget_identities(&self, kind: &str) {
        if matches!(kind, "user" | "team" | "api_token") {
            self.auth.clear();
        }
    }

    /// Tells other replicas (through the store) that a record changed, so that their copies
    /// are re-read now rather than at their next full reload. Best effort, in the background:
    /// a lost announcement only delays another replica until that reload.
    fn announce(&self, kind: &'static str, key: String) {
        let store = std::sync::Arc::clone(&self.store);
        tokio::spawn(async move {
            let change = rein_store::Change {
                kind: kind.to_owned(),
                key,
            };
            if let Err(e) = store.announce(&change).await {
                tracing::warn!(error = %e, kind, "could not announce a change to other replicas");
            }
        });
    }

    /// Tells the observers that `agent` is now at `version`.
    pub(crate) fn agent_written(&self, agent: &Agent, version: Version) {
        for o in self.observers.iter() {
            o.agent_written(agent, version);
        }
        self.announce("agent", agent.id.to_string());
    }

    /// Tells the observers that `system` is now at `version`.
    pub(crate) fn system_written(&self, system: &System, version: Version) {
        for o in self.observers.iter() {
            o.system_written(system, version);
        }
        self.announce("system", system.name.to_string());
    }

    /// Tells the observers that `approval` is now at `version`.
    pub(crate) fn approval_written(
        &self,
        approval: &rein_core::approval::ApprovalRequest,
        version: Version,
    ) {
        for o in self.observers.iter() {
            o.approval_written(approval, version);
        }
        self.announce("approval", approval.id.clone());
    }

    /// Tells the observers that `revocation` is now at `version`.
    pub(crate) fn revocation_written(
        &self,
        revocation: &rein_core::revocation::Revocation,
        version: Version,
    ) {
        for o in self.observers.iter() {
            o.revocation_written(revocation, version);
        }
        self.announce("revocation", revocation.id.clone());
    }

    /// Tells the observers that `grant` is now at `version`.
    pub(crate) fn grant_written(&self, grant: &Grant, version: Version) {
        for o in self.observers.iter() {
            o.grant_written(grant, version);
        }
        self.announce("grant", grant.id.to_string());
    }
}

/// Comma-joined display of a set, for `details`.
pub(crate) fn joined<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A personal API token was issued (its ID and owner, never the token).
pub(crate) fn token_issued(actor: &Actor, token: &rein_core::user::ApiToken) -> Event {
    let mut e = change(EventType::ApiTokenIssued, actor, &token.id);
    e.details.insert("user".into(), token.user.to_string());
    if let Some(exp) = token.expires_at {
        e.details.insert("expires_at".into(), exp.to_rfc3339());
    }
    e
}

/// A system was registered or changed.
pub(crate) fn system_event(
    event_type: EventType,
    actor: &Actor,
    s: &rein_core::system::System,
) -> Event {
    let mut e = change(event_type, actor, s.name.as_str());
    e.system = Some(s.name.to_string());
    e.approvers = s.approvers.iter().map(ToString::to_string).collect();
    e.details
        .insert("environment".into(), s.environment.to_string());
    e.details
        .insert("owner_team".into(), s.owner_team.to_string());
    e.details.insert("actions".into(), joined(s.actions.keys()));
    e
}

/// An agent's lifecycle event, naming who is accountable for it at that moment.
pub(crate) fn agent_event(
    event_type: EventType,
    actor: &Actor,
    a: &rein_core::agent::Agent,
    reason: Option<&str>,
) -> Event {
    agent_event_by(event_type, user(actor), a, reason)
}

/// An agent's lifecycle event by Rein itself (circuit breaker).
pub(crate) fn agent_event_by_rein(
    event_type: EventType,
    a: &rein_core::agent::Agent,
    reason: Option<&str>,
) -> Event {
    agent_event_by(event_type, rein(), a, reason)
}

pub(crate) fn agent_event_by(
    event_type: EventType,
    by: rein_audit::Actor,
    a: &rein_core::agent::Agent,
    reason: Option<&str>,
) -> Event {
    let mut e = change_by(event_type, by, a.id.as_str());
    e.agent = Some(a.id.to_string());
    e.reason = reason.map(str::to_owned);
    e.approvers = a.roles.approvers.iter().map(ToString::to_string).collect();
    e.revokers = a.roles.revokers.iter().map(ToString::to_string).collect();
    e.details
        .insert("status".into(), a.status.as_str().to_owned());
    if let Some(owner) = &a.roles.business_owner {
        e.details.insert("business_owner".into(), owner.to_string());
    }
    e.details
        .insert("reviewers".into(), joined(&a.roles.reviewers));
    e
}

/// A grant's lifecycle event: who approved it so far, who may revoke it.
pub(crate) fn grant_event(
    event_type: EventType,
    actor: &Actor,
    g: &rein_core::grant::Grant,
    reason: Option<&str>,
) -> Event {
    grant_event_by(event_type, user(actor), g, reason)
}

/// A grant event by the user named `by`.
pub(crate) fn grant_event_by_user(
    event_type: EventType,
    by: &rein_core::id::UserName,
    g: &rein_core::grant::Grant,
    reason: Option<&str>,
) -> Event {
    grant_event_by(event_type, user_named(by), g, reason)
}

/// A grant event by Rein itself (expiry).
pub(crate) fn grant_event_by_rein(
    event_type: EventType,
    g: &rein_core::grant::Grant,
    reason: Option<&str>,
) -> Event {
    grant_event_by(event_type, rein(), g, reason)
}

/// Rein itself as the actor of an event.
pub fn rein() -> rein_audit::Actor {
    rein_audit::Actor {
        kind: ActorKind::Rein,
        id: rein_core::id::UserName::REIN.into(),
    }
}

fn grant_event_by(
    event_type: EventType,
    by: rein_audit::Actor,
    g: &rein_core::grant::Grant,
    reason: Option<&str>,
) -> Event {
    let mut e = change_by(event_type, by, g.id.as_str());
    e.agent = Some(g.agent.to_string());
    e.system = Some(g.system.to_string());
    e.reason = reason.map(str::to_owned);
    e.approvers = g.approvals.iter().map(|a| a.by.to_string()).collect();
    e.revokers = g.revokers.iter().map(ToString::to_string).collect();
    e.details.insert("actions".into(), joined(&g.actions));
    e.details
        .insert("status".into(), g.status.as_str().to_owned());
    e.details
        .insert("expires_at".into(), g.expires_at.to_rfc3339());
    e
}
