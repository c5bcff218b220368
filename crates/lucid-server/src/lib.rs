//! Lucid headless server: the REST + WebSocket front door over the engine, and the `lucid` CLI.
