//! Minting task-scoped access tokens and verifying them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::Duration;
use common::*;
use rein_core::grant::{Grant, GrantStatus};
use rein_core::id::{ActionName, SystemName};
use rein_core::schedule::{Day, Schedule, Window};
use rein_oauth::{
    jwks, mint, system_audience, verify_access_token, AccessTokenClaims, ErrorCode, MintRequest,
    MintedToken, NoRevocation, OAuthError, TaskId, TokenSigner, TokenVerifier,
};
use serde_json::{json, Value};

fn signer() -> TokenSigner {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    TokenSigner::new(rein_keys::key_id(&key.verifying_key()), key)
}

fn keys(signer: &TokenSigner) -> HashMap<String, ed25519_dalek::VerifyingKey> {
    HashMap::from([(signer.kid().to_owned(), signer.verifying_key())])
}

fn billing() -> SystemName {
    p("billing-db")
}

fn aud() -> String {
    system_audience(&billing())
}

struct Case {
    actions: BTreeSet<ActionName>,
    grants: Vec<Grant>,
    ttl: Option<u32>,
    now: chrono::DateTime<chrono::Utc>,
}

impl Case {
    fn new(list: &[&str], grants: Vec<Grant>) -> Self {
        Self {
            actions: actions(list),
            grants,
            ttl: None,
            now: now(),
        }
    }

    fn mint(&self) -> Result<MintedToken, OAuthError> {
        let agent = agent(&[]);
        let system = billing();
        let task: TaskId = p("task-7");
        mint(
            &MintRequest {
                agent: &agent,
                system: &system,
                actions: &self.actions,
                grants: &self.grants,
                task_id: &task,
                requested_ttl_secs: self.ttl,
                now: self.now,
            },
            &signer(),
            ISSUER,
        )
    }
}

fn ttl_of(case: Case) -> u32 {
    let t = case.mint().unwrap();
    assert_eq!(i64::from(t.expires_in), t.claims.exp - t.claims.iat);
    t.expires_in
}

fn decode_part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&b64_decode(token.split('.').nth(i).unwrap())).unwrap()
}

#[test]
fn minted_token_has_the_rfc9068_shape() {
    let t = Case::new(
        &["select_rows", "insert_row"],
        vec![grant(1, &["select_rows", "insert_row"])],
    )
    .mint()
    .unwrap();
    let header = decode_part(&t.access_token, 0);
    assert_eq!(
        header,
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": signer().kid()})
    );
    let claims = decode_part(&t.access_token, 1);
    let n = now().timestamp();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], AGENT);
    assert_eq!(claims["client_id"], AGENT);
    assert_eq!(claims["aud"], "rein:system:billing-db");
    assert_eq!(claims["scope"], "insert_row select_rows");
    assert_eq!(claims["iat"], n);
    assert_eq!(claims["nbf"], n);
    assert_eq!(claims["exp"], n + 300);
    assert_eq!(claims["task_id"], "task-7");
    assert_eq!(claims["env"], "prod");
    assert_eq!(claims["owner"], "payments");
    assert_eq!(claims["grant_ids"], json!([grant(1, &[]).id.as_str()]));
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.starts_with("tok_") && jti.len() == 36);
    // 128 random bits: two mints never share a jti.
    let again = Case::new(&["select_rows"], vec![grant(1, &["select_rows"])])
        .mint()
        .unwrap();
    assert_ne!(again.claims.jti, jti);
    // The response body and Debug.
    let body = t.response_body();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "insert_row select_rows");
    assert!(!format!("{t:?}").contains(&t.access_token));
    assert!(!format!("{:?}", signer()).contains("42"));
}

#[test]
fn ttl_defaults_to_five_minutes_and_honours_the_request() {
    assert_eq!(
        ttl_of(Case::new(
            &["select_rows"],
            vec![grant(1, &["select_rows"])]
        )),
        300
    );
    let mut c = Case::new(&["select_rows"], vec![grant(1, &["select_rows"])]);
    c.ttl = Some(60);
    assert_eq!(ttl_of(c), 60);
    let mut c = Case::new(&["select_rows"], vec![grant(1, &["select_rows"])]);
    c.ttl = Some(3600);
    assert_eq!(ttl_of(c), 3600);
}

