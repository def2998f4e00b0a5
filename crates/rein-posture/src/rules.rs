//! The rules and [`evaluate`], which runs them all over an [`Inventory`] in linear time.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

// The indexes are keyed by long SPIFFE IDs and names: FxHash is several times faster there than
// the default SipHash. It is not DoS-resistant, which is acceptable: the keys are registry
// records written by administrators, the maps live for one evaluation, and a collision only
// costs time.
use rustc_hash::FxHashMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rein_core::agent::{Agent, AgentStatus};
use rein_core::grant::{ApprovalRole, Grant, GrantStatus};
use rein_core::id::{ActionName, AgentId, SystemName};
use rein_core::system::{ActionClass, System};
use serde_json::json;

use crate::catalog::Catalog;
use crate::finding::{
    Entity, EntityKind, Finding, FrameworkCount, Report, Severity, SeverityCount,
};
use crate::inventory::{GuardrailMode, Inventory, PostureConfig};

/// What a rule checks and which controls its findings map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo {
    /// The stable rule ID, used as `Finding::rule` and as the SARIF `ruleId`.
    pub id: &'static str,
    /// A short name.
    pub name: &'static str,
    /// What the rule checks.
    pub description: &'static str,
    /// The highest severity its findings get.
    pub severity: Severity,
    /// The control IDs (in the catalog) its findings map to.
    pub controls: &'static [&'static str],
}

/// An agent lacks an accountable role (business owner, approvers, revokers, reviewers, review
/// cadence): it is over-scoped by default.
pub const MISSING_ACCOUNTABLE_ROLE: RuleInfo = RuleInfo {
    id: "missing-accountable-role",
    name: "Agent without every accountable role",
    description: "An agent without a business owner, approvers, revokers, reviewers or a review cadence has nobody accountable for part of its life cycle; it is over-scoped by default and denied decisions.",
    severity: Severity::High,
    controls: &["NHI1:2025", "ASI03", "GOVERN 2.1", "GV.RR-02", "L6"],
};

/// An agent's access review is past its cadence and the grace period.
pub const REVIEW_OVERDUE: RuleInfo = RuleInfo {
    id: "review-overdue",
    name: "Access review overdue",
    description:
        "The agent's access was not re-certified within its review cadence plus the grace period.",
    severity: Severity::High,
    controls: &[
        "NHI5:2025",
        "ASI03",
        "GOVERN 1.5",
        "PR.AA-05",
        "GV.OV-03",
        "L6",
    ],
};

/// One identity was used from several environments or teams.
pub const SHARED_IDENTITY: RuleInfo = RuleInfo {
    id: "shared-identity",
    name: "Identity shared across environments or teams",
    description: "Calls under one agent identity came from several environments or teams: a shared service agent whose compromise spreads and whose actions cannot be attributed to one use.",
    severity: Severity::High,
    controls: &["NHI9:2025", "NHI8:2025", "ASI03", "MEASURE 2.8", "PR.AA-01", "Lateral Movement (Cross-Layer)"],
};

/// An active grant was not used within the window.
pub const GRANT_UNUSED: RuleInfo = RuleInfo {
    id: "grant-unused",
    name: "Grant unused",
    description: "An active grant none of whose actions was used within the observation window: standing privilege nobody needs.",
    severity: Severity::High,
    controls: &["NHI5:2025", "ASI03", "T3", "GOVERN 1.4", "PR.AA-05", "Privilege Escalation (Cross-Layer)"],
};

/// Some actions of a used grant were not used within the window.
pub const ACTION_NEVER_USED: RuleInfo = RuleInfo {
    id: "action-never-used",
    name: "Granted actions unused",
    description: "Some actions of an active grant were not used within the observation window while others were; the finding names the narrowed action set that the evidence supports (least privilege from evidence).",
    severity: Severity::Medium,
    controls: &["NHI5:2025", "ASI03", "T3", "GOVERN 1.4", "PR.AA-05", "Privilege Escalation (Cross-Layer)"],
};

/// A production write/admin grant is active without the business owner's approval.
pub const PROD_MUTATION_WITHOUT_BUSINESS_OWNER: RuleInfo = RuleInfo {
    id: "prod-mutation-without-business-owner",
    name: "Production mutation without business-owner approval",
    description: "An active grant with a write or admin action on a production system has no approval by the agent's business owner on record.",
    severity: Severity::Critical,
    controls: &["NHI5:2025", "ASI03", "MAP 3.5", "PR.AA-05", "Privilege Escalation (Cross-Layer)"],
};

