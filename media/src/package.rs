//! Packaging a recording into a replay, after the live: VP8 video and Opus audio are remuxed,
//! not transcoded, into WebM with ffmpeg (ffmpeg-next), so a one-hour class takes seconds.
//!
//! The recorded RTP is first turned into files ffmpeg demuxes with their timestamps: the video
//! frames (reassembled from RTP by the `rtc` VP8 depacketizer) into IVF with the RTP clock as its
//! time base (the `rtc` IVF writer numbers frames instead, which loses real timing), the audio
//! into Ogg by the `rtc` Ogg writer (granules from RTP timestamps). ffmpeg then interleaves the
//! two into WebM, each track shifted by when its first packet arrived so they stay in sync.
//! H.264 recordings are kept but not packaged yet.

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
struct Unwrapper {
    first: Option<u32>,
    last: u32,
    cycles: i64,
}

impl Unwrapper {
    fn new() -> Self {
        Self {
            first: None,
            last: 0,
            cycles: 0,
        }
    }

    fn unwrap(&mut self, ts: u32) -> i64 {
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

/// VP8 frames from RTP: (timestamp in the 90 kHz RTP clock from the first frame, frame bytes),
/// starting at the first keyframe; also the keyframe's width and height.
fn vp8_frames(packets: &[Recorded]) -> (Vec<(i64, Bytes)>, u16, u16) {
    let mut frames = Vec::new();
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
    for Recorded { packet, .. } in packets {
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
    (frames, width, height)
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

fn write_ogg(path: &Path, packets: &[Recorded]) -> anyhow::Result<()> {
    let mut writer = OggWriter::new(BufWriter::new(File::create(path)?), 48_000, 2)
        .map_err(|e| anyhow::anyhow!("ogg: {e}"))?;
    for Recorded { packet, .. } in packets {
        // A malformed packet is skipped, not fatal.
        let _ = writer.write_rtp(packet);
    }
    writer.close().map_err(|e| anyhow::anyhow!("ogg: {e}"))?;
    Ok(())
}

/// Packages the recording in `dir` into `dir/replay.webm`.
pub fn package(dir: &Path) -> anyhow::Result<Packaged> {
    let video_codec = read_codec(dir, TrackKind::Video);
    let audio_codec = read_codec(dir, TrackKind::Audio);
    if let Some((mime, _)) = &video_codec
        && !mime.eq_ignore_ascii_case("video/VP8")
    {
        bail!("{mime} recordings are kept but not packaged into replays yet");
    }
    let mut inputs: Vec<(PathBuf, u32)> = Vec::new();
    if video_codec.is_some() {
        let packets = read_track(&dir.join("video.rtp")).context("reading the video recording")?;
        let (frames, width, height) = vp8_frames(&packets);
        if !frames.is_empty() {
            let path = dir.join("video.ivf");
            write_ivf(&path, &frames, width, height).context("writing IVF")?;
            inputs.push((path, packets.first().map_or(0, |p| p.at_ms)));
        }
    }
    if let Some((mime, _)) = &audio_codec
        && mime.eq_ignore_ascii_case("audio/opus")
    {
        let packets = read_track(&dir.join("audio.rtp")).context("reading the audio recording")?;
        if !packets.is_empty() {
            let path = dir.join("audio.ogg");
            write_ogg(&path, &packets)?;
            inputs.push((path, packets[0].at_ms));
        }
    }
    if inputs.is_empty() {
        bail!("nothing was recorded");
    }
    let output = dir.join("replay.webm");
    let duration_ms = remux(&inputs, &output)?;
    let bytes = std::fs::metadata(&output)?.len() as i64;
    for (path, _) in &inputs {
        let _ = std::fs::remove_file(path);
    }
    // The replay holds everything now: the raw recording would double the disk a class takes.
    for track in ["video.rtp", "audio.rtp"] {
        let _ = std::fs::remove_file(dir.join(track));
    }
    Ok(Packaged {
        path: output,
        content_type: "video/webm",
        duration_ms,
        bytes,
    })
}

/// Interleaves the inputs' streams into `output` without transcoding; each input is shifted by
/// its arrival offset relative to the earliest. Returns the duration in ms.
fn remux(inputs: &[(PathBuf, u32)], output: &Path) -> anyhow::Result<i64> {
    use ffmpeg_next as ffmpeg;
    ffmpeg::init().context("ffmpeg")?;
    let earliest = inputs.iter().map(|(_, at)| *at).min().unwrap_or(0);
    let mut contexts = Vec::new();
    for (path, _) in inputs {
        contexts.push(
            ffmpeg::format::input(path).with_context(|| format!("opening {}", path.display()))?,
        );
    }
    let mut octx = ffmpeg::format::output(output).context("creating the replay")?;
    let mut mapping = Vec::new(); // (input index, input stream index, output index, in tb, offset ms)
    for (i, ictx) in contexts.iter().enumerate() {
        let stream = ictx
            .streams()
            .next()
            .ok_or_else(|| anyhow::anyhow!("{} has no stream", inputs[i].0.display()))?;
        let mut ost = octx
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .context("adding a stream")?;
        ost.set_parameters(stream.parameters());
        mapping.push((
            i,
            stream.index(),
            ost.index(),
            stream.time_base(),
            i64::from(inputs[i].1 - earliest),
        ));
    }
    octx.write_header().context("writing the replay header")?;
    let out_bases: Vec<ffmpeg::Rational> = octx.streams().map(|s| s.time_base()).collect();

    // Read each input in turn, always taking the packet that plays first, so the muxer gets
    // them interleaved without buffering a whole track.
    let mut pending: Vec<Option<ffmpeg::Packet>> = vec![None; contexts.len()];
    let mut done = vec![false; contexts.len()];
    let mut end_ms = 0i64;
    let to_ms = |pts: i64, tb: ffmpeg::Rational| {
        pts * 1000 * i64::from(tb.numerator()) / i64::from(tb.denominator()).max(1)
    };
    loop {
        for (i, ictx) in contexts.iter_mut().enumerate() {
            if pending[i].is_none() && !done[i] {
                let mut packet = ffmpeg::Packet::empty();
                match packet.read(ictx) {
                    Ok(()) => pending[i] = Some(packet),
                    Err(ffmpeg::Error::Eof) => done[i] = true,
                    Err(e) => return Err(e).context("reading a track"),
                }
            }
        }
        let next = mapping
            .iter()
            .filter_map(|&(i, _, _, tb, offset)| {
                pending[i]
                    .as_ref()
                    .map(|p| (i, to_ms(p.dts().or(p.pts()).unwrap_or(0), tb) + offset))
            })
            .min_by_key(|&(_, ms)| ms);
        let Some((i, _)) = next else { break };
        let Some(mut packet) = pending[i].take() else {
            break;
        };
        let (_, _, out_index, in_tb, offset_ms) = mapping[i];
        let out_tb = out_bases[out_index];
        packet.rescale_ts(in_tb, out_tb);
        let shift = offset_ms * i64::from(out_tb.denominator())
            / (1000 * i64::from(out_tb.numerator()).max(1));
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
    use super::Unwrapper;

    #[test]
    fn rtp_timestamps_unwrap_across_the_32_bit_boundary() {
        let mut clock = Unwrapper::new();
        assert_eq!(clock.unwrap(u32::MAX - 3000), 0);
        assert_eq!(clock.unwrap(u32::MAX), 3000);
        assert_eq!(clock.unwrap(2999), 6000);
        assert_eq!(clock.unwrap(5999), 9000);
    }
}
