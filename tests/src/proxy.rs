//! A TCP proxy the tests control, for injecting faults between the gateway
//! and a server: cut every connection both ways at once, hold bytes so
//! that stanzas are in flight when the cut comes (and wait until the held
//! bytes show what was sent), and refuse or blackhole the reconnects that
//! follow.

use anyhow::Result;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the proxy does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connects it to the server and passes bytes both ways.
    Pass,
    /// Accepts it and closes it at once: a server that is down.
    Refuse,
    /// Accepts it and never answers: a server that hangs.
    Blackhole,
}

struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    /// Whether passing connections hold their bytes instead of forwarding.
    held: watch::Sender<bool>,
    /// Every byte read while held, both ways, since the last hold.
    seen: watch::Sender<Vec<u8>>,
    /// The tasks of live connections, to abort on a cut.
    live: Mutex<Vec<AbortHandle>>,
    /// For the next passing connection: where what the client sends starts
    /// being held.
    hold_client_at: Mutex<Option<Vec<u8>>>,
    accepted: Mutex<u64>,
}

/// A fault-injecting proxy in front of `upstream`, on a loopback port.
pub struct FaultProxy {
    /// Where to connect instead of the server.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl FaultProxy {
    /// Starts passing connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            held: watch::channel(false).0,
            seen: watch::channel(Vec::new()).0,
            live: Mutex::new(Vec::new()),
            hold_client_at: Mutex::new(None),
            accepted: Mutex::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// What new connections meet from now on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Holds every byte in both directions (read, and kept in the proxy)
    /// until [`FaultProxy::release`] or a cut.
    pub fn hold(&self) {
        self.shared.seen.send_replace(Vec::new());
        self.shared.held.send_replace(true);
    }

    /// Waits until the bytes held since [`FaultProxy::hold`] contain
    /// `needle` (a stanza's text, say), at most `within`.
    pub async fn wait_held(&self, needle: &str, within: std::time::Duration) -> Result<()> {
        let mut seen = self.shared.seen.subscribe();
        let needle = needle.as_bytes();
        let found = seen.wait_for(|bytes| bytes.windows(needle.len()).any(|w| w == needle));
        tokio::time::timeout(within, found)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "`{}` not held within {within:?}",
                    String::from_utf8_lossy(needle)
                )
            })?
            .map_err(|_| anyhow::anyhow!("the proxy is gone"))?;
        Ok(())
    }

    /// The next connection passes both ways until the client sends
    /// `needle`; from there what the client sends is held (and shown to
    /// [`FaultProxy::wait_held`]) until [`FaultProxy::release`], while the
    /// server's bytes still flow: a server slow to take one request, say
    /// `<enable/>` after a bind.
    pub fn hold_client_from(&self, needle: &str) {
        self.shared.seen.send_replace(Vec::new());
        *lock(&self.shared.hold_client_at) = Some(needle.as_bytes().to_vec());
    }

    /// Forwards again what was held, and everything after it.
    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    /// Cuts every live connection both ways at once; whatever was held is
    /// lost with it. New connections are not held.
    pub fn cut(&self) {
        for task in lock(&self.shared.live).drain(..) {
            task.abort();
        }
        self.shared.held.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *lock(&self.shared.accepted)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        *lock(&shared.accepted) += 1;
        let mode = *lock(&shared.mode);
        match mode {
            Mode::Refuse => drop(client),
            Mode::Blackhole => {
                let task = tokio::spawn(async move {
                    let mut client = client;
                    let mut sink = [0u8; 4096];
                    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
                });
                lock(&shared.live).push(task.abort_handle());
            }
            Mode::Pass => {
                let held = shared.held.subscribe();
                let seen = shared.seen.clone();
                let upstream = shared.upstream;
                let hold_at = lock(&shared.hold_client_at).take();
                let task = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = server.set_nodelay(true);
                        let _ = client.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        // Either direction ending ends both: a cut is both ways.
                        tokio::select! {
                            _ = pipe(cr, sw, held.clone(), seen.clone(), hold_at) => {}
                            _ = pipe(sr, cw, held, seen, None) => {}
                        }
                    }
                });
                lock(&shared.live).push(task.abort_handle());
            }
        }
    }
}

