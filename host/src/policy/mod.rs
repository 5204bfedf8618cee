//! The policy sandbox: wasmtime components behind the WIT world `policy`.
//!
//! Instances are kept and reused (a call on a kept instance costs about a
//! microsecond, a fresh instance about 22 µs: DEPENDENCY-FACTS.md). Each
//! call runs under an epoch deadline and each instance under a memory cap;
//! an instance that trapped is dropped, never called again.
//!
//! Calls are synchronous and made by the account task itself, on the
//! runtime's thread: a decision is CPU work of some 20 µs, like parsing the
//! stanza. Nothing in a call can wait: the host's own WASI ([`wasi`]) never
//! blocks, and the `store` interface is a quick database call. A guest that
//! loops is stopped at its deadline (measured from the call's start, seen
//! at the epoch ticks). History (BENCHMARKS.md): calls first went to policy
//! threads, because wasmtime-wasi's sync bindings `block_on` (a guest's
//! panic message on stderr panicked a tokio worker); the hop there and back
//! cost 49 µs a decision. Async calls on a fiber came next; the host's own
//! WASI made them sync, which saved the fiber switch.

pub mod bindings;
pub mod reload;
pub mod scenario;
mod wasi;

use anyhow::Result;
use bindings::{Action, Event, Facts};
use sha1::{Digest, Sha1};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config as WasmConfig, Engine, Store, StoreLimits, StoreLimitsBuilder};

/// The default policy, built by `build.rs`.
pub const BUILTIN_DEFAULT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default_policy.wasm"));

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
struct Running;

impl Running {
    fn start() -> Running {
        CALLS_RUNNING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CALLS_RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a decision failed. The caller falls back; the gateway carries on.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The policy trapped, ran past its deadline or its memory cap.
    #[error("policy `{policy}` trapped: {reason}")]
    Trap {
        /// The policy's name.
        policy: String,
        /// What wasmtime said.
        reason: String,
    },
    /// A fresh instance could not be made.
    #[error("policy `{policy}` could not be instantiated: {reason}")]
    Instantiate {
        /// The policy's name.
        policy: String,
        /// Why.
        reason: String,
    },
}

/// Limits every instance runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU deadline of one call.
    pub deadline: Duration,
    /// Linear memory cap of one instance, bytes.
    pub memory: usize,
}

struct State {
    /// The guest's WASI resources (streams, pollables).
    table: ResourceTable,
    /// What the guest wrote to stdout and stderr during the current call.
    output: String,
    limits: StoreLimits,
    /// The account being decided, empty between decisions; its store is the
    /// only one reachable.
    account: String,
    backend: Arc<dyn StateBackend>,
    /// When the running call must have ended.
    deadline: Instant,
}

/// Size limits of one account's policy store (the WIT `store` interface).
pub const STATE_LIMIT_BYTES: usize = 64 * 1024;
/// The longest key a policy may use.
pub const STATE_KEY_LIMIT: usize = 256;

/// Where policy state lives: per account, key to bytes.
pub trait StateBackend: Send + Sync {
    /// The value under `key` for `account`.
    fn get(&self, account: &str, key: &str) -> Option<Vec<u8>>;
    /// Stores a value; the caller has checked the limits.
    fn set(&self, account: &str, key: &str, value: &[u8]) -> Result<(), String>;
    /// Removes a key.
    fn delete(&self, account: &str, key: &str);
    /// Bytes of keys and values `account` holds now.
    fn usage(&self, account: &str) -> usize;
}

/// Policy state in memory (scenarios, tests); the gateway uses SQLite.
#[derive(Default)]
pub struct MemoryState(Mutex<std::collections::HashMap<(String, String), Vec<u8>>>);

impl StateBackend for MemoryState {
    fn get(&self, account: &str, key: &str) -> Option<Vec<u8>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(account.to_string(), key.to_string())).cloned()
    }
    fn set(&self, account: &str, key: &str, value: &[u8]) -> Result<(), String> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((account.to_string(), key.to_string()), value.to_vec());
        Ok(())
    }
    fn delete(&self, account: &str, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(account.to_string(), key.to_string()));
    }
    fn usage(&self, account: &str) -> usize {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|((a, _), _)| a == account)
            .map(|((_, k), v)| k.len() + v.len())
            .sum()
    }
}

