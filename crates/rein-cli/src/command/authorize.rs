//! `rein authorize`: ask for a decision on one call, as the gateway does before it proxies.

use std::path::PathBuf;

use anyhow::Context as _;
use rein_core::id::{ActionName, AgentId, SystemName};
use rein_pdp::{AuthorizeRequest, CallContext};
use serde_json::Value;

use super::grant::spiffe_id;
use super::AgentRef;
use crate::client::{Client, Local};
use crate::output::{self, Output};
use crate::Exit;

/// Arguments of `rein authorize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The calling agent: SPIFFE ID or `team/name/environment`.
    #[arg(long)]
    agent: String,
    /// The target system.
    #[arg(long)]
    system: SystemName,
    /// The action (tool) to call.
    #[arg(long)]
    action: ActionName,
    /// The task the call belongs to.
    #[arg(long)]
    task_id: Option<String>,
    /// The task's stated intent.
    #[arg(long)]
    intent: Option<String>,
    /// Risk as the agent assesses it, 0 to 100.
    #[arg(long)]
    risk: Option<i64>,
    /// Confidence as the agent assesses it, 0.0 to 1.0.
    #[arg(long)]
    confidence: Option<f64>,
    /// The call's arguments as a JSON object.
    #[arg(long, value_name = "JSON", conflicts_with = "arguments_file")]
    arguments: Option<String>,
    /// A file holding the call's arguments as a JSON object.
    #[arg(long, value_name = "FILE")]
    arguments_file: Option<PathBuf>,
    /// A step-up approval to attach.
    #[arg(long)]
    approval_id: Option<String>,
}

/// Prints the decision; `allow` exits 0, `deny` and `step_up` exit 3 (the call may not
/// proceed as it is).
pub async fn run(client: &Client, args: Args) -> anyhow::Result<Exit> {
    let agent = if args.agent.starts_with("spiffe://") {
        args.agent.parse::<AgentId>()?
    } else {
        let r: AgentRef = args
            .agent
            .parse()
            .map_err(|e: String| Local::new("invalid-input", e))?;
        spiffe_id(client, &r).await?
    };
    let arguments = match (&args.arguments, &args.arguments_file) {
        (Some(text), _) => Some(parse_arguments(text, "--arguments")?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            Some(parse_arguments(&text, &path.display().to_string())?)
        }
        (None, None) => None,
    };
    let request = AuthorizeRequest {
        agent,
        system: args.system,
        action: args.action,
        context: CallContext {
            task_id: args.task_id,
            intent: args.intent,
            risk: args.risk,
            confidence: args.confidence,
            arguments,
            approval_id: args.approval_id,
        },
    };
    let response = client.post("/v1/authorize", &request).await?;
    let decision = response.json()?;
    match client.output() {
        Output::Json => client.print(&response, |_| String::new())?,
        Output::Table => println!("{}", render(&decision)),
    }
    Ok(if decision["decision"] == "allow" {
        Exit::Success
    } else {
        Exit::Deny
    })
}

fn parse_arguments(text: &str, origin: &str) -> anyhow::Result<Value> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Local::new("invalid-input", format!("{origin}: not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Local::new("invalid-input", format!("{origin}: must be a JSON object")).into());
    }
    Ok(value)
}

/// `allow  (rule allow)` then the reason, what decided, shadow effects and the record.
fn render(d: &Value) -> String {
    let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut out = format!("{}  (rule {})\n", text("decision"), text("rule"));
    out.push_str(&format!("reason:          {}\n", text("reason")));
    let by: Vec<String> = output::rows(&d["determined_by"])
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    out.push_str(&format!("determined_by:   {}\n", by.join(", ")));
    if let Some(n) = d["step_up"]["approvers_required"].as_u64() {
        out.push_str(&format!("step-up:         {n} approver(s) needed\n"));
    }
    if let Some(id) = d["approval"]["id"].as_str() {
        let status = d["approval"]["status"].as_str().unwrap_or("");
        out.push_str(&format!("approval:        {id} ({status})\n"));
        if status == "pending" {
            out.push_str(&format!(
                "                 wait with `rein approvals wait {id}`, then repeat the call with `--approval-id {id}`\n"
            ));
        }
    }
    for s in output::rows(&d["shadow"]) {
        out.push_str(&format!(
            "shadow:          {} would {}\n",
            s["policy"].as_str().unwrap_or(""),
            s["effect"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!("policy_version:  {}\n", text("policy_version")));
    out.push_str(&format!("decision_id:     {}\n", text("decision_id")));
    if let Some(seq) = d["audit_seq"].as_u64() {
        out.push_str(&format!("audit record:    {seq}\n"));
    }
    out
}
