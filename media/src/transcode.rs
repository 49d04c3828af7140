//! Short videos (短视频): any clip ffmpeg can read becomes an H.264/AAC MP4 that every browser
//! plays, with a JPEG cover. Blocking (run it on a blocking thread); ffmpeg-next does the work.
//!
//! The pipeline is the one the ffmpeg CLI builds, without libavfilter: decode, scale with
//! swscale to fit a 1280×720 box (either orientation, square pixels, even sides), turn the
//! picture upright when the container says it is rotated (phones record portrait that way, and
//! the pixels are rotated here rather than flagged, because the muxer API cannot carry the
//! flag), drop frames above 30 per second, encode with libx264 (`veryfast`, CRF 23, a keyframe
//! every 2 s so seeking is quick); audio is resampled by swresample to the native `aac`
//! encoder's planar float and cut into its 1,024-sample frames; the MP4 is written with
//! `movflags=+faststart`, so playback starts before the whole file arrives. The cover is the
//! first frame at or after 1 s (the first frame of a shorter clip), encoded by `mjpeg`.
//!
//! [`probe`] reads only the headers, to refuse what cannot work before anything is queued.
//! Every failure is a [`TranscodeError`] with a stable English [`code`](TranscodeError::code).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ffmpeg::format::{Pixel, Sample, sample};
use ffmpeg::software::{resampling, scaling};
use ffmpeg::{ChannelLayout, Dictionary, Packet, Rational, Rescale, codec, frame, media, picture};
use ffmpeg_next as ffmpeg;

/// The output fits a box this long on its long side …
pub const MAX_LONG_SIDE: u32 = 1280;
/// … and this long on its short side (720p, portrait or landscape).
pub const MAX_SHORT_SIDE: u32 = 720;
/// Frames above this rate are dropped.
pub const MAX_FPS: i64 = 30;
/// Inputs with more pixels per frame than 4096×4096 are refused (4K UHD fits).
pub const MAX_INPUT_PIXELS: u64 = 4096 * 4096;
/// A clip shorter than this is not a product video (a still image opens as a one-frame video).
pub const MIN_DURATION_MS: i64 = 500;
/// Where the cover is taken from.
const COVER_AT_MS: i64 = 1000;

/// The video time base of the encoder: 90 kHz holds every common frame rate exactly.
const VIDEO_TB: Rational = Rational(1, 90_000);
const MICROS: Rational = Rational(1, 1_000_000);
const X264_PRESET: &str = "veryfast";
const X264_CRF: &str = "23";
const AAC_BIT_RATE: usize = 128_000;
/// Sample rates the native AAC encoder takes; others are resampled to 48 kHz.
const AAC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];
/// JPEG quantiser of the cover (2 is best, 31 worst).
const COVER_QUALITY: i32 = 3;

/// What a transcode may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest accepted clip.
    pub max_duration_ms: i64,
    /// Wall-clock budget of one transcode; a pathological input cannot hold the worker longer.
    pub max_wall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_duration_ms: 10 * 60 * 1000,
            max_wall: Duration::from_secs(15 * 60),
        }
    }
}

/// A clip, as probed (the source, upright) or as transcoded (the MP4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    /// Unknown for some sources until they are decoded (0 then).
    pub duration_ms: i64,
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
}

/// Why a clip could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// Not a media file ffmpeg can open (random bytes, a truncated header).
    #[error("not a readable media file: {0}")]
    Unreadable(String),
    /// A media file without a video track (audio only, a cover picture only).
    #[error("the file has no video track")]
    NoVideo,
    /// A video track whose codec or size this server does not take.
    #[error("unsupported video: {0}")]
    Unsupported(String),
    /// Opened, but the pictures could not be decoded.
    #[error("the video could not be decoded: {0}")]
    Undecodable(String),
    #[error("the clip lasts {duration_ms} ms, more than the {max_ms} ms allowed")]
    TooLong { duration_ms: i64, max_ms: i64 },
    #[error("the clip lasts {duration_ms} ms, less than {MIN_DURATION_MS} ms")]
    TooShort { duration_ms: i64 },
    #[error("transcoding took longer than {0:?}")]
    TimedOut(Duration),
    #[error("cancelled")]
    Cancelled,
    /// An encoder this build of FFmpeg lacks (libx264, aac, mjpeg): a server problem.
    #[error("FFmpeg has no {0} encoder")]
    EncoderMissing(&'static str),
    /// Encoding or writing failed: a server problem, not the clip's.
    #[error("transcoding failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl TranscodeError {
    /// A stable English code for clients (the web app maps it to its own words).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable(_) | Self::NoVideo | Self::Unsupported(_) => "video_unsupported",
            Self::Undecodable(_) => "video_undecodable",
            Self::TooLong { .. } => "video_too_long",
            Self::TooShort { .. } => "video_too_short",
            Self::TimedOut(_) => "video_timeout",
            Self::Cancelled => "cancelled",
            Self::EncoderMissing(_) | Self::Failed(_) | Self::Io(_) => "internal",
        }
    }
}

fn failed(what: &str) -> impl FnOnce(ffmpeg::Error) -> TranscodeError + '_ {
    move |e| TranscodeError::Failed(format!("{what}: {e}"))
}

fn init() -> Result<(), TranscodeError> {
    ffmpeg::init().map_err(failed("ffmpeg init"))?;
    // x264 prints its statistics and every decoder its warnings at the default level; the
    // outcome is reported through the result instead.
    ffmpeg::log::set_level(ffmpeg::log::Level::Error);
    Ok(())
}

