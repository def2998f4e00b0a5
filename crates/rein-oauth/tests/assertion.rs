//! Client assertions (RFC 7523 private_key_jwt): what is accepted and every refusal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use p256::elliptic_curve::ops::Neg as _;
use rein_core::key::KeyAlgorithm;
use rein_oauth::{AssertionPolicy, ClientAssertion, ErrorCode, OAuthError, ReplayCache};
use serde_json::{json, Value};

fn policy() -> AssertionPolicy {
    AssertionPolicy::new(TOKEN_ENDPOINT)
}

/// Parses and verifies `token` for an agent holding `keys` at `now()`.
fn check(token: &str, keys: &[&AgentSigner]) -> Result<rein_oauth::AssertionClaims, OAuthError> {
    let parsed = ClientAssertion::parse(token)?;
    parsed.verify(&agent(keys), &policy(), now())
}

#[track_caller]
fn refused(result: Result<rein_oauth::AssertionClaims, OAuthError>, needle: &str) {
    match result {
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidClient, "{e}");
            assert!(
                e.description().contains(needle),
                "`{}` should mention `{needle}`",
                e.description()
            );
        }
        Ok(c) => panic!("accepted: {c:?}"),
    }
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[test]
fn eddsa_assertion_is_accepted() {
    let ed = AgentSigner::ed(1);
    let c = check(&assertion(&ed, &claims()), &[&ed]).unwrap();
    assert_eq!(c.agent.as_str(), AGENT);
    assert_eq!(c.alg, KeyAlgorithm::EdDSA);
    assert_eq!(c.kid, ed.kid());
    assert_eq!(c.jti, "a1b2c3d4-0001");
    assert_eq!(c.expires_at, now() + secs(60));
    assert_eq!(c.audience, vec![TOKEN_ENDPOINT.to_owned()]);
}

#[test]
fn es256_assertion_is_accepted_with_low_and_high_s() {
    let es = AgentSigner::es(3);
    let ed = AgentSigner::ed(1);
    let token = assertion(&es, &claims());
    let c = check(&token, &[&ed, &es]).unwrap();
    assert_eq!(c.alg, KeyAlgorithm::ES256);

    // The same signature with s replaced by n - s is also valid ECDSA; OpenSSL-based signers
    // (PyJWT) produce either form, so both must verify.
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&common::b64_decode(sig)).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, s.as_ref().neg()).unwrap();
    let other = format!("{input}.{}", b64(&flipped.to_bytes()));
    assert_ne!(other, token);
    assert!(check(&other, &[&es]).is_ok());
}

#[test]
fn without_kid_the_only_key_is_used() {
    let ed = AgentSigner::ed(1);
    let token = jws(&json!({"alg": "EdDSA"}), &claims(), |m| ed.sign(m));
    assert!(check(&token, &[&ed]).is_ok());
    // With two registered keys the assertion must say which.
    refused(
        check(&token, &[&ed, &AgentSigner::ed(2)]),
        "several registered keys",
    );
    refused(check(&token, &[]), "no registered key");
}

#[test]
fn wrong_key_is_refused() {
    let registered = AgentSigner::ed(1);
    let attacker = AgentSigner::ed(9);
    // Claims the registered kid, signed with another key.
    let token = jws(&header(&registered), &claims(), |m| attacker.sign(m));
    refused(check(&token, &[&registered]), "signature does not verify");
    // Signed by a key the agent never registered, with its own kid.
    refused(
        check(&assertion(&attacker, &claims()), &[&registered]),
        "no registered key with kid",
    );
}

#[test]
fn unknown_kid_is_refused() {
    let ed = AgentSigner::ed(1);
    let token = jws(&json!({"alg": "EdDSA", "kid": "nope"}), &claims(), |m| {
        ed.sign(m)
    });
    refused(check(&token, &[&ed]), "no registered key with kid `nope`");
}

