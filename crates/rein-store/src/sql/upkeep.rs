//! Housekeeping shared by every replica: assertions accepted once across replicas, heartbeats,
//! acknowledgements of revocations, and pruning of rows that no longer matter.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use tokio::sync::oneshot;

use super::{db_error, SqlStore};
use crate::{ReplicaAck, StoreError};

/// Claims per statement (three bind parameters each).
const MAX_CLAIMS_PER_STATEMENT: usize = 1000;

/// One queued assertion claim and where its answer goes.
pub(crate) struct Claim {
    agent: String,
    jti: String,
    expires_ms: i64,
    now_ms: i64,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// The claims waiting to be written, and the lock of the one batch written at a time.
#[derive(Default)]
pub(crate) struct Claims {
    queued: Mutex<Vec<Claim>>,
    commit: tokio::sync::Mutex<()>,
}

impl Claims {
    fn queue(&self, claim: Claim) {
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(claim);
    }

    fn take(&self) -> Vec<Claim> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

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
    ///
    /// Claims made at the same time share one statement and one commit (on SQLite a commit is
    /// an fsync, which one claim at a time would pay each): the caller queues its claim; the
    /// first to take the commit lock writes every queued claim and hands each its answer.
    pub(crate) async fn claim_assertion(
        &self,
        agent: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (reply, mut answer) = oneshot::channel();
        self.claims.queue(Claim {
            agent: agent.to_owned(),
            jti: jti.to_owned(),
            expires_ms: expires_at.timestamp_millis(),
            now_ms: now.timestamp_millis(),
            reply,
        });
        let _commit = self.claims.commit.lock().await;
        if let Ok(answer) = answer.try_recv() {
            return answer;
        }
        let batch = self.claims.take();
        let mut outcome = self.claim_batch(&batch).await;
        for claim in batch {
            // Taking the pair out leaves a duplicate later in the batch the loser.
            let answer = match &mut outcome {
                Ok(won) => Ok(won.remove(&(claim.agent, claim.jti))),
                Err(e) => Err(e.clone()),
            };
            let _ = claim.reply.send(answer);
        }
        answer.try_recv().unwrap_or_else(|_| {
            Err(StoreError::Database(
                "the assertion claim was not answered".into(),
            ))
        })
    }

    /// Writes `batch` in one statement; returns the (agent, jti) pairs claimed. Of duplicates
    /// within the batch only the first can win.
    async fn claim_batch(&self, batch: &[Claim]) -> Result<HashSet<(String, String)>, StoreError> {
        let mut seen = HashSet::new();
        let unique: Vec<&Claim> = batch
            .iter()
            .filter(|c| seen.insert((c.agent.as_str(), c.jti.as_str())))
            .collect();
        let mut won = HashSet::new();
        for chunk in unique.chunks(MAX_CLAIMS_PER_STATEMENT) {
            // A row may be taken over once expired at the earliest `now` of the batch.
            let now = chunk.iter().map(|c| c.now_ms).min().unwrap_or_default();
            let mut sql =
                String::from("INSERT INTO used_assertions (agent, jti, expires_ms) VALUES ");
            super::push_values(&mut sql, chunk.len(), 3, self.dialect.numbered_binds);
            sql.push_str(
                " ON CONFLICT (agent, jti) DO UPDATE SET expires_ms = excluded.expires_ms \
                 WHERE used_assertions.expires_ms <= ",
            );
            sql.push_str(&if self.dialect.numbered_binds {
                format!("${}", chunk.len() * 3 + 1)
            } else {
                "?".to_owned()
            });
            sql.push_str(" RETURNING agent, jti");
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q
                    .bind(c.agent.clone())
                    .bind(c.jti.clone())
                    .bind(c.expires_ms);
            }
            let rows = q.bind(now).fetch_all(&self.write).await.map_err(db_error)?;
            for row in rows {
                let agent: String = row.try_get(0).map_err(db_error)?;
                let jti: String = row.try_get(1).map_err(db_error)?;
                won.insert((agent, jti));
            }
        }
        Ok(won)
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

    /// Inserts or replaces the delivery `id` (about `subject`) with its JSON document.
    pub(crate) async fn record_delivery(
        &self,
        id: &str,
        subject: &str,
        doc: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, subject, doc, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_ms = excluded.updated_ms",
        )
        .bind(id.to_owned())
        .bind(subject.to_owned())
        .bind(doc.to_owned())
        .bind(at.timestamp_millis())
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// The JSON documents of the deliveries about `subject`, oldest first.
    pub(crate) async fn deliveries(&self, subject: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT doc FROM webhook_deliveries WHERE subject = $1 ORDER BY id")
            .bind(subject.to_owned())
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(db_error))
            .collect()
    }
}
