//! One decision in process: 1,000 agents, 10,000 grants and 100 guardrails, facts looked up from
//! in-memory maps as the caller does, beside a bare `cedar_policy::Authorizer::is_authorized`
//! over the same 100 policies and the same request and entities, in the same run.
//!
//! `cargo bench -p rein-policy --bench decision` runs the criterion benchmarks, then times
//! single decisions one by one and prints p50/p99: 100,000 over a mix of calls (most allowed,
//! as in production), 100,000 over calls that match guardrails (so Cedar runs), and 20,000 bare
//! authorizations. With `REIN_BENCH_PROFILE=mix` (or `=matching`) it only runs decisions for 8
//! seconds, for `perf record`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::Criterion;
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::{AgentId, GrantId, SystemName};
use rein_core::schedule::{Day, Schedule, Window};
use rein_core::system::{ActionClass, ActionSpec, Classification, System};
use rein_policy::{
    decide, ApprovalEvidence, BudgetUsage, Facts, Guardrails, Request, RequestContext,
};
use serde_json::json;

fn p<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| panic!("bad literal {s}"))
}

const TEAMS: usize = 20;
const AGENTS_PER_TEAM: usize = 50;
const SYSTEMS: usize = 50;
const GRANTS_PER_AGENT: usize = 10;
const ENVS: [&str; 3] = ["prod", "prod", "staging"];
const TOOLS: [(&str, ActionClass); 10] = [
    ("select_rows", ActionClass::Read),
    ("search", ActionClass::Read),
    ("get_record", ActionClass::Read),
    ("export_rows", ActionClass::Read),
    ("insert_row", ActionClass::Write),
    ("update_row", ActionClass::Write),
    ("run_sql", ActionClass::Write),
    ("close_ticket", ActionClass::Write),
    ("delete_row", ActionClass::Admin),
    ("alter_schema", ActionClass::Admin),
];

fn team(i: usize) -> String {
    format!("team-{i:02}")
}

fn env_of_system(s: usize) -> &'static str {
    ENVS[s % ENVS.len()]
}

/// The in-memory facts a caller keeps.
struct World {
    agents: HashMap<AgentId, Agent>,
    systems: HashMap<SystemName, System>,
    grants: HashMap<(AgentId, SystemName), Vec<Grant>>,
    /// (agent, system, action) triples some grant covers, to rotate requests over.
    granted: Vec<(AgentId, SystemName, String)>,
}

