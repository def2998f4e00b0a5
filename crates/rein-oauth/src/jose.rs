//! JWS compact serialization (RFC 7515 §7.1) framing: splitting, strict base64url, the protected
//! header and JWT NumericDate / audience claim shapes. Signatures are computed and checked by
//! `ed25519-dalek` and `p256` in the callers; nothing cryptographic happens here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};

/// The longest compact JWS accepted (client assertions and access tokens alike), in bytes.
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// A compact JWS split into its parts, with header and payload decoded.
pub(crate) struct Compact<'a> {
    /// `BASE64URL(header) . BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded protected header.
    pub header: Header,
    /// The decoded payload (JSON, not yet parsed).
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// The protected header members Rein looks at. Others are ignored, except `crit`, whose
/// presence refuses the token: Rein understands no header extension.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    /// Signature algorithm.
    pub alg: String,
    /// Key ID.
    #[serde(default)]
    pub kid: Option<String>,
    /// Media type of the complete JWS.
    #[serde(default)]
    pub typ: Option<String>,
    /// Critical extensions; any value (even an empty list, invalid per RFC 7515) refuses.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// Strict base64url: no padding, no whitespace, non-canonical trailing bits refused.
pub(crate) fn b64_decode(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).ok()
}

/// Base64url without padding.
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Splits and decodes a compact JWS. The reasons are static and never echo the input.
pub(crate) fn split(token: &str) -> Result<Compact<'_>, &'static str> {
    if token.is_empty() {
        return Err("the JWT is empty");
    }
    if token.len() > MAX_JWT_LEN {
        return Err("the JWT is longer than 8 KiB");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the JWT must be a compact JWS of three base64url parts separated by `.` (JWE and unsecured JWTs are not accepted)");
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err("the JWT has an empty part; unsigned JWTs are not accepted");
    }
    let header_bytes = b64_decode(h).ok_or("the JWT header is not base64url without padding")?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|_| "the JWT header is not a JSON object with a string `alg`")?;
    let payload = b64_decode(p).ok_or("the JWT payload is not base64url without padding")?;
    let signature = b64_decode(s).ok_or("the JWT signature is not base64url without padding")?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or("the JWT is malformed")?;
    Ok(Compact {
        signing_input,
        header,
        payload,
        signature,
    })
}

/// A JWT NumericDate (RFC 7519 §2): seconds since the epoch, an integer or a JSON number with a
/// fraction (floored). Absent stays `None`.
pub(crate) fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n: Option<serde_json::Number> = Option::deserialize(d)?;
    let Some(n) = n else { return Ok(None) };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
        _ => Err(serde::de::Error::custom("a NumericDate is out of range")),
    }
}

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// The audiences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(a) => vec![a],
            Self::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_parts_only() {
        let h = b64_encode(br#"{"alg":"EdDSA"}"#);
        let p = b64_encode(b"{}");
        let ok = format!("{h}.{p}.AAAA");
        let c = split(&ok);
        assert!(c.is_ok());
        if let Ok(c) = c {
            assert_eq!(c.signing_input, format!("{h}.{p}"));
            assert_eq!(c.header.alg, "EdDSA");
        }
        assert!(split(&format!("{h}.{p}")).is_err());
        assert!(split(&format!("{h}.{p}.")).is_err());
        assert!(split(&format!("{h}.{p}.AAAA.AAAA.AAAA")).is_err());
        assert!(split(&format!("{h}=.{p}.AAAA")).is_err());
        assert!(split(&format!("{h}.{p}.AAA+")).is_err());
        assert!(split(&"a".repeat(MAX_JWT_LEN + 1)).is_err());
        // Non-canonical trailing bits ("AB" decodes to one byte with leftover bits set).
        assert!(split(&format!("{h}.{p}.AB")).is_err());
        let no_alg = b64_encode(br#"{"typ":"JWT"}"#);
        assert!(split(&format!("{no_alg}.{p}.AAAA")).is_err());
    }

    #[test]
    fn numeric_dates_accept_integers_and_fractions() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "numeric_date")]
            exp: Option<i64>,
        }
        let t: Result<T, _> = serde_json::from_str(r#"{"exp": 1700000000.9}"#);
        assert_eq!(t.ok().and_then(|t| t.exp), Some(1_700_000_000));
        let t: Result<T, _> = serde_json::from_str(r#"{}"#);
        assert_eq!(t.ok().and_then(|t| t.exp), None);
        assert!(serde_json::from_str::<T>(r#"{"exp": "soon"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"exp": 1e300}"#).is_err());
    }
}
