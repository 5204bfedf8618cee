//! A component for the policy micro-benchmark (`host/benches/policy.rs`):
//! how much of a decision is the component call itself. It exports two
//! functions of its own small world, `pizzja:probe`: one that does nothing,
//! and one that takes a single buffer, as a policy interface passing its
//! inputs as one encoded value would. Built for wasm32-wasip2 with the
//! policies, on the default policy's allocator. Not a policy.

// wit-bindgen's generated exports are `unsafe extern` functions.
#![allow(unsafe_code)]

wit_bindgen::generate!({ path: "wit", world: "probe" });

struct Probe;

impl Guest for Probe {
    fn nothing() {}

    fn bytes(input: Vec<u8>) -> Vec<u8> {
        input[..input.len().min(64)].to_vec()
    }
}

export!(Probe);

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOC: pizzja_sdk::SmallAlloc = pizzja_sdk::SmallAlloc::new();