/// A grant runs too long or lets tokens live longer than policy.
pub const GRANT_WITHOUT_EXPIRY_OR_TTL_ABOVE_POLICY: RuleInfo = RuleInfo {
    id: "grant-without-expiry-or-ttl-above-policy",
    name: "Long-lived grant or token lifetime above policy",
    description: "An active grant expires further ahead than policy allows, or has no max_token_ttl_secs or one above policy.",
    severity: Severity::Medium,
    controls: &["NHI7:2025", "ASI03", "GOVERN 1.4", "PR.AA-01", "Agent Identity Attack (L7)"],
};

/// An active agent showed no activity within the window.
pub const AGENT_INACTIVE: RuleInfo = RuleInfo {
    id: "agent-inactive",
    name: "Inactive agent (offboarding candidate)",
    description: "An active agent with no recorded activity within the window: an offboarding candidate whose credentials and grants still work.",
    severity: Severity::Medium,
    controls: &["NHI1:2025", "ASI10", "GOVERN 1.7", "ID.AM-08", "Compromised Agents (L7)"],
};

/// A system has no approvers.
pub const SYSTEM_WITHOUT_APPROVERS: RuleInfo = RuleInfo {
    id: "system-without-approvers",
    name: "System without approvers",
    description: "A system with no approvers: no grant can be approved on it and nobody can decide its step-up requests.",
    severity: Severity::High,
    controls: &["ASI03", "GOVERN 2.1", "MAP 3.5", "GV.RR-02", "PR.AA-05", "L6"],
};

/// A guardrail stayed in shadow mode too long.
pub const SHADOW_TOO_LONG: RuleInfo = RuleInfo {
    id: "shadow-too-long",
    name: "Guardrail in shadow mode too long",
    description: "A guardrail has been loaded in shadow mode for longer than policy allows: it records what it would block but protects nothing.",
    severity: Severity::Low,
    controls: &["ASI02", "GOVERN 1.4", "GV.PO-01", "ID.RA-07", "L6"],
};

/// A guardrail never matched.
pub const GUARDRAIL_NEVER_MATCHED: RuleInfo = RuleInfo {
    id: "guardrail-never-matched",
    name: "Guardrail never matched",
    description: "A guardrail loaded for longer than the window never matched a decision: its conditions may not describe the calls it is meant to stop.",
    severity: Severity::Low,
    controls: &["ASI02", "MEASURE 2.7", "GV.PO-02", "L6"],
};

/// Every rule, in evaluation order.
pub const RULES: &[RuleInfo] = &[
    MISSING_ACCOUNTABLE_ROLE,
    REVIEW_OVERDUE,
    SHARED_IDENTITY,
    GRANT_UNUSED,
    ACTION_NEVER_USED,
    PROD_MUTATION_WITHOUT_BUSINESS_OWNER,
    GRANT_WITHOUT_EXPIRY_OR_TTL_ABOVE_POLICY,
    AGENT_INACTIVE,
    SYSTEM_WITHOUT_APPROVERS,
    SHADOW_TOO_LONG,
    GUARDRAIL_NEVER_MATCHED,
];

/// The rule with this ID.
pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}

fn days(n: u32) -> TimeDelta {
    TimeDelta::seconds(i64::from(n) * 86_400)
}

fn minus_days(t: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    t.checked_sub_signed(days(n))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn plus_days(t: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    t.checked_add_signed(days(n))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Appends the items to `out`, separated by `, ` (no intermediate strings).
fn push_list<T: fmt::Display>(out: &mut String, items: impl IntoIterator<Item = T>) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{item}");
    }
}

/// The items separated by `, `.
fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    push_list(&mut out, items);
    out
}

/// Appends `action (last used <time>)` or `action (never used)` for each unused action.
fn push_unused(out: &mut String, unused: &[(&ActionName, Option<DateTime<Utc>>)]) {
    for (i, (action, last)) in unused.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = match last {
            Some(t) => write!(out, "{action} (last used {})", ts(*t)),
            None => write!(out, "{action} (never used)"),
        };
    }
}

fn new_finding(
    rule: &RuleInfo,
    severity: Severity,
    entity: Entity,
    title: String,
    evidence: String,
    details: serde_json::Value,
    fix: String,
) -> Finding {
    Finding {
        rule: Cow::Borrowed(rule.id),
        severity,
        entity,
        title,
        evidence,
        details,
        fix,
        controls: rule.controls.iter().map(|c| Cow::Borrowed(*c)).collect(),
        location: None,
    }
}

