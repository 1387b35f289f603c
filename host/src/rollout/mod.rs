//! Safe change: what lets operators move traffic gradually and notice a bad
//! change before everyone does.
//!
//! - a canary handler version beside the stable one, dropped on its own
//!   when it does worse ([`crate::runtime::canary`]; its settings are here);
//! - a model A/B split for generations that name no model ([`model_split`]);
//! - sampled response validation: probes through the normal generation
//!   path, checked ([`quality`]), their verdict shown in /health and
//!   /metrics ([`verdict`]).

pub mod config;
pub mod model_split;
pub mod quality;
pub mod verdict;
