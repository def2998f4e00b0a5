//! Translating one call and its facts into Cedar's request and entities (see
//! `schema/rein.cedarschema`).

use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use chrono::{Datelike, Timelike};
use rein_core::agent::Agent;
use rein_core::system::{ActionClass, Classification, System};
use serde_json::Value;

use crate::request::{canonical_json, Request};
use crate::slice::{Subject, DIMS};
use crate::PolicyError;

/// The schema, embedded.
pub(crate) const SCHEMA: &str = include_str!("../schema/rein.cedarschema");

pub(crate) const AGENT: &str = "Agent";
pub(crate) const TEAM: &str = "Team";
pub(crate) const USER: &str = "User";
pub(crate) const SYSTEM: &str = "System";
pub(crate) const TOOL: &str = "Tool";
pub(crate) const ARGUMENTS: &str = "Arguments";
/// The one action: `Action::"call"`.
pub(crate) const CALL: &str = "call";

/// Entity type names, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    agent: EntityTypeName,
    team: EntityTypeName,
    user: EntityTypeName,
    system: EntityTypeName,
    tool: EntityTypeName,
    arguments: EntityTypeName,
    call: EntityUid,
}

impl Names {
    pub(crate) fn new() -> Result<Self, PolicyError> {
        let name = |n: &str| EntityTypeName::from_str(n).map_err(PolicyError::evaluation);
        Ok(Self {
            agent: name(AGENT)?,
            team: name(TEAM)?,
            user: name(USER)?,
            system: name(SYSTEM)?,
            tool: name(TOOL)?,
            arguments: name(ARGUMENTS)?,
            call: EntityUid::from_type_name_and_id(name("Action")?, EntityId::new(CALL)),
        })
    }
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

/// The lowercase name of a classification, as guardrails see it.
pub(crate) fn classification_str(c: Classification) -> &'static str {
    match c {
        Classification::Public => "public",
        Classification::Internal => "internal",
        Classification::Confidential => "confidential",
        Classification::Restricted => "restricted",
    }
}

/// The lowercase name of an action class, as guardrails see it.
pub(crate) fn class_str(c: ActionClass) -> &'static str {
    match c {
        ActionClass::Read => "read",
        ActionClass::Write => "write",
        ActionClass::Admin => "admin",
    }
}

/// One call with the facts that passed the identity, grant and budget checks.
pub(crate) struct Call<'a> {
    pub(crate) req: &'a Request,
    pub(crate) agent: &'a Agent,
    pub(crate) system: &'a System,
    pub(crate) class: ActionClass,
    /// Canonical JSON of the arguments.
    pub(crate) arguments_text: &'a str,
    /// Its SHA-256 hex.
    pub(crate) digest: &'a str,
}

