//! The quickstart demo: a throwaway Prosody on loopback, the real `pizzja`
//! binary with the built-in default policy, and scripted clients showing
//! one foreign connection driven by several local controllers.

use pizzja_tests::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn say(text: &str) {
    println!("\n== {text}");
}

fn show(who: &str, el: &minidom::Element) {
    println!(
        "   {who} got {} from {}: {}",
        el.name(),
        el.attr("from").unwrap_or("-"),
        body(el).unwrap_or_default()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    say(
        "starting a throwaway Prosody on loopback (local.test, foreign.test, component gw.local.test)",
    );
    let prosody = Prosody::start(&[("alice", LOCAL), ("me", FOREIGN), ("bob", FOREIGN)]).await?;
    println!(
        "   c2s port {}, component port {}, files in {}",
        prosody.c2s,
        prosody.component,
        prosody.dir.path().display()
    );

    let config = prosody.dir.path().join("pizzja.toml");
    std::fs::write(
        &config,
        prosody.gateway_toml(&prosody.dir.path().join("pizzja.sqlite3"), ""),
    )?;
    let exe = std::env::current_exe()?.with_file_name("pizzja");
    say(&format!(
        "starting {} run --config {}",
        exe.display(),
        config.display()
    ));
    let mut gateway = Command::new(&exe)
        .args(["run", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stderr(Stdio::piped())
        .spawn()?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let stderr = gateway.stderr.take().expect("piped");
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            println!("   gateway | {line}");
            if line.contains("pizzja ready")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx).await??;

    say("alice@local.test/Work/phone logs in and registers me@foreign.test with the gateway");
    let mut phone = Client::connect(&prosody, "alice", LOCAL, "Work/phone").await?;
    phone.go_online().await;
    register_ok(&mut phone, "me@foreign.test").await;
    println!("   registered; the gateway is in alice's roster and logs in as me@foreign.test/Work");

    let mut laptop = Client::connect(&prosody, "alice", LOCAL, "Work/laptop").await?;
    laptop.go_online().await;
    let mut bob = Client::connect(&prosody, "bob", FOREIGN, "pc").await?;
    bob.go_online().await;
    println!(
        "   alice/Work/laptop is a second controller; bob@foreign.test/pc is a foreign contact"
    );

    let bob_gw = gw_jid("bob@foreign.test");
    say(&format!("alice/Work/phone writes to {bob_gw}"));
    phone
        .send(&format!(
            "<message type='chat' to='{bob_gw}'><body>Hello Bob, from my phone</body></message>"
        ))
        .await;
    show(
        "bob",
        &bob.expect("the phone's message", |e| body(e).is_some())
            .await,
    );

    say("bob answers me@foreign.test/Work: both Work controllers get it");
    bob.send("<message type='chat' to='me@foreign.test/Work'><body>Hi! Got it.</body></message>")
        .await;
    show(
        "alice/Work/phone",
        &phone
            .expect("bob's answer", |e| {
                body(e).as_deref() == Some("Hi! Got it.")
            })
            .await,
    );
    show(
        "alice/Work/laptop",
        &laptop
            .expect("bob's answer", |e| {
                body(e).as_deref() == Some("Hi! Got it.")
            })
            .await,
    );

    say("the laptop writes too: same foreign connection, same foreign JID");
    laptop
        .send(&format!(
            "<message type='chat' to='{bob_gw}'><body>And this is the laptop</body></message>"
        ))
        .await;
    show(
        "bob",
        &bob.expect("the laptop's message", |e| {
            body(e).as_deref() == Some("And this is the laptop")
        })
        .await,
    );

    say("alice/Home/desk comes online: a second foreign session, me@foreign.test/Home");
    let mut desk = Client::connect(&prosody, "alice", LOCAL, "Home/desk").await?;
    desk.go_online().await;
    desk.send(&format!(
        "<message type='chat' to='{bob_gw}'><body>Evening, from home</body></message>"
    ))
    .await;
    show(
        "bob",
        &bob.expect("the desk's message", |e| {
            body(e).as_deref() == Some("Evening, from home")
        })
        .await,
    );

    say("stopping the gateway (SIGTERM)");
    let pid = gateway.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let status = gateway.wait()?;
    println!("   pizzja exited with {status}");
    anyhow::ensure!(status.success(), "pizzja did not exit cleanly");
    say("demo finished: every message arrived where it should");
    Ok(())
}
