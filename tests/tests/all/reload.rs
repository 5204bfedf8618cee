//! Hot reload under traffic: the policy file is replaced several times,
//! once by a broken module, while a foreign contact sends hundreds of
//! messages; every message arrives, in order, once.

use crate::{World, policy_cache};
use pizzja_host::config::PolicySource;
use pizzja_host::policy::PolicyEvent;
use pizzja_host::testing::{guest_build, policy_path};
use pizzja_tests::*;
use std::path::Path;

/// Replaces `target` the way deploy tools do: write elsewhere, rename over.
fn replace(target: &Path, bytes: &[u8]) {
    let tmp = target.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).expect("write the new module");
    std::fs::rename(&tmp, target).expect("rename it over the old one");
}

/// A gateway whose policy is the file `module`, watched, and the receiver
/// of what happens to its policy.
async fn watching(module: &Path) -> (World, tokio::sync::broadcast::Receiver<PolicyEvent>) {
    let watched = module.to_path_buf();
    let mut world = World::with(move |c| {
        c.policy = PolicySource::File(watched);
        c.policy_watch = true;
        c.cache_dir = Some(policy_cache());
    })
    .await;
    let events = world
        .gateway
        .as_mut()
        .expect("running")
        .policy_events
        .resubscribe();
    (world, events)
}

/// The phone receives bob's messages `n 0` to `n {n-1}` each once and in
/// order: nothing lost or reordered, and a marker sent after them is the
/// next to arrive, so nothing came twice.
async fn each_arrives_once_in_order(world: &mut World, bob: &Client, n: usize) {
    for i in 0..n {
        let m = world
            .phone
            .expect("the next message", |e| {
                body(e).is_some_and(|b| b.starts_with("n "))
            })
            .await;
        assert_eq!(body(&m), Some(format!("n {i}")), "lost or out of order");
    }
    bob.send(&format!(
        "<message type='chat' to='{ME}/Work' id='end'><body>end</body></message>"
    ))
    .await;
    world
        .phone
        .expect("the marker", |e| body(e).as_deref() == Some("end"))
        .await;
    let dupes: Vec<_> = world
        .phone
        .inbox()
        .filter_map(body)
        .filter(|b| b.starts_with("n "))
        .collect();
    assert!(dupes.is_empty(), "delivered twice: {dupes:?}");
}

#[tokio::test]
async fn replacing_the_policy_under_traffic_loses_duplicates_and_reorders_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("policy.wasm");
    let default =
        std::fs::read(policy_path("pizzja_policy_default")).expect("default policy built");
    let other =
        std::fs::read(policy_path("pizzja_policy_test_hostile")).expect("hostile policy built");
    std::fs::write(&module, &default).expect("install the first module");
    let (mut world, mut events) = watching(&module).await;
    let bob = world.bob().await;

    const N: usize = 300;
    // Swaps while messages flow: another policy, a broken file, back again.
    let swaps: [(usize, &[u8], bool); 4] = [
        (50, &other, true),
        (120, b"\0asm but not really", false),
        (190, &default, true),
        (250, &other, true),
    ];
    for i in 0..N {
        bob.send(&format!(
            "<message type='chat' to='{ME}/Work' id='n{i}'><body>n {i}</body></message>"
        ))
        .await;
        if let Some((_, bytes, good)) = swaps.iter().find(|(at, _, _)| *at == i) {
            replace(&module, bytes);
            let outcome = tokio::time::timeout(WAIT, events.recv())
                .await
                .expect("a reload outcome")
                .expect("event");
            match (good, &outcome) {
                (true, PolicyEvent::Loaded { .. }) => {}
                (false, PolicyEvent::Refused { error, .. }) => {
                    assert!(error.contains("not a WebAssembly component"), "{error}");
                }
                _ => panic!("swap at {i}: unexpected {outcome:?}"),
            }
        }
    }
    each_arrives_once_in_order(&mut world, &bob, N).await;
}

