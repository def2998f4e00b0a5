//! What the gateway governs in a session: the calls it decides, the lists it filters, the
//! approvals it waits for, and the `gateway.call` record of each call.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rein_audit::{Event, EventType};
use rein_core::approval::ApprovalStatus;
use rein_core::id::ActionName;
use rein_core::mcp::{PROMPTS_GET, RESOURCES_READ};
use rein_oauth::AccessTokenClaims;
use rein_pdp::{Authorization, AuthorizeRequest, CallContext};
use rein_policy::Outcome;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{self, code};
use crate::session::{EventStream, Session};
use crate::Gateway;

/// How long one wait for an approval lasts before the client hears progress again.
const APPROVAL_HEARTBEAT: Duration = Duration::from_secs(10);

/// A request in a session, with the claims of the token it came with.
pub(crate) struct Call {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) session: Arc<Session>,
    pub(crate) claims: AccessTokenClaims,
    pub(crate) id: Value,
    pub(crate) method: String,
    pub(crate) message: Value,
    pub(crate) stream: Arc<EventStream>,
    pub(crate) cancelled: CancellationToken,
    /// When the request arrived.
    pub(crate) started: Instant,
}

/// The client's requests that pass through undecided: they read nothing an agent is not
/// granted (lists are filtered or gated above) and change nothing upstream. Any other method
/// that is not governed is refused: a request the gateway cannot classify is not forwarded.
const PASS_THROUGH: &[&str] = &[
    "ping",
    "completion/complete",
    "logging/setLevel",
    "resources/unsubscribe",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
];

/// The action a request is decided as, if it is governed.
fn governed(method: &str, params: &Value) -> Option<Result<ActionName, String>> {
    let action = match method {
        "tools/call" => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Some(
                name.parse::<ActionName>()
                    .map_err(|_| format!("`{name}` is not a tool this system declares")),
            );
        }
        "resources/read" | "resources/subscribe" => RESOURCES_READ,
        "prompts/get" => PROMPTS_GET,
        _ => return None,
    };
    Some(
        action
            .parse()
            .map_err(|_| "internal: bad action".to_owned()),
    )
}

impl Call {
    /// Handles the request: decides it if it is governed, forwards it, filters lists, and
    /// writes the response (or the refusal) as the last event of its stream.
    pub(crate) async fn run(self) {
        let response = self.respond().await;
        if let Some(response) = response {
            self.stream.push(&response);
        }
        self.stream.finish();
        self.session.end(&self.id);
    }

