//! `rein plan DIR` and `rein apply DIR`: a governance repository against the running Rein.
//!
//! Both parse the set locally (invalid YAML, unknown fields and inline secrets are refused at
//! their `file:line` before anything is sent) and send it to the server, which computes the
//! plan against the registry as it is (`POST /v1/governance/plan`) and applies it all or
//! nothing (`POST /v1/governance/apply`). The server names each change and problem by kind and
//! document index; here each gets back its `file:line`.
//!
//! `rein apply DIR` plans, prints the plan, and applies exactly that plan: it sends the plan's
//! state and set digests, so if anything changed in between the server refuses (`stale-plan`)
//! and nothing is applied. `rein plan DIR --out plan.json` saves a plan for review;
//! `rein apply DIR --plan plan.json` applies it only if the registry and the set are still
//! what the plan was made against. Applying never approves a grant: requests wait for their
//! approvers.

use std::path::PathBuf;

use anyhow::Context as _;
use rein_registry::{
    Applied, ApplyRequest, ChangeAction, Expected, Plan, PlannedChange, RecordKind, Subject,
};

use crate::client::{Client, Local};
use crate::governance::{DocLocation, GovernanceSet};
use crate::output::Output;
use crate::Exit;

/// `rein plan`
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The governance set: a directory of `*.yaml`/`*.yml` files of `kind`/`spec` documents.
    dir: PathBuf,
    /// Also save the plan (JSON) to this file, for `rein apply DIR --plan FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `rein apply`
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The governance set: a directory of `*.yaml`/`*.yml` files of `kind`/`spec` documents.
    dir: PathBuf,
    /// Apply only if this saved plan (from `rein plan --out`) still holds: the registry and the
    /// set unchanged since it was made.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
}

/// The set in `dir`, in the form the API takes, with where each document is.
fn read(dir: &std::path::Path) -> anyhow::Result<(rein_registry::GovernanceSet, GovernanceSet)> {
    let local = GovernanceSet::read_dir(dir)?;
    let set = rein_registry::GovernanceSet {
        users: local.users.clone(),
        teams: local.teams.clone(),
        systems: local.systems.clone(),
        agents: local.agents.clone(),
        grants: local.grants.iter().map(|g| g.request.clone()).collect(),
    };
    Ok((set, local))
}

/// Where the document a change or problem is about is declared, if the set declares it.
fn location(local: &GovernanceSet, subject: &Subject) -> Option<DocLocation> {
    let list = match subject.kind {
        RecordKind::User => &local.locations.users,
        RecordKind::Team => &local.locations.teams,
        RecordKind::System => &local.locations.systems,
        RecordKind::Agent => &local.locations.agents,
        RecordKind::Grant => &local.locations.grants,
    };
    subject.index.and_then(|i| list.get(i).cloned())
}

/// `file:line: ` for a declared document, nothing otherwise.
fn at(local: &GovernanceSet, subject: &Subject) -> String {
    location(local, subject)
        .map(|l| format!("{l}: "))
        .unwrap_or_default()
}

fn change_line(local: &GovernanceSet, change: &PlannedChange) -> String {
    let sign = match change.action {
        ChangeAction::Create => '+',
        ChangeAction::Update => '~',
        ChangeAction::Remove => '-',
    };
    let mut line = format!("  {sign} {}{}", at(local, &change.subject), change.summary);
    if !change.needs_approval_by.is_empty() {
        line.push_str(&format!(
            "\n      waits for approval by {}",
            change.needs_approval_by.join(", ")
        ));
    }
    line
}