/// Quarter turns clockwise that make the picture upright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    None,
    Cw90,
    Half,
    Ccw90,
}

impl Turn {
    /// From a stream's display matrix, as the ffmpeg CLI's autorotate reads it.
    fn of(stream: &ffmpeg::format::stream::Stream) -> Turn {
        use ffmpeg::codec::packet::side_data::Type;
        let Some(data) = stream
            .side_data()
            .find(|sd| sd.kind() == Type::DisplayMatrix)
            .map(|sd| sd.data().to_vec())
        else {
            return Turn::None;
        };
        if data.len() < 36 {
            return Turn::None;
        }
        // Nine native-endian 32-bit values; a and b are 16.16 fixed point.
        let at = |i: usize| {
            f64::from(i32::from_ne_bytes([
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ])) / 65536.0
        };
        let (a, b, c, d) = (at(0), at(1), at(3), at(4));
        let (scale0, scale1) = (a.hypot(c), b.hypot(d));
        if scale0 == 0.0 || scale1 == 0.0 {
            return Turn::None;
        }
        // av_display_rotation_get is the counter-clockwise angle; the CLI turns by its negation.
        let ccw = -(b / scale1).atan2(a / scale0).to_degrees();
        let theta = (-ccw).round().rem_euclid(360.0);
        match theta as i64 {
            45..135 => Turn::Cw90,
            135..225 => Turn::Half,
            225..315 => Turn::Ccw90,
            _ => Turn::None,
        }
    }

    fn swaps_sides(self) -> bool {
        matches!(self, Turn::Cw90 | Turn::Ccw90)
    }
}

/// The video track chosen, with what is known of it before decoding.
struct Chosen {
    index: usize,
    width: u32,
    height: u32,
    /// Sample aspect ratio (pixel shape).
    sar: Rational,
    turn: Turn,
}

fn choose_video(ictx: &ffmpeg::format::context::Input) -> Result<Chosen, TranscodeError> {
    use ffmpeg::format::stream::Disposition;
    // A cover picture (an MP3's album art) is a "video" track of one frame: not a video.
    let stream = ictx
        .streams()
        .best(media::Type::Video)
        .filter(|s| !s.disposition().contains(Disposition::ATTACHED_PIC))
        .ok_or(TranscodeError::NoVideo)?;
    let id = stream.parameters().id();
    if ffmpeg::decoder::find(id).is_none() {
        return Err(TranscodeError::Unsupported(format!(
            "no decoder for {id:?}"
        )));
    }
    let decoder = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| TranscodeError::Unsupported(format!("{id:?}: {e}")))?;
    let (width, height) = (decoder.width(), decoder.height());
    if width == 0 || height == 0 {
        return Err(TranscodeError::Unsupported(
            "the picture size is unknown".into(),
        ));
    }
    if u64::from(width) * u64::from(height) > MAX_INPUT_PIXELS {
        return Err(TranscodeError::Unsupported(format!(
            "{width}x{height} is larger than 4096x4096"
        )));
    }
    let sar = decoder.aspect_ratio();
    Ok(Chosen {
        index: stream.index(),
        width,
        height,
        sar: if sar.numerator() > 0 && sar.denominator() > 0 {
            sar
        } else {
            Rational(1, 1)
        },
        turn: Turn::of(&stream),
    })
}

/// The audio track to keep, if any has a decoder.
fn choose_audio(ictx: &ffmpeg::format::context::Input) -> Option<usize> {
    let stream = ictx.streams().best(media::Type::Audio)?;
    ffmpeg::decoder::find(stream.parameters().id())?;
    Some(stream.index())
}

/// The display size (square pixels), upright.
fn display_size(chosen: &Chosen) -> (u32, u32) {
    let w = (u64::from(chosen.width) * chosen.sar.numerator() as u64
        / chosen.sar.denominator() as u64)
        .clamp(1, u64::from(u32::MAX)) as u32;
    let h = chosen.height;
    if chosen.turn.swaps_sides() {
        (h, w)
    } else {
        (w, h)
    }
}

/// `(w, h)` shrunk to fit the output box (never enlarged), aspect kept, both sides even.
pub fn fit(w: u32, h: u32) -> (u32, u32) {
    let (long, short) = (w.max(h).max(1) as f64, w.min(h).max(1) as f64);
    let scale = (f64::from(MAX_LONG_SIDE) / long)
        .min(f64::from(MAX_SHORT_SIDE) / short)
        .min(1.0);
    let even = |x: u32| ((f64::from(x) * scale / 2.0).round() as u32 * 2).max(2);
    (even(w), even(h))
}

fn duration_ms(ictx: &ffmpeg::format::context::Input) -> Option<i64> {
    let d = ictx.duration();
    (d > 0).then_some(d / 1000)
}

/// Demuxers an upload may be read with: video containers and raw video streams only.
/// Playlists and references (`hls`, `concat`, …) are left out, so an upload cannot make ffmpeg
/// read other files on this machine (another shop's videos) into what is served back.
const UPLOAD_FORMATS: &str = "mov,matroska,avi,flv,mpegts,mpeg,asf,ogg,m4v,h264,hevc,mpegvideo";

/// Opens an uploaded file with [`UPLOAD_FORMATS`] and the `file` protocol only.
fn open_upload(input: &Path) -> Result<ffmpeg::format::context::Input, TranscodeError> {
    let mut options = ffmpeg::Dictionary::new();
    options.set("format_whitelist", UPLOAD_FORMATS);
    options.set("protocol_whitelist", "file");
    ffmpeg::format::input_with_dictionary(input, options)
        .map_err(|e| TranscodeError::Unreadable(e.to_string()))
}

