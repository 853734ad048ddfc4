//! MQTT 3.1.1 and 5 framing over rumqttd's codecs, plus the fields its types keep private.

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::v4::{self, V4};
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::{Error, Packet, Protocol, Publish, PublishProperties};

/// The protocol version a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V311,
    V5,
}

/// One framed packet from the read buffer.
pub(crate) enum Frame {
    /// A PUBLISH, with the QoS and packet id read from its raw bytes.
    Publish { publish: Publish, properties: Option<PublishProperties>, qos: u8, pkid: u16 },
    /// Any other packet.
    Other(Packet),
}

/// The protocol level a CONNECT at the start of `buf` asks for, once enough bytes are there.
pub(crate) fn connect_level(buf: &[u8]) -> Option<u8> {
    let header_len = 1 + buf.get(1..)?.iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    let name_len = u16::from_be_bytes([*buf.get(header_len)?, *buf.get(header_len + 1)?]) as usize;
    buf.get(header_len + 2 + name_len).copied()
}

/// The packet types a client sends: CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
/// SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT.
const CLIENT_PACKET_TYPES: [u8; 10] = [1, 3, 4, 5, 6, 7, 8, 10, 12, 14];

/// Takes the next complete packet off `buf`; `Ok(None)` when more bytes are needed.
pub(crate) fn next_frame(buf: &mut BytesMut, max_packet: usize, version: Version) -> Result<Option<Frame>, Error> {
    // the fixed header is the same in both versions
    let header = match v4::check(buf.iter(), max_packet) {
        Ok(header) => header,
        Err(Error::InsufficientBytes(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let packet_type = header.byte1 >> 4;
    if !CLIENT_PACKET_TYPES.contains(&packet_type) {
        // rumqttd's v5 reader hits `unreachable!()` on CONNACK and UNSUBACK (found by fuzzing)
        return Err(Error::InvalidPacketType(packet_type));
    }
    let is_publish = packet_type == 3;
    let qos = (header.byte1 >> 1) & 0b11;
    let pkid = if is_publish && qos > 0 { publish_pkid(buf, header.fixed_header_len) } else { 0 };
    let packet = match version {
        Version::V311 => V4.read_mut(buf, max_packet)?,
        Version::V5 => V5.read_mut(buf, max_packet)?,
    };
    match packet {
        Packet::Publish(publish, properties) if is_publish => {
            Ok(Some(Frame::Publish { publish, properties, qos, pkid }))
        }
        packet => Ok(Some(Frame::Other(packet))),
    }
}

/// The packet id of a QoS > 0 PUBLISH whose variable header starts at `offset` of `frame`.
fn publish_pkid(frame: &[u8], offset: usize) -> u16 {
    let topic_len =
        frame.get(offset..offset + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).unwrap_or_default();
    let at = offset + 2 + topic_len;
    frame.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or_default()
}

/// The QoS and packet id of an outgoing PUBLISH from the router (rumqttd keeps both fields
/// crate-private, so they are read back from the encoded packet).
pub(crate) fn outgoing_qos_pkid(publish: &Publish) -> (u8, u16) {
    let mut scratch = BytesMut::new();
    write(Packet::Publish(publish.clone(), None), &mut scratch, Version::V311);
    encoded_qos_pkid(&scratch)
}

/// The QoS and packet id of the encoded PUBLISH `frame` (either version).
pub(crate) fn encoded_qos_pkid(frame: &[u8]) -> (u8, u16) {
    let qos = frame.first().map_or(0, |b| (b >> 1) & 0b11);
    let header_len = 1 + frame.get(1..).unwrap_or_default().iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    (qos, if qos > 0 { publish_pkid(frame, header_len) } else { 0 })
}

/// A PUBLISH with `qos` and `pkid`, built by parsing its encoding (the only public way to set
/// those fields).
pub(crate) fn with_qos(publish: &Publish, qos: u8, pkid: u16) -> Publish {
    let mut frame = BytesMut::new();
    let topic = publish.topic.len();
    let remaining = 2 + topic + if qos > 0 { 2 } else { 0 } + publish.payload.len();
    frame.extend_from_slice(&[0x30 | (qos << 1) | u8::from(publish.retain)]);
    let mut len = remaining;
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        frame.extend_from_slice(&[if len > 0 { byte | 0x80 } else { byte }]);
        if len == 0 {
            break;
        }
    }
    frame.extend_from_slice(&(topic as u16).to_be_bytes());
    frame.extend_from_slice(&publish.topic);
    if qos > 0 {
        frame.extend_from_slice(&pkid.to_be_bytes());
    }
    frame.extend_from_slice(&publish.payload);
    match V4.read_mut(&mut frame, usize::MAX) {
        Ok(Packet::Publish(parsed, _)) => parsed,
        _ => publish.clone(),
    }
}

/// A QoS 0 PUBLISH as the edge and the server hand it to the router or a client.
pub(crate) fn publish(topic: String, payload: Vec<u8>, retain: bool) -> Publish {
    Publish::new(Bytes::from(topic), Bytes::from(payload), retain)
}

/// Appends `packet` to `out` in `version`'s encoding. For 3.1.1 properties are dropped: they
/// do not exist there and rumqttd's v4 writer panics on them (brief 3 (a)).
pub(crate) fn write(packet: Packet, out: &mut BytesMut, version: Version) {
    let written = match version {
        Version::V311 => V4.write(without_properties(packet), out),
        Version::V5 => V5.write(packet, out),
    };
    if let Err(e) = written {
        tracing::error!(error = %e, "could not encode an outgoing packet");
    }
}

fn without_properties(packet: Packet) -> Packet {
    match packet {
        Packet::Connect(connect, _, will, _, login) => Packet::Connect(connect, None, will, None, login),
        Packet::ConnAck(ack, _) => Packet::ConnAck(ack, None),
        Packet::Publish(publish, _) => Packet::Publish(publish, None),
        Packet::PubAck(ack, _) => Packet::PubAck(ack, None),
        Packet::Subscribe(subscribe, _) => Packet::Subscribe(subscribe, None),
        Packet::SubAck(ack, _) => Packet::SubAck(ack, None),
        Packet::PubRec(ack, _) => Packet::PubRec(ack, None),
        Packet::PubRel(ack, _) => Packet::PubRel(ack, None),
        Packet::PubComp(ack, _) => Packet::PubComp(ack, None),
        Packet::Unsubscribe(unsubscribe, _) => Packet::Unsubscribe(unsubscribe, None),
        Packet::UnsubAck(ack, _) => Packet::UnsubAck(ack, None),
        Packet::Disconnect(disconnect, _) => Packet::Disconnect(disconnect, None),
        packet @ (Packet::PingReq(_) | Packet::PingResp(_)) => packet,
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
        let Some(Frame::Publish { publish, qos, pkid, .. }) = next_frame(&mut buf, 1024, Version::V311).unwrap() else {
            panic!("not a publish");
        };
        assert_eq!((qos, pkid), (1, 0x1234));
        assert_eq!(&publish.payload[..], b"hi");
        assert!(buf.is_empty());
    }

    #[test]
    fn waits_for_a_whole_frame_and_rejects_oversized_ones() {
        let mut out = BytesMut::new();
        write(Packet::PubAck(PubAck { pkid: 7, reason: PubAckReason::Success }, None), &mut out, Version::V311);
        let mut partial = BytesMut::from(&out[..2]);
        assert!(next_frame(&mut partial, 1024, Version::V311).unwrap().is_none());
        let mut huge = BytesMut::from(&[0x30, 0xff, 0xff, 0x03][..]);
        assert!(next_frame(&mut huge, 1024, Version::V311).is_err());
    }

    #[test]
    fn refuses_packets_only_a_server_sends() {
        for version in [Version::V311, Version::V5] {
            for server_packet in [[0x20, 2, 0, 0], [0xb0, 2, 0, 1], [0x90, 2, 0, 1], [0xf0, 2, 0, 0]] {
                let mut buf = BytesMut::from(&server_packet[..]);
                assert!(next_frame(&mut buf, 1024, version).is_err(), "{server_packet:x?}");
            }
        }
    }

    #[test]
    fn reads_the_protocol_level_of_a_connect() {
        assert_eq!(connect_level(&[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5]), Some(5));
        assert_eq!(connect_level(&[0x10, 10, 0, 4, b'M', b'Q']), None);
    }

    #[test]
    fn properties_reach_v5_and_never_311() {
        let properties = PublishProperties { user_properties: vec![("k".into(), "v".into())], ..Default::default() };
        let packet = Packet::Publish(publish("a/b".into(), b"hi".to_vec(), false), Some(properties));
        let (mut v5, mut v311) = (BytesMut::new(), BytesMut::new());
        write(packet.clone(), &mut v5, Version::V5);
        write(packet, &mut v311, Version::V311);
        let Some(Frame::Publish { properties, .. }) = next_frame(&mut v5, 1024, Version::V5).unwrap() else {
            panic!("not a publish");
        };
        assert_eq!(properties.unwrap().user_properties, [("k".to_owned(), "v".to_owned())]);
        assert!(matches!(next_frame(&mut v311, 1024, Version::V311).unwrap(), Some(Frame::Publish { .. })));
    }

    #[test]
    fn sets_qos_and_packet_id() {
        let qos2 = with_qos(&publish("a".into(), b"x".to_vec(), true), 2, 9);
        assert_eq!(outgoing_qos_pkid(&qos2), (2, 9));
        assert!(qos2.retain);
    }
}
