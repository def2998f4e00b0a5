//! `rein webhook verify`: the receiver's check of a Rein webhook, for receivers that would
//! rather run the binary than reimplement it: the HMAC-SHA256 signature over the timestamp and
//! the exact body bytes, and the timestamp within the tolerance (a replay is refused).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use crate::client::Local;

/// `rein webhook …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a received notification; exits 0 if genuine and fresh, 1 otherwise.
    Verify {
        /// File holding the webhook's secret (as configured in `secret_file`).
        #[arg(long)]
        secret_file: PathBuf,
        /// The `rein-signature` header's value.
        #[arg(long)]
        signature: String,
        /// File holding the body exactly as received; standard input if absent.
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// Seconds the timestamp may be off from now.
        #[arg(long, default_value_t = rein_notify::DEFAULT_TOLERANCE_SECS)]
        tolerance: i64,
    },
}

/// Runs a `rein webhook` command.
pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::Verify {
        secret_file,
        signature,
        body_file,
        tolerance,
    } = command;
    let secret = std::fs::read_to_string(&secret_file)
        .with_context(|| format!("reading `{}`", secret_file.display()))?;
    let body = match body_file {
        Some(path) => {
            std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?
        }
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the body from standard input")?;
            body
        }
    };
    rein_notify::verify(
        secret.trim().as_bytes(),
        signature.trim(),
        &body,
        chrono::Utc::now().timestamp(),
        tolerance,
    )
    .map_err(|e| Local::new("invalid-signature", e.to_string()))?;
    println!("valid");
    Ok(())
}
