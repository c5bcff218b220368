//! A small local Supabase project for the CLI tests: Supabase's API gateway (the `apikey`
//! header must be one of the project's keys, else 401 "Invalid API key"), PostgREST's
//! authentication (the bearer JWT, or the key itself, verified with the project's HS256 secret;
//! the `role` claim picks the Postgres role) and PostgREST's read-zero-rows query
//! `GET /rest/v1/<table>?select=<columns>&limit=0`, run on a real PostgreSQL 15 under that
//! role with `request.jwt.claims` set as PostgREST sets them, with PostgREST's error codes and
//! statuses (`PGRST205` 404 for an unknown table, `42703` 400 for an unknown column, `42501`
//! 401/403 for missing privileges, `PGRST301` 401 for a bad JWT). It also serves Supabase
//! Auth's JWKS. Only what `lucid doctor` and `lucid serve` ask is implemented; anything else
//! is refused with an error, never answered with made-up data.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lucid_testkit::jwks::TestKey;
use lucid_testkit::postgres::{describe, tokio_postgres, PgCluster};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// The project's new-style API keys (opaque; the gateway maps them to a role).
pub const PUBLISHABLE_KEY: &str = "sb_publishable_standin0123456789";
pub const SECRET_KEY: &str = "sb_secret_standin0123456789abcdef";

/// The project's (legacy) JWT secret.
pub const PROJECT_SECRET: &str = "stand-in-project-jwt-secret-0123456789abcdef";

/// The repository's migrations, in file-name order.
pub fn migration_files() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../supabase/migrations");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("supabase/migrations")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("migration file"),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "migrations: {files:?}");
    files
}

/// An HS256 project key for `role`, signed with `secret`, valid for ten years.
pub fn project_key(role: &str, secret: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": "supabase", "role": role, "iat": now, "exp": now + 10 * 365 * 86_400}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a project key")
}

struct Project {
    db: Mutex<tokio_postgres::Client>,
    /// The keys the gateway accepts.
    api_keys: Vec<String>,
    jwks: Vec<Value>,
}

/// A running stand-in project; stopped when dropped.
pub struct SupabaseStandIn {
    pub url: String,
    pub anon_key: String,
    pub service_key: String,
    /// Superuser connection to the project's database (set-up and damage in tests).
    pub admin: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SupabaseStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SupabaseStandIn {
    /// A fresh database with Supabase's auth schema and the first `applied` migrations, and
    /// the HTTP front on 127.0.0.1 publishing `signing_keys` as its JWKS.
    pub async fn start(applied: usize, signing_keys: &[&TestKey]) -> SupabaseStandIn {
        let cluster = PgCluster::shared();
        let (name, admin) = cluster.supabase_database().await.expect("database");
        for (file, sql) in migration_files().into_iter().take(applied) {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{file}: {}", describe(&e)));
        }
        let db = cluster
            .connect(&name)
            .await
            .expect("connection for the API");
        let anon_key = project_key("anon", PROJECT_SECRET);
        let service_key = project_key("service_role", PROJECT_SECRET);
        let project = Arc::new(Project {
            db: Mutex::new(db),
            api_keys: vec![
                anon_key.clone(),
                service_key.clone(),
                PUBLISHABLE_KEY.to_string(),
                SECRET_KEY.to_string(),
            ],
            jwks: signing_keys.iter().map(|k| k.jwk()).collect(),
        });
        let router = Router::new()
            .route(
                "/auth/v1/.well-known/jwks.json",
                get(|State(p): State<Arc<Project>>| async move { Json(json!({ "keys": p.jwks })) }),
            )
            .route("/rest/v1/", get(rest_root))
            .route("/rest/v1/{table}", get(rest_select))
            .with_state(project);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        SupabaseStandIn {
            url,
            anon_key,
            service_key,
            admin,
            task,
        }
    }

    /// The four Supabase settings pointing at this project.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SUPABASE_URL".into(), self.url.clone()),
            ("SUPABASE_ANON_KEY".into(), self.anon_key.clone()),
            ("SUPABASE_JWT_SECRET".into(), PROJECT_SECRET.into()),
            ("SUPABASE_SERVICE_KEY".into(), self.service_key.clone()),
        ]
    }
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn pgrst(status: StatusCode, code: &str, message: &str) -> Response {
    error(
        status,
        json!({"code": code, "details": null, "hint": null, "message": message}),
    )
}

