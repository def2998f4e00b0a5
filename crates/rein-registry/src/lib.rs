//! Rein's registry service: users, teams, systems, agents and grants.
//!
//! Each operation authenticates nothing itself: it takes the [`Actor`] the caller resolved with
//! [`Registry::authenticate`], loads the facts it needs from the [`Store`], applies the pure rules
//! of [`rein_core`] (who may do it, whether the transition is allowed) and writes the result with
//! an optimistic compare-and-swap, re-reading and re-applying the rule when another writer won
//! the race. Nothing here knows HTTP.

mod agents;
mod error;
mod grants;
mod systems;
mod teams;
mod tokens;
mod users;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rein_core::id::{Environment, PrincipalRef, TrustDomain};
use rein_store::{Store, StoreError, Version, Versioned};

pub use agents::{AgentPatch, NewAgent};
pub use error::Error;
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
        }
    }
}

/// How often a compare-and-swap write is retried against concurrent writers before giving up.
const CAS_ATTEMPTS: usize = 16;

/// The registry service.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    config: Arc<RegistryConfig>,
    clock: Arc<dyn Clock>,
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>, config: RegistryConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            config: Arc::new(config),
            clock,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The underlying store (for readiness checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> DateTime<Utc> {
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
                return Err(rein_core::DomainError::invalid(
                    field,
                    format!("`{p}` does not exist"),
                )
                .into());
            }
        }
        Ok(())
    }
}

/// Reads a record, applies `change` to a copy and writes it back if nobody else wrote in between;
/// on a lost race, re-reads and re-applies `change` to the new state.
async fn modify<T, Read, ReadFut, Write, WriteFut, Change>(
    kind: &'static str,
    key: &str,
    read: Read,
    write: Write,
    mut change: Change,
) -> Result<T, Error>
where
    T: Clone,
    Read: Fn() -> ReadFut,
    ReadFut: std::future::Future<Output = Result<Option<Versioned<T>>, StoreError>>,
    Write: Fn(T, Version) -> WriteFut,
    WriteFut: std::future::Future<Output = Result<Version, StoreError>>,
    Change: FnMut(&mut T) -> Result<(), Error>,
{
    for _ in 0..CAS_ATTEMPTS {
        let Versioned { mut value, version } = read().await?.ok_or_else(|| Error::NotFound {
            kind,
            key: key.to_owned(),
        })?;
        change(&mut value)?;
        match write(value.clone(), version).await {
            Ok(_) => return Ok(value),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended {
        kind,
        key: key.to_owned(),
    })
}
