//! `rein check DIR`: validates a governance repository offline, without a server, for CI.
//!
//! Three checks, every problem printed as one line `file:line: message` on stderr (exit 1):
//!
//! 1. **Parsing** ([`GovernanceSet::read_dir_all`]): invalid YAML, unknown fields and kinds at
//!    their line; inline secrets refused at the line of their key, never echoing the value.
//! 2. **Domain rules**: the set is loaded into a throwaway installation (a temporary data
//!    directory with its own SQLite store) through the real [`rein_registry::Registry`],
//!    exactly as `rein server --dev` loads the examples but approving nothing, so references,
//!    duplicates, roles and environments are enforced by the code that enforces them in
//!    production. Each refusal names the document's first line.
//! 3. **Guardrails**: the `*.cedar` files of `--policies` (default `DIR/policies` when it
//!    exists) are validated against Rein's Cedar schema, as `rein policy check` does.
//!
//! When all pass, the loaded records are evaluated by the posture rules (`rein-posture`, default
//! thresholds) and the findings printed as a table, JSON or SARIF 2.1.0; each finding about an
//! agent, system or grant of the set carries the file and line of its document, so code
//! scanning shows it on the manifest. Grants are evaluated as if approved the way the registry
//! requires (by a system approver and, for production writes, the business owner). Rules that
//! need evidence of use or of approvals that an offline check cannot have ([`OFFLINE_SKIPPED`])
//! are not evaluated, and the output says so. Exit code 0, or 1 with `--fail-on SEVERITY` when
//! a finding is at least that severe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rein_core::grant::{Approval, ApprovalRole, GrantStatus};
use rein_policy::Guardrails;
use rein_posture::{Catalog, EntityKind, Inventory, Location, PostureConfig, Report, Severity};
use serde_json::json;

use crate::client::{describe, Local};
use crate::config::Overrides;
use crate::data_dir::{self, ADMIN_USER};
use crate::governance::{self, DocLocation, GovernanceSet, Loaded};
use crate::output::Output;
use crate::Exit;

/// Posture rules an offline check does not evaluate: they judge use (from the audit log),
/// approvals or guardrail matches, none of which a repository holds.
pub const OFFLINE_SKIPPED: &[&str] = &[
    "grant-unused",
    "action-never-used",
    "agent-inactive",
    "shared-identity",
    "prod-mutation-without-business-owner",
    "shadow-too-long",
    "guardrail-never-matched",
];

/// `rein check`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The governance set: a directory of `*.yaml`/`*.yml` files of `kind`/`spec` documents.
    dir: PathBuf,
    /// The directory of `*.cedar` guardrails to validate; default `DIR/policies` when it
    /// exists.
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// How to print the posture findings: `table` (default), `json` or `sarif`; `--output
    /// json` also gives JSON.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "sarif"])]
    format: String,
    /// Write the findings to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 1 when any finding is at least this severe (`info`, `low`, `medium`, `high`,
    /// `critical`).
    #[arg(long, value_name = "SEVERITY", value_parser = super::posture::parse_severity)]
    fail_on: Option<Severity>,
}

