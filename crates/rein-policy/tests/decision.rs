//! The decision semantics (SPEC.md), rule by rule and in order; the guardrail loader; the
//! example guardrails; golden argument digests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::GrantId;
use rein_core::schedule::{Day, Schedule, Window};
use rein_core::system::{ActionClass, ActionSpec, Classification, System};
use rein_core::ErrorCode;
use rein_policy::{
    argument_digest, canonical_json, check_access, decide, ApprovalEvidence, BudgetUsage, Decision,
    Facts, Guardrails, Mode, Outcome, PolicyFileError, Request, RequestContext, Rule,
    ShadowVerdict,
};
use serde_json::{json, Value};

fn p<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| panic!("bad test literal {s}"))
}

/// Wednesday 2026-01-07 10:00 UTC: inside the change window.
fn wednesday() -> DateTime<Utc> {
    p("2026-01-07T10:00:00Z")
}

/// Saturday 2026-01-10 10:00 UTC: outside the change window.
fn saturday() -> DateTime<Utc> {
    p("2026-01-10T10:00:00Z")
}

const AGENT: &str = "spiffe://rein.local/agent/payments/invoice-bot/prod";

fn agent() -> Agent {
    Agent {
        id: p(AGENT),
        description: String::new(),
        use_case: "invoices".into(),
        roles: AccountableRoles {
            business_owner: Some(p("olivia")),
            approvers: vec![p("team:payments-leads")],
            revokers: vec![p("team:secops")],
            reviewers: vec![p("user:rita")],
            review_cadence_days: Some(90),
        },
        last_review: None,
        status: AgentStatus::Active,
        status_reason: None,
        keys: vec![],
        budgets: Budgets::default(),
        created_by: p("dave"),
        created_at: wednesday() - Duration::days(30),
        updated_at: wednesday() - Duration::days(30),
    }
}

fn system(name: &str, env: &str, classification: Classification) -> System {
    let mut actions = BTreeMap::new();
    for (action, class) in [
        ("select_invoices", Some(ActionClass::Read)),
        ("update_invoice_status", Some(ActionClass::Write)),
        ("alter_schema", Some(ActionClass::Admin)),
        ("export_customers", Some(ActionClass::Read)),
        ("run_sql", Some(ActionClass::Write)),
        ("unclassified", None),
    ] {
        actions.insert(
            p(action),
            ActionSpec {
                class,
                description: String::new(),
            },
        );
    }
    System {
        name: p(name),
        description: String::new(),
        environment: p(env),
        owner_team: p("payments"),
        approvers: vec![p("team:secops")],
        classification,
        actions,
        created_at: wednesday() - Duration::days(60),
        updated_at: wednesday() - Duration::days(60),
        mcp: None,
    }
}

fn grant(n: u8, system: &str, actions: &[&str]) -> Grant {
    Grant {
        id: GrantId::from_bytes([n; 16]),
        agent: p(AGENT),
        system: p(system),
        actions: actions.iter().map(|a| p(a)).collect(),
        expires_at: wednesday() + Duration::days(30),
        schedule: None,
        max_token_ttl_secs: None,
        justification: "invoice processing".into(),
        requested_by: p("dave"),
        requested_at: wednesday() - Duration::days(10),
        status: GrantStatus::Active,
        mutates_production: true,
        approvers: vec![p("team:secops")],
        business_owner_approver: Some(p("olivia")),
        approvals: vec![],
        revokers: vec![p("team:secops")],
        closed: None,
        updated_at: wednesday() - Duration::days(9),
    }
}

const ALL_ACTIONS: [&str; 6] = [
    "select_invoices",
    "update_invoice_status",
    "alter_schema",
    "export_customers",
    "run_sql",
    "unclassified",
];

fn example_files() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policies");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn examples() -> Guardrails {
    Guardrails::load(&example_files()).unwrap()
}

fn load(files: &[(&str, &str)]) -> Result<Guardrails, Vec<PolicyFileError>> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    Guardrails::load(&files)
}

/// One request with its facts, ready to be changed by a test case.
struct Case {
    request: Request,
    agent: Option<Agent>,
    system: Option<System>,
    grants: Vec<Grant>,
    revoked: Option<String>,
    usage: BudgetUsage,
    approval: ApprovalEvidence,
}

impl Case {
    /// A confident, low-risk call of `action` on the prod, restricted `payments-db`, with a
    /// grant covering every action.
    fn new(action: &str) -> Self {
        Self {
            request: Request {
                agent: p(AGENT),
                system: p("payments-db"),
                action: p(action),
                context: RequestContext {
                    task_id: Some("task-1".into()),
                    intent: Some("mark paid invoices".into()),
                    risk: Some(10),
                    confidence: Some(0.95),
                    arguments: json!({"invoice": "inv-1"}),
                    approval_id: None,
                },
                now: wednesday(),
            },
            agent: Some(agent()),
            system: Some(system("payments-db", "prod", Classification::Restricted)),
            grants: vec![grant(1, "payments-db", &ALL_ACTIONS)],
            revoked: None,
            usage: BudgetUsage {
                calls_last_minute: 0,
                task_mutations: 0,
                task_systems: 1,
            },
            approval: ApprovalEvidence::None,
        }
    }

    fn decide(&self, guardrails: &Guardrails) -> Decision {
        let facts = Facts {
            agent: self.agent.as_ref(),
            system: self.system.as_ref(),
            grants: &self.grants,
            revoked: self.revoked.as_deref(),
            usage: self.usage,
            approval: self.approval.clone(),
        };
        decide(&self.request, &facts, guardrails)
    }

