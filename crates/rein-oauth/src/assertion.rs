//! Agent authentication with `private_key_jwt` (RFC 7523 §2.2 and §3, RFC 7521 §4.2): a JWT
//! signed by one of the agent's registered keys, and the replay cache for its `jti`.
//!
//! Verification is two-phase, because the key to check the signature with belongs to the agent
//! the assertion claims to be:
//!
//! 1. [`ClientAssertion::parse`] splits and decodes the JWT, refuses unsupported algorithms and
//!    critical extensions, and reads the claimed agent (`iss` = `sub` = a SPIFFE ID). Nothing in
//!    it is trusted yet; [`ClientAssertion::agent_id`] is only for looking the agent up.
//! 2. [`ClientAssertion::verify`] selects the agent's key by `kid`, checks the algorithm matches
//!    the key, verifies the signature, then the claims (`aud`, `exp`, `iat`, `nbf`, `jti`).
//! 3. The caller then records the `jti` in a [`ReplayCache`] (after the signature, so forged
//!    assertions cannot fill it).
//!
//! Every refusal is `invalid_client` (RFC 7523 §3.2).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use p256::ecdsa::signature::Verifier as _;
use rein_core::agent::Agent;
use rein_core::id::AgentId;
use rein_core::key::{AgentKey, KeyAlgorithm};
use rein_core::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{shown, OAuthError};
use crate::jose::{self, Audience};

/// The longest accepted `jti`, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// The longest an assertion may still be valid for when presented: 5 minutes (plus skew).
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;

/// Allowed clock skew between agent and Rein for `iat`, `nbf` and the lifetime limit, in seconds.
pub const DEFAULT_SKEW_SECS: i64 = 60;

fn refuse(reason: impl Into<String>) -> OAuthError {
    OAuthError::InvalidClient(reason.into())
}

/// What a client assertion must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionPolicy {
    /// Accepted `aud` values; the assertion's `aud` (string or array) must contain one of them.
    /// [`AssertionPolicy::new`] puts the token endpoint URL here (RFC 7523 §3 item 3).
    pub audiences: Vec<String>,
    /// How far ahead `exp` may be, in seconds (default 300), plus `skew_secs`.
    pub max_lifetime_secs: i64,
    /// Clock skew allowed for `iat`, `nbf` and the lifetime limit, in seconds (default 60).
    /// `exp` itself gets none: an expired assertion is refused.
    pub skew_secs: i64,
}

impl AssertionPolicy {
    /// The policy for Rein's token endpoint at `token_endpoint` (e.g.
    /// `https://rein.example/oauth2/token`), with the default lifetime limit and skew.
    pub fn new(token_endpoint: impl Into<String>) -> Self {
        Self {
            audiences: vec![token_endpoint.into()],
            max_lifetime_secs: MAX_ASSERTION_LIFETIME_SECS,
            skew_secs: DEFAULT_SKEW_SECS,
        }
    }

    /// Also accepts `audience` (e.g. the issuer identifier, which draft-ietf-oauth-rfc7523bis
    /// recommends as the single audience value).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default, deserialize_with = "jose::numeric_date")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "jose::numeric_date")]
    iat: Option<i64>,
    #[serde(default, deserialize_with = "jose::numeric_date")]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// A parsed, not yet verified client assertion. Its `Debug` form shows the claimed agent and
/// `kid`, never the JWT.
pub struct ClientAssertion {
    raw: String,
    signing_input_len: usize,
    alg: KeyAlgorithm,
    kid: Option<String>,
    claims: RawClaims,
    agent: AgentId,
    signature: Vec<u8>,
}

impl fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("agent", &self.agent.as_str())
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The claims of a verified client assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionClaims {
    /// The authenticated agent (`iss` = `sub`).
    pub agent: AgentId,
    /// The registered key that signed it.
    pub kid: String,
    /// Its algorithm.
    pub alg: KeyAlgorithm,
    /// The assertion's `jti`; record it in a [`ReplayCache`].
    pub jti: String,
    /// `exp`.
    pub expires_at: Timestamp,
    /// `iat`, if present.
    pub issued_at: Option<Timestamp>,
    /// `aud`, as a list.
    pub audience: Vec<String>,
}

fn at(secs: i64) -> Result<Timestamp, OAuthError> {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .ok_or_else(|| refuse("a time claim of the assertion is out of range"))
}

fn alg_of(name: &str) -> Result<KeyAlgorithm, OAuthError> {
    match name {
        "EdDSA" => Ok(KeyAlgorithm::EdDSA),
        "ES256" => Ok(KeyAlgorithm::ES256),
        "none" => Err(refuse(
            "unsigned assertions (`alg: none`) are not accepted; sign with EdDSA or ES256",
        )),
        other if other.starts_with("HS") => Err(refuse(format!(
            "the assertion's alg {} is a shared-secret algorithm; agents authenticate with their registered key pair, EdDSA or ES256",
            shown(other)
        ))),
        other => Err(refuse(format!(
            "the assertion's alg {} is not accepted; use EdDSA or ES256",
            shown(other)
        ))),
    }
}

fn alg_name(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::EdDSA => "EdDSA",
        KeyAlgorithm::ES256 => "ES256",
    }
}