fn agent_entity(id: &AgentId) -> Entity {
    Entity {
        kind: EntityKind::Agent,
        id: id.to_string(),
    }
}

fn grant_entity(g: &Grant) -> Entity {
    Entity {
        kind: EntityKind::Grant,
        id: g.id.to_string(),
    }
}

/// The last use of each action of one (agent, system).
type LastUses<'a> = Vec<(&'a ActionName, DateTime<Utc>)>;

/// Indexes built once per evaluation so every rule is a constant-time lookup.
struct Index<'a> {
    systems: FxHashMap<&'a SystemName, &'a System>,
    agents: FxHashMap<&'a AgentId, &'a Agent>,
    /// Last use per (agent, system), then per action.
    used: FxHashMap<(&'a AgentId, &'a SystemName), LastUses<'a>>,
    /// Start of the usage window (`now - unused_grant_days`), and as text.
    window_start: DateTime<Utc>,
    window_start_text: String,
    /// The latest expiry policy allows (`now + max_grant_days`).
    max_expiry: DateTime<Utc>,
}

impl<'a> Index<'a> {
    fn new(inv: &'a Inventory, config: &PostureConfig) -> Self {
        let systems = inv.systems.iter().map(|s| (&s.name, s)).collect();
        let agents = inv.agents.iter().map(|a| (&a.id, a)).collect();
        let mut used: FxHashMap<_, LastUses<'a>> =
            FxHashMap::with_capacity_and_hasher(inv.usage.last_used.len(), Default::default());
        for ((agent, system, action), at) in &inv.usage.last_used {
            used.entry((agent, system)).or_default().push((action, *at));
        }
        let window_start = minus_days(inv.now, config.unused_grant_days);
        Self {
            systems,
            agents,
            used,
            window_start,
            window_start_text: ts(window_start),
            max_expiry: plus_days(inv.now, config.max_grant_days),
        }
    }

    fn last_uses(&self, g: &'a Grant) -> &[(&'a ActionName, DateTime<Utc>)] {
        self.used
            .get(&(&g.agent, &g.system))
            .map_or(&[], Vec::as_slice)
    }
}

/// Buffers reused from one grant to the next.
#[derive(Default)]
struct Scratch<'a> {
    used: Vec<&'a ActionName>,
    unused: Vec<(&'a ActionName, Option<DateTime<Utc>>)>,
}

/// Evaluates every rule over the inventory and returns the findings, sorted highest severity
/// first, with counts by severity and by framework (frameworks looked up in `catalog`).
///
/// Linear in the number of agents, systems, grants (times their actions), usage entries and
/// guardrails, plus sorting the findings.
pub fn evaluate(inv: &Inventory, config: &PostureConfig, catalog: &Catalog) -> Report {
    let index = Index::new(inv, config);
    // About one finding per grant and per agent at most in practice; the vector grows if not.
    let mut findings = Vec::with_capacity(
        inv.agents.len() + inv.systems.len() + inv.grants.len() + inv.guardrails.len(),
    );
    for agent in &inv.agents {
        check_agent(inv, config, agent, &mut findings);
    }
    for system in &inv.systems {
        check_system(inv, system, &mut findings);
    }
    let mut scratch = Scratch::default();
    for grant in &inv.grants {
        check_grant(inv, config, &index, &mut scratch, grant, &mut findings);
    }
    check_guardrails(inv, config, &mut findings);
    sort_findings(&mut findings);
    summarize(inv.now, findings, catalog)
}

/// Sorts highest severity first, then by entity and rule, keeping the evaluation order of equal
/// findings: sorts small cached keys (ending with the position, so an unstable sort gives the
/// stable order) and then moves each finding once.
fn sort_findings(findings: &mut [Finding]) {
    let mut order: Vec<usize> = {
        let mut keys: Vec<(Reverse<Severity>, EntityKind, &str, &str, usize)> = findings
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    Reverse(f.severity),
                    f.entity.kind,
                    f.entity.id.as_str(),
                    &*f.rule,
                    i,
                )
            })
            .collect();
        keys.sort_unstable();
        keys.into_iter().map(|k| k.4).collect()
    };
    // Apply the permutation in place: position `i` takes the finding at `order[i]`.
    for start in 0..order.len() {
        let mut at = start;
        loop {
            let from = order[at];
            order[at] = at;
            if from == start || from == at {
                break;
            }
            findings.swap(at, from);
            at = from;
        }
    }
}