impl Call<'_> {
    /// The tool's entity id, `<system>/<action>`.
    pub(crate) fn tool_id(&self) -> String {
        format!("{}/{}", self.req.system, self.req.action)
    }

    /// The values of the slicing dimensions; `tool_id` is [`Call::tool_id`].
    pub(crate) fn subject<'s>(&'s self, tool_id: &'s str) -> Subject<'s> {
        let s: [&str; DIMS] = [
            self.agent.id.as_str(),
            self.agent.owner_team().as_str(),
            self.agent.environment().as_str(),
            self.system.name.as_str(),
            self.system.environment.as_str(),
            classification_str(self.system.classification),
            tool_id,
            self.req.action.as_str(),
            class_str(self.class),
        ];
        s
    }

    /// The entities that depend only on the agent, the system and the action: the agent,
    /// the system and the tool. Teams and users are not entities of the store: they have no
    /// attributes and no tags in the schema, so reading them cannot happen, and `in` and `has`
    /// answer the same for a missing entity as for one without ancestors or attributes.
    pub(crate) fn base_entities(&self, names: &Names) -> Result<Entities, PolicyError> {
        let agent = self.agent;
        let system = self.system;
        let business_owner = agent
            .roles
            .business_owner
            .as_ref()
            .ok_or_else(|| PolicyError::facts("the agent has no business owner"))?;
        let cadence = agent
            .roles
            .review_cadence_days
            .ok_or_else(|| PolicyError::facts("the agent has no review cadence"))?;
        let team_uid = uid(&names.team, agent.owner_team().as_str());
        let system_uid = uid(&names.system, system.name.as_str());
        let entity = |uid, attrs: Vec<(&str, RestrictedExpression)>, parents: Vec<EntityUid>| {
            Entity::new(
                uid,
                attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                parents.into_iter().collect(),
            )
            .map_err(PolicyError::evaluation)
        };
        let entities = [
            entity(
                uid(&names.agent, agent.id.as_str()),
                vec![
                    ("name", string(agent.id.name().as_str())),
                    (
                        "team",
                        RestrictedExpression::new_entity_uid(team_uid.clone()),
                    ),
                    ("environment", string(agent.environment().as_str())),
                    ("status", string(agent.status.as_str())),
                    ("use_case", string(&agent.use_case)),
                    (
                        "business_owner",
                        RestrictedExpression::new_entity_uid(uid(
                            &names.user,
                            business_owner.as_str(),
                        )),
                    ),
                    (
                        "has_accountable_roles",
                        RestrictedExpression::new_bool(agent.roles.missing().is_empty()),
                    ),
                    (
                        "review_cadence_days",
                        RestrictedExpression::new_long(i64::from(cadence)),
                    ),
                ],
                vec![team_uid],
            )?,
            entity(
                system_uid.clone(),
                vec![
                    ("name", string(system.name.as_str())),
                    ("environment", string(system.environment.as_str())),
                    (
                        "classification",
                        string(classification_str(system.classification)),
                    ),
                    (
                        "owner_team",
                        RestrictedExpression::new_entity_uid(uid(
                            &names.team,
                            system.owner_team.as_str(),
                        )),
                    ),
                ],
                vec![],
            )?,
            entity(
                uid(&names.tool, &self.tool_id()),
                vec![
                    ("name", string(self.req.action.as_str())),
                    ("class", string(class_str(self.class))),
                    (
                        "mutating",
                        RestrictedExpression::new_bool(self.class.is_mutating()),
                    ),
                    (
                        "system",
                        RestrictedExpression::new_entity_uid(system_uid.clone()),
                    ),
                ],
                vec![system_uid],
            )?,
        ];
        Entities::from_entities(entities, None).map_err(PolicyError::evaluation)
    }

    /// Cedar's request and entity store for this call, from [`Call::base_entities`], with
    /// only the context attributes (and the arguments entity) that `uses` says are read.
    pub(crate) fn to_cedar(
        &self,
        names: &Names,
        base: Entities,
        uses: ContextUse,
    ) -> Result<(cedar_policy::Request, Entities), PolicyError> {
        let args_uid = uid(&names.arguments, CALL);
        let entities = if uses.reads(ContextUse::ARGUMENTS) {
            let args = Entity::new_with_tags(
                args_uid.clone(),
                [],
                [],
                argument_tags(&self.req.context.arguments)?,
            )
            .map_err(PolicyError::evaluation)?;
            base.add_entities([args], None)
                .map_err(PolicyError::evaluation)?
        } else {
            base
        };

        let ctx = &self.req.context;
        let now = self.req.now;
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(9);
        let mut put =
            |flag: u16,
             key: &str,
             value: &dyn Fn() -> Result<RestrictedExpression, PolicyError>| {
                if uses.reads(flag) {
                    pairs.push((key.to_owned(), value()?));
                }
                Ok::<(), PolicyError>(())
            };
        if let Some(task) = &ctx.task_id {
            put(ContextUse::TASK_ID, "task_id", &|| Ok(string(task)))?;
        }
        if let Some(intent) = &ctx.intent {
            put(ContextUse::INTENT, "intent", &|| Ok(string(intent)))?;
        }
        if let Some(risk) = ctx.risk {
            put(ContextUse::RISK, "risk", &|| {
                Ok(RestrictedExpression::new_long(i64::from(risk)))
            })?;
        }
        if let Some(pct) = ctx.confidence_pct() {
            put(ContextUse::CONFIDENCE, "confidence_pct", &|| {
                Ok(RestrictedExpression::new_long(pct))
            })?;
        }
        put(ContextUse::TIME, "time", &|| {
            let long = |v: u32| RestrictedExpression::new_long(i64::from(v));
            RestrictedExpression::new_record([
                (
                    "epoch".to_owned(),
                    RestrictedExpression::new_long(now.timestamp()),
                ),
                (
                    "day_of_week".to_owned(),
                    long(now.weekday().number_from_monday()),
                ),
                ("hour".to_owned(), long(now.hour())),
                ("minute".to_owned(), long(now.minute())),
                (
                    "minute_of_day".to_owned(),
                    long(now.hour() * 60 + now.minute()),
                ),
            ])
            .map_err(PolicyError::evaluation)
        })?;
        put(ContextUse::ARGUMENTS, "arguments", &|| {
            Ok(RestrictedExpression::new_entity_uid(args_uid.clone()))
        })?;
        put(ContextUse::ARGUMENTS_TEXT, "arguments_text", &|| {
            Ok(string(self.arguments_text))
        })?;
        put(ContextUse::ARGUMENT_DIGEST, "argument_digest", &|| {
            Ok(string(self.digest))
        })?;
        put(ContextUse::APPROVAL_ATTACHED, "approval_attached", &|| {
            Ok(RestrictedExpression::new_bool(ctx.approval_id.is_some()))
        })?;
        let context = Context::from_pairs(pairs).map_err(PolicyError::evaluation)?;
        let request = cedar_policy::Request::new(
            uid(&names.agent, self.agent.id.as_str()),
            names.call.clone(),
            uid(&names.tool, &self.tool_id()),
            context,
            None,
        )
        .map_err(PolicyError::evaluation)?;
        Ok((request, entities))
    }
}

