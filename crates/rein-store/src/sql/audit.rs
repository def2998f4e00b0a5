//! The audit log's tables, written once for both databases: appends (the
//! [`rein_audit::AuditSink`] half) and reads ([`crate::AuditStore`]).
//!
//! An append is one transaction: read the head, check that the batch extends it, insert the rows
//! with multi-row `INSERT`s, commit. The primary key on `seq` is what makes two writers safe: if
//! another writer commits the same positions first, this transaction's insert fails with a unique
//! violation (on PostgreSQL after waiting for the other commit) and the append reports
//! [`SinkError::Conflict`], leaving nothing behind.
//!
//! The append writes each record's row and its synchronous indexes (sequence number, time, event
//! type, subject) and nothing else. The high-cardinality filter keys (agent, task, system, and
//! the actor where it is not the agent) are indexed afterwards into `audit_keys` by the store's
//! indexer ([`Writer::schedule_index`]), in sorted batches, up to a watermark; reads combine the
//! indexed range with a scan of the records above the watermark ([`select_sql`]), so they never
//! depend on how far the indexer got.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rein_audit::{Checkpoint, Hash, Record, SinkError};
use sqlx::pool::PoolConnection;
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type,
};
use tokio::sync::{Mutex, MutexGuard};

use super::{bind, db_error, Dialect, SqlQuery, SqlStore};
use crate::record::Value;
use crate::{AuditFilter, AuditRow, StoreError};

/// The columns of `audit_records`, in bind order.
const COLUMNS: [&str; 10] = [
    "seq",
    "time_ms",
    "event_type",
    "actor",
    "agent",
    "task_id",
    "system",
    "subject",
    "hash",
    "doc",
];

/// Batches of up to this many rows are written with one statement of exactly their size, larger
/// ones in power-of-two chunks and an exact remainder: few distinct statements exist, so all of
/// them stay prepared in the driver's statement cache.
const EXACT_ROWS: usize = 32;

/// The current head, read from the last row's document (the source of truth).
const HEAD_SQL: &str = "SELECT seq, doc FROM audit_records ORDER BY seq DESC LIMIT 1";

/// A record with the values computed from it once, before the transaction opens.
struct Prepared<'a> {
    record: &'a Record,
    seq: i64,
    time_ms: i64,
    hash: String,
    doc: String,
}

/// Checks that `records` form one chain (consecutive sequence numbers, each linking to the one
/// before) and encodes each once. A batch that is not one chain is refused whole: storing it
/// would create a gap, a duplicate or a broken link.
fn prepare(records: &[Record]) -> Result<Vec<Prepared<'_>>, SinkError> {
    let mut prepared: Vec<Prepared<'_>> = Vec::with_capacity(records.len());
    for record in records {
        if let Some(prev) = prepared.last() {
            if Some(record.seq) != prev.record.seq.checked_add(1)
                || record.prev_hash != prev.record.hash
            {
                return Err(SinkError::Unavailable(format!(
                    "refusing an audit batch that is not one chain: record {} does not follow record {}",
                    record.seq, prev.record.seq
                )));
            }
        }
        let seq = i64::try_from(record.seq).map_err(|_| {
            SinkError::Unavailable(format!("audit sequence number {} is too large", record.seq))
        })?;
        // The record's serde JSON document, written directly (`rein_audit` keeps it
        // byte-identical to `serde_json::to_string(record)`, at a fraction of the cost).
        let mut doc = Vec::with_capacity(1024);
        record.write_document(&mut doc);
        let doc = String::from_utf8(doc).map_err(|e| {
            SinkError::Unavailable(format!("cannot encode audit record {}: {e}", record.seq))
        })?;
        prepared.push(Prepared {
            record,
            seq,
            time_ms: record.time.timestamp_millis(),
            hash: record.hash.to_hex(),
            doc,
        });
    }
    Ok(prepared)
}

