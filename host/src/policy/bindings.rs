//! The `bindgen!` of the WIT world `policy` (the host's own WASI is in
//! [`super::wasi`]).
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    additional_derives: [PartialEq, Eq],
});

pub use pizzja::policy::types::*;
