//! `rein token`: the two kinds of token Rein deals in.
//!
//! - **Personal API tokens** (`create`, `list`, `revoke`): a user's credential for the management
//!   API, what `REIN_TOKEN` holds.
//! - **Agent access tokens** (`request`, `inspect`): short-lived, task-scoped JWTs (RFC 9068)
//!   from the token endpoint. `request` is the agent's side: it signs a client assertion with
//!   the agent's private key file (`private_key_jwt`, RFC 7523) and needs no `REIN_TOKEN`.
//!   `inspect` is the operator's or resource server's side: it asks Rein whether a token is
//!   active (introspection, RFC 7662, with `REIN_TOKEN`), or `--decode`s it locally, unverified.
//!
//! Tokens are printed on stdout only, never in errors or logs.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use rein_core::id::{AgentId, SystemName, UserName};
use rein_oauth::metadata::{INTROSPECTION_ENDPOINT_PATH, METADATA_PATH, TOKEN_ENDPOINT_PATH};
use rein_oauth::request::{CLIENT_CREDENTIALS, JWT_BEARER_ASSERTION_TYPE};
use rein_oauth::{system_audience, ClientKey, DEFAULT_ASSERTION_LIFETIME_SECS};
use rein_registry::NewToken;
use serde_json::{json, Map, Value};

use super::Span;
use crate::client::{segment, Client, Local};
use crate::output::{self, col, Output};
use crate::Exit;

/// `rein token …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Issue a token; it is shown once.
    Create {
        /// Whose token (default: yourself; admins may issue for anyone).
        #[arg(long)]
        user: Option<UserName>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime in days (1 to 366); without it the token lasts until revoked.
        #[arg(long)]
        ttl_days: Option<i64>,
    },
    /// List a user's tokens (metadata only).
    List {
        /// Whose tokens (default: yourself).
        #[arg(long)]
        user: Option<UserName>,
    },
    /// Revoke a token by its ID.
    Revoke {
        /// The token ID (the part after `rein_`, as listed).
        id: String,
        /// Whose token (default: yourself).
        #[arg(long)]
        user: Option<UserName>,
    },
    /// Get an agent access token from the token endpoint, authenticated with the agent's key
    /// file (no REIN_TOKEN needed); prints only the token.
    Request(RequestArgs),
    /// Ask Rein whether an agent access token is active (exit 3 if not), or decode it offline
    /// with --decode.
    Inspect(InspectArgs),
}

/// Arguments of `rein token request`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The assertion's audience is the `token_endpoint` of the server's metadata \
(/.well-known/oauth-authorization-server); the request goes to REIN_ADDR. \
Use it as TOKEN=$(rein token request ...); --output json prints the whole response.")]
pub struct RequestArgs {
    /// The agent's private JWK file, readable only by its owner (mode 0600), as
    /// `rein agent key generate` writes it.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The agent's SPIFFE ID, `spiffe://<trust-domain>/agent/<team>/<name>/<environment>` (the
    /// `id` of `rein agent show`). `team/name/environment` is not accepted: without the
    /// management API the trust domain is not known.
    #[arg(long, value_name = "SPIFFE_ID", value_parser = spiffe_agent)]
    agent: AgentId,
    /// The target system; the token is bound to it (audience `rein:system:<name>`).
    #[arg(long)]
    system: SystemName,
    /// The actions the token is for, space-separated: "select_invoices list_tables".
    #[arg(long)]
    scope: String,
    /// The task the token is for.
    #[arg(long)]
    task_id: String,
    /// The task's stated intent, recorded in the audit log.
    #[arg(long)]
    intent: String,
    /// Requested lifetime, up to 1h: `300s`, `5m`. Rein may issue a shorter one (the grants'
    /// limits); by default 5 minutes.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<Span>,
}

/// Arguments of `rein token inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The access token, or `-` to read it from stdin (which keeps it out of process lists).
    // Not named `token`: that is the id of the global `--token` (the API token), which a
    // positional of the same id would silently replace.
    #[arg(value_name = "TOKEN")]
    access_token: String,
    /// Decode the header and claims locally, without contacting Rein. NOT verified: the
    /// signature, expiry and revocation are not checked.
    #[arg(long)]
    decode: bool,
}

/// `--agent` of `rein token request`: a SPIFFE ID only.
fn spiffe_agent(s: &str) -> Result<AgentId, String> {
    if !s.starts_with("spiffe://") {
        return Err(format!(
            "`{s}` is not a SPIFFE ID; give the agent's full ID, \
             spiffe://<trust-domain>/agent/<team>/<name>/<environment> (`rein agent show` prints it)"
        ));
    }
    s.parse().map_err(|e| format!("{e}"))
}

