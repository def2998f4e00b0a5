//! The store conformance suite: every test runs against both adapters, SQLite (a fresh file in a
//! temporary directory) and PostgreSQL (a fresh schema in the database at
//! `REIN_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! When PostgreSQL is unreachable its tests print a notice and pass, unless
//! `REIN_REQUIRE_POSTGRES=1` (CI), in which case they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::grant::{Approval, ApprovalRole, Grant, GrantStatus};
use rein_core::id::{AgentId, GrantId, TeamName};
use rein_core::secret::StoredSecret;
use rein_core::system::{ActionClass, ActionSpec, Classification, System};
use rein_core::team::Team;
use rein_core::user::{ApiToken, Role, User};
use rein_store::{AgentFilter, GrantFilter, PgStore, SqliteStore, Store, StoreError, Write};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tempfile::TempDir;
use tokio::sync::Barrier;

// === harness ===

/// A fresh, empty store and what is needed to reach its database behind its back.
struct Harness {
    store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres { url: String, schema: String },
}

fn postgres_url() -> String {
    std::env::var("REIN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test (in this or another process) uses.
fn fresh_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random =
        RandomState::new().hash_one((std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    format!("rein_test_{random:016x}")
}

impl Harness {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rein.db");
        let store = SqliteStore::open(&path).await.unwrap();
        Self {
            store: Arc::new(store),
            backend: Backend::Sqlite { _dir: dir, path },
        }
    }

    /// A store in a fresh schema, or `None` (with a notice) when PostgreSQL is unreachable and
    /// not required.
    async fn postgres() -> Option<Self> {
        let url = postgres_url();
        if let Err(e) = PgConnection::connect(&url).await {
            if std::env::var("REIN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL is unreachable and REIN_REQUIRE_POSTGRES=1: {e}");
            }
            eprintln!("skipping PostgreSQL conformance test: unreachable ({e}); set REIN_REQUIRE_POSTGRES=1 to fail instead");
            return None;
        }
        let schema = fresh_schema();
        let store = PgStore::connect_with_schema(&url, &schema).await.unwrap();
        Some(Self {
            store: Arc::new(store),
            backend: Backend::Postgres { url, schema },
        })
    }

    /// Drops the store and opens the same database again, as a restarted process would.
    async fn reopen(&mut self) {
        self.store = match &self.backend {
            Backend::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.unwrap()),
            Backend::Postgres { url, schema } => {
                Arc::new(PgStore::connect_with_schema(url, schema).await.unwrap())
            }
        };
    }

    /// A second store over the same database, as another replica would open it. SQLite is
    /// written by one process, so its "replica" is the same store.
    async fn replica(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite { .. } => self.store.clone(),
            Backend::Postgres { url, schema } => {
                Arc::new(PgStore::connect_with_schema(url, schema).await.unwrap())
            }
        }
    }

    /// Runs raw SQL on the store's database, bypassing the store (to damage records).
    async fn execute_raw(&self, sql: &str, binds: &[&str]) {
        self.execute_raw_in(false, sql, binds).await;
    }

    /// Runs raw SQL on the database holding the audit log (on SQLite a file of its own).
    async fn execute_raw_audit(&self, sql: &str, binds: &[&str]) {
        self.execute_raw_in(true, sql, binds).await;
    }

    async fn execute_raw_in(&self, audit: bool, sql: &str, binds: &[&str]) {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let path = if audit {
                    SqliteStore::audit_path(path)
                } else {
                    path.clone()
                };
                let mut conn = SqliteConnectOptions::new()
                    .filename(path)
                    .connect()
                    .await
                    .unwrap();
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(&mut conn).await.unwrap();
            }
            Backend::Postgres { url, schema } => {
                let options = PgConnectOptions::from_str(url)
                    .unwrap()
                    .options([("search_path", schema)]);
                let mut conn = options.connect().await.unwrap();
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(&mut conn).await.unwrap();
            }
        }
    }

    /// Drops the test's PostgreSQL schema (a failed test leaves it for inspection).
    async fn cleanup(self) {
        if let Backend::Postgres { url, schema } = &self.backend {
            let mut conn = PgConnection::connect(url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// Generates, for each conformance test, one `#[tokio::test]` per adapter.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let mut h = crate::Harness::sqlite().await;
                    super::$test(&mut h).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(mut h) = crate::Harness::postgres().await else { return };
                    super::$test(&mut h).await;
                    h.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    ping_answers,
    users_insert_read_list_update,
    api_tokens_insert_read_list_revoke,
    teams_insert_read_list_update,
    teams_of_follows_membership_changes,
    failed_team_writes_leave_membership_alone,
    systems_insert_read_list_update,
    agents_insert_read_list_update,
    agents_filter_by_team_environment_and_status,
    grants_insert_read_list_update,
    grants_filter_by_agent_system_and_status,
    inserting_an_existing_key_is_already_exists,
    updating_a_missing_record_is_not_found,
    stale_update_is_conflict_and_versions_increment,
    reading_a_missing_record_is_none,
    lists_are_ordered_by_key_bytewise,
    damaged_document_is_corrupt_not_skipped,
    document_of_another_key_is_corrupt,
    records_survive_reopen,
    concurrent_compare_and_swap_loses_no_update,
    decision_facts_hold_every_agent_and_system_and_the_active_grants,
    revocations_insert_list_lift,
    assertions_are_claimed_once_until_they_expire,
    concurrent_claims_of_one_assertion_have_one_winner,
    moot_revocations_and_expired_assertions_are_pruned,
    replicas_acknowledge_revocations,
    one_pending_approval_per_call,
    webhook_deliveries_are_replaced_and_listed,
    a_batch_is_written_whole_or_not_at_all,
    registry_state_holds_every_record_with_its_version,
    reviews_open_whole_and_change_by_compare_and_swap,
    secrets_insert_read_list_rotate_delete,
);

/// The audit log's storage and the signing keys.
#[path = "conformance/audit.rs"]
mod audit;

// === fixtures ===

fn at(offset_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + offset_ms).unwrap()
}

fn name<T: FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn user(n: &str) -> User {
    User {
        name: name(n),
        display_name: format!("User {n}"),
        email: format!("{n}@example.com"),
        role: Role::Member,
        disabled: false,
        created_at: at(0),
    }
}

fn token(id: &str, owner: &str) -> ApiToken {
    ApiToken {
        id: id.to_owned(),
        user: name(owner),
        issued_by: None,
        hash: format!("{:0>64}", id.len()),
        description: format!("token {id}"),
        created_at: at(1),
        expires_at: Some(at(3_600_000)),
        revoked_at: None,
    }
}

fn team(n: &str, members: &[&str]) -> Team {
    Team {
        name: name(n),
        description: format!("team {n}"),
        members: members.iter().map(|m| name(m)).collect(),
        created_at: at(2),
    }
}

fn system(n: &str, environment: &str) -> System {
    System {
        name: name(n),
        description: format!("system {n}"),
        environment: name(environment),
        owner_team: name("platform"),
        approvers: vec![name("user:alice"), name("team:dba")],
        classification: Classification::Confidential,
        actions: BTreeMap::from([
            (
                name("query"),
                ActionSpec {
                    class: Some(ActionClass::Read),
                    description: "read rows".to_owned(),
                },
            ),
            (
                name("migrate"),
                ActionSpec {
                    class: None,
                    description: String::new(),
                },
            ),
        ]),
        created_at: at(3),
        updated_at: at(3),
        mcp: None,
    }
}

fn agent_id(team: &str, agent: &str, environment: &str) -> AgentId {
    name(&format!(
        "spiffe://rein.local/agent/{team}/{agent}/{environment}"
    ))
}

fn agent(team: &str, agent: &str, environment: &str, status: AgentStatus) -> Agent {
    Agent {
        id: agent_id(team, agent, environment),
        description: format!("agent {agent}"),
        use_case: "conformance tests".to_owned(),
        roles: AccountableRoles {
            business_owner: Some(name("bob")),
            approvers: vec![name("user:alice")],
            revokers: vec![name("team:secops")],
            reviewers: vec![name("user:carol")],
            review_cadence_days: Some(90),
        },
        last_review: None,
        status,
        status_reason: None,
        keys: Vec::new(),
        budgets: Budgets {
            calls_per_minute: Some(60),
            ..Budgets::default()
        },
        created_by: name("alice"),
        created_at: at(4),
        updated_at: at(4),
    }
}

fn grant_id(n: u128) -> GrantId {
    GrantId::from_bytes(n.to_be_bytes())
}

fn grant(n: u128, agent: &AgentId, system: &str, status: GrantStatus) -> Grant {
    Grant {
        id: grant_id(n),
        agent: agent.clone(),
        system: name(system),
        actions: BTreeSet::from([name("query")]),
        expires_at: at(86_400_000),
        schedule: None,
        max_token_ttl_secs: Some(300),
        justification: format!("grant {n}"),
        requested_by: name("dave"),
        requested_at: at(5),
        status,
        mutates_production: false,
        approvers: vec![name("user:alice")],
        business_owner_approver: None,
        approvals: Vec::new(),
        revokers: vec![name("team:secops")],
        closed: None,
        updated_at: at(5),
    }
}

fn approval(by: &str) -> Approval {
    Approval {
        by: name(by),
        role: ApprovalRole::SystemApprover,
        at: at(6),
        comment: format!("ok from {by}"),
    }
}

fn agents_where(
    team: Option<&str>,
    environment: Option<&str>,
    status: Option<AgentStatus>,
) -> AgentFilter {
    AgentFilter {
        team: team.map(name),
        environment: environment.map(name),
        status,
    }
}

fn grants_where(
    agent: Option<&AgentId>,
    system: Option<&str>,
    status: Option<GrantStatus>,
) -> GrantFilter {
    GrantFilter {
        agent: agent.cloned(),
        system: system.map(name),
        status,
    }
}

fn ids(agents: &[Agent]) -> Vec<String> {
    agents.iter().map(|a| a.id.to_string()).collect()
}

fn grant_ids(grants: &[Grant]) -> Vec<String> {
    grants.iter().map(|g| g.id.to_string()).collect()
}

fn team_names(teams: &[TeamName]) -> Vec<&str> {
    teams.iter().map(TeamName::as_str).collect()
}

#[track_caller]
fn assert_kind_key(result: StoreError, expected: &str, kind: &str, key: &str) {
    let (k, found_key, variant) = match &result {
        StoreError::AlreadyExists { kind, key } => (*kind, key.as_str(), "already exists"),
        StoreError::NotFound { kind, key } => (*kind, key.as_str(), "not found"),
        StoreError::Conflict { kind, key } => (*kind, key.as_str(), "conflict"),
        StoreError::Corrupt { kind, key, .. } => (*kind, key.as_str(), "corrupt"),
        other => panic!("expected {expected} for {kind} `{key}`, got {other:?}"),
    };
    assert_eq!((variant, k, found_key), (expected, kind, key), "{result}");
}

fn secret(n: &str, sealed: &[u8]) -> StoredSecret {
    StoredSecret::new(name(n), sealed.to_vec(), name("alice"), at(0))
}

// === conformance tests ===

async fn secrets_insert_read_list_rotate_delete(h: &mut Harness) {
    let s = &h.store;
    let db = secret("db-pass", &[1, 2, 3]);
    s.insert_secret(&db).await.unwrap();
    s.insert_secret(&secret("api-key", &[9])).await.unwrap();
    assert_kind_key(
        s.insert_secret(&db).await.unwrap_err(),
        "already exists",
        "secret",
        "db-pass",
    );
    let read = s.secret(&name("db-pass")).await.unwrap().unwrap();
    assert_eq!((read.value.clone(), read.version), (db.clone(), 1));
    let names: Vec<String> = s
        .secrets()
        .await
        .unwrap()
        .iter()
        .map(|x| x.name.to_string())
        .collect();
    assert_eq!(names, ["api-key", "db-pass"]);

    let mut rotated = db.clone();
    rotated.rotate(vec![4, 5], name("bob"), at(1)).unwrap();
    assert_eq!(s.update_secret(&rotated, 1).await.unwrap(), 2);
    assert_kind_key(
        s.update_secret(&rotated, 1).await.unwrap_err(),
        "conflict",
        "secret",
        "db-pass",
    );
    let read = s.secret(&name("db-pass")).await.unwrap().unwrap();
    assert_eq!(
        (read.value.sealed.as_slice(), read.value.version),
        (&[4u8, 5][..], 2)
    );

    // Deleting is a compare-and-swap too; then the row, ciphertext and all, is gone for good.
    assert_kind_key(
        s.delete_secret(&name("db-pass"), 1).await.unwrap_err(),
        "conflict",
        "secret",
        "db-pass",
    );
    s.delete_secret(&name("db-pass"), 2).await.unwrap();
    assert_eq!(s.secret(&name("db-pass")).await.unwrap(), None);
    assert_kind_key(
        s.delete_secret(&name("db-pass"), 2).await.unwrap_err(),
        "not found",
        "secret",
        "db-pass",
    );
    assert_kind_key(
        s.update_secret(&rotated, 2).await.unwrap_err(),
        "not found",
        "secret",
        "db-pass",
    );
    h.reopen().await;
    let s = &h.store;
    assert_eq!(s.secret(&name("db-pass")).await.unwrap(), None);
    assert_eq!(s.secrets().await.unwrap(), vec![secret("api-key", &[9])]);
    // A name freed by a deletion can be set again, from version 1.
    s.insert_secret(&db).await.unwrap();
    assert_eq!(
        s.secret(&name("db-pass")).await.unwrap().unwrap().version,
        1
    );
}

async fn ping_answers(h: &mut Harness) {
    h.store.ping().await.unwrap();
}

async fn users_insert_read_list_update(h: &mut Harness) {
    let s = &h.store;
    let alice = user("alice");
    s.insert_user(&alice).await.unwrap();
    s.insert_user(&user("bob")).await.unwrap();

    let read = s.user(&name("alice")).await.unwrap().unwrap();
    assert_eq!((read.value.clone(), read.version), (alice.clone(), 1));
    assert_eq!(s.users().await.unwrap(), vec![alice.clone(), user("bob")]);

    let changed = User {
        role: Role::Admin,
        disabled: true,
        ..alice
    };
    assert_eq!(s.update_user(&changed, 1).await.unwrap(), 2);
    let read = s.user(&name("alice")).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (changed, 2));
}

