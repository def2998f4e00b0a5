//! Housekeeping shared by every replica: assertions accepted once across replicas, heartbeats,
//! acknowledgements of revocations, and pruning of rows that no longer matter.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{db_error, SqlStore};
use crate::{ReplicaAck, StoreError};

fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Inserts (agent, jti) unless a row for it exists that has not expired at `now`; an
    /// expired row is taken over. Returns whether this caller claimed it.
    pub(crate) async fn claim_assertion(
        &self,
        agent: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO used_assertions (agent, jti, expires_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (agent, jti) DO UPDATE SET expires_ms = excluded.expires_ms \
             WHERE used_assertions.expires_ms <= $4 RETURNING expires_ms",
        )
        .bind(agent.to_owned())
        .bind(jti.to_owned())
        .bind(expires_at.timestamp_millis())
        .bind(now.timestamp_millis())
        .fetch_optional(&self.write)
        .await
        .map_err(db_error)?;
        Ok(row.is_some())
    }

    /// Deletes used assertions that expired and revocations that became moot before `before`
    /// (with their acknowledgements), and replicas silent since then. Returns the number of
    /// rows deleted.
    pub(crate) async fn prune_expired(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = before.timestamp_millis();
        let mut tx = self.write.begin().await.map_err(db_error)?;
        let mut deleted = 0;
        for sql in [
            "DELETE FROM used_assertions WHERE expires_ms < $1 RETURNING 1",
            "DELETE FROM revocation_acks WHERE revocation IN \
             (SELECT id FROM revocations WHERE moot_ms < $1) RETURNING 1",
            "DELETE FROM revocations WHERE moot_ms < $1 RETURNING 1",
            "DELETE FROM replicas WHERE seen_ms < $1 RETURNING 1",
        ] {
            deleted += sqlx::query(sql)
                .bind(cutoff)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?
                .len() as u64;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    /// Records that replica `id`, started at `started_at`, is alive at `now`.
    pub(crate) async fn heartbeat(
        &self,
        id: &str,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO replicas (id, started_ms, seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET seen_ms = excluded.seen_ms",
        )
        .bind(id.to_owned())
        .bind(started_at.timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Removes replica `id` (it is shutting down).
    pub(crate) async fn leave(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id.to_owned())
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Records that `replica` applied each of `revocations` at `at` (already known: kept).
    pub(crate) async fn ack_revocations(
        &self,
        replica: &str,
        revocations: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await.map_err(db_error)?;
        for id in revocations {
            sqlx::query(
                "INSERT INTO revocation_acks (revocation, replica, applied_ms) \
                 VALUES ($1, $2, $3) ON CONFLICT (revocation, replica) DO NOTHING",
            )
            .bind(id.clone())
            .bind(replica.to_owned())
            .bind(at.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    /// Every replica seen since `alive_since`, and every replica that acknowledged
    /// `revocation`, with when it did.
    pub(crate) async fn revocation_acks(
        &self,
        revocation: &str,
        alive_since: DateTime<Utc>,
    ) -> Result<Vec<ReplicaAck>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.seen_ms, a.applied_ms FROM replicas r \
             LEFT JOIN revocation_acks a ON a.replica = r.id AND a.revocation = $1 \
             WHERE r.seen_ms >= $2 \
             UNION ALL \
             SELECT a.replica, NULL, a.applied_ms FROM revocation_acks a \
             WHERE a.revocation = $1 AND NOT EXISTS \
             (SELECT 1 FROM replicas r WHERE r.id = a.replica AND r.seen_ms >= $2) \
             ORDER BY 1",
        )
        .bind(revocation.to_owned())
        .bind(alive_since.timestamp_millis())
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0).map_err(db_error)?;
                let seen: Option<i64> = row.try_get(1).map_err(db_error)?;
                let applied: Option<i64> = row.try_get(2).map_err(db_error)?;
                Ok(ReplicaAck {
                    replica: id,
                    alive: seen.is_some(),
                    last_seen: seen.map(to_time),
                    applied_at: applied.map(to_time),
                })
            })
            .collect()
    }
}
