//! Rein's storage interface and its two adapters: embedded SQLite (the default) and PostgreSQL.
//!
//! The store keeps domain records ([`rein_core`] types) and knows nothing of the rules: the
//! registry loads facts, applies the pure domain functions, and writes the result back with an
//! optimistic compare-and-swap on the record's [`Version`]. Two writers racing on one record
//! (two approvals, approve vs revoke) therefore resolve to one consistent outcome: the loser gets
//! [`StoreError::Conflict`], re-reads and re-applies the rule to the new state.
//!
//! Both adapters, [`SqliteStore`] and [`PgStore`], run the same SQL: each record is one row
//! holding its serde JSON document (the source of truth), its `version`, and a few index columns
//! copied from the document in the same statement (owner team, environment, status, agent,
//! system, timestamps as unix milliseconds). Schema migrations are embedded and applied at open.
//! [`open`] picks the adapter from a URL or path.
//!
//! Every store is also the audit log's durable sink ([`rein_audit::AuditSink`]) and its reader
//! ([`AuditStore`]): one `Arc<dyn Store>` serves the registry, the group-commit writer
//! ([`rein_audit::AuditLog`]) and audit queries. Audit records are append-only rows keyed by their
//! sequence number, so of two writers extending the same head exactly one succeeds and the other
//! gets [`rein_audit::SinkError::Conflict`]; a batch is stored whole or not at all. On SQLite they
//! live in a database file of their own beside the main one, so an audit commit never waits for a
//! registry write.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rein_audit::{AuditSink, Checkpoint, EventType, Record};
use rein_core::agent::{Agent, AgentStatus};
use rein_core::approval::{ApprovalRequest, ApprovalStatus};
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::{AgentId, Environment, GrantId, SystemName, TeamName, UserName};
use rein_core::mcp::SecretName;
use rein_core::review::{CampaignStatus, ReviewCampaign, ReviewItem};
use rein_core::revocation::Revocation;
use rein_core::secret::StoredSecret;
use rein_core::system::System;
use rein_core::team::Team;
use rein_core::user::{ApiToken, User};
use rein_keys::{KeyPurpose, SealedKey};

mod postgres;
mod record;
mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store `url_or_path` names: PostgreSQL for a `postgres://` or `postgresql://` URL,
/// otherwise the SQLite database file at that path (an optional `sqlite://` prefix is stripped),
/// created if missing, with the audit log's file beside it ([`SqliteStore::audit_path`]). Other
/// URL schemes are refused.
pub async fn open(url_or_path: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::connect(url_or_path).await?));
    }
    let path = url_or_path.strip_prefix("sqlite://").unwrap_or(url_or_path);
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(StoreError::Database(format!(
            "unsupported database URL scheme `{scheme}`: use `postgres://…` or a SQLite file path"
        )));
    }
    Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
}

/// A record's version for optimistic concurrency; starts at 1 and grows by one on every update.
pub type Version = i64;

/// The version of a record just inserted.
pub const INITIAL_VERSION: Version = 1;

/// A record another replica may hold a copy of changed: what to re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `agent`, `system`, `grant` or `revocation`.
    pub kind: String,
    /// The record's key.
    pub key: String,
}

/// Changes announced by other replicas, as they arrive ([`Store::listen`]).
pub type Changes = tokio::sync::mpsc::Receiver<Change>;

/// The records decisions depend on, read in one pass ([`Store::decision_facts`]).
#[derive(Debug, Clone, Default)]
pub struct DecisionFacts {
    /// Every agent.
    pub agents: Vec<Versioned<Agent>>,
    /// Every system.
    pub systems: Vec<Versioned<System>>,
    /// Every grant whose stored status is `active`.
    pub grants: Vec<Versioned<Grant>>,
    /// Every revocation (the caller ignores those lifted or moot).
    pub revocations: Vec<Versioned<Revocation>>,
}