#[test]
fn ttl_is_capped_by_the_grant_max_token_ttl() {
    let mut g = grant(1, &["select_rows"]);
    g.max_token_ttl_secs = Some(120);
    assert_eq!(ttl_of(Case::new(&["select_rows"], vec![g.clone()])), 120);
    let mut c = Case::new(&["select_rows"], vec![g]);
    c.ttl = Some(3600);
    assert_eq!(ttl_of(c), 120);
}

#[test]
fn ttl_never_outlives_the_grant() {
    let mut g = grant(1, &["select_rows"]);
    g.expires_at = now() + Duration::seconds(90) + Duration::milliseconds(700);
    let t = Case::new(&["select_rows"], vec![g.clone()]).mint().unwrap();
    assert_eq!(t.expires_in, 90);
    assert!(t.claims.expires_at().unwrap() <= g.expires_at);
    // Less than a second left: no token.
    g.expires_at = now() + Duration::milliseconds(500);
    let e = Case::new(&["select_rows"], vec![g]).mint().unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidScope);
}

#[test]
fn ttl_has_a_hard_cap_and_bad_requests_are_refused() {
    let mut c = Case::new(&["select_rows"], vec![grant(1, &["select_rows"])]);
    c.ttl = Some(3601);
    let e = c.mint().unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(e.description().contains("1 to 3600"));
    c.ttl = Some(0);
    assert_eq!(c.mint().unwrap_err().code(), ErrorCode::InvalidRequest);
}

#[test]
fn every_used_grant_limits_the_ttl_and_the_longest_covering_grant_is_chosen() {
    let mut short = grant(1, &["select_rows", "insert_row"]);
    short.max_token_ttl_secs = Some(30);
    let mut long = grant(2, &["select_rows"]);
    long.max_token_ttl_secs = Some(600);
    // select_rows is covered by both: the longer one is used. insert_row only by `short`.
    let mut c = Case::new(
        &["select_rows", "insert_row"],
        vec![short.clone(), long.clone()],
    );
    c.ttl = Some(1000);
    let t = c.mint().unwrap();
    assert_eq!(t.expires_in, 30);
    let mut ids = vec![short.id.clone(), long.id.clone()];
    ids.sort();
    assert_eq!(t.claims.grant_ids, ids);
    // Only select_rows: the short grant is not needed, so it does not shorten the token.
    let mut c = Case::new(&["select_rows"], vec![short, long.clone()]);
    c.ttl = Some(1000);
    let t = c.mint().unwrap();
    assert_eq!(t.expires_in, 600);
    assert_eq!(t.claims.grant_ids, vec![long.id]);
}

