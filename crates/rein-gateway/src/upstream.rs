//! The upstream side of a session: the MCP server the gateway forwards to, started or
//! connected for that session alone, its credentials resolved from stored secrets.
//!
//! Messages go out with [`Upstream::send`] and come back, in order, on the receiver
//! [`connect`] returns; it closes when the upstream ends. A request the upstream cannot be
//! reached for is answered there with an error response, so no caller waits forever.

use std::time::Duration;

use futures_util::StreamExt as _;
use rein_core::mcp::{ConfigValue, McpUpstream};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{self, code, Kind};
use crate::{Error, SecretSource, SecretValue};

/// Messages buffered in each direction before a sender waits.
const QUEUE: usize = 256;
/// Longest line (message) a stdio upstream may write.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// The environment a stdio upstream inherits from Rein; nothing else is passed on.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];
/// Header carrying the upstream's session ID (Streamable HTTP).
const SESSION_HEADER: &str = "mcp-session-id";
/// Header carrying the negotiated protocol version (Streamable HTTP).
const VERSION_HEADER: &str = "mcp-protocol-version";

/// The sending half of a connected upstream.
pub(crate) struct Upstream {
    outgoing: mpsc::Sender<Value>,
    stop: CancellationToken,
}

impl Upstream {
    /// Sends one message; fails once the upstream has ended.
    pub(crate) async fn send(&self, message: Value) -> Result<(), Error> {
        self.outgoing
            .send(message)
            .await
            .map_err(|_| Error::Upstream("the upstream has ended".into()))
    }

    /// Stops the upstream: the process is killed, the remote session ended.
    pub(crate) fn close(&self) {
        self.stop.cancel();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Resolves a configuration value, fetching a secret by name.
async fn resolve(value: &ConfigValue, secrets: &dyn SecretSource) -> Result<SecretValue, Error> {
    match value {
        ConfigValue::Literal(v) => Ok(SecretValue::from(v.clone())),
        ConfigValue::Secret { secret } => secrets.reveal(secret).await,
    }
}

/// The text of a resolved value (environment variables and headers are text).
fn text<'a>(value: &'a SecretValue, name: &str) -> Result<&'a str, Error> {
    value
        .as_str()
        .map_err(|_| Error::Upstream(format!("the value for `{name}` is not UTF-8 text")))
}

/// Starts (stdio) or connects to (Streamable HTTP) the upstream `config` describes.
pub(crate) async fn connect(
    config: &McpUpstream,
    secrets: &dyn SecretSource,
    client: &reqwest::Client,
) -> Result<(Upstream, mpsc::Receiver<Value>), Error> {
    let (outgoing, rx_out) = mpsc::channel(QUEUE);
    let (tx_in, incoming) = mpsc::channel(QUEUE);
    let stop = CancellationToken::new();
    match config {
        McpUpstream::Stdio { command, args, env } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).env_clear();
            for var in INHERITED_ENV {
                if let Some(v) = std::env::var_os(var) {
                    cmd.env(var, v);
                }
            }
            for (name, value) in env {
                let value = resolve(value, secrets).await?;
                cmd.env(name, text(&value, name)?);
            }
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            let child = cmd
                .spawn()
                .map_err(|e| Error::Upstream(format!("cannot start `{command}`: {e}")))?;
            tokio::spawn(run_stdio(child, rx_out, tx_in, stop.clone()));
        }
        McpUpstream::StreamableHttp { url, headers } => {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                let resolved = resolve(value, secrets).await?;
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|_| Error::Upstream(format!("invalid header name `{name}`")))?;
                let mut value =
                    HeaderValue::try_from(text(&resolved, name.as_str())?).map_err(|_| {
                        Error::Upstream(format!(
                            "the value of header `{name}` is not a valid header value"
                        ))
                    })?;
                value.set_sensitive(true);
                map.insert(name, value);
            }
            let http = Http {
                client: client.clone(),
                url: url.clone(),
                headers: map,
                session: std::sync::Mutex::new(None),
                version: std::sync::Mutex::new(None),
                incoming: tx_in,
                stop: stop.clone(),
            };
            tokio::spawn(run_http(std::sync::Arc::new(http), rx_out));
        }
    }
    Ok((Upstream { outgoing, stop }, incoming))
}

