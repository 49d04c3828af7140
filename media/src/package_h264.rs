//! H.264 replays: a publisher's recorded H.264 RTP (RFC 6184, packetization mode 1: single NAL
//! units, STAP-A, FU-A) becomes the video track of an MP4, without transcoding;
//! [`crate::package::package`] muxes it with the Opus audio.
//!
//! - **Order.** The recording holds packets as they arrived, retransmissions (the server NACKs
//!   lost packets) late and sometimes twice; they are put back in sequence-number order (16-bit
//!   numbers extended across the wrap) and duplicates dropped before anything is reassembled.
//! - **Depacketizing** is the `rtc` crate's `H264Packet` (Annex B output), behind guards it
//!   lacks: a STAP-A is checked before it is handed over (its parser indexes past the end of a
//!   malformed aggregate, and this is untrusted input), an FU-A is only reassembled from its
//!   start fragment, and a sequence gap drops the fragmented NAL unit in progress instead of
//!   gluing its pieces to the next one's. Other NAL unit types (STAP-B, MTAP, FU-B) are not
//!   sent in packetization mode 1 and are skipped.
//! - **Access units**: the NAL units of one RTP timestamp, ended by the marker bit or the next
//!   timestamp. The track starts at the first IDR access unit whose SPS and PPS are known (in it,
//!   or earlier ones prepended to it); what comes before is dropped, as no decoder could show it.
//! - **Timing** is the RTP clock (90 kHz, unwrapped by [`Unwrapper`]) as presentation time. RTP
//!   carries no decoding time, so it is derived: the presentation times in sorted order, shifted
//!   by the largest reordering seen (zero without B-frames, where decoding time = presentation
//!   time). An access unit more than a second behind the newest one is a stray and dropped.
//! - **Codec parameters** (width, height, profile, level, the SPS/PPS as extradata) come from
//!   ffmpeg's h264 demuxer run over the first access unit in memory: an Annex B stream demuxed
//!   whole would lose the RTP timestamps, so only the parameters are taken from it and the
//!   access units go to the muxer as packets with their own times, Annex B (the MP4 muxer
//!   rewrites them, and the extradata, into the length-prefixed `avcC` form).
//!
//! The container is a progressive MP4 with `movflags=+faststart` (the index before the media):
//! `GET /api/v1/replays/{id}` serves it with range requests, so a browser starts playing and
//! seeks as soon as it has the index; Chrome, Firefox and Safari 17 play H.264 with Opus in MP4.
//! A fragmented MP4 would spare faststart's second pass over the file, but it is packaged after
//! the live anyway, and a progressive file seeks everywhere without a fragment index.

use std::io::Cursor;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use ffmpeg_next as ffmpeg;
use rtc::rtp::codec::h264::{
    FU_START_BITMASK, FUA_NALU_TYPE, H264Packet, NALU_TYPE_BITMASK, STAPA_NALU_TYPE,
};
use rtc::rtp::packetizer::Depacketizer;

use crate::package::{Timed, Unwrapper, in_sequence};
use crate::recording::Recorded;

/// The RTP clock of H.264 video (RFC 6184), and the time base of its packets.
pub(crate) const CLOCK_RATE: i32 = 90_000;

/// An access unit further behind the newest one than this (1 s) is dropped.
const STALE_TICKS: i64 = CLOCK_RATE as i64;

const IDR: u8 = 5;
const SPS: u8 = 7;
const PPS: u8 = 8;

/// The H.264 track of a replay, ready for the muxer.
pub(crate) struct VideoTrack {
    pub parameters: ffmpeg::codec::Parameters,
    /// In decoding order, times in 1/[`CLOCK_RATE`], the first keyframe at 0.
    pub packets: Vec<Timed>,
    /// When the first kept access unit's first packet arrived (ms since the recording began).
    pub first_at_ms: u32,
}

/// The video track of an H.264 recording; `None` when it holds no usable keyframe. An error
/// when the keyframe's parameter sets are unreadable.
pub(crate) fn video_track(packets: Vec<Recorded>) -> anyhow::Result<Option<VideoTrack>> {
    let units = access_units(packets);
    let Some(first) = units.first() else {
        return Ok(None);
    };
    let parameters = parameters(&first.data)?;
    let first_at_ms = first.at_ms;
    Ok(Some(VideoTrack {
        parameters,
        packets: timed(units),
        first_at_ms,
    }))
}

/// One reassembled picture: its NAL units in Annex B.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AccessUnit {
    pub timestamp: u32,
    pub at_ms: u32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// The recording's access units in decoding order, from the first usable keyframe on.