/// The gateway's key check, then PostgREST's JWT check: the claims of the request.
fn authenticate(project: &Project, headers: &HeaderMap) -> Result<Value, Box<Response>> {
    let api_key = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !project.api_keys.iter().any(|k| k == api_key) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}),
        )));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Like Supabase's gateway: an opaque key without a user's token stands for its role.
    if bearer.is_none() {
        match api_key {
            PUBLISHABLE_KEY => return Ok(json!({"role": "anon"})),
            SECRET_KEY => return Ok(json!({"role": "service_role"})),
            _ => {}
        }
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or(api_key);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    decode::<Value>(
        token,
        &DecodingKey::from_secret(PROJECT_SECRET.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|e| {
        Box::new(pgrst(
            StatusCode::UNAUTHORIZED,
            "PGRST301",
            &format!("JWSError {e}"),
        ))
    })
}

async fn rest_root(State(project): State<Arc<Project>>, headers: HeaderMap) -> Response {
    if let Err(refused) = authenticate(&project, &headers) {
        return *refused;
    }
    Json(json!({"swagger": "2.0", "info": {"title": "stand-in"}, "paths": {}})).into_response()
}

fn is_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn rest_select(
    State(project): State<Arc<Project>>,
    Path(table): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let claims = match authenticate(&project, &headers) {
        Ok(claims) => claims,
        Err(refused) => return *refused,
    };
    let role = claims.get("role").and_then(Value::as_str).unwrap_or("");
    if !matches!(role, "anon" | "authenticated" | "service_role") {
        return pgrst(
            StatusCode::UNAUTHORIZED,
            "PGRST303",
            &format!("unknown role {role:?}"),
        );
    }
    if query.get("limit").map(String::as_str) != Some("0")
        || query.keys().any(|k| k != "select" && k != "limit")
    {
        return pgrst(
            StatusCode::NOT_IMPLEMENTED,
            "STANDIN",
            "this stand-in only answers select=...&limit=0",
        );
    }
    let select = query.get("select").map(String::as_str).unwrap_or("*");
    let columns: Vec<&str> = select.split(',').collect();
    if !is_identifier(&table) || !(select == "*" || columns.iter().all(|c| is_identifier(c))) {
        return pgrst(StatusCode::BAD_REQUEST, "PGRST100", "unsupported select");
    }
    let column_list = if select == "*" {
        "*".to_string()
    } else {
        columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut db = project.db.lock().await;
    let tx = db.transaction().await.expect("begin");
    tx.batch_execute(&format!("set local role {role}"))
        .await
        .expect("set role");
    tx.execute(
        "select set_config('request.jwt.claims', $1, true)",
        &[&claims.to_string()],
    )
    .await
    .expect("claims");
    let result = tx
        .query(
            &format!("select {column_list} from public.\"{table}\" limit 0"),
            &[],
        )
        .await;
    let _ = tx.rollback().await;
    match result {
        Ok(_) => Json(json!([])).into_response(),
        Err(e) => {
            let code = e.code().map(|c| c.code()).unwrap_or("");
            let message = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            match code {
                "42P01" => pgrst(
                    StatusCode::NOT_FOUND,
                    "PGRST205",
                    &format!("Could not find the table 'public.{table}' in the schema cache"),
                ),
                "42703" => pgrst(StatusCode::BAD_REQUEST, "42703", &message),
                "42501" if role == "anon" => pgrst(StatusCode::UNAUTHORIZED, "42501", &message),
                "42501" => pgrst(StatusCode::FORBIDDEN, "42501", &message),
                _ => pgrst(StatusCode::INTERNAL_SERVER_ERROR, code, &message),
            }
        }
    }
}
