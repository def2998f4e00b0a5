//! The agent's side of `private_key_jwt` (RFC 7523 §2.2): its private key as a JWK and the
//! client assertion it signs for Rein's token endpoint.
//!
//! [`ClientKey`] holds an Ed25519 (`{"kty":"OKP","crv":"Ed25519","x","d"}`, RFC 8037) or P-256
//! (`{"kty":"EC","crv":"P-256","x","y","d"}`) private key. Its public half
//! ([`ClientKey::public_jwk`], never with `d`) is what is registered with the agent; its key ID
//! is the one Rein registers it under: the JWK's own `kid` if it names one, otherwise the
//! RFC 7638 thumbprint (computed by [`rein_core::key::Jwk::validate`], so the two can never
//! disagree). [`ClientKey::assertion`] signs a compact JWS (EdDSA, or ES256 with the 64-byte
//! `r || s` signature of RFC 7518 §3.4) that [`ClientAssertion::verify`] accepts: header
//! `{"alg","typ":"JWT","kid"}`, claims `iss` = `sub` = the agent's SPIFFE ID, `aud`, `iat`,
//! `exp` (at most [`MAX_ASSERTION_LIFETIME_SECS`] ahead) and a random `jti`.
//!
//! Secrets: the private scalar lives in `ed25519-dalek` / `p256` key types, which zeroize on
//! drop; [`ClientKey::to_private_jwk`] returns a [`Zeroizing`] string; `Debug` shows the key ID
//! and algorithm only; error descriptions never contain key material.
//!
//! [`ClientAssertion::verify`]: crate::ClientAssertion::verify

use std::fmt;

use ed25519_dalek::Signer as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use rein_core::id::AgentId;
use rein_core::key::{Jwk, KeyAlgorithm};
use rein_core::Timestamp;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::assertion::MAX_ASSERTION_LIFETIME_SECS;
use crate::jose;

/// A sensible assertion lifetime for a client that signs one per request: 60 seconds.
pub const DEFAULT_ASSERTION_LIFETIME_SECS: u32 = 60;

/// Why a private key could not be read or an assertion not signed. Descriptions never contain
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientKeyError {
    /// The text is not a usable Ed25519 or P-256 private JWK.
    #[error("not a usable private key: {0}")]
    InvalidKey(String),
    /// The requested assertion lifetime is outside 1 to [`MAX_ASSERTION_LIFETIME_SECS`] seconds.
    #[error("an assertion's lifetime must be 1 to {MAX_ASSERTION_LIFETIME_SECS} seconds")]
    Lifetime,
}

fn invalid(reason: impl Into<String>) -> ClientKeyError {
    ClientKeyError::InvalidKey(reason.into())
}

enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// An agent's private key, with the key ID it is registered under. `Debug` never shows the
/// private key.
pub struct ClientKey {
    secret: Secret,
    /// The public JWK, normalised by [`Jwk::validate`] (`kid` and `alg` set, no `d`).
    public: Jwk,
    kid: String,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

/// The members of a private JWK that Rein reads; others (`key_ops`, `ext`, …) are ignored as
/// RFC 7517 §4 asks.
#[derive(Deserialize)]
struct PrivateJwk {
    kty: String,
    crv: String,
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
}

fn coordinate(name: &str, value: &str) -> Result<[u8; 32], ClientKeyError> {
    let bytes = Zeroizing::new(
        jose::b64_decode(value)
            .ok_or_else(|| invalid(format!("`{name}` is not base64url without padding")))?,
    );
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| invalid(format!("`{name}` must be 32 bytes")))
}

/// The unvalidated public JWK of `secret`, with `kid` when one is named.
fn public_of(secret: &Secret, kid: Option<String>) -> Jwk {
    let (kty, crv, x, y) = match secret {
        Secret::Ed25519(k) => (
            "OKP",
            "Ed25519",
            jose::b64_encode(k.verifying_key().as_bytes()),
            None,
        ),
        Secret::P256(k) => {
            let point = k.verifying_key().to_encoded_point(false);
            (
                "EC",
                "P-256",
                jose::b64_encode(&point.x().map(|c| c.to_vec()).unwrap_or_default()),
                Some(jose::b64_encode(
                    &point.y().map(|c| c.to_vec()).unwrap_or_default(),
                )),
            )
        }
    };
    Jwk {
        kty: kty.into(),
        crv: crv.into(),
        x,
        y,
        kid,
        alg: None,
        use_: None,
        d: None,
    }
}