/// Reads the headers only: is this a video this server can transcode, and how long is it?
pub fn probe(input: &Path, limits: &Limits) -> Result<VideoInfo, TranscodeError> {
    init()?;
    let ictx = open_upload(input)?;
    let chosen = choose_video(&ictx)?;
    let duration_ms = duration_ms(&ictx).unwrap_or(0);
    if duration_ms > limits.max_duration_ms {
        return Err(TranscodeError::TooLong {
            duration_ms,
            max_ms: limits.max_duration_ms,
        });
    }
    if duration_ms > 0 && duration_ms < MIN_DURATION_MS {
        return Err(TranscodeError::TooShort { duration_ms });
    }
    let (width, height) = display_size(&chosen);
    Ok(VideoInfo {
        duration_ms,
        width,
        height,
        has_audio: choose_audio(&ictx).is_some(),
    })
}

/// Writes every packet the encoder has ready into the output.
fn drain(
    encoder: &mut ffmpeg::encoder::Encoder,
    out_index: usize,
    enc_tb: Rational,
    octx: &mut ffmpeg::format::context::Output,
) -> Result<(), TranscodeError> {
    let ost_tb = octx
        .stream(out_index)
        .map(|s| s.time_base())
        .unwrap_or(enc_tb);
    let mut packet = Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        packet.set_stream(out_index);
        packet.rescale_ts(enc_tb, ost_tb);
        packet.set_position(-1);
        packet
            .write_interleaved(octx)
            .map_err(failed("writing the MP4"))?;
    }
    Ok(())
}

/// Turns a YUV 4:2:0 picture by quarter turns (swscale scales but does not rotate).
fn turn_picture(src: &frame::Video, turn: Turn) -> frame::Video {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let (ow, oh) = if turn.swaps_sides() { (h, w) } else { (w, h) };
    let mut out = frame::Video::new(src.format(), ow as u32, oh as u32);
    for plane in 0..3 {
        let (pw, ph) = if plane == 0 { (w, h) } else { (w / 2, h / 2) };
        let (opw, oph) = if turn.swaps_sides() {
            (ph, pw)
        } else {
            (pw, ph)
        };
        let (stride, ostride) = (src.stride(plane), out.stride(plane));
        let data = src.data(plane);
        let odata = out.data_mut(plane);
        for y in 0..oph {
            for x in 0..opw {
                // The source pixel that lands at (x, y).
                let (sx, sy) = match turn {
                    Turn::None => (x, y),
                    Turn::Cw90 => (y, ph - 1 - x),
                    Turn::Half => (pw - 1 - x, ph - 1 - y),
                    Turn::Ccw90 => (pw - 1 - y, x),
                };
                odata[y * ostride + x] = data[sy * stride + sx];
            }
        }
    }
    out
}

/// Encodes one picture as a JPEG file.
fn write_cover(picture: &frame::Video, path: &Path) -> Result<(), TranscodeError> {
    let (w, h) = (picture.width(), picture.height());
    // JPEG wants full-range YUV; swscale converts the range.
    let mut scaler = scaling::Context::get(
        picture.format(),
        w,
        h,
        Pixel::YUVJ420P,
        w,
        h,
        scaling::Flags::BILINEAR,
    )
    .map_err(failed("cover scaler"))?;
    let mut full = frame::Video::empty();
    scaler
        .run(picture, &mut full)
        .map_err(failed("cover scaling"))?;
    full.set_pts(Some(0));
    let codec =
        ffmpeg::encoder::find_by_name("mjpeg").ok_or(TranscodeError::EncoderMissing("mjpeg"))?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(failed("mjpeg"))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(Rational(1, 25));
    // A fixed quantiser: rate control would starve a single picture.
    enc.set_qmin(COVER_QUALITY);
    enc.set_qmax(COVER_QUALITY);
    let mut enc = enc.open().map_err(failed("opening mjpeg"))?;
    enc.send_frame(&full)
        .map_err(failed("encoding the cover"))?;
    enc.send_eof().map_err(failed("encoding the cover"))?;
    let mut packet = Packet::empty();
    enc.receive_packet(&mut packet)
        .map_err(failed("encoding the cover"))?;
    let jpeg = packet
        .data()
        .ok_or_else(|| TranscodeError::Failed("the cover came out empty".into()))?;
    std::fs::write(path, jpeg)?;
    Ok(())
}

/// The video side: decoder → scaler → turn → x264, and the cover.
struct VideoLane {
    index: usize,
    tb: Rational,
    origin: i64,
    decoder: ffmpeg::decoder::Video,
    scaler: Option<scaling::Context>,
    /// Scaled size before turning.
    scaled: (u32, u32),
    turn: Turn,
    encoder: ffmpeg::encoder::video::Encoder,
    out_index: usize,
    frame_ticks: i64,
    last_pts: Option<i64>,
    frames: u64,
    max_ticks: i64,
    cover_path: std::path::PathBuf,
    cover_fallback: Option<frame::Video>,
    cover_done: bool,
}