impl State {
    /// The account being decided; none during `init`.
    fn account(&self) -> Option<&str> {
        Some(self.account.as_str()).filter(|a| !a.is_empty())
    }
}

// The shared types interface has no functions to provide.
impl bindings::pizzja::policy::types::Host for State {}

impl bindings::pizzja::policy::store::Host for State {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        let account = self.account()?;
        self.backend.get(account, &key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let Some(account) = self.account() else {
            return Err("the store is per account: use it in decide, not in init".into());
        };
        if key.len() > STATE_KEY_LIMIT {
            return Err(format!("keys are at most {STATE_KEY_LIMIT} bytes"));
        }
        let old = self
            .backend
            .get(account, &key)
            .map_or(0, |v| key.len() + v.len());
        let after = self.backend.usage(account) - old + key.len() + value.len();
        if after > STATE_LIMIT_BYTES {
            return Err(format!(
                "the account's store would hold {after} bytes; the limit is {STATE_LIMIT_BYTES}"
            ));
        }
        self.backend.set(account, &key, &value)
    }

    fn delete(&mut self, key: String) {
        if let Some(account) = self.account() {
            self.backend.delete(account, &key);
        }
    }
}

/// How an engine is set up besides its first module.
#[derive(Clone)]
pub struct EngineOptions {
    /// Per-call and per-instance limits.
    pub limits: Limits,
    /// The compiled-module cache, if any.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Where policy state is kept.
    pub state: Arc<dyn StateBackend>,
}

impl EngineOptions {
    /// These limits, no cache, state in memory.
    pub fn with_limits(limits: Limits) -> Self {
        EngineOptions {
            limits,
            cache_dir: None,
            state: Arc::new(MemoryState::default()),
        }
    }
}

struct Instance {
    store: Store<State>,
    policy: bindings::Policy,
}

/// A compiled, validated policy and its idle instances.
pub struct Loaded {
    /// Shown in logs: `builtin:default` or the file name.
    pub name: String,
    /// SHA-1 of the module bytes, hex.
    pub hash: String,
    pre: bindings::PolicyPre<State>,
    config: Vec<(String, String)>,
    idle: Mutex<Vec<Instance>>,
    state: Arc<dyn StateBackend>,
}

/// The engine: compiles modules, keeps the current policy, decides.
pub struct PolicyEngine {
    core: Arc<Core>,
}

struct Core {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
    state: Arc<dyn StateBackend>,
    current: RwLock<Arc<Loaded>>,
    /// The policy before the last swap, for a rollback.
    previous: Mutex<Option<Arc<Loaded>>>,
    probation: Mutex<Probation>,
    /// Whether a policy is on probation (`previous` is set): read at every
    /// decision, so that the common case takes no lock.
    probation_open: AtomicBool,
    events: tokio::sync::broadcast::Sender<PolicyEvent>,
    decisions: AtomicU64,
    /// CPU time inside decisions (thread clock, so a preempted thread does
    /// not count time it did not run), estimated from the timed ones.
    decide_cpu_ns: AtomicU64,
}

/// What the policy has cost so far, from the host's own timing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Decisions made (trapped ones included).
    pub decisions: u64,
    /// CPU time spent in them: instance checkout, moving event and facts
    /// into the guest, the guest's code, and the actions back out.
    /// Estimated, and only ever growing: one decision in [`TIME_ONE_IN`] is
    /// timed and counts for that many.
    pub cpu_ns: u64,
}

/// One decision in this many is timed. The thread CPU clock is a system
/// call: reading it around every decision made each one 1-3 µs dearer in the
/// micro-benchmark, a fifth of a warm decision.
pub const TIME_ONE_IN: u64 = 8;

/// Whether decision number `n` is timed: one in [`TIME_ONE_IN`], chosen by
/// the top bits of a Weyl sequence, so that the choice cannot lock onto a
/// period in the traffic (flows taking turns, say) as every n-th would.
fn timed(n: u64) -> bool {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 == 0
}

/// How a freshly swapped-in policy is watched: if it traps
/// [`ROLLBACK_TRAPS`] times within its first [`PROBATION_DECISIONS`]
/// decisions, the previous policy comes back.
#[derive(Default)]
struct Probation {
    decisions: u32,
    traps: u32,
}