impl Report {
    /// This report without the findings of `rules`, its counts recomputed (for example, rules
    /// that need evidence of use an offline check cannot have).
    pub fn without_rules(self, rules: &[&str], catalog: &Catalog) -> Report {
        let mut findings = self.findings;
        findings.retain(|f| !rules.contains(&&*f.rule));
        summarize(self.generated_at, findings, catalog)
    }
}

/// Builds a report from findings already sorted, counting by severity and framework.
fn summarize(generated_at: DateTime<Utc>, findings: Vec<Finding>, catalog: &Catalog) -> Report {
    let mut severities = [0usize; Severity::ALL.len()];
    // Findings per rule (a finding of a rule carries that rule's controls), and the rest.
    let mut per_rule = [0usize; RULES.len()];
    let mut frameworks: HashMap<&str, usize> = HashMap::new();
    let mut seen: Vec<&str> = Vec::new();
    for f in &findings {
        if let Some(i) = Severity::ALL.iter().position(|&s| s == f.severity) {
            severities[i] += 1;
        }
        match RULES.iter().position(|r| r.id == f.rule) {
            Some(i) if RULES[i].controls.iter().eq(f.controls.iter()) => per_rule[i] += 1,
            _ => count_frameworks(catalog, &f.controls, &mut seen, &mut frameworks, 1),
        }
    }
    for (rule, &count) in RULES.iter().zip(&per_rule) {
        if count > 0 {
            count_frameworks(catalog, rule.controls, &mut seen, &mut frameworks, count);
        }
    }
    let by_severity = Severity::ALL
        .iter()
        .zip(severities)
        .map(|(&severity, count)| SeverityCount { severity, count })
        .collect();
    let mut by_framework: Vec<FrameworkCount> = frameworks
        .into_iter()
        .map(|(framework, count)| FrameworkCount {
            framework: framework.to_owned(),
            count,
        })
        .collect();
    by_framework.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.framework.cmp(&b.framework))
    });
    Report {
        generated_at,
        findings,
        by_severity,
        by_framework,
    }
}

/// Adds `count` findings to each distinct framework of `controls`.
fn count_frameworks<'c, S: AsRef<str>>(
    catalog: &'c Catalog,
    controls: &[S],
    seen: &mut Vec<&'c str>,
    frameworks: &mut HashMap<&'c str, usize>,
    count: usize,
) {
    seen.clear();
    for c in controls {
        if let Some(fw) = catalog.framework_of(c.as_ref()) {
            if !seen.contains(&fw) {
                seen.push(fw);
                *frameworks.entry(fw).or_default() += count;
            }
        }
    }
}

