//! `rein posture`: the server's posture report, as a table, JSON, SARIF 2.1.0 (for CI code
//! scanning) or a self-contained HTML page.

use std::path::PathBuf;

use anyhow::Context as _;
use rein_posture::{Finding, Report, Severity};

use crate::client::{Client, Local};
use crate::output::Output;

/// `rein posture`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `table` (default), `json`, `sarif` or `html`; `--output json` also gives JSON.
    #[arg(long, default_value = "table")]
    format: String,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 1 when any finding is at least this severe (`info`, `low`, `medium`, `high`,
    /// `critical`), for CI.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    fail_on: Option<Severity>,
    /// An active grant unused this many days is a finding.
    #[arg(long)]
    unused_grant_days: Option<u32>,
    /// An agent with no activity this many days is an offboarding candidate.
    #[arg(long)]
    inactive_agent_days: Option<u32>,
}

/// Runs `rein posture`.
pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let format = match (args.format.as_str(), client.output()) {
        ("table", Output::Json) => "json",
        (f @ ("table" | "json" | "sarif" | "html"), _) => f,
        (other, _) => {
            return Err(Local::new(
                "invalid-input",
                format!("`--format {other}`: must be table, json, sarif or html"),
            )
            .into())
        }
    };
    let server_format = if format == "table" { "json" } else { format };
    let mut query = vec![("format", Some(server_format.to_owned()))];
    query.push((
        "unused_grant_days",
        args.unused_grant_days.map(|d| d.to_string()),
    ));
    query.push((
        "inactive_agent_days",
        args.inactive_agent_days.map(|d| d.to_string()),
    ));
    let response = client.get_query("/v1/posture", &query).await?;
    let (text, parsed) = match format {
        "table" => {
            let r = report(&response.json()?)?;
            (rein_posture::render::table(&r), Some(r))
        }
        "json" => (response.text().to_owned(), Some(report(&response.json()?)?)),
        _ => (response.text().to_owned(), None),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing `{}`", path.display()))?
        }
        None => println!("{}", text.trim_end()),
    }
    if args.fail_on.is_none() {
        return Ok(());
    }
    // SARIF and HTML carry the findings too; the JSON report is the one to count.
    let findings = match parsed {
        Some(r) => r.findings,
        None => {
            let json = client
                .get_query("/v1/posture", &[("format", Some("json".to_owned()))])
                .await?;
            report(&json.json()?)?.findings
        }
    };
    fail_on(&findings, args.fail_on)
}

/// A severity as the command line names it (`info` … `critical`).
pub(crate) fn parse_severity(s: &str) -> Result<Severity, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("`{s}` is not a severity (info, low, medium, high, critical)"))
}

/// Fails (`findings`) when any of `findings` is at least `threshold` severe, for CI.
pub(crate) fn fail_on(findings: &[Finding], threshold: Option<Severity>) -> anyhow::Result<()> {
    let Some(threshold) = threshold else {
        return Ok(());
    };
    let at_least = findings.iter().filter(|f| f.severity >= threshold).count();
    if at_least > 0 {
        return Err(Local::new(
            "findings",
            format!("{at_least} finding(s) at or above `{}`", threshold.as_str()),
        )
        .into());
    }
    Ok(())
}

fn report(value: &serde_json::Value) -> anyhow::Result<Report> {
    serde_json::from_value(value.clone())
        .map_err(|e| Local::new("unexpected-response", format!("the posture report: {e}")).into())
}
