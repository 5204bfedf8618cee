//! The only `bindgen!` of the host: the WIT world `policy`.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    additional_derives: [PartialEq, Eq],
    // Calls into the guest are async (wasmtime runs them on a fiber), so the
    // account task that asks makes the call itself, on its own thread.
    exports: { default: async },
});

pub use pizzja::policy::types::*;
