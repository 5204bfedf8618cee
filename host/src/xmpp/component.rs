//! XEP-0114: the component link to the local server, with reconnection.
//!
//! Stanzas cross this module's boundary in the `jabber:client` namespace;
//! on the wire they are `jabber:component:accept`.

use super::{NS_CLIENT, NS_COMPONENT, rename_ns};
use futures::{SinkExt, StreamExt};
use minidom::Element;
use sha1::{Digest, Sha1};
use std::borrow::Cow;
use std::time::Duration;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_xmpp::xmlstream::{ReadError, StreamHeader, Timeouts, XmlStream, initiate_stream};
use tracing::{debug, error, info, trace, warn};

mod ack;
use ack::Unconfirmed;

type Stream = XmlStream<BufStream<VersionPatch<TcpStream>>, Element>;

/// XEP-0114 stream headers carry no `version`, which tokio-xmpp's stream
/// parser requires; this reader adds `version='1.0'` to the server's header
/// and is transparent after it.
pub struct VersionPatch<S> {
    inner: S,
    scanned: Vec<u8>,
    ready: Vec<u8>,
    done: bool,
}

impl<S> VersionPatch<S> {
    /// Wraps a byte stream.
    pub fn new(inner: S) -> Self {
        VersionPatch {
            inner,
            scanned: Vec::new(),
            ready: Vec::new(),
            done: false,
        }
    }

    fn scan(&mut self) {
        const TAG: &[u8] = b"<stream:stream";
        if let Some(pos) = self.scanned.windows(TAG.len()).position(|w| w == TAG) {
            let at = pos + TAG.len();
            let rest = self.scanned.split_off(at);
            self.ready.append(&mut self.scanned);
            self.ready.extend_from_slice(b" version='1.0'");
            self.ready.extend_from_slice(&rest);
            self.done = true;
        } else if self.scanned.len() > 4096 {
            // No header where one must be: pass it on and let the parser say why.
            self.ready.append(&mut self.scanned);
            self.done = true;
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for VersionPatch<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 1024];
            let mut tmp_buf = tokio::io::ReadBuf::new(&mut tmp);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut tmp_buf) {
                Poll::Ready(Ok(())) if tmp_buf.filled().is_empty() => {
                    // End of stream before the header: hand over what there is.
                    this.ready.append(&mut this.scanned);
                    this.done = true;
                    if this.ready.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => {
                    this.scanned.extend_from_slice(tmp_buf.filled());
                    this.scan();
                }
                other => return other,
            }
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for VersionPatch<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the link tells the rest of the gateway.
#[derive(Debug)]
pub enum LinkEvent {
    /// The handshake succeeded (first time or after a reconnect).
    Connected,
    /// The link dropped; it is being reconnected.
    Down,
    /// A stanza from the local server, in `jabber:client`.
    Stanza(Element),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The gateway's domain.
    pub jid: String,
    /// The server's component port, `host:port`.
    pub server: String,
    /// The shared secret.
    pub secret: crate::config::Secret,
    /// Where keepalive pings go (a local domain).
    pub ping_to: String,
    /// Stanzas kept until a ping's answer proves they arrived.
    pub unconfirmed_limit: usize,
}

/// XEP-0114 section 3: handshake = hex(SHA-1(stream id + secret)).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

async fn connect(cfg: &LinkConfig) -> anyhow::Result<Stream> {
    let tcp = TcpStream::connect(&cfg.server).await?;
    // Nagle costs ~40-90 ms per round trip on a stanza link (docs/dependencies.md).
    tcp.set_nodelay(true)?;
    let header = StreamHeader {
        to: Some(Cow::Owned(cfg.jid.clone())),
        from: None,
        id: None,
    };
    let timeouts = Timeouts {
        read_timeout: Duration::from_secs(90),
        response_timeout: Duration::from_secs(30),
    };
    let mut pending = initiate_stream(
        BufStream::new(VersionPatch::new(tcp)),
        NS_COMPONENT,
        header,
        timeouts,
    )
    .await?;
    let id = pending
        .take_header()
        .id
        .ok_or_else(|| anyhow::anyhow!("the server sent no stream id"))?
        .into_owned();
    let mut stream: Stream = pending.skip_features();
    let digest = handshake_digest(&id, &cfg.secret.0);
    let hs = Element::builder("handshake", NS_COMPONENT)
        .append(digest)
        .build();
    stream.send(&hs).await?;
    match stream.next().await {
        Some(Ok(el)) if el.name() == "handshake" => Ok(stream),
        Some(Ok(el)) => anyhow::bail!("handshake refused: {}", super::to_xml(&el)),
        Some(Err(e)) => anyhow::bail!("handshake failed: {e}"),
        None => anyhow::bail!("the server closed the stream during the handshake"),
    }
}

/// Opens the link once and closes it again (`pizzja check --connect`):
/// whether the server takes the handshake with the configured secret.
pub async fn probe(cfg: &LinkConfig) -> anyhow::Result<()> {
    let mut stream = connect(cfg).await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
    Ok(())
}

/// Whether an XMPP server answers at `addr` for `domain`: it must greet a
/// client stream header with stream features within `within`.
pub async fn greets(
    addr: std::net::SocketAddr,
    domain: &str,
    within: Duration,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let header = format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        );
        tcp.write_all(header.as_bytes()).await?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                anyhow::bail!("it closed the connection without greeting");
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("features") {
                return Ok(());
            }
            if text.contains("stream:error") || text.contains("<error") {
                anyhow::bail!("it answered with a stream error: {text}");
            }
            if seen.len() > 64 * 1024 {
                anyhow::bail!("it sent no stream features");
            }
        }
    };
    tokio::time::timeout(within, attempt)
        .await
        .map_err(|_| anyhow::anyhow!("no XMPP greeting within {within:?}"))?
}

