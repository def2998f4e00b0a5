//! `rein server --dev`: a throwaway installation with the example governance set loaded.
//!
//! This module alone approves grants on other people's behalf, and only for `--dev`: it acts as
//! an eligible approver of the target system (never the requester) and, for production writes,
//! as the agent's business owner, so the examples start with active grants. It also issues
//! tokens for the example users, so someone trying Rein can act as an approver.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rein_core::authz::Actor;
use rein_core::grant::{ApprovalRole, Grant};
use rein_core::id::{PrincipalRef, UserName};
use rein_registry::{NewToken, Registry};
use tempfile::TempDir;

use crate::client::Local;
use crate::config::{Overrides, Settings};
use crate::data_dir::{self, ADMIN_USER};
use crate::governance::{self, GovernanceSet};

/// The file in the dev data directory holding the example users' tokens.
const TOKENS_FILE: &str = "tokens.env";
/// The comment recorded on approvals `--dev` gives.
const DEV_COMMENT: &str = "approved by `rein server --dev` on the example approver's behalf";

/// A prepared dev installation. Dropping it deletes the data directory.
pub struct Dev {
    /// The throwaway data directory.
    pub dir: TempDir,
    /// The registry over it.
    pub registry: Registry,
    /// Settings in force.
    pub settings: Settings,
    /// The admin's token.
    pub admin_token: String,
    /// What the examples declared.
    pub summary: String,
    /// Grants approved on the approvers' behalf, with who approved in which capacity.
    pub approved: Vec<(Grant, Vec<(UserName, ApprovalRole)>)>,
    /// Grants left `requested`, with a user who may approve them.
    pub pending: Vec<(Grant, Option<UserName>)>,
    /// The example users' tokens, as shell variable assignments.
    pub tokens_file: PathBuf,
}

