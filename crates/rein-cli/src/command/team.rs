//! `rein team`: teams and their members (admins).

use std::collections::BTreeSet;

use clap::Subcommand;
use rein_core::id::{TeamName, UserName};
use rein_registry::{NewTeam, TeamPatch};

use crate::client::{segment, Client};
use crate::output::{self, col};

/// `rein team …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a team.
    Create {
        /// Team name.
        name: TeamName,
        /// What the team does.
        #[arg(long, default_value = "")]
        description: String,
        /// A member (repeatable); each must be an existing user.
        #[arg(long = "member", value_name = "USER")]
        members: Vec<UserName>,
    },
    /// List teams.
    List,
    /// Show one team.
    Show {
        /// Team name.
        name: TeamName,
    },
    /// Change a team's description.
    Update {
        /// Team name.
        name: TeamName,
        /// New description.
        #[arg(long)]
        description: String,
    },
    /// Add users to a team.
    AddMember {
        /// Team name.
        team: TeamName,
        /// Users to add.
        #[arg(required = true)]
        users: Vec<UserName>,
    },
    /// Remove users from a team.
    RemoveMember {
        /// Team name.
        team: TeamName,
        /// Users to remove.
        #[arg(required = true)]
        users: Vec<UserName>,
    },
}

/// Runs a `rein team` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let response = match command {
        Command::Create {
            name,
            description,
            members,
        } => {
            let body = NewTeam {
                name,
                description,
                members: members.into_iter().collect(),
            };
            client.post("/v1/teams", &body).await?
        }
        Command::List => {
            let response = client.get("/v1/teams").await?;
            return client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("NAME", "name"),
                        col("MEMBERS", "members"),
                        col("DESCRIPTION", "description"),
                    ],
                )
            });
        }
        Command::Show { name } => client.get(&path(&name)).await?,
        Command::Update { name, description } => {
            let body = TeamPatch {
                description: Some(description),
                ..TeamPatch::default()
            };
            client.patch(&path(&name), &body).await?
        }
        Command::AddMember { team, users } => {
            let body = TeamPatch {
                add_members: users.into_iter().collect::<BTreeSet<_>>(),
                ..TeamPatch::default()
            };
            client.patch(&path(&team), &body).await?
        }
        Command::RemoveMember { team, users } => {
            let body = TeamPatch {
                remove_members: users.into_iter().collect::<BTreeSet<_>>(),
                ..TeamPatch::default()
            };
            client.patch(&path(&team), &body).await?
        }
    };
    client.print(&response, |v| {
        output::record(v, &["name", "description", "members"])
    })
}

fn path(name: &TeamName) -> String {
    format!("/v1/teams/{}", segment(name.as_str()))
}
