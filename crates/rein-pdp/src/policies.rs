//! The guardrail set in force: loaded from a directory of `*.cedar` files, swapped atomically
//! on reload, never replaced by a set that fails to load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use rein_policy::{Guardrails, PolicyFileError};

/// Why a directory of guardrails could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory or a file in it could not be read.
    #[error("cannot read the policies at `{path}`: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// Files failed to parse or validate; the previous set stays in force.
    #[error("invalid policy set: {}", describe(.0))]
    Invalid(Vec<PolicyFileError>),
}

fn describe(errors: &[PolicyFileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The set in force and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The validated guardrails.
    pub guardrails: Arc<Guardrails>,
    /// When this set was loaded.
    pub loaded_at: DateTime<Utc>,
}

/// The guardrail set in force, and the directory it is (re)loaded from.
#[derive(Debug)]
pub struct PolicySource {
    dir: Option<PathBuf>,
    current: ArcSwap<Loaded>,
    /// Serialises reloads, so that two reloads cannot interleave read and swap.
    reloading: tokio::sync::Mutex<()>,
}

impl PolicySource {
    /// Loads `dir`'s `*.cedar` files (none: an empty set). Fails on the first load: a server
    /// does not start with guardrails it cannot read.
    pub fn open(dir: Option<PathBuf>, now: DateTime<Utc>) -> Result<Self, LoadError> {
        let guardrails = match &dir {
            Some(d) => load_dir(d)?,
            None => Guardrails::load(&[]).map_err(LoadError::Invalid)?,
        };
        Ok(Self {
            dir,
            current: ArcSwap::from_pointee(Loaded {
                guardrails: Arc::new(guardrails),
                loaded_at: now,
            }),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The directory reloads read, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// Reads the directory again and validates it, under the reload lock. Returns the lock
    /// guard with the new set so that the caller can record the change durably before it
    /// [`PolicySource::install`]s it.
    pub async fn prepare(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Guardrails), LoadError> {
        let turn = self.reloading.lock().await;
        let guardrails = match &self.dir {
            Some(d) => {
                let d = d.clone();
                tokio::task::spawn_blocking(move || load_dir(&d))
                    .await
                    .map_err(|e| LoadError::Io {
                        path: String::new(),
                        message: e.to_string(),
                    })??
            }
            None => Guardrails::load(&[]).map_err(LoadError::Invalid)?,
        };
        Ok((turn, guardrails))
    }

    /// Puts a prepared set in force (atomically: a decision sees the old set or the new one).
    pub fn install(
        &self,
        _turn: tokio::sync::MutexGuard<'_, ()>,
        guardrails: Guardrails,
        now: DateTime<Utc>,
    ) -> Arc<Loaded> {
        let loaded = Arc::new(Loaded {
            guardrails: Arc::new(guardrails),
            loaded_at: now,
        });
        self.current.store(Arc::clone(&loaded));
        loaded
    }
}

/// Reads every `*.cedar` file directly in `dir` (sorted by name) and loads them as one set.
pub fn load_dir(dir: &Path) -> Result<Guardrails, LoadError> {
    let io = |path: &Path, e: std::io::Error| LoadError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "cedar") && path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            files.push((name, text));
        }
    }
    files.sort();
    Guardrails::load(&files).map_err(LoadError::Invalid)
}
