//! A real `lucid serve` router on 127.0.0.1, in local mode (a real SQLite file in a temp
//! data dir) or in Supabase mode (a local Supabase project: the PostgREST stand-in on a real
//! PostgreSQL with Lucid's migrations and row-level security, see lucid-testkit).
//! [`in_both_modes!`] runs one test body in each.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lucid_engine::{Config, Engine, User};
use lucid_testkit::supabase::SupabaseProject;

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Supabase,
}

/// Defines `mod <name> { local, supabase }`: the body runs once per [`Mode`], with
/// `$mode` bound to it. Needs `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! in_both_modes {
    ($(#[$meta:meta])* async fn $name:ident($mode:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($mode: $crate::common::Mode) $body

            #[tokio::test]
            async fn local() {
                body($crate::common::Mode::Local).await
            }

            #[tokio::test]
            async fn supabase() {
                body($crate::common::Mode::Supabase).await
            }
        }
    };
}

pub const SECRET: &str = "test-secret-for-the-rest-api-0123456789";
pub const INTERNAL_KEY: &str = "internal-key-for-tests";

pub struct TestServer {
    pub base: String,
    pub engine: Arc<Engine>,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The Supabase project (Supabase mode only).
    pub project: Option<Arc<SupabaseProject>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Local mode.
    pub async fn start(extra: &[(&str, &str)]) -> TestServer {
        Self::start_in(Mode::Local, extra).await
    }

    /// Local mode, or Supabase mode against a new local Supabase project.
    pub async fn start_in(mode: Mode, extra: &[(&str, &str)]) -> TestServer {
        let project = match mode {
            Mode::Local => None,
            Mode::Supabase => Some(Arc::new(SupabaseProject::start().await)),
        };
        Self::start_with(project, extra).await
    }

    /// Supabase mode against `project` (e.g. one shared by two servers).
    pub async fn start_with(
        project: Option<Arc<SupabaseProject>>,
        extra: &[(&str, &str)],
    ) -> TestServer {
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
        if let Some(project) = &project {
            vars.extend(project.env().into_iter().map(|(k, v)| (k.to_string(), v)));
        }
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
            project,
            task,
        }
    }

    pub fn mode(&self) -> Mode {
        if self.project.is_some() {
            Mode::Supabase
        } else {
            Mode::Local
        }
    }

    /// The id of the user called `name`: the name itself in local mode, a Supabase Auth user
    /// (signed up on first use) in Supabase mode.
    pub fn user_id(&self, name: &str) -> String {
        match &self.project {
            Some(project) => project.user_named(name),
            None => name.to_string(),
        }
    }

    /// A bearer token of the user called `name` (a local token, or a Supabase access token).
    pub fn token(&self, name: &str) -> String {
        match &self.project {
            Some(project) => project.token(&self.user_id(name), Duration::from_secs(3600)),
            None => {
                lucid_engine::auth::issue_token(name, SECRET.as_bytes(), Duration::from_secs(3600))
            }
        }
    }

    /// The engine-level user called `name`, as a signed-in request would make it.
    pub fn user(&self, name: &str) -> User {
        User {
            id: self.user_id(name),
            email: None,
            raw_jwt: Some(self.token(name)),
            token_source: None,
        }
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
