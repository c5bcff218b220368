//! A PostgREST stand-in: the part of PostgREST's HTTP interface (`/rest/v1/<table>`, as a
//! Supabase project serves it) that Lucid's Supabase store uses, executed on a real
//! PostgreSQL with PostgREST's per-request setup, so row-level security is exercised end to
//! end. Written for these tests from PostgREST's documented behaviour; not PostgREST's code.
//!
//! Per request, like PostgREST behind Supabase's gateway:
//! - `apikey` must be the project's anon or service key (401 otherwise);
//! - the bearer token (or, without one, the anon role) is verified with the project's HS256
//!   secret (`exp` checked; 401 `PGRST301` / `PGRST303`), and its `role` claim must be `anon`,
//!   `authenticated` or `service_role`;
//! - one transaction on a connection logged in as `authenticator`: `SET LOCAL ROLE <role>`,
//!   `request.jwt.claims` set to the token's claims (what `auth.uid()` reads), the statement;
//! - database errors come back as PostgREST's JSON (`code` = SQLSTATE, `message`, `details`,
//!   `hint`) with PostgREST's status for the SQLSTATE.
//!
//! Supported: `GET` (`select` of plain columns, filters `eq neq gt gte lt lte like ilike is in`
//! and `not.`, `order` with `asc|desc` and `nullsfirst|nullslast`, `limit`, `offset`, the
//! `Range` header, `Prefer: count=exact` with `Content-Range`), `POST` (object or array body,
//! `Prefer: return=representation|minimal`, `resolution=merge-duplicates|ignore-duplicates`,
//! `on_conflict`), `PATCH` and `DELETE` with filters. Anything else is a 400 `PGRST100`.
//!
//! Outages: [`PostgrestStandIn::set_database_down`] makes every request fail like PostgREST
//! without its database (503 `PGRST001`); [`PostgrestStandIn::stop`] closes the listener and
//! every connection (connection refused), [`PostgrestStandIn::restart`] listens again on the
//! same port.

// Errors are the HTTP responses themselves, built where the problem is found.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::postgres::PgCluster;

/// What the stand-in needs to know about the project.
#[derive(Clone)]
pub struct StandInConfig {
    pub cluster: &'static PgCluster,
    pub dbname: String,
    pub jwt_secret: String,
    pub anon_key: String,
    pub service_key: String,
    /// Served at `/auth/v1/.well-known/jwks.json` (Supabase Auth's public keys).
    pub jwks: Vec<Value>,
}

struct Shared {
    config: StandInConfig,
    pool: tokio::sync::Mutex<Vec<Client>>,
    database_down: AtomicBool,
    requests: AtomicUsize,
    jwks_requests: AtomicUsize,
    /// Requests per method and table (`"POST chat_messages"`), for tests counting batches.
    by_route: Mutex<HashMap<String, usize>>,
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A PostgREST stand-in on 127.0.0.1; stopped when dropped.
pub struct PostgrestStandIn {
    addr: SocketAddr,
    base_url: String,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

impl Drop for PostgrestStandIn {
    fn drop(&mut self) {
        if let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = running.stop.send(true);
            running.task.abort();
        }
    }
}

impl PostgrestStandIn {
    pub async fn start(config: StandInConfig) -> PostgrestStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the PostgREST stand-in");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            config,
            pool: tokio::sync::Mutex::new(Vec::new()),
            database_down: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            jwks_requests: AtomicUsize::new(0),
            by_route: Mutex::default(),
        });
        let stand_in = PostgrestStandIn {
            addr,
            base_url: format!("http://{addr}"),
            shared,
            running: Mutex::new(None),
        };
        stand_in.serve(listener);
        stand_in
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let router = Router::new()
            .route(
                "/rest/v1/{table}",
                get(handle).post(handle).patch(handle).delete(handle),
            )
            .route("/auth/v1/.well-known/jwks.json", get(jwks))
            .with_state(Arc::clone(&self.shared));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running { stop, task });
    }

    /// The project URL (`SUPABASE_URL`): the REST API is at `{base_url}/rest/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Requests answered so far (REST and JWKS).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// JWKS requests answered so far.
    pub fn jwks_requests(&self) -> usize {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }

    /// Requests seen for `"<METHOD> <table>"` (e.g. `"POST chat_messages"`).
    pub fn route_requests(&self, route: &str) -> usize {
        let map = self
            .shared
            .by_route
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(route).copied().unwrap_or(0)
    }

    /// While `down`, every REST request fails as when PostgREST loses its database.
    pub fn set_database_down(&self, down: bool) {
        self.shared.database_down.store(down, Ordering::SeqCst);
    }

    /// Stops listening and closes every connection (clients get connection errors).
    pub async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(running) = running {
            let _ = running.stop.send(true);
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Listens again on the same address after [`PostgrestStandIn::stop`].
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "keys": shared.config.jwks })).into_response()
}