fn check_agent(inv: &Inventory, config: &PostureConfig, agent: &Agent, out: &mut Vec<Finding>) {
    if agent.status == AgentStatus::Retired {
        return;
    }
    let now = inv.now;
    let env = agent.environment();
    let protected =
        inv.protected_environments.contains(env) || inv.production_environments.contains(env);
    let id = agent.id.as_str();

    let missing = agent.roles.missing();
    if !missing.is_empty() {
        let severity = if protected {
            Severity::High
        } else {
            Severity::Medium
        };
        let missing_text = list(&missing);
        out.push(new_finding(
            &MISSING_ACCOUNTABLE_ROLE,
            severity,
            agent_entity(&agent.id),
            format!("missing {missing_text}"),
            format!(
                "agent `{id}` ({} agent in `{env}`, use case: {}) is missing {missing_text}; it is over-scoped by default",
                agent.status.as_str(),
                agent.use_case,
            ),
            json!({
                "missing": missing,
                "environment": env.as_str(),
                "protected_environment": protected,
                "use_case": agent.use_case,
                "description": agent.description,
            }),
            format!(
                "Set {missing_text} on the agent (its manifest or the agents API); in a protected environment it cannot be active until every role is set.",
            ),
        ));
    }

    if let Some(schedule) = rein_core::review::ReviewSchedule::of(agent) {
        let (cadence, due) = (schedule.cadence_days, schedule.due);
        if schedule.is_overdue(config.review_grace_days, now) {
            let overdue_days = (now - due).num_days();
            let since = match agent.last_review {
                Some(t) => format!("last reviewed {}", ts(t)),
                None => format!(
                    "never reviewed since it was created {}",
                    ts(agent.created_at)
                ),
            };
            let reviewers = list(&agent.roles.reviewers);
            out.push(new_finding(
                &REVIEW_OVERDUE,
                if protected {
                    Severity::High
                } else {
                    Severity::Medium
                },
                agent_entity(&agent.id),
                format!("access review {overdue_days} days overdue"),
                format!(
                    "agent `{id}` (use case: {}) was {since}; its cadence is {cadence} days, so the review was due {} ({} days grace)",
                    agent.use_case,
                    ts(due),
                    config.review_grace_days
                ),
                json!({
                    "last_review": agent.last_review,
                    "review_cadence_days": cadence,
                    "due": due,
                    "overdue_days": overdue_days,
                    "reviewers": agent.roles.reviewers,
                    "use_case": agent.use_case,
                    "description": agent.description,
                }),
                if reviewers.is_empty() {
                    "Name reviewers for the agent, have them re-certify its grants and record the review; suspend the agent until then.".to_owned()
                } else {
                    format!("Have a reviewer ({reviewers}) re-certify the agent's grants and record the review; suspend the agent if nobody can.")
                },
            ));
        }
    }

    if let Some(contexts) = inv.usage.used_from.get(&agent.id) {
        if contexts.len() > 1 {
            out.push(new_finding(
                &SHARED_IDENTITY,
                Severity::High,
                agent_entity(&agent.id),
                format!("identity used from {} contexts", contexts.len()),
                format!(
                    "calls under `{id}` (use case: {}) came from {}",
                    agent.use_case,
                    list(contexts)
                ),
                json!({
                    "used_from": contexts,
                    "use_case": agent.use_case,
                    "description": agent.description,
                }),
                "Split the identity: register one agent per use case, team and environment, each with its own key, and move every caller to its own identity.".to_owned(),
            ));
        }
    }

    if agent.status == AgentStatus::Active {
        let last = inv.usage.last_activity.get(&agent.id).copied();
        let since = last.unwrap_or(agent.created_at);
        if plus_days(since, config.inactive_agent_days) < now {
            let idle = (now - since).num_days();
            let what = match last {
                Some(t) => format!("its last activity was {}", ts(t)),
                None => format!(
                    "it has no recorded activity since it was created {}",
                    ts(agent.created_at)
                ),
            };
            out.push(new_finding(
                &AGENT_INACTIVE,
                Severity::Medium,
                agent_entity(&agent.id),
                format!("inactive for {idle} days: offboarding candidate"),
                format!(
                    "agent `{id}` (use case: {}) is active but {what} ({} days allowed)",
                    agent.use_case, config.inactive_agent_days
                ),
                json!({
                    "last_activity": last,
                    "idle_days": idle,
                    "use_case": agent.use_case,
                    "description": agent.description,
                }),
                "Ask the owner team whether the agent is still needed; retire it (revoking its grants and keys) or suspend it until someone claims it.".to_owned(),
            ));
        }
    }
}

fn check_system(inv: &Inventory, system: &System, out: &mut Vec<Finding>) {
    if !system.approvers.is_empty() {
        return;
    }
    let production = inv.production_environments.contains(&system.environment);
    out.push(new_finding(
        &SYSTEM_WITHOUT_APPROVERS,
        if production {
            Severity::High
        } else {
            Severity::Medium
        },
        Entity {
            kind: EntityKind::System,
            id: system.name.to_string(),
        },
        "no approvers".to_owned(),
        format!(
            "system `{}` in `{}` (owner team `{}`) names no approvers",
            system.name, system.environment, system.owner_team
        ),
        json!({
            "environment": system.environment.as_str(),
            "owner_team": system.owner_team.as_str(),
            "production": production,
        }),
        "Name the system's approvers (users or teams); until then no grant can be requested on it and step-up requests have nobody to decide them.".to_owned(),
    ));
}

