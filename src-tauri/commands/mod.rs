//! The app's commands, grouped by domain. Each is a thin translation of one UI request into
//! one engine call (as the HTTP routes are), acting as the shell's user.

pub mod app;
pub mod chats;
pub mod files;
pub mod integrations;
pub mod sessions;
pub mod settings;
pub mod status;
