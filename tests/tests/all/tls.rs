//! `[foreign] tls = "required"`: STARTTLS with the certificate verified
//! against the system's roots plus `ca_file`.

use pizzja_host::config::ForeignTls;
use pizzja_tests::*;

async fn setup(trust_ca: bool) -> (Prosody, Gateway, Client) {
    init_tracing();
    let prosody = Prosody::start_with(&[("alice", LOCAL), ("me", FOREIGN), ("bob", FOREIGN)], true)
        .await
        .expect("prosody with TLS");
    let mut config = prosody.gateway_config(&prosody.dir.path().join("db"), "");
    config.foreign_tls = ForeignTls::Required;
    config.ca_file = trust_ca.then(|| prosody.dir.path().join("ca.crt"));
    let gateway = Gateway::start(config).await.expect("gateway");
    let mut phone = Client::connect(&prosody, "alice", LOCAL, "Work/phone")
        .await
        .expect("login");
    phone.go_online().await;
    (prosody, gateway, phone)
}

#[tokio::test]
async fn a_certificate_from_the_configured_ca_is_trusted() {
    let (prosody, gateway, mut phone) = setup(true).await;
    register_ok(&mut phone, ME).await;
    let mut bob = Client::connect(&prosody, "bob", FOREIGN, "pc")
        .await
        .expect("bob");
    bob.go_online().await;
    phone
        .send(&format!(
            "<message type='chat' to='{}'><body>over TLS</body></message>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let m = bob
        .expect("the message", |e| body(e).as_deref() == Some("over TLS"))
        .await;
    assert_eq!(m.attr("from"), Some("me@foreign.test/Work"));
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (_prosody, gateway, mut phone) = setup(false).await;
    let answer = register_refused(&mut phone, ME, PASSWORD, "remote-server-timeout").await;
    assert!(
        xml(&answer).contains("TLS"),
        "the reason names TLS: {}",
        xml(&answer)
    );
    gateway.stop().await.expect("stops");
}

/// SRV answers for the test: a test hook, since no DNS server runs here.
struct Canned(Vec<(String, pizzja_host::xmpp::dns::Target)>);

impl pizzja_host::xmpp::dns::Resolve for Canned {
    fn srv(
        &self,
        name: String,
        direct_tls: bool,
    ) -> futures::future::BoxFuture<'_, Vec<pizzja_host::xmpp::dns::Target>> {
        let found = self
            .0
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, t)| pizzja_host::xmpp::dns::Target {
                direct_tls,
                ..t.clone()
            })
            .collect();
        Box::pin(async move { found })
    }
}

/// RFC 6120 section 3.2 with XEP-0368: with no static address, the gateway
/// takes foreign.test's `_xmpp-client` and `_xmpps-client` SRV records
/// together by priority. The first target refuses the connection; the next,
/// a direct TLS port, speaks TLS from the first byte (its certificate
/// verified for foreign.test); the last is never tried.
#[tokio::test]
async fn srv_targets_are_tried_by_priority_and_direct_tls_ones_speak_tls_at_once() {
    use pizzja_host::xmpp::dns::{Resolver, Target};
    use pizzja_tests::proxy::{FaultProxy, Mode};
    init_tracing();
    let prosody = Prosody::start_options(
        &[("alice", LOCAL), ("me", FOREIGN)],
        &Options {
            tls: true,
            direct_tls: true,
            ..Options::default()
        },
    )
    .await
    .expect("prosody with direct TLS");
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let never = FaultProxy::start(format!("127.0.0.1:{}", prosody.c2s).parse().expect("addr"))
        .await
        .expect("proxy");
    never.set_mode(Mode::Refuse);
    let target = |priority: u16, port: u16| Target {
        priority,
        weight: 0,
        host: "127.0.0.1".into(),
        port,
        direct_tls: false,
    };
    let answers = Canned(vec![
        (
            "_xmpp-client._tcp.foreign.test.".into(),
            target(30, never.addr.port()),
        ),
        ("_xmpp-client._tcp.foreign.test.".into(), target(5, refused)),
        (
            "_xmpps-client._tcp.foreign.test.".into(),
            target(10, prosody.c2s_direct_tls),
        ),
    ]);
    let mut config = prosody.gateway_config(&prosody.dir.path().join("db"), "");
    config.foreign_hosts.remove(FOREIGN);
    config.foreign_tls = ForeignTls::Required;
    config.ca_file = Some(prosody.dir.path().join("ca.crt"));
    let gateway = Gateway::start_with(config, |p| {
        p.resolver = Resolver(std::sync::Arc::new(answers));
    })
    .await
    .expect("gateway");
    let mut phone = Client::connect(&prosody, "alice", LOCAL, "Work/phone")
        .await
        .expect("login");
    phone.go_online().await;
    // A real login: through the direct TLS port, the only target left
    // (foreign.test itself resolves nowhere).
    register_ok(&mut phone, ME).await;
    assert_eq!(never.accepted(), 0, "the target of priority 30 was tried");
    gateway.stop().await.expect("stops");
}
