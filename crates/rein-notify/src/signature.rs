//! Signing webhook bodies, and the verify helper shipped to receivers.
//!
//! The [`SIGNATURE_HEADER`] value is `t=<unix seconds>,v1=<hex>` where `<hex>` is the lowercase
//! hex HMAC-SHA256, keyed with the webhook's secret, over the ASCII timestamp, a `.`, then the
//! raw body bytes. Binding the timestamp into the MAC is what makes a captured request useless
//! after [`DEFAULT_TOLERANCE_SECS`]: the receiver rejects a timestamp outside its tolerance, and
//! changing the timestamp breaks the signature. Within the tolerance, receivers drop duplicates
//! by the [`DELIVERY_HEADER`] id (retries of one delivery carry the same id).
//!
//! While a secret is rotated the header may carry several `v1=` entries (one per secret); a
//! receiver holding any one of them accepts the request.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "rein-signature";
/// Header carrying the delivery id, the same on every attempt of one delivery, so receivers can
/// drop duplicates.
pub const DELIVERY_HEADER: &str = "rein-delivery";
/// Header carrying the event kind, e.g. `approval.requested`.
pub const EVENT_HEADER: &str = "rein-event";
/// Default tolerance, in seconds, between the signed timestamp and the receiver's clock.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Length in hex characters of an HMAC-SHA256.
const HEX_LEN: usize = 64;

/// Why [`verify`] refused a request. Messages never include the secret or the expected MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header does not have the form `t=<unix seconds>,v1=<64 hex>[,v1=…]`.
    #[error("malformed {SIGNATURE_HEADER} header: {0}")]
    Malformed(&'static str),
    /// No `v1` entry matches: wrong secret, forged signature or altered body.
    #[error("signature mismatch: no v1 signature matches the body (wrong secret, forged signature or altered body)")]
    Mismatch,
    /// The signature is genuine but older than the tolerance: a replay or a very late delivery.
    #[error("signature expired: signed {age_secs} s ago, beyond the {tolerance_secs} s tolerance (possible replay)")]
    Expired {
        /// Seconds between the signed timestamp and now.
        age_secs: u64,
        /// The tolerance the receiver applied.
        tolerance_secs: i64,
    },
    /// The signature is genuine but its timestamp is further ahead than the tolerance.
    #[error("signature timestamp is {ahead_secs} s in the future, beyond the {tolerance_secs} s tolerance (clock skew or forged timestamp)")]
    Future {
        /// Seconds the signed timestamp is ahead of now.
        ahead_secs: u64,
        /// The tolerance the receiver applied.
        tolerance_secs: i64,
    },
}

/// Returns the [`SIGNATURE_HEADER`] value for `body` sent at `timestamp` (unix seconds);
/// `None` if HMAC-SHA256 refuses the key.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<String> {
    let tag = mac(secret, timestamp, body)?.finalize().into_bytes();
    Some(format!("t={timestamp},v1={}", hex::encode(tag)))
}

/// Checks a received [`SIGNATURE_HEADER`] value against the raw `body` (exactly the bytes
/// received, before any JSON parsing) and the receiver's clock `now` (unix seconds).
///
/// Parsing is strict: exactly one `t`, at least one `v1` of 64 hex characters, no spaces, no
/// other entries except future schemes (`v2`, … are ignored). Any `v1` matching (compared in
/// constant time) passes the signature check; then the timestamp must be within
/// `tolerance_secs` of `now` in either direction ([`DEFAULT_TOLERANCE_SECS`] is a good value).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let (timestamp, signatures) = parse(header)?;
    let expected = mac(secret, timestamp, body).ok_or(VerifyError::Mismatch)?;
    if !signatures
        .iter()
        .any(|signature| expected.clone().verify_slice(signature).is_ok())
    {
        return Err(VerifyError::Mismatch);
    }
    let tolerance = tolerance_secs.max(0);
    let tolerance_abs = tolerance.unsigned_abs();
    if timestamp <= now {
        let age_secs = now.abs_diff(timestamp);
        if age_secs > tolerance_abs {
            return Err(VerifyError::Expired {
                age_secs,
                tolerance_secs: tolerance,
            });
        }
    } else {
        let ahead_secs = timestamp.abs_diff(now);
        if ahead_secs > tolerance_abs {
            return Err(VerifyError::Future {
                ahead_secs,
                tolerance_secs: tolerance,
            });
        }
    }
    Ok(())
}

