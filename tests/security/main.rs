//! Attacks on the sandbox boundary and the engine's limits, against the real engine with real
//! Docker sandboxes and real SQLite: each test plays the hostile sandbox (or a hostile user)
//! and proves that nothing outside the workspace changes, nothing is read, no host code runs,
//! no token leaves for the wrong host and no limit can be overrun.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod git_boundary;
mod limits;
mod outbound;
mod workspace_race;
