//! The decision: SPEC.md "Decision semantics", in order, as one pure function.

use std::collections::BTreeSet;

use rein_core::agent::{Agent, AgentStatus};
use rein_core::grant::{Grant, GrantStatus};
use rein_core::system::{ActionClass, System};
use serde::{Deserialize, Serialize};

use crate::cedar::Call;
use crate::guardrails::{Evaluation, Guardrails, Mode};
use crate::request::{sha256_hex, Request};
use crate::PolicyError;

/// The facts the caller loaded for one request. The engine trusts them as given and reads
/// nothing else.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The agent named by the request, if it exists.
    pub agent: Option<&'a Agent>,
    /// The system named by the request, if it exists.
    pub system: Option<&'a System>,
    /// The agent's grants on the system, in any state (others are ignored).
    pub grants: &'a [Grant],
    /// Why the agent is revoked, if a revocation (of the agent, its team or its environment)
    /// covers it.
    pub revoked: Option<&'a str>,
    /// The agent's and the task's usage so far.
    pub usage: BudgetUsage,
    /// What the caller found out about the approval the request attaches, if any.
    pub approval: ApprovalEvidence,
}

/// Usage counted by the caller before this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetUsage {
    /// The agent's decisions in the last 60 seconds, this call excluded.
    pub calls_last_minute: u32,
    /// Mutating (`write`/`admin`) actions allowed so far in the request's task, this call
    /// excluded.
    pub task_mutations: u32,
    /// Distinct systems the task has touched, **this call's system included**.
    pub task_systems: u32,
}

/// The approval attached to a request, as the caller checked it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ApprovalEvidence {
    /// No approval attached, or the attached one is not valid for this request.
    #[default]
    None,
    /// The caller checked that the approval is approved, bound to this exact request (agent,
    /// system, action, argument digest), unexpired and not used up.
    ValidFor {
        /// The approval's id; must equal the request's `approval_id`.
        approval_id: String,
        /// The distinct people who approved it.
        approvers: Vec<String>,
    },
}

/// The three outcomes of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The call may proceed.
    Allow,
    /// The call is refused.
    Deny,
    /// The call needs a human approval first (SPEC: step-up).
    StepUp,
}

impl Outcome {
    /// `allow`, `deny` or `step_up`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::StepUp => "step_up",
        }
    }
}

/// Which step of the decision semantics decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Step 1: the agent is unknown, revoked, not active, or misses accountable roles.
    Agent,
    /// Step 2: no active grant covers the call now.
    Grant,
    /// Step 3: a budget would be exceeded.
    Budget,
    /// Step 4: a guardrail denied or asked for step-up (or its step-up was approved).
    Guardrail,
    /// Step 5: nothing refused the call.
    Allow,
    /// Something could not be evaluated; the call is denied (fail closed).
    Error,
}

impl Rule {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Grant => "grant",
            Self::Budget => "budget",
            Self::Guardrail => "guardrail",
            Self::Allow => "allow",
            Self::Error => "error",
        }
    }
}

/// What a step-up needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// The `@step_up` guardrails that matched.
    pub policies: Vec<String>,
    /// Distinct approvers needed: the largest `@step_up("N")` among them.
    pub approvers_required: u32,
}

/// What a `@shadow` guardrail would have done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum ShadowVerdict {
    /// It matched and would deny.
    Deny,
    /// It matched and would ask for step-up.
    StepUp {
        /// Approvers it would need.
        approvers_required: u32,
    },
    /// It raised an error (which would deny).
    Error {
        /// Cedar's message.
        message: String,
    },
}