/// Traps that send a new policy back (see [`Probation`]).
pub const ROLLBACK_TRAPS: u32 = 3;
/// Decisions a new policy is on probation for.
pub const PROBATION_DECISIONS: u32 = 100;

/// What happened to the policy, for logs, admins and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    /// A module was compiled, initialised and swapped in.
    Loaded {
        /// Its name.
        name: String,
        /// SHA-1 of its bytes.
        hash: String,
    },
    /// A module was refused; the running policy stays.
    Refused {
        /// Its name.
        name: String,
        /// Why, in words that say what is wrong.
        error: String,
    },
    /// The file did not change; nothing was done.
    Unchanged {
        /// Its hash.
        hash: String,
    },
    /// A new policy trapped too often and the previous one is back.
    RolledBack {
        /// The policy sent back.
        from: String,
        /// The policy deciding again.
        to: String,
    },
}

impl PolicyEngine {
    /// Makes an engine and loads the first policy; fails with a message that
    /// says what is wrong with the module.
    pub fn new(
        name: &str,
        bytes: &[u8],
        config: Vec<(String, String)>,
        options: EngineOptions,
    ) -> Result<PolicyEngine> {
        let EngineOptions {
            limits,
            cache_dir,
            state,
        } = options;
        let mut wc = WasmConfig::new();
        wc.epoch_interruption(true);
        if perf_map_wanted() {
            // perf(1) reads /tmp/perf-<pid>.map to name JIT code: the
            // policy's functions (from its name section) and wasmtime's
            // trampolines. Written once per compiled module.
            wc.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = cache_dir.as_deref() {
            // wasmtime's own cache: compiled code keyed by a hash of the module
            // and the engine settings, so a restart or a reload of an unchanged
            // module does not compile again.
            let mut cc = wasmtime::CacheConfig::new();
            cc.with_directory(dir);
            let cache = wt(wasmtime::Cache::new(cc), || {
                format!("failed to open the policy cache `{}`", dir.display())
            })?;
            wc.cache(Some(cache));
        }
        let engine = wt(Engine::new(&wc), || {
            "failed to create the wasm engine".into()
        })?;
        let mut linker = Linker::new(&engine);
        // std guests import WASI even when unused: the host's own, granting
        // nothing.
        wt(wasi::add_to_linker(&mut linker), || {
            "failed to link WASI".into()
        })?;
        bindings::Policy::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("failed to link the policy store: {e:#}"))?;
        start_ticker(&engine, limits.deadline);
        let first = Self::compile_with(&engine, &linker, limits, &state, name, bytes, config)?;
        let (events, _) = tokio::sync::broadcast::channel(64);
        let core = Arc::new(Core {
            engine,
            linker,
            limits,
            current: RwLock::new(Arc::new(first)),
            state,
            previous: Mutex::new(None),
            probation: Mutex::new(Probation::default()),
            probation_open: AtomicBool::new(false),
            events,
            decisions: AtomicU64::new(0),
            decide_cpu_ns: AtomicU64::new(0),
        });
        Ok(PolicyEngine { core })
    }

    fn compile_with(
        engine: &Engine,
        linker: &Linker<State>,
        limits: Limits,
        state: &Arc<dyn StateBackend>,
        name: &str,
        bytes: &[u8],
        config: Vec<(String, String)>,
    ) -> Result<Loaded> {
        let component = wt(Component::new(engine, bytes), || {
            format!("policy `{name}` is not a WebAssembly component")
        })?;
        let pre = wt(linker.instantiate_pre(&component), || {
            format!("policy `{name}` imports something the host does not provide")
        })?;
        let pre = wt(bindings::PolicyPre::new(pre), || {
            format!(
                "policy `{name}` does not export the world `pizzja:policy/policy@0.1.0` (init, decide)"
            )
        })?;
        let hash = hex::encode(Sha1::digest(bytes));
        let loaded = Loaded {
            name: name.to_string(),
            hash,
            pre,
            config,
            idle: Mutex::new(Vec::new()),
            state: state.clone(),
        };
        // Prove it instantiates and accepts its configuration before use.
        let first = instantiate(engine, &loaded, limits).map_err(|e| anyhow::anyhow!("{e}"))?;
        loaded
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(first);
        Ok(loaded)
    }