/// Prints the plan; returns whether it can be applied (no problems). Problems go to stderr,
/// one `file:line: kind key: message` line each.
fn show(local: &GovernanceSet, plan: &Plan) -> bool {
    for problem in &plan.problems {
        eprintln!(
            "{}{} `{}`: {}",
            at(local, &problem.subject),
            problem.subject.kind,
            problem.subject.key,
            problem.message
        );
    }
    if !plan.problems.is_empty() {
        eprintln!(
            "{} problem(s): the set cannot be applied",
            plan.problems.len()
        );
        return false;
    }
    let count = |a: ChangeAction| plan.changes.iter().filter(|c| c.action == a).count();
    let waiting = plan
        .changes
        .iter()
        .filter(|c| !c.needs_approval_by.is_empty())
        .count();
    if plan.changes.is_empty() {
        println!("No changes: the registry already matches the set.");
    } else {
        println!("Changes:");
        for change in &plan.changes {
            println!("{}", change_line(local, change));
        }
    }
    let notes: Vec<String> = plan
        .notes
        .iter()
        .map(|n| {
            format!(
                "  {}{} `{}`: {}",
                at(local, &n.subject),
                n.subject.kind,
                n.subject.key,
                n.message
            )
        })
        .collect();
    if !notes.is_empty() {
        println!("Left as they are:");
        for n in notes {
            println!("{n}");
        }
    }
    println!(
        "Plan: {} to create, {} to change, {} to remove; {waiting} grant request(s) will wait for their approvers.",
        count(ChangeAction::Create),
        count(ChangeAction::Update),
        count(ChangeAction::Remove),
    );
    true
}

fn parse<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: &str,
) -> anyhow::Result<T> {
    serde_json::from_value(value)
        .map_err(|e| Local::new("unexpected-response", format!("{what}: {e}")).into())
}

async fn plan_of(client: &Client, set: &rein_registry::GovernanceSet) -> anyhow::Result<Plan> {
    let response = client.post("/v1/governance/plan", set).await?;
    parse(response.json()?, "the plan")
}

/// Runs `rein plan`: exit 0 when the set can be applied (with or without changes), 1 when it
/// has problems.
pub async fn plan(client: &Client, args: PlanArgs) -> anyhow::Result<Exit> {
    let (set, local) = read(&args.dir)?;
    let plan = plan_of(client, &set).await?;
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&plan)
            .map_err(|e| Local::new("io", format!("encoding the plan: {e}")))?;
        std::fs::write(path, json).with_context(|| format!("writing `{}`", path.display()))?;
    }
    let valid = match client.output() {
        Output::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan).unwrap_or_default()
            );
            plan.problems.is_empty()
        }
        Output::Table => show(&local, &plan),
    };
    Ok(if valid { Exit::Success } else { Exit::Failure })
}

/// Runs `rein apply`.
pub async fn apply(client: &Client, args: ApplyArgs) -> anyhow::Result<Exit> {
    let (set, local) = read(&args.dir)?;
    let plan = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            serde_json::from_str::<Plan>(&text).map_err(|e| {
                Local::new(
                    "invalid-input",
                    format!(
                        "`{}` is not a plan from `rein plan --out`: {e}",
                        path.display()
                    ),
                )
            })?
        }
        None => plan_of(client, &set).await?,
    };
    if client.output() == Output::Table && !show(&local, &plan) {
        return Ok(Exit::Failure);
    }
    if args.plan.is_none() && plan.changes.is_empty() {
        return Ok(Exit::Success);
    }
    let request = ApplyRequest {
        set,
        expect: Expected {
            state: Some(plan.state.clone()),
            set: Some(plan.set.clone()),
        },
    };
    let response = client.post("/v1/governance/apply", &request).await?;
    let applied: Applied = parse(response.json()?, "the apply")?;
    match client.output() {
        Output::Json => println!("{}", response.text()),
        Output::Table => match &applied.id {
            Some(id) => println!(
                "Applied {id}: {} change(s), all recorded in the audit log. Grant requests wait for their approvers (`rein grant list --status requested`).",
                applied.plan.changes.len()
            ),
            None => println!("Nothing to apply."),
        },
    }
    Ok(Exit::Success)
}
