//! Token issuance in process, with its audit append, beside raw Ed25519 signing in the same run.
//!
//! `Pdp::issue_token` end to end: form parsing, the agent's EdDSA client assertion verified
//! against its registered key, the replay cache, decision steps 1 to 3 for the requested action,
//! minting (an Ed25519 signature), and the `token.issued` record appended durably (SQLite in a
//! temporary directory, group commit) before the token is returned. Assertions are signed
//! beforehand, outside the timed loop. Knobs: `REIN_BENCH_SECS` (per run, default 3),
//! `REIN_BENCH_CONCURRENCY` (comma-separated, default `1,64,256`).
//!
//! ```sh
//! cargo bench -p rein-pdp --bench token_mint
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::Signer as _;
use rein_core::authz::Actor;
use rein_core::key::KeyAlgorithm;
use rein_core::user::Role;
use rein_oauth::client::ClientKey;
use rein_pdp::{Issuer, Pdp};
use rein_registry::{Registry, RegistryConfig, SystemClock};
use rein_store::{SqliteStore, Store};
use serde_json::{json, Value};

const AGENT: &str = "spiffe://rein.local/agent/payments/bot/dev";

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn actor(user: &str, role: Role, teams: &[&str]) -> Actor {
    Actor {
        user: user.parse().unwrap(),
        role,
        teams: teams.iter().map(|t| t.parse().unwrap()).collect(),
    }
}

