//! Lucid headless server: the original engine's REST + WebSocket API over [`lucid_engine`]
//! (`lucid serve`), plus the terminal front door (`lucid run`) and `lucid doctor`.
//!
//! Handlers are thin: they authenticate, translate the request into one engine call and the
//! result into the original's JSON shape.

pub mod api_error;
pub mod app;
pub mod auth;
pub mod cli;
pub mod json;
pub mod openapi;
pub mod routes;
pub mod ui;
pub mod ws;

pub use app::{router, AppState};
