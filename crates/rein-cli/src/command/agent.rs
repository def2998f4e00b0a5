//! `rein agent`: agent identities, their accountable roles, lifecycle and keys.
//!
//! Agents are named by SPIFFE ID (`spiffe://…/agent/team/name/env`) or `team/name/env`.

use std::path::PathBuf;

use clap::Subcommand;
use rein_core::agent::{AccountableRoles, AgentStatus};
use rein_core::id::{Environment, PrincipalRef, TeamName, UserName};
use rein_core::key::Jwk;
use rein_registry::{AgentPatch, NewAgent};
use serde_json::{json, Value};

use super::{AgentRef, Reason};
use crate::client::{segment, Client, Local};
use crate::output::{self, col, computed};

/// `rein agent …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an agent identity, from flags or from a file holding the API request body.
    Create {
        /// The agent, `team/name/environment` (you must be a member of the team).
        #[arg(required_unless_present = "file")]
        agent: Option<AgentRef>,
        /// The one use case this identity serves.
        #[arg(long, required_unless_present = "file")]
        use_case: Option<String>,
        /// What the agent does.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        roles: RoleArgs,
        /// Create it `suspended` rather than `active`.
        #[arg(long)]
        suspended: bool,
        /// A YAML or JSON file holding the whole request (incl. `roles` and `budgets`).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["agent", "use_case", "description", "suspended", "business_owner", "approvers", "revokers", "reviewers", "review_cadence_days"])]
        file: Option<PathBuf>,
    },
    /// List agents.
    List {
        /// Only this owner team's agents.
        #[arg(long)]
        team: Option<TeamName>,
        /// Only agents in this environment.
        #[arg(long)]
        environment: Option<Environment>,
        /// Only agents in this state: active, suspended or retired.
        #[arg(long, value_parser = ["active", "suspended", "retired"])]
        status: Option<String>,
    },
    /// Show one agent.
    Show {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
    },
    /// Change an agent; role flags change only that role, the others stay.
    Update {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        /// New use case.
        #[arg(long)]
        use_case: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        roles: RoleArgs,
        /// A YAML or JSON file holding the whole change (the API's patch body).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["use_case", "description", "business_owner", "approvers", "revokers", "reviewers", "review_cadence_days"])]
        file: Option<PathBuf>,
    },
    /// Suspend an agent (its revokers or an admin).
    Suspend {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        #[command(flatten)]
        reason: Reason,
    },
    /// Resume a suspended agent (its revokers or an admin).
    Resume {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        #[command(flatten)]
        reason: Reason,
    },
    /// Retire an agent for good.
    Retire {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        #[command(flatten)]
        reason: Reason,
    },
    /// Register a public key (Ed25519 or P-256 JWK).
    AddKey {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        /// A file holding the public JWK.
        #[arg(long, value_name = "FILE")]
        jwk_file: PathBuf,
    },
    /// Generate a key pair for an agent and register its public half.
    #[command(subcommand)]
    Key(super::agent_key::Command),
    /// Remove a public key by its `kid`.
    RemoveKey {
        /// SPIFFE ID or `team/name/environment`.
        agent: AgentRef,
        /// The key ID.
        kid: String,
    },
}

/// The accountable-role flags of `create` and `update`.
#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    /// The user who owns the business outcome (second approver for prod writes).
    #[arg(long, value_name = "USER")]
    business_owner: Option<UserName>,
    /// Who approves the agent's access requests: `user:NAME` or `team:NAME` (repeatable).
    #[arg(long = "approver", value_name = "PRINCIPAL")]
    approvers: Vec<PrincipalRef>,
    /// Who may suspend it and revoke its access (repeatable).
    #[arg(long = "revoker", value_name = "PRINCIPAL")]
    revokers: Vec<PrincipalRef>,
    /// Who reviews its access on the cadence (repeatable).
    #[arg(long = "reviewer", value_name = "PRINCIPAL")]
    reviewers: Vec<PrincipalRef>,
    /// Days between access reviews (1 to 366).
    #[arg(long, value_name = "DAYS")]
    review_cadence_days: Option<u32>,
}

impl RoleArgs {
    fn any(&self) -> bool {
        self.business_owner.is_some()
            || !self.approvers.is_empty()
            || !self.revokers.is_empty()
            || !self.reviewers.is_empty()
            || self.review_cadence_days.is_some()
    }

    /// `roles` with the roles given on the command line replaced.
    fn apply(self, mut roles: AccountableRoles) -> AccountableRoles {
        if let Some(owner) = self.business_owner {
            roles.business_owner = Some(owner);
        }
        if !self.approvers.is_empty() {
            roles.approvers = self.approvers;
        }
        if !self.revokers.is_empty() {
            roles.revokers = self.revokers;
        }
        if !self.reviewers.is_empty() {
            roles.reviewers = self.reviewers;
        }
        if let Some(days) = self.review_cadence_days {
            roles.review_cadence_days = Some(days);
        }
        roles
    }
}