/// Reads `examples/governance`, initialises a fresh temporary data directory, loads the set,
/// approves the grants marked for it and writes the example users' tokens.
pub async fn prepare(examples: &Path, overrides: Overrides) -> anyhow::Result<Dev> {
    let set_dir = examples.join("governance");
    if !set_dir.is_dir() {
        return Err(Local::new(
            "not-found",
            format!(
                "no example governance set at `{}`: run from the repository root or pass --examples DIR",
                set_dir.display()
            ),
        )
        .into());
    }
    let set = GovernanceSet::read_dir(&set_dir)?;
    let dir = tempfile::Builder::new()
        .prefix("rein-dev-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let init = data_dir::initialise(dir.path(), None, overrides).await?;
    let registry = init.registry;
    let admin = registry.actor(&ADMIN_USER.parse()?).await?;
    let loaded = governance::load(&registry, &admin, &set)
        .await
        .with_context(|| format!("loading `{}`", set_dir.display()))?;

    let mut approved = Vec::new();
    let mut pending = Vec::new();
    for (grant, doc) in loaded.grants.into_iter().zip(&set.grants) {
        if doc.dev_approve {
            approved.push(approve(&registry, &admin, grant).await?);
        } else {
            let approver = eligible_approvers(&registry, &admin, &grant)
                .await?
                .into_iter()
                .next();
            pending.push((grant, approver));
        }
    }

    let mut tokens = String::from(
        "# Personal API tokens of the example users, issued by `rein server --dev` (valid 1 day).\n\
         # Act as one of them: source this file, then e.g. REIN_TOKEN=$REIN_TOKEN_ALICE rein whoami\n",
    );
    for user in &set.users {
        let issued = registry
            .issue_token(
                &admin,
                &user.name,
                NewToken {
                    description: "rein server --dev".into(),
                    ttl_days: Some(1),
                },
            )
            .await
            .with_context(|| format!("issuing a token for `{}`", user.name))?;
        let _ = writeln!(tokens, "{}={}", token_variable(&user.name), issued.token);
    }
    let tokens_file = dir.path().join(TOKENS_FILE);
    data_dir::write_private(&tokens_file, tokens.as_bytes())?;

    Ok(Dev {
        dir,
        registry,
        settings: init.settings,
        admin_token: init.admin_token.token,
        summary: set.summary(),
        approved,
        pending,
        tokens_file,
    })
}

/// The shell variable holding `user`'s token in the tokens file: `REIN_TOKEN_<NAME>`.
pub fn token_variable(user: &UserName) -> String {
    format!(
        "REIN_TOKEN_{}",
        user.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

/// The users who may give the system approval of `grant` and are neither its requester, its
/// business owner, nor anyone who approved it already, by name.
async fn eligible_approvers(
    registry: &Registry,
    admin: &Actor,
    grant: &Grant,
) -> anyhow::Result<Vec<UserName>> {
    let mut users = BTreeSet::new();
    for p in &grant.approvers {
        match p {
            PrincipalRef::User(u) => {
                users.insert(u.clone());
            }
            PrincipalRef::Team(t) => users.extend(registry.team(admin, t).await?.members),
        }
    }
    users.remove(&grant.requested_by);
    if let Some(owner) = &grant.business_owner_approver {
        users.remove(owner);
    }
    for a in &grant.approvals {
        users.remove(&a.by);
    }
    Ok(users.into_iter().collect())
}

/// Approves `grant` as an eligible system approver and, when required, its business owner.
async fn approve(
    registry: &Registry,
    admin: &Actor,
    grant: Grant,
) -> anyhow::Result<(Grant, Vec<(UserName, ApprovalRole)>)> {
    let what = || {
        format!(
            "approving grant `{}` on `{}` (--dev)",
            grant.id, grant.system
        )
    };
    let approver = eligible_approvers(registry, admin, &grant)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Local::new(
                "invalid-input",
                "no approver of the system other than the requester and the business owner",
            )
        })
        .with_context(what)?;
    let mut by = vec![(approver.clone(), ApprovalRole::SystemApprover)];
    let mut current = registry
        .approve_grant(&registry.actor(&approver).await?, &grant.id, DEV_COMMENT)
        .await
        .with_context(what)?;
    if let Some(owner) = grant.business_owner_approver.clone() {
        current = registry
            .approve_grant(&registry.actor(&owner).await?, &grant.id, DEV_COMMENT)
            .await
            .with_context(what)?;
        by.push((owner, ApprovalRole::BusinessOwner));
    }
    Ok((current, by))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rein_core::grant::GrantStatus;

    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
    }

    #[tokio::test]
    async fn the_examples_load_with_the_real_rules_and_approvals_land() {
        let dev = prepare(&examples(), Overrides::default()).await.unwrap();
        assert!(!dev.approved.is_empty());
        for (grant, by) in &dev.approved {
            assert_eq!(grant.status, GrantStatus::Active, "{}", grant.id);
            assert!(by.iter().all(|(u, _)| *u != grant.requested_by));
        }
        assert!(
            dev.approved
                .iter()
                .any(|(g, by)| g.mutates_production && by.len() == 2),
            "one example is a production write approved by the business owner too"
        );
        assert!(
            dev.approved
                .iter()
                .any(|(g, _)| !g.mutates_production && g.system.as_str().ends_with("db")),
            "one example is a production read"
        );
        assert_eq!(dev.pending.len(), 1);
        let (grant, approver) = &dev.pending[0];
        assert_eq!(grant.status, GrantStatus::Requested);
        let approver = approver.clone().unwrap();
        let actor = dev.registry.actor(&approver).await.unwrap();
        let done = dev
            .registry
            .approve_grant(&actor, &grant.id, "ok")
            .await
            .unwrap();
        assert_eq!(
            done.status,
            GrantStatus::Active,
            "one approval is enough outside prod writes"
        );

        let tokens = std::fs::read_to_string(&dev.tokens_file).unwrap();
        let line = tokens
            .lines()
            .find(|l| l.starts_with(&format!("{}=", token_variable(&approver))))
            .unwrap();
        let token = line.split_once('=').unwrap().1;
        assert_eq!(
            dev.registry.authenticate(token).await.unwrap().user,
            approver
        );
    }

    #[test]
    fn the_examples_parse() {
        let set = GovernanceSet::read_dir(&examples().join("governance")).unwrap();
        assert!(set.users.len() >= 8);
        assert_eq!(set.teams.len(), 3);
        assert!(set
            .users
            .iter()
            .any(|u| u.role == rein_core::user::Role::Auditor));
    }
}