// === stdio ===

/// Drives a stdio upstream: one JSON message per line each way; stderr is drained and never
/// logged (it could hold what the process was given). Kills the process when stopped.
async fn run_stdio(
    mut child: tokio::process::Child,
    mut outgoing: mpsc::Receiver<Value>,
    incoming: mpsc::Sender<Value>,
    stop: CancellationToken,
) {
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.start_kill();
        return;
    };
    let writer = async move {
        while let Some(message) = outgoing.recv().await {
            let mut line = message.to_string();
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    };
    let reader = async move {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) if line.len() > MAX_LINE => break,
                Ok(_) => match serde_json::from_str::<Value>(line.trim()) {
                    Ok(message) => {
                        if incoming.send(message).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => tracing::debug!("a stdio upstream wrote a line that is not JSON"),
                },
            }
        }
    };
    let drain = async move {
        let mut stderr = BufReader::new(stderr);
        let mut sink = Vec::new();
        loop {
            sink.clear();
            match stderr.read_until(b'\n', &mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::spawn(drain);
    tokio::select! {
        () = stop.cancelled() => {}
        () = writer => {}
        () = reader => {}
    }
    stop.cancel();
    let _ = child.kill().await;
}

// === Streamable HTTP ===

struct Http {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    session: std::sync::Mutex<Option<HeaderValue>>,
    version: std::sync::Mutex<Option<HeaderValue>>,
    incoming: mpsc::Sender<Value>,
    stop: CancellationToken,
}

impl Http {
    fn headers(&self) -> HeaderMap {
        let mut headers = self.headers.clone();
        if let Some(s) = self.session.lock().ok().and_then(|s| s.clone()) {
            headers.insert(SESSION_HEADER, s);
        }
        if let Some(v) = self.version.lock().ok().and_then(|v| v.clone()) {
            headers.insert(VERSION_HEADER, v);
        }
        headers
    }

    /// Answers request `message` (if it is one) with an error, so its caller stops waiting.
    async fn fail(&self, message: &Value, why: &str) {
        if let Some(Kind::Request { id, .. }) = jsonrpc::kind(message) {
            let _ = self
                .incoming
                .send(jsonrpc::error(&id, code::INTERNAL, why, None))
                .await;
        }
    }

    /// POSTs one message and passes on what comes back: one JSON response, or an SSE stream
    /// of messages ending with the response.
    async fn post(self: std::sync::Arc<Self>, message: Value) {
        let is_initialize = matches!(
            jsonrpc::kind(&message),
            Some(Kind::Request { ref method, .. }) if method == "initialize"
        );
        let sent = self
            .client
            .post(&self.url)
            .headers(self.headers())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(message.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    failure = failure(&e),
                    "the MCP upstream could not be reached"
                );
                return self
                    .fail(&message, "the upstream could not be reached")
                    .await;
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::ACCEPTED {
            return;
        }
        if !status.is_success() {
            let why = format!("the upstream answered HTTP {}", status.as_u16());
            return self.fail(&message, &why).await;
        }
        if is_initialize {
            if let Some(id) = response.headers().get(SESSION_HEADER) {
                if let Ok(mut s) = self.session.lock() {
                    *s = Some(id.clone());
                }
            }
        }
        let sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let answered = if sse {
            self.read_sse(response).await
        } else {
            match response.json::<Value>().await {
                Ok(Value::Array(messages)) => {
                    for m in messages {
                        self.receive(m).await;
                    }
                    true
                }
                Ok(m) => {
                    self.receive(m).await;
                    true
                }
                Err(_) => false,
            }
        };
        if !answered {
            self.fail(&message, "the upstream's answer was cut off or malformed")
                .await;
        }
        if is_initialize {
            let this = std::sync::Arc::clone(&self);
            tokio::spawn(this.listen());
        }
    }

    /// Passes one message on; notes the negotiated protocol version from `initialize`.
    async fn receive(&self, message: Value) {
        if let Some(v) = message
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
        {
            if let (Ok(value), Ok(mut version)) = (HeaderValue::try_from(v), self.version.lock()) {
                *version = Some(value);
            }
        }
        let _ = self.incoming.send(message).await;
    }

    /// Reads an SSE body, passing on each message; whether it ended with a response.
    async fn read_sse(&self, response: reqwest::Response) -> bool {
        let mut events = sse_messages(response);
        let mut answered = false;
        while let Some(message) = events.next().await {
            answered |= matches!(jsonrpc::kind(&message), Some(Kind::Response { .. }));
            self.receive(message).await;
        }
        answered
    }

    /// The session's stream of server-initiated messages (`GET`), reopened when it drops, until
    /// the session stops; a server that offers none (`405`) is left alone.
    async fn listen(self: std::sync::Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        while !self.stop.is_cancelled() {
            let opened = self
                .client
                .get(&self.url)
                .headers(self.headers())
                .header(ACCEPT, "text/event-stream")
                .send()
                .await;
            match opened {
                Ok(r) if r.status().is_success() => {
                    backoff = Duration::from_millis(100);
                    let mut events = sse_messages(r);
                    loop {
                        tokio::select! {
                            () = self.stop.cancelled() => return,
                            next = events.next() => match next {
                                Some(m) => self.receive(m).await,
                                None => break,
                            },
                        }
                    }
                }
                Ok(_) => return,
                Err(_) => {}
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Ends the upstream session (`DELETE`), best effort.
    async fn end(&self) {
        if self.session.lock().ok().and_then(|s| s.clone()).is_some() {
            let _ = self
                .client
                .delete(&self.url)
                .headers(self.headers())
                .send()
                .await;
        }
    }
}

/// What kind of failure a reqwest error is, without its text (which names the URL).
fn failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

async fn run_http(http: std::sync::Arc<Http>, mut outgoing: mpsc::Receiver<Value>) {
    loop {
        tokio::select! {
            () = http.stop.cancelled() => break,
            next = outgoing.recv() => match next {
                Some(message) => {
                    tokio::spawn(std::sync::Arc::clone(&http).post(message));
                }
                None => break,
            },
        }
    }
    http.stop.cancel();
    http.end().await;
}

/// The JSON messages of an SSE body, in order; events whose data is not JSON are skipped.
pub(crate) fn sse_messages(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = Value> + Unpin {
    let bytes = response.bytes_stream();
    Box::pin(futures_util::stream::unfold(
        (bytes, Vec::<u8>::new()),
        |(mut bytes, mut buffer)| async move {
            loop {
                if let Some((event, rest)) = split_event(&buffer) {
                    buffer = rest;
                    if let Some(message) = event_data(&event) {
                        return Some((message, (bytes, buffer)));
                    }
                    continue;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        },
    ))
}

/// Splits the first complete event (ended by a blank line) off `buffer`.
fn split_event(buffer: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let end = (0..buffer.len()).find_map(|i| {
        let rest = &buffer[i..];
        [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"]
            .into_iter()
            .find(|sep| rest.starts_with(sep))
            .map(|sep| (i, sep.len()))
    })?;
    let (at, len) = end;
    Some((buffer[..at].to_vec(), buffer[at + len..].to_vec()))
}

/// The JSON in an event's `data:` lines, if any.
fn event_data(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn sse_events_are_split_and_their_data_parsed() {
        let body = b"event: message\nid: 1\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":\ndata: 2}\r\n\r\nrest";
        let (first, rest) = split_event(body).unwrap();
        assert_eq!(event_data(&first), Some(serde_json::json!({"a": 1})));
        let (comment, rest) = split_event(&rest).unwrap();
        assert_eq!(event_data(&comment), None);
        let (second, rest) = split_event(&rest).unwrap();
        assert_eq!(event_data(&second), Some(serde_json::json!({"b": 2})));
        assert_eq!(rest, b"rest");
        assert!(split_event(&rest).is_none());
    }
}
