//! `rein revoke`: one command for every kind of revocation. A token, a task, a team, an
//! environment (the kill switch) or every token issued before a time are recorded as
//! revocations; a grant and an agent are revoked on their own records (`grant revoke`,
//! `agent suspend`), reachable here too so that operators find them in one place.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use rein_core::id::{Environment, GrantId, TeamName};
use serde_json::{json, Value};

use super::grant::spiffe_id;
use super::AgentRef;
use crate::client::{segment, Client};
use crate::output::{self, col, computed};

/// `rein revoke …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One access token, by its `jti` (see `rein token inspect --decode`).
    Token {
        /// The agent the token was issued to: SPIFFE ID or `team/name/environment`.
        #[arg(long)]
        agent: AgentRef,
        /// The token's `jti`.
        #[arg(long)]
        jti: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// A task: its tokens die and its further calls are denied.
    Task {
        /// The agent: SPIFFE ID or `team/name/environment`.
        #[arg(long)]
        agent: AgentRef,
        /// The task.
        #[arg(long)]
        task_id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// A grant (same as `rein grant revoke`).
    Grant {
        /// Grant ID.
        id: GrantId,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// An agent: suspends it, so all its tokens and calls stop (same as `rein agent suspend`).
    Agent {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Every agent of a team (its members or admins).
    Team {
        /// The team.
        team: TeamName,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// The kill switch: every agent in an environment (admins).
    Environment {
        /// The environment, e.g. `prod`.
        environment: Environment,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Every access token issued before a time (admins).
    Before {
        /// The cut-off (RFC 3339), e.g. 2026-11-28T12:00:00Z; `now` for now.
        time: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List every revocation, lifted or not.
    List,
    /// Which running replicas have applied a revocation, and when.
    Status {
        /// Revocation ID (`rev_…`).
        id: String,
        /// Wait up to this many seconds (at most 60) for every running replica to apply it;
        /// exits 1 if they have not by then.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Lift a revocation (admins); final.
    Lift {
        /// Revocation ID (`rev_…`).
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

const FIRST: &[&str] = &["id", "target", "reason", "by", "at", "lifted"];

/// Runs a `rein revoke` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let target = match command {
        Command::Token { agent, jti, reason } => {
            let agent = spiffe_id(client, &agent).await?;
            (json!({"kind": "token", "agent": agent, "jti": jti}), reason)
        }
        Command::Task {
            agent,
            task_id,
            reason,
        } => {
            let agent = spiffe_id(client, &agent).await?;
            (
                json!({"kind": "task", "agent": agent, "task_id": task_id}),
                reason,
            )
        }
        Command::Team { team, reason } => (json!({"kind": "team", "team": team}), reason),
        Command::Environment {
            environment,
            reason,
        } => (
            json!({"kind": "environment", "environment": environment}),
            reason,
        ),
        Command::Before { time, reason } => {
            let before = if time == "now" {
                Utc::now()
            } else {
                time.parse::<DateTime<Utc>>().map_err(|e| {
                    crate::client::Local::new(
                        "invalid-input",
                        format!("`{time}` is not an RFC 3339 time or `now`: {e}"),
                    )
                })?
            };
            (
                json!({"kind": "issued_before", "before": before.to_rfc3339()}),
                reason,
            )
        }
        Command::Grant { id, reason } => {
            let path = format!("/v1/grants/{}/revoke", segment(id.as_str()));
            let response = client.post(&path, &json!({"reason": reason})).await?;
            return client.print(&response, |v| {
                output::record(v, &["id", "status", "closed"])
            });
        }
        Command::Agent { agent, reason } => {
            let path = format!("{}/suspend", agent.path());
            let response = client.post(&path, &json!({"reason": reason})).await?;
            return client.print(&response, |v| {
                output::record(v, &["id", "status", "status_reason"])
            });
        }
        Command::List => {
            let response = client.get("/v1/revocations").await?;
            return client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("ID", "id"),
                        computed("KIND", |r| text(&r["target"]["kind"])),
                        computed("TARGET", target_text),
                        col("BY", "by"),
                        col("AT", "at"),
                        computed("LIFTED", |r| {
                            if r["lifted"].is_null() {
                                "-".into()
                            } else {
                                text(&r["lifted"]["at"])
                            }
                        }),
                        col("REASON", "reason"),
                    ],
                )
            });
        }
        Command::Status { id, wait } => {
            let path = format!("/v1/revocations/{}/propagation?wait={wait}", segment(&id));
            let response = client.get(&path).await?;
            client.print(&response, |v| {
                let mut out = output::table(
                    output::rows(&v["replicas"]),
                    &[
                        col("REPLICA", "replica"),
                        col("ALIVE", "alive"),
                        col("APPLIED AT", "applied_at"),
                        col("LAST SEEN", "last_seen"),
                    ],
                );
                out.push_str(&format!("complete: {}\n", v["complete"]));
                out
            })?;
            if wait > 0 && response.json()?["complete"] != Value::Bool(true) {
                return Err(crate::client::Local::new(
                    "incomplete",
                    format!("not every running replica applied `{id}` within {wait} s"),
                )
                .into());
            }
            return Ok(());
        }
        Command::Lift { id, reason } => {
            let path = format!("/v1/revocations/{}/lift", segment(&id));
            let response = client.post(&path, &json!({"reason": reason})).await?;
            return client.print(&response, |v| output::record(v, FIRST));
        }
    };
    let (target, reason) = target;
    let response = client
        .post(
            "/v1/revocations",
            &json!({"target": target, "reason": reason}),
        )
        .await?;
    client.print(&response, |v| output::record(v, FIRST))
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// What a revocation covers, in one cell.
fn target_text(r: &Value) -> String {
    let t = &r["target"];
    match t["kind"].as_str().unwrap_or("") {
        "token" => format!("{} jti {}", text(&t["agent"]), text(&t["jti"])),
        "task" => format!("{} task {}", text(&t["agent"]), text(&t["task_id"])),
        "team" => text(&t["team"]),
        "environment" => text(&t["environment"]),
        "issued_before" => format!("issued before {}", text(&t["before"])),
        _ => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn targets_read_as_one_cell() {
        let r = json!({"target": {"kind": "task", "agent": "spiffe://x", "task_id": "t"}});
        assert_eq!(target_text(&r), "spiffe://x task t");
        let r = json!({"target": {"kind": "issued_before", "before": "2026-01-01T00:00:00Z"}});
        assert_eq!(target_text(&r), "issued before 2026-01-01T00:00:00Z");
    }
}
