//! Packaging a recording into a replay, after the live: the video and the Opus audio are
//! remuxed, not transcoded, so a one-hour class takes seconds. VP8 goes into WebM
//! (`replay.webm`), H.264 into MP4 (`replay.mp4`, [`crate::package_h264`]); a recording with
//! audio only, or video only, is packaged with what it has.
//!
//! Each track's packets are first put back in sequence-number order ([`in_sequence`]: the
//! recording holds them as they arrived, retransmissions late), then turned into something
//! ffmpeg (ffmpeg-next) muxes with its timestamps: VP8 frames (reassembled from RTP by the `rtc`
//! VP8 depacketizer) into IVF with the RTP clock as its time base (the `rtc` IVF writer numbers
//! frames instead, which loses real timing); H.264 access units straight into the muxer as
//! packets with their RTP time (an Annex B elementary stream has no timestamps); the audio into
//! Ogg by the `rtc` Ogg writer (granules from RTP timestamps, unwrapped here first). [`remux`]
//! then interleaves the tracks, each shifted by when its first kept frame arrived so they stay
//! in sync.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use rtc::media::io::Writer;
use rtc::media::io::ogg_writer::OggWriter;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;

use crate::recording::{Recorded, TrackKind, read_codec, read_track};

/// A packaged replay.
#[derive(Debug, Clone)]
pub struct Packaged {
    pub path: PathBuf,
    pub content_type: &'static str,
    pub duration_ms: i64,
    pub bytes: i64,
}

/// RTP timestamps made monotonic across the 32-bit wrap, relative to the first.
pub(crate) struct Unwrapper {
    first: Option<u32>,
    last: u32,
    cycles: i64,
}

impl Unwrapper {
    pub(crate) fn new() -> Self {
        Self {
            first: None,
            last: 0,
            cycles: 0,
        }
    }

    pub(crate) fn unwrap(&mut self, ts: u32) -> i64 {
        let first = *self.first.get_or_insert(ts);
        if ts < self.last && self.last - ts > u32::MAX / 2 {
            self.cycles += 1;
        } else if ts > self.last && ts - self.last > u32::MAX / 2 && self.cycles > 0 {
            // A late packet from before the wrap.
            return self.cycles.saturating_sub(1) * (1i64 << 32) + i64::from(ts) - i64::from(first);
        }
        self.last = ts;
        self.cycles * (1i64 << 32) + i64::from(ts) - i64::from(first)
    }
}

/// The packets in sequence-number order (extended past the 16-bit wrap), each once: the first
/// arrival of a number is kept.
pub(crate) fn in_sequence(packets: Vec<Recorded>) -> Vec<(i64, Recorded)> {
    let mut highest: Option<i64> = None;
    let mut out: Vec<(i64, Recorded)> = packets
        .into_iter()
        .map(|recorded| {
            let seq = i64::from(recorded.packet.header.sequence_number);
            // The extension that puts it closest to the highest number seen so far.
            let extended = highest.map_or(seq, |h| {
                let candidate = (h & !0xffff) | seq;
                if candidate - h > 0x8000 {
                    candidate - 0x1_0000
                } else if h - candidate > 0x8000 {
                    candidate + 0x1_0000
                } else {
                    candidate
                }
            });
            highest = Some(highest.map_or(extended, |h| h.max(extended)));
            (extended, recorded)
        })
        .collect();
    // Stable, and nearly sorted already: retransmissions are the only packets out of place.
    out.sort_by_key(|(sequence, _)| *sequence);
    out.dedup_by_key(|(sequence, _)| *sequence);
    out
}

