//! `/v1/authorize` throughput over HTTP with a keep-alive load generator (`wrk`).
//!
//! Builds a registry in a temporary SQLite database (1,000 agents in 20 teams, 10,000 active
//! grants over 50 systems of 10 tools), loads the example guardrails, serves the real router on
//! loopback, and runs `wrk` against it for each connection count, rotating over 4,096 distinct
//! calls (mostly allowed, some denied by guardrails or missing grants). Every decision is
//! written durably to the audit log before it is answered, as in production.
//!
//! Needs `wrk` on PATH (Debian: `apt-get install wrk`). Knobs: `REIN_BENCH_SECS` (per run,
//! default 10), `REIN_BENCH_CONNECTIONS` (comma-separated, default `16,64,256`).
//!
//! ```sh
//! cargo bench -p rein-server --bench authorize_http
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt as _};
use rein_core::authz::Actor;
use rein_core::user::Role;
use rein_pdp::Pdp;
use rein_registry::{Registry, RegistryConfig, SystemClock};
use rein_server::AppState;
use rein_store::{SqliteStore, Store};
use serde_json::{json, Value};

const TEAMS: usize = 20;
const AGENTS: usize = 1_000;
const SYSTEMS: usize = 50;
const TOOLS: usize = 10;
const GRANTS_PER_AGENT: usize = 10;
const CALLS: usize = 4_096;

