//! Why a request gets its decision: each step of the decision semantics with what it looked at,
//! and every guardrail of the set with what happened to it.
//!
//! [`explain`] is for people and tooling (`rein policy explain`), not for the request path: it
//! evaluates the **whole** guardrail set through Cedar (no slicing), and separately reports
//! what the index and the pre-filter would have done with each guardrail, so a guardrail the
//! slicer drops can be seen to be one Cedar does not match either. Its outcome, rule,
//! `determined_by`, shadow effects and step-up agree with [`crate::decide`] (a test checks it
//! over the example guardrails).

use rein_core::agent::Agent;
use rein_core::grant::Grant;
use rein_core::system::ActionClass;
use serde::Serialize;

use crate::cedar::{class_str, Call};
use crate::decision::{
    check_agent, check_budgets, check_grant, grants_for, verdict, why_not, Arguments, BudgetUsage,
    Facts, Outcome, Refusal, Rule, ShadowEffect, StepUp,
};
use crate::guardrails::{Guardrails, Mode};
use crate::request::Request;

/// The steps of the decision semantics, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Step 0: the request's context is valid and its arguments have a canonical form.
    Context,
    /// Step 1: the agent exists, is not revoked, is active and has its accountable roles.
    Agent,
    /// Step 2: the system declares the action and an active grant covers the call now.
    Grant,
    /// Step 3: the budgets hold, counting this call.
    Budget,
    /// Step 4: the guardrails.
    Guardrails,
}

impl Step {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Context => "context",
            Self::Agent => "agent",
            Self::Grant => "grant",
            Self::Budget => "budget",
            Self::Guardrails => "guardrails",
        }
    }
}

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step let the call through.
    Pass,
    /// The step decided: deny, or step-up for the guardrails.
    Fail,
    /// An earlier step decided; this one was not evaluated.
    NotReached,
}

impl StepStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::NotReached => "not_reached",
        }
    }
}

/// One step, with what it looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepExplanation {
    /// Which step.
    pub step: Step,
    /// How it went.
    pub status: StepStatus,
    /// One line: what the step concluded.
    pub summary: String,
    /// The facts it looked at, one per line (agent status and roles, each grant and why it
    /// covers the call or not, each budget against its limit, …).
    pub details: Vec<String>,
}

/// Which part of the slicing would drop a guardrail before Cedar sees it on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkippedBy {
    /// The index: the request contradicts the policy's scope or a leading equality.
    Index,
    /// The pre-filter: a leading condition is false for the request.
    Prefilter,
}

/// What happened to one guardrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailStatus {
    /// Not applicable: the slicing drops it, and Cedar does not match it either.
    NotApplicable,
    /// Evaluated by Cedar and not matched.
    NotMatched,
    /// Matched: its effect applies (or, for a `@shadow` guardrail, is reported).
    Matched,
    /// Cedar raised an error evaluating it (an enforced guardrail's error denies).
    Error,
}

impl GuardrailStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotApplicable => "not_applicable",
            Self::NotMatched => "not_matched",
            Self::Matched => "matched",
            Self::Error => "error",
        }
    }
}

/// One guardrail of the set and what happened to it for this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardrailExplanation {
    /// Its `@id`.
    pub id: String,
    /// The file it came from.
    pub file: String,
    /// Where it starts in the file (1-based).
    pub line: u32,
    /// Enforced or `@shadow`.
    pub mode: Mode,
    /// Approvers its `@step_up` asks for, if it is a step-up guardrail.
    pub step_up: Option<u32>,
    /// Its `@reason`.
    pub reason: Option<String>,
    /// What happened to it, from Cedar's evaluation of the whole set.
    pub status: GuardrailStatus,
    /// Whether, and by what, the request path's slicing drops it before Cedar runs.
    pub skipped_by: Option<SkippedBy>,
    /// Cedar's message when the status is `error`.
    pub error: Option<String>,
}

