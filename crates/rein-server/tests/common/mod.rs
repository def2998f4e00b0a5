//! The test harness: the real router served on `127.0.0.1:0` by [`rein_server::serve`], over a
//! real store, driven with reqwest.
//!
//! Every test runs once per backend ([`backends`]): SQLite (a fresh file in a temporary
//! directory) always, and PostgreSQL (a fresh schema in the database at `REIN_TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`) when it is reachable. When it is not, the
//! PostgreSQL run is skipped with a notice, unless `REIN_REQUIRE_POSTGRES=1` (CI), which makes it
//! fail instead. These are the store crate's conventions.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rein_audit::{AuditSink, Checkpoint, Hash, LogConfig, Record, SinkError};
use rein_core::agent::Agent;
use rein_core::grant::Grant;
use rein_core::id::{AgentId, GrantId, SystemName, TeamName, UserName};
use rein_core::mcp::SecretName;
use rein_core::revocation::Revocation;
use rein_core::secret::StoredSecret;
use rein_core::system::System;
use rein_core::team::Team;
use rein_core::user::{ApiToken, User};
use rein_keys::{KeyPurpose, MasterKey, SealedKey};
use rein_registry::{Clock, Registry, RegistryConfig};
use rein_server::AppState;
use rein_store::{
    AgentFilter, AuditFilter, AuditRow, AuditStore, DecisionFacts, GrantFilter, PgStore,
    SqliteStore, Store, StoreError, Version, Versioned,
};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use tokio::sync::oneshot;

// === logs ===

/// Everything every test in this binary logs, at every level. Installed as the global subscriber
/// by the first server to start, so no callsite is ever registered without it.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured logs of this test binary.
pub fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

// === backends ===

/// Where a test server keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh schema in this PostgreSQL database.
    Postgres(String),
}

/// The backends to run every test on.
pub fn backends() -> Vec<Backend> {
    let url = std::env::var("REIN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    vec![Backend::Sqlite, Backend::Postgres(url)]
}

/// A schema name no other test (in this or another process) uses.
fn fresh_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random =
        RandomState::new().hash_one((std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    format!("rein_server_test_{random:016x}")
}

/// Where a test's data lives, to be removed when the test passes.
enum Data {
    /// The SQLite file's directory, removed on drop.
    Sqlite { _dir: TempDir },
    /// The PostgreSQL database and the test's schema in it.
    Postgres { url: String, schema: String },
}

/// A fresh store, or `None` (with a notice) when PostgreSQL is unreachable and not required.
async fn open_store(backend: &Backend) -> Option<(Arc<dyn Store>, Data)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("rein.db"))
                .await
                .unwrap();
            Some((Arc::new(store), Data::Sqlite { _dir: dir }))
        }
        Backend::Postgres(url) => {
            let schema = fresh_schema();
            match PgStore::connect_with_schema(url, &schema).await {
                Ok(store) => Some((
                    Arc::new(store),
                    Data::Postgres {
                        url: url.clone(),
                        schema,
                    },
                )),
                Err(e) => {
                    if std::env::var("REIN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                        panic!("PostgreSQL is unusable and REIN_REQUIRE_POSTGRES=1: {e}");
                    }
                    eprintln!("skipping the PostgreSQL run: {e}; set REIN_REQUIRE_POSTGRES=1 to fail instead");
                    None
                }
            }
        }
    }
}

// === a store that can be switched off ===

