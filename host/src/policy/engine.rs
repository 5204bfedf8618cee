//! The engine: compiles and validates policy components, keeps the one
//! deciding now (and the one before, while the new one is on probation),
//! and decides on kept instances.

use super::bindings::{Action, Event, Facts};
use super::probation::Probation;
use super::sandbox::{
    Instance, Running, State, arm_deadline, instantiate, start_ticker, with_output,
};
use super::stats::{PolicyStats, TIME_ONE_IN, cpu_timed, timed};
use super::store::MemoryState;
use super::{DecideError, Limits, PolicyEvent, StateBackend, bindings, wasi};
use anyhow::Result;
use sha1::{Digest, Sha1};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config as WasmConfig, Engine};

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

impl Loaded {
    /// The version of the WIT world the policy was built against (`0.2.0`,
    /// or `0.1.0` adapted by the host).
    pub fn version(&self) -> &'static str {
        self.pre.version()
    }
}

/// A compiled, validated policy and its idle instances.
pub struct Loaded {
    /// Shown in logs: `builtin:default` or the file name.
    pub name: String,
    /// SHA-1 of the module bytes, hex.
    pub hash: String,
    pub(super) pre: bindings::AnyPolicyPre<State>,
    pub(super) config: Vec<(String, String)>,
    pub(super) idle: Mutex<Vec<Instance>>,
    pub(super) state: Arc<dyn StateBackend>,
}

/// The engine: compiles modules, keeps the current policy, decides.
/// Clones share one engine.
#[derive(Clone)]
pub struct PolicyEngine {
    core: Arc<Core>,
}

pub(super) struct Core {
    pub(super) engine: Engine,
    pub(super) linker: Linker<State>,
    pub(super) limits: Limits,
    pub(super) state: Arc<dyn StateBackend>,
    pub(super) current: RwLock<Arc<Loaded>>,
    /// The policy before the last swap, for a rollback.
    pub(super) previous: Mutex<Option<Arc<Loaded>>>,
    pub(super) probation: Mutex<Probation>,
    /// Whether a policy is on probation (`previous` is set): read at every
    /// decision, so that the common case takes no lock.
    pub(super) probation_open: AtomicBool,
    pub(super) events: tokio::sync::broadcast::Sender<PolicyEvent>,
    pub(super) decisions: AtomicU64,
    /// CPU time inside decisions (thread clock, so a preempted thread does
    /// not count time it did not run), estimated from the timed ones.
    pub(super) decide_cpu_ns: AtomicU64,
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
        bindings::v1::Policy::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("failed to link the 0.1.0 policy store: {e:#}"))?;
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
        // What the component imports of WASI's files, sockets and HTTP is
        // linked for it alone, refusing.
        let mut linker = linker.clone();
        wt(
            super::refused::link(&mut linker, &component, engine),
            || format!("policy `{name}` imports WASI in a form the host cannot refuse"),
        )?;
        let pre = wt(linker.instantiate_pre(&component), || {
            format!("policy `{name}` imports something the host does not provide")
        })?;
        // The current world first; a policy built against 0.1.0 is adapted.
        let pre = match bindings::PolicyPre::new(pre.clone()) {
            Ok(now) => bindings::AnyPolicyPre::Now(now),
            Err(e) => match bindings::v1::PolicyPre::new(pre) {
                Ok(old) => bindings::AnyPolicyPre::V1(old),
                Err(_) => {
                    return Err(anyhow::anyhow!(
                        "policy `{name}` does not export the world `pizzja:policy/policy@0.2.0` (init, decide), nor 0.1.0: {e:#}"
                    ));
                }
            },
        };
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
        tracing::info!(policy = %loaded.name, hash = %loaded.hash, wit = loaded.version(), "policy swapped in");
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
    pub(super) fn current(&self) -> Arc<Loaded> {
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
