//! The input of a posture evaluation: registry records, usage from the audit log, the guardrails
//! in force, and the thresholds.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rein_core::agent::Agent;
use rein_core::grant::Grant;
use rein_core::id::{ActionName, AgentId, Environment, SystemName};
use rein_core::system::System;
use serde::{Deserialize, Serialize};

/// Everything a posture evaluation looks at, as plain data. The caller builds it from the
/// registry (agents, systems, grants), the audit log ([`Usage`]) and the guardrail set in force.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Every agent (retired ones are skipped by the rules).
    pub agents: Vec<Agent>,
    /// Every system.
    pub systems: Vec<System>,
    /// Every grant, in any state (only effectively `active` ones are evaluated).
    pub grants: Vec<Grant>,
    /// What the audit log says about use.
    pub usage: Usage,
    /// The guardrails loaded, with how often each matched.
    pub guardrails: Vec<GuardrailUse>,
    /// Environments that count as production (prod mutations need the business owner).
    pub production_environments: Vec<Environment>,
    /// Environments whose agents need every accountable role to be active (`prod`, `staging` by
    /// default); a missing role there is `high` instead of `medium`.
    pub protected_environments: Vec<Environment>,
    /// The evaluation time.
    pub now: DateTime<Utc>,
}

impl Inventory {
    /// An empty inventory at `now` with Rein's default environments: production `prod`,
    /// protected `prod` and `staging`.
    pub fn new(now: DateTime<Utc>) -> Self {
        let env = |names: &[&str]| -> Vec<Environment> {
            names.iter().filter_map(|n| n.parse().ok()).collect()
        };
        Self {
            agents: Vec::new(),
            systems: Vec::new(),
            grants: Vec::new(),
            usage: Usage::default(),
            guardrails: Vec::new(),
            production_environments: env(&["prod"]),
            protected_environments: env(&["prod", "staging"]),
            now,
        }
    }
}

/// Use of agents and their grants, as recorded in the audit log.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// The last time each (agent, system, action) was allowed.
    pub last_used: HashMap<(AgentId, SystemName, ActionName), DateTime<Utc>>,
    /// The last time each agent did anything (a decision, a token, a gateway call).
    pub last_activity: HashMap<AgentId, DateTime<Utc>>,
    /// The distinct caller contexts each identity was used from, e.g. `env:dev` or
    /// `team:growth`, as the caller derives them from decision contexts and token requests.
    /// More than one is a shared identity.
    pub used_from: HashMap<AgentId, BTreeSet<String>>,
}

impl Usage {
    /// Records that `agent` was allowed `action` on `system` at `at` (keeps the latest time and
    /// counts as activity).
    pub fn record_use(
        &mut self,
        agent: &AgentId,
        system: &SystemName,
        action: &ActionName,
        at: DateTime<Utc>,
    ) {
        let last = self
            .last_used
            .entry((agent.clone(), system.clone(), action.clone()))
            .or_insert(at);
        *last = (*last).max(at);
        self.record_activity(agent, at);
    }

    /// Records activity of `agent` at `at` (keeps the latest time).
    pub fn record_activity(&mut self, agent: &AgentId, at: DateTime<Utc>) {
        let last = self.last_activity.entry(agent.clone()).or_insert(at);
        *last = (*last).max(at);
    }

    /// Records that `agent` was used from the caller context `context`.
    pub fn record_context(&mut self, agent: &AgentId, context: impl Into<String>) {
        self.used_from
            .entry(agent.clone())
            .or_default()
            .insert(context.into());
    }
}

/// Whether a guardrail decides or only records what it would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailMode {
    /// Its matches deny or step up.
    Enforce,
    /// Evaluated and recorded, but does not change decisions.
    Shadow,
}

/// One loaded guardrail and how often it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuardrailUse {
    /// The guardrail's `@id`.
    pub id: String,
    /// Enforced or shadow.
    pub mode: GuardrailMode,
    /// Since when it has been loaded in this mode.
    pub loaded_since: DateTime<Utc>,
    /// How many decisions it matched since then.
    pub matches: u64,
}

/// Thresholds of the rules, in days unless named otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PostureConfig {
    /// An active grant unused this long is a finding; also the window for unused actions.
    pub unused_grant_days: u32,
    /// An active agent with no activity this long is an offboarding candidate.
    pub inactive_agent_days: u32,
    /// Days past the review cadence before a review counts as overdue.
    pub review_grace_days: u32,
    /// Longest `max_token_ttl_secs` a grant may carry; a grant without one is also a finding.
    pub max_token_ttl_secs: u32,
    /// Longest a grant may still run from now, in days.
    pub max_grant_days: u32,
    /// Longest a guardrail may stay in shadow mode.
    pub shadow_max_days: u32,
    /// A guardrail loaded this long without a match is a finding.
    pub never_matched_days: u32,
}

impl Default for PostureConfig {
    fn default() -> Self {
        Self {
            unused_grant_days: 30,
            inactive_agent_days: 60,
            review_grace_days: 14,
            max_token_ttl_secs: 3600,
            max_grant_days: 90,
            shadow_max_days: 14,
            never_matched_days: 30,
        }
    }
}