/// Runs `rein check`: prints every problem on stderr and returns [`Exit::Failure`], or prints
/// the posture findings and returns success (or failure under `--fail-on`).
pub async fn run(args: Args, output: Output) -> anyhow::Result<Exit> {
    let format = match (args.format.as_str(), output) {
        ("table", Output::Json) => "json",
        (f, _) => f,
    };
    let dir = &args.dir;
    if !dir.is_dir() {
        return Err(Local::new(
            "not-found",
            format!("no governance set at `{}`: not a directory", dir.display()),
        )
        .into());
    }
    let (set, problems) = GovernanceSet::read_dir_all(dir)?;
    let mut errors: Vec<String> = problems.iter().map(ToString::to_string).collect();

    let policies = match &args.policies {
        Some(p) => Some(p.clone()),
        None => Some(dir.join("policies")).filter(|p| p.is_dir()),
    };
    let guardrails = match &policies {
        Some(p) => match check_policies(p)? {
            Ok(set) => Some(set),
            Err(lines) => {
                errors.extend(lines);
                None
            }
        },
        None => None,
    };

    // Loading a set with invalid documents would only add refusals caused by the missing ones.
    let loaded = if errors.is_empty() {
        let (loaded, now, registry_envs, refused) = load(&set).await?;
        errors.extend(refused);
        Some((loaded, now, registry_envs))
    } else {
        None
    };
    let Some((loaded, now, (production, protected))) = loaded.filter(|_| errors.is_empty()) else {
        for line in &errors {
            eprintln!("{line}");
        }
        eprintln!(
            "error: {} error(s) in the governance set `{}` (invalid-governance)",
            errors.len(),
            dir.display()
        );
        return Ok(Exit::Failure);
    };

    let catalog = Catalog::embedded()?;
    let mut inventory = Inventory::new(now);
    inventory.production_environments = production;
    inventory.protected_environments = protected;
    inventory.systems = loaded.systems.clone();
    inventory.agents = loaded.agents.clone();
    inventory.grants = loaded.grants.iter().cloned().map(as_approved).collect();
    let mut report = rein_posture::evaluate(&inventory, &PostureConfig::default(), &catalog)
        .without_rules(OFFLINE_SKIPPED, &catalog);
    locate(&mut report, &set, &loaded);

    let summary = format!("governance set `{}`: {}", dir.display(), set.summary());
    let guardrails_line = match (&policies, &guardrails) {
        (Some(p), Some(g)) => format!(
            "guardrails `{}`: {} valid, version {}",
            p.display(),
            g.guardrails().len(),
            g.version()
        ),
        _ => "guardrails: none checked (no policies directory)".to_owned(),
    };
    let skipped = format!(
        "not evaluated offline (no evidence of use or approvals): {}",
        OFFLINE_SKIPPED.join(", ")
    );
    let text = match format {
        "json" => serde_json::to_string_pretty(&json!({
            "ok": true,
            "set": dir.display().to_string(),
            "summary": set.summary(),
            "guardrails": guardrails.as_ref().map(|g| json!({
                "dir": policies.as_ref().map(|p| p.display().to_string()),
                "version": g.version(),
                "count": g.guardrails().len(),
            })),
            "skipped_rules": OFFLINE_SKIPPED,
            "report": report,
        }))?,
        "sarif" => {
            let mut sarif = rein_posture::render::sarif(&report, &catalog);
            if let Some(props) = sarif
                .pointer_mut("/runs/0/properties")
                .and_then(|p| p.as_object_mut())
            {
                props.insert(
                    "reinCheck".to_owned(),
                    json!({"offline": true, "skippedRules": OFFLINE_SKIPPED}),
                );
            }
            serde_json::to_string_pretty(&sarif)?
        }
        _ => {
            let declared: Vec<String> = report
                .findings
                .iter()
                .filter_map(|f| {
                    let l = f.location.as_ref()?;
                    Some(format!("{}:{}: {} ({})", l.file, l.line, f.entity, f.rule))
                })
                .collect();
            let declared = if declared.is_empty() {
                String::new()
            } else {
                format!("\nDeclared at:\n{}\n", declared.join("\n"))
            };
            format!(
                "{summary}: valid\n{guardrails_line}\n{skipped}\n\n{}{declared}",
                rein_posture::render::table(&report)
            )
        }
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, format!("{}\n", text.trim_end()))
                .with_context(|| format!("writing `{}`", path.display()))?;
            if format == "table" || args.fail_on.is_none() {
                eprintln!(
                    "{summary}: valid; {} finding(s) written to `{}`",
                    report.findings.len(),
                    path.display()
                );
            }
        }
        None => println!("{}", text.trim_end()),
    }
    super::posture::fail_on(&report.findings, args.fail_on)?;
    Ok(Exit::Success)
}

/// The production and protected environments the registry was configured with.
type Environments = (
    Vec<rein_core::id::Environment>,
    Vec<rein_core::id::Environment>,
);

