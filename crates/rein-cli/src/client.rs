//! The HTTP client the client commands share: finds the server (`REIN_ADDR`), authenticates
//! (`REIN_TOKEN`), turns RFC 9457 problem responses into [`ApiError`], and prints responses in
//! the chosen [`Output`] format.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::output::Output;

/// Where the server is, who is calling, and how to print what it answers. Global: accepted
/// before or after any subcommand.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Base URL of the Rein server.
    #[arg(
        long,
        global = true,
        env = "REIN_ADDR",
        default_value = "http://127.0.0.1:8470",
        value_name = "URL"
    )]
    addr: String,
    /// Personal API token; prefer the environment variable, which stays out of process lists.
    #[arg(
        long,
        global = true,
        env = "REIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Output format: a human table, or the API's JSON response body as-is.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

impl ClientArgs {
    /// The output format chosen with `--output`, for commands that print without a server.
    pub fn output(&self) -> Output {
        self.output
    }

    /// A client for the configured server.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("rein/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            base: self.addr.trim_end_matches('/').to_owned(),
            token: self.token.clone().filter(|t| !t.is_empty()),
            output: self.output,
        })
    }
}

/// A connection to one Rein server, as one user.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    output: Output,
}

/// A successful response's body text.
pub struct Response {
    body: String,
}

/// A successful response whose body is read chunk by chunk.
pub struct Stream {
    response: reqwest::Response,
    base: String,
}

impl Stream {
    /// The next chunk of the body, or `None` at its end. A body that ends abnormally (the
    /// server failed midway) is an error, never a silent end.
    pub async fn chunk(&mut self) -> anyhow::Result<Option<impl AsRef<[u8]>>> {
        self.response.chunk().await.map_err(|e| {
            Local::new(
                "unreachable",
                format!(
                    "the response from {} ended abnormally: {}",
                    self.base,
                    root_cause(&e)
                ),
            )
            .into()
        })
    }
}

impl Response {
    /// The body as received.
    pub fn text(&self) -> &str {
        &self.body
    }

    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> anyhow::Result<Value> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body).map_err(|e| {
            anyhow::Error::new(Local::new(
                "bad-response",
                format!("the server's response is not JSON: {e}"),
            ))
        })
    }
}

/// A problem the server reported (RFC 9457 `application/problem+json`).
#[derive(Debug)]
pub struct ApiError {
    /// The stable error code.
    pub code: String,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.detail)
    }
}

impl std::error::Error for ApiError {}

/// An error found locally, with its code.
#[derive(Debug)]
pub struct Local {
    code: &'static str,
    detail: String,
}

impl Local {
    /// An error with a stable local code.
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Local {}

/// The detail and code printed for `error`: the server's code for API problems, otherwise a
/// local code named after the first recognised cause.
pub fn describe(error: &anyhow::Error) -> (String, String) {
    for cause in error.chain() {
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return (api.detail.clone(), api.code.clone());
        }
    }
    let code = error
        .chain()
        .find_map(|cause| {
            if let Some(local) = cause.downcast_ref::<Local>() {
                Some(local.code)
            } else if cause.is::<std::io::Error>() {
                Some("io")
            } else if cause.is::<serde_json::Error>()
                || cause.is::<serde_yaml_ng::Error>()
                || cause.is::<toml::de::Error>()
            {
                Some("invalid-input")
            } else if cause.is::<reqwest::Error>() {
                Some("unreachable")
            } else if cause.is::<rein_registry::Error>() || cause.is::<rein_core::DomainError>() {
                Some(registry_code(cause))
            } else {
                None
            }
        })
        .unwrap_or("error");
    (format!("{error:#}"), code.to_owned())
}

