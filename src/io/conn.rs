//! One HTTP/1.1 connection: DNS, TCP, optional TLS, and reads and writes bounded by idle
//! timeouts.
//!
//! Owns: resolving the host off the async thread, racing connects to every address (Happy
//! Eyeballs, RFC 8305), the TLS
//! handshake (rustls with the *ring* provider, webpki roots plus an optional private CA,
//! certificate verification always on), and turning IO errors into [`Failure`]s.
//! Must not: know OSS operations, sign, decide on retries, or reuse a connection after an error
//! (the caller drops it).
//!
//! Every wait is raced against a timer: connect and handshake against the connect timeout,
//! each individual read or write against the idle timeout. A transfer that keeps making
//! progress never times out; one that stalls for `idle` does.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;

use crate::proto::proxy::{
    eyeballs_order, parse_connect_answer, render_connect, ConnectAnswer, ProxyUrl, EYEBALLS_STAGGER,
};
use crate::proto::retry::{Failure, ProxyFailure};

/// One pending connection attempt.
type Attempt = std::pin::Pin<Box<dyn Future<Output = io::Result<Async<TcpStream>>> + Send>>;

/// Happy Eyeballs (RFC 8305): tries every address, families interleaved
/// ([`eyeballs_order`]), starting the next attempt after `stagger` or as soon as the previous
/// one fails, each attempt bounded by `limit`. The first to connect wins; the others are
/// dropped (closed). `None` when every attempt failed or timed out.
pub(crate) async fn race_connect(
    addrs: &[SocketAddr],
    stagger: Duration,
    limit: Duration,
) -> Option<(Async<TcpStream>, SocketAddr)> {
    let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    let order: Vec<SocketAddr> = eyeballs_order(&ips).into_iter().map(|i| addrs[i]).collect();
    let mut next = 0usize;
    let mut pending: Vec<(SocketAddr, Attempt)> = Vec::new();
    let mut timer = Timer::after(Duration::ZERO);
    std::future::poll_fn(move |cx| {
        use std::task::Poll;
        loop {
            // Start the next attempt when nothing is pending or the stagger elapsed.
            while next < order.len()
                && (pending.is_empty() || std::pin::Pin::new(&mut timer).poll(cx).is_ready())
            {
                let addr = order[next];
                next += 1;
                pending.push((
                    addr,
                    Box::pin(bounded(Async::<TcpStream>::connect(addr), limit)),
                ));
                timer.set_after(stagger);
            }
            let mut failed = false;
            let mut i = 0;
            while i < pending.len() {
                match pending[i].1.as_mut().poll(cx) {
                    Poll::Ready(Ok(s)) => return Poll::Ready(Some((s, pending[i].0))),
                    Poll::Ready(Err(e)) => {
                        log::debug!("connect {}: {e}", pending[i].0);
                        drop(pending.swap_remove(i));
                        failed = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            if pending.is_empty() && next >= order.len() {
                return Poll::Ready(None);
            }
            if failed && next < order.len() {
                // RFC 8305 §5: a failed attempt starts the next one at once.
                timer.set_after(Duration::ZERO);
                continue;
            }
            return Poll::Pending;
        }
    })
    .await
}

/// Builds the TLS client configuration: the Mozilla roots from `webpki-roots`, plus every
/// certificate in `extra_ca_pem` (a PEM bundle of private CAs) when given. Uses the *ring*
/// provider and rustls' safe default protocol versions (TLS 1.2 and 1.3). There is no way to
/// turn verification off.
///
/// Fails if the PEM cannot be parsed, contains no certificate, or a certificate is unusable as
/// a trust anchor.
pub fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut pinned = Vec::new();
    if let Some(pem) = extra_ca_pem {
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("CA bundle: cannot parse PEM: {e}"))?;
            pinned.push(cert.clone());
            roots.add(cert).map_err(|e| {
                format!(
                    "CA bundle: certificate {} is not a usable CA: {e}",
                    added + 1
                )
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(
                "CA bundle: no certificate found (expected -----BEGIN CERTIFICATE-----)".into(),
            );
        }
    }
    // ring's default provider, minus its private-key loader: the client never presents a
    // certificate (`with_no_client_auth`), and dropping the loader lets the linker drop ring's
    // RSA/ECDSA/Ed25519 signing code (~28 KB of the board binary).
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        key_provider: &NoClientKeys,
        ..rustls::crypto::ring::default_provider()
    });
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("TLS setup: {e}"))?;
    let verifier = Arc::new(Verifier { inner, pinned });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        // Not a relaxation: `Verifier` is webpki's verifier, plus one exception (a pinned
        // certificate, byte-identical to one the user gave, valid for the name and date).
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// webpki's server certificate verification, with errors that say what is wrong (issuer,
/// names, dates and the local clock) and one addition: a server certificate byte-identical to
/// one in `--ca-file` is accepted when webpki refuses it only for being a CA used as an end
/// entity (what `openssl req -x509` makes by default) or for its unknown issuer, and it is
/// valid for the server name and the current time. Handshake signatures are always checked
/// (by webpki) against the presented certificate's key.
#[derive(Debug)]
struct Verifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    /// The certificates of `--ca-file`, DER.
    pinned: Vec<CertificateDer<'static>>,
}

