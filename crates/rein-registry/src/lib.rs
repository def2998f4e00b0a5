//! Rein's registry service: users, teams, systems, agents, grants, their access reviews and the
//! secrets of MCP upstreams.
//!
//! Each operation authenticates nothing itself: it takes the [`Actor`] the caller resolved with
//! [`Registry::authenticate`], loads the facts it needs from the [`Store`], applies the pure rules
//! of [`rein_core`] (who may do it, whether the transition is allowed) and writes the result with
//! an optimistic compare-and-swap, re-reading and re-applying the rule when another writer won
//! the race. Nothing here knows HTTP.

mod agents;
mod approvals;
mod audit;
mod audit_read;
mod auth_cache;
mod error;
mod governance;
mod grants;
pub mod keys;
mod observe;
mod reviews;
mod revocations;
mod secrets;
mod systems;
mod teams;
mod tokens;
pub mod usage;
mod users;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rein_audit::AuditLog;
use rein_core::id::{Environment, PrincipalRef, TrustDomain};
use rein_store::Store;

pub use agents::{AgentPatch, NewAgent};
pub use approvals::Verdict;
/// Audit actors: a user, an agent, or Rein itself.
pub mod actor {
    pub use crate::audit::{agent, rein, user};
}
pub use audit_read::{
    verify_audit_chain, ApprovalTrail, AuditPage, GrantApprovals, Ownership, Revokers, Why,
    MAX_AUDIT_PAGE,
};
pub use auth_cache::AUTH_CACHE_TTL;
pub use error::Error;
pub use governance::{
    Applied, ApplyRequest, ChangeAction, Expected, GovernanceSet, Plan, PlanNote, PlanProblem,
    PlannedChange, RecordKind, Subject,
};
pub use observe::Observer;
pub use reviews::{CampaignView, Overdue, ReviewDecisions};
pub use revocations::NewRevocation;
pub use secrets::SecretSet;
pub use systems::{NewSystem, SystemPatch};
pub use teams::{NewTeam, TeamPatch};
pub use tokens::{IssuedToken, NewToken};
pub use users::{NewUser, UserPatch};

/// The source of the current time; tests substitute a fixed clock.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Registry settings (from `rein.toml` and the environment).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// SPIFFE trust domain of agent IDs.
    pub trust_domain: TrustDomain,
    /// Environments agents and systems may be registered in.
    pub environments: Vec<Environment>,
    /// Environments where an agent may be active only with every accountable role set.
    pub protected_environments: Vec<Environment>,
    /// Environments whose `write`/`admin` grants also need the agent's business owner.
    pub production_environments: Vec<Environment>,
    /// Seconds a step-up approval request waits for its decision (default 900).
    pub approval_ttl_secs: i64,
    /// Whether admins may decide step-up requests they are not approvers of (default no).
    pub admins_may_approve: bool,
    /// Days past an agent's review cadence before its review counts as overdue (default 14).
    pub review_grace_days: u32,
    /// Whether the periodic sweep suspends an agent whose review is overdue (default no: it is
    /// only reported).
    pub suspend_overdue_reviews: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let env = |s: &str| s.parse::<Environment>().ok();
        Self {
            trust_domain: TrustDomain::try_from("rein.local".to_owned())
                .unwrap_or_else(|_| unreachable!()),
            environments: ["prod", "staging", "dev"]
                .into_iter()
                .filter_map(env)
                .collect(),
            protected_environments: ["prod", "staging"].into_iter().filter_map(env).collect(),
            production_environments: ["prod"].into_iter().filter_map(env).collect(),
            approval_ttl_secs: rein_core::approval::DEFAULT_TTL_SECS,
            admins_may_approve: false,
            review_grace_days: rein_core::review::DEFAULT_GRACE_DAYS,
            suspend_overdue_reviews: false,
        }
    }
}

/// The registry service.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    config: Arc<RegistryConfig>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    locks: Arc<audit::Locks>,
    observers: Arc<[Arc<dyn Observer>]>,
    auth: Arc<auth_cache::AuthCache>,
    apply_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Registry {
    /// A registry over `store`, recording every change in `audit`.
    pub fn new(
        store: Arc<dyn Store>,
        config: RegistryConfig,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            store,
            config: Arc::new(config),
            clock,
            audit,
            locks: Arc::new(audit::Locks::new()),
            observers: Arc::from(Vec::new()),
            auth: Arc::new(auth_cache::AuthCache::default()),
            apply_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// This registry, also telling `observer` about every agent, system and grant it writes
    /// (see [`Observer`]). Clones made before this call do not tell it.
    #[must_use]
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Self {
        let mut all = self.observers.to_vec();
        all.push(observer);
        self.observers = Arc::from(all);
        self
    }

    /// The settings in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The audit log every change is recorded in.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The underlying store (for readiness checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The registry clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn check_environment(&self, env: &Environment) -> Result<(), Error> {
        if self.config.environments.contains(env) {
            Ok(())
        } else {
            let known: Vec<String> = self
                .config
                .environments
                .iter()
                .map(ToString::to_string)
                .collect();
            Err(rein_core::DomainError::invalid(
                "environment",
                format!(
                    "`{env}` is not a configured environment ({})",
                    known.join(", ")
                ),
            )
            .into())
        }
    }

    /// Checks every referenced user and team exists, so that no role names nobody.
    async fn check_principals<'a>(
        &self,
        field: &'static str,
        principals: impl IntoIterator<Item = &'a PrincipalRef>,
    ) -> Result<(), Error> {
        for p in principals {
            let exists = match p {
                PrincipalRef::User(u) => self.store.user(u).await?.is_some(),
                PrincipalRef::Team(t) => self.store.team(t).await?.is_some(),
            };
            if !exists {
                return Err(missing_principal(field, p));
            }
        }
        Ok(())
    }

    /// Whether `environment` counts as production (its mutations need the business owner).
    fn is_production(&self, environment: &Environment) -> bool {
        self.config.production_environments.contains(environment)
    }
}

/// A role or field names a user or team that does not exist.
fn missing_principal(field: &'static str, p: &PrincipalRef) -> Error {
    rein_core::DomainError::invalid(field, format!("`{p}` does not exist")).into()
}

/// The actor for a user record (used where there is no token yet, as in bootstrap).
pub(crate) fn actor_for(user: &rein_core::user::User) -> rein_core::authz::Actor {
    rein_core::authz::Actor {
        user: user.name.clone(),
        role: user.role,
        teams: Default::default(),
    }
}
