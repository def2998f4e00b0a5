//! The embedded SQLite adapter, Rein's default store.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use crate::sql::{delegate_store, SqlStore};
use crate::StoreError;

/// Schema migrations, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connections for concurrent readers; WAL lets them read while the writer commits.
const READ_CONNECTIONS: u32 = 4;

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Store`](crate::Store) in one SQLite database file.
///
/// The file runs in WAL mode with `synchronous=FULL` (a write is durable once it returns) and
/// foreign keys enforced. Writes go through a single dedicated connection, so concurrent writers
/// queue instead of failing with `SQLITE_BUSY`; reads use a separate pool and do not wait for
/// writers.
pub struct SqliteStore {
    sql: SqlStore<Sqlite>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file if it is missing, and applies pending
    /// schema migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let cannot_open = |e: sqlx::Error| {
            StoreError::Database(format!(
                "cannot open SQLite database `{}`: {e}",
                path.display()
            ))
        };
        // A local file does not drop connections, so skip sqlx's ping before each checkout (a
        // round trip to the connection's worker thread); connections are still checked when
        // they return to the pool.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().create_if_missing(true))
            .await
            .map_err(cannot_open)?;
        MIGRATOR
            .run(&write)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(cannot_open)?;
        Ok(Self {
            sql: SqlStore::new(read, write),
        })
    }
}

delegate_store!(SqliteStore);
