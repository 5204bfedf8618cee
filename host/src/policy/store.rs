//! The WIT `store` interface: per-account key-value state for policies,
//! bounded, kept by the gateway in SQLite and in memory elsewhere.

use super::bindings;
use super::sandbox::State;
use std::sync::Mutex;

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

// A 0.1.0 policy's store is the same store.
impl bindings::v1::pizzja::policy::types::Host for State {}

impl bindings::v1::pizzja::policy::store::Host for State {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        bindings::pizzja::policy::store::Host::get(self, key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        bindings::pizzja::policy::store::Host::set(self, key, value)
    }

    fn delete(&mut self, key: String) {
        bindings::pizzja::policy::store::Host::delete(self, key)
    }
}
