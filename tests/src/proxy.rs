//! A TCP proxy the tests control, for injecting faults between the gateway
//! and a server: cut every connection both ways at once, hold bytes so
//! that stanzas are in flight when the cut comes (and wait until the held
//! bytes show what was sent), and refuse or blackhole the reconnects that
//! follow.
//!
//! A cut closes the client's side at once; the server's side gets the end
//! of the stream and is read until the server closes it, since a server
//! goes on writing into a connection until it reads its end. What it
//! writes meanwhile is lost with the cut, and kept for the test to see
//! ([`FaultProxy::written_after_cuts`]).

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

type Tap = Arc<Mutex<Vec<u8>>>;

struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    /// Whether passing connections hold their bytes instead of forwarding.
    held: watch::Sender<bool>,
    /// Every byte read while held, both ways, since the last hold.
    seen: watch::Sender<Vec<u8>>,
    /// The tasks of live connections, to abort when the proxy goes.
    live: Mutex<Vec<AbortHandle>>,
    /// Counts the cuts: each live connection ends at the next.
    cuts: watch::Sender<u64>,
    /// What servers wrote into connections after they were cut.
    after_cuts: watch::Sender<Vec<u8>>,
    /// When servers closed connections that were cut.
    closed_after_cuts: watch::Sender<Vec<tokio::time::Instant>>,
    /// Whether to keep what clients send, a transcript a connection.
    recording: std::sync::atomic::AtomicBool,
    /// What each recorded connection carried: the client's bytes, the
    /// server's (until a cut).
    transcripts: Mutex<Vec<(Tap, Tap)>>,
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
            cuts: watch::channel(0).0,
            after_cuts: watch::channel(Vec::new()).0,
            closed_after_cuts: watch::channel(Vec::new()).0,
            recording: false.into(),
            transcripts: Mutex::new(Vec::new()),
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
        wait_for_bytes(&self.shared.seen, needle, within).await
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
    /// lost with it, and so is what the server writes until it has read
    /// the end. New connections are not held.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
        self.shared.held.send_replace(false);
    }

    /// Everything servers wrote into connections after they were cut, up
    /// to when they closed them.
    pub fn written_after_cuts(&self) -> Vec<u8> {
        self.shared.after_cuts.borrow().clone()
    }

    /// When servers closed the connections that were cut, having read
    /// their end: until then a server still routes into a cut connection,
    /// and what it routes there is lost.
    pub fn closed_after_cuts(&self) -> Vec<tokio::time::Instant> {
        self.shared.closed_after_cuts.borrow().clone()
    }

    /// Waits until servers have closed `n` cut connections, at most
    /// `within`.
    pub async fn wait_closed_after_cuts(
        &self,
        n: usize,
        within: std::time::Duration,
    ) -> Result<()> {
        let mut closed = self.shared.closed_after_cuts.subscribe();
        tokio::time::timeout(within, closed.wait_for(|c| c.len() >= n))
            .await
            .map_err(|_| {
                anyhow::anyhow!("{n} cut connections not closed by their servers within {within:?}")
            })?
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("the proxy is gone"))
    }

    /// Waits until what servers wrote after cuts contains `needle`, at
    /// most `within`.
    pub async fn wait_written_after_cuts(
        &self,
        needle: &str,
        within: std::time::Duration,
    ) -> Result<()> {
        wait_for_bytes(&self.shared.after_cuts, needle, within).await
    }

    /// From now on, keeps everything clients and servers send through
    /// passing connections, one transcript a connection and side.
    pub fn record(&self) {
        self.shared
            .recording
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// What clients sent through each recorded connection, in the order
    /// the connections came.
    pub fn client_transcripts(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.transcripts)
            .iter()
            .map(|(c, _)| lock(c).clone())
            .collect()
    }

    /// What servers sent through each recorded connection before it was
    /// cut (what they wrote after a cut is
    /// [`FaultProxy::written_after_cuts`]), in the order the connections
    /// came.
    pub fn server_transcripts(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.transcripts)
            .iter()
            .map(|(_, s)| lock(s).clone())
            .collect()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *lock(&self.shared.accepted)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in lock(&self.shared.live).drain(..) {
            task.abort();
        }
    }
}

