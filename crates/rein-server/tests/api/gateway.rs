//! The MCP gateway end to end with real parts: the official MCP Python SDK as the agent's
//! client (`tests/mcp/agent.py`), `mcp-server-time` from PyPI as a stdio upstream, and an
//! SDK-built server (`tests/mcp/upstream.py`) over Streamable HTTP. Listing, allow, deny, a
//! step-up approved while the call waits, and a revocation cutting a live call.
//!
//! Needs Python 3 with the packages in `tests/mcp/requirements.txt` (`.ci/run` installs them);
//! `REIN_TEST_PYTHON` names another interpreter.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use super::oauth::{claims, form_for_task, token_request, AgentKey};
use super::*;

/// Longest a test waits for the agent's next event before failing (a bound, not a sync).
const EVENT_TIMEOUT: Duration = Duration::from_secs(90);

fn python() -> String {
    std::env::var("REIN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
}

/// Fails with instructions when the MCP SDK is not installed (it is part of the test setup).
fn require_sdk() {
    let ok = std::process::Command::new(python())
        .args(["-c", "import mcp, mcp_server_time"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the MCP gateway tests need Python with `pip install -r crates/rein-server/tests/mcp/requirements.txt`"
    );
}

/// A running process printing JSON lines.
struct Proc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(python())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(EVENT_TIMEOUT, self.lines.next_line())
            .await
            .expect("the process printed nothing in time")
            .unwrap()
            .expect("the process ended")
    }

    /// The agent's next event.
    async fn event(&mut self) -> Value {
        serde_json::from_str(&self.line().await).unwrap()
    }

    /// The next event that is not progress.
    async fn result(&mut self) -> Value {
        loop {
            let e = self.event().await;
            if e["op"] != "progress" {
                return e;
            }
        }
    }
}

/// The SDK-built upstream serving Streamable HTTP, and its port.
async fn http_upstream() -> (Proc, String) {
    let upstream = script("upstream.py");
    let mut p = Proc::spawn(&[upstream.to_str().unwrap(), "http"]);
    let line = p.line().await;
    let port = line.strip_prefix("PORT=").unwrap().to_owned();
    (p, port)
}

/// The agent (Python SDK client) running `steps` against `system` with `token`.
async fn agent(srv: &Server, system: &str, token: &str, steps: Value) -> Proc {
    let url = format!("{}/mcp/{system}", srv.base);
    let agent = script("agent.py");
    let mut p = Proc::spawn(&[agent.to_str().unwrap(), &url, token, &steps.to_string()]);
    let init = p.event().await;
    assert_eq!(init["op"], "initialized", "{init}");
    let protocol = init["protocol"].as_str().unwrap();
    assert!(
        rein_gateway::PROTOCOL_VERSIONS.contains(&protocol),
        "{protocol}"
    );
    p
}

const GUARDRAILS: &str = r#"
@id("echo-needs-approval")
@step_up
@reason("echoing in production at risk 50 or more needs a human approval")
forbid (principal, action == Action::"call", resource)
when { resource.name == "echo" && context has risk && context.risk >= 50 };

@id("no-admin-tools")
@reason("admin tools are not for agents")
forbid (principal, action == Action::"call", resource)
when { resource.class == "admin" };
"#;

/// Registers `name` as an MCP system with `actions` (name → class) reached through `mcp`.
async fn mcp_system(srv: &Server, name: &str, actions: &[(&str, &str)], mcp: Value) {
    let actions: serde_json::Map<String, Value> = actions
        .iter()
        .map(|(a, c)| ((*a).to_owned(), json!({"class": c})))
        .collect();
    srv.post(
        &srv.admin,
        "/v1/systems",
        json!({"name": name, "environment": "prod", "owner_team": "payments",
               "approvers": ["team:dba"], "actions": actions, "mcp": mcp}),
    )
    .await
    .ok(201);
}