#[test]
fn alg_none_is_refused() {
    let ed = AgentSigner::ed(1);
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let e = ClientAssertion::parse(&unsigned).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidClient);
    let with_sig = jws(&json!({"alg": "none", "kid": ed.kid()}), &claims(), |_| {
        vec![1]
    });
    refused(check(&with_sig, &[&ed]), "alg: none");
    let cased = jws(&json!({"alg": "None"}), &claims(), |_| vec![1]);
    refused(check(&cased, &[&ed]), "not accepted");
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    for signer in [AgentSigner::ed(1), AgentSigner::es(3)] {
        // The classic key-confusion attack: HMAC keyed with the public key bytes or its JWK.
        let jwk = serde_json::to_string(&signer.public_jwk()).unwrap();
        for secret in [jwk.as_bytes().to_vec(), signer.public_jwk().x.into_bytes()] {
            let token = jws(
                &json!({"alg": "HS256", "kid": signer.kid()}),
                &claims(),
                |m| hmac_sha256(&secret, m),
            );
            refused(check(&token, &[&signer]), "shared-secret algorithm");
        }
    }
}

#[test]
fn rsa_and_other_algorithms_are_refused() {
    let ed = AgentSigner::ed(1);
    for alg in ["RS256", "PS256", "ES384", "ES256K", "Ed25519", "EdDSA "] {
        let token = jws(&json!({"alg": alg, "kid": ed.kid()}), &claims(), |m| {
            ed.sign(m)
        });
        refused(check(&token, &[&ed]), "use EdDSA or ES256");
    }
}

#[test]
fn alg_must_match_the_registered_key() {
    let ed = AgentSigner::ed(1);
    let token = jws(&json!({"alg": "ES256", "kid": ed.kid()}), &claims(), |m| {
        ed.sign(m)
    });
    refused(check(&token, &[&ed]), "does not match the registered key");
}

#[test]
fn expired_and_missing_exp_are_refused() {
    let ed = AgentSigner::ed(1);
    let t = now().timestamp();
    refused(
        check(
            &assertion(&ed, &with(claims(), "exp", json!(t - 1))),
            &[&ed],
        ),
        "expired",
    );
    // exp == now is expired: no leeway on exp.
    refused(
        check(&assertion(&ed, &with(claims(), "exp", json!(t))), &[&ed]),
        "expired",
    );
    refused(
        check(&assertion(&ed, &without(claims(), "exp")), &[&ed]),
        "needs `exp`",
    );
    refused(
        check(
            &assertion(&ed, &with(claims(), "exp", json!("soon"))),
            &[&ed],
        ),
        "well-formed JWT claims",
    );
}

#[test]
fn exp_too_far_ahead_is_refused_beyond_five_minutes_and_skew() {
    let ed = AgentSigner::ed(1);
    let t = now().timestamp();
    assert!(check(
        &assertion(&ed, &with(claims(), "exp", json!(t + 360))),
        &[&ed]
    )
    .is_ok());
    refused(
        check(
            &assertion(&ed, &with(claims(), "exp", json!(t + 361))),
            &[&ed],
        ),
        "more than 300 seconds ahead",
    );
    refused(
        check(
            &assertion(&ed, &with(claims(), "exp", json!(t + 86_400))),
            &[&ed],
        ),
        "more than 300 seconds ahead",
    );
}

#[test]
fn future_iat_and_nbf_are_refused_beyond_skew() {
    let ed = AgentSigner::ed(1);
    let t = now().timestamp();
    assert!(check(
        &assertion(&ed, &with(claims(), "iat", json!(t + 60))),
        &[&ed]
    )
    .is_ok());
    refused(
        check(
            &assertion(&ed, &with(claims(), "iat", json!(t + 61))),
            &[&ed],
        ),
        "`iat` is in the future",
    );
    refused(
        check(
            &assertion(&ed, &with(claims(), "nbf", json!(t + 61))),
            &[&ed],
        ),
        "not valid yet",
    );
    // Fractional NumericDates are accepted.
    assert!(check(
        &assertion(&ed, &with(claims(), "iat", json!(t as f64 + 0.5))),
        &[&ed]
    )
    .is_ok());
}

