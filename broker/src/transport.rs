//! The byte streams MQTT runs over: TCP or TLS, carrying MQTT directly or in binary WebSocket
//! frames on `/mqtt`.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Why a socket's TLS or WebSocket handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("a TLS listener without a certificate")]
    NoCertificate,
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("WebSocket handshake: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
}

/// Why the TLS certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("a TLS listener needs a certificate and a key")]
    Missing,
    #[error("certificate {path}: {source}")]
    Certificate { path: std::path::PathBuf, source: rustls::pki_types::pem::Error },
    #[error("private key {path}: {source}")]
    Key { path: std::path::PathBuf, source: rustls::pki_types::pem::Error },
    #[error("certificate and key {path}: {source}")]
    Config { path: std::path::PathBuf, source: rustls::Error },
}

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;

/// The path browsers connect to.
pub(crate) const WS_PATH: &str = "/mqtt";

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Protocol {
    /// The listener's name in configuration (`mqtt.anonymous`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Ws => "ws",
            Protocol::Tls => "tls",
            Protocol::Wss => "wss",
        }
    }
}

/// A TCP connection, encrypted or not.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One client socket.
pub(crate) enum Transport {
    Direct(Stream),
    Ws(Box<WebSocketStream<Stream>>),
}

impl Transport {
    /// Completes the handshakes `protocol` needs: TLS with `tls`, then for WebSocket the upgrade
    /// on path `/mqtt`, echoing the subprotocol `mqtt` when offered.
    pub(crate) async fn accept(
        stream: TcpStream,
        protocol: Protocol,
        tls: Option<&TlsAcceptor>,
        max_packet: usize,
    ) -> Result<Self, HandshakeError> {
        let stream = match protocol {
            Protocol::Tcp | Protocol::Ws => Stream::Plain(stream),
            Protocol::Tls | Protocol::Wss => {
                let acceptor = tls.ok_or(HandshakeError::NoCertificate)?;
                Stream::Tls(Box::new(acceptor.accept(stream).await.map_err(HandshakeError::Tls)?))
            }
        };
        if matches!(protocol, Protocol::Tcp | Protocol::Tls) {
            return Ok(Self::Direct(stream));
        }
        let config = WebSocketConfig::default().max_message_size(Some(max_packet)).max_frame_size(Some(max_packet));
        tokio_tungstenite::accept_hdr_async_with_config(stream, choose_subprotocol, Some(config))
            .await
            .map(|ws| Self::Ws(Box::new(ws)))
            .map_err(|e| HandshakeError::WebSocket(Box::new(e)))
    }

    /// Appends received bytes to `buf`; `Ok(0)` at end of stream. Cancel-safe.
    ///
    /// A plain socket waits for data before `buf` grows, so an idle connection may hold an
    /// empty buffer with no allocation behind it.
    pub(crate) async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Direct(Stream::Plain(tcp)) => loop {
                tcp.readable().await?;
                buf.reserve(READ_CHUNK);
                match tcp.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    read => return read,
                }
            },
            Self::Direct(stream) => {
                buf.reserve(READ_CHUNK);
                stream.read_buf(buf).await
            }
            Self::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                        buf.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "MQTT over WebSocket uses binary frames",
                        ))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(io::Error::other(e)),
                }
            },
        }
    }

    pub(crate) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Direct(stream) => stream.write_all(data).await,
            Self::Ws(ws) => ws.send(Message::Binary(Bytes::copy_from_slice(data))).await.map_err(io::Error::other),
        }
    }
}

/// Accepts only `/mqtt` and echoes the `mqtt` subprotocol when the client offers it.
#[allow(clippy::result_large_err)] // the signature is tungstenite's handshake callback
fn choose_subprotocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != WS_PATH {
        let mut refusal = ErrorResponse::new(Some(format!("MQTT is served on {WS_PATH}")));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let offers_mqtt = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "mqtt");
    if offers_mqtt {
        response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    }
    Ok(response)
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, data),
            Self::Tls(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Loads the server certificate chain and private key (PEM files) into an acceptor.
pub(crate) fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate { path: cert.to_owned(), source })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key { path: key.to_owned(), source })?;
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|source| TlsError::Config { path: cert.to_owned(), source })?;
    Ok(TlsAcceptor::from(std::sync::Arc::new(config)))
}
