//! Running it as a service (docs/operations.md), with the real binary:
//! systemd's notifications (ready, watchdog, stopping), JSON log lines that
//! carry each link's raw XML at trace level and never a password or any
//! SASL exchange, and Prometheus metrics that move with the traffic.

use pizzja_tests::process::Process;
use pizzja_tests::*;
use std::path::Path;
use tokio::net::UnixDatagram;

/// The next notification systemd would get that contains `what`.
async fn notified(socket: &UnixDatagram, what: &str) -> String {
    let mut buf = [0u8; 512];
    tokio::time::timeout(WAIT, async {
        loop {
            let n = socket.recv(&mut buf).await.expect("a notification");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains(what) {
                return text;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} notification within {WAIT:?}"))
}

/// The phone sends `n` messages to bob through the gateway.
async fn send_to_bob(phone: &Client, n: usize) {
    let to_bob = gw_jid("bob@foreign.test/pc");
    for i in 0..n {
        phone
            .send(&format!(
                "<message type='chat' to='{to_bob}' id='m{i}'><body>m{i}</body></message>"
            ))
            .await;
    }
}

#[tokio::test]
async fn as_a_service_it_notifies_systemd_logs_json_without_secrets_and_serves_metrics() {
    init_tracing();
    let prosody = Prosody::start_options(
        &[("alice", LOCAL), ("me", FOREIGN), ("bob", FOREIGN)],
        &Options {
            mam: true,
            ..Options::default()
        },
    )
    .await
    .expect("prosody starts");
    let dir = prosody.dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.join("pizzja.toml");
    let extra = format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nformat = \"json\"\n");
    std::fs::write(
        &config,
        prosody.gateway_toml(&dir.join("pizzja.sqlite3"), &extra),
    )
    .expect("config written");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("a notify socket");
    let socket_text = socket_path.display().to_string();
    let env = [
        ("NOTIFY_SOCKET", socket_text.as_str()),
        ("WATCHDOG_USEC", "400000"),
        (
            "RUST_LOG",
            "info,pizzja=trace,pizzja_host=trace,tokio_xmpp=trace,xmpp_parsers=trace",
        ),
    ];
    let gateway = Process::start(Path::new(env!("CARGO_BIN_EXE_pizzja")), &config, &env).await;

    // systemd: ready once the link is up, then the watchdog, twice.
    notified(&socket, "READY=1").await;
    notified(&socket, "WATCHDOG=1").await;
    notified(&socket, "WATCHDOG=1").await;

    // A registration with a real login, a session, traffic both ways.
    let mut phone = registered_phone(&prosody).await;
    let work = gw_jid(&format!("{ME}/Work"));
    phone
        .expect("the foreign session up", |e| {
            e.name() == "presence" && e.attr("from") == Some(work.as_str())
        })
        .await;
    let mut bob = bob_online(&prosody).await;
    send_to_bob(&phone, 1).await;
    bob.expect("the phone's message", |e| body(e).as_deref() == Some("m0"))
        .await;
    bob.send(&format!(
        "<message type='chat' to='{ME}/Work' id='b'><body>back</body></message>"
    ))
    .await;
    phone
        .expect("bob's message", |e| body(e).as_deref() == Some("back"))
        .await;

    // Metrics: what happened, counted.
    let (status, text) = http_get(port, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let out = "pizzja_stanzas_total{direction=\"to_foreign\",kind=\"message\"}";
    let before = metric(&text, out).unwrap_or_else(|| panic!("{out} missing:\n{text}"));
    assert!(before >= 1.0, "{text}");
    for (series, at_least) in [
        (
            "pizzja_stanzas_total{direction=\"from_foreign\",kind=\"message\"}",
            1.0,
        ),
        (
            "pizzja_stanzas_total{direction=\"from_local\",kind=\"presence\"}",
            1.0,
        ),
        ("pizzja_component_link_up", 1.0),
        ("pizzja_accounts_registered", 1.0),
        ("pizzja_accounts_running", 1.0),
        ("pizzja_controllers", 1.0),
        ("pizzja_foreign_sessions{state=\"online\"}", 1.0),
        ("pizzja_foreign_logins_total{reason=\"ok\"}", 1.0),
        ("pizzja_policy_decisions_total", 1.0),
    ] {
        let v = metric(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(v >= at_least, "{series} = {v}");
    }
    // And they move with the traffic.
    send_to_bob(&phone, 5).await;
    bob.expect("the last of five", |e| body(e).as_deref() == Some("m4"))
        .await;
    let (_, text) = http_get(port, "/metrics").await;
    let after = metric(&text, out).expect("still there");
    assert!(after >= before + 5.0, "{before} then {after}");
    let (status, _) = http_get(port, "/other").await;
    assert!(status.contains("404"), "{status}");

    // Stopping: systemd is told, and the process exits cleanly.
    let (code, lines) = gateway.stop().await;
    notified(&socket, "STOPPING=1").await;
    assert_eq!(code, Some(0));

    // The log: JSON, one object a line; each link's raw XML under its own
    // target; never the password, never any of the SASL exchange.
    for line in &lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
    for target in [
        "pizzja::xml::foreign::in",
        "pizzja::xml::foreign::out",
        "pizzja::xml::component::in",
        "pizzja::xml::component::out",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("\"target\":\"{target}\""))),
            "no {target} lines"
        );
    }
    for secret in [PASSWORD, "urn:ietf:params:xml:ns:xmpp-sasl", SECRET] {
        let leaked: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaked.is_empty(), "{secret:?} logged: {leaked:?}");
    }
}