#[test]
fn ungranted_actions_are_invalid_scope_naming_them() {
    let e = Case::new(
        &["select_rows", "delete_row", "drop_table"],
        vec![grant(1, &["select_rows"])],
    )
    .mint()
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidScope);
    match &e {
        OAuthError::ScopeNotGranted { system, uncovered } => {
            assert_eq!(system.as_str(), "billing-db");
            assert_eq!(
                uncovered,
                &vec![p::<ActionName>("delete_row"), p("drop_table")]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(e.description().contains("`delete_row`, `drop_table`"));
    assert_eq!(e.to_json()["error"], "invalid_scope");
    let e = Case::new(&[], vec![grant(1, &["select_rows"])])
        .mint()
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidScope);
}

#[test]
fn expired_revoked_pending_and_foreign_grants_do_not_cover() {
    let uncovered = |g: Grant| {
        let e = Case::new(&["select_rows"], vec![g]).mint().unwrap_err();
        assert!(matches!(e, OAuthError::ScopeNotGranted { .. }), "{e}");
    };
    let mut g = grant(1, &["select_rows"]);
    g.expires_at = now();
    uncovered(g);
    let mut g = grant(1, &["select_rows"]);
    g.status = GrantStatus::Revoked;
    uncovered(g);
    let mut g = grant(1, &["select_rows"]);
    g.status = GrantStatus::Requested;
    uncovered(g);
    let mut g = grant(1, &["select_rows"]);
    g.agent = p("spiffe://rein.local/agent/payments/other-bot/prod");
    uncovered(g);
    let mut g = grant(1, &["select_rows"]);
    g.system = p("crm");
    uncovered(g);
}

#[test]
fn a_scheduled_grant_covers_only_inside_its_window() {
    let mut g = grant(1, &["select_rows"]);
    // 2026-06-01 is a Monday; now() is 12:00 UTC.
    g.schedule = Some(Schedule {
        timezone: "UTC".into(),
        windows: vec![Window {
            days: vec![Day::Mon],
            start: p("00:00"),
            end: p("01:00"),
        }],
    });
    let e = Case::new(&["select_rows"], vec![g.clone()])
        .mint()
        .unwrap_err();
    assert!(matches!(e, OAuthError::ScopeNotGranted { .. }));
    let mut c = Case::new(&["select_rows"], vec![g]);
    c.now = p("2026-06-01T00:30:00Z");
    assert!(c.mint().is_ok());
}

fn minted() -> MintedToken {
    Case::new(&["select_rows"], vec![grant(1, &["select_rows"])])
        .mint()
        .unwrap()
}

#[test]
fn minted_token_verifies() {
    let t = minted();
    let s = signer();
    let claims = verify_access_token(
        &t.access_token,
        &aud(),
        now(),
        &keys(&s),
        ISSUER,
        &NoRevocation,
    )
    .unwrap();
    assert_eq!(claims, t.claims);
    assert!(claims.allows(&p("select_rows")));
    assert!(!claims.allows(&p("insert_row")));
    assert_eq!(claims.system(), Some(billing()));
    // Just before expiry it still verifies; the verifier struct agrees.
    let v = TokenVerifier::new(ISSUER, keys(&s));
    assert!(v
        .verify(
            &t.access_token,
            &aud(),
            now() + Duration::seconds(299),
            &NoRevocation
        )
        .is_ok());
}

#[track_caller]
fn invalid(result: Result<AccessTokenClaims, OAuthError>, needle: &str) {
    let e = result.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidToken, "{e}");
    assert!(e.description().contains(needle), "{e}");
}

#[test]
fn wrong_audience_and_issuer_are_refused() {
    let t = minted();
    let k = keys(&signer());
    invalid(
        verify_access_token(
            &t.access_token,
            "rein:system:crm",
            now(),
            &k,
            ISSUER,
            &NoRevocation,
        ),
        "not for this system",
    );
    invalid(
        verify_access_token(
            &t.access_token,
            &aud(),
            now(),
            &k,
            "https://evil.example",
            &NoRevocation,
        ),
        "not issued by this Rein",
    );
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let t = minted();
    let k = keys(&signer());
    let v = |at| verify_access_token(&t.access_token, &aud(), at, &k, ISSUER, &NoRevocation);
    invalid(v(now() + Duration::seconds(300)), "expired");
    invalid(v(now() + Duration::days(1)), "expired");
    // Minted on a replica whose clock is ahead: 60 s of skew on nbf, not more.
    assert!(v(now() - Duration::seconds(60)).is_ok());
    invalid(v(now() - Duration::seconds(61)), "not valid yet");
    let strict = TokenVerifier::new(ISSUER, keys(&signer())).with_leeway_secs(0);
    assert!(strict
        .verify(
            &t.access_token,
            &aud(),
            now() - Duration::seconds(1),
            &NoRevocation
        )
        .is_err());
}

#[test]
fn tampered_tokens_are_refused() {
    let t = minted();
    let k = keys(&signer());
    let parts: Vec<&str> = t.access_token.split('.').collect();
    // Widen the scope in the payload, keep the signature.
    let mut claims = decode_part(&t.access_token, 1);
    claims["scope"] = json!("select_rows drop_table");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    );
    invalid(
        verify_access_token(&forged, &aud(), now(), &k, ISSUER, &NoRevocation),
        "signature does not verify",
    );
    // Change the header (typ JWT) and keep the signature.
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": signer().kid()});
    let retyped = format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    invalid(
        verify_access_token(&retyped, &aud(), now(), &k, ISSUER, &NoRevocation),
        "`typ` must be `at+jwt`",
    );
    for bad in [
        "",
        "abc",
        &format!("{}.{}", parts[0], parts[1]),
        &format!("{}.{}.", parts[0], parts[1]),
    ] {
        assert!(verify_access_token(bad, &aud(), now(), &k, ISSUER, &NoRevocation).is_err());
    }
}

