//! The sandbox every policy call runs in: a store per instance with its
//! memory cap, an epoch deadline per call kept by one ticker thread, and
//! what the guest wrote kept for the call's error.

use super::{DecideError, Limits, Loaded, StateBackend, bindings};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

/// How often the epoch advances while a call is running: a call's deadline
/// is checked at every tick.
const TICK: Duration = Duration::from_millis(10);
/// How often, at most, the ticker looks for running calls when it saw
/// none (half the deadline if that is shorter). Waking 100 times a second
/// cost the gateway ~9 ms of CPU a second on the benchmark VM
/// (BENCHMARKS.md), and nearly all calls end within one tick unseen. The
/// first check of a call may come this late; its deadline is still kept to
/// within a tick, since it is measured from the call's start.
const QUIET_TICK: Duration = Duration::from_millis(50);

/// Calls (decide, init) running now, in every engine: the ticker ticks
/// fast only while there are some.
static CALLS_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Counts a call as running for as long as it lives.
pub(super) struct Running;

impl Running {
    pub(super) fn start() -> Running {
        CALLS_RUNNING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CALLS_RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) struct State {
    /// The guest's WASI resources (streams, pollables).
    pub(super) table: ResourceTable,
    /// What the guest wrote to stdout and stderr during the current call.
    pub(super) output: String,
    pub(super) limits: StoreLimits,
    /// The account being decided, empty between decisions; its store is the
    /// only one reachable.
    pub(super) account: String,
    pub(super) backend: Arc<dyn StateBackend>,
    /// When the running call must have ended.
    pub(super) deadline: Instant,
}

impl State {
    /// The account being decided; none during `init`.
    pub(super) fn account(&self) -> Option<&str> {
        Some(self.account.as_str()).filter(|a| !a.is_empty())
    }
}

pub(super) struct Instance {
    pub(super) store: Store<State>,
    pub(super) policy: bindings::AnyPolicy,
}

/// A trap's message, with what the guest wrote to stdout and stderr during
/// the call (a Rust panic's message is there), escaped so that it cannot
/// make lines of the log.
pub(super) fn with_output(e: wasmtime::Error, output: &mut String) -> String {
    let output = std::mem::take(output);
    let output = output.trim();
    if output.is_empty() {
        format!("{e:#}")
    } else {
        format!("{e:#}; it wrote: {}", output.escape_debug())
    }
}

/// Starts the next call's deadline (see [`on_epoch_tick`]).
pub(super) fn arm_deadline(store: &mut Store<State>, limits: Limits) {
    store.data_mut().deadline = Instant::now() + limits.deadline;
    store.set_epoch_deadline(1);
}

/// At every epoch tick during a call: past its deadline, the guest traps.
fn on_epoch_tick(
    ctx: wasmtime::StoreContextMut<'_, State>,
) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    if Instant::now() >= ctx.data().deadline {
        return Err(wasmtime::Error::msg(
            "the policy ran past its deadline (wasm trap: interrupt)",
        ));
    }
    Ok(wasmtime::UpdateDeadline::Continue(1))
}

pub(super) fn instantiate(
    engine: &Engine,
    loaded: &Loaded,
    limits: Limits,
) -> Result<Instance, DecideError> {
    let fail = |reason: String| DecideError::Instantiate {
        policy: loaded.name.clone(),
        reason,
    };
    let state = State {
        table: ResourceTable::new(),
        output: String::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(limits.memory)
            .trap_on_grow_failure(true)
            .build(),
        account: String::new(),
        backend: loaded.state.clone(),
        deadline: Instant::now(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(on_epoch_tick);
    arm_deadline(&mut store, limits);
    let _running = Running::start();
    let policy = loaded
        .pre
        .instantiate(&mut store)
        .map_err(|e| fail(with_output(e, &mut store.data_mut().output)))?;
    arm_deadline(&mut store, limits);
    let init = policy.call_init(&mut store, &loaded.config);
    let output = &mut store.data_mut().output;
    match init {
        Ok(Ok(())) => {
            output.clear();
            Ok(Instance { store, policy })
        }
        Ok(Err(msg)) => Err(fail(format!("its init refused the configuration: {msg}"))),
        Err(e) => Err(fail(format!(
            "its init trapped: {}",
            with_output(e, output)
        ))),
    }
}

/// Advances the engine's epoch for as long as the engine lives: every tick
/// while calls run, and otherwise only looks again a little later.
pub(super) fn start_ticker(engine: &Engine, deadline: Duration) {
    let quiet = (deadline / 2).clamp(TICK, QUIET_TICK);
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("pizzja-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                let busy = CALLS_RUNNING.load(Ordering::Relaxed) > 0;
                if busy {
                    engine.increment_epoch();
                }
                drop(engine);
                std::thread::sleep(if busy { TICK } else { quiet });
            }
        })
        .expect("spawning the epoch thread");
}
