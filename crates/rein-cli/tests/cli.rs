//! End-to-end tests of the real `rein` binary: `rein init`, `rein server` (on a data directory,
//! on PostgreSQL, and `--dev`), and the client commands against it, as a user would run them.
//!
//! Servers listen on `127.0.0.1:0` and print the bound address (`REIN_ADDR=…`), so tests never
//! race for a port; readiness is polled on `/readyz` with a bounded number of attempts. Every
//! child is stopped (SIGTERM, then SIGKILL) when its guard drops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "cli/apply.rs"]
mod apply;
#[path = "cli/audit.rs"]
mod audit;
#[path = "cli/check.rs"]
mod check;
#[path = "cli/decisions.rs"]
mod decisions;
#[path = "cli/policy.rs"]
mod policy;
#[path = "cli/secrets.rs"]
mod secrets;
#[path = "cli/tokens.rs"]
mod tokens;

/// How long a server may take to print its address and become ready.
const STARTUP: Duration = Duration::from_secs(60);

/// `rein` with an empty environment: no REIN_* variable leaks in from the developer's shell.
fn rein() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rein"));
    cmd.env_clear().stdin(Stdio::null());
    if let Some(tmp) = std::env::var_os("TMPDIR") {
        cmd.env("TMPDIR", tmp);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running rein")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command failed with exit code 1 and one line `error: … (<code>)` on stderr.
fn assert_error(out: &Output, code: &str) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {err}",
        stdout(out)
    );
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.trim_end().ends_with(&format!("({code})")),
        "code {code} expected: {err}"
    );
    err
}

