//! Wire-level fakes and fixtures for Lucid's tests: a scripted LLM server speaking the
//! Anthropic, Gemini and OpenAI-compatible formats ([`llm`]), fake GitHub/GitLab APIs
//! ([`forge`]), a token-protected git smart-HTTP server ([`git_server`]), the local sandbox
//! test image ([`image`]), throwaway PostgreSQL 15 clusters with a
//! Supabase-style `auth` schema ([`postgres`]), a fake Supabase JWKS endpoint with test signing
//! keys ([`jwks`]), a PostgREST stand-in on that PostgreSQL ([`postgrest`]), a whole local
//! Supabase project bundling them ([`supabase`]), a fake Supabase Auth (GoTrue) for sign-in
//! ([`supabase_auth`]), and small helpers.

pub mod forge;
pub mod git_server;
pub mod image;
pub mod jwks;
pub mod llm;
pub mod postgres;
pub mod postgrest;
pub mod supabase;
pub mod supabase_auth;