/// A PostgREST-style error response.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"code": code, "details": null, "hint": null, "message": message.into()});
    (status, Json(body)).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "PGRST100", message)
}

/// PostgREST's HTTP status for a SQLSTATE.
fn status_for(sqlstate: &str, role: &str) -> StatusCode {
    match sqlstate {
        "42501" if role == "anon" => StatusCode::UNAUTHORIZED,
        "42501" => StatusCode::FORBIDDEN,
        "23503" | "23505" => StatusCode::CONFLICT,
        "42P01" => StatusCode::NOT_FOUND,
        "25006" => StatusCode::METHOD_NOT_ALLOWED,
        s if s.starts_with("08") || s == "57P01" || s == "53300" => StatusCode::SERVICE_UNAVAILABLE,
        s if s.starts_with("22") || s.starts_with("23") || s.starts_with("42") => {
            StatusCode::BAD_REQUEST
        }
        "P0001" => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn db_error(e: &tokio_postgres::Error, role: &str) -> Response {
    match e.as_db_error() {
        Some(db) => {
            let body = json!({
                "code": db.code().code(),
                "message": db.message(),
                "details": db.detail(),
                "hint": db.hint(),
            });
            (status_for(db.code().code(), role), Json(body)).into_response()
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "PGRST001",
            format!("Database client error. Retrying the connection. ({e})"),
        ),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks `apikey` and the bearer token; returns the role and the claims (JSON text).
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(String, String), Response> {
    let config = &shared.config;
    match header(headers, "apikey") {
        None => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "",
                "No API key found in request",
            ))
        }
        Some(k) if k != config.anon_key && k != config.service_key => {
            return Err(error(StatusCode::UNAUTHORIZED, "", "Invalid API key"))
        }
        Some(_) => {}
    }
    let Some(token) = header(headers, "authorization").and_then(|h| h.strip_prefix("Bearer "))
    else {
        return Ok(("anon".into(), json!({"role": "anon"}).to_string()));
    };
    let invalid = |m: String| error(StatusCode::UNAUTHORIZED, "PGRST301", m);
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("JWT invalid: {e}")))?;
    // HS256 with the project secret, or ES256/RS256 with a key of the project's JWKS.
    let key = match header.alg {
        Algorithm::HS256 => DecodingKey::from_secret(config.jwt_secret.as_bytes()),
        Algorithm::ES256 | Algorithm::RS256 => {
            let jwk = config
                .jwks
                .iter()
                .find(|k| {
                    header.kid.is_some()
                        && k.get("kid").and_then(Value::as_str) == header.kid.as_deref()
                })
                .and_then(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone()).ok())
                .ok_or_else(|| invalid("No suitable key or wrong key type".into()))?;
            DecodingKey::from_jwk(&jwk).map_err(|e| invalid(format!("JWT invalid: {e}")))?
        }
        other => return Err(invalid(format!("unsupported algorithm {other:?}"))),
    };
    let mut validation = Validation::new(header.alg);
    validation.validate_aud = false;
    validation.required_spec_claims = Default::default();
    let claims = decode::<Value>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                error(StatusCode::UNAUTHORIZED, "PGRST303", "JWT expired")
            }
            _ => error(
                StatusCode::UNAUTHORIZED,
                "PGRST301",
                format!("JWT invalid: {e}"),
            ),
        })?
        .claims;
    let role = claims
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("anon")
        .to_string();
    if !matches!(role.as_str(), "anon" | "authenticated" | "service_role") {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "22023",
            format!("role \"{role}\" does not exist"),
        ));
    }
    Ok((role, claims.to_string()))
}

fn ident(name: &str) -> Result<String, Response> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(bad_request(format!("unsupported identifier {name:?}")))
    }
}