/// Why a request gets its decision. Serialisable; see [`explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Allow, deny or step-up (as [`crate::decide`] answers).
    pub outcome: Outcome,
    /// Which step decided.
    pub rule: Rule,
    /// What decided it, as in [`crate::Decision::determined_by`].
    pub determined_by: Vec<String>,
    /// A human explanation.
    pub reason: String,
    /// The guardrail set's version.
    pub policy_version: String,
    /// SHA-256 hex of the canonical arguments; empty when they are invalid.
    pub argument_digest: String,
    /// Every step, in order; those after the deciding one are `not_reached`.
    pub steps: Vec<StepExplanation>,
    /// Every guardrail of the set when the call reaches the guardrail step, in file order;
    /// empty otherwise.
    pub guardrails: Vec<GuardrailExplanation>,
    /// Would-be effects of matching `@shadow` guardrails.
    pub shadow: Vec<ShadowEffect>,
    /// What a step-up needs, when the outcome is step-up.
    pub step_up: Option<StepUp>,
    /// Whether a breached budget asks to suspend the agent.
    pub trip_breaker: bool,
}

/// Explains the decision on `req`: runs the steps of [`crate::decide`] in order, recording what
/// each looked at, and for the guardrail step evaluates every guardrail of the set (without
/// slicing) and reports, per guardrail, whether it matched, did not, raised an error, or is not
/// applicable (dropped by the slicing, and not matched by Cedar either). Pure, like `decide`.
pub fn explain(req: &Request, facts: &Facts<'_>, guardrails: &Guardrails) -> Explanation {
    let mut x = Explanation {
        outcome: Outcome::Deny,
        rule: Rule::Error,
        determined_by: Vec::new(),
        reason: String::new(),
        policy_version: guardrails.version().to_owned(),
        argument_digest: String::new(),
        steps: Vec::new(),
        guardrails: Vec::new(),
        shadow: Vec::new(),
        step_up: None,
        trip_breaker: false,
    };
    x.run(req, facts, guardrails);
    // Steps after the deciding one.
    for step in [
        Step::Context,
        Step::Agent,
        Step::Grant,
        Step::Budget,
        Step::Guardrails,
    ] {
        if !x.steps.iter().any(|s| s.step == step) {
            x.steps.push(StepExplanation {
                step,
                status: StepStatus::NotReached,
                summary: "not reached: an earlier step decided".to_owned(),
                details: Vec::new(),
            });
        }
    }
    x
}

impl Explanation {
    fn step(&mut self, step: Step, status: StepStatus, summary: String, details: Vec<String>) {
        self.steps.push(StepExplanation {
            step,
            status,
            summary,
            details,
        });
    }

    /// Records a failing step that denies, as `refusal` says.
    fn refused(&mut self, step: Step, details: Vec<String>, refusal: Refusal) {
        self.step(step, StepStatus::Fail, refusal.reason.clone(), details);
        self.outcome = Outcome::Deny;
        self.rule = refusal.rule;
        self.determined_by = vec![refusal.by.to_owned()];
        self.reason = refusal.reason;
        self.trip_breaker = refusal.trip_breaker;
    }

    fn run(&mut self, req: &Request, facts: &Facts<'_>, guardrails: &Guardrails) {
        // 0. The context.
        let arguments = match Arguments::of(req) {
            Ok(arguments) => arguments,
            Err(e) => {
                let refusal = Refusal::error("rule:invalid-context", &e);
                return self.refused(Step::Context, Vec::new(), refusal);
            }
        };
        self.argument_digest = arguments.digest.clone();
        let details = context_details(req, &arguments);
        self.step(
            Step::Context,
            StepStatus::Pass,
            "the context is valid".to_owned(),
            details,
        );

        // 1. The agent.
        let details = facts
            .agent
            .map_or_else(Vec::new, |a| agent_details(a, facts.revoked));
        let agent = match check_agent(req, facts) {
            Ok(agent) => agent,
            Err(r) => return self.refused(Step::Agent, details, r),
        };
        self.step(
            Step::Agent,
            StepStatus::Pass,
            format!(
                "agent `{}` is active with every accountable role",
                req.agent
            ),
            details,
        );

        // 2. The grant.
        let details = grant_details(req, facts);
        let (system, class, grant) = match check_grant(req, facts) {
            Ok(found) => found,
            Err(r) => return self.refused(Step::Grant, details, r),
        };
        self.step(
            Step::Grant,
            StepStatus::Pass,
            format!("grant `{}` covers the call", grant.id),
            details,
        );

        // 3. Budgets.
        let details = budget_details(agent, class, &facts.usage);
        if let Err(r) = check_budgets(req, agent, class, &facts.usage) {
            return self.refused(Step::Budget, details, r);
        }
        self.step(
            Step::Budget,
            StepStatus::Pass,
            "every budget holds".to_owned(),
            details,
        );

        // 4. Guardrails, unsliced.
        let call = arguments.call(req, agent, system, class);
        self.guardrails(req, facts, guardrails, &call, &grant.id.to_string());
    }