    /// The policy deciding now.
    pub fn current(&self) -> Arc<Loaded> {
        self.core.current()
    }

    /// Compiles and validates a module, then makes it current; decisions
    /// already running finish on the old one. On error the running policy
    /// stays and a [`PolicyEvent::Refused`] says why. Blocking: compiling
    /// takes milliseconds, so call it off the async threads.
    pub fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        config: Vec<(String, String)>,
    ) -> Result<Arc<Loaded>> {
        let core = &self.core;
        let compiled = Self::compile_with(
            &core.engine,
            &core.linker,
            core.limits,
            &core.state,
            name,
            bytes,
            config,
        );
        let loaded = match compiled {
            Ok(l) => Arc::new(l),
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(policy = %name, %error, "policy refused; the running one stays");
                let _ = core.events.send(PolicyEvent::Refused {
                    name: name.to_string(),
                    error,
                });
                return Err(e);
            }
        };
        let old = std::mem::replace(
            &mut *core.current.write().unwrap_or_else(|p| p.into_inner()),
            loaded.clone(),
        );
        let mut previous = core.previous.lock().unwrap_or_else(|p| p.into_inner());
        *previous = Some(old);
        *core.probation.lock().unwrap_or_else(|p| p.into_inner()) = Probation::default();
        core.probation_open.store(true, Ordering::Release);
        drop(previous);
        tracing::info!(policy = %loaded.name, hash = %loaded.hash, "policy swapped in");
        let _ = core.events.send(PolicyEvent::Loaded {
            name: loaded.name.clone(),
            hash: loaded.hash.clone(),
        });
        Ok(loaded)
    }

    /// Reports that a reload found the module unchanged.
    pub fn report_unchanged(&self) {
        let hash = self.current().hash.clone();
        let _ = self.core.events.send(PolicyEvent::Unchanged { hash });
    }

    /// Decisions and their CPU time since start.
    pub fn stats(&self) -> PolicyStats {
        PolicyStats {
            decisions: self.core.decisions.load(Ordering::Relaxed),
            cpu_ns: self.core.decide_cpu_ns.load(Ordering::Relaxed),
        }
    }

    /// What happens to the policy from now on.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<PolicyEvent> {
        self.core.events.subscribe()
    }

    /// Decides one event, on the calling thread.
    pub fn decide(&self, event: &Event, facts: &Facts) -> Result<Vec<Action>, DecideError> {
        self.core.decide(event, facts)
    }
}

impl Core {
    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes an idle instance of the current policy (or makes one), calls it
    /// under the deadline, and keeps it unless it trapped.
    fn decide(&self, event: &Event, facts: &Facts) -> Result<Vec<Action>, DecideError> {
        let n = self.decisions.fetch_add(1, Ordering::Relaxed);
        if !timed(n) {
            return self.decide_untimed(event, facts);
        }
        let (result, spent) = cpu_timed(|| self.decide_untimed(event, facts));
        let estimate = spent.as_nanos() as u64 * TIME_ONE_IN;
        self.decide_cpu_ns.fetch_add(estimate, Ordering::Relaxed);
        result
    }

    fn decide_untimed(&self, event: &Event, facts: &Facts) -> Result<Vec<Action>, DecideError> {
        let loaded = self.current();
        let idle = loaded.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut inst = match idle {
            Some(inst) => inst,
            None => instantiate(&self.engine, &loaded, self.limits)?,
        };
        let _running = Running::start();
        arm_deadline(&mut inst.store, self.limits);
        // Instances serve every account: scope the store to this one (into
        // the instance's own buffer: no allocation per decision).
        inst.store.data_mut().account.push_str(&facts.local_jid);
        let result = inst.policy.call_decide(&mut inst.store, event, facts);
        let state = inst.store.data_mut();
        state.account.clear();
        let result = result.map_err(|e| with_output(e, &mut state.output));
        state.output.clear();
        self.on_probation(&loaded, result.is_err());
        match result {
            Ok(actions) => {
                loaded
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(inst);
                Ok(actions)
            }
            // The instance is poisoned after a trap: drop it.
            Err(reason) => Err(DecideError::Trap {
                policy: loaded.name.clone(),
                reason,
            }),
        }
    }

