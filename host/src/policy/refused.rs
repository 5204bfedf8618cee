//! WASI's files, sockets and HTTP, linked so that they grant nothing.
//!
//! The Python and JavaScript toolchains (componentize-py, componentize-js)
//! build components whose runtimes import `wasi:filesystem`, and
//! `wasi:sockets` or `wasi:http`, whether or not the policy uses them. A
//! host that refused such imports would refuse every default build, so
//! they are linked here, per component, for exactly the interfaces it
//! imports and at the version it names:
//!
//! - `wasi:filesystem/preopens#get-directories` answers "no directories",
//!   so a runtime starts with no files and its own calls to open one fail
//!   as they would on a machine without them;
//! - a function whose error is WASI's `error-code` enum with an
//!   `access-denied` case (creating a socket, resolving a name) answers
//!   `access-denied`, an error the guest's language reports normally;
//! - every other function traps, saying which function the policy called.
//!   None of them can be reached without a resource that only the calls
//!   above could hand out, so this is what a policy that insists meets.
//!
//! Any other import the host does not provide still refuses the policy at
//! load time.

use super::sandbox::State;
use std::collections::HashSet;
use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, ResourceType, Type, Val};

/// The WASI packages whose interfaces are linked here, refusing.
const REFUSED: [&str; 3] = ["wasi:filesystem/", "wasi:sockets/", "wasi:http/"];

/// The resources of these interfaces: never created, so never used.
struct Refused;

/// Links, into `linker`, what `component` imports of [`REFUSED`].
pub(super) fn link(
    linker: &mut Linker<State>,
    component: &Component,
    engine: &Engine,
) -> wasmtime::Result<()> {
    // A resource is defined once, by the interface that declares it; the
    // interfaces that `use` it import it as an alias (an `eq` type) that
    // must not be defined again. Imports come in dependency order, so the
    // first instance that exports a name is the one that declares it.
    let mut declared = HashSet::new();
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let refused = REFUSED.iter().any(|p| name.starts_with(p));
        let mut exports = Vec::new();
        for (export, item) in instance.exports(engine) {
            let item = item.ty;
            let first =
                !matches!(item, ComponentItem::Resource(_)) || declared.insert(export.to_string());
            if refused && first {
                exports.push((export, item));
            }
        }
        if exports.is_empty() {
            continue;
        }
        let mut inst = linker.instance(name)?;
        for (export, item) in exports {
            match item {
                ComponentItem::Resource(_) => {
                    inst.resource(export, ResourceType::host::<Refused>(), |_, _| Ok(()))?;
                }
                ComponentItem::ComponentFunc(func) => {
                    let answer = answer(export, &func);
                    let called = format!("{name}#{export}");
                    inst.func_new(export, move |_, _, _, results| match &answer {
                        Some(v) if results.len() == 1 => {
                            results[0] = v.clone();
                            Ok(())
                        }
                        _ => Err(wasmtime::Error::msg(format!(
                            "the policy called `{called}`: policies have no files, sockets or HTTP"
                        ))),
                    })?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// What a refusing function returns, or `None` when it traps.
fn answer(name: &str, func: &ComponentFunc) -> Option<Val> {
    if name == "get-directories" {
        return Some(Val::List(Vec::new()));
    }
    let mut results = func.results();
    let (Some(Type::Result(result)), None) = (results.next(), results.next()) else {
        return None;
    };
    match result.err() {
        Some(Type::Enum(e)) if e.names().any(|n| n == "access-denied") => Some(Val::Result(Err(
            Some(Box::new(Val::Enum("access-denied".into()))),
        ))),
        _ => None,
    }
}
