//! Foreign sessions: one client connection per (account, resource A), with
//! our own connector (TCP_NODELAY, static hosts, STARTTLS with our own
//! roots), a deadline on login, and failures reported instead of retried
//! forever (DEPENDENCY-FACTS.md, tokio-xmpp pitfalls 2-5).

use super::scram::{SaltedCache, ScramClient, ScramError, ScramHash};
use crate::config::{ForeignTls, Secret};
use ::sasl::common::ChannelBinding;
use futures::{SinkExt, StreamExt};
use minidom::Element;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufStream};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls;
use tokio_xmpp::connect::{DnsConfig, ServerConnector};
use tokio_xmpp::error::{AuthError, ProtocolError};
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::parsers::{ns, sasl, starttls, stream_features::StreamFeatures};
use tokio_xmpp::stanzastream::{Connection, Event, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::{
    InitiatingStream, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts, XmppStream,
    XmppStreamElement, initiate_stream,
};
use tokio_xmpp::{Error as XmppError, Stanza};
use tracing::{debug, info, warn};

/// Byte streams a connector can hand out (plain TCP or TLS over it).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects foreign sessions as `[foreign]` says.
#[derive(Clone)]
pub struct Connector {
    /// A static address for the domain, instead of DNS SRV.
    pub addr: Option<SocketAddr>,
    /// STARTTLS or plaintext.
    pub tls: ForeignTls,
    /// Trust roots for STARTTLS.
    pub tls_config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The rustls client configuration: the system's roots plus `ca_file`.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use anyhow::Context;
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // Unparsable system certificates are skipped, as every client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("failed to read `foreign.ca_file` `{}`", path.display()))?;
        for cert in certs {
            let cert = cert.with_context(|| format!("bad certificate in `{}`", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("unusable certificate in `{}`", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS provider has no usable protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Buffers of a foreign connection. tokio's default is 8 KiB each way, and
/// its read buffer is zeroed (touched) when made: 16 KiB of the ~66 KiB an
/// idle session cost (BENCHMARKS.md). Stanzas are mostly far smaller; a
/// larger one takes a few more reads.
const READ_BUFFER: usize = 2048;
const WRITE_BUFFER: usize = 2048;

fn buffered(io: Box<dyn Io>) -> BufStream<Box<dyn Io>> {
    BufStream::with_capacity(READ_BUFFER, WRITE_BUFFER, io)
}

fn io_error(e: impl std::fmt::Display) -> XmppError {
    XmppError::Io(std::io::Error::other(e.to_string()))
}

impl ServerConnector for Connector {
    type Stream = BufStream<Box<dyn Io>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), XmppError> {
        let domain = jid.domain().as_str().to_string();
        let tcp = match self.addr {
            Some(addr) => TcpStream::connect(addr).await?,
            None => DnsConfig::srv_default_client(&domain).resolve().await?,
        };
        tcp.set_nodelay(true)?;
        let header = || StreamHeader {
            to: Some(Cow::Owned(domain.clone())),
            from: None,
            id: None,
        };
        match self.tls {
            ForeignTls::Plaintext => {
                let io: Box<dyn Io> = Box::new(tcp);
                let stream = initiate_stream(buffered(io), ns, header(), timeouts).await?;
                Ok((stream, ChannelBinding::None))
            }
            ForeignTls::Required => {
                let stream = initiate_stream(BufStream::new(tcp), ns, header(), timeouts).await?;
                let (features, mut stream) = stream.recv_features::<XmppStreamElement>().await?;
                if !features.can_starttls() {
                    return Err(ProtocolError::NoTls.into());
                }
                stream
                    .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                        starttls::Request,
                    )))
                    .await?;
                loop {
                    match stream.next().await {
                        Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                        Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
                        Some(Err(ReadError::HardError(e))) => return Err(e.into()),
                        Some(Err(e)) => return Err(io_error(e)),
                        None => return Err(XmppError::Disconnected),
                    }
                }
                let tcp = stream.into_inner().into_inner();
                let name =
                    rustls::pki_types::ServerName::try_from(domain.clone()).map_err(io_error)?;
                let tls = tokio_rustls::TlsConnector::from(self.tls_config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| io_error(format!("TLS with {domain} failed: {e}")))?;
                let io: Box<dyn Io> = Box::new(tls);
                let stream = initiate_stream(buffered(io), ns, header(), timeouts).await?;
                Ok((stream, ChannelBinding::None))
            }
        }
    }
}

/// What a login proves itself with: the password, and the SCRAM salted
/// password already derived from it, if any.
#[derive(Clone, Debug)]
pub struct LoginSecret {
    /// F's password.
    pub password: Secret,
    /// The account's salted passwords (see [`scram`](super::scram)).
    pub salted: SaltedCache,
}

type ForeignStream = XmppStream<BufStream<Box<dyn Io>>>;

/// Authenticates (SASL) without binding a resource: the registration check,
/// and the first half of every session's login.
pub async fn login(
    connector: &Connector,
    jid: &Jid,
    secret: &LoginSecret,
    timeouts: Timeouts,
) -> Result<(StreamFeatures, ForeignStream), XmppError> {
    let username = jid.node().map(|n| n.as_str()).unwrap_or_default();
    let (stream, _binding) = connector.connect(jid, ns::JABBER_CLIENT, timeouts).await?;
    let (features, stream) = stream.recv_features().await?;
    let stream = authenticate(stream, &features.sasl_mechanisms, username, secret).await?;
    let header = StreamHeader {
        to: Some(Cow::Owned(jid.domain().to_string())),
        from: None,
        id: None,
    };
    let stream = stream.send_header(header).await?;
    Ok(stream.recv_features().await?)
}

/// SASL (RFC 6120 section 6): SCRAM-SHA-256, else SCRAM-SHA-1, reusing the
/// account's salted password; PLAIN only when the server offers neither,
/// as tokio-xmpp's own login did. Never ANONYMOUS, which tokio-xmpp falls
/// back to: the session would not be the registered account.
async fn authenticate(
    mut stream: ForeignStream,
    offered: &std::collections::BTreeSet<String>,
    username: &str,
    secret: &LoginSecret,
) -> Result<InitiatingStream<BufStream<Box<dyn Io>>>, XmppError> {
    let scram = [ScramHash::Sha256, ScramHash::Sha1]
        .into_iter()
        .find(|h| offered.contains(h.mechanism()));
    let Some(hash) = scram else {
        if !offered.contains("PLAIN") {
            return Err(AuthError::NoMechanism.into());
        }
        let initial = format!("\0{username}\0{}", secret.password.0).into_bytes();
        send_sasl(
            &mut stream,
            sasl::Nonza::Auth(sasl::Auth {
                mechanism: sasl::Mechanism::Plain,
                data: initial,
            }),
        )
        .await?;
        return match next_sasl(&mut stream).await? {
            sasl::Nonza::Success(_) => Ok(stream.initiate_reset()),
            other => Err(refused(other)),
        };
    };
    let mechanism = match hash {
        ScramHash::Sha1 => sasl::Mechanism::ScramSha1,
        ScramHash::Sha256 => sasl::Mechanism::ScramSha256,
    };
    let mut client = ScramClient::new(hash, username);
    let initial = client.first();
    send_sasl(
        &mut stream,
        sasl::Nonza::Auth(sasl::Auth {
            mechanism,
            data: initial,
        }),
    )
    .await?;
    let server_first = match next_sasl(&mut stream).await? {
        sasl::Nonza::Challenge(c) => client.server_first(&c.data).map_err(scram_error)?,
        other => return Err(refused(other)),
    };
    let salted = secret
        .salted
        .salted(hash, &secret.password.0, &server_first)
        .await;
    let last = client.client_final(&server_first, &salted);
    send_sasl(
        &mut stream,
        sasl::Nonza::Response(sasl::Response { data: last }),
    )
    .await?;
    match next_sasl(&mut stream).await? {
        sasl::Nonza::Success(s) => client.verify(&s.data).map_err(scram_error)?,
        // Some servers send the final message as a challenge (RFC 6120
        // section 6.3.10 allows both) and succeed after an empty response.
        sasl::Nonza::Challenge(c) => {
            client.verify(&c.data).map_err(scram_error)?;
            send_sasl(
                &mut stream,
                sasl::Nonza::Response(sasl::Response { data: Vec::new() }),
            )
            .await?;
            match next_sasl(&mut stream).await? {
                sasl::Nonza::Success(_) => {}
                other => return Err(refused(other)),
            }
        }
        other => return Err(refused(other)),
    }
    Ok(stream.initiate_reset())
}

async fn send_sasl(stream: &mut ForeignStream, nonza: sasl::Nonza) -> Result<(), XmppError> {
    Ok(stream.send(&XmppStreamElement::Sasl(nonza)).await?)
}

/// The next SASL element; anything else ends the login.
async fn next_sasl(stream: &mut ForeignStream) -> Result<sasl::Nonza, XmppError> {
    loop {
        match stream
            .next()
            .await
            .map(|r| r.and_then(|e| e.into_read_error()))
        {
            Some(Ok(XmppStreamElement::Sasl(nonza))) => return Ok(nonza),
            Some(Ok(other)) => {
                return Err(io_error(format!(
                    "unexpected stream element during SASL negotiation: {other:?}"
                )));
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::ParseError(e))) => return Err(io_error(e)),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(XmppError::Disconnected);
            }
        }
    }
}

