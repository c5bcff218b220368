//! The engine-level error every facade call returns. Front doors map [`ErrorKind`] to their
//! transport (HTTP status, IPC error) without looking at module-specific error types.

use thiserror::Error;

/// What kind of failure happened, independent of the module that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid (HTTP 400).
    BadRequest,
    /// No credentials at all (HTTP 403 in the original's contract).
    Unauthenticated,
    /// Credentials present but invalid (HTTP 401).
    InvalidCredentials,
    /// Authenticated but not allowed (HTTP 403).
    Forbidden,
    /// Unknown id, or another user's id (HTTP 404).
    NotFound,
    /// A state conflict (HTTP 409).
    Conflict,
    /// A per-user or per-session limit is reached; retry later (HTTP 429).
    TooManyRequests,
    /// Input understood but rejected by a validation step, e.g. a forge refused a token (HTTP 422).
    Unprocessable,
    /// An upstream service (forge, LLM) failed (HTTP 502).
    Upstream,
    /// A local dependency (database, Docker) is unavailable (HTTP 503).
    Unavailable,
    /// A bug or unexpected failure (HTTP 500).
    Internal,
}

/// An error with a user-facing message. Messages never contain secrets.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
}

impl EngineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }
}

pub type EngineResult<T> = Result<T, EngineError>;
