//! The token endpoint's work: authenticate the agent by its signed assertion (RFC 7523), check
//! decision steps 1 to 3 for every requested action, mint a task-scoped access token (RFC 9068)
//! and record it in the audit log before it is handed out.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use ed25519_dalek::VerifyingKey;
use rein_audit::{Event, EventType};
use rein_core::id::AgentId;
use rein_keys::{KeyPurpose, MasterKey};
use rein_oauth::{
    mint, published_keys, verify_access_token, AccessTokenClaims, AssertionPolicy, MintRequest,
    MintedToken, OAuthError, ReplayCache, TokenRequest, TokenSigner,
};
use rein_policy::{check_access, ApprovalEvidence, Facts, Outcome, Request, RequestContext, Rule};
use rein_registry::Registry;
use sha2::{Digest as _, Sha256};

use crate::{budget, truncate, Error, Pdp, TokenFacts, MAX_AUDITED_INTENT};

/// Rein as an OAuth authorization server: its issuer URL, its current signing key, the keys it
/// publishes, and the assertions this node has seen (the store holds those of every replica). Keys are swapped atomically on rotation.
pub struct Issuer {
    issuer: String,
    master: Arc<MasterKey>,
    keys: ArcSwap<Keys>,
    assertions: AssertionPolicy,
    replay: ReplayCache,
}

/// The signing key and the published verification keys, swapped together.
struct Keys {
    signer: TokenSigner,
    published: HashMap<String, VerifyingKey>,
}

impl Issuer {
    /// The issuer `issuer` (Rein's public base URL, e.g. `https://rein.example.com`), signing
    /// with the newest token key sealed under `master` (created on first use). The master key is
    /// shared: the server wiring keeps its own `Arc` for the API (sealing secrets) and the
    /// gateway (opening them).
    pub async fn open(
        registry: &Registry,
        master: Arc<MasterKey>,
        issuer: &str,
    ) -> Result<Self, Error> {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let keys = load_keys(registry, &master).await?;
        Ok(Self {
            assertions: AssertionPolicy::new(rein_oauth::token_endpoint(&issuer)),
            keys: ArcSwap::from_pointee(keys),
            replay: ReplayCache::default(),
            master,
            issuer,
        })
    }

    /// Re-reads the token keys from the store: after a rotation here or on another replica,
    /// the newest key signs and every key whose tokens may still be valid is published.
    pub async fn reload_keys(&self, registry: &Registry) -> Result<(), Error> {
        self.keys
            .store(Arc::new(load_keys(registry, &self.master).await?));
        Ok(())
    }

    /// Rotates the token signing key (admins) and puts the new one in force on this node.
    pub async fn rotate(
        &self,
        registry: &Registry,
        actor: &rein_core::authz::Actor,
    ) -> Result<(String, Option<String>), Error> {
        let rotated =
            rein_registry::keys::rotate(registry, actor, &self.master, KeyPurpose::Token).await?;
        self.reload_keys(registry).await?;
        Ok(rotated)
    }

    /// The issuer URL (`iss` of every token).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The ID of the key new tokens are signed with.
    pub fn signing_kid(&self) -> String {
        self.keys.load().signer.kid().to_owned()
    }

    /// The JWKS document (RFC 7517) of the keys tokens may be signed with.
    pub fn jwks(&self) -> serde_json::Value {
        rein_oauth::jwks(self.keys.load().published.iter())
    }

    /// The authorization server metadata (RFC 8414).
    pub fn metadata(&self) -> serde_json::Value {
        rein_oauth::authorization_server_metadata(&self.issuer)
    }
}

async fn load_keys(registry: &Registry, master: &MasterKey) -> Result<Keys, Error> {
    let store = registry.store();
    let (kid, key) =
        rein_registry::keys::signing_key(store.as_ref(), master, KeyPurpose::Token).await?;
    let sealed = store
        .signing_keys(KeyPurpose::Token)
        .await
        .map_err(|e| Error::Registry(e.into()))?;
    Ok(Keys {
        signer: TokenSigner::new(kid, key),
        published: published_keys(&sealed, registry.now()),
    })
}

impl Pdp {
    /// Whether the claims of an access token verified earlier (signature, issuer, audience)
    /// still hold now: not expired, its agent active, every grant it was minted under active, no
    /// revocation covering it. The check [`Pdp::verify_agent_token`] makes after the signature,
    /// for callers that keep a verified token's claims (the gateway's sessions).
    pub fn token_still_holds(&self, claims: &AccessTokenClaims) -> bool {
        let now = self.registry.now();
        claims.exp > now.timestamp() && self.claims_hold(claims, now)
    }

