//! `rein server`: run the control plane, on an initialised data directory or (`--dev`) on a
//! throwaway one with the example governance set loaded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context as _;
use rein_core::grant::ApprovalRole;
use rein_keys::MasterKey;
use rein_pdp::{Issuer, Pdp};
use rein_registry::Registry;
use tokio::net::TcpListener;

use crate::client::Local;
use crate::config::{Overrides, Settings};
use crate::data_dir;
use crate::dev::{self, Dev};

/// Arguments of `rein server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory `rein init` created.
    #[arg(
        long,
        env = "REIN_DATA_DIR",
        value_name = "DIR",
        required_unless_present = "dev"
    )]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    /// Try Rein out: a throwaway data directory with the example governance set loaded, the
    /// admin token printed. Never for real use.
    #[arg(long)]
    dev: bool,
    /// The examples directory for --dev (holding `governance/`). [default: examples]
    #[arg(long, value_name = "DIR", requires = "dev")]
    examples: Option<PathBuf>,
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    super::init_tracing("info");
    if args.dev {
        return run_dev(args).await;
    }
    let dir = args
        .data_dir
        .context("--data-dir (or REIN_DATA_DIR) is required")?;
    let (registry, settings) = data_dir::open(&dir, args.overrides).await?;
    let listener = bind(settings.listen).await?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        data_dir = %dir.display(),
        database = %settings.database.describe(),
        trust_domain = %settings.registry.trust_domain,
        %addr,
        "rein server listening"
    );
    println!("REIN_ADDR=http://{addr}");
    let master = data_dir::check(&dir)?;
    serve(listener, registry, &settings, master).await
}

async fn run_dev(args: Args) -> anyhow::Result<()> {
    let mut overrides = args.overrides;
    if overrides.database_url.take().is_some() {
        tracing::warn!("--dev ignores --database-url and REIN_DATABASE_URL: it uses a throwaway SQLite database");
    }
    let examples = args.examples.unwrap_or_else(|| PathBuf::from("examples"));
    if overrides.policies_dir.is_none() {
        overrides.policies_dir = Some(examples.join("policies"));
    }
    let dev = dev::prepare(&examples, overrides).await?;
    let listener = bind(dev.settings.listen).await?;
    let addr = listener.local_addr().context("reading the bound address")?;
    print_dev_banner(&dev, &examples, addr);
    tracing::info!(data_dir = %dev.dir.path().display(), %addr, "rein dev server listening");
    let Dev {
        dir,
        registry,
        settings,
        ..
    } = dev;
    let master = data_dir::check(dir.path())?;
    let served = serve(listener, registry, &settings, master).await;
    let path = dir.path().to_owned();
    match dir.close() {
        Ok(()) => tracing::info!(data_dir = %path.display(), "removed the dev data directory"),
        Err(e) => {
            tracing::warn!(data_dir = %path.display(), error = %e, "could not remove the dev data directory")
        }
    }
    served
}

fn print_dev_banner(dev: &Dev, examples: &std::path::Path, addr: SocketAddr) {
    let role = |r: &ApprovalRole| match r {
        ApprovalRole::SystemApprover => "system approver",
        ApprovalRole::BusinessOwner => "business owner",
    };
    println!("Rein dev server: NOT for real use; everything is deleted when it stops.");
    println!("Data directory: {}", dev.dir.path().display());
    println!(
        "Loaded {}: {}",
        examples.join("governance").display(),
        dev.summary
    );
    println!(
        "Guardrails: {} (reloaded when a file changes)",
        dev.settings.policies_dir.display()
    );
    if !dev.approved.is_empty() {
        println!("--dev only: approved these grants on the example approvers' behalf:");
        for (grant, by) in &dev.approved {
            let by: Vec<String> = by
                .iter()
                .map(|(u, r)| format!("{u} ({})", role(r)))
                .collect();
            println!(
                "  {}  {} on {} [{}]: {}",
                grant.id,
                agent_short(&grant.agent),
                grant.system,
                join(&grant.actions),
                by.join(", ")
            );
        }
    }
    if !dev.pending.is_empty() {
        println!("Left `requested` for you to decide:");
        for (grant, approver) in &dev.pending {
            let who = approver
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            println!(
                "  {}  {} on {} [{}]: can be approved by {who}",
                grant.id,
                agent_short(&grant.agent),
                grant.system,
                join(&grant.actions),
            );
        }
    }
    println!(
        "Example users' tokens (valid 1 day): {}",
        dev.tokens_file.display()
    );
    println!();
    println!("REIN_ADDR=http://{addr}");
    println!("REIN_TOKEN={}", dev.admin_token);
    println!();
    println!("Try next, in another shell:");
    if let Ok(exe) = std::env::current_exe() {
        println!("  alias rein='{}'", exe.display());
    }
    println!(
        "  export REIN_ADDR=http://{addr} REIN_TOKEN={}",
        dev.admin_token
    );
    println!("  rein grant list");
    println!("  rein audit tail -n 5");
    println!("  rein policy status");
    if let Some((grant, _)) = dev.approved.first() {
        println!("  rein agent show {}", agent_short(&grant.agent));
    }
    if let Some((grant, Some(approver))) = dev.pending.first() {
        println!("  source {}", dev.tokens_file.display());
        println!(
            "  REIN_TOKEN=${} rein grant approve {} --comment 'looks right'",
            dev::token_variable(approver),
            grant.id
        );
    }
}

fn agent_short(id: &rein_core::id::AgentId) -> String {
    format!("{}/{}/{}", id.team(), id.name(), id.environment())
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (choose another address with --listen)"))
}