const FIRST: &[&str] = &[
    "id",
    "status",
    "status_reason",
    "use_case",
    "description",
    "roles",
    "budgets",
    "keys",
];

/// Runs a `rein agent` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let response = match command {
        Command::Create {
            agent,
            use_case,
            description,
            roles,
            suspended,
            file,
        } => {
            let body: NewAgent = match (file, agent, use_case) {
                (Some(file), ..) => super::read_body(&file)?,
                (None, Some(agent), Some(use_case)) => NewAgent {
                    team: agent.team,
                    name: agent.name,
                    environment: agent.environment,
                    description: description.unwrap_or_default(),
                    use_case,
                    roles: roles.apply(AccountableRoles::default()),
                    budgets: Default::default(),
                    status: suspended.then_some(AgentStatus::Suspended),
                },
                _ => {
                    return Err(
                        Local::new("invalid-input", "give AGENT and --use-case, or --file").into(),
                    )
                }
            };
            client.post("/v1/agents", &body).await?
        }
        Command::List {
            team,
            environment,
            status,
        } => {
            let response = client
                .get_query(
                    "/v1/agents",
                    &[
                        ("team", team.map(String::from)),
                        ("environment", environment.map(String::from)),
                        ("status", status),
                    ],
                )
                .await?;
            return client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        computed("AGENT", |r| short_id(&r["id"])),
                        col("STATUS", "status"),
                        col("USE CASE", "use_case"),
                        col("BUSINESS OWNER", "roles.business_owner"),
                        computed("MISSING ROLES", |r| missing_roles(&r["roles"])),
                    ],
                )
            });
        }
        Command::Show { agent } => client.get(&agent.path()).await?,
        Command::Update {
            agent,
            use_case,
            description,
            roles,
            file,
        } => {
            let body: AgentPatch = match file {
                Some(file) => super::read_body(&file)?,
                None => {
                    let roles = if roles.any() {
                        let current = client.get(&agent.path()).await?.json()?;
                        let current: AccountableRoles =
                            serde_json::from_value(current["roles"].clone())?;
                        Some(roles.apply(current))
                    } else {
                        None
                    };
                    AgentPatch {
                        description,
                        use_case,
                        roles,
                        budgets: None,
                    }
                }
            };
            client.patch(&agent.path(), &body).await?
        }
        Command::Suspend { agent, reason } => transition(client, &agent, "suspend", reason).await?,
        Command::Resume { agent, reason } => transition(client, &agent, "resume", reason).await?,
        Command::Retire { agent, reason } => transition(client, &agent, "retire", reason).await?,
        Command::AddKey { agent, jwk_file } => {
            let jwk: Jwk = super::read_body(&jwk_file)?;
            if jwk.d.is_some() {
                return Err(Local::new(
                    "invalid-key",
                    format!(
                        "`{}` holds a private key (`d`); register only the public key",
                        jwk_file.display()
                    ),
                )
                .into());
            }
            let response = client.post(&format!("{}/keys", agent.path()), &jwk).await?;
            return client.print(&response, |v| {
                output::record(v, &["kid", "alg", "added_by", "added_at"])
            });
        }
        Command::Key(command) => return super::agent_key::run(client, command).await,
        Command::RemoveKey { agent, kid } => {
            let response = client
                .delete(&format!("{}/keys/{}", agent.path(), segment(&kid)))
                .await?;
            return client.print(&response, |v| match v {
                Value::Null => format!("removed key {kid} from {agent}"),
                v => output::record(v, FIRST),
            });
        }
    };
    client.print(&response, |v| output::record(v, FIRST))
}

async fn transition(
    client: &Client,
    agent: &AgentRef,
    verb: &str,
    reason: Reason,
) -> anyhow::Result<crate::client::Response> {
    client
        .post(
            &format!("{}/{verb}", agent.path()),
            &json!({ "reason": reason.reason }),
        )
        .await
}

/// `team/name/environment` from a SPIFFE ID (the trust domain is the server's, the same for all).
pub fn short_id(id: &Value) -> String {
    match id.as_str() {
        Some(s) => s
            .split_once("/agent/")
            .map_or_else(|| s.to_owned(), |(_, rest)| rest.to_owned()),
        None => "-".into(),
    }
}

fn missing_roles(roles: &Value) -> String {
    match serde_json::from_value::<AccountableRoles>(roles.clone()) {
        Ok(roles) if roles.missing().is_empty() => "-".into(),
        Ok(roles) => roles.missing().join(", "),
        Err(_) => "?".into(),
    }
}
