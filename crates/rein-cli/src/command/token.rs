//! `rein token`: a user's personal API tokens.

use clap::Subcommand;
use rein_core::id::UserName;
use rein_registry::NewToken;
use serde_json::Value;

use crate::client::{segment, Client, Local};
use crate::output::{self, col};

/// `rein token …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Issue a token; it is shown once.
    Create {
        /// Whose token (default: yourself; admins may issue for anyone).
        #[arg(long)]
        user: Option<UserName>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime in days (1 to 366); without it the token lasts until revoked.
        #[arg(long)]
        ttl_days: Option<i64>,
    },
    /// List a user's tokens (metadata only).
    List {
        /// Whose tokens (default: yourself).
        #[arg(long)]
        user: Option<UserName>,
    },
    /// Revoke a token by its ID.
    Revoke {
        /// The token ID (the part after `rein_`, as listed).
        id: String,
        /// Whose token (default: yourself).
        #[arg(long)]
        user: Option<UserName>,
    },
}

/// Runs a `rein token` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            user,
            description,
            ttl_days,
        } => {
            let user = user_or_self(client, user).await?;
            let body = NewToken {
                description,
                ttl_days,
            };
            let response = client.post(&tokens(&user), &body).await?;
            client.print(&response, |v| {
                let mut text = output::record(
                    &v["metadata"],
                    &["id", "user", "description", "created_at", "expires_at"],
                );
                let token = v["token"].as_str().unwrap_or_default();
                text.push_str(&format!(
                    "\n\nThe token is shown only once; keep it secret.\nREIN_TOKEN={token}"
                ));
                text
            })
        }
        Command::List { user } => {
            let user = user_or_self(client, user).await?;
            let response = client.get(&tokens(&user)).await?;
            client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("ID", "id"),
                        col("DESCRIPTION", "description"),
                        col("CREATED", "created_at"),
                        col("EXPIRES", "expires_at"),
                        col("REVOKED", "revoked_at"),
                    ],
                )
            })
        }
        Command::Revoke { id, user } => {
            let user = user_or_self(client, user).await?;
            let response = client
                .delete(&format!("{}/{}", tokens(&user), segment(&id)))
                .await?;
            client.print(&response, |_| format!("revoked token {id} of {user}"))
        }
    }
}

fn tokens(user: &UserName) -> String {
    format!("/v1/users/{}/tokens", segment(user.as_str()))
}

/// `user`, or the caller's own name from `GET /v1/whoami`.
async fn user_or_self(client: &Client, user: Option<UserName>) -> anyhow::Result<UserName> {
    if let Some(user) = user {
        return Ok(user);
    }
    let me = client.get("/v1/whoami").await?.json()?;
    let name = me
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| Local::new("bad-response", "`/v1/whoami` did not name the user"))?;
    Ok(name.parse()?)
}