/// `rein init --data-dir dir`; returns the admin token from the last stdout line.
fn init(dir: &Path, extra: &[&str]) -> String {
    let out = run(rein().arg("init").arg("--data-dir").arg(dir).args(extra));
    assert!(out.status.success(), "init failed: {}", stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().unwrap();
    last.strip_prefix("REIN_TOKEN=")
        .unwrap_or_else(|| panic!("last line is not REIN_TOKEN=…: {text}"))
        .to_owned()
}

/// A running `rein server`, stopped when dropped.
struct Server {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    addr: String,
    log: PathBuf,
}

impl Server {
    /// Starts `rein server <args>` (in `cwd`), waits for its address line and for `/readyz`.
    fn start(args: &[&str], cwd: &Path, log: &Path) -> Self {
        Self::start_with_env(args, &[], cwd, log)
    }

    /// [`Server::start`] with extra environment variables.
    fn start_with_env(args: &[&str], env: &[(&str, &str)], cwd: &Path, log: &Path) -> Self {
        let mut child = rein()
            .arg("server")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawning rein server");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            lines,
            seen: Vec::new(),
            addr: String::new(),
            log: log.to_owned(),
        };
        server.addr = server.line("REIN_ADDR=").to_owned();
        server.wait_ready();
        server
    }

    /// The value of the first stdout line starting with `prefix`, waiting for it if needed.
    fn line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
                return l[prefix.len()..].to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "no `{prefix}` line from rein server\nstdout: {}\nlog: {}",
                    self.seen.join("\n"),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }

    fn wait_ready(&self) {
        let host = self.addr.trim_start_matches("http://").to_owned();
        for _ in 0..200 {
            if readyz(&host) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "rein server at {} never became ready\nlog: {}",
            self.addr,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Runs a client command against this server with `token`.
    fn client(&self, token: &str, args: &[&str]) -> Output {
        run(rein()
            .env("REIN_ADDR", &self.addr)
            .env("REIN_TOKEN", token)
            .args(args))
    }

    /// Runs a client command with `--output json`, asserts success and parses the output.
    fn json(&self, token: &str, args: &[&str]) -> Value {
        let out = self.client(token, &[args, &["--output", "json"]].concat());
        assert!(
            out.status.success(),
            "rein {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("rein {args:?} printed no JSON ({e}): {}", stdout(&out)))
    }

    /// Stops the server with SIGTERM and returns its exit status.
    fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Whether `GET /readyz` answers 200.
fn readyz(host: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn version_and_usage_errors() {
    let out = run(rein().arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("rein {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        &[][..],
        &["no-such-command"],
        &["grant", "request", "--agent", "payments/bot/prod"],
        &["agent", "show", "not-an-agent"],
        &["user", "create", "Alice"],
        &["server"],
        &["init"],
        &["grant", "list", "--output", "yaml"],
    ] {
        let out = run(rein().args(args));
        assert_eq!(
            out.status.code(),
            Some(2),
            "rein {args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn init_prints_the_token_last_and_refuses_to_initialise_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token = init(&dir, &[]);
    assert!(token.starts_with("rein_"), "{token}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("master.key")), 0o600);
    assert_eq!(std::fs::read(dir.join("master.key")).unwrap().len(), 32);
    assert!(dir.join("rein.toml").is_file());
    assert!(dir.join("rein.db").is_file());

    let again = run(rein().arg("init").arg("--data-dir").arg(&dir));
    assert_error(&again, "already-initialised");
    assert!(stdout(&again).is_empty());
}

#[test]
fn server_and_client_failures_exit_1_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(rein()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("missing")));
    assert_error(&out, "not-initialised");

    // Nothing listens on port 1 of the loopback.
    let out = run(rein()
        .env("REIN_ADDR", "http://127.0.0.1:1")
        .env("REIN_TOKEN", "rein_x")
        .arg("whoami"));
    assert_error(&out, "unreachable");

    let out = run(rein().arg("whoami"));
    assert_error(&out, "unauthenticated");

    // A webhook whose secret file is missing, or too short, stops the server at start.
    let dir = tmp.path().join("data");
    init(&dir, &[]);
    let config = std::fs::read_to_string(dir.join("rein.toml")).unwrap();
    std::fs::write(
        dir.join("rein.toml"),
        format!(
            "{config}\n[[webhooks]]\nname = \"approvers\"\nurl = \"http://127.0.0.1:1/hook\"\nsecret_file = \"hook.secret\"\n"
        ),
    )
    .unwrap();
    let serve = || {
        run(rein()
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir))
    };
    let err = assert_error(&serve(), "invalid-config");
    assert!(err.contains("hook.secret"), "{err}");
    std::fs::write(dir.join("hook.secret"), "short").unwrap();
    let err = assert_error(&serve(), "invalid-config");
    assert!(err.contains("at least 16 characters"), "{err}");

    // The receivers' check: genuine and fresh passes; forged, altered or replayed fails.
    let secret = tmp.path().join("hook.secret");
    std::fs::write(&secret, "0123456789abcdef-secret\n").unwrap();
    let body = tmp.path().join("body.json");
    std::fs::write(&body, br#"{"kind":"approval.requested"}"#).unwrap();
    let now = chrono::Utc::now().timestamp();
    let sign = |t: i64, key: &[u8]| {
        rein_notify::sign(key, t, br#"{"kind":"approval.requested"}"#).unwrap()
    };
    let verify = |signature: &str| {
        run(rein()
            .args(["webhook", "verify", "--secret-file"])
            .arg(&secret)
            .arg("--body-file")
            .arg(&body)
            .args(["--signature", signature]))
    };
    let out = verify(&sign(now, b"0123456789abcdef-secret"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "valid");
    assert_error(
        &verify(&sign(now, b"another-secret-entirely")),
        "invalid-signature",
    );
    let err = assert_error(
        &verify(&sign(now - 3600, b"0123456789abcdef-secret")),
        "invalid-signature",
    );
    assert!(err.contains("replay"), "{err}");
    assert_error(&verify("t=1,v1=zz"), "invalid-signature");
}

#[test]
fn grant_lifecycle_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = init(&dir, &[]);
    let dir_arg = dir.to_str().unwrap();
    let server = Server::start(
        &["--data-dir", dir_arg, "--listen", "127.0.0.1:0"],
        tmp.path(),
        &tmp.path().join("server.log"),
    );

    let me = server.json(&admin, &["whoami"]);
    assert_eq!(me["user"], "admin");
    assert_eq!(me["role"], "admin");

    // People, teams and a production system with a read and a write action.
    for (name, display) in [("alice", "Alice"), ("dave", "Dave"), ("carol", "Carol")] {
        let u = server.json(&admin, &["user", "create", name, "--display-name", display]);
        assert_eq!(u["name"], name);
    }
    server.json(&admin, &["team", "create", "payments", "--member", "alice"]);
    server.json(&admin, &["team", "create", "platform"]);
    let team = server.json(&admin, &["team", "add-member", "platform", "dave"]);
    assert_eq!(team["members"], serde_json::json!(["dave"]));
    let system_file = tmp.path().join("tickets.yaml");
    std::fs::write(
        &system_file,
        "name: tickets\nenvironment: prod\nowner_team: platform\nclassification: confidential\n\
         approvers: [team:platform]\nactions:\n  search_tickets: {class: read}\n  add_comment: {class: write}\n",
    )
    .unwrap();
    let system = server.json(
        &admin,
        &["system", "create", "--file", system_file.to_str().unwrap()],
    );
    assert_eq!(system["actions"]["add_comment"]["class"], "write");
    let ledger = server.json(
        &admin,
        &[
            "system",
            "create",
            "ledger",
            "--environment",
            "prod",
            "--owner-team",
            "platform",
            "--approver",
            "user:dave",
            "--action",
            "read_entries=read",
            "--action",
            "post_entry",
        ],
    );
    assert_eq!(ledger["actions"]["read_entries"]["class"], "read");
    assert!(ledger["actions"]["post_entry"].get("class").is_none());

    // Personal tokens for the three people.
    let token = |user: &str| {
        let issued = server.json(
            &admin,
            &["token", "create", "--user", user, "--ttl-days", "1"],
        );
        assert_eq!(issued["metadata"]["user"], user);
        issued["token"].as_str().unwrap().to_owned()
    };
    let (alice, dave, carol) = (token("alice"), token("dave"), token("carol"));
    let tokens = server.json(&admin, &["token", "list", "--user", "alice"]);
    assert_eq!(tokens.as_array().unwrap().len(), 1);

    // Alice registers the agent with every accountable role and requests a production write.
    let agent = server.json(
        &alice,
        &[
            "agent",
            "create",
            "payments/triage-bot/prod",
            "--use-case",
            "triage tickets",
            "--business-owner",
            "carol",
            "--approver",
            "user:carol",
            "--revoker",
            "team:platform",
            "--reviewer",
            "user:dave",
            "--review-cadence-days",
            "30",
        ],
    );
    assert_eq!(
        agent["id"],
        "spiffe://rein.local/agent/payments/triage-bot/prod"
    );
    assert_eq!(agent["status"], "active");
    let grant = server.json(
        &alice,
        &[
            "grant",
            "request",
            "--agent",
            "payments/triage-bot/prod",
            "--system",
            "tickets",
            "--action",
            "search_tickets",
            "--action",
            "add_comment",
            "--expires-in",
            "30d",
            "--max-token-ttl",
            "15m",
            "--justification",
            "comment on triaged tickets",
        ],
    );
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["status"], "requested");
    assert_eq!(grant["mutates_production"], true);
    assert_eq!(grant["business_owner_approver"], "carol");
    assert_eq!(grant["max_token_ttl_secs"], 900);

    // The requester cannot approve; the system approver and the business owner do.
    let out = server.client(&alice, &["grant", "approve", &id]);
    assert_error(&out, "self-approval");
    let half = server.json(&dave, &["grant", "approve", &id, "--comment", "scoped"]);
    assert_eq!(half["status"], "requested");
    let out = server.client(&dave, &["grant", "approve", &id]);
    assert_error(&out, "already-approved");
    let done = server.json(&carol, &["grant", "approve", &id]);
    assert_eq!(done["status"], "active");

    let active = server.json(&admin, &["grant", "list", "--status", "active"]);
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert_eq!(active[0]["id"], id.as_str());
    let by_agent = server.json(
        &admin,
        &[
            "grant",
            "list",
            "--agent",
            "spiffe://rein.local/agent/payments/triage-bot/prod",
        ],
    );
    assert_eq!(by_agent.as_array().unwrap().len(), 1);
    let table = server.client(&admin, &["grant", "list"]);
    assert!(table.status.success());
    let table = stdout(&table);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&id) && l.contains("active") && l.contains("2/2")),
        "{table}"
    );

    // A system approver revokes it; final.
    let revoked = server.json(
        &dave,
        &["grant", "revoke", &id, "--reason", "ticket queue moved"],
    );
    assert_eq!(revoked["status"], "revoked");
    let shown = server.json(&carol, &["grant", "show", &id]);
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["closed"]["by"], "dave");
    let out = server.client(&dave, &["grant", "revoke", &id, "--reason", "again"]);
    assert_error(&out, "invalid-transition");

    // Agent lifecycle: the revokers suspend and resume it.
    let suspended = server.json(
        &dave,
        &[
            "agent",
            "suspend",
            "payments/triage-bot/prod",
            "--reason",
            "incident 42",
        ],
    );
    assert_eq!(suspended["status"], "suspended");
    let resumed = server.json(
        &dave,
        &[
            "agent",
            "resume",
            agent["id"].as_str().unwrap(),
            "--reason",
            "resolved",
        ],
    );
    assert_eq!(resumed["status"], "active");
}

#[test]
fn every_management_command_reaches_its_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = init(&dir, &[]);
    let server = Server::start(
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        tmp.path(),
        &tmp.path().join("server.log"),
    );
    let ok = |token: &str, args: &[&str]| {
        let out = server.client(token, args);
        assert!(out.status.success(), "rein {args:?}: {}", stderr(&out));
        stdout(&out)
    };

    // Users.
    server.json(&admin, &["user", "create", "bob", "--role", "member"]);
    server.json(&admin, &["user", "create", "heidi", "--role", "auditor"]);
    let bob = server.json(
        &admin,
        &["user", "update", "bob", "--email", "bob@example.com"],
    );
    assert_eq!(bob["email"], "bob@example.com");
    let bob = server.json(&admin, &["user", "update", "bob", "--disable"]);
    assert_eq!(bob["disabled"], true);
    let bob = server.json(&admin, &["user", "update", "bob", "--enable"]);
    assert_eq!(bob["disabled"], false);
    assert_eq!(
        server.json(&admin, &["user", "show", "heidi"])["role"],
        "auditor"
    );
    assert!(ok(&admin, &["user", "list"]).contains("heidi  auditor"));

    // Tokens: bob's own, listed and revoked.
    let issued = server.json(&admin, &["token", "create", "--user", "bob"]);
    let bob_token = issued["token"].as_str().unwrap().to_owned();
    let mine = server.json(&bob_token, &["token", "create", "--description", "laptop"]);
    assert_eq!(mine["metadata"]["user"], "bob");
    let listed = server.json(&bob_token, &["token", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let id = mine["metadata"]["id"].as_str().unwrap();
    assert!(ok(&bob_token, &["token", "revoke", id]).contains("revoked token"));
    let out = server.client(mine["token"].as_str().unwrap(), &["whoami"]);
    assert_error(&out, "unauthenticated");

    // Teams.
    server.json(
        &admin,
        &[
            "team",
            "create",
            "ops",
            "--member",
            "bob",
            "--description",
            "x",
        ],
    );
    let team = server.json(
        &admin,
        &["team", "update", "ops", "--description", "operations"],
    );
    assert_eq!(team["description"], "operations");
    server.json(&admin, &["team", "add-member", "ops", "heidi"]);
    let team = server.json(&admin, &["team", "remove-member", "ops", "heidi"]);
    assert_eq!(team["members"], serde_json::json!(["bob"]));
    assert_eq!(server.json(&admin, &["team", "show", "ops"])["name"], "ops");
    assert!(ok(&admin, &["team", "list"]).contains("ops"));

    // Systems.
    server.json(
        &admin,
        &[
            "system",
            "create",
            "wiki",
            "--environment",
            "dev",
            "--owner-team",
            "ops",
            "--approver",
            "team:ops",
            "--action",
            "read_page=read",
        ],
    );
    let wiki = server.json(
        &admin,
        &[
            "system",
            "update",
            "wiki",
            "--classification",
            "public",
            "--action",
            "read_page=read",
            "--action",
            "edit_page=write",
        ],
    );
    assert_eq!(wiki["classification"], "public");
    assert_eq!(wiki["actions"]["edit_page"]["class"], "write");
    assert_eq!(
        server.json(&admin, &["system", "show", "wiki"])["environment"],
        "dev"
    );
    assert!(ok(&admin, &["system", "list"]).contains("edit_page(write)"));

    // Agents: a dev agent without roles, updated, keyed, retired.
    let agent = server.json(
        &bob_token,
        &["agent", "create", "ops/wiki-bot/dev", "--use-case", "docs"],
    );
    assert_eq!(agent["status"], "active");
    let agent = server.json(
        &bob_token,
        &[
            "agent",
            "update",
            "ops/wiki-bot/dev",
            "--reviewer",
            "user:heidi",
            "--description",
            "d",
        ],
    );
    assert_eq!(
        agent["roles"]["reviewers"],
        serde_json::json!(["user:heidi"])
    );
    assert_eq!(agent["description"], "d");
    let agent = server.json(
        &bob_token,
        &[
            "agent",
            "update",
            "ops/wiki-bot/dev",
            "--revoker",
            "team:ops",
        ],
    );
    assert_eq!(
        agent["roles"]["reviewers"],
        serde_json::json!(["user:heidi"]),
        "other roles stay"
    );
    let listed = server.json(
        &admin,
        &["agent", "list", "--team", "ops", "--environment", "dev"],
    );
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(ok(&admin, &["agent", "list", "--status", "active"]).contains("ops/wiki-bot/dev"));
    let jwk = tmp.path().join("key.jwk");
    std::fs::write(
        &jwk,
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}"#,
    )
    .unwrap();
    let key = server.json(
        &bob_token,
        &[
            "agent",
            "add-key",
            "ops/wiki-bot/dev",
            "--jwk-file",
            jwk.to_str().unwrap(),
        ],
    );
    assert_eq!(key["kid"], "k1");
    assert_eq!(key["alg"], "EdDSA");
    let private = tmp.path().join("private.jwk");
    std::fs::write(
        &private,
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#,
    )
    .unwrap();
    let out = server.client(
        &bob_token,
        &[
            "agent",
            "add-key",
            "ops/wiki-bot/dev",
            "--jwk-file",
            private.to_str().unwrap(),
        ],
    );
    assert_error(&out, "invalid-key");
    let agent = server.json(
        &bob_token,
        &["agent", "remove-key", "ops/wiki-bot/dev", "k1"],
    );
    assert_eq!(agent["keys"], serde_json::json!([]));

    // A grant request denied by the system's approvers (bob is both requester and approver here,
    // which only an approval would forbid).
    let grant = server.json(
        &bob_token,
        &[
            "grant",
            "request",
            "--agent",
            "ops/wiki-bot/dev",
            "--system",
            "wiki",
            "--action",
            "read_page",
            "--expires-at",
            "2099-01-01T00:00:00Z",
            "--justification",
            "read docs",
        ],
    );
    let id = grant["id"].as_str().unwrap();
    let denied = server.json(&bob_token, &["grant", "deny", id, "--reason", "not needed"]);
    assert_eq!(denied["status"], "denied");

    // The auditor reads everything but changes nothing.
    let heidi = server.json(&admin, &["token", "create", "--user", "heidi"]);
    let heidi = heidi["token"].as_str().unwrap();
    assert!(ok(heidi, &["grant", "show", id]).contains("status:"));
    let out = server.client(
        heidi,
        &["agent", "retire", "ops/wiki-bot/dev", "--reason", "no"],
    );
    assert_error(&out, "forbidden");
    let retired = server.json(
        &bob_token,
        &[
            "agent",
            "retire",
            "ops/wiki-bot/dev",
            "--reason",
            "replaced",
        ],
    );
    assert_eq!(retired["status"], "retired");
}

#[test]
fn dev_server_loads_the_examples_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &["--dev", "--listen", "127.0.0.1:0"],
        &workspace_root(),
        &tmp.path().join("dev.log"),
    );
    let admin = server.line("REIN_TOKEN=");
    let data_dir = PathBuf::from(server.line("Data directory: "));
    let tokens_file = server.line("Example users' tokens (valid 1 day): ");
    assert!(data_dir.join("rein.db").is_file());
    server.line("Try next");

    let grants = server.json(&admin, &["grant", "list"]);
    let grants = grants.as_array().unwrap();
    let status = |s: &str| grants.iter().filter(|g| g["status"] == s).count();
    assert!(status("active") >= 2, "{grants:?}");
    assert_eq!(status("requested"), 1, "{grants:?}");
    let pending = grants.iter().find(|g| g["status"] == "requested").unwrap();
    let pending_id = pending["id"].as_str().unwrap();

    // Approve the pending grant as the approver the banner names, with their token from the file.
    let hint = server.line("  REIN_TOKEN=$");
    assert!(hint.contains(pending_id), "{hint}");
    let variable = hint.split_whitespace().next().unwrap();
    let tokens = std::fs::read_to_string(&tokens_file).unwrap();
    let approver = tokens
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{variable}=")))
        .unwrap();
    let approved = server.json(approver, &["grant", "approve", pending_id]);
    assert_eq!(approved["status"], "active");

    let status = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        !data_dir.exists(),
        "the dev data directory is removed on shutdown"
    );
}