/// Splits a header into its timestamp and decoded `v1` signatures.
fn parse(header: &str) -> Result<(i64, Vec<Vec<u8>>), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .split_once('=')
            .ok_or(VerifyError::Malformed("every entry must be key=value"))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(VerifyError::Malformed("more than one t= entry"));
                }
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VerifyError::Malformed("t= must be unix seconds"));
                }
                let t = value
                    .parse::<i64>()
                    .map_err(|_| VerifyError::Malformed("t= must be unix seconds"))?;
                timestamp = Some(t);
            }
            "v1" => {
                if value.len() != HEX_LEN {
                    return Err(VerifyError::Malformed("v1= must be 64 hex characters"));
                }
                let signature = hex::decode(value)
                    .map_err(|_| VerifyError::Malformed("v1= must be 64 hex characters"))?;
                signatures.push(signature);
            }
            other if is_future_scheme(other) => {}
            _ => return Err(VerifyError::Malformed("unknown entry")),
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed("missing t= entry"))?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed("missing v1= entry"));
    }
    Ok((timestamp, signatures))
}

/// `v2`, `v3`, …: signature schemes a later sender may add next to `v1`.
fn is_future_scheme(key: &str) -> bool {
    key.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The HMAC over `<timestamp>.<body>`; `None` if the key is refused (HMAC accepts keys of any
/// length, so this does not happen, but it is not assumed).
fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // The framing: the MAC over "100." and the body, by the hmac crate directly.
        let header = sign(b"Jefe", 100, b"body").unwrap();
        let mut direct = <HmacSha256 as KeyInit>::new_from_slice(b"Jefe").unwrap();
        direct.update(b"100.body");
        let expected = format!("t=100,v1={}", hex::encode(direct.finalize().into_bytes()));
        assert_eq!(header, expected);
    }

    #[test]
    fn rotation_and_future_schemes() {
        let body = br#"{"a":1}"#;
        let old = sign(b"old", 100, body).unwrap();
        let new = sign(b"new", 100, body).unwrap();
        let both = format!("{old},{},v2=whatever", new.trim_start_matches("t=100,"));
        assert_eq!(verify(b"old", &both, body, 100, 300), Ok(()));
        assert_eq!(verify(b"new", &both, body, 100, 300), Ok(()));
        assert_eq!(
            verify(b"other", &both, body, 100, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn strict_parsing() {
        let good = sign(b"s", 100, b"x").unwrap();
        let v1 = good.trim_start_matches("t=100,");
        for bad in [
            "",
            "t=100",
            v1,
            &format!("t=100,t=100,{v1}"),
            &format!("t=-5,{v1}"),
            &format!("t=100, {v1}"),
            &format!("t=100,{v1},x=1"),
            "t=100,v1=abc",
            &format!("t=100,v1={}", "zz".repeat(32)),
        ] {
            assert!(
                matches!(
                    verify(b"s", bad, b"x", 100, 300),
                    Err(VerifyError::Malformed(_))
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn tolerance_both_ways() {
        let header = sign(b"s", 1_000, b"x").unwrap();
        assert_eq!(verify(b"s", &header, b"x", 1_300, 300), Ok(()));
        assert_eq!(verify(b"s", &header, b"x", 700, 300), Ok(()));
        assert!(matches!(
            verify(b"s", &header, b"x", 1_301, 300),
            Err(VerifyError::Expired { age_secs: 301, .. })
        ));
        assert!(matches!(
            verify(b"s", &header, b"x", 699, 300),
            Err(VerifyError::Future {
                ahead_secs: 301,
                ..
            })
        ));
        assert!(matches!(
            verify(b"s", &header, b"x", i64::MAX, 300),
            Err(VerifyError::Expired { .. })
        ));
    }
}