/// VP8 frames from RTP: (timestamp in the 90 kHz RTP clock from the first frame, frame bytes),
/// starting at the first keyframe; also the keyframe's width and height, and when it arrived
/// (ms since the recording began).
fn vp8_frames(packets: &[Recorded]) -> (Vec<(i64, Bytes)>, u16, u16, u32) {
    let mut frames = Vec::new();
    let mut first_at_ms = 0u32;
    let mut clock = Unwrapper::new();
    let mut current: Option<(u32, BytesMut)> = None;
    let (mut width, mut height) = (0u16, 0u16);
    let mut seen_keyframe = false;
    let finish = |current: &mut Option<(u32, BytesMut)>,
                  frames: &mut Vec<(i64, Bytes)>,
                  clock: &mut Unwrapper| {
        if let Some((ts, frame)) = current.take()
            && !frame.is_empty()
        {
            frames.push((clock.unwrap(ts), frame.freeze()));
        }
    };
    for Recorded { packet, at_ms } in packets {
        let mut depacketizer = Vp8Packet::default();
        let Ok(payload) = depacketizer.depacketize(&packet.payload) else {
            continue;
        };
        let head = depacketizer.is_partition_head(&packet.payload);
        if current
            .as_ref()
            .is_some_and(|(ts, _)| *ts != packet.header.timestamp)
        {
            finish(&mut current, &mut frames, &mut clock);
        }
        if current.is_none() {
            if !head || payload.is_empty() {
                continue; // the middle of a frame whose start was lost
            }
            let keyframe = payload[0] & 0x01 == 0;
            if !seen_keyframe {
                if !keyframe || payload.len() < 10 {
                    continue;
                }
                // Keyframe header: 3-byte frame tag, start code 9d 01 2a, 14-bit width and height.
                width = u16::from_le_bytes([payload[6], payload[7]]) & 0x3fff;
                height = u16::from_le_bytes([payload[8], payload[9]]) & 0x3fff;
                seen_keyframe = true;
                first_at_ms = *at_ms;
            }
            current = Some((packet.header.timestamp, BytesMut::new()));
        }
        if let Some((_, frame)) = current.as_mut() {
            frame.extend_from_slice(&payload);
        }
        if packet.header.marker {
            finish(&mut current, &mut frames, &mut clock);
        }
    }
    finish(&mut current, &mut frames, &mut clock);
    (frames, width, height, first_at_ms)
}

/// IVF with a 1/90000 time base, so each frame keeps its RTP time.
fn write_ivf(path: &Path, frames: &[(i64, Bytes)], width: u16, height: u16) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(b"DKIF")?;
    out.write_all(&0u16.to_le_bytes())?; // version
    out.write_all(&32u16.to_le_bytes())?; // header size
    out.write_all(b"VP80")?;
    out.write_all(&width.to_le_bytes())?;
    out.write_all(&height.to_le_bytes())?;
    out.write_all(&90_000u32.to_le_bytes())?; // time base denominator
    out.write_all(&1u32.to_le_bytes())?; // time base numerator
    out.write_all(&(frames.len() as u32).to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    for (pts, frame) in frames {
        out.write_all(&(frame.len() as u32).to_le_bytes())?;
        out.write_all(&(*pts as u64).to_le_bytes())?;
        out.write_all(frame)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Writes the Opus packets into Ogg; returns when the first one arrived (ms since the recording
/// began), `None` when none was written.
fn write_ogg(path: &Path, packets: Vec<Recorded>) -> anyhow::Result<Option<u32>> {
    let mut writer = OggWriter::new(BufWriter::new(File::create(path)?), 48_000, 2)
        .map_err(|e| anyhow::anyhow!("ogg: {e}"))?;
    let mut clock = Unwrapper::new();
    let mut last: Option<i64> = None;
    let mut first_at_ms = None;
    for (_, Recorded { at_ms, mut packet }) in in_sequence(packets) {
        if packet.payload.is_empty() {
            continue;
        }
        // The writer counts granules from differences of 32-bit timestamps (overflowing at the
        // wrap, and taking 1 for "none yet"): it gets the time since the first packet, from 2,
        // never going back.
        let ts = clock.unwrap(packet.header.timestamp);
        if ts < 0 || last.is_some_and(|l| ts <= l) {
            continue;
        }
        let Ok(rebased) = u32::try_from(ts + 2) else {
            break; // more than a day of audio
        };
        packet.header.timestamp = rebased;
        // A malformed packet is skipped, not fatal.
        if writer.write_rtp(&packet).is_ok() {
            last = Some(ts);
            first_at_ms.get_or_insert(at_ms);
        }
    }
    writer.close().map_err(|e| anyhow::anyhow!("ogg: {e}"))?;
    Ok(first_at_ms)
}

/// The container of a replay, chosen by the video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    WebM,
    Mp4,
}

impl Container {
    fn file_name(self) -> &'static str {
        match self {
            Container::WebM => "replay.webm",
            Container::Mp4 => "replay.mp4",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Container::WebM => "video/webm",
            Container::Mp4 => "video/mp4",
        }
    }

    fn muxer(self) -> &'static str {
        match self {
            Container::WebM => "webm",
            Container::Mp4 => "mp4",
        }
    }
}