    async fn respond(&self) -> Option<Value> {
        let params = self.message.get("params").unwrap_or(&Value::Null);
        match self.method.as_str() {
            "tools/list" => {
                let mut response = self.forward(self.message.clone()).await?;
                let callable = self.gateway.callable(&self.claims);
                if let Some(tools) = response
                    .pointer_mut("/result/tools")
                    .and_then(Value::as_array_mut)
                {
                    tools.retain(|t| {
                        t.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| callable.contains(n))
                    });
                }
                Some(response)
            }
            "resources/list" | "resources/templates/list" | "prompts/list" => {
                let action = if self.method.starts_with("prompts") {
                    PROMPTS_GET
                } else {
                    RESOURCES_READ
                };
                if self.gateway.callable(&self.claims).contains(action) {
                    return self.forward(self.message.clone()).await;
                }
                let key = match self.method.as_str() {
                    "resources/list" => "resources",
                    "resources/templates/list" => "resourceTemplates",
                    _ => "prompts",
                };
                Some(json!({"jsonrpc": "2.0", "id": self.id, "result": {key: []}}))
            }
            method => match governed(method, params) {
                None if PASS_THROUGH.contains(&method) => self.forward(self.message.clone()).await,
                None => Some(jsonrpc::error(
                    &self.id,
                    code::METHOD_NOT_FOUND,
                    &format!("`{method}` is not an MCP method the gateway forwards"),
                    None,
                )),
                Some(Err(why)) => Some(jsonrpc::error(&self.id, code::INVALID_PARAMS, &why, None)),
                Some(Ok(action)) => self.decided(action, params).await,
            },
        }
    }

    /// Forwards the request and waits for its response; an error response if the upstream
    /// failed or the session closed, `None` if the client cancelled it.
    async fn forward(&self, message: Value) -> Option<Value> {
        let timeout = self.gateway.config.upstream_timeout;
        match self
            .session
            .forward(&self.id, message, &self.stream, &self.cancelled, timeout)
            .await
        {
            Ok(Some(response)) => Some(response),
            Ok(None) if self.session.closed().is_cancelled() => Some(self.closed_error()),
            Ok(None) => None,
            Err(crate::Error::Closed(_)) => Some(self.closed_error()),
            Err(e) => Some(jsonrpc::error(
                &self.id,
                code::INTERNAL,
                &e.to_string(),
                None,
            )),
        }
    }

    fn closed_error(&self) -> Value {
        jsonrpc::error(
            &self.id,
            code::SESSION_CLOSED,
            &format!("the session was closed: {}", self.session.why_closed()),
            None,
        )
    }

    /// The call's context from its arguments and `_meta` hints.
    fn context(&self, params: &Value, approval_id: Option<String>) -> CallContext {
        let meta = params.get("_meta");
        let hint =
            |key: &str| meta.and_then(|m| m.get(format!("rein/{key}")).or_else(|| m.get(key)));
        CallContext {
            task_id: hint("task_id").and_then(Value::as_str).map(str::to_owned),
            intent: hint("intent").and_then(Value::as_str).map(str::to_owned),
            risk: hint("risk").and_then(Value::as_i64),
            confidence: hint("confidence").and_then(Value::as_f64),
            // A tool's or prompt's arguments; a resource's URI. Never `_meta`: it carries the
            // hints above and a per-request progress token, not the call's arguments.
            arguments: match params.get("arguments") {
                Some(arguments) => Some(arguments.clone()),
                None => params.get("uri").map(|uri| json!({"uri": uri})),
            },
            approval_id,
        }
    }

    async fn decide(
        &self,
        action: &ActionName,
        params: &Value,
        approval_id: Option<String>,
    ) -> Result<Authorization, String> {
        let request = AuthorizeRequest {
            agent: self.claims.sub.clone(),
            system: self.session.system.clone(),
            action: action.clone(),
            context: self.context(params, approval_id),
        };
        self.gateway
            .pdp
            .authorize_for_token(&self.claims, request)
            .await
            .map_err(|e| e.to_string())
    }

    /// Decides a governed request; forwards it when allowed (after an approval, if asked).
    async fn decided(&self, action: ActionName, params: &Value) -> Option<Value> {
        let mut decision = match self.decide(&action, params, None).await {
            Ok(d) => d,
            Err(why) => {
                self.record(&action, None, "refused", Some(why.clone()))
                    .await;
                return Some(jsonrpc::error(&self.id, code::FORBIDDEN, &why, None));
            }
        };
        if decision.decision == Outcome::StepUp {
            match self.step_up(&decision).await {
                Waited::Approved(id) => match self.decide(&action, params, Some(id)).await {
                    Ok(d) => decision = d,
                    Err(why) => {
                        self.record(&action, Some(&decision), "refused", Some(why.clone()))
                            .await;
                        return Some(jsonrpc::error(&self.id, code::FORBIDDEN, &why, None));
                    }
                },
                Waited::Refused(status) => {
                    let why = format!("the approval was {status}");
                    self.record(&action, Some(&decision), "refused", Some(why.clone()))
                        .await;
                    return Some(self.refusal(&decision, &why));
                }
                Waited::Cancelled => {
                    let outcome = if self.session.closed().is_cancelled() {
                        "revoked"
                    } else {
                        "cancelled"
                    };
                    self.record(&action, Some(&decision), outcome, None).await;
                    return self
                        .session
                        .closed()
                        .is_cancelled()
                        .then(|| self.closed_error());
                }
            }
        }
        if decision.decision != Outcome::Allow {
            self.record(
                &action,
                Some(&decision),
                "refused",
                Some(decision.reason.clone()),
            )
            .await;
            return Some(self.refusal(&decision, &decision.reason));
        }
        let response = self.forward(self.message.clone()).await;
        let outcome = match &response {
            None => "cancelled",
            Some(r) if r.get("error").is_some() => {
                if self.session.closed().is_cancelled() {
                    "revoked"
                } else {
                    "error"
                }
            }
            Some(r) if r.pointer("/result/isError") == Some(&Value::Bool(true)) => "error",
            Some(_) => "success",
        };
        // The call is on record before its result reaches the agent.
        self.record(&action, Some(&decision), outcome, None).await;
        response
    }

    /// A refusal as a JSON-RPC error naming the decision.
    fn refusal(&self, decision: &Authorization, why: &str) -> Value {
        let mut data = json!({
            "decision": decision.decision.as_str(),
            "decision_id": decision.decision_id,
            "rule": decision.rule,
            "determined_by": decision.determined_by,
            "policy_version": decision.policy_version,
        });
        if let Some(a) = &decision.approval {
            data["approval_id"] = json!(a.id);
        }
        jsonrpc::error(
            &self.id,
            code::FORBIDDEN,
            &format!("refused by Rein: {why}"),
            Some(data),
        )
    }

    /// Waits for the approval a step-up opened, telling the client (progress) meanwhile.
    async fn step_up(&self, decision: &Authorization) -> Waited {
        let Some(approval) = &decision.approval else {
            return Waited::Refused("not opened".into());
        };
        let token = jsonrpc::progress_token(&self.message);
        let mut beat = 0u64;
        let pdp = &self.gateway.pdp;
        loop {
            if let Some(token) = &token {
                beat += 1;
                self.stream.push(&jsonrpc::notification(
                    "notifications/progress",
                    json!({
                        "progressToken": token,
                        "progress": beat,
                        "message": format!(
                            "waiting for approval {} (decision {}): {}",
                            approval.id, decision.decision_id, decision.reason
                        ),
                    }),
                ));
            }
            let read = || async {
                pdp.registry()
                    .approval_record(&approval.id)
                    .await
                    .map_err(rein_pdp::Error::from)
            };
            let waited = tokio::select! {
                r = pdp.wait_approval(APPROVAL_HEARTBEAT, read) => r,
                () = self.cancelled.cancelled() => return Waited::Cancelled,
            };
            let now = pdp.registry().now();
            match waited {
                Ok(a) => match a.status_at(now) {
                    ApprovalStatus::Pending => continue,
                    ApprovalStatus::Approved => return Waited::Approved(a.id),
                    other => return Waited::Refused(other.as_str().to_owned()),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "reading an approval failed; the call is refused");
                    return Waited::Refused("unreadable".into());
                }
            }
        }
    }

    /// Appends the `gateway.call` record of this call.
    async fn record(
        &self,
        action: &ActionName,
        decision: Option<&Authorization>,
        outcome: &str,
        reason: Option<String>,
    ) {
        let mut e = Event::new(
            EventType::GatewayCall,
            rein_registry::actor::agent(&self.claims.sub),
            outcome,
        );
        e.agent = Some(self.claims.sub.to_string());
        e.task_id = Some(self.claims.task_id.as_str().to_owned());
        e.system = Some(self.session.system.to_string());
        e.action = Some(action.to_string());
        e.reason = reason;
        e.latency_us = Some(u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX));
        e.details.insert("method".into(), self.method.clone());
        e.details.insert("session".into(), self.session.id.clone());
        if let Some(d) = decision {
            e.subject = Some(d.decision_id.clone());
            e.decision = Some(d.decision.as_str().to_owned());
            e.determined_by = d.determined_by.clone();
            e.policy_version = Some(d.policy_version.clone());
            e.argument_digest = Some(d.argument_digest.clone());
            if let Some(a) = &d.approval {
                e.approvers = a.approvers.clone();
                e.details.insert("approval_id".into(), a.id.clone());
            }
        }
        if let Err(err) = self.gateway.pdp.registry().audit().append(e).await {
            tracing::error!(error = %err, "could not record a gateway call");
        }
    }
}

/// How waiting for an approval ended.
enum Waited {
    Approved(String),
    Refused(String),
    Cancelled,
}

impl Gateway {
    /// The tools (actions) the token's holder may call on its system now: in the token's
    /// scope, declared by the system, covered by an active grant of an active agent.
    pub(crate) fn callable(&self, claims: &AccessTokenClaims) -> BTreeSet<String> {
        let Some(system) = claims.system() else {
            return BTreeSet::new();
        };
        let Ok(lookup) = self.pdp.facts().lookup(&claims.sub, &system) else {
            return BTreeSet::new();
        };
        let active = lookup
            .agent
            .as_ref()
            .is_some_and(|a| a.status == rein_core::agent::AgentStatus::Active);
        let (Some(system), true) = (lookup.system.as_ref(), active) else {
            return BTreeSet::new();
        };
        let now = self.pdp.registry().now();
        claims
            .actions()
            .filter(|a| {
                a.parse::<ActionName>().is_ok_and(|action| {
                    system.actions.contains_key(&action)
                        && lookup.grants.iter().any(|g| {
                            g.status_at(now) == rein_core::grant::GrantStatus::Active
                                && g.actions.contains(&action)
                        })
                })
            })
            .map(str::to_owned)
            .collect()
    }
}