/// A fresh schema in the test PostgreSQL database (`REIN_TEST_DATABASE_URL`): a database URL
/// whose connections use it, and a function that drops it. `None`, with a notice, when
/// PostgreSQL is unreachable, unless `REIN_REQUIRE_POSTGRES=1`, which fails instead.
fn postgres_schema(prefix: &str) -> Option<(String, impl FnOnce())> {
    let url = std::env::var("REIN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("{prefix}_{}", std::process::id());
    let execute = {
        let url = url.clone();
        move |sql: String| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(&sql).execute(&mut conn).await?;
                conn.close().await
            })
        }
    };
    if let Err(e) = execute(format!("CREATE SCHEMA \"{schema}\"")) {
        if std::env::var("REIN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("PostgreSQL is unreachable and REIN_REQUIRE_POSTGRES=1: {e}");
        }
        eprintln!("skipping the PostgreSQL test: unreachable ({e})");
        return None;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options[search_path]={schema}");
    Some((schema_url, move || {
        execute(format!("DROP SCHEMA \"{schema}\" CASCADE")).unwrap();
    }))
}

#[test]
fn init_and_server_on_postgres() {
    let url = std::env::var("REIN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("rein_cli_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let execute = |sql: String| {
        runtime.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::query(&sql).execute(&mut conn).await?;
            conn.close().await
        })
    };
    if let Err(e) = execute(format!("CREATE SCHEMA \"{schema}\"")) {
        if std::env::var("REIN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("PostgreSQL is unreachable and REIN_REQUIRE_POSTGRES=1: {e}");
        }
        eprintln!("skipping the PostgreSQL test: unreachable ({e})");
        return;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options[search_path]={schema}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = init(&dir, &["--database-url", &schema_url]);
    assert!(
        !dir.join("rein.db").exists(),
        "no SQLite file with PostgreSQL"
    );
    let again = run(rein()
        .arg("init")
        .arg("--data-dir")
        .arg(tmp.path().join("other"))
        .args(["--database-url", &schema_url]));
    assert_error(&again, "forbidden");
    assert!(
        !tmp.path().join("other").exists(),
        "a failed init leaves nothing behind"
    );
    {
        // The database URL comes from rein.toml.
        let server = Server::start(
            &[
                "--data-dir",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            tmp.path(),
            &tmp.path().join("server.log"),
        );
        assert_eq!(server.json(&admin, &["whoami"])["user"], "admin");
        server.json(&admin, &["user", "create", "alice"]);
        let users = server.json(&admin, &["user", "list"]);
        assert_eq!(users.as_array().unwrap().len(), 2);
    }
    execute(format!("DROP SCHEMA \"{schema}\" CASCADE")).unwrap();
}