/// One shadow guardrail's would-be effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowEffect {
    /// The guardrail's `@id`.
    pub policy: String,
    /// What it would have done.
    #[serde(flatten)]
    pub verdict: ShadowVerdict,
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allow, deny or step-up.
    pub outcome: Outcome,
    /// Which step decided.
    pub rule: Rule,
    /// What decided it: grant ids, guardrail ids, `approval:<id>`, or rule names such as
    /// `rule:agent-inactive`. Never empty.
    pub determined_by: Vec<String>,
    /// A human explanation.
    pub reason: String,
    /// The guardrail set's [`Guardrails::version`].
    pub policy_version: String,
    /// Would-be effects of matching `@shadow` guardrails (evaluated only when the call reaches
    /// the guardrail step); they never change the outcome.
    pub shadow: Vec<ShadowEffect>,
    /// Set when the outcome is [`Outcome::StepUp`].
    pub step_up: Option<StepUp>,
    /// Whether the agent's budgets ask to suspend it because this call breached one.
    pub trip_breaker: bool,
    /// SHA-256 hex of the canonical arguments ([`crate::canonical_json`]); empty when the
    /// arguments are invalid.
    pub argument_digest: String,
}

/// Decides one request: SPEC.md "Decision semantics", in order, the first failing step
/// deciding:
///
/// 0. the context is valid ([`crate::RequestContext::validate`]) and the facts match the
///    request, else **deny** (rule `error`);
/// 1. the agent exists, no revocation covers it, it is `active`, and its business owner,
///    approvers, revokers, reviewers and review cadence are set, else **deny**;
/// 2. the system exists and declares the action, and an active grant covers (agent, system,
///    action) now, inside its schedule ([`Grant::covers`]), else **deny**;
/// 3. budgets hold, counting this call: calls per minute; for a mutating action, mutations per
///    task; distinct systems per task; a per-task budget needs a `task_id`. Else **deny**, and
///    [`Decision::trip_breaker`] is the agent's `suspend_on_breach`;
/// 4. guardrails: a matching enforced `forbid` **denies**; otherwise matching `@step_up` ones
///    ask for **step_up**, unless the request attaches an approval the caller found valid
///    ([`ApprovalEvidence::ValidFor`]) with at least as many distinct approvers as the largest
///    `@step_up("N")` requires; `@shadow` guardrails are only reported;
/// 5. otherwise **allow**.
///
/// Any error (invalid context, inconsistent facts, a Cedar evaluation error in an enforced
/// guardrail) is a **deny** with rule [`Rule::Error`], never an allow.
pub fn decide(req: &Request, facts: &Facts<'_>, guardrails: &Guardrails) -> Decision {
    let mut d = Decision {
        outcome: Outcome::Deny,
        rule: Rule::Error,
        determined_by: Vec::new(),
        reason: String::new(),
        policy_version: guardrails.version().to_owned(),
        shadow: Vec::new(),
        step_up: None,
        trip_breaker: false,
        argument_digest: String::new(),
    };
    let arguments = match Arguments::of(req) {
        Ok(arguments) => arguments,
        Err(e) => return d.error("rule:invalid-context", &e),
    };
    d.argument_digest = arguments.digest.clone();

    // 1. to 3. The agent, the grant, the budgets.
    let agent = match check_agent(req, facts) {
        Ok(agent) => agent,
        Err(r) => return d.refused(r),
    };
    let (system, class, grant) = match check_grant(req, facts) {
        Ok(found) => found,
        Err(r) => return d.refused(r),
    };
    if let Err(r) = check_budgets(req, agent, class, &facts.usage) {
        return d.refused(r);
    }

    // 4. Guardrails.
    let call = arguments.call(req, agent, system, class);
    match guardrails.evaluate(&call, true) {
        Ok(eval) => {
            let v = verdict(
                req,
                &facts.approval,
                guardrails,
                &eval,
                &grant.id.to_string(),
            );
            d.outcome = v.outcome;
            d.rule = v.rule;
            d.determined_by = v.determined_by;
            d.reason = v.reason;
            d.shadow = v.shadow;
            d.step_up = v.step_up;
            d
        }
        Err(e) => d.error("rule:guardrail-error", &e),
    }
}