/// A packet made here rather than demuxed: its times in its track's time base, and its bytes.
pub(crate) struct Timed {
    pub pts: i64,
    pub dts: i64,
    pub duration: i64,
    pub key: bool,
    pub data: Bytes,
}

/// One track of a replay, for [`remux`].
pub(crate) enum Source {
    /// A file ffmpeg demuxes with its timestamps (IVF, Ogg); its first stream is used.
    File(PathBuf),
    /// Packets made here, in decoding order, with their codec parameters and time base.
    Packets {
        parameters: ffmpeg_next::codec::Parameters,
        time_base: ffmpeg_next::Rational,
        packets: Vec<Timed>,
    },
}

/// Packages the recording in `dir` into `dir/replay.webm` (VP8, or audio only) or
/// `dir/replay.mp4` (H.264).
pub fn package(dir: &Path) -> anyhow::Result<Packaged> {
    let video_codec = read_codec(dir, TrackKind::Video);
    let audio_codec = read_codec(dir, TrackKind::Audio);
    let container = match &video_codec {
        None => Container::WebM,
        Some((mime, _)) if mime.eq_ignore_ascii_case("video/VP8") => Container::WebM,
        Some((mime, _)) if mime.eq_ignore_ascii_case("video/H264") => Container::Mp4,
        Some((mime, _)) => bail!("{mime} recordings are kept but not packaged into replays"),
    };
    // (track, when its first kept frame arrived in ms since the recording began)
    let mut inputs: Vec<(Source, u32)> = Vec::new();
    let mut intermediates: Vec<PathBuf> = Vec::new();
    // A video track whose packets held no usable frame (no keyframe): said in the error when
    // nothing else is left.
    let mut video_unusable = false;
    if video_codec.is_some() && dir.join("video.rtp").exists() {
        let packets = read_track(&dir.join("video.rtp")).context("reading the video recording")?;
        let had_packets = !packets.is_empty();
        match container {
            Container::WebM => {
                let packets: Vec<Recorded> =
                    in_sequence(packets).into_iter().map(|(_, p)| p).collect();
                let (frames, width, height, first_at_ms) = vp8_frames(&packets);
                drop(packets);
                if !frames.is_empty() {
                    let path = dir.join("video.ivf");
                    write_ivf(&path, &frames, width, height).context("writing IVF")?;
                    intermediates.push(path.clone());
                    inputs.push((Source::File(path), first_at_ms));
                }
            }
            Container::Mp4 => {
                if let Some(video) = crate::package_h264::video_track(packets)? {
                    inputs.push((
                        Source::Packets {
                            parameters: video.parameters,
                            time_base: ffmpeg_next::Rational(1, crate::package_h264::CLOCK_RATE),
                            packets: video.packets,
                        },
                        video.first_at_ms,
                    ));
                }
            }
        }
        video_unusable = had_packets && inputs.is_empty();
    }
    if let Some((mime, _)) = &audio_codec
        && mime.eq_ignore_ascii_case("audio/opus")
        && dir.join("audio.rtp").exists()
    {
        let packets = read_track(&dir.join("audio.rtp")).context("reading the audio recording")?;
        if !packets.is_empty() {
            let path = dir.join("audio.ogg");
            intermediates.push(path.clone());
            if let Some(at_ms) = write_ogg(&path, packets)? {
                inputs.push((Source::File(path), at_ms));
            }
        }
    }
    if inputs.is_empty() {
        if video_unusable {
            bail!("nothing playable was recorded: the video has no keyframe");
        }
        bail!("nothing was recorded");
    }
    let output = dir.join(container.file_name());
    let remuxed = remux(inputs, &output, container);
    for path in &intermediates {
        let _ = std::fs::remove_file(path);
    }
    let duration_ms = match remuxed {
        Ok(ms) => ms,
        Err(e) => {
            let _ = std::fs::remove_file(&output); // a half-written replay
            return Err(e);
        }
    };
    let bytes = std::fs::metadata(&output)?.len() as i64;
    // The replay holds everything now: the raw recording would double the disk a class takes.
    for track in ["video.rtp", "audio.rtp"] {
        let _ = std::fs::remove_file(dir.join(track));
    }
    Ok(Packaged {
        path: output,
        content_type: container.content_type(),
        duration_ms,
        bytes,
    })
}

