//! The in-memory copy of the records decisions read: agents, systems and live grants.
//!
//! Loaded from the store at start ([`FactsCache::load`]) and kept current by the registry,
//! which tells it about every write before the write's operation returns ([`Observer`]). Each
//! entry keeps the record's version, so a stale copy (a reload racing a write, or two writers'
//! notifications arriving out of order) never replaces a newer one.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rein_core::agent::Agent;
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::{AgentId, Environment, GrantId, SystemName, TeamName};
use rein_core::revocation::{Revocation, RevocationTarget};
use rein_core::system::System;
use rein_registry::Observer;
use rein_store::{DecisionFacts, Version};

/// What one decision reads.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The agent, if known.
    pub agent: Option<Arc<Agent>>,
    /// The system, if known.
    pub system: Option<Arc<System>>,
    /// The agent's grants on the system whose stored status is `active`.
    pub grants: Arc<[Grant]>,
}

/// The facts cache. Share it behind an `Arc`; give the same `Arc` to
/// [`rein_registry::Registry::observed_by`].
#[derive(Debug)]
pub struct FactsCache {
    inner: RwLock<Inner>,
    /// Counts the writes applied, so that waiters learn of each one at once.
    applied: tokio::sync::watch::Sender<u64>,
}

impl Default for FactsCache {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            applied: tokio::sync::watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    agents: HashMap<AgentId, (Version, Arc<Agent>)>,
    systems: HashMap<SystemName, (Version, Arc<System>)>,
    /// The newest version seen of every grant, live or not, so that a stale copy of a grant
    /// that was revoked since is recognised as stale.
    grant_versions: HashMap<GrantId, Version>,
    /// Live (`active`) grants by agent, then system.
    grants: HashMap<AgentId, HashMap<SystemName, Arc<[Grant]>>>,
    /// The revocations in force, with their versions.
    revocations: HashMap<String, (Version, Arc<Revocation>)>,
    /// The newest version seen of every revocation, pruned or not, so that a stale copy of a
    /// lifted revocation is recognised as stale.
    revocation_versions: HashMap<String, Version>,
    /// The revocations not lifted, indexed for O(1) checks; rebuilt on every change.
    revoked: Revoked,
}

/// Revocations in force, by what they cover.
#[derive(Debug, Default)]
struct Revoked {
    tokens: HashSet<String>,
    tasks: HashMap<AgentId, HashSet<String>>,
    teams: HashMap<TeamName, String>,
    environments: HashMap<Environment, String>,
    issued_before: Option<DateTime<Utc>>,
}

impl Revoked {
    /// Why a call of `agent` in `task` is revoked, if it is; allocates only to say why.
    fn call(&self, agent: &AgentId, task: Option<&str>) -> Option<String> {
        if let Some(id) = self.teams.get(agent.team()) {
            return Some(format!("team `{}` is revoked ({id})", agent.team()));
        }
        if let Some(id) = self.environments.get(agent.environment()) {
            return Some(format!(
                "environment `{}` is revoked ({id})",
                agent.environment()
            ));
        }
        let task = task?;
        self.tasks
            .get(agent)
            .is_some_and(|tasks| tasks.contains(task))
            .then(|| format!("task `{task}` is revoked"))
    }
}

/// What a revocation check needs of an access token.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    /// The agent (`sub`).
    pub agent: &'a AgentId,
    /// The token's `jti`.
    pub jti: &'a str,
    /// The token's task.
    pub task_id: &'a str,
    /// When it was issued (`iat`).
    pub issued_at: DateTime<Utc>,
}

/// The cache's lock was poisoned by a panic while it was being changed: its content can no
/// longer be trusted, so decisions deny.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the in-memory registry facts are unusable after an internal failure")]
pub struct FactsUnavailable;

