//! The data directory: `rein.toml`, the master key and (by default) the SQLite databases.
//!
//! `rein init` creates it (mode 0700), opens the audit log and bootstraps the first admin (whose
//! creation is the log's first record); `rein server` refuses to start on a directory that was
//! not initialised or whose master key is exposed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rein_core::id::UserName;
use rein_keys::{KeyError, MasterKey};
use rein_registry::{IssuedToken, Registry, SystemClock};
use rein_store::{SqliteStore, Store};

use crate::client::Local;
use crate::config::{self, FileConfig, Overrides, Settings, CONFIG_FILE, SQLITE_FILE};

/// The master key file: 32 random bytes that seal Rein's signing keys at rest (mode 0600).
pub const MASTER_KEY_FILE: &str = "master.key";
/// The first admin's user name.
pub const ADMIN_USER: &str = "admin";

/// A freshly initialised data directory.
pub struct Initialised {
    /// The store, open.
    pub registry: Registry,
    /// The first admin's token; shown once.
    pub admin_token: IssuedToken,
    /// The settings in force.
    pub settings: Settings,
}

/// Creates the data directory `dir` (or takes an existing, empty one), writes `rein.toml` and
/// the master key, opens the database (applying migrations) and bootstraps the first admin.
/// Refuses a directory that holds a Rein installation already, or anything else.
pub async fn initialise(
    dir: &Path,
    database_url: Option<&str>,
    overrides: Overrides,
) -> anyhow::Result<Initialised> {
    if let Some(found) = [CONFIG_FILE, MASTER_KEY_FILE, SQLITE_FILE]
        .iter()
        .find(|f| dir.join(f).exists())
    {
        return Err(Local::new(
            "already-initialised",
            format!(
                "`{}` is already initialised (it holds `{found}`); use another --data-dir",
                dir.display()
            ),
        )
        .into());
    }
    let not_empty = fs::read_dir(dir).map(|mut entries| entries.next().is_some());
    if not_empty.unwrap_or(false) {
        return Err(Local::new(
            "not-empty",
            format!(
                "`{}` exists and is not empty; give a new or empty directory",
                dir.display()
            ),
        )
        .into());
    }
    let existed = dir.exists();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating `{}`", dir.display()))?;
    let result = populate(dir, database_url, overrides).await;
    if result.is_err() {
        // Leave nothing half-initialised behind: a retry must not be refused.
        let audit = SqliteStore::audit_path(&dir.join(SQLITE_FILE));
        let mut files = vec![dir.join(CONFIG_FILE), dir.join(MASTER_KEY_FILE)];
        for db in [dir.join(SQLITE_FILE), audit] {
            for suffix in ["", "-wal", "-shm"] {
                let mut name = db.clone().into_os_string();
                name.push(suffix);
                files.push(name.into());
            }
        }
        for file in files {
            let _ = fs::remove_file(file);
        }
        let _ = fs::remove_dir(dir.join(config::POLICIES_DIR));
        if !existed {
            let _ = fs::remove_dir(dir);
        }
    }
    result
}

async fn populate(
    dir: &Path,
    database_url: Option<&str>,
    overrides: Overrides,
) -> anyhow::Result<Initialised> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting `{}` to its owner", dir.display()))?;
    let master = MasterKey::create(&dir.join(MASTER_KEY_FILE)).map_err(key_error)?;
    write_private(
        &dir.join(CONFIG_FILE),
        config::template(database_url).as_bytes(),
    )?;

    let settings = Settings::resolve(dir, FileConfig::read(dir)?, overrides)?;
    fs::create_dir_all(dir.join(config::POLICIES_DIR))
        .with_context(|| format!("creating `{}`", dir.join(config::POLICIES_DIR).display()))?;
    let store = settings.database.open().await?;
    // A database that holds an installation already (PostgreSQL shared with another data
    // directory) is refused before its signing keys are touched: they are sealed under the
    // other installation's master key.
    if !store.users().await?.is_empty() {
        return Err(rein_core::DomainError::forbidden(
            "Rein is already initialised in this database: users exist",
        )
        .into());
    }
    let registry = registry(store, &master, &settings).await?;
    let admin: UserName = ADMIN_USER.parse()?;
    let admin_token = registry
        .bootstrap_admin(&admin)
        .await
        .context("bootstrapping the first admin")?;
    Ok(Initialised {
        registry,
        admin_token,
        settings,
    })
}

/// Opens the audit log over `store` (creating its checkpoint key, sealed under `master`, on
/// first use) and the registry that records every change in it.
async fn registry(
    store: Arc<dyn Store>,
    master: &MasterKey,
    settings: &Settings,
) -> anyhow::Result<Registry> {
    let audit = rein_registry::keys::open_audit_log(store.clone(), master, settings.audit.clone())
        .await
        .context("opening the audit log")?;
    Ok(Registry::new(
        store,
        settings.registry.clone(),
        Arc::new(SystemClock),
        audit,
    ))
}