/// A literal whose type PostgreSQL infers from the column (like PostgREST's unknown-typed
/// parameters): an id that is not a UUID fails with 22P02 as it does there.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn filter_sql(column: &str, spec: &str) -> Result<String, Response> {
    let col = ident(column)?;
    let (negate, spec) = match spec.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let (op, value) = spec
        .split_once('.')
        .ok_or_else(|| bad_request(format!("unsupported filter {column}={spec}")))?;
    let sql = match op {
        "eq" => format!("{col} = {}", literal(value)),
        "neq" => format!("{col} <> {}", literal(value)),
        "gt" => format!("{col} > {}", literal(value)),
        "gte" => format!("{col} >= {}", literal(value)),
        "lt" => format!("{col} < {}", literal(value)),
        "lte" => format!("{col} <= {}", literal(value)),
        "like" => format!("{col} LIKE {}", literal(&value.replace('*', "%"))),
        "ilike" => format!("{col} ILIKE {}", literal(&value.replace('*', "%"))),
        "is" => match value {
            "null" => format!("{col} IS NULL"),
            "true" => format!("{col} IS TRUE"),
            "false" => format!("{col} IS FALSE"),
            "unknown" => format!("{col} IS UNKNOWN"),
            _ => return Err(bad_request(format!("unsupported is.{value}"))),
        },
        "in" => {
            let inner = value
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| bad_request(format!("bad in list {value}")))?;
            let items: Vec<String> = inner
                .split(',')
                .map(|item| literal(item.trim().trim_matches('"')))
                .collect();
            format!("{col} IN ({})", items.join(","))
        }
        _ => return Err(bad_request(format!("unsupported operator {op}"))),
    };
    Ok(if negate { format!("NOT ({sql})") } else { sql })
}

fn order_sql(spec: &str) -> Result<String, Response> {
    let mut terms = Vec::new();
    for term in spec.split(',') {
        let mut parts = term.split('.');
        let col = ident(parts.next().unwrap_or_default())?;
        let mut sql = col;
        for modifier in parts {
            sql.push_str(match modifier {
                "asc" => " ASC",
                "desc" => " DESC",
                "nullsfirst" => " NULLS FIRST",
                "nullslast" => " NULLS LAST",
                other => return Err(bad_request(format!("unsupported order {other}"))),
            });
        }
        terms.push(sql);
    }
    Ok(terms.join(", "))
}

/// The parsed query string.
#[derive(Default)]
struct Query_ {
    select: Option<String>,
    filters: Vec<String>,
    order: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
    on_conflict: Option<String>,
}

fn parse_query(params: &[(String, String)], headers: &HeaderMap) -> Result<Query_, Response> {
    let mut q = Query_::default();
    for (key, value) in params {
        match key.as_str() {
            "select" => {
                if value.trim() == "*" {
                    q.select = None;
                } else {
                    let cols: Result<Vec<String>, Response> =
                        value.split(',').map(|c| ident(c.trim())).collect();
                    q.select = Some(cols?.join(", "));
                }
            }
            "order" => q.order = Some(order_sql(value)?),
            "limit" => {
                q.limit = Some(
                    value
                        .parse()
                        .map_err(|_| bad_request(format!("bad limit {value}")))?,
                )
            }
            "offset" => {
                q.offset = Some(
                    value
                        .parse()
                        .map_err(|_| bad_request(format!("bad offset {value}")))?,
                )
            }
            "on_conflict" => {
                let cols: Result<Vec<String>, Response> =
                    value.split(',').map(|c| ident(c.trim())).collect();
                q.on_conflict = Some(cols?.join(", "));
            }
            "columns" => return Err(bad_request("columns= is not supported")),
            column => q.filters.push(filter_sql(column, value)?),
        }
    }
    if let Some(range) = header(headers, "range") {
        let (low, high) = range
            .split_once('-')
            .ok_or_else(|| bad_request(format!("bad Range {range}")))?;
        let low: u64 = low
            .trim()
            .parse()
            .map_err(|_| bad_request(format!("bad Range {range}")))?;
        q.offset = Some(q.offset.unwrap_or(0) + low);
        if let Ok(high) = high.trim().parse::<u64>() {
            if high < low {
                return Err(error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "PGRST103",
                    "Requested range not satisfiable",
                ));
            }
            let n = high - low + 1;
            q.limit = Some(q.limit.map_or(n, |l| l.min(n)));
        }
    }
    Ok(q)
}

