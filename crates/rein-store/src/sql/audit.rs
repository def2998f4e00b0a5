//! The audit log's tables, written once for both databases: appends (the
//! [`rein_audit::AuditSink`] half) and reads ([`crate::AuditStore`]).
//!
//! An append is one transaction: read the head, check that the batch extends it, insert the rows
//! with multi-row `INSERT`s, commit. The primary key on `seq` is what makes two writers safe: if
//! another writer commits the same positions first, this transaction's insert fails with a unique
//! violation (on PostgreSQL after waiting for the other commit) and the append reports
//! [`SinkError::Conflict`], leaving nothing behind.

use std::fmt::Write as _;

use rein_audit::{Checkpoint, Hash, Record, SinkError};
use sqlx::{ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

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
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMNS.len() {
            sql.push_str(if column == 0 { "" } else { ", " });
            if numbered {
                // Writing to a String cannot fail.
                let _ = write!(sql, "${}", row * COLUMNS.len() + column + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
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

/// `SELECT seq, doc FROM audit_records WHERE … ORDER BY seq [DESC] LIMIT $n` with the filter's
/// conditions; column names and operators are constants, values are bound: first the
/// conditions', then the actor's if `by_actor`, then the limit.
///
/// The actor has no index of its own for records whose actor is their agent (an agent acting
/// about itself: decisions, token requests, gateway calls, most of the log), because the agent
/// index already finds them: see migration `0002_audit_indexes` (SQLite) and `0003` (PostgreSQL).
/// So an actor filter reads two ordered index ranges and merges them, each arm limited:
/// records whose agent is the actor (agent index), and the others (partial actor index, whose
/// `WHERE` the second arm repeats word for word so that both planners use it). The two arms are
/// disjoint and together are exactly the records with that actor.
fn select_sql(conditions: &[(&'static str, Value)], by_actor: bool, descending: bool) -> String {
    let mut filter = String::new();
    for (i, (condition, _)) in conditions.iter().enumerate() {
        filter.push_str(if i == 0 { "" } else { " AND " });
        // Writing to a String cannot fail.
        let _ = write!(filter, "{condition} ${}", i + 1);
    }
    let order = if descending { "DESC" } else { "ASC" };
    let mut sql = String::new();
    if by_actor {
        let actor = conditions.len() + 1;
        let limit = conditions.len() + 2;
        let and = if filter.is_empty() { "" } else { " AND " };
        let _ = write!(
            sql,
            "SELECT seq, doc FROM (SELECT seq, doc FROM audit_records WHERE {filter}{and}\
             agent = ${actor} AND actor = ${actor} ORDER BY seq {order} LIMIT ${limit}) AS acting_agent \
             UNION ALL \
             SELECT seq, doc FROM (SELECT seq, doc FROM audit_records WHERE {filter}{and}\
             actor = ${actor} AND (agent IS NULL OR actor <> agent) \
             ORDER BY seq {order} LIMIT ${limit}) AS other_actor \
             ORDER BY seq {order} LIMIT ${limit}"
        );
    } else {
        sql.push_str("SELECT seq, doc FROM audit_records");
        if !filter.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filter);
        }
        let _ = write!(sql, " ORDER BY seq {order} LIMIT ${}", conditions.len() + 1);
    }
    sql
}

/// The filter as `(column and operator, value)` conditions, except the actor (see
/// [`select_sql`]).
fn conditions(filter: &AuditFilter, after_seq: Option<u64>) -> Vec<(&'static str, Value)> {
    let text = |s: &String| Value::Text(s.clone());
    let mut c = Vec::new();
    if let Some(agent) = &filter.agent {
        c.push(("agent =", text(agent)));
    }
    if let Some(task) = &filter.task_id {
        c.push(("task_id =", text(task)));
    }
    if let Some(system) = &filter.system {
        c.push(("system =", text(system)));
    }
    if let Some(event_type) = filter.event_type {
        c.push(("event_type =", Value::Text(event_type.as_str().to_owned())));
    }
    if let Some(subject) = &filter.subject {
        c.push(("subject =", text(subject)));
    }
    if let Some(since) = filter.since {
        c.push(("time_ms >=", Value::Int(since.timestamp_millis())));
    }
    if let Some(until) = filter.until {
        c.push(("time_ms <", Value::Int(until.timestamp_millis())));
    }
    if let Some(after) = after_seq {
        c.push(("seq >", Value::Int(seq_bound(after))));
    }
    c
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
        let mut writer = self.audit_writer.lock().await;
        if writer.is_none() {
            *writer = Some(self.audit.write.acquire().await.map_err(unavailable)?);
        }
        let Some(conn) = writer.as_mut() else {
            return Err(SinkError::Unavailable("no audit connection".to_owned()));
        };
        let result = Self::append_on(conn, self.dialect, first, &rows).await;
        if matches!(result, Err(SinkError::Unavailable(_))) {
            // The connection may be broken: return it to the pool, which checks it, and take a
            // fresh one next time.
            *writer = None;
        }
        result
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
            let mut writer = self.audit_writer.lock().await;
            if writer.is_none() {
                *writer = Some(self.audit.write.acquire().await.map_err(unavailable)?);
            }
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

    /// Runs a `SELECT seq, doc` and returns `(seq, doc)` pairs in row order.
    async fn fetch_docs(
        &self,
        conditions: Vec<(&'static str, Value)>,
        actor: Option<&str>,
        descending: bool,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let sql = select_sql(&conditions, actor.is_some(), descending);
        let mut q = sqlx::query(&sql);
        for (_, value) in conditions {
            q = bind(q, value);
        }
        if let Some(actor) = actor {
            q = bind(q, Value::Text(actor.to_owned()));
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
        let docs = self
            .fetch_docs(
                conditions(filter, after_seq),
                filter.actor.as_deref(),
                false,
                limit,
            )
            .await?;
        Self::decode_all(docs)
    }

    pub(crate) async fn audit_latest(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let mut docs = self
            .fetch_docs(
                conditions(filter, None),
                filter.actor.as_deref(),
                true,
                limit,
            )
            .await?;
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
                vec![("seq >", Value::Int(seq_bound(after_seq)))],
                None,
                false,
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