    fn check_access(&self, version: &str) -> Decision {
        let facts = Facts {
            agent: self.agent.as_ref(),
            system: self.system.as_ref(),
            grants: &self.grants,
            revoked: self.revoked.as_deref(),
            usage: self.usage,
            approval: self.approval.clone(),
        };
        check_access(&self.request, &facts, version)
    }

    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

fn approve(case: &mut Case, id: &str, approvers: &[&str]) {
    case.request.context.approval_id = Some(id.into());
    case.approval = ApprovalEvidence::ValidFor {
        approval_id: id.into(),
        approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
    };
}

struct Expect {
    outcome: Outcome,
    rule: Rule,
    by: &'static [&'static str],
    reason_has: &'static str,
}

fn expect(
    outcome: Outcome,
    rule: Rule,
    by: &'static [&'static str],
    reason_has: &'static str,
) -> Expect {
    Expect {
        outcome,
        rule,
        by,
        reason_has,
    }
}

fn check(name: &str, d: &Decision, e: &Expect, version: &str) {
    assert_eq!(d.outcome, e.outcome, "{name}: outcome; decision {d:#?}");
    assert_eq!(d.rule, e.rule, "{name}: rule; decision {d:#?}");
    for by in e.by {
        assert!(
            d.determined_by.iter().any(|x| x == by),
            "{name}: determined_by should name `{by}`; decision {d:#?}"
        );
    }
    assert!(!d.determined_by.is_empty(), "{name}: determined_by empty");
    assert!(
        d.reason.contains(e.reason_has),
        "{name}: reason should contain `{}`; decision {d:#?}",
        e.reason_has
    );
    assert_eq!(d.policy_version, version, "{name}: version");
    if e.outcome == Outcome::StepUp {
        assert!(d.step_up.is_some(), "{name}: step_up details");
    } else {
        assert!(d.step_up.is_none(), "{name}: no step_up details");
    }
}

const GRANT_1: &str = "grt_01010101010101010101010101010101";

