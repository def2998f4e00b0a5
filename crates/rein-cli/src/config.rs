//! Server configuration: `rein.toml` in the data directory, overridden by `REIN_*` environment
//! variables, overridden by command-line flags. Clap merges flags over the environment; this
//! module puts both over the file, in memory (the process environment is never modified), and
//! maps the result onto [`RegistryConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rein_audit::LogConfig;
use rein_core::id::{Environment, TrustDomain};
use rein_registry::RegistryConfig;
use rein_store::{SqliteStore, Store};
use serde::Deserialize;

use crate::client::Local;

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "rein.toml";
/// The SQLite database file in a data directory, unless `database_url` says otherwise.
pub const SQLITE_FILE: &str = "rein.db";
/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// `rein.toml`. Every key is optional; unknown keys are refused, so a typo is not silently
/// ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    trust_domain: Option<TrustDomain>,
    environments: Option<Vec<Environment>>,
    protected_environments: Option<Vec<Environment>>,
    production_environments: Option<Vec<Environment>>,
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    grant_expiry_sweep_seconds: Option<u64>,
    policies_dir: Option<PathBuf>,
    facts_refresh_seconds: Option<u64>,
    public_url: Option<String>,
    approval_ttl_seconds: Option<i64>,
    admins_may_approve: Option<bool>,
    review_grace_days: Option<u32>,
    suspend_overdue_reviews: Option<bool>,
    #[serde(default)]
    audit: AuditFileConfig,
    #[serde(default)]
    gateway: GatewayFileConfig,
    #[serde(default)]
    webhooks: Vec<WebhookFileConfig>,
}

/// The `[gateway]` table of `rein.toml`: the MCP gateway at `/mcp/{system}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFileConfig {
    allowed_origins: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    max_sessions: Option<usize>,
    max_sessions_per_agent: Option<usize>,
    idle_timeout_seconds: Option<u64>,
}

impl GatewayFileConfig {
    fn settings(self) -> anyhow::Result<rein_gateway::GatewayConfig> {
        let d = rein_gateway::GatewayConfig::default();
        let idle = self
            .idle_timeout_seconds
            .map_or(d.idle_timeout, Duration::from_secs);
        if self.max_sessions == Some(0) || self.max_sessions_per_agent == Some(0) || idle.is_zero()
        {
            return Err(Local::new(
                "invalid-config",
                "`gateway.max_sessions`, `gateway.max_sessions_per_agent` and `gateway.idle_timeout_seconds` must be positive",
            )
            .into());
        }
        Ok(rein_gateway::GatewayConfig {
            allowed_origins: self.allowed_origins.unwrap_or(d.allowed_origins),
            allowed_hosts: self.allowed_hosts.unwrap_or(d.allowed_hosts),
            max_sessions: self.max_sessions.unwrap_or(d.max_sessions),
            max_sessions_per_agent: self
                .max_sessions_per_agent
                .unwrap_or(d.max_sessions_per_agent),
            idle_timeout: idle,
            upstream_timeout: d.upstream_timeout,
        })
    }
}

/// One `[[webhooks]]` table of `rein.toml`: where approval requests, decisions and expiries
/// are announced. The signing secret is read from a file (never written in `rein.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFileConfig {
    name: String,
    url: String,
    secret_file: PathBuf,
    #[serde(default)]
    format: rein_notify::Format,
    #[serde(default)]
    events: Vec<rein_notify::EventKind>,
}

impl WebhookFileConfig {
    /// The webhook, its secret read from `secret_file` (relative to the data directory).
    fn load(self, data_dir: &Path) -> anyhow::Result<rein_notify::Webhook> {
        let invalid = |why: String| Local::new("invalid-config", why);
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(invalid(format!("webhook `{}`: `url` must be http(s)", self.name)).into());
        }
        let path = data_dir.join(&self.secret_file);
        let secret = std::fs::read_to_string(&path).map_err(|e| {
            invalid(format!(
                "webhook `{}`: cannot read `secret_file` `{}`: {e}",
                self.name,
                path.display()
            ))
        })?;
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(invalid(format!(
                "webhook `{}`: the secret in `{}` must be at least 16 characters",
                self.name,
                path.display()
            ))
            .into());
        }
        Ok(rein_notify::Webhook {
            name: self.name,
            url: self.url,
            secret: rein_notify::Secret::new(secret.as_bytes()),
            format: self.format,
            events: self.events,
        })
    }
}