impl FactsCache {
    /// Merges a snapshot read from the store: each record replaces the cached one only if it is
    /// newer.
    pub fn load(&self, facts: DecisionFacts) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for a in facts.agents {
            inner.agent(a.value, a.version);
        }
        for s in facts.systems {
            inner.system(s.value, s.version);
        }
        for g in facts.grants {
            inner.grant(g.value, g.version);
        }
        let mut revoked = false;
        for r in facts.revocations {
            revoked |= inner.revocation(r.value, r.version);
        }
        inner.reindex();
        drop(inner);
        if revoked {
            self.bump();
        }
    }

    /// Changes as soon as a write is applied here, however it arrived (written on this node,
    /// announced by another replica) and as soon as a reload brings a new revocation: for
    /// those who act on facts changing, without polling.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Wakes the watchers (something they may wait for changed).
    pub(crate) fn bump(&self) {
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The IDs of the revocations in force in the index.
    pub fn revocation_ids(&self) -> Vec<String> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.revocations.keys().cloned().collect()
    }

    /// Why a call of `agent` in `task` is revoked (its team, its environment, or the task), if
    /// it is: decision step 1's "nothing revoked covers it".
    pub fn revoked_call(
        &self,
        agent: &AgentId,
        task: Option<&str>,
    ) -> Result<Option<String>, FactsUnavailable> {
        let inner = self.inner.read().map_err(|_| FactsUnavailable)?;
        Ok(inner.revoked.call(agent, task))
    }

    /// Whether a revocation covers an access token: its `jti`, its task, its agent's team or
    /// environment, or a cut-off after it was issued.
    pub fn token_revoked(&self, t: TokenFacts<'_>) -> Result<bool, FactsUnavailable> {
        let inner = self.inner.read().map_err(|_| FactsUnavailable)?;
        let r = &inner.revoked;
        Ok(r.call(t.agent, Some(t.task_id)).is_some()
            || r.tokens.contains(t.jti)
            || r.issued_before.is_some_and(|cut| t.issued_at < cut))
    }

    /// The agent, the system, and the agent's live grants on it.
    pub fn lookup(&self, agent: &AgentId, system: &SystemName) -> Result<Lookup, FactsUnavailable> {
        let inner = self.inner.read().map_err(|_| FactsUnavailable)?;
        Ok(Lookup {
            agent: inner.agents.get(agent).map(|(_, a)| Arc::clone(a)),
            system: inner.systems.get(system).map(|(_, s)| Arc::clone(s)),
            grants: inner
                .grants
                .get(agent)
                .and_then(|by_system| by_system.get(system))
                .map_or_else(|| Arc::from(Vec::new()), Arc::clone),
        })
    }

    /// The system `name`, if known.
    pub fn system(&self, name: &SystemName) -> Option<Arc<System>> {
        let inner = self.inner.read().ok()?;
        inner.systems.get(name).map(|(_, s)| Arc::clone(s))
    }

    /// How many agents, systems and live grants are held.
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let grants = inner
            .grants
            .values()
            .flat_map(HashMap::values)
            .map(|g| g.len())
            .sum();
        (inner.agents.len(), inner.systems.len(), grants)
    }
}

impl Inner {
    /// Takes `revocation` unless a copy as new is held; returns whether it did.
    fn revocation(&mut self, revocation: Revocation, version: Version) -> bool {
        if self
            .revocation_versions
            .get(&revocation.id)
            .is_some_and(|held| *held >= version)
        {
            return false;
        }
        self.revocation_versions
            .insert(revocation.id.clone(), version);
        self.revocations
            .insert(revocation.id.clone(), (version, Arc::new(revocation)));
        true
    }

    /// Rebuilds the index of the revocations in force, and prunes those that are moot (lifted,
    /// or covering only tokens that have all expired): a revocation that became moot since the
    /// last rebuild covers only expired tokens, so keeping it until the next one changes
    /// nothing. A pruned revocation that a later reload brings back is pruned again.
    fn reindex(&mut self) {
        let now = Utc::now();
        self.revocations.retain(|_, (_, rev)| rev.in_force(now));
        let mut r = Revoked::default();
        for (_, rev) in self.revocations.values() {
            match &rev.target {
                RevocationTarget::Token { jti, .. } => {
                    r.tokens.insert(jti.clone());
                }
                RevocationTarget::Task { agent, task_id } => {
                    r.tasks
                        .entry(agent.clone())
                        .or_default()
                        .insert(task_id.clone());
                }
                RevocationTarget::Team { team } => {
                    r.teams.insert(team.clone(), rev.id.clone());
                }
                RevocationTarget::Environment { environment } => {
                    r.environments.insert(environment.clone(), rev.id.clone());
                }
                RevocationTarget::IssuedBefore { before } => {
                    r.issued_before = Some(r.issued_before.map_or(*before, |b| b.max(*before)));
                }
            }
        }
        self.revoked = r;
    }

    fn agent(&mut self, agent: Agent, version: Version) {
        match self.agents.get(&agent.id) {
            Some((held, _)) if *held >= version => {}
            _ => {
                self.agents
                    .insert(agent.id.clone(), (version, Arc::new(agent)));
            }
        }
    }

    fn system(&mut self, system: System, version: Version) {
        match self.systems.get(&system.name) {
            Some((held, _)) if *held >= version => {}
            _ => {
                self.systems
                    .insert(system.name.clone(), (version, Arc::new(system)));
            }
        }
    }

    fn grant(&mut self, grant: Grant, version: Version) {
        if self
            .grant_versions
            .get(&grant.id)
            .is_some_and(|held| *held >= version)
        {
            return;
        }
        self.grant_versions.insert(grant.id.clone(), version);
        let by_system = self.grants.entry(grant.agent.clone()).or_default();
        let current = by_system
            .get(&grant.system)
            .map(|g| g.to_vec())
            .unwrap_or_default();
        let system = grant.system.clone();
        let mut next: Vec<Grant> = current.into_iter().filter(|g| g.id != grant.id).collect();
        if grant.status == GrantStatus::Active {
            next.push(grant);
        }
        if next.is_empty() {
            by_system.remove(&system);
        } else {
            by_system.insert(system, Arc::from(next));
        }
    }
}