/// Which context attributes a set of policies reads. Attributes no policy of a slice reads are
/// left out of the request (the request is not schema-checked at evaluation time), which
/// saves building them; a policy that uses `context` other than by reading one attribute reads
/// them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ContextUse(u16);

impl ContextUse {
    pub(crate) const TASK_ID: u16 = 1;
    pub(crate) const INTENT: u16 = 1 << 1;
    pub(crate) const RISK: u16 = 1 << 2;
    pub(crate) const CONFIDENCE: u16 = 1 << 3;
    pub(crate) const TIME: u16 = 1 << 4;
    pub(crate) const ARGUMENTS: u16 = 1 << 5;
    pub(crate) const ARGUMENTS_TEXT: u16 = 1 << 6;
    pub(crate) const ARGUMENT_DIGEST: u16 = 1 << 7;
    pub(crate) const APPROVAL_ATTACHED: u16 = 1 << 8;
    /// Every attribute.
    pub(crate) const ALL: Self = Self(u16::MAX);

    /// Whether `flag` is read.
    pub(crate) fn reads(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    /// The union of two uses.
    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The flag of a context attribute; every bit for a name outside the schema.
    pub(crate) fn of_attr(name: &str) -> Self {
        Self(match name {
            "task_id" => Self::TASK_ID,
            "intent" => Self::INTENT,
            "risk" => Self::RISK,
            "confidence_pct" => Self::CONFIDENCE,
            "time" => Self::TIME,
            "arguments" => Self::ARGUMENTS,
            "arguments_text" => Self::ARGUMENTS_TEXT,
            "argument_digest" => Self::ARGUMENT_DIGEST,
            "approval_attached" => Self::APPROVAL_ATTACHED,
            _ => u16::MAX,
        })
    }
}

/// One tag per top-level key: strings as given, every other value as its canonical JSON.
fn argument_tags(arguments: &Value) -> Result<Vec<(String, RestrictedExpression)>, PolicyError> {
    let Value::Object(map) = arguments else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => canonical_json(other)?,
            };
            Ok((k.clone(), RestrictedExpression::new_string(text)))
        })
        .collect()
}
