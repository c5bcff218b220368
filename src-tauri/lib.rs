//! Lucid desktop shell (Tauri 2). The shell is a thin adapter over [`lucid_engine`]; its
//! commands, channels, deep links and keyring integration arrive with the desktop issue.
//! Until then this package hosts the product's end-to-end tests (`tests/`).

pub use lucid_engine as engine;