/// The `[audit]` table of `rein.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFileConfig {
    checkpoint_every_records: Option<u64>,
    checkpoint_every_seconds: Option<u64>,
}

impl FileConfig {
    /// Reads `rein.toml` from `data_dir`.
    pub fn read(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in `{}`", path.display()))
    }
}

/// Server settings from the command line or the `REIN_*` environment (a flag wins over its
/// variable); each one set replaces the value from `rein.toml`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    /// [default: 127.0.0.1:8470]
    #[arg(long, env = "REIN_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Database: `postgres://…` for PostgreSQL; default the SQLite file `rein.db` in the data
    /// directory.
    #[arg(
        long,
        env = "REIN_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// SPIFFE trust domain of agent IDs. [default: rein.local]
    #[arg(long, env = "REIN_TRUST_DOMAIN", value_name = "DOMAIN")]
    pub trust_domain: Option<TrustDomain>,
    /// Environments agents and systems may live in, comma-separated. [default: prod,staging,dev]
    #[arg(
        long,
        env = "REIN_ENVIRONMENTS",
        value_delimiter = ',',
        value_name = "ENV,…"
    )]
    pub environments: Option<Vec<Environment>>,
    /// Environments whose active agents need every accountable role. [default: prod,staging]
    #[arg(
        long,
        env = "REIN_PROTECTED_ENVIRONMENTS",
        value_delimiter = ',',
        value_name = "ENV,…"
    )]
    pub protected_environments: Option<Vec<Environment>>,
    /// Environments whose write/admin grants also need the business owner. [default: prod]
    #[arg(
        long,
        env = "REIN_PRODUCTION_ENVIRONMENTS",
        value_delimiter = ',',
        value_name = "ENV,…"
    )]
    pub production_environments: Option<Vec<Environment>>,
    /// Sign an audit checkpoint after this many records. [default: 10000]
    #[arg(long, env = "REIN_AUDIT_CHECKPOINT_EVERY_RECORDS", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_every_records: Option<u64>,
    /// …or after this many seconds, whichever comes first. [default: 60]
    #[arg(long, env = "REIN_AUDIT_CHECKPOINT_EVERY_SECONDS", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_every_seconds: Option<u64>,
    /// How often the server records and persists grant expiries, in seconds. [default: 30]
    #[arg(long, env = "REIN_GRANT_EXPIRY_SWEEP_SECONDS", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub grant_expiry_sweep_seconds: Option<u64>,
    /// Directory of guardrail policies (`*.cedar`), reloaded when its files change; relative to
    /// the working directory. [default: `policies` in the data directory]
    #[arg(long, env = "REIN_POLICIES_DIR", value_name = "DIR")]
    pub policies_dir: Option<PathBuf>,
    /// How often the decision point re-reads agents, systems and grants from the database, to
    /// pick up other replicas' changes, in seconds. [default: 10]
    #[arg(long, env = "REIN_FACTS_REFRESH_SECONDS", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub facts_refresh_seconds: Option<u64>,
    /// The URL agents reach this server at: the `iss` of its tokens and the audience of agents'
    /// assertions (`<url>/oauth2/token`). [default: `http://` and the listen address]
    #[arg(long, env = "REIN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

/// Where the records live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The SQLite file at this path.
    Sqlite(PathBuf),
    /// A database URL (`postgres://…`), never printed: it may hold a password.
    Url(String),
}

impl Database {
    /// Opens the store, applying pending migrations.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        match self {
            Self::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
            Self::Url(url) => Ok(rein_store::open(url).await?),
        }
    }

    /// A description safe to print.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("SQLite {}", path.display()),
            Self::Url(url) if url.starts_with("postgres") => "PostgreSQL (database_url)".into(),
            Self::Url(_) => "database_url".into(),
        }
    }
}

