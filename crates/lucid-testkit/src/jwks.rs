//! Supabase access-token fixtures: signing keys generated per test run ([`TestKey`], ES256 and
//! RS256, published as JWKs) and a fake Supabase Auth JWKS endpoint ([`JwksServer`],
//! `GET /auth/v1/.well-known/jwks.json`) that counts requests and can change its key set or
//! fail on demand.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The path Supabase Auth serves its public keys at.
pub const JWKS_PATH: &str = "/auth/v1/.well-known/jwks.json";

/// A private signing key made for this test run, with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl TestKey {
    /// A fresh P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("generate a P-256 key");
        let pkcs8 = pair.to_pkcs8v1().expect("encode the P-256 key");
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
    }

    /// A fresh 2048-bit RSA key (RS256).
    pub fn rs256(kid: &str) -> Self {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("generate an RSA key");
        let der: Pkcs8V1Der<'static> = pair.as_der().expect("encode the RSA key");
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("load the RSA key");
        Self::new(kid, Algorithm::RS256, key)
    }

    fn new(kid: &str, alg: Algorithm, key: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("public JWK of a test key");
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let jwk = serde_json::to_value(&jwk).expect("JWK as JSON");
        Self {
            kid: kid.to_string(),
            alg,
            key,
            jwk,
        }
    }

    /// The public key as a JWK (what the JWKS endpoint publishes).
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// Signs `claims` with a header naming this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with_header(header, claims)
    }

    /// Signs `claims` with a caller-made header (e.g. without `kid`, or naming another key).
    pub fn sign_with_header(&self, header: Header, claims: &Value) -> String {
        encode(&header, claims, &self.key).expect("sign a test token")
    }
}

struct JwksState {
    keys: Vec<Value>,
    requests: usize,
    failing: bool,
}

/// A fake Supabase Auth serving a JWKS on 127.0.0.1; stopped when dropped.
pub struct JwksServer {
    base_url: String,
    state: Arc<Mutex<JwksState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_jwks(State(state): State<Arc<Mutex<JwksState>>>) -> Response {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.requests += 1;
    if state.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "jwks unavailable").into_response();
    }
    Json(json!({ "keys": state.keys })).into_response()
}

impl JwksServer {
    /// Starts serving `keys`.
    pub async fn start(keys: &[&TestKey]) -> Self {
        let state = Arc::new(Mutex::new(JwksState {
            keys: keys.iter().map(|k| k.jwk()).collect(),
            requests: 0,
            failing: false,
        }));
        let router = Router::new()
            .route(JWKS_PATH, get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the JWKS server");
        let base_url = format!("http://{}", listener.local_addr().expect("local address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            base_url,
            state,
            task,
        }
    }

    /// The project URL (`SUPABASE_URL`); the JWKS is at `{base_url}/auth/v1/.well-known/jwks.json`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Replaces the published keys (a key rotation).
    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.lock().keys = keys.iter().map(|k| k.jwk()).collect();
    }

    /// Publishes raw JWK values (malformed or unsupported keys).
    pub fn set_raw_keys(&self, keys: Vec<Value>) {
        self.lock().keys = keys;
    }

    /// Answers 500 while `failing` is true.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// How many JWKS requests were served so far.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JwksState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
