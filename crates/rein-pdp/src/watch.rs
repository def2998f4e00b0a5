//! Reloading the guardrails when their files change.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use crate::{Error, LoadError, Pdp};

/// How long the directory must stay quiet after a change before it is reloaded, so that an
/// editor's or a deploy's burst of writes becomes one reload.
const QUIET: Duration = Duration::from_millis(200);

/// A running watch on the policy directory; dropping it stops watching.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pdp {
    /// Watches the policy directory and reloads on every change (see
    /// [`Pdp::reload_policies`]); `None` when guardrails come from no directory. A reload that
    /// fails is logged and recorded, and the previous set stays in force.
    pub fn watch_policies(self: &Arc<Self>) -> Result<Option<Watch>, Error> {
        let Some(dir) = self.policies.dir().map(ToOwned::to_owned) else {
            return Ok(None);
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })
            .map_err(|e| watch_error(&dir, &e))?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(&dir, &e))?;
        let pdp = Arc::clone(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {}
                match pdp.reload_policies(None).await {
                    Ok(status) => tracing::info!(
                        version = %status.version,
                        guardrails = status.guardrails.len(),
                        "policy files changed: reloaded"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "policy files changed but do not load; the previous set stays in force"
                    ),
                }
            }
        });
        Ok(Some(Watch {
            _watcher: watcher,
            task,
        }))
    }
}

fn watch_error(dir: &std::path::Path, e: &notify::Error) -> Error {
    Error::Policies(LoadError::Io {
        path: dir.display().to_string(),
        message: format!("cannot watch for changes: {e}"),
    })
}
