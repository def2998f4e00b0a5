//! The data directory: `rein.toml`, the master key and (by default) the SQLite database.
//!
//! `rein init` creates it (mode 0700) and bootstraps the first admin; `rein server` refuses to
//! start on a directory that was not initialised or whose master key is exposed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rand::RngCore as _;
use rein_core::id::UserName;
use rein_registry::{IssuedToken, Registry, SystemClock};

use crate::client::Local;
use crate::config::{self, FileConfig, Overrides, Settings, CONFIG_FILE, SQLITE_FILE};

/// The master key file: 32 random bytes that later encrypt signing keys at rest.
pub const MASTER_KEY_FILE: &str = "master.key";
/// Length of the master key in bytes.
const MASTER_KEY_LEN: usize = 32;
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
        for file in [
            CONFIG_FILE,
            MASTER_KEY_FILE,
            SQLITE_FILE,
            "rein.db-wal",
            "rein.db-shm",
        ] {
            let _ = fs::remove_file(dir.join(file));
        }
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
    let mut key = [0u8; MASTER_KEY_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .context("reading the OS random number generator")?;
    write_private(&dir.join(MASTER_KEY_FILE), &key)?;
    write_private(
        &dir.join(CONFIG_FILE),
        config::template(database_url).as_bytes(),
    )?;

    let settings = Settings::resolve(dir, FileConfig::read(dir)?, overrides)?;
    let store = settings.database.open().await?;
    let registry = Registry::new(store, settings.registry.clone(), Arc::new(SystemClock));
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

/// Checks `dir` was initialised and its master key is intact and private.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    if !dir.join(CONFIG_FILE).is_file() {
        return Err(Local::new(
            "not-initialised",
            format!(
                "`{}` is not a Rein data directory (no `{CONFIG_FILE}`): run `rein init --data-dir {}` first",
                dir.display(),
                dir.display()
            ),
        )
        .into());
    }
    let path = dir.join(MASTER_KEY_FILE);
    let meta = fs::metadata(&path).with_context(|| format!("reading `{}`", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Local::new(
            "insecure-master-key",
            format!(
                "`{}` is accessible to other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        )
        .into());
    }
    if meta.len() != MASTER_KEY_LEN as u64 {
        return Err(Local::new(
            "invalid-master-key",
            format!(
                "`{}` must hold {MASTER_KEY_LEN} bytes, it holds {}",
                path.display(),
                meta.len()
            ),
        )
        .into());
    }
    Ok(())
}

/// Opens an initialised data directory's store.
pub async fn open(dir: &Path, overrides: Overrides) -> anyhow::Result<(Registry, Settings)> {
    check(dir)?;
    let settings = Settings::resolve(dir, FileConfig::read(dir)?, overrides)?;
    let store = settings.database.open().await?;
    let registry = Registry::new(store, settings.registry.clone(), Arc::new(SystemClock));
    Ok((registry, settings))
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
        assert!(check(&dir).is_ok());
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
        let err = check(&tmp.path().join("nothing")).unwrap_err();
        assert_eq!(crate::client::describe(&err).1, "not-initialised");
    }
}