    fn guardrails(
        &mut self,
        req: &Request,
        facts: &Facts<'_>,
        guardrails: &Guardrails,
        call: &Call<'_>,
        grant: &str,
    ) {
        let eval = match guardrails.evaluate(call, false) {
            Ok(eval) => eval,
            Err(e) => {
                let refusal = Refusal::error("rule:guardrail-error", &e);
                return self.refused(Step::Guardrails, Vec::new(), refusal);
            }
        };
        // What the request path's slicing would drop.
        let kept = guardrails.index_candidates(call);

        let mut details = Vec::new();
        for (i, g) in guardrails.guardrails().iter().enumerate() {
            let error = eval
                .errors
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, m)| m.clone());
            let matched = eval.satisfied.contains(&i);
            let skipped_by = if !kept.contains(&i) {
                Some(SkippedBy::Index)
            } else if guardrails.prefiltered(i, call) {
                Some(SkippedBy::Prefilter)
            } else {
                None
            };
            let status = match (&error, matched, skipped_by) {
                (Some(_), _, _) => GuardrailStatus::Error,
                (None, true, _) => GuardrailStatus::Matched,
                (None, false, Some(_)) => GuardrailStatus::NotApplicable,
                (None, false, None) => GuardrailStatus::NotMatched,
            };
            details.push(format!(
                "{} ({}:{}): {}",
                g.id,
                g.file,
                g.line,
                match (status, skipped_by) {
                    (GuardrailStatus::NotApplicable, Some(SkippedBy::Index)) =>
                        "not applicable (skipped by the index)".to_owned(),
                    (GuardrailStatus::NotApplicable, _) =>
                        "not applicable (skipped by the pre-filter)".to_owned(),
                    (s, _) => s.as_str().replace('_', " "),
                }
            ));
            self.guardrails.push(GuardrailExplanation {
                id: g.id.clone(),
                file: g.file.clone(),
                line: g.line,
                mode: g.mode,
                step_up: g.step_up,
                reason: g.reason.clone(),
                status,
                skipped_by,
                error,
            });
        }

        let v = verdict(req, &facts.approval, guardrails, &eval, grant);
        let mut approved = None;
        if let Some(check) = v.approval {
            details.push(format!("approval: {}", check.note));
            approved = check.approved;
        }
        let (status, summary) = match (v.outcome, approved) {
            (Outcome::Allow, Some(id)) => (
                StepStatus::Pass,
                format!("step-up satisfied by approval `{id}`"),
            ),
            (Outcome::Allow, None) => {
                (StepStatus::Pass, "no enforced guardrail matched".to_owned())
            }
            _ => (StepStatus::Fail, v.reason.clone()),
        };
        self.step(Step::Guardrails, status, summary, details);
        self.outcome = v.outcome;
        self.rule = v.rule;
        self.determined_by = v.determined_by;
        self.reason = v.reason;
        self.shadow = v.shadow;
        self.step_up = v.step_up;
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn context_details(req: &Request, arguments: &Arguments) -> Vec<String> {
    let ctx = &req.context;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "(none)".to_owned());
    vec![
        format!("time: {}", req.now.to_rfc3339()),
        format!("task_id: {}", opt(ctx.task_id.clone())),
        format!("intent: {}", opt(ctx.intent.clone())),
        format!("risk: {}", opt(ctx.risk.map(|r| r.to_string()))),
        format!(
            "confidence: {}",
            opt(ctx
                .confidence
                .map(|c| format!("{c} (confidence_pct {})", ctx.confidence_pct().unwrap_or(0))))
        ),
        format!("arguments: {}", arguments.text),
        format!("argument digest: {}", arguments.digest),
        format!("approval_id: {}", opt(ctx.approval_id.clone())),
    ]
}