/// Every user, team, system, agent and grant with its version, read in one transaction
/// ([`Store::registry_state`]): what a governance plan is computed against.
#[derive(Debug, Clone, Default)]
pub struct RegistryState {
    /// Users.
    pub users: Vec<Versioned<User>>,
    /// Teams.
    pub teams: Vec<Versioned<Team>>,
    /// Systems.
    pub systems: Vec<Versioned<System>>,
    /// Agents.
    pub agents: Vec<Versioned<Agent>>,
    /// Grants, in every status.
    pub grants: Vec<Versioned<Grant>>,
}

/// One write of a [`Store::write_all`] batch: an insert, or an update if the record is still at
/// the given version.
#[derive(Debug, Clone)]
pub enum Write {
    /// Inserts a user.
    InsertUser(User),
    /// Updates a user.
    UpdateUser(User, Version),
    /// Inserts a team.
    InsertTeam(Team),
    /// Updates a team.
    UpdateTeam(Team, Version),
    /// Inserts a system.
    InsertSystem(System),
    /// Updates a system.
    UpdateSystem(System, Version),
    /// Inserts an agent.
    InsertAgent(Agent),
    /// Updates an agent.
    UpdateAgent(Agent, Version),
    /// Inserts a grant.
    InsertGrant(Grant),
    /// Updates a grant.
    UpdateGrant(Grant, Version),
}

/// One replica's part in spreading a revocation ([`Store::revocation_acks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAck {
    /// The replica's ID.
    pub replica: String,
    /// Whether it has sent a heartbeat recently enough to count as running.
    pub alive: bool,
    /// Its last heartbeat, if it is alive.
    pub last_seen: Option<DateTime<Utc>>,
    /// When it applied the revocation to its decision index; `None`: not yet.
    pub applied_at: Option<DateTime<Utc>>,
}

/// A record together with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// Its version when read.
    pub version: Version,
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A record with that key exists already.
    #[error("{kind} `{key}` already exists")]
    AlreadyExists {
        /// Record kind (`user`, `team`, `agent`, …).
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// The record to update does not exist.
    #[error("{kind} `{key}` not found")]
    NotFound {
        /// Record kind.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// The record changed since it was read (compare-and-swap failed).
    #[error("{kind} `{key}` was changed concurrently")]
    Conflict {
        /// Record kind.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// A stored record could not be decoded: the database was altered outside Rein or is
    /// corrupt. Never silently skipped.
    #[error("stored {kind} `{key}` is corrupt: {reason}")]
    Corrupt {
        /// Record kind.
        kind: &'static str,
        /// Its key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(String),
    /// Schema migration failed at start.
    #[error("migration failed: {0}")]
    Migration(String),
}

/// Which agents to list. `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Owner team.
    pub team: Option<TeamName>,
    /// Environment.
    pub environment: Option<Environment>,
    /// Stored status.
    pub status: Option<AgentStatus>,
}

/// Which grants to list. `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// The agent.
    pub agent: Option<AgentId>,
    /// The target system.
    pub system: Option<SystemName>,
    /// Stored status (`expired` is derived at read time by the caller; filter on `active` and
    /// compare `expires_at`).
    pub status: Option<GrantStatus>,
}

/// Which audit records to read. `None` fields do not filter; set fields must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The agent concerned (`event.agent`, a SPIFFE ID).
    pub agent: Option<String>,
    /// The task (`event.task_id`).
    pub task_id: Option<String>,
    /// The target system (`event.system`).
    pub system: Option<String>,
    /// What happened.
    pub event_type: Option<EventType>,
    /// Who acted: the actor's ID (a user name, a SPIFFE ID, or `rein`), whatever its kind.
    pub actor: Option<String>,
    /// What it was about (`event.subject`).
    pub subject: Option<String>,
    /// Records appended at or after this time. Compared at millisecond resolution: the bound's
    /// sub-millisecond part is ignored.
    pub since: Option<DateTime<Utc>>,
    /// Records appended before this time, compared at millisecond resolution like `since`.
    pub until: Option<DateTime<Utc>>,
}

/// One stored audit row as read for verification: its sequence number and its record, or why
/// the row's document is not a valid record for that sequence number. A verifier reports such a
/// row; it is never skipped or repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// The row's sequence number (its key).
    pub seq: u64,
    /// The decoded record, or the decoder's complaint.
    pub record: Result<Record, String>,
}

