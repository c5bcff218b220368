//! Attacks on the sandbox boundary, against the real engine with real Docker sandboxes: each
//! test plays the hostile sandbox (or a hostile user) and proves that nothing outside the
//! workspace changes, nothing is read, no host code runs and no token leaves for the wrong
//! host.

#[path = "../common/mod.rs"]
mod common;

mod git_boundary;
mod outbound;