fn where_sql(filters: &[String]) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    }
}

/// The `Prefer` settings of a request (every `Prefer` header, comma-separated values).
fn prefer(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let (k, v) = item.trim().split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(table): Path<String>,
    method: Method,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    *shared
        .by_route
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(format!("{method} {table}"))
        .or_default() += 1;
    let (role, claims) = match authenticate(&shared, &headers) {
        Ok(v) => v,
        Err(response) => return response,
    };
    if shared.database_down.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "PGRST001",
            "Database client error. Retrying the connection.",
        );
    }
    match run(
        &shared, &table, &method, &params, &headers, &body, &role, &claims,
    )
    .await
    {
        Ok(response) => response,
        Err(response) => response,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    shared: &Shared,
    table: &str,
    method: &Method,
    params: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    role: &str,
    claims: &str,
) -> Result<Response, Response> {
    let t = format!("\"public\".{}", ident(table)?);
    let q = parse_query(params, headers)?;
    let prefs = prefer(headers);
    let representation = prefs.get("return").map(String::as_str) == Some("representation");
    let cols = q.select.clone().unwrap_or_else(|| "*".into());
    let wrap = |inner: &str| {
        format!(
            "WITH pgrst_source AS ({inner}) \
             SELECT coalesce(json_agg(_s), '[]'::json)::text, count(*) \
             FROM (SELECT {cols} FROM pgrst_source) _s"
        )
    };
    let (sql, json_param, status): (String, Option<Value>, StatusCode) = match *method {
        Method::GET => {
            let mut inner = format!("SELECT * FROM {t}{}", where_sql(&q.filters));
            if let Some(order) = &q.order {
                inner.push_str(&format!(" ORDER BY {order}"));
            }
            if let Some(limit) = q.limit {
                inner.push_str(&format!(" LIMIT {limit}"));
            }
            if let Some(offset) = q.offset {
                inner.push_str(&format!(" OFFSET {offset}"));
            }
            (wrap(&inner), None, StatusCode::OK)
        }
        Method::POST => {
            let payload: Value = serde_json::from_slice(body).map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    "PGRST102",
                    format!("Empty or invalid json: {e}"),
                )
            })?;
            let rows = match payload {
                Value::Array(rows) => rows,
                obj @ Value::Object(_) => vec![obj],
                _ => return Err(error(StatusCode::BAD_REQUEST, "PGRST102", "Invalid body")),
            };
            let keys: Vec<String> = rows
                .first()
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let columns: Result<Vec<String>, Response> = keys.iter().map(|k| ident(k)).collect();
            let columns = columns?.join(", ");
            let mut inner = format!(
                "INSERT INTO {t} ({columns}) SELECT {columns} \
                 FROM json_populate_recordset(null::{t}, $1::json)"
            );
            if let Some(resolution) = prefs.get("resolution").map(String::as_str) {
                let target = q.on_conflict.clone().unwrap_or_else(|| "\"id\"".into());
                if resolution == "ignore-duplicates" {
                    inner.push_str(&format!(" ON CONFLICT ({target}) DO NOTHING"));
                } else {
                    let sets: Vec<String> = keys
                        .iter()
                        .map(|k| format!("\"{k}\" = EXCLUDED.\"{k}\""))
                        .collect();
                    inner.push_str(&format!(
                        " ON CONFLICT ({target}) DO UPDATE SET {}",
                        sets.join(", ")
                    ));
                }
            }
            inner.push_str(&format!(" RETURNING {t}.*"));
            (wrap(&inner), Some(Value::Array(rows)), StatusCode::CREATED)
        }
        Method::PATCH => {
            let payload: Value = serde_json::from_slice(body).map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    "PGRST102",
                    format!("Empty or invalid json: {e}"),
                )
            })?;
            let keys: Vec<String> = payload
                .as_object()
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, "PGRST102", "Invalid body"))?
                .keys()
                .cloned()
                .collect();
            let columns: Result<Vec<String>, Response> = keys.iter().map(|k| ident(k)).collect();
            let columns = columns?.join(", ");
            let inner = format!(
                "UPDATE {t} SET ({columns}) = (SELECT {columns} \
                 FROM json_populate_record(null::{t}, $1::json)){} RETURNING {t}.*",
                where_sql(&q.filters)
            );
            (wrap(&inner), Some(payload), StatusCode::OK)
        }
        Method::DELETE => {
            let inner = format!("DELETE FROM {t}{} RETURNING {t}.*", where_sql(&q.filters));
            (wrap(&inner), None, StatusCode::OK)
        }
        _ => return Err(bad_request(format!("unsupported method {method}"))),
    };
    let count_sql = (prefs.get("count").map(String::as_str) == Some("exact")
        && *method == Method::GET)
        .then(|| format!("SELECT count(*) FROM {t}{}", where_sql(&q.filters)));

    let mut client = take_connection(shared).await?;
    let result = async {
        let tx = client.transaction().await?;
        // `role` is one of three fixed names (checked in `authenticate`).
        tx.batch_execute(&format!("SET LOCAL ROLE {role}")).await?;
        tx.execute(
            "SELECT set_config('request.jwt.claims', $1, true), set_config('request.method', $2, true)",
            &[&claims, &method.as_str()],
        )
        .await?;
        let row = match &json_param {
            Some(p) => tx.query_one(sql.as_str(), &[p]).await?,
            None => tx.query_one(sql.as_str(), &[]).await?,
        };
        let total = match &count_sql {
            Some(c) => Some(tx.query_one(c.as_str(), &[]).await?.get::<_, i64>(0)),
            None => None,
        };
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>((row.get::<_, String>(0), row.get::<_, i64>(1), total))
    }
    .await;
    let (json_text, n, total) = match result {
        Ok(v) => {
            shared.pool.lock().await.push(client);
            v
        }
        Err(e) => {
            if !client.is_closed() {
                shared.pool.lock().await.push(client);
            }
            return Err(db_error(&e, role));
        }
    };
    let mut response_headers = HeaderMap::new();
    let low = q.offset.unwrap_or(0);
    let range = if n == 0 {
        "*".to_string()
    } else {
        format!("{low}-{}", low + n as u64 - 1)
    };
    let total = total.map_or("*".to_string(), |t| t.to_string());
    if let Ok(v) = HeaderValue::from_str(&format!("{range}/{total}")) {
        response_headers.insert("content-range", v);
    }
    let returns_body = *method == Method::GET || representation;
    if !returns_body {
        let status = if *method == Method::POST {
            StatusCode::CREATED
        } else {
            StatusCode::NO_CONTENT
        };
        return Ok((status, response_headers).into_response());
    }
    response_headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Ok((status, response_headers, json_text).into_response())
}

