//! Rein's policy decision point: everything around [`rein_policy::decide`] that needs state.
//!
//! - [`FactsCache`]: the agents, systems and live grants decisions read, in memory, kept current
//!   by the registry's [`rein_registry::Observer`] hook (a write on this node is seen by the next
//!   decision) and merged by version with periodic reloads from the store.
//! - [`Budgets`](budget::Budgets): calls per minute per agent, mutations and distinct systems
//!   per task, counted under a per-agent lock so that a budget's last unit is given once.
//! - [`PolicySource`]: the guardrail set in force, reloaded from its directory on demand or on
//!   file change, swapped atomically, never replaced by a set that fails to load.
//!
//! [`Pdp::authorize`] decides, counts the call, trips the circuit breaker (suspends the agent
//! through the registry) when a budget says so, and writes the decision to the audit log before
//! answering: a decision that cannot be recorded is a deny.

mod approvals;
pub mod budget;
mod error;
mod facts;
mod policies;
mod posture;
mod replicas;
mod tokens;
mod upkeep;
mod watch;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rein_audit::{Event, EventType};
use rein_core::authz::Actor;
use rein_core::id::{ActionName, AgentId, SystemName};
use rein_policy::{
    decide, ApprovalEvidence, Decision, Facts, Outcome, Request, RequestContext, Rule,
    ShadowEffect, StepUp,
};
use rein_registry::{actor, Registry};
use serde::{Deserialize, Serialize};

pub use approvals::{ApprovalRef, Notifier, MAX_WAIT_SECS};
pub use error::Error;
pub use facts::{FactsCache, FactsUnavailable, Lookup, TokenFacts};
pub use policies::{load_dir, LoadError, Loaded, PolicySource};
pub use replicas::Follow;
pub use tokens::Issuer;
pub use upkeep::{Propagation, ReplicaState, Upkeep, ALIVE_WITHIN_SECS, HEARTBEAT};
pub use watch::Watch;

/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;

/// One request to decide, as callers send it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The calling agent's SPIFFE ID.
    #[schema(value_type = String, example = "spiffe://rein.local/agent/payments/refunder/prod")]
    pub agent: AgentId,
    /// The target system.
    #[schema(value_type = String, example = "payments-db")]
    pub system: SystemName,
    /// The action (tool) to call.
    #[schema(value_type = String, example = "query")]
    pub action: ActionName,
    /// What the agent states about the call.
    #[serde(default)]
    pub context: CallContext,
}

/// The agent's statement about a call.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallContext {
    /// The task the call belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The task's stated intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Risk as the agent assesses it, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<i64>,
    /// Confidence as the agent assesses it, 0.0 to 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The call's arguments, a JSON object (at most 64 KiB in canonical form, 16 levels deep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<serde_json::Value>,
    /// The step-up approval attached to this call, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