/// Runs a `rein token` command and returns its exit code: 0, or 3 when `inspect` finds the
/// token inactive.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<Exit> {
    let done = match command {
        Command::Request(args) => return request(client, args).await,
        Command::Inspect(args) => return inspect(client, args).await,
        Command::Create {
            user,
            description,
            ttl_days,
        } => {
            let user = user_or_self(client, user).await?;
            let body = NewToken {
                description,
                ttl_days,
            };
            let response = client.post(&tokens(&user), &body).await?;
            client.print(&response, |v| {
                let mut text = output::record(
                    &v["metadata"],
                    &["id", "user", "description", "created_at", "expires_at"],
                );
                let token = v["token"].as_str().unwrap_or_default();
                text.push_str(&format!(
                    "\n\nThe token is shown only once; keep it secret.\nREIN_TOKEN={token}"
                ));
                text
            })
        }
        Command::List { user } => {
            let user = user_or_self(client, user).await?;
            let response = client.get(&tokens(&user)).await?;
            client.print(&response, |v| {
                output::table(
                    output::rows(v),
                    &[
                        col("ID", "id"),
                        col("DESCRIPTION", "description"),
                        col("CREATED", "created_at"),
                        col("EXPIRES", "expires_at"),
                        col("REVOKED", "revoked_at"),
                    ],
                )
            })
        }
        Command::Revoke { id, user } => {
            let user = user_or_self(client, user).await?;
            let response = client
                .delete(&format!("{}/{}", tokens(&user), segment(&id)))
                .await?;
            client.print(&response, |_| format!("revoked token {id} of {user}"))
        }
    };
    done.map(|()| Exit::Success)
}

fn tokens(user: &UserName) -> String {
    format!("/v1/users/{}/tokens", segment(user.as_str()))
}

/// `user`, or the caller's own name from `GET /v1/whoami`.
async fn user_or_self(client: &Client, user: Option<UserName>) -> anyhow::Result<UserName> {
    if let Some(user) = user {
        return Ok(user);
    }
    let me = client.get("/v1/whoami").await?.json()?;
    let name = me
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| Local::new("bad-response", "`/v1/whoami` did not name the user"))?;
    Ok(name.parse()?)
}

/// `rein token request`: sign an assertion with the key file, post the token request, print the
/// token (or, with `--output json`, the whole response).
async fn request(client: &Client, args: RequestArgs) -> anyhow::Result<Exit> {
    let key = read_key_file(&args.key)?;
    let metadata = client.get_public(METADATA_PATH).await?.json()?;
    let endpoint = metadata
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Local::new(
                "bad-response",
                format!("the server's metadata ({METADATA_PATH}) names no `token_endpoint`"),
            )
        })?;
    let assertion = key
        .assertion(
            &args.agent,
            endpoint,
            Utc::now(),
            DEFAULT_ASSERTION_LIFETIME_SECS,
        )
        .map_err(|e| Local::new("invalid-key", e.to_string()))?;
    let resource = system_audience(&args.system);
    let ttl = args
        .ttl
        .map(Span::seconds_u32)
        .transpose()?
        .map(|s| s.to_string());
    let mut form = vec![
        ("grant_type", CLIENT_CREDENTIALS),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("client_id", args.agent.as_str()),
        ("resource", resource.as_str()),
        ("scope", args.scope.as_str()),
        ("task_id", args.task_id.as_str()),
        ("intent", args.intent.as_str()),
    ];
    if let Some(ttl) = &ttl {
        form.push(("expires_in", ttl.as_str()));
    }
    let response = client
        .post_oauth_form(TOKEN_ENDPOINT_PATH, &form, false)
        .await?;
    match client.output() {
        Output::Json => client.print(&response, |_| String::new())?,
        Output::Table => {
            let body = response.json()?;
            let token = body
                .get("access_token")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Local::new("bad-response", "the token response has no `access_token`")
                })?;
            println!("{token}");
        }
    }
    Ok(Exit::Success)
}

/// Reads the agent's private JWK, refusing a file that group or others may read (like the
/// master key).
fn read_key_file(path: &Path) -> anyhow::Result<ClientKey> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading `{}`", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(Local::new(
            "insecure-key-file",
            format!(
                "key file `{}` must be readable only by its owner (mode 0600), found {mode:o}; run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        )
        .into());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    ClientKey::from_jwk_str(&text)
        .map_err(|e| Local::new("invalid-key", format!("`{}`: {e}", path.display())).into())
}

/// The token argument, or stdin for `-`, trimmed.
fn token_argument(arg: &str) -> anyhow::Result<String> {
    let token = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the token from stdin")?;
        text.trim().to_owned()
    } else {
        arg.trim().to_owned()
    };
    if token.is_empty() {
        return Err(Local::new("invalid-input", "no token given").into());
    }
    Ok(token)
}

/// The claims `inspect` shows, in this order.
const SHOWN_CLAIMS: &[&str] = &[
    "active",
    "sub",
    "aud",
    "scope",
    "task_id",
    "env",
    "owner",
    "grant_ids",
    "exp",
    "jti",
];

