//! Agent keys and access tokens through the CLI against a real `rein server --dev`:
//! `rein agent key generate` writes a private key file (mode 0600) and registers its public
//! half; `rein token request` authenticates with that file alone (no REIN_TOKEN) and prints only
//! the token; `rein token inspect` introspects it (exit 0 if active, 3 if not) or decodes it
//! offline. Tokens appear on stdout only, never on stderr or in the server's log.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::{assert_error, rein, run, stderr, stdout, workspace_root, Server};

/// The example prod agent (examples/governance/agents.yaml): active, every accountable role,
/// and an active grant on payments-db for `select_invoices`.
const AGENT: &str = "payments/invoice-reconciler/prod";
const AGENT_ID: &str = "spiffe://rein.local/agent/payments/invoice-reconciler/prod";

/// `rein` aimed at `server` without any API token: what an agent runs.
fn agent_cmd(server: &Server) -> Command {
    let mut cmd = rein();
    cmd.env("REIN_ADDR", &server.addr);
    cmd
}

/// `rein token request` for the example agent on payments-db in task `t-1`, with `extra`.
fn request(server: &Server, key: &Path, scope: &str, extra: &[&str]) -> Output {
    run(agent_cmd(server)
        .args(["token", "request", "--key"])
        .arg(key)
        .args([
            "--agent",
            AGENT_ID,
            "--system",
            "payments-db",
            "--scope",
            scope,
        ])
        .args([
            "--task-id",
            "t-1",
            "--intent",
            "match settlements to invoices",
        ])
        .args(extra))
}