/// Runs the link until `shutdown` turns true: connects, forwards stanzas
/// both ways, and reconnects with backoff (1 s doubling to 30 s) when the
/// link drops. What could not be written, or was written without proof of
/// arrival ([`Unconfirmed`]), is written again first after reconnecting.
pub async fn run(
    cfg: LinkConfig,
    events: mpsc::Sender<LinkEvent>,
    mut outbound: mpsc::Receiver<Element>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut unsent: std::collections::VecDeque<Element> = std::collections::VecDeque::new();
    let mut unconfirmed = Unconfirmed::new(cfg.unconfirmed_limit);
    let mut ping_seq = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut stream = tokio::select! {
            r = connect(&cfg) => match r {
                Ok(s) => s,
                Err(e) => {
                    error!(server = %cfg.server, error = %e, retry_in = ?backoff, "component link failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        info!(server = %cfg.server, jid = %cfg.jid, "component link up");
        backoff = Duration::from_secs(1);
        if events.send(LinkEvent::Connected).await.is_err() {
            return;
        }
        if !unsent.is_empty() {
            info!(
                count = unsent.len(),
                "writing again what the server may not have had"
            );
        }
        let mut lost = false;
        while let Some(el) = unsent.pop_front() {
            let wire = rename_ns(el.clone(), NS_CLIENT, NS_COMPONENT);
            if let Err(e) = stream.send(&wire).await {
                warn!(error = %e, "component link lost while resending");
                unsent.push_front(el);
                lost = true;
                break;
            }
            unconfirmed.wrote(el);
        }
        if lost {
            unsent = unconfirmed.take().into_iter().chain(unsent).collect();
            continue;
        }
        if let Some(ping) = unconfirmed.ping(&cfg, std::time::Instant::now())
            && stream.send(&ping).await.is_err()
        {
            unsent = unconfirmed.take();
            continue;
        }
        loop {
            let due = unconfirmed.due();
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
                    return;
                }
                // The ping that waited for its interval.
                _ = async {
                    match due {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(ping) = unconfirmed.ping(&cfg, std::time::Instant::now())
                        && let Err(e) = stream.send(&ping).await
                    {
                        warn!(error = %e, "component link lost");
                        break;
                    }
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(el)) => {
                        trace!(target: "pizzja::xml::component::in", xml = %super::to_logged_xml(&el));
                        if unconfirmed.answered(&el, &cfg.ping_to) {
                            if let Some(ping) = unconfirmed.ping(&cfg, std::time::Instant::now())
                                && let Err(e) = stream.send(&ping).await
                            {
                                warn!(error = %e, "component link lost");
                                break;
                            }
                            continue;
                        }
                        let el = rename_ns(el, NS_COMPONENT, NS_CLIENT);
                        if events.send(LinkEvent::Stanza(el)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(ReadError::SoftTimeout)) => {
                        // Quiet link: a XEP-0199 ping makes the server answer.
                        ping_seq += 1;
                        let ping = keepalive(&cfg, ping_seq);
                        if let Err(e) = stream.send(&ping).await {
                            warn!(error = %e, "component link lost");
                            break;
                        }
                    }
                    Some(Err(ReadError::ParseError(e))) => {
                        warn!(error = %e, "dropping unparsable element from the server");
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "component link lost");
                        break;
                    }
                    None => {
                        warn!("component link closed by the server");
                        break;
                    }
                },
                out = outbound.recv() => {
                    let Some(el) = out else { return };
                    let wire = rename_ns(el.clone(), NS_CLIENT, NS_COMPONENT);
                    trace!(target: "pizzja::xml::component::out", xml = %super::to_logged_xml(&wire));
                    if let Err(e) = stream.send(&wire).await {
                        warn!(error = %e, "component link lost while sending");
                        unsent.push_back(el);
                        break;
                    }
                    unconfirmed.wrote(el);
                    if let Some(ping) = unconfirmed.ping(&cfg, std::time::Instant::now())
                        && let Err(e) = stream.send(&ping).await
                    {
                        warn!(error = %e, "component link lost");
                        break;
                    }
                }
            }
        }
        // What no answer proved arrived goes first after the reconnect,
        // before what could not be written at all.
        unsent = unconfirmed.take().into_iter().chain(unsent).collect();
        if events.send(LinkEvent::Down).await.is_err() {
            return;
        }
        debug!("reconnecting component link");
    }
}

/// Keepalive ids start with this; answers to them are dropped quietly.
pub const KEEPALIVE_PREFIX: &str = "pizzja-keepalive-";

fn keepalive(cfg: &LinkConfig, seq: u64) -> Element {
    let xml = format!(
        "<iq xmlns='{NS_COMPONENT}' type='get' id='{KEEPALIVE_PREFIX}{seq}' from='{}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        cfg.jid, cfg.ping_to
    );
    xml.parse().expect("keepalive ping is well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn version_patch_adds_the_version_to_the_first_header_only() {
        use tokio::io::AsyncReadExt;
        let header = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='x'><handshake/><stream:stream/>";
        // Split delivery: the tag arrives across reads.
        let (mut a, b) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in header.as_bytes().chunks(5) {
                a.write_all(chunk).await.expect("write");
            }
        });
        let mut patched = VersionPatch::new(b);
        let mut out = String::new();
        patched.read_to_string(&mut out).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(
            out,
            header.replacen("<stream:stream", "<stream:stream version='1.0'", 1)
        );
    }

    #[test]
    fn handshake_is_hex_sha1_of_id_and_secret() {
        // Computed independently: python3 -c "hashlib.sha1(b'3BF96D32test').hexdigest()"
        assert_eq!(
            handshake_digest("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
    }
}