impl VideoLane {
    fn receive(
        &mut self,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), TranscodeError> {
        let mut decoded = frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            self.push(&decoded, octx)?;
        }
        Ok(())
    }

    fn push(
        &mut self,
        decoded: &frame::Video,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), TranscodeError> {
        let pts = match decoded.timestamp() {
            Some(ts) => (ts - self.origin).rescale(self.tb, VIDEO_TB).max(0),
            None => self.last_pts.map_or(0, |p| p + self.frame_ticks),
        };
        // Duplicates and frames above MAX_FPS are dropped (10 % slack for jittery clocks).
        if let Some(last) = self.last_pts
            && pts - last < VIDEO_TB.denominator() as i64 / MAX_FPS * 9 / 10
        {
            return Ok(());
        }
        if pts > self.max_ticks {
            return Err(TranscodeError::TooLong {
                duration_ms: pts * 1000 / i64::from(VIDEO_TB.denominator()),
                max_ms: self.max_ticks * 1000 / i64::from(VIDEO_TB.denominator()),
            });
        }
        if decoded.format() == Pixel::None || decoded.width() == 0 || decoded.height() == 0 {
            return Err(TranscodeError::Undecodable(
                "a frame without a picture".into(),
            ));
        }
        let stale = self.scaler.as_ref().is_none_or(|s| {
            let i = s.input();
            i.format != decoded.format()
                || i.width != decoded.width()
                || i.height != decoded.height()
        });
        if stale {
            self.scaler = Some(
                scaling::Context::get(
                    decoded.format(),
                    decoded.width(),
                    decoded.height(),
                    Pixel::YUV420P,
                    self.scaled.0,
                    self.scaled.1,
                    scaling::Flags::BICUBIC,
                )
                .map_err(|e| TranscodeError::Unsupported(format!("pixel format: {e}")))?,
            );
        }
        let mut scaled = frame::Video::empty();
        if let Some(scaler) = self.scaler.as_mut() {
            scaler
                .run(decoded, &mut scaled)
                .map_err(failed("scaling"))?;
        }
        let mut picture = if self.turn == Turn::None {
            scaled
        } else {
            turn_picture(&scaled, self.turn)
        };
        if !self.cover_done {
            if pts * 1000 >= COVER_AT_MS * i64::from(VIDEO_TB.denominator()) {
                write_cover(&picture, &self.cover_path)?;
                self.cover_done = true;
                self.cover_fallback = None;
            } else if self.cover_fallback.is_none() {
                self.cover_fallback = Some(picture.clone());
            }
        }
        picture.set_pts(Some(pts));
        picture.set_kind(picture::Type::None);
        self.encoder
            .send_frame(&picture)
            .map_err(failed("encoding video"))?;
        self.last_pts = Some(pts);
        self.frames += 1;
        drain(&mut self.encoder, self.out_index, VIDEO_TB, octx)
    }

    fn finish(&mut self, octx: &mut ffmpeg::format::context::Output) -> Result<(), TranscodeError> {
        // End of input; a decoder that already failed has nothing more to give.
        let _ = self.decoder.send_eof();
        self.receive(octx)?;
        self.encoder.send_eof().map_err(failed("encoding video"))?;
        drain(&mut self.encoder, self.out_index, VIDEO_TB, octx)?;
        if !self.cover_done
            && let Some(picture) = self.cover_fallback.take()
        {
            write_cover(&picture, &self.cover_path)?;
            self.cover_done = true;
        }
        Ok(())
    }

    fn end_ms(&self) -> i64 {
        self.last_pts.map_or(0, |p| {
            (p + self.frame_ticks) * 1000 / i64::from(VIDEO_TB.denominator())
        })
    }
}

/// The audio side: decoder → swresample → 1,024-sample frames → AAC.
struct AudioLane {
    index: usize,
    tb: Rational,
    origin: i64,
    decoder: ffmpeg::decoder::Audio,
    resampler: Option<resampling::Context>,
    rate: u32,
    layout: ChannelLayout,
    encoder: ffmpeg::encoder::audio::Encoder,
    out_index: usize,
    frame_size: usize,
    /// Resampled samples per channel not yet encoded. libavutil's audio FIFO is not reachable
    /// from safe Rust, and this is all of it that is needed.
    pending: Vec<Vec<f32>>,
    next_pts: Option<i64>,
    max_pts: i64,
}

const FLTP: Sample = Sample::F32(sample::Type::Planar);