impl ClientKey {
    /// A fresh key pair for `alg` from the operating system's random source. Its `kid` is the
    /// RFC 7638 thumbprint.
    pub fn generate(alg: KeyAlgorithm) -> Self {
        let secret = match alg {
            KeyAlgorithm::EdDSA => Secret::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            KeyAlgorithm::ES256 => Secret::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
        };
        let public = public_of(&secret, None);
        // A key derived from a valid scalar always validates; the fallback only keeps this
        // function total.
        match Self::with_public(secret, public) {
            Ok(key) => key,
            Err(_) => Self::generate(alg),
        }
    }

    fn with_public(secret: Secret, public: Jwk) -> Result<Self, ClientKeyError> {
        let (public, _) = public
            .validate()
            .map_err(|e| invalid(format!("its public half is refused: {e}")))?;
        let kid = public
            .kid
            .clone()
            .ok_or_else(|| invalid("its key ID could not be computed"))?;
        Ok(Self {
            secret,
            public,
            kid,
        })
    }

    /// Reads a private JWK: `{"kty":"OKP","crv":"Ed25519","x","d"}` or
    /// `{"kty":"EC","crv":"P-256","x","y","d"}`, optionally with `kid`, `alg` (`EdDSA` /
    /// `ES256`, matching the key type) and `use` (`sig`). The public members must be the ones
    /// `d` derives, so a file whose halves do not belong together is refused rather than
    /// registered under one key and signed with another.
    pub fn from_jwk_str(text: &str) -> Result<Self, ClientKeyError> {
        let raw: PrivateJwk = serde_json::from_str(text).map_err(|e| {
            // serde_json's message could quote a value; only its position is shown.
            invalid(format!(
                "not a JSON object of JWK members with string values (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let d = Zeroizing::new(raw.d.ok_or_else(|| {
            invalid("it has no private member `d`: this is a public key, not an agent's key file")
        })?);
        let scalar = Zeroizing::new(coordinate("d", &d)?);
        let secret = match (raw.kty.as_str(), raw.crv.as_str()) {
            ("OKP", "Ed25519") => Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&scalar)),
            ("EC", "P-256") => Secret::P256(
                p256::ecdsa::SigningKey::from_slice(scalar.as_slice())
                    .map_err(|_| invalid("`d` is not a valid P-256 private scalar"))?,
            ),
            (kty, crv) => {
                return Err(invalid(format!(
                    "unsupported key type `{}`/`{}`; use OKP/Ed25519 or EC/P-256",
                    kty.escape_default(),
                    crv.escape_default()
                )))
            }
        };
        let derived = public_of(&secret, raw.kid);
        let x = raw
            .x
            .ok_or_else(|| invalid("it has no public member `x`"))?;
        if x != derived.x || raw.y != derived.y {
            return Err(invalid(
                "its public members (`x`, `y`) are not the public key of its `d`",
            ));
        }
        let public = Jwk {
            alg: raw.alg,
            use_: raw.use_,
            ..derived
        };
        Self::with_public(secret, public)
    }

    /// The key ID the key is registered under, and that assertions name in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm: `EdDSA` for Ed25519, `ES256` for P-256.
    pub fn alg(&self) -> KeyAlgorithm {
        match self.secret {
            Secret::Ed25519(_) => KeyAlgorithm::EdDSA,
            Secret::P256(_) => KeyAlgorithm::ES256,
        }
    }

    /// The public JWK to register with the agent (`POST /v1/agents/…/keys`): `kty`, `crv`, `x`
    /// (and `y`), `kid` and `alg`; never `d`.
    pub fn public_jwk(&self) -> Jwk {
        self.public.clone()
    }

    /// The private JWK, for the agent's key file: the public members plus `d`. Keep it in a
    /// file readable only by its owner; the returned string is wiped when dropped.
    pub fn to_private_jwk(&self) -> Zeroizing<String> {
        let d = match &self.secret {
            Secret::Ed25519(k) => {
                Zeroizing::new(jose::b64_encode(&Zeroizing::new(k.to_bytes())[..]))
            }
            Secret::P256(k) => Zeroizing::new(jose::b64_encode(&Zeroizing::new(k.to_bytes())[..])),
        };
        let p = &self.public;
        let mut members = vec![
            ("kty", p.kty.as_str()),
            ("crv", p.crv.as_str()),
            ("x", p.x.as_str()),
        ];
        if let Some(y) = p.y.as_deref() {
            members.push(("y", y));
        }
        members.push(("d", d.as_str()));
        members.push(("kid", self.kid.as_str()));
        if let Some(alg) = p.alg.as_deref() {
            members.push(("alg", alg));
        }
        if let Some(use_) = p.use_.as_deref() {
            members.push(("use", use_));
        }
        // Written by hand so the members keep this order and no intermediate `Value` holds `d`
        // (base64url, which needs no escaping); the other values are JSON-encoded.
        let mut out = Zeroizing::new(String::with_capacity(256));
        out.push('{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
            if *k == "d" {
                out.push('"');
                out.push_str(v);
                out.push('"');
            } else {
                out.push_str(&serde_json::Value::from(*v).to_string());
            }
        }
        out.push('}');
        out
    }

    /// A client assertion for `agent` to present at the token endpoint `audience` (the
    /// `token_endpoint` of Rein's authorization-server metadata), issued at `now` and valid
    /// for `lifetime_secs` (1 to [`MAX_ASSERTION_LIFETIME_SECS`]), with a fresh random `jti`.
    pub fn assertion(
        &self,
        agent: &AgentId,
        audience: &str,
        now: Timestamp,
        lifetime_secs: u32,
    ) -> Result<String, ClientKeyError> {
        if lifetime_secs == 0 || i64::from(lifetime_secs) > MAX_ASSERTION_LIFETIME_SECS {
            return Err(ClientKeyError::Lifetime);
        }
        let alg = match self.alg() {
            KeyAlgorithm::EdDSA => "EdDSA",
            KeyAlgorithm::ES256 => "ES256",
        };
        let header = json!({ "alg": alg, "typ": "JWT", "kid": self.kid });
        let mut jti = [0u8; 16];
        OsRng.fill_bytes(&mut jti);
        let iat = now.timestamp();
        let claims = json!({
            "iss": agent.as_str(),
            "sub": agent.as_str(),
            "aud": audience,
            "iat": iat,
            "exp": iat + i64::from(lifetime_secs),
            "jti": jose::b64_encode(&jti),
        });
        let input = format!(
            "{}.{}",
            jose::b64_encode(header.to_string().as_bytes()),
            jose::b64_encode(claims.to_string().as_bytes())
        );
        let signature = match &self.secret {
            Secret::Ed25519(k) => k.sign(input.as_bytes()).to_bytes().to_vec(),
            Secret::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input.as_bytes());
                sig.to_bytes().to_vec()
            }
        };
        Ok(format!("{input}.{}", jose::b64_encode(&signature)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
    use rein_core::key::AgentKey;

    use super::*;
    use crate::assertion::{AssertionPolicy, ClientAssertion};

    const AGENT: &str = "spiffe://rein.local/agent/payments/invoice-bot/prod";
    const TOKEN_ENDPOINT: &str = "https://rein.example/oauth2/token";

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    /// An agent with `keys` registered the way the registry registers them.
    fn agent(keys: &[&ClientKey]) -> Agent {
        Agent {
            id: AGENT.parse().unwrap(),
            description: String::new(),
            use_case: "invoices".into(),
            roles: AccountableRoles::default(),
            last_review: None,
            status: AgentStatus::Active,
            status_reason: None,
            keys: keys
                .iter()
                .map(|k| {
                    let (jwk, alg) = k.public_jwk().validate().unwrap();
                    AgentKey {
                        kid: jwk.kid.clone().unwrap(),
                        alg,
                        jwk,
                        added_at: now(),
                        added_by: "dave".parse().unwrap(),
                    }
                })
                .collect(),
            budgets: Budgets::default(),
            created_by: "dave".parse().unwrap(),
            created_at: now(),
            updated_at: now(),
        }
    }

    fn verify(key: &ClientKey, agent: &Agent, lifetime: u32) -> crate::AssertionClaims {
        let id: AgentId = AGENT.parse().unwrap();
        let jwt = key.assertion(&id, TOKEN_ENDPOINT, now(), lifetime).unwrap();
        ClientAssertion::parse(&jwt)
            .unwrap()
            .verify(agent, &AssertionPolicy::new(TOKEN_ENDPOINT), now())
            .unwrap()
    }

    #[test]
    fn assertions_verify_for_both_algorithms() {
        for alg in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
            let key = ClientKey::generate(alg);
            let other = ClientKey::generate(alg);
            // Two keys registered: the header's kid selects this one.
            let registered = agent(&[&other, &key]);
            let claims = verify(&key, &registered, 300);
            assert_eq!(claims.alg, alg);
            assert_eq!(claims.kid, key.kid());
            assert_eq!(claims.agent.as_str(), AGENT);
            assert_eq!(claims.audience, vec![TOKEN_ENDPOINT.to_owned()]);
            assert_eq!((claims.expires_at - now()).num_seconds(), 300);
            assert_eq!(claims.issued_at, Some(now()));
            assert_eq!(claims.kid.len(), 43, "RFC 7638 thumbprint");
            // Fresh jti every time.
            assert_ne!(claims.jti, verify(&key, &registered, 60).jti);
            // A key that is not registered does not verify.
            let stranger = agent(&[&other]);
            let jwt = key
                .assertion(&AGENT.parse().unwrap(), TOKEN_ENDPOINT, now(), 60)
                .unwrap();
            let refused = ClientAssertion::parse(&jwt).unwrap().verify(
                &stranger,
                &AssertionPolicy::new(TOKEN_ENDPOINT),
                now(),
            );
            assert!(refused.is_err());
        }
    }

    #[test]
    fn private_jwks_round_trip_and_keep_their_kid() {
        for alg in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
            let key = ClientKey::generate(alg);
            let text = key.to_private_jwk();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(value["d"].is_string());
            assert_eq!(value["kid"], key.kid());
            let back = ClientKey::from_jwk_str(&text).unwrap();
            assert_eq!(back.kid(), key.kid());
            assert_eq!(back.public_jwk(), key.public_jwk());
            // The registered public half has no `d` and serialises without one.
            let public = serde_json::to_value(key.public_jwk()).unwrap();
            assert!(public.get("d").is_none(), "{public}");
            assert_eq!(public["kid"], key.kid());
            // The reloaded key signs assertions the original registration accepts.
            verify(&back, &agent(&[&key]), 60);
        }
    }

    #[test]
    fn rfc8037_key_gets_its_thumbprint_or_its_own_kid() {
        // RFC 8037 appendix A.1 key; A.3 thumbprint.
        let jwk = r#"{"kty":"OKP","crv":"Ed25519",
            "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","key_ops":["sign"]}"#;
        let key = ClientKey::from_jwk_str(jwk).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(key.alg(), KeyAlgorithm::EdDSA);
        let named = jwk.replace(r#""kty""#, r#""kid":"laptop-1","kty""#);
        let key = ClientKey::from_jwk_str(&named).unwrap();
        assert_eq!(key.kid(), "laptop-1");
        assert_eq!(key.public_jwk().kid.as_deref(), Some("laptop-1"));
        let claims = verify(&key, &agent(&[&key]), 60);
        assert_eq!(claims.kid, "laptop-1");
    }

    #[test]
    fn unusable_key_files_are_refused_without_echoing_them() {
        let d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
        let other_x = jose::b64_encode(
            ed25519_dalek::SigningKey::from_bytes(&[5; 32])
                .verifying_key()
                .as_bytes(),
        );
        let cases = [
            // Public only.
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
                .to_owned(),
            // Halves that do not belong together.
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{other_x}","d":"{d}"}}"#),
            // No public member.
            format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{d}"}}"#),
            // Unsupported type.
            format!(r#"{{"kty":"RSA","crv":"","x":"AQAB","d":"{d}"}}"#),
            // The wrong `alg` for the key type.
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"{d}","alg":"ES256"}}"#
            ),
            // A P-256 key with an Ed25519 scalar's public half.
            format!(
                r#"{{"kty":"EC","crv":"P-256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","y":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"{d}"}}"#
            ),
            // Not JSON of strings (the value must not be quoted back).
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":7,"d":"{d}"}}"#),
            "not json".to_owned(),
        ];
        for text in cases {
            let err = ClientKey::from_jwk_str(&text).unwrap_err();
            assert!(
                matches!(err, ClientKeyError::InvalidKey(_)),
                "{text}: {err:?}"
            );
            assert!(!err.to_string().contains(d), "{err}");
        }
    }

    #[test]
    fn lifetimes_are_bounded() {
        let key = ClientKey::generate(KeyAlgorithm::EdDSA);
        let id: AgentId = AGENT.parse().unwrap();
        for bad in [0, 301, u32::MAX] {
            assert_eq!(
                key.assertion(&id, TOKEN_ENDPOINT, now(), bad),
                Err(ClientKeyError::Lifetime)
            );
        }
    }

    #[test]
    fn debug_hides_the_private_key() {
        for alg in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
            let key = ClientKey::generate(alg);
            let file = key.to_private_jwk();
            let value: serde_json::Value = serde_json::from_str(&file).unwrap();
            let d = value["d"].as_str().unwrap().to_owned();
            let shown = format!("{key:?} {key:#?}");
            assert!(!shown.contains(&d), "{shown}");
            assert!(shown.contains(key.kid()), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }
}