async fn api_tokens_insert_read_list_revoke(h: &mut Harness) {
    let s = &h.store;
    s.insert_user(&user("alice")).await.unwrap();
    for (id, owner) in [
        ("rein_b2", "alice"),
        ("rein_a1", "alice"),
        ("rein_c3", "bob"),
    ] {
        s.insert_api_token(&token(id, owner)).await.unwrap();
    }

    assert_eq!(
        s.api_token("rein_a1").await.unwrap(),
        Some(token("rein_a1", "alice"))
    );
    let of_alice = s.api_tokens_of(&name("alice")).await.unwrap();
    assert_eq!(
        of_alice,
        vec![token("rein_a1", "alice"), token("rein_b2", "alice")]
    );
    assert!(s.api_tokens_of(&name("nobody")).await.unwrap().is_empty());

    assert!(s.revoke_api_token("rein_a1", at(10)).await.unwrap());
    let revoked = s.api_token("rein_a1").await.unwrap().unwrap();
    assert_eq!(
        revoked,
        ApiToken {
            revoked_at: Some(at(10)),
            ..token("rein_a1", "alice")
        }
    );
    assert!(!revoked.is_usable(at(11)));
    assert!(
        !s.revoke_api_token("rein_a1", at(20)).await.unwrap(),
        "a second revoke reports false"
    );
    assert_eq!(
        s.api_token("rein_a1").await.unwrap().unwrap().revoked_at,
        Some(at(10)),
        "first revocation kept"
    );
    assert!(
        !s.revoke_api_token("rein_zz", at(20)).await.unwrap(),
        "unknown token"
    );
    assert_eq!(
        s.api_token("rein_b2").await.unwrap().unwrap().revoked_at,
        None,
        "other tokens untouched"
    );
}