fn fixed<const N: usize>(b64: &str) -> Option<[u8; N]> {
    jose::b64_decode(b64)?.try_into().ok()
}

/// Checks a JWS signature with a registered agent key. Ed25519 uses strict verification
/// (canonical encodings, no small-order keys); ES256 takes the 64-byte `r || s` form of RFC 7518
/// §3.4, both low and high `s`.
fn verify_signature(key: &AgentKey, message: &[u8], signature: &[u8]) -> Result<(), OAuthError> {
    let bad_key = || {
        refuse(format!(
            "the registered key {} cannot be used; re-register it",
            shown(&key.kid)
        ))
    };
    let bad_sig = || refuse("the assertion's signature does not verify with the registered key");
    match key.alg {
        KeyAlgorithm::EdDSA => {
            let x: [u8; 32] = fixed(&key.jwk.x).ok_or_else(bad_key)?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| bad_key())?;
            let sig: [u8; 64] = signature.try_into().map_err(|_| bad_sig())?;
            vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| bad_sig())
        }
        KeyAlgorithm::ES256 => {
            let x: [u8; 32] = fixed(&key.jwk.x).ok_or_else(bad_key)?;
            let y: [u8; 32] = key.jwk.y.as_deref().and_then(fixed).ok_or_else(bad_key)?;
            let mut sec1 = [0u8; 65];
            sec1[0] = 0x04;
            sec1[1..33].copy_from_slice(&x);
            sec1[33..].copy_from_slice(&y);
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad_key())?;
            let sig = p256::ecdsa::Signature::from_slice(signature).map_err(|_| bad_sig())?;
            vk.verify(message, &sig).map_err(|_| bad_sig())
        }
    }
}

impl ClientAssertion {
    /// Decodes an assertion without trusting it: compact JWS shape, `alg` EdDSA or ES256 (never
    /// `none`, HMAC or RSA), no `crit`, `typ` absent, `JWT` or `client-authentication+jwt`, and
    /// `iss` = `sub` = an agent SPIFFE ID.
    pub fn parse(assertion: &str) -> Result<Self, OAuthError> {
        let compact =
            jose::split(assertion).map_err(|r| refuse(format!("client_assertion: {r}")))?;
        let alg = alg_of(&compact.header.alg)?;
        if compact.header.crit.is_some() {
            return Err(refuse(
                "the assertion's header has `crit`; Rein supports no JWS extensions",
            ));
        }
        if let Some(typ) = compact.header.typ.as_deref() {
            let t = typ.to_ascii_lowercase();
            if !matches!(
                t.as_str(),
                "jwt" | "application/jwt" | "client-authentication+jwt"
            ) {
                return Err(refuse(format!(
                    "the assertion's typ {} is not accepted; omit it or use `JWT`",
                    shown(typ)
                )));
            }
        }
        let claims: RawClaims = serde_json::from_slice(&compact.payload).map_err(|_| {
            refuse("the assertion's payload is not a JSON object of well-formed JWT claims")
        })?;
        let (Some(iss), Some(sub)) = (claims.iss.as_deref(), claims.sub.as_deref()) else {
            return Err(refuse(
                "the assertion needs `iss` and `sub`, both the agent's SPIFFE ID",
            ));
        };
        if iss != sub {
            return Err(refuse(
                "the assertion's `iss` and `sub` differ; both must be the agent's SPIFFE ID",
            ));
        }
        let agent: AgentId = sub.parse().map_err(|_| {
            refuse("the assertion's `sub` is not an agent SPIFFE ID (spiffe://<trust-domain>/agent/<team>/<name>/<environment>)")
        })?;
        Ok(Self {
            signing_input_len: compact.signing_input.len(),
            alg,
            kid: compact.header.kid,
            claims,
            agent,
            signature: compact.signature,
            raw: assertion.to_owned(),
        })
    }