fn agent_details(agent: &Agent, revoked: Option<&str>) -> Vec<String> {
    let r = &agent.roles;
    vec![
        format!("agent `{}`: status {}", agent.id, agent.status.as_str()),
        format!(
            "revoked: {}",
            revoked.map_or_else(|| "no".to_owned(), |w| format!("yes ({w})"))
        ),
        format!(
            "business owner: {}",
            r.business_owner
                .as_ref()
                .map_or_else(|| "(missing)".to_owned(), ToString::to_string)
        ),
        format!("approvers: {}", list(&r.approvers)),
        format!("revokers: {}", list(&r.revokers)),
        format!("reviewers: {}", list(&r.reviewers)),
        format!(
            "review cadence: {}",
            r.review_cadence_days
                .map_or_else(|| "(missing)".to_owned(), |d| format!("{d} days"))
        ),
    ]
}

/// What the grant step looks at, as far as it gets: the system (unless it is unknown or not
/// the one asked about), the action's class (unless the system does not declare it) and each
/// of the agent's grants on the system.
fn grant_details(req: &Request, facts: &Facts<'_>) -> Vec<String> {
    let Some(system) = facts.system.filter(|s| s.name == req.system) else {
        return Vec::new();
    };
    let mut details = vec![format!(
        "system `{}`: environment {}, classification {}, owner team {}",
        system.name,
        system.environment,
        crate::cedar::classification_str(system.classification),
        system.owner_team
    )];
    let Some(spec) = system.actions.get(&req.action) else {
        return details;
    };
    details.push(format!(
        "action `{}`: class {}{}",
        req.action,
        class_str(spec.effective_class()),
        if spec.class.is_none() {
            " (unclassified, treated as write)"
        } else {
            ""
        }
    ));
    let mine = grants_for(req, facts.grants);
    if mine.is_empty() {
        details.push("the agent has no grant on this system".to_owned());
    }
    for g in mine {
        details.push(grant_detail(g, req));
    }
    details
}

fn grant_detail(g: &Grant, req: &Request) -> String {
    let actions = list(&g.actions.iter().collect::<Vec<_>>());
    let schedule = g.schedule.as_ref().map_or_else(
        || "no schedule".to_owned(),
        |s| {
            let windows: Vec<String> = s
                .windows
                .iter()
                .map(|w| {
                    let days: Vec<String> = w
                        .days
                        .iter()
                        .map(|d| format!("{d:?}").to_lowercase())
                        .collect();
                    format!("{} {}-{}", days.join(","), w.start, w.end)
                })
                .collect();
            format!("schedule {} in {}", windows.join("; "), s.timezone)
        },
    );
    let verdict = if g.covers(&req.action, req.now) {
        "covers the call".to_owned()
    } else {
        format!("does not cover the call: it {}", why_not(g, req))
    };
    format!(
        "grant `{}` ({}, expires {}, actions {actions}, {schedule}): {verdict}",
        g.id,
        g.status_at(req.now).as_str(),
        g.expires_at.to_rfc3339()
    )
}