#[test]
fn decision_semantics_table() {
    use Outcome::{Allow, Deny, StepUp};
    let g = examples();
    let deep = (0..17).fold(json!(1), |v, _| json!({ "x": v }));
    let cases: Vec<(&str, Case, Expect)> = vec![
        // 0. Context and facts.
        (
            "risk out of range",
            Case::new("select_invoices").with(|c| c.request.context.risk = Some(101)),
            expect(
                Deny,
                Rule::Error,
                &["rule:invalid-context"],
                "error: invalid context `risk`",
            ),
        ),
        (
            "confidence NaN",
            Case::new("select_invoices").with(|c| c.request.context.confidence = Some(f64::NAN)),
            expect(Deny, Rule::Error, &["rule:invalid-context"], "`confidence`"),
        ),
        (
            "confidence above 1",
            Case::new("select_invoices").with(|c| c.request.context.confidence = Some(1.5)),
            expect(Deny, Rule::Error, &["rule:invalid-context"], "`confidence`"),
        ),
        (
            "arguments not an object",
            Case::new("select_invoices").with(|c| c.request.context.arguments = json!([1, 2])),
            expect(
                Deny,
                Rule::Error,
                &["rule:invalid-context"],
                "must be a JSON object",
            ),
        ),
        (
            "arguments nested too deep",
            Case::new("select_invoices").with(|c| c.request.context.arguments = deep.clone()),
            expect(Deny, Rule::Error, &["rule:invalid-context"], "16 levels"),
        ),
        (
            "arguments too large",
            Case::new("select_invoices")
                .with(|c| c.request.context.arguments = json!({ "blob": "x".repeat(70_000) })),
            expect(Deny, Rule::Error, &["rule:invalid-context"], "65536 bytes"),
        ),
        (
            "empty task id",
            Case::new("select_invoices").with(|c| c.request.context.task_id = Some(String::new())),
            expect(Deny, Rule::Error, &["rule:invalid-context"], "`task_id`"),
        ),
        (
            "agent fact does not match the request",
            Case::new("select_invoices").with(|c| {
                c.agent.as_mut().unwrap().id = p("spiffe://rein.local/agent/payments/other/prod")
            }),
            expect(Deny, Rule::Error, &["rule:facts-mismatch"], "error:"),
        ),
        // 1. The agent.
        (
            "unknown agent",
            Case::new("select_invoices").with(|c| c.agent = None),
            expect(Deny, Rule::Agent, &["rule:agent-unknown"], "not registered"),
        ),
        (
            "revoked agent with a covering grant is denied at step 1",
            Case::new("select_invoices")
                .with(|c| c.revoked = Some("team payments revoked by secops".into())),
            expect(
                Deny,
                Rule::Agent,
                &["rule:agent-revoked"],
                "team payments revoked",
            ),
        ),
        (
            "suspended agent",
            Case::new("select_invoices")
                .with(|c| c.agent.as_mut().unwrap().status = AgentStatus::Suspended),
            expect(Deny, Rule::Agent, &["rule:agent-inactive"], "suspended"),
        ),
        (
            "retired agent",
            Case::new("select_invoices")
                .with(|c| c.agent.as_mut().unwrap().status = AgentStatus::Retired),
            expect(Deny, Rule::Agent, &["rule:agent-inactive"], "retired"),
        ),
        (
            "agent without reviewers",
            Case::new("select_invoices")
                .with(|c| c.agent.as_mut().unwrap().roles.reviewers.clear()),
            expect(
                Deny,
                Rule::Agent,
                &["rule:agent-missing-roles"],
                "reviewers",
            ),
        ),
        (
            "agent without business owner",
            Case::new("select_invoices")
                .with(|c| c.agent.as_mut().unwrap().roles.business_owner = None),
            expect(
                Deny,
                Rule::Agent,
                &["rule:agent-missing-roles"],
                "business_owner",
            ),
        ),
        (
            "agent without review cadence",
            Case::new("select_invoices")
                .with(|c| c.agent.as_mut().unwrap().roles.review_cadence_days = None),
            expect(
                Deny,
                Rule::Agent,
                &["rule:agent-missing-roles"],
                "review_cadence_days",
            ),
        ),
        (
            "inactive agent is denied before a missing grant is looked at",
            Case::new("select_invoices").with(|c| {
                c.agent.as_mut().unwrap().status = AgentStatus::Suspended;
                c.grants.clear();
            }),
            expect(Deny, Rule::Agent, &["rule:agent-inactive"], "suspended"),
        ),
        // 2. The grant.
        (
            "system not loaded",
            Case::new("select_invoices").with(|c| c.system = None),
            expect(
                Deny,
                Rule::Grant,
                &["rule:system-unknown"],
                "not registered",
            ),
        ),
        (
            "action the system does not declare",
            Case::new("select_invoices").with(|c| c.request.action = p("drop_everything")),
            expect(
                Deny,
                Rule::Grant,
                &["rule:action-undeclared"],
                "does not declare",
            ),
        ),
        (
            "no grant",
            Case::new("select_invoices").with(|c| c.grants.clear()),
            expect(
                Deny,
                Rule::Grant,
                &["rule:no-grant"],
                "no grant on this system",
            ),
        ),
        (
            "expired grant",
            Case::new("select_invoices")
                .with(|c| c.grants[0].expires_at = wednesday() - Duration::minutes(1)),
            expect(Deny, Rule::Grant, &["rule:no-grant"], "is expired"),
        ),
        (
            "grant expiring exactly now",
            Case::new("select_invoices").with(|c| c.grants[0].expires_at = wednesday()),
            expect(Deny, Rule::Grant, &["rule:no-grant"], "is expired"),
        ),
        (
            "revoked grant",
            Case::new("select_invoices").with(|c| c.grants[0].status = GrantStatus::Revoked),
            expect(Deny, Rule::Grant, &["rule:no-grant"], "is revoked"),
        ),
        (
            "grant still waiting for approval",
            Case::new("select_invoices").with(|c| c.grants[0].status = GrantStatus::Requested),
            expect(Deny, Rule::Grant, &["rule:no-grant"], "is requested"),
        ),
        (
            "grant without the action",
            Case::new("select_invoices")
                .with(|c| c.grants = vec![grant(1, "payments-db", &["run_sql"])]),
            expect(
                Deny,
                Rule::Grant,
                &["rule:no-grant"],
                "does not include this action",
            ),
        ),
        (
            "grant outside its schedule",
            Case::new("select_invoices").with(|c| {
                c.grants[0].schedule = Some(Schedule {
                    timezone: "Europe/Berlin".into(),
                    windows: vec![Window {
                        days: vec![Day::Sat, Day::Sun],
                        start: p("08:00"),
                        end: p("18:00"),
                    }],
                })
            }),
            expect(
                Deny,
                Rule::Grant,
                &["rule:no-grant"],
                "outside its schedule",
            ),
        ),
        (
            "grant inside its schedule",
            Case::new("select_invoices").with(|c| {
                c.grants[0].schedule = Some(Schedule {
                    timezone: "Europe/Berlin".into(),
                    windows: vec![Window {
                        days: vec![Day::Wed],
                        start: p("08:00"),
                        end: p("18:00"),
                    }],
                })
            }),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed by grant"),
        ),
        (
            "another agent's grant does not count",
            Case::new("select_invoices")
                .with(|c| c.grants[0].agent = p("spiffe://rein.local/agent/payments/other/prod")),
            expect(
                Deny,
                Rule::Grant,
                &["rule:no-grant"],
                "no grant on this system",
            ),
        ),
        (
            "a grant on another system does not count",
            Case::new("select_invoices").with(|c| c.grants[0].system = p("tickets")),
            expect(
                Deny,
                Rule::Grant,
                &["rule:no-grant"],
                "no grant on this system",
            ),
        ),
        (
            "one covering grant among others is enough",
            Case::new("select_invoices").with(|c| {
                c.grants[0].status = GrantStatus::Revoked;
                c.grants.push(grant(2, "payments-db", &["select_invoices"]));
            }),
            expect(
                Allow,
                Rule::Allow,
                &["grt_02020202020202020202020202020202"],
                "allowed by grant",
            ),
        ),
        // 3. Budgets.
        (
            "calls per minute exceeded, no breaker",
            Case::new("select_invoices").with(|c| {
                c.agent.as_mut().unwrap().budgets.calls_per_minute = Some(60);
                c.usage.calls_last_minute = 60;
            }),
            expect(
                Deny,
                Rule::Budget,
                &["rule:budget-calls-per-minute"],
                "limit 60 per minute",
            ),
        ),
        (
            "calls per minute: the last call within the limit",
            Case::new("select_invoices").with(|c| {
                c.agent.as_mut().unwrap().budgets.calls_per_minute = Some(60);
                c.usage.calls_last_minute = 59;
            }),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "mutations per task exceeded",
            Case::new("update_invoice_status").with(|c| {
                c.agent.as_mut().unwrap().budgets.mutations_per_task = Some(3);
                c.usage.task_mutations = 3;
            }),
            expect(
                Deny,
                Rule::Budget,
                &["rule:budget-mutations-per-task"],
                "limit 3 per task",
            ),
        ),
        (
            "an unclassified action counts as a mutation",
            Case::new("unclassified").with(|c| {
                c.agent.as_mut().unwrap().budgets.mutations_per_task = Some(3);
                c.usage.task_mutations = 3;
            }),
            expect(
                Deny,
                Rule::Budget,
                &["rule:budget-mutations-per-task"],
                "limit 3",
            ),
        ),
        (
            "reads do not count against the mutation budget",
            Case::new("select_invoices").with(|c| {
                c.agent.as_mut().unwrap().budgets.mutations_per_task = Some(3);
                c.usage.task_mutations = 3;
            }),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "distinct systems per task exceeded",
            Case::new("select_invoices").with(|c| {
                c.agent.as_mut().unwrap().budgets.systems_per_task = Some(2);
                c.usage.task_systems = 3;
            }),
            expect(
                Deny,
                Rule::Budget,
                &["rule:budget-systems-per-task"],
                "3 distinct systems",
            ),
        ),
        (
            "per-task budget without a task id",
            Case::new("select_invoices").with(|c| {
                c.agent.as_mut().unwrap().budgets.systems_per_task = Some(2);
                c.request.context.task_id = None;
            }),
            expect(
                Deny,
                Rule::Budget,
                &["rule:budget-task-required"],
                "task_id",
            ),
        ),
        (
            "budget is checked before guardrails",
            Case::new("alter_schema").with(|c| {
                c.request.now = saturday();
                c.agent.as_mut().unwrap().budgets.calls_per_minute = Some(1);
                c.usage.calls_last_minute = 1;
            }),
            expect(
                Deny,
                Rule::Budget,
                &["rule:budget-calls-per-minute"],
                "budget exceeded",
            ),
        ),
        (
            "no grant is checked before budgets",
            Case::new("select_invoices").with(|c| {
                c.grants.clear();
                c.agent.as_mut().unwrap().budgets.calls_per_minute = Some(1);
                c.usage.calls_last_minute = 5;
            }),
            expect(Deny, Rule::Grant, &["rule:no-grant"], "no active grant"),
        ),
        // 4. Guardrails.
        (
            "admin outside the change window",
            Case::new("alter_schema").with(|c| c.request.now = saturday()),
            expect(
                Deny,
                Rule::Guardrail,
                &["prod-admin-outside-change-window"],
                "change window",
            ),
        ),
        (
            "admin inside the change window",
            Case::new("alter_schema"),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed by grant"),
        ),
        (
            "admin at 17:00 is outside the window",
            Case::new("alter_schema").with(|c| c.request.now = p("2026-01-07T17:00:00Z")),
            expect(
                Deny,
                Rule::Guardrail,
                &["prod-admin-outside-change-window"],
                "change window",
            ),
        ),
        (
            "prod write at risk 70 steps up",
            Case::new("update_invoice_status").with(|c| c.request.context.risk = Some(70)),
            expect(
                StepUp,
                Rule::Guardrail,
                &["prod-write-high-risk"],
                "risk 70 or more",
            ),
        ),
        (
            "prod write at risk 69 is allowed",
            Case::new("update_invoice_status").with(|c| c.request.context.risk = Some(69)),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "prod read at risk 90 is allowed",
            Case::new("select_invoices").with(|c| c.request.context.risk = Some(90)),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "prod write at confidence 0.79 steps up",
            Case::new("update_invoice_status").with(|c| c.request.context.confidence = Some(0.79)),
            expect(
                StepUp,
                Rule::Guardrail,
                &["prod-write-low-confidence"],
                "confidence below 0.8",
            ),
        ),
        (
            "prod write at confidence 0.8 is allowed",
            Case::new("update_invoice_status").with(|c| c.request.context.confidence = Some(0.8)),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "prod write without a stated confidence steps up",
            Case::new("update_invoice_status").with(|c| c.request.context.confidence = None),
            expect(
                StepUp,
                Rule::Guardrail,
                &["prod-write-low-confidence"],
                "none stated",
            ),
        ),
        (
            "step-up with a valid approval is allowed",
            Case::new("update_invoice_status").with(|c| {
                c.request.context.risk = Some(90);
                approve(c, "apr-1", &["sam"]);
            }),
            expect(
                Allow,
                Rule::Guardrail,
                &[GRANT_1, "prod-write-high-risk", "approval:apr-1"],
                "with approval `apr-1`",
            ),
        ),
        (
            "step-up with an attached approval the caller found invalid",
            Case::new("update_invoice_status").with(|c| {
                c.request.context.risk = Some(90);
                c.request.context.approval_id = Some("apr-1".into());
            }),
            expect(
                StepUp,
                Rule::Guardrail,
                &["prod-write-high-risk"],
                "not valid for this exact request",
            ),
        ),
        (
            "step-up with evidence for another approval",
            Case::new("update_invoice_status").with(|c| {
                c.request.context.risk = Some(90);
                approve(c, "apr-1", &["sam"]);
                c.request.context.approval_id = Some("apr-2".into());
            }),
            expect(
                StepUp,
                Rule::Guardrail,
                &["prod-write-high-risk"],
                "not the one checked",
            ),
        ),
        (
            "evidence without an attached approval id does not count",
            Case::new("update_invoice_status").with(|c| {
                c.request.context.risk = Some(90);
                approve(c, "apr-1", &["sam"]);
                c.request.context.approval_id = None;
            }),
            expect(
                StepUp,
                Rule::Guardrail,
                &["prod-write-high-risk"],
                "needs approval by 1",
            ),
        ),
        (
            "DROP needs two approvers",
            Case::new("run_sql")
                .with(|c| c.request.context.arguments = json!({"sql": "DROP TABLE invoices"})),
            expect(
                StepUp,
                Rule::Guardrail,
                &["sql-drop-or-truncate"],
                "two approvers",
            ),
        ),
        (
            "DROP with one approver still steps up",
            Case::new("run_sql").with(|c| {
                c.request.context.arguments = json!({"sql": "DROP TABLE invoices"});
                approve(c, "apr-9", &["sam"]);
            }),
            expect(
                StepUp,
                Rule::Guardrail,
                &["sql-drop-or-truncate"],
                "has 1 distinct approver(s), needs 2",
            ),
        ),
        (
            "DROP approved twice by one person still steps up",
            Case::new("run_sql").with(|c| {
                c.request.context.arguments = json!({"sql": "DROP TABLE invoices"});
                approve(c, "apr-9", &["sam", "sam"]);
            }),
            expect(
                StepUp,
                Rule::Guardrail,
                &["sql-drop-or-truncate"],
                "needs 2",
            ),
        ),
        (
            "DROP with two approvers is allowed",
            Case::new("run_sql").with(|c| {
                c.request.context.arguments = json!({"sql": "DROP TABLE invoices"});
                approve(c, "apr-9", &["sam", "tina"]);
            }),
            expect(
                Allow,
                Rule::Guardrail,
                &["sql-drop-or-truncate", "approval:apr-9"],
                "with approval",
            ),
        ),
        (
            "DELETE without WHERE steps up",
            Case::new("run_sql")
                .with(|c| c.request.context.arguments = json!({"sql": "DELETE FROM invoices"})),
            expect(
                StepUp,
                Rule::Guardrail,
                &["sql-delete-without-where"],
                "without a WHERE",
            ),
        ),
        (
            "DELETE with WHERE is allowed",
            Case::new("run_sql").with(|c| {
                c.request.context.arguments = json!({"sql": "DELETE FROM invoices WHERE id = 4"})
            }),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "a dangerous pattern in a nested argument is seen",
            Case::new("run_sql").with(|c| {
                c.request.context.arguments = json!({"batch": [{"q": "truncate ledger"}]})
            }),
            expect(
                StepUp,
                Rule::Guardrail,
                &["sql-drop-or-truncate"],
                "DROP or TRUNCATE",
            ),
        ),
        (
            "a tag guardrail sees one argument by name",
            Case::new("run_sql")
                .with(|c| c.request.context.arguments = json!({"sql": "GRANT ALL ON t TO bob"})),
            expect(
                StepUp,
                Rule::Guardrail,
                &["sql-grant-statement"],
                "permissions",
            ),
        ),
        (
            "the tag guardrail ignores other arguments",
            Case::new("run_sql").with(|c| {
                c.request.context.arguments = json!({"comment": "GRANT ALL ON t TO bob"})
            }),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "several step-ups: the largest approver count, every policy named",
            Case::new("run_sql").with(|c| {
                c.request.context.arguments = json!({"sql": "DROP TABLE t"});
                c.request.context.risk = Some(99);
            }),
            expect(
                StepUp,
                Rule::Guardrail,
                &["sql-drop-or-truncate", "prod-write-high-risk"],
                "two approvers",
            ),
        ),
        (
            "forbid beats step-up",
            Case::new("alter_schema").with(|c| {
                c.request.now = saturday();
                c.request.context.risk = Some(95);
            }),
            expect(
                Deny,
                Rule::Guardrail,
                &["prod-admin-outside-change-window"],
                "change window",
            ),
        ),
        (
            "an approval does not lift a forbid",
            Case::new("alter_schema").with(|c| {
                c.request.now = saturday();
                approve(c, "apr-1", &["sam", "tina"]);
            }),
            expect(
                Deny,
                Rule::Guardrail,
                &["prod-admin-outside-change-window"],
                "change window",
            ),
        ),
        (
            "bulk export from a restricted system",
            Case::new("export_customers"),
            expect(
                Deny,
                Rule::Guardrail,
                &["restricted-no-bulk-export"],
                "restricted systems",
            ),
        ),
        (
            "bulk export from a confidential system is allowed",
            Case::new("export_customers").with(|c| {
                c.system = Some(system("payments-db", "prod", Classification::Confidential))
            }),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
        (
            "prod guardrails do not apply in dev",
            Case::new("alter_schema").with(|c| {
                c.request.now = saturday();
                c.request.context.risk = Some(99);
                c.request.agent = p("spiffe://rein.local/agent/payments/invoice-bot/dev");
                c.agent.as_mut().unwrap().id = c.request.agent.clone();
                c.system = Some(system("payments-db", "dev", Classification::Internal));
                c.grants[0].agent = c.request.agent.clone();
            }),
            expect(Allow, Rule::Allow, &[GRANT_1], "allowed"),
        ),
    ];
    for (name, case, e) in &cases {
        let d = case.decide(&g);
        check(name, &d, e, g.version());
        // Steps 0-3 alone (what a credential needs) agree with the full decision up to the
        // guardrails, and allow what only a guardrail refused.
        let access = case.check_access(g.version());
        match d.rule {
            Rule::Guardrail | Rule::Allow => {
                assert_eq!(
                    (access.outcome, access.rule),
                    (Allow, Rule::Allow),
                    "{name}: check_access {access:#?}"
                );
                assert_eq!(access.determined_by.len(), 1, "{name}: the covering grant");
            }
            _ => assert_eq!(
                (
                    &access.outcome,
                    &access.rule,
                    &access.determined_by,
                    &access.reason
                ),
                (&d.outcome, &d.rule, &d.determined_by, &d.reason),
                "{name}: check_access"
            ),
        }
    }
}

#[test]
fn step_up_reports_what_is_needed() {
    let g = examples();
    let d = Case::new("run_sql")
        .with(|c| {
            c.request.context.arguments = json!({"sql": "DROP TABLE t"});
            c.request.context.risk = Some(99);
        })
        .decide(&g);
    let s = d.step_up.expect("step-up details");
    assert_eq!(s.approvers_required, 2);
    assert_eq!(
        s.policies,
        vec![
            "prod-write-high-risk".to_owned(),
            "sql-drop-or-truncate".to_owned()
        ]
    );
    assert_eq!(d.determined_by, s.policies);
}

#[test]
fn shadow_guardrails_report_but_never_decide() {
    let g = examples();
    // Allowed call that the shadow policy would deny.
    let d = Case::new("update_invoice_status")
        .with(|c| c.request.context.intent = None)
        .decide(&g);
    assert_eq!(d.outcome, Outcome::Allow, "{d:#?}");
    assert_eq!(d.shadow.len(), 1);
    assert_eq!(d.shadow[0].policy, "prod-mutation-without-intent");
    assert_eq!(d.shadow[0].verdict, ShadowVerdict::Deny);
    // Step-up call: still a step-up, shadow reported beside it.
    let d = Case::new("update_invoice_status")
        .with(|c| {
            c.request.context.intent = None;
            c.request.context.risk = Some(80);
        })
        .decide(&g);
    assert_eq!(d.outcome, Outcome::StepUp);
    assert_eq!(d.shadow.len(), 1);
    // Same call with an intent: nothing to report.
    let d = Case::new("update_invoice_status").decide(&g);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.shadow.is_empty());

    // A shadow step-up reports the approvers it would need.
    let g = load(&[(
        "s.cedar",
        r#"@id("s") @shadow @step_up("3") forbid (principal, action, resource) when { resource.class == "read" };"#,
    )])
    .unwrap();
    let d = Case::new("select_invoices").decide(&g);
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(
        d.shadow[0].verdict,
        ShadowVerdict::StepUp {
            approvers_required: 3
        }
    );
}

