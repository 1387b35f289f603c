//! llm-service: an LLM gateway built as a WebAssembly component host.
//!
//! The host owns mechanism (sockets, admission, the engine, capabilities);
//! the handler component owns policy (routes, validation, response shapes).
//! `main.rs` only wires these modules together.

#![warn(missing_docs)]

pub mod admin;
pub mod answers;
pub mod bindings;
pub mod caps;
pub mod cli;
pub mod commands;
pub mod config;
pub mod config_reference;
pub mod fleet;
pub mod guest;
pub mod handler_settings;
pub mod keys;
pub mod listener;
pub mod logging;
pub mod purge;
pub mod registry;
pub mod request_id;
pub mod rollout;
pub mod routing;
pub mod runtime;
pub mod scope;
pub mod server;
pub mod store;
pub mod traces;
pub mod watch;
