//! A real `lucid serve` router on 127.0.0.1 with a real SQLite file in a temp data dir.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lucid_engine::{Config, Engine};

pub const SECRET: &str = "test-secret-for-the-rest-api-0123456789";
pub const INTERNAL_KEY: &str = "internal-key-for-tests";

pub struct TestServer {
    pub base: String,
    pub engine: Arc<Engine>,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(extra: &[(&str, &str)]) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert(
            "LUCID_DATA_DIR".into(),
            data_dir.path().display().to_string(),
        );
        vars.insert("LUCID_JWT_SECRET".into(), SECRET.into());
        vars.insert("INTERNAL_API_KEY".into(), INTERNAL_KEY.into());
        vars.insert(
            "ENCRYPTION_KEY".into(),
            "test_key_32chars_minimum_length!".into(),
        );
        vars.insert("DOCKER_NETWORK".into(), "none".into());
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_map(&vars).expect("config");
        let engine = Engine::start(config).await.expect("engine");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = lucid_server::router(engine.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        TestServer {
            base,
            engine,
            data_dir,
            http,
            task,
        }
    }

    pub fn token(&self, user: &str) -> String {
        lucid_engine::auth::issue_token(user, SECRET.as_bytes(), Duration::from_secs(3600))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(self.token(user))
    }

    pub fn post(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(self.token(user))
    }

    pub fn patch(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http
            .patch(self.url(path))
            .bearer_auth(self.token(user))
    }

    pub fn delete(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(self.url(path))
            .bearer_auth(self.token(user))
    }
}