/// The settings in force, merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Registry rules.
    pub registry: RegistryConfig,
    /// Listen address.
    pub listen: SocketAddr,
    /// The store.
    pub database: Database,
    /// The audit log's appender settings.
    pub audit: LogConfig,
    /// How often grant expiries are swept.
    pub expiry_sweep: Duration,
    /// Where guardrail policies are loaded from.
    pub policies_dir: PathBuf,
    /// Whether `policies_dir` is the default (created when missing) or was configured (must
    /// exist).
    pub policies_dir_is_default: bool,
    /// How often the decision point's facts are re-read from the store.
    pub facts_refresh: Duration,
    /// The public base URL, if configured (otherwise derived from the bound address).
    pub public_url: Option<String>,
    /// Where approval requests are announced.
    pub webhooks: Vec<rein_notify::Webhook>,
    /// The MCP gateway.
    pub gateway: rein_gateway::GatewayConfig,
}

/// Checkpoint every 10 000 records or 60 s; sweep expiries every 30 s.
const DEFAULT_CHECKPOINT_EVERY_RECORDS: u64 = 10_000;
const DEFAULT_CHECKPOINT_EVERY_SECONDS: u64 = 60;
const DEFAULT_EXPIRY_SWEEP_SECONDS: u64 = 30;
const DEFAULT_FACTS_REFRESH_SECONDS: u64 = 10;
/// The policies directory inside a data directory.
pub const POLICIES_DIR: &str = "policies";

/// A positive number of something from the file, or an `invalid-config` error.
fn positive(key: &str, value: Option<u64>) -> anyhow::Result<Option<u64>> {
    match value {
        Some(0) => Err(Local::new("invalid-config", format!("`{key}` must be at least 1")).into()),
        other => Ok(other),
    }
}

