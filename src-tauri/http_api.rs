//! The optional HTTP API of the desktop app: `lucid serve`'s router, in-process, over the
//! app's own engine, so a browser or a script elsewhere can use this Lucid. Off by default;
//! bound only while the setting is on, with a bearer token to copy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lucid_engine::Engine;
use serde::Serialize;
use tokio::sync::oneshot;

/// How long a token shown for the HTTP API stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the settings page shows about the running API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct HttpApiInfo {
    pub url: String,
    pub token: String,
}

/// A bound HTTP API; [`RunningApi::stop`] unbinds it.
pub struct RunningApi {
    pub info: HttpApiInfo,
    pub addr: SocketAddr,
    /// The host and port it was asked for (`localhost`, port 0, …), to tell whether new
    /// settings ask for something else.
    pub requested: (String, u16),
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningApi {
    /// Binds `host:port` and serves the engine's REST + WebSocket API (and the UI) there.
    pub async fn start(engine: Arc<Engine>, host: &str, port: u16) -> Result<Self, String> {
        let token = lucid_engine::engine::issue_local_token(
            engine.config(),
            lucid_engine::engine::LOCAL_USER_ID,
            TOKEN_TTL,
        )
        .map_err(|e| e.message)?;
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .map_err(|e| format!("could not listen on {host}:{port}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("could not read the bound address: {e}"))?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = lucid_server::router(engine);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the HTTP API stopped");
            }
        });
        tracing::info!(%addr, "HTTP API listening");
        Ok(Self {
            info: HttpApiInfo {
                url: format!("http://{addr}"),
                token,
            },
            addr,
            requested: (host.to_string(), port),
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting connections and closes the listener (open WebSockets end too).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        tracing::info!(addr = %self.addr, "HTTP API stopped");
    }
}