/// Single-thread Ed25519 signatures per second of a 700-byte message, over `secs`.
fn raw_sign_rate(secs: f64) -> f64 {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let msg = [0x5a_u8; 700];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        std::hint::black_box(key.sign(std::hint::black_box(&msg)));
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::var("REIN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let levels: Vec<usize> = std::env::var("REIN_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,64,256".into())
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pdp, issuer, key) = runtime.block_on(async {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("rein.db")).await.unwrap());
        let master = rein_keys::MasterKey::from_bytes(rand::random());
        let audit = rein_registry::keys::open_audit_log(
            store.clone(),
            &master,
            rein_audit::LogConfig::default(),
        )
        .await
        .unwrap();
        let registry = Registry::new(store, RegistryConfig::default(), Arc::new(SystemClock), audit);
        registry.bootstrap_admin(&"admin".parse().unwrap()).await.unwrap();
        let admin = actor("admin", Role::Admin, &[]);
        for user in ["owner", "approver", "requester"] {
            registry
                .create_user(&admin, from(json!({"name": user, "display_name": user})))
                .await
                .unwrap();
        }
        registry
            .create_team(&admin, from(json!({"name": "payments", "members": ["requester"]})))
            .await
            .unwrap();
        registry
            .create_system(&admin, from(json!({"name": "db", "environment": "dev", "owner_team": "payments",
                "approvers": ["user:approver"], "actions": {"query": {"class": "read"}}})))
            .await
            .unwrap();
        let requester = actor("requester", Role::Member, &["payments"]);
        registry
            .create_agent(&requester, from(json!({"team": "payments", "name": "bot", "environment": "dev",
                "use_case": "bench", "roles": {"business_owner": "owner", "approvers": ["user:approver"],
                "revokers": ["user:owner"], "reviewers": ["user:owner"], "review_cadence_days": 90}})))
            .await
            .unwrap();
        let key = ClientKey::generate(KeyAlgorithm::EdDSA);
        registry
            .add_agent_key(&requester, &AGENT.parse().unwrap(), from(serde_json::to_value(key.public_jwk()).unwrap()))
            .await
            .unwrap();
        let grant = registry
            .request_grant(&requester, from(json!({"agent": AGENT, "system": "db", "actions": ["query"],
                "expires_at": "2099-01-01T00:00:00Z", "justification": "bench"})))
            .await
            .unwrap();
        registry
            .approve_grant(&actor("approver", Role::Member, &[]), &grant.id, "")
            .await
            .unwrap();
        let pdp = Pdp::start(registry, None).await.unwrap();
        let issuer = Issuer::open(pdp.registry(), Arc::new(master), "http://127.0.0.1:1").await.unwrap();
        (pdp, Arc::new(issuer), key)
    });
    let agent = AGENT.parse().unwrap();
    let audience = rein_oauth::token_endpoint("http://127.0.0.1:1");
    let form = |assertion: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", assertion)
            .append_pair("resource", "rein:system:db")
            .append_pair("scope", "query")
            .append_pair("task_id", "bench")
            .append_pair("intent", "bench")
            .finish()
    };

    let sign = raw_sign_rate(secs);
    println!("raw Ed25519 sign, 1 thread: {sign:.0}/s");

    // Minting with its audit append only (no assertion to verify): the token logic the SPEC's
    // "token mint in process, incl. audit append" names.
    let (agent_record, grants) = runtime.block_on(async {
        let admin = actor("admin", Role::Admin, &[]);
        let registry = pdp.registry();
        let a = registry
            .agent(&admin, &AGENT.parse().unwrap())
            .await
            .unwrap();
        let g = registry.grants(&admin, &Default::default()).await.unwrap();
        (a, g)
    });
    let signer = Arc::new(rein_oauth::TokenSigner::new(
        "bench",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    ));
    let actions: std::collections::BTreeSet<rein_core::id::ActionName> =
        ["query".parse().unwrap()].into();
    let task: rein_oauth::TaskId = "bench".parse().unwrap();
    let system: rein_core::id::SystemName = "db".parse().unwrap();
    println!("| mint + durable audit append, concurrency | tokens/s | ratio to raw signing |");
    println!("|---|---|---|");
    for c in &levels {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let started = Instant::now();
        let minted: usize = runtime.block_on(async {
            let tasks: Vec<_> = (0..*c)
                .map(|_| {
                    let (pdp, signer, agent_record, grants, actions, task, system) = (
                        Arc::clone(&pdp),
                        Arc::clone(&signer),
                        agent_record.clone(),
                        grants.clone(),
                        actions.clone(),
                        task.clone(),
                        system.clone(),
                    );
                    tokio::spawn(async move {
                        let mut n = 0usize;
                        while Instant::now() < deadline {
                            let token = rein_oauth::mint(
                                &rein_oauth::MintRequest {
                                    agent: &agent_record,
                                    system: &system,
                                    actions: &actions,
                                    grants: &grants,
                                    task_id: &task,
                                    requested_ttl_secs: None,
                                    now: chrono::Utc::now(),
                                },
                                &signer,
                                "http://127.0.0.1:1",
                            )
                            .unwrap();
                            let mut e = rein_audit::Event::new(
                                rein_audit::EventType::TokenIssued,
                                rein_audit::Actor {
                                    kind: rein_audit::ActorKind::Agent,
                                    id: AGENT.into(),
                                },
                                "success",
                            );
                            e.subject = Some(token.claims.jti.clone());
                            e.agent = Some(AGENT.into());
                            e.task_id = Some("bench".into());
                            e.system = Some("db".into());
                            pdp.registry().audit().append(e).await.unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        });
        let rate = minted as f64 / started.elapsed().as_secs_f64();
        println!("| {c} | {rate:.0} | {:.3} |", rate / sign);
    }

    println!("| issue_token, concurrency | tokens/s | ratio to raw signing | mean latency |");
    println!("|---|---|---|---|");
    for c in levels {
        // Enough fresh assertions for the run (each jti is accepted once).
        let budget = ((sign * secs * 2.0) as usize).clamp(1_000, 400_000);
        let forms: Vec<String> = (0..budget)
            .map(|_| {
                form(
                    &key.assertion(&agent, &audience, chrono::Utc::now(), 300)
                        .unwrap(),
                )
            })
            .collect();
        let forms = Arc::new(forms);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let started = Instant::now();
        let issued: usize = runtime.block_on(async {
            let tasks: Vec<_> = (0..c)
                .map(|_| {
                    let (pdp, issuer, forms, next) = (
                        Arc::clone(&pdp),
                        Arc::clone(&issuer),
                        Arc::clone(&forms),
                        Arc::clone(&next),
                    );
                    tokio::spawn(async move {
                        let mut n = 0usize;
                        while Instant::now() < deadline {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(f) = forms.get(i) else { break };
                            pdp.issue_token(&issuer, f.as_bytes()).await.unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        });
        let elapsed = started.elapsed().as_secs_f64();
        let rate = issued as f64 / elapsed;
        println!(
            "| {c} | {rate:.0} | {:.3} | {:.2} ms |",
            rate / sign,
            c as f64 / rate * 1000.0
        );
    }
}