/// The row counts of the `INSERT`s that write `rows` rows when one statement may hold at most
/// `max_rows`: power-of-two chunks while more than [`EXACT_ROWS`] remain, then the remainder.
fn chunk_sizes(rows: usize, max_rows: usize) -> Vec<usize> {
    let max_rows = max_rows.max(1);
    let exact = EXACT_ROWS.min(max_rows);
    // The largest power of two not above `max_rows`.
    let mut size = 1usize << (usize::BITS - 1 - max_rows.leading_zeros());
    let mut left = rows;
    let mut sizes = Vec::new();
    while left > exact {
        while size > left {
            size /= 2;
        }
        sizes.push(size);
        left -= size;
    }
    if left > 0 {
        sizes.push(left);
    }
    sizes
}

/// `INSERT INTO audit_records (…) VALUES ($1, …, $10), ($11, …), …` for `rows` rows, or with
/// anonymous `?` parameters unless `numbered`.
fn insert_sql(rows: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(128 + rows * 80);
    sql.push_str("INSERT INTO audit_records (");
    sql.push_str(&COLUMNS.join(", "));
    sql.push_str(") VALUES ");
    super::push_values(&mut sql, rows, COLUMNS.len(), numbered);
    sql
}

/// Maps a driver error during an append: a unique violation means another writer stored these
/// positions first.
fn append_error(e: sqlx::Error) -> SinkError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => SinkError::Conflict,
        _ => SinkError::Unavailable(e.to_string()),
    }
}

fn unavailable(e: sqlx::Error) -> SinkError {
    SinkError::Unavailable(e.to_string())
}

/// Decodes a stored record; a document that is not a record, or is the record of another
/// sequence number than its row's, is refused with the reason.
fn decode_record(seq: i64, doc: &str) -> Result<Record, String> {
    let record: Record = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    if i64::try_from(record.seq) != Ok(seq) {
        return Err(format!("the document is record {}", record.seq));
    }
    Ok(record)
}

fn corrupt_record(seq: i64, reason: String) -> StoreError {
    StoreError::Corrupt {
        kind: "audit record",
        key: seq.to_string(),
        reason,
    }
}

/// A stored sequence number as `u64` (the schema keeps them positive).
fn stored_seq(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| corrupt_record(seq, "negative sequence number".to_owned()))
}

