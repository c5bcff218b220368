//! Holding a session's sandbox still while the host reads its workspace.
//!
//! The host commits the agent's work from a snapshot of the workspace; the container (any
//! container labelled with the session, whichever engine instance made it) is paused
//! (cgroup freezer) for the duration, so the snapshot is consistent and nothing in the
//! sandbox can change files between the host's reads. A container that is still being
//! created or restarting cannot be paused: the snapshot is refused rather than taken while
//! it could write.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use tokio::sync::Mutex;

use super::docker::{LABEL_MANAGED, LABEL_SESSION};
use crate::git::WorkspaceFreeze;

/// Pauses the running containers of one session; [`WorkspaceFreeze::thaw`] unpauses the ones
/// it paused.
pub struct SessionFreeze {
    docker: Docker,
    session_id: String,
    paused: Mutex<Vec<String>>,
}

impl SessionFreeze {
    pub fn new(docker: Docker, session_id: impl Into<String>) -> Self {
        Self {
            docker,
            session_id: session_id.into(),
            paused: Mutex::new(Vec::new()),
        }
    }

    async fn containers(&self) -> Result<Vec<(String, Option<ContainerSummaryStateEnum>)>, String> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_SESSION}={}", self.session_id),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| format!("could not list the session's containers: {e}"))?;
        Ok(listed
            .into_iter()
            .filter_map(|c| c.id.map(|id| (id, c.state)))
            .collect())
    }
}

#[async_trait]
impl WorkspaceFreeze for SessionFreeze {
    async fn freeze(&self) -> Result<(), String> {
        let mut paused = self.paused.lock().await;
        // Twice: a container that started between the listing and the pauses is caught by
        // the second pass.
        for _ in 0..2 {
            for (id, state) in self.containers().await? {
                match state {
                    Some(ContainerSummaryStateEnum::RUNNING) => {
                        if let Err(e) = self.docker.pause_container(&id).await {
                            drop(paused);
                            self.thaw().await;
                            return Err(format!("could not pause the sandbox: {e}"));
                        }
                        paused.push(id);
                    }
                    Some(
                        ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::RESTARTING,
                    ) => {
                        drop(paused);
                        self.thaw().await;
                        return Err(
                            "the sandbox is starting; try again when the session is ready".into(),
                        );
                    }
                    // Paused (by us or still), exited, dead, being removed: cannot write.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn thaw(&self) {
        let ids: Vec<String> = std::mem::take(&mut *self.paused.lock().await);
        for id in ids {
            if let Err(e) = self.docker.unpause_container(&id).await {
                tracing::warn!(container = %id, error = %e, "could not unpause a sandbox");
            }
        }
    }
}