fn access_units(packets: Vec<Recorded>) -> Vec<AccessUnit> {
    let mut assembler = Assembler::default();
    let mut previous: Option<i64> = None;
    for (sequence, recorded) in in_sequence(packets) {
        if previous.is_some_and(|p| sequence != p + 1) {
            assembler.fragment = None; // a loss: a fragmented NAL unit in progress is incomplete
        }
        previous = Some(sequence);
        assembler.push(&recorded);
    }
    assembler.finish();
    if assembler.dropped > 0 {
        tracing::debug!(
            dropped = assembler.dropped,
            "H.264 access units before the first keyframe dropped"
        );
    }
    assembler.units
}

/// The access unit being reassembled.
struct Building {
    timestamp: u32,
    at_ms: u32,
    data: BytesMut,
    idr: bool,
    sps: bool,
    pps: bool,
}

#[derive(Default)]
struct Assembler {
    /// An FU-A in progress: the type of the NAL unit it carries, and the depacketizer holding
    /// its fragments so far.
    fragment: Option<(u8, H264Packet)>,
    current: Option<Building>,
    /// The latest parameter sets seen (Annex B), for a keyframe that comes without them.
    last_sps: Option<Bytes>,
    last_pps: Option<Bytes>,
    started: bool,
    dropped: usize,
    units: Vec<AccessUnit>,
}

impl Assembler {
    fn push(&mut self, recorded: &Recorded) {
        let packet = &recorded.packet;
        if packet.payload.is_empty() {
            return; // padding only (bandwidth probes)
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.timestamp != packet.header.timestamp)
        {
            self.finish();
            self.fragment = None;
        }
        for nal in self.nal_units(&packet.payload) {
            self.add(packet.header.timestamp, recorded.at_ms, &nal);
        }
        if packet.header.marker {
            self.finish();
        }
    }