fn world(now: DateTime<Utc>) -> World {
    let mut systems = HashMap::new();
    for s in 0..SYSTEMS {
        let classification = match s % 4 {
            0 => Classification::Restricted,
            1 => Classification::Confidential,
            2 => Classification::Internal,
            _ => Classification::Public,
        };
        let system = System {
            name: p(&format!("system-{s:02}")),
            description: String::new(),
            environment: p(env_of_system(s)),
            owner_team: p(&team(s % TEAMS)),
            approvers: vec![p("team:secops")],
            classification,
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
            created_at: now,
            updated_at: now,
            mcp: None,
        };
        systems.insert(system.name.clone(), system);
    }
    let mut agents = HashMap::new();
    let mut grants: HashMap<(AgentId, SystemName), Vec<Grant>> = HashMap::new();
    let mut granted = Vec::new();
    let mut n: u64 = 0;
    for t in 0..TEAMS {
        for a in 0..AGENTS_PER_TEAM {
            // Agents in prod or staging; their grants are on systems of the same environment.
            let env = if a % 3 == 2 { "staging" } else { "prod" };
            let id: AgentId = p(&format!(
                "spiffe://rein.local/agent/{}/agent-{a:02}/{env}",
                team(t)
            ));
            agents.insert(
                id.clone(),
                Agent {
                    id: id.clone(),
                    description: String::new(),
                    use_case: "bench".into(),
                    roles: AccountableRoles {
                        business_owner: Some(p("olivia")),
                        approvers: vec![p("team:leads")],
                        revokers: vec![p("team:secops")],
                        reviewers: vec![p("user:rita")],
                        review_cadence_days: Some(90),
                    },
                    last_review: None,
                    status: AgentStatus::Active,
                    status_reason: None,
                    keys: vec![],
                    budgets: Budgets {
                        calls_per_minute: Some(600),
                        mutations_per_task: Some(100),
                        systems_per_task: Some(10),
                        suspend_on_breach: true,
                    },
                    created_by: p("dave"),
                    created_at: now,
                    updated_at: now,
                },
            );
            let candidates: Vec<usize> =
                (0..SYSTEMS).filter(|s| env_of_system(*s) == env).collect();
            for g in 0..GRANTS_PER_AGENT {
                let s = candidates[(t * 7 + a * 3 + g) % candidates.len()];
                let system: SystemName = p(&format!("system-{s:02}"));
                let actions: Vec<&str> = TOOLS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i + g + a) % 3 != 0)
                    .map(|(_, t)| t.0)
                    .collect();
                n += 1;
                let mut bytes = [0u8; 16];
                bytes[8..].copy_from_slice(&n.to_be_bytes());
                let schedule = (g % 4 == 0).then(|| Schedule {
                    timezone: "Europe/Berlin".into(),
                    windows: vec![Window {
                        days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
                        start: p("06:00"),
                        end: p("22:00"),
                    }],
                });
                let grant = Grant {
                    id: GrantId::from_bytes(bytes),
                    agent: id.clone(),
                    system: system.clone(),
                    actions: actions.iter().map(|a| p(a)).collect(),
                    expires_at: now + chrono::Duration::days(30),
                    schedule,
                    max_token_ttl_secs: None,
                    justification: "bench".into(),
                    requested_by: p("dave"),
                    requested_at: now,
                    status: GrantStatus::Active,
                    mutates_production: env == "prod",
                    approvers: vec![p("team:secops")],
                    business_owner_approver: None,
                    approvals: vec![],
                    revokers: vec![],
                    closed: None,
                    updated_at: now,
                };
                for action in &actions {
                    granted.push((id.clone(), system.clone(), (*action).to_owned()));
                }
                grants.entry((id.clone(), system)).or_default().push(grant);
            }
        }
    }
    World {
        agents,
        systems,
        grants,
        granted,
    }
}

/// 100 guardrails: the 8 shipped examples and 92 of the shapes a security team writes: per
/// team, per system, per environment and classification, time windows, argument patterns,
/// some in shadow mode.
fn guardrail_files() -> Vec<(String, String)> {
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
    let mut generated = String::new();
    let mut n = 0;
    let mut add = |body: String, generated: &mut String| {
        let annotations = match n % 10 {
            0 => "@step_up ",
            7 => "@shadow ",
            _ => "",
        };
        generated.push_str(&format!(
            "@id(\"g{n:03}\") @reason(\"generated guardrail {n}\") {annotations}\n{body}\n\n"
        ));
        n += 1;
    };
    for t in 0..TEAMS {
        add(
            format!(
                "forbid (principal in Team::\"{}\", action == Action::\"call\", resource) when {{ resource.class == \"admin\" && context has risk && context.risk > 80 }};",
                team(t)
            ),
            &mut generated,
        );
        add(
            format!(
                "forbid (principal, action == Action::\"call\", resource) when {{ principal.team == Team::\"{}\" && resource.system.classification == \"restricted\" && resource.name like \"*delete*\" }};",
                team(t)
            ),
            &mut generated,
        );
    }
    for s in 0..30 {
        add(
            format!(
                "forbid (principal, action == Action::\"call\", resource in System::\"system-{s:02}\") when {{ context.time.hour < 2 && resource.mutating }};"
            ),
            &mut generated,
        );
    }
    for (i, tool) in TOOLS.iter().enumerate().take(6) {
        add(
            format!(
                "forbid (principal, action == Action::\"call\", resource) when {{ resource.name == \"{}\" && resource.system.environment == \"prod\" && context has confidence_pct && context.confidence_pct < {} }};",
                tool.0,
                40 + i * 5
            ),
            &mut generated,
        );
    }
    for env in ["prod", "staging"] {
        for class in ["write", "admin"] {
            add(
                format!(
                    "forbid (principal, action == Action::\"call\", resource) when {{ principal.environment == \"{env}\" && resource.class == \"{class}\" && context.time.day_of_week == 7 }};"
                ),
                &mut generated,
            );
        }
    }
    for c in ["restricted", "confidential"] {
        for pattern in ["*password*", "*ssn*", "*secret*"] {
            add(
                format!(
                    "forbid (principal, action == Action::\"call\", resource) when {{ resource.system.classification == \"{c}\" && context.arguments_text like \"{pattern}\" }};"
                ),
                &mut generated,
            );
        }
    }
    for k in 0..6 {
        add(
            format!(
                "forbid (principal, action == Action::\"call\", resource) when {{ [\"write\", \"admin\"].contains(resource.class) && resource.system.environment == \"prod\" && context.arguments.hasTag(\"limit\") && context.arguments.getTag(\"limit\") == \"{}\" }};",
                10_000 * (k + 1)
            ),
            &mut generated,
        );
    }
    files.push(("generated.cedar".to_owned(), generated));
    let g = Guardrails::load(&files).unwrap();
    assert_eq!(g.guardrails().len(), 100, "the bench wants 100 guardrails");
    files
}

