//! Hot reload under traffic: the policy file is replaced several times,
//! once by a broken module, while a foreign contact sends hundreds of
//! messages; every message arrives, in order, once.

use crate::{ME, World};
use pizzja_host::config::PolicySource;
use pizzja_host::policy::PolicyEvent;
use pizzja_host::testing::policy_path;
use pizzja_tests::*;
use std::path::Path;

/// Replaces `target` the way deploy tools do: write elsewhere, rename over.
fn replace(target: &Path, bytes: &[u8]) {
    let tmp = target.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).expect("write the new module");
    std::fs::rename(&tmp, target).expect("rename it over the old one");
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
    let watched = module.clone();
    let mut world = World::with(move |c| {
        c.policy = PolicySource::File(watched);
        c.policy_watch = true;
    })
    .await;
    let mut events = world
        .gateway
        .as_mut()
        .expect("running")
        .policy_events
        .resubscribe();
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
    for i in 0..N {
        let m = world
            .phone
            .expect("the next message", |e| {
                body(e).is_some_and(|b| b.starts_with("n "))
            })
            .await;
        assert_eq!(body(&m), Some(format!("n {i}")), "lost or out of order");
    }
    // Nothing twice: a marker sent after all of them is the next to arrive.
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
