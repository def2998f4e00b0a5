//! `rein trace TASK`: a task's chain of actions across systems, in the order the audit log
//! recorded them — each token issued for it, each decision, each approval asked, given and used,
//! and each call through the MCP gateway with its outcome and latency (admins and auditors).

use crate::client::Client;
use crate::output::{self, col, computed, Output};

/// Records per page while reading the task's records.
const PAGE: u32 = 1000;

/// `rein trace`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The task ID.
    task: String,
    /// Only this agent's records (SPIFFE ID), when task IDs are reused across agents.
    #[arg(long)]
    agent: Option<String>,
}

/// What a record says happened, in a few words.
fn what(event: &serde_json::Value) -> String {
    let s = |k: &str| event[k].as_str().unwrap_or_default().to_owned();
    match event["type"].as_str().unwrap_or_default() {
        "decision" => s("decision"),
        "gateway.call" => match event["decision"].as_str() {
            Some(d) => format!("{d} → {}", s("outcome")),
            None => s("outcome"),
        },
        _ => s("outcome"),
    }
}

/// Runs `rein trace`.
pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let mut records = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let query = vec![
            ("task", Some(args.task.clone())),
            ("agent", args.agent.clone()),
            ("after", after.map(|a| a.to_string())),
            ("limit", Some(PAGE.to_string())),
        ];
        let page = client.get_query("/v1/audit", &query).await?.json()?;
        let batch = page["records"].as_array().cloned().unwrap_or_default();
        after = batch.last().and_then(|r| r["seq"].as_u64()).or(after);
        records.extend(batch);
        if page["next"].is_null() {
            break;
        }
    }
    if client.output() == Output::Json {
        println!("{}", serde_json::Value::Array(records));
        return Ok(());
    }
    if records.is_empty() {
        println!("No records for task `{}`.", args.task);
        return Ok(());
    }
    let table = output::table(
        &records,
        &[
            col("SEQ", "seq"),
            col("TIME", "time"),
            col("TYPE", "event.type"),
            col("AGENT", "event.agent"),
            col("SYSTEM", "event.system"),
            col("ACTION", "event.action"),
            computed("RESULT", |r| what(&r["event"])),
            computed("APPROVERS", |r| {
                let a: Vec<&str> = r["event"]["approvers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .collect();
                a.join(",")
            }),
            computed("LATENCY", |r| {
                r["event"]["latency_us"]
                    .as_u64()
                    .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
                    .unwrap_or_default()
            }),
            col("DETAIL", "event.reason"),
        ],
    );
    println!("{}", table.trim_end());
    Ok(())
}