/// A certificate failure explained for a person (carried inside the rustls error).
#[derive(Debug)]
struct Explained(String);

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Explained {}

/// Whether webpki's `e` is one the pinning exception may override.
fn pin_may_override(e: &rustls::Error) -> bool {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => true,
        rustls::Error::InvalidCertificate(C::Other(o)) => matches!(
            o.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

/// One line saying why the certificate of `host` is refused.
fn explain(e: &rustls::Error, ee: &[u8], now: i64, host: &str, pinned: bool) -> String {
    use crate::proto::time::rfc1123;
    use crate::proto::x509;
    use rustls::CertificateError as C;
    let facts = x509::facts(ee);
    let clock = |nb: i64| {
        if x509::clock_probably_wrong(now, nb) {
            " (the local clock is probably wrong: a board without a real-time clock? set the \
             time or run NTP)"
        } else {
            ""
        }
    };
    let ce = match e {
        rustls::Error::InvalidCertificate(ce) => ce,
        other => return format!("TLS certificate of {host} refused: {other}"),
    };
    match ce {
        C::UnknownIssuer => {
            let issuer = facts.map(|f| f.issuer_cn).unwrap_or_default();
            format!(
                "unknown issuer: the TLS certificate of {host} was issued by \"{issuer}\", which \
                 is not a trusted CA (add that CA to --ca-file)"
            )
        }
        C::NotValidForNameContext { presented, .. } => {
            let names: Vec<String> = presented
                .iter()
                .take(8)
                .map(|n| n.chars().take(80).flat_map(char::escape_debug).collect())
                .collect();
            format!(
                "name mismatch: the TLS certificate is for {}, not {host}",
                names.join(", ")
            )
        }
        C::NotValidForName => format!("name mismatch: the TLS certificate is not for {host}"),
        C::ExpiredContext { time, not_after } => format!(
            "the TLS certificate of {host} expired on {}; the local clock says {}",
            rfc1123(not_after.as_secs() as i64),
            rfc1123(time.as_secs() as i64)
        ),
        C::NotValidYetContext { time, not_before } => {
            let nb = not_before.as_secs() as i64;
            format!(
                "the TLS certificate of {host} is not valid before {}; the local clock says {}{}",
                rfc1123(nb),
                rfc1123(time.as_secs() as i64),
                clock(nb)
            )
        }
        C::Expired | C::NotValidYet => match facts {
            Some(f) => format!(
                "the TLS certificate of {host} is valid from {} to {}; the local clock says {}{}",
                rfc1123(f.not_before),
                rfc1123(f.not_after),
                rfc1123(now),
                clock(f.not_before)
            ),
            None => format!("the TLS certificate of {host} is outside its validity dates"),
        },
        _ if pin_may_override(e) && !pinned => format!(
            "the TLS certificate of {host} is a CA certificate (CA:TRUE), refused as a server \
             certificate; if it is self-signed (openssl req -x509 makes such), put that very \
             certificate in --ca-file to pin it"
        ),
        other => format!("the TLS certificate of {host} is not trusted: {other:?}"),
    }
}

/// A certificate error carrying its explanation.
fn explained(msg: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(Explained(msg)),
    )))
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let e = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let host = server_name.to_str();
        let t = now.as_secs() as i64;
        let pinned = self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref());
        if pinned && pin_may_override(&e) {
            let name_ok = webpki::EndEntityCert::try_from(end_entity)
                .map(|c| c.verify_is_valid_for_subject_name(server_name).is_ok())
                .unwrap_or(false);
            let facts = crate::proto::x509::facts(end_entity);
            return match facts {
                _ if !name_ok => Err(explained(format!(
                    "name mismatch: the pinned TLS certificate is not for {host}"
                ))),
                Some(f) if f.not_before <= t && t <= f.not_after => {
                    Ok(rustls::client::danger::ServerCertVerified::assertion())
                }
                Some(f) => {
                    let ctx = if t < f.not_before {
                        rustls::CertificateError::NotValidYetContext {
                            time: now,
                            not_before: rustls::pki_types::UnixTime::since_unix_epoch(
                                Duration::from_secs(f.not_before.max(0) as u64),
                            ),
                        }
                    } else {
                        rustls::CertificateError::ExpiredContext {
                            time: now,
                            not_after: rustls::pki_types::UnixTime::since_unix_epoch(
                                Duration::from_secs(f.not_after.max(0) as u64),
                            ),
                        }
                    };
                    let e = rustls::Error::InvalidCertificate(ctx);
                    Err(explained(explain(&e, end_entity, t, &host, true)))
                }
                None => Err(explained(format!(
                    "the pinned TLS certificate of {host} cannot be read"
                ))),
            };
        }
        let msg = explain(&e, end_entity, t, &host, pinned);
        log::debug!("{msg}");
        Err(explained(msg))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The explanation of a failed handshake, for the error line: the certificate's
