//! `[foreign] tls = "required"`: STARTTLS with the certificate verified
//! against the system's roots plus `ca_file`.

use crate::ME;
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