async fn serve(
    listener: TcpListener,
    registry: Registry,
    settings: &Settings,
    master: MasterKey,
) -> anyhow::Result<()> {
    let policies = policies_dir(settings)?;
    let public_url = match &settings.public_url {
        Some(url) => url.clone(),
        None => format!(
            "http://{}",
            listener.local_addr().context("reading the bound address")?
        ),
    };
    let notifier = rein_pdp::Notifier::new(
        settings.webhooks.clone(),
        &public_url,
        Arc::clone(registry.store()),
        rein_notify::RetryPolicy::default(),
    )
    .context("setting up webhooks")?;
    tracing::info!(
        webhooks = settings.webhooks.len(),
        "approval notifications ready"
    );
    let registry = registry.observed_by(Arc::new(notifier));
    let pdp = Pdp::start(registry, Some(policies.clone()))
        .await
        .context("starting the decision point")?;
    // One master key for the token issuer, the API (sealing secrets) and, with the gateway,
    // opening them.
    let master = Arc::new(master);
    let issuer = Issuer::open(pdp.registry(), Arc::clone(&master), &public_url)
        .await
        .context("opening the token signing key")?;
    tracing::info!(issuer = %issuer.issuer(), "token endpoint ready");
    let (agents, systems, grants) = pdp.facts().counts();
    let status = pdp.policy_status();
    tracing::info!(
        policies = %policies.display(),
        policy_version = %status.version,
        guardrails = status.guardrails.len(),
        agents, systems, grants,
        "decision point ready"
    );
    let _watch = pdp
        .watch_policies()
        .context("watching the policies directory")?;
    let _follow = pdp
        .follow_replicas()
        .await
        .context("listening for other replicas' changes")?;
    let upkeep = pdp
        .start_upkeep()
        .await
        .context("registering this replica")?;
    tracing::info!(replica = %pdp.replica_id(), "replica registered");
    let sweeper = tokio::spawn(sweep_expiries(
        pdp.registry().clone(),
        settings.expiry_sweep,
    ));
    let issuer = Arc::new(issuer);
    let refresher = tokio::spawn(refresh_facts(
        Arc::clone(&pdp),
        Arc::clone(&issuer),
        settings.facts_refresh,
    ));
    let gateway = rein_gateway::Gateway::new(
        Arc::clone(&pdp),
        Arc::clone(&issuer),
        Arc::new(rein_server::StoredSecrets::new(
            pdp.registry().clone(),
            Arc::clone(&master),
        )),
        settings.gateway.clone(),
    );
    let follow = gateway.follow_revocations();
    let state = rein_server::AppState::new(pdp, issuer, master).with_gateway(gateway);
    let served = rein_server::serve(listener, state, shutdown_signal()).await;
    sweeper.abort();
    refresher.abort();
    follow.abort();
    upkeep.stop().await;
    served.context("serving HTTP")?;
    tracing::info!("rein server stopped");
    Ok(())
}

/// The policies directory: the default one is created when missing; a configured one must
/// exist (guardrails someone configured and that are not there must not silently be none).
fn policies_dir(settings: &Settings) -> anyhow::Result<PathBuf> {
    let dir = &settings.policies_dir;
    if settings.policies_dir_is_default && !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the policies directory `{}`", dir.display()))?;
    }
    if !dir.is_dir() {
        return Err(Local::new(
            "not-found",
            format!("the policies directory `{}` does not exist", dir.display()),
        )
        .into());
    }
    Ok(dir.clone())
}

/// Every `every`, re-reads the decision point's facts and the token keys from the store,
/// picking up what other replicas changed. Failures are logged and retried at the next tick.
async fn refresh_facts(pdp: Arc<Pdp>, issuer: Arc<Issuer>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(e) = pdp.refresh().await {
            tracing::error!(error = %e, "re-reading decision facts failed; retrying at the next tick");
        }
        if let Err(e) = issuer.reload_keys(pdp.registry()).await {
            tracing::error!(error = %e, "re-reading token keys failed; retrying at the next tick");
        }
    }
}

/// Every `every`, records and persists the expiry of grants past `expires_at` and of approval
/// requests past theirs (which also announces them to the webhooks), and runs the access review
/// sweep (overdue agents are suspended when `suspend_overdue_reviews` is set; completed reviews
/// whose enforcement was interrupted are finished). A grant is treated as expired at read time
/// anyway; this puts `grant.expired` in the audit log. Failures are logged and retried at the
/// next tick.
async fn sweep_expiries(registry: Registry, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match registry.expire_grants().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "recorded grant expiries"),
            Err(e) => {
                tracing::error!(error = ?e, "grant expiry sweep failed; retrying at the next tick")
            }
        }
        match registry.expire_approvals().await {
            Ok(expired) if expired.is_empty() => {}
            Ok(expired) => tracing::info!(expired = expired.len(), "recorded approval expiries"),
            Err(e) => {
                tracing::error!(error = ?e, "approval expiry sweep failed; retrying at the next tick")
            }
        }
        match registry.sweep_overdue_reviews().await {
            Ok(overdue) => {
                for o in overdue.iter().filter(|o| o.suspended_now) {
                    tracing::warn!(agent = %o.agent, days_overdue = o.days_overdue, "suspended an agent whose access review is overdue");
                }
                tracing::debug!(overdue = overdue.len(), "access review sweep");
            }
            Err(e) => {
                tracing::error!(error = ?e, "access review sweep failed; retrying at the next tick")
            }
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
