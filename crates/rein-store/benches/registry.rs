//! Registry reads on both stores with 1k agents and 10k grants seeded: one agent by ID, the
//! grants of one agent (10 rows), one grant by ID.
//!
//! The PostgreSQL part runs when the database at `REIN_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) answers; it seeds a schema of its own and drops it.
//!
//! `cargo bench -p rein-store --bench registry -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use criterion::Criterion;
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::{AgentId, GrantId};
use rein_store::{GrantFilter, PgStore, SqliteStore, Store};
use sqlx::{Connection, PgConnection};
use tokio::runtime::Runtime;

const AGENTS: usize = 1_000;
const GRANTS_PER_AGENT: usize = 10;
const TEAMS: usize = 20;
const SYSTEMS: usize = 50;

fn at(offset_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + offset_ms).unwrap()
}

fn agent(i: usize) -> Agent {
    let team = i % TEAMS;
    Agent {
        id: format!("spiffe://rein.local/agent/team-{team}/agent-{i}/prod")
            .parse()
            .unwrap(),
        description: "a benchmark agent".to_owned(),
        use_case: "reconcile invoices".to_owned(),
        roles: AccountableRoles {
            business_owner: Some("bob".parse().unwrap()),
            approvers: vec![format!("team:team-{team}").parse().unwrap()],
            revokers: vec!["team:secops".parse().unwrap()],
            reviewers: vec!["user:carol".parse().unwrap()],
            review_cadence_days: Some(90),
        },
        last_review: Some(at(0)),
        status: AgentStatus::Active,
        status_reason: None,
        keys: Vec::new(),
        budgets: Budgets {
            calls_per_minute: Some(600),
            ..Budgets::default()
        },
        created_by: "alice".parse().unwrap(),
        created_at: at(0),
        updated_at: at(0),
    }
}

fn grant(n: usize, agent: &AgentId) -> Grant {
    Grant {
        id: GrantId::from_bytes((n as u128).to_be_bytes()),
        agent: agent.clone(),
        system: format!("system-{}", n % SYSTEMS).parse().unwrap(),
        actions: BTreeSet::from(["query".parse().unwrap(), "update".parse().unwrap()]),
        expires_at: at(86_400_000),
        schedule: None,
        max_token_ttl_secs: Some(300),
        justification: "nightly reconciliation".to_owned(),
        requested_by: "dave".parse().unwrap(),
        requested_at: at(1),
        status: GrantStatus::Active,
        mutates_production: true,
        approvers: vec!["user:alice".parse().unwrap()],
        business_owner_approver: Some("bob".parse().unwrap()),
        approvals: Vec::new(),
        revokers: vec!["team:secops".parse().unwrap()],
        closed: None,
        updated_at: at(2),
    }
}

/// Inserts the agents and grants from 8 concurrent tasks; returns agent and grant IDs.
fn seed(rt: &Runtime, store: &Arc<dyn Store>) -> (Vec<AgentId>, Vec<GrantId>) {
    let agents: Vec<Agent> = (0..AGENTS).map(agent).collect();
    let grants: Vec<Grant> = (0..AGENTS * GRANTS_PER_AGENT)
        .map(|n| grant(n, &agents[n / GRANTS_PER_AGENT].id))
        .collect();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let store = store.clone();
            let agents: Vec<Agent> = agents.iter().skip(worker).step_by(8).cloned().collect();
            let grants: Vec<Grant> = grants.iter().skip(worker).step_by(8).cloned().collect();
            tasks.spawn(async move {
                for a in &agents {
                    store.insert_agent(a).await.unwrap();
                }
                for g in &grants {
                    store.insert_grant(g).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    (
        agents.into_iter().map(|a| a.id).collect(),
        grants.into_iter().map(|g| g.id).collect(),
    )
}

fn measure(c: &mut Criterion, rt: &Runtime, name: &str, store: &Arc<dyn Store>) {
    let (agents, grants) = seed(rt, store);
    let mut group = c.benchmark_group(format!("store/{name}"));

    let mut i = 0;
    group.bench_function("agent_by_id", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 7919) % agents.len();
            let id = &agents[i];
            async move { assert!(store.agent(id).await.unwrap().is_some()) }
        })
    });

    let mut i = 0;
    group.bench_function("grants_of_agent", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 7919) % agents.len();
            let filter = GrantFilter {
                agent: Some(agents[i].clone()),
                ..GrantFilter::default()
            };
            async move { assert_eq!(store.grants(&filter).await.unwrap().len(), GRANTS_PER_AGENT) }
        })
    });

    let mut i = 0;
    group.bench_function("grant_by_id", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 7919) % grants.len();
            let id = &grants[i];
            async move { assert!(store.grant(id).await.unwrap().is_some()) }
        })
    });

    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = Runtime::new().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        rt.block_on(SqliteStore::open(&dir.path().join("bench.db")))
            .unwrap(),
    );
    measure(&mut c, &rt, "sqlite", &sqlite);

    let url = std::env::var("REIN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match rt.block_on(PgConnection::connect(&url)) {
        Ok(conn) => {
            let schema = format!("rein_bench_{}", std::process::id());
            let pg: Arc<dyn Store> = Arc::new(
                rt.block_on(PgStore::connect_with_schema(&url, &schema))
                    .unwrap(),
            );
            measure(&mut c, &rt, "postgres", &pg);
            drop(pg);
            rt.block_on(async {
                let mut conn = conn;
                sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            });
        }
        Err(e) => eprintln!("skipping the PostgreSQL benchmarks: unreachable ({e})"),
    }

    c.final_summary();
}