impl CallContext {
    /// The engine's context, validated.
    fn validate(self) -> Result<RequestContext, Error> {
        let risk = self
            .risk
            .map(|r| {
                u8::try_from(r)
                    .ok()
                    .filter(|r| *r <= 100)
                    .ok_or_else(|| Error::invalid("context.risk", "must be 0 to 100"))
            })
            .transpose()?;
        let context = RequestContext {
            task_id: self.task_id,
            intent: self.intent,
            risk,
            confidence: self.confidence,
            arguments: self.arguments.unwrap_or(serde_json::Value::Null),
            approval_id: self.approval_id,
        };
        context.validate().map_err(Error::Context)?;
        Ok(context)
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Authorization {
    /// `allow`, `deny` or `step_up`.
    #[schema(value_type = String, example = "allow")]
    pub decision: Outcome,
    /// This decision's ID, the `subject` of its audit record.
    pub decision_id: String,
    /// What decided: grant IDs, guardrail IDs, `rule:<name>`.
    pub determined_by: Vec<String>,
    /// Would-be effects of matching `@shadow` guardrails.
    #[schema(value_type = Vec<Object>)]
    pub shadow: Vec<ShadowEffect>,
    /// The guardrail set's version (content hash).
    pub policy_version: String,
    /// Why, in words.
    pub reason: String,
    /// Which step decided: `agent`, `grant`, `budget`, `guardrail`, `allow` or `error`.
    #[schema(value_type = String, example = "allow")]
    pub rule: Rule,
    /// What a step-up needs, when the decision is `step_up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub step_up: Option<StepUp>,
    /// SHA-256 of the canonical arguments (what an approval binds to).
    pub argument_digest: String,
    /// For `step_up`: the approval request opened (or joined) for this exact call. For an
    /// `allow` that used an approval: that approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRef>,
    /// The audit record of this decision; absent only when it could not be written (and the
    /// decision is then a deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

/// The guardrail set in force, as `GET /v1/policies` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyStatus {
    /// Content hash of the set.
    pub version: String,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
    /// The directory it is loaded from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Its guardrails.
    pub guardrails: Vec<GuardrailInfo>,
}

/// One guardrail of the set in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuardrailInfo {
    /// Its `@id`.
    pub id: String,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// Approvers a match needs instead of a denial (`@step_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<u32>,
    /// Its `@reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `file:line` where it starts.
    pub location: String,
}

/// The policy decision point. Cheap to share behind an `Arc`.
pub struct Pdp {
    registry: Registry,
    facts: Arc<FactsCache>,
    budgets: budget::Budgets,
    policies: PolicySource,
    replica: Replica,
}

/// This process among the replicas sharing the store.
struct Replica {
    /// A new ID each start (`rpl_` and a UUIDv7).
    id: String,
    started_at: DateTime<Utc>,
}

impl Pdp {
    /// A decision point over `registry` (which must be [`Registry::observed_by`] `facts`),
    /// with `policies` in force. Load `facts` with [`Pdp::refresh`] before serving.
    pub fn new(registry: Registry, facts: Arc<FactsCache>, policies: PolicySource) -> Self {
        let registry_now = registry.now();
        Self {
            registry,
            facts,
            budgets: budget::Budgets::default(),
            policies,
            replica: Replica {
                id: format!("rpl_{}", uuid::Uuid::now_v7().simple()),
                started_at: registry_now,
            },
        }
    }

    /// This replica's ID, as its heartbeats and acknowledgements name it.
    pub fn replica_id(&self) -> &str {
        &self.replica.id
    }

    /// A ready decision point: `registry` observed by a new facts cache loaded from the store,
    /// guardrails from `policies_dir` (none: an empty set). Serve with [`Pdp::registry`], which
    /// keeps the cache current.
    pub async fn start(
        registry: Registry,
        policies_dir: Option<std::path::PathBuf>,
    ) -> Result<Arc<Self>, Error> {
        let facts = Arc::new(FactsCache::default());
        let registry = registry.observed_by(Arc::clone(&facts) as Arc<dyn rein_registry::Observer>);
        let policies = PolicySource::open(policies_dir, registry.now()).map_err(Error::Policies)?;
        let pdp = Arc::new(Self::new(registry, facts, policies));
        pdp.refresh().await?;
        Ok(pdp)
    }

    /// The registry, observed by this decision point's facts cache.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The facts cache.
    pub fn facts(&self) -> &FactsCache {
        &self.facts
    }

    /// Re-reads agents, systems and live grants from the store and merges them by version:
    /// picks up what other replicas wrote.
    pub async fn refresh(&self) -> Result<(), Error> {
        let facts = self
            .registry
            .store()
            .decision_facts()
            .await
            .map_err(|e| Error::Registry(e.into()))?;
        self.facts.load(facts);
        Ok(())
    }

    /// Decides one request for `actor` (an admin, or a member of the agent's team).
    pub async fn authorize(
        &self,
        actor: &Actor,
        request: AuthorizeRequest,
    ) -> Result<Authorization, Error> {
        actor.require_decision_requester(&request.agent)?;
        let prepared = prepare(request)?;
        Ok(self.decide_and_record(actor::user(actor), prepared).await)
    }