/// [`Explained`] text, or the rustls error for other handshake failures.
pub fn tls_detail(e: &io::Error) -> Option<String> {
    let tls = rustls_error(e)?;
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) = tls {
        if let Some(x) = o.0.downcast_ref::<Explained>() {
            return Some(x.0.clone());
        }
    }
    Some(format!("TLS handshake failed: {tls}"))
}

/// A [`rustls::crypto::KeyProvider`] that loads no keys (the client has no certificate).
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "client certificates are not supported".into(),
        ))
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Host name or IP literal (IPv6 with or without brackets). Also the TLS server name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS configuration, or `None` for plain HTTP.
    pub tls: Option<Arc<ClientConfig>>,
    /// Bound on the TCP connect to each address, and separately on the TLS handshake (and on
    /// the proxy's answer to `CONNECT`).
    pub connect_timeout: Duration,
    /// Tunnel through this HTTP proxy (`CONNECT`), or connect directly.
    pub proxy: Option<Proxy>,
}

/// An HTTP proxy to tunnel through with `CONNECT` (chosen by [`crate::proto::proxy::choose`]).
#[derive(Debug, Clone)]
pub struct Proxy {
    /// The proxy's address and credentials.
    pub url: ProxyUrl,
    /// TLS configuration for an `https://` proxy (its name verified like an endpoint's);
    /// `None` for an `http://` proxy.
    pub tls: Option<Arc<ClientConfig>>,
}

/// The transport under a [`Conn`].
enum Stream {
    /// Plain TCP.
    Plain(Async<TcpStream>),
    /// TLS over TCP (boxed: the rustls state is large).
    Tls(Box<TlsTcp>),
    /// TLS to the endpoint inside TLS to an `https://` proxy.
    TlsInTls(Box<futures_rustls::client::TlsStream<TlsTcp>>),
}

/// TLS over TCP.
type TlsTcp = futures_rustls::client::TlsStream<Async<TcpStream>>;

/// An open connection to one server. Drop it after any error.
pub struct Conn {
    stream: Stream,
    peer: SocketAddr,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("tls", &self.is_tls())
            .finish()
    }
}

/// Races `fut` against a timer of `limit`; the timer wins with [`io::ErrorKind::TimedOut`].
async fn bounded<T>(fut: impl Future<Output = io::Result<T>>, limit: Duration) -> io::Result<T> {
    fut.or(async {
        Timer::after(limit).await;
        Err(io::Error::from(io::ErrorKind::TimedOut))
    })
    .await
}

/// The rustls error inside `e`, if `e` wraps one (futures-rustls reports TLS failures as
/// `InvalidData` errors carrying the `rustls::Error`).
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Maps an IO error from a connection to a [`Failure`]. Certificate problems are
/// [`Failure::TlsCertificate`]; other TLS errors [`Failure::Tls`]; timeouts
/// [`Failure::TimedOut`]; refused or unreachable [`Failure::Connect`]; everything else means the
/// connection broke: [`Failure::Reset`].
pub fn classify_io(e: &io::Error) -> Failure {
    if let Some(tls) = rustls_error(e) {
        return match tls {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_)
            // No protocol version or cipher suite in common: no retry changes that.
            | rustls::Error::PeerIncompatible(_) => Failure::TlsCertificate,
            _ => Failure::Tls,
        };
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => Failure::TimedOut,
        K::ConnectionRefused
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable
        | K::AddrInUse => Failure::Connect,
        // A TLS record layer that is not TLS at all (e.g. an HTTP server on a TLS port).
        K::InvalidData => Failure::Tls,
        _ => Failure::Reset,
    }
}

