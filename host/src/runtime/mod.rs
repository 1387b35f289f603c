//! The handler's runtime: the per-request store state ([`state`]) and the
//! loaded handler ([`handler`]) that turns an HTTP request into an instance
//! (fresh, or kept from the connection's previous request, see [`reuse`])
//! and its response; its versions ([`versions`]), the canary beside them
//! ([`canary`]) and how a new one is
//! installed ([`installer`]). What it shares with the plugins (engines,
//! compiled cache, guest calls) is in [`crate::guest`].

pub mod canary;
pub mod handler;
pub mod installer;
pub mod reuse;
pub mod state;
pub mod versions;
