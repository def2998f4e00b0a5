//! The SQL behind both adapters, written once and generic over the sqlx driver.
//!
//! Statements use `$n` placeholders, which SQLite and PostgreSQL both accept, and only syntax the
//! two share (`ON CONFLICT … DO NOTHING`, `RETURNING`). The adapters differ only in how they
//! connect and in their migrations.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rein_core::agent::Agent;
use rein_core::approval::{ApprovalRequest, ApprovalStatus};
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::{AgentId, GrantId, SystemName, TeamName, UserName};
use rein_core::mcp::SecretName;
use rein_core::review::{item_id, CampaignStatus, ReviewCampaign, ReviewItem};
use rein_core::revocation::Revocation;
use rein_core::secret::StoredSecret;
use rein_core::system::System;
use rein_core::team::Team;
use rein_core::user::{ApiToken, User};
use rein_keys::{KeyPurpose, SealedKey};
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::record::{Record, Value};
use crate::INITIAL_VERSION;
use crate::{
    AgentFilter, DecisionFacts, GrantFilter, RegistryState, StoreError, Version, Versioned, Write,
};

/// A query with its driver's argument buffer.
type SqlQuery<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

mod audit;
mod upkeep;

/// What differs between the two databases in the shared SQL.
pub(crate) struct Dialect {
    /// The most bind parameters one statement may carry.
    pub(crate) max_binds: usize,
    /// The statement that opens an audit append's transaction.
    pub(crate) begin_append: &'static str,
    /// The statement that opens a read-only transaction whose reads all see one snapshot.
    pub(crate) begin_snapshot: &'static str,
    /// Whether the audit log's multi-row insert numbers its parameters (`$1, $2, …`, which
    /// PostgreSQL requires) or leaves them anonymous (`?, ?, …`). SQLite finds a numbered
    /// parameter's name by a linear scan and sqlx asks for every parameter's name, so binding a
    /// statement with thousands of numbered parameters takes quadratic time there.
    pub(crate) numbered_binds: bool,
    /// Reads the audit index watermark at the start of an indexer transaction, locking it where
    /// several processes may index at once (PostgreSQL: `FOR UPDATE`, so concurrent indexers run
    /// one after the other; SQLite's `BEGIN IMMEDIATE` already excludes other writers).
    pub(crate) lock_index_state: &'static str,
    /// Whether the audit indexer runs on the append connection, between appends (SQLite, where
    /// a second writer would only wait for the file's write lock), or on a connection of its own
    /// while appends go on (PostgreSQL).
    pub(crate) index_on_append_connection: bool,
    /// Appended to `audit_records AS r` in the scan of the unindexed tail: SQLite's
    /// `NOT INDEXED`, so that it walks the (short) tail by sequence number instead of a time or
    /// event-type index range that may reach far below the watermark.
    pub(crate) tail_scan_hint: &'static str,
}

/// A pool for reads and a pool for writes. For PostgreSQL both are the same pool; for SQLite
/// `write` has a single connection, which serialises writers so they never meet `SQLITE_BUSY`.
pub(crate) struct Pools<DB: Database> {
    /// For reads.
    pub(crate) read: Pool<DB>,
    /// For writes.
    pub(crate) write: Pool<DB>,
}

/// A store over one database, or two on SQLite: the registry's tables through `read` and
/// `write`, the audit log's through `audit` (the same pools on PostgreSQL, a database file of its
/// own on SQLite, so audit commits never queue behind registry writes).
pub(crate) struct SqlStore<DB: Database> {
    read: Pool<DB>,
    write: Pool<DB>,
    audit: Pools<DB>,
    /// The connection audit writes go through: checked out of `audit.write` on first use and
    /// kept. The group-commit task appends one batch at a time anyway, and keeping it saves the
    /// pool's checkout and the ping sqlx sends on every return to the pool (on SQLite, where
    /// `audit.write` has one connection, that pool is then always empty).
    ///
    /// Shared with the audit indexer, which runs between appends on the same connection.
    audit_writer: Arc<audit::Writer<DB>>,
    /// Assertion claims waiting for the next batch.
    claims: upkeep::Claims,
    dialect: &'static Dialect,
}

