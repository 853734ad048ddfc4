//! The byte streams MQTT runs over: plain TCP, or binary WebSocket frames on `/mqtt`.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The path browsers connect to.
pub(crate) const WS_PATH: &str = "/mqtt";

/// One client socket.
pub(crate) enum Transport {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

impl Transport {
    /// Completes the WebSocket handshake: path `/mqtt`, subprotocol `mqtt` echoed when offered.
    pub(crate) async fn accept_ws(stream: TcpStream, max_packet: usize) -> Result<Self, String> {
        let config = WebSocketConfig::default().max_message_size(Some(max_packet)).max_frame_size(Some(max_packet));
        tokio_tungstenite::accept_hdr_async_with_config(stream, choose_subprotocol, Some(config))
            .await
            .map(|ws| Self::Ws(Box::new(ws)))
            .map_err(|e| e.to_string())
    }

    /// Appends received bytes to `buf`; `Ok(0)` at end of stream. Cancel-safe.
    pub(crate) async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.read_buf(buf).await,
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
            Self::Tcp(stream) => stream.write_all(data).await,
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