    /// The NAL units (Annex B) this payload completes.
    fn nal_units(&mut self, payload: &Bytes) -> Vec<Bytes> {
        let Some(&indicator) = payload.first() else {
            return Vec::new();
        };
        match indicator & NALU_TYPE_BITMASK {
            1..=23 => {
                self.fragment = None; // an FU-A left unfinished
                H264Packet::default()
                    .depacketize(payload)
                    .map_or_else(|_| Vec::new(), |nal| vec![nal])
            }
            STAPA_NALU_TYPE => {
                self.fragment = None;
                let Some(sizes) = stap_a_sizes(payload) else {
                    return Vec::new();
                };
                let Ok(annex_b) = H264Packet::default().depacketize(payload) else {
                    return Vec::new();
                };
                // The depacketizer wrote each unit behind a 4-byte start code.
                let mut units = Vec::with_capacity(sizes.len());
                let mut offset = 0;
                for size in sizes {
                    let end = offset + 4 + size;
                    if end > annex_b.len() {
                        return Vec::new();
                    }
                    units.push(annex_b.slice(offset..end));
                    offset = end;
                }
                units
            }
            FUA_NALU_TYPE => {
                let Some(&header) = payload.get(1) else {
                    return Vec::new();
                };
                let kind = header & NALU_TYPE_BITMASK;
                if header & FU_START_BITMASK != 0 {
                    self.fragment = Some((kind, H264Packet::default()));
                }
                let Some((expected, depacketizer)) = self.fragment.as_mut() else {
                    return Vec::new(); // its start was lost
                };
                if *expected != kind {
                    self.fragment = None;
                    return Vec::new();
                }
                match depacketizer.depacketize(payload) {
                    Ok(nal) if !nal.is_empty() => {
                        self.fragment = None;
                        vec![nal]
                    }
                    Ok(_) => Vec::new(), // more fragments to come
                    Err(_) => {
                        self.fragment = None;
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        }
    }

    fn add(&mut self, timestamp: u32, at_ms: u32, nal: &Bytes) {
        let Some(&header) = nal.get(4) else {
            return;
        };
        let kind = header & NALU_TYPE_BITMASK;
        match kind {
            SPS => self.last_sps = Some(nal.clone()),
            PPS => self.last_pps = Some(nal.clone()),
            _ => {}
        }
        let current = self.current.get_or_insert_with(|| Building {
            timestamp,
            at_ms,
            data: BytesMut::new(),
            idr: false,
            sps: false,
            pps: false,
        });
        current.idr |= kind == IDR;
        current.sps |= kind == SPS;
        current.pps |= kind == PPS;
        current.data.extend_from_slice(nal);
    }

    fn finish(&mut self) {
        let Some(unit) = self.current.take() else {
            return;
        };
        if unit.data.is_empty() {
            return;
        }
        let mut data = unit.data;
        if !self.started {
            if !unit.idr {
                self.dropped += 1;
                return;
            }
            if !(unit.sps && unit.pps) {
                let (Some(sps), Some(pps)) = (&self.last_sps, &self.last_pps) else {
                    self.dropped += 1;
                    return;
                };
                let mut with_sets = BytesMut::with_capacity(sps.len() + pps.len() + data.len());
                with_sets.extend_from_slice(sps);
                with_sets.extend_from_slice(pps);
                with_sets.extend_from_slice(&data);
                data = with_sets;
            }
            self.started = true;
        }
        self.units.push(AccessUnit {
            timestamp: unit.timestamp,
            at_ms: unit.at_ms,
            keyframe: unit.idr,
            data: data.freeze(),
        });
    }
}

/// The sizes of a STAP-A's NAL units, `None` unless it is well formed: each unit's 16-bit size
/// in bounds, none empty, nothing left over.
fn stap_a_sizes(payload: &[u8]) -> Option<Vec<usize>> {
    let mut rest = payload.get(1..)?;
    let mut sizes = Vec::new();
    while !rest.is_empty() {
        let [high, low, ..] = *rest else {
            return None;
        };
        let size = usize::from(u16::from_be_bytes([high, low]));
        if size == 0 || rest.len() < 2 + size {
            return None;
        }
        sizes.push(size);
        rest = &rest[2 + size..];
    }
    (!sizes.is_empty()).then_some(sizes)
}

/// Presentation and decoding times (see the module doc) and durations, in decoding order.
fn timed(units: Vec<AccessUnit>) -> Vec<Timed> {
    let mut clock = Unwrapper::new();
    let mut newest = i64::MIN;
    let mut kept: Vec<(i64, AccessUnit)> = Vec::with_capacity(units.len());
    for unit in units {
        let pts = clock.unwrap(unit.timestamp);
        if pts < newest.saturating_sub(STALE_TICKS) {
            continue;
        }
        newest = newest.max(pts);
        kept.push((pts, unit));
    }
    let mut sorted: Vec<i64> = kept.iter().map(|(pts, _)| *pts).collect();
    sorted.sort_unstable();
    let reorder = kept
        .iter()
        .zip(&sorted)
        .map(|((pts, _), earliest)| earliest - pts)
        .max()
        .unwrap_or(0)
        .max(0);
    let mut out: Vec<Timed> = Vec::with_capacity(kept.len());
    for ((pts, unit), earliest) in kept.into_iter().zip(sorted) {
        let mut dts = earliest - reorder;
        if let Some(previous) = out.last() {
            dts = dts.max(previous.dts + 1); // strictly increasing, as MP4 needs
        }
        out.push(Timed {
            pts: pts.max(dts),
            dts,
            duration: 0,
            key: unit.keyframe,
            data: unit.data,
        });
    }
    // Each lasts until the next one is decoded; the last as long as the one before it.
    let decoding: Vec<i64> = out.iter().map(|t| t.dts).collect();
    let mut previous = i64::from(CLOCK_RATE / 30);
    for (i, timed) in out.iter_mut().enumerate() {
        let duration = decoding
            .get(i + 1)
            .map_or(previous, |next| next - timed.dts);
        timed.duration = duration;
        previous = duration;
    }
    out
}

/// The codec parameters of the stream that starts with `keyframe` (SPS, PPS, IDR in Annex B),
/// from ffmpeg's h264 demuxer reading it from memory.
fn parameters(keyframe: &Bytes) -> anyhow::Result<ffmpeg::codec::Parameters> {
    ffmpeg::init().context("ffmpeg")?;
    ffmpeg::log::set_level(ffmpeg::log::Level::Error);
    let io = ffmpeg::format::context::StreamIo::from_read_seek(Cursor::new(keyframe.to_vec()))
        .context("reading the first H.264 keyframe")?;
    let ictx = ffmpeg::format::input_from_stream(io, Some("keyframe.h264"), None)
        .context("reading the H.264 parameter sets")?;
    let Some(stream) = ictx.streams().best(ffmpeg::media::Type::Video) else {
        bail!("the first H.264 keyframe holds no video");
    };
    // A copy of its own, not tied to the demuxer.
    let parameters = stream.parameters().clone();
    if parameters.id() != ffmpeg::codec::Id::H264 {
        bail!("the first H.264 keyframe was read as {:?}", parameters.id());
    }
    let decoder = ffmpeg::codec::context::Context::from_parameters(parameters.clone())
        .and_then(|c| c.decoder().video())
        .context("reading the H.264 parameter sets")?;
    if decoder.width() == 0 || decoder.height() == 0 {
        bail!("the H.264 parameter sets give no picture size");
    }
    Ok(parameters)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::BufWriter;
    use std::path::Path;

    use bytes::Bytes;
    use ffmpeg_next as ffmpeg;
    use rtc::rtp::codec::h264::H264Payloader;
    use rtc::rtp::packetizer::Payloader;
    use rtc::shared::marshal::Marshal;

    use super::{AccessUnit, access_units, timed};
    use crate::package::package;
    use crate::recording::{Recorded, TrackKind, append_record, write_codec};

    const WIDTH: u32 = 320;
    const HEIGHT: u32 = 240;
    const FPS: i64 = 30;
    /// Chrome's packets are ~1,200 bytes: FU-A for big slices, STAP-A for SPS + PPS.
    const MTU: usize = 1200;
    /// RTP clocks and sequence numbers start near their wrap, so both wrap during a test.
    const VIDEO_TS0: u32 = u32::MAX - 45_000;
    const AUDIO_TS0: u32 = u32::MAX - 24_000;
    const SEQ0: u16 = 65_500;

    /// One encoded picture: presentation time in frames, Annex B bytes, keyframe.
    struct Encoded {
        pts: i64,
        dts: i64,
        data: Vec<u8>,
        key: bool,
    }

    /// `frames` of a moving noisy test picture encoded by libx264 (a keyframe every second,
    /// SPS and PPS before each), with these x264 options.
    fn encode(frames: i64, profile: &str, b_frames: usize, x264_params: &str) -> Vec<Encoded> {
        ffmpeg::init().expect("ffmpeg initialises");
        let codec = ffmpeg::encoder::find_by_name("libx264")
            .expect("Debian's libavcodec has libx264 (scripts/lib.sh installs it)");
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .expect("a video encoder");
        enc.set_width(WIDTH);
        enc.set_height(HEIGHT);
        enc.set_format(ffmpeg::format::Pixel::YUV420P);
        enc.set_time_base(ffmpeg::Rational(1, FPS as i32));
        enc.set_frame_rate(Some(ffmpeg::Rational(FPS as i32, 1)));
        enc.set_gop(FPS as u32);
        enc.set_max_b_frames(b_frames);
        let mut options = ffmpeg::Dictionary::new();
        options.set("preset", "ultrafast");
        options.set("profile", profile);
        options.set(
            "x264-params",
            &format!("keyint={FPS}:min-keyint={FPS}:scenecut=0:{x264_params}"),
        );
        let mut enc = enc.open_with(options).expect("libx264 opens");
        let mut out = Vec::new();
        let drain = |enc: &mut ffmpeg::encoder::Video, out: &mut Vec<Encoded>| {
            let mut packet = ffmpeg::Packet::empty();
            while enc.receive_packet(&mut packet).is_ok() {
                out.push(Encoded {
                    pts: packet.pts().expect("x264 sets pts"),
                    dts: packet.dts().expect("x264 sets dts"),
                    data: packet.data().expect("a packet has data").to_vec(),
                    key: packet.is_key(),
                });
            }
        };
        let mut seed = 0x2545_f491_u32;
        for i in 0..frames {
            // A fresh frame each time: the encoder may still hold a reference to the last one.
            let mut frame =
                ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, WIDTH, HEIGHT);
            let stride = frame.stride(0);
            let luma = frame.data_mut(0);
            for y in 0..HEIGHT as usize {
                for x in 0..WIDTH as usize {
                    // A gradient moving right, with noise in a band moving down: big slices
                    // (FU-A) in every frame.
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let band = (y as i64 - i * 4).rem_euclid(HEIGHT as i64) < 60;
                    let noise = if band { (seed >> 24) as u8 / 2 } else { 0 };
                    luma[y * stride + x] = ((x as i64 + i * 3) as u8).wrapping_add(noise);
                }
            }
            for plane in 1..3 {
                let stride = frame.stride(plane);
                let data = frame.data_mut(plane);
                for y in 0..HEIGHT as usize / 2 {
                    for x in 0..WIDTH as usize / 2 {
                        data[y * stride + x] = (128 + plane * 20 + (y + i as usize) % 32) as u8;
                    }
                }
            }
            frame.set_pts(Some(i));
            enc.send_frame(&frame).expect("libx264 takes the frame");
            drain(&mut enc, &mut out);
        }
        enc.send_eof().expect("libx264 flushes");
        drain(&mut enc, &mut out);
        out
    }

    fn rtp(payload_type: u8, seq: u16, timestamp: u32, marker: bool, payload: Bytes) -> Vec<u8> {
        rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: seq,
                timestamp,
                ssrc: 0x1234_5678,
                ..Default::default()
            },
            payload,
        }
        .marshal()
        .expect("an RTP packet marshals")
        .to_vec()
    }