    /// The agent the assertion claims to come from. Unverified: use it only to look the agent
    /// (and its keys) up, then call [`ClientAssertion::verify`].
    pub fn agent_id(&self) -> &AgentId {
        &self.agent
    }

    /// The `kid` in the header, if any. Unverified.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Verifies the assertion against `agent`'s registered keys and `policy` at `now`.
    ///
    /// The key is the one whose `kid` the header names; with no `kid`, the agent's only key (an
    /// agent with several keys must name one). Its algorithm must be the header's `alg`. Then:
    /// `aud` contains an accepted audience; `exp` present, after `now`, and at most
    /// `max_lifetime_secs + skew_secs` ahead; `iat` and `nbf`, when present, at most `skew_secs`
    /// ahead; `jti` present, 1 to 256 bytes. The agent's status and roles are not checked here.
    pub fn verify(
        &self,
        agent: &Agent,
        policy: &AssertionPolicy,
        now: Timestamp,
    ) -> Result<AssertionClaims, OAuthError> {
        if agent.id != self.agent {
            return Err(refuse(
                "the assertion is not from the agent it was checked against",
            ));
        }
        let key = match self.kid.as_deref() {
            Some(kid) => agent.keys.iter().find(|k| k.kid == kid).ok_or_else(|| {
                refuse(format!(
                    "the agent has no registered key with kid {}",
                    shown(kid)
                ))
            })?,
            None => match agent.keys.as_slice() {
                [only] => only,
                [] => return Err(refuse("the agent has no registered key; register one")),
                _ => {
                    return Err(refuse(
                        "the agent has several registered keys; name the signing key with `kid` in the assertion's header",
                    ))
                }
            },
        };
        if key.alg != self.alg {
            return Err(refuse(format!(
                "the assertion's alg {} does not match the registered key {}, which is {}",
                alg_name(self.alg),
                shown(&key.kid),
                alg_name(key.alg)
            )));
        }
        let message = self
            .raw
            .as_bytes()
            .get(..self.signing_input_len)
            .ok_or_else(|| refuse("the assertion is malformed"))?;
        verify_signature(key, message, &self.signature)?;

        let c = &self.claims;
        let aud = c
            .aud
            .clone()
            .map(Audience::into_vec)
            .ok_or_else(|| refuse("the assertion needs `aud`: the token endpoint URL"))?;
        if !aud.iter().any(|a| policy.audiences.contains(a)) {
            return Err(refuse(format!(
                "the assertion's `aud` does not name this token endpoint; use `{}`",
                policy.audiences.first().map(String::as_str).unwrap_or("")
            )));
        }
        let t = now.timestamp();
        let exp = c.exp.ok_or_else(|| refuse("the assertion needs `exp`"))?;
        if exp <= t {
            return Err(refuse("the assertion has expired (`exp`); sign a new one"));
        }
        if exp > t + policy.max_lifetime_secs + policy.skew_secs {
            return Err(refuse(format!(
                "the assertion's `exp` is more than {} seconds ahead; assertions must be short-lived",
                policy.max_lifetime_secs
            )));
        }
        if c.iat.is_some_and(|iat| iat > t + policy.skew_secs) {
            return Err(refuse(
                "the assertion's `iat` is in the future; check the agent's clock",
            ));
        }
        if c.nbf.is_some_and(|nbf| nbf > t + policy.skew_secs) {
            return Err(refuse("the assertion is not valid yet (`nbf`)"));
        }
        let jti = c
            .jti
            .as_deref()
            .filter(|j| !j.is_empty())
            .ok_or_else(|| refuse("the assertion needs a `jti` (a fresh random value)"))?;
        if jti.len() > MAX_JTI_LEN {
            return Err(refuse(format!(
                "the assertion's `jti` is longer than {MAX_JTI_LEN} bytes"
            )));
        }
        Ok(AssertionClaims {
            agent: self.agent.clone(),
            kid: key.kid.clone(),
            alg: key.alg,
            jti: jti.to_owned(),
            expires_at: at(exp)?,
            issued_at: c.iat.map(at).transpose()?,
            audience: aud,
        })
    }
}

