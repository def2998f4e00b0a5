//! `rein review`: access reviews — open a campaign, list and show campaigns with each agent's
//! grants and their use, decide keep or revoke per grant, close a campaign, list overdue agents.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::Subcommand;
use rein_core::id::{GrantId, TeamName};
use serde_json::{json, Value};

use super::agent::short_id;
use super::AgentRef;
use crate::client::{segment, Client};
use crate::output::{self, col, computed};

/// `rein review …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open a campaign over the agents due for review (admins; a team's members with --team).
    Start {
        /// Only this team's agents.
        #[arg(long)]
        team: Option<TeamName>,
        /// Also agents not yet due.
        #[arg(long)]
        all: bool,
    },
    /// The campaigns you opened or whose agents you review (admins and auditors: all).
    List,
    /// One campaign: per agent, each grant with its use in the period and its decision.
    Show {
        /// Campaign ID (`rvw_…`).
        id: String,
    },
    /// Decide an agent's grants (its reviewers): keep re-certifies, revoke revokes at once.
    /// With no grant named, certifies an agent that has none.
    Decide {
        /// Campaign ID (`rvw_…`).
        id: String,
        /// The agent: SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        /// A grant to keep (repeatable).
        #[arg(long = "keep", value_name = "GRANT")]
        keep: Vec<GrantId>,
        /// A grant to revoke (repeatable).
        #[arg(long = "revoke", value_name = "GRANT")]
        revoke: Vec<GrantId>,
        /// Why; recorded with each decision.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Close a campaign before every agent is reviewed (admins).
    Close {
        /// Campaign ID (`rvw_…`).
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The agents whose review is overdue beyond the grace period.
    Overdue,
}

/// Runs a `rein review` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let one = |id: &str| format!("/v1/reviews/{}", segment(id));
    match command {
        Command::Start { team, all } => {
            let body = json!({"team": team, "all": all});
            let response = client.post("/v1/reviews", &body).await?;
            client.print(&response, campaign)
        }
        Command::List => {
            let response = client.get("/v1/reviews").await?;
            client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("ID", "id"),
                        col("STATUS", "status"),
                        computed("TEAM", |c| {
                            c["scope"]["team"].as_str().unwrap_or("*").to_owned()
                        }),
                        computed("AGENTS", |c| {
                            c["agents"].as_array().map_or(0, Vec::len).to_string()
                        }),
                        col("OPENED_BY", "opened_by"),
                        col("OPENED_AT", "opened_at"),
                    ],
                )
            })
        }
        Command::Show { id } => {
            let response = client.get(&one(&id)).await?;
            client.print(&response, campaign)
        }
        Command::Decide {
            id,
            agent,
            keep,
            revoke,
            comment,
        } => {
            let mut decisions = BTreeMap::new();
            for g in keep {
                decisions.insert(g.to_string(), "keep");
            }
            for g in revoke {
                // Named both ways is ambiguous: refused before anything is sent.
                if decisions.insert(g.to_string(), "revoke").is_some() {
                    return Err(crate::client::Local::new(
                        "invalid-input",
                        format!("grant `{g}` is named with both --keep and --revoke"),
                    )
                    .into());
                }
            }
            let path = format!("{}/agents/{}/decide", one(&id), agent.segments());
            let response = client
                .post(&path, &json!({"decisions": decisions, "comment": comment}))
                .await?;
            client.print(&response, |item| items(std::slice::from_ref(item)))
        }
        Command::Close { id, reason } => {
            let response = client
                .post(&format!("{}/close", one(&id)), &json!({"reason": reason}))
                .await?;
            client.print(&response, campaign)
        }
        Command::Overdue => {
            let response = client.get("/v1/reviews/overdue").await?;
            client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        computed("AGENT", |o| short_id(&o["agent"])),
                        col("STATUS", "status"),
                        col("DUE", "due"),
                        col("DAYS_OVERDUE", "days_overdue"),
                        computed("REVIEWERS", |o| list(&o["reviewers"])),
                    ],
                )
            })
        }
    }
}

/// A campaign: its header, then a table per agent.
fn campaign(v: &Value) -> String {
    let c = &v["campaign"];
    let mut text = output::record(c, &["id", "status", "opened_by", "opened_at"]);
    let rows = v["items"].as_array().map_or(&[][..], Vec::as_slice);
    text.push('\n');
    text.push_str(&items(rows));
    text
}

/// Per agent: who reviews it, the period, and a table of its grants.
fn items(rows: &[Value]) -> String {
    let mut text = String::new();
    for item in rows {
        let state = match item["completed"]["by"].as_str() {
            Some(by) => format!("complete ({by})"),
            None => "pending".to_owned(),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "\nagent {}  reviewers: {}  period: {} .. {}  {state}",
            short_id(&item["agent"]),
            list(&item["reviewers"]),
            output::text(&item["period_start"]),
            output::text(&item["period_end"]),
        );
        let grants = item["grants"].as_array().map_or(&[][..], Vec::as_slice);
        if grants.is_empty() {
            text.push_str("  no grants\n");
            continue;
        }
        text.push_str(&output::table(
            grants,
            &[
                col("GRANT", "grant"),
                col("SYSTEM", "system"),
                computed("ACTIONS", |g| list(&g["actions"])),
                computed("CALLS", |g| {
                    let calls = g["usage"]["calls"].as_object();
                    calls
                        .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
                        .unwrap_or_default()
                        .to_string()
                }),
                computed("TOKENS", |g| output::text(&g["usage"]["tokens_issued"])),
                computed("LAST_USED", |g| match &g["usage"]["last_used"] {
                    Value::Null => "never".to_owned(),
                    t => output::text(t),
                }),
                computed("DECISION", |g| match g["verdict"].as_str() {
                    Some(v) => format!("{v} ({})", output::text(&g["decision"]["by"])),
                    None => "-".to_owned(),
                }),
            ],
        ));
        text.push('\n');
    }
    text
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(output::text).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}