    /// Decides one request of an agent presenting its access token (already verified for the
    /// request's system, see [`Pdp::verify_agent_token`]): an agent asks only about itself,
    /// for an action its token's scope names, within the token's task (a request naming no
    /// task is the token's).
    pub async fn authorize_for_token(
        &self,
        token: &rein_oauth::AccessTokenClaims,
        mut request: AuthorizeRequest,
    ) -> Result<Authorization, Error> {
        if request.agent != token.sub {
            return Err(rein_core::DomainError::forbidden(
                "an agent may ask for decisions only on its own calls",
            )
            .into());
        }
        if !token.allows(&request.action) {
            return Err(rein_core::DomainError::forbidden(format!(
                "the access token's scope does not include `{}`",
                request.action
            ))
            .into());
        }
        match &request.context.task_id {
            None => request.context.task_id = Some(token.task_id.as_str().to_owned()),
            Some(t) if t != token.task_id.as_str() => {
                return Err(rein_core::DomainError::forbidden(
                    "the access token was issued for another task",
                )
                .into())
            }
            Some(_) => {}
        }
        let prepared = prepare(request)?;
        Ok(self
            .decide_and_record(actor::agent(&token.sub), prepared)
            .await)
    }

    /// Decides up to [`MAX_BATCH`] requests; all are checked before any is decided, so a
    /// malformed one refuses the whole batch (naming its index) and nothing is counted.
    pub async fn authorize_batch(
        &self,
        actor: &Actor,
        requests: Vec<AuthorizeRequest>,
    ) -> Result<Vec<Authorization>, Error> {
        check_batch(requests.len())?;
        let mut prepared = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            actor.require_decision_requester(&request.agent)?;
            prepared.push(prepare(request).map_err(|e| e.at_index(i))?);
        }
        let decisions = prepared
            .into_iter()
            .map(|p| self.decide_and_record(actor::user(actor), p));
        Ok(futures_util::future::join_all(decisions).await)
    }

    /// The guardrail set in force.
    pub fn policy_status(&self) -> PolicyStatus {
        let loaded = self.policies.current();
        PolicyStatus {
            version: loaded.guardrails.version().to_owned(),
            loaded_at: loaded.loaded_at,
            dir: self.policies.dir().map(|d| d.display().to_string()),
            guardrails: loaded
                .guardrails
                .guardrails()
                .iter()
                .map(|g| GuardrailInfo {
                    id: g.id.clone(),
                    mode: match g.mode {
                        rein_policy::Mode::Enforce => "enforce",
                        rein_policy::Mode::Shadow => "shadow",
                    }
                    .to_owned(),
                    step_up: g.step_up,
                    reason: g.reason.clone(),
                    location: format!("{}:{}", g.file, g.line),
                })
                .collect(),
        }
    }

    /// Reloads the guardrails from their directory (an admin, or Rein itself on a file change
    /// when `actor` is `None`). The new set is recorded in the audit log and then put in
    /// force; an invalid set, or one that cannot be recorded, leaves the previous set in force.
    pub async fn reload_policies(&self, actor: Option<&Actor>) -> Result<PolicyStatus, Error> {
        if let Some(a) = actor {
            a.require_admin("reload policies")?;
        }
        let by = actor.map_or_else(actor::rein, actor::user);
        let previous = self.policies.current().guardrails.version().to_owned();
        let (turn, guardrails) = match self.policies.prepare().await {
            Ok(ready) => ready,
            Err(e) => {
                let mut event = Event::new(EventType::PolicySetLoaded, by, "failure");
                event.policy_version = Some(previous);
                event.reason = Some(truncate(&e.to_string(), 2048));
                if let Err(audit) = self.registry.audit().append(event).await {
                    tracing::error!(error = %audit, "could not record a failed policy reload");
                }
                return Err(Error::Policies(e));
            }
        };
        let mut event = Event::new(EventType::PolicySetLoaded, by, "success");
        event.policy_version = Some(guardrails.version().to_owned());
        event.subject = Some(guardrails.version().to_owned());
        event.details.insert("previous_version".into(), previous);
        event.details.insert(
            "guardrails".into(),
            guardrails.guardrails().len().to_string(),
        );
        self.registry
            .audit()
            .append(event)
            .await
            .map_err(|e| Error::AuditUnavailable(e.to_string()))?;
        self.policies.install(turn, guardrails, self.registry.now());
        Ok(self.policy_status())
    }

