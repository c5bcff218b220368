//! The warm sandbox (`LUCID_WARM_SANDBOX`, on by default): one sandbox pre-started for the
//! default image and settings, handed to the next new session so its sandbox is ready at once,
//! and replaced in the background.
//!
//! A warm sandbox never carries anything from an earlier session or another user: it is
//! created on its own fresh, empty workspace directory `<workspaces>/.warm/<id>` (`.warm` is
//! no valid user directory name), and at hand-over that directory is renamed to the new
//! session's workspace path. The container's bind mount follows the directory (same inode),
//! so the sandbox sees exactly the session's workspace. Each warm sandbox serves one new
//! session only; a continued session starts its own sandbox on its existing workspace.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::backend::SandboxBackend;
use crate::sandbox::Sandbox;

/// The directory under the workspace base holding warm sandboxes' workspaces.
pub const WARM_DIR: &str = ".warm";
/// Session ids (and container name suffixes) of warm sandboxes start with this.
pub const WARM_ID_PREFIX: &str = "warm-";

struct Warm {
    dir: PathBuf,
    sandbox: Arc<dyn Sandbox>,
}

/// Holds at most one warm sandbox and refills it in the background.
pub(crate) struct WarmSandbox {
    backend: Arc<SandboxBackend>,
    base: PathBuf,
    ready: Mutex<Option<Warm>>,
    filling: AtomicBool,
    closed: CancellationToken,
}

impl WarmSandbox {
    /// A warm sandbox for Docker backends when `enabled`; `None` otherwise.
    pub(crate) fn new(
        backend: Arc<SandboxBackend>,
        workspace_base: &Path,
        enabled: bool,
    ) -> Option<Arc<WarmSandbox>> {
        let base = workspace_base.join(WARM_DIR);
        if !enabled || !matches!(backend.as_ref(), SandboxBackend::Docker(_)) {
            return None;
        }
        let warm = Arc::new(WarmSandbox {
            backend,
            base,
            ready: Mutex::new(None),
            filling: AtomicBool::new(false),
            closed: CancellationToken::new(),
        });
        warm.refill();
        Some(warm)
    }

    /// Starts creating the next warm sandbox unless one is ready or being created.
    pub(crate) fn refill(self: &Arc<Self>) {
        if self.closed.is_cancelled()
            || self.ready.lock().map(|r| r.is_some()).unwrap_or(true)
            || self.filling.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let created = this.create().await;
            this.filling.store(false, Ordering::SeqCst);
            match created {
                Ok(warm) if !this.closed.is_cancelled() => {
                    *this.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(warm);
                }
                Ok(warm) => release(warm).await,
                Err(e) => tracing::warn!(error = %e, "could not pre-start a sandbox"),
            }
        });
    }

    async fn create(&self) -> Result<Warm, String> {
        let id = format!("{WARM_ID_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let dir = self.base.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("warm workspace: {e}"))?;
        let created = self
            .backend
            .create(&id, "", &dir, &|_| {}, &self.closed)
            .await;
        match created {
            Ok(sandbox) => Ok(Warm { dir, sandbox }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e.to_string())
            }
        }
    }

    /// Hands the warm sandbox (if one is ready) to a new session: its workspace directory
    /// becomes `workspace` (which must not exist yet). A replacement starts in the background.
    pub(crate) async fn take(self: &Arc<Self>, workspace: &Path) -> Option<Arc<dyn Sandbox>> {
        let warm = self.ready.lock().ok()?.take()?;
        self.refill();
        let moved = workspace
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                if workspace.exists() {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "the session's workspace exists already",
                    ))
                } else {
                    std::fs::rename(&warm.dir, workspace)
                }
            });
        match moved {
            Ok(()) => Some(warm.sandbox),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand over the warm sandbox");
                release(warm).await;
                None
            }
        }
    }

    /// Stops refilling and releases the warm sandbox (engine shutdown).
    pub(crate) async fn shutdown(&self) {
        self.closed.cancel();
        let warm = self.ready.lock().ok().and_then(|mut r| r.take());
        if let Some(warm) = warm {
            release(warm).await;
        }
    }

    /// Whether a warm sandbox is ready (tests, benchmarks).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.lock().map(|r| r.is_some()).unwrap_or(false)
    }
}

/// Removes the warm workspaces a previous run left (their containers are reaped as orphans).
/// Only when no other engine uses the data directory.
pub(crate) fn reap_old(workspace_base: &Path) {
    match std::fs::remove_dir_all(workspace_base.join(WARM_DIR)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(error = %e, "could not remove old warm workspaces")
        }
        _ => {}
    }
}

async fn release(warm: Warm) {
    if let Err(e) = warm.sandbox.shutdown().await {
        tracing::warn!(error = %e, "could not release a warm sandbox");
    }
    let _ = std::fs::remove_dir_all(&warm.dir);
}
