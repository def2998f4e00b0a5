//! `rein approvals`: step-up approval requests — list what you may decide, approve or deny one,
//! wait for a decision.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{segment, Client};
use crate::output::{self, col, computed};

/// `rein approvals …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The requests you may decide (admins and auditors: all).
    List {
        /// `pending` (default), `approved`, `denied`, `expired`, `used` or `all`.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// One request, with its call, its approvers and its decisions.
    Show {
        /// Approval ID (`apr_…`).
        id: String,
    },
    /// Approve a request (one of its approvers; never the user whose call asked).
    Approve {
        /// Approval ID (`apr_…`).
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// How many calls it covers within its window (1 to 100).
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// Deny a request; final.
    Deny {
        /// Approval ID (`apr_…`).
        id: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// Wait until a request is decided or expires (at most 120 s); exit 3 unless approved.
    Wait {
        /// Approval ID (`apr_…`).
        id: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

const FIRST: &[&str] = &[
    "id",
    "status",
    "agent",
    "system",
    "action",
    "expires_at",
    "approvers_required",
    "uses_allowed",
];

/// Runs a `rein approvals` command; `Ok(false)` when a wait ended without an approval.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<bool> {
    let one = |id: &str, what: &str| format!("/v1/approvals/{}{what}", segment(id));
    let response = match command {
        Command::List { status } => {
            let path = if status == "all" {
                "/v1/approvals".to_owned()
            } else {
                format!("/v1/approvals?status={}", segment(&status))
            };
            let response = client.get(&path).await?;
            client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("ID", "id"),
                        col("STATUS", "status"),
                        col("AGENT", "agent"),
                        col("SYSTEM", "system"),
                        col("ACTION", "action"),
                        computed("RISK", |r| {
                            r["risk"].as_u64().map_or("-".into(), |x| x.to_string())
                        }),
                        col("EXPIRES", "expires_at"),
                    ],
                )
            })?;
            return Ok(true);
        }
        Command::Show { id } => client.get(&one(&id, "")).await?,
        Command::Approve { id, comment, uses } => {
            client
                .post(
                    &one(&id, "/approve"),
                    &json!({"comment": comment, "uses": uses}),
                )
                .await?
        }
        Command::Deny { id, comment } => {
            client
                .post(&one(&id, "/deny"), &json!({"comment": comment}))
                .await?
        }
        Command::Wait { id, timeout } => {
            let response = client
                .get(&one(&id, &format!("/wait?timeout={timeout}")))
                .await?;
            client.print(&response, |v| output::record(v, FIRST))?;
            let status: Value = response.json()?;
            return Ok(status["status"] == "approved");
        }
    };
    client.print(&response, |v| output::record(v, FIRST))?;
    Ok(true)
}