/// The server said no (`<failure/>`), or answered out of turn.
fn refused(nonza: sasl::Nonza) -> XmppError {
    match nonza {
        sasl::Nonza::Failure(f) => AuthError::Fail(f.defined_condition).into(),
        other => io_error(format!("unexpected SASL element: {other:?}")),
    }
}

/// A SCRAM exchange that failed on our side counts as a refused login.
fn scram_error(e: ScramError) -> XmppError {
    use ::sasl::client::MechanismError as M;
    warn!(error = %e, "SCRAM login refused");
    let as_sasl = match e {
        ScramError::Nonce => M::NoServerNonce,
        ScramError::Signature => M::InvalidSignatureInSuccessResponse,
        ScramError::Server(_)
        | ScramError::Malformed(_)
        | ScramError::Extension
        | ScramError::WeakIterations(_)
        | ScramError::TooManyIterations(_) => M::CannotDecodeChallenge,
    };
    AuthError::Sasl(as_sasl).into()
}

/// Why a login did not work, in the words of RFC 6120 conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// The server refused the credentials.
    NotAuthorized(String),
    /// The server could not be reached or did not answer in time.
    Unreachable(String),
}

impl std::fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginFailure::NotAuthorized(why) => write!(f, "not-authorized: {why}"),
            LoginFailure::Unreachable(why) => write!(f, "remote-server-timeout: {why}"),
        }
    }
}

