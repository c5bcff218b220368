//! REST handlers, one module per domain. Each handler: authenticate, one engine call, shape.

pub mod chats;
pub mod files;
pub mod health;
pub mod integrations;
pub mod sessions;
pub mod sign_in;
pub mod status;