/// `rein token inspect`: introspect (exit 3 unless active) or decode offline.
async fn inspect(client: &Client, args: InspectArgs) -> anyhow::Result<Exit> {
    let token = token_argument(&args.access_token)?;
    if args.decode {
        let decoded = decode(&token)?;
        match client.output() {
            Output::Json => println!("{decoded}"),
            Output::Table => println!("{}", render_decoded(&decoded)),
        }
        return Ok(Exit::Success);
    }
    let response = client
        .post_oauth_form(
            INTROSPECTION_ENDPOINT_PATH,
            &[("token", token.as_str())],
            true,
        )
        .await?;
    let body = response.json()?;
    match client.output() {
        Output::Json => client.print(&response, |_| String::new())?,
        Output::Table => println!("{}", render_introspection(&body)),
    }
    Ok(if body.get("active") == Some(&Value::Bool(true)) {
        Exit::Success
    } else {
        Exit::Deny
    })
}

/// A NumericDate as RFC 3339, or the value unchanged when it is not one.
fn time(value: &Value) -> Value {
    value
        .as_i64()
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
        .map_or_else(
            || value.clone(),
            |t| Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        )
}

/// `active`, then the claims that say what the token allows, with `exp` as RFC 3339.
fn render_introspection(body: &Value) -> String {
    let mut shown = Map::new();
    for key in SHOWN_CLAIMS {
        if let Some(v) = body.get(*key) {
            let v = if *key == "exp" { time(v) } else { v.clone() };
            shown.insert((*key).to_owned(), v);
        }
    }
    if !shown.contains_key("active") {
        shown.insert("active".into(), Value::Bool(false));
    }
    output::record(&Value::Object(shown), SHOWN_CLAIMS)
}

/// The header and claims of a compact JWS, decoded without verifying anything.
fn decode(token: &str) -> anyhow::Result<Value> {
    let malformed =
        |what: &str| anyhow::Error::new(Local::new("invalid-input", format!("not a JWT: {what}")));
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, _signature] = parts.as_slice() else {
        return Err(malformed(
            "a JWT has three base64url parts separated by `.`",
        ));
    };
    let part = |text: &str, name: &str| -> anyhow::Result<Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| malformed(&format!("its {name} is not base64url")))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| malformed(&format!("its {name} is not JSON")))?;
        if !value.is_object() {
            return Err(malformed(&format!("its {name} is not a JSON object")));
        }
        Ok(value)
    };
    Ok(json!({
        "verified": false,
        "header": part(header, "header")?,
        "claims": part(claims, "payload")?,
    }))
}

/// A warning line, then the header and claims with the times as RFC 3339.
fn render_decoded(decoded: &Value) -> String {
    let mut claims = decoded["claims"].clone();
    if let Some(map) = claims.as_object_mut() {
        for key in ["exp", "iat", "nbf"] {
            if let Some(v) = map.get_mut(key) {
                *v = time(v);
            }
        }
    }
    let shown = json!({ "header": decoded["header"], "claims": claims });
    let first: Vec<String> = std::iter::once("header".to_owned())
        .chain(SHOWN_CLAIMS.iter().map(|c| format!("claims.{c}")))
        .collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    format!(
        "NOT VERIFIED: decoded locally; the signature, expiry and revocation were not checked.\n{}",
        output::record(&shown, &first)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn decode_shows_header_and_claims_unverified() {
        let token = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"})),
            b64(
                &json!({"sub": "spiffe://rein.local/agent/a/b/prod", "exp": 1_780_000_000, "scope": "read"})
            ),
        );
        let d = decode(&token).unwrap();
        assert_eq!(d["verified"], false);
        assert_eq!(d["header"]["kid"], "k1");
        let text = render_decoded(&d);
        assert!(text.starts_with("NOT VERIFIED"), "{text}");
        assert!(text.contains("claims.exp:"), "{text}");
        assert!(text.contains("2026-05-28T"), "{text}");
        assert!(text.contains("header.alg:"), "{text}");
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.x",
            &format!("{}.bm90IGpzb24.x", b64(&json!({}))),
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn introspection_renders_the_claims_in_order() {
        let text = render_introspection(&json!({
            "active": true, "sub": "spiffe://x/agent/a/b/prod", "aud": "rein:system:db",
            "scope": "read", "task_id": "t-1", "env": "prod", "owner": "a",
            "grant_ids": ["grt_1", "grt_2"], "exp": 1_780_000_000, "iss": "http://x",
        }));
        let keys: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "active",
                "sub",
                "aud",
                "scope",
                "task_id",
                "env",
                "owner",
                "grant_ids",
                "exp"
            ]
        );
        assert!(text.contains("grt_1, grt_2"), "{text}");
        assert!(text.contains("2026-05-28T"), "{text}");
        assert_eq!(
            render_introspection(&json!({"active": false})),
            "active: false"
        );
    }

    #[test]
    fn request_needs_a_spiffe_id() {
        assert!(spiffe_agent("spiffe://rein.local/agent/payments/bot/prod").is_ok());
        let err = spiffe_agent("payments/bot/prod").unwrap_err();
        assert!(err.contains("SPIFFE ID"), "{err}");
    }
}