fn registry_code(cause: &(dyn std::error::Error + 'static)) -> &'static str {
    use rein_core::ErrorCode as _;
    if let Some(e) = cause.downcast_ref::<rein_registry::Error>() {
        e.code()
    } else if let Some(e) = cause.downcast_ref::<rein_core::DomainError>() {
        e.code()
    } else {
        "error"
    }
}

/// Percent-encodes one URL path segment.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Response> {
        self.send(Method::GET, path, &[], None::<&()>).await
    }

    /// `GET path?query`; empty query values are left out.
    pub async fn get_query(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<Response> {
        self.send(Method::GET, path, query, None::<&()>).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Response> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Response> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Response> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Response> {
        self.send(Method::DELETE, path, &[], None::<&()>).await
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<&B>,
    ) -> anyhow::Result<Response> {
        let response = self.start(method, path, query, body, None).await?;
        let body = response.text().await.map_err(|e| {
            Local::new(
                "unreachable",
                format!(
                    "reading the response from {}: {}",
                    self.base,
                    root_cause(&e)
                ),
            )
        })?;
        Ok(Response { body })
    }

    /// `GET path?query` whose body is read as it arrives ([`Stream::chunk`]), for responses
    /// too long to hold in memory or to wait for; `timeout` bounds the whole transfer.
    pub async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
        timeout: Duration,
    ) -> anyhow::Result<Stream> {
        let response = self
            .start(Method::GET, path, query, None::<&()>, Some(timeout))
            .await?;
        Ok(Stream {
            response,
            base: self.base.clone(),
        })
    }

    /// Sends a request and returns the response once its status is known to be a success; a
    /// problem response becomes an [`ApiError`].
    async fn start<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        let token = self.token.as_deref().ok_or_else(|| {
            Local::new(
                "unauthenticated",
                "no API token: set REIN_TOKEN (printed by `rein init` and `rein server --dev`)",
            )
        })?;
        let query: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(&query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(|e| {
            Local::new(
                "unreachable",
                format!("cannot reach Rein at {}: {}", self.base, root_cause(&e)),
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(problem(status, &body).into())
    }

    /// `GET path` without credentials, for public endpoints (the OAuth authorization-server
    /// metadata); a problem response becomes an [`ApiError`].
    pub async fn get_public(&self, path: &str) -> anyhow::Result<Response> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.oauth_reply(request).await
    }

    /// `POST path` with an `application/x-www-form-urlencoded` body to an OAuth endpoint. With
    /// `authenticated`, the API token goes as the bearer (introspection); without, no
    /// credentials at all (the token endpoint refuses any `Authorization` header: the agent
    /// authenticates with its signed assertion in the form). An OAuth error response (RFC 6749
    /// §5.2, `{"error", "error_description"}`) becomes an [`ApiError`] whose code is the OAuth
    /// `error`; a problem document as usual.
    pub async fn post_oauth_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        authenticated: bool,
    ) -> anyhow::Result<Response> {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
        if authenticated {
            let token = self.token.as_deref().ok_or_else(|| {
                Local::new(
                    "unauthenticated",
                    "no API token: set REIN_TOKEN (printed by `rein init` and `rein server --dev`)",
                )
            })?;
            request = request.bearer_auth(token);
        }
        self.oauth_reply(request).await
    }

    /// Sends `request` (no JSON body) and reads the reply: the body on success, otherwise an
    /// OAuth error or a problem document as an [`ApiError`].
    async fn oauth_reply(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                Local::new(
                    "unreachable",
                    format!("cannot reach Rein at {}: {}", self.base, root_cause(&e)),
                )
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            Local::new(
                "unreachable",
                format!(
                    "reading the response from {}: {}",
                    self.base,
                    root_cause(&e)
                ),
            )
        })?;
        if status.is_success() {
            return Ok(Response { body });
        }
        Err(oauth_problem(status, &body).into())
    }

    /// The output format chosen with `--output`.
    pub fn output(&self) -> Output {
        self.output
    }

    /// Prints a response: its body as-is for `--output json`, otherwise `render`ed from JSON.
    pub fn print(
        &self,
        response: &Response,
        render: impl FnOnce(&Value) -> String,
    ) -> anyhow::Result<()> {
        match self.output {
            Output::Json => {
                if !response.body.is_empty() {
                    println!("{}", response.body.trim_end());
                }
            }
            Output::Table => {
                let text = render(&response.json()?);
                if !text.is_empty() {
                    println!("{}", text.trim_end());
                }
            }
        }
        Ok(())
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Reads a problem document; anything else becomes a generic error naming the status.
fn problem(status: StatusCode, body: &str) -> ApiError {
    let doc: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
    let detail = text("detail").or_else(|| text("title")).unwrap_or_else(|| {
        let reason = status.canonical_reason().unwrap_or("error");
        format!("HTTP {} {reason}", status.as_u16())
    });
    let code = text("code").unwrap_or_else(|| format!("http-{}", status.as_u16()));
    ApiError { code, detail }
}

/// Reads an OAuth error response (`{"error", "error_description"}`, RFC 6749 §5.2): the code
/// is the OAuth `error`, the detail its description. Anything else is read as a problem
/// document.
fn oauth_problem(status: StatusCode, body: &str) -> ApiError {
    let doc: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match doc.get("error").and_then(Value::as_str) {
        Some(code) => ApiError {
            code: code.to_owned(),
            detail: doc
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or(code)
                .to_owned(),
        },
        None => problem(status, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_give_detail_and_code() {
        let p = problem(
            StatusCode::FORBIDDEN,
            r#"{"type":"https://rein.dev/problems/self-approval","title":"Forbidden","status":403,"detail":"the requester of a grant may not approve it","code":"self-approval"}"#,
        );
        assert_eq!(p.code, "self-approval");
        assert_eq!(p.detail, "the requester of a grant may not approve it");
        let (detail, code) = describe(&anyhow::Error::new(p));
        assert_eq!(code, "self-approval");
        assert_eq!(detail, "the requester of a grant may not approve it");
    }

    #[test]
    fn non_problem_bodies_fall_back_to_the_status() {
        let p = problem(StatusCode::BAD_GATEWAY, "<html>oops</html>");
        assert_eq!(p.code, "http-502");
        assert_eq!(p.detail, "HTTP 502 Bad Gateway");
    }

    #[test]
    fn local_errors_carry_their_code_through_context() {
        let e = anyhow::Error::new(std::io::Error::other("disk on fire")).context("writing x");
        assert_eq!(
            describe(&e),
            ("writing x: disk on fire".into(), "io".into())
        );
        let e = anyhow::Error::new(Local::new("invalid-input", "bad")).context("reading y");
        assert_eq!(describe(&e).1, "invalid-input");
    }

    #[test]
    fn oauth_errors_give_description_and_code() {
        let e = oauth_problem(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_scope","error_description":"no active grant"}"#,
        );
        assert_eq!(
            (e.code.as_str(), e.detail.as_str()),
            ("invalid_scope", "no active grant")
        );
        let e = oauth_problem(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#);
        assert_eq!(
            (e.code.as_str(), e.detail.as_str()),
            ("invalid_client", "invalid_client")
        );
        let e = oauth_problem(
            StatusCode::FORBIDDEN,
            r#"{"title":"Forbidden","status":403,"detail":"no","code":"forbidden"}"#,
        );
        assert_eq!(e.code, "forbidden");
        assert_eq!(oauth_problem(StatusCode::BAD_GATEWAY, "").code, "http-502");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