/// Loads `set` into a throwaway installation, approving nothing; returns what was created, the
/// registry's time, its environments and every refusal as `file:line: message`.
async fn load(
    set: &GovernanceSet,
) -> anyhow::Result<(
    Loaded,
    chrono::DateTime<chrono::Utc>,
    Environments,
    Vec<String>,
)> {
    let dir = tempfile::Builder::new()
        .prefix("rein-check-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let init = data_dir::initialise(dir.path(), None, Overrides::default()).await?;
    let registry = init.registry;
    let admin = registry.actor(&ADMIN_USER.parse()?).await?;
    stand_in_secrets(&registry, &admin, dir.path(), set).await?;
    let (loaded, refused) = governance::load_all(&registry, &admin, set).await;
    let refused = refused
        .iter()
        .map(|e| {
            let (detail, code) = describe(&e.error);
            let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{}: {detail} ({code})", e.location)
        })
        .collect();
    let config = registry.config();
    let environments = (
        config.production_environments.clone(),
        config.protected_environments.clone(),
    );
    Ok((loaded, registry.now(), environments, refused))
}

/// Sets a stand-in value for every secret the set's systems reference: the server's secrets are
/// not known offline (and must never be), so a reference is taken as satisfied here; `rein plan`
/// checks it against the server.
async fn stand_in_secrets(
    registry: &rein_registry::Registry,
    admin: &rein_core::authz::Actor,
    dir: &Path,
    set: &GovernanceSet,
) -> anyhow::Result<()> {
    let names: std::collections::BTreeSet<&rein_core::mcp::SecretName> = set
        .systems
        .iter()
        .filter_map(|s| s.mcp.as_ref())
        .flat_map(rein_core::mcp::McpUpstream::secrets)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let master = data_dir::check(dir)?;
    for name in names {
        let stand_in = rein_keys::SecretValue::from(b"rein-check stand-in".to_vec());
        registry
            .set_secret(admin, name, stand_in, &master)
            .await
            .with_context(|| format!("standing in for secret `{name}`"))?;
    }
    Ok(())
}

/// The guardrails of `dir`, or every error as `file:line:column: message`. Fails only when the
/// directory cannot be read.
fn check_policies(dir: &Path) -> anyhow::Result<Result<Guardrails, Vec<String>>> {
    let files = super::policy::read_policies(dir)
        .with_context(|| format!("reading the policies directory `{}`", dir.display()))?;
    if files.is_empty() {
        return Ok(Err(vec![format!("{}: no `*.cedar` file", dir.display())]));
    }
    Ok(Guardrails::load(&files).map_err(|errors| {
        errors
            .iter()
            .map(|e| super::policy::error_line(dir, e))
            .collect()
    }))
}

/// A requested grant as it will be once approved the way the registry requires: a system
/// approver and, when the request names one, the business owner.
fn as_approved(mut grant: rein_core::grant::Grant) -> rein_core::grant::Grant {
    if grant.status != GrantStatus::Requested {
        return grant;
    }
    let at = grant.requested_at;
    if let Some(owner) = grant.business_owner_approver.clone() {
        grant.approvals.push(Approval {
            by: owner,
            role: ApprovalRole::BusinessOwner,
            at,
            comment: String::new(),
        });
    }
    grant.status = GrantStatus::Active;
    grant
}

/// `file` as a repository-relative path with `/` separators: relative to the current directory
/// when under it, without a leading `./`.
fn relative(file: &str) -> String {
    let path = Path::new(file);
    let cwd = std::env::current_dir().ok();
    let rel = cwd
        .as_deref()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path);
    let shown = rel.to_string_lossy().replace('\\', "/");
    shown.strip_prefix("./").map(str::to_owned).unwrap_or(shown)
}

/// Gives each finding about an agent, system or grant of the set the location of its document.
fn locate(report: &mut Report, set: &GovernanceSet, loaded: &Loaded) {
    let location = |l: &DocLocation| Location {
        file: relative(&l.file),
        line: l.line.max(1),
    };
    let mut at: HashMap<(EntityKind, String), Location> = HashMap::new();
    for agent in &loaded.agents {
        let declared = set.agents.iter().position(|n| {
            agent.id.team() == &n.team
                && agent.id.name() == &n.name
                && agent.id.environment() == &n.environment
        });
        if let Some(l) = declared.and_then(|i| set.locations.agents.get(i)) {
            at.insert((EntityKind::Agent, agent.id.to_string()), location(l));
        }
    }
    for system in &loaded.systems {
        let declared = set.systems.iter().position(|n| n.name == system.name);
        if let Some(l) = declared.and_then(|i| set.locations.systems.get(i)) {
            at.insert((EntityKind::System, system.name.to_string()), location(l));
        }
    }
    for grant in &loaded.grants {
        let declared = set.grants.iter().position(|d| {
            d.request.agent == grant.agent
                && d.request.system == grant.system
                && d.request.actions == grant.actions
        });
        if let Some(l) = declared.and_then(|i| set.locations.grants.get(i)) {
            at.insert((EntityKind::Grant, grant.id.to_string()), location(l));
        }
    }
    for f in &mut report.findings {
        if let Some(l) = at.get(&(f.entity.kind, f.entity.id.to_string())) {
            f.location = Some(l.clone());
        }
    }
}