/// Copies `from` to `to`; while held, keeps what it reads (and shows it in
/// `seen`) and forwards it on release. With `hold_at`, holds by itself
/// from where those bytes first appear.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
    seen: watch::Sender<Vec<u8>>,
    mut hold_at: Option<Vec<u8>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut kept: Vec<u8> = Vec::new();
    let mut holding = false;
    // The end of what went before, for a needle split across reads.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut chunk = &buf[..n];
                if let Some(needle) = &hold_at {
                    let mut window = std::mem::take(&mut tail);
                    window.extend_from_slice(chunk);
                    if let Some(at) = window.windows(needle.len()).position(|w| w == needle.as_slice()) {
                        let split = at.saturating_sub(window.len() - n);
                        if to.write_all(&chunk[..split]).await.is_err() {
                            return;
                        }
                        chunk = &chunk[split..];
                        // Shown whole, even where its start already went.
                        seen.send_modify(|s| s.extend_from_slice(&window[at..window.len() - chunk.len()]));
                        holding = true;
                        hold_at = None;
                    } else {
                        let keep = needle.len().saturating_sub(1).min(window.len());
                        tail = window.split_off(window.len() - keep);
                    }
                }
                if *held.borrow() || holding {
                    kept.extend_from_slice(chunk);
                    seen.send_modify(|s| s.extend_from_slice(chunk));
                } else if to.write_all(chunk).await.is_err() {
                    return;
                }
            }
            changed = held.changed() => {
                if changed.is_err() {
                    return;
                }
                let released = !*held.borrow();
                if released {
                    holding = false;
                    if !kept.is_empty() {
                        if to.write_all(&kept).await.is_err() {
                            return;
                        }
                        kept.clear();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn read_some(s: &mut TcpStream) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        buf[..n].to_vec()
    }

    #[tokio::test]
    async fn passes_holds_cuts_and_refuses() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr).await.expect("connect");
        c.write_all(b"one").await.expect("write");
        assert_eq!(read_some(&mut c).await, b"one");

        proxy.hold();
        c.write_all(b"two").await.expect("write");
        proxy
            .wait_held("two", std::time::Duration::from_secs(5))
            .await
            .expect("held");
        let mut buf = [0u8; 8];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(300), c.read(&mut buf)).await;
        assert!(early.is_err(), "held bytes must not pass");
        proxy.release();
        assert_eq!(read_some(&mut c).await, b"two");

        proxy.cut();
        assert!(read_some(&mut c).await.is_empty(), "the cut closes it");

        proxy.set_mode(Mode::Refuse);
        let mut r = TcpStream::connect(proxy.addr).await.expect("accepted");
        assert!(
            read_some(&mut r).await.is_empty(),
            "refused: closed at once"
        );
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test]
    async fn holds_what_the_client_sends_from_a_needle_on_while_the_server_talks() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        proxy.hold_client_from("<enable");
        let mut c = TcpStream::connect(proxy.addr).await.expect("connect");
        // The needle split across two writes: its start has gone already.
        c.write_all(b"bind<ena").await.expect("write");
        assert_eq!(read_some(&mut c).await, b"bind<ena");
        c.write_all(b"ble/>more").await.expect("write");
        proxy
            .wait_held("<enable/>more", std::time::Duration::from_secs(5))
            .await
            .expect("held from the needle on");
        proxy.release();
        assert_eq!(read_some(&mut c).await, b"ble/>more");
        // Only that connection: the next passes untouched.
        let mut d = TcpStream::connect(proxy.addr).await.expect("connect");
        d.write_all(b"x<enable").await.expect("write");
        assert_eq!(read_some(&mut d).await, b"x<enable");
    }
}
