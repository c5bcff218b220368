//! Which sandbox a new session gets: Docker (default), local processes (only when the user
//! chose `SANDBOX_MODE=local`), or a clear refusal when Docker is required but absent.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, SandboxMode};
use crate::sandbox::docker::DockerSandboxes;
use crate::sandbox::local::LocalSandbox;
use crate::sandbox::{Sandbox, SandboxError};

/// What `lucid doctor` learns about the Docker daemon.
#[derive(Debug, Clone)]
pub struct DockerProbe {
    pub server_version: String,
    pub image_present: bool,
    pub network: crate::sandbox::docker::NetworkCheck,
}

/// Checks that the daemon answers, whether the sandbox image is present and whether the
/// sandbox network is usable (no side effects).
pub async fn probe_docker(
    config: &crate::config::SandboxConfig,
) -> Result<DockerProbe, SandboxError> {
    let docker = DockerSandboxes::connect(config, "doctor".to_string()).await?;
    let version = docker
        .docker()
        .version()
        .await
        .map_err(|e| SandboxError::DockerUnavailable(e.to_string()))?;
    let image_present = docker.docker().inspect_image(&config.image).await.is_ok();
    let network = crate::sandbox::docker::check_network(docker.docker(), config).await;
    Ok(DockerProbe {
        server_version: version.version.unwrap_or_default(),
        image_present,
        network,
    })
}

pub enum SandboxBackend {
    Docker(Arc<DockerSandboxes>),
    Local,
    /// Docker mode was chosen but the daemon is not reachable; the reason is shown to users.
    Unavailable(String),
}

impl SandboxBackend {
    /// Connects according to the configuration and, with `reap_orphans`, removes this
    /// instance's containers left by a previous run (only safe when no other engine of the
    /// same instance is running).
    pub async fn connect(
        config: &Config,
        instance_id: String,
        reap_orphans: bool,
    ) -> SandboxBackend {
        match config.sandbox.mode {
            SandboxMode::Local => {
                tracing::warn!(
                    "SANDBOX_MODE=local: agent commands run on this machine without isolation"
                );
                SandboxBackend::Local
            }
            SandboxMode::Docker => {
                match DockerSandboxes::connect(&config.sandbox, instance_id).await {
                    Ok(docker) => {
                        let docker = docker.with_workspace_base(config.workspace_base.clone());
                        if reap_orphans {
                            let removed = docker.cleanup_orphans().await;
                            if removed > 0 {
                                tracing::info!(removed, "removed orphaned sandboxes");
                            }
                        }
                        SandboxBackend::Docker(Arc::new(docker))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Docker is not available");
                        // The reason is wrapped in `DockerUnavailable` again when a session
                        // asks for a sandbox: keep only the inner text to avoid repeating it.
                        let reason = match e {
                            SandboxError::DockerUnavailable(reason) => reason,
                            other => other.to_string(),
                        };
                        SandboxBackend::Unavailable(format!(
                            "{reason}. Start Docker, or set SANDBOX_MODE=local to run commands \
                             without isolation."
                        ))
                    }
                }
            }
        }
    }

    /// Creates a sandbox for a session, pulling the image first if needed.
    ///
    /// `cancel` aborts the preparation (image pull) at once. Once a container is being
    /// created, creation is never abandoned halfway (that would leave a `Created` container
    /// behind): it completes, and if `cancel` fired meanwhile the sandbox is released again
    /// before [`SandboxError::Cancelled`] is returned.
    pub async fn create(
        &self,
        session_id: &str,
        user_id: &str,
        workspace: &Path,
        progress: &(dyn Fn(String) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Arc<dyn Sandbox>, SandboxError> {
        let sandbox = match self {
            SandboxBackend::Docker(docker) => {
                tokio::select! {
                    r = docker.ensure_image(progress) => r?,
                    _ = cancel.cancelled() => return Err(SandboxError::Cancelled),
                }
                docker.create(session_id, user_id, workspace).await? as Arc<dyn Sandbox>
            }
            SandboxBackend::Local => {
                if cancel.is_cancelled() {
                    return Err(SandboxError::Cancelled);
                }
                LocalSandbox::start(workspace).await? as Arc<dyn Sandbox>
            }
            SandboxBackend::Unavailable(reason) => {
                return Err(SandboxError::DockerUnavailable(reason.clone()))
            }
        };
        if cancel.is_cancelled() {
            if let Err(e) = sandbox.shutdown().await {
                tracing::warn!(session = session_id, error = %e, "sandbox release failed");
            }
            return Err(SandboxError::Cancelled);
        }
        Ok(sandbox)
    }

    /// Gives a workspace filled after its sandbox started (a warm sandbox's, then cloned into)
    /// to the sandbox user, as creating a sandbox does.
    pub async fn hand_over_workspace(&self, workspace: &Path) {
        if let SandboxBackend::Docker(docker) = self {
            docker.hand_over_workspace(workspace).await;
        }
    }

    pub async fn is_docker_available(&self) -> bool {
        match self {
            SandboxBackend::Docker(docker) => docker.ping().await,
            _ => false,
        }
    }

    pub fn active_sandboxes(&self) -> usize {
        match self {
            SandboxBackend::Docker(docker) => docker.active_count(),
            _ => 0,
        }
    }

    pub async fn shutdown(&self) {
        if let SandboxBackend::Docker(docker) = self {
            let removed = docker.shutdown_all().await;
            if removed > 0 {
                tracing::info!(removed, "removed sandboxes on shutdown");
            }
        }
    }
}
