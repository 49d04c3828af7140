//! The retransmission buffer of one publisher's video, shared by all its subscribers (sans IO):
//! the last packets by sequence number, so a subscriber's NACK is answered from one copy instead
//! of each subscriber connection keeping its own. Packets are kept as forwarded (header
//! extensions already dropped); a subscriber's SSRC and payload type are set on the way out.

use rtc::rtp::Packet;

/// How many packets are kept: about 5 s of 1.5 Mbit/s video.
pub(crate) const RETRANSMIT_PACKETS: usize = 1024;

#[derive(Debug)]
pub(crate) struct RetransmitBuffer {
    slots: Vec<Option<Packet>>,
}

impl RetransmitBuffer {
    pub(crate) fn new() -> Self {
        Self {
            slots: vec![None; RETRANSMIT_PACKETS],
        }
    }

    pub(crate) fn push(&mut self, packet: &Packet) {
        let slot = usize::from(packet.header.sequence_number) % RETRANSMIT_PACKETS;
        self.slots[slot] = Some(packet.clone());
    }

    /// The packet with this sequence number, if it is still kept.
    pub(crate) fn get(&self, sequence_number: u16) -> Option<&Packet> {
        self.slots[usize::from(sequence_number) % RETRANSMIT_PACKETS]
            .as_ref()
            .filter(|p| p.header.sequence_number == sequence_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(seq: u16) -> Packet {
        Packet {
            header: rtc::rtp::Header {
                sequence_number: seq,
                ..Default::default()
            },
            payload: Bytes::from(seq.to_be_bytes().to_vec()),
        }
    }

    #[test]
    fn keeps_the_last_packets_and_forgets_older_ones() {
        let mut buffer = RetransmitBuffer::new();
        // Across the 16-bit wrap.
        let first = u16::MAX - 100;
        for i in 0..2000u16 {
            buffer.push(&packet(first.wrapping_add(i)));
        }
        let last = first.wrapping_add(1999);
        for back in 0..RETRANSMIT_PACKETS as u16 {
            let seq = last.wrapping_sub(back);
            let kept = buffer.get(seq).expect("kept");
            assert_eq!(kept.payload, Bytes::from(seq.to_be_bytes().to_vec()));
        }
        assert!(
            buffer
                .get(last.wrapping_sub(RETRANSMIT_PACKETS as u16))
                .is_none()
        );
        assert!(buffer.get(first).is_none());
        assert!(buffer.get(last.wrapping_add(1)).is_none(), "not sent yet");
    }
}
