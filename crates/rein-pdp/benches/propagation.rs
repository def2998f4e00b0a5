//! How long a revocation takes to reach another replica: two decision points over one
//! PostgreSQL database (separate pools, as two processes would have), the second following the
//! first's announcements (`LISTEN`/`NOTIFY`). Each round revokes a team on the first and times
//! until the second's index denies that team's calls, woken by the second's facts watch (no
//! polling). Beside it, in the same run, the median round trip of `SELECT 1` on the same
//! database, the floor any cross-process propagation pays at least twice (the notification, then
//! the re-read). Also reports how long until both replicas acknowledged, as
//! `GET /v1/revocations/{id}/propagation` would show. Needs PostgreSQL at
//! `REIN_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); a fresh schema
//! is created and dropped. Knob: `REIN_BENCH_ROUNDS` (default 500).
//!
//! ```sh
//! cargo bench -p rein-pdp --bench propagation
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rein_core::authz::Actor;
use rein_core::revocation::RevocationTarget;
use rein_core::user::Role;
use rein_pdp::Pdp;
use rein_registry::{NewRevocation, Registry, RegistryConfig, SystemClock};
use rein_store::{PgStore, Store};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn replica(url: &str, schema: &str, master: [u8; 32]) -> Arc<Pdp> {
    let store: Arc<dyn Store> = Arc::new(PgStore::connect_with_schema(url, schema).await.unwrap());
    let audit = rein_registry::keys::open_audit_log(
        store.clone(),
        &rein_keys::MasterKey::from_bytes(master),
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
    Pdp::start(registry, None).await.unwrap()
}

fn main() {
    let rounds: usize = std::env::var("REIN_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let url = std::env::var("REIN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("bench_propagation_{:08x}", rand::random::<u32>());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let master: [u8; 32] = rand::random();
        let first = replica(&url, &schema, master).await;
        first
            .registry()
            .bootstrap_admin(&"admin".parse().unwrap())
            .await
            .unwrap();
        let second = replica(&url, &schema, master).await;
        let _follow = second.follow_replicas().await.unwrap().unwrap();
        let _up1 = first.start_upkeep().await.unwrap();
        let _up2 = second.start_upkeep().await.unwrap();
        let admin = Actor {
            user: "admin".parse().unwrap(),
            role: Role::Admin,
            teams: Default::default(),
        };

        // The floor: a round trip to the same database.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let mut trips = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            sqlx::query("SELECT 1").execute(&pool).await.unwrap();
            trips.push(t.elapsed());
        }
        trips.sort();

        let mut visible = Vec::with_capacity(rounds);
        let mut returned = Vec::with_capacity(rounds);
        let mut acked = Vec::with_capacity(rounds);
        let mut applied = second.facts().watch();
        for i in 0..rounds {
            let team = format!("team-{i}");
            let agent = format!("spiffe://rein.local/agent/{team}/bot/prod")
                .parse()
                .unwrap();
            let started = Instant::now();
            let revocation = first
                .registry()
                .revoke(
                    &admin,
                    NewRevocation {
                        target: RevocationTarget::Team {
                            team: team.parse().unwrap(),
                        },
                        reason: "bench".into(),
                    },
                )
                .await
                .unwrap();
            returned.push(started.elapsed());
            while second.facts().revoked_call(&agent, None).unwrap().is_none() {
                tokio::time::timeout(Duration::from_secs(10), applied.changed())
                    .await
                    .expect("the other replica never saw the revocation")
                    .unwrap();
            }
            visible.push(started.elapsed());
            // Both acknowledgements in the store (read as the propagation endpoint does).
            loop {
                let p = first
                    .revocation_propagation(&admin, &revocation.id)
                    .await
                    .unwrap();
                if p.complete && p.replicas.len() == 2 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            acked.push(started.elapsed());
        }
        for v in [&mut visible, &mut returned, &mut acked] {
            v.sort();
        }
        let row = |name: &str, v: &[Duration]| {
            println!(
                "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
                percentile(v, 0.5).as_secs_f64() * 1e3,
                percentile(v, 0.9).as_secs_f64() * 1e3,
                percentile(v, 0.99).as_secs_f64() * 1e3,
                v[v.len() - 1].as_secs_f64() * 1e3,
            );
        };
        println!("rounds: {rounds}");
        println!("| path | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|");
        row("`SELECT 1` round trip (baseline)", &trips);
        row("revoke returns on the first replica", &returned);
        row("denied on the second replica", &visible);
        row("acknowledged by both", &acked);
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
    });
}
