//! What the SFU reads inside a video payload: whether an RTP packet starts a keyframe. That is
//! all it needs to switch a subscriber between simulcast layers cleanly and to start a new
//! subscriber on the latest keyframe it still holds; it never decodes.

/// The video codecs the SFU forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoCodec {
    Vp8,
    H264,
    /// Anything else (never negotiated today): every packet counts as a possible start, so a
    /// player is never held back waiting for a keyframe the SFU cannot recognise.
    Other,
}

impl VideoCodec {
    pub(crate) fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case("video/VP8") {
            VideoCodec::Vp8
        } else if mime.eq_ignore_ascii_case("video/H264") {
            VideoCodec::H264
        } else {
            VideoCodec::Other
        }
    }

    /// True when `payload` is the first packet of a keyframe (VP8: RFC 7741 §4; H.264: an IDR
    /// slice or the SPS sent before it, RFC 6184 §5).
    pub(crate) fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            VideoCodec::Vp8 => vp8_starts_keyframe(payload),
            VideoCodec::H264 => h264_starts_keyframe(payload),
            VideoCodec::Other => true,
        }
    }
}

/// VP8 payload descriptor, then the frame header: a keyframe has bit 0 of its first byte clear,
/// and only the packet with S = 1 and partition index 0 carries that byte.
fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start_of_partition = first & 0x10 != 0;
    let partition_index = first & 0x07;
    if !start_of_partition || partition_index != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        // X: an extension byte says which optional fields follow.
        let Some(&ext) = payload.get(at) else {
            return false;
        };
        at += 1;
        if ext & 0x80 != 0 {
            // I: picture id, one or two bytes (M bit).
            let Some(&pid) = payload.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // L: TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // T or K: TID / KEYIDX
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        NAL_IDR | NAL_SPS => true,
        NAL_STAP_A => {
            // Aggregated NAL units, each behind a 16-bit size.
            let mut at = 1;
            while let Some(size) = payload.get(at..at + 2) {
                let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                match payload.get(at + 2) {
                    Some(nal) if matches!(nal & 0x1f, NAL_IDR | NAL_SPS) => return true,
                    Some(_) => at += 2 + size,
                    None => return false,
                }
            }
            false
        }
        // The first fragment of an IDR slice.
        NAL_FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == NAL_IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_are_told_from_inter_frames_and_continuations() {
        // S=1, PID=0, no extension; frame header bit 0 clear: a keyframe.
        assert!(VideoCodec::Vp8.starts_keyframe(&[0x10, 0x50, 0x2a, 0x00]));
        // Same with bit 0 set: an inter frame.
        assert!(!VideoCodec::Vp8.starts_keyframe(&[0x10, 0x51, 0x2a, 0x00]));
        // A continuation packet (S=0) of a keyframe.
        assert!(!VideoCodec::Vp8.starts_keyframe(&[0x00, 0x50, 0x2a]));
        // X=1 with a 15-bit picture id (I, M) and TL0PICIDX (L): header at byte 5.
        assert!(VideoCodec::Vp8.starts_keyframe(&[0x90, 0xc0, 0x81, 0x23, 0x07, 0x50]));
        assert!(!VideoCodec::Vp8.starts_keyframe(&[0x90, 0xc0, 0x81, 0x23, 0x07, 0x51]));
        // Truncated descriptors are not keyframes (and do not panic).
        assert!(!VideoCodec::Vp8.starts_keyframe(&[0x90, 0xc0, 0x81]));
        assert!(!VideoCodec::Vp8.starts_keyframe(&[]));
    }

    #[test]
    fn h264_keyframes_in_single_aggregated_and_fragmented_packets() {
        let h264 = VideoCodec::H264;
        assert!(h264.starts_keyframe(&[0x67, 0x42]), "SPS");
        assert!(h264.starts_keyframe(&[0x65, 0x88]), "IDR");
        assert!(!h264.starts_keyframe(&[0x41, 0x9a]), "non-IDR slice");
        // STAP-A holding SPS and PPS.
        assert!(h264.starts_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        // STAP-A holding only a PPS and an SEI.
        assert!(!h264.starts_keyframe(&[0x78, 0x00, 0x01, 0x68, 0x00, 0x01, 0x06]));
        // FU-A: the start of an IDR, its continuation, a non-IDR start.
        assert!(h264.starts_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!h264.starts_keyframe(&[0x7c, 0x05, 0x00]));
        assert!(!h264.starts_keyframe(&[0x7c, 0x81, 0x00]));
        // Truncated input.
        assert!(!h264.starts_keyframe(&[0x78, 0x00]));
        assert!(!h264.starts_keyframe(&[0x7c]));
        assert!(!h264.starts_keyframe(&[]));
    }
}
