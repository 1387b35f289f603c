//! How an [`Engine`] is built (the handler's and the plugins'), and the one
//! epoch ticker they share.
//!
//! Guarantees: instance memory never grows past the configured limit (the
//! pooling allocator refuses); the pool holds at least one instance slot per
//! admitted request; one shared thread advances every engine's epoch, so interrupting a
//! runaway guest costs nothing per request (a per-request ticker thread cost
//! `wasmtime serve` 100x throughput, wasmtime#11814).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of guest deadlines and of
/// how often a busy guest yields its tokio worker.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Instance slots kept beyond the admission limit, for work the host starts
/// itself (smoke checks of a new component, later).
const SPARE_INSTANCE_SLOTS: u32 = 16;

/// A Rust wasip2 component has a handful of core instances (the program, the
/// WASI adapter, shims); these per-instance allowances cover that with room.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;

/// Memory and table bytes a freed slot keeps mapped and resets with
/// `memset` instead of `madvise`: an instance per request would otherwise
/// unmap and fault in its pages every time, and the TLB shootdowns that
/// unmapping sends to every core were a quarter of a cache hit's CPU.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// What sizes the engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Instances alive at once: working ones and any kept idle.
    pub max_instances: u32,
    /// Linear memory one instance may grow to, in bytes.
    pub max_instance_memory: u64,
    /// Whether compiled code is listed in `/tmp/perf-PID.map` for `perf`.
    pub perf_map: bool,
}

/// Builds the engine: Cranelift, pooling allocator, epoch interruption.
/// The pool holds `max_instances` plus a few spare.
pub fn build_engine(limits: EngineLimits) -> wasmtime::Result<Engine> {
    let slots = limits.max_instances.saturating_add(SPARE_INSTANCE_SLOTS);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(slots.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(slots.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(slots)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(usize::try_from(limits.max_instance_memory).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut config = Config::new();
    config.epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if limits.perf_map {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config)
}

/// The one thread that advances every engine's epoch each [`EPOCH_TICK`];
/// stopped and joined on drop.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engines` (the handler's and the plugins').
    pub fn start(engines: &[&Engine]) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engines: Vec<_> = engines.iter().map(|engine| engine.weak()).collect();
        let thread = std::thread::Builder::new().name("epoch-ticker".into()).spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in engines.iter().filter_map(|engine| engine.upgrade()) {
                        engine.increment_epoch();
                    }
                }
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