/// Waits until `bytes` contains `needle`, at most `within`.
async fn wait_for_bytes(
    bytes: &watch::Sender<Vec<u8>>,
    needle: &str,
    within: std::time::Duration,
) -> Result<()> {
    let mut seen = bytes.subscribe();
    let needle = needle.as_bytes();
    let found = seen.wait_for(|bytes| bytes.windows(needle.len()).any(|w| w == needle));
    tokio::time::timeout(within, found)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "`{}` not seen within {within:?}",
                String::from_utf8_lossy(needle)
            )
        })?
        .map_err(|_| anyhow::anyhow!("the proxy is gone"))?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        *lock(&shared.accepted) += 1;
        let mode = *lock(&shared.mode);
        let mut cut = shared.cuts.subscribe();
        cut.borrow_and_update();
        let task = match mode {
            Mode::Refuse => {
                drop(client);
                continue;
            }
            Mode::Blackhole => tokio::spawn(async move {
                let mut client = client;
                let mut sink = [0u8; 4096];
                tokio::select! {
                    _ = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
                    _ = cut.changed() => {}
                }
            }),
            Mode::Pass => {
                let held = shared.held.subscribe();
                let seen = shared.seen.clone();
                let hold_at = lock(&shared.hold_client_at).take();
                let (tap, server_tap) = shared
                    .recording
                    .load(std::sync::atomic::Ordering::SeqCst)
                    .then(|| {
                        let t = (Tap::default(), Tap::default());
                        lock(&shared.transcripts).push(t.clone());
                        t
                    })
                    .unzip();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(shared.upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    // Either direction ending ends both: a cut is both ways.
                    // The cut first: it releases what was held, and that
                    // must go with the connection, not to the other side.
                    let (cut_in, cut_out) = (cut.clone(), cut.clone());
                    let was_cut = tokio::select! {
                        biased;
                        _ = cut.changed() => true,
                        _ = pipe(&mut cr, &mut sw, held.clone(), seen.clone(), hold_at, tap, cut_in) => false,
                        _ = pipe(&mut sr, &mut cw, held, seen, None, server_tap, cut_out) => false,
                    };
                    drop((cr, cw));
                    if was_cut {
                        let _ = sw.shutdown().await;
                        drain_after_cut(sr, &shared).await;
                    }
                })
            }
        };
        let mut live = lock(&shared.live);
        live.retain(|t| !t.is_finished());
        live.push(task.abort_handle());
    }
}

/// Reads what the server writes into a cut connection until it closes it
/// (at most a while: a server that never reads is a server that hangs).
async fn drain_after_cut(mut server: tokio::net::tcp::OwnedReadHalf, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(n @ 1..) = server.read(&mut buf).await {
            shared
                .after_cuts
                .send_modify(|b| b.extend_from_slice(&buf[..n]));
        }
    })
    .await;
    if closed.is_ok() {
        shared
            .closed_after_cuts
            .send_modify(|c| c.push(tokio::time::Instant::now()));
    }
}

/// Copies `from` to `to`; while held, keeps what it reads (and shows it in
/// `seen`) and forwards it on release. With `hold_at`, holds by itself
/// from where those bytes first appear. With `tap`, keeps all it reads.
/// A release that comes with a cut forwards nothing: the cut takes it.
async fn pipe(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
    seen: watch::Sender<Vec<u8>>,
    mut hold_at: Option<Vec<u8>>,
    tap: Option<Tap>,
    cut: watch::Receiver<u64>,
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
                if let Some(tap) = &tap {
                    lock(tap).extend_from_slice(&buf[..n]);
                }
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
                if released && cut.has_changed().unwrap_or(true) {
                    std::future::pending::<()>().await;
                }
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

    #[tokio::test]
    async fn what_the_server_writes_until_it_reads_the_cut_is_kept() {
        // A server that writes once more after the cut, before it reads.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = listener.local_addr().expect("addr");
        let (write_late, late) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.write_all(b"early").await.expect("write");
            late.await.expect("told");
            s.write_all(b"late").await.expect("write");
            let mut buf = [0u8; 64];
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let proxy = FaultProxy::start(upstream).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(read_some(&mut c).await, b"early");
        let cut = tokio::time::Instant::now();
        proxy.cut();
        assert!(read_some(&mut c).await.is_empty(), "the cut closes it");
        write_late.send(()).expect("the server waits");
        proxy
            .wait_written_after_cuts("late", std::time::Duration::from_secs(5))
            .await
            .expect("kept");
        assert_eq!(proxy.written_after_cuts(), b"late");
        // It read the end, and closed: when is kept.
        proxy
            .wait_closed_after_cuts(1, std::time::Duration::from_secs(5))
            .await
            .expect("the close seen");
        assert!(proxy.closed_after_cuts()[0] > cut);
    }
}
