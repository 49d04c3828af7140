//! Replay packaging time: writes a synthetic recording of a class in the media endpoint's format
//! (video at 30 frames per second with a keyframe every 2 s, and Opus packets every 20 ms), then
//! times `media::package::package` on it, the job that runs when a live ends.
//!
//! - `--codec vp8` (the default): filler VP8 frames behind real frame headers, split into
//!   ~1,100-byte RTP packets, packaged into WebM.
//! - `--codec h264`: a real 2-second 1280×720 clip encoded once by libx264 (the ffmpeg CLI: 60
//!   pictures, the first an IDR with SPS and PPS, no B-frames, at the video bitrate), its
//!   pictures repeated with advancing RTP timestamps and packetized as a browser does (RFC 6184
//!   mode 1 at a 1,200-byte MTU: STAP-A, FU-A, single NAL units), packaged into MP4. Each
//!   repetition starts at its IDR, so the whole hour even decodes.
//!
//! The audio payloads are filler after an Opus TOC byte: packaging remuxes, it never decodes.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use media::recording::{TrackKind, append_record, write_codec};
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::shared::marshal::Marshal;
use serde_json::json;

/// The video codec of the synthetic recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    Vp8,
    H264,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Minutes of class.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    #[arg(long, default_value_t = 1500)]
    video_kbps: u64,
    /// Where the recording is written (emptied first).
    #[arg(long, default_value = "target/bench/replay")]
    dir: PathBuf,
    /// The video codec: VP8 (packaged into WebM) or H.264 (into MP4).
    #[arg(long, value_enum, default_value_t = Codec::Vp8)]
    codec: Codec,
}

fn packet(
    payload_type: u8,
    sequence_number: u16,
    timestamp: u32,
    marker: bool,
    payload: &[u8],
) -> anyhow::Result<bytes::BytesMut> {
    let packet = rtc::rtp::Packet {
        header: rtc::rtp::Header {
            version: 2,
            marker,
            payload_type,
            sequence_number,
            timestamp,
            ssrc: 0x1234_5678,
            ..Default::default()
        },
        payload: bytes::Bytes::copy_from_slice(payload),
    };
    packet.marshal().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Frames a second, and a keyframe every this many frames (2 s).
const FPS: u64 = 30;
const GOP: u64 = 60;

/// The synthetic VP8 track.
fn write_vp8(args: &ReplayArgs, video: &mut impl std::io::Write) -> anyhow::Result<()> {
    let frame_bytes = (args.video_kbps * 1000 / 8 / FPS) as usize;
    let filler = vec![0x5au8; 1200];
    let mut seq = 0u16;
    for frame in 0..args.minutes * 60 * FPS {
        let at_ms = (frame * 1000 / FPS) as u32;
        let timestamp = (frame * 3000) as u32;
        let keyframe = frame % GOP == 0;
        // A VP8 frame: on keyframes the 3-byte tag (bit 0 clear), start code and 1280×720.
        let mut data = BytesMut::with_capacity(frame_bytes);
        if keyframe {
            data.put_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            data.put_u16_le(1280);
            data.put_u16_le(720);
        } else {
            data.put_slice(&[0x11, 0x02, 0x00]);
        }
        while data.len() < frame_bytes {
            let n = (frame_bytes - data.len()).min(filler.len());
            data.put_slice(&filler[..n]);
        }
        let chunks: Vec<&[u8]> = data.chunks(1100).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut payload = Vec::with_capacity(chunk.len() + 1);
            payload.push(if i == 0 { 0x10 } else { 0x00 }); // VP8 descriptor, S bit
            payload.extend_from_slice(chunk);
            seq = seq.wrapping_add(1);
            let bytes = packet(96, seq, timestamp, i + 1 == chunks.len(), &payload)?;
            append_record(video, at_ms, &bytes)?;
        }
    }
    Ok(())
}

/// One GOP of real H.264 (Annex B pictures), encoded by the ffmpeg CLI with libx264.
fn h264_clip(args: &ReplayArgs) -> anyhow::Result<Vec<Bytes>> {
    let path = args.dir.join("clip.h264");
    let kbps = args.video_kbps.to_string();
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1280x720:rate={FPS}"))
        .args(["-frames:v", &GOP.to_string(), "-pix_fmt", "yuv420p"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-bf",
            "0",
        ])
        .args(["-g", &GOP.to_string(), "-sc_threshold", "0"])
        .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
        .args([
            "-bufsize",
            &format!("{}k", args.video_kbps * 2),
            "-f",
            "h264",
        ])
        .arg(&path)
        .status()
        .context("running the ffmpeg CLI (it encodes the H.264 clip)")?;
    if !status.success() {
        bail!("ffmpeg could not encode the H.264 clip ({status})");
    }
    let stream = std::fs::read(&path)?;
    std::fs::remove_file(&path)?;
    let pictures = pictures(&stream);
    if pictures.len() as u64 != GOP {
        bail!("the H.264 clip has {} pictures, not {GOP}", pictures.len());
    }
    Ok(pictures)
}