async fn teams_insert_read_list_update(h: &mut Harness) {
    let s = &h.store;
    let payments = team("payments", &["alice", "bob"]);
    s.insert_team(&payments).await.unwrap();
    s.insert_team(&team("search", &[])).await.unwrap();

    let read = s.team(&name("payments")).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (payments.clone(), 1));
    assert_eq!(
        s.teams().await.unwrap(),
        vec![payments.clone(), team("search", &[])]
    );

    let changed = Team {
        description: "pays".to_owned(),
        ..team("payments", &["carol"])
    };
    assert_eq!(s.update_team(&changed, 1).await.unwrap(), 2);
    let read = s.team(&name("payments")).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (changed, 2));
}

async fn a_batch_is_written_whole_or_not_at_all(h: &mut Harness) {
    let s = &h.store;
    s.insert_team(&team("payments", &["alice"])).await.unwrap();
    let prod = agent("payments", "bot", "prod", AgentStatus::Active);
    s.insert_agent(&prod).await.unwrap();

    // The last write is stale: nothing of the batch lands, not even the membership index.
    let batch = [
        Write::InsertUser(user("zed")),
        Write::UpdateTeam(team("payments", &["alice", "zed"]), 1),
        Write::InsertSystem(system("db", "prod")),
        Write::UpdateAgent(prod.clone(), 7),
    ];
    let e = s.write_all(&batch).await.unwrap_err();
    assert_kind_key(e, "conflict", "agent", prod.id.as_str());
    assert!(s.user(&name("zed")).await.unwrap().is_none());
    assert!(s.system(&name("db")).await.unwrap().is_none());
    let payments = s.team(&name("payments")).await.unwrap().unwrap();
    assert_eq!((payments.value.members.len(), payments.version), (1, 1));
    assert!(s.teams_of(&name("zed")).await.unwrap().is_empty());

    // An insert of an existing key refuses the batch the same way.
    let e = s
        .write_all(&[
            Write::InsertUser(user("zed")),
            Write::InsertAgent(prod.clone()),
        ])
        .await
        .unwrap_err();
    assert_kind_key(e, "already exists", "agent", prod.id.as_str());
    assert!(s.user(&name("zed")).await.unwrap().is_none());

    // At the right versions the whole batch lands, and each write's new version comes back.
    let mut retired = prod.clone();
    retired.status = AgentStatus::Retired;
    let batch = [
        Write::InsertUser(user("zed")),
        Write::UpdateTeam(team("payments", &["alice", "zed"]), 1),
        Write::InsertSystem(system("db", "prod")),
        Write::UpdateAgent(retired.clone(), 1),
        Write::InsertGrant(grant(1, &prod.id, "db", GrantStatus::Requested)),
    ];
    assert_eq!(s.write_all(&batch).await.unwrap(), vec![1, 2, 1, 2, 1]);
    assert_eq!(
        team_names(&s.teams_of(&name("zed")).await.unwrap()),
        ["payments"]
    );
    assert_eq!(s.agent(&prod.id).await.unwrap().unwrap().value, retired);
    assert!(s.grant(&grant_id(1)).await.unwrap().is_some());
}

async fn registry_state_holds_every_record_with_its_version(h: &mut Harness) {
    let s = &h.store;
    s.insert_user(&user("alice")).await.unwrap();
    s.insert_team(&team("payments", &["alice"])).await.unwrap();
    s.update_team(&team("payments", &[]), 1).await.unwrap();
    s.insert_system(&system("db", "prod")).await.unwrap();
    let prod = agent("payments", "bot", "prod", AgentStatus::Active);
    s.insert_agent(&prod).await.unwrap();
    s.insert_grant(&grant(1, &prod.id, "db", GrantStatus::Denied))
        .await
        .unwrap();
    let state = s.registry_state().await.unwrap();
    assert_eq!(state.users.len(), 1);
    assert_eq!(
        (state.teams[0].value.name.as_str(), state.teams[0].version),
        ("payments", 2)
    );
    assert_eq!(state.systems.len(), 1);
    assert_eq!(state.agents[0].value, prod);
    assert_eq!(
        state.grants[0].value.status,
        GrantStatus::Denied,
        "every status"
    );
}

async fn teams_of_follows_membership_changes(h: &mut Harness) {
    let s = &h.store;
    s.insert_team(&team("payments", &["alice", "bob"]))
        .await
        .unwrap();
    s.insert_team(&team("search", &["alice"])).await.unwrap();
    assert_eq!(
        team_names(&s.teams_of(&name("alice")).await.unwrap()),
        ["payments", "search"]
    );
    assert_eq!(
        team_names(&s.teams_of(&name("bob")).await.unwrap()),
        ["payments"]
    );
    assert!(s.teams_of(&name("carol")).await.unwrap().is_empty());

    s.update_team(&team("payments", &["bob", "carol"]), 1)
        .await
        .unwrap();
    assert_eq!(
        team_names(&s.teams_of(&name("alice")).await.unwrap()),
        ["search"]
    );
    assert_eq!(
        team_names(&s.teams_of(&name("carol")).await.unwrap()),
        ["payments"]
    );

    s.update_team(&team("search", &[]), 1).await.unwrap();
    assert!(s.teams_of(&name("alice")).await.unwrap().is_empty());
    assert_eq!(
        team_names(&s.teams_of(&name("bob")).await.unwrap()),
        ["payments"]
    );
}

async fn failed_team_writes_leave_membership_alone(h: &mut Harness) {
    let s = &h.store;
    s.insert_team(&team("payments", &["alice"])).await.unwrap();
    s.update_team(&team("payments", &["alice", "bob"]), 1)
        .await
        .unwrap();

    let stale = s
        .update_team(&team("payments", &["mallory"]), 1)
        .await
        .unwrap_err();
    assert_kind_key(stale, "conflict", "team", "payments");
    let duplicate = s
        .insert_team(&team("payments", &["mallory"]))
        .await
        .unwrap_err();
    assert_kind_key(duplicate, "already exists", "team", "payments");
    let missing = s
        .update_team(&team("ghosts", &["mallory"]), 1)
        .await
        .unwrap_err();
    assert_kind_key(missing, "not found", "team", "ghosts");

    assert!(s.teams_of(&name("mallory")).await.unwrap().is_empty());
    assert_eq!(
        team_names(&s.teams_of(&name("bob")).await.unwrap()),
        ["payments"]
    );
    assert_eq!(
        s.team(&name("payments")).await.unwrap().unwrap().value,
        team("payments", &["alice", "bob"])
    );
}

async fn systems_insert_read_list_update(h: &mut Harness) {
    let s = &h.store;
    let db = system("billing-db", "prod");
    s.insert_system(&db).await.unwrap();
    s.insert_system(&system("analytics", "dev")).await.unwrap();

    let read = s.system(&name("billing-db")).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (db.clone(), 1));
    assert_eq!(
        s.systems().await.unwrap(),
        vec![system("analytics", "dev"), db.clone()]
    );

    let mut changed = db;
    changed.approvers = vec![name("team:payments")];
    changed.actions.insert(
        name("drop"),
        ActionSpec {
            class: Some(ActionClass::Admin),
            description: String::new(),
        },
    );
    changed.updated_at = at(100);
    assert_eq!(s.update_system(&changed, 1).await.unwrap(), 2);
    let read = s.system(&name("billing-db")).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (changed, 2));
}

async fn agents_insert_read_list_update(h: &mut Harness) {
    let s = &h.store;
    let bot = agent("payments", "invoice-bot", "prod", AgentStatus::Active);
    s.insert_agent(&bot).await.unwrap();
    s.insert_agent(&agent(
        "payments",
        "invoice-bot",
        "dev",
        AgentStatus::Active,
    ))
    .await
    .unwrap();

    let read = s.agent(&bot.id).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (bot.clone(), 1));
    let all = s.agents(&AgentFilter::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            agent("payments", "invoice-bot", "dev", AgentStatus::Active),
            bot.clone()
        ]
    );

    let mut changed = bot;
    changed
        .suspend(&name("carol"), at(50), "incident 42")
        .unwrap();
    assert_eq!(s.update_agent(&changed, 1).await.unwrap(), 2);
    let read = s.agent(&changed.id).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (changed, 2));
}

