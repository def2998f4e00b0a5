//! Internal tests: sliced evaluation equals unsliced evaluation on random policy sets and
//! requests, and the Cedar inputs conform to the schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rein_core::agent::Agent;
use rein_core::system::{ActionClass, ActionSpec, Classification, System};
use serde_json::json;

use crate::cedar::Call;
use crate::request::sha256_hex;
use crate::{Guardrails, Request, RequestContext};

use self::fixtures::p;

/// The unit tests' registry fixture: one prod, restricted `payments-db` with one action of
/// each class (and an unclassified one), an active agent with every accountable role, a
/// grant covering every action, and the example guardrails. It mirrors the one in
/// `tests/decision.rs`, which integration tests cannot share.
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Duration, Utc};
    use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
    use rein_core::grant::{Grant, GrantStatus};
    use rein_core::id::GrantId;
    use rein_core::system::{ActionClass, ActionSpec, Classification, System};
    use serde_json::json;

    use crate::{
        decide, explain, ApprovalEvidence, BudgetUsage, Decision, Explanation, Facts, Guardrails,
        Request, RequestContext,
    };

    /// Parses a test literal.
    pub(crate) fn p<T: std::str::FromStr>(s: &str) -> T {
        s.parse().unwrap_or_else(|_| panic!("bad test literal {s}"))
    }

    /// Wednesday 2026-01-07 10:00 UTC: inside the change window.
    pub(crate) fn wednesday() -> DateTime<Utc> {
        p("2026-01-07T10:00:00Z")
    }

    pub(crate) const AGENT: &str = "spiffe://rein.local/agent/payments/invoice-bot/prod";

    /// Every action of [`system`].
    pub(crate) const ALL_ACTIONS: [&str; 6] = [
        "select_invoices",
        "update_invoice_status",
        "alter_schema",
        "export_customers",
        "run_sql",
        "unclassified",
    ];

    /// [`AGENT`]: active, every accountable role, no budgets.
    pub(crate) fn agent() -> Agent {
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

    /// A system declaring [`ALL_ACTIONS`] (`unclassified` without a class).
    pub(crate) fn system(name: &str, env: &str, classification: Classification) -> System {
        let classes = [
            Some(ActionClass::Read),
            Some(ActionClass::Write),
            Some(ActionClass::Admin),
            Some(ActionClass::Read),
            Some(ActionClass::Write),
            None,
        ];
        let actions: BTreeMap<_, _> = ALL_ACTIONS
            .iter()
            .zip(classes)
            .map(|(action, class)| {
                (
                    p(action),
                    ActionSpec {
                        class,
                        description: String::new(),
                    },
                )
            })
            .collect();
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

    /// An active grant to [`AGENT`] with id `[n; 16]`, expiring 30 days after [`wednesday`].
    pub(crate) fn grant(n: u8, system: &str, actions: &[&str]) -> Grant {
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

    /// The guardrails of `examples/policies`.
    pub(crate) fn examples() -> Guardrails {
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
        Guardrails::load(&files).unwrap()
    }

    /// One request with its facts, ready to be changed by a test case.
    pub(crate) struct Case {
        pub(crate) request: Request,
        pub(crate) agent: Option<Agent>,
        pub(crate) system: Option<System>,
        pub(crate) grants: Vec<Grant>,
        pub(crate) revoked: Option<String>,
        pub(crate) usage: BudgetUsage,
        pub(crate) approval: ApprovalEvidence,
    }

    impl Case {
        /// A confident, low-risk call of `action` on the prod, restricted `payments-db`, with
        /// a grant covering every action.
        pub(crate) fn new(action: &str) -> Self {
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

        pub(crate) fn facts(&self) -> Facts<'_> {
            Facts {
                agent: self.agent.as_ref(),
                system: self.system.as_ref(),
                grants: &self.grants,
                revoked: self.revoked.as_deref(),
                usage: self.usage,
                approval: self.approval.clone(),
            }
        }

        pub(crate) fn decide(&self, guardrails: &Guardrails) -> Decision {
            decide(&self.request, &self.facts(), guardrails)
        }

        pub(crate) fn explain(&self, guardrails: &Guardrails) -> Explanation {
            explain(&self.request, &self.facts(), guardrails)
        }

        pub(crate) fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }

    /// Attaches approval `id`, checked valid with `approvers`.
    pub(crate) fn approve(case: &mut Case, id: &str, approvers: &[&str]) {
        case.request.context.approval_id = Some(id.into());
        case.approval = ApprovalEvidence::ValidFor {
            approval_id: id.into(),
            approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
        };
    }
}

const TEAMS: [&str; 3] = ["payments", "platform", "search"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const SYSTEMS: [&str; 4] = ["payments-db", "tickets", "search-api", "vault"];
const CLASSIFICATIONS: [&str; 4] = ["public", "internal", "confidential", "restricted"];
const CLASSES: [&str; 3] = ["read", "write", "admin"];
const TOOLS: [(&str, ActionClass); 5] = [
    ("select_rows", ActionClass::Read),
    ("export_rows", ActionClass::Read),
    ("update_row", ActionClass::Write),
    ("delete_row", ActionClass::Admin),
    ("alter_schema", ActionClass::Admin),
];

fn agent_id(team: &str, name: &str, env: &str) -> String {
    format!("spiffe://rein.local/agent/{team}/{name}/{env}")
}

/// The fixture agent under another id (Cedar sees only its id, status, use case, business
/// owner, review cadence and whether its roles are complete).
fn agent(team: &str, name: &str, env: &str) -> Agent {
    Agent {
        id: p(&agent_id(team, name, env)),
        use_case: "tests".into(),
        ..fixtures::agent()
    }
}

/// The fixture system with its name, owner and classification, declaring [`TOOLS`].
fn system(name: &str, env: &str, owner: &str, classification: Classification) -> System {
    System {
        owner_team: p(owner),
        actions: TOOLS
            .iter()
            .map(|(n, c)| {
                (
                    p(n),
                    ActionSpec {
                        class: Some(*c),
                        description: String::new(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        ..fixtures::system(name, env, classification)
    }
}

fn classification(s: &str) -> Classification {
    match s {
        "public" => Classification::Public,
        "internal" => Classification::Internal,
        "confidential" => Classification::Confidential,
        _ => Classification::Restricted,
    }
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or_default()
}

/// A random indexed condition (a pin, or a `||` of pins) over the request.
fn pin_atom(rng: &mut StdRng) -> String {
    match rng.gen_range(0..13) {
        0 => format!("resource.class == \"{}\"", pick(rng, &CLASSES)),
        1 => format!(
            "[\"{}\", \"{}\"].contains(resource.class)",
            pick(rng, &CLASSES),
            pick(rng, &CLASSES)
        ),
        2 => format!("principal.environment == \"{}\"", pick(rng, &ENVS)),
        3 => format!("\"{}\" == resource.system.environment", pick(rng, &ENVS)),
        4 => format!(
            "resource.system.classification == \"{}\"",
            pick(rng, &CLASSIFICATIONS)
        ),
        5 => format!("principal.team == Team::\"{}\"", pick(rng, &TEAMS)),
        6 => format!("principal in Team::\"{}\"", pick(rng, &TEAMS)),
        7 => {
            let names: Vec<&str> = TOOLS.iter().map(|t| t.0).collect();
            format!("resource.name == \"{}\"", pick(rng, &names))
        }
        8 => format!("resource.system == System::\"{}\"", pick(rng, &SYSTEMS)),
        9 => format!("resource in System::\"{}\"", pick(rng, &SYSTEMS)),
        10 => format!("resource.system.name == \"{}\"", pick(rng, &SYSTEMS)),
        11 => format!(
            "(resource.class == \"{}\" || resource.class == \"{}\")",
            pick(rng, &CLASSES),
            pick(rng, &CLASSES)
        ),
        _ => format!(
            // `||` across two dimensions: not a pin, but error-free.
            "(resource.class == \"{}\" || principal.environment == \"{}\")",
            pick(rng, &CLASSES),
            pick(rng, &ENVS)
        ),
    }
}

/// A random condition that is not a pin; some can raise errors, many are pre-filter checks.
fn other_atom(rng: &mut StdRng) -> String {
    let cmp = ["==", "!=", "<", "<=", ">", ">="];
    let op = pick(rng, &cmp);
    match rng.gen_range(0..22) {
        0 => format!(
            "context has risk && context.risk {op} {}",
            rng.gen_range(0..=100)
        ),
        1 => format!("context.time.hour {op} {}", rng.gen_range(0..24)),
        2 => format!(
            "resource.name like \"{}\"",
            pick(
                rng,
                &[
                    "*export*",
                    "*row*",
                    "select_*",
                    "*_rows",
                    "*",
                    "",
                    "update_row",
                    "*e*e*"
                ]
            )
        ),
        3 => format!(
            "context.arguments.hasTag(\"{}\") && context.arguments.getTag(\"{}\") like \"{}\"",
            pick(rng, &["sql", "limit"]),
            pick(rng, &["sql", "limit"]),
            pick(rng, &["*DROP*", "5", "*1*", "select*"])
        )
        .replace(
            "hasTag(\"sql\") && context.arguments.getTag(\"limit\")",
            "hasTag(\"limit\") && context.arguments.getTag(\"limit\")",
        )
        .replace(
            "hasTag(\"limit\") && context.arguments.getTag(\"sql\")",
            "hasTag(\"sql\") && context.arguments.getTag(\"sql\")",
        ),
        4 => "resource.mutating".to_owned(),
        5 => format!(
            "context.arguments_text like \"{}\"",
            pick(
                rng,
                &["*DROP*", "*drop*", "{}", "*\\\"limit\\\":5*", "*select 1*"]
            )
        ),
        // Overflows for a 2026 epoch (about 1.8e9 × 1e10 > 9.2e18).
        6 => format!(
            "context.time.epoch * {} > 0",
            if rng.gen_bool(0.5) {
                10_000_000_000i64
            } else {
                2
            }
        ),
        // Reads an entity that is never in the store: an error whenever reached.
        7 => "System::\"ghost\".environment == \"prod\"".to_owned(),
        8 => format!(
            "(if context has confidence_pct then context.confidence_pct {op} {} else {})",
            rng.gen_range(0..=100),
            rng.gen_bool(0.5)
        ),
        9 => format!("context.time.day_of_week {op} {}", rng.gen_range(1..=7)),
        10 => format!(
            "(context.time.minute_of_day < {} || context.time.minute_of_day >= {})",
            rng.gen_range(0..1440),
            rng.gen_range(0..1440)
        ),
        11 => format!(
            "[{}, {}].contains(context.time.day_of_week)",
            rng.gen_range(1..=7),
            rng.gen_range(1..=7)
        ),
        12 => "!(context has intent)".to_owned(),
        13 => format!(
            "context has task_id && context.task_id like \"{}\"",
            pick(rng, &["task*", "*x*"])
        ),
        14 => format!("principal.name == \"{}\"", pick(rng, &["bot", "other"])),
        15 => format!("principal.status {} \"active\"", pick(rng, &["==", "!="])),
        16 => format!(
            "principal.use_case like \"{}\"",
            pick(rng, &["test*", "*x"])
        ),
        17 => "principal.has_accountable_roles".to_owned(),
        18 => format!("context.approval_attached == {}", rng.gen_bool(0.5)),
        19 => format!(
            "context.argument_digest like \"{}*\"",
            pick(rng, &["4", "a", "e"])
        ),
        20 => {
            format!("context has confidence_pct && context.confidence_pct {op} context.time.minute")
        }
        _ => format!("context.time.minute {op} {}", rng.gen_range(0..60)),
    }
}

fn random_policy(rng: &mut StdRng, id: usize) -> String {
    let mut annotations = format!("@id(\"p{id}\")");
    match rng.gen_range(0..6) {
        0 => annotations.push_str(" @step_up"),
        1 => annotations.push_str(" @shadow"),
        2 => annotations.push_str(" @step_up(\"2\") @shadow"),
        _ => {}
    }
    let principal = match rng.gen_range(0..6) {
        0 => format!(
            "principal == Agent::\"{}\"",
            agent_id(pick(rng, &TEAMS), "bot", pick(rng, &ENVS))
        ),
        1 => format!("principal in Team::\"{}\"", pick(rng, &TEAMS)),
        2 => format!("principal is Agent in Team::\"{}\"", pick(rng, &TEAMS)),
        _ => "principal".to_owned(),
    };
    let resource = match rng.gen_range(0..6) {
        0 => format!(
            "resource == Tool::\"{}/{}\"",
            pick(rng, &SYSTEMS),
            TOOLS.choose(rng).map(|t| t.0).unwrap_or_default()
        ),
        1 => format!("resource in System::\"{}\"", pick(rng, &SYSTEMS)),
        _ => "resource".to_owned(),
    };
    let mut clauses = Vec::new();
    for _ in 0..rng.gen_range(0..3) {
        let atoms: Vec<String> = (0..rng.gen_range(1..4))
            .map(|_| {
                if rng.gen_bool(0.6) {
                    pin_atom(rng)
                } else {
                    other_atom(rng)
                }
            })
            .collect();
        let kind = if rng.gen_bool(0.8) { "when" } else { "unless" };
        clauses.push(format!("{kind} {{ {} }}", atoms.join(" && ")));
    }
    format!(
        "{annotations}\nforbid ({principal}, action == Action::\"call\", {resource})\n{};\n",
        clauses.join("\n")
    )
}

struct World {
    agents: Vec<Agent>,
    systems: Vec<System>,
}

fn world() -> World {
    let mut agents = Vec::new();
    for team in TEAMS {
        for env in ENVS {
            agents.push(agent(team, "bot", env));
        }
    }
    let mut systems = Vec::new();
    for (i, name) in SYSTEMS.iter().enumerate() {
        for (j, env) in ENVS.iter().enumerate() {
            let owner = TEAMS
                .get((i + j) % TEAMS.len())
                .copied()
                .unwrap_or("payments");
            let class = CLASSIFICATIONS
                .get((i * 3 + j) % CLASSIFICATIONS.len())
                .copied()
                .unwrap_or("internal");
            systems.push(system(name, env, owner, classification(class)));
        }
    }
    World { agents, systems }
}

fn random_request(rng: &mut StdRng, w: &World) -> (usize, usize, Request) {
    let a = rng.gen_range(0..w.agents.len());
    let s = rng.gen_range(0..w.systems.len());
    let tool = TOOLS.choose(rng).map(|t| t.0).unwrap_or("select_rows");
    let base: DateTime<Utc> = p("2026-01-05T00:00:00Z");
    let arguments = match rng.gen_range(0..4) {
        0 => json!({}),
        1 => json!({"sql": "DROP TABLE t"}),
        2 => json!({"limit": "5", "sql": "select 1 from t"}),
        _ => json!({"sql": "select 1", "limit": 5}),
    };
    let req = Request {
        agent: w.agents.get(a).map(|x| x.id.clone()).unwrap(),
        system: w.systems.get(s).map(|x| x.name.clone()).unwrap(),
        action: p(tool),
        context: RequestContext {
            task_id: rng.gen_bool(0.8).then(|| "task".to_owned()),
            intent: rng.gen_bool(0.5).then(|| "fix".to_owned()),
            risk: rng.gen_bool(0.7).then(|| rng.gen_range(0..=100)),
            confidence: rng.gen_bool(0.7).then(|| rng.gen_range(0.0..=1.0)),
            arguments,
            approval_id: rng.gen_bool(0.3).then(|| "apr".to_owned()),
        },
        now: base + Duration::minutes(rng.gen_range(0..7 * 24 * 60)),
    };
    (a, s, req)
}

#[test]
fn sliced_evaluation_equals_unsliced_evaluation() {
    let w = world();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let (mut evaluated, mut candidates_total, mut policies_total) = (0usize, 0usize, 0usize);
    let (mut satisfied_seen, mut errors_seen) = (0usize, 0usize);
    for set in 0..12 {
        let policies: String = (0..30).map(|i| random_policy(&mut rng, i)).collect();
        let g = Guardrails::load(&[("random.cedar".to_owned(), policies.clone())])
            .unwrap_or_else(|e| panic!("set {set} does not load: {e:?}\n{policies}"));
        for _ in 0..40 {
            let (a, s, req) = random_request(&mut rng, &w);
            let agent = w.agents.get(a).unwrap();
            let system = w.systems.get(s).unwrap();
            let text = req.context.canonical_arguments().unwrap();
            let digest = sha256_hex(text.as_bytes());
            let call = Call {
                req: &req,
                agent,
                system,
                class: system.class_of(&req.action).unwrap(),
                arguments_text: &text,
                digest: &digest,
            };
            let sliced = g.evaluate(&call, true).unwrap();
            let unsliced = g.evaluate(&call, false).unwrap();
            assert_eq!(
                sliced, unsliced,
                "set {set}: slicing changed the result for {req:?}\npolicies:\n{policies}"
            );
            candidates_total += g.index_candidates(&call).len();
            policies_total += 30;
            satisfied_seen += unsliced.satisfied.len();
            errors_seen += unsliced.errors.len();
            evaluated += 1;
        }
    }
    // The generator exercises both outcomes, and slicing does prune.
    assert!(
        satisfied_seen > 50,
        "only {satisfied_seen} matches in {evaluated} requests"
    );
    assert!(
        errors_seen > 20,
        "only {errors_seen} errors in {evaluated} requests"
    );
    assert!(
        candidates_total * 2 < policies_total,
        "slicing kept {candidates_total} of {policies_total}"
    );
}

/// The pre-filter is exact where it decides: for single error-free conditions, its answer
/// equals Cedar's on every request.
#[test]
fn prefilter_agrees_with_cedar() {
    let w = world();
    let mut rng = StdRng::seed_from_u64(0xc0ffee);
    let mut atoms = Vec::new();
    while atoms.len() < 150 {
        let atom = other_atom(&mut rng);
        // Only error-free conditions are ever pre-filtered.
        if !atom.contains("epoch") && !atom.contains("ghost") {
            atoms.push(atom);
        }
    }
    let text: String = atoms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!("@id(\"a{i}\") forbid (principal, action, resource) when {{ {a} }};\n")
        })
        .collect();
    let g = Guardrails::load(&[("atoms.cedar".to_owned(), text.clone())])
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let checks: Vec<crate::prefilter::Check> = g
        .policy_set()
        .policies()
        .map(|p| {
            let id: &str = p.id().as_ref();
            let i: usize = id.trim_start_matches('a').parse().unwrap();
            (i, p)
        })
        .collect::<BTreeMap<_, _>>()
        .values()
        .map(|p| {
            let pst = p.to_pst().unwrap();
            match pst.body().clauses().first() {
                Some(cedar_policy::pst::Clause::When(e)) => crate::prefilter::compile(e),
                _ => panic!("one when clause"),
            }
        })
        .collect();
    let (mut decided, mut total, mut trues) = (0usize, 0usize, 0usize);
    for _ in 0..300 {
        let (a, s, req) = random_request(&mut rng, &w);
        let agent = w.agents.get(a).unwrap();
        let system = w.systems.get(s).unwrap();
        let text = req.context.canonical_arguments().unwrap();
        let digest = sha256_hex(text.as_bytes());
        let call = Call {
            req: &req,
            agent,
            system,
            class: system.class_of(&req.action).unwrap(),
            arguments_text: &text,
            digest: &digest,
        };
        let cedar = g.evaluate(&call, false).unwrap();
        assert!(cedar.errors.is_empty(), "{:?}", cedar.errors);
        for (i, check) in checks.iter().enumerate() {
            total += 1;
            if let Some(b) = crate::prefilter::truth(check, &call) {
                decided += 1;
                trues += usize::from(b);
                assert_eq!(
                    b,
                    cedar.satisfied.contains(&i),
                    "`{}` on {req:?}",
                    atoms.get(i).unwrap()
                );
            }
        }
    }
    assert!(
        decided * 10 > total * 9,
        "decided only {decided} of {total}"
    );
    assert!(
        trues * 5 > decided && trues * 5 < decided * 4,
        "{trues} true of {decided}"
    );
}

#[test]
fn like_patterns_match_as_cedar_does() {
    let cases = [
        ("", "", true),
        ("", "a", false),
        ("*", "", true),
        ("a*a", "a", false),
        ("a*a", "aa", true),
        ("a*a", "aba", true),
        ("**", "x", true),
        ("*a*b*", "xxbxa", false),
        ("*a*b*", "xaxb", true),
        ("é*", "éa", true),
        ("*é", "aé", true),
        ("ab", "ab", true),
        ("ab", "abc", false),
        ("*DROP *", "{\"sql\":\"DROP TABLE t\"}", true),
    ];
    for (pattern, text, expected) in cases {
        let policy = format!(
            "forbid (principal, action, resource) when {{ resource.name like \"{pattern}\" }};"
        );
        let parsed: cedar_policy::Policy = policy.parse().unwrap();
        let pst = parsed.to_pst().unwrap();
        let Some(cedar_policy::pst::Clause::When(e)) = pst.body().clauses().first() else {
            panic!("one when clause")
        };
        let cedar_policy::pst::Expr::Like { pattern: elems, .. } = e.as_ref() else {
            panic!("a like")
        };
        let compiled = crate::prefilter::Pattern::new(elems);
        assert_eq!(
            compiled.matches(text),
            expected,
            "`{text}` like `{pattern}`"
        );
        // Cedar agrees.
        let expr: cedar_policy::Expression =
            format!("\"{}\" like \"{pattern}\"", text.escape_default())
                .parse()
                .unwrap();
        let request = cedar_policy::Request::new(
            p::<cedar_policy::EntityUid>(r#"Agent::"a""#),
            p::<cedar_policy::EntityUid>(r#"Action::"call""#),
            p::<cedar_policy::EntityUid>(r#"Tool::"t""#),
            cedar_policy::Context::empty(),
            None,
        )
        .unwrap();
        let v = cedar_policy::eval_expression(&request, &cedar_policy::Entities::empty(), &expr)
            .unwrap();
        assert_eq!(
            v,
            cedar_policy::EvalResult::Bool(expected),
            "cedar: `{text}` like `{pattern}`"
        );
    }
}

#[test]
fn pins_stop_at_the_first_conjunct_that_may_err() {
    let load = |text: &str| Guardrails::load(&[("t.cedar".to_owned(), text.to_owned())]).unwrap();
    let w = world();
    let agent = w.agents.first().unwrap();
    // A dev read: not admin, not prod.
    let system = w
        .systems
        .iter()
        .find(|s| s.environment.as_str() == "dev")
        .unwrap();
    let req = Request {
        agent: agent.id.clone(),
        system: system.name.clone(),
        action: p("select_rows"),
        context: RequestContext::default(),
        now: p("2026-01-07T10:00:00Z"),
    };
    let text = req.context.canonical_arguments().unwrap();
    let digest = sha256_hex(text.as_bytes());
    let call = Call {
        req: &req,
        agent,
        system,
        class: ActionClass::Read,
        arguments_text: &text,
        digest: &digest,
    };
    let count = |g: &Guardrails| g.index_candidates(&call).len();
    // A pin before the overflow: the policy is skipped, and indeed never errs for reads.
    let g = load(
        r#"@id("a") forbid (principal, action, resource) when { resource.class == "admin" && context.time.epoch * 10000000000 > 0 };"#,
    );
    assert_eq!(count(&g), 0);
    // The overflow comes first: the pin after it must not be used, the error must surface.
    let g = load(
        r#"@id("a") forbid (principal, action, resource) when { context.time.epoch * 10000000000 > 0 && resource.class == "admin" };"#,
    );
    assert_eq!(count(&g), 1);
    assert_eq!(g.evaluate(&call, true).unwrap().errors.len(), 1);
    // An `unless` is never a pin.
    let g = load(
        r#"@id("a") forbid (principal, action, resource) unless { resource.class == "admin" };"#,
    );
    assert_eq!(count(&g), 1);
    assert_eq!(g.evaluate(&call, true).unwrap().satisfied, vec![0]);
    // Pins intersect; conflicting pins match nothing.
    let g = load(
        r#"@id("a") forbid (principal, action, resource) when { resource.class == "read" && resource.class == "admin" };"#,
    );
    assert_eq!(count(&g), 0);
}

#[test]
fn cedar_inputs_conform_to_the_schema() {
    let w = world();
    let g = Guardrails::load(&[]).unwrap();
    let agent = w.agents.first().unwrap();
    let system = w.systems.first().unwrap();
    let req = Request {
        agent: agent.id.clone(),
        system: system.name.clone(),
        action: p("update_row"),
        context: RequestContext {
            task_id: Some("t-1".into()),
            intent: Some("fix".into()),
            risk: Some(50),
            confidence: Some(0.5),
            arguments: json!({"sql": "x", "n": 1, "o": {"a": [1]}}),
            approval_id: Some("apr".into()),
        },
        now: p("2026-01-07T10:00:00Z"),
    };
    let facts = crate::Facts {
        agent: Some(agent),
        system: Some(system),
        grants: &[],
        revoked: None,
        usage: crate::BudgetUsage::default(),
        approval: crate::ApprovalEvidence::None,
    };
    let (request, entities) = g.cedar_inputs(&req, &facts).unwrap();
    cedar_policy::Entities::from_entities(entities.iter().cloned(), Some(g.schema()))
        .unwrap_or_else(|e| panic!("entities do not conform: {e}"));
    cedar_policy::Request::new(
        request.principal().unwrap().clone(),
        request.action().unwrap().clone(),
        request.resource().unwrap().clone(),
        request.context().unwrap().clone(),
        Some(g.schema()),
    )
    .unwrap_or_else(|e| panic!("request does not conform: {e}"));
    // And with the optional context attributes left out.
    let bare = Request {
        context: RequestContext::default(),
        ..req
    };
    let (request, _) = g.cedar_inputs(&bare, &facts).unwrap();
    cedar_policy::Request::new(
        request.principal().unwrap().clone(),
        request.action().unwrap().clone(),
        request.resource().unwrap().clone(),
        request.context().unwrap().clone(),
        Some(g.schema()),
    )
    .unwrap_or_else(|e| panic!("request does not conform: {e}"));
    // The argument tags: strings as given, other values as canonical JSON.
    let args = entities
        .get(&p(r#"Arguments::"call""#))
        .expect("the arguments entity");
    let tag = |k: &str| args.tag(k).and_then(Result::ok).map(|v| v.to_string());
    assert_eq!(tag("sql").as_deref(), Some("\"x\""));
    assert_eq!(tag("n").as_deref(), Some("\"1\""));
    assert_eq!(tag("o").as_deref(), Some(r#""{\"a\":[1]}""#));
}

#[test]
fn guardrails_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Guardrails>();
}