    /// Which RFC 6184 packet types a packetized stream used.
    #[derive(Debug, Default)]
    struct Kinds {
        single: usize,
        stap_a: usize,
        fu_a: usize,
    }

    /// The encoded pictures as recorded RTP: (ms since the recording began, RTP packet), in
    /// sending order; each picture arrives at its presentation time.
    fn packetize(pictures: &[Encoded], kinds: &mut Kinds) -> Vec<(u32, Vec<u8>)> {
        let mut payloader = H264Payloader::default();
        let mut seq = SEQ0;
        let mut out = Vec::new();
        for picture in pictures {
            let payloads = payloader
                .payload(MTU - 12, &Bytes::copy_from_slice(&picture.data))
                .expect("the payloader takes Annex B");
            let timestamp = VIDEO_TS0.wrapping_add((picture.pts * 3000) as u32);
            // Sent when encoded: in decoding order, at the decoding time.
            let at_ms = (picture.dts.max(0) * 1000 / FPS) as u32;
            for (i, payload) in payloads.iter().enumerate() {
                match payload[0] & 0x1f {
                    24 => kinds.stap_a += 1,
                    28 => kinds.fu_a += 1,
                    _ => kinds.single += 1,
                }
                let marker = i + 1 == payloads.len();
                out.push((at_ms, rtp(102, seq, timestamp, marker, payload.clone())));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    /// Opus-sized audio packets every 20 ms for `seconds` (filler after a CELT TOC byte, as
    /// the loadtest's: packaging remuxes, it never decodes).
    fn audio(seconds: i64) -> Vec<(u32, Vec<u8>)> {
        (0..seconds * 50)
            .map(|n| {
                let mut payload = vec![0x78u8];
                payload.extend_from_slice(&[0x5a; 120]);
                let timestamp = AUDIO_TS0.wrapping_add((n * 960) as u32);
                let seq = SEQ0.wrapping_add(n as u16);
                (
                    (n * 20) as u32,
                    rtp(111, seq, timestamp, false, payload.into()),
                )
            })
            .collect()
    }

    fn write_track(dir: &Path, kind: TrackKind, records: &[(u32, Vec<u8>)]) {
        let path = dir.join(format!("{}.rtp", kind.name()));
        let mut out = BufWriter::new(File::create(path).expect("track file"));
        for (at_ms, packet) in records {
            append_record(&mut out, *at_ms, packet).expect("record written");
        }
        let (mime, rate) = match kind {
            TrackKind::Video => ("video/H264", 90_000),
            TrackKind::Audio => ("audio/opus", 48_000),
        };
        write_codec(dir, kind, mime, rate).expect("codec written");
    }

    /// What a replay holds, read back with ffmpeg.
    #[derive(Debug)]
    struct Probe {
        ftyp: bool,
        faststart: bool,
        duration_s: f64,
        width: u32,
        height: u32,
        video_packets: usize,
        video_keyframes: Vec<usize>,
        decoded_frames: usize,
        decode_errors: usize,
        video_start_s: f64,
        /// Each video packet's presentation time, in file (decoding) order.
        video_pts_s: Vec<f64>,
        opus: bool,
        audio_packets: usize,
        /// The first audio packet's time.
        audio_start_s: Option<f64>,
    }

    /// The top-level MP4 boxes' types, in file order.
    fn boxes(data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = data;
        while rest.len() >= 8 {
            let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            out.push(String::from_utf8_lossy(&rest[4..8]).into_owned());
            if size < 8 || size > rest.len() {
                break;
            }
            rest = &rest[size..];
        }
        out
    }

    fn probe(path: &Path) -> Probe {
        let data = std::fs::read(path).expect("the replay exists");
        let top = boxes(&data);
        let position = |name: &str| top.iter().position(|b| b == name);
        let mut ictx = ffmpeg::format::input(path).expect("ffmpeg opens the replay");
        let mut probe = Probe {
            ftyp: position("ftyp") == Some(0),
            faststart: matches!((position("moov"), position("mdat")), (Some(m), Some(d)) if m < d),
            duration_s: ictx.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE),
            width: 0,
            height: 0,
            video_packets: 0,
            video_keyframes: Vec::new(),
            decoded_frames: 0,
            decode_errors: 0,
            video_start_s: 0.0,
            video_pts_s: Vec::new(),
            opus: false,
            audio_packets: 0,
            audio_start_s: None,
        };
        let mut video = None;
        let mut audio = None; // (index, time base)
        for stream in ictx.streams() {
            let parameters = stream.parameters();
            match parameters.id() {
                ffmpeg::codec::Id::H264 => {
                    let decoder = ffmpeg::codec::context::Context::from_parameters(parameters)
                        .and_then(|c| c.decoder().video())
                        .expect("an H.264 decoder opens on the replay's parameters");
                    probe.width = decoder.width();
                    probe.height = decoder.height();
                    probe.video_start_s =
                        stream.start_time() as f64 * f64::from(stream.time_base());
                    video = Some((stream.index(), f64::from(stream.time_base()), decoder));
                }
                ffmpeg::codec::Id::OPUS => {
                    probe.opus = true;
                    audio = Some((stream.index(), f64::from(stream.time_base())));
                }
                _ => {}
            }
        }
        let mut frame = ffmpeg::frame::Video::empty();
        for (stream, packet) in ictx.packets() {
            if let Some((index, time_base)) = audio
                && stream.index() == index
            {
                probe.audio_packets += 1;
                if let (None, Some(pts)) = (probe.audio_start_s, packet.pts()) {
                    probe.audio_start_s = Some(pts as f64 * time_base);
                }
            }
            let Some((index, time_base, decoder)) = video.as_mut() else {
                continue;
            };
            if stream.index() != *index {
                continue;
            }
            if packet.is_key() {
                probe.video_keyframes.push(probe.video_packets);
            }
            probe.video_packets += 1;
            probe
                .video_pts_s
                .push(packet.pts().unwrap_or(i64::MIN) as f64 * *time_base);
            if decoder.send_packet(&packet).is_err() {
                probe.decode_errors += 1;
            }
            while decoder.receive_frame(&mut frame).is_ok() {
                probe.decoded_frames += 1;
            }
        }
        if let Some((_, _, decoder)) = video.as_mut() {
            let _ = decoder.send_eof();
            while decoder.receive_frame(&mut frame).is_ok() {
                probe.decoded_frames += 1;
            }
        }
        probe
    }

    /// The pictures are shown one every 1/30 s from `first` s on, whatever order they were
    /// decoded in.
    fn evenly_shown(probe: &Probe, first: f64) -> bool {
        let mut shown = probe.video_pts_s.clone();
        shown.sort_by(f64::total_cmp);
        shown
            .iter()
            .enumerate()
            .all(|(i, t)| (t - first - i as f64 / FPS as f64).abs() < 0.002)
    }

    #[test]
    fn h264_and_opus_become_a_faststart_mp4() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pictures = encode(3 * FPS, "baseline", 0, "slices=2");
        assert_eq!(pictures.len(), 90);
        assert_eq!(pictures.iter().filter(|p| p.key).count(), 3);
        let mut kinds = Kinds::default();
        let video = packetize(&pictures, &mut kinds);
        assert!(
            kinds.single > 0 && kinds.stap_a > 0 && kinds.fu_a > 0,
            "the stream exercises every packet type: {kinds:?}"
        );
        write_track(dir.path(), TrackKind::Video, &video);
        write_track(dir.path(), TrackKind::Audio, &audio(3));

        let packaged = package(dir.path()).expect("packaged");
        assert_eq!(packaged.content_type, "video/mp4");
        assert_eq!(packaged.path, dir.path().join("replay.mp4"));
        assert!(
            (packaged.duration_ms - 3000).abs() <= 200,
            "{}",
            packaged.duration_ms
        );
        assert_eq!(
            packaged.bytes as u64,
            std::fs::metadata(&packaged.path).expect("replay").len()
        );
        // The raw recording and the intermediate files are gone.
        for leftover in ["video.rtp", "audio.rtp", "audio.ogg"] {
            assert!(
                !dir.path().join(leftover).exists(),
                "{leftover} left behind"
            );
        }

        let probe = probe(&packaged.path);
        assert!(probe.ftyp && probe.faststart, "{probe:?}");
        assert_eq!((probe.width, probe.height), (WIDTH, HEIGHT), "{probe:?}");
        assert!(probe.opus, "{probe:?}");
        // (The `rtc` Ogg writer repeats the last packet in its end-of-stream page.)
        assert!((150..=151).contains(&probe.audio_packets), "{probe:?}");
        assert!((probe.duration_s - 3.0).abs() <= 0.2, "{probe:?}");
        assert_eq!(probe.video_packets, 90, "{probe:?}");
        assert_eq!(probe.video_keyframes, [0, 30, 60], "{probe:?}");
        assert!(evenly_shown(&probe, 0.0), "{probe:?}");
        assert_eq!(
            (probe.decoded_frames, probe.decode_errors),
            (90, 0),
            "{probe:?}"
        );
        assert!(probe.video_start_s.abs() < 0.05, "{probe:?}");
        assert!(
            probe.audio_start_s.is_some_and(|s| s.abs() < 0.05),
            "{probe:?}"
        );
    }

    #[test]
    fn a_recording_that_starts_mid_gop_starts_at_its_first_keyframe() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pictures = encode(3 * FPS, "baseline", 0, "");
        let mut video = packetize(&pictures, &mut Kinds::default());
        // Lose everything before half a second, then up to the middle of a fragmented unit.
        let mut cut = video
            .iter()
            .position(|(at_ms, _)| *at_ms >= 500)
            .expect("packets after 0.5 s");
        while video[cut].1[12] & 0x1f != 28 || video[cut].1[13] & 0x80 != 0 {
            cut += 1;
        }
        video.drain(..cut);
        write_track(dir.path(), TrackKind::Video, &video);
        write_track(dir.path(), TrackKind::Audio, &audio(3));

        let packaged = package(dir.path()).expect("packaged");
        let probe = probe(&packaged.path);
        // The keyframe at 1 s and what follows it: 2 s of pictures, kept in step with the
        // audio, which starts at 0.
        assert_eq!(probe.video_packets, 60, "{probe:?}");
        assert_eq!(probe.video_keyframes, [0, 30], "{probe:?}");
        assert!(evenly_shown(&probe, 1.0), "{probe:?}");
        assert_eq!(
            (probe.decoded_frames, probe.decode_errors),
            (60, 0),
            "{probe:?}"
        );
        assert!((probe.video_start_s - 1.0).abs() < 0.05, "{probe:?}");
        assert!(
            probe.audio_start_s.is_some_and(|s| s.abs() < 0.05),
            "{probe:?}"
        );
        assert!((probe.duration_s - 3.0).abs() <= 0.2, "{probe:?}");
        assert!(probe.opus, "{probe:?}");
    }

