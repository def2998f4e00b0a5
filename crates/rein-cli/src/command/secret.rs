//! `rein secret`: secrets for MCP upstreams (admins). A value is read from a file, standard input
//! or an environment variable, never from an argument (arguments end up in shell history and in
//! `ps`), sent once, and never shown again: the server returns metadata only.

use std::io::Read as _;
use std::path::PathBuf;

use clap::Subcommand;
use rein_core::mcp::SecretName;
use rein_keys::SecretValue;
use serde::Serialize;

use crate::client::{segment, Client, Local};
use crate::output::{self, col};

/// `rein secret …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set a secret (create it, or rotate it to a new version), reading its value from a file,
    /// standard input or an environment variable. Reference it in a system's `mcp` as
    /// `{secret: NAME}`.
    Set {
        /// Secret name: lowercase letters, digits, `-` and `_`.
        name: SecretName,
        /// Read the value from this file (`-`: standard input); one trailing newline is removed.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "from_env",
            conflicts_with = "from_env"
        )]
        from_file: Option<PathBuf>,
        /// Read the value from this environment variable.
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
    },
    /// List secrets (names and versions; never values).
    List,
    /// Show a secret's metadata (never its value).
    Show {
        /// Secret name.
        name: SecretName,
    },
    /// Delete a secret; refused while a system's `mcp` references it.
    Delete {
        /// Secret name.
        name: SecretName,
    },
}

/// The body of `PUT /v1/secrets/{name}`.
#[derive(Serialize)]
struct Body<'a> {
    value: &'a str,
}

/// The metadata fields, in the order shown.
const FIELDS: &[&str] = &["name", "version", "updated_by", "updated_at", "created_at"];

/// Runs a `rein secret` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Set {
            name,
            from_file,
            from_env,
        } => {
            let value = match (from_file, from_env) {
                (Some(file), _) => from_file_or_stdin(&file)?,
                (None, Some(var)) => from_environment(&var)?,
                (None, None) => {
                    return Err(
                        Local::new("invalid-input", "give --from-file or --from-env").into(),
                    )
                }
            };
            let text = value
                .as_str()
                .map_err(|e| Local::new("invalid-input", e.to_string()))?;
            let response = client.put(&path(&name), &Body { value: text }).await?;
            client.print(&response, |v| output::record(v, FIELDS))
        }
        Command::List => {
            let response = client.get("/v1/secrets").await?;
            client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("NAME", "name"),
                        col("VERSION", "version"),
                        col("UPDATED BY", "updated_by"),
                        col("UPDATED", "updated_at"),
                    ],
                )
            })
        }
        Command::Show { name } => {
            let response = client.get(&path(&name)).await?;
            client.print(&response, |v| output::record(v, FIELDS))
        }
        Command::Delete { name } => {
            let response = client.delete(&path(&name)).await?;
            client.print(&response, |_| format!("deleted secret {name}"))
        }
    }
}

/// The value in `file` (`-`: standard input), one trailing newline (`\n` or `\r\n`) removed.
fn from_file_or_stdin(file: &std::path::Path) -> anyhow::Result<SecretValue> {
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    let len = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .map_or(bytes.len(), <[u8]>::len);
    bytes.truncate(len);
    // Wrapped before anything else can fail, so the bytes are zeroed whatever happens next.
    let value = SecretValue::from(bytes);
    read.map_err(|e| Local::new("io", format!("reading `{}`: {e}", file.display())))?;
    Ok(value)
}

/// The value of the environment variable `var`.
fn from_environment(var: &str) -> anyhow::Result<SecretValue> {
    match std::env::var_os(var) {
        Some(v) => Ok(SecretValue::from(v.into_encoded_bytes())),
        None => Err(Local::new(
            "invalid-input",
            format!("the environment variable `{var}` is not set"),
        )
        .into()),
    }
}

fn path(name: &SecretName) -> String {
    format!("/v1/secrets/{}", segment(name.as_str()))
}