const OVERFLOW: &str = r#"
@id("overflow")
forbid (principal, action, resource)
when { context.time.epoch * 9223372036854775807 > 0 };
"#;

#[test]
fn evaluation_errors_deny_and_shadow_errors_do_not() {
    let g = load(&[("overflow.cedar", OVERFLOW)]).unwrap();
    let d = Case::new("select_invoices").decide(&g);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.rule, Rule::Error);
    assert_eq!(d.determined_by, vec!["overflow".to_owned()]);
    assert!(d.reason.starts_with("error: "), "{}", d.reason);
    assert!(d.reason.contains("overflow"), "{}", d.reason);

    let shadow = OVERFLOW.replace("@id(\"overflow\")", "@id(\"overflow\") @shadow");
    let g = load(&[("overflow.cedar", &shadow)]).unwrap();
    let d = Case::new("select_invoices").decide(&g);
    assert_eq!(d.outcome, Outcome::Allow, "{d:#?}");
    assert!(matches!(d.shadow[0].verdict, ShadowVerdict::Error { .. }));
}

#[test]
fn an_empty_guardrail_set_allows_what_grants_cover() {
    let g = Guardrails::load(&[]).unwrap();
    assert!(g.guardrails().is_empty());
    let d = Case::new("alter_schema")
        .with(|c| c.request.now = saturday())
        .decide(&g);
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.determined_by, vec![GRANT_1.to_owned()]);
    assert_eq!(d.policy_version, g.version());
}