/// A bound that does not fit in a BIGINT matches nothing stored, so clamp it.
fn seq_bound(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The kinds of `audit_keys` entries (see migration `sqlite-audit/0003_deferred_key_index`).
const KIND_AGENT: i64 = 1;
const KIND_TASK: i64 = 2;
const KIND_SYSTEM: i64 = 3;
/// The actor of a record whose agent is unset or another than the actor.
const KIND_OTHER_ACTOR: i64 = 4;

/// The store's indexer starts once this many records were appended through it since it last
/// ran, so the unindexed tail a read scans stays about this long (plus what arrives while the
/// indexer runs).
const INDEX_AFTER_RECORDS: u64 = 4_096;

/// At most this many records per indexer transaction: large enough that records sharing a key
/// share its pages, small enough that an append waiting for the write connection meanwhile is
/// not held up for long.
const INDEX_CHUNK_RECORDS: u64 = 8_192;

/// The index watermark, read inside a read's statement (so in the same snapshot as its rows).
/// A missing state row reads as 0: everything is then scanned as unindexed, never missed.
const WATERMARK: &str =
    "COALESCE((SELECT indexed_through_seq FROM audit_index_state WHERE id = 1), 0)";

/// Inserts the keys of the records in `($1, $2]` in key order (so that entries sharing a key go
/// to the same pages in one pass). `ON CONFLICT DO NOTHING`: entries left by an earlier run are
/// kept as they are (they are the same). `WHERE true` keeps SQLite from reading `ON` as a join
/// constraint.
const INDEX_KEYS_SQL: &str = "INSERT INTO audit_keys (kind, key, seq) \
    SELECT kind, key, seq FROM ( \
    SELECT 1 AS kind, agent AS key, seq FROM audit_records \
    WHERE seq > $1 AND seq <= $2 AND agent IS NOT NULL \
    UNION ALL SELECT 2, task_id, seq FROM audit_records \
    WHERE seq > $1 AND seq <= $2 AND task_id IS NOT NULL \
    UNION ALL SELECT 3, system, seq FROM audit_records \
    WHERE seq > $1 AND seq <= $2 AND system IS NOT NULL \
    UNION ALL SELECT 4, actor, seq FROM audit_records \
    WHERE seq > $1 AND seq <= $2 AND (agent IS NULL OR actor <> agent) \
    ) AS entries WHERE true ORDER BY kind, key, seq \
    ON CONFLICT DO NOTHING";

/// Moves the watermark forward, never back (another replica's indexer may have moved it
/// further).
const ADVANCE_WATERMARK_SQL: &str = "UPDATE audit_index_state SET indexed_through_seq = $1 \
    WHERE id = 1 AND indexed_through_seq < $1";

/// Appends `{condition} $n` to `sql` (joined by `AND`), binding `value` as parameter `n`;
/// returns `n`.
fn push_condition(
    sql: &mut String,
    binds: &mut Vec<Value>,
    condition: &str,
    value: Value,
) -> usize {
    binds.push(value);
    let n = binds.len();
    sql.push_str(if sql.is_empty() { "" } else { " AND " });
    // Writing to a String cannot fail.
    let _ = write!(sql, "{condition} ${n}");
    n
}

/// The statement that reads the records matching `filter` (above `after_seq`), ordered by seq
/// ascending or descending and limited by its last parameter, and its binds except the limit.
/// Column names, operators and key kinds are constants; values are bound.
///
/// Without an agent, task, system or actor in the filter, one scan of `audit_records` through
/// its synchronous indexes (time, event type, subject) or its key. With one, the records are in
/// two places: at or below the index watermark, found through `audit_keys`; above it, not yet
/// indexed, found by scanning the tail of `audit_records`. The statement is a `UNION ALL` of an
/// arm for each, each ordered and limited like the whole, merged and limited again:
///
/// - The watermark is read by a subquery of the statement itself, so both arms see the same
///   watermark and the same rows (one statement, one snapshot, on both databases): a record is
///   in exactly one arm's range, and the indexer, which adds a batch's entries and moves the
///   watermark in one transaction, cannot make a read miss or repeat a record.
/// - Every arm checks every condition on the row itself; the index only picks candidates. An
///   entry missing below the watermark would hide a record, which the indexer's transaction
///   rules out; an extra entry could not add a wrong one.
/// - The driving key is the task, else the agent, else the system, else the actor. The actor
///   has two index arms, as its synchronous index had: records whose agent is the actor (agent
///   entries) and the others (other-actor entries), disjoint by their row conditions.
fn select_sql(
    filter: &AuditFilter,
    after_seq: Option<u64>,
    descending: bool,
    tail_scan_hint: &str,
) -> (String, Vec<Value>) {
    let text = |s: &String| Value::Text(s.clone());
    let mut sql = String::new();
    let mut binds = Vec::new();
    let (sql_ref, binds_ref) = (&mut sql, &mut binds);
    let agent = filter
        .agent
        .as_ref()
        .map(|v| push_condition(sql_ref, binds_ref, "r.agent =", text(v)));
    let task = filter
        .task_id
        .as_ref()
        .map(|v| push_condition(sql_ref, binds_ref, "r.task_id =", text(v)));
    let system = filter
        .system
        .as_ref()
        .map(|v| push_condition(sql_ref, binds_ref, "r.system =", text(v)));
    let actor = filter
        .actor
        .as_ref()
        .map(|v| push_condition(sql_ref, binds_ref, "r.actor =", text(v)));
    if let Some(event_type) = filter.event_type {
        push_condition(
            sql_ref,
            binds_ref,
            "r.event_type =",
            Value::Text(event_type.as_str().to_owned()),
        );
    }
    if let Some(subject) = &filter.subject {
        push_condition(sql_ref, binds_ref, "r.subject =", text(subject));
    }
    if let Some(since) = filter.since {
        push_condition(
            sql_ref,
            binds_ref,
            "r.time_ms >=",
            Value::Int(since.timestamp_millis()),
        );
    }
    if let Some(until) = filter.until {
        push_condition(
            sql_ref,
            binds_ref,
            "r.time_ms <",
            Value::Int(until.timestamp_millis()),
        );
    }
    let after = after_seq
        .map(|after| push_condition(sql_ref, binds_ref, "r.seq >", Value::Int(seq_bound(after))));
    let filter_sql = sql;
    let limit = binds.len() + 1;
    let order = if descending { "DESC" } else { "ASC" };

    // (kind, parameter of its key, extra row condition) of each index arm.
    let index_arms: Vec<(i64, usize, String)> = if let Some(p) = task {
        vec![(KIND_TASK, p, String::new())]
    } else if let Some(p) = agent {
        vec![(KIND_AGENT, p, String::new())]
    } else if let Some(p) = system {
        vec![(KIND_SYSTEM, p, String::new())]
    } else if let Some(p) = actor {
        vec![
            (KIND_AGENT, p, format!(" AND r.agent = ${p}")),
            (
                KIND_OTHER_ACTOR,
                p,
                " AND (r.agent IS NULL OR r.actor <> r.agent)".to_owned(),
            ),
        ]
    } else {
        let mut sql = String::from("SELECT r.seq, r.doc FROM audit_records AS r");
        if !filter_sql.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filter_sql);
        }
        let _ = write!(sql, " ORDER BY r.seq {order} LIMIT ${limit}");
        return (sql, binds);
    };

    let after_key = after.map_or(String::new(), |a| format!(" AND k.seq > ${a}"));
    let mut arms: Vec<String> = index_arms
        .iter()
        .map(|(kind, p, extra)| {
            format!(
                "SELECT r.seq, r.doc FROM audit_keys AS k CROSS JOIN audit_records AS r \
                 WHERE k.kind = {kind} AND k.key = ${p} AND k.seq <= {WATERMARK}{after_key} \
                 AND r.seq = k.seq AND {filter_sql}{extra} ORDER BY k.seq {order} LIMIT ${limit}"
            )
        })
        .collect();
    arms.push(format!(
        "SELECT r.seq, r.doc FROM audit_records AS r{tail_scan_hint} \
         WHERE r.seq > {WATERMARK} AND {filter_sql} ORDER BY r.seq {order} LIMIT ${limit}"
    ));
    let mut sql = String::new();
    for (i, arm) in arms.iter().enumerate() {
        sql.push_str(if i == 0 { "" } else { " UNION ALL " });
        let _ = write!(sql, "SELECT seq, doc FROM ({arm}) AS arm{i}");
    }
    let _ = write!(sql, " ORDER BY seq {order} LIMIT ${limit}");
    (sql, binds)
}

