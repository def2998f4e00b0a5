//! `rein user`: create, list, show and change users (admins).

use clap::Subcommand;
use rein_core::id::UserName;
use rein_core::user::Role;
use rein_registry::{NewUser, UserPatch};

use crate::client::{segment, Client};
use crate::output::{self, col};

/// `rein user …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a user.
    Create {
        /// Login name (lowercase letters, digits, `-`, `_`).
        name: UserName,
        /// Human-readable name.
        #[arg(long, default_value = "")]
        display_name: String,
        /// Contact address.
        #[arg(long, default_value = "")]
        email: String,
        /// Global role.
        #[arg(long, value_parser = parse_role, default_value = "member")]
        role: Role,
    },
    /// List users.
    List,
    /// Show one user.
    Show {
        /// Login name.
        name: UserName,
    },
    /// Change a user; only the fields given change.
    Update {
        /// Login name.
        name: UserName,
        /// New display name.
        #[arg(long)]
        display_name: Option<String>,
        /// New contact address.
        #[arg(long)]
        email: Option<String>,
        /// New role.
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Disable the user: their tokens stop working.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Re-enable a disabled user.
        #[arg(long)]
        enable: bool,
    },
}

/// Parses `admin`, `member` or `auditor`.
pub fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        "auditor" => Ok(Role::Auditor),
        _ => Err(format!("`{s}` is not a role: use admin, member or auditor")),
    }
}

const FIRST: &[&str] = &["name", "display_name", "email", "role", "disabled"];

/// Runs a `rein user` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let response = match command {
        Command::Create {
            name,
            display_name,
            email,
            role,
        } => {
            let body = NewUser {
                name,
                display_name,
                email,
                role,
            };
            client.post("/v1/users", &body).await?
        }
        Command::List => {
            let response = client.get("/v1/users").await?;
            return client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("NAME", "name"),
                        col("ROLE", "role"),
                        col("DISPLAY NAME", "display_name"),
                        col("EMAIL", "email"),
                        col("DISABLED", "disabled"),
                    ],
                )
            });
        }
        Command::Show { name } => client.get(&path(&name)).await?,
        Command::Update {
            name,
            display_name,
            email,
            role,
            disable,
            enable,
        } => {
            let body = UserPatch {
                display_name,
                email,
                role,
                disabled: (disable || enable).then_some(disable),
            };
            client.patch(&path(&name), &body).await?
        }
    };
    client.print(&response, |v| output::record(v, FIRST))
}

fn path(name: &UserName) -> String {
    format!("/v1/users/{}", segment(name.as_str()))
}