/// A master key problem as a local error with a stable code.
fn key_error(e: KeyError) -> anyhow::Error {
    let code = match &e {
        KeyError::Permissions { .. } => "insecure-master-key",
        KeyError::Length { .. } | KeyError::Unseal { .. } => "invalid-master-key",
        KeyError::Read { .. } | KeyError::Write { .. } => "io",
    };
    let mut detail = e.to_string();
    if let KeyError::Permissions { path, .. } = &e {
        detail.push_str(&format!("; run `chmod 600 {path}`"));
    }
    Local::new(code, detail).into()
}

/// Writes a new file readable only by its owner (mode 0600); refuses to overwrite.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating `{}`", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing `{}`", path.display()))
}

/// Checks `dir` was initialised (it holds `rein.toml`).
pub fn check_initialised(dir: &Path) -> anyhow::Result<()> {
    if dir.join(CONFIG_FILE).is_file() {
        return Ok(());
    }
    Err(Local::new(
        "not-initialised",
        format!(
            "`{}` is not a Rein data directory (no `{CONFIG_FILE}`): run `rein init --data-dir {}` first",
            dir.display(),
            dir.display()
        ),
    )
    .into())
}

/// Checks `dir` was initialised and loads its master key, refusing one that is exposed to
/// other users or malformed.
pub fn check(dir: &Path) -> anyhow::Result<MasterKey> {
    check_initialised(dir)?;
    MasterKey::load(&dir.join(MASTER_KEY_FILE)).map_err(key_error)
}

/// Opens an initialised data directory: its store, its audit log and the registry over both.
pub async fn open(dir: &Path, overrides: Overrides) -> anyhow::Result<(Registry, Settings)> {
    let master = check(dir)?;
    let settings = Settings::resolve(dir, FileConfig::read(dir)?, overrides)?;
    let store = settings.database.open().await?;
    let registry = registry(store, &master, &settings).await?;
    Ok((registry, settings))
}

/// Opens an initialised data directory's store only: no master key is needed to read it.
/// SQLite database files that are missing are refused, not created.
pub async fn open_store(
    dir: &Path,
    overrides: Overrides,
) -> anyhow::Result<(Arc<dyn Store>, Settings)> {
    check_initialised(dir)?;
    let settings = Settings::resolve(dir, FileConfig::read(dir)?, overrides)?;
    if let config::Database::Sqlite(path) = &settings.database {
        for file in [path.clone(), SqliteStore::audit_path(path)] {
            if !file.is_file() {
                return Err(Local::new(
                    "not-found",
                    format!("the database `{}` is missing", file.display()),
                )
                .into());
            }
        }
    }
    let store = settings.database.open().await?;
    Ok((store, settings))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn initialise_creates_a_private_directory_and_refuses_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let init = initialise(&dir, None, Overrides::default()).await.unwrap();
        assert!(init.admin_token.token.starts_with("rein_"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(MASTER_KEY_FILE)), 0o600);
        assert_eq!(fs::read(dir.join(MASTER_KEY_FILE)).unwrap().len(), 32);
        assert!(dir.join(SQLITE_FILE).is_file());
        assert!(dir.join("rein-audit.db").is_file());
        assert!(check(&dir).is_ok());
        // The first admin's creation is the audit log's first record.
        let first = init
            .registry
            .store()
            .audit_record(1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.event.event_type, rein_audit::EventType::UserCreated);
        assert_eq!(first.event.subject.as_deref(), Some(ADMIN_USER));
        let again = initialise(&dir, None, Overrides::default()).await;
        let err = again.err().unwrap();
        assert_eq!(crate::client::describe(&err).1, "already-initialised");
    }

    #[test]
    fn an_exposed_master_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write_private(&tmp.path().join(CONFIG_FILE), b"").unwrap();
        write_private(&tmp.path().join(MASTER_KEY_FILE), &[0; 32]).unwrap();
        assert!(check(tmp.path()).is_ok());
        fs::set_permissions(
            tmp.path().join(MASTER_KEY_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = check(tmp.path()).unwrap_err();
        assert_eq!(crate::client::describe(&err).1, "insecure-master-key");
        fs::set_permissions(
            tmp.path().join(MASTER_KEY_FILE),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        fs::write(tmp.path().join(MASTER_KEY_FILE), [0; 31]).unwrap();
        let err = check(tmp.path()).unwrap_err();
        assert_eq!(crate::client::describe(&err).1, "invalid-master-key");
        let err = check(&tmp.path().join("nothing")).unwrap_err();
        assert_eq!(crate::client::describe(&err).1, "not-initialised");
    }
}