/// The audit log's write connection, shared by appends and the indexer (on SQLite the file's
/// only writer, so the indexer runs between appends), and the indexer's bookkeeping.
pub(crate) struct Writer<DB: Database> {
    /// Checked out of `pool` on first use and kept (see `SqlStore::audit_writer`).
    conn: Mutex<Option<PoolConnection<DB>>>,
    pool: Pool<DB>,
    dialect: &'static Dialect,
    /// Records appended through this store since its indexer last started.
    unindexed: AtomicU64,
    /// Whether this store's indexer task is running.
    indexing: AtomicBool,
}

impl<DB: Database> Writer<DB> {
    pub(crate) fn new(pool: Pool<DB>, dialect: &'static Dialect) -> Self {
        Self {
            conn: Mutex::new(None),
            pool,
            dialect,
            unindexed: AtomicU64::new(0),
            indexing: AtomicBool::new(false),
        }
    }

    /// Locks the write connection, checking one out of the pool if there is none.
    async fn lock(&self) -> Result<MutexGuard<'_, Option<PoolConnection<DB>>>, sqlx::Error> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.pool.acquire().await?);
        }
        Ok(guard)
    }
}

impl<DB> Writer<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Indexes the keys of up to `max_records` records above the watermark in one transaction
    /// on the write connection; returns the watermark after it and how many sequence numbers it
    /// moved by.
    pub(crate) async fn index(&self, max_records: u64) -> Result<(u64, u64), StoreError> {
        if !self.dialect.index_on_append_connection {
            // Its own connection: appends go on meanwhile (they touch neither `audit_keys` nor
            // the watermark row, so they never wait for the indexer's locks).
            let mut conn = self.pool.acquire().await.map_err(db_error)?;
            return Self::index_on(&mut conn, self.dialect, max_records).await;
        }
        let mut guard = self.lock().await.map_err(db_error)?;
        let Some(conn) = guard.as_mut() else {
            return Err(StoreError::Database("no audit connection".to_owned()));
        };
        let result = Self::index_on(conn, self.dialect, max_records).await;
        if result.is_err() {
            // The connection may be broken: return it to the pool, which checks it.
            *guard = None;
        }
        result
    }

    async fn index_on(
        conn: &mut DB::Connection,
        dialect: &Dialect,
        max_records: u64,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = conn
            .begin_with(dialect.begin_append)
            .await
            .map_err(db_error)?;
        let result = Self::index_in(&mut tx, dialect, max_records).await;
        match result {
            Ok((watermark, moved)) if moved > 0 => {
                tx.commit().await.map_err(db_error)?;
                Ok((watermark, moved))
            }
            Ok(_) | Err(_) => {
                // Nothing to index, or failed: roll back now rather than at the connection's
                // next use (it is kept, holding the transaction's locks until then).
                tx.rollback().await.map_err(db_error)?;
                result
            }
        }
    }

    /// The indexer's transaction: reads (and on PostgreSQL locks) the watermark `w`, inserts
    /// the keys of the records in `(w, min(head, w + max_records)]` and advances the watermark
    /// to that bound. Returns the watermark and how far it moved (0: nothing written).
    ///
    /// Rows are only ever appended above the head and the visible ones always form a prefix of
    /// the chain (a record is appended by a transaction that saw its predecessor committed), so
    /// every record up to the head read here is visible to the insert that follows: nothing in
    /// the range is skipped. A crash before the commit leaves entries and watermark as they were.
    async fn index_in(
        conn: &mut DB::Connection,
        dialect: &Dialect,
        max_records: u64,
    ) -> Result<(u64, u64), StoreError> {
        let state = sqlx::query(dialect.lock_index_state)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        let Some(state) = state else {
            return Err(StoreError::Corrupt {
                kind: "audit index state",
                key: "1".to_owned(),
                reason: "the watermark row is missing".to_owned(),
            });
        };
        let watermark: i64 = state.try_get(0).map_err(db_error)?;
        let head: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM audit_records")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?
            .try_get(0)
            .map_err(db_error)?;
        let through = head.min(watermark.saturating_add(seq_bound(max_records)));
        if through <= watermark {
            return Ok((stored_seq(watermark)?, 0));
        }
        sqlx::query(INDEX_KEYS_SQL)
            .bind(watermark)
            .bind(through)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        sqlx::query(ADVANCE_WATERMARK_SQL)
            .bind(through)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok((stored_seq(through)?, stored_seq(through - watermark)?))
    }
}