async fn agents_filter_by_team_environment_and_status(h: &mut Harness) {
    let s = &h.store;
    let fleet = [
        agent("payments", "bot-a", "prod", AgentStatus::Active),
        agent("payments", "bot-b", "dev", AgentStatus::Active),
        agent("payments", "bot-c", "prod", AgentStatus::Suspended),
        agent("search", "bot-a", "prod", AgentStatus::Active),
        agent("search", "bot-d", "staging", AgentStatus::Retired),
    ];
    for a in &fleet {
        s.insert_agent(a).await.unwrap();
    }
    let list = |f: AgentFilter| {
        let s = s.clone();
        async move { ids(&s.agents(&f).await.unwrap()) }
    };
    let id = |t, a, e| agent_id(t, a, e).to_string();

    assert_eq!(list(AgentFilter::default()).await, ids(&fleet));
    assert_eq!(
        list(agents_where(Some("payments"), None, None)).await,
        [
            id("payments", "bot-a", "prod"),
            id("payments", "bot-b", "dev"),
            id("payments", "bot-c", "prod")
        ]
    );
    assert_eq!(
        list(agents_where(None, Some("prod"), None)).await,
        [
            id("payments", "bot-a", "prod"),
            id("payments", "bot-c", "prod"),
            id("search", "bot-a", "prod")
        ]
    );
    assert_eq!(
        list(agents_where(None, None, Some(AgentStatus::Active))).await,
        [
            id("payments", "bot-a", "prod"),
            id("payments", "bot-b", "dev"),
            id("search", "bot-a", "prod")
        ]
    );
    assert_eq!(
        list(agents_where(Some("payments"), Some("prod"), None)).await,
        [
            id("payments", "bot-a", "prod"),
            id("payments", "bot-c", "prod")
        ]
    );
    assert_eq!(
        list(agents_where(
            Some("payments"),
            Some("prod"),
            Some(AgentStatus::Suspended)
        ))
        .await,
        [id("payments", "bot-c", "prod")]
    );
    assert!(list(agents_where(Some("nobody"), None, None))
        .await
        .is_empty());

    // The index columns follow updates.
    let mut a = fleet[0].clone();
    a.suspend(&name("carol"), at(60), "incident").unwrap();
    s.update_agent(&a, 1).await.unwrap();
    assert_eq!(
        list(agents_where(
            Some("payments"),
            None,
            Some(AgentStatus::Suspended)
        ))
        .await,
        [
            id("payments", "bot-a", "prod"),
            id("payments", "bot-c", "prod")
        ]
    );
    assert_eq!(
        list(agents_where(None, None, Some(AgentStatus::Active)))
            .await
            .len(),
        2
    );
}

async fn grants_insert_read_list_update(h: &mut Harness) {
    let s = &h.store;
    let bot = agent_id("payments", "invoice-bot", "prod");
    let g = grant(2, &bot, "billing-db", GrantStatus::Requested);
    s.insert_grant(&g).await.unwrap();
    s.insert_grant(&grant(1, &bot, "ledger", GrantStatus::Active))
        .await
        .unwrap();

    let read = s.grant(&g.id).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (g.clone(), 1));
    assert_eq!(
        s.grants(&GrantFilter::default()).await.unwrap(),
        vec![grant(1, &bot, "ledger", GrantStatus::Active), g.clone()]
    );

    let mut changed = g;
    changed.approvals.push(approval("alice"));
    changed.status = GrantStatus::Active;
    changed.updated_at = at(70);
    assert_eq!(s.update_grant(&changed, 1).await.unwrap(), 2);
    let read = s.grant(&changed.id).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (changed, 2));
}

async fn decision_facts_hold_every_agent_and_system_and_the_active_grants(h: &mut Harness) {
    let s = &h.store;
    let a = agent("payments", "bot-a", "prod", AgentStatus::Active);
    let b = agent("payments", "bot-b", "dev", AgentStatus::Suspended);
    s.insert_agent(&a).await.unwrap();
    s.insert_agent(&b).await.unwrap();
    let mut changed = a.clone();
    changed.description = "changed".into();
    s.update_agent(&changed, 1).await.unwrap();
    s.insert_system(&system("billing-db", "prod"))
        .await
        .unwrap();
    for (n, status) in [
        (1, GrantStatus::Active),
        (2, GrantStatus::Revoked),
        (3, GrantStatus::Requested),
        (4, GrantStatus::Active),
    ] {
        s.insert_grant(&grant(n, &a.id, "billing-db", status))
            .await
            .unwrap();
    }
    let facts = s.decision_facts().await.unwrap();
    let agents: Vec<(String, i64)> = facts
        .agents
        .iter()
        .map(|v| (v.value.id.to_string(), v.version))
        .collect();
    assert_eq!(
        agents,
        vec![(a.id.to_string(), 2), (b.id.to_string(), 1)],
        "every agent, whatever its status, with its version"
    );
    assert_eq!(facts.agents[0].value, changed);
    assert_eq!(facts.systems.len(), 1);
    let grants: Vec<String> = facts
        .grants
        .iter()
        .map(|v| v.value.id.to_string())
        .collect();
    assert_eq!(
        grants,
        vec![grant_id(1).to_string(), grant_id(4).to_string()]
    );
}

async fn revocations_insert_list_lift(h: &mut Harness) {
    use rein_core::revocation::{Revocation, RevocationTarget};
    let s = &h.store;
    let admin = rein_core::authz::Actor {
        user: name("admin"),
        role: Role::Admin,
        teams: BTreeSet::new(),
    };
    let team = Revocation::new(
        [2; 16],
        RevocationTarget::Team {
            team: name("payments"),
        },
        "incident",
        name("admin"),
        at(0),
    )
    .unwrap();
    let task = Revocation::new(
        [1; 16],
        RevocationTarget::Task {
            agent: agent_id("payments", "bot", "prod"),
            task_id: "t-1".into(),
        },
        "runaway",
        name("frank"),
        at(1),
    )
    .unwrap();
    s.insert_revocation(&team).await.unwrap();
    s.insert_revocation(&task).await.unwrap();
    assert!(matches!(
        s.insert_revocation(&task).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        s.revocations().await.unwrap(),
        vec![task.clone(), team.clone()]
    );
    let mut lifted = team.clone();
    lifted.lift(&admin, "contained", at(5)).unwrap();
    assert_eq!(s.update_revocation(&lifted, 1).await.unwrap(), 2);
    assert!(matches!(
        s.update_revocation(&lifted, 1).await,
        Err(StoreError::Conflict { .. })
    ));
    let read = s.revocation(&team.id).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (lifted, 2));
    let facts = s.decision_facts().await.unwrap();
    assert_eq!(facts.revocations.len(), 2);
}

async fn assertions_are_claimed_once_until_they_expire(h: &mut Harness) {
    let s = &h.store;
    assert!(s
        .claim_assertion("a", "j1", at(300_000), at(0))
        .await
        .unwrap());
    assert!(!s
        .claim_assertion("a", "j1", at(300_000), at(1))
        .await
        .unwrap());
    // Another agent's jti of the same value is its own.
    assert!(s
        .claim_assertion("b", "j1", at(300_000), at(1))
        .await
        .unwrap());
    // Once expired, the jti may be claimed again (and then not twice).
    assert!(s
        .claim_assertion("a", "j1", at(900_000), at(300_000))
        .await
        .unwrap());
    assert!(!s
        .claim_assertion("a", "j1", at(900_000), at(300_001))
        .await
        .unwrap());
}

async fn concurrent_claims_of_one_assertion_have_one_winner(h: &mut Harness) {
    let claims = (0..16).map(|_| {
        let s = Arc::clone(&h.store);
        tokio::spawn(async move { s.claim_assertion("a", "race", at(300_000), at(0)).await })
    });
    let mut won = 0;
    for c in claims {
        won += usize::from(c.await.unwrap().unwrap());
    }
    assert_eq!(won, 1);
}