/// An active grant of `actions` on `system` for the prod agent.
async fn grant(w: &World, system: &str, actions: &[&str]) {
    let id = request_grant(&w.srv, &w.alice, PROD_AGENT, system, actions).await;
    let g = w.srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
    if g["status"] != "active" {
        w.srv.post(&w.carol, &approve(&id), json!({})).await.ok(200);
    }
}

/// An access token of the prod agent for `system`, `scope`, task `task`.
async fn token(w: &World, key: &AgentKey, system: &str, scope: &str, task: &str) -> String {
    let assertion = key.sign(&claims(&w.srv, PROD_AGENT));
    let r = token_request(&w.srv, &form_for_task(&assertion, system, scope, task)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["access_token"].as_str().unwrap().to_owned()
}

/// The gateway.call records of a task, oldest first.
async fn calls(w: &World, task: &str) -> Vec<Value> {
    let page = w
        .srv
        .get(&w.erin, &format!("/v1/audit?type=gateway.call&task={task}"))
        .await
        .ok(200);
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].clone())
        .collect()
}

#[tokio::test]
async fn agents_reach_mcp_servers_only_through_decisions() {
    require_sdk();
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("gateway.cedar"), GUARDRAILS).unwrap();
    for backend in backends() {
        let Some(w) = World::with_policies(&backend, Some(policies.path().to_path_buf())).await
        else {
            continue;
        };
        let srv = &w.srv;
        let (mut http_upstream, port) = http_upstream().await;

        mcp_system(
            srv,
            "clock",
            &[("get_current_time", "read"), ("convert_time", "read")],
            json!({"transport": "stdio", "command": python(),
                   "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}),
        )
        .await;
        mcp_system(
            srv,
            "tools",
            &[
                ("echo", "write"),
                ("slow", "read"),
                ("ask", "read"),
                ("confirm", "read"),
                ("digest", "read"),
                ("drop_table", "admin"),
                ("resources/read", "read"),
                ("prompts/get", "read"),
            ],
            json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{port}/mcp")}),
        )
        .await;
        grant(&w, "clock", &["get_current_time"]).await;
        grant(
            &w,
            "tools",
            &[
                "echo",
                "slow",
                "ask",
                "confirm",
                "drop_table",
                "resources/read",
            ],
        )
        .await;
        let key = AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;

        // Without a token: 401 naming the protected-resource metadata, which names Rein.
        let r = srv
            .client
            .post(format!("{}/mcp/tools", srv.base))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        let metadata_url = format!(
            "{}/.well-known/oauth-protected-resource/mcp/tools",
            srv.base
        );
        assert!(challenge.contains(&metadata_url), "{challenge}");
        let metadata = read(
            srv,
            &w.erin,
            "/.well-known/oauth-protected-resource/mcp/tools",
        )
        .await;
        assert_eq!(metadata["resource"], format!("{}/mcp/tools", srv.base));
        assert_eq!(metadata["authorization_servers"], json!([srv.base]));
        // A token for another system is not accepted here.
        let clock_token = token(&w, &key, "clock", "get_current_time", "task-clock").await;
        let r = srv
            .client
            .post(format!("{}/mcp/tools", srv.base))
            .bearer_auth(&clock_token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // DNS rebinding: a foreign Host or Origin is refused.
        for (name, value) in [
            ("host", "evil.example:80"),
            ("origin", "http://evil.example"),
        ] {
            let r = srv
                .client
                .post(format!("{}/mcp/clock", srv.base))
                .bearer_auth(&clock_token)
                .header(name, value)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{name}");
        }

        // stdio upstream (mcp-server-time): only the granted tool is listed and callable.
        let mut a = agent(
            srv,
            "clock",
            &clock_token,
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "get_current_time", "arguments": {"timezone": "UTC"}},
                {"op": "call", "name": "convert_time", "arguments":
                    {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Paris"}},
            ]),
        )
        .await;
        assert_eq!(a.result().await["tools"], json!(["get_current_time"]));
        let ok = a.result().await;
        assert_eq!(ok["is_error"], false, "{ok}");
        assert!(ok["text"][0].as_str().unwrap().contains("UTC"), "{ok}");
        let refused = a.result().await;
        assert_eq!(refused["error"]["code"], -32001, "{refused}");
        assert!(refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scope"));
        assert_eq!(a.result().await["op"], "done");

        // Streamable HTTP upstream: list filtering, allow, a guardrail's deny, resources.
        let scope = "echo slow ask confirm drop_table resources/read";
        let tools_token = token(&w, &key, "tools", scope, "task-7").await;
        let mut a = agent(
            srv,
            "tools",
            &tools_token,
            json!([
                {"op": "list_tools"},
                {"op": "call", "name": "echo", "arguments": {"text": "hello"},
                 "meta": {"rein/risk": 10, "rein/confidence": 0.95}},
                {"op": "call", "name": "drop_table", "arguments": {"table": "invoices"}},
                {"op": "list_resources"},
                {"op": "read_resource", "uri": "note://readme"},
                {"op": "call", "name": "ask", "arguments": {"question": "why"}},
                {"op": "call", "name": "confirm", "arguments": {"action": "rotate keys"}},
                {"op": "call", "name": "digest", "arguments": {}},
                {"op": "call", "name": "echo", "arguments": {"text": "risky"},
                 "meta": {"rein/risk": 90}, "progress": true},
            ]),
        )
        .await;
        assert_eq!(
            a.result().await["tools"],
            json!(["ask", "confirm", "drop_table", "echo", "slow"])
        );
        let echoed = a.result().await;
        assert_eq!(echoed["text"], json!(["hello"]), "{echoed}");
        let denied = a.result().await;
        assert_eq!(denied["error"]["code"], -32001, "{denied}");
        assert_eq!(denied["error"]["data"]["decision"], "deny");
        assert_eq!(
            denied["error"]["data"]["determined_by"],
            json!(["no-admin-tools"])
        );
        assert_eq!(a.result().await["uris"], json!(["note://readme"]));
        assert_eq!(a.result().await["text"], json!(["read me"]));
        // The upstream's own request (sampling) reaches the client and its answer comes back.
        assert_eq!(
            a.result().await,
            json!({"op": "sampling", "question": "why"})
        );
        assert_eq!(a.result().await["text"], json!(["the model said: WHY"]));
        // A log message and an elicitation from the upstream reach the client in order, and
        // the user's answer goes back.
        let log = a.result().await;
        assert_eq!(log["op"], "log", "{log}");
        assert_eq!(log["data"], "about to rotate keys");
        assert_eq!(a.result().await["op"], "elicitation");
        assert_eq!(a.result().await["text"], json!(["rotate keys: confirmed"]));
        let hidden = a.result().await;
        assert_eq!(hidden["error"]["code"], -32001, "{hidden}");

        // Step-up: the call waits, telling the agent which approval it waits for; an
        // approver approves; the call goes through once.
        let progress = a.event().await;
        assert_eq!(progress["op"], "progress", "{progress}");
        let message = progress["message"].as_str().unwrap();
        let approval = message
            .split_whitespace()
            .find(|w| w.starts_with("apr_"))
            .unwrap()
            .to_owned();
        srv.post(
            &w.bob,
            &format!("/v1/approvals/{approval}/approve"),
            json!({"comment": "fine"}),
        )
        .await
        .ok(200);
        let stepped = a.result().await;
        assert_eq!(stepped["text"], json!(["risky"]), "{stepped}");
        assert_eq!(a.result().await["op"], "done");

        // Every call is recorded: agent, task, tool, decision, approvers, outcome, latency.
        let records = calls(&w, "task-7").await;
        let summary: Vec<(String, String, String)> = records
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["decision"].as_str().unwrap_or("").to_owned(),
                    e["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let s = |a: &str, d: &str, o: &str| (a.to_owned(), d.to_owned(), o.to_owned());
        assert_eq!(
            summary,
            [
                s("echo", "allow", "success"),
                s("drop_table", "deny", "refused"),
                s("resources/read", "allow", "success"),
                s("ask", "allow", "success"),
                s("confirm", "allow", "success"),
                s("digest", "", "refused"),
                s("echo", "allow", "success"),
            ]
        );
        let last = records.last().unwrap();
        assert_eq!(last["approvers"], json!(["bob"]), "{last}");
        assert_eq!(last["agent"], PROD_AGENT);
        assert!(last["argument_digest"].as_str().is_some());
        assert!(last["latency_us"].as_u64().is_some());

        // Revocation reaches a live session: a call in flight fails, the session is gone.
        let mut a = agent(
            srv,
            "tools",
            &tools_token,
            json!([
                {"op": "call", "name": "slow", "arguments": {"seconds": 60}, "progress": true},
                {"op": "list_tools"},
            ]),
        )
        .await;
        let first = a.event().await;
        assert_eq!(first["op"], "progress", "the upstream is working: {first}");
        let revoked_at = Instant::now();
        srv.post(
            &srv.admin,
            "/v1/revocations",
            json!({"target": {"kind": "task", "agent": PROD_AGENT, "task_id": "task-7"},
                   "reason": "incident 9"}),
        )
        .await
        .ok(201);
        let cut = a.result().await;
        let elapsed = revoked_at.elapsed();
        assert_eq!(cut["error"]["code"], -32002, "{cut}");
        assert!(
            cut["error"]["message"]
                .as_str()
                .unwrap()
                .contains("access revoked"),
            "{cut}"
        );
        eprintln!("revocation to failed call, seen by the client: {elapsed:?}");
        let after = a.result().await;
        assert!(after.get("error").is_some(), "{after}");
        assert_eq!(srv.gateway.session_count(), 0);
        let records = calls(&w, "task-7").await;
        assert_eq!(records.last().unwrap()["outcome"], "revoked");

        let _ = http_upstream.child.kill().await;
        w.srv.cleanup().await;
    }
}

/// The `id:` and JSON `data:` of the next SSE event in `body`, reading more as needed.
async fn next_event(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    buffer: &mut String,
) -> Option<(String, Value)> {
    use futures_util::StreamExt as _;
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let id = event
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().to_owned());
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            if let (Some(id), false) = (id, data.is_empty()) {
                return Some((id, serde_json::from_str(&data.join("\n")).unwrap()));
            }
            continue;
        }
        let chunk = tokio::time::timeout(EVENT_TIMEOUT, body.next())
            .await
            .ok()??;
        buffer.push_str(std::str::from_utf8(&chunk.ok()?).unwrap());
    }
}

