//! Logging in to a foreign server: our own connector (TCP_NODELAY, static
//! hosts, STARTTLS with our own roots), SASL with SCRAM whose salted
//! password is kept, and failures classified as RFC 6120 conditions instead
//! of retried for ever (docs/dependencies.md, tokio-xmpp pitfalls 3-5).

use super::scram::{Counters, SaltedCache, ScramClient, ScramError, ScramHash};
use crate::config::{ForeignTls, Secret};
use ::sasl::common::ChannelBinding;
use futures::{SinkExt, StreamExt};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_xmpp::Error as XmppError;
use tokio_xmpp::connect::{DnsConfig, ServerConnector};
use tokio_xmpp::error::{AuthError, ProtocolError};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::{ns, sasl, starttls, stream_features::StreamFeatures};
use tokio_xmpp::xmlstream::{
    InitiatingStream, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts, XmppStream,
    XmppStreamElement, initiate_stream,
};
use tracing::warn;

/// Byte streams a connector can hand out (plain TCP or TLS over it).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects foreign sessions as `[foreign]` says.
#[derive(Clone)]
pub struct Connector {
    /// A static address for the domain, instead of DNS SRV.
    pub addr: Option<SocketAddr>,
    /// Where SRV answers come from.
    pub resolver: super::dns::Resolver,
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

/// How foreign sessions are opened, gateway-wide (`[foreign]`), and what
/// every login shares: the login slots and the SCRAM counters.
#[derive(Clone)]
pub struct Dialer {
    /// Static addresses for foreign domains, instead of DNS SRV.
    pub hosts: BTreeMap<String, SocketAddr>,
    /// Where SRV answers come from.
    pub resolver: super::dns::Resolver,
    /// STARTTLS or plaintext.
    pub tls: ForeignTls,
    /// Trust roots for STARTTLS.
    pub tls_config: Arc<rustls::ClientConfig>,
    /// Deadline for a login.
    pub login_timeout: Duration,
    /// Stanzas that may wait for one foreign session.
    pub queue_limit: usize,
    /// Logins (TCP, SASL, bind) in flight across the whole gateway: a login
    /// storm after a restart must not flatten the foreign server.
    pub logins: Arc<tokio::sync::Semaphore>,
    /// How many login slots there are in all.
    pub max_logins: usize,
    /// SCRAM salted passwords derived and reused.
    pub scram: Arc<Counters>,
}

impl Dialer {
    /// How to reach `domain`.
    pub fn connector(&self, domain: &str) -> Connector {
        Connector {
            addr: self.hosts.get(domain).copied(),
            resolver: self.resolver.clone(),
            tls: self.tls,
            tls_config: self.tls_config.clone(),
        }
    }

    /// Logins running now.
    pub fn logins_in_flight(&self) -> usize {
        self.max_logins - self.logins.available_permits()
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

impl Connector {
    /// TLS with `domain`'s server over `tcp`, its certificate verified for
    /// `domain`.
    async fn tls(
        &self,
        domain: &str,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, XmppError> {
        let name = rustls::pki_types::ServerName::try_from(domain.to_string()).map_err(io_error)?;
        tokio_rustls::TlsConnector::from(self.tls_config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| io_error(format!("TLS with {domain} failed: {e}")))
    }

    /// Connects to `domain`'s server where DNS says it is (see
    /// [`super::dns`]), trying each target in order; whether it speaks TLS
    /// from the first byte. Direct TLS only when TLS is required.
    async fn reach(&self, domain: &str) -> Result<(TcpStream, bool), XmppError> {
        let direct_allowed = self.tls == ForeignTls::Required;
        let targets = super::dns::targets(
            self.resolver.0.as_ref(),
            domain,
            direct_allowed,
            &mut super::dns::random_pick,
        )
        .await;
        let mut last = None;
        for target in targets {
            match DnsConfig::no_srv(&target.host, target.port).resolve().await {
                Ok(tcp) => return Ok((tcp, target.direct_tls)),
                Err(e) => {
                    tracing::debug!(domain, host = %target.host, port = target.port, error = %e, "could not connect; trying the next target");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(XmppError::Disconnected))
    }
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
        let (tcp, direct_tls) = match self.addr {
            Some(addr) => (TcpStream::connect(addr).await?, false),
            None => self.reach(&domain).await?,
        };
        tcp.set_nodelay(true)?;
        let header = || StreamHeader {
            to: Some(Cow::Owned(domain.clone())),
            from: None,
            id: None,
        };
        if direct_tls {
            let tls = self.tls(&domain, tcp).await?;
            let io: Box<dyn Io> = Box::new(tls);
            let stream = initiate_stream(buffered(io), ns, header(), timeouts).await?;
            return Ok((stream, ChannelBinding::None));
        }
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
                let tls = self.tls(&domain, tcp).await?;
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

impl LoginFailure {
    /// The RFC 6120 condition for a registration that failed this way.
    pub fn condition(&self) -> &'static str {
        match self {
            LoginFailure::NotAuthorized(_) => "not-authorized",
            LoginFailure::Unreachable(_) => "remote-server-timeout",
        }
    }
}

pub(crate) fn classify(e: &XmppError) -> LoginFailure {
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
