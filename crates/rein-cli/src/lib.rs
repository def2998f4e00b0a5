//! The `rein` binary: `rein init`, `rein server` (with `--dev`), and client commands for every
//! operation of the HTTP API.
//!
//! Exit codes are part of the operational contract ([`Exit`]): 0 on success, 1 on an error (a
//! problem reported by the server, or local I/O), 2 on a usage error, 3 on a deny decision.
//! Errors are printed as one line on stderr, `error: <detail> (<code>)`, where `<code>` is the
//! server's stable error code or a local one (`io`, `invalid-input`, `unreachable`, …).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod command;
mod config;
mod data_dir;
mod dev;
mod governance;
mod output;

use client::ClientArgs;

/// The process exit codes `rein` uses; scripts rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked.
    Success = 0,
    /// The command failed: the server reported a problem, or local I/O failed.
    Failure = 1,
    /// The command line was malformed (clap's convention).
    Usage = 2,
    /// A policy decision was `deny` (as Cedar's CLI separates deny from failure).
    Deny = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Rein: a governance control plane for AI agents.
#[derive(Debug, Parser)]
#[command(name = "rein", version, propagate_version = true)]
struct Cli {
    #[command(flatten, next_help_heading = "Client options")]
    client: ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: config, master key, database and the first admin's token.
    Init(command::init::Args),
    /// Run the control plane (`--dev` for a throwaway one with the examples loaded).
    Server(command::server::Args),
    /// Show who the token in REIN_TOKEN belongs to.
    Whoami,
    /// Manage users (admins).
    #[command(subcommand)]
    User(command::user::Command),
    /// Personal API tokens, and agents' access tokens (request, inspect).
    #[command(subcommand)]
    Token(command::token::Command),
    /// Manage teams and their members (admins).
    #[command(subcommand)]
    Team(command::team::Command),
    /// Manage systems: the targets agents act on (admins).
    #[command(subcommand)]
    System(command::system::Command),
    /// Manage agent identities, their accountable roles, lifecycle and keys.
    #[command(subcommand)]
    Agent(command::agent::Command),
    /// Request, approve, deny, list and revoke grants.
    #[command(subcommand)]
    Grant(command::grant::Command),
    /// Secrets for MCP systems (admins): set from a file, stdin or an environment variable,
    /// list, show, delete. Values are never shown.
    #[command(subcommand)]
    Secret(command::secret::Command),
    /// Rein's own signing keys: rotate the access-token key (admins).
    #[command(subcommand)]
    Keys(command::keys::Command),
    /// Revoke a token, a task, a grant, an agent, a team, an environment (kill switch), or
    /// every token issued before a time; list and lift revocations.
    #[command(subcommand)]
    Revoke(command::revoke::Command),
    /// The posture report: findings mapped to framework controls (admins and auditors).
    Posture(command::posture::Args),
    /// Check a received webhook notification's signature (for receivers).
    #[command(subcommand)]
    Webhook(command::webhook::Command),
    /// Access reviews: open a campaign, show it, decide keep or revoke per grant, close it,
    /// list overdue agents.
    #[command(subcommand)]
    Review(command::review::Command),
    /// Step-up approval requests: list, show, approve, deny, wait.
    #[command(subcommand)]
    Approvals(command::approvals::Command),
    /// Read, explain, export and verify the audit log (admins and auditors).
    #[command(subcommand)]
    Audit(command::audit::Command),
    /// Ask for a decision on one call (exit 3 unless it is `allow`).
    Authorize(command::authorize::Args),
    /// A task's chain of actions across systems, in order: tokens, decisions, approvals and
    /// gateway calls with their outcomes and latency (admins and auditors).
    Trace(command::trace::Args),
    /// Check, test and explain guardrail policies offline; show or reload the server's set.
    Policy(command::policy::Args),
    /// Validate a governance repository offline, without a server (for CI).
    ///
    /// Parses the set in DIR (invalid YAML, unknown fields, inline secrets), loads it into a
    /// throwaway installation through the registry's real rules (references, duplicates, roles,
    /// environments; nothing is approved), validates the guardrails (--policies, default
    /// DIR/policies), then prints the posture findings with the manifest file and line of each.
    /// Every problem is one line `file:line: message` on stderr. Exit code 0 when valid (even
    /// with findings, unless --fail-on), 1 otherwise.
    Check(command::check::Args),
    /// Show what applying a governance repository would change on the server (admins).
    ///
    /// Creations, changes and removals (agents no longer declared are retired, grants no
    /// request declares are revoked; users, teams and systems are never removed), who must
    /// approve each grant request, and every problem, at its `file:line` on stderr. Exit code 0
    /// when the set can be applied, 1 otherwise. `--out FILE` saves the plan for `rein apply
    /// --plan FILE`.
    Plan(command::plan::PlanArgs),
    /// Apply a governance repository to the server, all or nothing (admins).
    ///
    /// Plans, prints the plan, then applies exactly it: refused, with nothing applied, if the
    /// registry changed in between (re-plan). With `--plan FILE`, applies a saved plan only if
    /// the registry and the set are unchanged since. Never approves a grant.
    Apply(command::plan::ApplyArgs),
}

/// Runs `rein` with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(Exit::Usage as u8));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(e) => report(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let client = || cli.client.connect();
    let done = match cli.command {
        Command::Authorize(args) => return command::authorize::run(&client()?, args).await,
        Command::Check(args) => return command::check::run(args, cli.client.output()).await,
        Command::Plan(args) => return command::plan::plan(&client()?, args).await,
        Command::Apply(args) => return command::plan::apply(&client()?, args).await,
        Command::Token(cmd) => return command::token::run(&client()?, cmd).await,
        Command::Approvals(cmd) => {
            return match command::approvals::run(&client()?, cmd).await? {
                true => Ok(Exit::Success),
                false => Ok(Exit::Deny),
            }
        }
        Command::Init(args) => command::init::run(args).await,
        Command::Server(args) => command::server::run(args).await,
        Command::Webhook(cmd) => command::webhook::run(cmd),
        Command::Whoami => command::whoami::run(&client()?).await,
        Command::User(cmd) => command::user::run(&client()?, cmd).await,
        Command::Team(cmd) => command::team::run(&client()?, cmd).await,
        Command::System(cmd) => command::system::run(&client()?, cmd).await,
        Command::Agent(cmd) => command::agent::run(&client()?, cmd).await,
        Command::Grant(cmd) => command::grant::run(&client()?, cmd).await,
        Command::Audit(cmd) => command::audit::run(&client()?, cmd).await,
        Command::Revoke(cmd) => command::revoke::run(&client()?, cmd).await,
        Command::Keys(cmd) => command::keys::run(&client()?, cmd).await,
        Command::Secret(cmd) => command::secret::run(&client()?, cmd).await,
        Command::Posture(args) => command::posture::run(&client()?, args).await,
        Command::Trace(args) => command::trace::run(&client()?, args).await,
        Command::Review(cmd) => command::review::run(&client()?, cmd).await,
        Command::Policy(args) => command::policy::run(args, cli.client.output(), client).await,
    };
    done.map(|()| Exit::Success)
}

/// Prints `error: <detail> (<code>)` as one line on stderr and returns exit code 1.
fn report(error: &anyhow::Error) -> ExitCode {
    let (detail, code) = client::describe(error);
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("error: {detail} ({code})");
    Exit::Failure.into()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(Exit::Success as u8, 0);
        assert_eq!(Exit::Failure as u8, 1);
        assert_eq!(Exit::Usage as u8, 2);
        assert_eq!(Exit::Deny as u8, 3);
    }
}