#[tokio::test]
async fn streams_resume_sessions_end_and_broken_upstreams_leave_nothing_open() {
    require_sdk();
    let backend = common::Backend::Sqlite;
    let w = World::new(&backend).await.unwrap();
    let srv = &w.srv;
    let (mut http_upstream, port) = http_upstream().await;
    mcp_system(
        srv,
        "tools",
        &[("slow", "read")],
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{port}/mcp")}),
    )
    .await;
    grant(&w, "tools", &["slow"]).await;
    let key = AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;
    let access = token(&w, &key, "tools", "slow", "task-r").await;
    let url = format!("{}/mcp/tools", srv.base);
    let post = |body: Value, session: Option<&str>| {
        let mut r = srv
            .client
            .post(&url)
            .bearer_auth(&access)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let result: Value = init.json().await.unwrap();
    assert_eq!(result["result"]["protocolVersion"], "2025-06-18");
    let done = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(done.status(), 202);

    // A method the gateway does not know is not forwarded (it could not be governed).
    let unknown = post(
        json!({"jsonrpc": "2.0", "id": 9, "method": "admin/drop_everything", "params": {}}),
        Some(&session),
    )
    .await
    .unwrap();
    let mut body = unknown.bytes_stream();
    let (_, refused) = next_event(&mut body, &mut String::new()).await.unwrap();
    assert_eq!(refused["id"], 9);
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    let ping = post(
        json!({"jsonrpc": "2.0", "id": 10, "method": "ping"}),
        Some(&session),
    )
    .await
    .unwrap();
    let mut body = ping.bytes_stream();
    let (_, pong) = next_event(&mut body, &mut String::new()).await.unwrap();
    assert_eq!(pong, json!({"jsonrpc": "2.0", "id": 10, "result": {}}));

    // A call's stream is read for one event, then the connection is lost.
    let call = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "slow", "arguments": {"seconds": 0.5}, "_meta": {"progressToken": "p"}}}),
        Some(&session),
    )
    .await
    .unwrap();
    assert!(call.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = call.bytes_stream();
    let mut buffer = String::new();
    let (first_id, first) = next_event(&mut body, &mut buffer).await.unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    drop(body);

    // Resumed after that event: the rest of the progress, then the response, nothing twice.
    let resumed = srv
        .client
        .get(&url)
        .bearer_auth(&access)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("last-event-id", &first_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let mut body = resumed.bytes_stream();
    let mut buffer = String::new();
    let mut ids = vec![first_id.clone()];
    let response = loop {
        let (id, event) = next_event(&mut body, &mut buffer).await.unwrap();
        assert!(!ids.contains(&id), "{id} was sent before");
        ids.push(id);
        if event.get("id").is_some() {
            break event;
        }
        assert_eq!(event["method"], "notifications/progress", "{event}");
    };
    assert_eq!(response["id"], 1);
    assert_eq!(
        response["result"]["content"][0]["text"], "done",
        "{response}"
    );
    assert!(ids.len() > 2, "{ids:?}");

    // The session's own stream has one reader at a time.
    let stream = || {
        srv.client
            .get(&url)
            .bearer_auth(&access)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .send()
    };
    let first_reader = stream().await.unwrap();
    assert_eq!(first_reader.status(), 200);
    assert_eq!(stream().await.unwrap().status(), 409);
    drop(first_reader);

    // One agent holds at most 16 sessions at once (each runs an upstream): the 17th waits.
    let init = || {
        post(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}}),
            None,
        )
    };
    let mut more = Vec::new();
    for _ in 1..16 {
        let r = init().await.unwrap();
        assert_eq!(r.status(), 200);
        more.push(r.headers()["mcp-session-id"].to_str().unwrap().to_owned());
    }
    assert_eq!(init().await.unwrap().status(), 429);
    for id in &more {
        let r = srv
            .client
            .delete(&url)
            .bearer_auth(&access)
            .header("mcp-session-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    // Ended by the client: the session is gone.
    let deleted = srv
        .client
        .delete(&url)
        .bearer_auth(&access)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let after = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(after.status(), 404);
    assert_eq!(srv.gateway.session_count(), 0);

    // An upstream that cannot start is a 502 with a JSON-RPC error, and leaves no session.
    mcp_system(
        srv,
        "broken",
        &[("echo", "read")],
        json!({"transport": "stdio", "command": "/nonexistent/mcp-server"}),
    )
    .await;
    grant(&w, "broken", &["echo"]).await;
    let broken = token(&w, &key, "broken", "echo", "task-b").await;
    let r = srv
        .client
        .post(format!("{}/mcp/broken", srv.base))
        .bearer_auth(&broken)
        .json(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot start"),
        "{body}"
    );
    assert_eq!(srv.gateway.session_count(), 0);

    // An upstream that dies mid-call fails the call, and its session is gone.
    mcp_system(
        srv,
        "fragile",
        &[("crash", "read")],
        json!({"transport": "stdio", "command": python(),
               "args": [script("upstream.py").to_str().unwrap(), "stdio"]}),
    )
    .await;
    grant(&w, "fragile", &["crash"]).await;
    let fragile = token(&w, &key, "fragile", "crash", "task-f").await;
    let mut a = agent(
        srv,
        "fragile",
        &fragile,
        json!([{"op": "call", "name": "crash", "arguments": {}}, {"op": "list_tools"}]),
    )
    .await;
    let died = a.result().await;
    assert_eq!(died["error"]["code"], -32002, "{died}");
    assert!(
        died["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream ended"),
        "{died}"
    );
    let after = a.result().await;
    assert!(after.get("error").is_some(), "{after}");
    assert_eq!(srv.gateway.session_count(), 0);
    let _ = http_upstream.child.kill().await;
    w.srv.cleanup().await;
}

/// Every audit record, as JSON text.
async fn whole_audit_log(srv: &Server) -> String {
    let mut all = String::new();
    let mut after = 0u64;
    loop {
        let page = srv
            .get(&srv.admin, &format!("/v1/audit?limit=1000&after={after}"))
            .await
            .ok(200);
        let records = page["records"].as_array().unwrap();
        all.push_str(&page.to_string());
        match records.last() {
            Some(r) if records.len() == 1000 => after = r["seq"].as_u64().unwrap(),
            _ => return all,
        }
    }
}

#[tokio::test]
async fn upstream_secrets_are_injected_and_appear_nowhere_else() {
    use sha2::Digest as _;
    require_sdk();
    let digest = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    for backend in backends() {
        let Some(w) = World::new(&backend).await else {
            continue;
        };
        let srv = &w.srv;
        let api_key = format!("sk-upstream-{:032x}", rand::random::<u128>());
        let bearer = format!("Bearer tok-{:032x}", rand::random::<u128>());
        for (name, value) in [("upstream-key", &api_key), ("upstream-auth", &bearer)] {
            srv.client
                .put(format!("{}/v1/secrets/{name}", srv.base))
                .bearer_auth(&srv.admin)
                .json(&json!({"value": value}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
        let (mut http_upstream, port) = http_upstream().await;
        mcp_system(
            srv,
            "vault-stdio",
            &[("digest", "read")],
            json!({"transport": "stdio", "command": python(),
                   "args": [script("upstream.py").to_str().unwrap(), "stdio"],
                   "env": {"UPSTREAM_API_KEY": {"secret": "upstream-key"}}}),
        )
        .await;
        mcp_system(
            srv,
            "vault-http",
            &[("digest", "read")],
            json!({"transport": "streamable_http",
                   "url": format!("http://127.0.0.1:{port}/mcp"),
                   "headers": {"Authorization": {"secret": "upstream-auth"}}}),
        )
        .await;
        let key = AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;
        let mut seen = String::new();
        for (system, expected) in [("vault-stdio", &api_key), ("vault-http", &bearer)] {
            grant(&w, system, &["digest"]).await;
            let token = token(&w, &key, system, "digest", "task-s").await;
            let mut a = agent(
                srv,
                system,
                &token,
                json!([{"op": "call", "name": "digest", "arguments": {}}]),
            )
            .await;
            let result = a.result().await;
            // The upstream got the secret (its digest matches); the agent saw only the digest.
            assert_eq!(
                result["text"],
                json!([digest(expected)]),
                "{system}: {result}"
            );
            seen.push_str(&result.to_string());
            assert_eq!(a.result().await["op"], "done");
        }
        let audit = whole_audit_log(srv).await;
        assert!(audit.contains("gateway.call") && audit.contains("secret.set"));
        let logs = common::logs().text();
        for secret in [&api_key, &bearer] {
            let bare = secret.trim_start_matches("Bearer ");
            for (place, text) in [("audit log", &audit), ("logs", &logs), ("agent", &seen)] {
                assert!(!text.contains(bare), "the secret is in the {place}");
            }
        }
        let _ = http_upstream.child.kill().await;
        w.srv.cleanup().await;
    }
}
