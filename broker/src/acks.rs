//! The acknowledgements a connection owes the router for its QoS 1 and 2 forwards, released in
//! the order the router sent the forwards: rumqttd drops a link that acknowledges out of order,
//! and the edge acknowledges some forwards itself (refused deliveries, lowered QoS).

use rumqttd::protocol::{Packet, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason};
use std::collections::{HashSet, VecDeque};

#[derive(Default)]
pub(crate) struct RouterAcks {
    /// Forwards awaiting their PUBACK or PUBREC: packet id, the router's QoS, acknowledged.
    received: VecDeque<(u16, u8, bool)>,
    /// QoS 2 forwards the router released (PUBREL), awaiting PUBCOMP: packet id, completed.
    released: VecDeque<(u16, bool)>,
    /// QoS 2 forwards whose exchange the edge completes itself: the client got them at a
    /// lower QoS or not at all.
    completed_here: HashSet<u16>,
}

impl RouterAcks {
    /// Records a forward of the router at `router_qos` (> 0) delivered at `client_qos` (`None`:
    /// not delivered). Acknowledgements that became due are appended to `out`.
    pub(crate) fn forwarded(&mut self, pkid: u16, router_qos: u8, client_qos: Option<u8>, out: &mut Vec<Packet>) {
        let client_acks = client_qos.is_some_and(|qos| qos > 0);
        if router_qos == 2 && client_qos != Some(2) {
            self.completed_here.insert(pkid);
        }
        self.received.push_back((pkid, router_qos, !client_acks));
        self.release(out);
    }

    /// The client acknowledged `pkid` (PUBACK, or PUBREC at QoS 2).
    pub(crate) fn acknowledged(&mut self, pkid: u16, out: &mut Vec<Packet>) {
        if let Some(entry) = self.received.iter_mut().find(|(id, _, done)| *id == pkid && !done) {
            entry.2 = true;
        }
        self.release(out);
    }

    /// The router released QoS 2 forward `pkid`. True when the client must be sent PUBREL;
    /// otherwise the edge completes the exchange itself.
    pub(crate) fn router_released(&mut self, pkid: u16, out: &mut Vec<Packet>) -> bool {
        let here = self.completed_here.remove(&pkid);
        self.released.push_back((pkid, here));
        self.release(out);
        !here
    }

    /// The client completed QoS 2 forward `pkid` (PUBCOMP).
    pub(crate) fn completed(&mut self, pkid: u16, out: &mut Vec<Packet>) {
        if let Some(entry) = self.released.iter_mut().find(|(id, done)| *id == pkid && !done) {
            entry.1 = true;
        }
        self.release(out);
    }

    fn release(&mut self, out: &mut Vec<Packet>) {
        while let Some(&(pkid, qos, true)) = self.received.front() {
            self.received.pop_front();
            out.push(match qos {
                1 => Packet::PubAck(PubAck { pkid, reason: PubAckReason::Success }, None),
                _ => Packet::PubRec(PubRec { pkid, reason: PubRecReason::Success }, None),
            });
        }
        while let Some(&(pkid, true)) = self.released.front() {
            self.released.pop_front();
            out.push(Packet::PubComp(PubComp { pkid, reason: PubCompReason::Success }, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(out: &[Packet]) -> Vec<(&'static str, u16)> {
        out.iter()
            .map(|p| match p {
                Packet::PubAck(a, _) => ("ack", a.pkid),
                Packet::PubRec(r, _) => ("rec", r.pkid),
                Packet::PubComp(c, _) => ("comp", c.pkid),
                _ => ("other", 0),
            })
            .collect()
    }

    #[test]
    fn acknowledgements_leave_in_forward_order() {
        let (mut acks, mut out) = (RouterAcks::default(), Vec::new());
        acks.forwarded(1, 1, Some(1), &mut out);
        acks.forwarded(2, 1, None, &mut out);
        assert!(out.is_empty(), "2 must wait for 1");
        acks.acknowledged(1, &mut out);
        assert_eq!(ids(&out), [("ack", 1), ("ack", 2)]);
    }

    #[test]
    fn qos2_lowered_for_the_client_is_completed_here() {
        let (mut acks, mut out) = (RouterAcks::default(), Vec::new());
        acks.forwarded(5, 2, Some(1), &mut out);
        acks.acknowledged(5, &mut out);
        assert!(!acks.router_released(5, &mut out));
        assert_eq!(ids(&out), [("rec", 5), ("comp", 5)]);
        out.clear();
        acks.forwarded(6, 2, Some(2), &mut out);
        acks.acknowledged(6, &mut out);
        assert!(acks.router_released(6, &mut out));
        acks.completed(6, &mut out);
        assert_eq!(ids(&out), [("rec", 6), ("comp", 6)]);
    }
}