/// Maps a driver error; its message never carries connection options.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Appends `rows` parenthesised groups of `columns` placeholders: numbered (`$1, $2, …`) or
/// anonymous (`?`), as [`Dialect::numbered_binds`] says.
fn push_values(sql: &mut String, rows: usize, columns: usize, numbered: bool) {
    use std::fmt::Write as _;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            sql.push_str(if column == 0 { "" } else { ", " });
            if numbered {
                // Writing to a String cannot fail.
                let _ = write!(sql, "${}", row * columns + column + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
}

fn bind<DB>(q: SqlQuery<'_, DB>, value: Value) -> SqlQuery<'_, DB>
where
    DB: Database,
    String: Type<DB> + for<'q> Encode<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB>,
{
    match value {
        Value::Text(s) => q.bind(s),
        Value::Int(i) => q.bind(i),
        Value::NullableInt(i) => q.bind(i),
    }
}

/// `INSERT … ON CONFLICT DO NOTHING RETURNING version`: no row back means the key exists (or
/// another unique constraint of the table holds an equal value, e.g. one pending approval per
/// call).
fn insert_sql<R: Record>() -> String {
    let t = R::TABLE;
    let mut columns = format!("{}, version, doc", t.key);
    let mut values = format!("$1, {INITIAL_VERSION}, $2");
    for (i, column) in t.columns.iter().enumerate() {
        columns.push_str(&format!(", {column}"));
        values.push_str(&format!(", ${}", i + 3));
    }
    format!(
        "INSERT INTO {} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING version",
        t.name
    )
}

/// The compare-and-swap: `UPDATE … WHERE key = $1 AND version = $n RETURNING version`.
fn update_sql<R: Record>() -> String {
    let t = R::TABLE;
    let mut set = String::from("doc = $2, version = version + 1");
    for (i, column) in t.columns.iter().enumerate() {
        set.push_str(&format!(", {column} = ${}", i + 3));
    }
    format!(
        "UPDATE {} SET {set} WHERE {} = $1 AND version = ${} RETURNING version",
        t.name,
        t.key,
        t.columns.len() + 3
    )
}

/// An unconditional update: `UPDATE … WHERE key = $1 RETURNING version`.
fn overwrite_sql<R: Record>() -> String {
    let t = R::TABLE;
    let mut set = String::from("doc = $2, version = version + 1");
    for (i, column) in t.columns.iter().enumerate() {
        set.push_str(&format!(", {column} = ${}", i + 3));
    }
    format!(
        "UPDATE {} SET {set} WHERE {} = $1 RETURNING version",
        t.name, t.key
    )
}

/// The compare-and-swap delete: `DELETE … WHERE key = $1 AND version = $2 RETURNING version`.
fn delete_sql<R: Record>() -> String {
    let t = R::TABLE;
    format!(
        "DELETE FROM {} WHERE {} = $1 AND version = $2 RETURNING version",
        t.name, t.key
    )
}

fn select_sql<R: Record>() -> String {
    let t = R::TABLE;
    format!("SELECT version, doc FROM {} WHERE {} = $1", t.name, t.key)
}

fn exists_sql<R: Record>() -> String {
    let t = R::TABLE;
    format!("SELECT 1 FROM {} WHERE {} = $1", t.name, t.key)
}

/// `SELECT key, doc … WHERE col = $1 AND … ORDER BY key`; the filter columns are constants.
fn list_sql<R: Record>(filters: &[(&'static str, Value)]) -> String {
    let t = R::TABLE;
    let mut sql = format!("SELECT {}, version, doc FROM {}", t.key, t.name);
    for (i, (column, _)) in filters.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(&format!("{column} = ${}", i + 1));
    }
    sql.push_str(&format!(" ORDER BY {}", R::ORDER_BY));
    sql
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// A store over the registry's pools `main` and the audit log's pools `audit`.
    pub(crate) fn new(main: Pools<DB>, audit: Pools<DB>, dialect: &'static Dialect) -> Self {
        Self {
            read: main.read,
            write: main.write,
            audit_writer: Arc::new(audit::Writer::new(audit.write.clone(), dialect)),
            audit,
            claims: upkeep::Claims::default(),
            dialect,
        }
    }

    async fn insert_in<R: Record>(conn: &mut DB::Connection, record: &R) -> Result<(), StoreError> {
        let sql = insert_sql::<R>();
        let mut q = sqlx::query(&sql)
            .bind(record.key().to_owned())
            .bind(record.encode()?);
        for value in record.columns() {
            q = bind(q, value);
        }
        match q.fetch_optional(&mut *conn).await.map_err(db_error)? {
            Some(_) => Ok(()),
            None => Err(StoreError::AlreadyExists {
                kind: R::TABLE.kind,
                key: record.key().to_owned(),
            }),
        }
    }

    async fn update_in<R: Record>(
        conn: &mut DB::Connection,
        record: &R,
        expected: Version,
    ) -> Result<Version, StoreError> {
        let sql = update_sql::<R>();
        let mut q = sqlx::query(&sql)
            .bind(record.key().to_owned())
            .bind(record.encode()?);
        for value in record.columns() {
            q = bind(q, value);
        }
        if let Some(row) = q
            .bind(expected)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?
        {
            return row.try_get::<i64, _>(0).map_err(db_error);
        }
        Err(Self::missed::<R>(conn, record.key()).await)
    }

    /// Why a compare-and-swap on `key` matched no row: [`StoreError::Conflict`] if the record
    /// is there (at another version), [`StoreError::NotFound`] if it is not (never stored, or
    /// deleted, which only secrets are).
    async fn missed<R: Record>(conn: &mut DB::Connection, key: &str) -> StoreError {
        let exists = sqlx::query(&exists_sql::<R>())
            .bind(key.to_owned())
            .fetch_optional(&mut *conn)
            .await;
        let key = key.to_owned();
        match exists {
            Ok(Some(_)) => StoreError::Conflict {
                kind: R::TABLE.kind,
                key,
            },
            Ok(None) => StoreError::NotFound {
                kind: R::TABLE.kind,
                key,
            },
            Err(e) => db_error(e),
        }
    }

    /// Deletes the record `key` if it is still at `expected`.
    async fn delete<R: Record>(&self, key: &str, expected: Version) -> Result<(), StoreError> {
        let mut conn = self.write.acquire().await.map_err(db_error)?;
        let deleted = sqlx::query(&delete_sql::<R>())
            .bind(key.to_owned())
            .bind(expected)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        match deleted {
            Some(_) => Ok(()),
            None => Err(Self::missed::<R>(&mut conn, key).await),
        }
    }

    async fn insert<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        let mut conn = self.write.acquire().await.map_err(db_error)?;
        Self::insert_in(&mut conn, record).await
    }

    async fn update<R: Record>(
        &self,
        record: &R,
        expected: Version,
    ) -> Result<Version, StoreError> {
        let mut conn = self.write.acquire().await.map_err(db_error)?;
        Self::update_in(&mut conn, record, expected).await
    }

    /// Writes `record` whatever its stored version; [`StoreError::NotFound`] if it is missing.
    async fn overwrite<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        let sql = overwrite_sql::<R>();
        let mut q = sqlx::query(&sql)
            .bind(record.key().to_owned())
            .bind(record.encode()?);
        for value in record.columns() {
            q = bind(q, value);
        }
        match q.fetch_optional(&self.write).await.map_err(db_error)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound {
                kind: R::TABLE.kind,
                key: record.key().to_owned(),
            }),
        }
    }

    async fn get<R: Record>(&self, key: &str) -> Result<Option<Versioned<R>>, StoreError> {
        let row = sqlx::query(&select_sql::<R>())
            .bind(key.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let version: i64 = row.try_get(0).map_err(db_error)?;
        let doc: String = row.try_get(1).map_err(db_error)?;
        Ok(Some(Versioned {
            value: R::decode(key, &doc)?,
            version,
        }))
    }

    async fn list<R: Record>(
        &self,
        filters: Vec<(&'static str, Value)>,
    ) -> Result<Vec<R>, StoreError> {
        Ok(self
            .list_versioned(filters)
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    async fn list_versioned<R: Record>(
        &self,
        filters: Vec<(&'static str, Value)>,
    ) -> Result<Vec<Versioned<R>>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db_error)?;
        Self::list_versioned_in(&mut conn, filters).await
    }

    async fn list_versioned_in<R: Record>(
        conn: &mut DB::Connection,
        filters: Vec<(&'static str, Value)>,
    ) -> Result<Vec<Versioned<R>>, StoreError> {
        let sql = list_sql::<R>(&filters);
        let mut q = sqlx::query(&sql);
        for (_, value) in filters {
            q = bind(q, value);
        }
        let rows = q.fetch_all(&mut *conn).await.map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(db_error)?;
                let version: i64 = row.try_get(1).map_err(db_error)?;
                let doc: String = row.try_get(2).map_err(db_error)?;
                Ok(Versioned {
                    value: R::decode(&key, &doc)?,
                    version,
                })
            })
            .collect()
    }

    pub(crate) async fn decision_facts(&self) -> Result<DecisionFacts, StoreError> {
        Ok(DecisionFacts {
            agents: self.list_versioned(Vec::new()).await?,
            systems: self.list_versioned(Vec::new()).await?,
            grants: self
                .list_versioned(vec![(
                    "status",
                    Value::Text(GrantStatus::Active.as_str().to_owned()),
                )])
                .await?,
            revocations: self.list_versioned(Vec::new()).await?,
        })
    }

    pub(crate) async fn registry_state(&self) -> Result<RegistryState, StoreError> {
        let mut tx = self
            .read
            .begin_with(self.dialect.begin_snapshot)
            .await
            .map_err(db_error)?;
        let state = RegistryState {
            users: Self::list_versioned_in(&mut tx, Vec::new()).await?,
            teams: Self::list_versioned_in(&mut tx, Vec::new()).await?,
            systems: Self::list_versioned_in(&mut tx, Vec::new()).await?,
            agents: Self::list_versioned_in(&mut tx, Vec::new()).await?,
            grants: Self::list_versioned_in(&mut tx, Vec::new()).await?,
        };
        tx.commit().await.map_err(db_error)?;
        Ok(state)
    }

    pub(crate) async fn write_all(&self, writes: &[Write]) -> Result<Vec<Version>, StoreError> {
        let mut tx = self.write.begin().await.map_err(db_error)?;
        let mut versions = Vec::with_capacity(writes.len());
        for write in writes {
            let version = match write {
                Write::InsertUser(r) => Self::insert_in(&mut tx, r).await.map(|()| INITIAL_VERSION),
                Write::UpdateUser(r, v) => Self::update_in(&mut tx, r, *v).await,
                Write::InsertTeam(r) => {
                    Self::insert_in(&mut tx, r).await?;
                    Self::replace_members(&mut tx, r)
                        .await
                        .map(|()| INITIAL_VERSION)
                }
                Write::UpdateTeam(r, v) => {
                    let version = Self::update_in(&mut tx, r, *v).await?;
                    Self::replace_members(&mut tx, r).await.map(|()| version)
                }
                Write::InsertSystem(r) => {
                    Self::insert_in(&mut tx, r).await.map(|()| INITIAL_VERSION)
                }
                Write::UpdateSystem(r, v) => Self::update_in(&mut tx, r, *v).await,
                Write::InsertAgent(r) => {
                    Self::insert_in(&mut tx, r).await.map(|()| INITIAL_VERSION)
                }
                Write::UpdateAgent(r, v) => Self::update_in(&mut tx, r, *v).await,
                Write::InsertGrant(r) => {
                    Self::insert_in(&mut tx, r).await.map(|()| INITIAL_VERSION)
                }
                Write::UpdateGrant(r, v) => Self::update_in(&mut tx, r, *v).await,
            }?;
            versions.push(version);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(versions)
    }

    pub(crate) async fn insert_approval(&self, a: &ApprovalRequest) -> Result<(), StoreError> {
        self.insert(a).await
    }

    pub(crate) async fn approval(
        &self,
        id: &str,
    ) -> Result<Option<Versioned<ApprovalRequest>>, StoreError> {
        self.get(id).await
    }

    pub(crate) async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRequest>, StoreError> {
        let filters = status
            .map(|s| vec![("status", Value::Text(s.as_str().to_owned()))])
            .unwrap_or_default();
        self.list(filters).await
    }

    pub(crate) async fn pending_approval(
        &self,
        binding: &str,
    ) -> Result<Option<Versioned<ApprovalRequest>>, StoreError> {
        let mut found = self
            .list_versioned(vec![
                (
                    "status",
                    Value::Text(ApprovalStatus::Pending.as_str().to_owned()),
                ),
                ("binding", Value::Text(binding.to_owned())),
            ])
            .await?;
        Ok(found.pop())
    }

    pub(crate) async fn update_approval(
        &self,
        a: &ApprovalRequest,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(a, expected).await
    }

    pub(crate) async fn insert_review(
        &self,
        campaign: &ReviewCampaign,
        items: &[ReviewItem],
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await.map_err(db_error)?;
        Self::insert_in(&mut tx, campaign).await?;
        for item in items {
            Self::insert_in(&mut tx, item).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    pub(crate) async fn review(
        &self,
        id: &str,
    ) -> Result<Option<Versioned<ReviewCampaign>>, StoreError> {
        self.get(id).await
    }

    pub(crate) async fn reviews(
        &self,
        status: Option<CampaignStatus>,
    ) -> Result<Vec<ReviewCampaign>, StoreError> {
        let filters = status
            .map(|s| vec![("status", Value::Text(s.as_str().to_owned()))])
            .unwrap_or_default();
        self.list(filters).await
    }

    pub(crate) async fn update_review(
        &self,
        campaign: &ReviewCampaign,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(campaign, expected).await
    }

    pub(crate) async fn review_item(
        &self,
        campaign: &str,
        agent: &AgentId,
    ) -> Result<Option<Versioned<ReviewItem>>, StoreError> {
        self.get(&item_id(campaign, agent)).await
    }

    pub(crate) async fn review_items(&self, campaign: &str) -> Result<Vec<ReviewItem>, StoreError> {
        self.list(vec![("campaign", Value::Text(campaign.to_owned()))])
            .await
    }

    pub(crate) async fn update_review_item(
        &self,
        item: &ReviewItem,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(item, expected).await
    }

    pub(crate) async fn insert_revocation(&self, r: &Revocation) -> Result<(), StoreError> {
        self.insert(r).await
    }

    pub(crate) async fn revocation(
        &self,
        id: &str,
    ) -> Result<Option<Versioned<Revocation>>, StoreError> {
        self.get(id).await
    }

    pub(crate) async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.list(Vec::new()).await
    }

    pub(crate) async fn update_revocation(
        &self,
        r: &Revocation,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(r, expected).await
    }

    /// Rewrites a team's rows in the membership index, inside the caller's transaction.
    async fn replace_members(conn: &mut DB::Connection, team: &Team) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM team_members WHERE team = $1")
            .bind(team.name.as_str().to_owned())
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        for member in &team.members {
            sqlx::query("INSERT INTO team_members (team, user_name) VALUES ($1, $2)")
                .bind(team.name.as_str().to_owned())
                .bind(member.as_str().to_owned())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        // The audit log's write connection is held by its writer; its read pool is enough to
        // know that database answers.
        for pool in [&self.write, &self.read, &self.audit.read] {
            sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    pub(crate) async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        self.insert(user).await
    }

    pub(crate) async fn user(
        &self,
        name: &UserName,
    ) -> Result<Option<Versioned<User>>, StoreError> {
        self.get(name.as_str()).await
    }

    pub(crate) async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.list(Vec::new()).await
    }

    pub(crate) async fn update_user(
        &self,
        user: &User,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(user, expected).await
    }

    pub(crate) async fn insert_api_token(&self, token: &ApiToken) -> Result<(), StoreError> {
        self.insert(token).await
    }

    pub(crate) async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        Ok(self.get(id).await?.map(|v| v.value))
    }

    pub(crate) async fn api_tokens_of(&self, user: &UserName) -> Result<Vec<ApiToken>, StoreError> {
        self.list(vec![("user_name", Value::Text(user.as_str().to_owned()))])
            .await
    }

    /// Read, set `revoked_at`, compare-and-swap; a concurrent change to the token retries.
    pub(crate) async fn revoke_api_token(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        loop {
            let Some(Versioned {
                value: mut token,
                version,
            }) = self.get::<ApiToken>(id).await?
            else {
                return Ok(false);
            };
            if token.revoked_at.is_some() {
                return Ok(false);
            }
            token.revoked_at = Some(at);
            match self.update(&token, version).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) async fn insert_team(&self, team: &Team) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await.map_err(db_error)?;
        Self::insert_in(&mut tx, team).await?;
        Self::replace_members(&mut tx, team).await?;
        tx.commit().await.map_err(db_error)
    }

    pub(crate) async fn team(
        &self,
        name: &TeamName,
    ) -> Result<Option<Versioned<Team>>, StoreError> {
        self.get(name.as_str()).await
    }

    pub(crate) async fn teams(&self) -> Result<Vec<Team>, StoreError> {
        self.list(Vec::new()).await
    }

    pub(crate) async fn update_team(
        &self,
        team: &Team,
        expected: Version,
    ) -> Result<Version, StoreError> {
        let mut tx = self.write.begin().await.map_err(db_error)?;
        let version = Self::update_in(&mut tx, team, expected).await?;
        Self::replace_members(&mut tx, team).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(version)
    }

    pub(crate) async fn teams_of(&self, user: &UserName) -> Result<Vec<TeamName>, StoreError> {
        let rows = sqlx::query("SELECT team FROM team_members WHERE user_name = $1 ORDER BY team")
            .bind(user.as_str().to_owned())
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let team: String = row.try_get(0).map_err(db_error)?;
                team.parse()
                    .map_err(|e: rein_core::DomainError| StoreError::Corrupt {
                        kind: "team membership",
                        key: team.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect()
    }

    pub(crate) async fn insert_system(&self, system: &System) -> Result<(), StoreError> {
        self.insert(system).await
    }

    pub(crate) async fn system(
        &self,
        name: &SystemName,
    ) -> Result<Option<Versioned<System>>, StoreError> {
        self.get(name.as_str()).await
    }

    pub(crate) async fn systems(&self) -> Result<Vec<System>, StoreError> {
        self.list(Vec::new()).await
    }

    pub(crate) async fn update_system(
        &self,
        system: &System,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(system, expected).await
    }

    pub(crate) async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        self.insert(agent).await
    }

    pub(crate) async fn agent(&self, id: &AgentId) -> Result<Option<Versioned<Agent>>, StoreError> {
        self.get(id.as_str()).await
    }

    pub(crate) async fn agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
        let mut filters = Vec::new();
        if let Some(team) = &filter.team {
            filters.push(("team", Value::Text(team.as_str().to_owned())));
        }
        if let Some(environment) = &filter.environment {
            filters.push(("environment", Value::Text(environment.as_str().to_owned())));
        }
        if let Some(status) = filter.status {
            filters.push(("status", Value::Text(status.as_str().to_owned())));
        }
        self.list(filters).await
    }

    pub(crate) async fn update_agent(
        &self,
        agent: &Agent,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(agent, expected).await
    }

    pub(crate) async fn insert_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        self.insert(grant).await
    }

    pub(crate) async fn grant(&self, id: &GrantId) -> Result<Option<Versioned<Grant>>, StoreError> {
        self.get(id.as_str()).await
    }

    pub(crate) async fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError> {
        let mut filters = Vec::new();
        if let Some(agent) = &filter.agent {
            filters.push(("agent_id", Value::Text(agent.as_str().to_owned())));
        }
        if let Some(system) = &filter.system {
            filters.push(("system", Value::Text(system.as_str().to_owned())));
        }
        if let Some(status) = filter.status {
            filters.push(("status", Value::Text(status.as_str().to_owned())));
        }
        self.list(filters).await
    }

    pub(crate) async fn update_grant(
        &self,
        grant: &Grant,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(grant, expected).await
    }

    pub(crate) async fn insert_signing_key(&self, key: &SealedKey) -> Result<(), StoreError> {
        self.insert(key).await
    }

    pub(crate) async fn signing_keys(
        &self,
        purpose: KeyPurpose,
    ) -> Result<Vec<SealedKey>, StoreError> {
        self.list(vec![("purpose", Value::Text(purpose.as_str().to_owned()))])
            .await
    }

    pub(crate) async fn update_signing_key(&self, key: &SealedKey) -> Result<(), StoreError> {
        self.overwrite(key).await
    }

    pub(crate) async fn insert_secret(&self, secret: &StoredSecret) -> Result<(), StoreError> {
        self.insert(secret).await
    }

    pub(crate) async fn secret(
        &self,
        name: &SecretName,
    ) -> Result<Option<Versioned<StoredSecret>>, StoreError> {
        self.get(name.as_str()).await
    }

    pub(crate) async fn secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        self.list(Vec::new()).await
    }

    pub(crate) async fn update_secret(
        &self,
        secret: &StoredSecret,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.update(secret, expected).await
    }

    pub(crate) async fn delete_secret(
        &self,
        name: &SecretName,
        expected: Version,
    ) -> Result<(), StoreError> {
        self.delete::<StoredSecret>(name.as_str(), expected).await
    }
}

/// Implements [`crate::Store`], [`crate::AuditStore`] and [`rein_audit::AuditSink`] for an
/// adapter whose `sql` field is a [`SqlStore`], so both adapters share one implementation.
macro_rules! delegate_store {
    ($adapter:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $adapter {
            async fn ping(&self) -> Result<(), $crate::StoreError> {
                self.sql.ping().await
            }

            async fn insert_user(
                &self,
                user: &rein_core::user::User,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_user(user).await
            }
            async fn user(
                &self,
                name: &rein_core::id::UserName,
            ) -> Result<Option<$crate::Versioned<rein_core::user::User>>, $crate::StoreError> {
                self.sql.user(name).await
            }
            async fn users(&self) -> Result<Vec<rein_core::user::User>, $crate::StoreError> {
                self.sql.users().await
            }
            async fn update_user(
                &self,
                user: &rein_core::user::User,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_user(user, expected).await
            }

            async fn insert_api_token(
                &self,
                token: &rein_core::user::ApiToken,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_api_token(token).await
            }
            async fn api_token(
                &self,
                id: &str,
            ) -> Result<Option<rein_core::user::ApiToken>, $crate::StoreError> {
                self.sql.api_token(id).await
            }
            async fn api_tokens_of(
                &self,
                user: &rein_core::id::UserName,
            ) -> Result<Vec<rein_core::user::ApiToken>, $crate::StoreError> {
                self.sql.api_tokens_of(user).await
            }
            async fn revoke_api_token(
                &self,
                id: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                self.sql.revoke_api_token(id, at).await
            }

            async fn insert_team(
                &self,
                team: &rein_core::team::Team,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_team(team).await
            }
            async fn team(
                &self,
                name: &rein_core::id::TeamName,
            ) -> Result<Option<$crate::Versioned<rein_core::team::Team>>, $crate::StoreError> {
                self.sql.team(name).await
            }
            async fn teams(&self) -> Result<Vec<rein_core::team::Team>, $crate::StoreError> {
                self.sql.teams().await
            }
            async fn update_team(
                &self,
                team: &rein_core::team::Team,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_team(team, expected).await
            }
            async fn teams_of(
                &self,
                user: &rein_core::id::UserName,
            ) -> Result<Vec<rein_core::id::TeamName>, $crate::StoreError> {
                self.sql.teams_of(user).await
            }

            async fn insert_system(
                &self,
                system: &rein_core::system::System,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_system(system).await
            }
            async fn system(
                &self,
                name: &rein_core::id::SystemName,
            ) -> Result<Option<$crate::Versioned<rein_core::system::System>>, $crate::StoreError>
            {
                self.sql.system(name).await
            }
            async fn systems(&self) -> Result<Vec<rein_core::system::System>, $crate::StoreError> {
                self.sql.systems().await
            }
            async fn decision_facts(&self) -> Result<$crate::DecisionFacts, $crate::StoreError> {
                self.sql.decision_facts().await
            }
            async fn registry_state(&self) -> Result<$crate::RegistryState, $crate::StoreError> {
                self.sql.registry_state().await
            }
            async fn write_all(
                &self,
                writes: &[$crate::Write],
            ) -> Result<Vec<$crate::Version>, $crate::StoreError> {
                self.sql.write_all(writes).await
            }
            async fn announce(&self, change: &$crate::Change) -> Result<(), $crate::StoreError> {
                self.announce_change(change).await
            }
            async fn listen(&self) -> Result<Option<$crate::Changes>, $crate::StoreError> {
                self.listen_changes().await
            }
            async fn claim_assertion(
                &self,
                agent: &str,
                jti: &str,
                expires_at: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                self.sql.claim_assertion(agent, jti, expires_at, now).await
            }
            async fn prune_expired(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::StoreError> {
                self.sql.prune_expired(before).await
            }
            async fn heartbeat(
                &self,
                id: &str,
                started_at: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                self.sql.heartbeat(id, started_at, now).await
            }
            async fn leave(&self, id: &str) -> Result<(), $crate::StoreError> {
                self.sql.leave(id).await
            }
            async fn ack_revocations(
                &self,
                replica: &str,
                revocations: &[String],
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                self.sql.ack_revocations(replica, revocations, at).await
            }
            async fn revocation_acks(
                &self,
                revocation: &str,
                alive_since: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::ReplicaAck>, $crate::StoreError> {
                self.sql.revocation_acks(revocation, alive_since).await
            }
            async fn insert_approval(
                &self,
                a: &rein_core::approval::ApprovalRequest,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_approval(a).await
            }
            async fn approval(
                &self,
                id: &str,
            ) -> Result<
                Option<$crate::Versioned<rein_core::approval::ApprovalRequest>>,
                $crate::StoreError,
            > {
                self.sql.approval(id).await
            }
            async fn approvals(
                &self,
                status: Option<rein_core::approval::ApprovalStatus>,
            ) -> Result<Vec<rein_core::approval::ApprovalRequest>, $crate::StoreError> {
                self.sql.approvals(status).await
            }
            async fn pending_approval(
                &self,
                binding: &str,
            ) -> Result<
                Option<$crate::Versioned<rein_core::approval::ApprovalRequest>>,
                $crate::StoreError,
            > {
                self.sql.pending_approval(binding).await
            }
            async fn update_approval(
                &self,
                a: &rein_core::approval::ApprovalRequest,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_approval(a, expected).await
            }
            async fn record_delivery(
                &self,
                id: &str,
                subject: &str,
                doc: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                self.sql.record_delivery(id, subject, doc, at).await
            }
            async fn deliveries(&self, subject: &str) -> Result<Vec<String>, $crate::StoreError> {
                self.sql.deliveries(subject).await
            }
            async fn insert_review(
                &self,
                campaign: &rein_core::review::ReviewCampaign,
                items: &[rein_core::review::ReviewItem],
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_review(campaign, items).await
            }
            async fn review(
                &self,
                id: &str,
            ) -> Result<
                Option<$crate::Versioned<rein_core::review::ReviewCampaign>>,
                $crate::StoreError,
            > {
                self.sql.review(id).await
            }
            async fn reviews(
                &self,
                status: Option<rein_core::review::CampaignStatus>,
            ) -> Result<Vec<rein_core::review::ReviewCampaign>, $crate::StoreError> {
                self.sql.reviews(status).await
            }
            async fn update_review(
                &self,
                campaign: &rein_core::review::ReviewCampaign,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_review(campaign, expected).await
            }
            async fn review_item(
                &self,
                campaign: &str,
                agent: &rein_core::id::AgentId,
            ) -> Result<
                Option<$crate::Versioned<rein_core::review::ReviewItem>>,
                $crate::StoreError,
            > {
                self.sql.review_item(campaign, agent).await
            }
            async fn review_items(
                &self,
                campaign: &str,
            ) -> Result<Vec<rein_core::review::ReviewItem>, $crate::StoreError> {
                self.sql.review_items(campaign).await
            }
            async fn update_review_item(
                &self,
                item: &rein_core::review::ReviewItem,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_review_item(item, expected).await
            }
            async fn insert_revocation(
                &self,
                r: &rein_core::revocation::Revocation,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_revocation(r).await
            }
            async fn revocation(
                &self,
                id: &str,
            ) -> Result<
                Option<$crate::Versioned<rein_core::revocation::Revocation>>,
                $crate::StoreError,
            > {
                self.sql.revocation(id).await
            }
            async fn revocations(
                &self,
            ) -> Result<Vec<rein_core::revocation::Revocation>, $crate::StoreError> {
                self.sql.revocations().await
            }
            async fn update_revocation(
                &self,
                r: &rein_core::revocation::Revocation,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_revocation(r, expected).await
            }
            async fn update_system(
                &self,
                system: &rein_core::system::System,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_system(system, expected).await
            }

            async fn insert_agent(
                &self,
                agent: &rein_core::agent::Agent,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_agent(agent).await
            }
            async fn agent(
                &self,
                id: &rein_core::id::AgentId,
            ) -> Result<Option<$crate::Versioned<rein_core::agent::Agent>>, $crate::StoreError>
            {
                self.sql.agent(id).await
            }
            async fn agents(
                &self,
                filter: &$crate::AgentFilter,
            ) -> Result<Vec<rein_core::agent::Agent>, $crate::StoreError> {
                self.sql.agents(filter).await
            }
            async fn update_agent(
                &self,
                agent: &rein_core::agent::Agent,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_agent(agent, expected).await
            }

            async fn insert_grant(
                &self,
                grant: &rein_core::grant::Grant,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_grant(grant).await
            }
            async fn grant(
                &self,
                id: &rein_core::id::GrantId,
            ) -> Result<Option<$crate::Versioned<rein_core::grant::Grant>>, $crate::StoreError>
            {
                self.sql.grant(id).await
            }
            async fn grants(
                &self,
                filter: &$crate::GrantFilter,
            ) -> Result<Vec<rein_core::grant::Grant>, $crate::StoreError> {
                self.sql.grants(filter).await
            }
            async fn update_grant(
                &self,
                grant: &rein_core::grant::Grant,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_grant(grant, expected).await
            }

            async fn insert_signing_key(
                &self,
                key: &rein_keys::SealedKey,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_signing_key(key).await
            }
            async fn signing_keys(
                &self,
                purpose: rein_keys::KeyPurpose,
            ) -> Result<Vec<rein_keys::SealedKey>, $crate::StoreError> {
                self.sql.signing_keys(purpose).await
            }
            async fn update_signing_key(
                &self,
                key: &rein_keys::SealedKey,
            ) -> Result<(), $crate::StoreError> {
                self.sql.update_signing_key(key).await
            }

            async fn insert_secret(
                &self,
                secret: &rein_core::secret::StoredSecret,
            ) -> Result<(), $crate::StoreError> {
                self.sql.insert_secret(secret).await
            }
            async fn secret(
                &self,
                name: &rein_core::mcp::SecretName,
            ) -> Result<
                Option<$crate::Versioned<rein_core::secret::StoredSecret>>,
                $crate::StoreError,
            > {
                self.sql.secret(name).await
            }
            async fn secrets(
                &self,
            ) -> Result<Vec<rein_core::secret::StoredSecret>, $crate::StoreError> {
                self.sql.secrets().await
            }
            async fn update_secret(
                &self,
                secret: &rein_core::secret::StoredSecret,
                expected: $crate::Version,
            ) -> Result<$crate::Version, $crate::StoreError> {
                self.sql.update_secret(secret, expected).await
            }
            async fn delete_secret(
                &self,
                name: &rein_core::mcp::SecretName,
                expected: $crate::Version,
            ) -> Result<(), $crate::StoreError> {
                self.sql.delete_secret(name, expected).await
            }
        }

        #[async_trait::async_trait]
        impl rein_audit::AuditSink for $adapter {
            async fn head(&self) -> Result<Option<(u64, rein_audit::Hash)>, rein_audit::SinkError> {
                self.sql.audit_head().await
            }
            async fn append(
                &self,
                records: &[rein_audit::Record],
            ) -> Result<(), rein_audit::SinkError> {
                self.sql.audit_append(records).await
            }
            async fn append_checkpoint(
                &self,
                checkpoint: &rein_audit::Checkpoint,
            ) -> Result<(), rein_audit::SinkError> {
                self.sql.audit_append_checkpoint(checkpoint).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::AuditStore for $adapter {
            async fn audit_records(
                &self,
                filter: &$crate::AuditFilter,
                after_seq: Option<u64>,
                limit: u32,
            ) -> Result<Vec<rein_audit::Record>, $crate::StoreError> {
                self.sql.audit_records(filter, after_seq, limit).await
            }
            async fn audit_latest(
                &self,
                filter: &$crate::AuditFilter,
                limit: u32,
            ) -> Result<Vec<rein_audit::Record>, $crate::StoreError> {
                self.sql.audit_latest(filter, limit).await
            }
            async fn audit_record(
                &self,
                seq: u64,
            ) -> Result<Option<rein_audit::Record>, $crate::StoreError> {
                self.sql.audit_record(seq).await
            }
            async fn audit_scan(
                &self,
                after_seq: u64,
                limit: u32,
            ) -> Result<Vec<$crate::AuditRow>, $crate::StoreError> {
                self.sql.audit_scan(after_seq, limit).await
            }
            async fn audit_checkpoints(
                &self,
            ) -> Result<Vec<rein_audit::Checkpoint>, $crate::StoreError> {
                self.sql.audit_checkpoints().await
            }
            async fn audit_index(&self, max_records: u32) -> Result<u64, $crate::StoreError> {
                self.sql.audit_index(max_records).await
            }
        }
    };
}

pub(crate) use delegate_store;
