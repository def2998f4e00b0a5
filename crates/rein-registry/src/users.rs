//! Users: created and changed by admins; the first admin is bootstrapped by `rein init`.

use rein_core::authz::Actor;
use rein_core::id::UserName;
use rein_core::user::{Role, User};
use rein_core::DomainError;
use serde::{Deserialize, Serialize};

use crate::tokens::{mint, IssuedToken};
use chrono::{DateTime, Utc};
use rein_audit::{Event, EventType};

use crate::{audit, Error, Registry};

/// A user to create.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name.
    pub name: UserName,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: String,
    /// Contact address.
    #[serde(default)]
    pub email: String,
    /// Global role; `member` when absent.
    #[serde(default)]
    pub role: Role,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// New contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// New role.
    #[serde(default)]
    pub role: Option<Role>,
    /// Disable or re-enable; a disabled user's tokens are refused.
    #[serde(default)]
    pub disabled: Option<bool>,
}

fn check_short(field: &'static str, value: &str) -> Result<(), Error> {
    if value.len() > 256 {
        return Err(DomainError::invalid(field, "must be at most 256 bytes").into());
    }
    Ok(())
}

/// The user `new` describes, checked, created at `now`.
pub(crate) fn new_user(new: NewUser, now: DateTime<Utc>) -> Result<User, Error> {
    new.name.check_human()?;
    check_short("display_name", &new.display_name)?;
    check_short("email", &new.email)?;
    Ok(User {
        name: new.name,
        display_name: new.display_name,
        email: new.email,
        role: new.role,
        disabled: false,
        created_at: now,
    })
}

/// A user was created or changed: its role.
pub(crate) fn user_event(event_type: EventType, actor: &Actor, user: &User) -> Event {
    let mut e = audit::change(event_type, actor, user.name.as_str());
    e.details
        .insert("role".into(), format!("{:?}", user.role).to_lowercase());
    e
}

impl Registry {
    /// Creates the first admin and their token. Refused once any user exists, so it cannot be
    /// used to mint an admin on a running installation.
    pub async fn bootstrap_admin(&self, name: &UserName) -> Result<IssuedToken, Error> {
        if !self.store.users().await?.is_empty() {
            return Err(DomainError::forbidden("Rein is already initialised: users exist").into());
        }
        name.check_human()?;
        let now = self.now();
        let user = User {
            name: name.clone(),
            display_name: "Initial administrator".into(),
            email: String::new(),
            role: Role::Admin,
            disabled: false,
            created_at: now,
        };
        let actor = crate::actor_for(&user);
        let mut event = audit::change(EventType::UserCreated, &actor, name.as_str());
        event.reason = Some("initial administrator created by rein init".into());
        event.details.insert("role".into(), "admin".into());
        self.create("user", name.as_str(), event, self.store.insert_user(&user))
            .await?;
        let issued = mint(name, name, "created by rein init".into(), now, None);
        self.create(
            "api_token",
            &issued.metadata.id,
            audit::token_issued(&actor, &issued.metadata),
            self.store.insert_api_token(&issued.metadata),
        )
        .await?;
        Ok(issued.without_hash())
    }

    /// Creates a user (admins only).
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<User, Error> {
        actor.require_admin("create users")?;
        let user = new_user(new, self.now())?;
        let event = user_event(EventType::UserCreated, actor, &user);
        self.create(
            "user",
            user.name.as_str(),
            event,
            self.store.insert_user(&user),
        )
        .await?;
        Ok(user)
    }

    /// Reads a user.
    pub async fn user(&self, _actor: &Actor, name: &UserName) -> Result<User, Error> {
        Ok(self
            .store
            .user(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "user",
                key: name.to_string(),
            })?
            .value)
    }

    /// Lists users.
    pub async fn users(&self, _actor: &Actor) -> Result<Vec<User>, Error> {
        Ok(self.store.users().await?)
    }

    /// Changes a user (admins only). An admin cannot demote or disable themself, so an
    /// installation cannot lose its last way in by accident.
    pub async fn update_user(
        &self,
        actor: &Actor,
        name: &UserName,
        patch: UserPatch,
    ) -> Result<User, Error> {
        actor.require_admin("change users")?;
        if *name == actor.user
            && (patch.role.is_some_and(|r| r != Role::Admin) || patch.disabled == Some(true))
        {
            return Err(
                DomainError::forbidden("an admin cannot demote or disable themself").into(),
            );
        }
        if let Some(d) = &patch.display_name {
            check_short("display_name", d)?;
        }
        if let Some(e) = &patch.email {
            check_short("email", e)?;
        }
        let store = &self.store;
        self.modify(
            "user",
            name.as_str(),
            || store.user(name),
            |u, v| async move { store.update_user(&u, v).await },
            |u| {
                if let Some(d) = &patch.display_name {
                    u.display_name.clone_from(d);
                }
                if let Some(e) = &patch.email {
                    u.email.clone_from(e);
                }
                if let Some(r) = patch.role {
                    u.role = r;
                }
                if let Some(d) = patch.disabled {
                    u.disabled = d;
                }
                Ok(())
            },
            |u| {
                let mut e = user_event(EventType::UserUpdated, actor, u);
                e.details.insert("disabled".into(), u.disabled.to_string());
                e
            },
        )
        .await
        .map(|w| w.value)
    }
}
