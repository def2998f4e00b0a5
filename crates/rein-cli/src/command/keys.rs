//! `rein keys`: Rein's own signing keys.

use clap::Subcommand;

use crate::client::Client;
use crate::output;

/// `rein keys …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replace the access-token signing key (admins): new tokens are signed with a new key at
    /// once; the old key stays published until every token it signed has expired.
    Rotate,
}

/// Runs a `rein keys` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Rotate => {
            let response = client
                .post("/v1/keys/rotate", &serde_json::json!({}))
                .await?;
            client.print(&response, |v| output::record(v, &["kid", "retired_kid"]))
        }
    }
}
