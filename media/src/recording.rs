//! Recording a publisher: its decrypted RTP packets go to disk as they arrive, one file per
//! track, written by a thread of its own so a slow disk never stalls the SFU's loop.
//!
//! The format is deliberately dumb and append-only, so a crash loses at most the last buffer:
//! `{audio,video}.rtp` hold records of `[u16 length][u32 ms since the recording began][RTP
//! packet]` (big-endian), and `{audio,video}.codec` the track's MIME type and clock rate. Turning
//! that into a playable file is `replay::package`'s job, after the live.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;
use rtc::shared::marshal::Marshal;

/// Which track of the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Audio,
    Video,
}

impl TrackKind {
    pub fn name(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        }
    }
}

enum Record {
    Codec {
        kind: TrackKind,
        mime: String,
        clock_rate: u32,
    },
    Packet {
        kind: TrackKind,
        at_ms: u32,
        bytes: Bytes,
    },
}

/// The recording of one publishing session; dropping it closes the files.
#[derive(Debug)]
pub(crate) struct Recorder {
    dir: PathBuf,
    started: Instant,
    records: mpsc::Sender<Record>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    pub(crate) fn start(dir: PathBuf, started: Instant) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let (records, receiver) = mpsc::channel();
        let writer_dir = dir.clone();
        let writer = std::thread::Builder::new()
            .name("media-recorder".into())
            .spawn(move || {
                if let Err(e) = write_records(&writer_dir, &receiver) {
                    tracing::error!(dir = %writer_dir.display(), error = %e, "recording failed");
                }
            })?;
        Ok(Self {
            dir,
            started,
            records,
            writer: Some(writer),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn codec(&self, kind: TrackKind, mime: &str, clock_rate: u32) {
        let _ = self.records.send(Record::Codec {
            kind,
            mime: mime.to_owned(),
            clock_rate,
        });
    }

    pub(crate) fn packet(&self, now: Instant, kind: TrackKind, packet: &rtc::rtp::Packet) {
        let Ok(bytes) = packet.marshal() else {
            return;
        };
        let at_ms = now
            .duration_since(self.started)
            .as_millis()
            .min(u128::from(u32::MAX)) as u32;
        let _ = self.records.send(Record::Packet {
            kind,
            at_ms,
            bytes: bytes.freeze(),
        });
    }

    /// Closes the files and waits for the writer to finish (on a blocking thread).
    pub(crate) fn finish(mut self) -> PathBuf {
        let (dir, writer) = (self.dir.clone(), self.writer.take());
        drop(self); // closes the channel: the writer flushes and ends
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        dir
    }
}

/// Appends one record to a track file (the format above).
pub fn append_record(out: &mut impl Write, at_ms: u32, packet: &[u8]) -> std::io::Result<()> {
    let Ok(length) = u16::try_from(packet.len()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an RTP packet longer than 65,535 bytes",
        ));
    };
    out.write_all(&length.to_be_bytes())?;
    out.write_all(&at_ms.to_be_bytes())?;
    out.write_all(packet)
}

/// Writes a track's codec file (the format above).
pub fn write_codec(
    dir: &Path,
    kind: TrackKind,
    mime: &str,
    clock_rate: u32,
) -> std::io::Result<()> {
    std::fs::write(
        dir.join(format!("{}.codec", kind.name())),
        format!("{mime}\n{clock_rate}\n"),
    )
}

fn write_records(dir: &Path, records: &mpsc::Receiver<Record>) -> std::io::Result<()> {
    let mut audio: Option<BufWriter<File>> = None;
    let mut video: Option<BufWriter<File>> = None;
    for record in records {
        match record {
            Record::Codec {
                kind,
                mime,
                clock_rate,
            } => write_codec(dir, kind, &mime, clock_rate)?,
            Record::Packet { kind, at_ms, bytes } => {
                let file = match kind {
                    TrackKind::Audio => &mut audio,
                    TrackKind::Video => &mut video,
                };
                if file.is_none() {
                    let path = dir.join(format!("{}.rtp", kind.name()));
                    *file = Some(BufWriter::with_capacity(64 * 1024, File::create(path)?));
                }
                if let Some(out) = file.as_mut()
                    && bytes.len() <= usize::from(u16::MAX)
                {
                    append_record(out, at_ms, &bytes)?;
                }
            }
        }
    }
    for out in [audio, video].into_iter().flatten() {
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    Ok(())
}

/// One recorded packet, read back.
pub(crate) struct Recorded {
    pub at_ms: u32,
    pub packet: rtc::rtp::Packet,
}

/// Reads a track's recording; a record cut short by a crash ends it.
pub(crate) fn read_track(path: &Path) -> std::io::Result<Vec<Recorded>> {
    use rtc::shared::marshal::Unmarshal;
    let data = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 6 {
        let length = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let at_ms = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
        if rest.len() < 6 + length {
            break;
        }
        let mut bytes = Bytes::copy_from_slice(&rest[6..6 + length]);
        if let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut bytes) {
            out.push(Recorded { at_ms, packet });
        }
        rest = &rest[6 + length..];
    }
    Ok(out)
}

/// A track's codec: MIME type and clock rate.
pub(crate) fn read_codec(dir: &Path, kind: TrackKind) -> Option<(String, u32)> {
    let text = std::fs::read_to_string(dir.join(format!("{}.codec", kind.name()))).ok()?;
    let mut lines = text.lines();
    let mime = lines.next()?.to_owned();
    let rate = lines.next()?.parse().ok()?;
    Some((mime, rate))
}