#[test]
fn audience_must_name_the_token_endpoint() {
    let ed = AgentSigner::ed(1);
    refused(
        check(
            &assertion(
                &ed,
                &with(claims(), "aud", json!("https://other.example/oauth2/token")),
            ),
            &[&ed],
        ),
        "does not name this token endpoint",
    );
    refused(
        check(&assertion(&ed, &without(claims(), "aud")), &[&ed]),
        "needs `aud`",
    );
    assert!(check(
        &assertion(
            &ed,
            &with(
                claims(),
                "aud",
                json!(["https://x.example", TOKEN_ENDPOINT])
            )
        ),
        &[&ed],
    )
    .is_ok());
    // The issuer identifier is accepted only when the policy says so.
    let token = assertion(&ed, &with(claims(), "aud", json!(ISSUER)));
    let parsed = ClientAssertion::parse(&token).unwrap();
    assert!(parsed.verify(&agent(&[&ed]), &policy(), now()).is_err());
    assert!(parsed
        .verify(&agent(&[&ed]), &policy().with_audience(ISSUER), now())
        .is_ok());
}

#[test]
fn iss_must_equal_sub_and_be_an_agent_spiffe_id() {
    let ed = AgentSigner::ed(1);
    let other = "spiffe://rein.local/agent/payments/other-bot/prod";
    refused(
        check(
            &assertion(&ed, &with(claims(), "iss", json!(other))),
            &[&ed],
        ),
        "`iss` and `sub` differ",
    );
    refused(
        check(&assertion(&ed, &without(claims(), "iss")), &[&ed]),
        "needs `iss` and `sub`",
    );
    let not_spiffe = with(
        with(claims(), "iss", json!("invoice-bot")),
        "sub",
        json!("invoice-bot"),
    );
    refused(
        check(&assertion(&ed, &not_spiffe), &[&ed]),
        "not an agent SPIFFE ID",
    );
    // An assertion from another agent is not verified against this agent's record.
    let foreign = with(with(claims(), "iss", json!(other)), "sub", json!(other));
    refused(
        check(&assertion(&ed, &foreign), &[&ed]),
        "not from the agent it was checked against",
    );
}

#[test]
fn jti_is_required_and_bounded() {
    let ed = AgentSigner::ed(1);
    refused(
        check(&assertion(&ed, &without(claims(), "jti")), &[&ed]),
        "needs a `jti`",
    );
    refused(
        check(&assertion(&ed, &with(claims(), "jti", json!(""))), &[&ed]),
        "needs a `jti`",
    );
    assert!(check(
        &assertion(&ed, &with(claims(), "jti", json!("j".repeat(256)))),
        &[&ed]
    )
    .is_ok());
    refused(
        check(
            &assertion(&ed, &with(claims(), "jti", json!("j".repeat(257)))),
            &[&ed],
        ),
        "longer than 256 bytes",
    );
}

#[test]
fn crit_and_foreign_typ_are_refused() {
    let ed = AgentSigner::ed(1);
    let token = jws(
        &json!({"alg": "EdDSA", "kid": ed.kid(), "crit": ["b64"], "b64": false}),
        &claims(),
        |m| ed.sign(m),
    );
    refused(check(&token, &[&ed]), "`crit`");
    // An access token (typ at+jwt) is not a client assertion.
    let token = jws(
        &json!({"alg": "EdDSA", "kid": ed.kid(), "typ": "at+jwt"}),
        &claims(),
        |m| ed.sign(m),
    );
    refused(check(&token, &[&ed]), "typ `at+jwt` is not accepted");
    let token = jws(
        &json!({"alg": "EdDSA", "kid": ed.kid(), "typ": "client-authentication+jwt"}),
        &claims(),
        |m| ed.sign(m),
    );
    assert!(check(&token, &[&ed]).is_ok());
}

