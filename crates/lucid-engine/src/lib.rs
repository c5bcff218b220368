//! Lucid engine: the product's logic, independent of any transport.
//!
//! Front doors (the HTTP/WS server, the Tauri shell) build one [`Engine`] from a [`Config`]
//! and translate their transport into calls on it.

pub mod agent;
pub mod auth;
pub mod chats;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod events;
pub mod files;
pub mod forge;
pub mod git;
pub mod integrations;
pub mod llm;
pub mod outbound;
mod pull_request;
pub mod sandbox;
pub mod sessions;
pub mod store;
pub mod supabase_setup;
pub mod workspace;

pub use auth::User;
pub use config::Config;
pub use engine::Engine;
pub use error::{EngineError, ErrorKind};