/// Reading the audit log. The writing half is [`rein_audit::AuditSink`], the supertrait, which
/// the group-commit writer ([`rein_audit::AuditLog`]) drives.
///
/// Reads of decoded records fail with [`StoreError::Corrupt`] on a row whose document does not
/// decode or belongs to another sequence number; [`AuditStore::audit_scan`] instead returns such
/// rows as errors in place, for the verifier to report.
#[async_trait]
pub trait AuditStore: AuditSink {
    /// Matching records with a sequence number above `after_seq` (all when `None`), ascending,
    /// at most `limit`: pass the last returned record's `seq` as `after_seq` for the next page.
    async fn audit_records(
        &self,
        filter: &AuditFilter,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError>;
    /// The last `limit` matching records, returned in ascending order (for `tail`).
    async fn audit_latest(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError>;
    /// The record at `seq`.
    async fn audit_record(&self, seq: u64) -> Result<Option<Record>, StoreError>;
    /// Up to `limit` raw rows with a sequence number above `after_seq`, in sequence order, each
    /// decoded or carrying why it does not decode (for verification).
    async fn audit_scan(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditRow>, StoreError>;
    /// Every stored checkpoint, by ascending sequence number.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Indexes the filter keys (agent, task, system, actor) of up to `max_records` records
    /// above the audit index watermark, in one transaction, and returns the watermark after it
    /// (`0` indexes nothing and returns the current one).
    ///
    /// The store runs this by itself after appends, so callers need not: reads return every
    /// matching record whether it is indexed yet or not (records above the watermark are
    /// scanned). For tests, benchmarks and operators who want the index caught up now.
    async fn audit_index(&self, max_records: u32) -> Result<u64, StoreError>;
}

/// The storage interface. Every method is one atomic operation; `insert_*` fails with
/// [`StoreError::AlreadyExists`], `update_*` with [`StoreError::NotFound`] or
/// [`StoreError::Conflict`] and returns the new version. Lists are ordered by key.
///
/// A store is also the audit log ([`AuditStore`] and its supertrait [`rein_audit::AuditSink`]),
/// so an `Arc<dyn Store>` converts to an `Arc<dyn AuditSink>` for [`rein_audit::AuditLog::open`].
#[async_trait]
pub trait Store: AuditStore + Send + Sync + 'static {
    /// Checks the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Every agent, system and revocation and every grant stored as `active` (some may be past
    /// `expires_at`), with their versions: what the decision path keeps in memory.
    async fn decision_facts(&self) -> Result<DecisionFacts, StoreError>;

    /// Every user, team, system, agent and grant with its version, read in one transaction so
    /// that they are consistent with each other.
    async fn registry_state(&self) -> Result<RegistryState, StoreError>;
    /// Applies every write in one transaction, in order: all of them, or (on the first
    /// [`StoreError::AlreadyExists`], [`StoreError::Conflict`], [`StoreError::NotFound`] or
    /// failure) none. Returns each record's new version, write for write.
    async fn write_all(&self, writes: &[Write]) -> Result<Vec<Version>, StoreError>;

    /// Tells other replicas sharing this database that a record changed (PostgreSQL
    /// `NOTIFY`; nothing on SQLite, which one process serves).
    async fn announce(&self, change: &Change) -> Result<(), StoreError>;
    /// The changes other replicas announce, from now on (PostgreSQL `LISTEN`); `None` where
    /// there are no other replicas (SQLite).
    async fn listen(&self) -> Result<Option<Changes>, StoreError>;

    /// Claims a client assertion's `jti` for `agent` until `expires_at`: `true` for the first
    /// claim across every replica sharing this database, `false` if it was claimed before and has
    /// not expired at `now` (a replay).
    async fn claim_assertion(
        &self,
        agent: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Deletes the used assertions that expired, and the revocations that became moot (and
    /// their acknowledgements), before `before`, and the replicas silent since then. Returns how
    /// many rows went.
    async fn prune_expired(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Records that replica `id`, started at `started_at`, is running at `now`.
    async fn heartbeat(
        &self,
        id: &str,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes replica `id` (shutting down).
    async fn leave(&self, id: &str) -> Result<(), StoreError>;
    /// Records that `replica` applied `revocations` to its decision index at `at`.
    async fn ack_revocations(
        &self,
        replica: &str,
        revocations: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The replicas alive since `alive_since` and those that acknowledged `revocation`, by ID.
    async fn revocation_acks(
        &self,
        revocation: &str,
        alive_since: DateTime<Utc>,
    ) -> Result<Vec<ReplicaAck>, StoreError>;

    /// Inserts a step-up approval request; [`StoreError::AlreadyExists`] also when a pending
    /// request for the same call (its binding) exists.
    async fn insert_approval(&self, approval: &ApprovalRequest) -> Result<(), StoreError>;
    /// An approval request by ID.
    async fn approval(&self, id: &str) -> Result<Option<Versioned<ApprovalRequest>>, StoreError>;
    /// Approval requests stored with `status` (all when `None`), oldest first.
    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRequest>, StoreError>;
    /// The request stored as pending for `binding` ([`ApprovalRequest::binding_key`]), if any
    /// (it may be past its expiry).
    async fn pending_approval(
        &self,
        binding: &str,
    ) -> Result<Option<Versioned<ApprovalRequest>>, StoreError>;
    /// Compare-and-swap update of an approval request.
    async fn update_approval(
        &self,
        approval: &ApprovalRequest,
        expected: Version,
    ) -> Result<Version, StoreError>;
    /// Inserts or replaces a webhook delivery's JSON document, about `subject`.
    async fn record_delivery(
        &self,
        id: &str,
        subject: &str,
        doc: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The JSON documents of the webhook deliveries about `subject`, oldest first.
    async fn deliveries(&self, subject: &str) -> Result<Vec<String>, StoreError>;

    /// Opens an access review: inserts the campaign and its items in one transaction
    /// ([`StoreError::AlreadyExists`] and nothing written if any key is taken).
    async fn insert_review(
        &self,
        campaign: &ReviewCampaign,
        items: &[ReviewItem],
    ) -> Result<(), StoreError>;
    /// A review campaign by ID.
    async fn review(&self, id: &str) -> Result<Option<Versioned<ReviewCampaign>>, StoreError>;
    /// Review campaigns stored with `status` (all when `None`), oldest first.
    async fn reviews(
        &self,
        status: Option<CampaignStatus>,
    ) -> Result<Vec<ReviewCampaign>, StoreError>;
    /// Compare-and-swap update of a review campaign.
    async fn update_review(
        &self,
        campaign: &ReviewCampaign,
        expected: Version,
    ) -> Result<Version, StoreError>;
    /// The item of `agent` in campaign `campaign`.
    async fn review_item(
        &self,
        campaign: &str,
        agent: &AgentId,
    ) -> Result<Option<Versioned<ReviewItem>>, StoreError>;
    /// Every item of campaign `campaign`, by agent.
    async fn review_items(&self, campaign: &str) -> Result<Vec<ReviewItem>, StoreError>;
    /// Compare-and-swap update of a review item.
    async fn update_review_item(
        &self,
        item: &ReviewItem,
        expected: Version,
    ) -> Result<Version, StoreError>;

    /// Inserts a revocation.
    async fn insert_revocation(&self, revocation: &Revocation) -> Result<(), StoreError>;
    /// A revocation by ID.
    async fn revocation(&self, id: &str) -> Result<Option<Versioned<Revocation>>, StoreError>;
    /// Every revocation, by ID.
    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError>;
    /// Compare-and-swap update of a revocation (lifting it).
    async fn update_revocation(
        &self,
        revocation: &Revocation,
        expected: Version,
    ) -> Result<Version, StoreError>;

    /// Inserts a user.
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
    /// Reads a user.
    async fn user(&self, name: &UserName) -> Result<Option<Versioned<User>>, StoreError>;
    /// Lists users.
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Updates a user if it is still at `expected`.
    async fn update_user(&self, user: &User, expected: Version) -> Result<Version, StoreError>;

    /// Inserts a personal API token (its hash, never the token).
    async fn insert_api_token(&self, token: &ApiToken) -> Result<(), StoreError>;
    /// Reads a token by its public ID.
    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Lists a user's tokens.
    async fn api_tokens_of(&self, user: &UserName) -> Result<Vec<ApiToken>, StoreError>;
    /// Marks a token revoked; returns false if it does not exist or was revoked already.
    async fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Inserts a team (with its members).
    async fn insert_team(&self, team: &Team) -> Result<(), StoreError>;
    /// Reads a team.
    async fn team(&self, name: &TeamName) -> Result<Option<Versioned<Team>>, StoreError>;
    /// Lists teams.
    async fn teams(&self) -> Result<Vec<Team>, StoreError>;
    /// Updates a team (and its membership index) if it is still at `expected`.
    async fn update_team(&self, team: &Team, expected: Version) -> Result<Version, StoreError>;
    /// The teams a user is a member of.
    async fn teams_of(&self, user: &UserName) -> Result<Vec<TeamName>, StoreError>;

    /// Inserts a system.
    async fn insert_system(&self, system: &System) -> Result<(), StoreError>;
    /// Reads a system.
    async fn system(&self, name: &SystemName) -> Result<Option<Versioned<System>>, StoreError>;
    /// Lists systems.
    async fn systems(&self) -> Result<Vec<System>, StoreError>;
    /// Updates a system if it is still at `expected`.
    async fn update_system(
        &self,
        system: &System,
        expected: Version,
    ) -> Result<Version, StoreError>;

    /// Inserts an agent.
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// Reads an agent.
    async fn agent(&self, id: &AgentId) -> Result<Option<Versioned<Agent>>, StoreError>;
    /// Lists agents.
    async fn agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError>;
    /// Updates an agent if it is still at `expected`.
    async fn update_agent(&self, agent: &Agent, expected: Version) -> Result<Version, StoreError>;

    /// Inserts a grant.
    async fn insert_grant(&self, grant: &Grant) -> Result<(), StoreError>;
    /// Reads a grant.
    async fn grant(&self, id: &GrantId) -> Result<Option<Versioned<Grant>>, StoreError>;
    /// Lists grants.
    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError>;
    /// Updates a grant if it is still at `expected`.
    async fn update_grant(&self, grant: &Grant, expected: Version) -> Result<Version, StoreError>;

    /// Stores a signing key; [`StoreError::AlreadyExists`] if its key ID is taken.
    async fn insert_signing_key(&self, key: &SealedKey) -> Result<(), StoreError>;
    /// The signing keys for `purpose`, oldest first (by creation time, then key ID).
    async fn signing_keys(&self, purpose: KeyPurpose) -> Result<Vec<SealedKey>, StoreError>;
    /// Overwrites a stored signing key (e.g. to set `retired_at`); [`StoreError::NotFound`] if
    /// its key ID is not stored. Not a compare-and-swap: the last write wins.
    async fn update_signing_key(&self, key: &SealedKey) -> Result<(), StoreError>;

    /// Inserts a secret (its value sealed, never the plaintext).
    async fn insert_secret(&self, secret: &StoredSecret) -> Result<(), StoreError>;
    /// Reads a secret.
    async fn secret(
        &self,
        name: &SecretName,
    ) -> Result<Option<Versioned<StoredSecret>>, StoreError>;
    /// Lists secrets.
    async fn secrets(&self) -> Result<Vec<StoredSecret>, StoreError>;
    /// Updates a secret (a rotation) if it is still at `expected`.
    async fn update_secret(
        &self,
        secret: &StoredSecret,
        expected: Version,
    ) -> Result<Version, StoreError>;
    /// Deletes a secret, ciphertext and all, if it is still at `expected`:
    /// [`StoreError::Conflict`] if it changed, [`StoreError::NotFound`] if it is gone. Secrets
    /// are the one record kind that is deleted.
    async fn delete_secret(&self, name: &SecretName, expected: Version) -> Result<(), StoreError>;
}
