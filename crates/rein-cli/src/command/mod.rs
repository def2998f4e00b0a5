//! One module per subcommand, plus the argument types they share.

use std::fmt;
use std::io::IsTerminal as _;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context as _;
use chrono::TimeDelta;
use rein_core::id::{AgentId, AgentName, Environment, TeamName};
use serde::de::DeserializeOwned;

use crate::client::{segment, Local};

pub mod agent;
pub mod agent_key;
pub mod approvals;
pub mod audit;
pub mod authorize;
pub mod check;
pub mod grant;
pub mod init;
pub mod keys;
pub mod plan;
pub mod policy;
pub mod posture;
pub mod review;
pub mod revoke;
pub mod secret;
pub mod server;
pub mod system;
pub mod team;
pub mod token;
pub mod trace;
pub mod user;
pub mod webhook;
pub mod whoami;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `default_filter`).
fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Reads a request body from a YAML or JSON file (by extension; YAML otherwise).
fn read_body<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(anyhow::Error::new)
    } else {
        serde_yaml_ng::from_str(&text).map_err(anyhow::Error::new)
    };
    parsed.with_context(|| format!("in `{}`", path.display()))
}

/// An agent named on the command line: its SPIFFE ID or `team/name/environment`.
#[derive(Debug, Clone)]
pub struct AgentRef {
    team: TeamName,
    name: AgentName,
    environment: Environment,
}

impl FromStr for AgentRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("spiffe://") {
            let id: AgentId = s.parse().map_err(|e| format!("{e}"))?;
            return Ok(Self {
                team: id.team().clone(),
                name: id.name().clone(),
                environment: id.environment().clone(),
            });
        }
        let parts: Vec<&str> = s.split('/').collect();
        let [team, name, environment] = parts.as_slice() else {
            return Err(format!(
                "`{s}` is neither a SPIFFE ID nor `team/name/environment`"
            ));
        };
        Ok(Self {
            team: team.parse().map_err(|e| format!("{e}"))?,
            name: name.parse().map_err(|e| format!("{e}"))?,
            environment: environment.parse().map_err(|e| format!("{e}"))?,
        })
    }
}

impl fmt::Display for AgentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.team, self.name, self.environment)
    }
}

impl AgentRef {
    /// The agent's API path, `/v1/agents/{team}/{name}/{environment}`.
    fn path(&self) -> String {
        format!("/v1/agents/{}", self.segments())
    }

    /// The agent's path segments, `{team}/{name}/{environment}`, as agent routes name it.
    fn segments(&self) -> String {
        format!(
            "{}/{}/{}",
            segment(self.team.as_str()),
            segment(self.name.as_str()),
            segment(self.environment.as_str())
        )
    }
}

/// A duration written `<n><unit>`, unit `s`, `m`, `h`, `d` or `w`: `30d`, `15m`, `3600s`.
#[derive(Debug, Clone, Copy)]
pub struct Span(TimeDelta);

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a duration like `30d`, `12h`, `15m` or `90s`");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(split);
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let delta = match unit {
            "s" => TimeDelta::try_seconds(n),
            "m" => TimeDelta::try_minutes(n),
            "h" => TimeDelta::try_hours(n),
            "d" => TimeDelta::try_days(n),
            "w" => TimeDelta::try_weeks(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        if delta <= TimeDelta::zero() {
            return Err(format!("`{s}` must be longer than zero"));
        }
        Ok(Self(delta))
    }
}

impl Span {
    /// The duration.
    fn delta(self) -> TimeDelta {
        self.0
    }

    /// Whole seconds, if they fit in a `u32`.
    fn seconds_u32(self) -> anyhow::Result<u32> {
        u32::try_from(self.0.num_seconds())
            .map_err(|_| Local::new("invalid-input", "duration too long").into())
    }
}

/// The free-text `--reason` of a state change, required.
#[derive(Debug, clap::Args)]
pub struct Reason {
    /// Why; recorded with the change and in the audit log.
    #[arg(long)]
    reason: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn agents_are_named_by_spiffe_id_or_by_their_parts() {
        let a: AgentRef = "spiffe://rein.local/agent/payments/bot/prod"
            .parse()
            .unwrap();
        let b: AgentRef = "payments/bot/prod".parse().unwrap();
        assert_eq!(a.path(), "/v1/agents/payments/bot/prod");
        assert_eq!(b.path(), a.path());
        assert_eq!(b.to_string(), "payments/bot/prod");
        for bad in [
            "payments/bot",
            "Payments/bot/prod",
            "spiffe://rein.local/x",
            "a/b/c/d",
        ] {
            assert!(bad.parse::<AgentRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn spans_take_a_unit() {
        assert_eq!("30d".parse::<Span>().unwrap().delta(), TimeDelta::days(30));
        assert_eq!("15m".parse::<Span>().unwrap().seconds_u32().unwrap(), 900);
        assert_eq!("2w".parse::<Span>().unwrap().delta(), TimeDelta::weeks(2));
        for bad in ["30", "d", "0s", "-1d", "1y", "1.5h", ""] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }
}