/// Where [`remux`] reads one track from.
enum Reader {
    File(ffmpeg_next::format::context::Input, usize),
    Packets(std::vec::IntoIter<Timed>),
}

impl Reader {
    /// The track's next packet, `None` at its end.
    fn next(&mut self) -> anyhow::Result<Option<ffmpeg_next::Packet>> {
        use ffmpeg_next as ffmpeg;
        match self {
            Reader::File(ictx, index) => loop {
                let mut packet = ffmpeg::Packet::empty();
                match packet.read(ictx) {
                    Ok(()) if packet.stream() == *index => return Ok(Some(packet)),
                    Ok(()) => {}
                    Err(ffmpeg::Error::Eof) => return Ok(None),
                    Err(e) => return Err(e).context("reading a track"),
                }
            },
            Reader::Packets(packets) => Ok(packets.next().map(|timed| {
                let mut packet = ffmpeg::Packet::copy(&timed.data);
                packet.set_pts(Some(timed.pts));
                packet.set_dts(Some(timed.dts));
                packet.set_duration(timed.duration);
                if timed.key {
                    packet.set_flags(ffmpeg::packet::Flags::KEY);
                }
                packet
            })),
        }
    }
}

/// Interleaves the inputs' streams into `output` without transcoding; each input is shifted by
/// its arrival offset relative to the earliest. A file's track starts where its first packet
/// is (the Ogg writer's first granule puts the audio at -100 ms: it counts the Opus pre-skip
/// and the first packet's samples into it); packets made here start at 0 by construction (an
/// H.264 track with B-frames decodes before 0). Returns the duration in ms.
fn remux(inputs: Vec<(Source, u32)>, output: &Path, container: Container) -> anyhow::Result<i64> {
    use ffmpeg::Rescale;
    use ffmpeg_next as ffmpeg;
    ffmpeg::init().context("ffmpeg")?;
    // Errors only, as `transcode` does: its notes (faststart's second pass, the Opus frame
    // size it does without) would fill the server's log.
    ffmpeg::log::set_level(ffmpeg::log::Level::Error);
    let earliest = inputs.iter().map(|(_, at)| *at).min().unwrap_or(0);
    let mut octx =
        ffmpeg::format::output_as(output, container.muxer()).context("creating the replay")?;
    let mut readers = Vec::new();
    let mut mapping = Vec::new(); // (output index, in tb, offset ms, start in tb)
    let mut pending: Vec<Option<ffmpeg::Packet>> = Vec::new();
    for (source, at_ms) in inputs {
        let offset_ms = i64::from(at_ms - earliest);
        let (reader, parameters, time_base) = match source {
            Source::File(path) => {
                let ictx = ffmpeg::format::input(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let stream = ictx
                    .streams()
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("{} has no stream", path.display()))?;
                let (index, parameters, time_base) =
                    (stream.index(), stream.parameters(), stream.time_base());
                (Reader::File(ictx, index), parameters, time_base)
            }
            Source::Packets {
                parameters,
                time_base,
                packets,
            } => (Reader::Packets(packets.into_iter()), parameters, time_base),
        };
        let mut ost = octx
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .context("adding a stream")?;
        ost.set_parameters(parameters);
        if matches!(reader, Reader::Packets(_)) {
            ost.set_time_base(time_base);
        }
        let mut reader = reader;
        let first = reader.next()?;
        let start = match (&reader, &first) {
            (Reader::File(..), Some(packet)) => packet.pts().or(packet.dts()).unwrap_or(0),
            _ => 0,
        };
        mapping.push((ost.index(), time_base, offset_ms, start));
        pending.push(first);
        readers.push(reader);
    }
    let mut options = ffmpeg::Dictionary::new();
    if container == Container::Mp4 {
        // The index (moov) first, so a player starts and seeks with range requests before it
        // has the whole file.
        options.set("movflags", "+faststart");
    }
    octx.write_header_with(options)
        .context("writing the replay header")?;
    let out_bases: Vec<ffmpeg::Rational> = octx.streams().map(|s| s.time_base()).collect();

    // Read each input in turn, always taking the packet that plays first, so the muxer gets
    // them interleaved without buffering a whole track.
    let mut done: Vec<bool> = pending.iter().map(Option::is_none).collect();
    let mut end_ms = 0i64;
    let to_ms = |pts: i64, tb: ffmpeg::Rational| {
        pts * 1000 * i64::from(tb.numerator()) / i64::from(tb.denominator()).max(1)
    };
    loop {
        for (i, reader) in readers.iter_mut().enumerate() {
            if pending[i].is_none() && !done[i] {
                match reader.next()? {
                    Some(packet) => pending[i] = Some(packet),
                    None => done[i] = true,
                }
            }
        }
        let next = mapping
            .iter()
            .enumerate()
            .filter_map(|(i, &(_, tb, offset, start))| {
                pending[i].as_ref().map(|p| {
                    (
                        i,
                        to_ms(p.dts().or(p.pts()).unwrap_or(0) - start, tb) + offset,
                    )
                })
            })
            .min_by_key(|&(_, ms)| ms);
        let Some((i, _)) = next else { break };
        let Some(mut packet) = pending[i].take() else {
            break;
        };
        let (out_index, in_tb, offset_ms, start) = mapping[i];
        let Some(&out_tb) = out_bases.get(out_index) else {
            bail!("the replay lost a stream");
        };
        packet.rescale_ts(in_tb, out_tb);
        let shift = offset_ms * i64::from(out_tb.denominator())
            / (1000 * i64::from(out_tb.numerator()).max(1))
            - start.rescale(in_tb, out_tb);
        if let Some(pts) = packet.pts() {
            packet.set_pts(Some(pts + shift));
            end_ms = end_ms.max(to_ms(pts + shift + packet.duration(), out_tb));
        }
        if let Some(dts) = packet.dts() {
            packet.set_dts(Some(dts + shift));
        }
        packet.set_stream(out_index);
        packet.set_position(-1);
        packet
            .write_interleaved(&mut octx)
            .context("writing the replay")?;
    }
    octx.write_trailer().context("finishing the replay")?;
    Ok(end_ms)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::BufWriter;
    use std::path::Path;

    use ffmpeg_next as ffmpeg;
    use rtc::shared::marshal::Marshal;

    use super::{Unwrapper, package};
    use crate::recording::{TrackKind, append_record, write_codec};

    fn rtp(payload_type: u8, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: seq,
                timestamp,
                ssrc: 7,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(payload),
        }
        .marshal()
        .expect("an RTP packet marshals")
        .to_vec()
    }

    fn write_track(dir: &Path, kind: TrackKind, mime: &str, records: &[(u32, Vec<u8>)]) {
        let path = dir.join(format!("{}.rtp", kind.name()));
        let mut out = BufWriter::new(File::create(path).expect("track file"));
        for (at_ms, packet) in records {
            append_record(&mut out, *at_ms, packet).expect("record written");
        }
        let rate = if kind == TrackKind::Video {
            90_000
        } else {
            48_000
        };
        write_codec(dir, kind, mime, rate).expect("codec written");
    }

    /// Synthetic VP8 as the loadtest writes it (filler frames behind real frame headers, a
    /// keyframe every second, two packets a frame), starting at `first_frame`.
    fn vp8(seconds: u32, first_frame: u32) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut seq = 65_000u16;
        for frame in first_frame..seconds * 30 {
            let mut data = if frame % 30 == 0 {
                let mut key = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
                key.extend_from_slice(&320u16.to_le_bytes());
                key.extend_from_slice(&240u16.to_le_bytes());
                key
            } else {
                vec![0x11, 0x02, 0x00]
            };
            data.resize(1500, 0x5a);
            for (i, chunk) in data.chunks(1000).enumerate() {
                let mut payload = vec![if i == 0 { 0x10 } else { 0x00 }];
                payload.extend_from_slice(chunk);
                let timestamp = (u32::MAX - 30_000).wrapping_add(frame * 3000);
                out.push((frame * 1000 / 30, rtp(96, seq, timestamp, i == 1, &payload)));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    fn opus(seconds: u32) -> Vec<(u32, Vec<u8>)> {
        (0..seconds * 50)
            .map(|n| {
                let mut payload = vec![0x78u8];
                payload.extend_from_slice(&[0x5a; 80]);
                let timestamp = (u32::MAX - 10_000).wrapping_add(n * 960);
                (n * 20, rtp(111, n as u16, timestamp, false, &payload))
            })
            .collect()
    }

    /// (format duration s, [(codec, packets, start s)]) of a replay.
    fn probe(path: &Path) -> (f64, Vec<(ffmpeg::codec::Id, usize, f64)>) {
        let mut ictx = ffmpeg::format::input(path).expect("ffmpeg opens the replay");
        let duration = ictx.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE);
        let mut out: Vec<_> = ictx
            .streams()
            .map(|s| {
                let start = s.start_time() as f64 * f64::from(s.time_base());
                (s.parameters().id(), 0, start)
            })
            .collect();
        for (stream, _) in ictx.packets() {
            out[stream.index()].1 += 1;
        }
        (duration, out)
    }

    #[test]
    fn vp8_and_opus_become_webm_in_step() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The first half second lost: the video starts at its keyframe at 1 s.
        write_track(dir.path(), TrackKind::Video, "video/VP8", &vp8(3, 15));
        write_track(dir.path(), TrackKind::Audio, "audio/opus", &opus(3));
        let packaged = package(dir.path()).expect("packaged");
        assert_eq!(packaged.content_type, "video/webm");
        assert_eq!(packaged.path, dir.path().join("replay.webm"));
        assert!((packaged.duration_ms - 3000).abs() <= 100, "{packaged:?}");
        let (duration, streams) = probe(&packaged.path);
        assert!((duration - 3.0).abs() <= 0.2, "{duration} {streams:?}");
        let (Some(video), Some(audio)) = (
            streams.iter().find(|s| s.0 == ffmpeg::codec::Id::VP8),
            streams.iter().find(|s| s.0 == ffmpeg::codec::Id::OPUS),
        ) else {
            panic!("a VP8 and an Opus stream: {streams:?}");
        };
        assert_eq!(video.1, 60, "{streams:?}");
        assert!(audio.1 >= 150, "{streams:?}");
        // The keyframe arrived 1 s after the first audio packet. (WebM starts Opus at minus
        // its codec delay, 80 ms, where MP4 starts it at 0.)
        assert!((video.2 - audio.2 - 1.0).abs() <= 0.1, "{streams:?}");
    }

    #[test]
    fn audio_only_and_video_only_recordings_still_package() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_track(dir.path(), TrackKind::Audio, "audio/opus", &opus(2));
        let packaged = package(dir.path()).expect("audio only packaged");
        assert_eq!(packaged.content_type, "video/webm");
        let (duration, streams) = probe(&packaged.path);
        assert!((duration - 2.0).abs() <= 0.1, "{duration}");
        assert_eq!(streams.len(), 1);

        let dir = tempfile::tempdir().expect("temp dir");
        write_track(dir.path(), TrackKind::Video, "video/VP8", &vp8(2, 0));
        let packaged = package(dir.path()).expect("video only packaged");
        let (duration, streams) = probe(&packaged.path);
        assert!((duration - 2.0).abs() <= 0.1, "{duration}");
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].1, 60);

        let dir = tempfile::tempdir().expect("temp dir");
        assert!(
            package(dir.path()).is_err(),
            "an empty recording is an error"
        );
    }

    #[test]
    fn rtp_timestamps_unwrap_across_the_32_bit_boundary() {
        let mut clock = Unwrapper::new();
        assert_eq!(clock.unwrap(u32::MAX - 3000), 0);
        assert_eq!(clock.unwrap(u32::MAX), 3000);
        assert_eq!(clock.unwrap(2999), 6000);
        assert_eq!(clock.unwrap(5999), 9000);
    }
}