/// The default in three languages, one replacing the other while a
/// contact writes: Rust, then JavaScript, then Python. Every message
/// arrives once, in order, whichever policy decided it.
#[tokio::test]
async fn a_python_policy_replaces_a_js_one_over_the_rust_default_under_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("policy.wasm");
    std::fs::write(&module, pizzja_host::policy::BUILTIN_DEFAULT).expect("install the default");
    let js = std::fs::read(guest_build("default-js")).expect("readable");
    let python = std::fs::read(guest_build("default-python")).expect("readable");
    let (mut world, mut events) = watching(&module).await;
    let bob = world.bob().await;
    const N: usize = 240;
    let swaps: [(usize, &[u8]); 2] = [(60, &js), (160, &python)];
    let mut loaded = Vec::new();
    for i in 0..N {
        bob.send(&format!(
            "<message type='chat' to='{ME}/Work' id='n{i}'><body>n {i}</body></message>"
        ))
        .await;
        if let Some((_, bytes)) = swaps.iter().find(|(at, _)| *at == i) {
            replace(&module, bytes);
            // Compiling a 12–18 MB component takes seconds; the messages
            // already sent are decided by the policy before meanwhile.
            loop {
                let event = tokio::time::timeout(4 * WAIT, events.recv())
                    .await
                    .expect("the reload within the wait")
                    .expect("policy events");
                match event {
                    PolicyEvent::Loaded { hash, .. } => {
                        loaded.push(hash);
                        break;
                    }
                    PolicyEvent::Refused { error, .. } => panic!("swap at {i} refused: {error}"),
                    _ => {}
                }
            }
        }
    }
    each_arrives_once_in_order(&mut world, &bob, N).await;
    // Each swap loaded the module it wrote, and no rollback followed.
    let sha1 = |b: &[u8]| hex::encode(<sha1::Sha1 as sha1::Digest>::digest(b));
    assert_eq!(loaded, [sha1(&js), sha1(&python)]);
    assert!(
        events.try_recv().is_err(),
        "no event after the last load (a rollback)"
    );
}

/// A policy built against `pizzja:policy@0.1.0` runs the gateway as it did
/// (the host adapts it), and the current one replaces it without a restart.
#[tokio::test]
async fn a_policy_built_against_wit_0_1_0_routes_both_ways_and_is_replaced_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("policy.wasm");
    let old = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../host/tests/fixtures/default-policy-v0.1.0.wasm");
    std::fs::copy(&old, &module).expect("install the 0.1.0 module");
    let (mut world, mut events) = watching(&module).await;
    world.session_up("me/Work online").await;
    let mut bob = world.bob().await;
    for n in 0..2 {
        let out = format!("out-{n}");
        world
            .phone
            .send(&format!(
                "<message type='chat' to='{}' id='{out}'><body>{out}</body></message>",
                gw_jid("bob@foreign.test/pc")
            ))
            .await;
        bob.expect("the phone's message", |e| {
            body(e).as_deref() == Some(out.as_str())
        })
        .await;
        let back = format!("back-{n}");
        bob.send(&format!(
            "<message type='chat' to='{ME}/Work' id='{back}'><body>{back}</body></message>"
        ))
        .await;
        world
            .phone
            .expect("bob's answer", |e| {
                body(e).as_deref() == Some(back.as_str())
            })
            .await;
        if n == 0 {
            // Now the current default, built against 0.2.0.
            let now = std::fs::read(policy_path("pizzja_policy_default")).expect("built");
            replace(&module, &now);
            loop {
                let event = tokio::time::timeout(WAIT, events.recv())
                    .await
                    .expect("the reload within the wait")
                    .expect("policy events");
                match event {
                    PolicyEvent::Loaded { .. } => break,
                    PolicyEvent::Refused { error, .. } => panic!("refused: {error}"),
                    _ => {}
                }
            }
        }
    }
}