/// Each budget against its limit.
fn budget_details(agent: &Agent, class: ActionClass, usage: &BudgetUsage) -> Vec<String> {
    let b = &agent.budgets;
    let limit = |l: Option<u32>| l.map_or_else(|| "no limit".to_owned(), |l| format!("limit {l}"));
    vec![
        format!(
            "calls per minute: {} before this call, {}",
            usage.calls_last_minute,
            limit(b.calls_per_minute)
        ),
        format!(
            "mutations per task: {} before this call{}, {}",
            usage.task_mutations,
            if class.is_mutating() {
                ""
            } else {
                " (this call does not mutate)"
            },
            limit(b.mutations_per_task)
        ),
        format!(
            "systems per task: {} including this call's, {}",
            usage.task_systems,
            limit(b.systems_per_task)
        ),
        format!("suspend on breach: {}", b.suspend_on_breach),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeSet;

    use chrono::{DateTime, Duration, Utc};
    use rein_core::agent::{AgentStatus, Budgets};
    use rein_core::schedule::{Day, Schedule, Window};
    use rein_core::system::Classification;
    use serde_json::{json, Value};

    use super::*;
    use crate::tests::fixtures::{
        self, approve, examples, p, system, wednesday, Case, ALL_ACTIONS,
    };

    fn agent(status: AgentStatus, budgets: Budgets) -> Agent {
        Agent {
            status,
            budgets,
            ..fixtures::agent()
        }
    }

    fn grant(n: u8, actions: &[&str], expires: DateTime<Utc>, schedule: Option<Schedule>) -> Grant {
        Grant {
            expires_at: expires,
            schedule,
            ..fixtures::grant(n, "payments-db", actions)
        }
    }

    fn status_of(x: &Explanation, id: &str) -> GuardrailStatus {
        x.guardrails
            .iter()
            .find(|g| g.id == id)
            .unwrap_or_else(|| panic!("no guardrail {id} in {x:#?}"))
            .status
    }

    fn step_status(x: &Explanation, step: Step) -> StepStatus {
        x.steps.iter().find(|s| s.step == step).unwrap().status
    }

    /// Every request of a matrix over the example guardrails: explain's outcome, rule,
    /// determined_by, shadow effects, step-up and breaker equal decide's; a guardrail the
    /// slicing drops is one Cedar does not match.
    #[test]
    fn explain_agrees_with_decide_over_the_examples() {
        let g = examples();
        let times = [
            "2026-01-07T10:00:00Z",
            "2026-01-10T10:00:00Z",
            "2026-01-07T17:00:00Z",
        ];
        let arguments: [Value; 6] = [
            json!({"invoice": "inv-1"}),
            json!({"sql": "DROP TABLE invoices"}),
            json!({"sql": "DELETE FROM invoices"}),
            json!({"sql": "DELETE FROM invoices WHERE id = 1"}),
            json!({"sql": "GRANT ALL ON invoices TO bob"}),
            Value::Null,
        ];
        let mut seen = BTreeSet::new();
        let mut n = 0;
        for action in ALL_ACTIONS.iter().chain(["undeclared"].iter()) {
            for time in times {
                for args in &arguments {
                    for (risk, confidence, intent) in [
                        (Some(10), Some(0.95), true),
                        (Some(70), Some(0.95), true),
                        (Some(69), Some(0.8), false),
                        (None, None, true),
                    ] {
                        for variant in 0..10 {
                            let case = Case::new(action).with(|c| {
                                c.request.now = p(time);
                                c.request.context.arguments = args.clone();
                                c.request.context.risk = risk;
                                c.request.context.confidence = confidence;
                                if !intent {
                                    c.request.context.intent = None;
                                }
                                match variant {
                                    1 => approve(c, "apr-1", &["alice"]),
                                    2 => approve(c, "apr-1", &["alice", "bob"]),
                                    3 => c.request.context.approval_id = Some("apr-x".into()),
                                    4 => {
                                        c.system = Some(system(
                                            "payments-db",
                                            "staging",
                                            Classification::Internal,
                                        ))
                                    }
                                    5 => {
                                        c.agent =
                                            Some(agent(AgentStatus::Suspended, Budgets::default()))
                                    }
                                    6 => {
                                        c.grants = vec![grant(
                                            2,
                                            &ALL_ACTIONS,
                                            wednesday() - Duration::days(1),
                                            None,
                                        )]
                                    }
                                    7 => {
                                        c.agent = Some(agent(
                                            AgentStatus::Active,
                                            Budgets {
                                                mutations_per_task: Some(1),
                                                suspend_on_breach: true,
                                                ..Budgets::default()
                                            },
                                        ));
                                        c.usage.task_mutations = 1;
                                    }
                                    8 => c.request.context.risk = Some(101),
                                    9 => c.grants.push(grant(
                                        0,
                                        &["select_invoices"],
                                        wednesday() + Duration::days(30),
                                        Some(Schedule {
                                            timezone: "UTC".into(),
                                            windows: vec![Window {
                                                days: vec![Day::Sat],
                                                start: p("00:00"),
                                                end: p("24:00"),
                                            }],
                                        }),
                                    )),
                                    _ => {}
                                }
                            });
                            let d = case.decide(&g);
                            let x = case.explain(&g);
                            let name = format!("{action} {time} {args} {risk:?} {confidence:?} {intent} variant {variant}");
                            assert_eq!(x.outcome, d.outcome, "{name}: {d:#?}\n{x:#?}");
                            assert_eq!(x.rule, d.rule, "{name}: {d:#?}\n{x:#?}");
                            assert_eq!(x.determined_by, d.determined_by, "{name}");
                            assert_eq!(x.shadow, d.shadow, "{name}");
                            assert_eq!(x.step_up, d.step_up, "{name}");
                            assert_eq!(x.trip_breaker, d.trip_breaker, "{name}");
                            assert_eq!(x.policy_version, d.policy_version, "{name}");
                            assert_eq!(x.argument_digest, d.argument_digest, "{name}");
                            assert_eq!(x.reason, d.reason, "{name}");
                            assert_eq!(x.steps.len(), 5, "{name}");
                            for gx in &x.guardrails {
                                if gx.skipped_by.is_some() {
                                    assert_eq!(
                                        gx.status,
                                        GuardrailStatus::NotApplicable,
                                        "{name}: the slicing dropped {} but Cedar says {:?}",
                                        gx.id,
                                        gx.status
                                    );
                                }
                            }
                            seen.insert((d.outcome.as_str(), d.rule.as_str()));
                            n += 1;
                        }
                    }
                }
            }
        }
        assert!(n > 2000, "{n}");
        // The matrix reaches every outcome and every rule but `error` by a guardrail.
        for expected in [
            ("allow", "allow"),
            ("allow", "guardrail"),
            ("deny", "guardrail"),
            ("step_up", "guardrail"),
            ("deny", "agent"),
            ("deny", "grant"),
            ("deny", "budget"),
            ("deny", "error"),
        ] {
            assert!(
                seen.contains(&expected),
                "{expected:?} never reached: {seen:?}"
            );
        }
    }

    #[test]
    fn a_denial_names_the_matching_guardrail_with_its_reason_and_place() {
        let g = examples();
        let x = Case::new("alter_schema")
            .with(|c| c.request.now = p("2026-01-10T10:00:00Z"))
            .explain(&g);
        assert_eq!(x.outcome, Outcome::Deny);
        assert_eq!(x.rule, Rule::Guardrail);
        assert_eq!(x.determined_by, ["prod-admin-outside-change-window"]);
        let m = x
            .guardrails
            .iter()
            .find(|g| g.id == "prod-admin-outside-change-window")
            .unwrap();
        assert_eq!(m.status, GuardrailStatus::Matched);
        assert_eq!(m.file, "change-window.cedar");
        assert_eq!(m.line, 4);
        assert!(m.reason.as_deref().unwrap().contains("change window"));
        // Every guardrail of the set is accounted for, in file order.
        assert_eq!(x.guardrails.len(), g.guardrails().len());
        let skipped = |id: &str| x.guardrails.iter().find(|g| g.id == id).unwrap().skipped_by;
        // The system is restricted, but `alter_schema` is no export tool: the pre-filter drops
        // the export rule, and Cedar agrees.
        assert_eq!(
            status_of(&x, "restricted-no-bulk-export"),
            GuardrailStatus::NotApplicable
        );
        assert_eq!(
            skipped("restricted-no-bulk-export"),
            Some(SkippedBy::Prefilter)
        );
        // A prod admin tool, but at risk 10: the pre-filter drops the high-risk rule.
        assert_eq!(
            status_of(&x, "prod-write-high-risk"),
            GuardrailStatus::NotApplicable
        );
        assert_eq!(skipped("prod-write-high-risk"), Some(SkippedBy::Prefilter));
        // The intent is stated: the shadow rule does not match.
        assert_eq!(
            status_of(&x, "prod-mutation-without-intent"),
            GuardrailStatus::NotApplicable
        );
        assert!(x.shadow.is_empty());
        for step in [Step::Context, Step::Agent, Step::Grant, Step::Budget] {
            assert_eq!(step_status(&x, step), StepStatus::Pass, "{step:?}");
        }
        assert_eq!(step_status(&x, Step::Guardrails), StepStatus::Fail);
    }

    #[test]
    fn shadow_and_step_up_guardrails_are_reported() {
        let g = examples();
        let case = Case::new("update_invoice_status").with(|c| {
            c.request.context.intent = None;
            c.request.context.risk = Some(80);
            c.request.context.arguments = json!({"sql": "DROP TABLE x"});
        });
        let x = case.explain(&g);
        assert_eq!(x.outcome, Outcome::StepUp);
        assert_eq!(
            x.determined_by,
            ["prod-write-high-risk", "sql-drop-or-truncate"]
        );
        assert_eq!(x.step_up.as_ref().unwrap().approvers_required, 2);
        assert_eq!(
            status_of(&x, "prod-mutation-without-intent"),
            GuardrailStatus::Matched
        );
        assert_eq!(x.shadow.len(), 1);
        assert_eq!(x.shadow[0].policy, "prod-mutation-without-intent");
        assert_eq!(
            status_of(&x, "prod-write-low-confidence"),
            GuardrailStatus::NotApplicable
        );
        assert_eq!(
            status_of(&x, "prod-admin-outside-change-window"),
            GuardrailStatus::NotApplicable
        );

        // One approver is not enough for two; two are.
        let one = case.with(|c| approve(c, "apr-1", &["alice"]));
        let x = one.explain(&g);
        assert_eq!(x.outcome, Outcome::StepUp);
        assert!(
            x.reason.contains("has 1 distinct approver(s), needs 2"),
            "{}",
            x.reason
        );
        let two = one.with(|c| approve(c, "apr-1", &["alice", "bob"]));
        let x = two.explain(&g);
        assert_eq!(x.outcome, Outcome::Allow);
        assert_eq!(x.rule, Rule::Guardrail);
        assert_eq!(x.determined_by.last().unwrap(), "approval:apr-1");
        assert_eq!(step_status(&x, Step::Guardrails), StepStatus::Pass);
    }

    #[test]
    fn earlier_steps_say_why_and_later_ones_are_not_reached() {
        let g = examples();
        let x = Case::new("select_invoices")
            .with(|c| c.agent = Some(agent(AgentStatus::Suspended, Budgets::default())))
            .explain(&g);
        assert_eq!(x.determined_by, ["rule:agent-inactive"]);
        assert_eq!(step_status(&x, Step::Agent), StepStatus::Fail);
        let agent_step = x.steps.iter().find(|s| s.step == Step::Agent).unwrap();
        assert!(agent_step
            .details
            .iter()
            .any(|d| d.contains("status suspended")));
        for step in [Step::Grant, Step::Budget, Step::Guardrails] {
            assert_eq!(step_status(&x, step), StepStatus::NotReached);
        }
        assert!(x.guardrails.is_empty());

        let x = Case::new("select_invoices")
            .with(|c| {
                c.grants = vec![
                    grant(1, &ALL_ACTIONS, wednesday() - Duration::days(1), None),
                    grant(2, &["alter_schema"], wednesday() + Duration::days(1), None),
                ]
            })
            .explain(&g);
        assert_eq!(x.rule, Rule::Grant);
        let grant_step = x.steps.iter().find(|s| s.step == Step::Grant).unwrap();
        assert!(
            grant_step.details.iter().any(|d| d.contains("is expired")),
            "{grant_step:#?}"
        );
        assert!(grant_step
            .details
            .iter()
            .any(|d| d.contains("does not include this action")));

        let x = Case::new("update_invoice_status")
            .with(|c| {
                c.agent = Some(agent(
                    AgentStatus::Active,
                    Budgets {
                        calls_per_minute: Some(5),
                        ..Budgets::default()
                    },
                ));
                c.usage.calls_last_minute = 5;
            })
            .explain(&g);
        assert_eq!(x.determined_by, ["rule:budget-calls-per-minute"]);
        let budget = x.steps.iter().find(|s| s.step == Step::Budget).unwrap();
        assert!(budget
            .details
            .iter()
            .any(|d| d == "calls per minute: 5 before this call, limit 5"));
    }

    #[test]
    fn the_explanation_serialises() {
        let x = Case::new("select_invoices").explain(&examples());
        let v = serde_json::to_value(&x).unwrap();
        assert_eq!(v["outcome"], "allow");
        assert_eq!(v["steps"][4]["step"], "guardrails");
        assert_eq!(v["steps"][4]["status"], "pass");
        assert_eq!(v["guardrails"][0]["mode"], "enforce");
        assert!(v["guardrails"][0]["status"].is_string());
    }
}