#[test]
fn unknown_kid_and_foreign_keys_are_refused() {
    let t = minted();
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let k = HashMap::from([("other".to_owned(), other.verifying_key())]);
    invalid(
        verify_access_token(&t.access_token, &aud(), now(), &k, ISSUER, &NoRevocation),
        "not a key Rein publishes",
    );
    // Same kid, different key (a rotated key would never reuse a kid, but be sure).
    let k = HashMap::from([(signer().kid().to_owned(), other.verifying_key())]);
    invalid(
        verify_access_token(&t.access_token, &aud(), now(), &k, ISSUER, &NoRevocation),
        "signature does not verify",
    );
    // A token signed by someone else's key, claiming Rein's kid.
    let forged = jws(
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": signer().kid()}),
        &decode_part(&t.access_token, 1),
        |m| {
            use ed25519_dalek::Signer as _;
            other.sign(m).to_bytes().to_vec()
        },
    );
    invalid(
        verify_access_token(
            &forged,
            &aud(),
            now(),
            &keys(&signer()),
            ISSUER,
            &NoRevocation,
        ),
        "signature does not verify",
    );
}

#[test]
fn alg_none_and_hmac_tokens_are_refused() {
    let t = minted();
    let claims = decode_part(&t.access_token, 1);
    let k = keys(&signer());
    let none = jws(
        &json!({"alg": "none", "typ": "at+jwt", "kid": signer().kid()}),
        &claims,
        |_| vec![0],
    );
    invalid(
        verify_access_token(&none, &aud(), now(), &k, ISSUER, &NoRevocation),
        "alg `none` is not accepted",
    );
    let secret = signer().verifying_key().to_bytes();
    let hs = jws(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": signer().kid()}),
        &claims,
        |m| hmac_sha256(&secret, m),
    );
    invalid(
        verify_access_token(&hs, &aud(), now(), &k, ISSUER, &NoRevocation),
        "alg `HS256` is not accepted",
    );
}

#[test]
fn revocation_hook_is_consulted_after_the_checks() {
    let t = minted();
    let k = keys(&signer());
    let revoked_jtis: HashSet<String> = HashSet::from([t.claims.jti.clone()]);
    let by_jti = |c: &AccessTokenClaims| revoked_jtis.contains(&c.jti);
    invalid(
        verify_access_token(&t.access_token, &aud(), now(), &k, ISSUER, &by_jti),
        "revoked",
    );
    let revoked_grants: HashSet<String> = HashSet::from([grant(1, &[]).id.to_string()]);
    let by_grant = |c: &AccessTokenClaims| {
        c.grant_ids
            .iter()
            .any(|g| revoked_grants.contains(g.as_str()))
    };
    invalid(
        verify_access_token(&t.access_token, &aud(), now(), &k, ISSUER, &by_grant),
        "revoked",
    );
    let by_env = |c: &AccessTokenClaims| c.env.as_str() == "staging";
    assert!(verify_access_token(&t.access_token, &aud(), now(), &k, ISSUER, &by_env).is_ok());
    // A dyn hook works too.
    let dynamic: &dyn rein_oauth::RevocationCheck = &by_jti;
    assert!(verify_access_token(&t.access_token, &aud(), now(), &k, ISSUER, dynamic).is_err());
}

#[test]
fn jwks_publishes_the_verifying_key() {
    let s = signer();
    let set = jwks(keys(&s).iter());
    let jwk = &set["keys"][0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], s.kid());
    // A verifier that only has the JWKS can check a token.
    let x: [u8; 32] = b64_decode(jwk["x"].as_str().unwrap()).try_into().unwrap();
    let from_jwks = HashMap::from([(
        jwk["kid"].as_str().unwrap().to_owned(),
        ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap(),
    )]);
    assert!(verify_access_token(
        &minted().access_token,
        &aud(),
        now(),
        &from_jwks,
        ISSUER,
        &NoRevocation
    )
    .is_ok());
    assert!(!set.to_string().contains("\"d\""));
}