/// The server name for TLS: `host` without IPv6 brackets.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Resolves `host` (on a blocking thread, bounded) and races connects to its addresses.
async fn tcp_connect(
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<(Async<TcpStream>, SocketAddr), Failure> {
    let host = bare_host(host).to_string();
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let name = host.clone();
            let lookup = smol::unblock(move || {
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>())
            });
            // Bounded too: a resolver can hang far longer than any sensible timeout.
            match bounded(lookup, limit.max(Duration::from_secs(10))).await {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => return Err(Failure::Dns),
                Err(e) => {
                    log::debug!("resolving {host}: {e}");
                    return Err(Failure::Dns);
                }
            }
        }
    };
    let (tcp, peer) = race_connect(&addrs, EYEBALLS_STAGGER, limit)
        .await
        .ok_or(Failure::Connect)?;
    if let Err(e) = tcp.get_ref().set_nodelay(true) {
        log::debug!("TCP_NODELAY on {peer}: {e}");
    }
    Ok((tcp, peer))
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    /// The failure, for the retry rules.
    pub failure: Failure,
    /// For a failed TLS handshake, what is wrong, for a person: unknown issuer (with its
    /// name), name mismatch (with the certificate's names), dates (with the local clock), a CA
    /// used as a server certificate (with the `--ca-file` pinning hint), or the handshake error.
    pub detail: Option<String>,
}

impl From<Failure> for ConnectError {
    fn from(failure: Failure) -> Self {
        ConnectError {
            failure,
            detail: None,
        }
    }
}

/// The TLS handshake over `io`, bounded by the connect timeout.
async fn handshake<S>(
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    io: S,
    spec: &ConnectSpec,
) -> Result<futures_rustls::client::TlsStream<S>, ConnectError>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let connector = futures_rustls::TlsConnector::from(config.clone());
    bounded(connector.connect(name, io), spec.connect_timeout)
        .await
        .map_err(|e| {
            log::debug!("TLS handshake for {}: {e}", spec.host);
            ConnectError {
                failure: classify_io(&e),
                detail: tls_detail(&e),
            }
        })
}

/// Asks the proxy on `io` for a tunnel to `host:port` and reads its answer, all within
/// `limit`. The answer head is bounded ([`crate::proto::proxy::MAX_ANSWER_HEAD`]); bytes
/// after it would belong to the endpoint, which never speaks first, so they are an error.
async fn open_tunnel<S>(
    io: &mut S,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<(), Failure>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let deadline = std::time::Instant::now() + limit;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let req = render_connect(proxy, host, port);
    bounded(io.write_all(&req), left())
        .await
        .map_err(|e| classify_io(&e))?;
    bounded(io.flush(), left())
        .await
        .map_err(|e| classify_io(&e))?;
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = bounded(io.read(&mut chunk), left())
            .await
            .map_err(|e| classify_io(&e))?;
        if n == 0 {
            log::debug!(
                "proxy {}:{} closed before answering CONNECT",
                proxy.host,
                proxy.port
            );
            return Err(Failure::Proxy(ProxyFailure::Malformed));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_connect_answer(&buf) {
            Ok(ConnectAnswer::Partial) => continue,
            Ok(ConnectAnswer::Open { head_len }) if head_len == buf.len() => return Ok(()),
            Ok(ConnectAnswer::Open { .. }) => {
                log::debug!("proxy sent bytes after its CONNECT answer");
                return Err(Failure::Proxy(ProxyFailure::Malformed));
            }
            Ok(ConnectAnswer::AuthRequired(status)) => {
                return Err(Failure::Proxy(ProxyFailure::AuthRequired(status)))
            }
            Ok(ConnectAnswer::Refused { status, reason, .. }) => {
                log::debug!("proxy refused CONNECT {host}:{port}: {status} {reason}");
                return Err(Failure::Proxy(ProxyFailure::Refused(status)));
            }
            Err(e) => {
                log::debug!("proxy {}:{}: {e}", proxy.host, proxy.port);
                return Err(Failure::Proxy(ProxyFailure::Malformed));
            }
        }
    }
}

impl Conn {
    /// Resolves `spec.host` (on a blocking thread), races connects to every address (Happy
    /// Eyeballs: a new attempt every 250 ms, each bounded by `spec.connect_timeout`), sets `TCP_NODELAY`, and performs the TLS handshake
    /// (also bounded by `connect_timeout`) when `spec.tls` is set.
    ///
    /// Failures: [`Failure::Dns`] when the name does not resolve; [`Failure::Connect`] when no
    /// address accepts (refused, unreachable, or the connect timed out); then the handshake's
    /// failure as classified by [`classify_io`] (a stalled handshake is [`Failure::TimedOut`]).
    pub async fn connect(spec: &ConnectSpec) -> Result<Conn, Failure> {
        Self::connect_explained(spec).await.map_err(|e| e.failure)
    }