    /// The facts part: agent active, grants active, not revoked.
    fn claims_hold(&self, c: &AccessTokenClaims, now: chrono::DateTime<chrono::Utc>) -> bool {
        let Some(system) = c.system() else {
            return false;
        };
        let Ok(lookup) = self.facts.lookup(&c.sub, &system) else {
            return false;
        };
        let agent_active = lookup
            .agent
            .as_ref()
            .is_some_and(|a| a.status == rein_core::agent::AgentStatus::Active);
        let grants_active = c.grant_ids.iter().all(|id| {
            lookup
                .grants
                .iter()
                .any(|g| g.id == *id && g.status_at(now) == rein_core::grant::GrantStatus::Active)
        });
        let issued_at = chrono::DateTime::from_timestamp(c.iat, 0).unwrap_or_default();
        let revoked = self
            .facts
            .token_revoked(TokenFacts {
                agent: &c.sub,
                jti: &c.jti,
                task_id: c.task_id.as_str(),
                issued_at,
            })
            .unwrap_or(true);
        agent_active && grants_active && !revoked
    }

    /// Verifies an agent's access token presented for a call on the system named by
    /// `audience` (`rein:system:<name>`): signature by a published key, `typ`, issuer, audience,
    /// lifetime; then, from the in-memory facts, that its agent is still active and every grant
    /// it was minted under is still active. A suspended agent's or a revoked grant's tokens
    /// therefore stop working on this node at the next check.
    pub fn verify_agent_token(
        &self,
        issuer: &Issuer,
        token: &str,
        audience: &str,
    ) -> Result<AccessTokenClaims, OAuthError> {
        let now = self.registry.now();
        let revoked = |c: &AccessTokenClaims| !self.claims_hold(c, now);
        let keys = issuer.keys.load();
        verify_access_token(
            token,
            audience,
            now,
            &keys.published,
            &issuer.issuer,
            &revoked,
        )
    }

    /// Handles a token request (the form body of `POST /oauth2/token`): the agent's assertion,
    /// decision steps 1 to 3 for every requested action on the requested system, then a token
    /// bound to that system, those actions and the task, recorded before it is returned. Every
    /// refusal carries its OAuth error code; an agent that authenticated is also recorded as
    /// refused.
    pub async fn issue_token(
        &self,
        issuer: &Issuer,
        form: &[u8],
    ) -> Result<MintedToken, OAuthError> {
        let now = self.registry.now();
        let request = TokenRequest::from_form_body(form)?;
        let agent_id = request.assertion.agent_id().clone();
        let lookup = self
            .facts
            .lookup(&agent_id, &request.system)
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        let Some(agent) = lookup.agent.clone() else {
            return Err(OAuthError::InvalidClient(format!(
                "no agent `{agent_id}` is registered"
            )));
        };
        let claims = request.assertion.verify(&agent, &issuer.assertions, now)?;
        // The in-memory cache turns a replay on this node away without a database round
        // trip; the store's claim is what holds across replicas and restarts.
        issuer
            .replay
            .check_and_insert(agent_id.as_str(), &claims.jti, claims.expires_at, now)?;
        let claimed = self
            .registry
            .store()
            .claim_assertion(
                agent_id.as_str(),
                &hex::encode(Sha256::digest(claims.jti.as_bytes())),
                claims.expires_at,
                now,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not record a used assertion; refused");
                OAuthError::Unavailable("the assertion could not be recorded as used".into())
            })?;
        if !claimed {
            return Err(OAuthError::InvalidClient(
                "the assertion's `jti` has already been used; sign a new assertion with a fresh `jti`"
                    .into(),
            ));
        }
        let refused = |e: OAuthError| async {
            self.record_refusal(&agent_id, &request, &e).await;
            e
        };