    async fn decide_and_record(
        &self,
        by: rein_audit::Actor,
        mut request: Request,
    ) -> Authorization {
        let started = Instant::now();
        request.now = self.registry.now();
        let decision_id = decision_id();
        let loaded = self.policies.current();
        let guardrails = &loaded.guardrails;
        let evidence = self.approval_evidence(&request).await;
        let (mut decision, lookup) = match self.facts.lookup(&request.agent, &request.system) {
            Ok(lookup) => (
                self.decide_counted(&request, &lookup, guardrails, evidence),
                Some(lookup),
            ),
            Err(e) => (
                error_decision(e.to_string(), guardrails.version(), None),
                None,
            ),
        };
        let approval = match &lookup {
            Some(lookup) => {
                self.settle_approval(&by, &decision_id, &request, lookup, &mut decision)
                    .await
            }
            None => None,
        };
        let mut event = decision_event(by, &decision_id, &decision, &request);
        if let Some(lookup) = &lookup {
            add_accountability(&mut event, &decision, lookup);
        }
        if let Some(a) = &approval {
            // The decision names the approval it opened or used; a used one's approvers are
            // the people who let this call through.
            event.details.insert("approval_id".into(), a.id.clone());
            event
                .details
                .insert("approval_status".into(), a.status.as_str().into());
            event.approvers.extend(a.approvers.iter().cloned());
        }
        event.latency_us = u64::try_from(started.elapsed().as_micros()).ok();
        let (decision, audit_seq) = match self.registry.audit().append(event).await {
            Ok(receipt) => (decision, Some(receipt.seq)),
            Err(e) => {
                tracing::error!(error = %e, decision_id, "a decision could not be recorded; denied");
                let digest = decision.argument_digest.clone();
                (
                    error_decision(
                        "the decision could not be recorded in the audit log".into(),
                        guardrails.version(),
                        Some(digest),
                    ),
                    None,
                )
            }
        };
        if decision.trip_breaker {
            self.trip_breaker(&request.agent, &decision).await;
        }
        Authorization {
            decision: decision.outcome,
            decision_id,
            determined_by: decision.determined_by,
            shadow: decision.shadow,
            policy_version: decision.policy_version,
            reason: decision.reason,
            rule: decision.rule,
            step_up: decision.step_up,
            argument_digest: decision.argument_digest,
            approval: approval.filter(|_| audit_seq.is_some()),
            audit_seq,
        }
    }

    /// Runs the engine with the agent's counters locked, and counts the call.
    fn decide_counted(
        &self,
        request: &Request,
        lookup: &Lookup,
        guardrails: &rein_policy::Guardrails,
        approval: ApprovalEvidence,
    ) -> Decision {
        let mutating = lookup
            .system
            .as_ref()
            .and_then(|s| s.class_of(&request.action).ok())
            .is_none_or(|c| c.is_mutating());
        let task = request.context.task_id.as_deref();
        let revoked = match self.facts.revoked_call(&request.agent, task) {
            Ok(revoked) => revoked,
            Err(e) => return error_decision(e.to_string(), guardrails.version(), None),
        };
        // Only known agents get counters, so unknown names cannot grow the table.
        let slot = lookup.agent.as_ref().map(|a| self.budgets.of(&a.id));
        let mut counters = slot.as_deref().map(budget::lock);
        let usage = counters
            .as_ref()
            .map(|c| c.usage(request.now, task, &request.system))
            .unwrap_or_default();
        let facts = Facts {
            agent: lookup.agent.as_deref(),
            system: lookup.system.as_deref(),
            grants: &lookup.grants,
            revoked: revoked.as_deref(),
            usage,
            approval,
        };
        let decision = decide(request, &facts, guardrails);
        if let Some(c) = counters.as_mut() {
            c.record(
                request.now,
                task,
                &request.system,
                decision.outcome == Outcome::Allow,
                mutating,
            );
        }
        decision
    }

    async fn trip_breaker(&self, agent: &AgentId, decision: &Decision) {
        let reason = format!("circuit breaker: {}", decision.reason);
        match self.registry.trip_breaker(agent, &reason).await {
            Ok(_) => tracing::warn!(%agent, %reason, "agent suspended by its circuit breaker"),
            Err(e) => {
                tracing::error!(%agent, error = %e, "the circuit breaker could not suspend the agent")
            }
        }
    }
}