/// Steps 0 to 3 of [`decide`] only: the context, the agent, a grant covering the call now, and
/// the budgets; no guardrails. What a credential needs before it is issued for an action (the
/// call it is later used for is decided in full). The result is an **allow** naming the
/// covering grant, or the deny (or error) [`decide`] would have given at that step.
pub fn check_access(req: &Request, facts: &Facts<'_>, policy_version: &str) -> Decision {
    let mut d = Decision {
        outcome: Outcome::Deny,
        rule: Rule::Error,
        determined_by: Vec::new(),
        reason: String::new(),
        policy_version: policy_version.to_owned(),
        shadow: Vec::new(),
        step_up: None,
        trip_breaker: false,
        argument_digest: String::new(),
    };
    match Arguments::of(req) {
        Ok(arguments) => d.argument_digest = arguments.digest,
        Err(e) => return d.error("rule:invalid-context", &e),
    }
    let agent = match check_agent(req, facts) {
        Ok(agent) => agent,
        Err(r) => return d.refused(r),
    };
    let (_, class, grant) = match check_grant(req, facts) {
        Ok(found) => found,
        Err(r) => return d.refused(r),
    };
    if let Err(r) = check_budgets(req, agent, class, &facts.usage) {
        return d.refused(r);
    }
    d.outcome = Outcome::Allow;
    d.rule = Rule::Allow;
    d.determined_by = vec![grant.id.to_string()];
    d.reason = format!("grant `{}` covers the call", grant.id);
    d
}

/// A valid context's canonical arguments ([`crate::canonical_json`]) and their SHA-256 hex.
#[derive(Debug)]
pub(crate) struct Arguments {
    pub(crate) text: String,
    pub(crate) digest: String,
}

impl Arguments {
    /// Validates the request's context (step 0) and canonicalises its arguments.
    pub(crate) fn of(req: &Request) -> Result<Self, PolicyError> {
        let text = req.context.canonical_arguments()?;
        let digest = sha256_hex(text.as_bytes());
        Ok(Self { text, digest })
    }

    /// The call the guardrails evaluate.
    pub(crate) fn call<'a>(
        &'a self,
        req: &'a Request,
        agent: &'a Agent,
        system: &'a System,
        class: ActionClass,
    ) -> Call<'a> {
        Call {
            req,
            agent,
            system,
            class,
            arguments_text: &self.text,
            digest: &self.digest,
        }
    }
}

/// Why one of steps 1 to 3 refused a call: always a **deny**.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// [`Rule::Agent`], [`Rule::Grant`], [`Rule::Budget`], or [`Rule::Error`] for
    /// inconsistent facts.
    pub(crate) rule: Rule,
    /// The `rule:…` name that decided.
    pub(crate) by: &'static str,
    /// The human explanation.
    pub(crate) reason: String,
    /// Whether a breached budget asks to suspend the agent.
    pub(crate) trip_breaker: bool,
}

impl Refusal {
    fn new(rule: Rule, by: &'static str, reason: String) -> Self {
        Self {
            rule,
            by,
            reason,
            trip_breaker: false,
        }
    }

    /// A failure to evaluate: rule `error`, reason `error: <e>`.
    pub(crate) fn error(by: &'static str, e: &PolicyError) -> Self {
        Self::new(Rule::Error, by, format!("error: {e}"))
    }
}

/// Step 1: the agent exists, is the one asked about, is not revoked, is active and has every
/// accountable role.
pub(crate) fn check_agent<'f>(req: &Request, facts: &Facts<'f>) -> Result<&'f Agent, Refusal> {
    let Some(agent) = facts.agent else {
        return Err(Refusal::new(
            Rule::Agent,
            "rule:agent-unknown",
            format!("agent `{}` is not registered", req.agent),
        ));
    };
    if agent.id != req.agent {
        return Err(Refusal::error(
            "rule:facts-mismatch",
            &PolicyError::facts(format!("the agent loaded is `{}`", agent.id)),
        ));
    }
    if let Some(why) = facts.revoked {
        return Err(Refusal::new(
            Rule::Agent,
            "rule:agent-revoked",
            format!("agent `{}` is revoked: {why}", req.agent),
        ));
    }
    if agent.status != AgentStatus::Active {
        return Err(Refusal::new(
            Rule::Agent,
            "rule:agent-inactive",
            format!("agent `{}` is {}", req.agent, agent.status.as_str()),
        ));
    }
    let missing = agent.roles.missing();
    if !missing.is_empty() {
        return Err(Refusal::new(
            Rule::Agent,
            "rule:agent-missing-roles",
            format!(
                "agent `{}` is over-scoped by default: missing {}",
                req.agent,
                missing.join(", ")
            ),
        ));
    }
    Ok(agent)
}