    /// [`Conn::connect`], with the explanation of a failed TLS handshake (see
    /// [`ConnectError::detail`]) for the error line a person reads.
    pub async fn connect_explained(spec: &ConnectSpec) -> Result<Conn, ConnectError> {
        let server_name = match &spec.tls {
            Some(_) => Some(
                ServerName::try_from(bare_host(&spec.host).to_string())
                    .map_err(|_| Failure::Dns)?,
            ),
            None => None,
        };
        let Some(proxy) = &spec.proxy else {
            let (tcp, peer) = tcp_connect(&spec.host, spec.port, spec.connect_timeout).await?;
            let stream = match (&spec.tls, server_name) {
                (Some(config), Some(name)) => {
                    Stream::Tls(Box::new(handshake(config, name, tcp, spec).await?))
                }
                _ => Stream::Plain(tcp),
            };
            return Ok(Conn { stream, peer });
        };
        // Through a proxy: its own failures are named as the proxy's, never the endpoint's.
        let (tcp, peer) = tcp_connect(&proxy.url.host, proxy.url.port, spec.connect_timeout)
            .await
            .map_err(|f| match f {
                Failure::Dns | Failure::Connect => Failure::Proxy(ProxyFailure::Unreachable),
                f => f,
            })?;
        let host = bare_host(&spec.host);
        let stream = match &proxy.tls {
            None => {
                let mut tcp = tcp;
                open_tunnel(&mut tcp, &proxy.url, host, spec.port, spec.connect_timeout).await?;
                match (&spec.tls, server_name) {
                    (Some(config), Some(name)) => {
                        Stream::Tls(Box::new(handshake(config, name, tcp, spec).await?))
                    }
                    _ => Stream::Plain(tcp),
                }
            }
            Some(ptls) => {
                let pname = ServerName::try_from(proxy.url.host.clone())
                    .map_err(|_| Failure::Proxy(ProxyFailure::Unreachable))?;
                let mut outer = handshake(ptls, pname, tcp, spec).await?;
                open_tunnel(
                    &mut outer,
                    &proxy.url,
                    host,
                    spec.port,
                    spec.connect_timeout,
                )
                .await?;
                match (&spec.tls, server_name) {
                    (Some(config), Some(name)) => {
                        Stream::TlsInTls(Box::new(handshake(config, name, outer, spec).await?))
                    }
                    _ => Stream::Tls(Box::new(outer)),
                }
            }
        };
        Ok(Conn { stream, peer })
    }