impl<DB> Writer<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
    Self: Send + Sync + 'static,
{
    /// Counts `appended` records and, once [`INDEX_AFTER_RECORDS`] were appended since the
    /// indexer last started, starts it as a task of its own unless it is running: it indexes
    /// chunks of [`INDEX_CHUNK_RECORDS`] until it catches up with the head. The append that
    /// triggers it is acknowledged without waiting; on SQLite later appends may wait for one chunk's
    /// transaction on the write connection. A failed run is logged and retried after the next
    /// [`INDEX_AFTER_RECORDS`] appends; reads stay exact meanwhile (they scan the longer tail).
    fn schedule_index(self: &Arc<Self>, appended: usize) {
        let appended = u64::try_from(appended).unwrap_or(u64::MAX);
        let pending = self
            .unindexed
            .fetch_add(appended, Ordering::Relaxed)
            .saturating_add(appended);
        if pending < INDEX_AFTER_RECORDS || self.indexing.swap(true, Ordering::AcqRel) {
            return;
        }
        let writer = Arc::clone(self);
        tokio::spawn(async move {
            writer.unindexed.store(0, Ordering::Relaxed);
            loop {
                match writer.index(INDEX_CHUNK_RECORDS).await {
                    Ok((_, moved)) if moved >= INDEX_CHUNK_RECORDS => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "audit indexing failed; reads scan the unindexed records meanwhile");
                        break;
                    }
                }
            }
            writer.indexing.store(false, Ordering::Release);
        });
    }
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
    for<'q> Option<&'q str>: Type<DB> + Encode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// The head as the last row's document states it.
    async fn head_in<'e, E>(executor: E) -> Result<Option<(u64, Hash)>, SinkError>
    where
        E: Executor<'e, Database = DB>,
    {
        let Some(row) = sqlx::query(HEAD_SQL)
            .fetch_optional(executor)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let seq: i64 = row.try_get(0).map_err(unavailable)?;
        let doc: String = row.try_get(1).map_err(unavailable)?;
        let record = decode_record(seq, &doc)
            .map_err(|reason| SinkError::Corrupt(format!("audit record {seq}: {reason}")))?;
        Ok(Some((record.seq, record.hash)))
    }

    pub(crate) async fn audit_head(&self) -> Result<Option<(u64, Hash)>, SinkError> {
        Self::head_in(&self.audit.read).await
    }

    /// Binds one chunk's rows to its statement.
    fn bind_rows<'q>(mut q: SqlQuery<'q, DB>, rows: &'q [Prepared<'q>]) -> SqlQuery<'q, DB> {
        for row in rows {
            let event = &row.record.event;
            q = q
                .bind(row.seq)
                .bind(row.time_ms)
                .bind(event.event_type.as_str())
                .bind(event.actor.id.as_str())
                .bind(event.agent.as_deref())
                .bind(event.task_id.as_deref())
                .bind(event.system.as_deref())
                .bind(event.subject.as_deref())
                .bind(row.hash.as_str())
                .bind(row.doc.as_str());
        }
        q
    }

    pub(crate) async fn audit_append(&self, records: &[Record]) -> Result<(), SinkError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let rows = prepare(records)?;
        let mut writer = self.audit_writer.lock().await.map_err(unavailable)?;
        let Some(conn) = writer.as_mut() else {
            return Err(SinkError::Unavailable("no audit connection".to_owned()));
        };
        let result = Self::append_on(conn, self.dialect, first, &rows).await;
        if matches!(result, Err(SinkError::Unavailable(_))) {
            // The connection may be broken: return it to the pool, which checks it, and take a
            // fresh one next time.
            *writer = None;
        }
        drop(writer);
        if result.is_ok() {
            self.audit_writer.schedule_index(rows.len());
        }
        result
    }

    pub(crate) async fn audit_index(&self, max_records: u32) -> Result<u64, StoreError> {
        let (watermark, _) = self.audit_writer.index(u64::from(max_records)).await?;
        Ok(watermark)
    }

    /// One append's transaction on the writer connection.
    async fn append_on(
        conn: &mut DB::Connection,
        dialect: &Dialect,
        first: &Record,
        rows: &[Prepared<'_>],
    ) -> Result<(), SinkError> {
        let mut tx = conn
            .begin_with(dialect.begin_append)
            .await
            .map_err(unavailable)?;
        match Self::append_in(&mut tx, dialect, first, rows).await {
            Ok(()) => tx.commit().await.map_err(append_error),
            Err(e) => {
                // Roll back now: a dropped transaction is only rolled back at the connection's
                // next use, and this connection is kept, holding the transaction's locks until
                // then.
                tx.rollback().await.map_err(unavailable)?;
                Err(e)
            }
        }
    }

    /// Checks that `rows` extend the head and inserts them, inside the append's transaction.
    async fn append_in(
        conn: &mut DB::Connection,
        dialect: &Dialect,
        first: &Record,
        rows: &[Prepared<'_>],
    ) -> Result<(), SinkError> {
        let (head_seq, head_hash) = Self::head_in(&mut *conn)
            .await?
            .unwrap_or((0, Hash::GENESIS));
        if Some(first.seq) != head_seq.checked_add(1) || first.prev_hash != head_hash {
            return Err(SinkError::Conflict);
        }
        let max_rows = dialect.max_binds / COLUMNS.len();
        let mut rest = rows;
        for size in chunk_sizes(rows.len(), max_rows) {
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            let sql = insert_sql(chunk.len(), dialect.numbered_binds);
            Self::bind_rows(sqlx::query(&sql), chunk)
                .execute(&mut *conn)
                .await
                .map_err(append_error)?;
        }
        Ok(())
    }

    pub(crate) async fn audit_append_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<(), SinkError> {
        let seq = i64::try_from(checkpoint.seq).map_err(|_| {
            SinkError::Unavailable(format!(
                "checkpoint sequence number {} is too large",
                checkpoint.seq
            ))
        })?;
        let doc = serde_json::to_string(checkpoint).map_err(|e| {
            SinkError::Unavailable(format!("cannot encode checkpoint {}: {e}", checkpoint.seq))
        })?;
        let inserted = {
            let mut writer = self.audit_writer.lock().await.map_err(unavailable)?;
            let Some(conn) = writer.as_mut() else {
                return Err(SinkError::Unavailable("no audit connection".to_owned()));
            };
            let result = sqlx::query(
                "INSERT INTO audit_checkpoints (seq, doc) VALUES ($1, $2) \
                 ON CONFLICT (seq) DO NOTHING RETURNING seq",
            )
            .bind(seq)
            .bind(doc)
            .fetch_optional(&mut **conn)
            .await;
            if result.is_err() {
                *writer = None;
            }
            result.map_err(unavailable)?
        };
        if inserted.is_some() {
            return Ok(());
        }
        // Another writer (replica) checkpointed this position already: fine if it attests the
        // same head, a fork of history otherwise.
        let stored = self
            .checkpoint_at(seq)
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        match stored {
            Some(stored) if stored.head_hash == checkpoint.head_hash => Ok(()),
            _ => Err(SinkError::Corrupt(format!(
                "a checkpoint of another head is stored at sequence number {}",
                checkpoint.seq
            ))),
        }
    }

    async fn checkpoint_at(&self, seq: i64) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT seq, doc FROM audit_checkpoints WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.audit.read)
            .await
            .map_err(db_error)?;
        row.map(|row| Self::decode_checkpoint(&row)).transpose()
    }

    fn decode_checkpoint(row: &DB::Row) -> Result<Checkpoint, StoreError> {
        let seq: i64 = row.try_get(0).map_err(db_error)?;
        let doc: String = row.try_get(1).map_err(db_error)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            kind: "audit checkpoint",
            key: seq.to_string(),
            reason,
        };
        let checkpoint: Checkpoint =
            serde_json::from_str(&doc).map_err(|e| corrupt(e.to_string()))?;
        if i64::try_from(checkpoint.seq) != Ok(seq) {
            return Err(corrupt(format!(
                "the document is the checkpoint at {}",
                checkpoint.seq
            )));
        }
        Ok(checkpoint)
    }

    /// Runs a `SELECT seq, doc` with `binds` and then `limit`, and returns `(seq, doc)` pairs
    /// in row order.
    async fn fetch_docs(
        &self,
        sql: &str,
        binds: Vec<Value>,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut q = sqlx::query(sql);
        for value in binds {
            q = bind(q, value);
        }
        let rows = q
            .bind(i64::from(limit))
            .fetch_all(&self.audit.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(db_error)?;
                let doc: String = row.try_get(1).map_err(db_error)?;
                Ok((seq, doc))
            })
            .collect()
    }

    fn decode_all(docs: Vec<(i64, String)>) -> Result<Vec<Record>, StoreError> {
        docs.into_iter()
            .map(|(seq, doc)| {
                decode_record(seq, &doc).map_err(|reason| corrupt_record(seq, reason))
            })
            .collect()
    }

    pub(crate) async fn audit_records(
        &self,
        filter: &AuditFilter,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let (sql, binds) = select_sql(filter, after_seq, false, self.dialect.tail_scan_hint);
        let docs = self.fetch_docs(&sql, binds, limit).await?;
        Self::decode_all(docs)
    }

    pub(crate) async fn audit_latest(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let (sql, binds) = select_sql(filter, None, true, self.dialect.tail_scan_hint);
        let mut docs = self.fetch_docs(&sql, binds, limit).await?;
        docs.reverse();
        Self::decode_all(docs)
    }

    pub(crate) async fn audit_record(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT doc FROM audit_records WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.audit.read)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let doc: String = row.try_get(0).map_err(db_error)?;
        decode_record(seq, &doc)
            .map(Some)
            .map_err(|reason| corrupt_record(seq, reason))
    }

    pub(crate) async fn audit_scan(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let docs = self
            .fetch_docs(
                "SELECT seq, doc FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2",
                vec![Value::Int(seq_bound(after_seq))],
                limit,
            )
            .await?;
        docs.into_iter()
            .map(|(seq, doc)| {
                Ok(AuditRow {
                    seq: stored_seq(seq)?,
                    record: decode_record(seq, &doc),
                })
            })
            .collect()
    }

    pub(crate) async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT seq, doc FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.audit.read)
            .await
            .map_err(db_error)?;
        rows.iter().map(Self::decode_checkpoint).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_batch_with_few_distinct_sizes() {
        assert_eq!(chunk_sizes(0, 2048), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1, 2048), vec![1]);
        assert_eq!(chunk_sizes(32, 2048), vec![32]);
        assert_eq!(chunk_sizes(63, 2048), vec![32, 31]);
        assert_eq!(chunk_sizes(64, 2048), vec![64]);
        assert_eq!(
            chunk_sizes(2047, 2048),
            vec![1024, 512, 256, 128, 64, 32, 31]
        );
        assert_eq!(chunk_sizes(5000, 3276), vec![2048, 2048, 512, 256, 128, 8]);
        assert_eq!(chunk_sizes(7, 4), vec![4, 3]);
        for rows in 0..10_000 {
            let sizes = chunk_sizes(rows, 6553);
            assert_eq!(sizes.iter().sum::<usize>(), rows);
            assert!(sizes
                .iter()
                .all(|s| *s <= 4096 && (*s <= 32 || s.is_power_of_two())));
        }
    }

    #[test]
    fn insert_statement_numbers_every_bind() {
        assert_eq!(
            insert_sql(1, false),
            "INSERT INTO audit_records (seq, time_ms, event_type, actor, agent, task_id, system, \
             subject, hash, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(
            insert_sql(2, true),
            "INSERT INTO audit_records (seq, time_ms, event_type, actor, agent, task_id, system, \
             subject, hash, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10), \
             ($11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        );
    }
}