/// Refuses an empty batch or one over [`MAX_BATCH`].
pub fn check_batch(len: usize) -> Result<(), Error> {
    if len == 0 || len > MAX_BATCH {
        return Err(Error::invalid(
            "requests",
            format!("must hold 1 to {MAX_BATCH} requests"),
        ));
    }
    Ok(())
}

/// A request checked and turned into the engine's form (its time is set when it is decided).
fn prepare(request: AuthorizeRequest) -> Result<Request, Error> {
    Ok(Request {
        context: request.context.validate()?,
        agent: request.agent,
        system: request.system,
        action: request.action,
        now: DateTime::<Utc>::UNIX_EPOCH,
    })
}

/// `dec_` and a UUIDv7 in 32 hex digits: unique, and ordered by time, so that the audit log's
/// subject index grows at its end instead of taking a random page on every decision.
fn decision_id() -> String {
    format!("dec_{}", uuid::Uuid::now_v7().simple())
}

fn error_decision(reason: String, version: &str, digest: Option<String>) -> Decision {
    Decision {
        outcome: Outcome::Deny,
        rule: Rule::Error,
        determined_by: vec!["rule:error".into()],
        reason,
        policy_version: version.to_owned(),
        shadow: Vec::new(),
        step_up: None,
        trip_breaker: false,
        argument_digest: digest.unwrap_or_default(),
    }
}

/// Bytes of a stated intent kept in an audit record.
const MAX_AUDITED_INTENT: usize = 512;

/// `s` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The audit record of a decision: never the arguments, only their digest.
fn decision_event(
    by: rein_audit::Actor,
    decision_id: &str,
    decision: &Decision,
    request: &Request,
) -> Event {
    let mut e = Event::new(EventType::Decision, by, decision.outcome.as_str());
    e.subject = Some(decision_id.to_owned());
    e.agent = Some(request.agent.to_string());
    e.system = Some(request.system.to_string());
    e.action = Some(request.action.to_string());
    e.task_id.clone_from(&request.context.task_id);
    e.decision = Some(decision.outcome.as_str().to_owned());
    e.determined_by.clone_from(&decision.determined_by);
    e.policy_version = Some(decision.policy_version.clone());
    if !decision.argument_digest.is_empty() {
        e.argument_digest = Some(decision.argument_digest.clone());
    }
    e.reason = Some(decision.reason.clone());
    e.details
        .insert("rule".into(), decision.rule.as_str().into());
    let c = &request.context;
    if let Some(intent) = &c.intent {
        e.details
            .insert("intent".into(), truncate(intent, MAX_AUDITED_INTENT));
    }
    if let Some(r) = c.risk {
        e.details.insert("risk".into(), r.to_string());
    }
    if let Some(conf) = c.confidence {
        e.details.insert("confidence".into(), conf.to_string());
    }
    if let Some(id) = &c.approval_id {
        e.details.insert("approval_id".into(), id.clone());
    }
    if let Some(s) = &decision.step_up {
        e.details
            .insert("step_up_approvers".into(), s.approvers_required.to_string());
    }
    if !decision.shadow.is_empty() {
        if let Ok(json) = serde_json::to_string(&decision.shadow) {
            e.details.insert("shadow".into(), json);
        }
    }
    if decision.trip_breaker {
        e.details.insert("circuit_breaker".into(), "tripped".into());
    }
    e
}

/// Who approved the access that decided, and who can revoke the agent.
fn add_accountability(e: &mut Event, decision: &Decision, lookup: &Lookup) {
    for g in lookup
        .grants
        .iter()
        .filter(|g| decision.determined_by.iter().any(|d| d == g.id.as_str()))
    {
        e.approvers
            .extend(g.approvals.iter().map(|a| a.by.to_string()));
    }
    if let Some(agent) = &lookup.agent {
        e.revokers = agent
            .roles
            .revokers
            .iter()
            .map(ToString::to_string)
            .collect();
    }
}
