//! Replay packaging time: writes a synthetic recording of a class in the media endpoint's format
//! (VP8 frames at 30 per second with a keyframe every 2 s, split into ~1,100-byte RTP packets, and
//! Opus packets every 20 ms), then times `media::package::package` on it, the job that runs when a
//! live ends. The payload bytes are filler: packaging remuxes, it never decodes.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use media::recording::{TrackKind, append_record, write_codec};
use rtc::shared::marshal::Marshal;
use serde_json::json;

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

pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let written = Instant::now();
    let frame_bytes = (args.video_kbps * 1000 / 8 / 30) as usize;
    let filler = vec![0x5au8; 1200];
    {
        let mut video = BufWriter::new(File::create(args.dir.join("video.rtp"))?);
        let mut seq = 0u16;
        let frames = args.minutes * 60 * 30;
        for frame in 0..frames {
            let at_ms = (frame * 1000 / 30) as u32;
            let timestamp = (frame * 3000) as u32;
            let keyframe = frame % 60 == 0;
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
                append_record(&mut video, at_ms, &bytes)?;
            }
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
    write_codec(&args.dir, TrackKind::Video, "video/VP8", 90_000)?;
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
        "minutes": args.minutes,
        "video_kbps": args.video_kbps,
        "recording_mb": recording_bytes as f64 / 1_048_576.0,
        "synthetic_recording_written_seconds": write_seconds,
        "package_seconds": seconds,
        "replay_duration_ms": packaged.duration_ms,
        "replay_mb": packaged.bytes as f64 / 1_048_576.0,
        "replay": packaged.path,
    });
    println!("{result}");
    Ok(())
}