impl Settings {
    /// Merges `file` < `overrides` over the built-in defaults and checks the result.
    pub fn resolve(
        data_dir: &Path,
        file: FileConfig,
        overrides: Overrides,
    ) -> anyhow::Result<Self> {
        let defaults = RegistryConfig::default();
        let registry = RegistryConfig {
            trust_domain: overrides
                .trust_domain
                .or(file.trust_domain)
                .unwrap_or(defaults.trust_domain),
            environments: overrides
                .environments
                .or(file.environments)
                .unwrap_or(defaults.environments),
            protected_environments: overrides
                .protected_environments
                .or(file.protected_environments)
                .unwrap_or(defaults.protected_environments),
            production_environments: overrides
                .production_environments
                .or(file.production_environments)
                .unwrap_or(defaults.production_environments),
            approval_ttl_secs: file
                .approval_ttl_seconds
                .unwrap_or(defaults.approval_ttl_secs),
            admins_may_approve: file
                .admins_may_approve
                .unwrap_or(defaults.admins_may_approve),
            review_grace_days: file.review_grace_days.unwrap_or(defaults.review_grace_days),
            suspend_overdue_reviews: file
                .suspend_overdue_reviews
                .unwrap_or(defaults.suspend_overdue_reviews),
        };
        if registry.review_grace_days > rein_core::review::MAX_GRACE_DAYS {
            return Err(Local::new(
                "invalid-config",
                format!(
                    "`review_grace_days` must be at most {}",
                    rein_core::review::MAX_GRACE_DAYS
                ),
            )
            .into());
        }
        if registry.environments.is_empty() {
            return Err(Local::new("invalid-config", "`environments` must not be empty").into());
        }
        for (key, list) in [
            ("protected_environments", &registry.protected_environments),
            ("production_environments", &registry.production_environments),
        ] {
            if let Some(unknown) = list.iter().find(|e| !registry.environments.contains(e)) {
                return Err(Local::new(
                    "invalid-config",
                    format!("`{key}` names `{unknown}`, which is not in `environments`"),
                )
                .into());
            }
        }
        let listen = match overrides.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .context("the default listen address")?,
        };
        let database = match overrides.database_url.or(file.database_url) {
            Some(url) => Database::Url(url),
            None => Database::Sqlite(data_dir.join(SQLITE_FILE)),
        };
        let every_records = overrides
            .audit_checkpoint_every_records
            .or(positive(
                "audit.checkpoint_every_records",
                file.audit.checkpoint_every_records,
            )?)
            .unwrap_or(DEFAULT_CHECKPOINT_EVERY_RECORDS);
        let every_seconds = overrides
            .audit_checkpoint_every_seconds
            .or(positive(
                "audit.checkpoint_every_seconds",
                file.audit.checkpoint_every_seconds,
            )?)
            .unwrap_or(DEFAULT_CHECKPOINT_EVERY_SECONDS);
        let sweep = overrides
            .grant_expiry_sweep_seconds
            .or(positive(
                "grant_expiry_sweep_seconds",
                file.grant_expiry_sweep_seconds,
            )?)
            .unwrap_or(DEFAULT_EXPIRY_SWEEP_SECONDS);
        let refresh = overrides
            .facts_refresh_seconds
            .or(positive(
                "facts_refresh_seconds",
                file.facts_refresh_seconds,
            )?)
            .unwrap_or(DEFAULT_FACTS_REFRESH_SECONDS);
        if !(1..=rein_core::approval::MAX_TTL_SECS).contains(&registry.approval_ttl_secs) {
            return Err(Local::new(
                "invalid-config",
                format!(
                    "`approval_ttl_seconds` must be 1 to {}",
                    rein_core::approval::MAX_TTL_SECS
                ),
            )
            .into());
        }
        let configured_policies = overrides.policies_dir.or(file.policies_dir);
        let policies_dir_is_default = configured_policies.is_none();
        let policies_dir = configured_policies.unwrap_or_else(|| data_dir.join(POLICIES_DIR));
        Ok(Self {
            registry,
            listen,
            database,
            audit: LogConfig {
                checkpoint_every_records: every_records,
                checkpoint_every: Duration::from_secs(every_seconds),
                ..LogConfig::default()
            },
            expiry_sweep: Duration::from_secs(sweep),
            policies_dir,
            policies_dir_is_default,
            facts_refresh: Duration::from_secs(refresh),
            public_url: check_public_url(overrides.public_url.or(file.public_url))?,
            gateway: file.gateway.settings()?,
            webhooks: file
                .webhooks
                .into_iter()
                .map(|w| w.load(data_dir))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

/// An `http(s)://` base URL without query or fragment, or an `invalid-config` error.
fn check_public_url(url: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(url) = url else { return Ok(None) };
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(['?', '#', ' '])
        && url.len() <= 2048;
    if ok {
        Ok(Some(url.trim_end_matches('/').to_owned()))
    } else {
        Err(Local::new(
            "invalid-config",
            format!("`public_url` must be an http(s) URL without query or fragment, not `{url}`"),
        )
        .into())
    }
}

/// The `rein.toml` that `rein init` writes: every default, commented out, and the database
/// URL when one was given.
pub fn template(database_url: Option<&str>) -> String {
    let mut text = String::from(
        r#"# Rein configuration, written by `rein init`.
# Precedence: this file < REIN_* environment variables < command-line flags.
# The values shown commented out are the defaults.

# SPIFFE trust domain of agent IDs (REIN_TRUST_DOMAIN, --trust-domain).
# trust_domain = "rein.local"

# Environments agents and systems may be registered in (REIN_ENVIRONMENTS, comma-separated).
# environments = ["prod", "staging", "dev"]

# Environments where an agent may be active only with every accountable role set
# (REIN_PROTECTED_ENVIRONMENTS).
# protected_environments = ["prod", "staging"]

# Environments whose write/admin grants also need the agent's business owner
# (REIN_PRODUCTION_ENVIRONMENTS).
# production_environments = ["prod"]

# Address the server listens on (REIN_LISTEN, --listen).
# listen = "127.0.0.1:8470"

# How often the server records and persists grant expiries, in seconds
# (REIN_GRANT_EXPIRY_SWEEP_SECONDS).
# grant_expiry_sweep_seconds = 30

# Guardrail policies (`*.cedar`), validated when loaded and reloaded when a file changes or on
# `rein policy reload` (REIN_POLICIES_DIR, --policies-dir). Relative paths are relative to the
# server's working directory; by default the `policies` directory here.
# policies_dir = "/etc/rein/policies"

# How often the decision point re-reads agents, systems and grants from the database to pick up
# other replicas' changes, in seconds (REIN_FACTS_REFRESH_SECONDS). Changes made through this
# server are seen by the next decision regardless.
# facts_refresh_seconds = 10

# The URL agents reach this server at (REIN_PUBLIC_URL, --public-url): the issuer of agents'
# access tokens, and the audience their client assertions name (`<url>/oauth2/token`). By default
# `http://` and the listen address; set it behind a proxy or TLS terminator.
# public_url = "https://rein.example.com"

# Access reviews: days past an agent's review cadence before its review counts as overdue
# (flagged by the posture report and listed by `rein review overdue`), and whether the server's
# periodic sweep then suspends the agent, with Rein as the actor and the reason recorded.
# review_grace_days = 14
# suspend_overdue_reviews = false

# The MCP gateway at /mcp/{system}: Origin values of browser-based clients it accepts (its own
# origin always is), Host names it answers besides its own (e.g. a load balancer's), most
# sessions at once, in all and per agent (each runs its own upstream), and how long an unused
# session lives.
# [gateway]
# allowed_origins = ["https://agents.example.com"]
# allowed_hosts = ["rein.internal:8470"]
# max_sessions = 1024
# max_sessions_per_agent = 16
# idle_timeout_seconds = 1800

# Database (REIN_DATABASE_URL, --database-url): `postgres://…` for PostgreSQL; by default the
# SQLite file rein.db in this directory.
"#,
    );
    match database_url {
        Some(url) => {
            text.push_str(&format!(
                "database_url = {}\n",
                toml::Value::String(url.to_owned())
            ));
        }
        None => text.push_str("# database_url = \"postgres://rein@localhost:5432/rein\"\n"),
    }
    text.push_str(
        r#"
# The audit log signs a checkpoint (its head, Ed25519) after this many records
# (REIN_AUDIT_CHECKPOINT_EVERY_RECORDS) or this many seconds (REIN_AUDIT_CHECKPOINT_EVERY_SECONDS),
# whichever comes first. Export checkpoints with `rein audit export --checkpoints-out`.
[audit]
# checkpoint_every_records = 10000
# checkpoint_every_seconds = 60
"#,
    );
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn envs(list: &[&str]) -> Vec<Environment> {
        list.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn the_template_parses_and_its_commented_defaults_are_the_built_in_ones() {
        let dir = Path::new("/data");
        let commented: FileConfig = toml::from_str(&template(None)).unwrap();
        let from_nothing = Settings::resolve(dir, commented, Overrides::default()).unwrap();
        // Uncomment every `# key = value` line: the values must equal the built-in defaults.
        // Table headers (`[audit]`) stay as they are.
        let uncommented: String = template(None)
            .lines()
            .filter_map(|l| l.strip_prefix("# ").or(l.starts_with('[').then_some(l)))
            .filter(|l| (l.contains(" = ") && !l.starts_with("database_url")) || l.starts_with('['))
            .map(|l| format!("{l}\n"))
            .collect();
        let file: FileConfig = toml::from_str(&uncommented).unwrap();
        assert!(file.trust_domain.is_some() && file.listen.is_some());
        assert!(file.audit.checkpoint_every_records.is_some());
        assert!(file.grant_expiry_sweep_seconds.is_some());
        let explicit = Settings::resolve(dir, file, Overrides::default()).unwrap();
        for s in [&from_nothing, &explicit] {
            let d = RegistryConfig::default();
            assert_eq!(s.registry.trust_domain, d.trust_domain);
            assert_eq!(s.registry.environments, d.environments);
            assert_eq!(s.registry.protected_environments, d.protected_environments);
            assert_eq!(
                s.registry.production_environments,
                d.production_environments
            );
            assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
            assert_eq!(s.audit.checkpoint_every_records, 10_000);
            assert_eq!(s.audit.checkpoint_every, Duration::from_secs(60));
            assert_eq!(s.expiry_sweep, Duration::from_secs(30));
            assert_eq!(s.database, Database::Sqlite(dir.join(SQLITE_FILE)));
            assert_eq!(s.registry.review_grace_days, d.review_grace_days);
            assert_eq!(
                s.registry.suspend_overdue_reviews,
                d.suspend_overdue_reviews
            );
        }
    }

    #[test]
    fn the_database_url_is_written_as_a_toml_string() {
        let text = template(Some("postgres://rein:p\"w@db:5432/rein"));
        let file: FileConfig = toml::from_str(&text).unwrap();
        assert_eq!(
            file.database_url.as_deref(),
            Some("postgres://rein:p\"w@db:5432/rein")
        );
    }

    #[test]
    fn flags_and_environment_override_the_file() {
        let file: FileConfig = toml::from_str(
            r#"
            trust_domain = "corp.example"
            environments = ["prod", "dev", "qa"]
            listen = "0.0.0.0:9000"
            database_url = "postgres://db/rein"
            "#,
        )
        .unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            production_environments: Some(envs(&["qa"])),
            protected_environments: Some(envs(&["prod"])),
            ..Overrides::default()
        };
        let s = Settings::resolve(Path::new("/d"), file, overrides).unwrap();
        assert_eq!(s.registry.trust_domain.as_str(), "corp.example");
        assert_eq!(s.registry.environments, envs(&["prod", "dev", "qa"]));
        assert_eq!(s.registry.production_environments, envs(&["qa"]));
        assert_eq!(s.listen.to_string(), "127.0.0.1:0");
        assert_eq!(s.database, Database::Url("postgres://db/rein".into()));
        assert_eq!(s.database.describe(), "PostgreSQL (database_url)");
    }

    #[test]
    fn audit_settings_come_from_the_audit_table_and_the_environment() {
        let file: FileConfig = toml::from_str(
            "grant_expiry_sweep_seconds = 5\n[audit]\ncheckpoint_every_records = 4\ncheckpoint_every_seconds = 2\n",
        )
        .unwrap();
        let s = Settings::resolve(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(s.audit.checkpoint_every_records, 4);
        assert_eq!(s.audit.checkpoint_every, Duration::from_secs(2));
        assert_eq!(s.expiry_sweep, Duration::from_secs(5));
        let file: FileConfig = toml::from_str("[audit]\ncheckpoint_every_records = 4\n").unwrap();
        let overrides = Overrides {
            audit_checkpoint_every_records: Some(7),
            ..Overrides::default()
        };
        let s = Settings::resolve(Path::new("/d"), file, overrides).unwrap();
        assert_eq!(s.audit.checkpoint_every_records, 7);
        let zero: FileConfig = toml::from_str("[audit]\ncheckpoint_every_records = 0\n").unwrap();
        assert!(Settings::resolve(Path::new("/d"), zero, Overrides::default()).is_err());
        assert!(toml::from_str::<FileConfig>("[audit]\ncheckpoint_every = 3\n").is_err());
    }

    #[test]
    fn unknown_keys_and_inconsistent_environments_are_refused() {
        assert!(toml::from_str::<FileConfig>("trust_domian = \"x\"").is_err());
        let file: FileConfig =
            toml::from_str("review_grace_days = 3\nsuspend_overdue_reviews = true").unwrap();
        let s = Settings::resolve(Path::new("/d"), file, Overrides::default()).unwrap();
        assert_eq!(s.registry.review_grace_days, 3);
        assert!(s.registry.suspend_overdue_reviews);
        let file: FileConfig = toml::from_str("review_grace_days = 400").unwrap();
        assert!(Settings::resolve(Path::new("/d"), file, Overrides::default()).is_err());
        let file: FileConfig = toml::from_str("environments = [\"dev\"]").unwrap();
        let err = Settings::resolve(Path::new("/d"), file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("protected_environments"), "{err}");
    }
}