fn classify(e: &XmppError) -> LoginFailure {
    match e {
        XmppError::Auth(AuthError::Fail(_) | AuthError::Sasl(_) | AuthError::NoMechanism) => {
            LoginFailure::NotAuthorized(e.to_string())
        }
        other => LoginFailure::Unreachable(other.to_string()),
    }
}

/// Checks credentials with one real login, within `deadline`. A salted
/// password it derives stays in `secret`'s cache, for the registration to
/// keep.
pub async fn check_credentials(
    connector: &Connector,
    jid: &Jid,
    secret: &LoginSecret,
    deadline: Duration,
) -> Result<(), LoginFailure> {
    match tokio::time::timeout(deadline, login(connector, jid, secret, Timeouts::tight())).await {
        Ok(Ok((_, mut stream))) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(LoginFailure::Unreachable(format!(
            "no login within {deadline:?}"
        ))),
    }
}

/// A stanza to send, with the local stanza to bounce if it cannot be.
#[derive(Debug)]
pub struct Outgoing {
    /// The stanza for the foreign server.
    pub stanza: Element,
    /// What the controller sent, answered with an error on failure.
    pub origin: Option<Element>,
}

/// Commands from the account to its session.
#[derive(Debug)]
pub enum Command {
    /// Send (queued while logging in).
    Send(Box<Outgoing>),
    /// Close cleanly.
    Close,
}

/// Reports from a session to its account.
#[derive(Debug)]
pub enum Report {
    /// Bound and usable (first time, or after a reconnect that lost state).
    Online,
    /// Lost the connection; reconnecting.
    Reconnecting(String),
    /// Resumed without loss (XEP-0198).
    Resumed,
    /// Could not log in; the stanzas that were waiting come back.
    Failed {
        /// Why.
        reason: LoginFailure,
        /// Stanzas never sent.
        unsent: Vec<Outgoing>,
    },
    /// A stanza arrived (in `jabber:client`).
    Stanza(Element),
    /// A stanza could not be sent (not a valid stanza for the client stream).
    Rejected(Outgoing, String),
    /// Closed on request.
    Closed,
}

