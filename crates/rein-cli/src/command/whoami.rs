//! `rein whoami`: who the current token belongs to.

use crate::client::Client;
use crate::output;

/// Prints the caller's user name, role and teams.
pub async fn run(client: &Client) -> anyhow::Result<()> {
    let response = client.get("/v1/whoami").await?;
    client.print(&response, |v| output::record(v, &["user", "role", "teams"]))
}