impl AudioLane {
    fn receive(
        &mut self,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), TranscodeError> {
        let mut decoded = frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            self.push(&decoded, octx)?;
        }
        Ok(())
    }

    fn push(
        &mut self,
        decoded: &frame::Audio,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), TranscodeError> {
        if decoded.samples() == 0 || decoded.rate() == 0 {
            return Ok(());
        }
        if self.next_pts.is_none() {
            let rate_tb = Rational(1, self.rate as i32);
            self.next_pts = Some(
                decoded
                    .timestamp()
                    .map_or(0, |ts| (ts - self.origin).rescale(self.tb, rate_tb))
                    .max(0),
            );
        }
        let mut layout = decoded.channel_layout();
        if layout.channels() == 0 {
            layout = ChannelLayout::default(i32::from(decoded.channels()));
        }
        let stale = self.resampler.as_ref().is_none_or(|r| {
            let i = r.input();
            i.format != decoded.format() || i.channel_layout != layout || i.rate != decoded.rate()
        });
        if stale {
            self.resampler = Some(
                resampling::Context::get(
                    decoded.format(),
                    layout,
                    decoded.rate(),
                    FLTP,
                    self.layout,
                    self.rate,
                )
                .map_err(|e| TranscodeError::Undecodable(format!("audio format: {e}")))?,
            );
        }
        // Room for everything this input can become at the output rate, so nothing queues up
        // inside swresample.
        let room = decoded.samples() * self.rate as usize / decoded.rate() as usize + 256;
        let mut out = frame::Audio::new(FLTP, room, self.layout);
        let relabelled;
        let input = if decoded.channel_layout() == layout {
            decoded
        } else {
            // A track that does not name its layout gets the default one of its channel count.
            let mut copy = decoded.clone();
            copy.set_channel_layout(layout);
            relabelled = copy;
            &relabelled
        };
        if let Some(resampler) = self.resampler.as_mut() {
            resampler
                .run(input, &mut out)
                .map_err(|e| TranscodeError::Undecodable(format!("resampling: {e}")))?;
        }
        self.queue(&out);
        self.encode_full(octx)
    }

    fn queue(&mut self, out: &frame::Audio) {
        let n = out.samples();
        for (ch, pending) in self.pending.iter_mut().enumerate() {
            pending.extend_from_slice(&out.plane::<f32>(ch)[..n]);
        }
    }

    fn encode_full(
        &mut self,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), TranscodeError> {
        while self.pending[0].len() >= self.frame_size {
            self.encode(self.frame_size, octx)?;
        }
        Ok(())
    }

    fn encode(
        &mut self,
        n: usize,
        octx: &mut ffmpeg::format::context::Output,
    ) -> Result<(), TranscodeError> {
        let pts = self.next_pts.unwrap_or(0);
        if pts > self.max_pts {
            // Past the length checked on the video side: the rest is dropped.
            for pending in &mut self.pending {
                pending.clear();
            }
            return Ok(());
        }
        let mut frame = frame::Audio::new(FLTP, n, self.layout);
        frame.set_rate(self.rate);
        for (ch, pending) in self.pending.iter_mut().enumerate() {
            frame.plane_mut::<f32>(ch)[..n].copy_from_slice(&pending[..n]);
            pending.drain(..n);
        }
        frame.set_pts(Some(pts));
        self.next_pts = Some(pts + n as i64);
        self.encoder
            .send_frame(&frame)
            .map_err(failed("encoding audio"))?;
        let tb = Rational(1, self.rate as i32);
        drain(&mut self.encoder, self.out_index, tb, octx)
    }

    fn finish(&mut self, octx: &mut ffmpeg::format::context::Output) -> Result<(), TranscodeError> {
        let _ = self.decoder.send_eof();
        self.receive(octx)?;
        if let Some(resampler) = self.resampler.as_mut() {
            loop {
                let mut out = frame::Audio::new(FLTP, 4096, self.layout);
                if resampler.flush(&mut out).is_err() || out.samples() == 0 {
                    break;
                }
                let n = out.samples();
                for (ch, pending) in self.pending.iter_mut().enumerate() {
                    pending.extend_from_slice(&out.plane::<f32>(ch)[..n]);
                }
            }
        }
        self.encode_full(octx)?;
        let rest = self.pending[0].len();
        if rest > 0 {
            // The encoder takes a short last frame.
            self.encode(rest, octx)?;
        }
        self.encoder.send_eof().map_err(failed("encoding audio"))?;
        drain(
            &mut self.encoder,
            self.out_index,
            Rational(1, self.rate as i32),
            octx,
        )
    }

    fn end_ms(&self) -> i64 {
        self.next_pts.map_or(0, |p| p * 1000 / i64::from(self.rate))
    }
}

/// The start of a stream in its own time base (0 when unknown).
fn stream_start(stream: &ffmpeg::format::stream::Stream) -> Option<i64> {
    let start = stream.start_time();
    // AV_NOPTS_VALUE
    (start != i64::MIN).then_some(start)
}

