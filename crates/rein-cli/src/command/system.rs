//! `rein system`: the systems agents act on (admins register and change them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Subcommand;
use rein_core::id::{ActionName, Environment, PrincipalRef, SystemName, TeamName};
use rein_core::system::{ActionClass, ActionSpec, Classification};
use rein_registry::{NewSystem, SystemPatch};
use serde_json::Value;

use crate::client::{segment, Client, Local};
use crate::output::{self, col, computed};

/// `rein system …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a system, from flags or from a file holding the API request body.
    Create {
        /// System name.
        #[arg(required_unless_present = "file")]
        name: Option<SystemName>,
        /// Its environment.
        #[arg(long, required_unless_present = "file")]
        environment: Option<Environment>,
        /// The owning team.
        #[arg(long, required_unless_present = "file")]
        owner_team: Option<TeamName>,
        #[command(flatten)]
        fields: Fields,
        /// A YAML or JSON file holding the whole request (`name`, `environment`, `owner_team`,
        /// `approvers`, `classification`, `actions: {name: {class, description}}`).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "environment", "owner_team", "description", "approvers", "classification", "actions"])]
        file: Option<PathBuf>,
    },
    /// List systems.
    List,
    /// Show one system.
    Show {
        /// System name.
        name: SystemName,
    },
    /// Change a system; only the fields given change (approvers and actions are replaced).
    Update {
        /// System name.
        name: SystemName,
        /// New owning team.
        #[arg(long)]
        owner_team: Option<TeamName>,
        #[command(flatten)]
        fields: Fields,
        /// A YAML or JSON file holding the whole change (the API's patch body).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["owner_team", "description", "approvers", "classification", "actions"])]
        file: Option<PathBuf>,
    },
}

/// The fields `create` and `update` share.
#[derive(Debug, clap::Args)]
pub struct Fields {
    /// What the system is.
    #[arg(long)]
    description: Option<String>,
    /// Who approves access: `user:NAME` or `team:NAME` (repeatable).
    #[arg(long = "approver", value_name = "PRINCIPAL")]
    approvers: Vec<PrincipalRef>,
    /// Data classification: public, internal, confidential or restricted.
    #[arg(long, value_parser = parse_classification)]
    classification: Option<Classification>,
    /// An action as `NAME=CLASS` (class read, write or admin) or `NAME` (treated as write);
    /// repeatable.
    #[arg(long = "action", value_name = "NAME[=CLASS]")]
    actions: Vec<ActionArg>,
}

impl Fields {
    fn actions(&self) -> Option<BTreeMap<ActionName, ActionSpec>> {
        (!self.actions.is_empty()).then(|| {
            self.actions
                .iter()
                .map(|a| {
                    let spec = ActionSpec {
                        class: a.class,
                        ..ActionSpec::default()
                    };
                    (a.name.clone(), spec)
                })
                .collect()
        })
    }
}

/// `NAME[=CLASS]`.
#[derive(Debug, Clone)]
pub struct ActionArg {
    name: ActionName,
    class: Option<ActionClass>,
}

impl FromStr for ActionArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, class) = match s.split_once('=') {
            Some((name, class)) => (name, Some(class)),
            None => (s, None),
        };
        let class = match class {
            None => None,
            Some("read") => Some(ActionClass::Read),
            Some("write") => Some(ActionClass::Write),
            Some("admin") => Some(ActionClass::Admin),
            Some(other) => {
                return Err(format!(
                    "`{other}` is not an action class: use read, write or admin"
                ))
            }
        };
        Ok(Self {
            name: name.parse().map_err(|e| format!("{e}"))?,
            class,
        })
    }
}

fn parse_classification(s: &str) -> Result<Classification, String> {
    match s {
        "public" => Ok(Classification::Public),
        "internal" => Ok(Classification::Internal),
        "confidential" => Ok(Classification::Confidential),
        "restricted" => Ok(Classification::Restricted),
        _ => Err(format!(
            "`{s}` is not a classification: use public, internal, confidential or restricted"
        )),
    }
}

/// Runs a `rein system` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let response = match command {
        Command::Create {
            name,
            environment,
            owner_team,
            fields,
            file,
        } => {
            let body: NewSystem = match (file, name, environment, owner_team) {
                (Some(file), ..) => super::read_body(&file)?,
                (None, Some(name), Some(environment), Some(owner_team)) => NewSystem {
                    name,
                    environment,
                    owner_team,
                    actions: fields.actions().unwrap_or_default(),
                    description: fields.description.unwrap_or_default(),
                    approvers: fields.approvers,
                    classification: fields.classification.unwrap_or_default(),
                    mcp: None,
                },
                _ => {
                    return Err(Local::new(
                        "invalid-input",
                        "give NAME, --environment and --owner-team, or --file",
                    )
                    .into())
                }
            };
            client.post("/v1/systems", &body).await?
        }
        Command::List => {
            let response = client.get("/v1/systems").await?;
            return client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("NAME", "name"),
                        col("ENV", "environment"),
                        col("OWNER", "owner_team"),
                        col("CLASSIFICATION", "classification"),
                        col("APPROVERS", "approvers"),
                        computed("ACTIONS", |r| actions(&r["actions"])),
                    ],
                )
            });
        }
        Command::Show { name } => client.get(&path(&name)).await?,
        Command::Update {
            name,
            owner_team,
            fields,
            file,
        } => {
            let body: SystemPatch = match file {
                Some(file) => super::read_body(&file)?,
                None => SystemPatch {
                    actions: fields.actions(),
                    description: fields.description,
                    owner_team,
                    approvers: (!fields.approvers.is_empty()).then_some(fields.approvers),
                    classification: fields.classification,
                    mcp: None,
                },
            };
            client.patch(&path(&name), &body).await?
        }
    };
    client.print(&response, |v| {
        output::record(
            v,
            &[
                "name",
                "environment",
                "owner_team",
                "classification",
                "approvers",
                "description",
                "actions",
            ],
        )
    })
}

/// `name(class)` for each action; unclassified ones are shown as `write`, as they are treated.
fn actions(actions: &Value) -> String {
    let Some(map) = actions.as_object() else {
        return "-".into();
    };
    let list: Vec<String> = map
        .iter()
        .map(|(name, spec)| {
            let class = spec.get("class").and_then(Value::as_str).unwrap_or("write");
            format!("{name}({class})")
        })
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

fn path(name: &SystemName) -> String {
    format!("/v1/systems/{}", segment(name.as_str()))
}
