//! The guest runtime both the handler and the plugins run on: the engines
//! and their one epoch ticker ([`engine`]), the compiled-component cache
//! ([`compiled`]), and how a call into a guest is bounded, its output
//! captured and its failure told apart ([`call`]). It depends on no
//! capability, so [`crate::runtime`] (the handler) and [`crate::caps`] (the
//! plugins among them) both build on it without importing each other.

pub mod call;
pub mod compiled;
pub mod engine;
pub mod sealed;