        let revoked = self
            .facts
            .revoked_call(&agent_id, Some(request.task_id.as_str()))
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
        // Steps 1 to 3 for each action, with the agent's counters read (not counted: the calls
        // the token is used for are).
        let slot = self.budgets.of(&agent.id);
        let decisions: Vec<_> = {
            let counters = budget::lock(&slot);
            let usage = counters.usage(now, Some(request.task_id.as_str()), &request.system);
            request
                .actions
                .iter()
                .map(|action| {
                    let call = Request {
                        agent: agent_id.clone(),
                        system: request.system.clone(),
                        action: action.clone(),
                        context: RequestContext {
                            task_id: Some(request.task_id.as_str().to_owned()),
                            intent: Some(request.intent.clone()),
                            ..RequestContext::default()
                        },
                        now,
                    };
                    let facts = Facts {
                        agent: Some(&agent),
                        system: lookup.system.as_deref(),
                        grants: &lookup.grants,
                        revoked: revoked.as_deref(),
                        usage,
                        approval: ApprovalEvidence::None,
                    };
                    check_access(&call, &facts, "")
                })
                .collect()
        };
        if let Some(d) = decisions.iter().find(|d| d.outcome != Outcome::Allow) {
            if d.trip_breaker {
                self.trip_breaker(&agent_id, d).await;
            }
            let e = match d.rule {
                Rule::Agent => OAuthError::UnauthorizedClient(d.reason.clone()),
                Rule::Grant => OAuthError::InvalidScope(
                    decisions
                        .iter()
                        .filter(|d| d.rule == Rule::Grant)
                        .map(|d| d.reason.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                Rule::Budget => OAuthError::UnauthorizedClient(d.reason.clone()),
                _ => OAuthError::Unavailable(d.reason.clone()),
            };
            return Err(refused(e).await);
        }
        let keys = issuer.keys.load_full();
        let minted = match mint_for(&request, &agent, &lookup.grants, now, issuer, &keys.signer) {
            Ok(minted) => minted,
            Err(e) => return Err(refused(e).await),
        };

        let mut event = Event::new(
            EventType::TokenIssued,
            rein_registry::actor::agent(&agent_id),
            "success",
        );
        let c = &minted.claims;
        event.subject = Some(c.jti.clone());
        event.agent = Some(agent_id.to_string());
        event.task_id = Some(c.task_id.as_str().to_owned());
        event.system = Some(request.system.to_string());
        event.determined_by = c.grant_ids.iter().map(ToString::to_string).collect();
        event.approvers = lookup
            .grants
            .iter()
            .filter(|g| c.grant_ids.contains(&g.id))
            .flat_map(|g| g.approvals.iter().map(|a| a.by.to_string()))
            .collect();
        event.revokers = agent
            .roles
            .revokers
            .iter()
            .map(ToString::to_string)
            .collect();
        event.details.insert("scope".into(), c.scope.clone());
        event.details.insert("exp".into(), c.exp.to_string());
        event
            .details
            .insert("kid".into(), keys.signer.kid().to_owned());
        event
            .details
            .insert("assertion_jti".into(), claims.jti.clone());
        event.details.insert(
            "intent".into(),
            truncate(&request.intent, MAX_AUDITED_INTENT),
        );
        self.registry.audit().append(event).await.map_err(|e| {
            tracing::error!(error = %e, "a token could not be recorded; refused");
            OAuthError::Unavailable("the token could not be recorded in the audit log".into())
        })?;
        Ok(minted)
    }

    /// Records a refused token request of an authenticated agent (best effort: the request is
    /// refused either way).
    async fn record_refusal(&self, agent: &AgentId, request: &TokenRequest, e: &OAuthError) {
        let mut event = Event::new(
            EventType::TokenRefused,
            rein_registry::actor::agent(agent),
            "denied",
        );
        event.agent = Some(agent.to_string());
        event.task_id = Some(request.task_id.as_str().to_owned());
        event.system = Some(request.system.to_string());
        event.reason = Some(e.description());
        event
            .details
            .insert("error".into(), e.code().as_str().to_owned());
        let scope: Vec<String> = request.actions.iter().map(ToString::to_string).collect();
        event.details.insert("scope".into(), scope.join(" "));
        if let Err(audit) = self.registry.audit().append(event).await {
            tracing::error!(error = %audit, "could not record a refused token request");
        }
    }
}

fn mint_for(
    request: &TokenRequest,
    agent: &rein_core::agent::Agent,
    grants: &[rein_core::grant::Grant],
    now: chrono::DateTime<chrono::Utc>,
    issuer: &Issuer,
    signer: &TokenSigner,
) -> Result<MintedToken, OAuthError> {
    mint(
        &MintRequest {
            agent,
            system: &request.system,
            actions: &request.actions,
            grants,
            task_id: &request.task_id,
            requested_ttl_secs: request.requested_ttl_secs,
            now,
        },
        signer,
        &issuer.issuer,
    )
}