/// Transcodes `input` into an H.264/AAC MP4 at `output_mp4` and a JPEG cover at `cover_jpg`
/// (both written in place: give temporary paths and rename them when this succeeds). Stops
/// with [`TranscodeError::Cancelled`] soon after `cancel` is set.
pub fn transcode(
    input: &Path,
    output_mp4: &Path,
    cover_jpg: &Path,
    limits: &Limits,
    cancel: &AtomicBool,
) -> Result<VideoInfo, TranscodeError> {
    init()?;
    let started = Instant::now();
    let mut ictx = open_upload(input)?;
    let chosen = choose_video(&ictx)?;
    if let Some(ms) = duration_ms(&ictx)
        && ms > limits.max_duration_ms
    {
        return Err(TranscodeError::TooLong {
            duration_ms: ms,
            max_ms: limits.max_duration_ms,
        });
    }
    let audio_index = choose_audio(&ictx);

    // Both tracks are timed from the earliest start, so they stay in sync.
    let mut origin_us = i64::MAX;
    for stream in ictx.streams() {
        if (stream.index() == chosen.index || Some(stream.index()) == audio_index)
            && let Some(start) = stream_start(&stream)
        {
            origin_us = origin_us.min(start.rescale(stream.time_base(), MICROS));
        }
    }
    if origin_us == i64::MAX {
        origin_us = 0;
    }

    let mut octx =
        ffmpeg::format::output_as(output_mp4, "mp4").map_err(failed("creating the MP4"))?;
    let global_header = octx
        .format()
        .flags()
        .contains(ffmpeg::format::Flags::GLOBAL_HEADER);

    // Video.
    let vstream = ictx.stream(chosen.index).ok_or(TranscodeError::NoVideo)?;
    let vtb = vstream.time_base();
    let mut vdec_ctx = codec::context::Context::from_parameters(vstream.parameters())
        .map_err(|e| TranscodeError::Unsupported(e.to_string()))?;
    // Two cores: let the decoder use both while x264 waits for frames.
    vdec_ctx.set_threading(ffmpeg::threading::Config {
        kind: ffmpeg::threading::Type::Frame,
        count: 2,
        ..Default::default()
    });
    let vdecoder = vdec_ctx
        .decoder()
        .video()
        .map_err(|e| TranscodeError::Unsupported(e.to_string()))?;
    let rate = [vstream.avg_frame_rate(), vstream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0)
        .unwrap_or(Rational(MAX_FPS as i32, 1));
    let fps = (f64::from(rate).round() as i64).clamp(1, MAX_FPS);
    let (display_w, display_h) = display_size(&chosen);
    let (out_w, out_h) = fit(display_w, display_h);
    let scaled = if chosen.turn.swaps_sides() {
        (out_h, out_w)
    } else {
        (out_w, out_h)
    };
    let x264 = ffmpeg::encoder::find_by_name("libx264")
        .ok_or(TranscodeError::EncoderMissing("libx264"))?;
    let v_out_index = octx
        .add_stream(x264)
        .map_err(failed("video track"))?
        .index();
    let mut venc = codec::context::Context::new_with_codec(x264)
        .encoder()
        .video()
        .map_err(failed("libx264"))?;
    venc.set_width(out_w);
    venc.set_height(out_h);
    venc.set_format(Pixel::YUV420P);
    venc.set_aspect_ratio(Rational(1, 1));
    venc.set_time_base(VIDEO_TB);
    venc.set_frame_rate(Some(Rational(fps as i32, 1)));
    venc.set_gop((fps * 2) as u32);
    if global_header {
        venc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut x264_options = Dictionary::new();
    x264_options.set("preset", X264_PRESET);
    x264_options.set("crf", X264_CRF);
    let venc = venc
        .open_with(x264_options)
        .map_err(failed("opening libx264"))?;
    if let Some(mut ost) = octx.stream_mut(v_out_index) {
        ost.set_parameters(&venc);
        ost.set_time_base(VIDEO_TB);
    }
    let mut video = VideoLane {
        index: chosen.index,
        tb: vtb,
        origin: origin_us.rescale(MICROS, vtb),
        decoder: vdecoder,
        scaler: None,
        scaled,
        turn: chosen.turn,
        encoder: venc,
        out_index: v_out_index,
        frame_ticks: i64::from(VIDEO_TB.denominator()) / fps,
        last_pts: None,
        frames: 0,
        max_ticks: limits.max_duration_ms * i64::from(VIDEO_TB.denominator()) / 1000,
        cover_path: cover_jpg.to_path_buf(),
        cover_fallback: None,
        cover_done: false,
    };

    // Audio, when there is a track we can decode; a broken one is dropped, not fatal.
    let mut audio = match audio_index {
        Some(index) => open_audio(&ictx, index, origin_us, &mut octx, global_header, limits)?,
        None => None,
    };

    let mut options = Dictionary::new();
    options.set("movflags", "+faststart");
    octx.write_header_with(options)
        .map_err(failed("writing the MP4 header"))?;

    let mut decode_errors = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TranscodeError::Cancelled);
        }
        if started.elapsed() > limits.max_wall {
            return Err(TranscodeError::TimedOut(limits.max_wall));
        }
        let mut packet = Packet::empty();
        // The end, or a read error: either ends the input, as in the ffmpeg CLI, and what was
        // read is kept.
        if packet.read(&mut ictx).is_err() {
            break;
        }
        if packet.stream() == video.index {
            if video.decoder.send_packet(&packet).is_err() {
                decode_errors += 1;
            }
            video.receive(&mut octx)?;
        } else if let Some(lane) = audio.as_mut()
            && packet.stream() == lane.index
        {
            // A bad audio packet costs its few milliseconds of sound, nothing more.
            let _ = lane.decoder.send_packet(&packet);
            lane.receive(&mut octx)?;
        }
    }
    video.finish(&mut octx)?;
    if let Some(lane) = audio.as_mut() {
        lane.finish(&mut octx)?;
    }
    if video.frames == 0 {
        return Err(TranscodeError::Undecodable(format!(
            "no picture could be decoded ({decode_errors} bad packets)"
        )));
    }
    octx.write_trailer().map_err(failed("finishing the MP4"))?;
    let duration_ms = video
        .end_ms()
        .max(audio.as_ref().map_or(0, AudioLane::end_ms));
    if duration_ms < MIN_DURATION_MS {
        return Err(TranscodeError::TooShort { duration_ms });
    }
    Ok(VideoInfo {
        duration_ms,
        width: out_w,
        height: out_h,
        has_audio: audio.is_some(),
    })
}

