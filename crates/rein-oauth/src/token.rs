//! Task-scoped JWT access tokens (RFC 9068): minting under the agent's grants, and verification
//! shared by the gateway and `/v1/authorize`.
//!
//! A token is a compact JWS, header `{"alg":"EdDSA","typ":"at+jwt","kid":…}`, claims (in this
//! order) `iss`, `sub` (the agent's SPIFFE ID), `aud` (`rein:system:<name>`), `client_id` (= `sub`),
//! `scope`, `jti`, `iat`, `nbf`, `exp`, `task_id`, `env`, `owner` (the owner team), `grant_ids`.
//! Any JOSE library verifies it with the key from Rein's JWKS (OKP / Ed25519).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::RngCore as _;
use rein_core::agent::Agent;
use rein_core::grant::{Grant, MAX_TOKEN_TTL_SECS};
use rein_core::id::{ActionName, AgentId, Environment, GrantId, SystemName, TeamName};
use rein_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{shown, OAuthError};
use crate::jose;
use crate::request::{system_audience, TaskId, SYSTEM_RESOURCE_PREFIX};

/// A token's lifetime when the request names none, in seconds.
pub const DEFAULT_TOKEN_TTL_SECS: u32 = 300;

/// The JWS `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Default clock skew allowed when verifying an access token's `nbf` and `iat` (tokens minted on
/// another replica whose clock is slightly ahead). `exp` gets none: skew never lengthens a token.
pub const DEFAULT_TOKEN_LEEWAY_SECS: i64 = 60;

/// Rein's token signing key with its key ID. The header is encoded once. `Debug` shows the key
/// ID only.
pub struct TokenSigner {
    kid: String,
    key: SigningKey,
    header_b64: String,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for `key` published under `kid` (from `rein_registry::keys::signing_key` with
    /// `KeyPurpose::Token`, or `rein_keys::SealedKey::open`).
    pub fn new(kid: impl Into<String>, key: SigningKey) -> Self {
        let kid = kid.into();
        let header = serde_json::json!({ "alg": "EdDSA", "typ": ACCESS_TOKEN_TYPE, "kid": kid });
        Self {
            header_b64: jose::b64_encode(header.to_string().as_bytes()),
            kid,
            key,
        }
    }

    /// The key ID.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

/// The claims of a Rein access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer: Rein's issuer URL.
    pub iss: String,
    /// The agent.
    pub sub: AgentId,
    /// The target system's resource indicator, `rein:system:<name>`.
    pub aud: String,
    /// The OAuth client: the agent's SPIFFE ID again.
    pub client_id: String,
    /// The granted actions, space-separated, sorted.
    pub scope: String,
    /// Token ID: `tok_` and 32 hex digits (128 random bits); the key for revoking one token.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before; equals `iat`.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// The task the token is for.
    pub task_id: TaskId,
    /// The agent's environment.
    pub env: Environment,
    /// The agent's owner team.
    pub owner: TeamName,
    /// The grants that cover the scope.
    pub grant_ids: Vec<GrantId>,
}

impl AccessTokenClaims {
    /// The actions in `scope`.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|a| !a.is_empty())
    }

    /// Whether `action` is in `scope`.
    pub fn allows(&self, action: &ActionName) -> bool {
        self.actions().any(|a| a == action.as_str())
    }

    /// The target system named by `aud`.
    pub fn system(&self) -> Option<SystemName> {
        self.aud.strip_prefix(SYSTEM_RESOURCE_PREFIX)?.parse().ok()
    }

    /// `exp` as a timestamp.
    pub fn expires_at(&self) -> Option<Timestamp> {
        DateTime::<Utc>::from_timestamp(self.exp, 0)
    }

    /// `iat` as a timestamp.
    pub fn issued_at(&self) -> Option<Timestamp> {
        DateTime::<Utc>::from_timestamp(self.iat, 0)
    }
}

/// A freshly minted token. `Debug` never shows the token itself.
#[derive(Clone)]
pub struct MintedToken {
    /// The compact JWT: a bearer credential, returned once to the agent and never logged.
    pub access_token: String,
    /// Its claims (for the audit record and the revocation index).
    pub claims: AccessTokenClaims,
    /// Its lifetime in seconds.
    pub expires_in: u32,
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("access_token", &"…")
            .field("claims", &self.claims)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl MintedToken {
    /// The RFC 6749 §5.1 success body: `access_token`, `token_type` (`Bearer`), `expires_in`,
    /// `scope`. Send it with `Cache-Control: no-store`.
    pub fn response_body(&self) -> serde_json::Value {
        serde_json::json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.claims.scope,
        })
    }
}

/// What to mint a token for.
#[derive(Debug, Clone, Copy)]
pub struct MintRequest<'a> {
    /// The authenticated agent. Its status and accountable roles must already have been checked
    /// (decision step 1: active, roles set in protected environments, nothing revoked covering
    /// it); [`mint`] checks only the grants.
    pub agent: &'a Agent,
    /// The target system.
    pub system: &'a SystemName,
    /// The requested actions; at least one.
    pub actions: &'a BTreeSet<ActionName>,
    /// The agent's grants (any others, for other agents or systems, are ignored).
    pub grants: &'a [Grant],
    /// The task.
    pub task_id: &'a TaskId,
    /// The requested lifetime, 1 to 3600 seconds, if any.
    pub requested_ttl_secs: Option<u32>,
    /// Now.
    pub now: Timestamp,
}