type ReplayKey = [u8; 32];

#[derive(Default)]
struct ReplayState {
    seen: HashMap<ReplayKey, i64>,
    by_expiry: BinaryHeap<Reverse<(i64, ReplayKey)>>,
}

impl ReplayState {
    fn purge(&mut self, now: i64) {
        while let Some(Reverse((exp, key))) = self.by_expiry.peek().copied() {
            if exp > now {
                break;
            }
            self.by_expiry.pop();
            if self.seen.get(&key) == Some(&exp) {
                self.seen.remove(&key);
            }
        }
    }
}

/// Remembers each (issuer, `jti`) pair until its assertion expires, so an assertion is accepted
/// once. In memory and bounded: when full of unexpired entries it refuses new assertions
/// (`temporarily_unavailable`) rather than forget one and let it be replayed. Entries are kept
/// as SHA-256 digests, so attacker-chosen strings are not retained. Safe to share between
/// threads. One cache covers one node: replicas need a shared store for cross-node replay
/// protection.
pub struct ReplayCache {
    state: Mutex<ReplayState>,
    capacity: usize,
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    /// Default bound: 100,000 live assertions (about 280 a second sustained at the longest
    /// allowed lifetime; about 8 MB).
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty cache holding at most `capacity` unexpired entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(ReplayState::default()),
            capacity,
        }
    }

    fn key(issuer: &str, jti: &str) -> ReplayKey {
        let mut h = Sha256::new();
        h.update((issuer.len() as u64).to_be_bytes());
        h.update(issuer.as_bytes());
        h.update(jti.as_bytes());
        h.finalize().into()
    }

    /// Records `jti` for `issuer` until `expires_at`; refuses it (`invalid_client`) if it is
    /// already recorded and not expired at `now`. Expired entries are dropped as a side effect.
    pub fn check_and_insert(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), OAuthError> {
        let exp = expires_at.timestamp();
        let t = now.timestamp();
        if exp <= t {
            return Err(refuse("the assertion has expired (`exp`); sign a new one"));
        }
        let key = Self::key(issuer, jti);
        let mut state = self
            .state
            .lock()
            .map_err(|_| OAuthError::Unavailable("the replay cache is unavailable".into()))?;
        state.purge(t);
        if state.seen.contains_key(&key) {
            return Err(refuse(
                "the assertion's `jti` has already been used; sign a new assertion with a fresh `jti`",
            ));
        }
        if state.seen.len() >= self.capacity {
            return Err(OAuthError::Unavailable(
                "too many client assertions are in flight; retry shortly".into(),
            ));
        }
        state.seen.insert(key, exp);
        state.by_expiry.push(Reverse((exp, key)));
        Ok(())
    }

    /// Entries currently held (some may have expired but not been dropped yet).
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.seen.len()).unwrap_or(0)
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn replay_cache_accepts_once_until_expiry() {
        let cache = ReplayCache::new(10);
        assert!(cache.check_and_insert("a", "j1", t(1100), t(1000)).is_ok());
        let again = cache.check_and_insert("a", "j1", t(1100), t(1050));
        assert!(matches!(again, Err(OAuthError::InvalidClient(_))));
        // Same jti from another issuer is a different entry.
        assert!(cache.check_and_insert("b", "j1", t(1100), t(1050)).is_ok());
        // After expiry the entry is gone.
        assert!(cache.check_and_insert("a", "j1", t(1200), t(1100)).is_ok());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn replay_cache_refuses_when_full_of_live_entries() {
        let cache = ReplayCache::new(2);
        assert!(cache.check_and_insert("a", "1", t(1100), t(1000)).is_ok());
        assert!(cache.check_and_insert("a", "2", t(1200), t(1000)).is_ok());
        assert!(matches!(
            cache.check_and_insert("a", "3", t(1200), t(1000)),
            Err(OAuthError::Unavailable(_))
        ));
        // Once the first expires there is room again; the second is still remembered.
        assert!(cache.check_and_insert("a", "3", t(1200), t(1100)).is_ok());
        assert!(cache.check_and_insert("a", "2", t(1200), t(1100)).is_err());
        assert!(cache.check_and_insert("a", "4", t(1200), t(1000)).is_err());
    }
}
