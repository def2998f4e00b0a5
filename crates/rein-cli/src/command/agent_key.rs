//! `rein agent key`: an agent's key pairs, generated where the agent will run so the private
//! half never travels: the private JWK goes to a file only its owner can read, the public JWK
//! is registered with the agent (`POST /v1/agents/…/keys`).

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use rein_core::key::KeyAlgorithm;
use rein_oauth::ClientKey;
use serde_json::Value;

use super::AgentRef;
use crate::client::{Client, Local};
use crate::data_dir;
use crate::output::Output;

/// `rein agent key …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a key pair: write the private JWK to FILE (mode 0600; never overwritten),
    /// register the public JWK with the agent and print its key ID.
    Generate {
        /// The agent: SPIFFE ID or `team/name/environment` (you must be a member of its team).
        #[arg(long)]
        agent: AgentRef,
        /// The signing algorithm.
        #[arg(long, value_enum, ignore_case = true, default_value_t = Alg::EdDSA)]
        alg: Alg,
        /// Where to write the private key; the file must not exist yet.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// The algorithms an agent key can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Alg {
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDSA,
    /// ECDSA over P-256 with SHA-256.
    #[value(name = "ES256")]
    ES256,
}

impl From<Alg> for KeyAlgorithm {
    fn from(alg: Alg) -> Self {
        match alg {
            Alg::EdDSA => KeyAlgorithm::EdDSA,
            Alg::ES256 => KeyAlgorithm::ES256,
        }
    }
}

/// Runs a `rein agent key` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate { agent, alg, out } => generate(client, &agent, alg, &out).await,
    }
}

/// Writes the private key first (so a key is never registered without its private half on
/// disk), then registers the public half; if registration fails the new file is removed.
async fn generate(client: &Client, agent: &AgentRef, alg: Alg, out: &Path) -> anyhow::Result<()> {
    if out.symlink_metadata().is_ok() {
        return Err(Local::new(
            "already-exists",
            format!(
                "`{}` already exists; a key file is never overwritten: choose another --out",
                out.display()
            ),
        )
        .into());
    }
    let key = ClientKey::generate(alg.into());
    data_dir::write_private(out, key.to_private_jwk().as_bytes())?;
    let response = match client
        .post(&format!("{}/keys", agent.path()), &key.public_jwk())
        .await
    {
        Ok(response) => response,
        Err(e) => {
            // The key was never registered: its file is of no use.
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    let registered = response.json()?;
    if registered.get("kid").and_then(Value::as_str) != Some(key.kid()) {
        return Err(Local::new(
            "bad-response",
            format!(
                "the server registered the key under another key ID than `{}`",
                key.kid()
            ),
        )
        .into());
    }
    match client.output() {
        Output::Json => client.print(&response, |_| String::new()),
        Output::Table => {
            println!("{}", key.kid());
            Ok(())
        }
    }
}
