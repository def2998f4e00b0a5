//! Fixtures shared by the integration tests: agents with Ed25519 and P-256 keys, grants, and a
//! small JWS writer that signs assertions and tokens the way an independent client would.

#![allow(dead_code)]

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{Duration, TimeDelta};
use ed25519_dalek::Signer as _;
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::{ActionName, GrantId};
use rein_core::key::{AgentKey, Jwk};
use rein_core::Timestamp;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const AGENT: &str = "spiffe://rein.local/agent/payments/invoice-bot/prod";
pub const ISSUER: &str = "https://rein.example";
pub const TOKEN_ENDPOINT: &str = "https://rein.example/oauth2/token";

pub fn p<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| panic!("bad test literal {s}"))
}

pub fn now() -> Timestamp {
    p("2026-06-01T12:00:00Z")
}

pub fn secs(n: i64) -> TimeDelta {
    Duration::seconds(n)
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A key an agent signs with.
pub enum AgentSigner {
    Ed(ed25519_dalek::SigningKey),
    Es(p256::ecdsa::SigningKey),
}

impl AgentSigner {
    pub fn ed(seed: u8) -> Self {
        Self::Ed(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    pub fn es(seed: u8) -> Self {
        Self::Es(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    pub fn public_jwk(&self) -> Jwk {
        match self {
            Self::Ed(k) => Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: b64(k.verifying_key().as_bytes()),
                y: None,
                kid: None,
                alg: None,
                use_: None,
                d: None,
            },
            Self::Es(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                Jwk {
                    kty: "EC".into(),
                    crv: "P-256".into(),
                    x: b64(point.x().unwrap()),
                    y: Some(b64(point.y().unwrap())),
                    kid: None,
                    alg: None,
                    use_: None,
                    d: None,
                }
            }
        }
    }

    /// The registered form of this key (kid = RFC 7638 thumbprint).
    pub fn agent_key(&self) -> AgentKey {
        let (jwk, alg) = self.public_jwk().validate().unwrap();
        AgentKey {
            kid: jwk.kid.clone().unwrap(),
            alg,
            jwk,
            added_at: now(),
            added_by: p("dave"),
        }
    }

    pub fn kid(&self) -> String {
        self.agent_key().kid
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Self::Ed(_) => "EdDSA",
            Self::Es(_) => "ES256",
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed(k) => k.sign(message).to_bytes().to_vec(),
            Self::Es(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
        }
    }
}

/// Encodes and signs a compact JWS with `signer`, whatever the header says.
pub fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// Standard assertion claims for `AGENT` at `now()`, valid for 60 s.
pub fn claims() -> Value {
    let t = now().timestamp();
    json!({
        "iss": AGENT,
        "sub": AGENT,
        "aud": TOKEN_ENDPOINT,
        "iat": t,
        "exp": t + 60,
        "jti": "a1b2c3d4-0001",
    })
}

pub fn header(signer: &AgentSigner) -> Value {
    json!({ "alg": signer.alg(), "typ": "JWT", "kid": signer.kid() })
}

/// A well-formed assertion signed by `signer`.
pub fn assertion(signer: &AgentSigner, claims: &Value) -> String {
    jws(&header(signer), claims, |m| signer.sign(m))
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

pub fn agent(keys: &[&AgentSigner]) -> Agent {
    Agent {
        id: p(AGENT),
        description: String::new(),
        use_case: "invoices".into(),
        roles: AccountableRoles {
            business_owner: Some(p("olivia")),
            approvers: vec![p("team:payments-leads")],
            revokers: vec![p("team:secops")],
            reviewers: vec![p("user:rita")],
            review_cadence_days: Some(90),
        },
        last_review: None,
        status: AgentStatus::Active,
        status_reason: None,
        keys: keys.iter().map(|k| k.agent_key()).collect(),
        budgets: Budgets::default(),
        created_by: p("dave"),
        created_at: now(),
        updated_at: now(),
    }
}

pub fn actions(list: &[&str]) -> BTreeSet<ActionName> {
    list.iter().map(|a| p(a)).collect()
}

/// An active grant of `AGENT` on `billing-db` for `actions`, expiring in 30 days, no TTL limit.
pub fn grant(id: u8, list: &[&str]) -> Grant {
    Grant {
        id: GrantId::from_bytes([id; 16]),
        agent: p(AGENT),
        system: p("billing-db"),
        actions: actions(list),
        expires_at: now() + Duration::days(30),
        schedule: None,
        max_token_ttl_secs: None,
        justification: "monthly invoicing".into(),
        requested_by: p("dave"),
        requested_at: now() - Duration::days(1),
        status: GrantStatus::Active,
        mutates_production: false,
        approvers: vec![p("team:billing-approvers")],
        business_owner_approver: None,
        approvals: vec![],
        revokers: vec![p("team:secops")],
        closed: None,
        updated_at: now() - Duration::days(1),
    }
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}