fn requests(w: &World, now: DateTime<Utc>) -> Vec<Request> {
    let mut out = Vec::new();
    for (i, (agent, system, action)) in w.granted.iter().enumerate().step_by(7).take(4096) {
        let arguments = match i % 4 {
            0 => json!({"id": i, "limit": 100}),
            1 => json!({"sql": "UPDATE invoices SET status = 'paid' WHERE id = 4"}),
            2 => json!({"query": "status:open", "fields": ["id", "title"], "page": 2}),
            _ => json!({}),
        };
        out.push(Request {
            agent: agent.clone(),
            system: system.clone(),
            action: p(action),
            context: RequestContext {
                task_id: Some(format!("task-{}", i % 97)),
                intent: Some("reconcile invoices".into()),
                risk: Some((i % 60) as u8),
                confidence: Some(0.9),
                arguments,
                approval_id: None,
            },
            now,
        });
    }
    out
}

/// The same calls stated as risky, unsure and destructive: every one matches guardrails
/// (a step-up at least), so Cedar evaluates them.
fn matching(reqs: &[Request]) -> Vec<Request> {
    reqs.iter()
        .map(|r| {
            let mut r = r.clone();
            r.context.risk = Some(95);
            r.context.confidence = Some(0.5);
            r.context.arguments = json!({"sql": "DROP TABLE invoices", "limit": 10000});
            r
        })
        .collect()
}

fn facts<'a>(w: &'a World, req: &Request) -> Facts<'a> {
    Facts {
        agent: w.agents.get(&req.agent),
        system: w.systems.get(&req.system),
        grants: w
            .grants
            .get(&(req.agent.clone(), req.system.clone()))
            .map_or(&[], Vec::as_slice),
        revoked: None,
        usage: BudgetUsage {
            calls_last_minute: 10,
            task_mutations: 2,
            task_systems: 2,
        },
        approval: ApprovalEvidence::None,
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99), at(0.999))
}