/// The longest lifetime a grant allows a token minted at `now`, in whole seconds.
fn grant_allowance(grant: &Grant, now: Timestamp) -> i64 {
    let until_expiry = (grant.expires_at - now).num_seconds();
    match grant.max_token_ttl_secs {
        Some(max) => until_expiry.min(i64::from(max)),
        None => until_expiry,
    }
}

/// Mints an access token for `req.agent` on `req.system` with `req.actions`, signed by `signer`,
/// issued by `issuer`.
///
/// Every requested action must be covered at `now` by an active grant of this agent on this
/// system, inside its schedule ([`Grant::covers`]); otherwise the refusal is `invalid_scope`
/// naming the uncovered actions. For each action the covering grant allowing the longest
/// lifetime is used; those grants are the token's `grant_ids`. The lifetime is the requested one
/// (default 300 s), cut to each used grant's `max_token_ttl_secs` and to the time left before
/// its `expires_at`, and to 3600 s; a request above 3600 s is refused (`invalid_request`).
pub fn mint(
    req: &MintRequest<'_>,
    signer: &TokenSigner,
    issuer: &str,
) -> Result<MintedToken, OAuthError> {
    let requested = req.requested_ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if requested == 0 || requested > MAX_TOKEN_TTL_SECS {
        return Err(OAuthError::InvalidRequest(format!(
            "the requested lifetime must be 1 to {MAX_TOKEN_TTL_SECS} seconds"
        )));
    }
    if req.actions.is_empty() {
        return Err(OAuthError::InvalidScope(
            "`scope` must name at least one action".into(),
        ));
    }
    let now = req.now;
    let mut used: Vec<&Grant> = Vec::new();
    let mut uncovered = Vec::new();
    for action in req.actions {
        let best = req
            .grants
            .iter()
            .filter(|g| g.agent == req.agent.id && &g.system == req.system)
            .filter(|g| g.covers(action, now))
            .max_by(|a, b| {
                grant_allowance(a, now)
                    .cmp(&grant_allowance(b, now))
                    .then_with(|| b.id.cmp(&a.id))
            });
        match best {
            Some(g) => {
                if !used.iter().any(|u| u.id == g.id) {
                    used.push(g);
                }
            }
            None => uncovered.push(action.clone()),
        }
    }
    if !uncovered.is_empty() {
        return Err(OAuthError::ScopeNotGranted {
            system: req.system.clone(),
            uncovered,
        });
    }
    let ttl = used
        .iter()
        .map(|g| grant_allowance(g, now))
        .fold(i64::from(requested), i64::min);
    let ttl = u32::try_from(ttl).ok().filter(|t| *t >= 1).ok_or_else(|| {
        OAuthError::InvalidScope(
            "the grant covering this scope expires in less than a second".into(),
        )
    })?;
    used.sort_by(|a, b| a.id.cmp(&b.id));

    let mut jti_bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut jti_bytes);
    let iat = now.timestamp();
    let scope: Vec<&str> = req.actions.iter().map(ActionName::as_str).collect();
    let claims = AccessTokenClaims {
        iss: issuer.to_owned(),
        sub: req.agent.id.clone(),
        aud: system_audience(req.system),
        client_id: req.agent.id.as_str().to_owned(),
        scope: scope.join(" "),
        jti: format!("tok_{}", hex::encode(jti_bytes)),
        iat,
        nbf: iat,
        exp: iat + i64::from(ttl),
        task_id: req.task_id.clone(),
        env: req.agent.environment().clone(),
        owner: req.agent.owner_team().clone(),
        grant_ids: used.iter().map(|g| g.id.clone()).collect(),
    };
    let payload = serde_json::to_vec(&claims)
        .map_err(|_| OAuthError::Unavailable("the token's claims could not be encoded".into()))?;
    let mut token = String::with_capacity(signer.header_b64.len() + payload.len() * 4 / 3 + 92);
    token.push_str(&signer.header_b64);
    token.push('.');
    base64::Engine::encode_string(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &payload,
        &mut token,
    );
    let signature = signer.key.sign(token.as_bytes());
    token.push('.');
    base64::Engine::encode_string(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        signature.to_bytes(),
        &mut token,
    );
    Ok(MintedToken {
        access_token: token,
        claims,
        expires_in: ttl,
    })
}

/// Consulted after a token's signature and claims check out, to refuse revoked tokens: the
/// caller's in-memory index looks up the `jti`, the agent (`sub`), its `owner` team, its `env`
/// and the `grant_ids`, each in O(1). Closures `Fn(&AccessTokenClaims) -> bool` implement it.
pub trait RevocationCheck {
    /// Whether anything covering this token has been revoked.
    fn is_revoked(&self, claims: &AccessTokenClaims) -> bool;
}

