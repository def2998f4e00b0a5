//! Agents' public keys, as JWKs (RFC 7517): Ed25519 (`OKP`, RFC 8037) or P-256 (`EC`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::UserName;
use crate::DomainError;

/// A public JWK as submitted. Private members (`d`, `p`, `q`, …) are refused, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// `Ed25519` or `P-256`.
    pub crv: String,
    /// Public key: the Ed25519 point, or the P-256 x coordinate (base64url).
    pub x: String,
    /// P-256 y coordinate (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key ID; defaults to the RFC 7638 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended algorithm: `EdDSA` or `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; only `sig` is accepted.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Private key member; present only to be refused.
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub d: Option<String>,
}

/// The algorithm a registered key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (`EdDSA`).
    EdDSA,
    /// ECDSA over P-256 with SHA-256.
    ES256,
}

/// A validated public key registered for an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentKey {
    /// Key ID, unique per agent.
    pub kid: String,
    /// Signing algorithm.
    pub alg: KeyAlgorithm,
    /// The public JWK, normalised (kid and alg filled in).
    pub jwk: Jwk,
    /// When it was registered.
    pub added_at: DateTime<Utc>,
    /// Who registered it.
    pub added_by: UserName,
}

fn decode_coord(name: &str, value: &str) -> Result<[u8; 32], DomainError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| DomainError::InvalidKey {
            reason: format!("`{name}` is not base64url without padding"),
        })?;
    bytes.try_into().map_err(|_| DomainError::InvalidKey {
        reason: format!("`{name}` must be 32 bytes"),
    })
}

impl Jwk {
    /// Validates the key as an Ed25519 or P-256 public key and returns it normalised with its
    /// `kid` (the RFC 7638 thumbprint when none was given) and `alg`.
    pub fn validate(mut self) -> Result<(Self, KeyAlgorithm), DomainError> {
        if self.d.is_some() {
            return Err(DomainError::InvalidKey {
                reason: "the JWK contains private key material (`d`); register only the public key"
                    .into(),
            });
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(DomainError::InvalidKey {
                reason: "`use` must be `sig`".into(),
            });
        }
        let x = decode_coord("x", &self.x)?;
        let (alg, thumb_input) = match (self.kty.as_str(), self.crv.as_str()) {
            ("OKP", "Ed25519") => {
                if self.y.is_some() {
                    return Err(DomainError::InvalidKey {
                        reason: "an Ed25519 JWK has no `y`".into(),
                    });
                }
                ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| {
                    DomainError::InvalidKey {
                        reason: "`x` is not a valid Ed25519 public key".into(),
                    }
                })?;
                (
                    KeyAlgorithm::EdDSA,
                    format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.x),
                )
            }
            ("EC", "P-256") => {
                let y_text = self.y.as_deref().ok_or_else(|| DomainError::InvalidKey {
                    reason: "a P-256 JWK needs `y`".into(),
                })?;
                let y = decode_coord("y", y_text)?;
                let mut sec1 = [0u8; 65];
                sec1[0] = 0x04;
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| DomainError::InvalidKey {
                    reason: "`x`/`y` are not a point on P-256".into(),
                })?;
                (
                    KeyAlgorithm::ES256,
                    format!(
                        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                        self.x, y_text
                    ),
                )
            }
            (kty, crv) => {
                return Err(DomainError::InvalidKey {
                    reason: format!(
                        "unsupported key type `{kty}`/`{crv}`; use OKP/Ed25519 or EC/P-256"
                    ),
                })
            }
        };
        let expected_alg = match alg {
            KeyAlgorithm::EdDSA => "EdDSA",
            KeyAlgorithm::ES256 => "ES256",
        };
        match self.alg.as_deref() {
            None => self.alg = Some(expected_alg.to_owned()),
            Some(a) if a == expected_alg => {}
            Some(a) => {
                return Err(DomainError::InvalidKey {
                    reason: format!("`alg` `{a}` does not match the key type"),
                })
            }
        }
        if self.kid.is_none() {
            self.kid = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(thumb_input.as_bytes())));
        }
        if self
            .kid
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.len() > 128)
        {
            return Err(DomainError::InvalidKey {
                reason: "`kid` must be 1 to 128 characters".into(),
            });
        }
        Ok((self, alg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed_jwk(x: &[u8; 32]) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: None,
            kid: None,
            alg: None,
            use_: None,
            d: None,
        }
    }

    #[test]
    fn ed25519_key_gets_thumbprint_kid() -> Result<(), DomainError> {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let (jwk, alg) = ed_jwk(sk.verifying_key().as_bytes()).validate()?;
        assert_eq!(alg, KeyAlgorithm::EdDSA);
        assert_eq!(jwk.alg.as_deref(), Some("EdDSA"));
        assert_eq!(jwk.kid.as_deref().map(str::len), Some(43));
        Ok(())
    }

    #[test]
    fn rfc8037_thumbprint_vector() -> Result<(), DomainError> {
        // RFC 8037, appendix A.3.
        let jwk = Jwk {
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            ..ed_jwk(&[0; 32])
        };
        let (jwk, _) = jwk.validate()?;
        assert_eq!(
            jwk.kid.as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
        Ok(())
    }

    #[test]
    fn private_keys_and_bad_points_are_refused() {
        let with_d = Jwk {
            d: Some("secret".into()),
            ..ed_jwk(&[1; 32])
        };
        assert!(matches!(
            with_d.validate(),
            Err(DomainError::InvalidKey { .. })
        ));
        let short = Jwk {
            x: "AAAA".into(),
            ..ed_jwk(&[0; 32])
        };
        assert!(short.validate().is_err());
        let ec_off_curve = Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode([1u8; 32]),
            y: Some(URL_SAFE_NO_PAD.encode([1u8; 32])),
            ..ed_jwk(&[0; 32])
        };
        assert!(ec_off_curve.validate().is_err());
        let rsa = Jwk {
            kty: "RSA".into(),
            crv: "".into(),
            ..ed_jwk(&[0; 32])
        };
        assert!(rsa.validate().is_err());
    }

    #[test]
    fn p256_key_validates() -> Result<(), DomainError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let sk = p256::SecretKey::from_slice(&[3u8; 32])
            .map_err(|_| DomainError::invalid("sk", "test"))?;
        let point = sk.public_key().to_encoded_point(false);
        let (x, y) = (point.x().map(|c| c.to_vec()), point.y().map(|c| c.to_vec()));
        let jwk = Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(x.unwrap_or_default()),
            y: Some(URL_SAFE_NO_PAD.encode(y.unwrap_or_default())),
            ..ed_jwk(&[0; 32])
        };
        let (_, alg) = jwk.validate()?;
        assert_eq!(alg, KeyAlgorithm::ES256);
        Ok(())
    }
}