async fn moot_revocations_and_expired_assertions_are_pruned(h: &mut Harness) {
    use rein_core::revocation::{Revocation, RevocationTarget};
    let s = &h.store;
    let token = |id: u8, expires_ms| {
        Revocation::new(
            [id; 16],
            RevocationTarget::Token {
                agent: agent_id("payments", "bot", "prod"),
                jti: format!("jti-{id}"),
                expires_at: Some(at(expires_ms)),
            },
            "leaked",
            name("frank"),
            at(0),
        )
        .unwrap()
    };
    let team = Revocation::new(
        [9; 16],
        RevocationTarget::Team {
            team: name("payments"),
        },
        "incident",
        name("admin"),
        at(0),
    )
    .unwrap();
    let (gone, kept) = (token(1, 1_000), token(2, 10_000));
    for r in [&gone, &kept, &team] {
        s.insert_revocation(r).await.unwrap();
    }
    s.ack_revocations("r1", &[gone.id.clone(), kept.id.clone()], at(1))
        .await
        .unwrap();
    s.claim_assertion("a", "old", at(1_000), at(0))
        .await
        .unwrap();
    s.claim_assertion("a", "new", at(10_000), at(0))
        .await
        .unwrap();
    // The moot revocation, its acknowledgement and the expired assertion (no replicas).
    assert_eq!(s.prune_expired(at(5_000)).await.unwrap(), 3);
    let left: Vec<_> = s
        .revocations()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut expected = vec![kept.id.clone(), team.id.clone()];
    expected.sort();
    assert_eq!(left, expected);
    assert!(!s
        .claim_assertion("a", "new", at(10_000), at(5_000))
        .await
        .unwrap());
    assert_eq!(s.prune_expired(at(5_000)).await.unwrap(), 0);
}

async fn replicas_acknowledge_revocations(h: &mut Harness) {
    let s = &h.store;
    s.heartbeat("r1", at(0), at(10_000)).await.unwrap();
    s.heartbeat("r2", at(0), at(10_000)).await.unwrap();
    s.heartbeat("stale", at(0), at(1_000)).await.unwrap();
    s.ack_revocations("r1", &["rev".into()], at(10_001))
        .await
        .unwrap();
    // Acknowledging twice keeps the first time.
    s.ack_revocations("r1", &["rev".into()], at(10_500))
        .await
        .unwrap();
    let acks = s.revocation_acks("rev", at(5_000)).await.unwrap();
    assert_eq!(
        acks,
        vec![
            rein_store::ReplicaAck {
                replica: "r1".into(),
                alive: true,
                last_seen: Some(at(10_000)),
                applied_at: Some(at(10_001)),
            },
            rein_store::ReplicaAck {
                replica: "r2".into(),
                alive: true,
                last_seen: Some(at(10_000)),
                applied_at: None,
            },
        ]
    );
    // A replica that acknowledged and then left is still listed, as not alive.
    s.ack_revocations("r2", &["rev".into()], at(10_002))
        .await
        .unwrap();
    s.leave("r2").await.unwrap();
    let acks = s.revocation_acks("rev", at(5_000)).await.unwrap();
    let summary: Vec<_> = acks
        .iter()
        .map(|a| (a.replica.as_str(), a.alive, a.applied_at.is_some()))
        .collect();
    assert_eq!(summary, vec![("r1", true, true), ("r2", false, true)]);
    // Pruning drops the replica silent for long.
    let listed = |acks: Vec<rein_store::ReplicaAck>| -> Vec<String> {
        acks.into_iter().map(|a| a.replica).collect()
    };
    assert_eq!(
        listed(s.revocation_acks("other", at(0)).await.unwrap()),
        ["r1", "stale"]
    );
    s.prune_expired(at(5_000)).await.unwrap();
    assert_eq!(
        listed(s.revocation_acks("other", at(0)).await.unwrap()),
        ["r1"]
    );
}

fn step_up(id: u8, digest: &str) -> rein_core::approval::ApprovalRequest {
    use rein_core::approval::{ApprovalRequest, StepUpCall};
    ApprovalRequest::open(
        [id; 16],
        StepUpCall {
            agent: agent_id("payments", "bot", "prod"),
            system: name("billing-db"),
            action: name("refund"),
            mutating: true,
            production: true,
            argument_digest: digest.into(),
            arguments_preview: serde_json::json!({"amount": 5}),
            task_id: None,
            intent: None,
            risk: Some(90),
            confidence: None,
            policies: vec!["high-risk".into()],
            policy_version: "v1".into(),
            approvers_required: 1,
            decision_id: format!("dec_{id}"),
            requested_by: "user:alice".into(),
        },
        vec![name("user:bob")],
        None,
        900,
        at(0),
    )
    .unwrap()
}

