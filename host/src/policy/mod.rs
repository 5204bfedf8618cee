//! The policy sandbox: wasmtime components behind the WIT world `policy`.
//!
//! Instances are kept and reused: a call on a kept instance costs about a
//! microsecond, a fresh instance about 22 µs (docs/dependencies.md). Each
//! call runs under an epoch deadline and each instance under a memory cap;
//! an instance that trapped is dropped, never called again.
//!
//! Calls are synchronous and made by the account task itself, on the
//! runtime's thread: a decision is CPU work of some 20 µs, like parsing the
//! stanza. Nothing in a call can wait: the host's own WASI ([`wasi`]) never
//! blocks, and the `store` interface is a quick database call. A guest that
//! loops is stopped at its deadline, measured from the call's start and
//! checked at the epoch ticks ([`sandbox`]).
//!
//! - [`engine`]: compile, validate, swap, decide;
//! - [`sandbox`]: the store, its limits, the deadline ticker;
//! - [`store`]: the per-account `store` interface and its backends;
//! - [`probation`]: rollback of a new policy that keeps trapping;
//! - [`refused`]: WASI's files, sockets and HTTP, linked granting nothing;
//! - [`stats`]: decisions and their CPU time;
//! - [`reload`]: file watch, SIGHUP and admin reloads;
//! - [`scenario`]: `pizzja policy test`.

pub mod bindings;
pub mod engine;
pub mod probation;
mod refused;
pub mod reload;
pub mod sandbox;
pub mod scenario;
pub mod stats;
pub mod store;
mod wasi;

pub use engine::{EngineOptions, Loaded, PolicyEngine};
pub use probation::{PROBATION_DECISIONS, ROLLBACK_TRAPS};
pub use stats::{PolicyStats, TIME_ONE_IN};
pub use store::{MemoryState, STATE_KEY_LIMIT, STATE_LIMIT_BYTES, StateBackend};

use crate::config::PolicySource;
use anyhow::{Context, Result};
use std::time::Duration;

/// The default policy, built by `build.rs`.
pub const BUILTIN_DEFAULT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default_policy.wasm"));

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

/// Reads the policy module the configuration names: its name and bytes.
pub fn module_bytes(source: &PolicySource) -> Result<(String, Vec<u8>)> {
    match source {
        PolicySource::BuiltinDefault => Ok(("builtin:default".into(), BUILTIN_DEFAULT.to_vec())),
        PolicySource::File(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("failed to read policy `{}`", path.display()))?;
            Ok((path.display().to_string(), bytes))
        }
    }
}
