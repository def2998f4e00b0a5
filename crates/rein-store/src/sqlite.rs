//! The embedded SQLite adapter, Rein's default store.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use crate::sql::{delegate_store, Dialect, Pools, SqlStore};
use crate::StoreError;

/// Schema migrations of the main database, embedded in the binary.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Schema migrations of the audit database, embedded in the binary.
static AUDIT_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite-audit");

/// SQLite's limits and transaction style. `BEGIN IMMEDIATE` takes the write lock before the
/// append reads the head, so the head it checks is the one it extends even if another process
/// writes the same file.
static SQLITE: Dialect = Dialect {
    max_binds: 32_766,
    begin_append: "BEGIN IMMEDIATE",
    begin_snapshot: "BEGIN",
    numbered_binds: false,
    lock_index_state: "SELECT indexed_through_seq FROM audit_index_state WHERE id = 1",
    index_on_append_connection: true,
    tail_scan_hint: " NOT INDEXED",
};

/// Connections for concurrent readers; WAL lets them read while the writer commits.
const READ_CONNECTIONS: u32 = 4;

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Store`](crate::Store) in SQLite database files: the registry and signing keys in the file
/// it is opened with, the audit log in a second file beside it (see [`SqliteStore::audit_path`]).
///
/// Both files run in WAL mode with `synchronous=FULL` (a write is durable once it returns) and
/// foreign keys enforced. Each file's writes go through a single dedicated connection, so
/// concurrent writers queue instead of failing with `SQLITE_BUSY`, and audit group commits never
/// queue behind registry writes; reads use separate pools and do not wait for writers.
pub struct SqliteStore {
    sql: SqlStore<Sqlite>,
}

impl SqliteStore {
    /// Opens the database at `path` and the audit database beside it, creating the files if
    /// they are missing, and applies pending schema migrations to both.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let main = pools(path, &MIGRATOR).await?;
        let audit = pools(&Self::audit_path(path), &AUDIT_MIGRATOR).await?;
        Ok(Self {
            sql: SqlStore::new(main, audit, &SQLITE),
        })
    }

    /// The audit database file that belongs to the main database `path`: the same directory and
    /// extension, `-audit` appended to the stem (`rein.db` → `rein-audit.db`). Back up both.
    pub fn audit_path(path: &Path) -> PathBuf {
        let mut name = path
            .file_stem()
            .map_or_else(|| OsString::from("rein"), OsString::from);
        name.push("-audit");
        if let Some(extension) = path.extension() {
            name.push(".");
            name.push(extension);
        }
        path.with_file_name(name)
    }
}

/// Opens the file at `path` (created if missing) with one write connection, migrates it with
/// `migrator`, and opens its read pool.
async fn pools(path: &Path, migrator: &Migrator) -> Result<Pools<Sqlite>, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Deleted rows (a deleted secret's ciphertext) are overwritten with zeros, not left in
        // free pages.
        .pragma("secure_delete", "on")
        .busy_timeout(BUSY_TIMEOUT);
    let cannot_open = |e: sqlx::Error| {
        StoreError::Database(format!(
            "cannot open SQLite database `{}`: {e}",
            path.display()
        ))
    };
    // A local file does not drop connections, so skip sqlx's ping before each checkout (a round
    // trip to the connection's worker thread); connections are still checked when they return to
    // the pool.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .connect_with(options.clone().create_if_missing(true))
        .await
        .map_err(cannot_open)?;
    migrator
        .run(&write)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(cannot_open)?;
    Ok(Pools { read, write })
}

impl SqliteStore {
    /// One process serves a SQLite database: nobody to tell.
    async fn announce_change(&self, _change: &crate::Change) -> Result<(), StoreError> {
        Ok(())
    }

    /// One process serves a SQLite database: nothing to hear.
    async fn listen_changes(&self) -> Result<Option<crate::Changes>, StoreError> {
        Ok(None)
    }
}

delegate_store!(SqliteStore);