fn actor(user: &str, role: Role, teams: &[String]) -> Actor {
    Actor {
        user: user.parse().unwrap(),
        role,
        teams: teams.iter().map(|t| t.parse().unwrap()).collect(),
    }
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn tool(t: usize) -> String {
    // Every fourth tool writes; the rest read.
    if t % 4 == 3 {
        format!("update_{t}")
    } else {
        format!("read_{t}")
    }
}

async fn populate(registry: &Registry) {
    let admin = actor("admin", Role::Admin, &[]);
    let teams: Vec<String> = (0..TEAMS).map(|t| format!("team-{t}")).collect();
    for user in ["owner", "approver", "requester"] {
        registry
            .create_user(&admin, from(json!({"name": user, "display_name": user})))
            .await
            .unwrap();
    }
    for team in &teams {
        registry
            .create_team(
                &admin,
                from(json!({"name": team, "members": ["requester"]})),
            )
            .await
            .unwrap();
    }
    for s in 0..SYSTEMS {
        let actions: serde_json::Map<String, Value> = (0..TOOLS)
            .map(|t| {
                let class = if t % 4 == 3 { "write" } else { "read" };
                (tool(t), json!({"class": class}))
            })
            .collect();
        registry
            .create_system(
                &admin,
                from(json!({
                    "name": format!("system-{s}"), "environment": "dev", "owner_team": "team-0",
                    "approvers": ["user:approver"], "classification": "internal", "actions": actions,
                })),
            )
            .await
            .unwrap();
    }
    let requester = actor("requester", Role::Member, &teams);
    let approver = actor("approver", Role::Member, &[]);
    let agents: Vec<usize> = (0..AGENTS).collect();
    stream::iter(agents)
        .for_each_concurrent(64, |a| {
            let requester = requester.clone();
            let approver = approver.clone();
            async move {
                let team = format!("team-{}", a % TEAMS);
                registry
                    .create_agent(
                        &requester,
                        from(json!({
                            "team": team, "name": format!("agent-{a}"), "environment": "dev",
                            "use_case": "bench",
                            "roles": {"business_owner": "owner", "approvers": ["user:approver"],
                                      "revokers": ["user:owner"], "reviewers": ["user:owner"],
                                      "review_cadence_days": 90},
                        })),
                    )
                    .await
                    .unwrap();
                let id = format!("spiffe://rein.local/agent/{team}/agent-{a}/dev");
                for g in 0..GRANTS_PER_AGENT {
                    let system = format!("system-{}", (a + g * 7) % SYSTEMS);
                    let actions: BTreeSet<String> = (0..TOOLS).map(tool).collect();
                    let grant = registry
                        .request_grant(
                            &requester,
                            from(json!({
                                "agent": id, "system": system, "actions": actions,
                                "expires_at": "2099-01-01T00:00:00Z", "justification": "bench",
                            })),
                        )
                        .await
                        .unwrap();
                    registry
                        .approve_grant(&approver, &grant.id, "")
                        .await
                        .unwrap();
                }
            }
        })
        .await;
}

/// The Lua script wrk runs: rotates over `bodies`, one per request.
fn lua_script(token: &str, bodies: &[String]) -> String {
    let mut lua = String::from("local bodies = {\n");
    for b in bodies {
        lua.push_str(&format!("  [==[{b}]==],\n"));
    }
    lua.push_str(&format!(
        "}}\nlocal i = 0\nwrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
         request = function()\n  i = (i % #bodies) + 1\n  return wrk.format(nil, \"/v1/authorize\", nil, bodies[i])\nend\n\
         local ok, other = 0, 0\n\
         response = function(status, headers, body)\n  if status == 200 then ok = ok + 1 else other = other + 1 end\nend\n"
    ));
    lua
}

fn calls() -> Vec<String> {
    let mut rng_state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    (0..CALLS)
        .map(|_| {
            let a = (next() % AGENTS as u64) as usize;
            let g = (next() % (GRANTS_PER_AGENT as u64 + 1)) as usize; // one in 11 has no grant
            let system = format!("system-{}", (a + g * 7) % SYSTEMS);
            let t = (next() % TOOLS as u64) as usize;
            let risky = next() % 20 == 0; // 5 % carry a DROP statement: step-up
            let sql = if risky { "DROP TABLE t" } else { "SELECT 1" };
            json!({
                "agent": format!("spiffe://rein.local/agent/team-{}/agent-{a}/dev", a % TEAMS),
                "system": system,
                "action": tool(t),
                "context": {"task_id": format!("task-{}", next() % 10_000), "intent": "bench",
                            "risk": 10, "confidence": 0.95, "arguments": {"sql": sql}},
            })
            .to_string()
        })
        .collect()
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed (apt-get install wrk); skipping");
        return;
    }
    let secs: u64 = std::env::var("REIN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let connections: Vec<u32> = std::env::var("REIN_BENCH_CONNECTIONS")
        .unwrap_or_else(|_| "16,64,256".into())
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (addr, token) = runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("rein.db"))
                .await
                .unwrap(),
        );
        let master = rein_keys::MasterKey::from_bytes(rand::random());
        let audit = rein_registry::keys::open_audit_log(
            store.clone(),
            &master,
            rein_audit::LogConfig::default(),
        )
        .await
        .unwrap();
        let registry = Registry::new(
            store,
            RegistryConfig::default(),
            Arc::new(SystemClock),
            audit,
        );
        let token = registry
            .bootstrap_admin(&"admin".parse().unwrap())
            .await
            .unwrap()
            .token;
        let started = Instant::now();
        populate(&registry).await;
        eprintln!(
            "populated {AGENTS} agents, {} grants in {:.1} s",
            AGENTS * GRANTS_PER_AGENT,
            started.elapsed().as_secs_f64()
        );
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
        let pdp = Pdp::start(registry, Some(policies)).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let master = Arc::new(master);
        let issuer =
            rein_pdp::Issuer::open(pdp.registry(), master.clone(), &format!("http://{addr}"))
                .await
                .unwrap();
        tokio::spawn(rein_server::serve(
            listener,
            AppState::new(pdp, Arc::new(issuer), master),
            std::future::pending(),
        ));
        (addr, token)
    });
    let script = dir.path().join("authorize.lua");
    std::fs::write(&script, lua_script(&token, &calls())).unwrap();
    println!("| connections | decisions/s | latency p50 | p99 | non-200 |");
    println!("|---|---|---|---|---|");
    for c in connections {
        let out = Command::new("wrk")
            .args([
                "-t",
                "1",
                "-c",
                &c.to_string(),
                "-d",
                &format!("{secs}s"),
                "--latency",
                "-s",
            ])
            .arg(&script)
            .arg(format!("http://{addr}/v1/authorize"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |prefix: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(prefix))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
                .unwrap_or_else(|| "?".into())
        };
        let non200 = text.lines().find(|l| l.contains("Non-2xx")).map_or_else(
            || "0".into(),
            |l| l.split_whitespace().last().unwrap_or("?").to_owned(),
        );
        println!(
            "| {c} | {} | {} | {} | {non200} |",
            field("Requests/sec:"),
            field("50%"),
            field("99%")
        );
        eprintln!("{text}");
    }
}
