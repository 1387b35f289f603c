//! The on-disk cache of compiled components, keyed by the sha256 of their
//! bytes, so a restart or a rollback does not compile again.
//!
//! The directory is a [`SealedDir`]: the service's own (0700), each
//! compiled file sealed with an HMAC over the source's sha256 and its bytes,
//! so a file merely placed under a component's name never runs. Files are
//! written to a temporary name and renamed, so a reader never sees half a
//! file. A file wasmtime rejects (another wasmtime version or engine
//! configuration, or damage) is compiled anew and replaced. Without a
//! directory (or with one refused as unsafe) every load compiles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::sealed::SealedDir;

/// Every WebAssembly module and component starts so.
const WASM_MAGIC: &[u8] = b"\0asm";

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compilation {
    /// Read from the cache directory.
    Cached,
    /// Compiled now, taking this long.
    Fresh(Duration),
}

impl Compilation {
    /// What logs and the admin API report: `(compile_ms, compiled_from_cache)`.
    pub fn report(self) -> (u64, bool) {
        match self {
            Self::Cached => (0, true),
            Self::Fresh(took) => (u64::try_from(took.as_millis()).unwrap_or(u64::MAX), false),
        }
    }
}

/// SHA-256 of `bytes`, hex: what names a component here (cache files,
/// versions, plugins, watched files).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// The cache directory (or none).
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: Option<SealedDir>,
}

impl CompiledCache {
    /// A cache in `dir`; `None`, or a directory that is not safe to trust
    /// (logged), disables it.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(|dir| {
            SealedDir::open(&dir)
                .inspect_err(|error| {
                    tracing::warn!(%error, "compiled-component cache off: every load compiles");
                })
                .ok()
        });
        Self { dir }
    }

    /// The component for `bytes` (whose sha256 is `sha256`): from the cache
    /// if it holds a usable one, else compiled and stored.
    pub fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, Compilation)> {
        // wasmtime's own words for this case quote the bytes it found.
        if !bytes.starts_with(WASM_MAGIC) {
            wasmtime::bail!("not a WebAssembly file: it does not start with \\0asm ({} bytes)", bytes.len());
        }
        let name = format!("{sha256}.cwasm");
        if let Some(compiled) = self.dir.as_ref().and_then(|dir| dir.read(&name, sha256)) {
            // SAFETY: the file is sealed by this service for this source: it
            // was written by `Component::serialize` below, and wasmtime
            // checks that it was made by a compatible engine.
            match unsafe { Component::deserialize(engine, &compiled) } {
                Ok(component) => return Ok((component, Compilation::Cached)),
                Err(error) => {
                    tracing::warn!(file = %name, %error, "compiled cache entry unusable; compiling again")
                }
            }
        }
        let started = Instant::now();
        let component = Component::new(engine, bytes)?;
        let compile_time = started.elapsed();
        if let Some(dir) = &self.dir
            && let Err(error) = component
                .serialize()
                .map_err(anyhow::Error::from)
                .and_then(|serialized| dir.write(&name, sha256, &serialized).map_err(anyhow::Error::from))
        {
            tracing::warn!(file = %name, %error, "could not write the compiled cache");
        }
        return_freed_memory();
        Ok((component, Compilation::Fresh(compile_time)))
    }
}

/// Hands what the compiler freed back to the system. Cranelift allocates
/// about 30 MB to compile the handler, and glibc's malloc keeps freed
/// pages for reuse: a service that compiled its handler at start held
/// 54 MB at idle where one that read it from the cache held 25 MB.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives back pages no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}
