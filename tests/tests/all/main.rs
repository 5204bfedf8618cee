//! End-to-end tests against a real Prosody: one binary, one module per
//! section of docs/behaviour.md. Each test starts its own server with fresh accounts.

mod commands;
mod delivery;
mod devices;
mod errors;
mod faults;
mod hostile;
mod lifecycle;
mod package;
mod registration;
mod reload;
mod routing;
mod tls;

use pizzja_tests::*;

/// A server with `alice@local` (controller), `me@foreign` (the foreign
/// account) and `bob@foreign` (a foreign contact), the gateway running,
/// and alice's `Work/phone` registered and online.
pub struct World {
    pub prosody: Prosody,
    pub gateway: Option<Gateway>,
    pub db: std::path::PathBuf,
    pub phone: Client,
}

/// The compiled-policy cache the tests share: a 12–18 MB JavaScript or
/// Python component takes seconds to compile.
pub fn policy_cache() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-cache")
}

impl World {
    pub async fn new() -> World {
        World::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut pizzja_host::config::Config)) -> World {
        init_tracing();
        let prosody = Prosody::start(&[
            ("alice", LOCAL),
            ("carol", LOCAL),
            ("admin", LOCAL),
            ("me", FOREIGN),
            ("bob", FOREIGN),
        ])
        .await
        .expect("prosody starts");
        let db = prosody.dir.path().join("pizzja.sqlite3");
        let mut config = prosody.gateway_config(&db, "");
        adjust(&mut config);
        let gateway = Gateway::start(config).await.expect("gateway starts");
        let phone = registered_phone(&prosody).await;
        World {
            prosody,
            gateway: Some(gateway),
            db,
            phone,
        }
    }

    pub async fn client(&self, user: &str, domain: &str, resource: &str) -> Client {
        Client::connect(&self.prosody, user, domain, resource)
            .await
            .expect("client logs in")
    }

    /// Stops the gateway and starts it again on the same database.
    pub async fn restart_gateway(&mut self) {
        self.restart_gateway_with(|_| {}).await;
    }

    /// Like [`World::restart_gateway`], its configuration adjusted by
    /// `adjust`.
    pub async fn restart_gateway_with(
        &mut self,
        adjust: impl FnOnce(&mut pizzja_host::config::Config),
    ) {
        self.gateway
            .take()
            .expect("running")
            .stop()
            .await
            .expect("stops");
        let mut config = self.prosody.gateway_config(&self.db, "");
        adjust(&mut config);
        self.gateway = Some(Gateway::start(config).await.expect("restarts"));
    }

    /// Waits until the phone sees its foreign session, me@foreign.test/Work,
    /// available through the gateway: its login is over.
    pub async fn session_up(&mut self, what: &str) {
        let session = gw_jid(&format!("{ME}/Work"));
        self.phone
            .expect(what, |e| {
                e.name() == "presence"
                    && e.attr("from") == Some(session.as_str())
                    && e.attr("type").is_none()
            })
            .await;
    }

    /// A controller of alice, online at the gateway.
    pub async fn controller(&self, resource: &str) -> Client {
        let mut c = self.client("alice", LOCAL, resource).await;
        c.go_online().await;
        c
    }

    /// bob@foreign.test/pc, online.
    pub async fn bob(&self) -> Client {
        bob_online(&self.prosody).await
    }
}

/// Makes bob a subscriber of me@foreign.test, approved by `controller`
/// through the gateway; returns once bob sees `me@foreign.test/A` online.
pub async fn bob_subscribes(bob: &mut Client, controller: &mut Client, a: &str) {
    bob.send(&format!("<presence type='subscribe' to='{ME}'/>"))
        .await;
    let bob_gw = gw_jid("bob@foreign.test");
    controller
        .expect("bob's subscription request through the gateway", |e| {
            e.name() == "presence"
                && e.attr("type") == Some("subscribe")
                && e.attr("from") == Some(bob_gw.as_str())
        })
        .await;
    controller
        .send(&format!("<presence type='subscribed' to='{bob_gw}'/>"))
        .await;
    let full = format!("{ME}/{a}");
    bob.expect("me's presence after approval", |e| {
        e.name() == "presence" && e.attr("from") == Some(full.as_str()) && e.attr("type").is_none()
    })
    .await;
}

/// Makes me@foreign.test a subscriber of bob, asked by `controller` through
/// the gateway and approved by bob; returns once the controller sees bob's
/// presence come back.
pub async fn me_subscribes_to_bob(controller: &mut Client, bob: &mut Client) {
    let bob_gw = gw_jid("bob@foreign.test");
    controller
        .send(&format!("<presence type='subscribe' to='{bob_gw}'/>"))
        .await;
    bob.expect("me's subscription request", |e| {
        e.name() == "presence" && e.attr("type") == Some("subscribe") && e.attr("from") == Some(ME)
    })
    .await;
    bob.send(&format!("<presence type='subscribed' to='{ME}'/>"))
        .await;
    let bob_pc = gw_jid("bob@foreign.test/pc");
    controller
        .expect("bob's presence", |e| {
            e.name() == "presence"
                && e.attr("type").is_none()
                && e.attr("from") == Some(bob_pc.as_str())
        })
        .await;
}
