//! MQTT 3.1.1 framing over rumqttd's codec, plus the fields its types keep private.

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::v4::{self, V4};
use rumqttd::protocol::{Error, Packet, Protocol, Publish};

/// One framed packet from the read buffer.
pub(crate) enum Frame {
    /// A PUBLISH, with the QoS and packet id read from its raw bytes.
    Publish { publish: Publish, qos: u8, pkid: u16, dup: bool },
    /// Any other packet (boxed: rumqttd's `Packet` is large and these are rare).
    Other(Box<Packet>),
}

/// Takes the next complete packet off `buf`; `Ok(None)` when more bytes are needed.
pub(crate) fn next_frame(buf: &mut BytesMut, max_packet: usize) -> Result<Option<Frame>, Error> {
    let header = match v4::check(buf.iter(), max_packet) {
        Ok(header) => header,
        Err(Error::InsufficientBytes(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let is_publish = header.byte1 >> 4 == 3;
    let (qos, dup) = ((header.byte1 >> 1) & 0b11, header.byte1 & 0b1000 != 0);
    let pkid = if is_publish && qos > 0 { publish_pkid(buf, header.fixed_header_len) } else { 0 };
    match V4.read_mut(buf, max_packet)? {
        Packet::Publish(publish, _) if is_publish => Ok(Some(Frame::Publish { publish, qos, pkid, dup })),
        packet => Ok(Some(Frame::Other(Box::new(packet)))),
    }
}

/// The packet id of a QoS > 0 PUBLISH whose variable header starts at `offset` of `frame`.
fn publish_pkid(frame: &[u8], offset: usize) -> u16 {
    let topic_len =
        frame.get(offset..offset + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).unwrap_or_default();
    let at = offset + 2 + topic_len;
    frame.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or_default()
}

/// The packet id of an outgoing PUBLISH from the router when its QoS is above 0 (rumqttd keeps
/// both fields crate-private, so they are read back from the encoded packet).
pub(crate) fn outgoing_pkid(publish: &Publish) -> Option<u16> {
    let mut scratch = BytesMut::new();
    write(Packet::Publish(publish.clone(), None), &mut scratch);
    let qos = (scratch.first()? >> 1) & 0b11;
    let header_len = 1 + scratch[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    (qos > 0).then(|| publish_pkid(&scratch, header_len))
}

/// A QoS 0 PUBLISH as the edge and the server hand it to the router or a client.
pub(crate) fn publish(topic: String, payload: Vec<u8>, retain: bool) -> Publish {
    Publish::new(Bytes::from(topic), Bytes::from(payload), retain)
}

/// Appends `packet` to `out`. Properties must already be stripped: they do not exist in 3.1.1
/// and rumqttd's v4 writer panics on them.
pub(crate) fn write(packet: Packet, out: &mut BytesMut) {
    if let Err(e) = V4.write(packet, out) {
        tracing::error!(error = %e, "could not encode an outgoing packet");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::{PubAck, PubAckReason};

    #[test]
    fn reads_qos_and_packet_id_of_a_publish() {
        // PUBLISH QoS 1, dup, topic "a/b", pkid 0x1234, payload "hi"
        let mut buf = BytesMut::from(&[0x3a, 9, 0, 3, b'a', b'/', b'b', 0x12, 0x34, b'h', b'i'][..]);
        let Some(Frame::Publish { publish, qos, pkid, dup }) = next_frame(&mut buf, 1024).unwrap() else {
            panic!("not a publish");
        };
        assert_eq!((qos, pkid, dup), (1, 0x1234, true));
        assert_eq!(&publish.payload[..], b"hi");
        assert!(buf.is_empty());
    }

    #[test]
    fn waits_for_a_whole_frame_and_rejects_oversized_ones() {
        let mut out = BytesMut::new();
        write(Packet::PubAck(PubAck { pkid: 7, reason: PubAckReason::Success }, None), &mut out);
        let mut partial = BytesMut::from(&out[..2]);
        assert!(next_frame(&mut partial, 1024).unwrap().is_none());
        let mut huge = BytesMut::from(&[0x30, 0xff, 0xff, 0x03][..]);
        assert!(next_frame(&mut huge, 1024).is_err());
    }
}
