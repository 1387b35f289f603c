//! One module per WIT capability the host provides to components. Each has
//! the same shape: `mod.rs` (what it guarantees, its state, `add_to_linker`)
//! and `host.rs` (the generated `Host` trait, thin).

pub mod runtime;