/// Step 2: the system exists, is the one asked about and declares the action, and an active
/// grant covers the call now (the one with the smallest id when several do). Returns the
/// system, the action's effective class and the covering grant.
pub(crate) fn check_grant<'f>(
    req: &Request,
    facts: &Facts<'f>,
) -> Result<(&'f System, ActionClass, &'f Grant), Refusal> {
    let Some(system) = facts.system else {
        return Err(Refusal::new(
            Rule::Grant,
            "rule:system-unknown",
            format!("system `{}` is not registered", req.system),
        ));
    };
    if system.name != req.system {
        return Err(Refusal::error(
            "rule:facts-mismatch",
            &PolicyError::facts(format!("the system loaded is `{}`", system.name)),
        ));
    }
    let Some(spec) = system.actions.get(&req.action) else {
        return Err(Refusal::new(
            Rule::Grant,
            "rule:action-undeclared",
            format!(
                "system `{}` does not declare action `{}`",
                req.system, req.action
            ),
        ));
    };
    let mine = grants_for(req, facts.grants);
    let Some(grant) = mine
        .iter()
        .copied()
        .filter(|g| g.covers(&req.action, req.now))
        .min_by(|a, b| a.id.cmp(&b.id))
    else {
        return Err(Refusal::new(
            Rule::Grant,
            "rule:no-grant",
            no_grant_reason(req, &mine),
        ));
    };
    Ok((system, spec.effective_class(), grant))
}

/// Step 3: every budget holds, counting this call.
pub(crate) fn check_budgets(
    req: &Request,
    agent: &Agent,
    class: ActionClass,
    usage: &BudgetUsage,
) -> Result<(), Refusal> {
    match budget_breach(req, agent, class, usage) {
        None => Ok(()),
        Some((by, reason)) => Err(Refusal {
            trip_breaker: by != "rule:budget-task-required" && agent.budgets.suspend_on_breach,
            ..Refusal::new(Rule::Budget, by, reason)
        }),
    }
}

/// The grants of `grants` that are the request's agent's on the request's system.
pub(crate) fn grants_for<'g>(req: &Request, grants: &'g [Grant]) -> Vec<&'g Grant> {
    grants
        .iter()
        .filter(|g| g.agent == req.agent && g.system == req.system)
        .collect()
}

/// What step 4 (or 5, when nothing matched) concludes from the guardrails' evaluation.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) outcome: Outcome,
    pub(crate) rule: Rule,
    pub(crate) determined_by: Vec<String>,
    pub(crate) reason: String,
    /// Sorted by policy id.
    pub(crate) shadow: Vec<ShadowEffect>,
    pub(crate) step_up: Option<StepUp>,
    /// What the attached approval was found to be, when an enforced `@step_up` guardrail
    /// matched (and no error or `forbid` decided first).
    pub(crate) approval: Option<ApprovalCheck>,
}

