//! The error every command answers with: the HTTP status the same failure has on the REST API
//! and the engine's words, so the UI handles both front doors alike.

use lucid_engine::{EngineError, ErrorKind};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, thiserror::Error, specta::Type)]
#[error("{message}")]
pub struct CommandError {
    pub status: u16,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            status: lucid_server::api_error::status_for(kind).as_u16(),
            message: message.into(),
        }
    }
}

impl From<EngineError> for CommandError {
    fn from(e: EngineError) -> Self {
        Self::new(e.kind, e.message)
    }
}

pub type CommandResult<T> = Result<T, CommandError>;
