//! What Rein publishes for verifiers and clients: the JWKS of its token keys (RFC 7517, OKP /
//! Ed25519 per RFC 8037) and its authorization-server metadata (RFC 8414).

use std::collections::HashMap;

use chrono::TimeDelta;
use ed25519_dalek::VerifyingKey;
use rein_core::grant::MAX_TOKEN_TTL_SECS;
use rein_core::Timestamp;
use rein_keys::{KeyPurpose, SealedKey};
use serde_json::{json, Value};

use crate::jose;

/// Path of the token endpoint, below the issuer.
pub const TOKEN_ENDPOINT_PATH: &str = "/oauth2/token";
/// Path of the introspection endpoint (RFC 7662).
pub const INTROSPECTION_ENDPOINT_PATH: &str = "/oauth2/introspect";
/// Path of the revocation endpoint (RFC 7009).
pub const REVOCATION_ENDPOINT_PATH: &str = "/oauth2/revoke";
/// Path of the JWKS.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the authorization-server metadata (RFC 8414 §3).
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// How long past a key's retirement its public key stays published: the longest token lifetime
/// plus a minute of skew, so every token it signed has expired first.
pub const RETIRED_KEY_GRACE_SECS: i64 = MAX_TOKEN_TTL_SECS as i64 + 60;

fn base(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// The token endpoint URL of `issuer` (the audience client assertions must name).
pub fn token_endpoint(issuer: &str) -> String {
    format!("{}{TOKEN_ENDPOINT_PATH}", base(issuer))
}

/// The token keys to publish and verify with at `now`, by kid: every `KeyPurpose::Token` key
/// that is current, or retired less than [`RETIRED_KEY_GRACE_SECS`] ago. Keys of other purposes
/// and keys whose public half does not decode are left out.
pub fn published_keys(sealed: &[SealedKey], now: Timestamp) -> HashMap<String, VerifyingKey> {
    sealed
        .iter()
        .filter(|k| k.purpose == KeyPurpose::Token)
        .filter(|k| {
            k.retired_at.is_none_or(|r| {
                r.checked_add_signed(TimeDelta::seconds(RETIRED_KEY_GRACE_SECS))
                    .is_none_or(|until| until > now)
            })
        })
        .filter_map(|k| Some((k.kid.clone(), k.verifying_key()?)))
        .collect()
}

/// The JWK Set of `keys` (kid → key): `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x", "kid",
/// "use": "sig", "alg": "EdDSA"}, …]}`, sorted by kid.
pub fn jwks<'a, I, K>(keys: I) -> Value
where
    I: IntoIterator<Item = (K, &'a VerifyingKey)>,
    K: AsRef<str>,
{
    let mut list: Vec<(String, Value)> = keys
        .into_iter()
        .map(|(kid, key)| {
            let kid = kid.as_ref().to_owned();
            let jwk = json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": jose::b64_encode(key.as_bytes()),
                "kid": kid,
                "use": "sig",
                "alg": "EdDSA",
            });
            (kid, jwk)
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    json!({ "keys": list.into_iter().map(|(_, v)| v).collect::<Vec<_>>() })
}

/// Rein's authorization-server metadata (RFC 8414 §2) for `issuer` (an `https` URL without query
/// or fragment; a trailing `/` is dropped when building endpoint URLs).
pub fn authorization_server_metadata(issuer: &str) -> Value {
    let b = base(issuer);
    json!({
        "issuer": issuer,
        "token_endpoint": token_endpoint(issuer),
        "jwks_uri": format!("{b}{JWKS_PATH}"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
        "introspection_endpoint": format!("{b}{INTROSPECTION_ENDPOINT_PATH}"),
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
        "revocation_endpoint": format!("{b}{REVOCATION_ENDPOINT_PATH}"),
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
        "resource_indicators_supported": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use rein_keys::MasterKey;

    fn t(secs: i64) -> Timestamp {
        DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn retired_keys_stay_published_until_their_tokens_expired() {
        let master = MasterKey::from_bytes([9; 32]);
        let current = SealedKey::generate(&master, KeyPurpose::Token, t(0));
        let old = SealedKey {
            retired_at: Some(t(10_000)),
            ..SealedKey::generate(&master, KeyPurpose::Token, t(0))
        };
        let audit = SealedKey::generate(&master, KeyPurpose::AuditCheckpoint, t(0));
        let keys = [current.clone(), old.clone(), audit.clone()];
        let at = |s| published_keys(&keys, t(s));
        let soon = at(10_000 + RETIRED_KEY_GRACE_SECS - 1);
        assert!(soon.contains_key(&current.kid) && soon.contains_key(&old.kid));
        assert!(!soon.contains_key(&audit.kid));
        let later = at(10_000 + RETIRED_KEY_GRACE_SECS);
        assert!(later.contains_key(&current.kid) && !later.contains_key(&old.kid));
    }

    #[test]
    fn metadata_and_jwks_shapes() {
        let m = authorization_server_metadata("https://rein.example/");
        assert_eq!(m["token_endpoint"], "https://rein.example/oauth2/token");
        assert_eq!(m["jwks_uri"], "https://rein.example/.well-known/jwks.json");
        assert_eq!(m["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(m["response_types_supported"], json!([]));
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let set = jwks([("b", &key), ("a", &key)]);
        assert_eq!(set["keys"][0]["kid"], "a");
        assert_eq!(set["keys"][1]["kty"], "OKP");
        assert_eq!(set["keys"][1]["x"].as_str().map(str::len), Some(43));
    }
}