/// Runs `rein` with `stdin` as its standard input.
pub(super) fn with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// The JSON of a compact JWS's part `i` (0 header, 1 payload).
fn part(jwt: &str, i: usize) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(jwt.split('.').nth(i).unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn agents_get_tokens_with_their_own_key_and_operators_inspect_them() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("dev.log");
    let mut server = Server::start(
        &["--dev", "--listen", "127.0.0.1:0"],
        &workspace_root(),
        &log,
    );
    let admin = server.line("REIN_TOKEN=");
    let users =
        std::fs::read_to_string(server.line("Example users' tokens (valid 1 day): ")).unwrap();
    let user = |name: &str| {
        users
            .lines()
            .find_map(|l| l.strip_prefix(&format!("REIN_TOKEN_{name}=")))
            .unwrap()
            .to_owned()
    };
    // alice is a member of the agent's team (payments); frank approves payments-db (secops).
    let (alice, frank) = (user("ALICE"), user("FRANK"));
    let mut stderrs = Vec::new();
    let mut keep = |out: Output| {
        stderrs.push(stderr(&out));
        out
    };

    // A key pair: the private JWK in a 0600 file, the public half registered, the kid printed.
    let key = tmp.path().join("agent.jwk");
    let out = keep(server.client(
        &alice,
        &[
            "agent",
            "key",
            "generate",
            "--agent",
            AGENT,
            "--out",
            key.to_str().unwrap(),
        ],
    ));
    let kid = assert_exit(&out, 0).trim().to_owned();
    assert_eq!(kid.lines().count(), 1, "{kid}");
    assert_eq!(mode(&key), 0o600);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert!(file["d"].is_string(), "{file}");
    assert_eq!(
        (file["kty"].as_str(), file["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert_eq!(file["kid"], kid.as_str());
    let agent = server.json(&admin, &["agent", "show", AGENT]);
    assert_eq!(agent["id"], AGENT_ID);
    let registered = agent["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("key {kid} not registered: {agent}"));
    assert_eq!(registered["alg"], "EdDSA");
    assert!(registered["jwk"].get("d").is_none(), "{registered}");
    assert_eq!(registered["added_by"], "alice");

    // A key file is never overwritten; someone who may not register keys leaves no file behind.
    let before = std::fs::read(&key).unwrap();
    let again = keep(server.client(
        &alice,
        &[
            "agent",
            "key",
            "generate",
            "--agent",
            AGENT,
            "--out",
            key.to_str().unwrap(),
        ],
    ));
    assert_error(&again, "already-exists");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let stranger = tmp.path().join("frank.jwk");
    let out = keep(server.client(
        &frank,
        &[
            "agent",
            "key",
            "generate",
            "--agent",
            AGENT,
            "--out",
            stranger.to_str().unwrap(),
        ],
    ));
    assert_error(&out, "forbidden");
    assert!(!stranger.exists());

    // The agent asks for a token with its key alone: stdout is the token and nothing else.
    let out = keep(request(&server, &key, "select_invoices", &[]));
    let token = assert_exit(&out, 0).trim().to_owned();
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert_eq!(part(&token, 0)["typ"], "at+jwt");
    let claims = part(&token, 1);
    assert_eq!(claims["sub"], AGENT_ID);
    assert_eq!(claims["aud"], "rein:system:payments-db");
    assert_eq!(claims["scope"], "select_invoices");
    assert_eq!(claims["task_id"], "t-1");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    // `--output json`: the whole token response; `--ttl` asks for a shorter lifetime.
    let out = keep(request(
        &server,
        &key,
        "select_invoices",
        &["--ttl", "60s", "--output", "json"],
    ));
    let body: Value = serde_json::from_str(&assert_exit(&out, 0)).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 60);
    assert_eq!(body["scope"], "select_invoices");
    let short = body["access_token"].as_str().unwrap().to_owned();

    // A P-256 key works the same way.
    let es_key = tmp.path().join("agent-es256.jwk");
    let out = keep(server.client(
        &alice,
        &[
            "agent",
            "key",
            "generate",
            "--agent",
            AGENT,
            "--alg",
            "ES256",
            "--out",
            es_key.to_str().unwrap(),
        ],
    ));
    let es_kid = assert_exit(&out, 0).trim().to_owned();
    assert_ne!(es_kid, kid);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&es_key).unwrap()).unwrap();
    assert_eq!(
        (file["kty"].as_str(), file["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    let out = keep(request(&server, &es_key, "select_invoices", &[]));
    let es_token = assert_exit(&out, 0).trim().to_owned();
    assert_eq!(part(&es_token, 1)["sub"], AGENT_ID);

    // An operator inspects it: active, what it allows, exit 0.
    let out = keep(server.client(&frank, &["token", "inspect", &token]));
    let text = assert_exit(&out, 0);
    assert!(text.starts_with("active:    true\n"), "{text}");
    for line in [
        format!("sub:       {AGENT_ID}"),
        "aud:       rein:system:payments-db".to_owned(),
        "scope:     select_invoices".to_owned(),
        "task_id:   t-1".to_owned(),
        "env:       prod".to_owned(),
        "owner:     payments".to_owned(),
        "grant_ids: grt_".to_owned(),
        "exp:       20".to_owned(),
    ] {
        assert!(text.contains(&line), "{line}: {text}");
    }
    // From stdin (`-`), as JSON.
    let out = keep(with_stdin(
        agent_cmd(&server)
            .env("REIN_TOKEN", &frank)
            .args(["token", "inspect", "-", "--output", "json"]),
        &format!("{token}\n"),
    ));
    let body: Value = serde_json::from_str(&assert_exit(&out, 0)).unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], AGENT_ID);
    assert_eq!(body["task_id"], "t-1");
    let grant = body["grant_ids"][0].as_str().unwrap().to_owned();
    // Introspection needs an API token.
    let out = keep(run(agent_cmd(&server).args(["token", "inspect", &token])));
    assert_error(&out, "unauthenticated");
    // Something that is not a token is simply inactive.
    let out = keep(server.client(&frank, &["token", "inspect", "not-a-token"]));
    assert_eq!(assert_exit(&out, 3).trim(), "active: false");

    // `--decode` works offline and says it verified nothing.
    let out = keep(run(rein()
        .env("REIN_ADDR", "http://127.0.0.1:1")
        .args(["token", "inspect", "--decode", &token])));
    let text = assert_exit(&out, 0);
    assert!(text.starts_with("NOT VERIFIED"), "{text}");
    assert!(text.contains("claims.task_id:   t-1"), "{text}");
    assert!(text.contains("header.typ:       at+jwt"), "{text}");
    let out = keep(run(rein()
        .env("REIN_ADDR", "http://127.0.0.1:1")
        .args(["token", "inspect", "--decode", &token, "--output", "json"])));
    let decoded: Value = serde_json::from_str(&assert_exit(&out, 0)).unwrap();
    assert_eq!(decoded["verified"], false);
    assert_eq!(decoded["claims"]["sub"], AGENT_ID);
    let out = keep(run(rein().args(["token", "inspect", "--decode", "a.b"])));
    assert_error(&out, "invalid-input");

    // Refusals: a scope no grant covers (the OAuth error, one line), an agent not named by
    // SPIFFE ID (usage), a key file others can read.
    let out = keep(request(&server, &key, "insert_adjustment", &[]));
    let err = assert_error(&out, "invalid_scope");
    assert!(err.contains("insert_adjustment"), "{err}");
    assert!(stdout(&out).is_empty());
    let out = keep(run(agent_cmd(&server)
        .args(["token", "request", "--key"])
        .arg(&key)
        .args(["--agent", AGENT, "--system", "payments-db"])
        .args([
            "--scope",
            "select_invoices",
            "--task-id",
            "t-1",
            "--intent",
            "x",
        ])));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("SPIFFE ID"), "{}", stderr(&out));
    let exposed = tmp.path().join("exposed.jwk");
    std::fs::copy(&key, &exposed).unwrap();
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = keep(request(&server, &exposed, "select_invoices", &[]));
    assert_error(&out, "insecure-key-file");
    assert!(stdout(&out).is_empty());
    // A public key is not a key file.
    let public = tmp.path().join("public.jwk");
    std::fs::write(&public, serde_json::to_string(&registered["jwk"]).unwrap()).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = keep(request(&server, &public, "select_invoices", &[]));
    assert_error(&out, "invalid-key");

    // The grant is revoked (frank approves payments-db): the earlier tokens are inactive now
    // (exit 3) and no new one is issued.
    let revoked = server.json(
        &frank,
        &[
            "grant",
            "revoke",
            &grant,
            "--reason",
            "reconciliation paused",
        ],
    );
    assert_eq!(revoked["status"], "revoked");
    for t in [&token, &short, &es_token] {
        let out = keep(server.client(&frank, &["token", "inspect", t]));
        assert_eq!(assert_exit(&out, 3).trim(), "active: false");
    }
    let out = keep(server.client(&frank, &["token", "inspect", &token, "--output", "json"]));
    let body: Value = serde_json::from_str(&assert_exit(&out, 3)).unwrap();
    assert_eq!(body, serde_json::json!({"active": false}));
    let out = keep(request(&server, &key, "select_invoices", &[]));
    assert_error(&out, "invalid_scope");

    // No token ever reached stderr or the server's log.
    server.stop();
    let log = std::fs::read_to_string(&log).unwrap();
    for t in [&token, &short, &es_token] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token is in the server log");
        for err in &stderrs {
            assert!(!err.contains(signature), "a token is on stderr: {err}");
        }
    }
    let private = file["d"].as_str().unwrap();
    assert!(!log.contains(private), "a private key is in the server log");
    assert!(stderrs.iter().all(|e| !e.contains(private)));
}
