//! `rein init`: create a data directory and the first admin.

use std::path::PathBuf;

use crate::config::Overrides;
use crate::data_dir::{self, ADMIN_USER, MASTER_KEY_FILE};

/// Arguments of `rein init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to create (mode 0700); refused if it holds an installation already.
    #[arg(long, env = "REIN_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite database (`postgres://…`); written to
    /// `rein.toml`.
    #[arg(
        long,
        env = "REIN_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
}

/// Creates the data directory and prints the first admin's token as the last line,
/// `REIN_TOKEN=<token>`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    super::init_tracing("warn");
    let dir = &args.data_dir;
    let init =
        data_dir::initialise(dir, args.database_url.as_deref(), Overrides::default()).await?;
    println!("Initialised Rein in {}", dir.display());
    println!(
        "  config:      {}",
        dir.join(crate::config::CONFIG_FILE).display()
    );
    println!(
        "  master key:  {} (mode 0600)",
        dir.join(MASTER_KEY_FILE).display()
    );
    println!("  database:    {}", init.settings.database.describe());
    println!("  admin user:  {ADMIN_USER}");
    println!();
    println!(
        "Start the server:  rein server --data-dir {}",
        dir.display()
    );
    println!("The admin token below is shown only once; keep it secret.");
    println!("REIN_TOKEN={}", init.admin_token.token);
    Ok(())
}