/// Wraps a real store; while `down` is set every call fails as if the database were gone, and
/// while `audit_down` is set every audit append (records and checkpoints) fails as if the audit
/// database were gone, everything else working.
pub struct FlakyStore {
    inner: Arc<dyn Store>,
    pub down: AtomicBool,
    pub audit_down: AtomicBool,
    /// A team another writer changes just before the next [`Store::write_all`] runs, as if a
    /// second replica won a race against that batch.
    pub race_team: std::sync::Mutex<Option<TeamName>>,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Database(
                "connection to secret-db.internal:5432 refused".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn check_sink(&self, appending: bool) -> Result<(), SinkError> {
        if self.down.load(Ordering::SeqCst) || (appending && self.audit_down.load(Ordering::SeqCst))
        {
            Err(SinkError::Unavailable(
                "disk full on secret-audit.internal".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl AuditSink for FlakyStore {
    async fn head(&self) -> Result<Option<(u64, Hash)>, SinkError> {
        self.check_sink(false)?;
        self.inner.head().await
    }
    async fn append(&self, records: &[Record]) -> Result<(), SinkError> {
        self.check_sink(true)?;
        self.inner.append(records).await
    }
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        self.check_sink(true)?;
        self.inner.append_checkpoint(checkpoint).await
    }
}

#[async_trait]
impl AuditStore for FlakyStore {
    async fn audit_records(
        &self,
        filter: &AuditFilter,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        self.check()?;
        self.inner.audit_records(filter, after_seq, limit).await
    }
    async fn audit_latest(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        self.check()?;
        self.inner.audit_latest(filter, limit).await
    }
    async fn audit_record(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        self.check()?;
        self.inner.audit_record(seq).await
    }
    async fn audit_scan(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        self.check()?;
        self.inner.audit_scan(after_seq, limit).await
    }
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.check()?;
        self.inner.audit_checkpoints().await
    }
    async fn audit_index(&self, max_records: u32) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.audit_index(max_records).await
    }
}

/// Implements [`Store`] for [`FlakyStore`]: check, then delegate.
macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        #[async_trait]
        impl Store for FlakyStore {
            async fn write_all(&self, writes: &[rein_store::Write]) -> Result<Vec<Version>, StoreError> {
                self.check()?;
                self.race().await?;
                self.inner.write_all(writes).await
            }
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    self.check()?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

delegate! {
        fn ping(&self) -> ();
        fn insert_user(&self, user: &User) -> ();
        fn user(&self, name: &UserName) -> Option<Versioned<User>>;
        fn users(&self) -> Vec<User>;
        fn update_user(&self, user: &User, expected: Version) -> Version;
        fn insert_api_token(&self, token: &ApiToken) -> ();
        fn api_token(&self, id: &str) -> Option<ApiToken>;
        fn api_tokens_of(&self, user: &UserName) -> Vec<ApiToken>;
        fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> bool;
        fn insert_team(&self, team: &Team) -> ();
        fn team(&self, name: &TeamName) -> Option<Versioned<Team>>;
        fn teams(&self) -> Vec<Team>;
        fn update_team(&self, team: &Team, expected: Version) -> Version;
        fn teams_of(&self, user: &UserName) -> Vec<TeamName>;
        fn insert_system(&self, system: &System) -> ();
        fn system(&self, name: &SystemName) -> Option<Versioned<System>>;
        fn systems(&self) -> Vec<System>;
        fn decision_facts(&self) -> DecisionFacts;
        fn announce(&self, change: &rein_store::Change) -> ();
        fn listen(&self) -> Option<rein_store::Changes>;
        fn claim_assertion(&self, agent: &str, jti: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool;
        fn prune_expired(&self, before: DateTime<Utc>) -> u64;
        fn heartbeat(&self, id: &str, started_at: DateTime<Utc>, now: DateTime<Utc>) -> ();
        fn leave(&self, id: &str) -> ();
        fn ack_revocations(&self, replica: &str, revocations: &[String], at: DateTime<Utc>) -> ();
        fn revocation_acks(&self, revocation: &str, alive_since: DateTime<Utc>) -> Vec<rein_store::ReplicaAck>;
        fn insert_approval(&self, a: &rein_core::approval::ApprovalRequest) -> ();
        fn approval(&self, id: &str) -> Option<Versioned<rein_core::approval::ApprovalRequest>>;
        fn approvals(&self, status: Option<rein_core::approval::ApprovalStatus>) -> Vec<rein_core::approval::ApprovalRequest>;
        fn pending_approval(&self, binding: &str) -> Option<Versioned<rein_core::approval::ApprovalRequest>>;
        fn update_approval(&self, a: &rein_core::approval::ApprovalRequest, expected: Version) -> Version;
        fn record_delivery(&self, id: &str, subject: &str, doc: &str, at: DateTime<Utc>) -> ();
        fn deliveries(&self, subject: &str) -> Vec<String>;
        fn insert_review(&self, campaign: &rein_core::review::ReviewCampaign, items: &[rein_core::review::ReviewItem]) -> ();
        fn review(&self, id: &str) -> Option<Versioned<rein_core::review::ReviewCampaign>>;
        fn reviews(&self, status: Option<rein_core::review::CampaignStatus>) -> Vec<rein_core::review::ReviewCampaign>;
        fn update_review(&self, campaign: &rein_core::review::ReviewCampaign, expected: Version) -> Version;
        fn review_item(&self, campaign: &str, agent: &AgentId) -> Option<Versioned<rein_core::review::ReviewItem>>;
        fn review_items(&self, campaign: &str) -> Vec<rein_core::review::ReviewItem>;
        fn update_review_item(&self, item: &rein_core::review::ReviewItem, expected: Version) -> Version;
        fn insert_revocation(&self, r: &Revocation) -> ();
        fn revocation(&self, id: &str) -> Option<Versioned<Revocation>>;
        fn revocations(&self) -> Vec<Revocation>;
        fn update_revocation(&self, r: &Revocation, expected: Version) -> Version;
        fn update_system(&self, system: &System, expected: Version) -> Version;
        fn insert_agent(&self, agent: &Agent) -> ();
        fn agent(&self, id: &AgentId) -> Option<Versioned<Agent>>;
        fn agents(&self, filter: &AgentFilter) -> Vec<Agent>;
        fn update_agent(&self, agent: &Agent, expected: Version) -> Version;
        fn insert_grant(&self, grant: &Grant) -> ();
        fn grant(&self, id: &GrantId) -> Option<Versioned<Grant>>;
        fn grants(&self, filter: &GrantFilter) -> Vec<Grant>;
        fn update_grant(&self, grant: &Grant, expected: Version) -> Version;
        fn insert_signing_key(&self, key: &SealedKey) -> ();
        fn signing_keys(&self, purpose: KeyPurpose) -> Vec<SealedKey>;
        fn update_signing_key(&self, key: &SealedKey) -> ();
        fn registry_state(&self) -> rein_store::RegistryState;
        fn insert_secret(&self, secret: &StoredSecret) -> ();
        fn secret(&self, name: &SecretName) -> Option<Versioned<StoredSecret>>;
        fn secrets(&self) -> Vec<StoredSecret>;
        fn update_secret(&self, secret: &StoredSecret, expected: Version) -> Version;
        fn delete_secret(&self, name: &SecretName, expected: Version) -> ();
}

impl FlakyStore {
    /// Changes the team in `race_team`, if any, through the real store (its version moves on).
    async fn race(&self) -> Result<(), StoreError> {
        let team = self.race_team.lock().unwrap().take();
        if let Some(name) = team {
            let current = self.inner.team(&name).await?.unwrap();
            let mut team = current.value;
            team.description.push_str(" (changed by another writer)");
            self.inner.update_team(&team, current.version).await?;
        }
        Ok(())
    }
}

// === a clock tests can move ===

/// The wall clock plus an offset the test can advance (to reach grant expiries without
/// waiting).
#[derive(Default)]
pub struct TestClock {
    offset_secs: AtomicI64,
}

impl TestClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_secs
            .fetch_add(by.num_seconds(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_secs.load(Ordering::SeqCst))
    }
}

// === the server ===

/// Test servers sign an audit checkpoint after this many records.
pub const CHECKPOINT_EVERY: u64 = 8;

/// A client for a running server; cheap to clone into tasks.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

/// A running server and a client for it. Shuts the server down when dropped.
pub struct Server {
    pub api: Api,
    /// The first admin's token.
    pub admin: String,
    pub store: Arc<FlakyStore>,
    /// The registry the server runs, for calls the API does not offer (the expiry sweep).
    pub registry: Registry,
    /// The registry's clock.
    pub clock: Arc<TestClock>,
    shutdown: Option<oneshot::Sender<()>>,
    data: Data,
    _watch: Option<rein_pdp::Watch>,
    _upkeep: rein_pdp::Upkeep,
    /// The master key's bytes, for a second replica over the same store.
    pub master_bytes: [u8; 32],
    /// The MCP gateway it serves at `/mcp/{system}`.
    pub gateway: Arc<rein_gateway::Gateway>,
    _follow: AbortOnDrop,
    /// The master key the server seals secrets under (for revealing them as the gateway does).
    pub master: Arc<MasterKey>,
}

/// Stops a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Server {
    /// Starts a server over a fresh store with one admin, `admin`; `None` when the backend is
    /// unavailable and not required.
    pub async fn start(backend: &Backend) -> Option<Self> {
        Self::start_with_policies(backend, None).await
    }

    /// [`Server::start`] with guardrails loaded from `policies` (and reloaded when its files
    /// change).
    pub async fn start_with_policies(
        backend: &Backend,
        policies: Option<std::path::PathBuf>,
    ) -> Option<Self> {
        Self::start_full(backend, policies, Vec::new()).await
    }

    /// A server with guardrails from `policies` that announces approval requests to
    /// `webhooks` (retried quickly, so a test sees the outcome of retries in milliseconds).
    pub async fn start_full(
        backend: &Backend,
        policies: Option<std::path::PathBuf>,
        webhooks: Vec<rein_notify::Webhook>,
    ) -> Option<Self> {
        Self::start_configured(backend, policies, webhooks, RegistryConfig::default()).await
    }

    /// [`Server::start_full`] with the registry settings `config`.
    pub async fn start_configured(
        backend: &Backend,
        policies: Option<std::path::PathBuf>,
        webhooks: Vec<rein_notify::Webhook>,
        config: RegistryConfig,
    ) -> Option<Self> {
        logs();
        let (inner, data) = open_store(backend).await?;
        let store = Arc::new(FlakyStore {
            inner,
            down: AtomicBool::new(false),
            audit_down: AtomicBool::new(false),
            race_team: std::sync::Mutex::new(None),
        });
        // Checkpoints every few records, so tests see some.
        let log_config = LogConfig {
            checkpoint_every_records: CHECKPOINT_EVERY,
            ..LogConfig::default()
        };
        let master_bytes: [u8; 32] = rand::random();
        let master = Arc::new(MasterKey::from_bytes(master_bytes));
        let audit = rein_registry::keys::open_audit_log(store.clone(), &master, log_config)
            .await
            .unwrap();
        let clock = Arc::new(TestClock::default());
        let registry = Registry::new(store.clone(), config, clock.clone(), audit);
        let admin = registry
            .bootstrap_admin(&"admin".parse().unwrap())
            .await
            .unwrap()
            .token;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let notifier = rein_pdp::Notifier::new(
            webhooks,
            &format!("http://{addr}"),
            store.clone(),
            rein_notify::RetryPolicy {
                initial_backoff: std::time::Duration::from_millis(10),
                ..rein_notify::RetryPolicy::default()
            },
        )
        .unwrap();
        let registry = registry.observed_by(Arc::new(notifier));
        let pdp = rein_pdp::Pdp::start(registry, policies).await.unwrap();
        let watch = pdp.watch_policies().unwrap();
        let upkeep = pdp.start_upkeep().await.unwrap();
        let registry = pdp.registry().clone();
        let issuer = rein_pdp::Issuer::open(&registry, master.clone(), &format!("http://{addr}"))
            .await
            .unwrap();
        let issuer = Arc::new(issuer);
        let gateway = rein_gateway::Gateway::new(
            Arc::clone(&pdp),
            Arc::clone(&issuer),
            Arc::new(rein_server::StoredSecrets::new(
                pdp.registry().clone(),
                Arc::clone(&master),
            )),
            rein_gateway::GatewayConfig::default(),
        );
        let follow = gateway.follow_revocations();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(rein_server::serve(
            listener,
            AppState::new(pdp, issuer, Arc::clone(&master)).with_gateway(Arc::clone(&gateway)),
            async move {
                let _ = rx.await;
            },
        ));
        Some(Self {
            api: Api {
                base: format!("http://{addr}"),
                client: reqwest::Client::new(),
            },
            admin,
            store,
            registry,
            clock,
            shutdown: Some(tx),
            data,
            _watch: watch,
            _upkeep: upkeep,
            master_bytes,
            gateway,
            _follow: AbortOnDrop(follow),
            master,
        })
    }

    /// Stops the server and removes its data: call at the end of a passing test (a failed test
    /// leaves its PostgreSQL schema for inspection; SQLite directories are always removed).
    pub async fn cleanup(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Data::Postgres { url, schema } = &self.data {
            let mut conn = PgConnection::connect(url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }

    /// Creates a user (as admin) and returns a fresh token for them.
    pub async fn user(&self, name: &str, role: &str) -> String {
        self.post(
            &self.admin,
            "/v1/users",
            json!({"name": name, "display_name": name, "role": role}),
        )
        .await
        .ok(201);
        self.token_for(name).await
    }

    /// Issues a token for `name` (as admin).
    pub async fn token_for(&self, name: &str) -> String {
        let issued = self
            .post(&self.admin, &format!("/v1/users/{name}/tokens"), json!({}))
            .await
            .ok(201);
        issued["token"].as_str().unwrap().to_owned()
    }
}

impl std::ops::Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    /// Sends a request; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        Reply::read(req.send().await.unwrap()).await
    }

    /// Sends a raw body with the given content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        Reply::read(req.send().await.unwrap()).await
    }

    pub async fn get(&self, token: &str, path: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(&body))
            .await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(&body))
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }
}

// === replies ===

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected response: {}", self.text);
        self.body
    }

    /// Asserts an RFC 9457 problem with this status and code; returns the problem.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some(code)),
            "unexpected response: {}",
            self.text
        );
        assert_eq!(
            self.headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        let p = &self.body;
        assert_eq!(p["type"], format!("urn:rein:problem:{code}"));
        assert_eq!(p["status"], status);
        assert!(!p["title"].as_str().unwrap().is_empty());
        assert!(!p["detail"].as_str().unwrap().is_empty());
        p
    }

    /// The `status` field of a returned record.
    pub fn record_status(&self) -> &str {
        self.body["status"].as_str().unwrap_or_default()
    }
}