impl<F: Fn(&AccessTokenClaims) -> bool> RevocationCheck for F {
    fn is_revoked(&self, claims: &AccessTokenClaims) -> bool {
        self(claims)
    }
}

/// No revocation index (tests, or a caller that checks revocation elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocation;

impl RevocationCheck for NoRevocation {
    fn is_revoked(&self, _claims: &AccessTokenClaims) -> bool {
        false
    }
}

fn invalid(reason: impl Into<String>) -> OAuthError {
    OAuthError::InvalidToken(reason.into())
}

/// Verifies Rein access tokens: the issuer and the published token keys by `kid`. Rebuild it
/// (or keep it behind an atomic swap) when keys rotate.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    issuer: String,
    keys: HashMap<String, VerifyingKey>,
    leeway_secs: i64,
}

impl TokenVerifier {
    /// A verifier for tokens issued by `issuer` and signed by one of `keys` (kid → key, e.g.
    /// [`crate::published_keys`]), with the default leeway.
    pub fn new(issuer: impl Into<String>, keys: HashMap<String, VerifyingKey>) -> Self {
        Self {
            issuer: issuer.into(),
            keys,
            leeway_secs: DEFAULT_TOKEN_LEEWAY_SECS,
        }
    }

    /// Sets the clock skew allowed for `nbf` and `iat`.
    pub fn with_leeway_secs(mut self, secs: i64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Verifies `token` for the system whose audience is `expected_audience`
    /// (`rein:system:<name>`, see [`system_audience`]) at `now`, then asks `revocation`.
    /// Refusals are `invalid_token`.
    pub fn verify<R: RevocationCheck + ?Sized>(
        &self,
        token: &str,
        expected_audience: &str,
        now: Timestamp,
        revocation: &R,
    ) -> Result<AccessTokenClaims, OAuthError> {
        verify_with(
            token,
            expected_audience,
            now,
            &self.keys,
            &self.issuer,
            self.leeway_secs,
            revocation,
        )
    }
}

/// Verifies an access token: header `typ` `at+jwt`, `alg` `EdDSA`, no `crit`, a known `kid`;
/// the Ed25519 signature (strict); then `iss` = `issuer`, `aud` = `expected_audience`, `exp`
/// after `now`, `nbf` and `iat` not after `now` plus 60 s of skew, `client_id` = `sub`; finally
/// `revocation`. Refusals are `invalid_token`.
pub fn verify_access_token<R: RevocationCheck + ?Sized>(
    token: &str,
    expected_audience: &str,
    now: Timestamp,
    keys: &HashMap<String, VerifyingKey>,
    issuer: &str,
    revocation: &R,
) -> Result<AccessTokenClaims, OAuthError> {
    verify_with(
        token,
        expected_audience,
        now,
        keys,
        issuer,
        DEFAULT_TOKEN_LEEWAY_SECS,
        revocation,
    )
}

fn verify_with<R: RevocationCheck + ?Sized>(
    token: &str,
    expected_audience: &str,
    now: Timestamp,
    keys: &HashMap<String, VerifyingKey>,
    issuer: &str,
    leeway_secs: i64,
    revocation: &R,
) -> Result<AccessTokenClaims, OAuthError> {
    let compact = jose::split(token).map_err(invalid)?;
    let header = &compact.header;
    if !header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return Err(invalid(
            "not an access token: the header's `typ` must be `at+jwt`",
        ));
    }
    if header.alg != "EdDSA" {
        return Err(invalid(format!(
            "the token's alg {} is not accepted; Rein's tokens are EdDSA",
            shown(&header.alg)
        )));
    }
    if header.crit.is_some() {
        return Err(invalid(
            "the token's header has `crit`; no JWS extension is supported",
        ));
    }
    let kid = header
        .kid
        .as_deref()
        .ok_or_else(|| invalid("the token's header has no `kid`"))?;
    let key = keys.get(kid).ok_or_else(|| {
        invalid(format!(
            "the token's kid {} is not a key Rein publishes",
            shown(kid)
        ))
    })?;
    let signature: [u8; 64] = compact
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| invalid("the token's signature does not verify"))?;
    key.verify_strict(
        compact.signing_input.as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .map_err(|_| invalid("the token's signature does not verify"))?;
    let claims: AccessTokenClaims = serde_json::from_slice(&compact.payload)
        .map_err(|_| invalid("the token's claims are not those of a Rein access token"))?;
    if claims.iss != issuer {
        return Err(invalid("the token was not issued by this Rein"));
    }
    if claims.aud != expected_audience {
        return Err(invalid("the token is not for this system (`aud`)"));
    }
    if claims.client_id != claims.sub.as_str() {
        return Err(invalid("the token's `client_id` is not its `sub`"));
    }
    let t = now.timestamp();
    if claims.exp <= t {
        return Err(invalid("the token has expired"));
    }
    if claims.nbf > t + leeway_secs || claims.iat > t + leeway_secs {
        return Err(invalid("the token is not valid yet (`nbf`)"));
    }
    if revocation.is_revoked(&claims) {
        return Err(invalid("the token has been revoked"));
    }
    Ok(claims)
}
