//! The token endpoint over HTTP: an agent authenticates with a JWT signed by its own registered
//! key (RFC 7523) and gets a task-scoped access token (RFC 9068), checked against the published
//! JWKS; every refusal carries its RFC error code; issuance is audited without the token.
//! Interoperability with an independent implementation (PyJWT) is `pyjwt_…` below.

use std::process::Command;

use ed25519_dalek::Signer as _;

use super::*;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A key the agent holds; its public half is registered with Rein.
pub(super) struct AgentKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl AgentKey {
    pub(super) async fn register(srv: &Server, token: &str, agent_path: &str) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())});
        let added = srv
            .post(token, &format!("{agent_path}/keys"), jwk)
            .await
            .ok(201);
        Self {
            key,
            kid: added["kid"].as_str().unwrap().to_owned(),
        }
    }

    /// A client assertion with `claims` (EdDSA, this key's `kid`).
    pub(super) fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }
}

pub(super) fn claims(srv: &Server, agent: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({
        "iss": agent, "sub": agent, "aud": format!("{}/oauth2/token", srv.base),
        "iat": now, "exp": now + 120, "jti": format!("a-{:032x}", rand::random::<u128>()),
    })
}

pub(super) fn form(assertion: &str, system: &str, scope: &str) -> Vec<(String, String)> {
    form_for_task(assertion, system, scope, "task-7")
}

