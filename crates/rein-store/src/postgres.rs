//! The PostgreSQL adapter, for several replicas sharing one database.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres};

use crate::sql::{db_error, delegate_store, Dialect, Pools, SqlStore};
use crate::StoreError;

/// Schema migrations, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// PostgreSQL's limits and transaction style: a plain transaction, because the primary key on
/// `seq` already serialises two replicas appending at the same head.
static POSTGRES: Dialect = Dialect {
    max_binds: 65_535,
    begin_append: "BEGIN",
    begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    numbered_binds: true,
    lock_index_state: "SELECT indexed_through_seq FROM audit_index_state WHERE id = 1 FOR UPDATE",
    index_on_append_connection: false,
    tail_scan_hint: "",
};

/// A [`Store`](crate::Store) in a PostgreSQL database.
///
/// Compare-and-swap updates rely on row locks: of two concurrent updates at the same version, the
/// second re-checks the version after the first commits and fails with
/// [`StoreError::Conflict`]. The audit log lives in the same database (and schema); several
/// replicas may append to it, each append failing with [`rein_audit::SinkError::Conflict`] when
/// another replica extended the head first.
pub struct PgStore {
    sql: SqlStore<Postgres>,
    /// For `LISTEN`: a pool of its own, so a listener never holds a query connection.
    pool: sqlx::PgPool,
    /// The notification channel: one per schema, since notifications are database-wide.
    channel: String,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…` or `postgresql://…`) and applies pending
    /// schema migrations to the schemas on its search path (by default `public`).
    ///
    /// Error messages name the host, port and database but never the URL, which may hold a
    /// password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(parse(url)?, None).await
    }

    /// Like [`PgStore::connect`], but keeps every table in the schema `schema`, created if
    /// missing: the store sets `search_path` to it on each connection. For tests (a fresh schema
    /// per test) and for several Rein deployments sharing one database. `schema` is 1 to 63
    /// lowercase ASCII letters, digits and `_`, not starting with a digit.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        let valid = schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::Database(format!(
                "invalid schema name `{schema}`: use 1 to 63 lowercase letters, digits and `_`, not starting with a digit"
            )));
        }
        Self::open(parse(url)?, Some(schema)).await
    }

    async fn open(options: PgConnectOptions, schema: Option<&str>) -> Result<Self, StoreError> {
        let location = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        );
        let cannot_connect = |e: sqlx::Error| {
            StoreError::Database(format!("cannot connect to PostgreSQL at `{location}`: {e}"))
        };
        let options = match schema {
            Some(schema) => {
                // The name was checked to be a plain identifier, so quoting it is enough.
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .map_err(cannot_connect)?;
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .execute(&mut conn)
                    .await
                    .map_err(db_error)?;
                conn.close().await.map_err(db_error)?;
                options.options([("search_path", schema)])
            }
            None => options,
        };
        let pool = PgPoolOptions::new()
            .connect_with(options)
            .await
            .map_err(cannot_connect)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let channel = format!("rein_changes_{}", schema.unwrap_or("public"));
        let main = Pools {
            read: pool.clone(),
            write: pool.clone(),
        };
        let audit = Pools {
            read: pool.clone(),
            write: pool.clone(),
        };
        Ok(Self {
            sql: SqlStore::new(main, audit, &POSTGRES),
            pool,
            channel,
        })
    }
}

/// Parses a connection URL; the error names what is wrong, never the URL itself.
fn parse(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))
}

/// Longest `kind:key` payload sent; PostgreSQL's limit is 8,000 bytes.
const MAX_PAYLOAD: usize = 4096;

impl PgStore {
    /// `NOTIFY` the schema's channel with `kind:key`; delivered to listeners on commit.
    async fn announce_change(&self, change: &crate::Change) -> Result<(), StoreError> {
        let payload = format!("{}:{}", change.kind, change.key);
        if payload.len() > MAX_PAYLOAD {
            return Err(StoreError::Database("change announcement too long".into()));
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// `LISTEN` on the schema's channel; a task forwards what arrives. The listener reconnects
    /// by itself after a lost connection (what was announced meanwhile is picked up by the
    /// periodic full reload).
    async fn listen_changes(&self) -> Result<Option<crate::Changes>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(db_error)?;
        listener.listen(&self.channel).await.map_err(db_error)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Some((kind, key)) = n.payload().split_once(':') {
                            let change = crate::Change {
                                kind: kind.to_owned(),
                                key: key.to_owned(),
                            };
                            if tx.send(change).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for other replicas' changes failed; retrying");
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}

delegate_store!(PgStore);