/// The NAL units of an Annex B stream, without their start codes.
fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new(); // (start code position, NAL unit position)
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            let code = if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            };
            starts.push((code, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &(_, from))| {
            let to = starts.get(n + 1).map_or(stream.len(), |&(code, _)| code);
            &stream[from..to]
        })
        .filter(|nal| !nal.is_empty())
        .collect()
}

/// The stream cut into pictures (Annex B each): a picture begins at a parameter set, SEI or
/// delimiter after a slice, or at a slice that starts a picture (first_mb_in_slice 0).
fn pictures(stream: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut current = BytesMut::new();
    let mut has_slice = false;
    for nal in nal_units(stream) {
        let Some(&header) = nal.first() else {
            continue;
        };
        let kind = header & 0x1f;
        let slice = kind == 1 || kind == 5;
        let starts_picture = match kind {
            6..=9 => true,
            1 | 5 => nal.get(1).is_some_and(|b| b & 0x80 != 0),
            _ => false,
        };
        if starts_picture && has_slice {
            out.push(std::mem::take(&mut current).freeze());
            has_slice = false;
        }
        current.put_slice(&[0, 0, 0, 1]);
        current.put_slice(nal);
        has_slice |= slice;
    }
    if has_slice {
        out.push(current.freeze());
    }
    out
}

/// The synthetic H.264 track: the clip's pictures over and over, 90 kHz timestamps advancing.
fn write_h264(args: &ReplayArgs, video: &mut impl std::io::Write) -> anyhow::Result<()> {
    let clip = h264_clip(args)?;
    let mut payloader = H264Payloader::default();
    let mut seq = 0u16;
    for frame in 0..args.minutes * 60 * FPS {
        let at_ms = (frame * 1000 / FPS) as u32;
        let timestamp = (frame * 3000) as u32;
        let picture = &clip[(frame % GOP) as usize];
        let payloads = payloader
            .payload(1200 - 12, picture)
            .map_err(|e| anyhow::anyhow!("packetizing H.264: {e}"))?;
        for (i, payload) in payloads.iter().enumerate() {
            seq = seq.wrapping_add(1);
            let bytes = packet(102, seq, timestamp, i + 1 == payloads.len(), payload)?;
            append_record(video, at_ms, &bytes)?;
        }
    }
    Ok(())
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let written = Instant::now();
    let filler = vec![0x5au8; 1200];
    {
        let mut video = BufWriter::new(File::create(args.dir.join("video.rtp"))?);
        match args.codec {
            Codec::Vp8 => write_vp8(&args, &mut video)?,
            Codec::H264 => write_h264(&args, &mut video)?,
        }
        video.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let mut audio = BufWriter::new(File::create(args.dir.join("audio.rtp"))?);
        let mut seq = 0u16;
        for n in 0..args.minutes * 60 * 50 {
            let mut payload = vec![0x78u8]; // Opus TOC: 20 ms CELT frame
            payload.extend_from_slice(&filler[..120]);
            seq = seq.wrapping_add(1);
            let bytes = packet(111, seq, (n * 960) as u32, false, &payload)?;
            append_record(&mut audio, (n * 20) as u32, &bytes)?;
        }
        audio.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    let video_mime = match args.codec {
        Codec::Vp8 => "video/VP8",
        Codec::H264 => "video/H264",
    };
    write_codec(&args.dir, TrackKind::Video, video_mime, 90_000)?;
    write_codec(&args.dir, TrackKind::Audio, "audio/opus", 48_000)?;
    let recording_bytes: u64 = ["video.rtp", "audio.rtp"]
        .iter()
        .map(|f| {
            std::fs::metadata(args.dir.join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    let write_seconds = written.elapsed().as_secs_f64();

    let started = Instant::now();
    let packaged = media::package::package(&args.dir)?;
    let seconds = started.elapsed().as_secs_f64();
    let result = json!({
        "benchmark": "replay-package",
        "codec": match args.codec {
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        },
        "minutes": args.minutes,
        "video_kbps": args.video_kbps,
        "recording_mb": recording_bytes as f64 / 1_048_576.0,
        "synthetic_recording_written_seconds": write_seconds,
        "package_seconds": seconds,
        "replay_duration_ms": packaged.duration_ms,
        "replay_mb": packaged.bytes as f64 / 1_048_576.0,
        "content_type": packaged.content_type,
        "replay": packaged.path,
    });
    println!("{result}");
    Ok(())
}
