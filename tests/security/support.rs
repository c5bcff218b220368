//! Helpers shared by the security tests: an engine served over real HTTP/WebSocket, and
//! Docker queries by label (any container state, `Created` included).
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Harness, SECRET};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An engine (see [`Harness`]) behind the real router on a loopback port.
pub struct Server {
    pub h: Harness,
    pub base: String,
    pub http: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(h: Harness) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let app = lucid_server::router(h.engine.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Server {
            h,
            base,
            http,
            _task: task,
        }
    }

    pub fn token(&self, user: &str) -> String {
        lucid_engine::auth::issue_token(user, SECRET.as_bytes(), Duration::from_secs(3600))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, user: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(self.token(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn ws(&self, user: &str) -> Ws {
        let url = format!("ws://{}/api/v1/ws?token={}", self.base, self.token(user));
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Next JSON frame; `Err(code)` when the server closed.
pub async fn recv(ws: &mut Ws) -> Result<Value, u16> {
    let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
        .await
        .expect("no frame within 60 s");
    match msg {
        Some(Ok(Message::Text(t))) => Ok(serde_json::from_str(t.as_str()).unwrap()),
        Some(Ok(Message::Close(frame))) => Err(frame.map(|f| u16::from(f.code)).unwrap_or(1005)),
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        Some(Err(_)) | None => Err(1006),
    }
}

/// Frames until a (seq-carrying) status frame with one of `statuses`, inclusive.
pub async fn until_status(ws: &mut Ws, statuses: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = recv(ws)
            .await
            .unwrap_or_else(|code| panic!("closed {code}; got {out:#?}"));
        let done = f["type"] == "status"
            && f.get("seq").is_some()
            && statuses.contains(&f["status"].as_str().unwrap_or(""));
        out.push(f);
        if done {
            return out;
        }
    }
}

/// Containers (any state) carrying the label `key=value`.
pub async fn containers_labelled(key: &str, value: &str) -> Vec<ContainerSummary> {
    let docker = lucid_testkit::image::require_docker().await;
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(opts)).await.unwrap()
}

/// The engine instance id of a harness (containers carry it as `lucid.instance`).
pub fn instance_id(h: &Harness) -> String {
    std::fs::read_to_string(h.data_dir.path().join("instance-id"))
        .expect("instance id")
        .trim()
        .to_string()
}

/// Containers (any state) of a harness's engine instance, without its pre-started (warm)
/// sandbox when `LUCID_WARM_SANDBOX` is on: that one belongs to no session yet.
pub async fn instance_containers(h: &Harness) -> Vec<ContainerSummary> {
    containers_labelled("lucid.instance", &instance_id(h))
        .await
        .into_iter()
        .filter(|c| {
            !c.labels
                .as_ref()
                .and_then(|l| l.get("lucid.session_id"))
                .is_some_and(|s| s.starts_with(lucid_engine::sessions::warm::WARM_ID_PREFIX))
        })
        .collect()
}

/// Removes every container labelled `key=value` when dropped (a failed test leaves nothing).
pub struct LabelCleanup(pub String, pub String);

impl Drop for LabelCleanup {
    fn drop(&mut self) {
        let (key, value) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(docker) = bollard::Docker::connect_with_local_defaults() else {
                    return;
                };
                for c in containers_labelled(&key, &value).await {
                    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker
                        .remove_container(&c.id.unwrap_or_default(), Some(opts))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Polls `check` every 50 ms until it is true or `limit` passes; returns the last answer.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