    #[test]
    fn b_frames_video_only_get_decoding_times() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pictures = encode(3 * FPS, "main", 2, "b-pyramid=none");
        assert!(
            pictures.iter().any(|p| p.pts != p.dts),
            "x264 reordered pictures"
        );
        let video = packetize(&pictures, &mut Kinds::default());
        write_track(dir.path(), TrackKind::Video, &video);

        let packaged = package(dir.path()).expect("packaged");
        assert_eq!(packaged.content_type, "video/mp4");
        let probe = probe(&packaged.path);
        assert!(!probe.opus && probe.audio_packets == 0, "{probe:?}");
        assert_eq!(probe.video_packets, 90, "{probe:?}");
        assert_eq!(
            (probe.decoded_frames, probe.decode_errors),
            (90, 0),
            "{probe:?}"
        );
        assert!((probe.duration_s - 3.0).abs() <= 0.2, "{probe:?}");
        // Decoded out of order, shown in order, on time.
        let sorted = probe.video_pts_s.windows(2).all(|w| w[0] <= w[1]);
        assert!(!sorted && evenly_shown(&probe, 0.0), "{probe:?}");
    }

    #[test]
    fn an_h264_session_without_video_packets_packages_its_audio() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_codec(dir.path(), TrackKind::Video, "video/H264", 90_000).expect("codec");
        write_track(dir.path(), TrackKind::Audio, &audio(2));
        let packaged = package(dir.path()).expect("packaged");
        assert_eq!(packaged.content_type, "video/mp4");
        let probe = probe(&packaged.path);
        assert!(probe.opus && probe.video_packets == 0, "{probe:?}");
        assert!((probe.duration_s - 2.0).abs() <= 0.2, "{probe:?}");
    }

    // ---- reassembly from hand-made packets

    fn recorded(seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Recorded {
        use rtc::shared::marshal::Unmarshal;
        let mut bytes = Bytes::from(rtp(
            102,
            seq,
            timestamp,
            marker,
            Bytes::copy_from_slice(payload),
        ));
        Recorded {
            at_ms: timestamp / 90,
            packet: rtc::rtp::Packet::unmarshal(&mut bytes).expect("an RTP packet"),
        }
    }

    const SPS_NAL: &[u8] = &[0x67, 0x42, 0xc0, 0x1f];
    const PPS_NAL: &[u8] = &[0x68, 0xce, 0x3c];
    const START: &[u8] = &[0, 0, 0, 1];

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| [START, n].concat()).collect()
    }

    /// SPS + PPS in a STAP-A, an IDR in three FU-A fragments, then a P slice: two pictures.
    fn two_pictures(seq0: u16) -> Vec<Recorded> {
        let mut stap = vec![0x78];
        for nal in [SPS_NAL, PPS_NAL] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        vec![
            recorded(seq0, 3000, false, &stap),
            recorded(seq0.wrapping_add(1), 3000, false, &[0x7c, 0x85, 1, 2]),
            recorded(seq0.wrapping_add(2), 3000, false, &[0x7c, 0x05, 3, 4]),
            recorded(seq0.wrapping_add(3), 3000, true, &[0x7c, 0x45, 5]),
            recorded(seq0.wrapping_add(4), 6000, true, &[0x41, 9, 9]),
        ]
    }

    fn expected_two() -> Vec<AccessUnit> {
        vec![
            AccessUnit {
                timestamp: 3000,
                at_ms: 33,
                keyframe: true,
                data: annex_b(&[SPS_NAL, PPS_NAL, &[0x65, 1, 2, 3, 4, 5]]).into(),
            },
            AccessUnit {
                timestamp: 6000,
                at_ms: 66,
                keyframe: false,
                data: annex_b(&[&[0x41, 9, 9]]).into(),
            },
        ]
    }

    #[test]
    fn access_units_are_reassembled_across_the_sequence_wrap() {
        assert_eq!(access_units(two_pictures(65_534)), expected_two());
    }

    #[test]
    fn late_and_repeated_packets_are_put_back_in_order() {
        let mut packets = two_pictures(65_534);
        // A retransmission arrives after the next picture, and a packet twice, early.
        let late = packets.remove(2);
        packets.push(late);
        packets.insert(0, recorded(65_535, 3000, false, &[0x7c, 0x85, 1, 2]));
        assert_eq!(access_units(packets), expected_two());
    }

    #[test]
    fn a_lost_fragment_drops_its_unit_and_a_keyframe_without_it_is_not_a_start() {
        let mut packets = two_pictures(100);
        packets.remove(2); // the IDR's middle fragment
        assert_eq!(access_units(packets), []);
    }

    #[test]
    fn parameter_sets_sent_before_the_keyframe_are_put_in_front_of_it() {
        let mut stap = vec![0x78];
        for nal in [SPS_NAL, PPS_NAL] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        let packets = vec![
            recorded(1, 100, true, &stap),             // its own timestamp
            recorded(2, 1000, true, &[0x41, 7]),       // a P slice: dropped
            recorded(3, 3000, true, &[0x65, 1, 2, 3]), // the IDR alone
            recorded(4, 6000, true, &[0x41, 9, 9]),
        ];
        let units = access_units(packets);
        assert_eq!(units.len(), 2);
        assert_eq!(
            units[0].data,
            Bytes::from(annex_b(&[SPS_NAL, PPS_NAL, &[0x65, 1, 2, 3]]))
        );
        assert!(units[0].keyframe && !units[1].keyframe);
    }

    #[test]
    fn corrupt_packets_are_skipped_without_panicking() {
        let garbage: Vec<Recorded> = [
            &[0x78, 0x00, 0x01, 0x09, 0x00][..], // STAP-A cut inside a size (panics `rtc`)
            &[0x78, 0x00, 0x09, 0x67, 0x42][..], // STAP-A unit longer than the packet
            &[0x78, 0x00, 0x00, 0x00, 0x01, 0x09][..], // STAP-A with an empty unit
            &[0x78][..],
            &[0x7c][..],                // FU-A without its header
            &[0x7c, 0x05, 1, 2][..],    // FU-A without its start
            &[0x7c, 0x85, 1, 2][..],    // a start...
            &[0x7c, 0x41, 3][..],       // ...ended as another type
            &[0x79, 0, 1, 2, 3][..],    // STAP-B
            &[0x7d, 0x85, 0, 1, 2][..], // FU-B
            &[0x00, 1, 2][..],          // reserved type 0
            &[0x65][..],                // an IDR header alone
        ]
        .iter()
        .enumerate()
        .map(|(i, payload)| recorded(i as u16, 3000 * (i as u32 / 3), i % 2 == 0, payload))
        .collect();
        assert_eq!(access_units(garbage), []);

        // A recording of only that fails with a reason instead of a panic.
        let dir = tempfile::tempdir().expect("temp dir");
        let records: Vec<(u32, Vec<u8>)> = (0..200u16)
            .map(|i| {
                let payload: Vec<u8> = (0..(i % 40) + 1)
                    .map(|j| (i.wrapping_mul(31).wrapping_add(j * 7)) as u8)
                    .collect();
                (
                    u32::from(i),
                    rtp(102, i, u32::from(i / 3) * 3000, i % 3 == 2, payload.into()),
                )
            })
            .collect();
        write_track(dir.path(), TrackKind::Video, &records);
        // (Here a random IDR with parameter sets forms, which ffmpeg cannot read.)
        let error = package(dir.path()).expect_err("nothing playable");
        assert!(
            format!("{error:#}").contains("H.264 parameter sets"),
            "{error:#}"
        );
        assert!(
            dir.path().join("video.rtp").exists(),
            "the raw recording is kept"
        );
    }

    #[test]
    fn decoding_times_follow_presentation_times_reordered() {
        // I0 P3 B1 B2 P6 B4 B5 (in frames of 3000 ticks), as an encoder with B-frames sends.
        let units: Vec<AccessUnit> = [0u32, 3, 1, 2, 6, 4, 5]
            .iter()
            .map(|&f| AccessUnit {
                timestamp: VIDEO_TS0.wrapping_add(f * 3000),
                at_ms: 0,
                keyframe: f == 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            })
            .collect();
        let out = timed(units);
        let pts: Vec<i64> = out.iter().map(|t| t.pts / 3000).collect();
        let dts: Vec<i64> = out.iter().map(|t| t.dts / 3000).collect();
        assert_eq!(pts, [0, 3, 1, 2, 6, 4, 5]);
        assert_eq!(dts, [-1, 0, 1, 2, 3, 4, 5]);
        assert!(out.iter().all(|t| t.duration == 3000));
        // Without reordering, decoding time is presentation time.
        let plain: Vec<AccessUnit> = (0..4u32)
            .map(|f| AccessUnit {
                timestamp: f * 3000,
                at_ms: 0,
                keyframe: f == 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            })
            .collect();
        assert!(timed(plain).iter().all(|t| t.pts == t.dts));
    }
}
