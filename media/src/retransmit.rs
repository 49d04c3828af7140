//! The recent video of one publisher's layer, shared by all its subscribers (sans IO): the last
//! packets by sequence number, so a subscriber's NACK is answered from one copy instead of each
//! subscriber connection keeping its own, and where the latest keyframe starts, so a new
//! subscriber is sent that keyframe and what followed it at once instead of waiting for the
//! publisher's next one. Packets are kept as forwarded (header extensions already dropped); a
//! subscriber's SSRC, payload type, sequence number and timestamp are set on the way out.

use std::time::Instant;

use rtc::rtp::Packet;

/// How many packets are kept: about 5 s of 1.5 Mbit/s video.
pub(crate) const RETRANSMIT_PACKETS: usize = 1024;

#[derive(Debug)]
pub(crate) struct RetransmitBuffer {
    slots: Vec<Option<Packet>>,
    /// The highest sequence number pushed (in 16-bit wrapping order).
    newest: Option<u16>,
    /// The frame being received: its timestamp and first sequence number.
    frame: Option<(u32, u16)>,
    /// Where the latest keyframe starts, and when it came.
    keyframe: Option<(u16, Instant)>,
}

/// True when `a` comes after `b` in 16-bit wrapping order.
pub(crate) fn seq_after(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

impl RetransmitBuffer {
    pub(crate) fn new() -> Self {
        Self {
            slots: vec![None; RETRANSMIT_PACKETS],
            newest: None,
            frame: None,
            keyframe: None,
        }
    }

    /// Keeps `packet`; `starts_keyframe` when it is the first packet of a keyframe (or the
    /// packet that shows its frame is one: the frame's first packet is then taken as the start).
    pub(crate) fn push(&mut self, now: Instant, packet: &Packet, starts_keyframe: bool) {
        let seq = packet.header.sequence_number;
        let slot = usize::from(seq) % RETRANSMIT_PACKETS;
        self.slots[slot] = Some(packet.clone());
        if self.newest.is_none_or(|newest| seq_after(seq, newest)) {
            self.newest = Some(seq);
            // A keyframe pushed out of the buffer is gone (and its number will come round
            // again on another packet).
            if let Some((start, _)) = self.keyframe
                && usize::from(seq.wrapping_sub(start)) >= RETRANSMIT_PACKETS
            {
                self.keyframe = None;
            }
        }
        let ts = packet.header.timestamp;
        match self.frame {
            Some((frame_ts, first)) if frame_ts == ts => {
                if seq_after(first, seq) {
                    self.frame = Some((ts, seq)); // a reordered earlier packet of the frame
                }
            }
            _ => self.frame = Some((ts, seq)),
        }
        if starts_keyframe {
            let start = self.frame.map_or(seq, |(_, first)| first);
            self.keyframe = Some((start, now));
        }
    }

    /// The packet with this sequence number, if it is still kept.
    pub(crate) fn get(&self, sequence_number: u16) -> Option<&Packet> {
        self.slots[usize::from(sequence_number) % RETRANSMIT_PACKETS]
            .as_ref()
            .filter(|p| p.header.sequence_number == sequence_number)
    }

    /// The latest keyframe and every packet since, oldest first, when that is at most
    /// `max_packets` and the keyframe is still kept; with when the keyframe came. (Packets
    /// lost on the way in are missing; the subscriber asks for them like for any loss.)
    pub(crate) fn since_keyframe(&self, max_packets: usize) -> Option<(Instant, Vec<&Packet>)> {
        let (start, at) = self.keyframe?;
        let newest = self.newest?;
        let span = usize::from(newest.wrapping_sub(start)) + 1;
        if span > max_packets.min(RETRANSMIT_PACKETS) {
            return None;
        }
        self.get(start)?;
        let packets = (0..span as u16)
            .filter_map(|i| self.get(start.wrapping_add(i)))
            .collect();
        Some((at, packets))
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
            buffer.push(Instant::now(), &packet(first.wrapping_add(i)), false);
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

    fn frame_packet(seq: u16, ts: u32) -> Packet {
        let mut p = packet(seq);
        p.header.timestamp = ts;
        p
    }

    #[test]
    fn hands_out_the_latest_keyframe_and_what_followed() {
        let now = Instant::now();
        let mut buffer = RetransmitBuffer::new();
        assert!(buffer.since_keyframe(300).is_none(), "no keyframe yet");
        // Frame 1 (3 packets) is a keyframe, noticed on its second packet (an SPS after an
        // SEI, say): the frame's first packet is the start. Frame 2 is an inter frame.
        let start = u16::MAX - 1; // across the wrap
        buffer.push(now, &frame_packet(start, 1000), false);
        buffer.push(now, &frame_packet(start.wrapping_add(1), 1000), true);
        buffer.push(now, &frame_packet(start.wrapping_add(2), 1000), false);
        buffer.push(now, &frame_packet(start.wrapping_add(3), 4000), false);
        buffer.push(now, &frame_packet(start.wrapping_add(4), 4000), false);
        let (_, packets) = buffer.since_keyframe(300).expect("a keyframe is kept");
        let seqs: Vec<u16> = packets.iter().map(|p| p.header.sequence_number).collect();
        assert_eq!(
            seqs,
            (0..5).map(|i| start.wrapping_add(i)).collect::<Vec<_>>()
        );
        // Too long a run since the keyframe: none (the caller asks the publisher instead).
        assert!(buffer.since_keyframe(4).is_none());
        // A newer keyframe replaces the older one.
        buffer.push(now, &frame_packet(start.wrapping_add(5), 7000), true);
        let (_, packets) = buffer.since_keyframe(300).expect("kept");
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].header.sequence_number, start.wrapping_add(5));
    }

    #[test]
    fn a_keyframe_pushed_out_of_the_buffer_is_not_handed_out() {
        let now = Instant::now();
        let mut buffer = RetransmitBuffer::new();
        buffer.push(now, &frame_packet(0, 0), true);
        for seq in 1..=RETRANSMIT_PACKETS as u16 {
            buffer.push(now, &frame_packet(seq, u32::from(seq) * 3000), false);
        }
        assert!(buffer.since_keyframe(usize::MAX).is_none());
    }
}