/// Parameters of one session.
pub struct SessionParams {
    /// F/A.
    pub jid: FullJid,
    /// F's password and what was derived from it.
    pub secret: LoginSecret,
    /// How to connect.
    pub connector: Connector,
    /// Deadline for the first login.
    pub login_timeout: Duration,
    /// Stanzas that may wait while logging in.
    pub queue_limit: usize,
    /// Logins (TCP, SASL, bind) in flight across the whole gateway: a login
    /// storm after a restart must not flatten the foreign server.
    pub logins: Arc<tokio::sync::Semaphore>,
}

/// Starts a session; reports come through `reports` as `(tag, Report)`.
pub fn spawn<T: Clone + Send + Sync + 'static>(
    params: SessionParams,
    tag: T,
    reports: mpsc::UnboundedSender<(T, Report)>,
) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(params.queue_limit.max(1));
    tokio::spawn(run(params, rx, move |r| {
        let _ = reports.send((tag.clone(), r));
    }));
    tx
}

/// Logs in, retrying transient failures until `deadline`; a refused
/// password ends it at once.
async fn first_login(
    params: &SessionParams,
    deadline: tokio::time::Instant,
) -> Result<Connection, LoginFailure> {
    let identity = Jid::from(params.jid.clone());
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = login(
            &params.connector,
            &identity,
            &params.secret,
            Timeouts::tight(),
        );
        let failure = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok((features, stream))) => {
                return Ok(Connection {
                    stream: stream.box_stream(),
                    features,
                    identity,
                });
            }
            Ok(Err(e)) => classify(&e),
            Err(_) => {
                let why = format!("no login within {:?}", params.login_timeout);
                return Err(LoginFailure::Unreachable(why));
            }
        };
        let fatal = matches!(failure, LoginFailure::NotAuthorized(_));
        if fatal || tokio::time::Instant::now() + delay >= deadline {
            return Err(failure);
        }
        debug!(jid = %params.jid, %failure, "foreign login attempt failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn run(
    params: SessionParams,
    mut commands: mpsc::Receiver<Command>,
    report: impl Fn(Report),
) {
    let jid = params.jid.clone();

    // Logging in: queue what controllers send, bounded, until logged in or
    // failed. tokio-xmpp's own reconnector would retry a bad password
    // forever and say nothing (DEPENDENCY-FACTS.md, pitfall 4). The login
    // deadline starts once a login slot is free: waiting for one is the
    // gateway's own queue, not the foreign server being slow.
    let mut waiting: VecDeque<Outgoing> = VecDeque::new();
    let logging_in = async {
        let permit = params.logins.clone().acquire_owned().await.ok();
        let deadline = tokio::time::Instant::now() + params.login_timeout;
        (first_login(&params, deadline).await, permit, deadline)
    };
    tokio::pin!(logging_in);
    let (connection, permit, deadline) = loop {
        tokio::select! {
            result = &mut logging_in => match result {
                (Ok(conn), permit, deadline) => break (conn, permit, deadline),
                (Err(reason), ..) => {
                    warn!(%jid, %reason, "foreign login failed");
                    report(Report::Failed { reason, unsent: waiting.into() });
                    return;
                }
            },
            cmd = commands.recv() => match cmd {
                Some(Command::Send(out)) => queue(&mut waiting, *out, params.queue_limit, &report),
                Some(Command::Close) | None => {
                    report(Report::Closed);
                    return;
                }
            },
        }
    };

    // Authenticated: StanzaStream binds the resource and owns the stream
    // from here, calling the reconnector whenever the connection drops.
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<LoginFailure>();
    let mut first = Some(connection);
    // Connections handed over since the session was last up. After a server
    // restart, XEP-0198 resumption fails and Prosody 0.12 answers
    // `<failed xmlns='urn:xmpp:sm:3'/>` without `h`, which xmpp-parsers
    // rejects: tokio-xmpp then drops the connection and tries to resume
    // again, forever. So only the first reconnect offers stream management
    // (a cut socket still resumes); later ones bind afresh.
    let handed = Arc::new(AtomicU32::new(0));
    let handed_in_reconnector = handed.clone();
    let connector = params.connector.clone();
    let secret = params.secret.clone();
    let logins = params.logins.clone();
    let identity = Jid::from(jid.clone());
    let reconnector = Box::new(
        move |_: Option<String>, slot: oneshot::Sender<Connection>| {
            if let Some(conn) = first.take() {
                let _ = slot.send(conn);
                return;
            }
            let (connector, secret, identity, fail_tx, logins) = (
                connector.clone(),
                secret.clone(),
                identity.clone(),
                fail_tx.clone(),
                logins.clone(),
            );
            let without_sm = handed_in_reconnector.fetch_add(1, Ordering::SeqCst) >= 1;
            tokio::spawn(async move {
                // Keep trying while the session is wanted (SPEC section 7): the
                // account closes it when its controllers leave. The slot is
                // dropped only once nobody listens any more, since tokio-xmpp's
                // worker treats a dropped slot as fatal.
                let mut delay = Duration::from_secs(1);
                loop {
                    // A server restart drops every session at once: reconnects
                    // queue for the same login slots as first logins.
                    let permit = logins.acquire().await;
                    let attempt = login(&connector, &identity, &secret, Timeouts::tight()).await;
                    drop(permit);
                    match attempt {
                        Ok((mut features, stream)) => {
                            if without_sm {
                                features.stream_management = None;
                            }
                            let conn = Connection {
                                stream: stream.box_stream(),
                                features,
                                identity,
                            };
                            let _ = slot.send(conn);
                            return;
                        }
                        Err(e) => {
                            if fail_tx.send(classify(&e)).is_err() {
                                return;
                            }
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            });
        },
    );
    let mut stream = StanzaStream::new(reconnector, params.queue_limit.max(1));

    // Binding the resource, still under the login deadline.
    let bound = loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Event::Stream(StreamEvent::Reset { .. })) => break Ok(()),
                Some(Event::Stream(_)) => {}
                Some(Event::Stanza(s)) => report(Report::Stanza(Element::from(s))),
                None => break Err(LoginFailure::Unreachable("the stream ended while binding".into())),
            },
            cmd = commands.recv() => match cmd {
                Some(Command::Send(out)) => queue(&mut waiting, *out, params.queue_limit, &report),
                Some(Command::Close) | None => {
                    stream.close().await;
                    report(Report::Closed);
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let why = format!("resource not bound within {:?}", params.login_timeout);
                break Err(LoginFailure::Unreachable(why));
            }
        }
    };
    if let Err(reason) = bound {
        warn!(%jid, %reason, "foreign login failed");
        drop(fail_rx);
        stream.close().await;
        report(Report::Failed {
            reason,
            unsent: waiting.into(),
        });
        return;
    }
    drop(permit);
    info!(%jid, "foreign session online");
    report(Report::Online);
    for out in waiting {
        send(&stream, out, &report).await;
    }

    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Event::Stanza(s)) => report(Report::Stanza(Element::from(s))),
                Some(Event::Stream(StreamEvent::Reset { .. })) => {
                    handed.store(0, Ordering::SeqCst);
                    report(Report::Online)
                }
                Some(Event::Stream(StreamEvent::Suspended)) => {
                    report(Report::Reconnecting("connection lost".into()))
                }
                Some(Event::Stream(StreamEvent::Resumed)) => {
                    handed.store(0, Ordering::SeqCst);
                    report(Report::Resumed)
                }
                None => {
                    let reason = LoginFailure::Unreachable("the foreign stream ended".into());
                    report(Report::Failed { reason, unsent: vec![] });
                    return;
                }
            },
            f = fail_rx.recv() => if let Some(f) = f {
                warn!(%jid, failure = %f, "foreign reconnect attempt failed");
                report(Report::Reconnecting(f.to_string()));
            },
            cmd = commands.recv() => match cmd {
                Some(Command::Send(out)) => send(&stream, *out, &report).await,
                Some(Command::Close) | None => {
                    drop(fail_rx);
                    stream.close().await;
                    info!(%jid, "foreign session closed");
                    report(Report::Closed);
                    return;
                }
            },
        }
    }
}

fn queue(waiting: &mut VecDeque<Outgoing>, out: Outgoing, limit: usize, report: &impl Fn(Report)) {
    if waiting.len() >= limit {
        let why = "too many stanzas waiting for the foreign login".to_string();
        report(Report::Rejected(out, why));
    } else {
        waiting.push_back(out);
    }
}

async fn send(stream: &StanzaStream, out: Outgoing, report: &impl Fn(Report)) {
    match Stanza::try_from(out.stanza.clone()) {
        Ok(stanza) => {
            stream.send(Box::new(stanza)).await;
        }
        Err(e) => report(Report::Rejected(out, format!("not a valid stanza: {e}"))),
    }
}