fn check_grant<'a>(
    inv: &Inventory,
    config: &PostureConfig,
    index: &Index<'a>,
    scratch: &mut Scratch<'a>,
    grant: &'a Grant,
    out: &mut Vec<Finding>,
) {
    let now = inv.now;
    if grant.status_at(now) != GrantStatus::Active {
        return;
    }
    let gid = grant.id.as_str();
    let system = index.systems.get(&grant.system).copied();
    let mutating = |action: &ActionName| {
        system.is_none_or(|s| {
            s.actions
                .get(action)
                .map_or(ActionClass::Write, |a| a.effective_class())
                .is_mutating()
        })
    };
    let production_system =
        system.is_some_and(|s| inv.production_environments.contains(&s.environment));
    let mutates_production =
        grant.mutates_production || (production_system && grant.actions.iter().any(mutating));

    // Usage: the grant is judged only once it has been active for the whole window.
    let activated = grant
        .approvals
        .iter()
        .map(|a| a.at)
        .max()
        .unwrap_or(grant.requested_at);
    let window_start = index.window_start;
    if activated <= window_start {
        let Scratch { used, unused } = scratch;
        used.clear();
        unused.clear();
        let last_uses = index.last_uses(grant);
        for action in &grant.actions {
            let last = last_uses
                .iter()
                .find(|(a, _)| *a == action)
                .map(|(_, t)| *t);
            match last {
                Some(t) if t >= window_start => used.push(action),
                _ => unused.push((action, last)),
            }
        }
        if used.is_empty() {
            let mut evidence = String::with_capacity(160 + 48 * unused.len());
            let _ = write!(
                evidence,
                "no action of grant `{gid}` (agent `{}`, system `{}`) was used since {}: ",
                grant.agent, grant.system, index.window_start_text,
            );
            push_unused(&mut evidence, unused);
            out.push(new_finding(
                &GRANT_UNUSED,
                if mutates_production {
                    Severity::High
                } else {
                    Severity::Medium
                },
                grant_entity(grant),
                format!(
                    "no action used on {} in {} days",
                    grant.system, config.unused_grant_days
                ),
                evidence,
                json!({
                    "agent": grant.agent.as_str(),
                    "system": grant.system.as_str(),
                    "actions": grant.actions,
                    "window_days": config.unused_grant_days,
                    "last_used": unused.iter().map(|(a, t)| json!({"action": a, "last_used": t})).collect::<Vec<_>>(),
                }),
                format!("Revoke grant {gid}; request access again when the agent needs it."),
            ));
        } else if !unused.is_empty() {
            let unused_mutating = unused.iter().any(|(a, _)| mutating(a));
            let used_text = list(used.iter());
            let mut evidence = String::with_capacity(200 + 48 * unused.len());
            let _ = write!(
                evidence,
                "of grant `{gid}` (agent `{}`, system `{}`), only {used_text} were used since {}; unused: ",
                grant.agent, grant.system, index.window_start_text,
            );
            push_unused(&mut evidence, unused);
            out.push(new_finding(
                &ACTION_NEVER_USED,
                if unused_mutating {
                    Severity::Medium
                } else {
                    Severity::Low
                },
                grant_entity(grant),
                format!(
                    "{} of {} actions on {} unused",
                    unused.len(),
                    grant.actions.len(),
                    grant.system
                ),
                evidence,
                json!({
                    "agent": grant.agent.as_str(),
                    "system": grant.system.as_str(),
                    "unused_actions": unused.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
                    "narrowed_actions": used,
                    "window_days": config.unused_grant_days,
                }),
                format!(
                    "Narrow the grant to the actions in use: request a grant of {used_text} on {} for {} and revoke {gid}.",
                    grant.system,
                    grant.agent
                ),
            ));
        }
    }

    if mutates_production
        && !grant
            .approvals
            .iter()
            .any(|a| a.role == ApprovalRole::BusinessOwner)
    {
        let owner = grant.business_owner_approver.as_ref().or_else(|| {
            index
                .agents
                .get(&grant.agent)
                .and_then(|a| a.roles.business_owner.as_ref())
        });
        let mut evidence = String::with_capacity(200);
        let _ = write!(
            evidence,
            "grant `{gid}` lets `{}` mutate production system `{}` (",
            grant.agent, grant.system,
        );
        push_list(&mut evidence, &grant.actions);
        evidence.push_str(") and is active, but its approvals are: ");
        if grant.approvals.is_empty() {
            evidence.push_str("none");
        } else {
            for (i, a) in grant.approvals.iter().enumerate() {
                if i > 0 {
                    evidence.push_str(", ");
                }
                let _ = write!(evidence, "{} as {:?}", a.by, a.role);
            }
        }
        out.push(new_finding(
            &PROD_MUTATION_WITHOUT_BUSINESS_OWNER,
            Severity::Critical,
            grant_entity(grant),
            format!("production write on {} without the business owner's approval", grant.system),
            evidence,
            json!({
                "agent": grant.agent.as_str(),
                "system": grant.system.as_str(),
                "actions": grant.actions,
                "approvals": grant.approvals,
                "business_owner": owner,
            }),
            match owner {
                Some(o) => format!("Revoke grant {gid} now and request it again so that the business owner `{o}` approves it beside a system approver."),
                None => format!("Revoke grant {gid} now; set the agent's business owner and request the grant again so they approve it."),
            },
        ));
    }

    let too_long = grant.expires_at > index.max_expiry;
    let ttl_problem = match grant.max_token_ttl_secs {
        None => true,
        Some(t) => t > config.max_token_ttl_secs,
    };
    if too_long || ttl_problem {
        let mut severity = Severity::Low;
        let mut evidence = String::with_capacity(200);
        let _ = write!(
            evidence,
            "grant `{gid}` (agent `{}`, system `{}`): ",
            grant.agent, grant.system,
        );
        if too_long {
            let _ = write!(
                evidence,
                "it expires {} ({} days from now; policy allows {})",
                ts(grant.expires_at),
                (grant.expires_at - now).num_days(),
                config.max_grant_days
            );
            severity = Severity::Medium;
        }
        if ttl_problem {
            if too_long {
                evidence.push_str("; ");
            }
            match grant.max_token_ttl_secs {
                None => evidence.push_str("it sets no max_token_ttl_secs"),
                Some(t) => {
                    let _ = write!(
                        evidence,
                        "its max_token_ttl_secs is {t} (policy allows {})",
                        config.max_token_ttl_secs
                    );
                    severity = Severity::Medium;
                }
            }
        }
        out.push(new_finding(
            &GRANT_WITHOUT_EXPIRY_OR_TTL_ABOVE_POLICY,
            severity,
            grant_entity(grant),
            "longer-lived than policy".to_owned(),
            evidence,
            json!({
                "agent": grant.agent.as_str(),
                "system": grant.system.as_str(),
                "expires_at": grant.expires_at,
                "max_token_ttl_secs": grant.max_token_ttl_secs,
                "policy_max_grant_days": config.max_grant_days,
                "policy_max_token_ttl_secs": config.max_token_ttl_secs,
            }),
            format!(
                "Request a replacement grant expiring within {} days with max_token_ttl_secs of at most {}, then revoke {gid}.",
                config.max_grant_days, config.max_token_ttl_secs
            ),
        ));
    }
}

