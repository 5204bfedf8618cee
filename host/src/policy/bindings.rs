//! The only `bindgen!` of the host: the WIT world `policy`.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    additional_derives: [PartialEq, Eq],
});

pub use pizzja::policy::types::*;