#[test]
fn malformed_jwts_are_refused_without_echoing_them() {
    let ed = AgentSigner::ed(1);
    let good = assertion(&ed, &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (pl, sig) = rest.split_once('.').unwrap();
    let cases = [
        String::new(),
        "not-a-jwt".to_owned(),
        format!("{h}.{pl}"),
        format!("{h}.{pl}.{sig}.{sig}"),
        format!("{h}.{pl}.{sig}.{sig}.{sig}"),
        format!("{h}=.{pl}.{sig}"),
        format!("{h}.{pl}.{sig}=="),
        format!("{h}.{pl}.!!!"),
        format!("{}.{pl}.{sig}", b64(b"not json")),
        format!("{h}.{}.{sig}", b64(b"[1,2,3]")),
        format!("{h}.{}.{sig}", b64(b"{\"iss\": 1}")),
        format!("{}.{pl}.{sig}", b64(br#"{"alg":"EdDSA","alg":"none"}"#)),
        "x".repeat(9000),
    ];
    for bad in cases {
        let e = ClientAssertion::parse(&bad)
            .and_then(|a| a.verify(&agent(&[&ed]), &policy(), now()))
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidClient, "{bad}: {e}");
        if bad.len() > 8 {
            assert!(!e.description().contains(&bad), "{e}");
        }
    }
}

#[test]
fn tampered_payload_and_truncated_signature_are_refused() {
    let ed = AgentSigner::ed(1);
    let good = assertion(&ed, &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let other = b64(with(claims(), "exp", json!(now().timestamp() + 300))
        .to_string()
        .as_bytes());
    refused(
        check(&format!("{h}.{other}.{sig}"), &[&ed]),
        "signature does not verify",
    );
    refused(
        check(
            &format!("{h}.{}.{}", rest.split_once('.').unwrap().0, &sig[..40]),
            &[&ed],
        ),
        "signature does not verify",
    );
    let es = AgentSigner::es(3);
    let good = assertion(&es, &claims());
    let flipped = format!("{}A", &good[..good.len() - 1]);
    let flipped = if flipped == good {
        format!("{}B", &good[..good.len() - 1])
    } else {
        flipped
    };
    assert!(check(&flipped, &[&es]).is_err());
}

#[test]
fn debug_never_shows_the_assertion() {
    let ed = AgentSigner::ed(1);
    let token = assertion(&ed, &claims());
    let parsed = ClientAssertion::parse(&token).unwrap();
    let shown = format!("{parsed:?}");
    assert!(shown.contains(AGENT));
    assert!(!shown.contains(token.split('.').nth(2).unwrap()));
    assert!(!shown.contains(token.split('.').nth(1).unwrap()));
}

#[test]
fn replayed_jti_is_accepted_once_then_refused_until_it_expires() {
    let ed = AgentSigner::ed(1);
    let cache = ReplayCache::default();
    let agent = agent(&[&ed]);
    let token = assertion(&ed, &claims());
    let accept = |at| -> Result<(), OAuthError> {
        let c = ClientAssertion::parse(&token)?.verify(&agent, &policy(), at)?;
        cache.check_and_insert(c.agent.as_str(), &c.jti, c.expires_at, at)
    };
    accept(now()).unwrap();
    let again = accept(now() + secs(30)).unwrap_err();
    assert_eq!(again.code(), ErrorCode::InvalidClient);
    assert!(again.description().contains("already been used"));
    // Once the assertion expired the assertion is refused on its own, and the cache has
    // forgotten the jti: a fresh assertion reusing it is accepted again.
    assert!(accept(now() + secs(60)).is_err());
    let later = now() + secs(120);
    let reused = assertion(
        &ed,
        &with(
            with(claims(), "exp", json!(later.timestamp() + 60)),
            "iat",
            json!(later.timestamp()),
        ),
    );
    let c = ClientAssertion::parse(&reused)
        .unwrap()
        .verify(&agent, &policy(), later)
        .unwrap();
    assert_eq!(c.jti, "a1b2c3d4-0001");
    cache
        .check_and_insert(c.agent.as_str(), &c.jti, c.expires_at, later)
        .unwrap();
    assert_eq!(cache.len(), 1);
}