/// Steps 4 and 5 from the guardrails' evaluation of a call that `grant` (an id) covers: an
/// enforced guardrail's error denies (rule `error`), then a matching enforced `forbid`
/// denies, then matching `@step_up` ones ask for step-up unless the attached approval covers
/// them; otherwise the grant allows. `@shadow` guardrails are only reported.
pub(crate) fn verdict(
    req: &Request,
    approval: &ApprovalEvidence,
    guardrails: &Guardrails,
    eval: &Evaluation,
    grant: &str,
) -> Verdict {
    let mut v = Verdict {
        outcome: Outcome::Allow,
        rule: Rule::Allow,
        determined_by: vec![grant.to_owned()],
        reason: format!("allowed by grant `{grant}`"),
        shadow: Vec::new(),
        step_up: None,
        approval: None,
    };
    let mut errors = Vec::new();
    for (i, message) in &eval.errors {
        let Some(g) = guardrails.guardrail(*i) else {
            continue;
        };
        match g.mode {
            Mode::Shadow => v.shadow.push(ShadowEffect {
                policy: g.id.clone(),
                verdict: ShadowVerdict::Error {
                    message: message.clone(),
                },
            }),
            Mode::Enforce => errors.push((g.id.clone(), message.clone())),
        }
    }
    let mut forbids = Vec::new();
    let mut step_ups = Vec::new();
    for i in &eval.satisfied {
        let Some(g) = guardrails.guardrail(*i) else {
            continue;
        };
        match (g.mode, g.step_up) {
            (Mode::Shadow, None) => v.shadow.push(ShadowEffect {
                policy: g.id.clone(),
                verdict: ShadowVerdict::Deny,
            }),
            (Mode::Shadow, Some(n)) => v.shadow.push(ShadowEffect {
                policy: g.id.clone(),
                verdict: ShadowVerdict::StepUp {
                    approvers_required: n,
                },
            }),
            (Mode::Enforce, None) => forbids.push(g),
            (Mode::Enforce, Some(n)) => step_ups.push((g, n)),
        }
    }
    v.shadow.sort_by(|a, b| a.policy.cmp(&b.policy));

    if !errors.is_empty() {
        errors.sort();
        v.outcome = Outcome::Deny;
        v.rule = Rule::Error;
        v.reason = format!(
            "error: {}",
            errors
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        v.determined_by = errors.into_iter().map(|(id, _)| id).collect();
        return v;
    }
    if !forbids.is_empty() {
        forbids.sort_by(|a, b| a.id.cmp(&b.id));
        v.outcome = Outcome::Deny;
        v.rule = Rule::Guardrail;
        v.reason = forbids
            .iter()
            .map(|g| {
                g.reason
                    .clone()
                    .unwrap_or_else(|| format!("forbidden by guardrail `{}`", g.id))
            })
            .collect::<Vec<_>>()
            .join("; ");
        v.determined_by = forbids.into_iter().map(|g| g.id.clone()).collect();
        return v;
    }
    if !step_ups.is_empty() {
        step_ups.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let required = step_ups.iter().map(|(_, n)| *n).max().unwrap_or(1);
        let policies: Vec<String> = step_ups.iter().map(|(g, _)| g.id.clone()).collect();
        let why = step_ups
            .iter()
            .map(|(g, _)| {
                g.reason
                    .clone()
                    .unwrap_or_else(|| format!("guardrail `{}` asks for approval", g.id))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let check = approval_covers(req, approval, required);
        v.rule = Rule::Guardrail;
        if let Some(approval_id) = &check.approved {
            v.outcome = Outcome::Allow;
            v.determined_by.extend(policies);
            v.determined_by.push(format!("approval:{approval_id}"));
            v.reason = format!("allowed by grant `{grant}` with approval `{approval_id}` ({why})");
        } else {
            v.outcome = Outcome::StepUp;
            v.reason = format!("{why}; {}", check.note);
            v.determined_by = policies.clone();
            v.step_up = Some(StepUp {
                policies,
                approvers_required: required,
            });
        }
        v.approval = Some(check);
    }
    v
}

impl Decision {
    fn refused(mut self, r: Refusal) -> Self {
        self.outcome = Outcome::Deny;
        self.rule = r.rule;
        self.determined_by = vec![r.by.to_owned()];
        self.reason = r.reason;
        self.trip_breaker = r.trip_breaker;
        self
    }

    fn error(self, by: &'static str, e: &PolicyError) -> Self {
        self.refused(Refusal::error(by, e))
    }
}

/// What the attached approval was found to be for a step-up.
#[derive(Debug)]
pub(crate) struct ApprovalCheck {
    /// The approval's id when it satisfies the step-up.
    pub(crate) approved: Option<String>,
    /// What was found, in words.
    pub(crate) note: String,
}

/// Whether the attached approval satisfies a step-up needing `required` approvers.
pub(crate) fn approval_covers(
    req: &Request,
    evidence: &ApprovalEvidence,
    required: u32,
) -> ApprovalCheck {
    let refused = |note: String| ApprovalCheck {
        approved: None,
        note,
    };
    let attached = req.context.approval_id.as_deref();
    match (attached, evidence) {
        (None, _) => refused(format!("needs approval by {required} approver(s)")),
        (Some(id), ApprovalEvidence::None) => refused(format!(
            "attached approval `{id}` is not valid for this exact request; needs approval by {required} approver(s)"
        )),
        (Some(id), ApprovalEvidence::ValidFor { approval_id, approvers }) => {
            if approval_id != id {
                return refused(format!(
                    "attached approval `{id}` is not the one checked (`{approval_id}`); needs approval by {required} approver(s)"
                ));
            }
            let distinct: BTreeSet<&str> = approvers.iter().map(String::as_str).collect();
            let have = u32::try_from(distinct.len()).unwrap_or(u32::MAX);
            ApprovalCheck {
                approved: (have >= required).then(|| approval_id.clone()),
                note: format!("approval `{id}` has {have} distinct approver(s), needs {required}"),
            }
        }
    }
}

/// Why no grant covers the call, naming each of the agent's grants on the system.
pub(crate) fn no_grant_reason(req: &Request, grants: &[&Grant]) -> String {
    let head = format!(
        "no active grant covers `{}` on `{}` for agent `{}` now",
        req.action, req.system, req.agent
    );
    if grants.is_empty() {
        return format!("{head}: the agent has no grant on this system");
    }
    let why: Vec<String> = grants
        .iter()
        .map(|g| format!("grant `{}` {}", g.id, why_not(g, req)))
        .collect();
    format!("{head}: {}", why.join("; "))
}

/// Why a grant does not cover the call: `is expired` (or another status), `does not include
/// this action`, or `is outside its schedule`.
pub(crate) fn why_not(g: &Grant, req: &Request) -> String {
    let status = g.status_at(req.now);
    if status != GrantStatus::Active {
        format!("is {}", status.as_str())
    } else if !g.actions.contains(&req.action) {
        "does not include this action".to_owned()
    } else {
        "is outside its schedule".to_owned()
    }
}

/// The first budget this call breaches, as (`rule:…`, reason).
fn budget_breach(
    req: &Request,
    agent: &Agent,
    class: ActionClass,
    usage: &BudgetUsage,
) -> Option<(&'static str, String)> {
    let b = &agent.budgets;
    if let Some(limit) = b.calls_per_minute {
        if usage.calls_last_minute.saturating_add(1) > limit {
            return Some((
                "rule:budget-calls-per-minute",
                format!(
                    "budget exceeded: {} calls in the last minute, limit {limit} per minute",
                    usage.calls_last_minute
                ),
            ));
        }
    }
    let per_task =
        (b.mutations_per_task.is_some() && class.is_mutating()) || b.systems_per_task.is_some();
    if per_task && req.context.task_id.is_none() {
        return Some((
            "rule:budget-task-required",
            "the agent has per-task budgets, so every call must name its `task_id`".to_owned(),
        ));
    }
    if let (Some(limit), true) = (b.mutations_per_task, class.is_mutating()) {
        if usage.task_mutations.saturating_add(1) > limit {
            return Some((
                "rule:budget-mutations-per-task",
                format!(
                    "budget exceeded: task already made {} mutating call(s), limit {limit} per task",
                    usage.task_mutations
                ),
            ));
        }
    }
    if let Some(limit) = b.systems_per_task {
        if usage.task_systems > limit {
            return Some((
                "rule:budget-systems-per-task",
                format!(
                    "budget exceeded: task touches {} distinct systems, limit {limit} per task",
                    usage.task_systems
                ),
            ));
        }
    }
    None
}
