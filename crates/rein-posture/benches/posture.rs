//! `rein posture` on 10,000 agents and 100,000 grants (10 per agent over 50 systems), with audit
//! usage for half of the agents and 100 guardrails: `evaluate` alone, and with SARIF rendering.
//!
//! `cargo bench -p rein-posture --bench posture -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::manual_is_multiple_of,
    missing_docs
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::grant::{Approval, ApprovalRole, Grant, GrantStatus};
use rein_core::id::{AgentId, GrantId};
use rein_core::system::{ActionClass, ActionSpec, Classification, System};
use rein_posture::{
    evaluate, render, Catalog, GuardrailMode, GuardrailUse, Inventory, PostureConfig,
};

const AGENTS: usize = 10_000;
const GRANTS_PER_AGENT: usize = 10;
const SYSTEMS: usize = 50;

fn name<T: FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn inventory() -> Inventory {
    let now: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
    let ago = |d: i64| now - TimeDelta::days(d);
    let mut inv = Inventory::new(now);
    let env = |i: usize| if i % 2 == 0 { "prod" } else { "dev" };
    for s in 0..SYSTEMS {
        let spec = |class| ActionSpec {
            class: Some(class),
            description: String::new(),
        };
        inv.systems.push(System {
            name: name(&format!("sys-{s}")),
            description: String::new(),
            environment: name(env(s)),
            owner_team: name("platform"),
            approvers: if s % 10 == 9 {
                Vec::new()
            } else {
                vec![name("user:alice")]
            },
            classification: Classification::Internal,
            actions: BTreeMap::from([
                (name("query"), spec(ActionClass::Read)),
                (name("export"), spec(ActionClass::Read)),
                (name("refund"), spec(ActionClass::Write)),
            ]),
            created_at: ago(400),
            updated_at: ago(400),
            mcp: None,
        });
    }
    let mut n: u128 = 0;
    for i in 0..AGENTS {
        let id: AgentId = name(&format!(
            "spiffe://rein.local/agent/team-{}/agent-{i}/{}",
            i % 20,
            env(i)
        ));
        let complete = i % 7 != 0;
        inv.agents.push(Agent {
            id: id.clone(),
            description: format!("agent {i}"),
            use_case: "benchmark".to_owned(),
            roles: AccountableRoles {
                business_owner: complete.then(|| name("bob")),
                approvers: vec![name("user:alice")],
                revokers: vec![name("team:secops")],
                reviewers: vec![name("user:carol")],
                review_cadence_days: Some(90),
            },
            last_review: Some(ago((i % 120) as i64)),
            status: AgentStatus::Active,
            status_reason: None,
            keys: Vec::new(),
            budgets: Budgets::default(),
            created_by: name("alice"),
            created_at: ago(300),
            updated_at: ago(10),
        });
        let used = i % 2 == 0;
        if used {
            inv.usage
                .record_context(&id, format!("team:team-{}", i % 20));
            if i % 100 == 0 {
                inv.usage.record_context(&id, "team:other");
            }
        }
        for g in 0..GRANTS_PER_AGENT {
            n += 1;
            // Systems of the agent's environment: even-numbered for prod, odd for dev.
            let system = (g * 2 + i % 2) % SYSTEMS;
            let actions: &[&str] = match g % 3 {
                0 => &["query"],
                1 => &["query", "export"],
                _ => &["query", "refund"],
            };
            let mutates = env(i) == "prod" && actions.contains(&"refund");
            let mut approvals = vec![Approval {
                by: name("alice"),
                role: ApprovalRole::SystemApprover,
                at: ago(100),
                comment: String::new(),
            }];
            if mutates && i % 5 != 0 {
                approvals.push(Approval {
                    by: name("bob"),
                    role: ApprovalRole::BusinessOwner,
                    at: ago(100),
                    comment: String::new(),
                });
            }
            let grant = Grant {
                id: GrantId::from_bytes(n.to_be_bytes()),
                agent: id.clone(),
                system: name(&format!("sys-{system}")),
                actions: actions.iter().map(|a| name(a)).collect(),
                expires_at: now + TimeDelta::days(if g == 0 { 365 } else { 30 }),
                schedule: None,
                max_token_ttl_secs: if g == 1 { None } else { Some(300) },
                justification: "benchmark".to_owned(),
                requested_by: name("dave"),
                requested_at: ago(101),
                status: GrantStatus::Active,
                mutates_production: mutates,
                approvers: vec![name("user:alice")],
                business_owner_approver: mutates.then(|| name("bob")),
                approvals,
                revokers: vec![name("team:secops")],
                closed: None,
                updated_at: ago(100),
            };
            if used {
                for (k, action) in grant.actions.iter().enumerate() {
                    if k == 0 || g % 2 == 0 {
                        inv.usage.record_use(
                            &grant.agent,
                            &grant.system,
                            action,
                            ago(((i + g) % 45) as i64),
                        );
                    }
                }
            }
            inv.grants.push(grant);
        }
    }
    for r in 0..100 {
        inv.guardrails.push(GuardrailUse {
            id: format!("guardrail-{r}"),
            mode: if r % 10 == 0 {
                GuardrailMode::Shadow
            } else {
                GuardrailMode::Enforce
            },
            loaded_since: ago(60),
            matches: (r % 4) as u64,
        });
    }
    inv
}

fn bench(c: &mut Criterion) {
    let inv = inventory();
    let catalog = Catalog::embedded().unwrap();
    let config = PostureConfig::default();
    let report = evaluate(&inv, &config, &catalog);
    println!(
        "{} agents, {} grants, {} usage entries: {} findings",
        inv.agents.len(),
        inv.grants.len(),
        inv.usage.last_used.len(),
        report.findings.len()
    );
    let mut group = c.benchmark_group("posture");
    group.sample_size(10);
    group.bench_function("evaluate_10k_agents_100k_grants", |b| {
        b.iter(|| black_box(evaluate(black_box(&inv), &config, &catalog)))
    });
    group.bench_function("evaluate_and_sarif_10k_agents_100k_grants", |b| {
        b.iter(|| {
            let report = evaluate(black_box(&inv), &config, &catalog);
            black_box(render::sarif(&report, &catalog))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
