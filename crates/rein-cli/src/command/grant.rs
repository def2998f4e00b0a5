//! `rein grant`: request, approve, deny, list and revoke grants.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use rein_core::grant::GrantRequest;
use rein_core::id::{ActionName, AgentId, GrantId, SystemName};
use rein_core::schedule::Schedule;
use serde_json::{json, Value};

use super::agent::short_id;
use super::{AgentRef, Span};
use crate::client::{segment, Client, Local};
use crate::output::{self, col, computed};

/// `rein grant …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Request access for an agent (members of its team).
    #[command(group = clap::ArgGroup::new("expiry").required(true).args(["expires_in", "expires_at"]))]
    Request {
        /// The agent: SPIFFE ID or `team/name/environment`.
        #[arg(long)]
        agent: AgentRef,
        /// The target system.
        #[arg(long)]
        system: SystemName,
        /// An action of the system (repeatable).
        #[arg(long = "action", value_name = "ACTION", required = true)]
        actions: Vec<ActionName>,
        /// How long the grant lasts from now: `30d`, `12h`, `2w`.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<Span>,
        /// When the grant ends (RFC 3339, e.g. 2027-01-31T18:00:00Z).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<DateTime<Utc>>,
        /// Longest lifetime of a token minted under the grant, up to 1h: `15m`, `300s`.
        #[arg(long, value_name = "DURATION")]
        max_token_ttl: Option<Span>,
        /// A YAML or JSON file with time windows: `{timezone, windows: [{days, start, end}]}`.
        #[arg(long, value_name = "FILE")]
        schedule_file: Option<PathBuf>,
        /// Why the agent needs this access.
        #[arg(long)]
        justification: String,
    },
    /// List grants.
    List {
        /// Only this agent's grants: SPIFFE ID or `team/name/environment`.
        #[arg(long)]
        agent: Option<AgentRef>,
        /// Only grants on this system.
        #[arg(long)]
        system: Option<SystemName>,
        /// Only grants in this state.
        #[arg(long, value_parser = ["requested", "active", "denied", "expired", "revoked"])]
        status: Option<String>,
    },
    /// Show one grant.
    Show {
        /// Grant ID (`grt_…`).
        id: GrantId,
    },
    /// Approve a grant as an approver of its system or as the agent's business owner.
    Approve {
        /// Grant ID.
        id: GrantId,
        /// A comment recorded with the approval.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a requested grant; final.
    Deny {
        /// Grant ID.
        id: GrantId,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Revoke a requested or active grant; final.
    Revoke {
        /// Grant ID.
        id: GrantId,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

const FIRST: &[&str] = &[
    "id",
    "status",
    "agent",
    "system",
    "actions",
    "expires_at",
    "justification",
    "requested_by",
    "requested_at",
    "mutates_production",
    "approvers",
    "business_owner_approver",
    "approvals",
    "closed",
];

/// Runs a `rein grant` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let response = match command {
        Command::Request {
            agent,
            system,
            actions,
            expires_in,
            expires_at,
            max_token_ttl,
            schedule_file,
            justification,
        } => {
            let expires_at = match (expires_in, expires_at) {
                (_, Some(at)) => at,
                (Some(span), None) => Utc::now() + span.delta(),
                (None, None) => {
                    return Err(
                        Local::new("invalid-input", "give --expires-in or --expires-at").into(),
                    )
                }
            };
            let schedule: Option<Schedule> = match schedule_file {
                Some(path) => Some(super::read_body(&path)?),
                None => None,
            };
            let body = GrantRequest {
                agent: spiffe_id(client, &agent).await?,
                system,
                actions: actions.into_iter().collect::<BTreeSet<_>>(),
                expires_at,
                schedule,
                max_token_ttl_secs: max_token_ttl.map(Span::seconds_u32).transpose()?,
                justification,
            };
            client.post("/v1/grants", &body).await?
        }
        Command::List {
            agent,
            system,
            status,
        } => {
            let agent = match agent {
                Some(a) => Some(spiffe_id(client, &a).await?.to_string()),
                None => None,
            };
            let response = client
                .get_query(
                    "/v1/grants",
                    &[
                        ("agent", agent),
                        ("system", system.map(String::from)),
                        ("status", status),
                    ],
                )
                .await?;
            return client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("ID", "id"),
                        col("STATUS", "status"),
                        computed("AGENT", |r| short_id(&r["agent"])),
                        col("SYSTEM", "system"),
                        col("ACTIONS", "actions"),
                        computed("APPROVALS", approvals),
                        col("EXPIRES", "expires_at"),
                    ],
                )
            });
        }
        Command::Show { id } => client.get(&path(&id)).await?,
        Command::Approve { id, comment } => {
            client
                .post(
                    &format!("{}/approve", path(&id)),
                    &json!({ "comment": comment }),
                )
                .await?
        }
        Command::Deny { id, reason } => {
            client
                .post(&format!("{}/deny", path(&id)), &json!({ "reason": reason }))
                .await?
        }
        Command::Revoke { id, reason } => {
            client
                .post(
                    &format!("{}/revoke", path(&id)),
                    &json!({ "reason": reason }),
                )
                .await?
        }
    };
    client.print(&response, |v| output::record(v, FIRST))
}

fn path(id: &GrantId) -> String {
    format!("/v1/grants/{}", segment(id.as_str()))
}

/// The agent's SPIFFE ID from the server's record (which also checks the agent exists, and
/// fills in the server's trust domain for `team/name/environment`).
pub(super) async fn spiffe_id(client: &Client, agent: &AgentRef) -> anyhow::Result<AgentId> {
    let record = client.get(&agent.path()).await?.json()?;
    let id = record.get("id").and_then(Value::as_str).ok_or_else(|| {
        Local::new(
            "bad-response",
            format!("the server's record of `{agent}` has no `id`"),
        )
    })?;
    Ok(id.parse()?)
}

/// Approvals given over approvals required: `1/2`.
fn approvals(grant: &Value) -> String {
    let given = output::rows(&grant["approvals"]).len();
    let required = if grant["business_owner_approver"].is_string() {
        2
    } else {
        1
    };
    format!("{given}/{required}")
}
