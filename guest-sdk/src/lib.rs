//! Write Pizzja forwarding policies in Rust.
//!
//! A policy is a WebAssembly component that the Pizzja host calls once per
//! event of an account (a stanza from the local side, a stanza from a foreign
//! session, a session state change) with the account's facts; it answers
//! with a list of [`Action`]s. This crate hides the WIT bindings behind
//! plain Rust types and gives the helpers every policy needs: XEP-0106
//! escaping ([`escape`], [`unescape`]), JID splitting ([`JidParts`],
//! [`split_resource`]), action and stanza-error builders, and one macro,
//! [`export_policy!`], to export a type implementing [`Policy`].
//!
//! ```
//! use pizzja_sdk::{Action, Config, Event, Facts, Policy};
//!
//! struct Echo;
//!
//! impl Policy for Echo {
//!     fn new(_config: &Config) -> Result<Self, String> {
//!         Ok(Echo)
//!     }
//!     fn decide(&mut self, event: &Event, _facts: &Facts) -> Vec<Action> {
//!         vec![Action::debug("saw an event")]
//!     }
//! }
//!
//! pizzja_sdk::export_policy!(Echo);
//! ```
//!
//! Decisions take and return plain data, so a policy is tested with
//! `cargo test` on the build machine, no WebAssembly involved.
//!
//! Optional: `SmallAlloc` (feature `small-alloc`), a global allocator for small guests.
#![deny(missing_docs)]

extern crate self as pizzja_sdk;

#[cfg(feature = "small-alloc")]
mod alloc;
mod escape;
mod jid;

#[cfg(feature = "small-alloc")]
pub use alloc::SmallAlloc;

pub use escape::{escape, unescape};
pub use jid::{JidParts, split_resource};

#[cfg(feature = "bindings")]
mod api;
#[cfg(feature = "bindings")]
pub use api::*;

/// The generated WIT bindings. Not part of the SDK's stable surface: use the
/// re-exports at the crate root.
#[cfg(feature = "bindings")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "pizzja_sdk::wit",
        runtime_path: "pizzja_sdk::__private::wit_bindgen::rt",
    });
}

/// Support for [`export_policy!`]; not for direct use.
#[cfg(feature = "bindings")]
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::{Action, Config, Event, Facts, Policy};
    use std::any::Any;
    use std::cell::RefCell;

    thread_local! {
        // One policy value per instance; the host calls `init` before `decide`.
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    pub fn init<P: Policy>(config: Vec<(String, String)>) -> Result<(), String> {
        let policy = P::new(&Config::from_pairs(config))?;
        STATE.with(|s| *s.borrow_mut() = Some(Box::new(policy)));
        Ok(())
    }

    pub fn decide<P: Policy>(event: Event, facts: Facts) -> Vec<Action> {
        STATE.with(|s| {
            let mut slot = s.borrow_mut();
            match slot.as_mut().and_then(|b| b.downcast_mut::<P>()) {
                Some(policy) => policy.decide(&event, &facts),
                None => vec![Action::log(
                    crate::LogLevel::Error,
                    "decide called before init".to_string(),
                )],
            }
        })
    }
}