async fn one_pending_approval_per_call(h: &mut Harness) {
    use rein_core::approval::ApprovalStatus;
    let s = &h.store;
    let first = step_up(1, "d1");
    s.insert_approval(&first).await.unwrap();
    // The same call again while the first is pending: refused, the first is found.
    assert!(matches!(
        s.insert_approval(&step_up(2, "d1")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let found = s
        .pending_approval(&first.binding_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.value.id.as_str(), found.version),
        (first.id.as_str(), 1)
    );
    // Other arguments are another call.
    s.insert_approval(&step_up(3, "d2")).await.unwrap();
    // Once the first is decided, the same call may ask again.
    let mut decided = first.clone();
    decided.status = ApprovalStatus::Denied;
    assert_eq!(s.update_approval(&decided, 1).await.unwrap(), 2);
    assert!(s
        .pending_approval(&first.binding_key())
        .await
        .unwrap()
        .is_none());
    s.insert_approval(&step_up(4, "d1")).await.unwrap();
    let pending: Vec<String> = s
        .approvals(Some(ApprovalStatus::Pending))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(pending, vec![step_up(3, "d2").id, step_up(4, "d1").id]);
    assert_eq!(s.approvals(None).await.unwrap().len(), 3);
    assert_eq!(s.approval(&first.id).await.unwrap().unwrap().value, decided);
}

async fn webhook_deliveries_are_replaced_and_listed(h: &mut Harness) {
    let s = &h.store;
    s.record_delivery("d1", "apr_1", r#"{"attempts":1}"#, at(0))
        .await
        .unwrap();
    s.record_delivery("d2", "apr_1", r#"{"attempts":1}"#, at(1))
        .await
        .unwrap();
    s.record_delivery("d3", "apr_2", r#"{"attempts":1}"#, at(1))
        .await
        .unwrap();
    s.record_delivery("d1", "apr_1", r#"{"attempts":2}"#, at(2))
        .await
        .unwrap();
    assert_eq!(
        s.deliveries("apr_1").await.unwrap(),
        vec![
            r#"{"attempts":2}"#.to_owned(),
            r#"{"attempts":1}"#.to_owned()
        ]
    );
    assert!(s.deliveries("apr_9").await.unwrap().is_empty());
}

async fn grants_filter_by_agent_system_and_status(h: &mut Harness) {
    let s = &h.store;
    let a = agent_id("payments", "bot-a", "prod");
    let b = agent_id("payments", "bot-b", "prod");
    let grants = [
        grant(1, &a, "billing-db", GrantStatus::Active),
        grant(2, &a, "billing-db", GrantStatus::Revoked),
        grant(3, &a, "ledger", GrantStatus::Requested),
        grant(4, &b, "billing-db", GrantStatus::Active),
        grant(5, &b, "crm", GrantStatus::Denied),
    ];
    for g in &grants {
        s.insert_grant(g).await.unwrap();
    }
    let list = |f: GrantFilter| {
        let s = s.clone();
        async move { grant_ids(&s.grants(&f).await.unwrap()) }
    };
    let id = |n| grant_id(n).to_string();

    assert_eq!(list(GrantFilter::default()).await, grant_ids(&grants));
    assert_eq!(
        list(grants_where(Some(&a), None, None)).await,
        [id(1), id(2), id(3)]
    );
    assert_eq!(
        list(grants_where(None, Some("billing-db"), None)).await,
        [id(1), id(2), id(4)]
    );
    assert_eq!(
        list(grants_where(None, None, Some(GrantStatus::Active))).await,
        [id(1), id(4)]
    );
    assert_eq!(
        list(grants_where(Some(&a), Some("billing-db"), None)).await,
        [id(1), id(2)]
    );
    assert_eq!(
        list(grants_where(
            Some(&a),
            Some("billing-db"),
            Some(GrantStatus::Active)
        ))
        .await,
        [id(1)]
    );
    assert!(list(grants_where(Some(&b), Some("ledger"), None))
        .await
        .is_empty());

    // The index columns follow updates.
    let mut revoked = grants[0].clone();
    revoked.revoke(&name("carol"), "incident", at(80)).unwrap();
    s.update_grant(&revoked, 1).await.unwrap();
    assert_eq!(
        list(grants_where(
            Some(&a),
            Some("billing-db"),
            Some(GrantStatus::Active)
        ))
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(grants_where(None, None, Some(GrantStatus::Revoked))).await,
        [id(1), id(2)]
    );
}

async fn inserting_an_existing_key_is_already_exists(h: &mut Harness) {
    let s = &h.store;
    let bot = agent("payments", "invoice-bot", "prod", AgentStatus::Active);
    let g = grant(1, &bot.id, "billing-db", GrantStatus::Requested);
    s.insert_user(&user("alice")).await.unwrap();
    s.insert_api_token(&token("rein_a1", "alice"))
        .await
        .unwrap();
    s.insert_team(&team("payments", &["alice"])).await.unwrap();
    s.insert_system(&system("billing-db", "prod"))
        .await
        .unwrap();
    s.insert_agent(&bot).await.unwrap();
    s.insert_grant(&g).await.unwrap();

    let again = User {
        role: Role::Admin,
        ..user("alice")
    };
    assert_kind_key(
        s.insert_user(&again).await.unwrap_err(),
        "already exists",
        "user",
        "alice",
    );
    assert_kind_key(
        s.insert_api_token(&token("rein_a1", "bob"))
            .await
            .unwrap_err(),
        "already exists",
        "api token",
        "rein_a1",
    );
    assert_kind_key(
        s.insert_team(&team("payments", &[])).await.unwrap_err(),
        "already exists",
        "team",
        "payments",
    );
    assert_kind_key(
        s.insert_system(&system("billing-db", "dev"))
            .await
            .unwrap_err(),
        "already exists",
        "system",
        "billing-db",
    );
    let suspended = agent("payments", "invoice-bot", "prod", AgentStatus::Suspended);
    assert_kind_key(
        s.insert_agent(&suspended).await.unwrap_err(),
        "already exists",
        "agent",
        bot.id.as_str(),
    );
    let other = grant(1, &bot.id, "ledger", GrantStatus::Active);
    assert_kind_key(
        s.insert_grant(&other).await.unwrap_err(),
        "already exists",
        "grant",
        g.id.as_str(),
    );

    // The originals are untouched, still at version 1.
    let u = s.user(&name("alice")).await.unwrap().unwrap();
    assert_eq!((u.value, u.version), (user("alice"), 1));
    assert_eq!(
        s.api_token("rein_a1").await.unwrap().unwrap().user.as_str(),
        "alice"
    );
    assert_eq!(
        team_names(&s.teams_of(&name("alice")).await.unwrap()),
        ["payments"]
    );
    assert_eq!(
        s.system(&name("billing-db")).await.unwrap().unwrap().value,
        system("billing-db", "prod")
    );
    assert_eq!(s.agent(&bot.id).await.unwrap().unwrap().value, bot);
    assert_eq!(s.grant(&g.id).await.unwrap().unwrap().value, g);
}

async fn updating_a_missing_record_is_not_found(h: &mut Harness) {
    let s = &h.store;
    let bot = agent("payments", "invoice-bot", "prod", AgentStatus::Active);
    let g = grant(1, &bot.id, "billing-db", GrantStatus::Requested);
    assert_kind_key(
        s.update_user(&user("alice"), 1).await.unwrap_err(),
        "not found",
        "user",
        "alice",
    );
    assert_kind_key(
        s.update_team(&team("payments", &[]), 1).await.unwrap_err(),
        "not found",
        "team",
        "payments",
    );
    assert_kind_key(
        s.update_system(&system("billing-db", "prod"), 1)
            .await
            .unwrap_err(),
        "not found",
        "system",
        "billing-db",
    );
    assert_kind_key(
        s.update_agent(&bot, 1).await.unwrap_err(),
        "not found",
        "agent",
        bot.id.as_str(),
    );
    assert_kind_key(
        s.update_grant(&g, 1).await.unwrap_err(),
        "not found",
        "grant",
        g.id.as_str(),
    );
    assert!(
        s.user(&name("alice")).await.unwrap().is_none(),
        "a failed update creates nothing"
    );
}

async fn stale_update_is_conflict_and_versions_increment(h: &mut Harness) {
    let s = &h.store;
    let mut u = user("alice");
    let mut t = team("payments", &["alice"]);
    let mut sys = system("billing-db", "prod");
    let mut a = agent("payments", "invoice-bot", "prod", AgentStatus::Active);
    let mut g = grant(1, &a.id, "billing-db", GrantStatus::Requested);
    s.insert_user(&u).await.unwrap();
    s.insert_team(&t).await.unwrap();
    s.insert_system(&sys).await.unwrap();
    s.insert_agent(&a).await.unwrap();
    s.insert_grant(&g).await.unwrap();

    for expected in 1..=3 {
        u.display_name = format!("v{expected}");
        t.description = format!("v{expected}");
        sys.description = format!("v{expected}");
        a.description = format!("v{expected}");
        g.justification = format!("v{expected}");
        assert_eq!(s.update_user(&u, expected).await.unwrap(), expected + 1);
        assert_eq!(s.update_team(&t, expected).await.unwrap(), expected + 1);
        assert_eq!(s.update_system(&sys, expected).await.unwrap(), expected + 1);
        assert_eq!(s.update_agent(&a, expected).await.unwrap(), expected + 1);
        assert_eq!(s.update_grant(&g, expected).await.unwrap(), expected + 1);
    }

    // Version 4 is current; writing at 3 (stale) or 5 (never existed) conflicts and changes nothing.
    for stale in [3, 5] {
        let u2 = User {
            display_name: "stale".to_owned(),
            ..u.clone()
        };
        assert_kind_key(
            s.update_user(&u2, stale).await.unwrap_err(),
            "conflict",
            "user",
            "alice",
        );
        let t2 = Team {
            description: "stale".to_owned(),
            ..t.clone()
        };
        assert_kind_key(
            s.update_team(&t2, stale).await.unwrap_err(),
            "conflict",
            "team",
            "payments",
        );
        let sys2 = System {
            description: "stale".to_owned(),
            ..sys.clone()
        };
        assert_kind_key(
            s.update_system(&sys2, stale).await.unwrap_err(),
            "conflict",
            "system",
            "billing-db",
        );
        let a2 = Agent {
            description: "stale".to_owned(),
            ..a.clone()
        };
        assert_kind_key(
            s.update_agent(&a2, stale).await.unwrap_err(),
            "conflict",
            "agent",
            a.id.as_str(),
        );
        let g2 = Grant {
            justification: "stale".to_owned(),
            ..g.clone()
        };
        assert_kind_key(
            s.update_grant(&g2, stale).await.unwrap_err(),
            "conflict",
            "grant",
            g.id.as_str(),
        );
    }

    let read_u = s.user(&u.name).await.unwrap().unwrap();
    assert_eq!((read_u.value, read_u.version), (u, 4));
    let read_t = s.team(&t.name).await.unwrap().unwrap();
    assert_eq!((read_t.value, read_t.version), (t, 4));
    let read_sys = s.system(&sys.name).await.unwrap().unwrap();
    assert_eq!((read_sys.value, read_sys.version), (sys, 4));
    let read_a = s.agent(&a.id).await.unwrap().unwrap();
    assert_eq!((read_a.value, read_a.version), (a, 4));
    let read_g = s.grant(&g.id).await.unwrap().unwrap();
    assert_eq!((read_g.value, read_g.version), (g, 4));
}

async fn reading_a_missing_record_is_none(h: &mut Harness) {
    let s = &h.store;
    assert!(s.user(&name("alice")).await.unwrap().is_none());
    assert!(s.api_token("rein_a1").await.unwrap().is_none());
    assert!(s.team(&name("payments")).await.unwrap().is_none());
    assert!(s.system(&name("billing-db")).await.unwrap().is_none());
    assert!(s
        .agent(&agent_id("payments", "bot", "prod"))
        .await
        .unwrap()
        .is_none());
    assert!(s.grant(&grant_id(1)).await.unwrap().is_none());
    assert!(s.users().await.unwrap().is_empty());
    assert!(s.teams().await.unwrap().is_empty());
    assert!(s.systems().await.unwrap().is_empty());
    assert!(s.agents(&AgentFilter::default()).await.unwrap().is_empty());
    assert!(s.grants(&GrantFilter::default()).await.unwrap().is_empty());
}

/// Keys sort as Rust strings do (bytewise), not by a locale's collation that ignores `-` and `_`.
async fn lists_are_ordered_by_key_bytewise(h: &mut Harness) {
    let s = &h.store;
    let names = ["b", "a_b", "ab", "a-b", "a0", "a", "a-c", "ac"];
    for n in names {
        s.insert_user(&user(n)).await.unwrap();
        s.insert_team(&team(n, &["zed"])).await.unwrap();
        s.insert_system(&system(n, "prod")).await.unwrap();
        s.insert_agent(&agent("payments", n, "prod", AgentStatus::Active))
            .await
            .unwrap();
    }
    for n in [0x0f_u128, 0xa0, 0x01, 0xff << 120, 0x10] {
        s.insert_grant(&grant(
            n,
            &agent_id("payments", "a", "prod"),
            "db",
            GrantStatus::Active,
        ))
        .await
        .unwrap();
    }
    let mut sorted: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    sorted.sort();

    let users: Vec<String> = s
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(users, sorted);
    let teams: Vec<String> = s
        .teams()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(teams, sorted);
    assert_eq!(team_names(&s.teams_of(&name("zed")).await.unwrap()), sorted);
    let systems: Vec<String> = s
        .systems()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.name.to_string())
        .collect();
    assert_eq!(systems, sorted);
    let agents = ids(&s.agents(&AgentFilter::default()).await.unwrap());
    let mut expected: Vec<String> = sorted
        .iter()
        .map(|n| agent_id("payments", n, "prod").to_string())
        .collect();
    expected.sort();
    assert_eq!(agents, expected);
    let grants = grant_ids(&s.grants(&GrantFilter::default()).await.unwrap());
    let mut expected = grants.clone();
    expected.sort();
    assert_eq!(grants, expected);
}

async fn damaged_document_is_corrupt_not_skipped(h: &mut Harness) {
    let bot = agent("payments", "invoice-bot", "prod", AgentStatus::Active);
    let g = grant(1, &bot.id, "billing-db", GrantStatus::Active);
    {
        let s = &h.store;
        s.insert_user(&user("alice")).await.unwrap();
        s.insert_user(&user("bob")).await.unwrap();
        s.insert_api_token(&token("rein_a1", "alice"))
            .await
            .unwrap();
        s.insert_team(&team("payments", &["alice"])).await.unwrap();
        s.insert_system(&system("billing-db", "prod"))
            .await
            .unwrap();
        s.insert_agent(&bot).await.unwrap();
        s.insert_grant(&g).await.unwrap();
    }
    h.execute_raw(
        "UPDATE users SET doc = $1 WHERE name = $2",
        &["not json", "alice"],
    )
    .await;
    h.execute_raw(
        "UPDATE api_tokens SET doc = $1 WHERE id = $2",
        &["{\"id\": \"rein_a1\"}", "rein_a1"],
    )
    .await;
    h.execute_raw(
        "UPDATE teams SET doc = $1 WHERE name = $2",
        &["{\"name\": \"Payments!\"}", "payments"],
    )
    .await;
    h.execute_raw(
        "UPDATE systems SET doc = $1 WHERE name = $2",
        &["[]", "billing-db"],
    )
    .await;
    h.execute_raw(
        "UPDATE agents SET doc = $1 WHERE id = $2",
        &["{\"id\": ", bot.id.as_str()],
    )
    .await;
    let extra_field = serde_json::to_string(&g)
        .unwrap()
        .replacen('{', "{\"smuggled\": true, ", 1);
    h.execute_raw(
        "UPDATE grants SET doc = $1 WHERE id = $2",
        &[&extra_field, g.id.as_str()],
    )
    .await;

    let s = &h.store;
    assert_kind_key(
        s.user(&name("alice")).await.unwrap_err(),
        "corrupt",
        "user",
        "alice",
    );
    assert_kind_key(s.users().await.unwrap_err(), "corrupt", "user", "alice");
    assert_eq!(
        s.user(&name("bob")).await.unwrap().unwrap().value,
        user("bob"),
        "intact rows still read"
    );
    assert_kind_key(
        s.api_token("rein_a1").await.unwrap_err(),
        "corrupt",
        "api token",
        "rein_a1",
    );
    assert_kind_key(
        s.api_tokens_of(&name("alice")).await.unwrap_err(),
        "corrupt",
        "api token",
        "rein_a1",
    );
    assert_kind_key(
        s.revoke_api_token("rein_a1", at(9)).await.unwrap_err(),
        "corrupt",
        "api token",
        "rein_a1",
    );
    assert_kind_key(
        s.team(&name("payments")).await.unwrap_err(),
        "corrupt",
        "team",
        "payments",
    );
    assert_kind_key(s.teams().await.unwrap_err(), "corrupt", "team", "payments");
    assert_kind_key(
        s.system(&name("billing-db")).await.unwrap_err(),
        "corrupt",
        "system",
        "billing-db",
    );
    assert_kind_key(
        s.systems().await.unwrap_err(),
        "corrupt",
        "system",
        "billing-db",
    );
    assert_kind_key(
        s.agent(&bot.id).await.unwrap_err(),
        "corrupt",
        "agent",
        bot.id.as_str(),
    );
    assert_kind_key(
        s.agents(&AgentFilter::default()).await.unwrap_err(),
        "corrupt",
        "agent",
        bot.id.as_str(),
    );
    let by_team = agents_where(Some("payments"), None, None);
    assert_kind_key(
        s.agents(&by_team).await.unwrap_err(),
        "corrupt",
        "agent",
        bot.id.as_str(),
    );
    assert_kind_key(
        s.grant(&g.id).await.unwrap_err(),
        "corrupt",
        "grant",
        g.id.as_str(),
    );
    let by_agent = grants_where(Some(&bot.id), None, None);
    assert_kind_key(
        s.grants(&by_agent).await.unwrap_err(),
        "corrupt",
        "grant",
        g.id.as_str(),
    );

    // A damaged membership row is reported too.
    h.execute_raw(
        "INSERT INTO teams (name, version, doc, created_at) VALUES ($1, 1, '{}', 0)",
        &["Bad Team"],
    )
    .await;
    h.execute_raw(
        "INSERT INTO team_members (team, user_name) VALUES ($1, $2)",
        &["Bad Team", "bob"],
    )
    .await;
    assert_kind_key(
        h.store.teams_of(&name("bob")).await.unwrap_err(),
        "corrupt",
        "team membership",
        "Bad Team",
    );
}

async fn document_of_another_key_is_corrupt(h: &mut Harness) {
    let a = agent("payments", "bot-a", "prod", AgentStatus::Active);
    let b = agent("payments", "bot-b", "prod", AgentStatus::Active);
    h.store.insert_agent(&a).await.unwrap();
    h.store.insert_agent(&b).await.unwrap();
    h.execute_raw(
        "UPDATE agents SET doc = (SELECT doc FROM agents WHERE id = $1) WHERE id = $2",
        &[a.id.as_str(), b.id.as_str()],
    )
    .await;

    let err = h.store.agent(&b.id).await.unwrap_err();
    assert!(err.to_string().contains(a.id.as_str()), "{err}");
    assert_kind_key(err, "corrupt", "agent", b.id.as_str());
    assert_kind_key(
        h.store.agents(&AgentFilter::default()).await.unwrap_err(),
        "corrupt",
        "agent",
        b.id.as_str(),
    );
}

async fn records_survive_reopen(h: &mut Harness) {
    let bot = agent("payments", "invoice-bot", "prod", AgentStatus::Active);
    let mut g = grant(1, &bot.id, "billing-db", GrantStatus::Requested);
    {
        let s = &h.store;
        s.insert_user(&user("alice")).await.unwrap();
        s.insert_api_token(&token("rein_a1", "alice"))
            .await
            .unwrap();
        s.insert_team(&team("payments", &["alice"])).await.unwrap();
        s.insert_system(&system("billing-db", "prod"))
            .await
            .unwrap();
        s.insert_agent(&bot).await.unwrap();
        s.insert_grant(&g).await.unwrap();
        g.approvals.push(approval("alice"));
        g.status = GrantStatus::Active;
        s.update_grant(&g, 1).await.unwrap();
        s.revoke_api_token("rein_a1", at(7)).await.unwrap();
    }

    h.reopen().await;
    let s = &h.store;
    s.ping().await.unwrap();
    assert_eq!(
        s.user(&name("alice")).await.unwrap().unwrap().value,
        user("alice")
    );
    assert_eq!(
        s.api_token("rein_a1").await.unwrap().unwrap().revoked_at,
        Some(at(7))
    );
    assert_eq!(
        team_names(&s.teams_of(&name("alice")).await.unwrap()),
        ["payments"]
    );
    assert_eq!(
        s.system(&name("billing-db")).await.unwrap().unwrap().value,
        system("billing-db", "prod")
    );
    assert_eq!(s.agent(&bot.id).await.unwrap().unwrap().value, bot);
    let read = s.grant(&g.id).await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (g.clone(), 2));
    let active = grants_where(Some(&bot.id), Some("billing-db"), Some(GrantStatus::Active));
    assert_eq!(s.grants(&active).await.unwrap(), vec![g]);
}

/// `TASKS` writers each add their own approval to one grant by read, modify, compare-and-swap,
/// retrying on conflict. All first read version 1 and meet at a barrier before writing, so they
/// race for real: exactly one wins each version, and no approval is lost.
async fn concurrent_compare_and_swap_loses_no_update(h: &mut Harness) {
    const TASKS: usize = 16;
    let bot = agent_id("payments", "invoice-bot", "prod");
    let g = grant(1, &bot, "billing-db", GrantStatus::Requested);
    h.store.insert_grant(&g).await.unwrap();

    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let store = h.store.clone();
        let barrier = barrier.clone();
        let id = g.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0_u32;
            let mut first = true;
            loop {
                let current = store.grant(&id).await.unwrap().unwrap();
                if first {
                    barrier.wait().await;
                    first = false;
                }
                let mut next = current.value;
                next.approvals.push(approval(&format!("user-{i}")));
                match store.update_grant(&next, current.version).await {
                    Ok(version) => {
                        assert_eq!(version, current.version + 1);
                        return (current.version, conflicts);
                    }
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }));
    }
    let mut won = Vec::new();
    let mut conflicts = Vec::new();
    for task in tasks {
        let (version, c) = task.await.unwrap();
        won.push(version);
        conflicts.push(c);
    }

    won.sort_unstable();
    let expected: Vec<i64> = (1..=TASKS as i64).collect();
    assert_eq!(won, expected, "each version is won by exactly one writer");
    assert_eq!(
        conflicts.iter().filter(|c| **c == 0).count(),
        1,
        "one writer wins the first race, the rest conflict"
    );
    assert!(conflicts.iter().sum::<u32>() >= (TASKS - 1) as u32);

    let last = h.store.grant(&g.id).await.unwrap().unwrap();
    assert_eq!(last.version, TASKS as i64 + 1);
    let by: BTreeSet<String> = last
        .value
        .approvals
        .iter()
        .map(|a| a.by.to_string())
        .collect();
    assert_eq!(
        by,
        (0..TASKS)
            .map(|i| format!("user-{i}"))
            .collect::<BTreeSet<_>>(),
        "no lost update"
    );
}

// === opening and errors ===

#[tokio::test]
async fn open_picks_sqlite_for_paths_and_refuses_other_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picked.db");
    let store = rein_store::open(path.to_str().unwrap()).await.unwrap();
    store.insert_user(&user("alice")).await.unwrap();
    drop(store);
    let url = format!("sqlite://{}", path.display());
    let again = rein_store::open(&url).await.unwrap();
    assert_eq!(again.users().await.unwrap(), vec![user("alice")]);

    let err = rein_store::open("mysql://root:hunter2@db/rein")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn postgres_errors_never_show_the_password() {
    for url in [
        "postgres://rein:hunter2@db.example:99999/rein",
        "postgresql://rein:hunter2@[::1/rein",
    ] {
        let err = rein_store::open(url).await.err().unwrap();
        assert!(matches!(err, StoreError::Database(_)), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let err = PgStore::connect_with_schema(&postgres_url(), "Robert'); DROP TABLE students;--")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("invalid schema name"), "{err}");
}

#[tokio::test]
async fn postgres_connect_failure_names_the_server_not_the_password() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    h.cleanup().await;
    let options = PgConnectOptions::from_str(&postgres_url()).unwrap();
    let url = format!(
        "postgres://{}:hunter2@{}:{}/rein_no_such_database",
        options.get_username(),
        options.get_host(),
        options.get_port()
    );
    let err = rein_store::open(&url).await.err().unwrap();
    let message = err.to_string();
    assert!(message.contains("rein_no_such_database"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

/// An access review over the agents `names` of team `payments` in prod, opened at `at(0)`.
fn review(
    id: u8,
    names: &[&str],
) -> (
    rein_core::review::ReviewCampaign,
    Vec<rein_core::review::ReviewItem>,
) {
    use rein_core::review::{ReviewCampaign, ReviewItem, ReviewScope};
    let agents: Vec<Agent> = names
        .iter()
        .map(|n| {
            let mut a = agent("payments", n, "prod", AgentStatus::Active);
            a.roles.reviewers = vec![name("team:sec")];
            a.roles.review_cadence_days = Some(30);
            a
        })
        .collect();
    let campaign = ReviewCampaign::open(
        [id; 16],
        ReviewScope::default(),
        agents.iter().map(|a| a.id.clone()).collect(),
        &name("root"),
        at(0),
    )
    .unwrap();
    let items = agents
        .iter()
        .map(|a| {
            let grants = [grant(
                u128::from(id),
                &a.id,
                "billing-db",
                GrantStatus::Active,
            )];
            ReviewItem::open(&campaign, a, &grants, &BTreeMap::new()).unwrap()
        })
        .collect();
    (campaign, items)
}

async fn reviews_open_whole_and_change_by_compare_and_swap(h: &mut Harness) {
    use rein_core::authz::Actor;
    use rein_core::review::{CampaignStatus, ReviewVerdict};
    let s = &h.store;
    let (campaign, items) = review(1, &["bot-b", "bot-a"]);
    s.insert_review(&campaign, &items).await.unwrap();
    // A second campaign reusing an item key is refused whole: its campaign is not written.
    let (mut clash, _) = review(2, &["bot-c"]);
    clash.agents = vec![items[0].agent.clone()];
    assert!(matches!(
        s.insert_review(&clash, &items[..1]).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(s.review(&clash.id).await.unwrap().is_none());

    let read = s.review(&campaign.id).await.unwrap().unwrap();
    assert_eq!((read.value.clone(), read.version), (campaign.clone(), 1));
    let listed: Vec<String> = s
        .review_items(&campaign.id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.agent.to_string())
        .collect();
    assert_eq!(
        listed,
        [
            agent_id("payments", "bot-a", "prod").to_string(),
            agent_id("payments", "bot-b", "prod").to_string()
        ]
    );

    // An item changes by compare-and-swap; a stale writer conflicts.
    let agent = agent_id("payments", "bot-a", "prod");
    let mut item = s.review_item(&campaign.id, &agent).await.unwrap().unwrap();
    assert_eq!(item.version, 1);
    let frank = Actor {
        user: name("frank"),
        role: rein_core::user::Role::Member,
        teams: [name("sec")].into(),
    };
    let g = item.value.grants[0].grant.clone();
    assert!(item
        .value
        .decide(&frank, &g, ReviewVerdict::Keep, "in use", at(5))
        .unwrap());
    assert_eq!(s.update_review_item(&item.value, 1).await.unwrap(), 2);
    assert!(matches!(
        s.update_review_item(&item.value, 1).await,
        Err(StoreError::Conflict { .. })
    ));
    let again = s.review_item(&campaign.id, &agent).await.unwrap().unwrap();
    assert!(again.value.is_complete());
    assert!(s
        .review_item(&campaign.id, &agent_id("payments", "bot-z", "prod"))
        .await
        .unwrap()
        .is_none());

    // Campaigns are listed by status.
    let mut closed = campaign.clone();
    closed.close(&name("root"), "done", at(6)).unwrap();
    assert_eq!(s.update_review(&closed, 1).await.unwrap(), 2);
    assert!(s
        .reviews(Some(CampaignStatus::Open))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.reviews(None).await.unwrap(), vec![closed.clone()]);
    h.reopen().await;
    assert_eq!(
        h.store.review(&campaign.id).await.unwrap().unwrap().value,
        closed
    );
}