impl Observer for FactsCache {
    fn agent_written(&self, agent: &Agent, version: Version) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.agent(agent.clone(), version);
        drop(inner);
        self.bump();
    }

    fn system_written(&self, system: &System, version: Version) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.system(system.clone(), version);
        drop(inner);
        self.bump();
    }

    fn grant_written(&self, grant: &Grant, version: Version) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.grant(grant.clone(), version);
        drop(inner);
        self.bump();
    }

    fn approval_written(&self, _: &rein_core::approval::ApprovalRequest, _: Version) {
        // Not a decision fact (decisions read approvals from the store); waiters watch.
        self.bump();
    }

    fn revocation_written(&self, revocation: &Revocation, version: Version) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let applied = inner.revocation(revocation.clone(), version);
        inner.reindex();
        drop(inner);
        if applied {
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use chrono::{TimeZone as _, Utc};

    use super::*;

    fn grant(n: u128, status: GrantStatus) -> Grant {
        let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        Grant {
            id: GrantId::from_bytes(n.to_be_bytes()),
            agent: "spiffe://rein.local/agent/payments/bot/prod"
                .parse()
                .unwrap(),
            system: "billing-db".parse().unwrap(),
            actions: BTreeSet::from(["query".parse().unwrap()]),
            expires_at: at + chrono::Duration::days(1),
            schedule: None,
            max_token_ttl_secs: None,
            justification: "test".into(),
            requested_by: "dave".parse().unwrap(),
            requested_at: at,
            status,
            mutates_production: false,
            approvers: Vec::new(),
            business_owner_approver: None,
            approvals: Vec::new(),
            revokers: Vec::new(),
            closed: None,
            updated_at: at,
        }
    }

    fn live(cache: &FactsCache) -> Vec<GrantStatus> {
        let g = grant(1, GrantStatus::Active);
        let lookup = cache.lookup(&g.agent, &g.system).unwrap();
        lookup.grants.iter().map(|g| g.status).collect()
    }

    #[test]
    fn a_revocation_is_not_undone_by_a_stale_copy() {
        let cache = FactsCache::default();
        cache.grant_written(&grant(1, GrantStatus::Active), 2);
        assert_eq!(live(&cache), vec![GrantStatus::Active]);
        cache.grant_written(&grant(1, GrantStatus::Revoked), 3);
        assert!(live(&cache).is_empty());
        // A reload that read the grant before it was revoked, or a late notification.
        cache.grant_written(&grant(1, GrantStatus::Active), 2);
        cache.load(DecisionFacts {
            grants: vec![rein_store::Versioned {
                value: grant(1, GrantStatus::Active),
                version: 2,
            }],
            ..DecisionFacts::default()
        });
        assert!(live(&cache).is_empty(), "the newer revocation stands");
    }

    #[test]
    fn only_active_grants_are_held_and_a_new_version_replaces_the_old() {
        let cache = FactsCache::default();
        cache.grant_written(&grant(1, GrantStatus::Requested), 1);
        cache.grant_written(&grant(2, GrantStatus::Active), 2);
        assert_eq!(live(&cache), vec![GrantStatus::Active]);
        cache.grant_written(&grant(1, GrantStatus::Active), 2);
        assert_eq!(live(&cache).len(), 2);
        assert_eq!(cache.counts(), (0, 0, 2));
    }
}

#[cfg(test)]
mod revocation_tests {
    #![allow(clippy::unwrap_used)]

    use rein_core::revocation::{Revocation, RevocationTarget};

    use super::*;

    #[test]
    fn moot_and_lifted_revocations_are_pruned_from_the_index() {
        let cache = FactsCache::default();
        let agent: AgentId = "spiffe://rein.local/agent/payments/bot/prod"
            .parse()
            .unwrap();
        let now = Utc::now();
        let token = |jti: &str, expires_at| RevocationTarget::Token {
            agent: agent.clone(),
            jti: jti.into(),
            expires_at: Some(expires_at),
        };
        let live = Revocation::new(
            [1; 16],
            token("live", now + chrono::Duration::minutes(5)),
            "x",
            "a".parse().unwrap(),
            now,
        )
        .unwrap();
        let gone = Revocation::new(
            [2; 16],
            token("gone", now - chrono::Duration::seconds(1)),
            "x",
            "a".parse().unwrap(),
            now,
        )
        .unwrap();
        cache.revocation_written(&live, 1);
        cache.revocation_written(&gone, 1);
        let facts = |jti| TokenFacts {
            agent: &agent,
            jti,
            task_id: "t",
            issued_at: now,
        };
        assert!(cache.token_revoked(facts("live")).unwrap());
        assert!(!cache.token_revoked(facts("gone")).unwrap());
        assert_eq!(
            cache.inner.read().unwrap().revocations.len(),
            1,
            "the moot one is pruned"
        );
    }
}