fn open_audio(
    ictx: &ffmpeg::format::context::Input,
    index: usize,
    origin_us: i64,
    octx: &mut ffmpeg::format::context::Output,
    global_header: bool,
    limits: &Limits,
) -> Result<Option<AudioLane>, TranscodeError> {
    let Some(stream) = ictx.stream(index) else {
        return Ok(None);
    };
    let tb = stream.time_base();
    let Ok(decoder) = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().audio())
    else {
        return Ok(None);
    };
    if decoder.rate() == 0 || decoder.channels() == 0 {
        return Ok(None);
    }
    let aac = ffmpeg::encoder::find_by_name("aac").ok_or(TranscodeError::EncoderMissing("aac"))?;
    let rate = if AAC_RATES.contains(&decoder.rate()) {
        decoder.rate()
    } else {
        48_000
    };
    let layout = if decoder.channels() == 1 {
        ChannelLayout::MONO
    } else {
        ChannelLayout::STEREO
    };
    let out_index = octx.add_stream(aac).map_err(failed("audio track"))?.index();
    let mut enc = codec::context::Context::new_with_codec(aac)
        .encoder()
        .audio()
        .map_err(failed("aac"))?;
    enc.set_rate(rate as i32);
    enc.set_channel_layout(layout);
    enc.set_format(FLTP);
    enc.set_bit_rate(AAC_BIT_RATE);
    enc.set_time_base(Rational(1, rate as i32));
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let enc = enc.open().map_err(failed("opening aac"))?;
    let frame_size = (enc.frame_size() as usize).max(1);
    if let Some(mut ost) = octx.stream_mut(out_index) {
        ost.set_parameters(&enc);
        ost.set_time_base(Rational(1, rate as i32));
    }
    Ok(Some(AudioLane {
        index,
        tb,
        origin: origin_us.rescale(MICROS, tb),
        decoder,
        resampler: None,
        rate,
        layout,
        encoder: enc,
        out_index,
        frame_size,
        pending: vec![Vec::new(); layout.channels().max(1) as usize],
        next_pts: None,
        max_pts: limits.max_duration_ms * i64::from(rate) / 1000,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn output_fits_the_box_in_either_orientation_with_even_sides() {
        assert_eq!(fit(640, 360), (640, 360));
        assert_eq!(fit(1920, 1080), (1280, 720));
        assert_eq!(fit(1080, 1920), (720, 1280));
        assert_eq!(fit(3840, 1600), (1280, 534));
        assert_eq!(fit(641, 361), (642, 362));
        assert_eq!(fit(1, 1), (2, 2));
    }

    /// A clip made by the ffmpeg CLI (`args` are its output options).
    fn clip(dir: &Path, name: &str, inputs: &[&str], args: &[&str]) -> std::path::PathBuf {
        let path = dir.join(name);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(inputs)
            .args(args)
            .arg(&path)
            .status()
            .expect("the ffmpeg CLI is installed (scripts/test.sh makes sure)");
        assert!(status.success(), "ffmpeg could not make {name}");
        path
    }

    fn ffprobe(path: &Path) -> serde_json::Value {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-of",
                "json",
                "-show_format",
                "-show_streams",
            ])
            .arg(path)
            .output()
            .expect("ffprobe is installed");
        assert!(out.status.success(), "ffprobe failed on {}", path.display());
        serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
    }

    fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
        probe["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["codec_type"] == kind))
            .unwrap_or_else(|| panic!("no {kind} stream in {probe}"))
    }

    #[test]
    fn a_vp8_vorbis_webm_becomes_h264_aac_mp4_with_a_jpeg_cover() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = clip(
            dir.path(),
            "clip.webm",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=640x360:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
            ],
            &[
                "-t",
                "3",
                "-c:v",
                "libvpx",
                "-b:v",
                "500k",
                "-c:a",
                "libvorbis",
            ],
        );
        let probed = probe(&input, &Limits::default()).expect("probe");
        assert_eq!((probed.width, probed.height), (640, 360));
        assert!(probed.has_audio);

        let (mp4, cover) = (
            dir.path().join("out.mp4.part"),
            dir.path().join("cover.jpg"),
        );
        let info = transcode(
            &input,
            &mp4,
            &cover,
            &Limits::default(),
            &AtomicBool::new(false),
        )
        .expect("transcode");
        assert_eq!((info.width, info.height), (640, 360));
        assert!(info.has_audio);
        assert!((2900..=3100).contains(&info.duration_ms), "{info:?}");

        let out = ffprobe(&mp4);
        assert!(
            out["format"]["format_name"]
                .as_str()
                .unwrap_or_default()
                .contains("mp4")
        );
        let v = stream(&out, "video");
        assert_eq!(v["codec_name"], "h264");
        assert_eq!(v["pix_fmt"], "yuv420p");
        assert_eq!(
            (v["width"].as_i64(), v["height"].as_i64()),
            (Some(640), Some(360))
        );
        let a = stream(&out, "audio");
        assert_eq!(a["codec_name"], "aac");
        let seconds: f64 = out["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("duration");
        assert!((2.9..=3.15).contains(&seconds), "duration {seconds}");
        // faststart: the index (moov) comes before the media data (mdat).
        let bytes = std::fs::read(&mp4).expect("mp4");
        let find = |tag: &[u8]| bytes.windows(4).position(|w| w == tag);
        assert!(find(b"moov") < find(b"mdat"), "moov must precede mdat");

        let jpeg = std::fs::read(&cover).expect("cover");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG starts with SOI");
        let c = ffprobe(&cover);
        let c = stream(&c, "video");
        assert_eq!(c["codec_name"], "mjpeg");
        assert_eq!(
            (c["width"].as_i64(), c["height"].as_i64()),
            (Some(640), Some(360))
        );
    }

    #[test]
    fn rotated_portrait_mpeg4_without_audio_is_turned_upright_and_scaled() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A phone's portrait clip: landscape pixels flagged to be turned a quarter.
        let flat = clip(
            dir.path(),
            "flat.mp4",
            &["-f", "lavfi", "-i", "testsrc=size=1920x1080:rate=60"],
            &["-t", "1.2", "-c:v", "mpeg4", "-q:v", "5"],
        );
        let input = clip(
            dir.path(),
            "portrait.mp4",
            &["-i", flat.to_str().expect("utf-8 path")],
            &["-c", "copy", "-metadata:s:v:0", "rotate=90"],
        );
        let probed = probe(&input, &Limits::default()).expect("probe");
        assert_eq!((probed.width, probed.height), (1080, 1920));
        assert!(!probed.has_audio);
        let (mp4, cover) = (dir.path().join("out.mp4"), dir.path().join("cover.jpg"));
        let info = transcode(
            &input,
            &mp4,
            &cover,
            &Limits::default(),
            &AtomicBool::new(false),
        )
        .expect("transcode");
        assert_eq!((info.width, info.height), (720, 1280));
        assert!(!info.has_audio);
        let out = ffprobe(&mp4);
        let v = stream(&out, "video");
        assert_eq!(
            (v["width"].as_i64(), v["height"].as_i64()),
            (Some(720), Some(1280))
        );
        // 60 fps in, at most 30 out.
        let frames: i64 = v["nb_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .expect("frames");
        assert!((34..=38).contains(&frames), "{frames} frames for 1.2 s");
        assert!(out["streams"].as_array().is_some_and(|s| s.len() == 1));
        // Upright: the same picture as the ffmpeg CLI's autorotate gives.
        let reference = clip(
            dir.path(),
            "reference.png",
            &["-ss", "1", "-i", input.to_str().expect("utf-8 path")],
            &["-frames:v", "1", "-vf", "scale=720:1280"],
        );
        let ours = clip(
            dir.path(),
            "ours.png",
            &["-i", cover.to_str().expect("utf-8 path")],
            &["-frames:v", "1"],
        );
        let psnr = Command::new("ffmpeg")
            .args(["-v", "info", "-i"])
            .arg(&ours)
            .arg("-i")
            .arg(&reference)
            .args(["-lavfi", "psnr", "-f", "null", "-"])
            .output()
            .expect("ffmpeg");
        let log = String::from_utf8_lossy(&psnr.stderr);
        let average: f64 = log
            .split("average:")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no PSNR in {log}"));
        assert!(
            average > 25.0,
            "the cover differs from the upright frame: PSNR {average}"
        );
    }

    #[test]
    fn damaged_files_fail_cleanly_or_keep_what_is_readable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = std::fs::read(clip(
            dir.path(),
            "good.webm",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine",
            ],
            &["-t", "2", "-c:v", "libvpx", "-c:a", "libvorbis"],
        ))
        .expect("clip");
        // Cut short at several points, and scrambled behind an intact header: never a panic,
        // either a playable MP4 of what could be read or a typed error.
        let mut cases: Vec<(String, Vec<u8>)> = [10, 50, 90]
            .iter()
            .map(|pct| {
                (
                    format!("cut at {pct}%"),
                    good[..good.len() * pct / 100].to_vec(),
                )
            })
            .collect();
        let mut scrambled = good.clone();
        for (i, byte) in scrambled.iter_mut().enumerate().skip(600) {
            *byte = (i * 7919 % 251) as u8;
        }
        cases.push(("scrambled".into(), scrambled));
        for (name, bytes) in cases {
            let input = dir.path().join("damaged.webm");
            std::fs::write(&input, &bytes).expect("write");
            let (mp4, cover) = (dir.path().join("d.mp4"), dir.path().join("d.jpg"));
            match transcode(
                &input,
                &mp4,
                &cover,
                &Limits::default(),
                &AtomicBool::new(false),
            ) {
                Ok(info) => {
                    let out = ffprobe(&mp4);
                    assert_eq!(stream(&out, "video")["codec_name"], "h264", "{name}");
                    assert!(info.duration_ms >= MIN_DURATION_MS, "{name}: {info:?}");
                }
                Err(e) => assert!(
                    ["video_unsupported", "video_undecodable", "video_too_short"]
                        .contains(&e.code()),
                    "{name}: {e}"
                ),
            }
        }
    }

    #[test]
    fn a_playlist_cannot_pull_in_other_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Someone else's video on this machine, and an "upload" that points at it.
        let other = clip(
            dir.path(),
            "other.ts",
            &["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"],
            &["-t", "2", "-c:v", "mpeg2video", "-f", "mpegts"],
        );
        let playlist = dir.path().join("upload.bin");
        std::fs::write(
            &playlist,
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n",
                other.display()
            ),
        )
        .expect("write the playlist");
        assert!(
            matches!(
                probe(&playlist, &Limits::default()),
                Err(TranscodeError::Unreadable(_))
            ),
            "an HLS playlist must not be opened"
        );
        // The referenced file itself is a video the whitelist lets through.
        assert!(probe(&other, &Limits::default()).is_ok());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let junk = dir.path().join("junk.bin");
        std::fs::write(
            &junk,
            (0..100_000u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .expect("write");
        let err = probe(&junk, &Limits::default()).expect_err("junk");
        assert_eq!(err.code(), "video_unsupported", "{err}");

        let sound = clip(
            dir.path(),
            "sound.ogg",
            &["-f", "lavfi", "-i", "sine"],
            &["-t", "1", "-c:a", "libvorbis"],
        );
        let err = probe(&sound, &Limits::default()).expect_err("audio only");
        assert!(matches!(err, TranscodeError::NoVideo), "{err}");

        let long = clip(
            dir.path(),
            "long.avi",
            &["-f", "lavfi", "-i", "testsrc=size=160x120:rate=5"],
            &["-t", "4", "-c:v", "mpeg4"],
        );
        let limits = Limits {
            max_duration_ms: 2000,
            ..Limits::default()
        };
        let err = probe(&long, &limits).expect_err("too long");
        assert_eq!(err.code(), "video_too_long", "{err}");
        let (mp4, cover) = (dir.path().join("x.mp4"), dir.path().join("x.jpg"));
        let err =
            transcode(&long, &mp4, &cover, &limits, &AtomicBool::new(false)).expect_err("too long");
        assert_eq!(err.code(), "video_too_long", "{err}");

        let err = transcode(
            &long,
            &mp4,
            &cover,
            &Limits::default(),
            &AtomicBool::new(true),
        )
        .expect_err("cancelled");
        assert!(matches!(err, TranscodeError::Cancelled), "{err}");
    }
}