fn check_guardrails(inv: &Inventory, config: &PostureConfig, out: &mut Vec<Finding>) {
    let now = inv.now;
    for g in &inv.guardrails {
        let entity = || Entity {
            kind: EntityKind::Guardrail,
            id: g.id.clone(),
        };
        let loaded_days = (now - g.loaded_since).num_days();
        if g.mode == GuardrailMode::Shadow
            && plus_days(g.loaded_since, config.shadow_max_days) < now
        {
            out.push(new_finding(
                &SHADOW_TOO_LONG,
                Severity::Low,
                entity(),
                format!("in shadow mode for {loaded_days} days"),
                format!(
                    "guardrail `{}` is in shadow mode since {} ({} matches recorded; policy allows {} days)",
                    g.id,
                    ts(g.loaded_since),
                    g.matches,
                    config.shadow_max_days
                ),
                json!({
                    "loaded_since": g.loaded_since,
                    "matches": g.matches,
                    "shadow_days": loaded_days,
                }),
                "Decide: enforce the guardrail (remove @shadow) if its recorded matches are the calls it should stop, otherwise fix or delete it.".to_owned(),
            ));
        }
        if g.matches == 0 && plus_days(g.loaded_since, config.never_matched_days) < now {
            out.push(new_finding(
                &GUARDRAIL_NEVER_MATCHED,
                Severity::Low,
                entity(),
                format!("never matched in {loaded_days} days"),
                format!(
                    "guardrail `{}` ({} mode) has been loaded since {} and matched no decision",
                    g.id,
                    match g.mode {
                        GuardrailMode::Enforce => "enforce",
                        GuardrailMode::Shadow => "shadow",
                    },
                    ts(g.loaded_since)
                ),
                json!({
                    "loaded_since": g.loaded_since,
                    "mode": g.mode,
                }),
                "Check the guardrail's conditions against the calls it should match (`rein policy explain`); fix them or delete the guardrail.".to_owned(),
            ));
        }
    }
}