    /// Counts a decision of a policy on probation; rolls back to the
    /// previous policy when the new one traps too often.
    fn on_probation(&self, loaded: &Arc<Loaded>, trapped: bool) {
        // A decision that races a swap may go uncounted: probation counts
        // the new policy's decisions, and this one was not among them.
        if !self.probation_open.load(Ordering::Acquire) {
            return;
        }
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        if previous.is_none() || !Arc::ptr_eq(loaded, &self.current()) {
            return;
        }
        let mut p = self.probation.lock().unwrap_or_else(|p| p.into_inner());
        p.decisions += 1;
        p.traps += u32::from(trapped);
        if p.traps >= ROLLBACK_TRAPS
            && let Some(back) = previous.take()
        {
            self.probation_open.store(false, Ordering::Release);
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = back.clone();
            tracing::error!(policy = %loaded.name, back_to = %back.name, traps = p.traps, "new policy keeps trapping; rolled back");
            let _ = self.events.send(PolicyEvent::RolledBack {
                from: loaded.name.clone(),
                to: back.name.clone(),
            });
        } else if p.decisions >= PROBATION_DECISIONS {
            // Passed: it is the policy now, with nothing to go back to.
            previous.take();
            self.probation_open.store(false, Ordering::Release);
        }
    }
}

/// Whether `PIZZJA_PERF_MAP=1` asks for a perf map of the policy's code
/// (docs/writing-policies.md, "Profiling").
fn perf_map_wanted() -> bool {
    std::env::var_os("PIZZJA_PERF_MAP").is_some_and(|v| v == "1")
}

/// wasmtime has its own error type; give it anyhow's context.
fn wt<T>(r: wasmtime::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{}: {e:#}", what()))
}

/// Runs `f` and says how long it took: its thread CPU time, or the wall
/// time read inside that window when less.
///
/// The thread CPU clock is a system call, and the part of it that runs after
/// it reads the clock (and before, in the second read) would count as the
/// policy's: about 0.9 µs with cold caches, measured, against decisions of
/// 15-25 µs. So the wall clock (vDSO, ~25 ns) is read inside that window too,
/// and the smaller of the two counts: the wall time when the thread ran
/// throughout, the CPU time when it was preempted in between.
fn cpu_timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let cpu = || {
        cpu_time::ThreadTime::try_now()
            .ok()
            .map(|t| t.as_duration())
    };
    let cpu_before = cpu();
    let wall_before = Instant::now();
    let out = f();
    let wall = wall_before.elapsed();
    let cpu = cpu_before.zip(cpu()).and_then(|(a, z)| z.checked_sub(a));
    (out, cpu.map_or(wall, |c| c.min(wall)))
}

/// A trap's message, with what the guest wrote to stdout and stderr during
/// the call (a Rust panic's message is there), escaped so that it cannot
/// make lines of the log.
fn with_output(e: wasmtime::Error, output: &mut String) -> String {
    let output = std::mem::take(output);
    let output = output.trim();
    if output.is_empty() {
        format!("{e:#}")
    } else {
        format!("{e:#}; it wrote: {}", output.escape_debug())
    }
}

/// Starts the next call's deadline (see [`on_epoch_tick`]).
fn arm_deadline(store: &mut Store<State>, limits: Limits) {
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

fn instantiate(engine: &Engine, loaded: &Loaded, limits: Limits) -> Result<Instance, DecideError> {
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
fn start_ticker(engine: &Engine, deadline: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decision_in_eight_is_timed_whatever_the_traffic_s_period() {
        let n = 80_000;
        let all = (0..n).filter(|&i| timed(i)).count() as f64;
        let expected = n as f64 / TIME_ONE_IN as f64;
        assert!((all - expected).abs() < expected * 0.02, "{all} of {n}");
        // Flows taking turns (periods 2 to 16): each flow still gets its
        // share, where every eighth decision would time one flow only.
        for period in 2..=16u64 {
            for flow in 0..period {
                let of_flow = (0..n).filter(|i| i % period == flow);
                let count = of_flow.clone().count() as f64;
                let timed_count = of_flow.filter(|&i| timed(i)).count() as f64;
                let share = timed_count / count;
                assert!(
                    (share - 1.0 / TIME_ONE_IN as f64).abs() < 0.02,
                    "period {period}, flow {flow}: {share}"
                );
            }
        }
    }
}