    /// The address actually connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the TLS handshake resumed a session from this process's cache (the
    /// [`ClientConfig`] keeps one in memory, shared by every connection made with it), so a
    /// reconnect costs one round trip and no certificate verification. `false` for plain TCP.
    pub fn resumed(&self) -> bool {
        match &self.stream {
            Stream::Tls(s) => {
                s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
            Stream::TlsInTls(s) => {
                s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
            Stream::Plain(_) => false,
        }
    }

    /// True if the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_) | Stream::TlsInTls(_))
    }

    /// Writes all of `buf`. Each underlying write must make progress within `idle`.
    pub async fn write_all(&mut self, mut buf: &[u8], idle: Duration) -> Result<(), Failure> {
        while !buf.is_empty() {
            let n = match &mut self.stream {
                Stream::Plain(s) => bounded(s.write(buf), idle).await,
                Stream::Tls(s) => bounded(s.write(buf), idle).await,
                Stream::TlsInTls(s) => bounded(s.write(buf), idle).await,
            }
            .map_err(|e| classify_io(&e))?;
            if n == 0 {
                return Err(Failure::Reset);
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Pushes buffered bytes (TLS records) to the socket, within `idle`.
    pub async fn flush(&mut self, idle: Duration) -> Result<(), Failure> {
        match &mut self.stream {
            Stream::Plain(s) => bounded(s.flush(), idle).await,
            Stream::Tls(s) => bounded(s.flush(), idle).await,
            Stream::TlsInTls(s) => bounded(s.flush(), idle).await,
        }
        .map_err(|e| classify_io(&e))
    }

    /// Reads some bytes into `buf`; 0 means the peer closed the connection. Fails with
    /// [`Failure::TimedOut`] if nothing arrives within `idle`.
    pub async fn read(&mut self, buf: &mut [u8], idle: Duration) -> Result<usize, Failure> {
        loop {
            let r = match &mut self.stream {
                Stream::Plain(s) => bounded(s.read(buf), idle).await,
                Stream::Tls(s) => bounded(s.read(buf), idle).await,
                Stream::TlsInTls(s) => bounded(s.read(buf), idle).await,
            };
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A TLS peer that closes without close_notify: treat as a plain close, the
                // HTTP framing decides whether that truncated anything.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(classify_io(&e)),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    /// A CA and a server certificate for 127.0.0.1 and `localhost` signed by it.
    pub(crate) struct TestPki {
        pub ca_pem: String,
        pub server_config: Arc<rustls::ServerConfig>,
    }

    pub(crate) fn test_pki() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ossup test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
        .unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
        }
    }

    /// A thread serving `conns` connections with `serve`, on 127.0.0.1; joined by the caller.
    pub(crate) fn spawn_server<F>(conns: usize, serve: F) -> (u16, thread::JoinHandle<()>)
    where
        F: Fn(TcpStream) + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            for _ in 0..conns {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                        serve(s)
                    }
                    Err(_) => return,
                }
            }
        });
        (port, handle)
    }

    fn spec(port: u16, tls: Option<Arc<ClientConfig>>) -> ConnectSpec {
        ConnectSpec {
            host: "127.0.0.1".into(),
            port,
            tls,
            connect_timeout: Duration::from_secs(5),
            proxy: None,
        }
    }

    /// A TLS echo server: answers each connection's first read with "pong:" + the bytes.
    fn tls_echo(config: Arc<rustls::ServerConfig>) -> impl Fn(TcpStream) + Send + 'static {
        move |tcp| {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = [0u8; 64];
            if let Ok(n) = tls.read(&mut buf) {
                if n > 0 {
                    let mut reply = b"pong:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = tls.write_all(&reply);
                    let _ = tls.flush();
                }
            }
        }
    }

    /// A loopback address that never answers a SYN: a listener whose accept queue is full
    /// (Linux drops SYNs to it). Returns the listener and the connections filling it.
    fn blackhole() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut fill = Vec::new();
        for _ in 0..4096 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fill.push(s),
                Err(_) => return (l, fill, addr),
            }
        }
        panic!("could not fill the accept queue of {addr}");
    }

    #[test]
    fn happy_eyeballs_skips_a_blackholed_first_address_after_the_stagger() {
        let (_l, _fill, dead) = blackhole();
        let (port, h) = spawn_server(1, |_s| {});
        let good: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let limit = Duration::from_secs(8);
        let t0 = std::time::Instant::now();
        let won = smol::block_on(race_connect(&[dead, good], EYEBALLS_STAGGER, limit));
        let took = t0.elapsed();
        let (_s, peer) = won.expect("the second address should win");
        assert_eq!(peer, good);
        assert!(
            took >= EYEBALLS_STAGGER,
            "second attempt started before the stagger: {took:?}"
        );
        assert!(
            took < limit / 2,
            "waited for the blackholed attempt: {took:?}"
        );
        drop(_s);
        h.join().unwrap();
        // All attempts failing: None, bounded by the per-attempt limit.
        let t0 = std::time::Instant::now();
        let none = smol::block_on(race_connect(
            &[dead],
            EYEBALLS_STAGGER,
            Duration::from_millis(300),
        ));
        assert!(none.is_none());
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn classify_io_errors() {
        use io::ErrorKind as K;
        assert_eq!(classify_io(&K::TimedOut.into()), Failure::TimedOut);
        assert_eq!(classify_io(&K::ConnectionRefused.into()), Failure::Connect);
        assert_eq!(classify_io(&K::HostUnreachable.into()), Failure::Connect);
        assert_eq!(classify_io(&K::NetworkUnreachable.into()), Failure::Connect);
        assert_eq!(classify_io(&K::ConnectionReset.into()), Failure::Reset);
        assert_eq!(classify_io(&K::ConnectionAborted.into()), Failure::Reset);
        assert_eq!(classify_io(&K::BrokenPipe.into()), Failure::Reset);
        assert_eq!(classify_io(&K::UnexpectedEof.into()), Failure::Reset);
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            classify_io(&io::Error::new(K::InvalidData, cert)),
            Failure::TlsCertificate
        );
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert_eq!(
            classify_io(&io::Error::other(expired)),
            Failure::TlsCertificate
        );
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(
            classify_io(&io::Error::new(K::InvalidData, alert)),
            Failure::Tls
        );
        assert_eq!(
            classify_io(&io::Error::new(K::InvalidData, rustls::Error::DecryptError)),
            Failure::Tls
        );
        // A non-rustls payload falls back to the kind.
        assert_eq!(
            classify_io(&io::Error::new(K::ConnectionReset, "x")),
            Failure::Reset
        );
    }

    #[test]
    fn tls_config_rejects_bad_pem() {
        assert!(tls_config(None).is_ok());
        let e = tls_config(Some(b"not a pem at all")).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let pki = test_pki();
        assert!(tls_config(Some(pki.ca_pem.as_bytes())).is_ok());
        let broken = pki.ca_pem.replace("MII", "!!!");
        assert!(tls_config(Some(broken.as_bytes())).is_err());
    }

    #[test]
    fn bare_host_strips_brackets() {
        assert_eq!(bare_host("[::1]"), "::1");
        assert_eq!(bare_host("example.com"), "example.com");
        assert_eq!(bare_host("[oops"), "[oops");
    }

    #[test]
    fn tls_sessions_resume_across_connections_of_one_process() {
        let pki = test_pki();
        let (port, server) = spawn_server(3, tls_echo(pki.server_config.clone()));
        let cfg = tls_config(Some(pki.ca_pem.as_bytes())).unwrap();
        let mut kinds = Vec::new();
        smol::block_on(async {
            let idle = Duration::from_secs(5);
            for _ in 0..3 {
                let mut c = Conn::connect(&spec(port, Some(cfg.clone()))).await.unwrap();
                c.write_all(b"ping", idle).await.unwrap();
                c.flush(idle).await.unwrap();
                let mut buf = [0u8; 64];
                // Read the answer so the server's session ticket has arrived.
                let _ = c.read(&mut buf, idle).await.unwrap();
                kinds.push(c.resumed());
            }
        });
        server.join().unwrap();
        assert_eq!(
            kinds,
            [false, true, true],
            "full handshakes only on the first"
        );
    }

    /// A TLS-terminating proxy (`https://` proxy) that reads one `CONNECT`, checks its
    /// target and `Proxy-Authorization`, answers 200, then is the endpoint itself inside the
    /// tunnel: a second TLS session (TLS in TLS) that answers `pong:`.
    fn https_proxy_then_tls_echo(
        config: Arc<rustls::ServerConfig>,
        want_auth: Option<String>,
    ) -> impl Fn(TcpStream) + Send + 'static {
        move |tcp| {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut outer = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
                match outer.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let auth_ok = match &want_auth {
                None => true,
                Some(a) => head.contains(&format!("Proxy-Authorization: {a}\r\n")),
            };
            if !head.starts_with("CONNECT localhost:") || !auth_ok {
                let _ = outer.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n");
                let _ = outer.flush();
                return;
            }
            outer
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            outer.flush().unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut inner = rustls::StreamOwned::new(conn, outer);
            let mut buf = [0u8; 64];
            if let Ok(n) = inner.read(&mut buf) {
                let mut reply = b"pong:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = inner.write_all(&reply);
                let _ = inner.flush();
            }
        }
    }

    #[test]
    fn https_proxy_carries_tls_in_tls_and_names_auth_failures() {
        let pki = test_pki();
        let url = ProxyUrl::parse("https://gw:pw@localhost:1").unwrap();
        let want = url.basic_auth();
        let (port, server) = spawn_server(
            2,
            https_proxy_then_tls_echo(pki.server_config.clone(), want),
        );
        let cfg = tls_config(Some(pki.ca_pem.as_bytes())).unwrap();
        let mut url = url;
        url.port = port;
        let proxied = |url: ProxyUrl| {
            let mut s = spec(9, Some(cfg.clone()));
            s.host = "localhost".into();
            s.proxy = Some(Proxy {
                url,
                tls: Some(cfg.clone()),
            });
            s
        };
        let idle = Duration::from_secs(5);
        smol::block_on(async {
            let mut c = Conn::connect(&proxied(url.clone())).await.unwrap();
            assert!(c.is_tls());
            c.write_all(b"ping", idle).await.unwrap();
            c.flush(idle).await.unwrap();
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf, idle).await.unwrap();
            assert_eq!(&buf[..n], b"pong:ping");
            // Without the credentials: the proxy's 407 is named as such.
            let mut bare = ProxyUrl::parse("https://localhost:1").unwrap();
            bare.port = port;
            let e = Conn::connect(&proxied(bare)).await.unwrap_err();
            assert_eq!(e, Failure::Proxy(ProxyFailure::AuthRequired(407)));
        });
        server.join().unwrap();
        // A proxy nobody listens on is the proxy's failure, not the endpoint's.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = l.local_addr().unwrap().port();
        drop(l);
        let mut gone = ProxyUrl::parse("http://127.0.0.1:1").unwrap();
        gone.port = dead;
        let mut s = proxied(gone);
        s.proxy.as_mut().unwrap().tls = None;
        let e = smol::block_on(Conn::connect(&s)).unwrap_err();
        assert_eq!(e, Failure::Proxy(ProxyFailure::Unreachable));
    }

    #[test]
    fn tls_with_right_ca_succeeds() {
        let pki = test_pki();
        let (port, server) = spawn_server(2, tls_echo(pki.server_config.clone()));
        let cfg = tls_config(Some(pki.ca_pem.as_bytes())).unwrap();
        smol::block_on(async {
            let idle = Duration::from_secs(5);
            // By IP literal and by name: the certificate has both.
            for host in ["127.0.0.1", "localhost"] {
                let mut s = spec(port, Some(cfg.clone()));
                s.host = host.into();
                let mut c = match Conn::connect(&s).await {
                    Ok(c) => c,
                    // `localhost` may resolve to ::1 first where nothing listens; the loop
                    // over addresses must then reach 127.0.0.1.
                    Err(f) => panic!("{host}: {f:?}"),
                };
                assert!(c.is_tls());
                assert_eq!(c.peer().port(), port);
                c.write_all(b"ping", idle).await.unwrap();
                c.flush(idle).await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 64];
                for _ in 0..10 {
                    let n = c.read(&mut buf, idle).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.len() >= 9 {
                        break;
                    }
                }
                assert_eq!(got, b"pong:ping");
            }
        });
        server.join().unwrap();
    }

    #[test]
    fn tls_without_or_with_wrong_ca_fails_verification() {
        let pki = test_pki();
        let other = test_pki();
        let (port, server) = spawn_server(2, tls_echo(pki.server_config.clone()));
        smol::block_on(async {
            let plain_roots = tls_config(None).unwrap();
            let r = Conn::connect(&spec(port, Some(plain_roots))).await;
            assert_eq!(r.unwrap_err(), Failure::TlsCertificate);
            let wrong = tls_config(Some(other.ca_pem.as_bytes())).unwrap();
            let r = Conn::connect(&spec(port, Some(wrong))).await;
            assert_eq!(r.unwrap_err(), Failure::TlsCertificate);
        });
        server.join().unwrap();
    }

    #[test]
    fn tls_to_a_plain_server_is_a_tls_error() {
        let (port, server) = spawn_server(1, |mut s| {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let cfg = tls_config(None).unwrap();
        let r = smol::block_on(Conn::connect(&spec(port, Some(cfg))));
        let f = r.unwrap_err();
        assert!(matches!(f, Failure::Tls | Failure::Reset), "{f:?}");
        server.join().unwrap();
    }

    #[test]
    fn closed_port_is_connect_failure() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let r = smol::block_on(Conn::connect(&spec(port, None)));
        assert_eq!(r.unwrap_err(), Failure::Connect);
    }

    #[test]
    fn unresolvable_name_is_dns_failure() {
        let mut s = spec(80, None);
        s.host = "no-such-host.invalid".into();
        let r = smol::block_on(Conn::connect(&s));
        assert_eq!(r.unwrap_err(), Failure::Dns);
    }

    #[test]
    fn silent_server_times_out_within_idle() {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (port, server) = spawn_server(2, move |s| {
            // Hold the connection open, say nothing, until told to stop.
            let _ = stop_rx.recv_timeout(Duration::from_secs(10));
            drop(s);
        });
        smol::block_on(async {
            // Plain: read stalls.
            let mut c = Conn::connect(&spec(port, None)).await.unwrap();
            assert!(!c.is_tls());
            c.write_all(b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(5))
                .await
                .unwrap();
            let t0 = std::time::Instant::now();
            let mut buf = [0u8; 16];
            let r = c.read(&mut buf, Duration::from_millis(200)).await;
            let took = t0.elapsed();
            assert_eq!(r.unwrap_err(), Failure::TimedOut);
            assert!(
                took >= Duration::from_millis(190) && took < Duration::from_secs(3),
                "{took:?}"
            );
        });
        stop_tx.send(()).unwrap();
        // TLS: the handshake stalls and is bounded by the connect timeout.
        smol::block_on(async {
            let mut s = spec(port, Some(tls_config(None).unwrap()));
            s.connect_timeout = Duration::from_millis(200);
            let t0 = std::time::Instant::now();
            let r = Conn::connect(&s).await;
            assert_eq!(r.unwrap_err(), Failure::TimedOut);
            assert!(t0.elapsed() < Duration::from_secs(3));
        });
        drop(stop_tx);
        server.join().unwrap();
    }
}
