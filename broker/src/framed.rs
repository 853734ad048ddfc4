//! MQTT packets over one client socket: read in the version its CONNECT chose, written to a
//! buffer sent once per event. Serves the CONNECT, its refusal and the session alike.

use crate::codec::{self, Frame, Version};
use crate::transport::Transport;
use bytes::BytesMut;
use rumqttd::protocol::{Connect, ConnectProperties, LastWill, LastWillProperties, Login, Packet};
use std::io;

/// A client socket with its read and write buffers.
pub(crate) struct Framed {
    transport: Transport,
    /// Bytes read and not yet framed.
    rbuf: BytesMut,
    /// Bytes for the client, written out by [`Framed::flush`].
    wbuf: BytesMut,
    version: Version,
    max_packet: usize,
}

/// A CONNECT as read from the socket, in the version it asked for.
pub(crate) struct ConnectPacket {
    pub(crate) connect: Connect,
    pub(crate) properties: Option<ConnectProperties>,
    pub(crate) will: Option<LastWill>,
    pub(crate) will_properties: Option<LastWillProperties>,
    pub(crate) login: Option<Login>,
}

/// Why no CONNECT was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BeforeConnect {
    #[error("the first packet must be CONNECT")]
    NotConnect,
    #[error("unsupported protocol level {0}")]
    ProtocolLevel(u8),
    #[error("malformed CONNECT: {0}")]
    Malformed(rumqttd::protocol::Error),
    #[error("closed before CONNECT")]
    Closed,
    #[error("socket error before CONNECT: {0}")]
    Io(#[from] io::Error),
}

/// Why the packets of an established session could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("packet larger than mqtt.max_packet")]
    TooLarge,
    #[error("{0}")]
    Malformed(rumqttd::protocol::Error),
}

impl Framed {
    /// A socket whose packets may be up to `max_packet` bytes; 3.1.1 until a CONNECT says otherwise.
    pub(crate) fn new(transport: Transport, max_packet: usize) -> Self {
        Self { transport, rbuf: BytesMut::new(), wbuf: BytesMut::new(), version: Version::V311, max_packet }
    }

    /// The version the connection speaks.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// Reads up to the CONNECT packet and adopts the version it asks for.
    pub(crate) async fn read_connect(&mut self) -> Result<ConnectPacket, BeforeConnect> {
        loop {
            self.version = if codec::connect_level(&self.rbuf) == Some(5) { Version::V5 } else { Version::V311 };
            match codec::next_frame(&mut self.rbuf, self.max_packet, self.version) {
                Ok(Some(Frame::Other(Packet::Connect(connect, properties, will, will_properties, login)))) => {
                    self.drop_drained_buffer();
                    return Ok(ConnectPacket { connect, properties, will, will_properties, login });
                }
                Ok(Some(_)) => return Err(BeforeConnect::NotConnect),
                Ok(None) => {}
                Err(rumqttd::protocol::Error::InvalidProtocolLevel(level)) => {
                    return Err(BeforeConnect::ProtocolLevel(level))
                }
                Err(e) => return Err(BeforeConnect::Malformed(e)),
            }
            if self.fill().await? == 0 {
                return Err(BeforeConnect::Closed);
            }
        }
    }

    /// Reads more bytes from the socket; `Ok(0)` at end of stream. Cancel-safe.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        self.transport.read(&mut self.rbuf).await
    }

    /// Takes the next complete packet off what was read; `Ok(None)` when more bytes are needed.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, Unreadable> {
        let frame = codec::next_frame(&mut self.rbuf, self.max_packet, self.version).map_err(|e| match e {
            rumqttd::protocol::Error::PayloadSizeLimitExceeded(_) => Unreadable::TooLarge,
            e => Unreadable::Malformed(e),
        })?;
        if frame.is_none() {
            self.drop_drained_buffer();
        }
        Ok(frame)
    }

    /// Once every byte read is framed the read buffer goes, so an idle connection holds none
    /// ([`Transport::read`] allocates again when data arrives).
    fn drop_drained_buffer(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
    }

    /// Encodes `packet` for the client; it goes out with the next [`Framed::flush`].
    pub(crate) fn write(&mut self, packet: Packet) {
        codec::write(packet, &mut self.wbuf, self.version);
    }

    /// The bytes written since the last flush, for callers that measure or hold back what they
    /// just encoded.
    pub(crate) fn unsent(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Sends what was written.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.transport.write_all(&self.wbuf).await?;
            // not cleared but dropped: a burst's buffer is not kept by a connection gone quiet
            self.wbuf = BytesMut::new();
        }
        Ok(())
    }

    /// Writes `packet` and sends it at once, for the last words on a connection.
    pub(crate) async fn send(&mut self, packet: Packet) -> io::Result<()> {
        self.write(packet);
        self.flush().await
    }

    /// Reads and drops what the client still sends, for at most `linger`, before the socket
    /// closes: a client that keeps writing (acknowledgements in flight) would otherwise get a
    /// reset and could lose the DISCONNECT that tells it why.
    pub(crate) async fn linger(mut self, linger: std::time::Duration) {
        let _ = tokio::time::timeout(linger, async {
            while matches!(self.fill().await, Ok(read) if read > 0) {
                self.rbuf.clear();
            }
        })
        .await;
    }
}
