//! The agent: a tool-calling loop over an LLM ([`runner`]) with the tools `execute_bash`,
//! `str_replace_editor` ([`editor`]), `think` and `finish` ([`tools`]).

pub mod context;
pub mod editor;
pub mod prompt;
pub mod resume;
pub mod runner;
pub mod stuck;
pub mod tools;
pub mod truncate;

pub use runner::{Agent, AgentLimits, TurnOutcome};
