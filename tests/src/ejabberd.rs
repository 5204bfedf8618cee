//! ejabberd 23.01 (Debian's package) as the test server, in place of
//! Prosody when `PIZZJA_TEST_SERVER=ejabberd`: started in a temporary
//! directory on random ports as a node of its own, its accounts made by
//! in-band registration (XEP-0077) on its loopback client port.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where Debian installs ejabberd's Erlang application.
const ERL_LIBS: &str = "/usr/lib/x86_64-linux-gnu";

/// Whether the tests run against ejabberd instead of Prosody.
pub fn wanted() -> bool {
    std::env::var("PIZZJA_TEST_SERVER").is_ok_and(|s| s == "ejabberd")
}

/// Writes the configuration for these ports.
pub fn configure(
    dir: &Path,
    c2s: u16,
    component: u16,
    hibernation_secs: u32,
    log_level: &str,
) -> Result<()> {
    let level = match log_level {
        "warn" => "warning",
        "error" => "error",
        "debug" => "debug",
        _ => "info",
    };
    let config = include_str!("../ejabberd/ejabberd.yml.in")
        .replace("@C2S@", &c2s.to_string())
        .replace("@COMPONENT@", &component.to_string())
        .replace("@SECRET@", crate::SECRET)
        .replace("@HIBERNATION@", &hibernation_secs.to_string())
        .replace("@LOGLEVEL@", level);
    std::fs::write(dir.join("ejabberd.yml"), config)?;
    std::fs::create_dir_all(dir.join("spool"))?;
    Ok(())
}

/// The node's name: after the directory, so that a restart finds its data
/// again.
fn node(dir: &Path) -> String {
    format!(
        "pz{}",
        dir.file_name()
            .map(|n| n
                .to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), ""))
            .unwrap_or_default()
    )
}

/// Asks the node to stop (SIGTERM: Erlang shuts down in order).
pub fn terminate(child: &mut Child) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    if !status.success() {
        child.kill()?;
    }
    Ok(())
}

/// Removes an account from the running node (an Erlang RPC, as
/// `ejabberdctl unregister` does); its sessions stay up.
pub fn delete_user(dir: &Path, user: &str, domain: &str) -> Result<()> {
    let erl = crate::which("erl").context("ejabberd is not installed")?;
    let host = Command::new("hostname").arg("-s").output()?;
    let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    let target = format!("'{}@{host}'", node(dir));
    let eval = format!(
        "R = rpc:call({target}, ejabberd_auth, remove_user, [<<\"{user}\">>, <<\"{domain}\">>]), io:format(\"~p\", [R]), halt()."
    );
    let out = Command::new(erl)
        .args([
            "-sname",
            &format!("{}ctl", node(dir)),
            "-noshell",
            "-eval",
            &eval,
        ])
        .env("HOME", dir)
        .output()
        .context("failed to run erl")?;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || said.contains("badrpc") {
        bail!("removing {user}@{domain} from ejabberd failed: {said}");
    }
    Ok(())
}

/// Starts the node.
pub fn spawn(dir: &Path) -> Result<Child> {
    let erl = crate::which("erl").context(
        "ejabberd is not installed: PIZZJA_TEST_SERVER=ejabberd needs it (apt-get install ejabberd)",
    )?;
    let node = node(dir);
    let spool = format!("\"{}\"", dir.join("spool").display());
    Command::new(erl)
        .args(["-sname", &node, "-noinput", "+K", "true"])
        .args(["-mnesia", "dir", &spool, "-s", "ejabberd"])
        .env("EJABBERD_CONFIG_PATH", dir.join("ejabberd.yml"))
        .env("EJABBERD_LOG_PATH", dir.join("ejabberd.log"))
        .env("ERL_LIBS", ERL_LIBS)
        .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"))
        // The node's cookie lives in its own home.
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("failed to start ejabberd")
}

/// Makes `user@domain` with `password` by in-band registration.
pub async fn register(c2s: u16, user: &str, domain: &str, password: &str) -> Result<()> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c2s)).await?;
    let request = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>\
         <iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>"
    );
    s.write_all(request.as_bytes()).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = tokio::time::timeout(crate::WAIT, async {
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                bail!(
                    "ejabberd closed the stream: {}",
                    String::from_utf8_lossy(&seen)
                );
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some(at) = text.find("id='reg'").or_else(|| text.find("id=\"reg\"")) {
                let tail = &text[at.saturating_sub(200)..];
                if tail.contains("</iq>") || tail.contains("/>") {
                    return Ok(text);
                }
            }
        }
    })
    .await
    .context("no answer to the registration")??;
    let reg = answer
        .split("<iq")
        .find(|iq| iq.contains("id='reg'") || iq.contains("id=\"reg\""))
        .unwrap_or_default();
    if !(reg.contains("type='result'") || reg.contains("type=\"result\"")) {
        bail!("registering {user}@{domain} failed: {answer}");
    }
    let _ = s.write_all(b"</stream:stream>").await;
    Ok(())
}
