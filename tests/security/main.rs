//! Attack tests for the sandbox boundary and the engine's limits (issue 7): each test tries to
//! break one guarantee against the real engine, a real Docker sandbox and real SQLite.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod limits;
