//! docs/behaviour.md section 8: whatever the policy returns, the host's invariants hold,
//! and a policy that traps, loops or eats memory costs one error reply;
//! the same for the hostile policy in each language.

use crate::{World, policy_cache};
use pizzja_host::config::PolicySource;
use pizzja_host::testing::{guest_build, policy_path};
use pizzja_tests::*;

/// A gateway running the hostile policy written in `lang` (`rust`, `js`,
/// `python`), its compiled code cached across tests.
async fn hostile_world_in(lang: &str) -> World {
    let module = match lang {
        "rust" => policy_path("pizzja_policy_test_hostile"),
        other => guest_build(&format!("test-hostile-{other}")),
    };
    World::with(|c| {
        c.policy = PolicySource::File(module);
        c.cache_dir = Some(policy_cache());
    })
    .await
}

async fn hostile_world() -> World {
    hostile_world_in("rust").await
}

async fn say(world: &mut World, id: &str, text: &str) {
    let to = gw_jid("bob@foreign.test");
    world
        .phone
        .send(&format!(
            "<message type='chat' id='{id}' to='{to}'><body>{text}</body></message>"
        ))
        .await;
}

async fn traps_loops_and_memory_bombs_get_an_error_and_the_gateway_carries_on(lang: &str) {
    let mut world = hostile_world_in(lang).await;
    let mut bob = world.bob().await;
    for (i, bad) in ["trap", "loop", "grow"].iter().enumerate() {
        let id = format!("bad{i}");
        say(&mut world, &id, bad).await;
        let e = world
            .phone
            .expect("an error", |e| e.attr("id") == Some(id.as_str()))
            .await;
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("internal-server-error"),
            "{bad}: {}",
            xml(&e)
        );
        // And the next stanza goes through as usual.
        let ok = format!("still working after {bad}");
        say(&mut world, &format!("ok{i}"), &ok).await;
        bob.expect("the next message", |e| {
            body(e).as_deref() == Some(ok.as_str())
        })
        .await;
    }
}

async fn forged_addresses_are_rewritten_or_refused_never_delivered_elsewhere(lang: &str) {
    let mut world = hostile_world_in(lang).await;
    let mut carol = world.client("carol", LOCAL, "pc").await;
    carol.go_online().await;
    say(&mut world, "forge", "forge").await;
    // The session that is not the account's: refused with an error.
    let e = world
        .phone
        .expect("the refusal", |e| {
            e.attr("id") == Some("forge") && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("service-unavailable"),
        "{}",
        xml(&e)
    );
    // The message with addresses in its XML: delivered to the account, from T.
    let forged = world
        .phone
        .expect("the rewritten message", |e| {
            body(e).as_deref() == Some("forged")
        })
        .await;
    assert_eq!(forged.attr("from"), Some(GW));
    assert_eq!(forged.attr("to"), Some("alice@local.test/Work/phone"));
    // Carol got nothing: a message to her sent after the forgery arrives first.
    let bob = world.bob().await;
    bob.send(&format!(
        "<message type='chat' to='{ME}/Work' id='later'><body>marker</body></message>"
    ))
    .await;
    world
        .phone
        .expect("the marker", |e| body(e).as_deref() == Some("marker"))
        .await;
    carol
        .send("<message type='chat' to='carol@local.test/pc' id='self'><body>self</body></message>")
        .await;
    carol
        .expect("her own marker", |e| body(e).as_deref() == Some("self"))
        .await;
    assert!(
        carol.inbox().all(|e| body(e).is_none()),
        "carol received: {:?}",
        carol.inbox().map(xml).collect::<Vec<_>>()
    );
}

/// The tests above, once per language the hostile policy is written in.
macro_rules! in_each_language {
    ($($lang:ident),*) => {$(
        mod $lang {
            #[tokio::test]
            async fn traps_loops_and_memory_bombs_get_an_error_and_the_gateway_carries_on() {
                super::traps_loops_and_memory_bombs_get_an_error_and_the_gateway_carries_on(
                    stringify!($lang),
                )
                .await
            }

            #[tokio::test]
            async fn forged_addresses_are_rewritten_or_refused_never_delivered_elsewhere() {
                super::forged_addresses_are_rewritten_or_refused_never_delivered_elsewhere(
                    stringify!($lang),
                )
                .await
            }
        }
    )*};
}

in_each_language!(rust, js, python);

#[tokio::test]
async fn passwords_never_reach_the_policy() {
    let mut world = hostile_world().await;
    say(&mut world, "f", "facts").await;
    let echoed = world
        .phone
        .expect("the facts", |e| {
            e.attr("from") == Some(GW) && body(e).is_some()
        })
        .await;
    let text = body(&echoed).expect("a body");
    assert!(
        text.contains(ME),
        "the facts name the foreign account: {text}"
    );
    assert!(
        !text.contains(PASSWORD),
        "the password reached the policy: {text}"
    );
}