#[test]
fn breaker_trips_only_when_the_agent_asks_for_it() {
    let g = examples();
    let breach = |suspend: bool| {
        Case::new("select_invoices")
            .with(|c| {
                let b = &mut c.agent.as_mut().unwrap().budgets;
                b.calls_per_minute = Some(10);
                b.suspend_on_breach = suspend;
                c.usage.calls_last_minute = 10;
            })
            .decide(&g)
    };
    assert!(!breach(false).trip_breaker);
    let d = breach(true);
    assert_eq!(d.rule, Rule::Budget);
    assert!(d.trip_breaker);
    // Missing the task id is a refusal, not a breach.
    let d = Case::new("select_invoices")
        .with(|c| {
            let b = &mut c.agent.as_mut().unwrap().budgets;
            b.systems_per_task = Some(2);
            b.suspend_on_breach = true;
            c.request.context.task_id = None;
        })
        .decide(&g);
    assert_eq!(d.rule, Rule::Budget);
    assert!(!d.trip_breaker);
    // An allowed call never trips it.
    assert!(!Case::new("select_invoices").decide(&g).trip_breaker);
}

#[test]
fn every_decision_carries_the_argument_digest() {
    let g = examples();
    let d = Case::new("select_invoices")
        .with(|c| c.request.context.arguments = json!({"b": 1, "a": [true, null, "x"]}))
        .decide(&g);
    assert_eq!(
        d.argument_digest,
        "54a65415ad370228851a1da4b31b6fd42dc58b19a50d35cae759325f7388ce64"
    );
    // Also on denials before the guardrails.
    let d = Case::new("select_invoices")
        .with(|c| {
            c.agent = None;
            c.request.context.arguments = Value::Null;
        })
        .decide(&g);
    assert_eq!(
        d.argument_digest,
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

#[test]
fn golden_argument_digests() {
    let goldens: [(Value, &str, &str); 6] = [
        (
            json!({}),
            "{}",
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        ),
        (
            Value::Null,
            "{}",
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        ),
        (
            json!({"b": 1, "a": [true, null, "x"]}),
            r#"{"a":[true,null,"x"],"b":1}"#,
            "54a65415ad370228851a1da4b31b6fd42dc58b19a50d35cae759325f7388ce64",
        ),
        (
            json!({"q": "DROP\n\"t\"/é"}),
            "{\"q\":\"DROP\\n\\\"t\\\"/é\"}",
            "f540d8d99f0c3086271dd4f87e310f6e722df29f47bf476460c4c211a43098aa",
        ),
        (
            serde_json::from_str(r#"{ "n": 1.5, "m": 1e100, "i": -3 }"#).unwrap(),
            r#"{"i":-3,"m":1e+100,"n":1.5}"#,
            "de402d4b4271010ca93f1ebace02c6a261cc62c291e8cc70759b19b1997ea6d6",
        ),
        (
            json!({"z": "\u{1}", "nested": {"a": {"b": [1, {"c": "d"}]}}}),
            r#"{"nested":{"a":{"b":[1,{"c":"d"}]}},"z":"\u0001"}"#,
            "1a00b681bad05affd7858596f22948edbdbb31b843dc4bdc363e17cafb4b63b8",
        ),
    ];
    for (value, canonical, digest) in goldens {
        let ctx = RequestContext {
            arguments: value.clone(),
            ..RequestContext::default()
        };
        if !value.is_null() {
            assert_eq!(canonical_json(&value).unwrap(), canonical);
        }
        assert_eq!(argument_digest(&ctx).unwrap(), digest, "{canonical}");
    }
    // Keys sort by their UTF-8 bytes: uppercase before lowercase, non-ASCII last.
    assert_eq!(
        canonical_json(&json!({"b": 1, "é": 2, "B": 3, "a": 4})).unwrap(),
        r#"{"B":3,"a":4,"b":1,"é":2}"#
    );
}

#[test]
fn context_validation() {
    let ok = RequestContext {
        risk: Some(100),
        confidence: Some(0.0),
        arguments: json!({"a": 1}),
        ..RequestContext::default()
    };
    assert!(ok.validate().is_ok());
    let bad = [
        RequestContext {
            risk: Some(101),
            ..ok.clone()
        },
        RequestContext {
            confidence: Some(-0.01),
            ..ok.clone()
        },
        RequestContext {
            confidence: Some(f64::INFINITY),
            ..ok.clone()
        },
        RequestContext {
            confidence: Some(f64::NAN),
            ..ok.clone()
        },
        RequestContext {
            arguments: json!("text"),
            ..ok.clone()
        },
        RequestContext {
            arguments: json!({"a": "x".repeat(65_536)}),
            ..ok.clone()
        },
        RequestContext {
            task_id: Some("t".repeat(257)),
            ..ok.clone()
        },
        RequestContext {
            approval_id: Some(String::new()),
            ..ok.clone()
        },
        RequestContext {
            intent: Some("i".repeat(4097)),
            ..ok.clone()
        },
    ];
    for ctx in bad {
        let err = ctx.validate().unwrap_err();
        assert_eq!(err.code(), "invalid-context", "{err}");
    }
    // Depth 16 is accepted, 17 is not.
    let nest = |n: usize| (1..n).fold(json!({}), |v, _| json!({ "x": v }));
    assert!(RequestContext {
        arguments: nest(16),
        ..ok.clone()
    }
    .validate()
    .is_ok());
    assert!(RequestContext {
        arguments: nest(17),
        ..ok.clone()
    }
    .validate()
    .is_err());
    // Confidence as a whole percentage, rounded down.
    for (c, pct) in [
        (0.0, 0),
        (0.29, 29),
        (0.795, 79),
        (0.8, 80),
        (0.999, 99),
        (1.0, 100),
    ] {
        let ctx = RequestContext {
            confidence: Some(c),
            ..RequestContext::default()
        };
        assert_eq!(ctx.confidence_pct(), Some(pct), "{c}");
    }
}

#[test]
fn examples_load_with_the_expected_modes() {
    let g = examples();
    let modes: BTreeMap<&str, (Mode, Option<u32>)> = g
        .guardrails()
        .iter()
        .map(|p| (p.id.as_str(), (p.mode, p.step_up)))
        .collect();
    let expected: BTreeMap<&str, (Mode, Option<u32>)> = [
        ("prod-admin-outside-change-window", (Mode::Enforce, None)),
        ("prod-write-high-risk", (Mode::Enforce, Some(1))),
        ("prod-write-low-confidence", (Mode::Enforce, Some(1))),
        ("restricted-no-bulk-export", (Mode::Enforce, None)),
        ("sql-drop-or-truncate", (Mode::Enforce, Some(2))),
        ("sql-delete-without-where", (Mode::Enforce, Some(1))),
        ("sql-grant-statement", (Mode::Enforce, Some(1))),
        ("prod-mutation-without-intent", (Mode::Shadow, None)),
    ]
    .into_iter()
    .collect();
    assert_eq!(modes, expected);
    assert!(g
        .guardrails()
        .iter()
        .all(|p| p.reason.is_some() && p.line > 0));
}

#[test]
fn version_is_a_digest_of_the_sorted_files() {
    let a = (
        "a.cedar",
        r#"@id("a") forbid (principal, action, resource);"#,
    );
    let b = (
        "b.cedar",
        r#"@id("b") forbid (principal, action, resource) when { resource.class == "admin" };"#,
    );
    let v1 = load(&[a, b]).unwrap().version().to_owned();
    let v2 = load(&[b, a]).unwrap().version().to_owned();
    assert_eq!(v1, v2);
    assert!(v1.starts_with("sha256:") && v1.len() == 7 + 64, "{v1}");
    let v3 = load(&[a, ("b.cedar", &format!("{}\n", b.1))])
        .unwrap()
        .version()
        .to_owned();
    assert_ne!(v1, v3);
    let v4 = load(&[a, ("c.cedar", b.1)]).unwrap().version().to_owned();
    assert_ne!(v1, v4);
    assert_ne!(v1, Guardrails::load(&[]).unwrap().version());
}

fn load_err(files: &[(&str, &str)]) -> Vec<PolicyFileError> {
    match load(files) {
        Ok(_) => panic!("expected the set to be rejected"),
        Err(e) => {
            assert!(!e.is_empty());
            assert!(e.iter().all(|e| e.code() == "invalid-policy"));
            e
        }
    }
}

#[test]
fn invalid_policy_files_are_rejected_with_their_place() {
    // Syntax error on line 3.
    let e = load_err(&[(
        "broken.cedar",
        "@id(\"x\")\nforbid (principal, action, resource)\nwhen { resource.class == };\n",
    )]);
    assert_eq!(e[0].file, "broken.cedar");
    assert_eq!(e[0].line, 3, "{e:?}");
    assert!(e[0].column > 1, "{e:?}");

    // Schema violation: an attribute the schema does not have, on line 4.
    let e = load_err(&[(
        "schema.cedar",
        "// header\n@id(\"colour\")\nforbid (principal, action, resource)\nwhen { resource.colour == \"red\" };\n",
    )]);
    assert_eq!(
        (e[0].file.as_str(), e[0].line),
        ("schema.cedar", 4),
        "{e:?}"
    );
    assert!(e[0].message.contains("policy `colour`"), "{e:?}");
    assert!(e[0].message.contains("colour"), "{e:?}");

    // Type error: risk is a Long.
    let e = load_err(&[(
        "types.cedar",
        "@id(\"t\") forbid (principal, action, resource) when { context has risk && context.risk == \"high\" };",
    )]);
    assert_eq!(e[0].line, 1, "{e:?}");

    // Optional attribute read without `has`, tag read without `hasTag`.
    load_err(&[(
        "opt.cedar",
        "@id(\"o\") forbid (principal, action, resource) when { context.risk > 5 };",
    )]);
    load_err(&[(
        "tag.cedar",
        "@id(\"g\") forbid (principal, action, resource) when { context.arguments.getTag(\"sql\") like \"*DROP*\" };",
    )]);

    // Unknown entity type and unknown action.
    load_err(&[(
        "ent.cedar",
        "@id(\"e\") forbid (principal == Robot::\"r\", action, resource);",
    )]);
    load_err(&[(
        "act.cedar",
        "@id(\"a\") forbid (principal, action == Action::\"delete\", resource);",
    )]);

    // A permit, at line 2 column 1.
    let e = load_err(&[(
        "permit.cedar",
        "@id(\"ok\") forbid (principal, action, resource) when { resource.class == \"admin\" };\n@id(\"p\") permit (principal, action, resource);\n",
    )]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (2, 1), "{e:?}");
    assert!(e[0].message.contains("`permit` is not allowed"), "{e:?}");

    // Missing @id.
    let e = load_err(&[("noid.cedar", "forbid (principal, action, resource);")]);
    assert!(e[0].message.contains("missing `@id"), "{e:?}");

    // Duplicate @id across files.
    let e = load_err(&[
        (
            "one.cedar",
            "@id(\"same\") forbid (principal, action, resource);",
        ),
        (
            "two.cedar",
            "\n\n@id(\"same\") forbid (principal, action, resource);",
        ),
    ]);
    assert_eq!((e[0].file.as_str(), e[0].line), ("two.cedar", 3), "{e:?}");
    assert!(e[0].message.contains("duplicate `@id(\"same\")`"), "{e:?}");
    assert!(e[0].message.contains("one.cedar"), "{e:?}");

    // Malformed ids and annotations.
    for (text, needle) in [
        (
            "@id(\"rule:x\") forbid (principal, action, resource);",
            "invalid `@id",
        ),
        (
            "@id(\"\") forbid (principal, action, resource);",
            "invalid `@id",
        ),
        (
            "@id(\"s\") @step_up(\"0\") forbid (principal, action, resource);",
            "invalid `@step_up",
        ),
        (
            "@id(\"s\") @step_up(\"ten\") forbid (principal, action, resource);",
            "invalid `@step_up",
        ),
        (
            "@id(\"s\") @step_up(\"10\") forbid (principal, action, resource);",
            "invalid `@step_up",
        ),
        (
            "@id(\"s\") @shadow(\"yes\") forbid (principal, action, resource);",
            "invalid `@shadow",
        ),
        (
            "@id(\"s\") @stepup forbid (principal, action, resource);",
            "unknown annotation `@stepup`",
        ),
        (
            "@id(\"s\") forbid (principal == ?principal, action, resource);",
            "templates",
        ),
    ] {
        let e = load_err(&[("a.cedar", text)]);
        assert!(
            e.iter().any(|e| e.message.contains(needle)),
            "{text}: {e:?}"
        );
    }

    // The same file name twice.
    let e = load_err(&[
        (
            "a.cedar",
            "@id(\"a\") forbid (principal, action, resource);",
        ),
        (
            "a.cedar",
            "@id(\"b\") forbid (principal, action, resource);",
        ),
    ]);
    assert!(e[0].message.contains("given twice"), "{e:?}");

    // One bad file rejects the whole set, and every problem is reported.
    let e = load_err(&[
        (
            "good.cedar",
            "@id(\"g\") forbid (principal, action, resource);",
        ),
        (
            "bad1.cedar",
            "@id(\"p\") permit (principal, action, resource);",
        ),
        ("bad2.cedar", "forbid (principal, action, resource);"),
    ]);
    let files: BTreeSet<&str> = e.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, BTreeSet::from(["bad1.cedar", "bad2.cedar"]));
    assert!(e[0].to_string().starts_with("bad1.cedar:1:1: "), "{}", e[0]);
}