pub(super) fn form_for_task(
    assertion: &str,
    system: &str,
    scope: &str,
    task: &str,
) -> Vec<(String, String)> {
    [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
        ("resource", &format!("rein:system:{system}")),
        ("scope", scope),
        ("task_id", task),
        ("intent", "reconcile march invoices"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub(super) async fn token_request(srv: &Server, form: &[(String, String)]) -> common::Reply {
    let req = srv
        .client
        .post(format!("{}/oauth2/token", srv.base))
        .form(form);
    common::Reply::read(req.send().await.unwrap()).await
}

fn oauth_error(r: &common::Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"], code, "{}", r.text);
    assert!(r.body["error_description"].is_string(), "{}", r.text);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
}

/// The JSON of a compact JWS's part `i` (0 header, 1 payload).
fn part(jwt: &str, i: usize) -> Value {
    let text = URL_SAFE_NO_PAD
        .decode(jwt.split('.').nth(i).unwrap())
        .unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// A new key for the prod agent and an access token for `read_invoices` on billing-db in
/// `task` (the read grant must be active).
pub(super) async fn agent_token(w: &World, task: &str) -> (AgentKey, String) {
    let key = AgentKey::register(&w.srv, &w.alice, PROD_AGENT_PATH).await;
    let assertion = key.sign(&claims(&w.srv, PROD_AGENT));
    let r = token_request(
        &w.srv,
        &form_for_task(&assertion, "billing-db", "read_invoices", task),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (key, r.body["access_token"].as_str().unwrap().to_owned())
}

/// The status of the agent's own `read_invoices` decision with `token` (200: the token works).
pub(super) async fn call_as_agent(srv: &Server, token: &str) -> u16 {
    let body = json!({"agent": PROD_AGENT, "system": "billing-db", "action": "read_invoices",
                      "context": {"risk": 1, "confidence": 0.99}});
    srv.post(token, "/v1/authorize", body).await.status
}

async fn granted_world(w: &World) -> String {
    let id = prod_read_grant(w).await;
    w.srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
    id
}

#[tokio::test]
async fn an_agent_gets_a_task_scoped_token_with_its_own_key() {
    for w in worlds().await {
        let srv = &w.srv;
        let grant = granted_world(&w).await;
        let key = AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;
        let r = token_request(
            srv,
            &form(
                &key.sign(&claims(srv, PROD_AGENT)),
                "billing-db",
                "read_invoices",
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
        assert_eq!(r.body["token_type"], "Bearer");
        assert_eq!(r.body["expires_in"], 300);
        assert_eq!(r.body["scope"], "read_invoices");
        let token = r.body["access_token"].as_str().unwrap();

        // RFC 9068 shape, bound to the system, the task and the grant.
        let header = part(token, 0);
        assert_eq!(
            (header["typ"].as_str(), header["alg"].as_str()),
            (Some("at+jwt"), Some("EdDSA"))
        );
        let c = part(token, 1);
        assert_eq!(c["iss"], srv.base.as_str());
        assert_eq!(c["sub"], PROD_AGENT);
        assert_eq!(c["client_id"], PROD_AGENT);
        assert_eq!(c["aud"], "rein:system:billing-db");
        assert_eq!(c["task_id"], "task-7");
        assert_eq!(c["env"], "prod");
        assert_eq!(c["owner"], "payments");
        assert_eq!(c["grant_ids"], json!([grant]));
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);

        // The signature verifies with the key the JWKS publishes under the token's kid.
        let jwks = srv
            .call(Method::GET, "/.well-known/jwks.json", None, None)
            .await
            .ok(200);
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap();
        let public: [u8; 32] = URL_SAFE_NO_PAD
            .decode(jwk["x"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap()
            .try_into()
            .unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&public)
            .unwrap()
            .verify_strict(
                input.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .unwrap();
        let meta = srv
            .call(
                Method::GET,
                "/.well-known/oauth-authorization-server",
                None,
                None,
            )
            .await
            .ok(200);
        assert_eq!(meta["issuer"], srv.base.as_str());
        assert_eq!(meta["token_endpoint"], format!("{}/oauth2/token", srv.base));
        assert_eq!(
            meta["jwks_uri"],
            format!("{}/.well-known/jwks.json", srv.base)
        );

        // Recorded: who approved the access, who can revoke; never the token itself.
        let issued = read(srv, &w.erin, "/v1/audit?type=token.issued").await;
        let e = &issued["records"][0]["event"];
        assert_eq!(e["subject"], c["jti"]);
        assert_eq!(e["actor"], json!({"kind": "agent", "id": PROD_AGENT}));
        assert_eq!(strings(&e["approvers"]), vec!["bob"]);
        assert_eq!(e["determined_by"], json!([grant]));
        let (_, _, export) = super::audit::get_text(srv, &w.erin, "/v1/audit/export").await;
        assert!(
            !export.contains(token.split('.').nth(2).unwrap()),
            "the token is not in the audit log"
        );
        w.srv.cleanup().await;
    }
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn token_requests_are_refused_with_the_rfc_error_codes() {
    for w in worlds().await {
        let srv = &w.srv;
        granted_world(&w).await;
        let key = AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;
        let ok = |c: &Value| form(&key.sign(c), "billing-db", "read_invoices");

        // A replayed assertion.
        let once = ok(&claims(srv, PROD_AGENT));
        assert_eq!(token_request(srv, &once).await.status, 200);
        let again = token_request(srv, &once).await;
        assert!(again.status == 400 || again.status == 401, "{}", again.text);
        assert!(again.body["error"].is_string());
        // ...and after a restart: used assertions are kept in the store until they expire.
        let restarted = rein_pdp::Pdp::start(srv.registry.clone(), None)
            .await
            .unwrap();
        let issuer = rein_pdp::Issuer::open(
            restarted.registry(),
            std::sync::Arc::new(rein_keys::MasterKey::from_bytes(srv.master_bytes)),
            &srv.base,
        )
        .await
        .unwrap();
        let body: String = once
            .iter()
            .map(|(k, v)| format!("{}={}", k, urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let replayed = restarted.issue_token(&issuer, body.as_bytes()).await;
        assert!(
            replayed.is_err(),
            "a used assertion is refused after a restart"
        );
        let fresh = ok(&claims(srv, PROD_AGENT))
            .iter()
            .map(|(k, v)| format!("{}={}", k, urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        restarted
            .issue_token(&issuer, fresh.as_bytes())
            .await
            .unwrap();

        // Scope beyond the grants, named in the description.
        let r = token_request(
            srv,
            &form(
                &key.sign(&claims(srv, PROD_AGENT)),
                "billing-db",
                "read_invoices write_invoice",
            ),
        )
        .await;
        oauth_error(&r, 400, "invalid_scope");
        assert!(
            r.body["error_description"]
                .as_str()
                .unwrap()
                .contains("write_invoice"),
            "{}",
            r.text
        );

        // Wrong audience, expired, signed by a key Rein does not know, iss != sub.
        let mut c = claims(srv, PROD_AGENT);
        c["aud"] = json!("https://elsewhere.example/oauth2/token");
        oauth_error(&token_request(srv, &ok(&c)).await, 401, "invalid_client");
        let mut c = claims(srv, PROD_AGENT);
        c["exp"] = json!(Utc::now().timestamp() - 5);
        oauth_error(&token_request(srv, &ok(&c)).await, 401, "invalid_client");
        let stranger = AgentKey {
            key: ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
            kid: key.kid.clone(),
        };
        let r = token_request(
            srv,
            &form(
                &stranger.sign(&claims(srv, PROD_AGENT)),
                "billing-db",
                "read_invoices",
            ),
        )
        .await;
        oauth_error(&r, 401, "invalid_client");
        let mut c = claims(srv, PROD_AGENT);
        c["iss"] = json!(DEV_AGENT);
        assert!(token_request(srv, &ok(&c)).await.status >= 400);

        // `alg: none`.
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!(
            "{header}.{}.",
            b64(claims(srv, PROD_AGENT).to_string().as_bytes())
        );
        oauth_error(
            &token_request(srv, &form(&unsigned, "billing-db", "read_invoices")).await,
            401,
            "invalid_client",
        );

        // Shared secrets and Basic authentication are not accepted; nor is JSON.
        let mut secret = ok(&claims(srv, PROD_AGENT));
        secret.push(("client_secret".into(), "hunter2".into()));
        let r = token_request(srv, &secret).await;
        assert!(r.status >= 400 && !r.text.contains("hunter2"), "{}", r.text);
        let basic = srv
            .client
            .post(format!("{}/oauth2/token", srv.base))
            .basic_auth("agent", Some("pw"))
            .form(&ok(&claims(srv, PROD_AGENT)));
        oauth_error(
            &common::Reply::read(basic.send().await.unwrap()).await,
            401,
            "invalid_client",
        );
        let json_body = srv
            .client
            .post(format!("{}/oauth2/token", srv.base))
            .json(&json!({"grant_type": "client_credentials"}));
        oauth_error(
            &common::Reply::read(json_body.send().await.unwrap()).await,
            400,
            "invalid_request",
        );

        // A suspended agent authenticates but gets nothing, and the refusal is recorded.
        srv.post(
            &w.frank,
            &format!("{PROD_AGENT_PATH}/suspend"),
            json!({"reason": "incident"}),
        )
        .await
        .ok(200);
        let r = token_request(srv, &ok(&claims(srv, PROD_AGENT))).await;
        oauth_error(&r, 400, "unauthorized_client");
        let refused = read(srv, &w.erin, "/v1/audit?type=token.refused").await;
        let last = refused["records"].as_array().unwrap().last().unwrap();
        assert_eq!(
            last["event"]["details"]["error"], "unauthorized_client",
            "{refused}"
        );
        w.srv.cleanup().await;
    }
}

/// A Python with PyJWT: `python3` itself when it imports `jwt` and `cryptography` (CI installs
/// them), else a virtual environment under the target directory, installed once from PyPI, so
/// that `cargo test` needs nothing beyond Python 3 with pip.
fn pyjwt() -> std::path::PathBuf {
    let ready = |p: &std::path::Path| {
        Command::new(p)
            .args(["-c", "import jwt, cryptography"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = std::path::PathBuf::from("python3");
    if ready(&system) {
        return system;
    }
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyjwt-venv");
    let python = venv.join("bin/python");
    if !ready(&python) {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "pyjwt[crypto]>=2.8,<3",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "pip install pyjwt failed");
    }
    assert!(
        ready(&python),
        "PyJWT is not importable from {}",
        python.display()
    );
    python
}

const PY: &str = r#"
import json, sys, time, uuid
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

mode, args = sys.argv[1], json.loads(sys.argv[2])
if mode == "verify":
    client = jwt.PyJWKClient(args["jwks"])
    key = client.get_signing_key_from_jwt(args["token"])
    claims = jwt.decode(args["token"], key.key, algorithms=["EdDSA"], audience=args["aud"],
                        issuer=args["iss"], options={"require": ["exp", "iat", "nbf", "jti", "sub"]})
    assert jwt.get_unverified_header(args["token"])["typ"] == "at+jwt"
    print(json.dumps(claims))
elif mode == "sign":
    now = int(time.time())
    claims = {"iss": args["agent"], "sub": args["agent"], "aud": args["aud"], "iat": now,
              "exp": now + 120, "jti": str(uuid.uuid4())}
    if args["alg"] == "EdDSA":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(args["secret"]))
    else:
        key = ec.derive_private_key(int(args["secret"], 16), ec.SECP256R1())
    print(jwt.encode(claims, key, algorithm=args["alg"], headers={"kid": args["kid"]}))
"#;

/// Runs the PyJWT script off the async runtime (the test's server answers on this thread).
async fn python(py: &std::path::Path, mode: &str, args: &Value) -> String {
    let (py, mode, args) = (py.to_owned(), mode.to_owned(), args.to_string());
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&py)
            .args(["-c", PY, &mode, &args])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PyJWT {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn pyjwt_verifies_rein_tokens_and_signs_assertions_rein_accepts() {
    let py = pyjwt();
    let w = worlds().await.into_iter().next().unwrap();
    let srv = &w.srv;
    granted_world(&w).await;
    let aud = format!("{}/oauth2/token", srv.base);

    // PyJWT signs the agent's assertions, EdDSA and ES256, with keys Rein only knows the public
    // half of.
    let ed_secret: [u8; 32] = rand::random();
    let ed = ed25519_dalek::SigningKey::from_bytes(&ed_secret);
    let ed_kid = srv
        .post(
            &w.alice,
            &format!("{PROD_AGENT_PATH}/keys"),
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.verifying_key().as_bytes())}),
        )
        .await
        .ok(201)["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ec_jwk, ec_secret) = p256_jwk();
    let ec_kid = srv
        .post(&w.alice, &format!("{PROD_AGENT_PATH}/keys"), ec_jwk)
        .await
        .ok(201)["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let ec_secret_hex = hex::encode(URL_SAFE_NO_PAD.decode(ec_secret).unwrap());
    let mut tokens = Vec::new();
    for (alg, secret, kid) in [
        ("EdDSA", hex::encode(ed_secret), ed_kid),
        ("ES256", ec_secret_hex, ec_kid),
    ] {
        let assertion = python(
            &py,
            "sign",
            &json!({"alg": alg, "secret": secret, "kid": kid, "agent": PROD_AGENT, "aud": aud}),
        )
        .await;
        let r = token_request(srv, &form(&assertion, "billing-db", "read_invoices")).await;
        assert_eq!(r.status, 200, "{alg}: {}", r.text);
        tokens.push(r.body["access_token"].as_str().unwrap().to_owned());
    }

    // PyJWT fetches Rein's JWKS over HTTP and verifies Rein's tokens.
    for token in &tokens {
        let verified: Value = serde_json::from_str(
            &python(
                &py,
                "verify",
                &json!({"jwks": format!("{}/.well-known/jwks.json", srv.base), "token": token,
                    "aud": "rein:system:billing-db", "iss": srv.base}),
            )
            .await,
        )
        .unwrap();
        assert_eq!(verified["sub"], PROD_AGENT);
        assert_eq!(verified["scope"], "read_invoices");
    }
    w.srv.cleanup().await;
}

async fn introspect(srv: &Server, api_token: &str, token: &str) -> Value {
    let req = srv
        .client
        .post(format!("{}/oauth2/introspect", srv.base))
        .bearer_auth(api_token)
        .form(&[("token", token)]);
    let r = common::Reply::read(req.send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[tokio::test]
async fn an_agent_token_decides_its_own_calls_until_its_grant_is_revoked() {
    for w in worlds().await {
        let srv = &w.srv;
        let grant = granted_world(&w).await;
        let key = AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;
        let r = token_request(
            srv,
            &form(
                &key.sign(&claims(srv, PROD_AGENT)),
                "billing-db",
                "read_invoices",
            ),
        )
        .await;
        let token = r.body["access_token"].as_str().unwrap().to_owned();
        let call = |agent: &str, action: &str| json!({"agent": agent, "system": "billing-db", "action": action, "context": {"risk": 5, "confidence": 0.99}});

        // The agent asks about its own call, in its token's task.
        let d = srv
            .post(&token, "/v1/authorize", call(PROD_AGENT, "read_invoices"))
            .await
            .ok(200);
        assert_eq!(d["decision"], "allow", "{d}");
        let record = read(srv, &w.erin, &format!("/v1/audit/{}", d["audit_seq"])).await;
        assert_eq!(
            record["event"]["actor"],
            json!({"kind": "agent", "id": PROD_AGENT})
        );
        assert_eq!(record["event"]["task_id"], "task-7");

        // Not beyond its scope, not for another agent, not in another task.
        srv.post(&token, "/v1/authorize", call(PROD_AGENT, "write_invoice"))
            .await
            .problem(403, "forbidden");
        srv.post(&token, "/v1/authorize", call(DEV_AGENT, "read_invoices"))
            .await
            .problem(403, "forbidden");
        let mut other_task = call(PROD_AGENT, "read_invoices");
        other_task["context"]["task_id"] = json!("task-8");
        srv.post(&token, "/v1/authorize", other_task)
            .await
            .problem(403, "forbidden");
        // Not for another system: the token's audience is billing-db.
        let mut elsewhere = call(PROD_AGENT, "read_invoices");
        elsewhere["system"] = json!("billing-db-dev");
        srv.post(&token, "/v1/authorize", elsewhere)
            .await
            .problem(401, "unauthenticated");
        // Never the management API.
        srv.get(&token, "/v1/grants")
            .await
            .problem(401, "unauthenticated");

        // Introspection (RFC 7662) for resource servers.
        let active = introspect(srv, &w.alice, &token).await;
        assert_eq!(active["active"], true, "{active}");
        assert_eq!(active["sub"], PROD_AGENT);
        assert_eq!(active["grant_ids"], json!([grant]));
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 2, 'A');
        assert_eq!(
            introspect(srv, &w.alice, &tampered).await,
            json!({"active": false})
        );
        srv.call_raw(
            Method::POST,
            "/oauth2/introspect",
            "not-a-token",
            Some("application/x-www-form-urlencoded"),
            "token=x",
        )
        .await
        .problem(401, "unauthenticated");

        // Revoking the grant kills the token on the next check.
        srv.post(
            &w.frank,
            &format!("/v1/grants/{grant}/revoke"),
            json!({"reason": "rotation"}),
        )
        .await
        .ok(200);
        assert_eq!(
            introspect(srv, &w.alice, &token).await,
            json!({"active": false})
        );
        srv.post(&token, "/v1/authorize", call(PROD_AGENT, "read_invoices"))
            .await
            .problem(401, "unauthenticated");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_rotated_key_signs_new_tokens_and_the_old_one_stays_published() {
    for w in worlds().await {
        let srv = &w.srv;
        granted_world(&w).await;
        let (_, before) = agent_token(&w, "task-1").await;
        let old_kid = part(&before, 0)["kid"].as_str().unwrap().to_owned();

        srv.post(&w.alice, "/v1/keys/rotate", json!({}))
            .await
            .problem(403, "forbidden");
        let rotated = srv
            .post(&srv.admin, "/v1/keys/rotate", json!({}))
            .await
            .ok(200);
        assert_eq!(rotated["retired_kid"], old_kid.as_str());
        let new_kid = rotated["kid"].as_str().unwrap();
        assert_ne!(new_kid, old_kid);

        let (_, after) = agent_token(&w, "task-1").await;
        assert_eq!(part(&after, 0)["kid"], new_kid);
        let jwks = srv
            .call(Method::GET, "/.well-known/jwks.json", None, None)
            .await
            .ok(200);
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(
            kids.contains(&old_kid.as_str()) && kids.contains(&new_kid),
            "{jwks}"
        );
        // Tokens signed by either key keep working until they expire.
        assert_eq!(call_as_agent(srv, &before).await, 200);
        assert_eq!(call_as_agent(srv, &after).await, 200);
        let audited = read(srv, &w.erin, "/v1/audit?type=key.rotated").await;
        let e = &audited["records"][0]["event"];
        assert_eq!(
            (e["subject"].as_str(), e["details"]["retired_kid"].as_str()),
            (Some(new_kid), Some(old_kid.as_str()))
        );
        w.srv.cleanup().await;
    }
}
