//! Revocations of a token, a task, a team, an environment, or every token issued before a time
//! (a grant is revoked on the grant, an agent suspended on the agent). Recorded write-ahead like
//! every change, then told to the observers, so the decision point's index has it before the
//! call returns.

use rein_audit::EventType;
use rein_core::authz::Actor;
use rein_core::revocation::{Revocation, RevocationTarget};
use rein_store::INITIAL_VERSION;
use serde::{Deserialize, Serialize};

use crate::{audit, Error, Registry};

/// A revocation to record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    /// What it covers.
    pub target: RevocationTarget,
    /// Why (required).
    pub reason: String,
}

impl Registry {
    /// Records a revocation: tokens and tasks by the agent's revokers or an admin, a team by its
    /// members or an admin, an environment or a cut-off time by an admin.
    pub async fn revoke(&self, actor: &Actor, new: NewRevocation) -> Result<Revocation, Error> {
        new.target.check(actor)?;
        if let Some(agent) = new.target.agent() {
            let agent = self.load_agent(agent).await?;
            actor.require_agent_revoker(&agent, "revoke its tokens and tasks")?;
        }
        if let RevocationTarget::Environment { environment } = &new.target {
            self.check_environment(environment)?;
        }
        let revocation = Revocation::new(
            rand::random(),
            new.target,
            &new.reason,
            actor.user.clone(),
            self.now(),
        )?;
        let event = event(actor, &revocation, "revoked");
        self.create(
            "revocation",
            &revocation.id,
            event,
            self.store.insert_revocation(&revocation),
        )
        .await?;
        self.revocation_written(&revocation, INITIAL_VERSION);
        Ok(revocation)
    }

    /// Lifts a revocation (admins only); final.
    pub async fn lift_revocation(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<Revocation, Error> {
        let now = self.now();
        let store = &self.store;
        let written = self
            .modify(
                "revocation",
                id,
                || store.revocation(id),
                |r, v| async move { store.update_revocation(&r, v).await },
                |r| Ok(r.lift(actor, reason, now)?),
                |r| event(actor, r, "lifted"),
            )
            .await?;
        self.revocation_written(&written.value, written.version);
        Ok(written.value)
    }

    /// One revocation, in force or not.
    pub async fn revocation(&self, _actor: &Actor, id: &str) -> Result<Revocation, Error> {
        self.store
            .revocation(id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::NotFound {
                kind: "revocation",
                key: id.to_owned(),
            })
    }

    /// Every revocation, in force or not.
    pub async fn revocations(&self, _actor: &Actor) -> Result<Vec<Revocation>, Error> {
        Ok(self.store.revocations().await?)
    }
}

fn event(actor: &Actor, r: &Revocation, what: &str) -> rein_audit::Event {
    let mut e = audit::change(EventType::Revocation, actor, &r.id);
    e.reason = Some(match &r.lifted {
        Some(l) => l.reason.clone(),
        None => r.reason.clone(),
    });
    e.details.insert("action".into(), what.to_owned());
    match &r.target {
        RevocationTarget::Token { agent, jti, .. } => {
            e.agent = Some(agent.to_string());
            e.details.insert("kind".into(), "token".into());
            e.details.insert("jti".into(), jti.clone());
        }
        RevocationTarget::Task { agent, task_id } => {
            e.agent = Some(agent.to_string());
            e.task_id = Some(task_id.clone());
            e.details.insert("kind".into(), "task".into());
        }
        RevocationTarget::Team { team } => {
            e.details.insert("kind".into(), "team".into());
            e.details.insert("team".into(), team.to_string());
        }
        RevocationTarget::Environment { environment } => {
            e.details.insert("kind".into(), "environment".into());
            e.details
                .insert("environment".into(), environment.to_string());
        }
        RevocationTarget::IssuedBefore { before } => {
            e.details.insert("kind".into(), "issued_before".into());
            e.details.insert("before".into(), before.to_rfc3339());
        }
    }
    e
}