async fn take_connection(shared: &Shared) -> Result<Client, Response> {
    if let Some(client) = shared.pool.lock().await.pop() {
        if !client.is_closed() {
            return Ok(client);
        }
    }
    shared
        .config
        .cluster
        .connect_as(&shared.config.dbname, "authenticator")
        .await
        .map_err(|e| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "PGRST000",
                format!("Database connection error. Retrying the connection. ({e})"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_orders_become_sql_and_bad_input_is_refused() {
        assert_eq!(filter_sql("id", "eq.a'b").unwrap(), "\"id\" = 'a''b'");
        assert_eq!(
            filter_sql("seq", "not.is.null").unwrap(),
            "NOT (\"seq\" IS NULL)"
        );
        assert_eq!(
            filter_sql("p", "in.(a,\"b\")").unwrap(),
            "\"p\" IN ('a','b')"
        );
        assert!(filter_sql("x; drop", "eq.1").is_err());
        assert!(filter_sql("x", "regex.1").is_err());
        assert_eq!(
            order_sql("seq.asc.nullsfirst,created_at.desc").unwrap(),
            "\"seq\" ASC NULLS FIRST, \"created_at\" DESC"
        );
        assert!(order_sql("seq.sideways").is_err());
    }

    #[test]
    fn statuses_follow_postgrest() {
        assert_eq!(status_for("42501", "anon"), StatusCode::UNAUTHORIZED);
        assert_eq!(status_for("42501", "authenticated"), StatusCode::FORBIDDEN);
        assert_eq!(status_for("23505", "authenticated"), StatusCode::CONFLICT);
        assert_eq!(
            status_for("22P02", "authenticated"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_for("XX000", "authenticated"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