fn main() {
    // Wednesday 2026-01-07 11:00 UTC.
    let now: DateTime<Utc> = p("2026-01-07T11:00:00Z");
    let w = world(now);
    assert_eq!(w.agents.len(), 1_000);
    assert_eq!(w.grants.values().map(Vec::len).sum::<usize>(), 10_000);
    let guardrails = Guardrails::load(&guardrail_files()).unwrap();
    let reqs = requests(&w, now);
    let hits = matching(&reqs);
    let cedar: Vec<_> = reqs
        .iter()
        .map(|r| guardrails.cedar_inputs(r, &facts(&w, r)).unwrap())
        .collect();
    let full = guardrails.policy_set();
    let authorizer = cedar_policy::Authorizer::new();

    for (name, list) in [("mix", &reqs), ("matching", &hits)] {
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for r in list {
            let d = decide(r, &facts(&w, r), &guardrails);
            *outcomes
                .entry(format!("{} by {}", d.outcome.as_str(), d.rule.as_str()))
                .or_default() += 1;
        }
        println!(
            "{name}: {} distinct calls, outcomes {outcomes:?}",
            list.len()
        );
    }

    if let Some(which) = std::env::var_os("REIN_BENCH_PROFILE") {
        let reqs = if which == "matching" { &hits } else { &reqs };
        let start = Instant::now();
        let mut k = 0usize;
        while start.elapsed() < Duration::from_secs(8) {
            let r = &reqs[k % reqs.len()];
            black_box(decide(r, &facts(&w, r), &guardrails));
            k += 1;
        }
        println!("{k} decisions");
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("policy");
    let mut i = 0usize;
    group.bench_function("decide (1k agents, 10k grants, 100 guardrails)", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let r = &reqs[i];
            black_box(decide(r, &facts(&w, r), &guardrails))
        })
    });
    let mut h = 0usize;
    group.bench_function("decide, calls matching guardrails", |b| {
        b.iter(|| {
            h = (h + 1) % hits.len();
            let r = &hits[h];
            black_box(decide(r, &facts(&w, r), &guardrails))
        })
    });
    let mut j = 0usize;
    group.bench_function("bare Authorizer::is_authorized (100 policies)", |b| {
        b.iter(|| {
            j = (j + 1) % cedar.len();
            let (request, entities) = &cedar[j];
            black_box(authorizer.is_authorized(request, full, entities))
        })
    });
    group.finish();
    c.final_summary();

    // One decision at a time, each timed: the p99 criterion does not report.
    let time = |n: usize, f: &mut dyn FnMut(usize)| {
        for k in 0..n / 10 {
            f(k);
        }
        let mut samples = Vec::with_capacity(n);
        for k in 0..n {
            let start = Instant::now();
            f(k);
            samples.push(start.elapsed());
        }
        percentiles(samples)
    };
    let decide_p = time(100_000, &mut |k| {
        let r = &reqs[k % reqs.len()];
        black_box(decide(r, &facts(&w, r), &guardrails));
    });
    let hits_p = time(100_000, &mut |k| {
        let r = &hits[k % hits.len()];
        black_box(decide(r, &facts(&w, r), &guardrails));
    });
    let bare_p = time(20_000, &mut |k| {
        let (request, entities) = &cedar[k % cedar.len()];
        black_box(authorizer.is_authorized(request, full, entities));
    });
    println!(
        "decide:                      p50 {:>8.1?}  p99 {:>8.1?}  p99.9 {:>8.1?}  (100,000 timed calls)",
        decide_p.0, decide_p.1, decide_p.2
    );
    println!(
        "decide, matching calls:      p50 {:>8.1?}  p99 {:>8.1?}  p99.9 {:>8.1?}  (100,000 timed calls)",
        hits_p.0, hits_p.1, hits_p.2
    );
    println!(
        "bare is_authorized, 100 pol: p50 {:>8.1?}  p99 {:>8.1?}  p99.9 {:>8.1?}  (20,000 timed calls)",
        bare_p.0, bare_p.1, bare_p.2
    );
    let verdict = |d: Duration| {
        if d <= Duration::from_micros(50) {
            "met"
        } else {
            "MISSED"
        }
    };
    println!(
        "ratio to bare: mix p50 {:.3} p99 {:.3}, matching p50 {:.3} p99 {:.3}; target p99 <= 50 us: mix {}, matching {}",
        decide_p.0.as_secs_f64() / bare_p.0.as_secs_f64(),
        decide_p.1.as_secs_f64() / bare_p.1.as_secs_f64(),
        hits_p.0.as_secs_f64() / bare_p.0.as_secs_f64(),
        hits_p.1.as_secs_f64() / bare_p.1.as_secs_f64(),
        verdict(decide_p.1),
        verdict(hits_p.1)
    );
}
